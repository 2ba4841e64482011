//! DMQ worker processes and their job queues.
//!
//! `dmq_handle_message` turns a KDMQ into a job: the raw message bytes and
//! the receive info, copied into one shm block (about the size of the
//! datagram; the stock module keeps a full shm clone of the parsed message,
//! several times larger). The job goes onto the queue of an idle worker,
//! else the least loaded one, under that queue's Kamailio lock. A worker
//! sleeps in read() on its own pipe (created before fork) and is woken by
//! one byte per job; with `worker_usleep` > 0 it polls instead, as in the
//! stock module. It re-parses the message in its own pkg memory, runs the
//! peer callback and replies through sl. The number of waiting jobs is
//! capped by `job_queue_limit`: beyond it the sender gets 503 at once.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::host::kstr;
use crate::host::lock::ShmLock;
use crate::host::sip_msg::SipMsg;
use crate::raw;

use super::lifecycle::Module;
use super::node_handles;
use super::peers::Peer;

/// One queued KDMQ, in shm, followed by `len + 1` bytes of message.
#[repr(C)]
struct Job {
    next: *mut Job,
    peer: *mut raw::dmq_peer_t,
    rcv: raw::receive_info,
    len: usize,
}

/// A worker's queue, in shm.
#[repr(C)]
struct Queue {
    lock: ShmLock,
    head: *mut Job,
    tail: *mut Job,
    queued: AtomicUsize,
    processed: AtomicU64,
    pid: AtomicI32,
    /// 1 while the worker runs a job.
    running: AtomicUsize,
}

/// Shared counters, in shm.
#[repr(C)]
struct Counters {
    queued: AtomicUsize,
    rejected: AtomicU64,
    peak: AtomicUsize,
}

struct Pool {
    counters: *mut Counters,
    queues: Vec<*mut Queue>,
    /// Per worker: (read end, write end) of its wake-up pipe.
    wake: Vec<(c_int, c_int)>,
    limit: usize,
    usleep: u32,
}

// SAFETY: the pointers refer to shm shared by the process tree; queue
// contents are only touched under the queue's Kamailio lock, counters are
// atomics. The Vec itself is immutable after mod_init.
unsafe impl Send for Pool {}
// SAFETY: as above.
unsafe impl Sync for Pool {}

static POOL: OnceLock<Pool> = OnceLock::new();

/// mod_init: queues, counters and pipes, before fork.
pub fn init(workers: u32, limit: u32, usleep: u32) -> Result<(), String> {
    // SAFETY: plain shm allocations, zeroed (atomics start at 0).
    let counters = unsafe { raw::dmq_rs_shm_mallocxz(std::mem::size_of::<Counters>()) } as *mut Counters;
    if counters.is_null() {
        return Err("out of shm for the DMQ job queues".into());
    }
    let mut queues = Vec::new();
    let mut wake = Vec::new();
    for _ in 0..workers {
        // SAFETY: as above.
        let q = unsafe { raw::dmq_rs_shm_mallocxz(std::mem::size_of::<Queue>()) } as *mut Queue;
        let lock = ShmLock::new();
        let Some(lock) = lock.filter(|_| !q.is_null()) else {
            return Err("out of shm for the DMQ job queues".into());
        };
        // SAFETY: q is a fresh zeroed block.
        unsafe { (*q).lock = lock };
        queues.push(q);
        let mut fds = [0 as c_int; 2];
        // SAFETY: pipe2 fills two descriptors; the write end never blocks.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(format!("cannot create a worker pipe: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: fcntl on the descriptor just created.
        unsafe { libc::fcntl(fds[1], libc::F_SETFL, libc::O_NONBLOCK) };
        wake.push((fds[0], fds[1]));
    }
    // SAFETY: registers the worker processes with the core, and with the
    // cfg framework (they call cfg_child_init and cfg_update: without this
    // a cfg change's per-child callback can be freed before a worker ran
    // it), before fork as both require.
    unsafe {
        raw::register_procs(workers as c_int);
        raw::cfg_register_child(workers as c_int);
    }
    POOL.set(Pool { counters, queues, wake, limit: limit as usize, usleep })
        .map_err(|_| "worker pool initialized twice".to_string())
}

/// child_init(PROC_MAIN): forks the workers; each never returns.
pub fn start(m: &'static Module) -> Result<(), String> {
    let pool = POOL.get().ok_or("worker pool not initialized")?;
    for i in 0..pool.queues.len() {
        // SAFETY: fork_process from child_init(PROC_MAIN), as C modules do.
        let pid = unsafe { raw::fork_process(raw::PROC_RPC, c"DMQ WORKER".as_ptr() as *mut _, 1) };
        if pid < 0 {
            return Err(format!("cannot fork DMQ worker {i}"));
        }
        if pid == 0 {
            // SAFETY: the forked child joins the cfg framework first.
            if unsafe { raw::cfg_child_init() } != 0 {
                log::error!("DMQ worker {i}: cfg_child_init failed");
                std::process::exit(-1);
            }
            // SAFETY: queue pointer valid in every process.
            unsafe { (*pool.queues[i]).pid.store(std::process::id() as i32, Ordering::Relaxed) };
            worker_loop(m, pool, i);
        }
    }
    Ok(())
}

/// Why a job could not be queued.
pub enum QueueError {
    /// `job_queue_limit` reached: answer 503.
    Full,
    Failed(String),
}

/// A job queued: whether it waits behind other jobs (its sender should then
/// hear `100 Trying` at once, or it retransmits after 500 ms and the
/// retransmissions queue up as duplicates).
pub struct Queued {
    pub waits: bool,
}

/// Queues `msg` for `peer`'s callback in a worker.
pub fn enqueue(msg: &SipMsg, peer: Peer) -> Result<Queued, QueueError> {
    let pool = POOL.get().ok_or_else(|| QueueError::Failed("no workers".into()))?;
    // SAFETY: counters live in shm for the process tree.
    let counters = unsafe { &*pool.counters };
    let waiting = counters.queued.fetch_add(1, Ordering::AcqRel);
    if waiting >= pool.limit {
        counters.queued.fetch_sub(1, Ordering::AcqRel);
        counters.rejected.fetch_add(1, Ordering::Relaxed);
        return Err(QueueError::Full);
    }
    counters.peak.fetch_max(waiting + 1, Ordering::Relaxed);
    let raw_msg = msg.as_ptr();
    // SAFETY: the live message the core passed to the script function.
    let (buf, len, rcv) = unsafe { ((*raw_msg).buf, (*raw_msg).len as usize, (*raw_msg).rcv) };
    let size = std::mem::size_of::<Job>() + len + 1;
    // SAFETY: shm block for the job header and the message bytes + NUL.
    let job = unsafe { raw::dmq_rs_shm_malloc(size) } as *mut Job;
    if job.is_null() {
        counters.queued.fetch_sub(1, Ordering::AcqRel);
        return Err(QueueError::Failed("out of shm for a DMQ job".into()));
    }
    // SAFETY: job has room for the header and len + 1 bytes after it.
    unsafe {
        job.write(Job { next: std::ptr::null_mut(), peer: peer.as_raw(), rcv, len });
        let data = (job as *mut u8).add(std::mem::size_of::<Job>());
        std::ptr::copy_nonoverlapping(buf as *const u8, data, len);
        *data.add(len) = 0;
    }
    // An idle worker, else the least loaded one.
    // SAFETY: queue blocks live in shm for the process tree; atomic read.
    let load = |i: usize| unsafe { (*pool.queues[i]).queued.load(Ordering::Relaxed) };
    let target = (0..pool.queues.len()).find(|&i| load(i) == 0).unwrap_or_else(|| {
        (0..pool.queues.len()).min_by_key(|&i| load(i)).unwrap_or(0)
    });
    let q = pool.queues[target];
    // SAFETY: the queue's list is only changed under its lock.
    let ahead = unsafe {
        let _guard = (*q).lock.lock();
        let ahead = (*q).queued.load(Ordering::Relaxed) + (*q).running.load(Ordering::Relaxed);
        if (*q).tail.is_null() {
            (*q).head = job;
        } else {
            (*(*q).tail).next = job;
        }
        (*q).tail = job;
        (*q).queued.fetch_add(1, Ordering::Release);
        ahead
    };
    if pool.usleep == 0 {
        // A full pipe means the worker has wake-ups pending anyway.
        // SAFETY: writing one byte to our non-blocking pipe.
        unsafe { libc::write(pool.wake[target].1, b"j".as_ptr() as *const c_void, 1) };
    }
    Ok(Queued { waits: ahead > 0 })
}

fn pop(q: *mut Queue) -> Option<*mut Job> {
    // SAFETY: the queue's list is only changed under its lock.
    unsafe {
        let _guard = (*q).lock.lock();
        let job = (*q).head;
        if !job.is_null() {
            (*q).head = (*job).next;
            if (*q).head.is_null() {
                (*q).tail = std::ptr::null_mut();
            }
            (*q).queued.fetch_sub(1, Ordering::Release);
        }
        (!job.is_null()).then_some(job)
    }
}

fn worker_loop(m: &'static Module, pool: &'static Pool, i: usize) -> ! {
    log::info!("DMQ worker {i} started (pid {})", std::process::id());
    let q = pool.queues[i];
    let (wake_fd, _) = pool.wake[i];
    let mut drain = [0u8; 256];
    loop {
        if pool.usleep > 0 {
            std::thread::sleep(std::time::Duration::from_micros(u64::from(pool.usleep)));
        } else {
            // SAFETY: blocking read on our own pipe; EINTR just loops.
            unsafe { libc::read(wake_fd, drain.as_mut_ptr() as *mut c_void, drain.len()) };
        }
        // SAFETY: refreshes this process's cfg copy between batches.
        unsafe { raw::dmq_rs_cfg_update() };
        while let Some(job) = pop(q) {
            // SAFETY: queue block in shm for the process tree; atomic.
            unsafe { (*q).running.store(1, Ordering::Relaxed) };
            crate::host::panic_guard::guard("DMQ job", (), || run_job(m, job));
            // SAFETY: as above.
            unsafe { (*q).running.store(0, Ordering::Relaxed) };
            // SAFETY: popped jobs belong to this worker alone; freed once.
            unsafe { raw::dmq_rs_shm_free(job as *mut c_void) };
            // SAFETY: counters live in shm for the process tree.
            unsafe { (*pool.counters).queued.fetch_sub(1, Ordering::AcqRel) };
            // SAFETY: as above.
            unsafe { (*q).processed.fetch_add(1, Ordering::Relaxed) };
        }
    }
}

static MSG_ID: AtomicU64 = AtomicU64::new(1);

/// Parses the job's message into pkg memory, runs the peer callback and
/// sends the reply it asks for.
fn run_job(m: &Module, job: *mut Job) {
    let mut msg = Box::new(raw::sip_msg::default());
    // SAFETY: job is ours; the bytes follow the header, NUL-terminated.
    let (peer, len, data) = unsafe { ((*job).peer, (*job).len, (job as *mut u8).add(std::mem::size_of::<Job>())) };
    let id = MSG_ID.fetch_add(1, Ordering::Relaxed) as u32;
    // SAFETY: data stays valid until the job is freed, after free_sip_msg.
    if unsafe { raw::build_sip_msg_from_buf(&mut *msg, data as *mut _, len as c_int, id) } < 0
        // SAFETY: msg was just built from the buffer.
        || unsafe { raw::dmq_rs_parse_all_headers(&mut *msg) } < 0
    {
        log::warn!("queued KDMQ does not parse; dropped");
        // SAFETY: frees what parsing allocated so far.
        unsafe { raw::free_sip_msg(&mut *msg) };
        return;
    }
    // SAFETY: as above; the receive info decides where sl replies go.
    unsafe { msg.rcv = (*job).rcv };
    // SAFETY: msg is a parsed message alive until free_sip_msg below.
    let sip = unsafe { SipMsg::new(&mut *msg) }.expect("non-null");
    // SAFETY: the job holds a registry peer (queued by `enqueue`).
    run_peer_callback(m, &sip, unsafe { Peer::from_raw(peer) });
    // SAFETY: frees the pkg parts (headers, lumps); data is the job's.
    unsafe { raw::free_sip_msg(&mut *msg) };
}

/// Runs `peer`'s callback on `msg` and replies as it says: shared by the
/// workers and `dmq_process_message`.
pub fn run_peer_callback(m: &Module, msg: &SipMsg, peer: Peer) -> bool {
    let Some(callback) = peer.callback() else {
        log::error!("DMQ peer {} has no callback", peer.id());
        return false;
    };
    let sender = super::cluster::sender_of(msg)
        .and_then(|uri| super::cluster::read_nodes(|list| list.find(&uri).cloned()).flatten());
    let node = sender.as_ref().map(node_handles::handle_for).unwrap_or(std::ptr::null_mut());
    let mut resp = raw::peer_reponse_t::default();
    // SAFETY: the peer module's callback with the stock arguments.
    let rc = unsafe { callback(msg.as_ptr(), &mut resp, node) };
    // SAFETY: the body, when set, is pkg memory the callback handed over.
    let body = unsafe { kstr::bytes(&resp.body) }.to_vec();
    if !resp.body.s.is_null() {
        // SAFETY: freed once, as the stock worker does.
        unsafe { raw::dmq_rs_pkg_free(resp.body.s as *mut c_void) };
    }
    if rc < 0 {
        log::error!("DMQ peer {} failed to process a message", peer.id());
        return false;
    }
    // SAFETY: the reason str points to the callback's static or pkg data.
    let reason = unsafe { kstr::to_string(&resp.reason) };
    if resp.resp_code <= 0 || reason.is_empty() {
        log::warn!("DMQ peer {} gave no reply; none sent", peer.id());
        return true;
    }
    // SAFETY: as for reason.
    let content_type = unsafe { kstr::to_string(&resp.content_type) };
    let body = (!body.is_empty()).then(|| (body.as_slice(), content_type.as_str()));
    msg.reply(&m.sl, resp.resp_code, &reason, body)
}

/// One worker's figures.
pub struct WorkerStats {
    pub pid: i32,
    pub queued: usize,
    pub processed: u64,
}

/// The job queues' figures (`kamcmd dmq.stats`).
pub struct QueueStats {
    pub workers: Vec<WorkerStats>,
    /// Jobs waiting now, across workers.
    pub queued: usize,
    /// Most jobs ever waiting at once.
    pub peak: usize,
    /// KDMQ requests answered 503 because the queue was full.
    pub rejected: u64,
    pub limit: usize,
}

pub fn stats() -> Option<QueueStats> {
    let pool = POOL.get()?;
    // SAFETY: shm blocks valid for the process tree; atomics only.
    unsafe {
        let workers = pool
            .queues
            .iter()
            .map(|&q| WorkerStats {
                pid: (*q).pid.load(Ordering::Relaxed),
                queued: (*q).queued.load(Ordering::Relaxed),
                processed: (*q).processed.load(Ordering::Relaxed),
            })
            .collect();
        let c = &*pool.counters;
        Some(QueueStats {
            workers,
            queued: c.queued.load(Ordering::Relaxed),
            peak: c.peak.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            limit: pool.limit,
        })
    }
}
