//! [`Kdmq`], the one builder of the KDMQ requests this node sends, either
//! way they go: through tm ([`Kdmq::tm_headers`], the header lines tm does
//! not write) or as bytes of our own ([`Kdmq::to_bytes`], with the
//! [`Envelope`] such a request carries instead of tm's Via, From tag and
//! Call-ID, and [`local_request_ids`] for one made for our own consumer).
//! Signed when the cluster has a `shared_secret` (`auth`).

use crate::auth;
use crate::node_uri::{NodeUri, Transport};
use crate::peer_message::PeerMessage;
use crate::sync_headers::{SYNC_AGE_HEADER, SYNC_ANSWER_HEADER};

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

impl<'a> Kdmq<'a> {
    /// The one way a peer message becomes a KDMQ request: from `from` to
    /// `to`, on the message's channel with its Max-Forwards, content type
    /// and body; a sync's copy says how old its sync is at `now_ms` (the
    /// clock of [`PeerMessage::sync_since`]) and which answer it belongs
    /// to; signed with `signing` when the cluster signs.
    pub fn of<C>(message: &PeerMessage<'a, C>, from: &'a NodeUri, to: &'a NodeUri, signing: Option<(&'a [u8], i64)>, now_ms: u64) -> Self {
        Kdmq {
            from,
            to,
            peer: message.peer_id,
            max_forwards: message.max_forwards,
            content_type: message.content_type,
            body: message.body,
            signing,
            sync_age_ms: message.sync_since.map(|since| now_ms.saturating_sub(since)),
            sync_answer: message.sync_answer,
        }
    }
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

/// The token and Via branch of a KDMQ this node makes for its own
/// consumer (`kind`: "heal", "custom"): unique per process (`pid`), time
/// and sequence number, so no two look like retransmissions of each other.
/// Returns (token, branch).
pub fn local_request_ids(kind: &str, pid: u32, now_ms: u64, seq: u64) -> (String, String) {
    let token = format!("{kind}{pid}x{now_ms}x{seq}");
    let branch = format!("z9hG4bK-{token}");
    (token, branch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_uri::parse_node_line;

    fn uri(s: &str) -> NodeUri {
        parse_node_line(s).unwrap().uri
    }

    #[test]
    fn a_peer_message_becomes_its_request_with_its_syncs_age() {
        let (from, to) = (uri("sip:10.0.0.1:5060"), uri("sip:10.0.0.2:5060;transport=tcp"));
        let plain = PeerMessage::<()>::plain("usrloc", b"{}", "application/json");
        let message = PeerMessage { max_forwards: 2, sync_since: Some(1_000), sync_answer: Some(7), ..plain };
        let kdmq = Kdmq::of(&message, &from, &to, Some((b"secret", 99)), 1_250);
        assert_eq!((kdmq.peer, kdmq.max_forwards, kdmq.content_type, kdmq.body), ("usrloc", 2, "application/json", &b"{}"[..]));
        assert_eq!((kdmq.from, kdmq.to), (&from, &to));
        assert_eq!((kdmq.sync_age_ms, kdmq.sync_answer, kdmq.signing), (Some(250), Some(7), Some((&b"secret"[..], 99))));
        // A live update is no sync's copy; a clock behind its start reads 0.
        assert_eq!(Kdmq::of(&plain, &from, &to, None, 5).sync_age_ms, None);
        assert_eq!(Kdmq::of(&message, &from, &to, None, 5).sync_age_ms, Some(0));
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
    fn a_local_request_is_named_by_kind_process_time_and_sequence() {
        let (token, branch) = local_request_ids("heal", 4242, 1_000_500, 7);
        assert_eq!(token, "heal4242x1000500x7");
        assert_eq!(branch, "z9hG4bK-heal4242x1000500x7");
        assert_ne!(local_request_ids("heal", 4242, 1_000_500, 8).0, token);
        assert_ne!(local_request_ids("custom", 4242, 1_000_500, 7).0, token);
    }
}
