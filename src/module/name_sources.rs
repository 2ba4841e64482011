//! What the `notification_address` names list now (issue 26): the node
//! addresses the DMQ DNS process (`lookups`) found, in shm, so every
//! process can tell them apart from other nodes. Such an address is a
//! notification address while its name lists it: pings mark it pending
//! when it does not answer, never remove it. A leaf: it depends on no
//! other file of the module.

use std::cell::RefCell;
use std::sync::OnceLock;

use dmq_core::nodes::MAX_NODES;
use dmq_core::protocol::{self, NodeUri};

use crate::host::shm::ShmStore;

static STORE: OnceLock<ShmStore> = OnceLock::new();

/// mod_init (only when some notification_address is a name).
pub fn init() -> Result<(), String> {
    let store = ShmStore::new(MAX_NODES * (protocol::MAX_LINE_LEN + 2)).ok_or("out of shm for the names' addresses")?;
    STORE.set(store).map_err(|_| "names' addresses initialized twice".to_string())
}

/// The DNS process: the addresses the names list now (at most MAX_NODES).
pub fn publish(listed: &[NodeUri]) {
    let Some(store) = STORE.get() else { return };
    let mut text = String::new();
    for uri in listed.iter().take(MAX_NODES) {
        text += &uri.to_uri();
        text.push('\n');
    }
    let _ = store.with(|old| ((old != text.as_bytes()).then(|| text.into_bytes()), ()));
}

thread_local! {
    /// This process's decoded copy and the generation it was decoded from.
    static DECODED: RefCell<(u64, Vec<NodeUri>)> = const { RefCell::new((0, Vec::new())) };
}

/// `f` on the addresses the names list now (empty without names).
pub fn with_listed<R>(f: impl FnOnce(&[NodeUri]) -> R) -> R {
    let Some(store) = STORE.get() else { return f(&[]) };
    store.read(|generation, bytes| {
        DECODED.with(|cell| {
            let mut cached = cell.borrow_mut();
            if cached.0 != generation {
                let text = std::str::from_utf8(bytes).unwrap_or_default();
                let uris = text.lines().filter_map(|l| protocol::parse_node_line(l).ok().map(|l| l.uri)).collect();
                *cached = (generation, uris);
            }
            f(&cached.1)
        })
    })
}

/// The addresses the names list now.
pub fn listed() -> Vec<NodeUri> {
    with_listed(|l| l.to_vec())
}

/// Whether a name lists `uri` now.
pub fn lists(uri: &NodeUri) -> bool {
    with_listed(|l| l.iter().any(|n| n.same_node(uri)))
}
