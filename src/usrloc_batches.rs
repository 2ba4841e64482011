//! dmq_usrloc's updates to a node that already has one waiting for its
//! reply wait in a batch for that node instead; when the reply comes the
//! batch goes as one `multi` message (`direct_send`). The rules (which
//! batch an update joins, when one is full, the per-node window, what a
//! reply does) and the `multi` body are pure (`dmq_core::batching`); this
//! file runs them on their state in shm (`shared::BatchData`, under its
//! own lock) and sends.

use std::net::SocketAddr;

use dmq_core::batching::{self, NodeBatches, Placement, BATCHED_CONTENT_TYPE, BATCHED_PEER, BATCH_BYTES};
use dmq_core::node_uri::{self, NodeUri};

use dmq_abi::api::PeerMessage;
use kamailio::clock::monotonic_ms as now_ms;
use kamailio::shm::ShmBlock;

use crate::direct_send::{self, Outgoing, SendError};
use crate::event_counts::{self, EventCount};
use crate::shared::{Batch, BatchData, Shared};

/// Runs `f` on the batching state under its lock; never across a send.
fn with<R>(m: &Shared, f: impl FnOnce(&mut NodeBatches<'_, ShmBlock<Batch>>) -> R) -> R {
    let mut data = m.batches.lock();
    let BatchData { used, ips, ports, in_flight, open } = &mut *data;
    f(&mut NodeBatches { used, ips, ports, in_flight, open })
}

/// Sends a dmq_usrloc update (`batching::is_batchable`) to the node at
/// `to`, or lets it wait in the node's batch. When the update could not
/// go, its node's batch may be left to go through tm (the caller's).
pub fn send(
    m: &Shared,
    message: &PeerMessage<'_>,
    target: &NodeUri,
    to: SocketAddr,
    items: &[u64],
) -> (Result<(), SendError>, Option<UnsentBatch>) {
    let alone = Outgoing::alone(*message, target, to, items);
    let start = now_ms();
    let mut placed = offer(m, to, message);
    while placed == Placement::WindowFull {
        if !direct_send::may_wait(start) {
            // Past the window, counted like the others.
            placed = with(m, |b| b.pass_window(to));
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        placed = offer(m, to, message);
    }
    match placed {
        Placement::WindowFull | Placement::NeedsNewBatch => unreachable!("waited for, sent past or made"),
        Placement::Batched => {
            event_counts::add(m, EventCount::MessagesBatched);
            (Ok(()), None)
        }
        Placement::SendFlushingOnReply => {
            let sent = direct_send::send(m, &Outgoing { counted_in_batch: true, ..alone });
            let unsent = if sent.is_err() { release(m, to, target.to_uri().as_bytes()) } else { None };
            (sent, unsent)
        }
        Placement::SendAlone => (direct_send::send(m, &alone), None),
    }
}

/// Offers `message` (one update) to `to`'s batch (`NodeBatches::offer`); a
/// new batch's block is made outside the lock, then offered again. A batch
/// takes updates with one callback, and of one sync or none (its copies
/// carry their sync's age).
fn offer(m: &Shared, to: SocketAddr, message: &PeerMessage<'_>) -> Placement {
    let (update, callback, sync_since, sync_answer) = (message.body, message.callback, message.sync_since, message.sync_answer);
    let callback_bytes = callback.map(|c| c.to_bytes());
    let mut spare: Option<ShmBlock<Batch>> = None;
    loop {
        let placed = with(m, |batches| {
            batches.offer(to, &mut spare, |batch| {
                let Batch { callback: batch_callback, mut updates, mut used, sync_since: batch_sync, sync_answer: batch_answer } =
                    *batch.header();
                let same_callback =
                    batch_callback.map(|c| c.to_bytes()) == callback_bytes && batch_sync == sync_since && batch_answer == sync_answer;
                let joined = batching::join(batch.bytes_mut(), &mut updates, &mut used, same_callback, update);
                let header = batch.header_mut();
                (header.updates, header.used) = (updates, used);
                joined
            })
        });
        match placed {
            Placement::NeedsNewBatch => {
                match ShmBlock::zeroed(Batch { callback, updates: 0, used: 0, sync_since, sync_answer }, BATCH_BYTES) {
                    Some(block) => spare = Some(block),
                    None => return Placement::SendAlone,
                }
            }
            placed => return placed,
        }
    }
}

/// A message counted in `to`'s batching (its URI text `uri`) is done: the
/// node's batch, if any, goes now (`messaging::finish_direct`). What could
/// not go without tm is returned, to go through tm.
pub fn release(m: &Shared, to: SocketAddr, uri: &[u8]) -> Option<UnsentBatch> {
    let batch = with(m, |b| b.message_done(to))?;
    send_batch(m, to, uri, batch)
}

/// A batch that could not go without tm: its caller sends it through tm
/// (`messaging`), or frees the keys it carried when it cannot.
pub struct UnsentBatch {
    /// The node's URI (None: its text did not parse).
    pub target: Option<NodeUri>,
    /// The node's URI text.
    pub uri: Vec<u8>,
    /// The `multi` body.
    body: Vec<u8>,
    header: Batch,
    /// The keys its updates carry (`dmq_core::ordering`).
    pub items: Vec<u64>,
}

impl UnsentBatch {
    /// The batch as one peer message.
    pub fn message(&self) -> PeerMessage<'_> {
        batch_message(&self.header, &self.body)
    }

    /// How many updates it carries.
    pub fn updates(&self) -> u32 {
        self.header.updates
    }
}

/// A batch's `multi` body as the one peer message it goes as.
fn batch_message<'a>(header: &Batch, body: &'a [u8]) -> PeerMessage<'a> {
    let Batch { callback, sync_since, sync_answer, .. } = *header;
    PeerMessage { peer_id: BATCHED_PEER, body, content_type: BATCHED_CONTENT_TYPE, max_forwards: 1, callback, sync_since, sync_answer }
}

fn send_batch(m: &Shared, to: SocketAddr, uri: &[u8], batch: ShmBlock<Batch>) -> Option<UnsentBatch> {
    let header = *batch.header();
    let Batch { updates, used, .. } = header;
    let body = batching::finish(batch.bytes(), used);
    let target = std::str::from_utf8(uri).ok().and_then(|u| node_uri::parse_node_line(u).ok()).map(|l| l.uri);
    let message = batch_message(&header, &body);
    // Every update in a batch had its key on its way (`ordering`).
    let items = dmq_core::ordering::identify(BATCHED_PEER, &body).map(|k| k.items).unwrap_or_default();
    let sent = match &target {
        Some(target) => direct_send::send(m, &Outgoing { message, target, to, counted_in_batch: true, updates, items: &items }),
        None => Err(SendError::Failed(format!("no node URI in {:?}", String::from_utf8_lossy(uri)))),
    };
    if sent.is_ok() {
        event_counts::add(m, EventCount::BatchesSent);
        return None;
    }
    // Not in flight after all (a full table, most likely). While other
    // messages to the node wait for their replies, the batch waits for the
    // next of them (replies free slots; a flush from a SIP worker must not
    // go to tm, which holds a transaction in shm per message); else tm.
    let _unsent = with(m, |b| b.batch_not_sent(to, batch))?;
    Some(UnsentBatch { target, uri: uri.to_vec(), body, header, items })
}
