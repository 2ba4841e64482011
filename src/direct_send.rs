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
//! logic is pure (`dmq_core::pending`), the table's shm is
//! `shared::DirectTable`; this file holds the plumbing. A leaf transport: when it cannot take a
//! message (a full table, a node on another transport than the DMQ socket,
//! an unresolved node) it says so, and `messaging` sends it through tm
//! instead, so nothing is ever dropped. dmq_usrloc's updates may wait in a
//! batch first (`usrloc_batches`, which sends its batches through here).

use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dmq_abi::in_shm::PendingParts;
use dmq_core::header_scan::request_parts;
use dmq_core::kdmq::Envelope;
use dmq_core::node_uri::{self, NodeUri};
use dmq_core::pending::{self, Delivery, PendingStats, PendingTable, ReplyKind, ReplyOutcome};
use dmq_core::reply_codes::{self, PeerReply};

use dmq_abi::api::PeerMessage;
use kamailio::clock::monotonic_ms as now_ms;
use kamailio::log::RateLimit;
use kamailio::process::Rank;
use kamailio::replies::Verdict;
use kamailio::send;
use kamailio::shm::ShmArc;
use kamailio::sip_msg::SipMsg;
use kamailio::tm::TmReply;

use crate::event_counts;
use crate::shared::{DirectTable, InFlight, Shared};
use crate::sync_status;
use crate::{node_list, notifications, requests, transports};

/// Messages that may wait for their reply at once; beyond it, tm carries them.
pub const CAPACITY: usize = crate::shared::DIRECT_CAPACITY;

impl DirectTable {
    /// Runs `f` on the table under its lock; never across a send.
    fn with<R>(&self, f: impl FnOnce(&mut PendingTable<'_, ShmArc<InFlight>>) -> R) -> R {
        let mut data = self.data.lock();
        let PendingParts { head, slots, free, messages } = &mut *data;
        f(&mut PendingTable { head, slots, free, messages })
    }
}

/// The target node's URI text and the request bytes of a stored message.
fn uri_and_request(message: &ShmArc<InFlight>) -> (&[u8], &[u8]) {
    let (uri, rest) = message.bytes().split_at((message.header().uri_len as usize).min(message.bytes().len()));
    (uri, &rest[..(message.header().request_len as usize).min(rest.len())])
}

/// The keys a stored message carries (`dmq_core::ordering`).
fn items_of(message: &ShmArc<InFlight>) -> Vec<u64> {
    let InFlight { uri_len, request_len, items, .. } = *message.header();
    let start = uri_len as usize + request_len as usize;
    let bytes = message.bytes().get(start..).unwrap_or_default();
    bytes.chunks_exact(8).take(items as usize).map(|c| u64::from_ne_bytes(c.try_into().unwrap_or_default())).collect()
}

/// mod_init (the table made): its free slots.
pub fn init(table: &DirectTable) {
    table.with(|t| t.reset());
}

/// A message that is done (answered, or timed out: 408) after its
/// consumer's callback ran: what is left to do with it is its caller's
/// (`messaging::finish_direct`: its node's usrloc batch, the keys it
/// carried). Holds the table's reference to its bytes until dropped.
pub struct Completed {
    message: ShmArc<InFlight>,
    /// The final reply's code (408: timed out).
    pub code: i32,
}

impl Completed {
    /// The node's address it went to.
    pub fn to(&self) -> SocketAddr {
        self.message.header().to
    }

    /// The node's URI text.
    pub fn uri(&self) -> &[u8] {
        uri_and_request(&self.message).0
    }

    /// The request as it was sent.
    pub fn request(&self) -> &[u8] {
        uri_and_request(&self.message).1
    }

    /// Whether it was counted in its node's usrloc batching.
    pub fn counted_in_batch(&self) -> bool {
        self.message.header().counted_in_batch
    }

    /// The keys it carried (`dmq_core::ordering`).
    pub fn items(&self) -> Vec<u64> {
        items_of(&self.message)
    }
}

/// Why a message was not sent here.
#[derive(Debug)]
pub enum SendError {
    /// The node speaks another transport than the DMQ socket's: use tm.
    OtherTransport,
    /// No address of the node is known here (a name not looked up yet):
    /// use tm, which resolves it.
    NoAddress,
    /// Every slot of the in-flight table is taken: use tm.
    TableFull,
    /// It could not be sent at all (out of shm, a datagram refused, …).
    Failed(String),
}

/// Where a message to `target` goes from here, when this path can carry
/// it: the node has a known address (`ip`) and speaks the DMQ socket's
/// transport (UDP, TCP or TLS).
pub fn address(m: &Shared, target: &NodeUri, ip: Option<IpAddr>) -> Result<SocketAddr, SendError> {
    if m.socket.transport != Some(target.transport) {
        return Err(SendError::OtherTransport);
    }
    let ip = ip.ok_or(SendError::NoAddress)?;
    Ok(SocketAddr::new(ip, target.port_no()))
}

/// A message about to go out through a slot, to one node.
pub struct Outgoing<'a> {
    pub message: PeerMessage<'a>,
    pub target: &'a NodeUri,
    /// The node's address ([`address`]).
    pub to: SocketAddr,
    /// Counted among its node's batchable messages waiting for a reply:
    /// when done, its node's batch goes (`messaging::finish_direct`).
    pub counted_in_batch: bool,
    /// Updates it carries (a batch: several; the callback runs once each).
    pub updates: u32,
    /// The keys it carries on their way to the node (`ordering`): freed
    /// when it is done (`messaging::finish_direct`).
    pub items: &'a [u64],
}

impl<'a> Outgoing<'a> {
    /// One message on its own.
    pub fn alone(message: PeerMessage<'a>, target: &'a NodeUri, to: SocketAddr, items: &'a [u64]) -> Outgoing<'a> {
        Outgoing { message, target, to, counted_in_batch: false, updates: 1, items }
    }
}

/// Sends one peer message through a slot when one is free.
pub fn send(m: &Shared, out: &Outgoing<'_>) -> Result<(), SendError> {
    let table = &m.direct;
    let callback = out.message.callback;
    let transport = out.target.transport;
    let delivery = if transport.is_stream() { Delivery::Stream } else { Delivery::Datagram };
    // The slot comes first: its branch goes into the request.
    let branch = take_slot(table, delivery).ok_or(SendError::TableFull)?;
    // Call-ID and From tag carry the branch's token: a reply is checked
    // against it (`pending::reply_matches`).
    let token = &branch[pending::BRANCH_PREFIX.len()..];
    let request = requests::to_node(m, out.target, &out.message).to_bytes(&Envelope {
        transport,
        sent_by: &m.socket.sent_by,
        branch: &branch,
        token,
    });
    let uri = out.target.to_uri();
    let header = InFlight {
        callback,
        to: out.to,
        uri_len: uri.len() as u32,
        request_len: request.len() as u32,
        items: out.items.len() as u32,
        counted_in_batch: out.counted_in_batch,
        updates: out.updates,
        stream: delivery == Delivery::Stream,
    };
    let items: Vec<u8> = out.items.iter().flat_map(|k| k.to_ne_bytes()).collect();
    let Some(message) = ShmArc::new(header, &[uri.as_bytes(), &request, &items]) else {
        table.with(|t| t.complete(&branch));
        return Err(SendError::Failed("out of shm for a DMQ message".into()));
    };
    if table.with(|t| t.attach(&branch, message)).is_err() {
        // Cannot happen before the request is sent; the message is dropped.
        return Err(SendError::Failed("DMQ message slot lost before sending".into()));
    }
    if let Err(e) = send::send_from(m.socket.local, transports::proto(transport), out.to, &request).map_err(|e| e.to_string()) {
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

/// A wait that ran out: later senders of this process skip waiting for a
/// while (a node that stopped answering must not stall every send).
static WAIT_GAVE_UP_AT: AtomicU64 = AtomicU64::new(0);

/// Whether this process reads SIP from the network (`pending::may_wait`).
static READS_SIP: AtomicBool = AtomicBool::new(false);

/// child_init: note whether this process is a SIP receiver.
pub fn note_process_rank(rank: Rank) {
    READS_SIP.store(rank.reads_sip(), Ordering::Relaxed);
}

/// Whether a sender of this process that began waiting (for a slot, or for
/// room in a node's batch) at `start` may wait on (`pending::may_wait`).
pub fn may_wait(start: u64) -> bool {
    pending::may_wait(READS_SIP.load(Ordering::Relaxed), start, now_ms(), WAIT_GAVE_UP_AT.load(Ordering::Relaxed))
}

fn take_slot(table: &DirectTable, delivery: Delivery) -> Option<String> {
    let start = now_ms();
    let patient = may_wait(start);
    loop {
        if let Some(branch) = table.with(|t| t.insert(now_ms(), delivery, |index, seq| table.nonce_keys.hash_one((index, seq)))) {
            return Some(branch);
        }
        if !patient || now_ms() - start >= pending::SLOT_WAIT_MS {
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

/// Every reply the core receives comes here first (through
/// `messaging::on_reply`), before the script's reply route. Ours (our
/// branch prefix) are consumed whatever becomes of them; others go on to
/// tm and the script untouched. Returns the message the reply completed.
pub fn on_reply(m: &Shared, msg: &SipMsg) -> (Verdict, Option<Completed>) {
    let table = &m.direct;
    let Some(ids) = msg.reply_ids() else { return (Verdict::NotMine, None) };
    // Every reply this node sees passes here: leave others' at once.
    if !ids.branch.starts_with(pending::BRANCH_PREFIX.as_bytes()) {
        return (Verdict::NotMine, None);
    }
    let Ok(branch) = std::str::from_utf8(ids.branch) else { return (Verdict::Consumed, None) };
    if !pending::reply_matches(branch, ids.call_id, ids.cseq_number, ids.cseq_method) {
        table.with(|t| t.refused());
        log_refused_reply(msg, "its Call-ID or CSeq is not the request's");
        return (Verdict::Consumed, None);
    }
    // A 503 (a dmq_rs node with a full job queue) or a 403 (a dmq_rs node
    // that does not list us, members_only): the timer sends it again; after
    // a 403 the node hears from us at once.
    let kind = ReplyKind::of_status(ids.status);
    if reply_codes::peer_reply(i32::from(ids.status), true) == PeerReply::NotListed {
        if let Some(node) = msg.source().and_then(|s| node_list::node_at(m, s)) {
            notifications::renotify(m, &node);
        }
    }
    // The reply must come from where the message went (over TCP/TLS from
    // its address: the node may answer on a connection it opened itself).
    let source = msg.source();
    let came_from_target = |m: &ShmArc<InFlight>| {
        let to = m.header().to;
        source.is_some_and(|s| if m.header().stream { s.ip() == to.ip() } else { s == to })
    };
    let completed = match table.with(|t| t.on_reply(branch, kind, now_ms(), came_from_target)) {
        ReplyOutcome::Completed(message) => Some(complete(m, message, i32::from(ids.status), TmReply::received(msg))),
        ReplyOutcome::Refused => {
            log_refused_reply(msg, "it does not come from the node the request went to");
            None
        }
        // A late reply (to a retransmission) finds nothing: consumed as well.
        ReplyOutcome::Unknown | ReplyOutcome::Stopped | ReplyOutcome::RetryLater => None,
    };
    (Verdict::Consumed, completed)
}

/// One log line for a refused reply, at most one a second per process:
/// a flood of forged replies must not flood the log.
fn log_refused_reply(msg: &SipMsg, why: &str) {
    static LOG: RateLimit = RateLimit::per(1000);
    if LOG.allow() {
        log::warn!("a reply to a DMQ message from {:?} was ignored: {why} (counted in dmq.stats forged_replies)", msg.source());
    }
}

/// A message is answered (or timed out: 408): counted, and handed to its
/// consumer's callback (once per update it carries). The rest is the
/// caller's ([`Completed`]), which holds the table's reference.
fn complete(m: &Shared, message: ShmArc<InFlight>, code: i32, reply: TmReply<'_>) -> Completed {
    let InFlight { callback, updates, .. } = *message.header();
    let (uri, _) = uri_and_request(&message);
    if reply.msg().is_some() {
        for _ in 0..updates {
            event_counts::add_reply(m, code);
        }
    }
    if code >= 300 {
        log::debug!("peer message answered {code}");
    }
    // The node it went to, when someone needs it: the consumer's callback,
    // or a sync being followed (`sync_status`; none: nothing to look up).
    let following = sync_status::following_any(m);
    let node = (following || callback.is_some())
        .then(|| std::str::from_utf8(uri).ok().and_then(|u| node_uri::parse_node_line(u).ok()))
        .flatten()
        .map(|line| node_list::node_or_stand_in(m, &line.uri));
    // A consumer's sync request: its run learns the answer.
    if let (true, Some(node)) = (following, &node) {
        if let Some((peer, _, _, body)) = request_parts(uri_and_request(&message).1) {
            sync_status::request_answered(m, peer, body, node, code, reply.msg());
        }
    }
    if let (Some(callback), Some(node)) = (callback, &node) {
        for _ in 0..updates {
            if !callback.call(code, reply, node) {
                log::warn!("response callback for a message to {} failed", node.uri);
            }
        }
    }
    Completed { message, code }
}

/// The retransmission timer's work: resends what is due, reports timeouts
/// as 408 with tm's marker, as from the stock module; each timed out
/// message goes to `finish` (its caller's) before the next one's callback.
pub fn tick(m: &Shared, mut finish: impl FnMut(Completed)) {
    let table = &m.direct;
    // Under the lock only take a reference to each due message; the bytes
    // are sent after releasing it (copying them there would hold every SIP
    // worker's reply behind the copy). A reply may complete a message
    // meanwhile: the reference keeps its bytes alive.
    let due = table.with(|t| t.due(now_ms()));
    // Every message in the table went over the DMQ socket's transport.
    for message in due.retransmit {
        let Some(transport) = m.socket.transport else { break };
        let (_, request) = uri_and_request(&message);
        if let Err(e) = send::send_from(m.socket.local, transports::proto(transport), message.header().to, request) {
            log::debug!("sending again: {e}");
        }
    }
    for message in due.expired {
        finish(complete(m, message, 408, TmReply::none()));
    }
}

/// The table's counters (`kamcmd dmq.stats`).
pub fn stats(m: &Shared) -> PendingStats {
    m.direct.with(|t| t.head.stats)
}
