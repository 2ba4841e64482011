//! Everything this module's processes share, in one value made once by
//! mod_init in the main process before fork ([`make`], then [`set`]): what
//! mod_init settled (parameters, the DMQ socket, tm and sl, routes) and
//! each part's shared memory. Every process inherits the same value; the
//! shm it points to is the same in all of them. [`shared`] gives it (None
//! before mod_init succeeded).
//!
//! The shm layouts of every part are declared here, next to the value that
//! holds them, so making them is one function with one order; the logic
//! that reads and changes them is in the part's own file (named on each
//! field). A leaf: it depends on no other file of the module.
//!
//! One exception: the peer registry (`peers`) is made on first use,
//! because consumers register from their own mod_init, which may run
//! before ours (still before fork).

use std::collections::hash_map::RandomState;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize};
use std::sync::OnceLock;

use dmq_abi::api::{Peer, ResponseCallback};
use dmq_abi::in_shm::{OrderParts, PendingParts};
use dmq_core::batching::BATCH_NODES;
use dmq_core::config::Config;
use dmq_core::heal::HealTable;
use dmq_core::node_uri::{self, NodeUri, Transport};
use dmq_core::nodes::{NodeList, MAX_NODES};
use dmq_core::sync_runs::SyncRuns;

use kamailio::api::{Sl, Tm};
use kamailio::events::{EventRoute, EventTarget};
use kamailio::process::WakePipe;
use kamailio::shm::{leak_zeroed, ShmArc, ShmBlock, ShmFifo, ShmMutex, ShmStore};
use kamailio::shm_queue::ShmQueue;
use kamailio::sip_msg::ReceiveInfo;
use kamailio::socket::LocalSocket;
use kamailio::{shm_data, shm_zeroed};

/// The module's shared state. Fields are grouped: what mod_init settled,
/// then each part's shm.
pub struct Shared {
    pub config: Config,
    /// The socket DMQ sends from.
    pub socket: DmqSocket,
    pub tm: Tm,
    pub sl: Sl,
    /// This node as it appears in notification bodies.
    pub local_uri: NodeUri,
    /// The `notification_address` nodes (never deleted, only marked).
    pub notification_uris: Vec<NodeUri>,
    /// `event_route[dmq:node-active]` and `[dmq:node-inactive]`.
    pub routes: NodeRoutes,
    /// Upstream's peer events and switches (`peer_events`).
    pub peer_events: PeerEventSettings,
    /// The node list (`cluster`).
    pub nodes: NodeStore,
    /// What the `notification_address` names list now (`name_sources`).
    pub names: NameStores,
    /// KDMQs refused, by reason (`admission`).
    pub refusals: &'static Refusals,
    /// How often each event happened (`event_counts`).
    pub events: &'static EventCounters,
    /// The heal table and its counters (`heal`).
    pub heal: Heal,
    /// Each consumer's latest sync, followed (`sync_status`).
    pub syncs: SyncFollow,
    /// The DMQ workers and their job queues (`workers`).
    pub workers: Pool,
    /// Peer messages waiting for their reply, sent without tm (`direct_send`).
    pub direct: DirectTable,
    /// dmq_usrloc updates waiting in a node's batch (`usrloc_batches`).
    pub batches: &'static ShmMutex<BatchData>,
    /// The items this node wrote last and the deletes nodes missed (`origin`).
    pub origin: &'static ShmMutex<OriginData>,
    /// Live updates applied lately, to tell stale sync copies (`freshness`).
    pub recent: &'static ShmMutex<RecentData>,
    /// Peer messages received lately, to tell copies apart (`duplicates`).
    pub seen: &'static ShmMutex<SeenData>,
    /// Keys on their way to each node and the messages waiting for them
    /// (`ordering`).
    pub order: &'static ShmMutex<OrderData>,
    /// tm-path messages a busy node answered 503, waiting to be sent
    /// again by the retransmission timer (`messaging`).
    pub tm_retries: ShmQueue,
    /// The items being applied now, one copy at a time (`item_locks`).
    pub applying: &'static ItemBuckets,
}

/// The socket DMQ sends from (`server_socket`, else `server_address`'s).
pub struct DmqSocket {
    /// As the core names sockets ("udp:127.0.0.2:5090").
    pub name: String,
    /// The core's socket (looked up once).
    pub local: LocalSocket,
    /// What the Via of a request sent from it names (`host:port`).
    pub sent_by: String,
    /// Its transport, when peer messages can go without tm on it (UDP,
    /// TCP, TLS): to nodes of the same transport they do.
    pub transport: Option<Transport>,
}

/// The script's `event_route[dmq:node-active]` and `[dmq:node-inactive]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeRoutes {
    pub node_active: Option<EventRoute>,
    pub node_inactive: Option<EventRoute>,
}

/// Upstream's peer events (`event_route[dmq:peer-up]`, …, or
/// `event_callback`) and `init_with_single`.
#[derive(Debug)]
pub struct PeerEventSettings {
    /// `init_with_single`: the join sync asks one node (the first that
    /// answered or notified us), not every node.
    pub init_with_single: bool,
    /// One target per event, in `PeerEvent::ALL`'s order.
    pub targets: [EventTarget; 3],
}

/// The node list, serialized in shm under its lock (`cluster`).
pub struct NodeStore {
    pub list: ShmStore,
    /// Nodes refused because the list was full.
    pub refused: &'static AtomicU64,
}

/// Room for the serialized node list: a full list of MAX_NODES always fits.
const NODE_STORE_CAPACITY: usize = dmq_core::nodes::MAX_ENCODED_LEN;

/// The addresses the `notification_address` names list (`name_sources`).
pub struct NameStores {
    pub addresses: ShmStore,
    /// Notification lines naming new nodes by host name, waiting for the
    /// DNS process to look them up and judge them (`trusted_network`).
    pub deferred: ShmStore,
    /// Names that have not yet answered a lookup with addresses (set in
    /// mod_init, counted down by the DNS process): until 0, a node that
    /// knows no other node is not alone, it waits for its names.
    pub unanswered: &'static AtomicUsize,
}

shm_zeroed! {
    /// Refusals by reason (`admission`).
    pub struct Refusals {
        pub not_member: AtomicU64,
        pub untrusted_network: AtomicU64,
        pub bad_signature: AtomicU64,
        pub bad_json: AtomicU64,
    }
}

/// Kinds of events counted (`event_counts::EventCount`'s variants; that
/// file checks the number at compile time).
pub const EVENT_KINDS: usize = 25;
/// One counter per kind of event (`event_counts`).
pub type EventCounters = [AtomicU64; EVENT_KINDS];

/// The buckets of the items being applied now, one atomic each: 0 free,
/// else the item that holds it (`item_locks`).
pub type ItemBuckets = [AtomicU64; dmq_core::item_buckets::BUCKETS];

shm_zeroed! {
    /// Heal figures (`heal`).
    pub struct HealCounters {
        /// Heal syncs started (one per regained node, all peers).
        pub syncs: AtomicU64,
        /// Sync requests handed to our own peers in a regained node's name
        /// (one per peer and heal sync): pushes of our state to it.
        pub pushes: AtomicU64,
        /// Regains that found a sync to the node too recent: served
        /// together, once, at the end of the window.
        pub deferred: AtomicU64,
        /// Times this node's own processes stood still (it pushes to every
        /// active node).
        pub stalls: AtomicU64,
        /// Nodes asked for their state: met after this node's join sync.
        pub pulls: AtomicU64,
        /// Syncs waiting now (lets the timer skip the lock when 0).
        pub waiting: AtomicUsize,
    }
}

shm_zeroed! {
    /// Sync figures (`sync_status`).
    pub struct SyncCounters {
        /// The join sync's requests left (the init callbacks ran): before
        /// that, this node is not synced.
        pub joined: AtomicBool,
        /// Runs pending now.
        pub pending: AtomicUsize,
        /// Runs that may still change (pending, or timed out and waiting
        /// for their donors): the hot paths skip the lock when 0.
        pub open: AtomicUsize,
        /// Runs ended done, and timed out, since startup.
        pub done: AtomicU64,
        pub timed_out: AtomicU64,
        /// How long the latest run that ended took (ms).
        pub last_duration_ms: AtomicU64,
    }
}

/// Sync answers kept for a resent request (`sync_status::answer_of`).
pub const SENT_ANSWERS: usize = 32;

shm_zeroed! {
    /// The latest sync answers this node sent, by the request's key
    /// (`duplicates::key`): a copy of the request that comes again is
    /// answered with the same count and id.
    pub struct SentAnswers {
        pub keys: [u64; SENT_ANSWERS],
        pub items: [u64; SENT_ANSWERS],
        pub ids: [u64; SENT_ANSWERS],
        pub next: u64,
    }
}

/// The sync runs (`dmq_core::sync_runs`), serialized in shm under its
/// lock, their counters, and the answers sent (`sync_status`).
pub struct SyncFollow {
    pub table: ShmStore,
    pub counters: &'static SyncCounters,
    pub answers: &'static ShmMutex<SentAnswers>,
}

/// The heal table, serialized in shm under its lock, and its counters (`heal`).
pub struct Heal {
    pub table: ShmStore,
    pub counters: &'static HealCounters,
}

shm_data! {
    /// One queued KDMQ (`workers`): the peer and where it came from; the
    /// message bytes and a NUL follow in the block.
    #[derive(Clone, Copy)]
    pub struct Job {
        pub peer: Peer,
        pub rcv: ReceiveInfo,
        /// Made by this node (a heal sync's push): the callback runs, no
        /// reply is sent.
        pub local: bool,
        /// A heal sync's request: what the consumer sends is only what
        /// this node wrote last (`origin`).
        pub heal_sync: bool,
        /// What the receiving SIP worker read from its raw bytes
        /// (`header_scan::RequestScan`'s fields).
        pub seen_key: Option<u64>,
        pub sync_age_ms: Option<u64>,
        pub sync_answer: Option<u64>,
    }
}

shm_zeroed! {
    /// A worker's jobs, under its lock.
    pub struct Jobs {
        pub list: ShmFifo<Job>,
    }
}

shm_zeroed! {
    /// A worker's figures (atomics: read by `dmq.stats` without the lock).
    pub struct WorkerFigures {
        pub queued: AtomicUsize,
        pub processed: AtomicU64,
        pub pid: AtomicI32,
        /// 1 while the worker runs a job.
        pub running: AtomicUsize,
        /// Set while the worker waits on its pipe (or is about to): only
        /// then does a new job need a wake-up byte (a write, and a read).
        pub sleeping: AtomicBool,
    }
}

shm_zeroed! {
    /// Figures shared by all workers.
    pub struct JobQueueCounters {
        /// Jobs waiting or running.
        pub queued: AtomicUsize,
        pub rejected: AtomicU64,
        pub peak: AtomicUsize,
        /// Messages `dmq_handle_message` ran at once (`updates_in_place`).
        pub in_place: AtomicU64,
        /// Messages being run at once now.
        pub in_place_running: AtomicUsize,
    }
}

/// One DMQ worker: its queue, its figures and the pipe that wakes it.
pub struct Worker {
    pub jobs: &'static ShmMutex<Jobs>,
    pub figures: &'static WorkerFigures,
    pub wake: WakePipe,
}

/// The DMQ workers (`workers`).
pub struct Pool {
    pub counters: &'static JobQueueCounters,
    pub workers: Vec<Worker>,
    /// `job_queue_limit`.
    pub limit: usize,
    /// `worker_usleep`.
    pub usleep: u32,
}

/// Messages that may wait for their reply at once without tm; beyond it,
/// tm carries them (`direct_send`).
pub const DIRECT_CAPACITY: usize = 8192;

shm_data! {
    /// A message in flight without tm (`direct_send`): this header, then
    /// the target node's URI and the request bytes, in one
    /// reference-counted shm block that never changes. The table holds one
    /// reference from insertion until the message completes or expires
    /// (then handed to whoever finishes it); the timer takes another while
    /// it retransmits outside the lock.
    #[derive(Clone, Copy)]
    pub struct InFlight {
        pub callback: Option<ResponseCallback>,
        pub to: SocketAddr,
        pub uri_len: u32,
        /// The request's length; the keys it carries follow it (`items`
        /// of them, native-endian u64: `dmq_core::ordering`).
        pub request_len: u32,
        pub items: u32,
        /// Counted among its node's batchable messages (`usrloc_batches`).
        pub counted_in_batch: bool,
        /// Updates it carries (a batch: several; the callback runs once each).
        pub updates: u32,
        /// Sent over TCP/TLS: a reply may come on a connection the node
        /// opened (another port), so only its address is checked.
        pub stream: bool,
    }
}

/// The table in shm, under one lock: `dmq_core::pending`'s parts and each
/// slot's message.
pub type DirectTableData = PendingParts<Option<ShmArc<InFlight>>, DIRECT_CAPACITY>;

/// Peer messages sent without tm, waiting for their replies (`direct_send`).
pub struct DirectTable {
    pub data: &'static ShmMutex<DirectTableData>,
    /// Keys for the branch nonces, random per start (made in mod_init, so
    /// every process has the same ones).
    pub nonce_keys: RandomState,
}

shm_zeroed! {
    /// The batching state of up to `BATCH_NODES` nodes (the parts of
    /// `dmq_core::batching::NodeBatches`), under one lock (`usrloc_batches`).
    pub struct BatchData {
        pub used: [bool; BATCH_NODES],
        /// The node's address (IPv4 as IPv6-mapped) and port.
        pub ips: [[u8; 16]; BATCH_NODES],
        pub ports: [u16; BATCH_NODES],
        pub in_flight: [u32; BATCH_NODES],
        pub open: [Option<ShmBlock<Batch>>; BATCH_NODES],
    }
}

shm_data! {
    /// A batch being filled: its `multi` body so far follows the header.
    #[derive(Clone, Copy)]
    pub struct Batch {
        /// The updates' response callback (all the same: a batch takes
        /// only updates with the first one's), run once per update.
        pub callback: Option<ResponseCallback>,
        pub updates: u32,
        pub used: u32,
        /// Its updates are copies of one sync's (when it began), or live.
        pub sync_since: Option<u64>,
        /// Those copies answer the receiving node's sync request (its id).
        pub sync_answer: Option<u64>,
    }
}

/// Keys tracked at once, on their way or waiting, across nodes
/// (`dmq_core::ordering`; 3/4 of it used at most).
pub const ORDER_KEYS: usize = 1 << 16;
/// Messages that may wait for an earlier one with the same key.
pub const ORDER_WAITING: usize = 8192;

shm_data! {
    /// A message waiting for an earlier one with one of its keys
    /// (`ordering`): `items` keys (native-endian u64) follow, then the
    /// message and its target as `dmq_core::tm_context::TmContext` encodes them.
    #[derive(Clone, Copy)]
    pub struct Parked {
        pub items: u32,
    }
}

/// The per-key order state in shm, under one lock (`ordering`).
pub type OrderData = OrderParts<Option<ShmBlock<Parked>>, ORDER_KEYS, ORDER_WAITING>;

/// Items this node may remember as written here last (3/4 of it at
/// most), and deletes kept for nodes that missed them (`dmq_core::origin`).
pub const OWN_ITEMS: usize = 1 << 18;
pub const MISSED_DELETES: usize = 4096;

shm_zeroed! {
    /// `dmq_core::origin`'s state (`origin`).
    pub struct OriginData {
        pub own: [u64; OWN_ITEMS],
        pub own_used: u32,
        pub missed_nodes: [u64; MISSED_DELETES],
        pub missed_keys: [u64; MISSED_DELETES],
        pub missed_ages: [u64; MISSED_DELETES],
        pub missed: [Option<ShmBlock<Parked>>; MISSED_DELETES],
        pub clock: u64,
        pub kept: u32,
    }
}

/// Live updates remembered (`dmq_core::freshness`).
pub const RECENT_WRITES: usize = 65536;

shm_zeroed! {
    /// Items that had a live update lately, and when (`freshness`).
    pub struct RecentData {
        pub keys: [u64; RECENT_WRITES],
        pub at_ms: [u64; RECENT_WRITES],
    }
}

/// Received peer messages remembered (`dmq_core::duplicates`).
pub const SEEN_ENTRIES: usize = 32768;

shm_zeroed! {
    /// The messages received lately and their answers (`duplicates`).
    pub struct SeenData {
        pub keys: [u64; SEEN_ENTRIES],
        pub codes: [u16; SEEN_ENTRIES],
        pub ages: [u64; SEEN_ENTRIES],
        pub clock: u64,
    }
}

/// tm-path retries kept at most (`messaging`): beyond it a 503 is final.
const TM_RETRY_LIMIT: usize = 8192;

/// What mod_init settled before the shm is made.
pub struct Settled {
    pub config: Config,
    pub socket: DmqSocket,
    pub tm: Tm,
    pub sl: Sl,
    pub local_uri: NodeUri,
    pub notification_uris: Vec<NodeUri>,
    pub routes: NodeRoutes,
    pub peer_events: PeerEventSettings,
}

/// mod_init, before fork: every part's shm, made in one place.
pub fn make(s: Settled) -> Result<Shared, String> {
    let out_of_shm = |what: &str| format!("out of shm for {what}");
    let nodes = {
        let list = ShmStore::new(NODE_STORE_CAPACITY).ok_or_else(|| out_of_shm("the node list"))?;
        let initial = NodeList::with_local(s.local_uri.clone()).encode().into_bytes();
        list.with(|_| (Some(initial), ())).map_err(|_| "node list does not fit")?;
        NodeStore { list, refused: leak_zeroed().ok_or_else(|| out_of_shm("the node counters"))? }
    };
    let name_store = || ShmStore::new(MAX_NODES * (node_uri::MAX_LINE_LEN + 2));
    let names = NameStores {
        addresses: name_store().ok_or_else(|| out_of_shm("the names' addresses"))?,
        deferred: name_store().ok_or_else(|| out_of_shm("the names to judge"))?,
        unanswered: leak_zeroed().ok_or_else(|| out_of_shm("the names' counter"))?,
    };
    let heal = Heal {
        table: ShmStore::new(HealTable::MAX_ENCODED_LEN).ok_or_else(|| out_of_shm("the heal table"))?,
        counters: leak_zeroed().ok_or_else(|| out_of_shm("the heal counters"))?,
    };
    let syncs = SyncFollow {
        table: ShmStore::new(SyncRuns::MAX_ENCODED_LEN).ok_or_else(|| out_of_shm("the sync runs"))?,
        counters: leak_zeroed().ok_or_else(|| out_of_shm("the sync counters"))?,
        answers: ShmMutex::new_zeroed().ok_or_else(|| out_of_shm("the sync answers"))?,
    };
    let queues = || out_of_shm("the DMQ job queues");
    let workers = Pool {
        counters: leak_zeroed().ok_or_else(queues)?,
        workers: (0..s.config.num_workers)
            .map(|_| {
                Ok(Worker {
                    jobs: ShmMutex::new_zeroed().ok_or_else(queues)?,
                    figures: leak_zeroed().ok_or_else(queues)?,
                    wake: WakePipe::new().map_err(|e| e.to_string())?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?,
        limit: s.config.job_queue_limit as usize,
        usleep: s.config.worker_usleep,
    };
    let direct =
        DirectTable { data: ShmMutex::new_zeroed().ok_or_else(|| out_of_shm("the DMQ message table"))?, nonce_keys: RandomState::new() };
    Ok(Shared {
        refusals: leak_zeroed().ok_or_else(|| out_of_shm("the DMQ refusal counters"))?,
        events: leak_zeroed().ok_or_else(|| out_of_shm("the DMQ statistics"))?,
        batches: ShmMutex::new_zeroed().ok_or_else(|| out_of_shm("the DMQ usrloc batches"))?,
        order: ShmMutex::new_zeroed().ok_or_else(|| out_of_shm("the DMQ order of keys"))?,
        seen: ShmMutex::new_zeroed().ok_or_else(|| out_of_shm("the DMQ messages seen"))?,
        recent: ShmMutex::new_zeroed().ok_or_else(|| out_of_shm("the DMQ live updates"))?,
        origin: ShmMutex::new_zeroed().ok_or_else(|| out_of_shm("the DMQ items written here"))?,
        tm_retries: ShmQueue::new(TM_RETRY_LIMIT).ok_or_else(|| out_of_shm("the DMQ retry queue"))?,
        applying: leak_zeroed().ok_or_else(|| out_of_shm("the DMQ items being applied"))?,
        nodes,
        names,
        heal,
        syncs,
        workers,
        direct,
        config: s.config,
        socket: s.socket,
        tm: s.tm,
        sl: s.sl,
        local_uri: s.local_uri,
        notification_uris: s.notification_uris,
        routes: s.routes,
        peer_events: s.peer_events,
    })
}

static SHARED: OnceLock<Shared> = OnceLock::new();

/// The module's shared state (None before mod_init succeeded).
pub fn shared() -> Option<&'static Shared> {
    SHARED.get()
}

/// The end of mod_init: the state every process will inherit.
pub fn set(shared: Shared) -> Result<&'static Shared, String> {
    SHARED.set(shared).map_err(|_| "mod_init ran twice".to_string())?;
    SHARED.get().ok_or_else(|| "mod_init ran twice".to_string())
}
