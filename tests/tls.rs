//! DMQ over TLS with Kamailio's tls module, nodes verifying each
//! other's certificates; a pure dmq_rs cluster, one with a stock node, and
//! a node whose certificate comes from another CA kept out.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use common::tls::{write_tls_cfg, Ca};
use common::*;

/// A free TCP port on `ip` (for the node's TLS socket).
fn tls_addr(ip: std::net::IpAddr) -> SocketAddr {
    TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap()
}

/// A registrar node that speaks DMQ over TLS at `tls`, verifying peers
/// against the CA in `certs`; REGISTERs still arrive over UDP.
fn tls_node(base: NodeConfig, tls: SocketAddr, certs: &Path, seed: Option<SocketAddr>) -> NodeConfig {
    let tls_cfg = write_tls_cfg(certs);
    let mut c = registrar(base);
    c.core += &format!("enable_tls=yes\nlisten=tls:{tls}\n");
    c.globals += &format!("loadmodule \"tls.so\"\nmodparam(\"tls\", \"config\", \"{}\")\n", tls_cfg.display());
    let uri = |a: SocketAddr| format!("\"sip:{a};transport=tls\"");
    let mut c = c.without_param("server_address").param("server_address", &uri(tls)).param("ping_interval", "2");
    if let Some(seed) = seed {
        c = c.param("notification_address", &uri(seed));
    }
    c
}

struct TlsNode {
    node: Node,
    tls: SocketAddr,
}

fn start_tls_node(label: &str, base: NodeConfig, ca: &Ca, seed: Option<SocketAddr>) -> TlsNode {
    let addr = allocate_address();
    let tls = tls_addr(addr.ip());
    let certs = ca.issue(addr.ip());
    let node = Node::start_at(label, &tls_node(base, tls, &certs, seed), addr);
    TlsNode { node, tls }
}

fn all_active(nodes: &[&TlsNode]) {
    let all: Vec<SocketAddr> = nodes.iter().map(|n| n.tls).collect();
    for n in nodes {
        assert!(
            n.node.wait_until(Duration::from_secs(20), |x| lists_all_active(x, &all)),
            "{} did not list every TLS node as active:\n{}",
            n.node.addr,
            n.node.try_rpc(&["dmq.list_nodes"]).unwrap_or_default()
        );
    }
}

fn tls_cluster_replicates(label: &str, kinds: [NodeConfig; 3]) {
    if tls_left_out(label) {
        return;
    }
    let ca = Ca::new(label);
    let [k0, k1, k2] = kinds;
    let first = start_tls_node(&format!("{label}-0"), k0, &ca, None);
    let second = start_tls_node(&format!("{label}-1"), k1, &ca, Some(first.tls));
    let third = start_tls_node(&format!("{label}-2"), k2, &ca, Some(first.tls));
    let nodes = [&first, &second, &third];
    all_active(&nodes);

    let dir = node_dir(&format!("{label}-sipp"));
    let (status, _, err) = sipp_register(first.node.addr, &dir, 30, 100);
    assert!(status.success(), "sipp: {err}");
    for n in &nodes[1..] {
        let (held, took) =
            wait_settled(Duration::from_secs(20), Duration::from_secs(8), Duration::from_millis(200), || aor_count(&n.node), |c| *c >= 30);
        assert!(took.is_some(), "{} holds {held} of 30 contacts replicated over TLS", n.node.addr);
        eprintln!("{label}: {} holds 30 contacts after {:?}", n.node.addr, took.unwrap());
    }

    // A node whose certificate another CA signed cannot join.
    let other_ca = Ca::new(&format!("{label}-other"));
    let intruder = start_tls_node(&format!("{label}-intruder"), NodeConfig::default(), &other_ca, Some(first.tls));
    // Kept out by the certificate check (OpenSSL's words), not by chance:
    // a refusal is the positive signal; then it stays out while it tries
    // again (it notifies every 2 s).
    let refused = |n: &Node| {
        let log = n.log_text();
        log.contains("unknown ca") || log.contains("certificate verify failed")
    };
    let seen = wait_for(Duration::from_secs(15), || refused(&first.node) || refused(&intruder.node));
    assert!(seen.is_some(), "no TLS verification failure in the logs");
    observe(Duration::from_secs(4));
    for n in &nodes {
        assert_ne!(status_of(&n.node, intruder.tls).as_deref(), Some("active"), "{} lists the intruder as active", n.node.addr);
    }
    assert!(!lists_all_active(&intruder.node, &[first.tls, intruder.tls]), "the intruder joined");
}

#[test]
fn three_dmq_rs_nodes_replicate_over_tls_and_keep_out_another_ca() {
    tls_cluster_replicates("tls-rs", [NodeConfig::default(), NodeConfig::default(), NodeConfig::default()]);
}

#[test]
fn a_stock_node_joins_a_tls_cluster() {
    tls_cluster_replicates("tls-mix", [NodeConfig::default(), NodeConfig::stock(), NodeConfig::default()]);
}
