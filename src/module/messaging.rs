//! Outgoing peer messages and the `bind_dmq` API (stock 5.6 ABI): what
//! htable, dmq_usrloc, dialog and presence call to replicate their data.
//! Targets are copied under the node-list lock; sending happens after it is
//! released, so concurrent senders never queue behind each other's sends.

use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

use dmq_core::nodes::Node;
use dmq_core::pending;
use dmq_core::protocol::{NodeStatus, NodeUri};

use crate::host::clock::monotonic_ms;
use crate::host::kstr;
use crate::host::shm_queue::ShmQueue;
use crate::host::panic_guard::guard;
use crate::host::tm::{self, KdmqRequest};
use crate::raw;

use super::cluster;
use super::in_flight;
use super::lifecycle::Module;
use super::node_handles;
use super::peers::{self, Peer};

/// A consumer's response callback (`dmq_resp_cback_t`).
#[derive(Clone, Copy)]
pub struct ResponseCallback {
    pub f: unsafe extern "C" fn(*mut raw::sip_msg, c_int, *mut raw::dmq_node_t, *mut c_void) -> c_int,
    pub param: *mut c_void,
}

impl ResponseCallback {
    /// # Safety
    /// `cb` must be NULL or a valid `dmq_resp_cback_t` for the call.
    unsafe fn from_raw(cb: *const raw::dmq_resp_cback_t) -> Option<ResponseCallback> {
        if cb.is_null() {
            return None;
        }
        // SAFETY: valid per the caller's promise.
        let cb = unsafe { &*cb };
        cb.f.map(|f| ResponseCallback { f, param: cb.param })
    }
}

/// A peer message sent through tm, kept as its tm callback context:
/// everything needed to send it again when a busy node answers 503. It
/// borrows its parts (from the sender's arguments, or from the context
/// bytes it was decoded from): nothing is copied but into tm's context.
struct TmMessage<'a> {
    cb: Option<ResponseCallback>,
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

impl<'a> TmMessage<'a> {
    /// [cb? u8][f usize][param usize][max_forwards i32][deadline u64]
    /// [backoff u64], then uri, peer id, content type and body, each as
    /// [len u32][bytes]. Function pointers are valid in every process of
    /// the tree (modules are loaded before fork).
    fn encode(&self) -> Vec<u8> {
        let uri = self.target.to_uri();
        let mut out = Vec::with_capacity(64 + uri.len() + self.peer_id.len() + self.content_type.len() + self.body.len());
        out.push(self.cb.is_some() as u8);
        let (f, p) = self.cb.map(|c| (c.f as usize, c.param as usize)).unwrap_or((0, 0));
        out.extend_from_slice(&f.to_ne_bytes());
        out.extend_from_slice(&p.to_ne_bytes());
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
        const W: usize = std::mem::size_of::<usize>();
        let has_cb = take(&mut ctx, 1)?[0] == 1;
        let f = usize::from_ne_bytes(take(&mut ctx, W)?.try_into().ok()?);
        let p = usize::from_ne_bytes(take(&mut ctx, W)?.try_into().ok()?);
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
        let cb = if has_cb && f != 0 {
            // SAFETY: f was a valid callback function pointer when encoded, in
            // this same process tree (modules are loaded before fork).
            Some(ResponseCallback { f: unsafe { std::mem::transmute::<usize, _>(f) }, param: p as *mut c_void })
        } else {
            None
        };
        Some(TmMessage { cb, target, peer_id, content_type, max_forwards, body, deadline_ms, backoff_ms })
    }
}

/// tm-path messages a busy node answered 503, waiting to be sent again
/// (by the in-flight timer process). Bounded: beyond it a 503 is final.
static BUSY_RETRIES: OnceLock<ShmQueue> = OnceLock::new();
const BUSY_RETRY_LIMIT: usize = 8192;

/// mod_init: the retry queue.
pub fn init() -> Result<(), String> {
    let queue = ShmQueue::new(BUSY_RETRY_LIMIT).ok_or("out of shm for the DMQ retry queue")?;
    BUSY_RETRIES.set(queue).map_err(|_| "retry queue initialized twice".to_string())
}

/// The tm-path retry figures: (waiting now, sent again so far).
pub fn busy_retry_stats() -> (usize, u64) {
    BUSY_RETRIES.get().map(|q| q.stats()).unwrap_or_default()
}

/// The node for `uri` as a handle: the listed node, or a stand-in when it
/// has left the list meanwhile (callbacks still get a node).
fn handle_for_uri(uri: &NodeUri) -> *mut raw::dmq_node_t {
    let node = cluster::read_nodes(|list| list.find(uri).cloned()).flatten();
    node_handles::handle_for(&node.unwrap_or_else(|| Node::new(uri.clone(), NodeStatus::Disabled)))
}

/// Final reply (or 408) to a peer message: hand it to the consumer's
/// callback with the stock arguments (the reply as received, or tm's
/// FAKED_REPLY marker on a timeout).
///
/// # Safety
/// `reply` must be NULL, tm's FAKED_REPLY, or a reply alive for this call;
/// `cb` a callback the consumer gave for this message.
pub unsafe fn run_response_callback(code: i32, reply: *mut raw::sip_msg, uri: &NodeUri, cb: Option<ResponseCallback>) {
    if code >= 300 {
        log::debug!("peer message to {uri} answered {code}");
    }
    let Some(cb) = cb else { return };
    let node = handle_for_uri(uri);
    // SAFETY: the consumer's callback with the arguments its ABI expects.
    if unsafe { (cb.f)(reply, code, node, cb.param) } < 0 {
        log::warn!("response callback for a message to {uri} failed");
    }
}

fn on_tm_reply(code: i32, reply: *mut raw::sip_msg, context: &[u8]) {
    let Some(mut message) = TmMessage::decode(context) else { return };
    if code == 503 {
        // A node whose job queue is full: send it again later, as the
        // in-flight path does, instead of handing the consumer a lost copy.
        let now = monotonic_ms();
        if let Some((due, next)) = pending::retry_after_busy(now, message.deadline_ms, message.backoff_ms) {
            message.backoff_ms = next;
            if BUSY_RETRIES.get().is_some_and(|q| q.push(due, &message.encode())) {
                return;
            }
            log::warn!("DMQ retry queue full: a 503 from {} is final", message.target);
        }
    }
    // SAFETY: the reply tm passes to this callback (or FAKED_REPLY).
    unsafe { run_response_callback(code, reply, &message.target, message.cb) };
}

/// The timer process: sends again the tm-path messages due after a 503.
pub fn resend_busy(m: &Module, now_ms: u64) {
    let Some(queue) = BUSY_RETRIES.get() else { return };
    for record in queue.take_due(now_ms) {
        let Some(message) = TmMessage::decode(record.bytes()) else { continue };
        if let Err(e) = send_tm_message(m, &message) {
            log::error!("cannot send a {} message to {} again: {e}", message.peer_id, message.target);
            // SAFETY: FAKED_REPLY stands for "no reply", as consumers expect.
            unsafe { run_response_callback(503, tm::FAKED_REPLY, &message.target, message.cb) };
        }
    }
}

fn send_tm_message(m: &Module, message: &TmMessage) -> Result<(), String> {
    let from = m.local_uri.with_user(message.peer_id);
    let to = message.target.with_user(message.peer_id);
    let req = KdmqRequest {
        to: &to,
        from: &from,
        body: message.body,
        content_type: message.content_type,
        max_forwards: message.max_forwards,
        socket: &m.server_socket,
    };
    tm::send(&m.tm, &req, on_tm_reply, &message.encode())
}

/// One peer message through tm: for nodes over TCP/TLS, nodes without a
/// resolved address, and when the in-flight table is full.
pub fn send_through_tm(
    m: &Module,
    peer_id: &str,
    target: &NodeUri,
    body: &[u8],
    content_type: &str,
    max_forwards: i32,
    cb: Option<ResponseCallback>,
) -> Result<(), String> {
    let message = TmMessage {
        cb,
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
    cb: Option<ResponseCallback>,
) -> Result<(), String> {
    let mut failed = 0;
    for target in targets {
        if let Err(e) = in_flight::send(peer_id, &target.uri, target.ip(), body, content_type, max_forwards, cb) {
            log::error!("cannot send a {peer_id} message to {}: {e}", target.uri);
            failed += 1;
        }
    }
    if failed > 0 {
        return Err(format!("{failed} of {} sends failed", targets.len()));
    }
    Ok(())
}

/// Active remote nodes except `except`.
pub fn active_targets(except: Option<&NodeUri>) -> Vec<Node> {
    cluster::read_nodes(|list| list.target_nodes(false).filter(|t| except.is_none_or(|e| !e.same_node(&t.uri))).cloned().collect())
        .unwrap_or_default()
}

/// The common part of the API's `bcast_message` and `send_message`: checks
/// the arguments, then sends to the nodes `targets` picks.
///
/// # Safety
/// The pointers are the consumer's arguments, NULL or valid for the call.
unsafe fn api_send(
    what: &str,
    peer: *mut raw::dmq_peer_t,
    body: *const raw::str_,
    resp_cback: *const raw::dmq_resp_cback_t,
    max_forwards: c_int,
    content_type: *const raw::str_,
    targets: impl FnOnce() -> Result<Vec<Node>, String>,
) -> c_int {
    if peer.is_null() {
        log::error!("{what} without a peer");
        return -1;
    }
    // SAFETY: consumers pass back the peer `register_dmq_peer` gave them.
    let peer = unsafe { Peer::from_raw(peer) };
    if content_type.is_null() {
        log::error!("{what} for {} without a content type", peer.id());
        return -1;
    }
    let targets = match targets() {
        Ok(t) => t,
        Err(e) => {
            log::error!("{what} for {}: {e}", peer.id());
            return -1;
        }
    };
    // SAFETY: forwarded from the caller.
    let (body, ct, cb) = unsafe { (kstr::bytes_at(body), kstr::bytes_at(content_type), ResponseCallback::from_raw(resp_cback)) };
    match send_to(&peer.id(), &targets, body, &String::from_utf8_lossy(ct), max_forwards, cb) {
        Ok(()) => 0,
        Err(e) => {
            log::error!("{what} for {}: {e}", peer.id());
            -1
        }
    }
}

/// `bcast_message` of the bind_dmq API: to every active node but `except`.
pub unsafe extern "C" fn bcast_message(
    peer: *mut raw::dmq_peer_t,
    body: *mut raw::str_,
    except: *mut raw::dmq_node_t,
    resp_cback: *mut raw::dmq_resp_cback_t,
    max_forwards: c_int,
    content_type: *mut raw::str_,
) -> c_int {
    guard("bcast_message", -1, || {
        // SAFETY: NULL or a handle we gave the consumer.
        let targets = || Ok(active_targets(unsafe { node_handles::uri_of(except) }.as_ref()));
        // SAFETY: the consumer's arguments, valid for this call.
        unsafe { api_send("bcast_message", peer, body, resp_cback, max_forwards, content_type, targets) }
    })
}

/// `send_message` of the bind_dmq API: to one node.
pub unsafe extern "C" fn send_message(
    peer: *mut raw::dmq_peer_t,
    body: *mut raw::str_,
    node: *mut raw::dmq_node_t,
    resp_cback: *mut raw::dmq_resp_cback_t,
    max_forwards: c_int,
    content_type: *mut raw::str_,
) -> c_int {
    guard("send_message", -1, || {
        let targets = || {
            // SAFETY: NULL or a handle we gave the consumer.
            let uri = unsafe { node_handles::uri_of(node) }.ok_or_else(|| "no node given".to_string())?;
            // A node that left the list meanwhile is still tried (through tm).
            let listed = cluster::read_nodes(|list| list.find(&uri).cloned()).flatten();
            Ok(vec![listed.unwrap_or_else(|| Node::new(uri, NodeStatus::Active))])
        };
        // SAFETY: the consumer's arguments, valid for this call.
        unsafe { api_send("send_message", peer, body, resp_cback, max_forwards, content_type, targets) }
    })
}

/// `find_dmq_node_uri` of the bind_dmq API: the listed node for a URI.
pub unsafe extern "C" fn find_dmq_node_uri(uri: *mut raw::str_) -> *mut raw::dmq_node_t {
    guard("find_dmq_node_uri", std::ptr::null_mut(), || {
        // SAFETY: the consumer's argument, valid for this call.
        let text = String::from_utf8_lossy(unsafe { kstr::bytes_at(uri) }).into_owned();
        let Ok(line) = dmq_core::protocol::parse_node_line(&text) else { return std::ptr::null_mut() };
        match cluster::read_nodes(|list| list.find(&line.uri).cloned()).flatten() {
            Some(node) => node_handles::handle_for(&node),
            None => std::ptr::null_mut(),
        }
    })
}

/// `bind_dmq`: found by other modules with `find_export("bind_dmq", 0, 0)`.
pub unsafe extern "C" fn bind_dmq(api: *mut raw::dmq_api_t) -> c_int {
    guard("bind_dmq", -1, || {
        if api.is_null() {
            return -1;
        }
        // SAFETY: the caller's api struct, ours to fill.
        unsafe {
            (*api).register_dmq_peer = Some(peers::register_dmq_peer);
            (*api).bcast_message = Some(bcast_message);
            (*api).send_message = Some(send_message);
            (*api).find_dmq_node_uri = Some(find_dmq_node_uri);
        }
        0
    })
}
