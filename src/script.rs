//! Script functions, with the stock module's names, arities and return
//! values, and the same functions for KEMI (`KSR.dmq.*`). Plain Rust: the
//! C trampolines are generated in exports.rs.

use dmq_abi::api::PeerMessage;
use kamailio::cmd_export::ScriptArgs;
use kamailio::sip_msg::SipMsg;

use crate::admission;
use crate::duplicates;
use crate::event_counts::{self, EventCount};
use crate::messaging;
use crate::node_list;
use crate::notifications;
use crate::peers;
use crate::shared::{shared, Shared};
use crate::sync_status;
use crate::workers::{self, QueueError};
use dmq_core::admission_order::{self, Check, Decision, Found, Reply};
use dmq_core::duplicates::Seen;
use dmq_core::header_scan::RequestScan;

/// The optional "continue" parameter; any value above 1 counts as 1, as in
/// the stock module.
fn continue_flag(args: &ScriptArgs) -> i32 {
    args.int(0).unwrap_or(0).clamp(0, 1)
}

/// dmq_handle_message / dmq_process_message: the peer is the R-URI user.
/// Returns `returnval` once the message is answered or queued, -1 on error.
fn handle(msg: &SipMsg, returnval: i32, queue: bool) -> i32 {
    let Some(m) = shared() else { return -1 };
    let channel = msg.ruri_user();
    let name = channel.as_deref().unwrap_or_default();
    // What the checks found, for what follows them.
    let mut refusal = None;
    let mut peer = None;
    let mut scan = RequestScan::default();
    // Held to the end: the in-place slot (`workers::run_in_place`) of a
    // message run here.
    let mut run_now = None;
    let mut in_place = !queue;
    // The checks in their order (`dmq_core::admission_order`): each runs
    // only when every one before it passed.
    let decision = admission_order::admit(channel.as_deref(), &m.config.notification_channel, m.config.members_only, |check| {
        // A check's result: a refusal is kept for its reply and count.
        let found = |r: Result<(), admission::Refusal>, refusal: &mut Option<admission::Refusal>| match r {
            Ok(()) => Found::Pass,
            Err(r) => {
                *refusal = Some(r);
                Found::Refused
            }
        };
        match check {
            Check::Channel => Found::Pass,
            Check::Signature => found(admission::check_signature(m, msg), &mut refusal),
            Check::NotificationSource => found(admission::check_notification_source(m, msg), &mut refusal),
            // Before the peer lookup: a stranger learns nothing of our peers.
            Check::Membership => found(if from_node(m, msg) { Ok(()) } else { Err(admission::Refusal::NotMember) }, &mut refusal),
            Check::Peer => {
                peer = peers::find(name.as_bytes());
                if peer.is_some() {
                    Found::Pass
                } else {
                    Found::Refused
                }
            }
            // A copy of a message seen before never reaches the consumer
            // again (`duplicates`): absorbed while the first is queued or
            // running, answered again once it was answered.
            Check::Duplicate => {
                scan = dmq_core::header_scan::scan_request(msg.raw_bytes());
                match scan.key.map(|key| duplicates::arrived(m, key)) {
                    None | Some(Seen::New) => Found::Pass,
                    Some(Seen::UnderWay) => Found::Refused,
                    Some(Seen::Answered(code)) => Found::AnsweredBefore(code),
                }
            }
            // A queued message has its body checked by the worker, which
            // parses every header anyway (for the consumer): finding the
            // body here would parse them all twice, at a q_malloc per header.
            Check::Body => {
                if queue && m.config.updates_in_place && is_single_update(name, msg) {
                    run_now = workers::run_in_place(m);
                }
                in_place = !queue || run_now.is_some();
                if in_place {
                    found(admission::check_body(name, msg), &mut refusal)
                } else {
                    Found::Pass
                }
            }
        }
    });
    let seen = scan.key;
    match decision {
        Decision::Notification => {
            notifications::handle(m, msg);
            return returnval;
        }
        Decision::PeerMessage => {}
        Decision::Stopped { check: Check::Channel, reply } => {
            log::warn!("KDMQ with an unparsable R-URI from {:?}", msg.source_ip());
            if let Some(Reply { code, reason }) = reply {
                msg.reply(&m.sl, i32::from(code), reason, None);
            }
            return -1;
        }
        Decision::Stopped { check: Check::Peer, reply } => {
            log::warn!("KDMQ for unknown peer {name:?} from {:?}", msg.source_ip());
            let Some(Reply { code, reason }) = reply else { return returnval };
            return if msg.reply(&m.sl, i32::from(code), reason, None) { returnval } else { -1 };
        }
        Decision::Stopped { check: Check::Duplicate, reply } => {
            event_counts::add(m, EventCount::DuplicatesIgnored);
            if let Some(Reply { code, reason }) = reply {
                // A sync request's 200 says again what its answer sent.
                if let Some((items, id)) = sync_status::answer_of(m, seen) {
                    msg.add_reply_header(&sync_status::answer_headers(items, id));
                }
                msg.reply(&m.sl, i32::from(code), reason, None);
            }
            return returnval;
        }
        Decision::Stopped { check, .. } => {
            if check == Check::Body {
                duplicates::forget(m, seen);
            }
            let Some(refusal) = refusal else { return -1 };
            return refused(m, msg, name, refusal, returnval);
        }
    }
    // Found by the peer check.
    let Some(peer) = peer else { return -1 };
    event_counts::add(m, EventCount::MessagesReceived);
    if in_place {
        return if workers::run_peer_callback(m, msg, peer, scan) { returnval } else { -1 };
    }
    match workers::enqueue(m, msg, peer, scan) {
        Ok(queued) => {
            if queued.waits {
                msg.reply(&m.sl, 100, "Trying", None);
            }
            returnval
        }
        Err(QueueError::Full) => {
            duplicates::forget(m, seen);
            log::warn!(
                "DMQ job queue full (job_queue_limit {}): {name} message from {:?} refused with 503",
                m.config.job_queue_limit,
                msg.source_ip()
            );
            msg.reply(&m.sl, 503, "Service Unavailable", None);
            returnval
        }
        Err(QueueError::Failed(e)) => {
            duplicates::forget(m, seen);
            log::error!("cannot queue a {name} message: {e}");
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
    dmq_core::header_scan::after_header_block(msg.raw_bytes()).is_some_and(|body| dmq_core::body_check::is_single_update(channel, body))
}

/// A refused request is answered and so handled: the script goes on as
/// after any other answered KDMQ.
fn refused(m: &Shared, msg: &SipMsg, channel: &str, refusal: admission::Refusal, returnval: i32) -> i32 {
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
    // Before mod_init no node is listed: none is found, a broadcast
    // reaches nobody.
    let Some(m) = shared() else {
        let Some(node) = node else { return 1 };
        log::error!("cannot find DMQ node {}", String::from_utf8_lossy(node));
        return -1;
    };
    let targets = match node {
        Some(node) => {
            let text = String::from_utf8_lossy(node);
            let known = dmq_core::node_uri::parse_node_line(&text).ok().and_then(|l| node_list::find_node(m, &l.uri));
            match known {
                Some(node) => vec![node],
                None => {
                    log::error!("cannot find DMQ node {text}");
                    return -1;
                }
            }
        }
        None => messaging::active_targets(m, None),
    };
    let (id, content_type) = (peer.id(), String::from_utf8_lossy(content_type));
    let message = PeerMessage::plain(&id, body, &content_type);
    match messaging::send_to(m, &message, &targets) {
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

fn from_node(m: &Shared, msg: &SipMsg) -> bool {
    let Some(ip) = msg.source_ip() else { return false };
    node_list::read_nodes(m, |list| list.is_remote_ip(ip))
}

/// Whether the request came from a cluster node (none before mod_init).
fn from_any_node(msg: &SipMsg) -> bool {
    shared().is_some_and(|m| from_node(m, msg))
}

/// `dmq_is_from_node()`: 1 when the request came from a cluster node.
pub fn is_from_node(msg: &SipMsg, _args: &ScriptArgs) -> i32 {
    if from_any_node(msg) {
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
    if !skip_loop_test && from_node(m, msg) {
        log::debug!("message came from another node: not replicated");
        return -1;
    }
    let uris: Vec<String> = messaging::active_targets(m, None).iter().map(|t| t.uri.to_uri()).collect();
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
    if from_any_node(msg) {
        1
    } else {
        -1
    }
}

/// Whether this node holds the cluster's state for `peer` (None: every
/// consumer that syncs): 1, else -1 (`sync_status::is_synced`).
fn synced(peer: Option<&[u8]>) -> i32 {
    let peer = peer.map(String::from_utf8_lossy);
    // Not before mod_init.
    if shared().is_some_and(|m| sync_status::is_synced(m, peer.as_deref())) {
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
