//! DMQ peers: the modules (htable, dmq_usrloc, dialog, presence) and script
//! channels that exchange messages over the bus. The registry is a peer
//! list (`dmq_abi::api::PeerList`, stock `dmq_peer_t` layout) and the
//! "init callbacks ran" flag, under one shm lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use dmq_core::protocol::NodeUri;

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
    if let Some(node) = &single {
        log::info!("init_with_single: the join sync asks {node} only");
    }
    SINGLE.with(|s| *s.borrow_mut() = single);
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            SINGLE.with(|s| *s.borrow_mut() = None);
        }
    }
    let _reset = Reset;
    for peer in peers {
        log::info!("running the init callback of DMQ peer {:?}", peer.id());
        if peer.run_init() == Some(false) {
            log::warn!("init callback of DMQ peer {:?} failed", peer.id());
        }
    }
    true
}

thread_local! {
    /// Set while the join sync runs with `init_with_single`: the one node
    /// the callbacks' broadcasts go to (this process only; the callbacks
    /// send before they return).
    static SINGLE: std::cell::RefCell<Option<NodeUri>> = const { std::cell::RefCell::new(None) };
}

/// The node a broadcast goes to instead of every active node, while the
/// join sync runs with `init_with_single`.
pub fn single_target() -> Option<NodeUri> {
    SINGLE.with(|s| s.borrow().clone())
}

/// Whether the init callbacks ran (the first contact with the cluster).
pub fn init_done() -> bool {
    registry().is_some_and(|r| r.lock().init_done)
}

thread_local! {
    /// Set while a heal sync runs the init callbacks (this process only;
    /// the callbacks send before they return).
    static CAPTURING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// What they would have broadcast: (peer, body, content type) of each
    /// sync request.
    static CAPTURED: std::cell::RefCell<Vec<(Peer, Vec<u8>, String)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Whether broadcasts are being captured (see `sync_requests`).
pub fn capturing() -> bool {
    CAPTURING.with(|c| c.get())
}

/// A broadcast captured instead of sent.
pub fn capture(peer: Peer, body: &[u8], content_type: &str) {
    CAPTURED.with(|c| c.borrow_mut().push((peer, body.to_vec(), content_type.to_string())));
}

/// Every peer's sync request, as its init callback makes it: the init
/// callbacks run with their broadcasts captured, not sent. Returns
/// (peer, body, content type) of each.
pub fn sync_requests() -> Vec<(Peer, Vec<u8>, String)> {
    let Some(registry) = registry() else { return Vec::new() };
    let peers: Vec<Peer> = registry.lock().peers.iter().filter(|p| p.has_init()).collect();
    // Called outside the lock: the callbacks call back into the API.
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CAPTURING.with(|c| c.set(false));
        }
    }
    CAPTURED.with(|c| c.borrow_mut().clear());
    CAPTURING.with(|c| c.set(true));
    let _reset = Reset;
    for peer in &peers {
        if peer.run_init() == Some(false) {
            log::warn!("init callback of DMQ peer {:?} failed (heal sync)", peer.id());
        }
    }
    CAPTURED.with(|c| std::mem::take(&mut *c.borrow_mut()))
}
