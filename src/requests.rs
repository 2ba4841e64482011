//! The KDMQ requests this node sends to other nodes: made from a peer
//! message in one place ([`to_node`]: from this node's URI, signed when
//! the cluster signs, a sync's copy with its age), then sent through tm
//! ([`send_through_tm`]) or as bytes of our own (`direct_send`, `leaving`).

use dmq_core::kdmq::Kdmq;
use dmq_core::node_uri::NodeUri;
use dmq_core::peer_message::PeerMessage;
use kamailio::clock::{monotonic_ms, unix_now};
use kamailio::tm::{ReplyHandler, UacRequest, UAC_CSEQ};

use crate::shared::Shared;

/// The request that carries `message` from this node to `to` (whatever
/// its response callback is kept as: the API's, or a tm context's bytes).
pub fn to_node<'a, C>(m: &'a Shared, to: &'a NodeUri, message: &PeerMessage<'a, C>) -> Kdmq<'a> {
    let signing = m.config.shared_secret.as_deref().map(|secret| (secret, unix_now()));
    Kdmq::of(message, &m.local_uri, to, signing, monotonic_ms())
}

/// Sends `kdmq` through tm from the DMQ socket (to `next_hop` when given:
/// tm then resolves nothing); `handler` runs on its final reply with
/// `context`.
pub fn send_through_tm(m: &Shared, kdmq: &Kdmq<'_>, next_hop: Option<&str>, handler: ReplyHandler, context: &[u8]) -> Result<(), String> {
    // A Call-ID of our own when signing: the signature covers it.
    let call_id = kdmq.signing.map(|_| kamailio::tm::unique_call_id("dmqrs"));
    let headers = kdmq.tm_headers(call_id.as_deref().unwrap_or(""), UAC_CSEQ);
    let (to, from) = (kdmq.ruri(), kdmq.from_uri());
    let request = UacRequest {
        method: "KDMQ",
        to: &to,
        from: &from,
        headers: &headers,
        body: kdmq.body,
        socket: &m.socket.name,
        call_id: call_id.as_deref(),
        next_hop,
    };
    m.tm.request(&request, handler, context).map_err(|e| e.to_string())
}
