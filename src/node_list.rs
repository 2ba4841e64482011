//! The node list in shm: changes under its lock (upstream's peer events
//! reported after it is released), reads through this process's decoded
//! copy (decoded again only when the list changed), the nodes refused
//! when it is full, and which listed node a request or a reply comes from
//! (a node it does not have: `dmq_core::unlisted_node`).

use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::time::Duration;

use dmq_core::header_scan::name_addr_uri;
use dmq_core::node_status::NodeStatus;
use dmq_core::node_uri::{self, NodeUri};
use dmq_core::nodes::{Node, NodeList};
use dmq_core::unlisted_node;

use kamailio::log::RateLimit;
use kamailio::sip_msg::SipMsg;

use crate::peer_events;
use crate::shared::Shared;
use crate::stored::{self, StoreFull};

/// Nodes notifications named that the full list could not take.
pub fn nodes_refused(m: &Shared) -> u64 {
    m.nodes.refused.load(Ordering::Relaxed)
}

/// Counts and logs (at most once a second per process) refused nodes;
/// `from` names where they came from (built only when there are some).
pub fn refuse_nodes(m: &Shared, count: usize, from: impl FnOnce() -> String) {
    if count == 0 {
        return;
    }
    m.nodes.refused.fetch_add(count as u64, Ordering::Relaxed);
    static LOG: RateLimit = RateLimit::per(1000);
    if LOG.allow() {
        log::warn!(
            "{} named {count} node(s) beyond the limit of {} nodes: not added (counted in dmq.stats nodes_refused)",
            from(),
            dmq_core::nodes::MAX_NODES
        );
    }
}

/// Runs `f` on the node list under its lock; changes are written back.
/// None when the change could not be saved (nothing of it holds then).
/// Never send from inside `f`: copy what to send, send after it returns.
pub fn with_nodes<R>(m: &Shared, f: impl FnOnce(&mut NodeList) -> R) -> Option<R> {
    match stored::change(&m.nodes.list, f) {
        Ok(change) => {
            // Upstream's peer events, after the lock is released.
            if let Some((before, after)) = &change.changed {
                peer_events::report(m, &dmq_core::peer_events::diff(before, after));
            }
            Some(change.result)
        }
        Err(StoreFull) => {
            // Cannot happen while the list keeps to MAX_NODES (the store
            // holds a full one); if it did, nothing may act on the change.
            log::error!("node list does not fit its store ({} bytes); change dropped", dmq_core::nodes::MAX_ENCODED_LEN);
            None
        }
    }
}

thread_local! {
    /// This process's decoded copy of the node list and the store generation
    /// it was decoded from: reads on the SIP-worker paths (every replicated
    /// message looks up targets or its sender) decode only after a change.
    static DECODED: RefCell<Option<(u64, NodeList)>> = const { RefCell::new(None) };
}

/// `f` on this process's copy of the list at `generation`, decoding `bytes`
/// only when the copy is older. Not reentrant: `f` must not read the list.
fn with_decoded<R>(generation: u64, bytes: &[u8], f: impl FnOnce(&NodeList) -> R) -> R {
    DECODED.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.as_ref().is_none_or(|(g, _)| *g != generation) {
            *cached = Some((generation, NodeList::decode(std::str::from_utf8(bytes).unwrap_or_default())));
        }
        f(&cached.as_ref().expect("just filled").1)
    })
}

/// Runs `f` on the node list under its lock, read-only (no copy, no write
/// back, no decode unless the list changed): for the SIP-worker paths such
/// as `dmq_is_from_node`, target lookups and RPC listing.
pub fn read_nodes<R>(m: &Shared, f: impl FnOnce(&NodeList) -> R) -> R {
    m.nodes.list.read(|generation, bytes| with_decoded(generation, bytes, f))
}

/// [`read_nodes`] at shutdown: None when the lock is not had within
/// `timeout` (a child killed inside its critical section may have left it
/// held).
pub fn read_nodes_within<R>(m: &Shared, timeout: Duration, f: impl FnOnce(&NodeList) -> R) -> Option<R> {
    m.nodes.list.read_within(timeout, |generation, bytes| with_decoded(generation, bytes, f))
}

/// The listed node for `uri`, or a stand-in when it has left the list
/// meanwhile (`dmq_core::unlisted_node`): consumers' callbacks still get a
/// node, and a message addressed to it still goes.
pub fn node_or_stand_in(m: &Shared, uri: &NodeUri) -> Node {
    read_nodes(m, |list| unlisted_node::listed_or_stand_in(list, uri))
}

/// The listed node for `uri`.
pub fn find_node(m: &Shared, uri: &NodeUri) -> Option<Node> {
    read_nodes(m, |list| list.find(uri).cloned())
}

/// The node a KDMQ request comes from: its From URI (`sip:<peer>@node`).
pub fn sender_of(msg: &SipMsg) -> Option<NodeUri> {
    let value = std::str::from_utf8(msg.from_value()?).ok()?;
    node_uri::parse_node_line(name_addr_uri(value)?).ok().map(|l| l.uri)
}

/// The listed node at `addr` (a reply's source).
pub fn node_at(m: &Shared, addr: std::net::SocketAddr) -> Option<NodeUri> {
    read_nodes(m, |list| list.nodes.iter().find(|n| n.ip() == Some(addr.ip()) && n.uri.port_no() == addr.port()).map(|n| n.uri.clone()))
}

/// For each target named by a host name with a known address: where tm
/// sends to (`sip:ip:port;transport=x`), so it resolves nothing.
pub fn next_hops(m: &Shared, targets: &[NodeUri]) -> Vec<Option<String>> {
    if !targets.iter().any(|t| dmq_core::nodes::is_name(&t.host)) {
        return vec![None; targets.len()];
    }
    read_nodes(m, |list| {
        targets
            .iter()
            .map(|t| {
                let ip = list.find(t).filter(|n| n.is_named()).and_then(|n| n.ip())?;
                Some(t.at(ip).to_uri())
            })
            .collect()
    })
}

/// Nodes in the list (this one included) with `status`, or all of them.
pub fn count_nodes(m: &Shared, status: Option<NodeStatus>) -> u64 {
    read_nodes(m, |list| list.nodes.iter().filter(|n| status.is_none_or(|s| n.status == s)).count() as u64)
}
