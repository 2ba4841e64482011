//! A node's address, [`NodeUri`] (host, port, transport), and its parser,
//! [`parse_node_line`]: `sip:[user@]host[:port][;transport=…][;status=…]`,
//! wherever a node is written (a notification body's line, with its
//! status; `server_address` and `notification_address`; an RPC's
//! argument; a From URI; a tm context; the node list in shm). Strict: an
//! unparsable host or port, an unknown status or transport, binary junk
//! or an overlong line is refused.

use std::fmt;

use crate::node_status::NodeStatus;

/// The longest node line accepted. Hosts are limited to 253 bytes (DNS), so
/// any line we accept still fits when we rebuild it with a status parameter
/// (the stock module writes lines into 1 KiB per node).
pub const MAX_LINE_LEN: usize = 512;

/// Transport of a node URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    Sctp,
    Ws,
    Wss,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Sctp => "sctp",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }

    /// The protocol as a Via header names it.
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Sctp => "SCTP",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }

    /// Whether the transport is a connection that retransmits by itself.
    pub fn is_stream(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Tls | Transport::Ws | Transport::Wss)
    }

    pub fn parse(s: &str) -> Option<Transport> {
        Some(match s.to_ascii_lowercase().as_str() {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            "sctp" => Transport::Sctp,
            "ws" => Transport::Ws,
            "wss" => Transport::Wss,
            _ => return None,
        })
    }
}

/// A node address: what identifies a node is host, port and transport (as in
/// the stock module's node comparison), whatever else the URI carried.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeUri {
    /// Host as written; IPv6 keeps its brackets.
    pub host: String,
    /// Port as written ("" when absent).
    pub port: String,
    pub transport: Transport,
}

impl NodeUri {
    /// The port number, 5060 when absent.
    pub fn port_no(&self) -> u16 {
        self.port.parse().unwrap_or(5060)
    }

    /// The line form without status: `sip:host:port[;transport=x]`.
    pub fn to_uri(&self) -> String {
        let mut s = format!("sip:{}", self.host);
        if !self.port.is_empty() {
            s.push(':');
            s.push_str(&self.port);
        }
        if self.transport != Transport::Udp {
            s.push_str(";transport=");
            s.push_str(self.transport.as_str());
        }
        s
    }

    /// `sip:user@host:port[;transport=x]`, as the From/To of KDMQ requests.
    pub fn with_user(&self, user: &str) -> String {
        let uri = self.to_uri();
        format!("sip:{user}@{}", &uri[4..])
    }

    /// The node at `ip` instead of its host (IPv6 in brackets), with its
    /// port written out: where a message to it goes, one form per address.
    pub fn at(&self, ip: std::net::IpAddr) -> NodeUri {
        let host = match ip {
            std::net::IpAddr::V4(v4) => v4.to_string(),
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        };
        NodeUri { host, port: self.port_no().to_string(), transport: self.transport }
    }

    /// The same node (host case-insensitively, port, transport)?
    pub fn same_node(&self, other: &NodeUri) -> bool {
        self.host.eq_ignore_ascii_case(&other.host) && self.port_no() == other.port_no() && self.transport == other.transport
    }
}

impl fmt::Display for NodeUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_uri())
    }
}

/// One line of a notification body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLine {
    pub uri: NodeUri,
    /// `None` when the line had no `;status=` (the stock module then leaves
    /// an existing node as it is, and adds a new one as pending).
    pub status: Option<NodeStatus>,
}

/// Why a URI or a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    Empty,
    TooLong(usize),
    NotText,
    BadScheme,
    BadHost,
    BadPort,
    UnknownStatus(String),
    UnknownTransport(String),
    /// A body line that failed, with its 1-based number.
    Line(usize, Box<ParseError>),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Empty => write!(f, "empty"),
            ParseError::TooLong(n) => write!(f, "too long ({n} bytes)"),
            ParseError::NotText => write!(f, "not printable text"),
            ParseError::BadScheme => write!(f, "not a sip: URI"),
            ParseError::BadHost => write!(f, "bad host"),
            ParseError::BadPort => write!(f, "bad port"),
            ParseError::UnknownStatus(s) => write!(f, "unknown status {s:?}"),
            ParseError::UnknownTransport(s) => write!(f, "unknown transport {s:?}"),
            ParseError::Line(n, e) => write!(f, "line {n}: {e}"),
        }
    }
}

impl std::error::Error for ParseError {}

fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        && !host.starts_with('.')
        && !host.starts_with('-')
}

/// Parses one node line: `sip:[user@]host[:port][;param=value…]`.
pub fn parse_node_line(line: &str) -> Result<NodeLine, ParseError> {
    let line = line.trim_matches(|c| c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\0');
    if line.is_empty() {
        return Err(ParseError::Empty);
    }
    if line.len() > MAX_LINE_LEN {
        return Err(ParseError::TooLong(line.len()));
    }
    if !line.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(ParseError::NotText);
    }
    let rest = if line.len() >= 4 && line[..4].eq_ignore_ascii_case("sip:") {
        &line[4..]
    } else if line.len() >= 5 && line[..5].eq_ignore_ascii_case("sips:") {
        &line[5..]
    } else {
        return Err(ParseError::BadScheme);
    };
    let (hostport, params) = match rest.find(';') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    // headers (?…) are not part of node URIs
    let hostport = hostport.split('?').next().unwrap_or_default();
    let hostport = match hostport.split_once('@') {
        Some((user, rest)) if !user.is_empty() && !rest.contains('@') => rest,
        Some(_) => return Err(ParseError::BadHost),
        None => hostport,
    };
    let (host, port) = if hostport.starts_with('[') {
        match hostport.find(']') {
            Some(end) => {
                let host = &hostport[..=end];
                let after = &hostport[end + 1..];
                match after.strip_prefix(':') {
                    Some(p) => (host, p),
                    None if after.is_empty() => (host, ""),
                    None => return Err(ParseError::BadHost),
                }
            }
            None => return Err(ParseError::BadHost),
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, p),
            None => (hostport, ""),
        }
    };
    if !valid_host(host) {
        return Err(ParseError::BadHost);
    }
    if !port.is_empty() && !matches!(port.parse::<u16>(), Ok(p) if p > 0) {
        return Err(ParseError::BadPort);
    }
    let mut transport = Transport::Udp;
    let mut status = None;
    for param in params.split(';').filter(|p| !p.is_empty()) {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        if name.eq_ignore_ascii_case("status") {
            status = Some(NodeStatus::parse(value).ok_or_else(|| ParseError::UnknownStatus(value.to_string()))?);
        } else if name.eq_ignore_ascii_case("transport") {
            transport = Transport::parse(value).ok_or_else(|| ParseError::UnknownTransport(value.to_string()))?;
        }
    }
    Ok(NodeLine { uri: NodeUri { host: host.to_string(), port: port.to_string(), transport }, status })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> NodeUri {
        parse_node_line(s).unwrap().uri
    }

    #[test]
    fn parses_stock_lines() {
        let l = parse_node_line("sip:192.168.40.16:5060;status=active").unwrap();
        assert_eq!(l.uri.host, "192.168.40.16");
        assert_eq!(l.uri.port, "5060");
        assert_eq!(l.uri.transport, Transport::Udp);
        assert_eq!(l.status, Some(NodeStatus::Active));
        let l = parse_node_line("sip:10.0.0.1:5061;transport=tls;status=disabled").unwrap();
        assert_eq!(l.uri.transport, Transport::Tls);
        assert_eq!(l.status, Some(NodeStatus::Disabled));
        let l = parse_node_line("sip:node.example.com").unwrap();
        assert_eq!(l.uri.port_no(), 5060);
        assert_eq!(l.status, None);
        let l = parse_node_line("sip:[::1]:5090;status=pending").unwrap();
        assert_eq!(l.uri.host, "[::1]");
        assert_eq!(l.uri.port_no(), 5090);
        let l = parse_node_line("sip:notification_peer@127.0.0.2:5090").unwrap();
        assert_eq!(l.uri.host, "127.0.0.2");
    }

    #[test]
    fn refuses_bad_lines() {
        assert_eq!(parse_node_line("http://x"), Err(ParseError::BadScheme));
        assert_eq!(parse_node_line("sip:"), Err(ParseError::BadHost));
        assert_eq!(parse_node_line("sip:@@bad"), Err(ParseError::BadHost));
        assert_eq!(parse_node_line("sip:@host"), Err(ParseError::BadHost));
        assert_eq!(parse_node_line("sip:a b"), Err(ParseError::NotText));
        assert_eq!(parse_node_line("sip:1.2.3.4:99999"), Err(ParseError::BadPort));
        assert_eq!(parse_node_line("sip:1.2.3.4:0"), Err(ParseError::BadPort));
        assert_eq!(parse_node_line("sip:1.2.3.4:x"), Err(ParseError::BadPort));
        assert_eq!(parse_node_line("sip:[::1"), Err(ParseError::BadHost));
        assert_eq!(parse_node_line("sip:h;status=zombie"), Err(ParseError::UnknownStatus("zombie".into())));
        assert_eq!(parse_node_line("sip:h;transport=carrier-pigeon"), Err(ParseError::UnknownTransport("carrier-pigeon".into())));
        assert!(matches!(parse_node_line(&format!("sip:{}", "a".repeat(600))), Err(ParseError::TooLong(_))));
    }

    #[test]
    fn from_and_to_uris() {
        let u = uri("sip:127.0.0.2:5090");
        assert_eq!(u.with_user("notification_peer"), "sip:notification_peer@127.0.0.2:5090");
        let t = uri("sip:h:5061;transport=tls");
        assert_eq!(t.with_user("p"), "sip:p@h:5061;transport=tls");
    }

    #[test]
    fn node_identity_is_host_port_transport() {
        assert!(uri("sip:HOST:5060").same_node(&uri("sip:host")));
        assert!(!uri("sip:host:5060").same_node(&uri("sip:host:5061")));
        assert!(!uri("sip:host:5060").same_node(&uri("sip:host:5060;transport=tcp")));
    }
}
