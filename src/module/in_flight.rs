//! Peer messages over UDP without tm: each one is sent from the DMQ socket
//! and kept in a shm slot (with its bytes, for retransmission) only until
//! its final reply arrives. The core hands every reply to `on_reply` before
//! the script's reply route (a route that drops replies tm does not know
//! must not drop ours); it checks the reply against the message (branch
//! nonce, source, Call-ID, CSeq), frees the slot and runs the consumer's
//! callback. A timer process retransmits and reports timeouts as 408. The
//! slot logic is pure (`dmq_core::pending`); this file holds its shm, its
//! lock and the Kamailio plumbing. A leaf transport: when it cannot take a
//! message (a full table, a non-UDP node or DMQ socket) it says so, and
//! `messaging` sends it through tm instead, so nothing is ever dropped.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

use dmq_core::pending::{self, Header, PendingStats, PendingTable, ReplyKind, ReplyOutcome, Slot};
use dmq_core::protocol::{self, NodeUri, Transport};

use crate::host::clock::monotonic_ms as now_ms;
use crate::host::dmq_api::ResponseCallback;
use crate::host::log::RateLimit;
use crate::host::process::Rank;
use crate::host::replies::Verdict;
use crate::host::shm::{ShmArc, ShmMutex};
use crate::host::sip_msg::SipMsg;
use crate::host::tm::TmReply;
use crate::host::udp;
use crate::shm_data;
use crate::shm_zeroed;

use super::cluster;
use super::figures;
use super::state::module;

/// Messages that may wait for their reply at once; beyond it, tm carries them.
pub const CAPACITY: usize = 8192;

shm_zeroed! {
    /// The table in shm, under one lock: the pure table's parts, and each
    /// slot's message.
    struct TableData {
        head: Header,
        slots: [Slot; CAPACITY],
        free: [u32; CAPACITY],
        messages: [Option<ShmArc<Message>>; CAPACITY],
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
        let TableData { head, slots, free, messages } = &mut *data;
        f(&mut PendingTable { head, slots, free, messages })
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
    crate::host::replies::hook_replies(on_reply)
}

/// Why a message was not sent here.
pub enum SendError {
    /// Not for this path (not UDP, no address, or no free slot): use tm.
    NoSlot,
    Failed(String),
}

/// Sends one peer message through a slot, when the node is a UDP node
/// with a known address, the DMQ socket is UDP, and a slot is free.
pub fn send(
    peer_id: &str,
    target: &NodeUri,
    ip: Option<IpAddr>,
    body: &[u8],
    content_type: &str,
    max_forwards: i32,
    callback: Option<ResponseCallback>,
) -> Result<(), SendError> {
    let m = module().ok_or(SendError::Failed("dmq is not initialized".into()))?;
    let (Some(table), Some(ip), Transport::Udp, true) = (TABLE.get(), ip, target.transport, m.server_is_udp) else {
        return Err(SendError::NoSlot);
    };
    // The slot comes first: its branch goes into the request.
    let branch = take_slot(table).ok_or(SendError::NoSlot)?;
    // Call-ID and From tag carry the branch's token: a reply is checked
    // against it (`pending::reply_matches`).
    let token = &branch[pending::BRANCH_PREFIX.len()..];
    let request = protocol::build_peer_request(&protocol::PeerRequest {
        from: &m.local_uri,
        to: target,
        sent_by: &m.server_sent_by,
        peer: peer_id,
        branch: &branch,
        token,
        max_forwards,
        content_type,
        body,
        signing: m.config.shared_secret.as_deref().map(|s| (s, crate::host::clock::unix_now())),
    });
    let to = SocketAddr::new(ip, target.port_no());
    let uri = target.to_uri();
    let header = Message { callback, to, uri_len: uri.len() as u32 };
    let Some(message) = ShmArc::new(header, &[uri.as_bytes(), &request]) else {
        table.with(|t| t.complete(&branch));
        return Err(SendError::Failed("out of shm for a DMQ message".into()));
    };
    if table.with(|t| t.attach(&branch, message)).is_err() {
        // Cannot happen before the request is sent; the message is dropped.
        return Err(SendError::Failed("DMQ message slot lost before sending".into()));
    }
    if let Err(e) = udp::send_from(m.server_sock, to, &request) {
        // Not sent at all: take it back and say so, as tm does when it
        // cannot send (a reply may not have freed the slot: none can come).
        drop(table.with(|t| t.complete(&branch)));
        return Err(SendError::Failed(e));
    }
    Ok(())
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

fn take_slot(table: &Table) -> Option<String> {
    let start = now_ms();
    let patient = !READS_SIP.load(Ordering::Relaxed)
        && start.saturating_sub(WAIT_GAVE_UP_AT.load(Ordering::Relaxed)) > 5 * SLOT_WAIT_MS;
    loop {
        if let Some(branch) = table.with(|t| t.insert(now_ms(), |index, seq| table.nonce_keys.hash_one((index, seq)))) {
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
    // The reply must come from where the message went.
    let source = msg.source();
    let came_from_target = |m: &ShmArc<Message>| source == Some(m.header().to);
    match table.with(|t| t.on_reply(branch, kind, now_ms(), came_from_target)) {
        ReplyOutcome::Completed(message) => {
            figures::count_reply(i32::from(ids.status));
            finish(message, i32::from(ids.status), TmReply::received(msg))
        }
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

/// Hands a finished message to its consumer's callback; the table's
/// reference (handed over on completion) is dropped after it.
fn finish(message: ShmArc<Message>, code: i32, reply: TmReply<'_>) {
    let callback = message.header().callback;
    if code >= 300 {
        log::debug!("peer message answered {code}");
    }
    let Some(callback) = callback else { return };
    let (uri, _) = parts(&message);
    let Ok(uri) = std::str::from_utf8(uri) else { return };
    let Ok(line) = protocol::parse_node_line(uri) else { return };
    if !callback.call(code, reply, &cluster::node_or_stand_in(&line.uri)) {
        log::warn!("response callback for a message to {} failed", line.uri);
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
    for message in due.retransmit {
        let (_, request) = parts(&message);
        if let Err(e) = udp::send_from(m.server_sock, message.header().to, request) {
            log::debug!("retransmission: {e}");
        }
    }
    for message in due.expired {
        finish(message, 408, TmReply::none());
    }
}

/// The table's counters (`kamcmd dmq.stats`).
pub fn stats() -> Option<PendingStats> {
    TABLE.get().map(|t| t.with(|t| t.head.stats))
}
