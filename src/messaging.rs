//! Outgoing peer messages: what the script functions and the `bind_dmq` API
//! (htable, dmq_usrloc, dialog, presence) send to replicate their data.
//! Each goes through the in-flight table when it can, through tm otherwise;
//! tm-path messages a busy node answered 503 wait in a shm queue that the
//! retransmission timer drains. Targets are copied under the node-list
//! lock; sending happens after it is released, so concurrent senders never
//! queue behind each other's sends.

use std::sync::OnceLock;

use dmq_core::nodes::Node;
use dmq_core::pending;
use dmq_core::protocol::{Kdmq, NodeUri};

use kamailio::clock::monotonic_ms;
use dmq_abi::api::ResponseCallback;
use kamailio::process;
use kamailio::shm_queue::ShmQueue;
use kamailio::tm::TmReply;

use crate::{cluster, heal, peers, resync};
use crate::event_counts::{self, EventCount};
use crate::in_flight::{self, SendError};
use crate::state::{module, Module};

/// A peer message sent through tm, kept as its tm callback context:
/// everything needed to send it again when a busy node answers 503. It
/// borrows its parts (from the sender's arguments, or from the context
/// bytes it was decoded from): nothing is copied but into tm's context.
struct TmMessage<'a> {
    callback: Option<ResponseCallback>,
    target: NodeUri,
    peer_id: &'a str,
    content_type: &'a str,
    max_forwards: i32,
    body: &'a [u8],
    /// Past this, a 503 is the final answer (the same 30 s a timeout takes).
    deadline_ms: u64,
    /// The wait before the next resend after a 503.
    backoff_ms: u64,
}

const CALLBACK_LEN: usize = 2 * std::mem::size_of::<usize>();

impl<'a> TmMessage<'a> {
    /// [has callback u8][callback][max_forwards i32][deadline u64]
    /// [backoff u64], then uri, peer id, content type and body, each as
    /// [len u32][bytes].
    fn encode(&self) -> Vec<u8> {
        let uri = self.target.to_uri();
        let mut out = Vec::with_capacity(64 + uri.len() + self.peer_id.len() + self.content_type.len() + self.body.len());
        out.push(self.callback.is_some() as u8);
        out.extend_from_slice(&self.callback.map(|c| c.to_bytes()).unwrap_or([0; CALLBACK_LEN]));
        out.extend_from_slice(&self.max_forwards.to_ne_bytes());
        out.extend_from_slice(&self.deadline_ms.to_ne_bytes());
        out.extend_from_slice(&self.backoff_ms.to_ne_bytes());
        for part in [uri.as_bytes(), self.peer_id.as_bytes(), self.content_type.as_bytes(), self.body] {
            out.extend_from_slice(&(part.len() as u32).to_ne_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    fn decode(mut ctx: &'a [u8]) -> Option<TmMessage<'a>> {
        fn take<'a>(ctx: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, rest) = (ctx.get(..n)?, ctx.get(n..)?);
            *ctx = rest;
            Some(head)
        }
        let has_callback = take(&mut ctx, 1)?[0] == 1;
        let callback = ResponseCallback::from_bytes(take(&mut ctx, CALLBACK_LEN)?.try_into().ok()?).filter(|_| has_callback);
        let max_forwards = i32::from_ne_bytes(take(&mut ctx, 4)?.try_into().ok()?);
        let deadline_ms = u64::from_ne_bytes(take(&mut ctx, 8)?.try_into().ok()?);
        let backoff_ms = u64::from_ne_bytes(take(&mut ctx, 8)?.try_into().ok()?);
        let mut part = || -> Option<&'a [u8]> {
            let len = u32::from_ne_bytes(take(&mut ctx, 4)?.try_into().ok()?) as usize;
            take(&mut ctx, len)
        };
        let uri = std::str::from_utf8(part()?).ok()?;
        let target = dmq_core::protocol::parse_node_line(uri).ok()?.uri;
        // Both were encoded from &str.
        let peer_id = std::str::from_utf8(part()?).ok()?;
        let content_type = std::str::from_utf8(part()?).ok()?;
        let body = part()?;
        Some(TmMessage { callback, target, peer_id, content_type, max_forwards, body, deadline_ms, backoff_ms })
    }
}

/// tm-path messages a busy node answered 503, waiting to be sent again
/// (by the retransmission timer). Bounded: beyond it a 503 is final.
static BUSY_RETRIES: OnceLock<ShmQueue> = OnceLock::new();
const BUSY_RETRY_LIMIT: usize = 8192;
/// How often the retransmission timer runs.
const TICK_US: u32 = 100_000;

/// mod_init: the retry queue, and the retransmission timer's process.
pub fn init() -> Result<(), String> {
    let queue = ShmQueue::new(BUSY_RETRY_LIMIT).ok_or("out of shm for the DMQ retry queue")?;
    BUSY_RETRIES.set(queue).map_err(|_| "retry queue initialized twice".to_string())?;
    in_flight::set_overflow(|peer_id, target, body, content_type, max_forwards, callback| {
        let m = module().ok_or("dmq is not initialized")?;
        send_through_tm(m, peer_id, target, body, content_type, max_forwards, callback)
            .inspect(|()| event_counts::add(EventCount::MessagesSentThroughTm))
    });
    process::register_timer_process().map_err(|e| format!("the DMQ retransmission timer: {e}"))
}

/// child_init(PROC_MAIN): forks the retransmission timer process.
pub fn start_timer() -> Result<(), String> {
    process::fork_timer_process(c"DMQ RETRANSMIT TIMER", TICK_US, timer_tick)
}

/// Every 100 ms: the in-flight table's retransmissions and timeouts, and
/// the tm-path messages due after a 503.
fn timer_tick() {
    for node in resync::tick(|| cluster::read_nodes(|list| list.targets(false)).unwrap_or_default()) {
        pull_from(&node);
    }
    in_flight::tick();
    if let Some(m) = module() {
        resend_busy(m, monotonic_ms());
    }
    heal::tick_end();
}

/// A heal pull (`heal`): asks `uri`, a node met after this node's join
/// sync, for its state: each consumer's sync request (its init callback's
/// broadcast, captured) goes to that node alone, which answers by sending
/// its state, as to a joining node.
fn pull_from(uri: &NodeUri) {
    let Some(Some(node)) = cluster::read_nodes(|l| l.find(uri).filter(|n| !dmq_core::sources::is_this_node(l, n)).cloned()) else { return };
    for (peer, body, content_type) in peers::sync_requests() {
        let id = peer.id();
        match send_to(&id, std::slice::from_ref(&node), &body, &content_type, 1, None) {
            Ok(()) => log::info!("heal pull: asked {uri} for the state of DMQ peer {id:?}"),
            Err(e) => log::warn!("heal pull: cannot ask {uri} for the state of DMQ peer {id:?}: {e}"),
        }
    }
}

/// The tm-path retry figures: (waiting now, sent again so far).
pub fn busy_retry_stats() -> (usize, u64) {
    BUSY_RETRIES.get().map(|q| q.stats()).unwrap_or_default()
}

/// Final reply (or 408) to a peer message: hand it to the consumer's
/// callback, with the node it went to.
fn run_response_callback(code: i32, reply: TmReply<'_>, uri: &NodeUri, callback: Option<ResponseCallback>) {
    if code >= 300 {
        log::debug!("peer message to {uri} answered {code}");
    }
    let Some(callback) = callback else { return };
    if !callback.call(code, reply, &cluster::node_or_stand_in(uri)) {
        log::warn!("response callback for a message to {uri} failed");
    }
}

fn on_tm_reply(code: i32, reply: TmReply<'_>, context: &[u8]) {
    let Some(mut message) = TmMessage::decode(context) else { return };
    if code == 503 || code == 403 {
        // A node whose job queue is full: send it again later, as the
        // in-flight path does, instead of handing the consumer a lost copy.
        // A 403: the node does not list us (members_only); it hears from
        // us now and the message goes again after it.
        if code == 403 {
            cluster::renotify(&message.target);
        }
        let now = monotonic_ms();
        if let Some((due, next)) = pending::retry_after_busy(now, message.deadline_ms, message.backoff_ms) {
            message.backoff_ms = next;
            if BUSY_RETRIES.get().is_some_and(|q| q.push(due, &message.encode())) {
                return;
            }
            log::warn!("DMQ retry queue full: a 503 from {} is final", message.target);
        }
    }
    if code == 408 && reply.msg().is_none() {
        event_counts::add(EventCount::TmTimeouts);
    } else {
        event_counts::add_reply(code);
    }
    run_response_callback(code, reply, &message.target, message.callback);
}

/// The timer process: sends again the tm-path messages due after a 503.
fn resend_busy(m: &Module, now_ms: u64) {
    let Some(queue) = BUSY_RETRIES.get() else { return };
    for record in queue.take_due(now_ms) {
        let Some(message) = TmMessage::decode(record.bytes()) else { continue };
        if let Err(e) = send_tm_message(m, &message) {
            log::error!("cannot send a {} message to {} again: {e}", message.peer_id, message.target);
            run_response_callback(503, TmReply::none(), &message.target, message.callback);
        }
    }
}

fn send_tm_message(m: &Module, message: &TmMessage) -> Result<(), String> {
    let hop = cluster::next_hops(std::slice::from_ref(&message.target)).pop().flatten();
    let kdmq = Kdmq {
        from: &m.local_uri,
        to: &message.target,
        peer: message.peer_id,
        max_forwards: message.max_forwards,
        content_type: message.content_type,
        body: message.body,
        signing: m.signing(),
    };
    m.send_through_tm(&kdmq, hop.as_deref(), on_tm_reply, &message.encode())
}

/// One peer message through tm: for nodes over TCP/TLS, nodes without a
/// resolved address, and when the in-flight table is full.
fn send_through_tm(
    m: &Module,
    peer_id: &str,
    target: &NodeUri,
    body: &[u8],
    content_type: &str,
    max_forwards: i32,
    callback: Option<ResponseCallback>,
) -> Result<(), String> {
    let message = TmMessage {
        callback,
        target: target.clone(),
        peer_id,
        content_type,
        max_forwards,
        body,
        deadline_ms: monotonic_ms() + pending::TIMEOUT_MS,
        backoff_ms: pending::T1_MS,
    };
    send_tm_message(m, &message)
}

/// Sends `body` for `peer_id` to each target; counts failures.
pub fn send_to(
    peer_id: &str,
    targets: &[Node],
    body: &[u8],
    content_type: &str,
    max_forwards: i32,
    callback: Option<ResponseCallback>,
) -> Result<(), String> {
    let m = module().ok_or("dmq is not initialized")?;
    let mut failed = 0;
    let message = in_flight::PeerMessage::new(peer_id, body, content_type, max_forwards, callback);
    for target in targets {
        let sent = match in_flight::send(&message, &target.uri, target.ip()) {
            Err(SendError::NoSlot) => send_through_tm(m, peer_id, &target.uri, body, content_type, max_forwards, callback)
                .inspect(|()| event_counts::add(EventCount::MessagesSentThroughTm)),
            Err(SendError::Failed(e)) => Err(e),
            Ok(()) => Ok(()),
        };
        match sent {
            Ok(()) => event_counts::add(EventCount::MessagesSent),
            Err(e) => {
                log::error!("cannot send a {peer_id} message to {}: {e}", target.uri);
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(format!("{failed} of {} sends failed", targets.len()));
    }
    Ok(())
}

/// Active remote nodes except `except`, each node once and never this one
/// (`dmq_core::sources::distinct_targets`: a node listed under its name
/// and an address, or a name that resolves to this node).
pub fn active_targets(except: Option<&NodeUri>) -> Vec<Node> {
    cluster::read_nodes(|list| {
        dmq_core::sources::distinct_targets(list, false)
            .into_iter()
            .filter(|t| except.is_none_or(|e| !e.same_node(&t.uri)))
            .cloned()
            .collect()
    })
    .unwrap_or_default()
}
