//! Clusters: starting several nodes that learn of each other, and waiting
//! until they agree on their members.

use std::net::SocketAddr;
use std::time::Duration;

use super::{Node, NodeConfig};

/// How long a cluster may take to agree on its members.
pub const CONVERGE: Duration = Duration::from_secs(15);

/// `base` with a 2 s ping interval, learning the cluster from `seed`.
pub fn seeded(base: NodeConfig, seed: SocketAddr) -> NodeConfig {
    base.param("notification_address", &format!("\"sip:{seed}\"")).param("ping_interval", "2")
}

/// The status `node` lists for the node at `addr` (None: not listed).
pub fn status_of(node: &Node, addr: SocketAddr) -> Option<String> {
    node_field(node, addr, "status")
}

/// A field `dmq.list_nodes` of `node` shows for the node at `addr` (None:
/// not listed, or no such field).
pub fn node_field(node: &Node, addr: SocketAddr, field: &str) -> Option<String> {
    let out = node.try_rpc(&["dmq.list_nodes"]).ok()?;
    let entry = list_entry(&out, addr)?;
    Some(entry.split(&format!("{field}: ")).nth(1)?.lines().next()?.trim().to_string())
}

/// The entry of a `dmq.list_nodes` answer for the node at `addr`.
pub fn list_entry(list: &str, addr: SocketAddr) -> Option<&str> {
    list.split('}').find(|e| e.contains(&format!("host: {}\n", addr.ip())) && e.contains(&format!("port: {}\n", addr.port())))
}

/// Whether `node` lists every address in `all` as active, and itself once.
pub fn lists_all_active(node: &Node, all: &[SocketAddr]) -> bool {
    let Ok(out) = node.try_rpc(&["dmq.list_nodes"]) else { return false };
    let entries = out.split('}').filter(|e| e.contains("host:")).count();
    entries == all.len() && all.iter().all(|a| status_of(node, *a).as_deref() == Some("active")) && out.matches("local: 1").count() == 1
}

/// Waits until every node lists all of them as active; panics otherwise.
pub fn assert_converged(nodes: &[&Node]) {
    let all: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    for node in nodes {
        assert!(
            node.wait_until(CONVERGE, |n| lists_all_active(n, &all)),
            "node {} did not converge:\n{}",
            node.addr,
            node.try_rpc(&["dmq.list_nodes"]).unwrap_or_default()
        );
    }
}

/// Starts one node per config: the first unseeded (a stock node seeded from
/// itself would list itself twice), the others seeded from it; all ping
/// every 2 s. Returns once all of them agree on the cluster.
pub fn start_cluster(label: &str, configs: Vec<NodeConfig>) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for (i, c) in configs.into_iter().enumerate() {
        let config = match nodes.first() {
            Some(first) => seeded(c, first.addr),
            None => c.param("ping_interval", "2"),
        };
        nodes.push(Node::start(&format!("{label}-{i}"), &config));
    }
    assert_converged(&nodes.iter().collect::<Vec<_>>());
    nodes
}

/// What `dmq.sync_status` says of `consumer`'s latest sync on `node`: its
/// state word (`pending`, `done`, `timed_out`); None when it has none.
pub fn sync_state(node: &Node, consumer: &str) -> Option<String> {
    let out = node.try_rpc(&["dmq.sync_status"]).ok()?;
    let block = out.split('{').find(|b| b.contains(&format!("consumer: {consumer}\n")))?;
    block.lines().find_map(|l| l.trim().strip_prefix("state: ")).map(str::to_string)
}
