//! The `dmq_api_t` C API that htable, dmq_usrloc, dialog and presence bind
//! to with `find_export("bind_dmq", 0, 0)`, converted at the door. Each
//! build fills exactly its release's table (bindgen's `dmq_api_t` from that
//! release's bind_dmq.h): four members on 5.6 and 6.0, five on 6.1, which
//! added `get_dmq_server_socket`. Consumers' arguments are converted: consumers' peers, callbacks and node pointers become [`Peer`],
//! [`ResponseCallback`] and [`Node`]s; the module implements [`DmqApi`] in
//! plain Rust.
//!
//! - Peers keep the stock `dmq_peer_t` layout in shm, because consumers hold
//!   on to the pointer `register_dmq_peer` returns and pass it back on every
//!   send. The list of them ([`PeerList`]) lives in a module `ShmMutex`.
//! - Node handles: consumers receive `dmq_node_t` pointers (a message's
//!   sender, the node a reply came from) and hand them back. The node list
//!   lives in shm in our own encoding, so each process keeps one stock-layout
//!   `dmq_node_t` per node URI it has shown a consumer: stable for the life of
//!   the process, never freed (bounded by the number of distinct nodes).

use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::net::IpAddr;
use std::ptr::NonNull;
use std::sync::Mutex;

use dmq_core::node_status::NodeStatus;
use dmq_core::node_uri::{self, NodeUri};
use dmq_core::nodes::Node;
use dmq_core::peer_message;

use crate::raw;
use kamailio::kstr;
use kamailio::panic_guard::guard;
use kamailio::shm::{ShmData, ShmZeroed};
use kamailio::sip_msg::SipMsg;
use kamailio::tm::TmReply;

/// What the module does for each function of the API.
pub trait DmqApi {
    /// `register_dmq_peer`: registers `spec` (None: refused, e.g. a second
    /// peer with the same id, as stock).
    fn register_peer(spec: &PeerSpec<'_>) -> Option<Peer>;
    /// `bcast_message`: `peer`'s message to every active node but `except`.
    fn bcast_message(peer: Peer, message: &PeerMessage<'_>, except: Option<NodeUri>) -> Result<(), String>;
    /// `send_message`: `peer`'s message to one node.
    fn send_message(peer: Peer, message: &PeerMessage<'_>, node: NodeUri) -> Result<(), String>;
    /// `find_dmq_node_uri`: the listed node for a URI.
    fn find_node(uri: &NodeUri) -> Option<Node>;
    /// `get_dmq_server_socket` (6.1): the socket DMQ sends from, as the
    /// core names sockets ("udp:127.0.0.2:5090"); None before mod_init.
    fn server_socket() -> Option<String>;
}

/// A peer message with a consumer's response callback: what the module
/// sends, whoever asked (a consumer through this API, or the script).
pub type PeerMessage<'a> = peer_message::PeerMessage<'a, ResponseCallback>;

/// A registered peer: a stock-layout `dmq_peer_t` in shm, never freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer(NonNull<raw::dmq_peer>);

// SAFETY: a pointer into shm (see `PeerList::add`), valid in every process.
unsafe impl ShmData for Peer {}
// SAFETY: registered peers are never freed and never change after
// registration (only `next`, under the registry lock), so sharing the
// pointer between threads is as sound as between processes.
unsafe impl Send for Peer {}
// SAFETY: as above.
unsafe impl Sync for Peer {}

/// What a peer's callback asked to reply.
pub struct PeerResponse {
    pub code: i32,
    pub reason: String,
    pub body: Vec<u8>,
    pub content_type: String,
}

impl Peer {
    fn get(&self) -> &raw::dmq_peer {
        // SAFETY: registered peers live in shm for the process tree.
        unsafe { self.0.as_ref() }
    }

    pub fn id(&self) -> String {
        // SAFETY: peer_id points into the peer's own block.
        unsafe { kstr::to_string(&self.get().peer_id) }
    }

    fn id_bytes(&self) -> &[u8] {
        // SAFETY: as above.
        unsafe { kstr::bytes(&self.get().peer_id) }
    }

    pub fn has_callback(&self) -> bool {
        self.get().callback.is_some()
    }

    /// Runs the peer's callback on `msg` from `sender`: its response (the
    /// body copied out of the pkg memory the callback handed over, which is
    /// freed here), or None when the callback failed (or there is none).
    pub fn call(&self, msg: &SipMsg, sender: Option<&Node>) -> Option<PeerResponse> {
        let callback = self.get().callback?;
        let node = sender.map(handle_for).unwrap_or(std::ptr::null_mut());
        let mut resp = raw::peer_reponse_t::default();
        // SAFETY: the peer module's callback with the stock arguments.
        let rc = unsafe { callback(msg.as_ptr(), &mut resp, node) };
        // SAFETY: the body, when set, is pkg memory the callback handed over.
        let body = unsafe { kstr::bytes(&resp.body) }.to_vec();
        if !resp.body.s.is_null() {
            // SAFETY: freed once, as the stock worker does.
            unsafe { raw::krs_pkg_free(resp.body.s as *mut c_void) };
        }
        if rc < 0 {
            return None;
        }
        // SAFETY: reason and content type point to the callback's static or
        // pkg data, alive after it returns (stock semantics).
        let (reason, content_type) = unsafe { (kstr::to_string(&resp.reason), kstr::to_string(&resp.content_type)) };
        Some(PeerResponse { code: resp.resp_code, reason, body, content_type })
    }

    /// Runs the peer's init callback, if it has one: Some(succeeded).
    pub fn run_init(&self) -> Option<bool> {
        let init = self.get().init_callback?;
        // SAFETY: a callback the peer's module registered, no arguments.
        Some(unsafe { init() } >= 0)
    }

    pub fn has_init(&self) -> bool {
        self.get().init_callback.is_some()
    }
}

/// A peer to register: from a consumer's `dmq_peer_t`, or a script channel.
pub struct PeerSpec<'a> {
    id: &'a [u8],
    description: &'a [u8],
    callback: raw::peer_callback_t,
    init_callback: raw::init_callback_t,
}

impl<'a> PeerSpec<'a> {
    /// A channel of the script functions (`dmq_send_message` and friends):
    /// its messages are accepted with 202, as the stock module does (the
    /// script sees them in its own route).
    pub fn script(id: &'a [u8]) -> PeerSpec<'a> {
        PeerSpec { id, description: b"script", callback: Some(script_peer_callback), init_callback: None }
    }

    pub fn id(&self) -> &[u8] {
        self.id
    }
}

/// Why a peer could not be added.
#[derive(Debug, PartialEq, Eq)]
pub enum AddPeerError {
    Exists,
    OutOfShm,
}

/// The registered peers, newest first (for a module `ShmMutex`; zero bytes
/// are the empty list).
#[repr(C)]
pub struct PeerList {
    head: *mut raw::dmq_peer,
}

// SAFETY: null or a pointer to a shm peer block.
unsafe impl ShmData for PeerList {}
// SAFETY: all-zero is the empty list.
unsafe impl ShmZeroed for PeerList {}

impl PeerList {
    pub fn iter(&self) -> impl Iterator<Item = Peer> + '_ {
        let mut p = self.head;
        std::iter::from_fn(move || {
            let peer = NonNull::new(p)?;
            // SAFETY: a listed peer block (the list is read under its lock).
            p = unsafe { peer.as_ref().next };
            Some(Peer(peer))
        })
    }

    pub fn find(&self, id: &[u8]) -> Option<Peer> {
        self.iter().find(|p| p.id_bytes() == id)
    }

    /// Adds a copy of `spec` (its strings in the same shm block).
    pub fn add(&mut self, spec: &PeerSpec<'_>) -> Result<Peer, AddPeerError> {
        if self.find(spec.id).is_some() {
            return Err(AddPeerError::Exists);
        }
        let size = std::mem::size_of::<raw::dmq_peer>() + spec.id.len() + spec.description.len();
        // SAFETY: shm block sized for the struct and both strings, never freed.
        let block = unsafe { raw::krs_shm_mallocxz(size) } as *mut raw::dmq_peer;
        let Some(peer) = NonNull::new(block) else { return Err(AddPeerError::OutOfShm) };
        // SAFETY: block has room for the struct followed by the two strings.
        unsafe {
            let strings = (block as *mut u8).add(std::mem::size_of::<raw::dmq_peer>());
            std::ptr::copy_nonoverlapping(spec.id.as_ptr(), strings, spec.id.len());
            std::ptr::copy_nonoverlapping(spec.description.as_ptr(), strings.add(spec.id.len()), spec.description.len());
            block.write(raw::dmq_peer {
                peer_id: raw::str_ { s: strings as *mut _, len: spec.id.len() as c_int },
                description: raw::str_ { s: strings.add(spec.id.len()) as *mut _, len: spec.description.len() as c_int },
                callback: spec.callback,
                init_callback: spec.init_callback,
                next: self.head,
            });
        }
        self.head = block;
        Ok(Peer(peer))
    }
}

unsafe extern "C" fn script_peer_callback(_msg: *mut raw::sip_msg, resp: *mut raw::peer_reponse_t, _node: *mut raw::dmq_node_t) -> c_int {
    guard("script peer", -1, || {
        if resp.is_null() {
            return -1;
        }
        static REASON: &[u8] = b"Accepted DMQ";
        // SAFETY: the worker passes its own zeroed response struct.
        unsafe {
            (*resp) = raw::peer_reponse_t::default();
            (*resp).resp_code = 202;
            (*resp).reason = kstr::borrowed(REASON);
        }
        0
    })
}

/// A consumer's response callback (`dmq_resp_cback_t`), kept with its
/// message until the final reply.
#[derive(Clone, Copy)]
pub struct ResponseCallback {
    f: unsafe extern "C" fn(*mut raw::sip_msg, c_int, *mut raw::dmq_node_t, *mut c_void) -> c_int,
    param: *mut c_void,
}

// SAFETY: a function of a module loaded before fork, and the consumer's
// parameter, which the stock module keeps in shm just the same (consumers
// pass shm or static data).
unsafe impl ShmData for ResponseCallback {}

impl ResponseCallback {
    /// Hands the final reply (or none: a timeout) to the consumer, with the
    /// node the message went to; false when the callback failed.
    pub fn call(&self, code: i32, reply: TmReply<'_>, node: &Node) -> bool {
        let handle = handle_for(node);
        // SAFETY: the consumer's callback with the arguments of its ABI; the
        // reply is alive for the call (or tm's FAKED_REPLY).
        (unsafe { (self.f)(reply.as_ptr(), code, handle, self.param) }) >= 0
    }

    /// Encodes the callback as bytes (for tm's callback context).
    pub fn to_bytes(&self) -> [u8; 2 * std::mem::size_of::<usize>()] {
        let mut out = [0u8; 2 * std::mem::size_of::<usize>()];
        let (f, p) = (self.f as usize, self.param as usize);
        out[..std::mem::size_of::<usize>()].copy_from_slice(&f.to_ne_bytes());
        out[std::mem::size_of::<usize>()..].copy_from_slice(&p.to_ne_bytes());
        out
    }

    /// Decodes what [`to_bytes`](Self::to_bytes) made in this process tree.
    pub fn from_bytes(bytes: &[u8; 2 * std::mem::size_of::<usize>()]) -> Option<ResponseCallback> {
        const W: usize = std::mem::size_of::<usize>();
        let f = usize::from_ne_bytes(bytes[..W].try_into().ok()?);
        let p = usize::from_ne_bytes(bytes[W..].try_into().ok()?);
        if f == 0 {
            return None;
        }
        // SAFETY: f was a valid callback pointer when encoded by `to_bytes`,
        // in this same process tree (modules are loaded before fork).
        let f = unsafe {
            std::mem::transmute::<usize, unsafe extern "C" fn(*mut raw::sip_msg, c_int, *mut raw::dmq_node_t, *mut c_void) -> c_int>(f)
        };
        Some(ResponseCallback { f, param: p as *mut c_void })
    }

    /// # Safety
    /// `cb` must be NULL or a valid `dmq_resp_cback_t` for the call.
    unsafe fn from_raw(cb: *const raw::dmq_resp_cback_t) -> Option<ResponseCallback> {
        // SAFETY: per the caller.
        let cb = unsafe { cb.as_ref() }?;
        cb.f.map(|f| ResponseCallback { f, param: cb.param })
    }
}

/// The stock module's status bits (dmqnode.h of the release built for).
#[cfg(not(kamailio_6_1))]
fn status_bits(status: NodeStatus) -> i32 {
    (match status {
        NodeStatus::Active => raw::DMQ_NODE_ACTIVE,
        NodeStatus::Timeout => raw::DMQ_NODE_TIMEOUT,
        NodeStatus::Disabled | NodeStatus::NotActive => raw::DMQ_NODE_DISABLED,
        NodeStatus::Pending => raw::DMQ_NODE_PENDING,
    }) as i32
}

/// The stock module's status bits (dmqnode.h of the release built for).
#[cfg(kamailio_6_1)]
fn status_bits(status: NodeStatus) -> i32 {
    (match status {
        NodeStatus::Active => raw::DMQ_NODE_ACTIVE,
        NodeStatus::Disabled => raw::DMQ_NODE_DISABLED,
        NodeStatus::NotActive | NodeStatus::Timeout | NodeStatus::Pending => raw::DMQ_NODE_NOT_ACTIVE,
    }) as i32
}

/// How many node handles a process keeps: twice as many nodes as a list
/// holds, so every listed node keeps its handle while as many again came
/// and went. Nodes come and go (a pod that restarts comes back at a new
/// address): past this many, the handle handed out longest ago is reused
/// for the new node, so the cache is bounded. Its memory stays valid (a
/// consumer still holding it reads the new node, where a stock handle of a
/// removed node would have been freed).
const HANDLE_CAPACITY: usize = 2 * dmq_core::nodes::MAX_NODES;

/// One node's handle: the `dmq_node_t` (leaked, never freed, so a pointer
/// a consumer kept stays valid) and the URI text its `orig_uri` and parsed
/// `uri` point into.
struct Handle {
    node: *mut raw::dmq_node_t,
    /// Held, never read: what `node`'s URI fields point into.
    _uri_text: Box<[u8]>,
    last_used: u64,
}
// SAFETY: a process-private allocation; each process is one thread as far
// as these handles go, the Mutex only satisfies the static.
unsafe impl Send for Handle {}

/// URI text → this process's handle, at most [`HANDLE_CAPACITY`].
#[derive(Default)]
struct HandleCache {
    by_uri: HashMap<String, Handle>,
    uses: u64,
}

static HANDLES: Mutex<Option<HandleCache>> = Mutex::new(None);

impl HandleCache {
    /// The handle of `node`: made on first use, or the least recently used
    /// one given to it past [`HANDLE_CAPACITY`].
    fn handle(&mut self, node: &Node) -> *mut raw::dmq_node_t {
        let uri = node.uri.to_uri();
        self.uses += 1;
        let now = self.uses;
        if let Some(h) = self.by_uri.get_mut(&uri) {
            h.last_used = now;
            return h.node;
        }
        let reused = if self.by_uri.len() >= HANDLE_CAPACITY {
            let oldest = self.by_uri.iter().min_by_key(|(_, h)| h.last_used).map(|(k, _)| k.clone());
            oldest.and_then(|k| self.by_uri.remove(&k))
        } else {
            None
        };
        let mut text = uri.clone().into_bytes().into_boxed_slice();
        let ptr = match reused {
            // SAFETY: this process's own handle; its old text is dropped
            // only after `set_uri` points it at the new one.
            Some(old) => unsafe {
                *old.node = raw::dmq_node_t::default();
                set_uri(&mut *old.node, &mut text);
                old.node
            },
            None => {
                let mut raw_node = Box::new(raw::dmq_node_t::default());
                set_uri(&mut raw_node, &mut text);
                Box::into_raw(raw_node)
            }
        };
        self.by_uri.insert(uri, Handle { node: ptr, _uri_text: text, last_used: now });
        ptr
    }
}

fn fill_ip(node: &mut raw::dmq_node_t, ip: Option<IpAddr>) {
    match ip {
        Some(IpAddr::V4(v4)) => {
            node.ip_address.af = libc::AF_INET as u32;
            node.ip_address.len = 4;
            // SAFETY: writing the byte view of the address union.
            unsafe { node.ip_address.u.addr[..4].copy_from_slice(&v4.octets()) };
        }
        Some(IpAddr::V6(v6)) => {
            node.ip_address.af = libc::AF_INET6 as u32;
            node.ip_address.len = 16;
            // SAFETY: as above.
            unsafe { node.ip_address.u.addr.copy_from_slice(&v6.octets()) };
        }
        None => {}
    }
}

/// Points `node`'s `orig_uri` and parsed `uri` at `text` (which must
/// outlive that use: the cache keeps it with the handle).
fn set_uri(node: &mut raw::dmq_node_t, text: &mut [u8]) {
    node.orig_uri = kstr::borrowed(text);
    // SAFETY: parse_uri fills `uri` with pointers into `text`, kept with
    // the handle until the handle is given another node.
    if unsafe { raw::parse_uri(text.as_mut_ptr() as *mut _, text.len() as i32, &mut node.uri) } < 0 {
        log::warn!("node URI {} does not parse for the dmq_node_t handle", String::from_utf8_lossy(text));
    }
}

/// The handle for `node` (see [`HandleCache::handle`]), refreshed each time.
fn handle_for(node: &Node) -> *mut raw::dmq_node_t {
    let mut guard = HANDLES.lock().unwrap_or_else(|e| e.into_inner());
    let ptr = guard.get_or_insert_with(HandleCache::default).handle(node);
    drop(guard);
    // SAFETY: ptr is this process's own handle, never freed.
    unsafe {
        (*ptr).local = node.local as i32;
        (*ptr).status = status_bits(node.status);
        (*ptr).last_notification = node.last_notification as i32;
        fill_ip(&mut *ptr, node.ip());
    }
    #[cfg(kamailio_6_1)]
    // SAFETY: as above.
    unsafe {
        (*ptr).fail_count = node.fail_count.min(i32::MAX as u32) as i32;
    }
    ptr
}

/// The node a handle stands for (read from its `orig_uri`, so handles of
/// any origin with the stock layout work).
///
/// # Safety
/// `handle` must be NULL or point to a live `dmq_node_t` (stock layout)
/// whose `orig_uri` is valid, as consumers' handles are.
unsafe fn uri_of(handle: *const raw::dmq_node_t) -> Option<NodeUri> {
    // SAFETY: per the caller.
    let handle = unsafe { handle.as_ref() }?;
    // SAFETY: as above.
    let text = unsafe { kstr::to_string(&handle.orig_uri) };
    node_uri::parse_node_line(&text).ok().map(|l| l.uri)
}

unsafe extern "C" fn register_dmq_peer<A: DmqApi>(peer: *mut raw::dmq_peer) -> *mut raw::dmq_peer {
    guard("register_dmq_peer", std::ptr::null_mut(), || {
        // SAFETY: the caller passes NULL or a valid dmq_peer_t for the call.
        let Some(peer) = (unsafe { peer.as_ref() }) else { return std::ptr::null_mut() };
        // SAFETY: the caller's strs are valid for this call.
        let (id, description) = unsafe { (kstr::bytes(&peer.peer_id), kstr::bytes(&peer.description)) };
        let spec = PeerSpec { id, description, callback: peer.callback, init_callback: peer.init_callback };
        A::register_peer(&spec).map(|p| p.0.as_ptr()).unwrap_or(std::ptr::null_mut())
    })
}

/// The common part of `bcast_message` and `send_message`: converts the
/// consumer's arguments, hands the message to `send` and logs a failure.
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
    send: impl FnOnce(Peer, &PeerMessage<'_>) -> Result<(), String>,
) -> c_int {
    let Some(peer) = NonNull::new(peer).map(Peer) else {
        log::error!("{what} without a peer");
        return -1;
    };
    if content_type.is_null() {
        log::error!("{what} for {} without a content type", peer.id());
        return -1;
    }
    // SAFETY: forwarded from the caller.
    let (body, ct, callback) = unsafe { (kstr::bytes_at(body), kstr::bytes_at(content_type), ResponseCallback::from_raw(resp_cback)) };
    let content_type = String::from_utf8_lossy(ct);
    let peer_id = peer.id();
    match send(
        peer,
        &PeerMessage { peer_id: &peer_id, body, content_type: &content_type, max_forwards, callback, sync_since: None, sync_answer: None },
    ) {
        Ok(()) => 0,
        Err(e) => {
            log::error!("{what} for {}: {e}", peer.id());
            -1
        }
    }
}

unsafe extern "C" fn bcast_message<A: DmqApi>(
    peer: *mut raw::dmq_peer_t,
    body: *mut raw::str_,
    except: *mut raw::dmq_node_t,
    resp_cback: *mut raw::dmq_resp_cback_t,
    max_forwards: c_int,
    content_type: *mut raw::str_,
) -> c_int {
    guard("bcast_message", -1, || {
        // SAFETY: NULL or a node handle (ours, or another of stock layout).
        let except = unsafe { uri_of(except) };
        // SAFETY: the consumer's arguments, valid for this call.
        unsafe {
            api_send("bcast_message", peer, body, resp_cback, max_forwards, content_type, |peer, m| A::bcast_message(peer, m, except))
        }
    })
}

unsafe extern "C" fn send_message<A: DmqApi>(
    peer: *mut raw::dmq_peer_t,
    body: *mut raw::str_,
    node: *mut raw::dmq_node_t,
    resp_cback: *mut raw::dmq_resp_cback_t,
    max_forwards: c_int,
    content_type: *mut raw::str_,
) -> c_int {
    guard("send_message", -1, || {
        // SAFETY: NULL or a node handle.
        let node = unsafe { uri_of(node) };
        let send = |peer, m: &PeerMessage<'_>| A::send_message(peer, m, node.ok_or("no node given")?);
        // SAFETY: the consumer's arguments, valid for this call.
        unsafe { api_send("send_message", peer, body, resp_cback, max_forwards, content_type, send) }
    })
}

unsafe extern "C" fn find_dmq_node_uri<A: DmqApi>(uri: *mut raw::str_) -> *mut raw::dmq_node_t {
    guard("find_dmq_node_uri", std::ptr::null_mut(), || {
        // SAFETY: the consumer's argument, valid for this call.
        let text = String::from_utf8_lossy(unsafe { kstr::bytes_at(uri) }).into_owned();
        let Ok(line) = node_uri::parse_node_line(&text) else { return std::ptr::null_mut() };
        A::find_node(&line.uri).map(|n| handle_for(&n)).unwrap_or(std::ptr::null_mut())
    })
}

/// `get_dmq_server_socket` (6.1's fifth member): the server socket as a
/// `str` by value, as stock returns its `server_socket` (the parameter, or
/// the socket made from `server_address`); dmq_usrloc looks it up with
/// `lookup_local_socket`. The text is this process's, made once and never
/// freed, so the `str` stays valid wherever the consumer keeps it.
#[cfg(kamailio_6_1)]
unsafe extern "C" fn get_dmq_server_socket<A: DmqApi>() -> raw::str_ {
    static TEXT: std::sync::OnceLock<&'static [u8]> = std::sync::OnceLock::new();
    let empty = raw::str_ { s: std::ptr::null_mut(), len: 0 };
    guard("get_dmq_server_socket", empty, || {
        let text = match TEXT.get() {
            Some(text) => *text,
            None => {
                let Some(socket) = A::server_socket() else { return empty };
                *TEXT.get_or_init(|| Box::leak(socket.into_bytes().into_boxed_slice()))
            }
        };
        raw::str_ { s: text.as_ptr() as *mut _, len: text.len() as c_int }
    })
}

// The table bind_dmq fills is the consumer's own struct: exactly as large as
// its release's (four function pointers on 5.6 and 6.0, five on 6.1), so a
// build never writes past a consumer's table.
#[cfg(not(kamailio_6_1))]
const _: () = assert!(std::mem::size_of::<raw::dmq_api_t>() == 4 * std::mem::size_of::<usize>());
#[cfg(kamailio_6_1)]
const _: () = assert!(std::mem::size_of::<raw::dmq_api_t>() == 5 * std::mem::size_of::<usize>());

/// `bind_dmq`, for the `cmds` table (`CmdExport::api`): fills a consumer's
/// `dmq_api_t` with `A`'s functions.
///
/// # Safety
/// `api` is NULL or the consumer's `dmq_api_t`, ours to fill.
pub unsafe extern "C" fn bind_dmq<A: DmqApi>(api: *mut c_void) -> c_int {
    guard("bind_dmq", -1, || {
        // SAFETY: per the caller.
        let Some(api) = (unsafe { (api as *mut raw::dmq_api_t).as_mut() }) else { return -1 };
        api.register_dmq_peer = Some(register_dmq_peer::<A>);
        api.bcast_message = Some(bcast_message::<A>);
        api.send_message = Some(send_message::<A>);
        api.find_dmq_node_uri = Some(find_dmq_node_uri::<A>);
        #[cfg(kamailio_6_1)]
        {
            api.get_dmq_server_socket = Some(get_dmq_server_socket::<A>);
        }
        0
    })
}

/// The conversions at the door, without Kamailio: a consumer's view (a
/// `dmq_api_t` that `bind_dmq` filled, stock-layout peers and node handles)
/// against a [`DmqApi`] that records what reached it.
#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// The one Kamailio function the conversions call (a node handle's
    /// parsed URI): a stand-in that leaves the `sip_uri` zeroed.
    #[no_mangle]
    extern "C" fn parse_uri(_buf: *mut std::ffi::c_char, _len: c_int, _uri: *mut raw::sip_uri) -> c_int {
        0
    }

    /// What reached the module: (call, peer id, body, content type,
    /// max_forwards, node URI).
    type Call = (&'static str, String, Vec<u8>, String, i32, Option<String>);

    thread_local! {
        static CALLS: RefCell<Vec<Call>> = const { RefCell::new(Vec::new()) };
        static FAIL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    struct Recorder;

    fn record(call: &'static str, peer: Peer, m: &PeerMessage<'_>, node: Option<NodeUri>) -> Result<(), String> {
        CALLS.with(|c| {
            c.borrow_mut().push((call, peer.id(), m.body.to_vec(), m.content_type.to_string(), m.max_forwards, node.map(|n| n.to_uri())))
        });
        if FAIL.with(|f| f.get()) {
            Err("refused".into())
        } else {
            Ok(())
        }
    }

    impl DmqApi for Recorder {
        fn register_peer(_spec: &PeerSpec<'_>) -> Option<Peer> {
            None
        }
        fn bcast_message(peer: Peer, message: &PeerMessage<'_>, except: Option<NodeUri>) -> Result<(), String> {
            record("bcast", peer, message, except)
        }
        fn send_message(peer: Peer, message: &PeerMessage<'_>, node: NodeUri) -> Result<(), String> {
            record("send", peer, message, Some(node))
        }
        fn find_node(_uri: &NodeUri) -> Option<Node> {
            None
        }
        fn server_socket() -> Option<String> {
            Some("udp:127.0.0.2:5090".into())
        }
    }

    fn calls() -> Vec<Call> {
        CALLS.with(|c| std::mem::take(&mut *c.borrow_mut()))
    }

    fn table() -> raw::dmq_api_t {
        let mut api = raw::dmq_api_t::default();
        // SAFETY: a table of the release's size, ours.
        assert_eq!(unsafe { bind_dmq::<Recorder>(&mut api as *mut _ as *mut c_void) }, 0);
        api
    }

    fn str_of(bytes: &'static [u8]) -> raw::str_ {
        kstr::borrowed(bytes)
    }

    /// A stock-layout peer as a consumer registers it (here on the stack).
    fn peer(id: &'static [u8]) -> raw::dmq_peer {
        raw::dmq_peer { peer_id: str_of(id), description: str_of(b"test"), callback: None, init_callback: None, next: std::ptr::null_mut() }
    }

    /// A node handle of stock layout, as another module could hand over.
    fn handle(uri: &'static [u8]) -> raw::dmq_node_t {
        raw::dmq_node_t { orig_uri: str_of(uri), ..Default::default() }
    }

    #[test]
    fn bind_dmq_fills_every_member_of_the_release_and_refuses_null() {
        let api = table();
        assert!(api.register_dmq_peer.is_some() && api.bcast_message.is_some());
        assert!(api.send_message.is_some() && api.find_dmq_node_uri.is_some());
        #[cfg(kamailio_6_1)]
        assert!(api.get_dmq_server_socket.is_some());
        // SAFETY: NULL is what the function must refuse.
        assert_eq!(unsafe { bind_dmq::<Recorder>(std::ptr::null_mut()) }, -1);
    }

    #[test]
    fn a_broadcast_arrives_as_plain_values() {
        let api = table();
        let mut p = peer(b"htable");
        let (mut body, mut ct) = (str_of(br#"{"action":1}"#), str_of(b"application/json"));
        let mut except = handle(b"sip:127.0.0.3:5060");
        // SAFETY: the consumer's arguments, valid for the call.
        let rc = unsafe { api.bcast_message.unwrap()(&mut p, &mut body, &mut except, std::ptr::null_mut(), 1, &mut ct) };
        assert_eq!(rc, 0);
        let got = calls();
        assert_eq!(got.len(), 1);
        let (call, id, got_body, got_ct, mf, node) = &got[0];
        assert_eq!(
            (*call, id.as_str(), got_body.as_slice(), got_ct.as_str(), *mf),
            ("bcast", "htable", &br#"{"action":1}"#[..], "application/json", 1)
        );
        assert_eq!(node.as_deref(), Some("sip:127.0.0.3:5060"), "the node left out is read from its handle");
        // No node left out: None.
        // SAFETY: as above.
        unsafe { api.bcast_message.unwrap()(&mut p, &mut str_of(b"x"), std::ptr::null_mut(), std::ptr::null_mut(), 2, &mut ct) };
        assert_eq!(calls()[0].5, None);
    }

    #[test]
    fn a_send_needs_a_peer_a_content_type_and_a_node() {
        let api = table();
        let mut p = peer(b"usrloc");
        let (mut body, mut ct) = (str_of(b"{}"), str_of(b"application/json"));
        let mut node = handle(b"sip:127.0.0.4:5070;transport=tcp");
        let send = api.send_message.unwrap();
        // SAFETY: the consumer's arguments (or NULLs it may pass), valid for the call.
        unsafe {
            assert_eq!(send(&mut p, &mut body, &mut node, std::ptr::null_mut(), 1, &mut ct), 0);
            assert_eq!(calls()[0].5.as_deref(), Some("sip:127.0.0.4:5070;transport=tcp"));
            assert_eq!(send(&mut p, &mut body, std::ptr::null_mut(), std::ptr::null_mut(), 1, &mut ct), -1, "no node");
            assert_eq!(send(std::ptr::null_mut(), &mut body, &mut node, std::ptr::null_mut(), 1, &mut ct), -1, "no peer");
            assert_eq!(send(&mut p, &mut body, &mut node, std::ptr::null_mut(), 1, std::ptr::null_mut()), -1, "no content type");
        }
        assert!(calls().is_empty(), "none of the refused ones reached the module");
        // The module's refusal is the consumer's -1.
        FAIL.with(|f| f.set(true));
        // SAFETY: as above.
        let rc = unsafe { send(&mut p, &mut body, &mut node, std::ptr::null_mut(), 1, &mut ct) };
        FAIL.with(|f| f.set(false));
        assert_eq!(rc, -1);
        calls();
    }

    #[test]
    fn a_node_handle_is_stable_and_carries_the_nodes_state() {
        let uri = node_uri::parse_node_line("sip:10.0.0.7:5060").unwrap().uri;
        let mut node = Node::new(uri, NodeStatus::Active);
        node.ips = vec!["10.0.0.7".parse().unwrap()];
        let first = handle_for(&node);
        // SAFETY: this process's own handle, never freed.
        let h = unsafe { &*first };
        assert_eq!(h.status, status_bits(NodeStatus::Active));
        assert_eq!((h.ip_address.af, h.ip_address.len), (libc::AF_INET as u32, 4));
        // SAFETY: the address union's byte view, as `fill_ip` wrote it.
        assert_eq!(unsafe { &h.ip_address.u.addr[..4] }, &[10, 0, 0, 7]);
        // SAFETY: as above.
        assert_eq!(unsafe { uri_of(first) }.map(|u| u.to_uri()).as_deref(), Some("sip:10.0.0.7:5060"));
        node.status = NodeStatus::Disabled;
        assert_eq!(handle_for(&node), first, "one handle per node while it is in use");
        // SAFETY: as above.
        assert_eq!(unsafe { (*first).status }, status_bits(NodeStatus::Disabled), "refreshed on each use");
    }

    #[test]
    fn node_handles_are_bounded_and_reused_oldest_first() {
        let node = |i: usize| {
            Node::new(node_uri::parse_node_line(&format!("sip:10.1.{}.{}:5060", i / 250, i % 250)).unwrap().uri, NodeStatus::Active)
        };
        let mut cache = HandleCache::default();
        let kept = node(0);
        let kept_handle = cache.handle(&kept);
        let mut allocations = std::collections::BTreeSet::new();
        for i in 1..HANDLE_CAPACITY * 3 {
            allocations.insert(cache.handle(&node(i)) as usize);
            // A node in use all along keeps its handle.
            assert_eq!(cache.handle(&kept), kept_handle);
        }
        assert_eq!(cache.by_uri.len(), HANDLE_CAPACITY);
        assert!(allocations.len() < HANDLE_CAPACITY, "{} allocations for {} nodes", allocations.len(), HANDLE_CAPACITY * 3);
        // A reused handle names its new node, and reads back as it.
        let last = node(HANDLE_CAPACITY * 3);
        let h = cache.handle(&last);
        assert!(allocations.contains(&(h as usize)), "an old handle was reused");
        // SAFETY: this process's own handle, never freed.
        assert_eq!(unsafe { uri_of(h) }.map(|u| u.to_uri()), Some(last.uri.to_uri()));
    }

    #[test]
    fn status_words_are_the_releases() {
        assert_eq!(status_bits(NodeStatus::Active), raw::DMQ_NODE_ACTIVE as i32);
        assert_eq!(status_bits(NodeStatus::Disabled), raw::DMQ_NODE_DISABLED as i32);
        #[cfg(kamailio_6_1)]
        assert_eq!(status_bits(NodeStatus::Timeout), raw::DMQ_NODE_NOT_ACTIVE as i32);
        #[cfg(not(kamailio_6_1))]
        assert_eq!(status_bits(NodeStatus::Timeout), raw::DMQ_NODE_TIMEOUT as i32);
    }

    unsafe extern "C" fn consumer_callback(
        _msg: *mut raw::sip_msg,
        _code: c_int,
        _node: *mut raw::dmq_node_t,
        _param: *mut c_void,
    ) -> c_int {
        0
    }

    #[test]
    fn a_response_callback_survives_its_bytes() {
        let param = 0x1234usize as *mut c_void;
        let raw_cb = raw::dmq_resp_cback_t { f: Some(consumer_callback), param };
        // SAFETY: a valid callback struct.
        let cb = unsafe { ResponseCallback::from_raw(&raw_cb) }.unwrap();
        let back = ResponseCallback::from_bytes(&cb.to_bytes()).unwrap();
        assert_eq!((back.f as usize, back.param), (consumer_callback as *const () as usize, param));
        assert!(ResponseCallback::from_bytes(&[0; 2 * std::mem::size_of::<usize>()]).is_none(), "no function: no callback");
        // SAFETY: NULL is allowed.
        assert!(unsafe { ResponseCallback::from_raw(std::ptr::null()) }.is_none());
    }
}
