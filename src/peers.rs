//! DMQ peers: the modules (htable, dmq_usrloc, dialog, presence) and script
//! channels that exchange messages over the bus. The registry is a peer
//! list (`dmq_abi::api::PeerList`, stock `dmq_peer_t` layout) and the
//! "init callbacks ran" flag, under one shm lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use dmq_core::node_uri::NodeUri;

use dmq_abi::api::{AddPeerError, Peer, PeerList, PeerSpec};
use kamailio::shm::ShmMutex;
use kamailio::shm_zeroed;

shm_zeroed! {
    struct Registry {
        peers: PeerList,
        init_done: bool,
    }
}

static REGISTRY: OnceLock<Option<&'static ShmMutex<Registry>>> = OnceLock::new();

/// The registry, created on first use. Consumers register from their own
/// mod_init, which may run before ours; either way this happens before
/// fork, so every process sees the same shm block.
fn registry() -> Option<&'static ShmMutex<Registry>> {
    *REGISTRY.get_or_init(|| {
        let registry = ShmMutex::new_zeroed();
        if registry.is_none() {
            log::error!("out of shm for the DMQ peer list");
        }
        registry
    })
}

/// Makes sure the registry exists before fork (mod_init).
pub fn init() -> Result<(), String> {
    registry().map(|_| ()).ok_or_else(|| "out of shm for the DMQ peer list".to_string())
}

/// The peer named `id`.
pub fn find(id: &[u8]) -> Option<Peer> {
    registry()?.lock().peers.find(id)
}

/// Registers a copy of `spec` (stock semantics: a second peer with the
/// same id is refused).
pub fn register(spec: &PeerSpec<'_>) -> Option<Peer> {
    let name = String::from_utf8_lossy(spec.id()).into_owned();
    if spec.id().is_empty() {
        log::error!("cannot register a DMQ peer without a name");
        return None;
    }
    let added = registry()?.lock().peers.add(spec);
    match added {
        Ok(peer) => {
            log::info!("DMQ peer {name:?} registered");
            Some(peer)
        }
        Err(AddPeerError::Exists) => {
            log::error!("DMQ peer {name:?} is already registered");
            None
        }
        Err(AddPeerError::OutOfShm) => {
            log::error!("out of shm registering DMQ peer {name:?}");
            None
        }
    }
}

/// The peer for a script channel, registered on first use.
pub fn find_or_register_script_peer(id: &[u8]) -> Option<Peer> {
    if let Some(p) = find(id) {
        return Some(p);
    }
    log::info!("script DMQ peer {:?} is new: registering it", String::from_utf8_lossy(id));
    // Another process may have registered it in between: then use theirs.
    register(&PeerSpec::script(id)).or_else(|| find(id))
}

/// The cluster answered us (or talked to us) for the first time since
/// startup: every peer's init callback runs once, here (this is what makes
/// dmq_usrloc and htable ask the cluster for a full sync). With `single`
/// (`init_with_single`: the node that answered or notified), the sync
/// requests the callbacks broadcast go to that node only. Returns true
/// in the one call that ran them, once they all returned.
pub fn cluster_reached(single: Option<NodeUri>) -> bool {
    // Every notification passes here: once seen done, skip the lock.
    static SEEN_DONE: AtomicBool = AtomicBool::new(false);
    if SEEN_DONE.load(Ordering::Relaxed) {
        return false;
    }
    let Some(registry) = registry() else { return false };
    let peers: Vec<Peer> = {
        let mut r = registry.lock();
        SEEN_DONE.store(true, Ordering::Relaxed);
        if r.init_done {
            return false;
        }
        r.init_done = true;
        r.peers.iter().filter(|p| p.has_init()).collect()
    };
    // Called outside the lock: the callbacks send messages.
    let mode = match single {
        Some(node) => {
            log::info!("init_with_single: the join sync asks {node} only");
            BroadcastMode::OnlyTo(node)
        }
        None => BroadcastMode::Everyone,
    };
    run_init_callbacks(&peers, mode, "");
    true
}

/// Where a consumer's broadcast goes: every active node, except while this
/// process runs the init callbacks for a reason that says otherwise. The
/// callbacks are C code that calls `bcast_message` before it returns, so
/// the mode cannot travel as an argument through them: it is set for the
/// run by [`run_init_callbacks`] (its one writer) and read by the API's
/// broadcast through [`broadcast_mode`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BroadcastMode {
    /// Every active node (outside a run of the init callbacks).
    Everyone,
    /// `init_with_single`: the join sync's requests go to this node only.
    OnlyTo(NodeUri),
    /// A heal sync learns the callbacks' sync requests: captured, not sent.
    Capture,
}

thread_local! {
    /// The mode of the run of init callbacks in progress in this process.
    static MODE: std::cell::RefCell<BroadcastMode> = const { std::cell::RefCell::new(BroadcastMode::Everyone) };
    /// What the callbacks broadcast in [`BroadcastMode::Capture`]:
    /// (peer, body, content type) of each sync request.
    static CAPTURED: std::cell::RefCell<Vec<(Peer, Vec<u8>, String)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Where a broadcast made now goes (see [`BroadcastMode`]).
pub fn broadcast_mode() -> BroadcastMode {
    MODE.with(|m| m.borrow().clone())
}

/// A broadcast captured instead of sent ([`BroadcastMode::Capture`]).
pub fn capture(peer: Peer, body: &[u8], content_type: &str) {
    CAPTURED.with(|c| c.borrow_mut().push((peer, body.to_vec(), content_type.to_string())));
}

/// Runs the init callbacks of `peers` with their broadcasts going as
/// `mode` says (back to [`BroadcastMode::Everyone`] after, even if one
/// panics); returns what they broadcast in [`BroadcastMode::Capture`].
/// `why` names the run in the log line of a failed callback.
fn run_init_callbacks(peers: &[Peer], mode: BroadcastMode, why: &str) -> Vec<(Peer, Vec<u8>, String)> {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            MODE.with(|m| *m.borrow_mut() = BroadcastMode::Everyone);
        }
    }
    CAPTURED.with(|c| c.borrow_mut().clear());
    let announce = mode != BroadcastMode::Capture;
    MODE.with(|m| *m.borrow_mut() = mode);
    let _reset = Reset;
    for peer in peers {
        if announce {
            log::info!("running the init callback of DMQ peer {:?}", peer.id());
        }
        if peer.run_init() == Some(false) {
            log::warn!("init callback of DMQ peer {:?} failed{why}", peer.id());
        }
    }
    CAPTURED.with(|c| std::mem::take(&mut *c.borrow_mut()))
}

/// Whether the init callbacks ran (the first contact with the cluster).
pub fn init_done() -> bool {
    registry().is_some_and(|r| r.lock().init_done)
}

/// Every peer's sync request, as its init callback makes it: the init
/// callbacks run with their broadcasts captured, not sent. Returns
/// (peer, body, content type) of each.
pub fn sync_requests() -> Vec<(Peer, Vec<u8>, String)> {
    let Some(registry) = registry() else { return Vec::new() };
    let peers: Vec<Peer> = registry.lock().peers.iter().filter(|p| p.has_init()).collect();
    // Called outside the lock: the callbacks call back into the API.
    run_init_callbacks(&peers, BroadcastMode::Capture, " (heal sync)")
}
