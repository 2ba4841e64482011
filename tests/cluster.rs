//! Issue 3 (part): the DMQ bus between real Kamailio nodes, pure and mixed
//! with the stock dmq.so, and bad notifications sent as raw UDP.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::*;

const CONVERGE: Duration = Duration::from_secs(15);

fn seeded(base: NodeConfig, seed: SocketAddr) -> NodeConfig {
    base.param("notification_address", &format!("\"sip:{seed}\"")).param("ping_interval", "2")
}

/// Whether `node` lists every address in `all` as active, and itself once.
fn lists_all_active(node: &Node, all: &[SocketAddr]) -> bool {
    let Ok(out) = node.try_rpc(&["dmq.list_nodes"]) else { return false };
    let entries: Vec<&str> = out.split('}').filter(|e| e.contains("host:")).collect();
    let active = |a: &SocketAddr| {
        entries.iter().any(|e| {
            e.contains(&format!("host: {}\n", a.ip())) && e.contains(&format!("port: {}\n", a.port())) && e.contains("status: active")
        })
    };
    entries.len() == all.len() && all.iter().all(active) && out.matches("local: 1").count() == 1
}

fn assert_converged(nodes: &[&Node]) {
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

/// Starts a first node (not seeded from itself: a stock node would then list
/// itself twice), two more seeded from it, and waits for all three to agree.
fn converge(label: &str, kinds: [NodeConfig; 3]) {
    let [first, second, third] = kinds;
    let a = Node::start(&format!("{label}-a"), &first.param("ping_interval", "2"));
    let b = Node::start(&format!("{label}-b"), &seeded(second, a.addr));
    let c = Node::start(&format!("{label}-c"), &seeded(third, a.addr));
    assert_converged(&[&a, &b, &c]);
}

#[test]
fn three_dmq_rs_nodes_converge() {
    converge("conv", [NodeConfig::default(), NodeConfig::default(), NodeConfig::default()]);
}

#[test]
fn dmq_rs_node_joins_two_stock_nodes() {
    converge("mix1", [NodeConfig::stock(), NodeConfig::stock(), NodeConfig::default()]);
}

#[test]
fn stock_node_joins_two_dmq_rs_nodes() {
    converge("mix2", [NodeConfig::default(), NodeConfig::default(), NodeConfig::stock()]);
}

fn kdmq(to: SocketAddr, from: SocketAddr, user: &str, body: &[u8], content_length: Option<usize>) -> Vec<u8> {
    let mut m = format!(
        "KDMQ sip:{user}@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-{n}\r\nFrom: <sip:{user}@{from}>;tag=t{n}\r\n\
         To: <sip:{user}@{to}>\r\nCall-ID: bad-{n}@{from}\r\nCSeq: 1 KDMQ\r\nMax-Forwards: 1\r\nContent-Type: text/plain\r\n",
        n = rand_tag()
    );
    if let Some(len) = content_length {
        m += &format!("Content-Length: {len}\r\n");
    }
    m += "\r\n";
    let mut bytes = m.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn rand_tag() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::SeqCst) * 7919 + std::process::id() as u64
}

#[test]
fn bad_notifications_get_a_reply_and_change_nothing() {
    let node = Node::start("bad-input", &NodeConfig::default());
    let before = node.rpc(&["dmq.list_nodes"]);
    let sock = UdpSocket::bind(format!("{}:0", allocate_address().ip())).unwrap();
    let from = sock.local_addr().unwrap();
    let big = vec![b'x'; 70 * 1024];
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("unparsable uri", kdmq(node.addr, from, "notification_peer", b"sip:@@bad\r\n", Some(11)), "SIP/2.0 400"),
        ("unknown status", kdmq(node.addr, from, "notification_peer", b"sip:127.0.0.9:5090;status=zombie\r\n", Some(35)), "SIP/2.0 400"),
        ("binary junk", kdmq(node.addr, from, "notification_peer", b"\x00\xff\xfe\x01junk", Some(8)), "SIP/2.0 400"),
        ("unknown peer", kdmq(node.addr, from, "no_such_peer", b"", Some(0)), "SIP/2.0 404"),
        ("oversized body", kdmq(node.addr, from, "notification_peer", &big[..60000], Some(60000)), "SIP/2.0 400"),
    ];
    for (what, datagram, expected) in cases {
        let reply = node.sip_exchange(&sock, &datagram, Duration::from_secs(5));
        let reply = reply.unwrap_or_else(|| panic!("{what}: no reply"));
        assert!(reply.starts_with(expected), "{what}: {reply}");
    }
    assert_eq!(node.rpc(&["dmq.list_nodes"]), before, "node list changed");
    // Still serving: a good notification is merged and answered.
    let good = b"sip:127.0.0.9:5090;status=active\r\n";
    let reply = node.sip_exchange(&sock, &kdmq(node.addr, from, "notification_peer", good, Some(good.len())), Duration::from_secs(5));
    assert!(reply.unwrap_or_default().starts_with("SIP/2.0 200"));
    assert!(node.rpc(&["dmq.list_nodes"]).contains("host: 127.0.0.9"));
}

/// The status `node` lists for the node at `addr` (None: not listed).
fn status_of(node: &Node, addr: SocketAddr) -> Option<String> {
    let out = node.try_rpc(&["dmq.list_nodes"]).ok()?;
    let entry = out.split('}').find(|e| e.contains(&format!("host: {}\n", addr.ip())) && e.contains(&format!("port: {}\n", addr.port())))?;
    let status = entry.split("status: ").nth(1)?.lines().next()?.trim().to_string();
    Some(status)
}

fn three_rs_nodes(label: &str, extra: &str) -> (Node, Node, Node) {
    let base = || {
        let mut c = NodeConfig::default();
        c.extra_routes = extra.to_string();
        c
    };
    let a = Node::start(&format!("{label}-a"), &base().param("ping_interval", "2"));
    let b = Node::start(&format!("{label}-b"), &seeded(base(), a.addr));
    let c = Node::start(&format!("{label}-c"), &seeded(base(), a.addr));
    assert_converged(&[&a, &b, &c]);
    (a, b, c)
}

#[test]
fn killed_node_is_dropped_within_seconds_and_rejoins_when_restarted() {
    let (a, b, mut c) = three_rs_nodes("kill", "");
    let c_addr = c.addr;
    c.kill();
    let killed = std::time::Instant::now();
    for node in [&a, &b] {
        assert!(
            node.wait_until(Duration::from_secs(10), |n| status_of(n, c_addr).as_deref() != Some("active")),
            "{} still lists the killed node as active",
            node.addr
        );
    }
    eprintln!("killed node no longer active on both peers after {:?}", killed.elapsed());
    let c = Node::start_at("kill-c2", &seeded(NodeConfig::default(), a.addr), c_addr);
    assert_converged(&[&a, &b, &c]);
}

#[test]
fn cleanly_stopped_node_leaves_at_once_and_event_routes_run() {
    let events = "event_route[dmq:node-active] {\n\txlog(\"L_NOTICE\", \"DMQ-EVENT active $xavp(dmq_node=>uri) $xavp(dmq_node=>status)\\n\");\n}\n\
                  event_route[dmq:node-inactive] {\n\txlog(\"L_NOTICE\", \"DMQ-EVENT inactive $xavp(dmq_node=>uri)\\n\");\n}\n";
    let (a, b, mut c) = three_rs_nodes("leave", events);
    let c_addr = c.addr;
    let active_line = format!("DMQ-EVENT active sip:{c_addr} active");
    assert!(a.wait_until(Duration::from_secs(5), |n| n.log_text().contains(&active_line)), "no node-active event for {c_addr}");
    c.stop();
    // "At once": well before a single missed ping (2 s) could be counted.
    for node in [&a, &b] {
        assert!(
            node.wait_until(Duration::from_millis(1500), |n| status_of(n, c_addr).as_deref() != Some("active")),
            "{} still lists the stopped node as active:\n{}",
            node.addr,
            node.rpc(&["dmq.list_nodes"])
        );
    }
    let inactive_line = format!("DMQ-EVENT inactive sip:{c_addr}");
    assert!(a.wait_until(Duration::from_secs(2), |n| n.log_text().contains(&inactive_line)), "no node-inactive event");
}

#[test]
fn multi_notify_expands_a_host_name_into_its_addresses() {
    // "localhost" resolves (through /etc/hosts) to 127.0.0.1: the seed node
    // listens there, and the joining node only knows it by name.
    let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let seed_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let a = Node::start_at("multi-a", &NodeConfig::default().param("ping_interval", "2"), seed_addr);
    let b = Node::start(
        "multi-b",
        &NodeConfig::default()
            .param("notification_address", &format!("\"sip:localhost:{port}\""))
            .param("multi_notify", "1")
            .param("ping_interval", "2"),
    );
    for node in [&a, &b] {
        let other = if node.addr == a.addr { b.addr } else { a.addr };
        assert!(
            node.wait_until(CONVERGE, |n| status_of(n, other).as_deref() == Some("active")),
            "{} does not list {other} as active:\n{}",
            node.addr,
            node.rpc(&["dmq.list_nodes"])
        );
    }
    assert!(b.log_text().contains("multi_notify: sip:localhost"), "expansion not logged");
}
