//! What a heal must not undo (`dmq_core::origin`): which items this node
//! wrote last, so a heal sync carries only those; and the deletes a node
//! missed (not active when they were made, or their copy timed out), sent
//! to it when it is regained, before the heal sync. The state is
//! `shared::OriginData`, under its own lock; kept deletes are stored as
//! `ordering` stores a waiting message.

use std::cell::Cell;

use dmq_core::header_scan::request_parts;
use dmq_core::node_uri::{self, NodeUri};
use dmq_core::nodes::Node;
use dmq_core::ordering::{self, Keys, Retained};
use dmq_core::origin::{KeySet, MissedDeletes};

use dmq_abi::api::PeerMessage;
use kamailio::log::RateLimit;

use crate::ordering::{store, Waiting};
use crate::shared::{OriginData, Shared};

fn with<R>(m: &Shared, f: impl FnOnce(&mut KeySet<'_>, &mut MissedDeletes<'_, kamailio::shm::ShmBlock<crate::shared::Parked>>) -> R) -> R {
    let mut data = m.origin.lock();
    let OriginData { own, own_used, missed_nodes, missed_keys, missed_ages, missed, clock, kept } = &mut *data;
    let mut set = KeySet { keys: own, used: own_used };
    let mut deletes = MissedDeletes { nodes: missed_nodes, keys: missed_keys, ages: missed_ages, messages: missed, clock, kept };
    f(&mut set, &mut deletes)
}

/// Our consumer broadcast `message`, an update it made (not a sync
/// answer), to the nodes `reached`. An item written is ours now; a
/// delete is not, and nodes seen before that it did not reach (`seen`,
/// this node excluded) keep it until they are back.
/// `keys`: the message's items (`ordering::identify`).
pub fn wrote(m: &Shared, message: &PeerMessage<'_>, keys: Option<&Keys>, reached: &[Node], seen: impl FnOnce() -> Vec<NodeUri>) {
    let Some(keys) = keys.filter(|_| identified(message.peer_id)) else { return };
    let seen = if keys.deletes { seen() } else { Vec::new() };
    let missed: Vec<&NodeUri> = seen.iter().filter(|s| !reached.iter().any(|r| r.uri.same_node(s))).collect();
    let stored: Vec<(u64, Option<kamailio::shm::ShmBlock<crate::shared::Parked>>)> =
        missed.iter().map(|node| (ordering::node_hash(&node.to_uri()), store(message, node, &keys.items))).collect();
    let mut full = false;
    let mut lost = 0;
    with(m, |own, deletes| {
        for &k in &keys.items {
            if keys.deletes {
                own.remove(k);
            } else {
                full |= !own.insert(k);
                drop(deletes.written(k));
            }
        }
        for (node, block) in stored {
            if let Some(block) = block {
                lost += deletes.keep(node, keys.items[0], block).1 as u32;
            }
        }
    });
    if full {
        log_once("too many items written here to remember them all: a heal sync may leave some out");
    }
    if lost > 0 {
        log_once("too many deletes kept for nodes that missed them: the oldest are dropped");
    }
}

fn identified(peer: &str) -> bool {
    dmq_core::body_check::consumer_shape(peer).is_some()
}

fn log_once(what: &str) {
    static LOG: RateLimit = RateLimit::per(10_000);
    if LOG.allow() {
        log::warn!("{what}");
    }
}

/// Another node's update of these items was applied here: they are not
/// ours, and no node needs a delete of them kept here.
pub fn received(m: &Shared, peer: &str, keys: Option<&Keys>) {
    let Some(keys) = keys.filter(|_| identified(peer)) else { return };
    with(m, |own, deletes| {
        for &k in &keys.items {
            own.remove(k);
            drop(deletes.written(k));
        }
    });
}

/// A delete to the node `uri` (its URI text) got no answer (`request`: the
/// KDMQ as sent without tm): kept for it until it is back.
pub fn timed_out_request(m: &Shared, uri: &[u8], request: &[u8]) {
    let Some((peer, max_forwards, content_type, body)) = request_parts(request) else { return };
    let Some(target) = std::str::from_utf8(uri).ok().and_then(|u| node_uri::parse_node_line(u).ok()).map(|l| l.uri) else { return };
    timed_out(
        m,
        &PeerMessage { peer_id: peer, body, content_type, max_forwards, callback: None, sync_since: None, sync_answer: None },
        &target,
    );
}

/// `message` to `target` got no answer: a delete, or each delete in a
/// batch, is kept for it until it is back.
pub fn timed_out(m: &Shared, message: &PeerMessage<'_>, target: &NodeUri) {
    for item in ordering::batch_items(message.peer_id, message.body) {
        timed_out(m, &PeerMessage { body: item, ..*message }, target);
    }
    let Some(keys) = ordering::identify(message.peer_id, message.body).filter(|k| k.deletes && identified(message.peer_id)) else { return };
    let Some(block) = store(&PeerMessage { callback: None, ..*message }, target, &keys.items) else { return };
    let node = ordering::node_hash(&target.to_uri());
    with(m, |_, deletes| deletes.keep(node, keys.items[0], block));
}

/// The deletes `node` missed, oldest first (no longer kept here).
pub fn missed_by(m: &Shared, node: &NodeUri) -> Vec<Waiting> {
    let hash = ordering::node_hash(&node.to_uri());
    with(m, |_, deletes| deletes.take(hash)).into_iter().map(Waiting::from).collect()
}

/// A sync our consumer answers in this process now: when it began, and
/// whether it is a heal sync (pushed to a regained node, not asked for).
#[derive(Debug, Clone, Copy)]
pub struct Sync {
    pub since_ms: u64,
    pub heal: bool,
    /// It answers the requester's sync request (not a heal push): the
    /// answer's id, which its copies carry; their items are counted for
    /// the reply (`sync_headers::SYNC_SENT_HEADER`).
    pub answer: Option<u64>,
}

thread_local! {
    /// Set while a DMQ worker runs a sync request (a joining node's, a heal
    /// pull's, or our own heal sync's): what the consumer sends then is a
    /// sync copy (it says its age), and in a heal sync only what we wrote.
    static SYNC: Cell<Option<Sync>> = const { Cell::new(None) };
    /// The node that asked for the sync running now, when known.
    static REQUESTER: std::cell::RefCell<Option<NodeUri>> = const { std::cell::RefCell::new(None) };
    /// Items sent to the requester in the answer running now.
    static ITEMS_SENT: Cell<u64> = const { Cell::new(0) };
}

/// Runs `f` (a sync request's job, asked for by `requester`) with the
/// consumer's sends marked as the sync's copies.
pub fn in_sync<R>(heal: bool, requester: Option<NodeUri>, f: impl FnOnce() -> R) -> R {
    running(Sync { since_ms: kamailio::clock::monotonic_ms(), heal, answer: None }, requester, f)
}

/// As [`in_sync`], for a sync request a node sent us: returns what `f`
/// returned, the items sent to `requester` for it ([`count_sent`]) and the
/// answer's id (random, never 0).
pub fn answering<R>(heal: bool, requester: NodeUri, f: impl FnOnce() -> R) -> (R, u64, u64) {
    use std::hash::BuildHasher;
    let id = std::collections::hash_map::RandomState::new().hash_one((std::process::id(), kamailio::clock::monotonic_ms())).max(1);
    ITEMS_SENT.with(|n| n.set(0));
    let r = running(Sync { since_ms: kamailio::clock::monotonic_ms(), heal, answer: Some(id) }, Some(requester), f);
    (r, ITEMS_SENT.with(|n| n.replace(0)), id)
}

fn running<R>(sync: Sync, requester: Option<NodeUri>, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            SYNC.with(|s| s.set(None));
            REQUESTER.with(|r| *r.borrow_mut() = None);
        }
    }
    SYNC.with(|s| s.set(Some(sync)));
    REQUESTER.with(|r| *r.borrow_mut() = requester);
    let _reset = Reset;
    f()
}

/// The answer id a copy sent now to `target` carries: the answer running
/// in this process, when `target` is the node that asked for it.
pub fn answer_to(target: &NodeUri) -> Option<u64> {
    current_sync().and_then(|s| s.answer).filter(|_| sync_requester().is_some_and(|r| r.same_node(target)))
}

/// A copy of the answer running now (it carries the answer's id) is
/// handed for sending: its items count toward the answer's reply (also
/// when its send fails: the asking node then waits for it and times out
/// rather than call itself synced without it).
pub fn count_sent(message: &PeerMessage<'_>) {
    if message.sync_answer.is_some() {
        let items = ordering::identify(message.peer_id, message.body).map_or(1, |k| k.items.len() as u64);
        ITEMS_SENT.with(|n| n.set(n.get() + items));
    }
}

/// The node that asked for the sync this process answers now, if known
/// (set only inside [`in_sync`]).
pub fn sync_requester() -> Option<NodeUri> {
    REQUESTER.with(|r| r.borrow().clone())
}

/// The sync this process answers now, if any.
pub fn current_sync() -> Option<Sync> {
    SYNC.with(Cell::get)
}

/// What of `message` a send may carry: in a heal sync, only the items this
/// node wrote last (`Retained`); otherwise all of it.
pub fn sendable(m: &Shared, message: &PeerMessage<'_>) -> Retained {
    if !current_sync().is_some_and(|s| s.heal) || !identified(message.peer_id) {
        return Retained::All;
    }
    let Some(keys) = ordering::identify(message.peer_id, message.body) else { return Retained::All };
    let ours: Vec<u64> = with(m, |own, _| keys.items.iter().copied().filter(|&k| own.contains(k)).collect());
    ordering::retain_items(message.peer_id, message.body, |k| ours.contains(&k))
}

/// Whether `body` asks `peer`'s stock consumer for its state (a sync
/// request: it names no item).
/// (`keys`: the body's items.)
pub fn is_sync_request(peer: &str, keys: Option<&Keys>) -> bool {
    identified(peer) && keys.is_none()
}
