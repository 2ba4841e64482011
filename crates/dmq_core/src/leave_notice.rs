//! The leave notice: this node's notification that it is disabled, sent
//! at shutdown statelessly over UDP (no tm, no reply awaited), so that
//! the other nodes stop sending to it at once. Its body is a notification
//! body (`notification`), its request a [`Kdmq`] whose Via branch and From
//! tag are made here.

use crate::kdmq::{Envelope, Kdmq};
use crate::node_uri::Transport;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_status::NodeStatus;
    use crate::node_uri::{parse_node_line, NodeUri};
    use crate::notification::{build_body, parse_body};

    fn uri(s: &str) -> NodeUri {
        parse_node_line(s).unwrap().uri
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
}
