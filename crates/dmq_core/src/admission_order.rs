//! The order of the checks a received KDMQ request goes through before
//! anything acts on it (`dmq_handle_message`, `dmq_process_message`), and
//! the reply each check refuses with:
//!
//! 1. its R-URI names a channel (else `400`);
//! 2. `shared_secret`: a valid, recent signature (else `403`);
//!
//! then a notification (the notification channel):
//!
//! 3. `trusted_network`: a source inside it (else `403`); it is merged;
//!
//! and a peer message (any other channel):
//!
//! 3. `members_only`: a source that is a listed node (else `403`), before
//!    the peer lookup, so that a stranger learns nothing of our peers;
//! 4. a peer (consumer) registered for the channel (else `404`);
//! 5. not a copy of a message seen before: a copy of one under way is
//!    absorbed (no reply), a copy of one answered is answered again with
//!    its code;
//! 6. a body of the shape its consumer reads (else `400`; judged here for
//!    a message run at once, by the worker for a queued one).
//!
//! The module runs each check when [`admit`] asks for it: some cost (a
//! signature verified, the node list read) or mark something (a copy noted
//! as arrived), so a check after the one that refuses is never run.

/// One check of a received KDMQ request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The R-URI names a channel (its user part).
    Channel,
    /// `shared_secret`: the request is signed, recently.
    Signature,
    /// `trusted_network`: a notification comes from inside.
    NotificationSource,
    /// `members_only`: a peer message comes from a listed node.
    Membership,
    /// A peer (consumer) is registered for the channel.
    Peer,
    /// The request is not a copy of one seen before.
    Duplicate,
    /// The body has the shape its consumer reads.
    Body,
}

/// A reply: status code and reason phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub reason: &'static str,
}

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// The request passes: on to the next check.
    Pass,
    /// The request is refused, with [`Check::refusal`]'s reply (a
    /// duplicate: a copy of a message under way, absorbed without one).
    Refused,
    /// A copy of a message already answered with this code: answered again.
    AnsweredBefore(u16),
}

/// Where a received request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A notification that passed its checks: merged and answered.
    Notification,
    /// A peer message that passed its checks: for its consumer.
    PeerMessage,
    /// `check` stopped it: answered with `reply`, or not at all (a copy of
    /// a message under way).
    Stopped { check: Check, reply: Option<Reply> },
}

impl Check {
    /// The reply when this check refuses a request; None for
    /// [`Check::Duplicate`], which never refuses: a copy is absorbed or
    /// answered again ([`Found::AnsweredBefore`]).
    pub fn refusal(self) -> Option<Reply> {
        let reply = |code, reason| Some(Reply { code, reason });
        match self {
            Check::Channel => reply(400, "Bad request"),
            Check::Signature | Check::NotificationSource | Check::Membership => reply(403, "Forbidden"),
            Check::Peer => reply(404, "User Not Found"),
            Check::Duplicate => None,
            Check::Body => reply(400, "Bad Request"),
        }
    }
}

/// The reply to a copy of a message answered before with `code`.
pub fn answered_again(code: u16) -> Reply {
    Reply { code, reason: if code < 300 { "OK" } else { "Answered Before" } }
}

/// The checks after [`Check::Channel`], in order: for a notification or a
/// peer message, with `members_only` on or off.
pub fn order(notification: bool, members_only: bool) -> &'static [Check] {
    use Check::*;
    match (notification, members_only) {
        (true, _) => &[Signature, NotificationSource],
        (false, true) => &[Signature, Membership, Peer, Duplicate, Body],
        (false, false) => &[Signature, Peer, Duplicate, Body],
    }
}

/// Runs the checks of a request for `channel` (None: its R-URI names none)
/// in order, each by `run`, until one stops it.
pub fn admit(channel: Option<&str>, notification_channel: &str, members_only: bool, mut run: impl FnMut(Check) -> Found) -> Decision {
    let Some(channel) = channel else { return Decision::Stopped { check: Check::Channel, reply: Check::Channel.refusal() } };
    let notification = channel == notification_channel;
    for &check in order(notification, members_only) {
        match run(check) {
            Found::Pass => {}
            Found::Refused => return Decision::Stopped { check, reply: check.refusal() },
            Found::AnsweredBefore(code) => return Decision::Stopped { check, reply: Some(answered_again(code)) },
        }
    }
    if notification {
        Decision::Notification
    } else {
        Decision::PeerMessage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHANNEL: &str = "notification_peer";

    /// Runs `admit`, refusing at `refuse` (found there: `found`), and
    /// returns the decision and the checks run.
    fn run(channel: Option<&str>, members_only: bool, refuse: Option<(Check, Found)>) -> (Decision, Vec<Check>) {
        let mut ran = Vec::new();
        let decision = admit(channel, CHANNEL, members_only, |check| {
            ran.push(check);
            match refuse {
                Some((at, found)) if at == check => found,
                _ => Found::Pass,
            }
        });
        (decision, ran)
    }

    #[test]
    fn a_peer_message_passes_every_check_in_order() {
        use Check::*;
        assert_eq!(run(Some("usrloc"), true, None), (Decision::PeerMessage, vec![Signature, Membership, Peer, Duplicate, Body]));
        assert_eq!(run(Some("usrloc"), false, None), (Decision::PeerMessage, vec![Signature, Peer, Duplicate, Body]));
    }

    #[test]
    fn a_notification_is_checked_for_its_signature_then_its_source() {
        use Check::*;
        assert_eq!(run(Some(CHANNEL), true, None), (Decision::Notification, vec![Signature, NotificationSource]));
        // members_only is for peer messages: a new node notifies before it is listed.
        assert_eq!(run(Some(CHANNEL), false, None).1, vec![Signature, NotificationSource]);
    }

    #[test]
    fn no_channel_is_refused_before_any_check_runs() {
        let reply = Some(Reply { code: 400, reason: "Bad request" });
        assert_eq!(run(None, true, None), (Decision::Stopped { check: Check::Channel, reply }, vec![]));
    }

    #[test]
    fn the_first_refusal_stops_the_rest() {
        use Check::*;
        let forbidden = Some(Reply { code: 403, reason: "Forbidden" });
        // A bad signature: nothing else is looked at, not even the source of a notification.
        assert_eq!(
            run(Some(CHANNEL), true, Some((Signature, Found::Refused))),
            (Decision::Stopped { check: Signature, reply: forbidden }, vec![Signature])
        );
        assert_eq!(
            run(Some(CHANNEL), true, Some((NotificationSource, Found::Refused))),
            (Decision::Stopped { check: NotificationSource, reply: forbidden }, vec![Signature, NotificationSource])
        );
        // A stranger is refused before the peer lookup: a 403, never a 404 that tells which peers exist.
        assert_eq!(
            run(Some("usrloc"), true, Some((Membership, Found::Refused))),
            (Decision::Stopped { check: Membership, reply: forbidden }, vec![Signature, Membership])
        );
        assert_eq!(
            run(Some("nobody"), true, Some((Peer, Found::Refused))),
            (
                Decision::Stopped { check: Peer, reply: Some(Reply { code: 404, reason: "User Not Found" }) },
                vec![Signature, Membership, Peer]
            )
        );
        // A bad body is judged last: a copy of a message seen before is never judged again.
        assert_eq!(
            run(Some("usrloc"), true, Some((Body, Found::Refused))),
            (
                Decision::Stopped { check: Body, reply: Some(Reply { code: 400, reason: "Bad Request" }) },
                vec![Signature, Membership, Peer, Duplicate, Body]
            )
        );
    }

    #[test]
    fn a_copy_is_absorbed_or_answered_again_before_its_body_is_judged() {
        use Check::*;
        let (decision, ran) = run(Some("htable"), true, Some((Duplicate, Found::Refused)));
        assert_eq!(decision, Decision::Stopped { check: Duplicate, reply: None }, "a copy of a message under way gets no reply");
        assert_eq!(ran, vec![Signature, Membership, Peer, Duplicate]);
        let (decision, _) = run(Some("htable"), true, Some((Duplicate, Found::AnsweredBefore(200))));
        assert_eq!(decision, Decision::Stopped { check: Duplicate, reply: Some(Reply { code: 200, reason: "OK" }) });
        let (decision, _) = run(Some("htable"), true, Some((Duplicate, Found::AnsweredBefore(500))));
        assert_eq!(decision, Decision::Stopped { check: Duplicate, reply: Some(Reply { code: 500, reason: "Answered Before" }) });
    }

    #[test]
    fn every_check_but_duplicates_refuses_with_a_reply() {
        use Check::*;
        for check in [Channel, Signature, NotificationSource, Membership, Peer, Body] {
            assert!(check.refusal().is_some_and(|r| (400..500).contains(&r.code)), "{check:?}");
        }
        assert_eq!(Duplicate.refusal(), None);
    }
}
