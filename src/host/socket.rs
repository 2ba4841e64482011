//! The sockets Kamailio listens on.

use crate::host::kstr;
use crate::raw;

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
    /// The socket `socket` ("proto:host[:port]") names, if Kamailio listens
    /// on it (the core's `lookup_local_socket`).
    pub fn lookup(socket: &str) -> Option<LocalSocket> {
        let mut s = kstr::borrowed(socket.as_bytes());
        // SAFETY: `s` views `socket`, alive for the call; the core only reads
        // it (it parses into its own buffers) and the socket list is built.
        let si = unsafe { raw::lookup_local_socket(&mut s) };
        (!si.is_null()).then_some(LocalSocket(si))
    }

    pub fn as_ptr(self) -> *mut raw::socket_info {
        self.0
    }
}
