//! Issue 4: messages carried for other modules. The unmodified htable,
//! dmq_usrloc, dialog and presence modules from Debian bind to dmq_rs
//! through bind_dmq; script peers, dmq_t_replicate and KEMI.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

const CONVERGE: Duration = Duration::from_secs(15);
const REPLICATE: Duration = Duration::from_secs(15);

fn seeded(base: NodeConfig, seed: Option<SocketAddr>) -> NodeConfig {
    let base = base.param("ping_interval", "2");
    match seed {
        Some(seed) => base.param("notification_address", &format!("\"sip:{seed}\"")),
        None => base,
    }
}

fn active_count(node: &Node) -> usize {
    node.try_rpc(&["dmq.list_nodes"]).map(|o| o.matches("status: active").count()).unwrap_or(0)
}

/// Starts nodes from `configs` (the first is the seed of the others) and
/// waits until each lists all of them as active.
fn cluster(label: &str, configs: Vec<NodeConfig>) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for (i, c) in configs.into_iter().enumerate() {
        let seed = nodes.first().map(|n| n.addr);
        nodes.push(Node::start(&format!("{label}-{i}"), &seeded(c, seed)));
    }
    let n = nodes.len();
    for node in &nodes {
        assert!(node.wait_until(CONVERGE, |x| active_count(x) == n), "{} did not converge:\n{}", node.addr, node.rpc(&["dmq.list_nodes"]));
    }
    nodes
}

fn htable_node(stock: bool) -> NodeConfig {
    let mut c = if stock { NodeConfig::stock() } else { NodeConfig::default() };
    c.consumers += "loadmodule \"htable.so\"\nmodparam(\"htable\", \"enable_dmq\", 1)\n\
                  modparam(\"htable\", \"htable\", \"t=>size=8;dmqreplicate=1;\")\n";
    c
}

fn htable_value(node: &Node, key: &str) -> Option<String> {
    let out = node.try_rpc(&["htable.get", "t", key]).ok()?;
    out.split("value:").nth(1).and_then(|v| v.lines().next()).map(|v| v.trim().to_string())
}

fn htable_replicates(label: &str, kinds: [bool; 3]) {
    let nodes = cluster(label, kinds.iter().map(|&stock| htable_node(stock)).collect());
    for (i, writer) in nodes.iter().enumerate() {
        let key = format!("k{i}");
        writer.rpc(&["htable.seti", "t", &key, &format!("{}", 100 + i)]);
        for node in &nodes {
            assert!(
                node.wait_until(REPLICATE, |n| htable_value(n, &key).as_deref() == Some(&format!("{}", 100 + i))),
                "{key} written on {} is not on {}",
                writer.addr,
                node.addr
            );
        }
    }
}

#[test]
fn htable_items_replicate_between_dmq_rs_nodes() {
    htable_replicates("ht-rs", [false, false, false]);
}

#[test]
fn htable_items_replicate_in_a_mixed_cluster() {
    htable_replicates("ht-mix", [true, false, true]);
}
