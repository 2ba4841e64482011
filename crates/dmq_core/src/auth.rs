//! `shared_secret`: every KDMQ a node sends carries an HMAC-SHA256 over what
//! identifies the request and its content; a node that knows the secret
//! accepts only requests that carry a valid one, made recently.
//!
//! The header: `X-DMQ-Signature: t=<unix seconds>; s=<64 hex digits>`,
//! the MAC over `KDMQ \n R-URI \n Call-ID \n CSeq number \n t \n body`.
//! Stock nodes neither send nor check it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header's name.
pub const HEADER: &str = "X-DMQ-Signature";

/// Seconds a signed request stays acceptable, either side of the
/// receiver's clock: covers retransmissions (tm's and ours end within
/// half a minute) and clock skew between NTP-synchronized nodes.
pub const REPLAY_WINDOW: i64 = 30;

/// The signed parts of a KDMQ request.
#[derive(Debug, Clone, Copy)]
pub struct SignedParts<'a> {
    pub ruri: &'a [u8],
    pub call_id: &'a [u8],
    /// The CSeq number, as written.
    pub cseq: &'a [u8],
    pub body: &'a [u8],
}

fn mac(secret: &[u8], parts: &SignedParts<'_>, timestamp: i64) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    for field in [b"KDMQ".as_slice(), parts.ruri, parts.call_id, parts.cseq, timestamp.to_string().as_bytes()] {
        mac.update(field);
        mac.update(b"\n");
    }
    mac.update(parts.body);
    mac
}

/// The header value for a request sent at `now`.
pub fn sign(secret: &[u8], parts: &SignedParts<'_>, now: i64) -> String {
    let tag = mac(secret, parts, now).finalize().into_bytes();
    let mut value = format!("t={now}; s=");
    for b in tag {
        value.push_str(&format!("{b:02x}"));
    }
    value
}

/// Why a request's signature was refused; Display is the log's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    Malformed,
    /// Signed too long ago (a replay) or too far ahead: the age in seconds.
    OutsideWindow(i64),
    /// Not made with our secret, or the request was changed.
    Mismatch,
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::Missing => write!(f, "no {HEADER} header"),
            AuthError::Malformed => write!(f, "a malformed {HEADER} header"),
            AuthError::OutsideWindow(age) => {
                write!(f, "a signature {age} s old, outside the {REPLAY_WINDOW} s window (replayed, or a clock is off)")
            }
            AuthError::Mismatch => f.write_str("a signature that does not match (another secret, or the request was altered)"),
        }
    }
}

/// Checks the header value `header` of a request received at `now`.
pub fn verify(secret: &[u8], parts: &SignedParts<'_>, header: Option<&[u8]>, now: i64) -> Result<(), AuthError> {
    let header = header.ok_or(AuthError::Missing)?;
    let (timestamp, tag) = parse_header(header).ok_or(AuthError::Malformed)?;
    let age = now.saturating_sub(timestamp);
    if age.abs() > REPLAY_WINDOW {
        return Err(AuthError::OutsideWindow(age));
    }
    // Constant time: `verify_slice` compares without an early exit.
    mac(secret, parts, timestamp).verify_slice(&tag).map_err(|_| AuthError::Mismatch)
}

fn parse_header(value: &[u8]) -> Option<(i64, [u8; 32])> {
    let text = std::str::from_utf8(value).ok()?;
    let (mut timestamp, mut tag) = (None, None);
    for part in text.split(';') {
        match part.trim().split_once('=')? {
            ("t", t) => timestamp = Some(t.trim().parse::<i64>().ok()?),
            ("s", s) => tag = Some(parse_hex(s.trim())?),
            _ => {}
        }
    }
    Some((timestamp?, tag?))
}

fn parse_hex(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARTS: SignedParts<'static> =
        SignedParts { ruri: b"sip:usrloc@127.0.0.2:5090", call_id: b"dmqrs-abc@127.0.0.3", cseq: b"1", body: b"{\"action\":1}" };

    #[test]
    fn a_signed_request_verifies() {
        let h = sign(b"s3cret", &PARTS, 1_700_000_000);
        assert!(h.starts_with("t=1700000000; s="), "{h}");
        assert_eq!(verify(b"s3cret", &PARTS, Some(h.as_bytes()), 1_700_000_010), Ok(()));
        assert_eq!(
            verify(b"s3cret", &PARTS, Some(h.to_uppercase().replace("T=", "t=").replace("S=", "s=").as_bytes()), 1_700_000_000),
            Ok(())
        );
    }

    #[test]
    fn anything_else_is_refused() {
        let now = 1_700_000_000;
        let h = sign(b"s3cret", &PARTS, now);
        assert_eq!(verify(b"s3cret", &PARTS, None, now), Err(AuthError::Missing));
        assert_eq!(verify(b"other", &PARTS, Some(h.as_bytes()), now), Err(AuthError::Mismatch));
        for changed in [
            SignedParts { body: b"{\"action\":2}", ..PARTS },
            SignedParts { ruri: b"sip:htable@127.0.0.2:5090", ..PARTS },
            SignedParts { call_id: b"x", ..PARTS },
            SignedParts { cseq: b"2", ..PARTS },
        ] {
            assert_eq!(verify(b"s3cret", &changed, Some(h.as_bytes()), now), Err(AuthError::Mismatch));
        }
        assert_eq!(verify(b"s3cret", &PARTS, Some(h.as_bytes()), now + 31), Err(AuthError::OutsideWindow(31)));
        assert_eq!(verify(b"s3cret", &PARTS, Some(h.as_bytes()), now - 31), Err(AuthError::OutsideWindow(-31)));
        // Another timestamp with the same tag: the MAC covers it.
        let moved = h.replace("t=1700000000", "t=1700000005");
        assert_eq!(verify(b"s3cret", &PARTS, Some(moved.as_bytes()), now), Err(AuthError::Mismatch));
        for bad in ["", "t=1", "s=00", "t=x; s=00", "t=1; s=zz", "t=1;s=0123"] {
            assert_eq!(verify(b"s3cret", &PARTS, Some(bad.as_bytes()), now), Err(AuthError::Malformed), "{bad}");
        }
    }
}
