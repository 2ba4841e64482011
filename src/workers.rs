//! DMQ worker processes and their job queues.
//!
//! `dmq_handle_message` turns a KDMQ into a job: the raw message bytes and
//! the receive info, copied into one shm block (about the size of the
//! datagram; the stock module keeps a full shm clone of the parsed message,
//! several times larger). The job goes onto the queue of an idle worker,
//! else the least loaded one (`dmq_core::jobs`), under that queue's lock. A
//! worker sleeps on its own wake-up pipe (made before fork) and is woken by
//! one byte per job; with `worker_usleep` > 0 it polls instead, as in the
//! stock module. It re-parses the message in its own pkg memory, runs the
//! peer callback and replies through sl. The number of waiting jobs is
//! capped by `job_queue_limit`: beyond it the sender gets 503 at once.
//!
//! With `updates_in_place`, an update of one item is run by the SIP worker
//! that received it instead, while no job waits or runs and at most
//! `IN_PLACE_AT_ONCE` SIP workers do so (`run_in_place`): no copy, no
//! wake-up, no second parse. A queued message has its body checked here,
//! after the parse the consumer needs anyway.

use std::sync::atomic::{AtomicU64, Ordering};

use dmq_core::item_buckets;
use dmq_core::jobs;
use dmq_core::kdmq::{local_request_ids, Envelope, Kdmq};
use dmq_core::node_uri::NodeUri;

use dmq_abi::api::{Peer, PeerMessage};
use kamailio::clock::monotonic_ms;
use kamailio::process;
use kamailio::shm::ShmBlock;
use kamailio::sip_msg::{OwnedSipMsg, ReceiveInfo, SipMsg};

use crate::admission;
use crate::duplicates;
use crate::freshness;
use crate::heal;
use crate::item_locks;
use crate::node_list;
use crate::origin;
use crate::shared::{Job, JobQueueCounters, Pool, Shared, Worker};
use crate::sync_status;
use dmq_core::header_scan::RequestScan;
use dmq_core::ordering::Retained;

/// mod_init (before fork): the worker processes, for the core to count.
pub fn register(pool: &Pool) {
    process::register_workers(pool.workers.len() as u32);
}

/// child_init(PROC_MAIN): forks the workers; each never returns.
pub fn start(m: &'static Shared) -> Result<(), String> {
    let pool = &m.workers;
    for (i, worker) in pool.workers.iter().enumerate() {
        process::fork_worker(c"DMQ WORKER", || {
            worker.figures.pid.store(std::process::id() as i32, Ordering::Relaxed);
            worker_loop(m, pool, i)
        })
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// At most this many SIP workers run a message at once: the others keep
/// reading the socket (a flood then goes to the queue, whose limit and 503s
/// pace the senders, instead of filling the socket's buffer).
const IN_PLACE_AT_ONCE: usize = 2;

/// Leave to run a message in this process now, instead of queueing it:
/// given while no job waits or runs (the message then overtakes none) and
/// fewer than `IN_PLACE_AT_ONCE` others run so. Counted when dropped.
pub struct InPlace(&'static JobQueueCounters);

impl Drop for InPlace {
    fn drop(&mut self) {
        self.0.in_place_running.fetch_sub(1, Ordering::AcqRel);
        self.0.in_place.fetch_add(1, Ordering::Relaxed);
    }
}

pub fn run_in_place(m: &Shared) -> Option<InPlace> {
    let counters = m.workers.counters;
    if counters.queued.load(Ordering::Acquire) != 0 {
        return None;
    }
    counters
        .in_place_running
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < IN_PLACE_AT_ONCE).then_some(n + 1))
        .ok()
        .map(|_| InPlace(counters))
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

/// Queues `msg` for `peer`'s callback in a worker (`scan`: what its raw
/// bytes say, `header_scan::scan_request`).
pub fn enqueue(m: &Shared, msg: &SipMsg, peer: Peer, scan: RequestScan) -> Result<Queued, QueueError> {
    let job = Job {
        peer,
        rcv: msg.receive_info(),
        local: false,
        heal_sync: false,
        seen_key: scan.key,
        sync_age_ms: scan.sync_age_ms,
        sync_answer: scan.sync_answer,
    };
    push_job(&m.workers, job, msg.raw_bytes())
}

/// `message` as a KDMQ `from` sent to this node. Never sent: it goes to
/// our own consumer (heal pushes, `dmq_process_custom`), so it is not
/// signed; `kind` marks its branch and Call-ID ("heal", "custom").
pub fn local_request(m: &Shared, kind: &str, from: &NodeUri, message: &PeerMessage<'_>) -> Vec<u8> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let (token, branch) = local_request_ids(kind, std::process::id(), monotonic_ms(), SEQ.fetch_add(1, Ordering::Relaxed));
    // Not a sync's copy either: what it carries is applied as it is.
    let message = PeerMessage { sync_since: None, sync_answer: None, ..*message };
    Kdmq::of(&message, from, &m.local_uri, None, 0).to_bytes(&Envelope {
        transport: from.transport,
        sent_by: &m.socket.sent_by,
        branch: &branch,
        token: &token,
    })
}

/// Queues a KDMQ this node made itself (`request`: the whole message) for
/// `peer`'s callback, as if it had come from the node its From names; the
/// callback's reply is not sent anywhere.
/// `heal_sync`: the request asks for a heal sync (`origin::in_sync`).
pub fn enqueue_local(m: &Shared, request: &[u8], rcv: ReceiveInfo, peer: Peer, heal_sync: bool) -> Result<Queued, QueueError> {
    push_job(&m.workers, Job { peer, rcv, local: true, heal_sync, seen_key: None, sync_age_ms: None, sync_answer: None }, request)
}

fn push_job(pool: &Pool, header: Job, bytes: &[u8]) -> Result<Queued, QueueError> {
    let counters = pool.counters;
    let waiting = counters.queued.fetch_add(1, Ordering::AcqRel);
    if !jobs::admit(waiting, pool.limit) {
        counters.queued.fetch_sub(1, Ordering::AcqRel);
        counters.rejected.fetch_add(1, Ordering::Relaxed);
        return Err(QueueError::Full);
    }
    counters.peak.fetch_max(waiting + 1, Ordering::Relaxed);
    let Some(job) = ShmBlock::new(header, &[bytes, &[0]]) else {
        counters.queued.fetch_sub(1, Ordering::AcqRel);
        return Err(QueueError::Failed("out of shm for a DMQ job".into()));
    };
    // A job running counts: a worker busy with a long one (a sync answer
    // sends a whole table) is not idle, and a second sync must not queue
    // behind it while another worker waits for work.
    let loads = pool.workers.iter().map(|w| w.figures.queued.load(Ordering::Relaxed) + w.figures.running.load(Ordering::Relaxed));
    let worker = &pool.workers[jobs::pick_worker(loads)];
    let ahead = {
        let mut queue = worker.jobs.lock();
        let ahead = worker.figures.queued.load(Ordering::Relaxed) + worker.figures.running.load(Ordering::Relaxed);
        queue.list.push_back(job);
        // SeqCst with `sleeping` (here and in the worker): either the
        // worker sees this job before it sleeps, or we see it asleep.
        worker.figures.queued.fetch_add(1, Ordering::SeqCst);
        ahead
    };
    if pool.usleep == 0 && worker.figures.sleeping.swap(false, Ordering::SeqCst) {
        worker.wake.wake();
    }
    Ok(Queued { waits: ahead > 0 })
}

fn pop(worker: &Worker) -> Option<ShmBlock<Job>> {
    let job = worker.jobs.lock().list.pop_front()?;
    worker.figures.queued.fetch_sub(1, Ordering::Release);
    Some(job)
}

fn worker_loop(m: &'static Shared, pool: &'static Pool, i: usize) -> ! {
    log::info!("DMQ worker {i} started (pid {})", std::process::id());
    let worker = &pool.workers[i];
    loop {
        if pool.usleep > 0 {
            std::thread::sleep(std::time::Duration::from_micros(u64::from(pool.usleep)));
        } else {
            worker.figures.sleeping.store(true, Ordering::SeqCst);
            if worker.figures.queued.load(Ordering::SeqCst) == 0 {
                worker.wake.wait();
            }
            worker.figures.sleeping.store(false, Ordering::SeqCst);
        }
        process::cfg_update();
        while let Some(job) = pop(worker) {
            worker.figures.running.store(1, Ordering::Relaxed);
            kamailio::panic_guard::guard("DMQ job", (), || run_job(m, job));
            worker.figures.running.store(0, Ordering::Relaxed);
            pool.counters.queued.fetch_sub(1, Ordering::AcqRel);
            worker.figures.processed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Parses the job's message into pkg memory, runs the peer callback and
/// sends the reply it asks for.
fn run_job(m: &Shared, mut job: ShmBlock<Job>) {
    let Job { peer, rcv, local, heal_sync, seen_key, sync_age_ms, sync_answer } = *job.header();
    let scan = RequestScan { key: seen_key, sync_age_ms, sync_answer };
    let Some(msg) = OwnedSipMsg::parse(job.bytes_mut(), rcv) else {
        log::warn!("queued KDMQ does not parse; dropped");
        return;
    };
    if local {
        let sender = node_list::sender_of(&msg).map(|uri| node_list::node_or_stand_in(m, &uri));
        let keys = dmq_core::ordering::identify(&peer.id(), msg.body_bytes().unwrap_or_default());
        if !heal_sync {
            // Another node's items (a sync copy's fresh part, a custom message).
            origin::received(m, &peer.id(), keys.as_ref());
        }
        // A sync copy's fresh part takes its item's turn as any copy does.
        let held = item_buckets::single_item(keys.as_ref()).and_then(|key| item_locks::hold(m, key));
        let call = || peer.call(&msg, sender.as_ref());
        let answered = if heal_sync { origin::in_sync(true, sender.as_ref().map(|s| s.uri.clone()), call) } else { call() };
        drop(held);
        if answered.is_none() {
            log::warn!("DMQ peer {} failed to process a heal sync request", peer.id());
        }
        return;
    }
    // The check `dmq_handle_message` leaves to the worker (see script.rs).
    let channel = peer.id();
    if let Err(refusal) = admission::check_body(&channel, &msg) {
        duplicates::forget(m, scan.key);
        admission::refuse(m, &msg, &channel, refusal);
        return;
    }
    run_peer_callback(m, &msg, peer, scan);
}

/// Runs `peer`'s callback on `msg` and replies as it says: shared by the
/// workers and `dmq_process_message`.
/// `scan`: what its raw bytes say (`header_scan::scan_request`).
pub fn run_peer_callback(m: &Shared, msg: &SipMsg, peer: Peer, scan: RequestScan) -> bool {
    if !peer.has_callback() {
        log::error!("DMQ peer {} has no callback", peer.id());
        return false;
    }
    // A sender not (or no longer) listed still gets a node: a consumer
    // answers a sync request to the node it names (stock passes none, and
    // dmq_usrloc and htable then send their whole state to every other
    // node instead of the one that asked, e.g. a node coming back).
    let sender = node_list::sender_of(msg).map(|uri| node_list::node_or_stand_in(m, &uri));
    let body = msg.body_bytes().unwrap_or_default();
    let peer_id = peer.id();
    let sync_age = scan.sync_age_ms;
    let keys = dmq_core::ordering::identify(&peer_id, body);
    // A sync of ours follows what its donors send (`sync_status`): a copy
    // answering our request counts its items once they are applied here
    // (or refused as older than what is here).
    let note_arrival = || {
        if let Some(node) = &sender {
            let items = keys.as_ref().map_or(1, |k| k.items.len() as u64);
            sync_status::arrived(m, &peer_id, node, scan.sync_answer, items, body.len() as u64);
        }
    };
    // A sync copy: what is older than a live update applied here is
    // refused (`freshness`); the rest goes to the consumer.
    if let Some(age) = sync_age {
        match freshness::fresh_part(m, &peer_id, body, keys.as_ref(), age) {
            Retained::All => {}
            Retained::Nothing => {
                note_arrival();
                return answer_refused_sync_copy(m, msg, scan);
            }
            Retained::Some(fresh) => {
                let from = sender.as_ref().map(|s| s.uri.clone()).unwrap_or_else(|| m.local_uri.clone());
                let content_type = msg.header("Content-Type").map(String::from_utf8_lossy).unwrap_or_default();
                let message = PeerMessage::plain(&peer_id, &fresh, &content_type);
                let request = local_request(m, "fresh", &from, &message);
                let dropped = match enqueue_local(m, &request, msg.receive_info(), peer, false) {
                    Ok(_) => None,
                    Err(QueueError::Full) => Some("the job queue is full".to_string()),
                    Err(QueueError::Failed(e)) => Some(e),
                };
                if let Some(why) = dropped {
                    // Not taken: 503, and the sender sends the copy again.
                    log::warn!("the fresh part of a {peer_id} sync copy is not taken ({why}): answered 503");
                    duplicates::forget(m, scan.key);
                    return msg.reply(&m.sl, 503, "Service Unavailable", None);
                }
                // Its fresh part runs in a moment, in a worker.
                note_arrival();
                return answer_refused_sync_copy(m, msg, scan);
            }
        }
    }
    if sync_age.is_none() {
        freshness::note_live(m, &peer_id, keys.as_ref());
    }
    // Another node's update of these items: not ours any more (`origin`).
    origin::received(m, &peer_id, keys.as_ref());
    let call = || peer.call(msg, sender.as_ref());
    // A sync request: what the consumer sends now are the sync's copies.
    // One sent as part of a sync (a heal pull: it says its age) is
    // answered as a heal sync, with what this node wrote last (`origin`).
    // A node's sync request: the reply says how many items our consumer
    // sent it (`X-DMQ-Sync-Sent`), all before the reply; the asking
    // dmq_rs node is synced once that many arrived (`sync_status`).
    let mut items_sent = None;
    // One copy of an item at a time: another copy of it (another node's
    // answer to the same sync, say) waits (`item_locks`).
    let held = item_buckets::single_item(keys.as_ref()).and_then(|key| item_locks::hold(m, key));
    let answered = match (origin::is_sync_request(&peer_id, keys.as_ref()), sender.as_ref()) {
        (true, Some(node)) => {
            if sync_age.is_none() {
                heal::asked_us(m, &node.uri);
            }
            let (answered, items, id) = origin::answering(sync_age.is_some(), node.uri.clone(), call);
            items_sent = Some((items, id));
            answered
        }
        (true, None) => origin::in_sync(sync_age.is_some(), None, call),
        (false, _) => call(),
    };
    drop(held);
    note_arrival();
    let Some(resp) = answered else {
        log::error!("DMQ peer {} failed to process a message", peer.id());
        return false;
    };
    // Copies of it that come now are answered the same (`duplicates`).
    duplicates::answered(m, scan.key, resp.code);
    if resp.code <= 0 || resp.reason.is_empty() {
        log::warn!("DMQ peer {} gave no reply; none sent", peer.id());
        return true;
    }
    let body = (!resp.body.is_empty()).then_some((resp.body.as_slice(), resp.content_type.as_str()));
    if let Some((items, id)) = items_sent.filter(|_| (200..300).contains(&resp.code)) {
        // A copy of the request that comes again gets the same (`script`).
        sync_status::answer_sent(m, scan.key, items, id);
        msg.add_reply_header(&sync_status::answer_headers(items, id));
    }
    msg.reply(&m.sl, resp.code, &resp.reason, body)
}

/// A sync copy (or its stale part) is not handed to the consumer: it is
/// answered 200 all the same (the sender has nothing to send again).
fn answer_refused_sync_copy(m: &Shared, msg: &SipMsg, scan: RequestScan) -> bool {
    duplicates::answered(m, scan.key, 200);
    msg.reply(&m.sl, 200, "OK", None)
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
    /// Messages run at once by the process that received them.
    pub in_place: u64,
    pub limit: usize,
}

impl QueueStats {
    /// Messages handed to their peer: by the workers, and at once.
    pub fn processed(&self) -> u64 {
        self.workers.iter().map(|w| w.processed).sum::<u64>() + self.in_place
    }
}

pub fn stats(m: &Shared) -> QueueStats {
    let pool = &m.workers;
    let workers = pool
        .workers
        .iter()
        .map(|w| WorkerStats {
            pid: w.figures.pid.load(Ordering::Relaxed),
            queued: w.figures.queued.load(Ordering::Relaxed),
            processed: w.figures.processed.load(Ordering::Relaxed),
        })
        .collect();
    let c = pool.counters;
    QueueStats {
        workers,
        queued: c.queued.load(Ordering::Relaxed),
        peak: c.peak.load(Ordering::Relaxed),
        rejected: c.rejected.load(Ordering::Relaxed),
        in_place: c.in_place.load(Ordering::Relaxed),
        limit: pool.limit,
    }
}
