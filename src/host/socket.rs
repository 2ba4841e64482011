//! The sockets Kamailio listens on.

use crate::host::kstr;
use crate::raw;

/// Whether `socket` ("proto:host[:port]") names a socket this Kamailio
/// listens on (the core's `lookup_local_socket`).
pub fn is_local_socket(socket: &str) -> bool {
    let mut s = kstr::borrowed(socket.as_bytes());
    // SAFETY: `s` views `socket`, alive for the call; the core only reads it
    // (it parses into its own buffers) and the socket list is built by now.
    unsafe { !raw::lookup_local_socket(&mut s).is_null() }
}
