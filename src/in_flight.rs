//! Peer messages without tm, over UDP, TCP or TLS: each one is sent from
//! the DMQ socket (over TCP/TLS on a connection the core finds or makes)
//! and kept in a shm slot (with its bytes, for sending again) only until
//! its final reply arrives. The core hands every reply to `on_reply` before
//! the script's reply route (a route that drops replies tm does not know
//! must not drop ours); it checks the reply against the message (branch
//! nonce, source, Call-ID, CSeq), frees the slot and runs the consumer's
//! callback. A timer process sends again (UDP: SIP's retransmissions;
//! TCP/TLS: a copy after seconds without any reply, since a connection may
//! break with the message in it) and reports timeouts as 408. The slot
//! logic is pure (`dmq_core::pending`); this file holds its shm, its lock
//! and the Kamailio plumbing. A leaf transport: when it cannot take a
//! message (a full table, a node on another transport than the DMQ socket,
//! an unresolved node) it says so, and `messaging` sends it through tm
//! instead, so nothing is ever dropped.
//!
//! dmq_usrloc's updates to a node that already has one waiting for its
//! reply wait in a batch for that node instead (at most `BATCH_UPDATES` of
//! them, `BATCH_BYTES` of body); when the
//! reply comes the batch goes as one `multi` message, the form dmq_usrloc
//! itself sends its sync batches in and every dmq_usrloc (stock or not)
//! reads. A node that answers fast gets each update alone; a busy one gets
//! fewer, fuller messages: every message costs its receiver a parse, a
//! reply and a q_malloc per header, whatever it carries.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

use dmq_core::pending::{self, Delivery, PendingStats, PendingTable, ReplyKind, ReplyOutcome};
use dmq_abi::in_shm::PendingParts;
use dmq_core::protocol::{self, NodeUri};

use kamailio::clock::monotonic_ms as now_ms;
use dmq_abi::api::ResponseCallback;
use kamailio::log::RateLimit;
use kamailio::process::Rank;
use kamailio::replies::Verdict;
use kamailio::shm::{ShmArc, ShmBlock, ShmMutex};
use kamailio::sip_msg::SipMsg;
use kamailio::tm::TmReply;
use kamailio::send;
use kamailio::shm_data;
use kamailio::shm_zeroed;

use crate::cluster;
use crate::event_counts::{self, EventCount};
use crate::state::{self, module};

/// Messages that may wait for their reply at once; beyond it, tm carries them.
pub const CAPACITY: usize = 8192;

/// The peer whose updates are batched, and the form they must have.
const BATCHED_PEER: &str = "usrloc";
const BATCHED_CONTENT_TYPE: &str = "application/json";
/// Nodes that may have a batch at once (more: their updates go alone).
const BATCH_NODES: usize = 64;
/// Updates in a batch at most.
const BATCH_UPDATES: u32 = 32;
/// Batchable messages that may wait for their replies per node: past it
/// a patient sender (a DMQ worker, e.g. running a sync) waits for room in
/// the node's batch instead of sending more alone. Without it a sync sends
/// thousands at once, more than the receiver's socket buffer holds: the
/// ones dropped come again after T1, and it handles those twice.
const NODE_WINDOW: u32 = 64;
/// A batch's body at most: a few Ethernet frames' worth, well below
/// dmq_usrloc's own sync batches (up to 60 000 bytes) and Kamailio 6.0's
/// `msg_recv_max_size` (32 767).
const BATCH_BYTES: usize = 7600;

shm_zeroed! {
    /// The table in shm, under one lock: the pure table's parts, each
    /// slot's message, and the batches by node.
    struct TableData {
        pending: PendingParts<Option<ShmArc<Message>>, CAPACITY>,
        batches: [BatchSlot; BATCH_NODES],
    }
}

shm_zeroed! {
    /// One node's batching state.
    struct BatchSlot {
        used: bool,
        /// The node's address (IPv4 as IPv6-mapped) and port.
        ip: [u8; 16],
        port: u16,
        /// Batchable messages to the node waiting for their reply: each
        /// sends the open batch, if any, when it completes.
        in_flight: u32,
        /// Updates waiting for one of those (never while none waits).
        open: Option<ShmBlock<Batch>>,
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

impl BatchSlot {
    fn is_for(&self, to: SocketAddr) -> bool {
        self.used && self.ip == ip_key(to.ip()) && self.port == to.port()
    }
}

fn ip_key(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

shm_data! {
    /// A message in flight: this header, then the target node's URI and
    /// the request bytes, in one reference-counted shm block that never
    /// changes. The table holds one reference from insertion until the
    /// message completes or expires (then handed to whoever finishes it);
    /// the timer takes another while it retransmits outside the lock.
    #[derive(Clone, Copy)]
    struct Message {
        callback: Option<ResponseCallback>,
        to: SocketAddr,
        uri_len: u32,
        /// Counted in its node's batch slot (`in_flight`).
        batchable: bool,
        /// Updates it carries (a batch: several; the callback runs once each).
        updates: u32,
        /// Sent over TCP/TLS: a reply may come on a connection the node
        /// opened (another port), so only its address is checked.
        stream: bool,
    }
}

struct Table {
    data: &'static ShmMutex<TableData>,
    /// Keys for the branch nonces, random per start (made in mod_init, so
    /// every process has the same ones).
    nonce_keys: RandomState,
}

static TABLE: OnceLock<Table> = OnceLock::new();

impl Table {
    /// Runs `f` on the table under its lock; never across a send.
    fn with<R>(&self, f: impl FnOnce(&mut PendingTable<'_, ShmArc<Message>>) -> R) -> R {
        let mut data = self.data.lock();
        let PendingParts { head, slots, free, messages } = &mut data.pending;
        f(&mut PendingTable { head, slots, free, messages })
    }

    /// Runs `f` on the batch slots under the table's lock; never across a send.
    fn batches<R>(&self, f: impl FnOnce(&mut [BatchSlot; BATCH_NODES]) -> R) -> R {
        f(&mut self.data.lock().batches)
    }
}

fn parts(message: &ShmArc<Message>) -> (&[u8], &[u8]) {
    message.bytes().split_at((message.header().uri_len as usize).min(message.bytes().len()))
}

/// mod_init: the table in shm, and the hook that sees replies first.
pub fn init() -> Result<(), String> {
    let data = ShmMutex::<TableData>::new_zeroed().ok_or("out of shm for the DMQ message table")?;
    let table = Table { data, nonce_keys: RandomState::new() };
    table.with(|t| t.reset());
    TABLE.set(table).map_err(|_| "message table initialized twice".to_string())?;
    kamailio::replies::hook_replies(on_reply)
}

/// Why a message was not sent here.
#[derive(Debug)]
pub enum SendError {
    /// Not for this path (not UDP, no address, or no free slot): use tm.
    NoSlot,
    Failed(String),
}

/// Sends one peer message through a slot, when the node has a known
/// address, speaks the DMQ socket's transport (UDP, TCP or TLS), and a
/// slot is free; a dmq_usrloc update may wait in its node's batch instead.
pub fn send(peer_message: &PeerMessage<'_>, target: &NodeUri, ip: Option<IpAddr>) -> Result<(), SendError> {
    let &PeerMessage { peer_id, body, content_type, max_forwards, callback, batchable } = peer_message;
    let m = module().ok_or(SendError::Failed("dmq is not initialized".into()))?;
    let (Some(table), Some(ip), true) = (TABLE.get(), ip, m.server_transport == Some(target.transport)) else {
        return Err(SendError::NoSlot);
    };
    let to = SocketAddr::new(ip, target.port_no());
    let message = Outgoing { peer_id, target, to, body, content_type, max_forwards, callback, batchable: false, updates: 1 };
    if !batchable {
        return send_one(table, &message);
    }
    let start = now_ms();
    let mut offered = offer(table, to, body, callback);
    while matches!(offered, Offer::Full) {
        if !patient_sender(start) {
            // Past the window, counted like the others.
            let counted = table.batches(|slots| slots.iter_mut().find(|s| s.is_for(to)).map(|slot| slot.in_flight += 1).is_some());
            offered = if counted { Offer::Lead } else { Offer::Alone };
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        offered = offer(table, to, body, callback);
    }
    match offered {
        Offer::Full => unreachable!("a full batch is waited for or sent past"),
        Offer::Joined => {
            event_counts::add(EventCount::MessagesBatched);
            Ok(())
        }
        Offer::Lead => {
            let sent = send_one(table, &Outgoing { batchable: true, ..message });
            if sent.is_err() {
                settle(table, to, target.to_uri().as_bytes());
            }
            sent
        }
        Offer::Alone => send_one(table, &message),
    }
}

/// One peer message for any number of nodes.
#[derive(Clone, Copy)]
pub struct PeerMessage<'a> {
    pub peer_id: &'a str,
    pub body: &'a [u8],
    pub content_type: &'a str,
    pub max_forwards: i32,
    pub callback: Option<ResponseCallback>,
    /// A dmq_usrloc update that may wait in a node's batch (judged once
    /// for every node it goes to).
    batchable: bool,
}

impl<'a> PeerMessage<'a> {
    pub fn new(
        peer_id: &'a str,
        body: &'a [u8],
        content_type: &'a str,
        max_forwards: i32,
        callback: Option<ResponseCallback>,
    ) -> PeerMessage<'a> {
        let batchable = peer_id == BATCHED_PEER
            && content_type == BATCHED_CONTENT_TYPE
            && max_forwards == 1
            && dmq_core::body_check::is_single_update(peer_id, body);
        PeerMessage { peer_id, body, content_type, max_forwards, callback, batchable }
    }
}

/// A message about to go out through a slot.
struct Outgoing<'a> {
    peer_id: &'a str,
    target: &'a NodeUri,
    to: SocketAddr,
    body: &'a [u8],
    content_type: &'a str,
    max_forwards: i32,
    callback: Option<ResponseCallback>,
    batchable: bool,
    updates: u32,
}

fn send_one(table: &Table, out: &Outgoing<'_>) -> Result<(), SendError> {
    let m = module().ok_or(SendError::Failed("dmq is not initialized".into()))?;
    let transport = out.target.transport;
    let delivery = if transport.is_stream() { Delivery::Stream } else { Delivery::Datagram };
    // The slot comes first: its branch goes into the request.
    let branch = take_slot(table, delivery).ok_or(SendError::NoSlot)?;
    // Call-ID and From tag carry the branch's token: a reply is checked
    // against it (`pending::reply_matches`).
    let token = &branch[pending::BRANCH_PREFIX.len()..];
    let request = protocol::build_peer_request(&protocol::PeerRequest {
        transport,
        from: &m.local_uri,
        to: out.target,
        sent_by: &m.server_sent_by,
        peer: out.peer_id,
        branch: &branch,
        token,
        max_forwards: out.max_forwards,
        content_type: out.content_type,
        body: out.body,
        signing: m.config.shared_secret.as_deref().map(|s| (s, kamailio::clock::unix_now())),
    });
    let uri = out.target.to_uri();
    let header = Message {
        callback: out.callback,
        to: out.to,
        uri_len: uri.len() as u32,
        batchable: out.batchable,
        updates: out.updates,
        stream: delivery == Delivery::Stream,
    };
    let Some(message) = ShmArc::new(header, &[uri.as_bytes(), &request]) else {
        table.with(|t| t.complete(&branch));
        return Err(SendError::Failed("out of shm for a DMQ message".into()));
    };
    if table.with(|t| t.attach(&branch, message)).is_err() {
        // Cannot happen before the request is sent; the message is dropped.
        return Err(SendError::Failed("DMQ message slot lost before sending".into()));
    }
    if let Err(e) = send::send_from(m.server_sock, state::proto(transport), out.to, &request) {
        if delivery == Delivery::Stream {
            // No connection took it (none could be made now, or its write
            // queue is full: a node that stopped reading): the timer sends
            // it again soon, until one does or the message times out.
            table.with(|t| t.send_failed(&branch, now_ms()));
            log_stream_send_failed(&e);
            return Ok(());
        }
        // Not sent at all: take it back and say so, as tm does when it
        // cannot send (a reply may not have freed the slot: none can come).
        drop(table.with(|t| t.complete(&branch)));
        return Err(SendError::Failed(e));
    }
    Ok(())
}

/// At most one line a second per process: a node that is gone makes every
/// send to it fail.
fn log_stream_send_failed(error: &str) {
    static LOG: RateLimit = RateLimit::per(1000);
    if LOG.allow() {
        log::info!("{error}: sent again when a connection takes it (or 408 after 30 s)");
    }
}

/// What became of an update offered to its node's batch.
enum Offer {
    /// It waits in the batch.
    Joined,
    /// It goes now, and sends the batch when its reply comes.
    Lead,
    /// It goes now, on its own (no batch slot free).
    Alone,
    /// The node's window is full and so is its batch: wait, or go past the
    /// window (the caller counts it then).
    Full,
}

/// Puts `body` into `to`'s batch when a batchable message to `to` waits
/// for its reply (and the batch has room), else counts it as one.
fn offer(table: &Table, to: SocketAddr, body: &[u8], callback: Option<ResponseCallback>) -> Offer {
    enum Step {
        Done(Offer),
        NeedBlock,
    }
    // A new batch's block is made outside the lock, then offered again.
    let mut spare: Option<ShmBlock<Batch>> = None;
    loop {
        let step = table.batches(|slots| {
            let index = match slots.iter().position(|s| s.is_for(to)) {
                Some(i) => i,
                None => {
                    let Some(i) = slots.iter().position(|s| !s.used) else { return Step::Done(Offer::Alone) };
                    let slot = &mut slots[i];
                    (slot.used, slot.ip, slot.port, slot.in_flight) = (true, ip_key(to.ip()), to.port(), 0);
                    i
                }
            };
            let slot = &mut slots[index];
            if slot.in_flight == 0 {
                slot.in_flight = 1;
                return Step::Done(Offer::Lead);
            }
            if slot.open.is_none() {
                let Some(mut fresh) = spare.take() else { return Step::NeedBlock };
                fresh.header_mut().callback = callback;
                slot.open = Some(fresh);
            }
            if slot.open.as_mut().is_some_and(|batch| append(batch, body, callback)) {
                return Step::Done(Offer::Joined);
            }
            if slot.open.as_ref().is_some_and(|batch| batch.header().updates == 0) {
                // Too big for any batch: it goes alone, no empty batch stays.
                slot.open = None;
                slot.in_flight += 1;
                return Step::Done(Offer::Lead);
            }
            if slot.in_flight >= NODE_WINDOW {
                return Step::Done(Offer::Full);
            }
            // The batch is full: this one goes, and sends it when answered.
            slot.in_flight += 1;
            Step::Done(Offer::Lead)
        });
        match step {
            Step::Done(offer) => return offer,
            Step::NeedBlock => match ShmBlock::zeroed(Batch { callback: None, updates: 0, used: 0 }, BATCH_BYTES) {
                Some(block) => spare = Some(block),
                None => return Offer::Alone,
            },
        }
    }
}

/// Adds `body` to `batch` if it fits and has the batch's callback.
fn append(batch: &mut ShmBlock<Batch>, body: &[u8], callback: Option<ResponseCallback>) -> bool {
    let Batch { callback: batch_callback, updates, used } = *batch.header();
    let same_callback = batch_callback.map(|c| c.to_bytes()) == callback.map(|c| c.to_bytes());
    if !same_callback || updates >= BATCH_UPDATES {
        return false;
    }
    // {"multi":{"0":{…},"1":{…}}: member names as dmq_usrloc ignores them.
    let mut prefix = [0u8; 24];
    let prefix_len = {
        let mut w = &mut prefix[..];
        let written = if updates == 0 { write!(w, "{{\"multi\":{{\"0\":") } else { write!(w, ",\"{updates}\":") };
        if written.is_err() {
            return false;
        }
        24 - w.len()
    };
    let (used, end) = (used as usize, used as usize + prefix_len + body.len());
    // Room for the closing "}}" too.
    if end + 2 > BATCH_BYTES {
        return false;
    }
    let bytes = batch.bytes_mut();
    bytes[used..used + prefix_len].copy_from_slice(&prefix[..prefix_len]);
    bytes[used + prefix_len..end].copy_from_slice(body);
    let header = batch.header_mut();
    header.updates += 1;
    header.used = end as u32;
    true
}

/// A batchable message to `to` (its URI text `uri`) is done: the node's
/// batch, if any, goes now.
fn settle(table: &Table, to: SocketAddr, uri: &[u8]) {
    let batch = table.batches(|slots| {
        let slot = slots.iter_mut().find(|s| s.is_for(to))?;
        slot.in_flight = slot.in_flight.saturating_sub(1);
        let open = slot.open.take();
        if open.is_some() {
            slot.in_flight += 1;
        } else if slot.in_flight == 0 {
            slot.used = false;
        }
        open
    });
    if let Some(batch) = batch {
        send_batch(table, to, uri, batch);
    }
}

fn send_batch(table: &Table, to: SocketAddr, uri: &[u8], batch: ShmBlock<Batch>) {
    let Batch { callback, updates, used } = *batch.header();
    let mut body = Vec::with_capacity(used as usize + 2);
    body.extend_from_slice(&batch.bytes()[..used as usize]);
    body.extend_from_slice(b"}}");
    let target = std::str::from_utf8(uri).ok().and_then(|u| protocol::parse_node_line(u).ok()).map(|l| l.uri);
    let sent = match &target {
        Some(target) => send_one(
            table,
            &Outgoing {
                peer_id: BATCHED_PEER,
                target,
                to,
                body: &body,
                content_type: BATCHED_CONTENT_TYPE,
                max_forwards: 1,
                callback,
                batchable: true,
                updates,
            },
        ),
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
    let mut back = Some(batch);
    table.batches(|slots| {
        let Some(slot) = slots.iter_mut().find(|s| s.is_for(to)) else { return };
        slot.in_flight = slot.in_flight.saturating_sub(1);
        if slot.in_flight > 0 && slot.open.is_none() {
            slot.open = back.take();
        } else if slot.in_flight == 0 && slot.open.is_none() {
            slot.used = false;
        }
    });
    if back.is_none() {
        return;
    }
    let through_tm = match (&target, OVERFLOW.get()) {
        (Some(target), Some(send)) => send(BATCHED_PEER, target, &body, BATCHED_CONTENT_TYPE, 1, callback),
        _ => Err("no way to send it".into()),
    };
    match through_tm {
        Ok(()) => event_counts::add(EventCount::BatchesSent),
        Err(e) => log::error!("cannot send a batch of {updates} {BATCHED_PEER} updates to {}: {e}", String::from_utf8_lossy(uri)),
    }
}

/// How a message this file cannot carry goes instead (`messaging`'s tm path).
pub type Overflow = fn(&str, &NodeUri, &[u8], &str, i32, Option<ResponseCallback>) -> Result<(), String>;
static OVERFLOW: OnceLock<Overflow> = OnceLock::new();

/// mod_init (`messaging`): where batches go when no slot is free.
pub fn set_overflow(send: Overflow) {
    let _ = OVERFLOW.set(send);
}

/// How long a sender waits for a free slot when all are taken: the sender
/// (a DMQ worker running dmq_usrloc's or htable's sync loop) slows down to
/// the pace its nodes answer at, instead of piling up tm transactions.
const SLOT_WAIT_MS: u64 = 2000;

/// A wait that ran out: later senders of this process skip waiting for a
/// while (a node that stopped answering must not stall every send).
static WAIT_GAVE_UP_AT: AtomicU64 = AtomicU64::new(0);

/// Whether this process reads SIP from the network: such a process must
/// not wait for slots, since replies that free them are read by processes
/// like it (all of them waiting would free nothing).
static READS_SIP: AtomicBool = AtomicBool::new(false);

/// child_init: note whether this process is a SIP receiver.
pub fn note_process_rank(rank: Rank) {
    READS_SIP.store(rank.reads_sip(), Ordering::Relaxed);
}

/// Whether a sender that began waiting at `start` may wait on: not in a
/// SIP receiver, not past `SLOT_WAIT_MS`, and no wait of this process gave
/// up lately.
fn patient_sender(start: u64) -> bool {
    !READS_SIP.load(Ordering::Relaxed)
        && now_ms().saturating_sub(start) < SLOT_WAIT_MS
        && start.saturating_sub(WAIT_GAVE_UP_AT.load(Ordering::Relaxed)) > 5 * SLOT_WAIT_MS
}

fn take_slot(table: &Table, delivery: Delivery) -> Option<String> {
    let start = now_ms();
    let patient = patient_sender(start);
    loop {
        if let Some(branch) = table.with(|t| t.insert(now_ms(), delivery, |index, seq| table.nonce_keys.hash_one((index, seq)))) {
            return Some(branch);
        }
        if !patient || now_ms() - start >= SLOT_WAIT_MS {
            table.with(|t| t.overflowed());
            if patient {
                WAIT_GAVE_UP_AT.store(now_ms(), Ordering::Relaxed);
                log::warn!("{} DMQ messages wait for their replies: sending through tm", CAPACITY);
            }
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Every reply the core receives comes here first, before the script's
/// reply route. Ours (our branch prefix) are consumed whatever becomes of
/// them; others go on to tm and the script untouched.
fn on_reply(msg: &SipMsg) -> Verdict {
    let Some(table) = TABLE.get() else { return Verdict::NotMine };
    let Some(ids) = msg.reply_ids() else { return Verdict::NotMine };
    // Every reply this node sees passes here: leave others' at once.
    if !ids.branch.starts_with(pending::BRANCH_PREFIX.as_bytes()) {
        return Verdict::NotMine;
    }
    let Ok(branch) = std::str::from_utf8(ids.branch) else { return Verdict::Consumed };
    if !pending::reply_matches(branch, ids.call_id, ids.cseq_number, ids.cseq_method) {
        table.with(|t| t.refused());
        log_refused_reply(msg, "its Call-ID or CSeq is not the request's");
        return Verdict::Consumed;
    }
    let kind = match ids.status {
        0..=199 => ReplyKind::Provisional,
        // A dmq_rs node with a full job queue: the timer sends it again.
        503 => ReplyKind::Busy,
        // A dmq_rs node that does not list us (members_only): it hears
        // from us at once, and the timer sends the message again.
        403 => {
            if let Some(node) = msg.source().and_then(cluster::node_at) {
                cluster::renotify(&node);
            }
            ReplyKind::Busy
        }
        _ => ReplyKind::Final,
    };
    // The reply must come from where the message went (over TCP/TLS from
    // its address: the node may answer on a connection it opened itself).
    let source = msg.source();
    let came_from_target = |m: &ShmArc<Message>| {
        let to = m.header().to;
        source.is_some_and(|s| if m.header().stream { s.ip() == to.ip() } else { s == to })
    };
    match table.with(|t| t.on_reply(branch, kind, now_ms(), came_from_target)) {
        ReplyOutcome::Completed(message) => complete(table, message, i32::from(ids.status), TmReply::received(msg)),
        ReplyOutcome::Refused => log_refused_reply(msg, "it does not come from the node the request went to"),
        // A late reply (to a retransmission) finds nothing: consumed as well.
        ReplyOutcome::Unknown | ReplyOutcome::Stopped | ReplyOutcome::RetryLater => {}
    }
    Verdict::Consumed
}

/// One log line for a refused reply, at most one a second per process:
/// a flood of forged replies must not flood the log.
fn log_refused_reply(msg: &SipMsg, why: &str) {
    static LOG: RateLimit = RateLimit::per(1000);
    if LOG.allow() {
        log::warn!("a reply to a DMQ message from {:?} was ignored: {why} (counted in dmq.stats forged_replies)", msg.source());
    }
}

/// A message is answered (or timed out: 408): counted, handed to its
/// consumer's callback (once per update it carries), and its node's batch
/// sent. The table's reference (handed over on completion) is dropped after.
fn complete(table: &Table, message: ShmArc<Message>, code: i32, reply: TmReply<'_>) {
    let Message { callback, to, batchable, updates, .. } = *message.header();
    let (uri, _) = parts(&message);
    if reply.msg().is_some() {
        for _ in 0..updates {
            event_counts::add_reply(code);
        }
    }
    if code >= 300 {
        log::debug!("peer message answered {code}");
    }
    if let Some(callback) = callback {
        let node = std::str::from_utf8(uri).ok().and_then(|u| protocol::parse_node_line(u).ok()).map(|l| l.uri);
        if let Some(node) = node {
            let node = cluster::node_or_stand_in(&node);
            for _ in 0..updates {
                if !callback.call(code, reply, &node) {
                    log::warn!("response callback for a message to {} failed", node.uri);
                }
            }
        }
    }
    if batchable {
        settle(table, to, uri);
    }
}

/// The retransmission timer's work: resends what is due, reports timeouts
/// as 408 with tm's marker, as from the stock module.
pub fn tick() {
    let (Some(table), Some(m)) = (TABLE.get(), module()) else { return };
    // Under the lock only take a reference to each due message; the bytes
    // are sent after releasing it (copying them there would hold every SIP
    // worker's reply behind the copy). A reply may complete a message
    // meanwhile: the reference keeps its bytes alive.
    let due = table.with(|t| t.due(now_ms()));
    // Every message in the table went over the DMQ socket's transport.
    for message in due.retransmit {
        let Some(transport) = m.server_transport else { break };
        let (_, request) = parts(&message);
        if let Err(e) = send::send_from(m.server_sock, state::proto(transport), message.header().to, request) {
            log::debug!("sending again: {e}");
        }
    }
    for message in due.expired {
        complete(table, message, 408, TmReply::none());
    }
}

/// The table's counters (`kamcmd dmq.stats`).
pub fn stats() -> Option<PendingStats> {
    TABLE.get().map(|t| t.with(|t| t.head.stats))
}
