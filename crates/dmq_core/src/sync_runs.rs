//! Sync runs (issue 33): when a consumer (dmq_usrloc, htable, dialog,
//! presence) asks the cluster for its state, this node follows that sync
//! until it is done, so that an operator (`dmq.sync_status`) and a
//! readiness probe (`dmq_is_synced`) can tell when the node holds the
//! cluster's state.
//!
//! A run starts when the consumer's sync request leaves (at start, after a
//! heal pull, on `dmq.resync`) and lists the nodes asked. Each asked node
//! (a donor) is done when:
//! - it answered 200 with `X-DMQ-Sync-Sent: N` and `X-DMQ-Sync-Answer: id`
//!   (a dmq_rs donor counts the items of the sync copies it sent this node
//!   for that request before answering: contacts, cells, dialogs, as
//!   `ordering::identify` names them, so that batching on the way changes
//!   nothing; each copy carries the answer's id, random per answer), and N
//!   items arrived in copies with that id: exact. Copies of another answer
//!   (an earlier request, the donor's earlier self before a restart) count
//!   toward theirs;
//! - or it answered 200 without the count (a stock donor) and no message
//!   of that consumer came from it for the settle time (a stock sync copy
//!   looks like a live update): its consumer sends its state from the
//!   request's handler, before the reply, so what is left is on its way
//!   (retransmissions, a slow link); the settle time covers that, not more.
//!
//! A run is done when every donor is done; it times out when it is not
//! done within the timeout (a donor that died, refused or never answered
//! leaves it pending until then); a timed-out run whose donors complete
//! later is done then. A run with no donor (the first node of a cluster)
//! is done at once when a node alone counts as ready, else it stays
//! pending until the timeout. The module keeps one [`SyncRuns`] in shm
//! (serialized, see [`SyncRuns::encode`]) and applies these operations
//! under a lock.

/// Consumers followed at most (dmq_usrloc, htable, dialog, presence and a
/// few of the script's own).
pub const MAX_CONSUMERS: usize = 16;
/// Donors followed per run at most (the node list's size bounds it too).
pub const MAX_DONORS: usize = 64;
/// Answers counted per donor at most (the oldest is dropped first).
pub const MAX_ANSWERS: usize = 4;

/// The longest encoded table (for its shm store).
pub const MAX_ENCODED_LEN: usize = MAX_CONSUMERS * (160 + MAX_DONORS * (crate::node_uri::MAX_LINE_LEN + 120 + MAX_ANSWERS * 42));

/// What the settle time and the timeout are, and whether a node alone is
/// synced (parameters `sync_settle_ms`, `sync_timeout`, `sync_alone_ready`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub settle_ms: u64,
    pub timeout_ms: u64,
    pub alone_is_synced: bool,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy { settle_ms: 5000, timeout_ms: 120_000, alone_is_synced: true }
    }
}

/// How a donor answered the sync request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// No answer yet.
    Waiting,
    /// 200 at `at_ms`: from a dmq_rs donor, the items its answer `id`
    /// carried (`counted`); from a stock donor, nothing more.
    Sent { counted: Option<(u64, u64)>, at_ms: u64 },
    /// Any other final answer, a timeout (408), a send that failed, or a
    /// donor gone before it answered: it will not send its state for this
    /// run.
    Failed { code: u16 },
}

/// One asked node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Donor {
    /// The node, as the module names it (`sync_status::donor_key`).
    pub node: String,
    pub answer: Answer,
    /// Items received per answer id, in copies that carried one (dmq_rs
    /// donors' answers: `X-DMQ-Sync-Answer`); at most [`MAX_ANSWERS`].
    pub items: Vec<(u64, u64)>,
    /// Messages of the consumer received from it during the run (sync
    /// copies, and a stock donor's, whose copies look live), and bytes.
    pub messages: u64,
    pub bytes: u64,
    /// When its last message of the consumer arrived (0: none yet).
    pub last_copy_ms: u64,
}

impl Donor {
    fn new(node: &str) -> Donor {
        Donor { node: node.to_string(), answer: Answer::Waiting, items: Vec::new(), messages: 0, bytes: 0, last_copy_ms: 0 }
    }

    /// Items received in copies of answer `id`.
    pub fn items_of(&self, id: u64) -> u64 {
        self.items.iter().find(|(i, _)| *i == id).map_or(0, |(_, n)| *n)
    }

    /// Whether everything this donor sends for the run arrived.
    pub fn done(&self, now_ms: u64, policy: &Policy) -> bool {
        match self.answer {
            Answer::Sent { counted: Some((n, id)), .. } => self.items_of(id) >= n,
            Answer::Sent { counted: None, at_ms } => now_ms.saturating_sub(at_ms.max(self.last_copy_ms)) >= policy.settle_ms,
            Answer::Waiting | Answer::Failed { .. } => false,
        }
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Done { at_ms: u64 },
    TimedOut { at_ms: u64 },
}

/// Why a run started (for the log and `dmq.sync_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The consumer's own sync at start (`dmq_init_sync`, `init_with_single`).
    Start,
    /// A heal pull (two groups that formed apart met).
    HealPull,
    /// `dmq.resync`.
    Command,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::Start => "start",
            Reason::HealPull => "heal_pull",
            Reason::Command => "command",
        }
    }

    fn parse(s: &str) -> Option<Reason> {
        [Reason::Start, Reason::HealPull, Reason::Command].into_iter().find(|r| r.name() == s)
    }
}

/// One consumer's latest sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub consumer: String,
    pub reason: Reason,
    pub started_ms: u64,
    pub donors: Vec<Donor>,
    pub state: State,
    /// A heal pull started while the consumer was synced: the node stays
    /// synced while it runs (a serving node does not leave service because
    /// it met another group's node, nor when that node dies mid-pull).
    pub keeps_synced: bool,
}

impl Run {
    /// Messages and bytes received for the run, from every donor.
    pub fn received(&self) -> (u64, u64) {
        self.donors.iter().fold((0, 0), |(c, b), d| (c + d.messages, b + d.bytes))
    }

    /// How long the run took, or has taken so far.
    pub fn duration_ms(&self, now_ms: u64) -> u64 {
        match self.state {
            State::Pending => now_ms,
            State::Done { at_ms } | State::TimedOut { at_ms } => at_ms,
        }
        .saturating_sub(self.started_ms)
    }

    fn open(&self) -> bool {
        matches!(self.state, State::Pending | State::TimedOut { .. })
    }
}

/// A run that changed state in [`SyncRuns::tick`] (for a log line and the
/// statistics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub consumer: String,
    pub state: State,
    pub duration_ms: u64,
    pub messages: u64,
    pub bytes: u64,
}

/// Every consumer's latest run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncRuns {
    pub runs: Vec<Run>,
}

impl SyncRuns {
    /// A sync of `consumer` starts: `donors` were asked. It replaces the
    /// consumer's earlier run once that one ended (a resync of a synced
    /// node makes it pending again); while that one is pending, the new
    /// donors join it (a heal pull or a resync in the middle of the join
    /// must not end the join's wait for its donors), and a donor asked
    /// again after it answered waits for its new answer. Returns false when
    /// the table is full (a new consumer past `MAX_CONSUMERS`): not followed.
    pub fn start(&mut self, consumer: &str, reason: Reason, donors: &[String], now_ms: u64) -> bool {
        if let Some(r) = self.runs.iter_mut().find(|r| r.consumer == consumer && r.state == State::Pending) {
            for node in donors {
                match r.donors.iter().position(|d| &d.node == node) {
                    Some(i) if matches!(r.donors[i].answer, Answer::Waiting) => {}
                    Some(i) => r.donors[i].answer = Answer::Waiting,
                    None if r.donors.len() < MAX_DONORS => r.donors.push(Donor::new(node)),
                    None => {}
                }
            }
            // An operator's resync: the node is not synced until it is done.
            r.keeps_synced &= reason == Reason::HealPull;
            return true;
        }
        let was_synced = self.synced(Some(consumer)) && self.runs.iter().any(|r| r.consumer == consumer);
        let donors: Vec<Donor> = donors.iter().take(MAX_DONORS).map(|n| Donor::new(n)).collect();
        let keeps_synced = reason == Reason::HealPull && was_synced;
        let run = Run { consumer: consumer.to_string(), reason, started_ms: now_ms, donors, state: State::Pending, keeps_synced };
        if let Some(r) = self.runs.iter_mut().find(|r| r.consumer == consumer) {
            *r = run;
        } else if self.runs.len() < MAX_CONSUMERS {
            self.runs.push(run);
        } else {
            return false;
        }
        true
    }

    fn donor(&mut self, consumer: &str, node: &str) -> Option<&mut Donor> {
        let run = self.runs.iter_mut().find(|r| r.consumer == consumer && r.open())?;
        run.donors.iter_mut().find(|d| d.node == node)
    }

    /// `node` answered `consumer`'s sync request with `code`; a dmq_rs
    /// donor's 200 says how many items its answer carried and the answer's
    /// id (`counted`). Answers from a node not asked, or for a run that
    /// ended, change nothing.
    pub fn answered(&mut self, consumer: &str, node: &str, code: u16, counted: Option<(u64, u64)>, now_ms: u64) {
        if let Some(d) = self.donor(consumer, node) {
            d.answer = if (200..300).contains(&code) { Answer::Sent { counted, at_ms: now_ms } } else { Answer::Failed { code } };
        }
    }

    /// A sync copy of `consumer` (`bytes` long, `items` in it) of answer
    /// `id` arrived from `node`. Returns whether an open run counted it.
    pub fn copy_arrived(&mut self, consumer: &str, node: &str, id: u64, items: u64, bytes: u64, now_ms: u64) -> bool {
        let Some(d) = self.donor(consumer, node) else { return false };
        match d.items.iter_mut().find(|(i, _)| *i == id) {
            Some((_, n)) => *n += items,
            None => {
                if d.items.len() >= MAX_ANSWERS {
                    d.items.remove(0);
                }
                d.items.push((id, items));
            }
        }
        d.messages += 1;
        d.bytes += bytes;
        d.last_copy_ms = now_ms;
        true
    }

    /// Another message of `consumer` (not marked as an answer's copy)
    /// arrived from `node`: a stock donor's sync copies look like that, so
    /// it delays a stock donor's settling; it never counts as an item.
    pub fn traffic(&mut self, consumer: &str, node: &str, bytes: u64, now_ms: u64) -> bool {
        let Some(d) = self.donor(consumer, node) else { return false };
        d.messages += 1;
        d.bytes += bytes;
        d.last_copy_ms = now_ms;
        true
    }

    /// `node` went inactive: if it has not answered, it will not. A donor
    /// that answered keeps its count: its copies may still arrive (it may
    /// only have missed a ping), and if it died they will not, which the
    /// timeout covers.
    pub fn node_gone(&mut self, node: &str) {
        for run in self.runs.iter_mut().filter(|r| r.open()) {
            for d in run.donors.iter_mut().filter(|d| d.node == node && matches!(d.answer, Answer::Waiting)) {
                d.answer = Answer::Failed { code: 0 };
            }
        }
    }

    /// Ends the runs that are done or past the timeout (a timed-out run
    /// whose donors complete later is done then); returns them.
    pub fn tick(&mut self, now_ms: u64, policy: &Policy) -> Vec<Ended> {
        let mut ended = Vec::new();
        for run in self.runs.iter_mut().filter(|r| r.open()) {
            let done = if run.donors.is_empty() { policy.alone_is_synced } else { run.donors.iter().all(|d| d.done(now_ms, policy)) };
            let state = if done {
                State::Done { at_ms: now_ms }
            } else if run.state == State::Pending && now_ms.saturating_sub(run.started_ms) >= policy.timeout_ms {
                State::TimedOut { at_ms: now_ms }
            } else {
                continue;
            };
            run.state = state;
            let (messages, bytes) = run.received();
            ended.push(Ended { consumer: run.consumer.clone(), state, duration_ms: run.duration_ms(now_ms), messages, bytes });
        }
        ended
    }

    /// Whether `consumer` holds the cluster's state: its latest run is
    /// done, or is a heal pull that started while it was. A consumer that
    /// never asked for a sync is not followed and counts as synced
    /// (nothing to wait for); None asks for every consumer followed.
    pub fn synced(&self, consumer: Option<&str>) -> bool {
        let done = |r: &Run| r.keeps_synced || matches!(r.state, State::Done { .. });
        match consumer {
            Some(c) => self.runs.iter().find(|r| r.consumer == c).is_none_or(done),
            None => self.runs.iter().all(done),
        }
    }

    /// Runs pending (the `sync_pending` statistic).
    pub fn pending(&self) -> usize {
        self.runs.iter().filter(|r| r.state == State::Pending).count()
    }

    /// Runs that may still change (pending, or timed out and waiting for
    /// their donors): the module skips its lock when there are none.
    pub fn open(&self) -> usize {
        self.runs.iter().filter(|r| r.open()).count()
    }

    /// One block per run: a header line `consumer reason started state at
    /// keeps`, then one line per donor `answer items messages bytes last
    /// node` (answer: `w` waiting, `s<at>` or `s<at>/<n>@<id hex>` sent,
    /// `f<code>` failed; items: `-` or `<id hex>:<n>,…`), then an empty line.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        for r in &self.runs {
            let (state, at) = match r.state {
                State::Pending => ("pending", 0),
                State::Done { at_ms } => ("done", at_ms),
                State::TimedOut { at_ms } => ("timed_out", at_ms),
            };
            s += &format!("{} {} {} {state} {at} {}\n", r.consumer, r.reason.name(), r.started_ms, u8::from(r.keeps_synced));
            for d in &r.donors {
                let answer = match d.answer {
                    Answer::Waiting => "w".to_string(),
                    Answer::Sent { counted: None, at_ms } => format!("s{at_ms}"),
                    Answer::Sent { counted: Some((n, id)), at_ms } => format!("s{at_ms}/{n}@{id:x}"),
                    Answer::Failed { code } => format!("f{code}"),
                };
                let items = if d.items.is_empty() {
                    "-".to_string()
                } else {
                    d.items.iter().map(|(id, n)| format!("{id:x}:{n}")).collect::<Vec<_>>().join(",")
                };
                s += &format!("{answer} {items} {} {} {} {}\n", d.messages, d.bytes, d.last_copy_ms, d.node);
            }
            s += "\n";
        }
        s
    }

    /// The longest encoded table (for its shm store).
    pub const MAX_ENCODED_LEN: usize = MAX_ENCODED_LEN;

    /// The table [`encode`](Self::encode) wrote; bad blocks are skipped.
    pub fn decode(text: &str) -> SyncRuns {
        let runs = text.split("\n\n").filter_map(|block| decode_run(block.trim_start_matches('\n'))).collect();
        SyncRuns { runs }
    }
}

fn decode_answer(answer: &str) -> Option<Answer> {
    if answer == "w" {
        return Some(Answer::Waiting);
    }
    if let Some(code) = answer.strip_prefix('f') {
        return Some(Answer::Failed { code: code.parse().ok()? });
    }
    let sent = answer.strip_prefix('s')?;
    Some(match sent.split_once('/') {
        Some((at, counted)) => {
            let (n, id) = counted.split_once('@')?;
            Answer::Sent { counted: Some((n.parse().ok()?, u64::from_str_radix(id, 16).ok()?)), at_ms: at.parse().ok()? }
        }
        None => Answer::Sent { counted: None, at_ms: sent.parse().ok()? },
    })
}

fn decode_items(items: &str) -> Option<Vec<(u64, u64)>> {
    if items == "-" {
        return Some(Vec::new());
    }
    items
        .split(',')
        .map(|pair| {
            let (id, n) = pair.split_once(':')?;
            Some((u64::from_str_radix(id, 16).ok()?, n.parse().ok()?))
        })
        .collect()
}

fn decode_run(block: &str) -> Option<Run> {
    let mut lines = block.lines();
    let mut head = lines.next()?.split(' ');
    let consumer = head.next()?.to_string();
    let reason = Reason::parse(head.next()?)?;
    let started_ms = head.next()?.parse().ok()?;
    let state = head.next()?;
    let at_ms = head.next()?.parse().ok()?;
    let keeps_synced = head.next()? == "1";
    let state = match state {
        "pending" => State::Pending,
        "done" => State::Done { at_ms },
        "timed_out" => State::TimedOut { at_ms },
        _ => return None,
    };
    let donors = lines
        .filter_map(|line| {
            let mut p = line.splitn(6, ' ');
            let answer = decode_answer(p.next()?)?;
            let items = decode_items(p.next()?)?;
            let messages = p.next()?.parse().ok()?;
            let bytes = p.next()?.parse().ok()?;
            let last_copy_ms = p.next()?.parse().ok()?;
            let node = p.next()?.to_string();
            Some(Donor { node, answer, items, messages, bytes, last_copy_ms })
        })
        .collect();
    Some(Run { consumer, reason, started_ms, donors, state, keeps_synced })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sip:127.0.0.2:5060";
    const B: &str = "sip:127.0.0.3:5060";
    const C: &str = "sip:127.0.0.4:5060";

    fn policy() -> Policy {
        Policy { settle_ms: 1000, timeout_ms: 30_000, alone_is_synced: true }
    }

    fn two_donors() -> SyncRuns {
        let mut t = SyncRuns::default();
        assert!(t.start("usrloc", Reason::Start, &[A.to_string(), B.to_string()], 100));
        t
    }

    #[test]
    fn a_dmq_rs_donor_is_done_when_every_item_of_its_answer_arrived() {
        let mut t = two_donors();
        t.answered("usrloc", A, 200, Some((2, 7)), 200);
        t.answered("usrloc", B, 200, Some((0, 8)), 200);
        assert!(t.copy_arrived("usrloc", A, 7, 1, 500, 210));
        assert!(t.traffic("usrloc", A, 80, 215), "a live update counts no item");
        assert!(t.tick(220, &policy()).is_empty(), "one of two items");
        assert!(!t.synced(Some("usrloc")));
        t.copy_arrived("usrloc", A, 7, 1, 700, 230);
        let ended = t.tick(230, &policy());
        assert_eq!(
            ended,
            vec![Ended { consumer: "usrloc".into(), state: State::Done { at_ms: 230 }, duration_ms: 130, messages: 3, bytes: 1280 }]
        );
        assert!(t.synced(Some("usrloc")) && t.synced(None));
    }

    #[test]
    fn copies_may_arrive_before_the_answer_and_another_answers_copies_do_not_count() {
        let mut t = two_donors();
        t.copy_arrived("usrloc", A, 7, 1, 10, 150);
        // The donor's earlier self (killed, restarted) had sent 5 items.
        t.copy_arrived("usrloc", A, 3, 5, 10, 150);
        t.answered("usrloc", A, 200, Some((2, 7)), 160);
        t.answered("usrloc", B, 200, Some((0, 8)), 160);
        assert!(t.tick(160, &policy()).is_empty(), "1 of the answer's 2 items");
        t.copy_arrived("usrloc", A, 7, 1, 10, 170);
        assert_eq!(t.tick(170, &policy()).len(), 1);
    }

    #[test]
    fn a_stock_donor_is_done_once_its_traffic_stopped_for_the_settle_time() {
        let mut t = SyncRuns::default();
        t.start("htable", Reason::Start, &[A.to_string()], 0);
        t.answered("htable", A, 200, None, 100);
        t.traffic("htable", A, 60_000, 150);
        assert!(t.tick(1100, &policy()).is_empty(), "a copy 950 ms ago");
        assert_eq!(t.tick(1150, &policy())[0].state, State::Done { at_ms: 1150 });
    }

    #[test]
    fn a_failed_or_dead_donor_leaves_the_run_pending_until_it_times_out() {
        let mut t = two_donors();
        t.answered("usrloc", A, 200, Some((0, 1)), 200);
        t.answered("usrloc", B, 408, None, 200);
        assert!(t.tick(29_000, &policy()).is_empty());
        assert_eq!(t.tick(30_100, &policy())[0].state, State::TimedOut { at_ms: 30_100 });
        assert!(!t.synced(Some("usrloc")), "timed out is not synced");

        // Gone after saying it sent 3, with 1 arrived: never done without
        // the other 2; gone before answering: failed.
        let mut t = two_donors();
        t.answered("usrloc", A, 200, Some((3, 1)), 200);
        t.copy_arrived("usrloc", A, 1, 1, 10, 210);
        t.node_gone(A);
        t.node_gone(B);
        assert_eq!(t.runs[0].donors[1].answer, Answer::Failed { code: 0 });
        assert!(t.tick(5000, &policy()).is_empty());
        assert_eq!(t.tick(30_100, &policy())[0].state, State::TimedOut { at_ms: 30_100 });
    }

    #[test]
    fn a_timed_out_run_whose_donors_complete_later_is_done() {
        let mut t = SyncRuns::default();
        t.start("usrloc", Reason::Start, &[A.to_string()], 0);
        t.answered("usrloc", A, 200, Some((2, 9)), 100);
        t.copy_arrived("usrloc", A, 9, 1, 10, 200);
        assert_eq!(t.tick(30_000, &policy())[0].state, State::TimedOut { at_ms: 30_000 });
        t.copy_arrived("usrloc", A, 9, 1, 10, 31_000);
        assert_eq!(t.tick(31_000, &policy())[0].state, State::Done { at_ms: 31_000 });
        assert!(t.synced(None));
    }

    #[test]
    fn a_node_alone_is_synced_only_when_the_policy_says_so() {
        let mut t = SyncRuns::default();
        t.start("usrloc", Reason::Start, &[], 0);
        assert_eq!(t.tick(0, &policy()).len(), 1);
        assert!(t.synced(Some("usrloc")));
        let mut t = SyncRuns::default();
        t.start("usrloc", Reason::Start, &[], 0);
        let strict = Policy { alone_is_synced: false, ..policy() };
        assert!(t.tick(10, &strict).is_empty());
        assert!(!t.synced(None));
    }

    #[test]
    fn a_resync_makes_a_synced_consumer_pending_again_and_late_answers_change_nothing() {
        let mut t = two_donors();
        t.answered("usrloc", A, 200, Some((0, 1)), 200);
        t.answered("usrloc", B, 200, Some((0, 2)), 200);
        t.tick(200, &policy());
        assert!(t.synced(Some("usrloc")));
        t.start("usrloc", Reason::Command, &[B.to_string()], 300);
        assert!(!t.synced(Some("usrloc")) && t.pending() == 1);
        assert!(!t.copy_arrived("usrloc", A, 1, 1, 10, 310), "A was not asked this time");
        assert!(!t.copy_arrived("presence", B, 1, 1, 10, 310), "presence asked nothing");
        assert!(t.synced(Some("presence")), "a consumer that never asked counts as synced");
    }

    #[test]
    fn a_heal_pull_of_a_synced_node_keeps_it_synced_while_it_runs() {
        let mut t = SyncRuns::default();
        t.start("usrloc", Reason::Start, &[], 0);
        t.tick(0, &policy());
        t.start("usrloc", Reason::HealPull, &[C.to_string()], 100);
        assert!(t.synced(None) && t.pending() == 1, "pending, still synced");
        assert_eq!(t.tick(30_100, &policy())[0].state, State::TimedOut { at_ms: 30_100 });
        assert!(t.synced(None), "a pulled node that died does not take the node out of service");
        // A resync while that pull is open: not synced until it is done.
        let mut t = SyncRuns::default();
        t.start("usrloc", Reason::Start, &[], 0);
        t.tick(0, &policy());
        t.start("usrloc", Reason::HealPull, &[C.to_string()], 100);
        t.start("usrloc", Reason::Command, &[C.to_string()], 200);
        assert!(!t.synced(None));
        // A pull of a node that was never synced keeps it not synced.
        let mut t = SyncRuns::default();
        t.start("usrloc", Reason::HealPull, &[C.to_string()], 100);
        assert!(!t.synced(None));
    }

    #[test]
    fn a_sync_started_while_one_is_pending_joins_it_instead_of_ending_its_wait() {
        let mut t = two_donors();
        t.answered("usrloc", A, 200, Some((5, 1)), 200);
        t.copy_arrived("usrloc", A, 1, 2, 10, 210);
        // A heal pull of C while the join waits for A and B.
        assert!(t.start("usrloc", Reason::HealPull, &[C.to_string()], 300));
        t.answered("usrloc", C, 200, Some((0, 3)), 310);
        assert!(t.tick(320, &policy()).is_empty(), "A and B are still waited for");
        assert_eq!(t.runs[0].reason, Reason::Start);
        assert_eq!(t.runs[0].started_ms, 100);
        assert!(!t.synced(None));
        // A asked again (a resync): its new answer counts, not the old one.
        t.start("usrloc", Reason::Command, &[A.to_string(), B.to_string()], 400);
        assert_eq!(t.runs[0].donors[0].answer, Answer::Waiting);
        t.answered("usrloc", A, 200, Some((1, 4)), 410);
        t.answered("usrloc", B, 200, Some((0, 5)), 410);
        assert!(t.tick(415, &policy()).is_empty(), "the old answer's 2 items do not count");
        t.copy_arrived("usrloc", A, 4, 1, 10, 420);
        assert_eq!(t.tick(420, &policy())[0].state, State::Done { at_ms: 420 });
    }

    #[test]
    fn the_table_is_bounded_and_survives_its_shm_encoding() {
        let mut t = two_donors();
        t.answered("usrloc", A, 200, Some((4, 0xfeed)), 200);
        t.answered("usrloc", B, 503, None, 200);
        for id in 1..=6 {
            t.copy_arrived("usrloc", A, id, 3, 99, 250);
        }
        assert_eq!(t.runs[0].donors[0].items.len(), MAX_ANSWERS, "the oldest answers are dropped");
        t.start("htable", Reason::HealPull, &[B.to_string()], 260);
        t.answered("htable", B, 200, None, 270);
        t.start("dialog", Reason::Command, &[], 280);
        t.tick(280, &policy());
        assert_eq!(SyncRuns::decode(&t.encode()), t);
        let mut full = SyncRuns::default();
        for i in 0..MAX_CONSUMERS {
            assert!(full.start(&format!("c{i}"), Reason::Start, &[], 0));
        }
        assert!(!full.start("one-more", Reason::Start, &[], 0));
        full.tick(0, &policy());
        assert!(full.start("c0", Reason::Command, &[], 1), "a followed consumer starts again");
    }
}
