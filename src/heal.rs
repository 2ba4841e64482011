//! Heal syncs: catching up with a node that comes back.
//!
//! A node that joins runs its peers' init callbacks once (`peers::
//! cluster_reached`), which asks the cluster for everything. A node that
//! was cut off, frozen or dropped and comes back does not restart, and
//! what was replicated while the others had it off their lists never
//! reaches it; a node that restarts is answered at once, but a node that
//! still lists it as disabled (it announced its leave) sends it nothing
//! until a ping makes it active again. So whenever a node becomes active
//! again in this node's list (a node seen active before: a new node's own
//! join sync covers it), this node sends it its whole state (`heal_pushes`).
//! Both sides of a healed partition regain each other, so both send. A
//! node whose own processes stood still (the retransmission timer saw no
//! tick for a while) cannot know whether the others dropped it: it sends
//! to every active node, one rate-limit window later.
//!
//! This module decides when (the table in shm, the policy in
//! `dmq_core::heal`: at most one sync per node per `window_ms`; a regain
//! inside the window is served once at its end, never dropped); `heal_pushes`
//! runs them in the DMQ retransmission timer process, never in the SIP
//! worker that saw the node come back.

use std::sync::atomic::Ordering;

use dmq_core::heal::{self, HealTable, Regain};
use dmq_core::node_uri::NodeUri;

use kamailio::clock::monotonic_ms;

use crate::peers;
use crate::shared::{Heal, Shared};
use crate::stored::{self, StoreFull};

/// Runs `f` on the table under its lock; changes are written back. The
/// count of waiting syncs (which `tick` reads without the lock) is written
/// under it too: written after it, a process's older count could overwrite
/// a newer one and hide a due sync.
fn with_table<R: Default>(heal: &Heal, f: impl FnOnce(&mut HealTable) -> R) -> R {
    let change = stored::change(&heal.table, |table| {
        let r = f(table);
        heal.counters.waiting.store(table.waiting(), Ordering::Relaxed);
        r
    });
    match change {
        Ok(change) => change.result,
        Err(StoreFull) => {
            log::error!("heal table does not fit its store; change dropped");
            R::default()
        }
    }
}

/// `ping_interval` in seconds.
fn ping_interval(m: &Shared) -> u32 {
    m.config.ping_interval
}

fn window(m: &Shared) -> u64 {
    heal::window_ms(ping_interval(m))
}

/// Nodes that became active again in this node's list. `direct`: the node
/// itself told us (it answered our ping or notified us), so it lists this
/// node and takes its messages: a sync may start at once. `named`: another
/// node's list named them; they may not list this node yet (a node that
/// dropped us refuses our messages while `members_only` is on) until our
/// next ping reaches them: their sync waits one ping interval and a second.
/// Before the first contact with the cluster the init callbacks' own sync
/// covers them all.
pub fn regained(m: &Shared, direct: &[NodeUri], named: &[NodeUri]) {
    let delay = u64::from(ping_interval(m)) * 1000 + 1000;
    // A node new here after our join sync is asked for its state (issue
    // 26: groups that formed apart and meet once a DNS name lists both,
    // nodes that started at once): `dmq_core::heal::HealTable::arrived`.
    regain(m, direct.iter().chain(named), |t, now, window| t.arrived(direct, named, now, window, delay));
}

/// What every way of nodes becoming active here shares: before this
/// node's first contact with the cluster they are only noted (the init
/// callbacks' own sync covers them); after it, `decide` says under the
/// table's lock what is due from each, and that is reported.
fn regain<'a>(
    m: &Shared,
    nodes: impl Iterator<Item = &'a NodeUri> + Clone,
    decide: impl FnOnce(&mut HealTable, u64, u64) -> Vec<(NodeUri, Regain)>,
) {
    let heal = &m.heal;
    if nodes.clone().next().is_none() {
        return;
    }
    let (now, window) = (monotonic_ms(), window(m));
    if !peers::init_done() {
        note_seen(heal, nodes, now, window);
        return;
    }
    let outcomes = with_table(heal, |t| decide(t, now, window));
    report(heal, outcomes, window);
}

/// `node` asked us for a consumer's state as a joining node does (not a
/// heal pull): it is not pulled from (`HealTable::asked_us`).
pub fn asked_us(m: &Shared, node: &NodeUri) {
    if with_table(&m.heal, |t| t.asked_us(node, monotonic_ms(), window(m))) {
        log::info!("node {node} asked for our state as it joined: no heal pull from it");
    }
}

/// The nodes seen active here (entries stay when a node leaves the list),
/// this one excluded.
pub fn seen(m: &Shared) -> Vec<NodeUri> {
    with_table(&m.heal, |t| t.entries.iter().map(|e| e.uri.clone()).filter(|u| !u.same_node(&m.local_uri)).collect())
}

/// Before the first contact: our own join sync covers them.
fn note_seen<'a>(heal: &Heal, nodes: impl Iterator<Item = &'a NodeUri>, now: u64, window: u64) {
    with_table(heal, |t| {
        for n in nodes {
            t.seen_before_join(n, now, window);
        }
    });
}

fn report(heal: &Heal, outcomes: Vec<(NodeUri, Regain)>, window: u64) {
    for (node, outcome) in outcomes {
        match outcome {
            Regain::Now => log::info!("node {node} is back: sending it our state (heal sync)"),
            Regain::Later => log::info!("sending node {node} our state soon (heal sync)"),
            Regain::Pull => {
                log::info!("node {node} is new here after our join sync: asking it for its state (heal pull) unless it asks for ours first")
            }
            Regain::FirstSeen => log::debug!("node {node} is new here: its join sync covers it"),
            Regain::Deferred | Regain::AlreadyDue => {
                heal.counters.deferred.fetch_add(1, Ordering::Relaxed);
                log::info!("node {node} is back again: one heal sync runs at the end of the {} s window", window / 1000);
            }
            Regain::Refused => log::warn!("node {node} is back, but the heal table is full: no heal sync"),
        }
    }
}

thread_local! {
    /// When the timer process (it alone calls `tick`) ended its last tick.
    static LAST_TICK_END: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The end of the timer's tick. Time spent inside a tick (a send that
/// blocks while a neighbour's address is resolved) is not a stall: only
/// the time between the end of one tick and the start of the next counts,
/// which is the timer's sleep unless the process did not run.
pub fn tick_end() {
    LAST_TICK_END.with(|t| t.set(monotonic_ms()));
}

/// The retransmission timer, every 100 ms (first thing in its tick):
/// notices when this node's own processes stood still (`active_nodes` are
/// then all due a sync), and returns the nodes whose heal sync is due,
/// each with whether it is a pull (`heal_pushes` runs them; no lock is held then).
pub fn tick(m: &Shared, active_nodes: impl FnOnce() -> Vec<NodeUri>, ready: impl FnOnce() -> bool) -> Vec<(NodeUri, bool)> {
    let heal = &m.heal;
    let now = monotonic_ms();
    let last = LAST_TICK_END.with(|t| t.get());
    let interval = ping_interval(m);
    if last != 0 && heal::was_stalled(now.saturating_sub(last), interval) && peers::init_done() {
        let nodes = active_nodes();
        heal.counters.stalls.fetch_add(1, Ordering::Relaxed);
        log::warn!(
            "this node did not run for {} ms: the cluster may have dropped it; heal sync from {} node(s)",
            now.saturating_sub(last),
            nodes.len()
        );
        // The others may have dropped this node: ask once they list it
        // again (its next ping reaches them within a ping interval).
        let delay = window(m);
        regain(m, nodes.iter(), |t, now, window| nodes.iter().map(|n| (n.clone(), t.regained(n, now, window, delay))).collect());
    }
    if heal.counters.waiting.load(Ordering::Relaxed) == 0 || !ready() {
        return Vec::new();
    }
    let due = with_table(heal, |t| t.take_due_syncs(now));
    let pulls = due.iter().filter(|(_, pull)| *pull).count() as u64;
    heal.counters.syncs.fetch_add(due.len() as u64 - pulls, Ordering::Relaxed);
    heal.counters.pulls.fetch_add(pulls, Ordering::Relaxed);
    due
}

/// A sync request pushed to our own peers in a regained node's name.
pub fn count_push(m: &Shared) {
    m.heal.counters.pushes.fetch_add(1, Ordering::Relaxed);
}

/// Heal figures (`dmq.stats`).
pub struct HealStats {
    pub syncs: u64,
    pub pushes: u64,
    pub deferred: u64,
    pub waiting: usize,
    pub stalls: u64,
    pub pulls: u64,
}

pub fn stats(m: &Shared) -> HealStats {
    let c = m.heal.counters;
    HealStats {
        syncs: c.syncs.load(Ordering::Relaxed),
        pushes: c.pushes.load(Ordering::Relaxed),
        deferred: c.deferred.load(Ordering::Relaxed),
        waiting: c.waiting.load(Ordering::Relaxed),
        stalls: c.stalls.load(Ordering::Relaxed),
        pulls: c.pulls.load(Ordering::Relaxed),
    }
}
