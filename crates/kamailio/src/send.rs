//! Sending a request from one of Kamailio's own sockets, without tm: a UDP
//! datagram, or bytes on a TCP/TLS connection the core finds or makes.

use std::fmt;
use std::net::SocketAddr;

use crate::addr;
use crate::raw;
use crate::sip_uri::Proto;
use crate::socket::LocalSocket;

/// Why [`send_from`] sent nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// Only UDP, TCP and TLS go without tm.
    Transport(Proto),
    /// The core could not send to this address over this transport from
    /// the socket (no connection, a full write queue, a socket error).
    Failed {
        /// Where it was for.
        to: SocketAddr,
        /// Over what.
        transport: Proto,
    },
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Transport(transport) => write!(f, "cannot send over {transport:?} without tm"),
            SendError::Failed { to, transport } => write!(f, "cannot send to {to} over {transport:?} from the socket"),
        }
    }
}

impl std::error::Error for SendError {}

/// Sends `buf` from `socket` to `to` over `transport` (UDP, TCP or TLS; it
/// must be the socket's). Over TCP/TLS success means the core took the
/// bytes onto a connection (its write queue): a connection that breaks
/// later loses them without telling, as for tm.
pub fn send_from(socket: LocalSocket, transport: Proto, to: SocketAddr, buf: &[u8]) -> Result<(), SendError> {
    if !matches!(transport, Proto::Udp | Proto::Tcp | Proto::Tls) {
        return Err(SendError::Transport(transport));
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
        return Err(SendError::Failed { to, transport });
    }
    Ok(())
}
