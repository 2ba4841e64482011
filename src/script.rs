//! Script functions, with the stock module's names, arities and return
//! values, and the same functions for KEMI (`KSR.dmq.*`). Plain Rust: the
//! C trampolines are generated in exports.rs.

use dmq_abi::api::PeerMessage;
use kamailio::export::ScriptArgs;
use kamailio::sip_msg::SipMsg;

use crate::admission;
use crate::cluster;
use crate::duplicates;
use crate::event_counts::{self, EventCount};
use crate::messaging;
use crate::peers;
use crate::shared::shared;
use crate::sync_status;
use crate::workers::{self, QueueError};
use dmq_core::duplicates::Seen;

/// The optional "continue" parameter; any value above 1 counts as 1, as in
/// the stock module.
fn continue_flag(args: &ScriptArgs) -> i32 {
    args.int(0).unwrap_or(0).clamp(0, 1)
}

/// dmq_handle_message / dmq_process_message: the peer is the R-URI user.
/// Returns `returnval` once the message is answered or queued, -1 on error.
fn handle(msg: &SipMsg, returnval: i32, queue: bool) -> i32 {
    let Some(m) = shared() else { return -1 };
    let Some(channel) = msg.ruri_user() else {
        log::warn!("KDMQ with an unparsable R-URI from {:?}", msg.source_ip());
        msg.reply(&m.sl, 400, "Bad request", None);
        return -1;
    };
    if let Err(refusal) = admission::check_signature(m, msg) {
        return refused(m, msg, &channel, refusal, returnval);
    }
    if channel == m.config.notification_channel {
        if let Err(refusal) = admission::check_notification_source(m, msg) {
            return refused(m, msg, &channel, refusal, returnval);
        }
        cluster::handle_notification(m, msg);
        return returnval;
    }
    // Before the peer lookup: a stranger learns nothing of our peers.
    if m.config.members_only && !from_node(msg) {
        return refused(m, msg, &channel, admission::Refusal::NotMember, returnval);
    }
    let Some(peer) = peers::find(channel.as_bytes()) else {
        log::warn!("KDMQ for unknown peer {channel:?} from {:?}", msg.source_ip());
        if !msg.reply(&m.sl, 404, "User Not Found", None) {
            return -1;
        }
        return returnval;
    };
    // A copy of a message seen before never reaches the consumer again
    // (`duplicates`): absorbed while the first is queued or running,
    // answered again once it was answered.
    let scan = dmq_core::protocol::scan_request(msg.raw_bytes());
    let seen = scan.key;
    if let Some(key) = seen {
        match duplicates::arrived(key) {
            Seen::New => {}
            Seen::UnderWay => {
                event_counts::add(EventCount::DuplicatesIgnored);
                return returnval;
            }
            Seen::Answered(code) => {
                event_counts::add(EventCount::DuplicatesIgnored);
                let reason = if code < 300 { "OK" } else { "Answered Before" };
                // A sync request's 200 says again what its answer sent.
                if let Some((items, id)) = sync_status::answer_of(scan.key) {
                    msg.add_reply_header(&sync_status::answer_headers(items, id));
                }
                msg.reply(&m.sl, i32::from(code), reason, None);
                return returnval;
            }
        }
    }
    // A queued message has its body checked by the worker, which parses
    // every header anyway (for the consumer): finding the body here would
    // parse them all twice, at a q_malloc per header.
    let run_now = if queue && m.config.updates_in_place && is_single_update(&channel, msg) { workers::run_in_place() } else { None };
    let in_place = !queue || run_now.is_some();
    if in_place {
        if let Err(refusal) = admission::check_body(&channel, msg) {
            duplicates::forget(seen);
            return refused(m, msg, &channel, refusal, returnval);
        }
    }
    event_counts::add(EventCount::MessagesReceived);
    if in_place {
        return if workers::run_peer_callback(m, msg, peer, scan) { returnval } else { -1 };
    }
    match workers::enqueue(msg, peer, scan) {
        Ok(queued) => {
            if queued.waits {
                msg.reply(&m.sl, 100, "Trying", None);
            }
            returnval
        }
        Err(QueueError::Full) => {
            duplicates::forget(seen);
            log::warn!(
                "DMQ job queue full (job_queue_limit {}): {channel} message from {:?} refused with 503",
                m.config.job_queue_limit,
                msg.source_ip()
            );
            msg.reply(&m.sl, 503, "Service Unavailable", None);
            returnval
        }
        Err(QueueError::Failed(e)) => {
            duplicates::forget(seen);
            log::error!("cannot queue a {channel} message: {e}");
            msg.reply(&m.sl, 500, "Server Internal Error", None);
            -1
        }
    }
}

/// Whether `msg` changes one item for a stock consumer (one contact, cell
/// or dialog: see `dmq_core::body_check::is_single_update`), judged from
/// the bytes after the header block without parsing the headers. Only a
/// hint: a message run here has its body checked as the core reads it.
fn is_single_update(channel: &str, msg: &SipMsg) -> bool {
    dmq_core::protocol::after_header_block(msg.raw_bytes()).is_some_and(|body| dmq_core::body_check::is_single_update(channel, body))
}

/// A refused request is answered and so handled: the script goes on as
/// after any other answered KDMQ.
fn refused(m: &crate::shared::Shared, msg: &SipMsg, channel: &str, refusal: admission::Refusal, returnval: i32) -> i32 {
    if admission::refuse(m, msg, channel, refusal) {
        returnval
    } else {
        -1
    }
}

/// `dmq_handle_message([continue])`.
pub fn handle_message(msg: &SipMsg, args: &ScriptArgs) -> i32 {
    handle(msg, continue_flag(args), true)
}

/// `dmq_process_message([continue])`.
pub fn process_message(msg: &SipMsg, args: &ScriptArgs) -> i32 {
    handle(msg, continue_flag(args), false)
}

/// dmq_send_message / dmq_bcast_message: 1 when sent, -1 otherwise.
fn send(peer_id: &[u8], node: Option<&[u8]>, body: &[u8], content_type: &[u8]) -> i32 {
    let Some(peer) = peers::find_or_register_script_peer(peer_id) else {
        log::error!("cannot register DMQ peer {:?}", String::from_utf8_lossy(peer_id));
        return -1;
    };
    let targets = match node {
        Some(node) => {
            let text = String::from_utf8_lossy(node);
            let known = dmq_core::protocol::parse_node_line(&text).ok().and_then(|l| cluster::find_node(&l.uri));
            match known {
                Some(node) => vec![node],
                None => {
                    log::error!("cannot find DMQ node {text}");
                    return -1;
                }
            }
        }
        None => messaging::active_targets(None),
    };
    let (id, content_type) = (peer.id(), String::from_utf8_lossy(content_type));
    let message = PeerMessage::plain(&id, body, &content_type);
    match messaging::send_to(&message, &targets) {
        Ok(()) => 1,
        Err(e) => {
            log::error!("cannot send DMQ message for {}: {e}", peer.id());
            -1
        }
    }
}

/// `dmq_send_message(peer, node, body, content_type)`.
pub fn send_message(_msg: &SipMsg, args: &ScriptArgs) -> i32 {
    let (Some(peer), Some(node), Some(body), Some(ct)) =
        (args.bytes(0, "peer"), args.bytes(1, "node"), args.bytes(2, "body"), args.bytes(3, "content type"))
    else {
        return -1;
    };
    send(&peer, Some(&node), &body, &ct)
}

/// `dmq_bcast_message(peer, body, content_type)`.
pub fn bcast_message(_msg: &SipMsg, args: &ScriptArgs) -> i32 {
    let (Some(peer), Some(body), Some(ct)) = (args.bytes(0, "peer"), args.bytes(1, "body"), args.bytes(2, "content type")) else {
        return -1;
    };
    send(&peer, None, &body, &ct)
}

fn from_node(msg: &SipMsg) -> bool {
    let Some(ip) = msg.source_ip() else { return false };
    cluster::read_nodes(|list| list.is_remote_ip(ip)).unwrap_or(false)
}

/// `dmq_is_from_node()`: 1 when the request came from a cluster node.
pub fn is_from_node(msg: &SipMsg, _args: &ScriptArgs) -> i32 {
    if from_node(msg) {
        1
    } else {
        -1
    }
}

/// dmq_t_replicate: relays the request statefully to every active node,
/// from the DMQ socket. Like the stock module it returns 0 on success (which
/// ends the route) and -1 when it skipped or failed.
fn replicate(msg: &SipMsg, skip_loop_test: bool) -> i32 {
    let Some(m) = shared() else { return -1 };
    if !skip_loop_test && from_node(msg) {
        log::debug!("message came from another node: not replicated");
        return -1;
    }
    let uris: Vec<String> = messaging::active_targets(None).iter().map(|t| t.uri.to_uri()).collect();
    match m.tm.replicate(msg, m.socket.local, &uris) {
        Ok(()) => 0,
        Err(e) => {
            log::error!("{e}");
            -1
        }
    }
}

/// `dmq_t_replicate([skip_loop_test])`.
pub fn t_replicate(msg: &SipMsg, args: &ScriptArgs) -> i32 {
    let skip = args.bytes(0, "skip_loop_test").is_some_and(|v| String::from_utf8_lossy(&v).trim().parse::<i32>().unwrap_or(0) != 0);
    replicate(msg, skip)
}

// KEMI: KSR.dmq.* (same behaviour, typed parameters).

pub fn ki_handle_message(msg: &SipMsg) -> i32 {
    handle(msg, 0, true)
}
pub fn ki_handle_message_rc(msg: &SipMsg, rc: i32) -> i32 {
    handle(msg, rc.clamp(0, 1), true)
}
pub fn ki_process_message(msg: &SipMsg) -> i32 {
    handle(msg, 0, false)
}
pub fn ki_process_message_rc(msg: &SipMsg, rc: i32) -> i32 {
    handle(msg, rc.clamp(0, 1), false)
}
pub fn ki_send_message(_msg: &SipMsg, peer: &[u8], node: &[u8], body: &[u8], ct: &[u8]) -> i32 {
    send(peer, Some(node), body, ct)
}
pub fn ki_bcast_message(_msg: &SipMsg, peer: &[u8], body: &[u8], ct: &[u8]) -> i32 {
    send(peer, None, body, ct)
}
pub fn ki_t_replicate(msg: &SipMsg) -> i32 {
    replicate(msg, false)
}
pub fn ki_t_replicate_mode(msg: &SipMsg, mode: i32) -> i32 {
    replicate(msg, mode != 0)
}
pub fn ki_is_from_node(msg: &SipMsg) -> i32 {
    if from_node(msg) {
        1
    } else {
        -1
    }
}

/// Whether this node holds the cluster's state for `peer` (None: every
/// consumer that syncs): 1, else -1 (`sync_status::is_synced`).
fn synced(peer: Option<&[u8]>) -> i32 {
    let peer = peer.map(String::from_utf8_lossy);
    if sync_status::is_synced(peer.as_deref()) {
        1
    } else {
        -1
    }
}

/// `dmq_is_synced(["peer"])`: 1 once this node's syncs are done (for one
/// consumer, e.g. "usrloc", or all), -1 before (a readiness probe answers
/// 503 then).
pub fn is_synced(_msg: &SipMsg, args: &ScriptArgs) -> i32 {
    synced(args.bytes(0, "peer").as_deref())
}

pub fn ki_is_synced(_msg: &SipMsg) -> i32 {
    synced(None)
}

pub fn ki_is_synced_peer(_msg: &SipMsg, peer: &[u8]) -> i32 {
    synced(Some(peer))
}
