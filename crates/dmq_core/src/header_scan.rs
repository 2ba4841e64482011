//! Reads of a raw SIP message's bytes and header values without the core's
//! parser (which allocates per header): where the header block ends, a
//! received KDMQ's duplicate key and sync headers ([`scan_request`]), a
//! request this module built read back ([`request_parts`]), and the URI
//! of a From/To value ([`name_addr_uri`]). For the receive paths, where a
//! quick look decides before anything is parsed.

use crate::sync_headers::{answer_id, SYNC_AGE_HEADER, SYNC_ANSWER_HEADER};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kdmq::{Envelope, Kdmq};
    use crate::node_uri::{parse_node_line, Transport};

    #[test]
    fn a_request_scan_reads_headers_by_long_or_compact_name() {
        let raw = b"KDMQ sip:usrloc@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z\r\ni:  abc@h \r\nCSeq: 7 KDMQ\r\nf: <sip:a@h>;tag=x\r\nX-DMQ-Sync-Age: 120\r\n\r\nCall-ID: body";
        let key = crate::duplicates::key(b"abc@h", b"7", b"<sip:a@h>;tag=x");
        assert_eq!(scan_request(raw), RequestScan { key: Some(key), sync_age_ms: Some(120), sync_answer: None });
        let answer = b"KDMQ sip:usrloc@h SIP/2.0\r\ni: abc@h\r\nCSeq: 7 KDMQ\r\nf: <sip:a@h>;tag=x\r\nX-DMQ-Sync-Age: 5\r\nx-dmq-sync-answer: 1f\r\n\r\n";
        assert_eq!(scan_request(answer).sync_answer, Some(0x1f), "an answer's copy");
        let no_age = b"KDMQ sip:usrloc@h SIP/2.0\r\nX-DMQ-Sync-Answer: 1f\r\n\r\n";
        assert_eq!(scan_request(no_age).sync_answer, None, "only a sync copy answers");
        let long = b"KDMQ sip:u@h SIP/2.0\r\nCALL-ID: abc@h\r\ncseq: 7 KDMQ\r\nFrom: <sip:a@h>;tag=x\r\n\r\nX-DMQ-Sync-Age: 5";
        assert_eq!(scan_request(long), RequestScan { key: Some(key), sync_age_ms: None, sync_answer: None }, "the body is not searched");
        assert_eq!(scan_request(b"KDMQ sip:u@h SIP/2.0\r\nCSeq: 1 KDMQ\r\n\r\n"), RequestScan::default());
    }

    #[test]
    fn a_request_reads_back_as_its_parts() {
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
}
