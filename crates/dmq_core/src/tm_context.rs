//! What dmq_rs hands tm as a request's callback context, and reads back in
//! its reply callback: tm copies the bytes into the transaction (or the
//! module into its retry queue), so they hold everything the reply needs.
//! Read only by the process tree that wrote them (native byte order).

use crate::node_uri::{self, NodeUri};
use crate::peer_message::PeerMessage;

/// Bytes of a response callback as the module encodes it (two pointers).
pub const CALLBACK_LEN: usize = 2 * std::mem::size_of::<usize>();

/// A peer message sent through tm, as its callback context: everything
/// needed to send it again when a busy node answers 503, and to run its
/// consumer's callback (carried as its encoded bytes). It borrows its
/// parts (from the sender's arguments, or from the context bytes it was
/// decoded from): nothing is copied but into the encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct TmContext<'a> {
    pub message: PeerMessage<'a, [u8; CALLBACK_LEN]>,
    pub target: NodeUri,
    /// Past this, a 503 is the final answer (the same 30 s a timeout takes).
    pub deadline_ms: u64,
    /// The wait before the next resend after a 503.
    pub backoff_ms: u64,
    /// Its keys are on their way to the target (`crate::ordering`): when
    /// it is done, they are free again.
    pub ordered: bool,
}

impl<'a> TmContext<'a> {
    /// The bytes, in order: `flags u8` (1 has callback, 2 ordered, 4 a sync
    /// copy, 8 a sync's answer), the callback, `max_forwards i32`,
    /// `deadline u64`, `backoff u64`, `sync since u64`, `answer id u64`, then
    /// uri, peer id, content type and body, each as `len u32` and its bytes.
    pub fn encode(&self) -> Vec<u8> {
        let m = &self.message;
        let uri = self.target.to_uri();
        let mut out = Vec::with_capacity(64 + uri.len() + m.peer_id.len() + m.content_type.len() + m.body.len());
        out.push(
            m.callback.is_some() as u8
                | (self.ordered as u8) << 1
                | (m.sync_since.is_some() as u8) << 2
                | (m.sync_answer.is_some() as u8) << 3,
        );
        out.extend_from_slice(&m.callback.unwrap_or([0; CALLBACK_LEN]));
        out.extend_from_slice(&m.max_forwards.to_ne_bytes());
        out.extend_from_slice(&self.deadline_ms.to_ne_bytes());
        out.extend_from_slice(&self.backoff_ms.to_ne_bytes());
        out.extend_from_slice(&m.sync_since.unwrap_or(0).to_ne_bytes());
        out.extend_from_slice(&m.sync_answer.unwrap_or(0).to_ne_bytes());
        for part in [uri.as_bytes(), m.peer_id.as_bytes(), m.content_type.as_bytes(), m.body] {
            out.extend_from_slice(&(part.len() as u32).to_ne_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    /// What [`encode`](Self::encode) made; None for anything else (short,
    /// a length past the end, text that is not UTF-8, no node URI).
    pub fn decode(mut context: &'a [u8]) -> Option<TmContext<'a>> {
        fn take<'a>(context: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, rest) = (context.get(..n)?, context.get(n..)?);
            *context = rest;
            Some(head)
        }
        let flags = take(&mut context, 1)?[0];
        let (has_callback, ordered) = (flags & 1 == 1, flags & 2 == 2);
        let callback: [u8; CALLBACK_LEN] = take(&mut context, CALLBACK_LEN)?.try_into().ok()?;
        let max_forwards = i32::from_ne_bytes(take(&mut context, 4)?.try_into().ok()?);
        let deadline_ms = u64::from_ne_bytes(take(&mut context, 8)?.try_into().ok()?);
        let backoff_ms = u64::from_ne_bytes(take(&mut context, 8)?.try_into().ok()?);
        let sync_since = u64::from_ne_bytes(take(&mut context, 8)?.try_into().ok()?);
        let sync_since = (flags & 4 == 4).then_some(sync_since);
        let sync_answer = u64::from_ne_bytes(take(&mut context, 8)?.try_into().ok()?);
        let sync_answer = (flags & 8 == 8).then_some(sync_answer);
        let mut part = || -> Option<&'a [u8]> {
            let len = u32::from_ne_bytes(take(&mut context, 4)?.try_into().ok()?) as usize;
            take(&mut context, len)
        };
        let uri = std::str::from_utf8(part()?).ok()?;
        let target = node_uri::parse_node_line(uri).ok()?.uri;
        // Both were encoded from &str.
        let peer_id = std::str::from_utf8(part()?).ok()?;
        let content_type = std::str::from_utf8(part()?).ok()?;
        let body = part()?;
        let callback = has_callback.then_some(callback);
        let message = PeerMessage { peer_id, body, content_type, max_forwards, callback, sync_since, sync_answer };
        Some(TmContext { message, target, deadline_ms, backoff_ms, ordered })
    }
}

/// The context of a notification or ping sent through tm: its round (0: a
/// notification, else the ping round) and the node it went to, as
/// `round|uri`.
pub fn encode_notification(round: u32, target: &NodeUri) -> String {
    format!("{round}|{}", target.to_uri())
}

/// What [`encode_notification`] made; None for anything else.
pub fn decode_notification(context: &[u8]) -> Option<(u32, NodeUri)> {
    let text = std::str::from_utf8(context).ok()?;
    let (round, uri) = text.split_once('|')?;
    Some((round.parse().ok()?, node_uri::parse_node_line(uri).ok()?.uri))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(text: &str) -> NodeUri {
        node_uri::parse_node_line(text).unwrap().uri
    }

    fn message(target: &NodeUri) -> TmContext<'static> {
        TmContext {
            message: PeerMessage {
                peer_id: "htable",
                body: br#"{"action":1}"#,
                content_type: "application/json",
                max_forwards: 1,
                callback: Some([7; CALLBACK_LEN]),
                sync_since: Some(99),
                sync_answer: Some(0xabc),
            },
            target: target.clone(),
            deadline_ms: 123_456,
            backoff_ms: 500,
            ordered: true,
        }
    }

    #[test]
    fn a_peer_message_round_trips() {
        let target = node("sip:10.0.0.2:5060;transport=tcp");
        let sent = message(&target);
        let bytes = sent.encode();
        assert_eq!(TmContext::decode(&bytes), Some(sent.clone()));
        let without = TmContext { message: PeerMessage { callback: None, body: b"", peer_id: "", ..sent.message }, ..sent };
        let bytes = without.encode();
        assert_eq!(TmContext::decode(&bytes), Some(without));
    }

    #[test]
    fn the_layout_is_fixed_fields_then_length_prefixed_parts() {
        let target = node("sip:10.0.0.2:5060");
        let bytes = message(&target).encode();
        let fixed = 1 + CALLBACK_LEN + 4 + 8 + 8 + 8 + 8;
        assert_eq!(bytes[0], 15, "a callback, ordered, a sync copy, an answer");
        assert_eq!(&bytes[1..1 + CALLBACK_LEN], &[7; CALLBACK_LEN]);
        assert_eq!(bytes[1 + CALLBACK_LEN..5 + CALLBACK_LEN], 1i32.to_ne_bytes());
        let uri = b"sip:10.0.0.2:5060";
        assert_eq!(bytes[fixed..fixed + 4], (uri.len() as u32).to_ne_bytes());
        assert_eq!(&bytes[fixed + 4..fixed + 4 + uri.len()], uri);
        assert!(bytes.ends_with(br#"{"action":1}"#));
    }

    #[test]
    fn the_flags_byte_says_callback_and_order_apart() {
        let target = node("sip:10.0.0.2:5060");
        let mut bytes = message(&target).encode();
        bytes[0] = 2;
        let decoded = TmContext::decode(&bytes).unwrap();
        assert_eq!((decoded.message.callback, decoded.ordered), (None, true));
        bytes[0] = 1;
        let decoded = TmContext::decode(&bytes).unwrap();
        assert_eq!((decoded.message.callback.is_some(), decoded.ordered), (true, false));
    }

    #[test]
    fn malformed_peer_message_contexts_decode_to_none() {
        let target = node("sip:10.0.0.2:5060");
        let bytes = message(&target).encode();
        // Every truncation fails (the body's length says more than is left).
        for end in 0..bytes.len() {
            assert_eq!(TmContext::decode(&bytes[..end]), None, "cut at {end}");
        }
        // A length past the end.
        let fixed = 1 + CALLBACK_LEN + 4 + 8 + 8 + 8 + 8;
        let mut long = bytes.clone();
        long[fixed..fixed + 4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(TmContext::decode(&long), None);
        // A URI that is not UTF-8, or not a node URI.
        let mut bad = bytes.clone();
        bad[fixed + 4] = 0xff;
        assert_eq!(TmContext::decode(&bad), None);
        let not_uri = TmContext { target: node("sip:10.0.0.2"), ..message(&target) }.encode();
        let mut not_uri = not_uri;
        not_uri[fixed + 4..fixed + 8].copy_from_slice(b"xxx:");
        assert_eq!(TmContext::decode(&not_uri), None);
        assert_eq!(TmContext::decode(b""), None);
    }

    #[test]
    fn a_notification_context_round_trips() {
        let target = node("sip:node2.example.com:5060;transport=tls");
        let text = encode_notification(3, &target);
        assert_eq!(text, "3|sip:node2.example.com:5060;transport=tls");
        assert_eq!(decode_notification(text.as_bytes()), Some((3, target.clone())));
        assert_eq!(decode_notification(encode_notification(0, &target).as_bytes()), Some((0, target)));
    }

    #[test]
    fn malformed_notification_contexts_decode_to_none() {
        assert_eq!(decode_notification(b""), None);
        assert_eq!(decode_notification(b"sip:10.0.0.2:5060"), None);
        assert_eq!(decode_notification(b"x|sip:10.0.0.2:5060"), None);
        assert_eq!(decode_notification(b"-1|sip:10.0.0.2:5060"), None);
        assert_eq!(decode_notification(b"1|"), None);
        assert_eq!(decode_notification(b"1|\xff"), None);
    }
}
