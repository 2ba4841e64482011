//! Sending a datagram from one of Kamailio's own UDP sockets, without tm.

use std::net::SocketAddr;

use crate::host::addr;

use crate::host::socket::LocalSocket;
use crate::host::raw;

/// Sends `buf` from `socket` (a UDP socket: others are refused) to `to`.
pub fn send_from(socket: LocalSocket, to: SocketAddr, buf: &[u8]) -> Result<(), String> {
    let (v6, bytes) = addr::to_bytes(to.ip());
    // SAFETY: the socket is the core's; bytes and buf are valid for the
    // call; the core keeps nothing after sendto returns.
    let rc = unsafe {
        raw::dmq_rs_udp_send(socket.as_ptr() as *mut _, i32::from(v6), bytes.as_ptr(), i32::from(to.port()), buf.as_ptr() as *const _, buf.len() as i32)
    };
    if rc < 0 {
        return Err(format!("cannot send to {to} from the DMQ socket"));
    }
    Ok(())
}
