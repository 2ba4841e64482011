//! Peer messages over UDP without tm: each one is sent from the DMQ socket
//! and kept in a shm slot (with its bytes, for retransmission) only until
//! its final reply arrives. The core hands every reply to `on_reply` before
//! the script's reply route (a route that drops replies tm does not know
//! must not drop ours); it checks the reply against the message (branch
//! nonce, source, Call-ID, CSeq), frees the slot and runs the consumer's
//! callback. A timer process retransmits and reports timeouts as 408. The
//! slot logic is pure (`dmq_core::pending`); this file holds its shm, its
//! lock and the Kamailio plumbing. A full table, a non-UDP node or a non-UDP
//! DMQ socket falls back to tm, so nothing is ever dropped here.

use std::collections::hash_map::RandomState;
use std::ffi::{c_int, c_void};
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use dmq_core::pending::{self, Header, PendingStats, PendingTable, ReplyKind, ReplyOutcome, Slot};
use dmq_core::protocol::{self, NodeUri, Transport};

use crate::host::lock::ShmLock;
use crate::host::panic_guard::guard;
use crate::host::replies::Verdict;
use crate::host::sip_msg::SipMsg;
use crate::host::tm;
use crate::host::udp;
use crate::raw;

use super::lifecycle::module;
use super::messaging::{self, ResponseCallback};

/// Messages that may wait for their reply at once; beyond it, tm carries them.
const CAPACITY: usize = 8192;
/// How often the timer process looks for retransmissions and timeouts.
const TICK_US: c_int = 100_000;

/// The table in shm: header, slots, free-index stack (one block).
struct Table {
    lock: ShmLock,
    head: *mut Header,
    slots: *mut Slot,
    free: *mut u32,
    /// Keys for the branch nonces, random per start (made in mod_init, so
    /// every process has the same ones).
    nonce_keys: RandomState,
}

// SAFETY: shm pointers valid in every process of the tree (allocated in
// mod_init before fork, never freed); contents only touched under `lock`.
unsafe impl Send for Table {}
// SAFETY: as above.
unsafe impl Sync for Table {}

static TABLE: OnceLock<Table> = OnceLock::new();

impl Table {
    /// Runs `f` on the table under its lock; never across a send.
    fn with<R>(&self, f: impl FnOnce(&mut PendingTable<'_>) -> R) -> R {
        let _held = self.lock.lock();
        // SAFETY: the block holds CAPACITY slots and indices; the lock makes
        // this the only live view of it.
        let mut table = unsafe {
            PendingTable {
                head: &mut *self.head,
                slots: std::slice::from_raw_parts_mut(self.slots, CAPACITY),
                free: std::slice::from_raw_parts_mut(self.free, CAPACITY),
            }
        };
        f(&mut table)
    }
}

/// A message in flight, in its own shm block: this header, then the target
/// node's URI, then the request bytes. The bytes never change after the
/// block is made; `refs` counts who may read them: the table (one
/// reference from insertion until the message completes or expires, then
/// handed to whoever finishes it) and the timer while it retransmits
/// outside the table lock. The last to let go frees the block.
/// Plain data: every process runs the same binary, so the layout agrees.
struct Message {
    refs: AtomicU32,
    cb_f: usize,
    cb_param: usize,
    to: SocketAddr,
    uri_len: u32,
    request_len: u32,
}

impl Message {
    /// # Safety
    /// `m` is a live block made by `new_message`.
    unsafe fn parts<'a>(m: *const Message) -> (&'a Message, &'a [u8], &'a [u8]) {
        // SAFETY: per the caller; lengths were written with the block.
        unsafe {
            let head = &*m;
            let base = (m as *const u8).add(std::mem::size_of::<Message>());
            let uri = std::slice::from_raw_parts(base, head.uri_len as usize);
            let request = std::slice::from_raw_parts(base.add(head.uri_len as usize), head.request_len as usize);
            (head, uri, request)
        }
    }

    fn callback(&self) -> Option<ResponseCallback> {
        (self.cb_f != 0).then(|| ResponseCallback {
            // SAFETY: a valid callback pointer when stored, in this same
            // process tree (modules are loaded before fork).
            f: unsafe { std::mem::transmute::<usize, _>(self.cb_f) },
            param: self.cb_param as *mut c_void,
        })
    }
}

fn new_message(cb: Option<ResponseCallback>, to: SocketAddr, uri: &[u8], request: &[u8]) -> Option<*mut Message> {
    let size = std::mem::size_of::<Message>() + uri.len() + request.len();
    // SAFETY: plain shm allocation, freed by the last `release_message`.
    let m = unsafe { raw::dmq_rs_shm_malloc(size) } as *mut Message;
    if m.is_null() {
        return None;
    }
    let (cb_f, cb_param) = cb.map(|c| (c.f as usize, c.param as usize)).unwrap_or((0, 0));
    // SAFETY: the block has room for the header and both byte runs.
    unsafe {
        m.write(Message { refs: AtomicU32::new(1), cb_f, cb_param, to, uri_len: uri.len() as u32, request_len: request.len() as u32 });
        let base = (m as *mut u8).add(std::mem::size_of::<Message>());
        std::ptr::copy_nonoverlapping(uri.as_ptr(), base, uri.len());
        std::ptr::copy_nonoverlapping(request.as_ptr(), base.add(uri.len()), request.len());
    }
    Some(m)
}

/// Takes one more reference (the caller holds the table lock and the
/// message is still in the table, so it is alive).
fn retain_message(m: *mut Message) {
    // SAFETY: alive per the caller; refs is an atomic in shm.
    unsafe { (*m).refs.fetch_add(1, Ordering::AcqRel) };
}

/// Drops one reference; the last one frees the block.
fn release_message(m: *mut Message) {
    // SAFETY: the caller owns one reference, so the block is alive until
    // this decrement; only the one who drops the last frees it, once.
    unsafe {
        if (*m).refs.fetch_sub(1, Ordering::AcqRel) == 1 {
            raw::dmq_rs_shm_free(m as *mut c_void);
        }
    }
}

use crate::host::clock::monotonic_ms as now_ms;

/// mod_init: the table and its lock in shm; the timer process is registered.
pub fn init() -> Result<(), String> {
    let size = std::mem::size_of::<Header>() + CAPACITY * (std::mem::size_of::<Slot>() + std::mem::size_of::<u32>());
    // SAFETY: zeroed shm block; Header and Slot align to 8, u32 after them.
    let block = unsafe { raw::dmq_rs_shm_mallocxz(size) } as *mut u8;
    let lock = ShmLock::new();
    let (false, Some(lock)) = (block.is_null(), lock) else {
        return Err("out of shm for the DMQ message table".into());
    };
    // SAFETY: offsets within the block just allocated.
    let table = unsafe {
        let slots = block.add(std::mem::size_of::<Header>()) as *mut Slot;
        Table { lock, head: block as *mut Header, slots, free: slots.add(CAPACITY) as *mut u32, nonce_keys: RandomState::new() }
    };
    table.with(|t| t.reset());
    TABLE.set(table).map_err(|_| "message table initialized twice".to_string())?;
    crate::host::replies::hook_replies(on_reply)?;
    // SAFETY: reserves the timer process with the core before fork.
    if unsafe { raw::register_basic_timers(1) } < 0 {
        return Err("cannot register the DMQ retransmission timer".into());
    }
    Ok(())
}

/// child_init(PROC_MAIN): forks the retransmission timer process.
pub fn start_timer() -> Result<(), String> {
    // SAFETY: forks from child_init(PROC_MAIN) as registered in init.
    let rc = unsafe {
        raw::fork_basic_utimer(raw::PROC_TIMER, c"DMQ RETRANSMIT TIMER".as_ptr() as *mut _, 1, Some(on_tick), std::ptr::null_mut(), TICK_US)
    };
    if rc < 0 {
        return Err("cannot fork the DMQ retransmission timer".into());
    }
    Ok(())
}

/// Sends one peer message: through a slot when the node is a UDP node with
/// a known address and a slot is free, through tm otherwise.
pub fn send(
    peer_id: &str,
    target: &NodeUri,
    ip: Option<IpAddr>,
    body: &[u8],
    content_type: &str,
    max_forwards: i32,
    cb: Option<ResponseCallback>,
) -> Result<(), String> {
    let m = module().ok_or("dmq is not initialized")?;
    let (Some(table), Some(ip), Transport::Udp, true) = (TABLE.get(), ip, target.transport, m.server_is_udp) else {
        return messaging::send_through_tm(m, peer_id, target, body, content_type, max_forwards, cb);
    };
    // The slot comes first: its branch goes into the request.
    let Some(branch) = take_slot(table) else {
        return messaging::send_through_tm(m, peer_id, target, body, content_type, max_forwards, cb);
    };
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
    });
    let to = SocketAddr::new(ip, target.port_no());
    let Some(message) = new_message(cb, to, target.to_uri().as_bytes(), &request) else {
        table.with(|t| t.complete(&branch));
        return Err("out of shm for a DMQ message".into());
    };
    if !table.with(|t| t.attach(&branch, message as usize)) {
        // Cannot happen before the request is sent; keep the books right anyway.
        release_message(message);
        return Err("DMQ message slot lost before sending".into());
    }
    if let Err(e) = udp::send_from(m.server_sock, to, &request) {
        // Not sent at all: take it back and say so, as tm does when it
        // cannot send (a reply may not have freed the slot: none can come).
        if let Some(data) = table.with(|t| t.complete(&branch)) {
            release_message(data as *mut Message);
        }
        return Err(e);
    }
    Ok(())
}

/// How long a sender waits for a free slot when all are taken: the sender
/// (a DMQ worker running dmq_usrloc's or htable's sync loop) slows down to
/// the pace its nodes answer at, instead of piling up tm transactions.
const SLOT_WAIT_MS: u64 = 2000;

/// A wait that ran out: later senders of this process skip waiting for a
/// while (a node that stopped answering must not stall every send).
static WAIT_GAVE_UP_AT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Whether this process reads SIP from the network: such a process must
/// not wait for slots, since replies that free them are read by processes
/// like it (all of them waiting would free nothing).
static READS_SIP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// child_init: positive ranks are the SIP receivers (UDP and TCP workers).
pub fn note_process_rank(rank: c_int) {
    READS_SIP.store(rank > 0, std::sync::atomic::Ordering::Relaxed);
}

fn take_slot(table: &Table) -> Option<String> {
    use std::sync::atomic::Ordering;
    let start = now_ms();
    let patient = !READS_SIP.load(Ordering::Relaxed)
        && start.saturating_sub(WAIT_GAVE_UP_AT.load(Ordering::Relaxed)) > 5 * SLOT_WAIT_MS;
    loop {
        if let Some(branch) = table.with(|t| t.insert(now_ms(), 0, |index, seq| table.nonce_keys.hash_one((index, seq)))) {
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
        _ => ReplyKind::Final,
    };
    let source = msg.source();
    // The reply must come from where the message went.
    // SAFETY (inside the check): the data of a waiting slot is a live
    // message; the table lock is held while the check runs.
    let came_from_target = |data: usize| data != 0 && source == Some(unsafe { (*(data as *const Message)).to });
    match table.with(|t| t.on_reply(branch, kind, now_ms(), came_from_target)) {
        ReplyOutcome::Completed(data) => finish(data as *mut Message, i32::from(ids.status), msg.as_ptr()),
        ReplyOutcome::Refused => log_refused_reply(msg, "it does not come from the node the request went to"),
        // A late reply (to a retransmission) finds nothing: consumed as well.
        ReplyOutcome::Unknown | ReplyOutcome::Stopped | ReplyOutcome::RetryLater => {}
    }
    Verdict::Consumed
}

/// One log line for a refused reply, at most one a second per process:
/// a flood of forged replies must not flood the log.
fn log_refused_reply(msg: &SipMsg, why: &str) {
    static LOG: crate::host::log::RateLimit = crate::host::log::RateLimit::per(1000);
    if LOG.allow() {
        log::warn!("a reply to a DMQ message from {:?} was ignored: {why} (counted in dmq.stats forged_replies)", msg.source());
    }
}

/// Hands a finished message to its consumer's callback, then lets go of
/// the table's reference (handed over by the table on completion).
fn finish(m: *mut Message, code: i32, reply: *mut raw::sip_msg) {
    struct Release(*mut Message);
    impl Drop for Release {
        fn drop(&mut self) {
            release_message(self.0);
        }
    }
    let _release = Release(m);
    // SAFETY: a live block we own now (removed from the table).
    let (head, uri, _) = unsafe { Message::parts(m) };
    let callback = head.callback();
    if callback.is_none() && code < 300 {
        // Nobody to tell, nothing to log: the node is not needed.
        return;
    }
    let Ok(uri) = std::str::from_utf8(uri) else { return };
    let Ok(line) = protocol::parse_node_line(uri) else { return };
    // SAFETY: the reply being processed now, or FAKED_REPLY on a timeout;
    // the callback is the one the consumer gave for this message.
    unsafe { messaging::run_response_callback(code, reply, &line.uri, callback) };
}

unsafe extern "C" fn on_tick(_ticks: raw::ticks_t, _param: *mut c_void) {
    guard("DMQ retransmission timer", (), || {
        let Some(table) = TABLE.get() else { return };
        let Some(m) = module() else { return };
        // Under the lock only take a reference to each due message; the
        // bytes are sent after releasing it (copying them there would hold
        // every SIP worker's reply behind the copy). A reply may complete a
        // message meanwhile: the reference keeps its bytes alive.
        let due = table.with(|t| {
            let due = t.due(now_ms());
            for &(_, data) in &due.retransmit {
                retain_message(data as *mut Message);
            }
            due
        });
        for (_, data) in due.retransmit {
            let message = data as *mut Message;
            // SAFETY: we hold a reference, so the block is alive; its
            // bytes never change after it was made.
            let (head, _, request) = unsafe { Message::parts(message) };
            if let Err(e) = udp::send_from(m.server_sock, head.to, request) {
                log::debug!("retransmission: {e}");
            }
            release_message(message);
        }
        for data in due.expired.into_iter().filter(|&d| d != 0) {
            // The consumers' callbacks get tm's marker, as from the stock module.
            finish(data as *mut Message, 408, tm::FAKED_REPLY);
        }
        // Messages sent through tm that a busy node answered 503.
        messaging::resend_busy(m, now_ms());
    })
}

/// The table's counters (`kamcmd dmq.stats`).
pub fn stats() -> Option<PendingStats> {
    TABLE.get().map(|t| t.with(|t| t.head.stats))
}
