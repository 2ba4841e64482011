//! Sending a request from one of Kamailio's own sockets, without tm: a UDP
//! datagram, or bytes on a TCP/TLS connection the core finds or makes.

use std::net::SocketAddr;

use crate::addr;
use crate::raw;
use crate::sip_uri::Proto;
use crate::socket::LocalSocket;

/// Sends `buf` from `socket` to `to` over `transport` (UDP, TCP or TLS; it
/// must be the socket's). Over TCP/TLS success means the core took the
/// bytes onto a connection (its write queue): a connection that breaks
/// later loses them without telling, as for tm.
pub fn send_from(socket: LocalSocket, transport: Proto, to: SocketAddr, buf: &[u8]) -> Result<(), String> {
    if !matches!(transport, Proto::Udp | Proto::Tcp | Proto::Tls) {
        return Err(format!("cannot send over {transport:?} without tm"));
    }
    let proto = transport.to_core();
    let (v6, bytes) = addr::to_bytes(to.ip());
    // SAFETY: the socket is the core's (immutable after startup); bytes and
    // buf are valid for the call; the core keeps nothing of them after it
    // returns (a TCP write queue holds its own copy).
    let rc = unsafe {
        raw::krs_send(
            socket.as_ptr() as *mut _,
            proto as i32,
            i32::from(v6),
            bytes.as_ptr(),
            i32::from(to.port()),
            buf.as_ptr() as *const _,
            buf.len() as i32,
        )
    };
    if rc < 0 {
        return Err(format!("cannot send to {to} over {transport:?} from the socket"));
    }
    Ok(())
}
