//! The sockets Kamailio listens on.

use crate::kstr;
use crate::raw;
use crate::sip_uri::Proto;

/// One of the core's listening sockets. Found once in mod_init: the core
/// builds its socket list before mod_init and never frees it, and every
/// process forked afterwards shares it.
#[derive(Clone, Copy, Debug)]
pub struct LocalSocket(*mut raw::socket_info);

// SAFETY: a pointer into the core's socket list, immutable after startup.
unsafe impl Send for LocalSocket {}
// SAFETY: as above.
unsafe impl Sync for LocalSocket {}

impl LocalSocket {
    /// The socket `socket` (`proto:host[:port]`) names, if Kamailio listens
    /// on it (the core's `lookup_local_socket`).
    pub fn lookup(socket: &str) -> Option<LocalSocket> {
        let mut s = kstr::borrowed(socket.as_bytes());
        // SAFETY: `s` views `socket`, alive for the call; the core only reads
        // it (it parses into its own buffers) and the socket list is built.
        let si = unsafe { raw::lookup_local_socket(&mut s) };
        (!si.is_null()).then_some(LocalSocket(si))
    }

    /// What a Via header names for this socket (`host:port`, IPv6 in
    /// brackets, the advertised address if any) and its transport (None
    /// for one [`send_from`](crate::send::send_from) cannot send on:
    /// SCTP, WebSocket).
    pub fn sent_by(self) -> Option<(String, Option<Proto>)> {
        let mut buf = [0u8; 320];
        // SAFETY: the core's socket (immutable after startup); the shim
        // writes at most buf.len() bytes, NUL-terminated.
        let proto = unsafe { raw::krs_socket_sent_by(self.0 as *mut _, buf.as_mut_ptr() as *mut _, buf.len() as i32) };
        if proto < 0 {
            return None;
        }
        let text = std::ffi::CStr::from_bytes_until_nul(&buf).ok()?.to_str().ok()?.to_string();
        let transport = Proto::from_core(proto as u32).filter(|p| matches!(p, Proto::Udp | Proto::Tcp | Proto::Tls));
        Some((text, transport))
    }

    pub(crate) fn as_ptr(self) -> *mut raw::socket_info {
        self.0
    }
}
