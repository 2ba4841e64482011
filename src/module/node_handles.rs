//! `dmq_node_t` handles for the bind_dmq API. Consumers receive node pointers
//! (the sender of a message, the node a reply came from) and hand them back
//! to `send_message`/`bcast_message`. The node list itself lives in shm in
//! our own encoding, so each process keeps one stock-layout `dmq_node_t` per
//! node URI it has shown to a consumer: stable for the life of the process,
//! never freed (bounded by the number of distinct nodes), filled with the
//! URI as text and parsed, the IP, status and last notification time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use dmq_core::nodes::Node;
use dmq_core::protocol::{self, NodeStatus, NodeUri};

use crate::host::kstr;
use crate::raw;

/// The stock module's status bits (dmqnode.h).
fn status_bits(status: NodeStatus) -> i32 {
    match status {
        NodeStatus::Active => 1 << 1,
        NodeStatus::Timeout => 1 << 2,
        NodeStatus::Disabled | NodeStatus::NotActive => 1 << 3,
        NodeStatus::Pending => 1 << 4,
    }
}

struct Handle(*mut raw::dmq_node_t);
// SAFETY: a leaked, process-private allocation; each process is one thread
// as far as these handles go, the Mutex only satisfies the static.
unsafe impl Send for Handle {}

/// URI text → this process's handle.
static HANDLES: Mutex<Option<HashMap<String, Handle>>> = Mutex::new(None);

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

/// The handle for `node`, created on first use and refreshed each time.
pub fn handle_for(node: &Node) -> *mut raw::dmq_node_t {
    let text = node.uri.to_uri();
    let mut guard = HANDLES.lock().unwrap_or_else(|e| e.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    let ptr = match map.get(&text) {
        Some(h) => h.0,
        None => {
            // The URI text must outlive the handle: leak it with it.
            let uri_text: &'static mut [u8] = Box::leak(text.clone().into_bytes().into_boxed_slice());
            let mut raw_node = Box::new(raw::dmq_node_t::default());
            raw_node.orig_uri = kstr::borrowed(uri_text);
            // SAFETY: parse_uri fills `uri` with pointers into uri_text,
            // which is never freed.
            if unsafe { raw::parse_uri(uri_text.as_mut_ptr() as *mut _, uri_text.len() as i32, &mut raw_node.uri) } < 0 {
                log::warn!("node URI {text} does not parse for the dmq_node_t handle");
            }
            let ptr = Box::into_raw(raw_node);
            map.insert(text, Handle(ptr));
            ptr
        }
    };
    // SAFETY: ptr is this process's own leaked handle.
    unsafe {
        (*ptr).local = node.local as i32;
        (*ptr).status = status_bits(node.status);
        (*ptr).last_notification = node.last_notification as i32;
        fill_ip(&mut *ptr, node.ip());
    }
    ptr
}

/// The node a handle stands for (read from its `orig_uri`, so handles of
/// any origin with the stock layout work).
///
/// # Safety
/// `handle` must be NULL or point to a live `dmq_node_t` (stock layout)
/// whose `orig_uri` is valid, as the handles `handle_for` makes are.
pub unsafe fn uri_of(handle: *const raw::dmq_node_t) -> Option<NodeUri> {
    if handle.is_null() {
        return None;
    }
    // SAFETY: per the caller's promise.
    let text = unsafe { kstr::to_string(&(*handle).orig_uri) };
    protocol::parse_node_line(&text).ok().map(|l| l.uri)
}
