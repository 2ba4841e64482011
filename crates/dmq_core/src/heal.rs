//! Heal syncs: when a node comes back (a partition healed, a node restarted
//! or answering pings again), this node pushes its full state to it: the
//! peers' init callbacks run narrowed to that node, and the sync requests
//! they make are answered by this node's own consumers as if the node had
//! sent them. A node met for the first time after this node's join sync
//! (two groups that formed apart) is asked for its state instead: a heal
//! pull. This is the policy: which node is due a sync when, rate-limited
//! per node so a flapping link cannot cause a sync storm, and when the
//! local node itself was away (its processes stopped, so the others may
//! have dropped it without it noticing). The module keeps one [`HealTable`] in shm (serialized, see
//! [`HealTable::encode`]) and applies these operations under a lock.

use crate::node_uri::{self, NodeUri};
use crate::nodes::MAX_NODES;

/// The shortest time between two heal syncs to the same node: twice the
/// ping interval (a link cannot flap faster than pings notice it), within
/// 4 s..120 s.
pub fn window_ms(ping_interval_s: u32) -> u64 {
    u64::from(ping_interval_s).saturating_mul(2).clamp(4, 120) * 1000
}

/// The least time a pull from a node met after this node's join sync
/// waits: a node that joins asks for our state right after its
/// notification is answered, and is then not pulled ([`HealTable::asked_us`]).
pub const PULL_GRACE_MS: u64 = 2000;

/// A timer that runs every few hundred ms and saw no tick for this long
/// means the node's processes did not run (SIGSTOP, a suspended VM, a
/// stalled host): long enough for the others to have dropped it. The ping
/// interval, within 2 s..10 s.
pub fn stall_ms(ping_interval_s: u32) -> u64 {
    u64::from(ping_interval_s).clamp(2, 10) * 1000
}

/// Whether the gap between two timer ticks means the node was away.
pub fn was_stalled(gap_ms: u64, ping_interval_s: u32) -> bool {
    gap_ms >= stall_ms(ping_interval_s)
}

/// Whether this node is quiet enough to start a heal sync: not busy
/// sending (a join sync, another heal sync), i.e. less than a quarter of
/// its table of messages waiting for replies in use (`messages_waiting` of
/// `table_capacity`; no table: quiet) and no job waiting in its workers
/// (`jobs_waiting`; no workers: quiet). Two full transfers must not pile up
/// in shm.
pub fn quiet_enough(messages_waiting: Option<usize>, table_capacity: usize, jobs_waiting: Option<usize>) -> bool {
    messages_waiting.is_none_or(|n| n < table_capacity / 4) && jobs_waiting.is_none_or(|n| n == 0)
}

/// What a regained node's entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Regain {
    /// A sync is due now.
    Now,
    /// The last sync from that node is recent: one sync runs at the end of
    /// the window (several regains inside it share it).
    Deferred,
    /// A sync is due after the delay asked for.
    Later,
    /// The node was never active here before: it is new, and its own join
    /// sync covers it. Noted, no sync.
    FirstSeen,
    /// A sync was already waiting (at most one waits per node).
    AlreadyDue,
    /// The table is full (cannot happen while it keeps to the node limit).
    Refused,
    /// Never active here before, met after this node's own join sync (see
    /// [`HealTable::arrived`]): a pull from it is due (now, or after the delay).
    Pull,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealEntry {
    pub uri: NodeUri,
    /// When the last heal sync from this node started (ms, 0: never).
    pub last_sync: u64,
    /// When the next one is due (None: none waiting).
    pub due: Option<u64>,
    /// The due one is a pull (ask the node for its state), not a push.
    pub pull: bool,
    /// The node asked us for our state (a join sync) before it became
    /// active here, or while a pull from it waited: a node that joins
    /// asking us has no state we lack (its live updates reach us), so it
    /// is not pulled. Cleared when it arrives.
    pub joined: bool,
}

/// One entry per node a heal sync ran for or waits for. Entries stay when
/// a node leaves the list, so a node that flaps by being removed and added
/// again is still rate-limited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealTable {
    pub entries: Vec<HealEntry>,
}

impl HealTable {
    /// `uri` became active again at `now`: a sync from it is due `delay` ms
    /// from now (0: at once; else time for the other node to list this one
    /// again), or at the end of the rate-limit window (`window` ms after
    /// the last one).
    pub fn regained(&mut self, uri: &NodeUri, now: u64, window: u64, delay: u64) -> Regain {
        match self.note_seen(uri, now, window) {
            Some(i) => self.schedule(i, now, window, delay),
            None if self.entries.iter().any(|e| e.uri.same_node(uri)) => Regain::FirstSeen,
            None => Regain::Refused,
        }
    }

    /// Nodes that became active here through one message, after this
    /// node's own join sync ran: `direct` the node the message came from
    /// (it answered or notified us), `named` the others its list named (for
    /// them the wait is `named_delay`: they may not list us yet). A node
    /// seen before is regained (a push, as [`regained`](Self::regained)). A
    /// node never active here before was not asked by our join sync: a pull
    /// from it is due ([`Regain::Pull`]). That is how two groups that formed
    /// apart heal each other once a DNS name lists both (each side pulls
    /// from the other's nodes), how a node that started with others at once
    /// gets the state of those it met after its join sync, and it costs a
    /// joining node's (empty) state only.
    pub fn arrived(&mut self, direct: &[NodeUri], named: &[NodeUri], now: u64, window: u64, named_delay: u64) -> Vec<(NodeUri, Regain)> {
        let mut out = Vec::new();
        for (nodes, delay) in [(direct, 0), (named, named_delay)] {
            for n in nodes {
                let outcome = match self.entries.iter().position(|e| e.uri.same_node(n)) {
                    Some(i) if self.entries[i].joined => {
                        self.entries[i].joined = false;
                        Regain::FirstSeen
                    }
                    Some(_) => self.regained(n, now, window, delay),
                    None => match self.note_seen(n, now, window) {
                        None => match self.entries.iter().position(|e| e.uri.same_node(n)) {
                            Some(i) => {
                                // Time for a joining node's sync request
                                // to arrive (`asked_us`): it is not pulled.
                                self.schedule(i, now, window, delay.max(PULL_GRACE_MS));
                                self.entries[i].pull = true;
                                Regain::Pull
                            }
                            None => Regain::Refused,
                        },
                        Some(_) => Regain::AlreadyDue,
                    },
                };
                out.push((n.clone(), outcome));
            }
        }
        out
    }

    /// Notes that `uri` is active here; returns its entry's index if it was
    /// known before (None: new now, or no room).
    pub fn note_seen(&mut self, uri: &NodeUri, now: u64, window: u64) -> Option<usize> {
        match self.entries.iter().position(|e| e.uri.same_node(uri)) {
            Some(i) => Some(i),
            None => {
                if self.entries.len() >= MAX_NODES {
                    // Make room: forget the entry synced longest ago with
                    // nothing waiting (its window is long over).
                    let oldest = self
                        .entries
                        .iter()
                        .enumerate()
                        .filter(|(_, e)| e.due.is_none() && now.saturating_sub(e.last_sync) >= window)
                        .min_by_key(|(_, e)| e.last_sync)
                        .map(|(i, _)| i)?;
                    self.entries.remove(oldest);
                }
                self.entries.push(HealEntry { uri: uri.clone(), last_sync: 0, due: None, pull: false, joined: false });
                None
            }
        }
    }

    /// `uri` became active here before this node's own join sync: noted
    /// (our join sync covers it), and a request it made as it joined is
    /// spent (after a later partition it is regained as any node).
    pub fn seen_before_join(&mut self, uri: &NodeUri, now: u64, window: u64) {
        self.note_seen(uri, now, window);
        if let Some(e) = self.entries.iter_mut().find(|e| e.uri.same_node(uri)) {
            e.joined = false;
        }
    }

    /// `uri` asked us for our state as a node that joins does (not a heal
    /// pull): a pull from it that waits is dropped, and one is not
    /// scheduled when it arrives ([`HealEntry::joined`]). A stock node
    /// answers a pull with its whole state, read while the live updates of
    /// its items may still be on their way to it: applied after newer
    /// updates here, it brought back contacts deleted since. Returns
    /// whether a waiting pull was dropped.
    pub fn asked_us(&mut self, uri: &NodeUri, now: u64, window: u64) -> bool {
        match self.note_seen(uri, now, window) {
            Some(i) => {
                let e = &mut self.entries[i];
                if e.pull && e.due.is_some() {
                    e.pull = false;
                    e.due = None;
                    return true;
                }
                false
            }
            None => {
                if let Some(e) = self.entries.iter_mut().find(|e| e.uri.same_node(uri)) {
                    e.joined = true;
                }
                false
            }
        }
    }

    fn schedule(&mut self, idx: usize, now: u64, window: u64, delay: u64) -> Regain {
        let e = &mut self.entries[idx];
        if e.due.is_some() {
            return Regain::AlreadyDue;
        }
        let earliest = if e.last_sync == 0 { now } else { e.last_sync.saturating_add(window) };
        if earliest <= now {
            e.due = Some(now.saturating_add(delay));
            if delay > 0 {
                return Regain::Later;
            }
            Regain::Now
        } else {
            e.due = Some(earliest);
            Regain::Deferred
        }
    }

    /// The nodes whose sync is due at `now`; each is marked as synced now.
    pub fn take_due(&mut self, now: u64) -> Vec<NodeUri> {
        self.take_due_syncs(now).into_iter().map(|(n, _)| n).collect()
    }

    /// As [`take_due`](Self::take_due), with whether each is a pull.
    pub fn take_due_syncs(&mut self, now: u64) -> Vec<(NodeUri, bool)> {
        let mut due = Vec::new();
        for e in &mut self.entries {
            if e.due.is_some_and(|d| d <= now) {
                e.due = None;
                e.last_sync = now;
                due.push((e.uri.clone(), std::mem::take(&mut e.pull)));
            }
        }
        due
    }

    /// Nodes with a sync waiting.
    pub fn waiting(&self) -> usize {
        self.entries.iter().filter(|e| e.due.is_some()).count()
    }

    /// One line per entry: `last_sync due uri` (due 0: none; `p` before
    /// it: a pull; `j` before `last_sync`: joined).
    pub fn encode(&self) -> String {
        let mut s = String::new();
        for e in &self.entries {
            let pull = if e.pull { "p" } else { "" };
            let joined = if e.joined { "j" } else { "" };
            s += &format!("{joined}{} {pull}{} {}\n", e.last_sync, e.due.unwrap_or(0), e.uri.to_uri());
        }
        s
    }

    /// The table [`encode`](Self::encode) wrote; bad lines are skipped.
    pub fn decode(text: &str) -> HealTable {
        let entries = text
            .lines()
            .filter_map(|line| {
                let mut parts = line.splitn(3, ' ');
                let last_sync = parts.next()?;
                let (joined, last_sync) = match last_sync.strip_prefix('j') {
                    Some(l) => (true, l),
                    None => (false, last_sync),
                };
                let last_sync = last_sync.parse().ok()?;
                let due = parts.next()?;
                let (pull, due) = match due.strip_prefix('p') {
                    Some(d) => (true, d),
                    None => (false, due),
                };
                let due: u64 = due.parse().ok()?;
                let uri = node_uri::parse_node_line(parts.next()?).ok()?.uri;
                Some(HealEntry { uri, last_sync, due: (due != 0).then_some(due), pull, joined })
            })
            .collect();
        HealTable { entries }
    }

    /// The longest encoded table (for its shm store).
    pub const MAX_ENCODED_LEN: usize = MAX_NODES * (node_uri::MAX_LINE_LEN + 48);
}

impl crate::text_state::TextState for HealTable {
    fn decode(text: &str) -> Self {
        HealTable::decode(text)
    }
    fn encode(&self) -> String {
        HealTable::encode(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> NodeUri {
        node_uri::parse_node_line(s).unwrap().uri
    }

    #[test]
    fn a_new_node_is_noted_and_a_returning_one_synced_at_once() {
        let mut t = HealTable::default();
        assert_eq!(t.regained(&uri("sip:10.0.0.2:5060"), 500, 4000, 0), Regain::FirstSeen);
        assert!(t.take_due(500).is_empty());
        assert_eq!(t.regained(&uri("sip:10.0.0.2:5060"), 1000, 4000, 0), Regain::Now);
        assert_eq!(t.take_due(1000), vec![uri("sip:10.0.0.2:5060")]);
        assert!(t.take_due(1000).is_empty());
        assert_eq!(t.waiting(), 0);
    }

    #[test]
    fn a_flapping_node_gets_one_sync_per_window() {
        let mut t = HealTable::default();
        let n = uri("sip:10.0.0.2:5060");
        t.note_seen(&n, 0, 4000);
        assert_eq!(t.regained(&n, 10_000, 4000, 0), Regain::Now);
        assert_eq!(t.take_due(10_000).len(), 1);
        // Back again 1 s later, and again: one sync, at the window's end.
        assert_eq!(t.regained(&n, 11_000, 4000, 0), Regain::Deferred);
        assert_eq!(t.regained(&n, 12_000, 4000, 0), Regain::AlreadyDue);
        assert!(t.take_due(13_999).is_empty());
        assert_eq!(t.take_due(14_000), vec![n.clone()]);
        // Regained long after: at once again.
        assert_eq!(t.regained(&n, 30_000, 4000, 0), Regain::Now);
        // A storm of 100 regains within 10 s costs at most 3 syncs.
        let mut t = HealTable::default();
        t.note_seen(&n, 0, 4000);
        let mut syncs = 0;
        for i in 0..100u64 {
            let now = 100_000 + i * 100;
            t.regained(&n, now, 4000, 0);
            syncs += t.take_due(now).len();
        }
        syncs += t.take_due(200_000).len();
        assert!(syncs <= 4, "{syncs} syncs");
    }

    #[test]
    fn a_deferred_sync_is_never_lost() {
        let mut t = HealTable::default();
        let n = uri("sip:10.0.0.2:5060");
        t.note_seen(&n, 0, 4000);
        t.regained(&n, 5000, 4000, 0);
        t.take_due(5000);
        assert_eq!(t.regained(&n, 6000, 4000, 0), Regain::Deferred);
        // It survives encoding (the table lives in shm as text).
        let mut back = HealTable::decode(&t.encode());
        assert_eq!(back, t);
        assert_eq!(back.waiting(), 1);
        assert_eq!(back.take_due(9000), vec![n]);
    }

    #[test]
    fn a_delayed_regain_waits_its_delay() {
        let mut t = HealTable::default();
        let n = uri("sip:10.0.0.2:5060");
        t.note_seen(&n, 0, 4000);
        assert_eq!(t.regained(&n, 1000, 4000, 4000), Regain::Later);
        assert!(t.take_due(4999).is_empty());
        assert_eq!(t.take_due(5000), vec![n.clone()]);
        // Inside the window the window decides.
        assert_eq!(t.regained(&n, 6000, 4000, 100), Regain::Deferred);
        assert_eq!(t.take_due(9000), vec![n]);
    }

    #[test]
    fn nodes_are_rate_limited_each_on_their_own() {
        let mut t = HealTable::default();
        let a = uri("sip:10.0.0.2:5060");
        let b = uri("sip:10.0.0.3:5060");
        t.note_seen(&a, 0, 4000);
        t.note_seen(&b, 0, 4000);
        assert_eq!(t.regained(&a, 1000, 4000, 0), Regain::Now);
        t.take_due(1000);
        assert_eq!(t.regained(&b, 2000, 4000, 0), Regain::Now);
        assert_eq!(t.regained(&a, 2000, 4000, 0), Regain::Deferred);
        assert_eq!(t.take_due(2000), vec![b]);
    }

    #[test]
    fn a_full_table_forgets_the_oldest_idle_entry() {
        let mut t = HealTable::default();
        for i in 0..MAX_NODES {
            let n = uri(&format!("sip:10.0.{}.{}:5060", i / 200, i % 200 + 1));
            t.note_seen(&n, 0, 4000);
            t.regained(&n, 1000 + i as u64, 4000, 0);
        }
        t.take_due(10_000);
        let new = uri("sip:10.9.9.9:5060");
        assert_eq!(t.regained(&new, 20_000, 4000, 0), Regain::FirstSeen);
        assert_eq!(t.regained(&new, 20_000, 4000, 0), Regain::Now);
        assert_eq!(t.entries.len(), MAX_NODES);
        // All waiting: nothing may be forgotten.
        let mut t = HealTable::default();
        for i in 0..MAX_NODES {
            let n = uri(&format!("sip:10.0.{}.{}:5060", i / 200, i % 200 + 1));
            t.note_seen(&n, 0, 4000);
            t.regained(&n, 1000, 4000, 0);
        }
        assert_eq!(t.regained(&new, 1000, 4000, 0), Regain::Refused);
        assert!(t.encode().len() <= HealTable::MAX_ENCODED_LEN);
    }

    #[test]
    fn nodes_met_after_the_join_sync_are_pulled_from_and_old_ones_pushed_to() {
        let (a1, a2, b1) = (uri("sip:10.0.0.1:5060"), uri("sip:10.0.0.2:5060"), uri("sip:10.0.1.1:5060"));
        let mut t = HealTable::default();
        t.note_seen(&b1, 0, 4000);
        let got = t.arrived(std::slice::from_ref(&a1), &[a2.clone(), b1.clone()], 1000, 4000, 3000);
        assert_eq!(got, vec![(a1.clone(), Regain::Pull), (a2.clone(), Regain::Pull), (b1.clone(), Regain::Later)]);
        // the table keeps which is which through its encoding
        let mut t = HealTable::decode(&t.encode());
        assert!(t.take_due_syncs(1000).is_empty(), "a pull waits for a joiner's request");
        assert_eq!(t.take_due_syncs(3000), vec![(a1.clone(), true)]);
        assert_eq!(t.take_due_syncs(4000), vec![(b1.clone(), false), (a2.clone(), true)]);
        // met again later: an ordinary regain (a push)
        assert_eq!(t.arrived(std::slice::from_ref(&a1), &[], 60_000, 4000, 0), vec![(a1.clone(), Regain::Now)]);
        assert_eq!(t.take_due_syncs(60_000), vec![(a1, false)]);
    }

    #[test]
    fn a_node_that_joins_asking_for_our_state_is_not_pulled_from() {
        let (a1, a2, a3) = (uri("sip:10.0.0.1:5060"), uri("sip:10.0.0.2:5060"), uri("sip:10.0.0.3:5060"));
        let mut t = HealTable::default();
        // a2 asks before it arrives here, a1 after its pull was scheduled
        assert!(!t.asked_us(&a2, 500, 4000));
        let t2 = HealTable::decode(&t.encode());
        assert_eq!(t2, t, "joined survives the encoding");
        let mut t = t2;
        let got = t.arrived(std::slice::from_ref(&a1), &[a2.clone(), a3.clone()], 1000, 4000, 3000);
        assert_eq!(got, vec![(a1.clone(), Regain::Pull), (a2.clone(), Regain::FirstSeen), (a3.clone(), Regain::Pull)]);
        assert!(t.asked_us(&a1, 1500, 4000), "the waiting pull is dropped");
        assert_eq!(t.take_due_syncs(10_000), vec![(a3, true)], "a node that never asked is pulled");
        // a2 comes back after a partition: an ordinary heal push
        assert_eq!(t.arrived(&[], std::slice::from_ref(&a2), 60_000, 4000, 0), vec![(a2.clone(), Regain::Now)]);
        // asking again while a push waits changes nothing
        assert!(!t.asked_us(&a2, 60_001, 4000));
        assert_eq!(t.take_due_syncs(60_001), vec![(a2, false)]);

        // Nodes that start together: b asks before this node's join, then
        // becomes active before it too. Met again after a partition, it
        // gets a heal sync (its request was spent).
        let b = uri("sip:10.0.0.9:5060");
        let mut t = HealTable::default();
        t.asked_us(&b, 0, 4000);
        t.seen_before_join(&b, 10, 4000);
        assert_eq!(t.arrived(std::slice::from_ref(&b), &[], 60_000, 4000, 0), vec![(b, Regain::Now)]);
    }

    #[test]
    fn windows_and_stalls_follow_the_ping_interval() {
        assert_eq!(window_ms(1), 4000);
        assert_eq!(window_ms(2), 4000);
        assert_eq!(window_ms(10), 20_000);
        assert_eq!(window_ms(60), 120_000);
        assert_eq!(window_ms(u32::MAX), 120_000);
        assert!(!was_stalled(100, 2));
        assert!(!was_stalled(1999, 2));
        assert!(was_stalled(2000, 2));
        assert!(!was_stalled(9000, 60));
        assert!(was_stalled(10_000, 60));
    }

    #[test]
    fn a_heal_sync_waits_while_a_quarter_of_the_table_or_any_job_waits() {
        assert!(quiet_enough(Some(0), 8192, Some(0)));
        assert!(quiet_enough(Some(2047), 8192, Some(0)));
        assert!(!quiet_enough(Some(2048), 8192, Some(0)));
        assert!(!quiet_enough(Some(0), 8192, Some(1)));
        assert!(quiet_enough(None, 8192, None));
        assert!(!quiet_enough(None, 8192, Some(3)));
    }
}
