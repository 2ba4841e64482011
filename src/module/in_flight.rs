//! Peer messages over UDP without tm: each one is sent from the DMQ socket
//! and kept in a shm slot (with its bytes, for retransmission) only until
//! its final reply arrives; the core hands every reply to `on_reply` (our
//! `response_f`), which frees the slot and runs the consumer's callback.
//! A timer process retransmits and reports timeouts as 408. The slot
//! logic is pure (`dmq_core::pending`); this file holds its shm, its lock
//! and the Kamailio plumbing. A full table or a non-UDP node falls back to
//! tm, so nothing is ever dropped here.

use std::ffi::{c_int, c_void};
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use dmq_core::pending::{Header, PendingStats, PendingTable, Slot};
use dmq_core::protocol::{self, NodeUri, Transport};

use crate::host::lock::ShmLock;
use crate::host::panic_guard::guard;
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
/// node's URI, then the request bytes.
/// Plain data: every process runs the same binary, so the layout agrees.
struct Message {
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
    // SAFETY: plain shm allocation, freed by `free_message` exactly once.
    let m = unsafe { raw::dmq_rs_shm_malloc(size) } as *mut Message;
    if m.is_null() {
        return None;
    }
    let (cb_f, cb_param) = cb.map(|c| (c.f as usize, c.param as usize)).unwrap_or((0, 0));
    // SAFETY: the block has room for the header and both byte runs.
    unsafe {
        m.write(Message { cb_f, cb_param, to, uri_len: uri.len() as u32, request_len: request.len() as u32 });
        let base = (m as *mut u8).add(std::mem::size_of::<Message>());
        std::ptr::copy_nonoverlapping(uri.as_ptr(), base, uri.len());
        std::ptr::copy_nonoverlapping(request.as_ptr(), base.add(uri.len()), request.len());
    }
    Some(m)
}

fn free_message(m: *mut Message) {
    // SAFETY: a block from `new_message`, removed from the table, freed once.
    unsafe { raw::dmq_rs_shm_free(m as *mut c_void) }
}

fn now_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes into ts. CLOCK_MONOTONIC is one clock for all processes.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

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
        Table { lock, head: block as *mut Header, slots, free: slots.add(CAPACITY) as *mut u32 }
    };
    table.with(|t| t.reset());
    TABLE.set(table).map_err(|_| "message table initialized twice".to_string())?;
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
    let (Some(table), Some(ip), Transport::Udp) = (TABLE.get(), ip, target.transport) else {
        return messaging::send_through_tm(m, peer_id, target, body, content_type, max_forwards, cb);
    };
    // The slot comes first: its branch goes into the request.
    let Some(branch) = take_slot(table) else {
        return messaging::send_through_tm(m, peer_id, target, body, content_type, max_forwards, cb);
    };
    let token = format!("{}.{}", &branch[dmq_core::pending::BRANCH_PREFIX.len()..], std::process::id());
    let request = protocol::build_peer_request(&protocol::PeerRequest {
        from: &m.local_uri,
        to: target,
        peer: peer_id,
        branch: &branch,
        token: &token,
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
        free_message(message);
        return Err("DMQ message slot lost before sending".into());
    }
    if let Err(e) = udp::send_from(m.server_sock, to, &request) {
        // Retransmissions may still get it there; a timeout reports it if not.
        log::warn!("{e}");
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
        if let Some(branch) = table.with(|t| t.insert(now_ms(), 0)) {
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

/// `response_f`: every reply the core receives passes here (after tm's,
/// which leaves ours alone). Returns 0 for ours (consumed), 1 otherwise.
pub unsafe extern "C" fn on_reply(msg: *mut raw::sip_msg) -> c_int {
    guard("KDMQ reply", 1, || {
        let Some(table) = TABLE.get() else { return 1 };
        // SAFETY: the reply the core is processing; via1 is parsed for every
        // message it accepts.
        let (branch, code) = unsafe {
            let via = (*msg).via1;
            if via.is_null() || (*via).branch.is_null() {
                return 1;
            }
            let value = (*(*via).branch).value;
            let branch = crate::host::kstr::bytes_at(&value);
            // Every reply this node sees passes here: leave others' at once.
            if !branch.starts_with(dmq_core::pending::BRANCH_PREFIX.as_bytes()) {
                return 1;
            }
            let Ok(branch) = std::str::from_utf8(branch) else { return 1 };
            (branch, (*msg).first_line.u.reply.statuscode as i32)
        };
        if dmq_core::pending::parse_branch(branch).is_none() {
            return 1;
        }
        if code < 200 {
            table.with(|t| t.provisional(branch));
            return 0;
        }
        // A dmq_rs node with a full job queue: the timer sends it again.
        if code == 503 && table.with(|t| t.retry_later(branch, now_ms())) {
            return 0;
        }
        // A late reply (to a retransmission) finds nothing: consumed as well.
        match table.with(|t| t.complete(&branch)) {
            Some(data) if data != 0 => finish(data as *mut Message, code, msg),
            _ => {}
        }
        0
    })
}

/// Hands a finished message to its consumer's callback, then frees it.
fn finish(m: *mut Message, code: i32, reply: *mut raw::sip_msg) {
    struct Free(*mut Message);
    impl Drop for Free {
        fn drop(&mut self) {
            free_message(self.0);
        }
    }
    let _free = Free(m);
    // SAFETY: a live block we own now (removed from the table).
    let (head, uri, _) = unsafe { Message::parts(m) };
    let callback = head.callback();
    if callback.is_none() && code < 300 {
        // Nobody to tell, nothing to log: the node is not needed.
        return;
    }
    let Ok(uri) = std::str::from_utf8(uri) else { return };
    let Ok(line) = protocol::parse_node_line(uri) else { return };
    messaging::run_response_callback(code, reply, &line.uri, callback);
}

unsafe extern "C" fn on_tick(_ticks: raw::ticks_t, _param: *mut c_void) {
    guard("DMQ retransmission timer", (), || {
        let Some(table) = TABLE.get() else { return };
        let Some(m) = module() else { return };
        // Copy what is due under the lock, send after releasing it: a reply
        // may free a message the moment the lock is free.
        let (resend, expired) = table.with(|t| {
            let due = t.due(now_ms());
            let resend: Vec<(SocketAddr, Vec<u8>)> = due
                .retransmit
                .iter()
                .map(|&(_, data)| {
                    // SAFETY: still in the table, so alive while we hold the lock.
                    let (head, _, request) = unsafe { Message::parts(data as *const Message) };
                    (head.to, request.to_vec())
                })
                .collect();
            (resend, due.expired)
        });
        for (to, request) in resend {
            if let Err(e) = udp::send_from(m.server_sock, to, &request) {
                log::debug!("retransmission: {e}");
            }
        }
        for data in expired.into_iter().filter(|&d| d != 0) {
            // The consumers' callbacks get tm's marker, as from the stock module.
            finish(data as *mut Message, 408, tm::FAKED_REPLY);
        }
    })
}

/// The table's counters (`kamcmd dmq.stats`).
pub fn stats() -> Option<PendingStats> {
    TABLE.get().map(|t| t.with(|t| t.head.stats))
}
