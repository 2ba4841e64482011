//! The KDMQ node-notification protocol: the `text/plain` body that lists
//! nodes, one URI per line with `;status=…`, CRLF-separated.
//!
//! ```text
//! sip:192.168.40.16:5060;status=active
//! sip:192.168.40.15:5060;transport=tcp;status=disabled
//! ```
//!
//! Parsing is strict where the stock module would misbehave (unparsable URIs,
//! unknown statuses, binary junk, oversized bodies are refused as a whole) and
//! lenient where it is harmless (blank lines, LF-only line ends).

use std::fmt;

use crate::auth;

/// The largest notification body accepted (the stock module builds bodies in
/// a 1 KiB-per-node buffer; 64 KiB holds hundreds of nodes).
pub const MAX_BODY_LEN: usize = 64 * 1024;
/// The longest node line accepted. Hosts are limited to 253 bytes (DNS), so
/// any line we accept still fits when we rebuild it with a status parameter
/// (the stock module writes lines into 1 KiB per node).
pub const MAX_LINE_LEN: usize = 512;

/// A node's state, as carried in `;status=` and shown by `dmq.list_nodes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeStatus {
    Active,
    Timeout,
    Disabled,
    Pending,
    /// Upstream's state for nodes kept after failures (`remove_inactive=0`,
    /// or on the way out with `fail_count_enabled`).
    NotActive,
}

/// The status words of a Kamailio release. Every release reads `active` and
/// `disabled`; 5.6 and 6.0 also `timeout` and `pending`, 6.1 also
/// `not_active`, and each refuses a whole notification over a word it does
/// not know. dmq_rs reads all five on every release ([`NodeStatus::parse`]),
/// sends only the two every release reads ([`NodeStatus::wire_word`]), and
/// shows a release's own words ([`NodeStatus::word`]; the module's host
/// layer says which release it runs on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusWords {
    /// Kamailio 5.6 and 6.0: active, timeout, disabled, pending.
    Classic,
    /// Kamailio 6.1: active, not_active, disabled.
    NotActive,
}

impl StatusWords {
    /// Whether a release of this dialect accepts `word` in a notification.
    pub fn accepts(self, word: &str) -> bool {
        match self {
            StatusWords::Classic => matches!(word, "active" | "timeout" | "disabled" | "pending"),
            StatusWords::NotActive => matches!(word, "active" | "not_active" | "disabled"),
        }
    }
}

impl NodeStatus {
    /// The word of this crate's own encodings (the node list in shm).
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Active => "active",
            NodeStatus::Timeout => "timeout",
            NodeStatus::Disabled => "disabled",
            NodeStatus::Pending => "pending",
            NodeStatus::NotActive => "not_active",
        }
    }

    /// The word a release's own module would show for this state
    /// (`dmq.list_nodes`). 5.6/6.0 have no word for `NotActive` (a state
    /// only the newer parameters reach): upstream's is shown.
    pub fn word(self, words: StatusWords) -> &'static str {
        match (words, self) {
            (StatusWords::NotActive, NodeStatus::Timeout | NodeStatus::Pending) => "not_active",
            _ => self.as_str(),
        }
    }

    /// The word sent in a notification: `active`, or `disabled` for any
    /// state that is not up (bodies list only active nodes and the sender,
    /// and the leave notice says `disabled`), the two words every release
    /// reads.
    pub fn wire_word(self) -> &'static str {
        match self {
            NodeStatus::Active => "active",
            _ => "disabled",
        }
    }

    /// Any release's word (and `not-active`, which earlier dmq_rs builds wrote).
    pub fn parse(s: &str) -> Option<NodeStatus> {
        Some(match s {
            "active" => NodeStatus::Active,
            "timeout" => NodeStatus::Timeout,
            "disabled" => NodeStatus::Disabled,
            "pending" => NodeStatus::Pending,
            "not_active" | "not-active" | "notactive" => NodeStatus::NotActive,
            _ => return None,
        })
    }
}

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

/// Parses a whole notification body. Any bad line refuses the whole body, so
/// that a damaged notification changes nothing.
/// The URI of a From/To header value (`"name" <uri>;params`, `<uri>` or
/// `uri;params`), without parsing the rest.
pub fn name_addr_uri(value: &str) -> Option<&str> {
    let mut rest = value.trim();
    if let Some(quoted) = rest.strip_prefix('"') {
        // A display name may hold '<' or ';': skip it whole.
        let mut escaped = false;
        let end = quoted.char_indices().find_map(|(i, c)| {
            let closes = c == '"' && !escaped;
            escaped = c == '\\' && !escaped;
            closes.then_some(i)
        })?;
        rest = &quoted[end + 1..];
    }
    let uri = match rest.find('<') {
        Some(open) => {
            let inner = &rest[open + 1..];
            &inner[..inner.find('>')?]
        }
        None => rest.split([';', ',', ' ', '\t']).next().unwrap_or(""),
    };
    let uri = uri.trim();
    (!uri.is_empty()).then_some(uri)
}

pub fn parse_body(body: &[u8]) -> Result<Vec<NodeLine>, ParseError> {
    if body.len() > MAX_BODY_LEN {
        return Err(ParseError::TooLong(body.len()));
    }
    let text = std::str::from_utf8(body).map_err(|_| ParseError::NotText)?;
    let mut lines = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let trimmed = line.trim_matches(|c| c == ' ' || c == '\t' || c == '\r' || c == '\0');
        if trimmed.is_empty() {
            continue;
        }
        lines.push(parse_node_line(trimmed).map_err(|e| ParseError::Line(i + 1, Box::new(e)))?);
    }
    Ok(lines)
}

/// Builds a notification body from (uri, status) pairs.
pub fn build_body<'a>(nodes: impl IntoIterator<Item = (&'a NodeUri, NodeStatus)>) -> String {
    let mut body = String::new();
    for (uri, status) in nodes {
        body.push_str(&uri.to_uri());
        body.push_str(";status=");
        body.push_str(status.wire_word());
        body.push_str("\r\n");
    }
    body
}

/// A peer message to send (a consumer's, or the script's): what every
/// path carries it as (without tm, in a usrloc batch, through tm, again
/// after a 503). `C` is the sender's response callback, opaque here (the
/// module's `ResponseCallback`; its bytes in a tm context).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerMessage<'a, C> {
    /// The peer (channel) it is for: the R-URI user.
    pub peer_id: &'a str,
    pub body: &'a [u8],
    pub content_type: &'a str,
    pub max_forwards: i32,
    pub callback: Option<C>,
    /// A copy of the sender's state made for a sync (a join, a heal sync
    /// or pull): when that sync began (the sender's monotonic ms). It goes
    /// out as [`SYNC_AGE_HEADER`], so a dmq_rs receiver refuses what is
    /// older than an update it already applied (`crate::freshness`).
    pub sync_since: Option<u64>,
    /// A copy of a sync this node runs in answer to a node's sync request
    /// (not a heal push): the answer's id, random per answer. It goes out
    /// with [`SYNC_ANSWER_HEADER`], and the asking dmq_rs node counts its
    /// items against the answer's [`SYNC_SENT_HEADER`] (`crate::sync_runs`).
    pub sync_answer: Option<u64>,
}

impl<'a, C> PeerMessage<'a, C> {
    /// A message on its own: Max-Forwards 1 (never relayed), no response
    /// callback, not a sync's copy (what the script, a heal push's
    /// request and a node's sync requests are; a sync copy sets
    /// `sync_since` and `sync_answer` after).
    pub fn plain(peer_id: &'a str, body: &'a [u8], content_type: &'a str) -> Self {
        PeerMessage { peer_id, body, content_type, max_forwards: 1, callback: None, sync_since: None, sync_answer: None }
    }
}

/// How long ago (ms) the sync a copy belongs to began, as the sender
/// counts when it sends it. Stock nodes ignore it.
pub const SYNC_AGE_HEADER: &str = "X-DMQ-Sync-Age";

/// On a sync copy sent in answer to the receiver's own sync request: the
/// answer's id (hex, random per answer), so that it counts toward that
/// answer's [`SYNC_SENT_HEADER`] only (not toward an answer of the same
/// node to an earlier request, or of its earlier self before a restart).
/// Also on the answer's 200, with the count. Stock nodes ignore it.
pub const SYNC_ANSWER_HEADER: &str = "X-DMQ-Sync-Answer";

/// On a dmq_rs node's 200 to a sync request: the items (contacts, cells,
/// dialogs, as `ordering::identify` names them) its sync copies to the
/// asking node carried, all sent before this reply. Stock nodes ignore it.
pub const SYNC_SENT_HEADER: &str = "X-DMQ-Sync-Sent";

/// What every KDMQ request this node sends is made of, whichever way it
/// goes: through tm ([`Kdmq::tm_headers`]: tm writes the rest) or as
/// bytes of our own ([`Kdmq::to_bytes`]).
#[derive(Debug, Clone, Copy)]
pub struct Kdmq<'a> {
    pub from: &'a NodeUri,
    pub to: &'a NodeUri,
    /// The channel (R-URI user): a peer id or the notification channel.
    pub peer: &'a str,
    pub max_forwards: i32,
    pub content_type: &'a str,
    pub body: &'a [u8],
    /// `shared_secret` and the time to sign at, when the cluster signs.
    pub signing: Option<(&'a [u8], i64)>,
    /// A sync copy: ms since its sync began ([`SYNC_AGE_HEADER`]).
    pub sync_age_ms: Option<u64>,
    /// A sync copy in answer to the receiver's request: the answer's id
    /// ([`SYNC_ANSWER_HEADER`]).
    pub sync_answer: Option<u64>,
}

impl Kdmq<'_> {
    /// The R-URI (and To): `sip:<channel>@<target node>`.
    pub fn ruri(&self) -> String {
        self.to.with_user(self.peer)
    }

    /// The From URI: `sip:<channel>@<this node>`.
    pub fn from_uri(&self) -> String {
        self.from.with_user(self.peer)
    }

    /// The request's signature header line (empty when the cluster does
    /// not sign), over the R-URI, the Call-ID and the CSeq number it goes
    /// out with (see `auth`).
    fn signature_line(&self, ruri: &str, call_id: &str, cseq: &[u8]) -> String {
        let Some((secret, now)) = self.signing else { return String::new() };
        let parts = auth::SignedParts { ruri: ruri.as_bytes(), call_id: call_id.as_bytes(), cseq, body: self.body };
        format!("{}: {}\r\n", auth::HEADER, auth::sign(secret, &parts, now))
    }

    /// The header lines tm's `t_request` does not write itself (it writes
    /// Via, From, To, Call-ID, CSeq and Content-Length), for a request
    /// whose Call-ID is `call_id` (ours: the signature covers it) and whose
    /// CSeq number tm sets to `cseq`.
    pub fn tm_headers(&self, call_id: &str, cseq: &[u8]) -> String {
        format!(
            "Max-Forwards: {}\r\nContent-Type: {}\r\n{}{}",
            self.max_forwards,
            self.content_type,
            self.sync_line(),
            self.signature_line(&self.ruri(), call_id, cseq)
        )
    }

    /// The sync-age header line of a sync copy (empty otherwise).
    fn sync_line(&self) -> String {
        let Some(age) = self.sync_age_ms else { return String::new() };
        let answer = self.sync_answer.map(|id| format!("{SYNC_ANSWER_HEADER}: {id:x}\r\n")).unwrap_or_default();
        format!("{SYNC_AGE_HEADER}: {age}\r\n{answer}")
    }
}

/// What tm would write into a request and a KDMQ sent without it (peer
/// messages in flight, see `pending`, over UDP, TCP or TLS; the leave
/// notice sent at shutdown; a request handed to our own consumer) carries
/// of its own: the Via, and the token its From tag and Call-ID are made of.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// What the request travels over (the Via's protocol).
    pub transport: Transport,
    /// The Via's sent-by (`host:port`): the socket the datagram leaves
    /// from, where replies must come back to (not `from`, which may name
    /// another port or none).
    pub sent_by: &'a str,
    /// The whole Via branch, magic cookie included.
    pub branch: &'a str,
    /// Unique per request: the From tag and the Call-ID (`dmqrs-<token>@host`)
    /// are derived from it.
    pub token: &'a str,
}

impl Kdmq<'_> {
    /// The whole request, to send without tm (CSeq 1).
    pub fn to_bytes(&self, envelope: &Envelope<'_>) -> Vec<u8> {
        let to_uri = self.ruri();
        let call_id = format!("dmqrs-{}@{}", envelope.token, self.from.host);
        let signature = self.signature_line(&to_uri, &call_id, b"1");
        let mut out = format!(
            "KDMQ {to_uri} SIP/2.0\r\n\
             Via: SIP/2.0/{via} {sent_by};branch={branch}\r\n\
             Max-Forwards: {mf}\r\n\
             From: <{from_uri}>;tag=dmqrs{token}\r\n\
             To: <{to_uri}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 KDMQ\r\n\
             {sync}\
             {signature}\
             Content-Type: {ct}\r\n\
             Content-Length: {len}\r\n\r\n",
            via = envelope.transport.via_name(),
            sent_by = envelope.sent_by,
            branch = envelope.branch,
            mf = self.max_forwards,
            from_uri = self.from_uri(),
            token = envelope.token,
            signature = signature,
            sync = self.sync_line(),
            ct = self.content_type,
            len = self.body.len(),
        )
        .into_bytes();
        out.extend_from_slice(self.body);
        out
    }
}

/// The leave notice (`kdmq`: this node's notification that it is
/// disabled), sent statelessly over UDP from `sent_by`; its branch and
/// From tag are made of `token`.
pub fn leave_notice(kdmq: &Kdmq<'_>, sent_by: &str, token: &str) -> String {
    let request = kdmq.to_bytes(&Envelope {
        transport: Transport::Udp,
        sent_by,
        branch: &format!("z9hG4bKdmqrs{token}"),
        token: &format!("leave-{token}"),
    });
    String::from_utf8_lossy(&request).into_owned()
}

/// The token and Via branch of a KDMQ this node makes for its own
/// consumer (`kind`: "heal", "custom"): unique per process (`pid`), time
/// and sequence number, so no two look like retransmissions of each other.
/// Returns (token, branch).
pub fn local_request_ids(kind: &str, pid: u32, now_ms: u64, seq: u64) -> (String, String) {
    let token = format!("{kind}{pid}x{now_ms}x{seq}");
    let branch = format!("z9hG4bK-{token}");
    (token, branch)
}

/// What follows the header block of a raw SIP message (everything after
/// the first empty line), without parsing the headers: None when the
/// block does not end. As received, so it may hold more or less than
/// Content-Length says; a hint for a quick look, not the body the core reads.
pub fn after_header_block(raw: &[u8]) -> Option<&[u8]> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some(&raw[end + 4..])
}

/// What a receiver reads from a KDMQ's raw bytes, in one pass over its
/// header lines and without the core's parser (which allocates per
/// header): the key that tells it from other requests (Call-ID, CSeq
/// number and From with its tag: `duplicates::key`) and, for a sync copy,
/// its sync's age ([`SYNC_AGE_HEADER`]). Folded lines are not joined: none
/// of these headers is folded by the nodes that send them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestScan {
    pub key: Option<u64>,
    pub sync_age_ms: Option<u64>,
    /// A sync copy in answer to this node's request: the answer's id
    /// ([`SYNC_ANSWER_HEADER`]).
    pub sync_answer: Option<u64>,
}

pub fn scan_request(raw: &[u8]) -> RequestScan {
    let (mut call_id, mut cseq, mut from, mut age, mut answer) = (None, None, None, None, None);
    let is = |name: &[u8], names: &[&str]| names.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(name));
    for line in raw.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (name, value) = (line[..colon].trim_ascii(), line[colon + 1..].trim_ascii());
        if call_id.is_none() && is(name, &["Call-ID", "i"]) {
            call_id = Some(value);
        } else if cseq.is_none() && is(name, &["CSeq"]) {
            cseq = value.split(|&b| b == b' ').next();
        } else if from.is_none() && is(name, &["From", "f"]) {
            from = Some(value);
        } else if age.is_none() && is(name, &[SYNC_AGE_HEADER]) {
            age = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
        } else if answer.is_none() && is(name, &[SYNC_ANSWER_HEADER]) {
            answer = answer_id(value);
        }
    }
    let key = match (call_id, cseq, from) {
        (Some(c), Some(n), Some(f)) => Some(crate::duplicates::key(c, n, f)),
        _ => None,
    };
    RequestScan { key, sync_age_ms: age, sync_answer: answer.filter(|_| age.is_some()) }
}

/// An answer id as [`SYNC_ANSWER_HEADER`] carries it (hex, not 0).
pub fn answer_id(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok().and_then(|v| u64::from_str_radix(v.trim(), 16).ok()).filter(|&id| id != 0)
}

/// A KDMQ request this module built (`Kdmq::to_bytes`), read back: the
/// peer (the R-URI's user), Max-Forwards, content type and body.
pub fn request_parts(raw: &[u8]) -> Option<(&str, i32, &str, &[u8])> {
    let body = after_header_block(raw)?;
    let head = std::str::from_utf8(&raw[..raw.len() - body.len()]).ok()?;
    let mut lines = head.split("\r\n");
    let first = lines.next()?;
    let uri = first.strip_prefix("KDMQ ")?.strip_prefix("sip:")?;
    let peer = &uri[..uri.find('@')?];
    let (mut content_type, mut max_forwards) = ("", 1);
    for line in lines {
        if let Some(v) = line.strip_prefix("Content-Type: ") {
            content_type = v.trim();
        } else if let Some(v) = line.strip_prefix("Max-Forwards: ") {
            max_forwards = v.trim().parse().ok()?;
        }
    }
    Some((peer, max_forwards, content_type, body))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_request_scan_reads_headers_by_long_or_compact_name() {
        use super::*;
        let raw = b"KDMQ sip:usrloc@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z\r\ni:  abc@h \r\nCSeq: 7 KDMQ\r\nf: <sip:a@h>;tag=x\r\nX-DMQ-Sync-Age: 120\r\n\r\nCall-ID: body";
        let key = crate::duplicates::key(b"abc@h", b"7", b"<sip:a@h>;tag=x");
        assert_eq!(scan_request(raw), RequestScan { key: Some(key), sync_age_ms: Some(120), sync_answer: None });
        let answer = b"KDMQ sip:usrloc@h SIP/2.0\r\ni: abc@h\r\nCSeq: 7 KDMQ\r\nf: <sip:a@h>;tag=x\r\nX-DMQ-Sync-Age: 5\r\nx-dmq-sync-answer: 1f\r\n\r\n";
        assert_eq!(scan_request(answer).sync_answer, Some(0x1f), "an answer's copy");
        let no_age = b"KDMQ sip:usrloc@h SIP/2.0\r\nX-DMQ-Sync-Answer: 1f\r\n\r\n";
        assert_eq!(scan_request(no_age).sync_answer, None, "only a sync copy answers");
        assert_eq!(answer_id(b"0"), None);
        assert_eq!(answer_id(b"zz"), None);
        let long = b"KDMQ sip:u@h SIP/2.0\r\nCALL-ID: abc@h\r\ncseq: 7 KDMQ\r\nFrom: <sip:a@h>;tag=x\r\n\r\nX-DMQ-Sync-Age: 5";
        assert_eq!(scan_request(long), RequestScan { key: Some(key), sync_age_ms: None, sync_answer: None }, "the body is not searched");
        assert_eq!(scan_request(b"KDMQ sip:u@h SIP/2.0\r\nCSeq: 1 KDMQ\r\n\r\n"), RequestScan::default());
    }

    #[test]
    fn a_request_reads_back_as_its_parts() {
        use super::*;
        let from = parse_node_line("sip:127.0.0.2:5090").unwrap().uri;
        let to = parse_node_line("sip:127.0.0.3:5090").unwrap().uri;
        let body = br#"{"action":2,"aor":"a","ruid":"r"}"#;
        let kdmq = Kdmq {
            from: &from,
            to: &to,
            peer: "usrloc",
            max_forwards: 1,
            content_type: "application/json",
            body,
            signing: None,
            sync_age_ms: None,
            sync_answer: None,
        };
        let raw = kdmq.to_bytes(&Envelope { transport: Transport::Udp, sent_by: "127.0.0.2:5090", branch: "z9hG4bKx", token: "t" });
        assert_eq!(request_parts(&raw), Some(("usrloc", 1, "application/json", &body[..])));
        assert_eq!(request_parts(b"KDMQ sip:usrloc 127.0.0.3 SIP/2.0\r\n\r\n"), None);
    }

    #[test]
    fn name_addr_uri_takes_the_uri_of_a_from_value() {
        use super::name_addr_uri;
        assert_eq!(name_addr_uri("<sip:dmqnode@127.0.0.1:5060>;tag=abc"), Some("sip:dmqnode@127.0.0.1:5060"));
        assert_eq!(name_addr_uri(" \"a <b>; c\" <sip:n@h:5060;transport=tcp>;tag=x"), Some("sip:n@h:5060;transport=tcp"));
        assert_eq!(name_addr_uri("\"q\\\"<\" <sip:n@h>"), Some("sip:n@h"));
        assert_eq!(name_addr_uri("sip:n@h:5070;tag=1"), Some("sip:n@h:5070"));
        assert_eq!(name_addr_uri("sip:n@h"), Some("sip:n@h"));
        assert_eq!(name_addr_uri("<sip:n@h"), None);
        assert_eq!(name_addr_uri("\"open"), None);
        assert_eq!(name_addr_uri("<>"), None);
        assert_eq!(name_addr_uri(""), None);
    }

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
    fn body_round_trip() {
        let a = uri("sip:127.0.0.2:5090");
        let b = uri("sip:127.0.0.3:5090;transport=tcp");
        let body = build_body([(&a, NodeStatus::Active), (&b, NodeStatus::Disabled)]);
        assert_eq!(body, "sip:127.0.0.2:5090;status=active\r\nsip:127.0.0.3:5090;transport=tcp;status=disabled\r\n");
        let lines = parse_body(body.as_bytes()).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].uri, a);
        assert_eq!(lines[1].uri, b);
        assert_eq!(lines[1].status, Some(NodeStatus::Disabled));
    }

    #[test]
    fn body_tolerates_lf_and_blank_lines_but_not_junk() {
        assert_eq!(parse_body(b"sip:a:1;status=active\n\nsip:b:2\n").unwrap().len(), 2);
        assert_eq!(parse_body(b"").unwrap().len(), 0);
        assert!(matches!(parse_body(b"sip:a:1\r\n\xff\xfe"), Err(ParseError::NotText)));
        assert!(matches!(parse_body(b"sip:a:1\r\ngarbage"), Err(ParseError::Line(2, _))));
        assert!(matches!(parse_body(&vec![b'a'; MAX_BODY_LEN + 1]), Err(ParseError::TooLong(_))));
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

    #[test]
    fn stateless_request_is_a_complete_kdmq() {
        let body = build_body([(&uri("sip:127.0.0.2:5090"), NodeStatus::Disabled)]);
        let (from, to) = (uri("sip:127.0.0.2:5090"), uri("sip:127.0.0.3:5090"));
        let kdmq = Kdmq {
            from: &from,
            to: &to,
            peer: "notification_peer",
            max_forwards: 1,
            content_type: "text/plain",
            body: body.as_bytes(),
            signing: None,
            sync_age_ms: None,
            sync_answer: None,
        };
        let req = leave_notice(&kdmq, "127.0.0.2:5090", "42");
        assert!(req.starts_with("KDMQ sip:notification_peer@127.0.0.3:5090 SIP/2.0\r\n"));
        assert!(req.contains("Via: SIP/2.0/UDP 127.0.0.2:5090;branch=z9hG4bKdmqrs42\r\n"));
        assert!(req.contains("From: <sip:notification_peer@127.0.0.2:5090>;tag=dmqrsleave-42\r\n"));
        let (head, tail) = req.split_once("\r\n\r\n").unwrap();
        assert!(head.ends_with(&format!("Content-Length: {}", body.len())));
        assert_eq!(tail, "sip:127.0.0.2:5090;status=disabled\r\n");
        assert_eq!(parse_body(tail.as_bytes()).unwrap()[0].status, Some(NodeStatus::Disabled));
    }

    #[test]
    fn peer_requests_carry_the_body_verbatim_with_its_length() {
        let body = b"{\"action\":1}\r\n\x00binary";
        let req = Kdmq {
            // An address without a port: the Via still names the socket.
            from: &uri("sip:127.0.0.2"),
            to: &uri("sip:10.0.0.3:5060;transport=udp"),
            peer: "htable",
            max_forwards: 5,
            content_type: "application/json",
            body,
            signing: None,
            sync_age_ms: None,
            sync_answer: None,
        }
        .to_bytes(&Envelope { transport: Transport::Udp, sent_by: "127.0.0.2:5091", branch: "z9hG4bKdmqrs.3.9", token: "9x1" });
        let split = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = std::str::from_utf8(&req[..split]).unwrap();
        assert!(head.starts_with("KDMQ sip:htable@10.0.0.3:5060"), "{head}");
        assert!(head.contains("Via: SIP/2.0/UDP 127.0.0.2:5091;branch=z9hG4bKdmqrs.3.9\r\n"), "{head}");
        assert!(head.contains("Call-ID: dmqrs-9x1@127.0.0.2\r\n"));
        assert!(head.contains("Max-Forwards: 5\r\n"));
        assert!(head.contains("Content-Type: application/json\r\n"));
        assert!(head.ends_with(&format!("Content-Length: {}", body.len())));
        assert_eq!(&req[split + 4..], body);
        assert!(!head.contains(auth::HEADER));
    }

    #[test]
    fn a_peer_request_over_tcp_or_tls_names_its_transport_in_the_via() {
        for (transport, via) in [(Transport::Tcp, "TCP"), (Transport::Tls, "TLS")] {
            let req = Kdmq {
                from: &uri("sip:127.0.0.2:5090"),
                to: &uri(&format!("sip:127.0.0.3:5090;transport={}", transport.as_str())),
                peer: "usrloc",
                max_forwards: 1,
                content_type: "application/json",
                body: b"{}",
                signing: None,
                sync_age_ms: None,
                sync_answer: None,
            }
            .to_bytes(&Envelope { transport, sent_by: "127.0.0.2:5090", branch: "z9hG4bKdmqrs.1.2.3", token: "1.2.3" });
            let text = String::from_utf8(req).unwrap();
            assert!(text.contains(&format!("Via: SIP/2.0/{via} 127.0.0.2:5090;branch=z9hG4bKdmqrs.1.2.3\r\n")), "{text}");
            assert!(text.starts_with(&format!("KDMQ sip:usrloc@127.0.0.3:5090;transport={} SIP/2.0\r\n", transport.as_str())), "{text}");
        }
    }

    #[test]
    fn signed_peer_requests_verify_against_what_they_carry() {
        let req = Kdmq {
            from: &uri("sip:127.0.0.2:5090"),
            to: &uri("sip:127.0.0.3:5090"),
            peer: "usrloc",
            max_forwards: 1,
            content_type: "application/json",
            body: b"{}",
            signing: Some((b"secret", 1_700_000_000)),
            sync_age_ms: None,
            sync_answer: None,
        }
        .to_bytes(&Envelope { transport: Transport::Udp, sent_by: "127.0.0.2:5090", branch: "z9hG4bKdmqrs.1.2", token: "1x2" });
        let text = String::from_utf8(req).unwrap();
        let value = text.lines().find_map(|l| l.strip_prefix("X-DMQ-Signature: ")).unwrap();
        let parts = auth::SignedParts { ruri: b"sip:usrloc@127.0.0.3:5090", call_id: b"dmqrs-1x2@127.0.0.2", cseq: b"1", body: b"{}" };
        assert_eq!(auth::verify(b"secret", &parts, Some(value.as_bytes()), 1_700_000_001), Ok(()));
    }

    #[test]
    fn tm_requests_carry_the_same_headers_and_a_signature_over_what_tm_writes() {
        let (from, to) = (uri("sip:127.0.0.2:5090"), uri("sip:127.0.0.3:5090;transport=tcp"));
        let mut kdmq = Kdmq {
            from: &from,
            to: &to,
            peer: "htable",
            max_forwards: 1,
            content_type: "application/json",
            body: b"{}",
            signing: None,
            sync_age_ms: None,
            sync_answer: None,
        };
        assert_eq!(kdmq.ruri(), "sip:htable@127.0.0.3:5090;transport=tcp");
        assert_eq!(kdmq.from_uri(), "sip:htable@127.0.0.2:5090");
        assert_eq!(kdmq.tm_headers("c1", b"10"), "Max-Forwards: 1\r\nContent-Type: application/json\r\n");
        kdmq.signing = Some((b"secret", 1_700_000_000));
        let headers = kdmq.tm_headers("c1", b"10");
        let value = headers.lines().find_map(|l| l.strip_prefix("X-DMQ-Signature: ")).unwrap();
        let ruri = kdmq.ruri();
        let parts = auth::SignedParts { ruri: ruri.as_bytes(), call_id: b"c1", cseq: b"10", body: b"{}" };
        assert_eq!(auth::verify(b"secret", &parts, Some(value.as_bytes()), 1_700_000_001), Ok(()));
        assert!(headers.ends_with("\r\n"));
    }

    #[test]
    fn status_words_of_every_release_are_read() {
        for w in ["active", "timeout", "disabled", "pending", "not_active"] {
            let body = format!("sip:127.0.0.2:5090;status={w}\r\n");
            let lines = parse_body(body.as_bytes()).unwrap();
            assert_eq!(lines[0].status.map(NodeStatus::as_str), Some(w));
        }
    }

    #[test]
    fn bodies_carry_only_words_every_release_reads() {
        let a = uri("sip:127.0.0.2:5090");
        for status in [NodeStatus::Active, NodeStatus::Timeout, NodeStatus::Disabled, NodeStatus::Pending, NodeStatus::NotActive] {
            let body = build_body([(&a, status)]);
            let word = body.trim_end().rsplit('=').next().unwrap();
            assert!(StatusWords::Classic.accepts(word) && StatusWords::NotActive.accepts(word), "{word}");
        }
    }

    #[test]
    fn each_release_is_shown_its_own_words() {
        let all = [NodeStatus::Active, NodeStatus::Timeout, NodeStatus::Disabled, NodeStatus::Pending, NodeStatus::NotActive];
        for s in all {
            assert!(StatusWords::NotActive.accepts(s.word(StatusWords::NotActive)), "{s:?}");
        }
        for s in [NodeStatus::Active, NodeStatus::Timeout, NodeStatus::Disabled, NodeStatus::Pending] {
            assert!(StatusWords::Classic.accepts(s.word(StatusWords::Classic)), "{s:?}");
        }
        assert_eq!(NodeStatus::Pending.word(StatusWords::NotActive), "not_active");
        assert_eq!(NodeStatus::NotActive.word(StatusWords::Classic), "not_active");
    }

    #[test]
    fn the_bytes_after_the_header_block_follow_the_first_empty_line() {
        let msg = b"KDMQ sip:usrloc@10.0.0.2 SIP/2.0\r\nContent-Length: 4\r\n\r\nbody";
        assert_eq!(after_header_block(msg), Some(&b"body"[..]));
        // An empty line within the body is the body's.
        assert_eq!(after_header_block(b"A: b\r\n\r\nx\r\n\r\ny"), Some(&b"x\r\n\r\ny"[..]));
        assert_eq!(after_header_block(b"A: b\r\n\r\n"), Some(&b""[..]));
        // No end of the header block (bare LFs do not end it here).
        assert_eq!(after_header_block(b"A: b\r\nC: d\r\n"), None);
        assert_eq!(after_header_block(b"A: b\n\nbody"), None);
        assert_eq!(after_header_block(b""), None);
    }

    #[test]
    fn a_local_request_is_named_by_kind_process_time_and_sequence() {
        let (token, branch) = local_request_ids("heal", 4242, 1_000_500, 7);
        assert_eq!(token, "heal4242x1000500x7");
        assert_eq!(branch, "z9hG4bK-heal4242x1000500x7");
        assert_ne!(local_request_ids("heal", 4242, 1_000_500, 8).0, token);
        assert_ne!(local_request_ids("custom", 4242, 1_000_500, 7).0, token);
    }
}
