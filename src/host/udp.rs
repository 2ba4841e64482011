//! Sending a datagram from one of Kamailio's own UDP sockets, without tm.

use std::net::IpAddr;

use crate::raw;

/// Sends `buf` from the local socket `socket` ("udp:127.0.0.2:5090") to
/// `ip:port`. Only for UDP sockets; used at shutdown when tm is gone.
pub fn send_from(socket: &str, ip: IpAddr, port: u16, buf: &[u8]) -> Result<(), String> {
    let ip = ip.to_string();
    // SAFETY: every pointer is valid for its length during the call; the core
    // copies nothing and keeps nothing after sendto returns.
    let rc = unsafe {
        raw::dmq_rs_udp_send_from(
            socket.as_ptr() as *const _,
            socket.len() as i32,
            ip.as_ptr() as *const _,
            ip.len() as i32,
            i32::from(port),
            buf.as_ptr() as *const _,
            buf.len() as i32,
        )
    };
    if rc < 0 {
        return Err(format!("cannot send from {socket} to {ip}:{port}"));
    }
    Ok(())
}
