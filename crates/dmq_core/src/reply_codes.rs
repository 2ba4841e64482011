//! What the reply code to one of this node's requests means: to a
//! notification or a ping ([`notification_reply`]: the node list), and to
//! a peer message ([`peer_reply`]: sent again, timed out, or final for its
//! consumer), whichever path the message took (tm's reply callbacks, or
//! the reply hook for messages sent without tm: `pending::ReplyKind`).

/// What a reply to one of our notifications (or pings) means for its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationReply {
    /// `200`: the node is active; the node list it sent back is merged.
    Answered,
    /// `408` (tm's timer, or the node's): a failed ping, counted against
    /// the node (`nodes::NodeList::ping_timed_out`).
    TimedOut,
    /// Another final reply to a ping: the node is there but refused it; it
    /// keeps its state, as stock, and owes no answer to that round
    /// (`nodes::NodeList::ping_refused`).
    PingRefused,
    /// Anything else (another final reply to a notification that is not a
    /// ping, or a provisional one): nothing changes.
    Nothing,
}

/// What `code` means for the node a notification went to; `round` is the
/// ping round it belongs to (0: not a ping).
pub fn notification_reply(code: i32, round: u32) -> NotificationReply {
    match code {
        200 => NotificationReply::Answered,
        408 => NotificationReply::TimedOut,
        200.. if round != 0 => NotificationReply::PingRefused,
        _ => NotificationReply::Nothing,
    }
}

/// What a reply to one of our peer messages means for that message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerReply {
    /// 1xx: the node has the request (no more retransmissions); the
    /// final reply is still to come.
    Provisional,
    /// `503`: a dmq_rs node whose job queue is full; the message goes
    /// again after a back-off (`pending::retry_after_busy`), until its
    /// deadline makes the 503 final.
    Busy,
    /// `403`: a node that does not list this one (`members_only`); it is
    /// notified of this node at once, and the message goes again as after
    /// a 503.
    NotListed,
    /// `408` made here (no reply came): the node never answered; a delete
    /// is kept for it (`origin`).
    TimedOut,
    /// Any other reply (a `408` the node sent included): final, handed
    /// to the consumer's callback and counted by its code.
    Final,
}

impl PeerReply {
    /// Whether the message goes again later.
    pub fn retried(self) -> bool {
        matches!(self, PeerReply::Busy | PeerReply::NotListed)
    }
}

/// What `code` means for a peer message; `received`: the reply came from
/// the node (not made here by tm's timer or ours).
pub fn peer_reply(code: i32, received: bool) -> PeerReply {
    match code {
        503 => PeerReply::Busy,
        403 => PeerReply::NotListed,
        408 if !received => PeerReply::TimedOut,
        ..=199 => PeerReply::Provisional,
        _ => PeerReply::Final,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_answered_200_makes_its_node_active() {
        assert_eq!(notification_reply(200, 0), NotificationReply::Answered);
        assert_eq!(notification_reply(200, 7), NotificationReply::Answered);
        // Only 200: the stock module answers notifications with 200 alone.
        assert_eq!(notification_reply(202, 0), NotificationReply::Nothing);
    }

    #[test]
    fn a_timeout_is_a_failure_of_the_node_ping_or_not() {
        assert_eq!(notification_reply(408, 3), NotificationReply::TimedOut);
        assert_eq!(notification_reply(408, 0), NotificationReply::TimedOut);
    }

    #[test]
    fn another_final_reply_to_a_ping_is_a_refusal_and_to_a_notification_nothing() {
        for code in [202, 403, 404, 500, 503, 603] {
            assert_eq!(notification_reply(code, 4), NotificationReply::PingRefused, "{code}");
            assert_eq!(notification_reply(code, 0), NotificationReply::Nothing, "{code}");
        }
        assert_eq!(notification_reply(100, 4), NotificationReply::Nothing);
        assert_eq!(notification_reply(0, 4), NotificationReply::Nothing);
    }

    #[test]
    fn a_busy_or_unlisting_node_gets_the_message_again() {
        for received in [true, false] {
            assert_eq!(peer_reply(503, received), PeerReply::Busy);
            assert_eq!(peer_reply(403, received), PeerReply::NotListed);
        }
        assert!(PeerReply::Busy.retried() && PeerReply::NotListed.retried());
        assert!(!PeerReply::Final.retried() && !PeerReply::TimedOut.retried() && !PeerReply::Provisional.retried());
    }

    #[test]
    fn only_a_408_made_here_is_a_timeout() {
        assert_eq!(peer_reply(408, false), PeerReply::TimedOut);
        assert_eq!(peer_reply(408, true), PeerReply::Final, "the node itself answered 408");
    }

    #[test]
    fn provisional_and_other_replies() {
        assert_eq!(peer_reply(100, true), PeerReply::Provisional);
        assert_eq!(peer_reply(180, true), PeerReply::Provisional);
        for code in [200, 202, 400, 404, 488, 500, 502, 504, 603] {
            assert_eq!(peer_reply(code, true), PeerReply::Final, "{code}");
        }
    }
}
