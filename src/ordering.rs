//! Per-key order of peer messages to each node: the rules are
//! `dmq_core::ordering` (one message per key on its way to a node, the
//! next after its final answer, a newer replacement of a waiting one
//! taking its place); this file runs them on their state in shm
//! (`shared::OrderData`, under its own lock) and keeps the waiting
//! messages in shm blocks. Sending is `messaging`'s: it asks here before
//! sending and tells here when a message is done.

use dmq_core::node_uri::NodeUri;
use dmq_core::ordering::{self, Admission, Keys, Lanes};
use dmq_core::peer_message::PeerMessage as CorePeerMessage;
use dmq_core::tm_context::TmContext;

use dmq_abi::api::{PeerMessage, ResponseCallback};
use kamailio::shm::ShmBlock;

use crate::event_counts::{self, EventCount};
use crate::shared::{OrderData, Parked, Shared};

/// Runs `f` on the order state under its lock; never across a send.
fn with<R>(m: &Shared, f: impl FnOnce(&mut Lanes<'_, ShmBlock<Parked>>) -> R) -> R {
    let mut data = m.order.lock();
    let OrderData { keys, flight, waiting, used, parked, meta, order, queued } = &mut *data;
    f(&mut Lanes { keys, flight, waiting, used, parked, meta, order, queued })
}

/// What to do with a message to one node.
pub enum Verdict {
    /// Send it now; its keys are on their way (tell [`done`] when it is).
    Send,
    /// It waits for an earlier message with one of its keys.
    Waits,
    /// Send it now, untracked (no room to track it; counted).
    SendUntracked,
}

/// Asks whether `message`, carrying `keys`, may go to `target` now.
pub fn admit(m: &Shared, message: &PeerMessage<'_>, target: &NodeUri, keys: &Keys) -> Verdict {
    let node = ordering::node_hash(&target.to_uri());
    let replaceable = keys.replaces && message.callback.is_none();
    let make = || store(message, target, &keys.items);
    // A sync's copy (it says when its sync began) goes at once
    // (`Lanes::admit_sync_copy`).
    let sync_copy = message.sync_since.is_some();
    let admission =
        with(
            m,
            |lanes| if sync_copy { lanes.admit_sync_copy(node, &keys.items) } else { lanes.admit(node, &keys.items, replaceable, make) },
        );
    match admission {
        Admission::Send => Verdict::Send,
        Admission::Parked => {
            event_counts::add(m, EventCount::UpdatesWaited);
            Verdict::Waits
        }
        Admission::Coalesced(older) => {
            // Dropped after the lock: the node never needs it.
            drop(older);
            event_counts::add(m, EventCount::UpdatesCoalesced);
            Verdict::Waits
        }
        Admission::Untracked => {
            event_counts::add(m, EventCount::UpdatesUnordered);
            log_untracked();
            Verdict::SendUntracked
        }
    }
}

fn log_untracked() {
    static LOG: kamailio::log::RateLimit = kamailio::log::RateLimit::per(1000);
    if LOG.allow() {
        log::warn!(
            "too many replicated items waiting or on their way: an update goes without per-key order (counted in updates_unordered)"
        );
    }
}

/// A message that carried `items` to the node `uri` (its URI text) is
/// done: returns the messages waiting for those keys that may go now.
pub fn done(m: &Shared, uri: &[u8], items: &[u64]) -> Vec<Waiting> {
    let Ok(uri) = std::str::from_utf8(uri) else { return Vec::new() };
    let node = ordering::node_hash(uri);
    with(m, |lanes| lanes.done(node, items, items_of)).into_iter().map(Waiting).collect()
}

/// A message that waited: what it carries, to whom.
pub struct Waiting(ShmBlock<Parked>);

impl From<ShmBlock<Parked>> for Waiting {
    fn from(block: ShmBlock<Parked>) -> Waiting {
        Waiting(block)
    }
}

impl Waiting {
    /// Its keys, message and target (None: the block does not decode,
    /// which cannot happen for one made by [`store`]).
    pub fn open(&self) -> Option<(Vec<u64>, PeerMessage<'_>, NodeUri)> {
        let items = items_of(&self.0);
        let context = TmContext::decode(self.0.bytes().get(items.len() * 8..)?)?;
        let m = context.message;
        let callback = m.callback.as_ref().and_then(ResponseCallback::from_bytes);
        let message = PeerMessage {
            peer_id: m.peer_id,
            body: m.body,
            content_type: m.content_type,
            max_forwards: m.max_forwards,
            callback,
            sync_since: m.sync_since,
            sync_answer: m.sync_answer,
        };
        Some((items, message, context.target))
    }
}

fn items_of(block: &ShmBlock<Parked>) -> Vec<u64> {
    let n = block.header().items as usize;
    block.bytes().chunks_exact(8).take(n).map(|c| u64::from_ne_bytes(c.try_into().unwrap_or_default())).collect()
}

/// A message to `target` in a shm block of its own, to send later.
pub fn store(message: &PeerMessage<'_>, target: &NodeUri, items: &[u64]) -> Option<ShmBlock<Parked>> {
    let context = TmContext {
        message: CorePeerMessage {
            peer_id: message.peer_id,
            body: message.body,
            content_type: message.content_type,
            max_forwards: message.max_forwards,
            callback: message.callback.map(|c| c.to_bytes()),
            sync_since: message.sync_since,
            sync_answer: message.sync_answer,
        },
        target: target.clone(),
        deadline_ms: 0,
        backoff_ms: 0,
        ordered: false,
    };
    let keys: Vec<u8> = items.iter().flat_map(|k| k.to_ne_bytes()).collect();
    ShmBlock::new(Parked { items: items.len() as u32 }, &[&keys, &context.encode()])
}

/// Messages waiting now (`dmq.stats`, the statistic).
pub fn waiting(m: &Shared) -> u32 {
    with(m, |lanes| lanes.waiting_count())
}
