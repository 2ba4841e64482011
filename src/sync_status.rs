//! Following each consumer's sync (issue 33), so that an operator
//! (`dmq.sync_status`) and a readiness probe (`dmq_is_synced`) can tell
//! when this node holds the cluster's state. The rules (when a donor and a
//! run are done, the timeout) are `dmq_core::sync_runs`; here are the
//! moments they are fed from, and the table in shm
//! (`shared::SyncFollow`, under its own lock; never held across a send).
//!
//! - A run starts where a consumer's sync request leaves: its init
//!   callback's broadcast at the join (`c_api`), a heal pull
//!   (`messaging`), `dmq.resync` (`rpc_commands`).
//! - Each asked node's final reply to the request (`direct_send`,
//!   `messaging`'s tm path): a dmq_rs donor's 200 says how many items its
//!   sync copies carried (`X-DMQ-Sync-Sent`).
//! - Each message of the consumer from an asked node (`workers`): a
//!   dmq_rs donor's answer copies say so (`X-DMQ-Sync-Answer`) and count
//!   their items; anything else only delays a stock donor's settling.
//! - A node that goes inactive (`cluster`) sends nothing more.
//! - The retransmission timer (every 100 ms) ends the runs that are done
//!   or past the timeout, logs them and keeps the figures.

use std::sync::atomic::Ordering;

use dmq_core::node_uri::NodeUri;
use dmq_core::nodes::Node;
use dmq_core::sync_headers::{self, SYNC_ANSWER_HEADER, SYNC_SENT_HEADER};
use dmq_core::sync_runs::{Reason, State, SyncRuns};

use kamailio::clock::monotonic_ms;
use kamailio::sip_msg::SipMsg;

use crate::shared::{Shared, SyncFollow, SENT_ANSWERS};

fn with_runs<R: Default>(syncs: &SyncFollow, f: impl FnOnce(&mut SyncRuns) -> R) -> R {
    let result = syncs.table.with(|bytes| {
        let mut runs = SyncRuns::decode(std::str::from_utf8(bytes).unwrap_or_default());
        let before = runs.clone();
        let r = f(&mut runs);
        syncs.counters.pending.store(runs.pending(), Ordering::Relaxed);
        syncs.counters.open.store(runs.open(), Ordering::Relaxed);
        ((runs != before).then(|| runs.encode().into_bytes()), r)
    });
    result.unwrap_or_else(|_| {
        log::error!("the sync runs do not fit their store; change dropped");
        R::default()
    })
}

/// Whether a run may still change: the hot paths skip the lock otherwise.
fn following(m: &Shared) -> Option<&SyncFollow> {
    Some(&m.syncs).filter(|s| s.counters.open.load(Ordering::Relaxed) > 0)
}

/// Whether any sync is followed now (callers skip their look-ups otherwise).
pub fn following_any(m: &Shared) -> bool {
    following(m).is_some()
}

/// How a donor is named in the table: by its address when the node list
/// knows it (or the URI holds one), so that the node asked under one name
/// (a seed, a DNS answer) and the same node sending under another (its
/// `server_address`) are one donor; else by its URI, host in lower case.
pub fn donor_key(node: &Node) -> String {
    let uri = &node.uri;
    match node.ip().or_else(|| dmq_core::nodes::resolve_literal(&uri.host)) {
        Some(ip) => uri.at(ip).to_uri(),
        None => NodeUri { host: uri.host.to_ascii_lowercase(), port: uri.port_no().to_string(), transport: uri.transport }.to_uri(),
    }
}

/// `consumer` asked `donors` for its state, for `reason`.
pub fn started(m: &Shared, consumer: &str, reason: Reason, donors: &[Node]) {
    let keys: Vec<String> = donors.iter().map(donor_key).collect();
    if !with_runs(&m.syncs, |t| t.start(consumer, reason, &keys, monotonic_ms())) {
        log::warn!("sync of {consumer} not followed: {} consumers are already", dmq_core::sync_runs::MAX_CONSUMERS);
        return;
    }
    if keys.is_empty() {
        log::info!("sync of {consumer} ({}): no other node to ask", reason.name());
    } else {
        log::info!("sync of {consumer} ({}) started: asked {}", reason.name(), keys.join(", "));
    }
}

/// The join sync's requests left (the init callbacks ran).
pub fn join_ran(m: &Shared) {
    m.syncs.counters.joined.store(true, Ordering::Relaxed);
}

/// A final reply (`code`; 408 when none came) from `node` to a request of
/// ours: when it was a consumer's sync request (`peer`, `body`), its run
/// learns the answer, and from a dmq_rs donor how many items it sent.
pub fn request_answered(m: &Shared, peer: &str, body: &[u8], node: &Node, code: i32, reply: Option<SipMsg<'_>>) {
    let Some(syncs) = following(m) else { return };
    if !crate::origin::is_sync_request(peer, dmq_core::ordering::identify(peer, body).as_ref()) {
        return;
    }
    let header = |name: &str| reply.as_ref().and_then(|r| r.header(name).map(<[u8]>::to_vec));
    let sent = header(SYNC_SENT_HEADER).and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse::<u64>().ok());
    let id = header(SYNC_ANSWER_HEADER).and_then(|v| sync_headers::answer_id(&v));
    let counted = sent.zip(id);
    let code = u16::try_from(code).unwrap_or(500);
    with_runs(syncs, |t| t.answered(peer, &donor_key(node), code, counted, monotonic_ms()));
    if !(200..300).contains(&code) {
        log::warn!("sync of {peer}: {} answered {code}; it sends nothing (the sync stays pending until it times out)", node.uri);
    }
}

/// A sync request of `peer` to `node` could not be sent: the node will
/// not answer it.
pub fn request_failed(m: &Shared, peer: &str, node: &Node) {
    let Some(syncs) = following(m) else { return };
    with_runs(syncs, |t| t.answered(peer, &donor_key(node), 500, None, monotonic_ms()));
}

/// A message of `peer` arrived from `node`: a copy of the answer `answer`
/// to our sync request (with its items), or anything else (a stock
/// donor's copies look like live updates).
pub fn arrived(m: &Shared, peer: &str, node: &Node, answer: Option<u64>, items: u64, bytes: u64) {
    let Some(syncs) = following(m) else { return };
    let key = donor_key(node);
    let now = monotonic_ms();
    with_runs(syncs, |t| match answer {
        Some(id) => t.copy_arrived(peer, &key, id, items, bytes, now),
        None => t.traffic(peer, &key, bytes, now),
    });
}

/// `node` is no longer active: if it has not answered a pending run, it
/// will not.
pub fn node_gone(m: &Shared, node: &Node) {
    let Some(syncs) = following(m) else { return };
    with_runs(syncs, |t| t.node_gone(&donor_key(node)));
}

/// The header lines of a sync answer's 200: how many items it sent, and
/// its id.
pub fn answer_headers(items: u64, id: u64) -> String {
    format!("{SYNC_SENT_HEADER}: {items}\r\n{SYNC_ANSWER_HEADER}: {id:x}\r\n")
}

/// We answered the sync request `key` (its `duplicates` key) with `items`
/// items, answer `id`: a copy of the request that comes again is answered
/// the same (`answer_of`).
pub fn answer_sent(m: &Shared, key: Option<u64>, items: u64, id: u64) {
    let Some(key) = key else { return };
    let mut a = m.syncs.answers.lock();
    let i = (a.next % SENT_ANSWERS as u64) as usize;
    (a.keys[i], a.items[i], a.ids[i]) = (key, items, id);
    a.next = a.next.wrapping_add(1);
}

/// What we answered the sync request `key` with, if it was one of the
/// latest answers.
pub fn answer_of(m: &Shared, key: Option<u64>) -> Option<(u64, u64)> {
    let key = key.filter(|&k| k != 0)?;
    let a = m.syncs.answers.lock();
    (0..SENT_ANSWERS).find(|&i| a.keys[i] == key).map(|i| (a.items[i], a.ids[i]))
}

/// The retransmission timer's tick: ends the runs that are done or timed
/// out, with a log line each.
pub fn tick(m: &Shared) {
    let Some(syncs) = following(m) else { return };
    let policy = m.config.sync_policy;
    let ended = with_runs(syncs, |t| t.tick(monotonic_ms(), &policy));
    for e in ended {
        syncs.counters.last_duration_ms.store(e.duration_ms, Ordering::Relaxed);
        let received = format!("{} messages, {} bytes", e.messages, e.bytes);
        match e.state {
            State::Done { .. } => {
                syncs.counters.done.fetch_add(1, Ordering::Relaxed);
                log::info!("sync of {} done in {} ms ({received})", e.consumer, e.duration_ms);
            }
            State::TimedOut { .. } => {
                syncs.counters.timed_out.fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "sync of {} timed out after {} ms ({received}): a node asked did not answer or send all it said (dmq.sync_status)",
                    e.consumer,
                    e.duration_ms
                );
            }
            State::Pending => {}
        }
    }
}

/// Whether this node holds the cluster's state for `consumer` (None: for
/// every consumer followed): its join sync's requests left and the latest
/// sync of each is done (or is a heal pull that began while it was). A
/// consumer that never asks for a sync (htable without `dmq_init_sync`)
/// is not waited for.
pub fn is_synced(m: &Shared, consumer: Option<&str>) -> bool {
    let syncs = &m.syncs;
    if !syncs.counters.joined.load(Ordering::Relaxed) {
        return false;
    }
    with_runs(syncs, |t| Some(t.synced(consumer))).unwrap_or(false)
}

/// Whether the join sync's requests left, and the table (for `dmq.sync_status`).
pub fn snapshot(m: &Shared) -> Option<(bool, SyncRuns)> {
    let syncs = &m.syncs;
    let runs = with_runs(syncs, |t| Some(t.clone()))?;
    Some((syncs.counters.joined.load(Ordering::Relaxed), runs))
}

/// The counted figures of the statistics (`synced` is [`is_synced`]):
/// (pending, done, timed out, latest duration ms).
pub fn stats(m: &Shared) -> (u64, u64, u64, u64) {
    let c = m.syncs.counters;
    (
        c.pending.load(Ordering::Relaxed) as u64,
        c.done.load(Ordering::Relaxed),
        c.timed_out.load(Ordering::Relaxed),
        c.last_duration_ms.load(Ordering::Relaxed),
    )
}
