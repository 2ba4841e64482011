//! A stand-in cluster node: a UDP socket the test drives, to see exactly
//! what a node sends a peer and to answer it (or not, or falsely).

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::{allocate_address, kdmq, Node};

/// A stand-in cluster node: a UDP socket on its own loopback address.
pub struct FakeNode {
    pub sock: UdpSocket,
    pub addr: SocketAddr,
}

/// A datagram the fake node received, with where it came from.
pub struct Received {
    pub text: String,
    pub from: SocketAddr,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<String> {
        self.text.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    pub fn branch(&self) -> String {
        self.header("Via").and_then(|v| v.split("branch=").nth(1).map(|b| b.split(';').next().unwrap().to_string())).unwrap()
    }

    /// A reply to this request, with `edit` applied to its header lines.
    pub fn reply(&self, code: u16, edit: impl Fn(&str) -> String) -> Vec<u8> {
        let mut out = format!("SIP/2.0 {code} Whatever\r\n");
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            let line = format!("{name}: {}", self.header(name).unwrap());
            out += &edit(&line);
            out += "\r\n";
        }
        out += "Content-Length: 0\r\n\r\n";
        out.into_bytes()
    }
}

impl FakeNode {
    pub fn new() -> FakeNode {
        let sock = UdpSocket::bind(allocate_address()).unwrap();
        let addr = sock.local_addr().unwrap();
        FakeNode { sock, addr }
    }

    /// Joins `node`'s cluster: a notification listing itself as active.
    pub fn join(&self, node: &Node) {
        let body = format!("sip:{};status=active\r\n", self.addr);
        let reply = node.sip_exchange(
            &self.sock,
            &kdmq(node.addr, self.addr, "notification_peer", "text/plain", body.as_bytes()),
            Duration::from_secs(5),
        );
        assert!(reply.unwrap_or_default().starts_with("SIP/2.0 200"));
    }

    /// The next datagram within `limit`.
    pub fn recv(&self, limit: Duration) -> Option<Received> {
        let mut buf = vec![0u8; 65536];
        self.sock.set_read_timeout(Some(limit.max(Duration::from_millis(1)))).unwrap();
        let (n, from) = self.sock.recv_from(&mut buf).ok()?;
        Some(Received { text: String::from_utf8_lossy(&buf[..n]).into_owned(), from })
    }

    /// Answers every notification and ping with `code` for `time`.
    pub fn answer_pings(&self, code: u16, time: Duration) {
        let start = Instant::now();
        while start.elapsed() < time {
            let Some(got) = self.recv(Duration::from_millis(100)) else { continue };
            if got.text.starts_with("KDMQ sip:notification_peer@") {
                self.sock.send_to(&got.reply(code, |l| l.to_string()), got.from).unwrap();
            }
        }
    }

    /// The next request for `peer` (bounded); notifications and pings on
    /// the way are answered 200, as a node would.
    pub fn next_request(&self, peer: &str, limit: Duration) -> Option<Received> {
        let start = Instant::now();
        while start.elapsed() < limit {
            let Some(got) = self.recv(Duration::from_millis(200)) else { continue };
            if got.text.starts_with(&format!("KDMQ sip:{peer}@")) {
                return Some(got);
            }
            if got.text.starts_with("KDMQ sip:notification_peer@") {
                self.sock.send_to(&got.reply(200, |l| l.to_string()), got.from).unwrap();
            }
        }
        None
    }
}
