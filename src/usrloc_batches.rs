//! dmq_usrloc's updates to a node that already has one waiting for its
//! reply wait in a batch for that node instead; when the reply comes the
//! batch goes as one `multi` message (`direct_send`). The rules (which
//! batch an update joins, when one is full, the per-node window, what a
//! reply does) and the `multi` body are pure (`dmq_core::batching`); this
//! file holds their state in shm, under its own lock, and the sending.

use std::net::SocketAddr;
use std::sync::OnceLock;

use dmq_core::batching::{self, NodeBatches, Placement, BATCHED_CONTENT_TYPE, BATCHED_PEER, BATCH_BYTES, BATCH_NODES};
use dmq_core::protocol::{self, NodeUri};

use kamailio::clock::monotonic_ms as now_ms;
use dmq_abi::api::ResponseCallback;
use kamailio::shm::{ShmBlock, ShmMutex};
use kamailio::shm_data;
use kamailio::shm_zeroed;

use crate::direct_send::{self, Outgoing, PeerMessage, SendError};
use crate::event_counts::{self, EventCount};

shm_zeroed! {
    /// The batching state of up to `BATCH_NODES` nodes (the parts of
    /// `dmq_core::batching::NodeBatches`), under one lock.
    struct BatchData {
        used: [bool; BATCH_NODES],
        /// The node's address (IPv4 as IPv6-mapped) and port.
        ips: [[u8; 16]; BATCH_NODES],
        ports: [u16; BATCH_NODES],
        in_flight: [u32; BATCH_NODES],
        open: [Option<ShmBlock<Batch>>; BATCH_NODES],
    }
}

shm_data! {
    /// A batch being filled: its `multi` body so far follows the header.
    #[derive(Clone, Copy)]
    struct Batch {
        /// The updates' response callback (all the same: a batch takes
        /// only updates with the first one's), run once per update.
        callback: Option<ResponseCallback>,
        updates: u32,
        used: u32,
    }
}

static STATE: OnceLock<&'static ShmMutex<BatchData>> = OnceLock::new();

/// Runs `f` on the batching state under its lock; never across a send.
fn with<R>(f: impl FnOnce(&mut NodeBatches<'_, ShmBlock<Batch>>) -> R) -> Option<R> {
    let mut data = STATE.get()?.lock();
    let BatchData { used, ips, ports, in_flight, open } = &mut *data;
    Some(f(&mut NodeBatches { used, ips, ports, in_flight, open }))
}

/// How a batch that cannot go without tm goes instead (`messaging`'s tm path).
pub type TmFallback = fn(&str, &NodeUri, &[u8], &str, i32, Option<ResponseCallback>) -> Result<(), String>;
static TM_FALLBACK: OnceLock<TmFallback> = OnceLock::new();

/// mod_init (`messaging`, after `direct_send::init`): the state in shm,
/// where batches go when no slot is free, and the hook that sends a
/// node's batch when one of its messages is done.
pub fn init(tm_fallback: TmFallback) -> Result<(), String> {
    let data = ShmMutex::<BatchData>::new_zeroed().ok_or("out of shm for the DMQ usrloc batches")?;
    STATE.set(data).map_err(|_| "usrloc batches initialized twice".to_string())?;
    let _ = TM_FALLBACK.set(tm_fallback);
    direct_send::set_batch_release(release);
    Ok(())
}

/// Sends a dmq_usrloc update (`batching::is_batchable`) to the node at
/// `to`, or lets it wait in the node's batch.
pub fn send(message: &PeerMessage<'_>, target: &NodeUri, to: SocketAddr) -> Result<(), SendError> {
    let alone = Outgoing::alone(*message, target, to);
    let start = now_ms();
    let mut placed = offer(to, message.body, message.callback);
    while placed == Placement::WindowFull {
        if !direct_send::may_wait(start) {
            // Past the window, counted like the others.
            placed = with(|b| b.pass_window(to)).unwrap_or(Placement::SendAlone);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        placed = offer(to, message.body, message.callback);
    }
    match placed {
        Placement::WindowFull | Placement::NeedsNewBatch => unreachable!("waited for, sent past or made"),
        Placement::Batched => {
            event_counts::add(EventCount::MessagesBatched);
            Ok(())
        }
        Placement::SendFlushingOnReply => {
            let sent = direct_send::send(&Outgoing { counted_in_batch: true, ..alone });
            if sent.is_err() {
                release(to, target.to_uri().as_bytes());
            }
            sent
        }
        Placement::SendAlone => direct_send::send(&alone),
    }
}

/// Offers `update` to `to`'s batch (`NodeBatches::offer`); a new batch's
/// block is made outside the lock, then offered again.
fn offer(to: SocketAddr, update: &[u8], callback: Option<ResponseCallback>) -> Placement {
    let callback_bytes = callback.map(|c| c.to_bytes());
    let mut spare: Option<ShmBlock<Batch>> = None;
    loop {
        let placed = with(|batches| {
            batches.offer(to, &mut spare, |batch| {
                let Batch { callback: batch_callback, mut updates, mut used } = *batch.header();
                let same_callback = batch_callback.map(|c| c.to_bytes()) == callback_bytes;
                let joined = batching::join(batch.bytes_mut(), &mut updates, &mut used, same_callback, update);
                let header = batch.header_mut();
                (header.updates, header.used) = (updates, used);
                joined
            })
        });
        match placed {
            Some(Placement::NeedsNewBatch) => match ShmBlock::zeroed(Batch { callback, updates: 0, used: 0 }, BATCH_BYTES) {
                Some(block) => spare = Some(block),
                None => return Placement::SendAlone,
            },
            Some(placed) => return placed,
            None => return Placement::SendAlone,
        }
    }
}

/// A message counted in `to`'s batching (its URI text `uri`) is done: the
/// node's batch, if any, goes now.
fn release(to: SocketAddr, uri: &[u8]) {
    if let Some(batch) = with(|b| b.message_done(to)).flatten() {
        send_batch(to, uri, batch);
    }
}

fn send_batch(to: SocketAddr, uri: &[u8], batch: ShmBlock<Batch>) {
    let Batch { callback, updates, used } = *batch.header();
    let body = batching::finish(batch.bytes(), used);
    let target = std::str::from_utf8(uri).ok().and_then(|u| protocol::parse_node_line(u).ok()).map(|l| l.uri);
    let message = PeerMessage { peer_id: BATCHED_PEER, body: &body, content_type: BATCHED_CONTENT_TYPE, max_forwards: 1, callback };
    let sent = match &target {
        Some(target) => direct_send::send(&Outgoing { message, target, to, counted_in_batch: true, updates }),
        None => Err(SendError::Failed(format!("no node URI in {:?}", String::from_utf8_lossy(uri)))),
    };
    if sent.is_ok() {
        event_counts::add(EventCount::BatchesSent);
        return;
    }
    // Not in flight after all (a full table, most likely). While other
    // messages to the node wait for their replies, the batch waits for the
    // next of them (replies free slots; a flush from a SIP worker must not
    // go to tm, which holds a transaction in shm per message); else tm.
    let Some(_unsent) = with(|b| b.batch_not_sent(to, batch)).flatten() else { return };
    let through_tm = match (&target, TM_FALLBACK.get()) {
        (Some(target), Some(send)) => send(BATCHED_PEER, target, &body, BATCHED_CONTENT_TYPE, 1, callback),
        _ => Err("no way to send it".into()),
    };
    match through_tm {
        Ok(()) => event_counts::add(EventCount::BatchesSent),
        Err(e) => log::error!("cannot send a batch of {updates} {BATCHED_PEER} updates to {}: {e}", String::from_utf8_lossy(uri)),
    }
}
