//! `dmq_process_custom(peer, node, body, content_type)` and
//! `dmq_handle_custom(…)` (upstream master): the script hands a body to a
//! local peer (consumer) as if `node` had sent it in a KDMQ. The message
//! is built as one from `node` would be (`kdmq::Kdmq::to_bytes`),
//! parsed by the core, and gets the admission check a KDMQ from the wire
//! gets (`admission::check_body`: the consumer's shape, or valid JSON):
//! a refused body reaches no consumer. No reply is sent anywhere.

use dmq_abi::api::PeerMessage;
use kamailio::sip_msg::{OwnedSipMsg, ReceiveInfo};

use crate::shared::shared;
use crate::{admission, node_list, peers, workers};

/// 1 when handed over (processed here, or queued for a DMQ worker with
/// `queue`), -1 otherwise (unknown peer, bad node, refused body, full queue).
pub fn custom(peer_id: &[u8], node: &[u8], body: &[u8], content_type: &[u8], queue: bool) -> i32 {
    let Some(m) = shared() else { return -1 };
    let what = if queue { "dmq_handle_custom" } else { "dmq_process_custom" };
    let peer_name = String::from_utf8_lossy(peer_id);
    let Some(peer) = peers::find(peer_id) else {
        log::warn!("{what}: no DMQ peer {peer_name:?}");
        return -1;
    };
    let node_text = String::from_utf8_lossy(node);
    let Ok(from) = dmq_core::peer_events::parse_address(&node_text) else {
        log::warn!("{what}: {node_text:?} is not a node's SIP URI");
        return -1;
    };
    let (peer_id, content_type) = (peer.id(), String::from_utf8_lossy(content_type));
    let message = PeerMessage::plain(&peer_id, body, &content_type);
    let mut request = workers::local_request(m, "custom", &from, &message);
    request.push(0);
    let rcv = ReceiveInfo::local(m.socket.local);
    let Some(msg) = OwnedSipMsg::parse(&mut request, rcv) else {
        log::warn!("{what}: the message for peer {peer_name:?} does not parse");
        return -1;
    };
    let channel = peer.id();
    if let Err(refusal) = admission::check_body(&channel, &msg) {
        let reason = match &refusal {
            admission::Refusal::BadJson(e) => e.to_string(),
            _ => "refused".to_string(),
        };
        admission::count_bad_body(m);
        log::warn!("{what}: body for peer {peer_name:?} from {from} refused: {reason}; the consumer never saw it (counted in dmq.stats refused_bad_json)");
        return -1;
    }
    if queue {
        drop(msg);
        request.pop();
        return match workers::enqueue_local(m, &request, rcv, peer, false) {
            Ok(_) => 1,
            Err(workers::QueueError::Full) => {
                log::warn!("{what}: job queue full; message for peer {peer_name:?} dropped");
                -1
            }
            Err(workers::QueueError::Failed(e)) => {
                log::error!("{what}: {e}");
                -1
            }
        };
    }
    let sender = node_list::find_node(m, &from);
    match peer.call(&msg, sender.as_ref()) {
        Some(_) => 1,
        None => {
            log::warn!("{what}: DMQ peer {peer_name:?} failed to process the message");
            -1
        }
    }
}

fn from_script(args: &kamailio::cmd_export::ScriptArgs, queue: bool) -> i32 {
    let (Some(peer), Some(node), Some(body), Some(ct)) =
        (args.bytes(0, "peer"), args.bytes(1, "node"), args.bytes(2, "body"), args.bytes(3, "content type"))
    else {
        return -1;
    };
    custom(&peer, &node, &body, &ct, queue)
}

/// `dmq_process_custom(peer, node, body, content_type)`.
pub fn process_custom(_msg: &kamailio::sip_msg::SipMsg, args: &kamailio::cmd_export::ScriptArgs) -> i32 {
    from_script(args, false)
}

/// `dmq_handle_custom(peer, node, body, content_type)`.
pub fn handle_custom(_msg: &kamailio::sip_msg::SipMsg, args: &kamailio::cmd_export::ScriptArgs) -> i32 {
    from_script(args, true)
}

/// `KSR.dmq.process_custom_message(…)`.
pub fn ki_process_custom(_msg: &kamailio::sip_msg::SipMsg, peer: &[u8], node: &[u8], body: &[u8], ct: &[u8]) -> i32 {
    custom(peer, node, body, ct, false)
}

/// `KSR.dmq.handle_custom_message(…)`.
pub fn ki_handle_custom(_msg: &kamailio::sip_msg::SipMsg, peer: &[u8], node: &[u8], body: &[u8], ct: &[u8]) -> i32 {
    custom(peer, node, body, ct, true)
}
