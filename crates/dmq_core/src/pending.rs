//! Peer messages waiting for their final reply: dmq_rs's own lightweight
//! client transactions for KDMQ over UDP, TCP and TLS.
//!
//! Sending a replicated item through tm costs a full transaction in shm
//! that tm keeps through its wait timer, seconds after the reply came. Here
//! a message holds one slot and its bytes (for retransmission) only until
//! its final reply; then both are freed at once. Over UDP retransmissions
//! follow SIP timers A/E (T1 doubling up to T2), until the first reply
//! stops them. Over a stream (TCP, TLS) the transport retransmits, but a
//! connection can break with the message in it (a peer killed, a write
//! queue that overflowed): a message without any reply is sent again after
//! [`STREAM_RESEND_MS`] (doubling up to [`STREAM_RESEND_MAX_MS`]), and one
//! that could not be handed to a connection at all after T1, doubling. No
//! final reply within [`TIMEOUT_MS`] is a timeout (408 to the callback).
//!
//! The table is plain data (it lives in Kamailio shm, shared by all
//! processes, under one lock the caller holds); each slot's message is the
//! caller's `M` (a shm block), opaque here.

use crate::reply_codes::{self, PeerReply};

/// First retransmission interval (SIP T1).
pub const T1_MS: u64 = 500;
/// Longest retransmission interval (SIP T2).
pub const T2_MS: u64 = 4000;
/// No final reply by then: the message timed out (tm's default fr_timer).
pub const TIMEOUT_MS: u64 = 30_000;
/// Over a stream, no reply at all by then: the connection may have broken
/// with the message in it, send it again (on a connection that works).
/// Long enough that a node that merely answers slowly is rarely sent a copy.
pub const STREAM_RESEND_MS: u64 = 4000;
/// The longest wait between two sends over a stream.
pub const STREAM_RESEND_MAX_MS: u64 = 16_000;

/// How a message travels: what its retransmissions are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// UDP: datagrams get lost; SIP's retransmission timers.
    Datagram,
    /// TCP, TLS: the transport retransmits; a copy goes again only when no
    /// reply came for a while (the connection may have broken).
    Stream,
}

/// What every branch made here starts with.
pub const BRANCH_PREFIX: &str = "z9hG4bKdmqrs.";

/// One message in flight; `seq == 0` marks a free slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Slot {
    pub seq: u64,
    /// Unpredictable per message (the caller's keyed hash of slot and
    /// sequence): a reply must carry it in its branch, so nobody who did not
    /// see the request can answer it, and replies to an earlier run of the
    /// node (sequences restart) match nothing.
    pub nonce: u64,
    /// When to retransmit next (u64::MAX: not any more).
    pub next_send_ms: u64,
    pub interval_ms: u64,
    pub deadline_ms: u64,
    /// Sent over a stream (TCP, TLS): see [`Delivery`].
    pub stream: bool,
}

/// Counters kept with the table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PendingStats {
    pub in_flight: u32,
    pub peak: u32,
    pub sent: u64,
    pub retransmissions: u64,
    pub timeouts: u64,
    /// Messages that found the table full (the caller sent them another way).
    pub overflows: u64,
    /// 503 replies (a node whose job queue was full) answered by sending again later.
    pub retries_after_503: u64,
    /// Replies that named a waiting message but failed its check (wrong
    /// source, Call-ID or CSeq): forged or misrouted, ignored.
    pub forged_replies: u64,
}

/// The table's fixed part.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Header {
    pub next_seq: u64,
    /// Free slot indices are `free[..free_top]`.
    pub free_top: u32,
    pub stats: PendingStats,
}

/// A view of the table: header, slots, the free-index stack and each
/// slot's message (attached once the request is built), all of the same
/// capacity.
pub struct PendingTable<'a, M> {
    pub head: &'a mut Header,
    pub slots: &'a mut [Slot],
    pub free: &'a mut [u32],
    pub messages: &'a mut [Option<M>],
}

/// What kind of reply arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// 1xx: the request arrived, stop retransmitting.
    Provisional,
    /// 503 from a node whose job queue is full: send again later.
    Busy,
    /// Any other final reply.
    Final,
}

/// What a reply did to the table.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplyOutcome<M> {
    /// No waiting message has this branch (late, duplicate or foreign).
    Unknown,
    /// The branch names a waiting message, but the caller's check of the
    /// reply (its source, Call-ID, CSeq) failed: nothing changed.
    Refused,
    /// Retransmissions stopped (a provisional reply).
    Stopped,
    /// Kept, to be sent again after a back-off (a 503).
    RetryLater,
    /// Finished: the message, removed from the table.
    Completed(M),
}

/// What a timer tick found due.
#[derive(Debug, PartialEq)]
pub struct Due<M> {
    /// Messages to send again (the table keeps its own reference).
    pub retransmit: Vec<M>,
    /// Timed-out messages, already removed: the caller's now.
    pub expired: Vec<M>,
}

impl<M> Default for Due<M> {
    fn default() -> Self {
        Due { retransmit: Vec::new(), expired: Vec::new() }
    }
}

impl<M: Clone> PendingTable<'_, M> {
    /// Marks every slot free (once, on fresh memory).
    pub fn reset(&mut self) {
        let cap = self.slots.len().min(self.free.len()).min(self.messages.len());
        for (i, f) in self.free.iter_mut().enumerate().take(cap) {
            // Pop order: lowest index first.
            *f = (cap - 1 - i) as u32;
        }
        self.slots.iter_mut().for_each(|s| *s = Slot::default());
        self.messages.iter_mut().for_each(|m| *m = None);
        self.head.free_top = cap as u32;
        self.head.next_seq = 1;
        self.head.stats = PendingStats::default();
    }

    /// Takes a slot for a message sent at `now_ms`: its branch, or None
    /// when the table is full. `nonce` makes the slot's nonce from its
    /// index and sequence (a keyed hash the caller holds the key of).
    /// The message is attached once built ([`attach`](Self::attach)).
    pub fn insert(&mut self, now_ms: u64, delivery: Delivery, nonce: impl FnOnce(u32, u64) -> u64) -> Option<String> {
        if self.head.free_top == 0 {
            return None;
        }
        self.head.free_top -= 1;
        let index = self.free[self.head.free_top as usize];
        let seq = self.head.next_seq.max(1);
        self.head.next_seq = seq + 1;
        let nonce = nonce(index, seq);
        let stream = delivery == Delivery::Stream;
        let first = if stream { STREAM_RESEND_MS } else { T1_MS };
        self.slots[index as usize] =
            Slot { seq, nonce, next_send_ms: now_ms + first, interval_ms: first, deadline_ms: now_ms + TIMEOUT_MS, stream };
        self.messages[index as usize] = None;
        let s = &mut self.head.stats;
        s.in_flight += 1;
        s.peak = s.peak.max(s.in_flight);
        s.sent += 1;
        Some(branch(index, seq, nonce))
    }

    /// The slot a reply's branch names, if it is still waiting.
    fn find(&mut self, branch: &str) -> Option<usize> {
        let (index, seq, nonce) = parse_branch(branch)?;
        let slot = self.slots.get(index as usize)?;
        (slot.seq == seq && seq != 0 && slot.nonce == nonce).then_some(index as usize)
    }

    /// A reply whose Via carries `branch`: `check` sees the waiting
    /// message first (the caller compares the reply's source with where
    /// the message went) and may refuse the reply; a slot whose message is
    /// not attached yet refuses every reply.
    pub fn on_reply(&mut self, branch: &str, kind: ReplyKind, now_ms: u64, check: impl FnOnce(&M) -> bool) -> ReplyOutcome<M> {
        let Some(i) = self.find(branch) else { return ReplyOutcome::Unknown };
        if !self.messages[i].as_ref().is_some_and(check) {
            self.head.stats.forged_replies += 1;
            return ReplyOutcome::Refused;
        }
        match kind {
            ReplyKind::Provisional => {
                self.provisional(branch);
                ReplyOutcome::Stopped
            }
            ReplyKind::Busy => {
                self.retry_later(branch, now_ms);
                ReplyOutcome::RetryLater
            }
            ReplyKind::Final => match self.release(i) {
                Some(message) => ReplyOutcome::Completed(message),
                None => ReplyOutcome::Unknown,
            },
        }
    }

    /// Counts a reply refused before it reached the table (bad Call-ID or CSeq).
    pub fn refused(&mut self) {
        self.head.stats.forged_replies += 1;
    }

    /// The caller gave up waiting for a slot and sent a message another way.
    pub fn overflowed(&mut self) {
        self.head.stats.overflows += 1;
    }

    /// Gives a slot taken with `insert` its message, once the request
    /// (which carries the branch) is built. Gives it back when the slot is
    /// gone or already has one.
    pub fn attach(&mut self, branch: &str, message: M) -> Result<(), M> {
        match self.find(branch) {
            Some(i) if self.messages[i].is_none() => {
                self.messages[i] = Some(message);
                Ok(())
            }
            _ => Err(message),
        }
    }

    /// A message over a stream that could not be handed to any connection
    /// (none could be made, or its write queue was full): sent again after
    /// T1, doubling, until one takes it or the deadline passes. False for a
    /// slot that is gone.
    pub fn send_failed(&mut self, branch: &str, now_ms: u64) -> bool {
        let Some(i) = self.find(branch) else { return false };
        let slot = &mut self.slots[i];
        slot.next_send_ms = now_ms + T1_MS;
        slot.interval_ms = T1_MS;
        true
    }

    /// A provisional reply: the request arrived, stop retransmitting.
    fn provisional(&mut self, branch: &str) -> bool {
        match self.find(branch) {
            Some(i) => {
                self.slots[i].next_send_ms = u64::MAX;
                true
            }
            None => false,
        }
    }

    /// A 503 (the node's job queue is full): keep the message and send it
    /// again after a back-off (doubling from T1 up to T2) until the timeout,
    /// instead of losing it. False for a late or unknown reply.
    fn retry_later(&mut self, branch: &str, now_ms: u64) -> bool {
        let Some(i) = self.find(branch) else { return false };
        let slot = &mut self.slots[i];
        let backoff = if slot.next_send_ms == u64::MAX { T1_MS } else { slot.interval_ms.clamp(T1_MS, T2_MS) };
        slot.next_send_ms = now_ms + backoff;
        slot.interval_ms = backoff;
        self.head.stats.retries_after_503 += 1;
        true
    }

    /// Frees the slot `branch` names and returns its message (None for a
    /// late or unknown reply, e.g. to a retransmission, or a slot whose
    /// message was never attached).
    pub fn complete(&mut self, branch: &str) -> Option<M> {
        let i = self.find(branch)?;
        self.release(i)
    }

    fn release(&mut self, i: usize) -> Option<M> {
        let message = self.messages[i].take();
        self.slots[i] = Slot::default();
        self.free[self.head.free_top as usize] = i as u32;
        self.head.free_top += 1;
        self.head.stats.in_flight -= 1;
        message
    }

    /// What is due at `now_ms`: retransmissions (rescheduled here) and
    /// timeouts (removed here).
    pub fn due(&mut self, now_ms: u64) -> Due<M> {
        let mut due = Due::default();
        if self.head.stats.in_flight == 0 {
            return due;
        }
        for i in 0..self.slots.len() {
            let slot = self.slots[i];
            if slot.seq == 0 {
                continue;
            }
            if slot.deadline_ms <= now_ms {
                due.expired.extend(self.release(i));
                self.head.stats.timeouts += 1;
            } else if slot.next_send_ms <= now_ms && self.messages[i].is_some() {
                let interval =
                    if slot.stream { (slot.interval_ms * 2).min(STREAM_RESEND_MAX_MS) } else { (slot.interval_ms * 2).min(T2_MS) };
                self.slots[i].interval_ms = interval;
                self.slots[i].next_send_ms = now_ms + interval;
                due.retransmit.extend(self.messages[i].clone());
                self.head.stats.retransmissions += 1;
            }
        }
        due
    }
}

/// When a message answered 503 (a node whose job queue is full) goes out
/// again: after `backoff_ms` (from T1, doubling up to T2), as long as that
/// is before its deadline. Returns (when, the back-off after that one), or
/// None once the deadline is near: the 503 is then its final answer.
pub fn retry_after_busy(now_ms: u64, deadline_ms: u64, backoff_ms: u64) -> Option<(u64, u64)> {
    let backoff = backoff_ms.clamp(T1_MS, T2_MS);
    let due = now_ms + backoff;
    (due < deadline_ms).then_some((due, (backoff * 2).min(T2_MS)))
}

/// The Via branch of a message in slot `index` with sequence `seq` and
/// `nonce`: `z9hG4bKdmqrs.<index>.<seq>.<nonce in hex>`.
pub fn branch(index: u32, seq: u64, nonce: u64) -> String {
    format!("{BRANCH_PREFIX}{index}.{seq}.{nonce:x}")
}

/// (slot index, sequence, nonce) from a branch this module made; None otherwise.
pub fn parse_branch(branch: &str) -> Option<(u32, u64, u64)> {
    let rest = branch.strip_prefix(BRANCH_PREFIX)?;
    let mut parts = rest.split('.');
    let index = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let nonce = u64::from_str_radix(parts.next()?, 16).ok()?;
    parts.next().is_none().then_some((index, seq, nonce))
}

/// The Call-ID of the message whose branch is `branch` on host `host`:
/// derived from the branch, so a reply's Call-ID can be checked against
/// its branch without storing it.
pub fn call_id(branch: &str, host: &str) -> String {
    format!("dmqrs-{}@{host}", branch.strip_prefix(BRANCH_PREFIX).unwrap_or(branch))
}

/// Whether a reply's Call-ID and CSeq are those of the message `branch`
/// names (built by [`call_id`] with CSeq `1 KDMQ`).
pub fn reply_matches(branch: &str, call_id: &[u8], cseq_number: &[u8], cseq_method: &[u8]) -> bool {
    let Some(token) = branch.strip_prefix(BRANCH_PREFIX) else { return false };
    let expected = call_id.strip_prefix(b"dmqrs-").and_then(|rest| rest.strip_prefix(token.as_bytes()));
    matches!(expected, Some([b'@', ..])) && cseq_number == b"1" && cseq_method == b"KDMQ"
}

impl ReplyKind {
    /// What a reply's status means for the message it answers
    /// (`reply_codes::peer_reply`): 1xx stops retransmissions; 503 (a
    /// dmq_rs node with a full job queue) and 403 (a dmq_rs node that does
    /// not list us yet, members_only) send it again later; anything else is
    /// final.
    pub fn of_status(status: u16) -> ReplyKind {
        match reply_codes::peer_reply(i32::from(status), true) {
            PeerReply::Provisional => ReplyKind::Provisional,
            PeerReply::Busy | PeerReply::NotListed => ReplyKind::Busy,
            PeerReply::TimedOut | PeerReply::Final => ReplyKind::Final,
        }
    }
}

/// How long a sender waits for a free slot when all are taken: the sender
/// (a DMQ worker running dmq_usrloc's or htable's sync loop) slows down to
/// the pace its nodes answer at, instead of piling up tm transactions.
pub const SLOT_WAIT_MS: u64 = 2000;

/// Whether a sender that began waiting (for a slot, or for room in a
/// node's batch) at `start_ms` may wait on at `now_ms`: never in a process
/// that reads SIP (replies that free room are read by processes like it:
/// all of them waiting would free nothing), not past [`SLOT_WAIT_MS`], and
/// not when a wait of this process gave up (at `gave_up_at_ms`) lately: a
/// node that stopped answering must not stall every send.
pub fn may_wait(reads_sip: bool, start_ms: u64, now_ms: u64, gave_up_at_ms: u64) -> bool {
    !reads_sip && now_ms.saturating_sub(start_ms) < SLOT_WAIT_MS && start_ms.saturating_sub(gave_up_at_ms) > 5 * SLOT_WAIT_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for the module's keyed hash.
    fn nonce(index: u32, seq: u64) -> u64 {
        (u64::from(index) << 40) ^ seq.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    struct Owned {
        head: Header,
        slots: Vec<Slot>,
        free: Vec<u32>,
        messages: Vec<Option<usize>>,
    }

    impl Owned {
        fn new(cap: usize) -> Owned {
            let mut o = Owned { head: Header::default(), slots: vec![Slot::default(); cap], free: vec![0; cap], messages: vec![None; cap] };
            o.table().reset();
            o
        }
        fn table(&mut self) -> PendingTable<'_, usize> {
            PendingTable { head: &mut self.head, slots: &mut self.slots, free: &mut self.free, messages: &mut self.messages }
        }
    }

    /// Inserts a message and attaches `message` to it at once.
    fn send(t: &mut PendingTable<'_, usize>, now: u64, message: usize, nonce: impl FnOnce(u32, u64) -> u64) -> Option<String> {
        let b = t.insert(now, Delivery::Datagram, nonce)?;
        t.attach(&b, message).unwrap();
        Some(b)
    }

    #[test]
    fn a_final_reply_frees_the_slot_at_once() {
        let mut o = Owned::new(2);
        let mut t = o.table();
        let b = send(&mut t, 0, 77, nonce).unwrap();
        assert_eq!(t.head.stats.in_flight, 1);
        assert_eq!(t.complete(&b), Some(77));
        assert_eq!(t.head.stats.in_flight, 0);
        // A second reply (to a retransmission) finds nothing.
        assert_eq!(t.complete(&b), None);
        assert_eq!(t.head.free_top, 2);
    }

    #[test]
    fn data_attached_after_insert_is_what_completes() {
        let mut o = Owned::new(2);
        let mut t = o.table();
        let b = t.insert(0, Delivery::Datagram, nonce).unwrap();
        // Not yet attached: nothing to retransmit, every reply refused.
        assert!(t.due(T1_MS).retransmit.is_empty());
        assert_eq!(t.on_reply(&b, ReplyKind::Final, 0, |_| true), ReplyOutcome::Refused);
        assert_eq!(t.attach(&b, 9), Ok(()));
        assert_eq!(t.attach(&b, 10), Err(10), "attached twice");
        assert_eq!(t.due(T1_MS * 3).retransmit, vec![9]);
        assert_eq!(t.complete(&b), Some(9));
        assert_eq!(t.attach(&b, 11), Err(11), "slot gone");
    }

    #[test]
    fn a_full_table_refuses_and_counts() {
        let mut o = Owned::new(1);
        let mut t = o.table();
        assert!(send(&mut t, 0, 1, nonce).is_some());
        assert!(send(&mut t, 0, 2, nonce).is_none());
        assert_eq!(t.head.stats.overflows, 0, "counted only when the caller gives up");
        t.overflowed();
        assert_eq!(t.head.stats.overflows, 1);
    }

    #[test]
    fn a_reused_slot_ignores_replies_meant_for_its_previous_message() {
        let mut o = Owned::new(1);
        let mut t = o.table();
        let old = send(&mut t, 0, 1, nonce).unwrap();
        t.complete(&old).unwrap();
        let new = send(&mut t, 0, 2, nonce).unwrap();
        assert_ne!(old, new);
        assert_eq!(t.complete(&old), None);
        assert_eq!(t.complete(&new), Some(2));
    }

    /// Runs the timer every 100 ms from 0 to the timeout: when the one
    /// message (data 5) went again, and that it expired at the timeout.
    fn send_times(t: &mut PendingTable<'_, usize>) -> Vec<u64> {
        let mut sends = Vec::new();
        let mut now = 0;
        while now <= TIMEOUT_MS {
            let due = t.due(now);
            if !due.retransmit.is_empty() {
                sends.push(now);
            }
            if !due.expired.is_empty() {
                assert_eq!(due.expired, vec![5]);
                assert_eq!(now, TIMEOUT_MS);
            }
            now += 100;
        }
        assert_eq!(t.head.stats.timeouts, 1);
        assert_eq!(t.head.stats.in_flight, 0);
        sends
    }

    #[test]
    fn retransmits_on_t1_doubling_to_t2_then_times_out() {
        let mut o = Owned::new(4);
        let mut t = o.table();
        send(&mut t, 0, 5, nonce).unwrap();
        let sends = send_times(&mut t);
        assert_eq!(&sends[..4], &[500, 1500, 3500, 7500]);
        assert!(sends.windows(2).all(|w| w[1] - w[0] <= T2_MS));
    }

    #[test]
    fn over_a_stream_a_copy_goes_again_only_after_seconds_without_a_reply() {
        let mut o = Owned::new(4);
        let mut t = o.table();
        let b = t.insert(0, Delivery::Stream, nonce).unwrap();
        t.attach(&b, 5).unwrap();
        assert_eq!(send_times(&mut t), vec![4000, 12_000, 28_000]);
    }

    #[test]
    fn over_a_stream_a_message_no_connection_took_goes_again_soon() {
        let mut o = Owned::new(4);
        let mut t = o.table();
        let b = t.insert(0, Delivery::Stream, nonce).unwrap();
        t.attach(&b, 5).unwrap();
        assert!(t.send_failed(&b, 100));
        assert!(t.due(100 + T1_MS - 1).retransmit.is_empty());
        assert_eq!(t.due(100 + T1_MS).retransmit, vec![5]);
        assert!(t.due(100 + T1_MS + 999).retransmit.is_empty());
        assert_eq!(t.due(100 + T1_MS + 1000).retransmit, vec![5], "doubling from T1");
        // A reply stops it like any other.
        assert_eq!(t.on_reply(&b, ReplyKind::Provisional, 2000, |_| true), ReplyOutcome::Stopped);
        assert!(t.due(20_000).retransmit.is_empty());
        assert_eq!(t.complete(&b), Some(5));
        assert!(!t.send_failed(&b, 3000), "gone");
    }

    #[test]
    fn a_provisional_reply_stops_retransmissions() {
        let mut o = Owned::new(4);
        let mut t = o.table();
        let b = send(&mut t, 0, 5, nonce).unwrap();
        assert!(t.provisional(&b));
        assert!(t.due(10_000).retransmit.is_empty());
        assert_eq!(t.due(TIMEOUT_MS).expired, vec![5]);
    }

    #[test]
    fn a_503_sends_again_later_and_a_final_reply_still_completes() {
        let mut o = Owned::new(2);
        let mut t = o.table();
        let b = send(&mut t, 0, 5, nonce).unwrap();
        assert!(t.provisional(&b));
        assert!(t.retry_later(&b, 1000));
        assert!(t.due(1000 + T1_MS - 1).retransmit.is_empty());
        assert_eq!(t.due(1000 + T1_MS).retransmit, vec![5]);
        assert_eq!(t.head.stats.retries_after_503, 1);
        assert_eq!(t.complete(&b), Some(5));
        assert!(!t.retry_later(&b, 2000), "gone");
    }

    #[test]
    fn branches_round_trip_and_foreign_ones_are_refused() {
        assert_eq!(parse_branch(&branch(12, 345, 0xdead_beef)), Some((12, 345, 0xdead_beef)));
        for foreign in [
            "z9hG4bKdmqrs42",
            "z9hG4bK.12.3.1",
            "z9hG4bKdmqrs.x.1.1",
            "z9hG4bKdmqrs.1",
            "z9hG4bKdmqrs.1.2",
            "z9hG4bKdmqrs.1.2.zz",
            "z9hG4bKdmqrs.1.2.3.4",
            "",
            "z9hG4bKdmqrs.99999999999.1.1",
        ] {
            assert_eq!(parse_branch(foreign), None, "{foreign}");
        }
        let mut o = Owned::new(1);
        let mut t = o.table();
        assert_eq!(t.complete("z9hG4bKdmqrs.5.1.0"), None, "index out of range");
    }

    #[test]
    fn a_reply_must_carry_the_nonce_and_pass_the_check() {
        let mut o = Owned::new(2);
        let mut t = o.table();
        let b = send(&mut t, 0, 7, nonce).unwrap();
        let (index, seq, n) = parse_branch(&b).unwrap();
        // The branch an attacker would guess from slot and sequence alone.
        let guessed = branch(index, seq, n ^ 1);
        assert_eq!(t.on_reply(&guessed, ReplyKind::Final, 0, |_| true), ReplyOutcome::Unknown);
        assert_eq!(t.on_reply(&branch(index, seq, 0), ReplyKind::Provisional, 0, |_| true), ReplyOutcome::Unknown);
        // The right branch from the wrong source changes nothing but a counter.
        assert_eq!(t.on_reply(&b, ReplyKind::Final, 0, |&data| data == 8), ReplyOutcome::Refused);
        assert_eq!(t.on_reply(&b, ReplyKind::Busy, 0, |_| false), ReplyOutcome::Refused);
        assert_eq!(t.head.stats.forged_replies, 2);
        assert_eq!(t.head.stats.retries_after_503, 0);
        assert_eq!(t.due(T1_MS).retransmit.len(), 1, "still retransmitted");
        assert_eq!(t.on_reply(&b, ReplyKind::Provisional, 0, |&data| data == 7), ReplyOutcome::Stopped);
        assert_eq!(t.on_reply(&b, ReplyKind::Busy, 10, |_| true), ReplyOutcome::RetryLater);
        assert_eq!(t.on_reply(&b, ReplyKind::Final, 20, |&data| data == 7), ReplyOutcome::Completed(7));
        assert_eq!(t.on_reply(&b, ReplyKind::Final, 30, |_| true), ReplyOutcome::Unknown, "late");
    }

    #[test]
    fn a_restarted_node_ignores_replies_to_its_previous_run() {
        let mut first = Owned::new(2);
        let old = send(&mut first.table(), 0, 1, |_, _| 0x1111).unwrap();
        // Same slot and sequence after a restart, another key.
        let mut second = Owned::new(2);
        let new = send(&mut second.table(), 0, 2, |_, _| 0x2222).unwrap();
        assert_ne!(old, new);
        assert_eq!(second.table().on_reply(&old, ReplyKind::Final, 0, |_| true), ReplyOutcome::Unknown);
    }

    #[test]
    fn busy_retries_back_off_until_the_deadline() {
        let deadline = TIMEOUT_MS;
        let (mut now, mut backoff, mut sends) = (0, 0, Vec::new());
        while let Some((due, next)) = retry_after_busy(now, deadline, backoff) {
            sends.push(due);
            now = due;
            backoff = next;
        }
        assert_eq!(&sends[..4], &[500, 1500, 3500, 7500]);
        assert!(*sends.last().unwrap() < deadline);
        assert!(sends.windows(2).all(|w| w[1] - w[0] <= T2_MS));
        assert_eq!(retry_after_busy(deadline - 100, deadline, T1_MS), None);
    }

    #[test]
    fn call_id_and_cseq_are_checked_against_the_branch() {
        let b = branch(3, 9, 0xabc);
        let cid = call_id(&b, "127.0.0.2");
        assert_eq!(cid, "dmqrs-3.9.abc@127.0.0.2");
        assert!(reply_matches(&b, cid.as_bytes(), b"1", b"KDMQ"));
        assert!(!reply_matches(&b, b"dmqrs-3.9.abd@127.0.0.2", b"1", b"KDMQ"));
        assert!(!reply_matches(&b, b"dmqrs-3.9.abc", b"1", b"KDMQ"));
        assert!(!reply_matches(&b, b"dmqrs-3.9.abcd@h", b"1", b"KDMQ"));
        assert!(!reply_matches(&b, cid.as_bytes(), b"2", b"KDMQ"));
        assert!(!reply_matches(&b, cid.as_bytes(), b"1", b"INVITE"));
    }

    #[test]
    fn a_reply_status_says_what_becomes_of_the_message() {
        assert_eq!(ReplyKind::of_status(0), ReplyKind::Provisional);
        assert_eq!(ReplyKind::of_status(100), ReplyKind::Provisional);
        assert_eq!(ReplyKind::of_status(199), ReplyKind::Provisional);
        assert_eq!(ReplyKind::of_status(200), ReplyKind::Final);
        assert_eq!(ReplyKind::of_status(503), ReplyKind::Busy);
        assert_eq!(ReplyKind::of_status(403), ReplyKind::Busy);
        assert_eq!(ReplyKind::of_status(404), ReplyKind::Final);
        assert_eq!(ReplyKind::of_status(500), ReplyKind::Final);
    }

    #[test]
    fn a_sender_waits_only_outside_sip_receivers_briefly_and_not_right_after_giving_up() {
        let start = 100_000;
        assert!(may_wait(false, start, start, 0));
        assert!(may_wait(false, start, start + SLOT_WAIT_MS - 1, 0));
        assert!(!may_wait(false, start, start + SLOT_WAIT_MS, 0));
        assert!(!may_wait(true, start, start, 0));
        // A wait gave up lately: not before 5 waits' time has passed.
        assert!(!may_wait(false, start, start, start - 5 * SLOT_WAIT_MS));
        assert!(may_wait(false, start, start, start - 5 * SLOT_WAIT_MS - 1));
        // A clock read before the start (another process's) is no wait yet.
        assert!(may_wait(false, start, start - 1, 0));
    }
}
