//! The node-notification body: the `text/plain` body of a KDMQ on the
//! notification channel, which lists nodes, one URI per line with
//! `;status=…`, CRLF-separated.
//!
//! ```text
//! sip:192.168.40.16:5060;status=active
//! sip:192.168.40.15:5060;transport=tcp;status=disabled
//! ```
//!
//! Parsing is strict where the stock module would misbehave (unparsable URIs,
//! unknown statuses, binary junk, oversized bodies are refused as a whole) and
//! lenient where it is harmless (blank lines, LF-only line ends).
//!
//! A line is read by `node_uri::parse_node_line`; this file reads and
//! builds whole bodies.

use crate::node_status::NodeStatus;
use crate::node_uri::{parse_node_line, NodeLine, NodeUri, ParseError};

/// The largest notification body accepted (the stock module builds bodies in
/// a 1 KiB-per-node buffer; 64 KiB holds hundreds of nodes).
pub const MAX_BODY_LEN: usize = 64 * 1024;

/// Parses a whole notification body. Any bad line refuses the whole body, so
/// that a damaged notification changes nothing.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_status::StatusWords;

    fn uri(s: &str) -> NodeUri {
        parse_node_line(s).unwrap().uri
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
}
