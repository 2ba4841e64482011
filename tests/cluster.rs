//! Cluster membership between real Kamailio nodes, pure and mixed with the
//! stock dmq.so: nodes converge, a killed node is dropped and a stopped one
//! leaves at once, nodes named by host name are known by their addresses,
//! a node's status follows its answers to pings (not notifications sent in
//! its name, and as with stock for a 403), and the node list keeps its
//! shape against bad notifications and a flood of made-up nodes.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::*;

#[test]
fn three_dmq_rs_nodes_converge() {
    start_cluster("conv", vec![NodeConfig::default(), NodeConfig::default(), NodeConfig::default()]);
}

#[test]
fn dmq_rs_node_joins_two_stock_nodes() {
    start_cluster("mix1", vec![NodeConfig::stock(), NodeConfig::stock(), NodeConfig::default()]);
}

#[test]
fn stock_node_joins_two_dmq_rs_nodes() {
    start_cluster("mix2", vec![NodeConfig::default(), NodeConfig::default(), NodeConfig::stock()]);
}

#[test]
fn bad_notifications_get_a_reply_and_change_nothing() {
    // Kamailio 6 drops a datagram of msg_recv_max_size (default 32767) or
    // more before any module sees it: let the oversized body in.
    let core = "#!ifdef KAMAILIO_6\nmsg_recv_max_size=65535\n#!endif\n".into();
    let node = Node::start("bad-input", &NodeConfig { core, ..Default::default() });
    let before = node.rpc(&["dmq.list_nodes"]);
    let sock = UdpSocket::bind(format!("{}:0", allocate_address().ip())).unwrap();
    let from = sock.local_addr().unwrap();
    let big = vec![b'x'; 70 * 1024];
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("unparsable uri", kdmq(node.addr, from, "notification_peer", "text/plain", b"sip:@@bad\r\n"), "SIP/2.0 400"),
        (
            "unknown status",
            kdmq(node.addr, from, "notification_peer", "text/plain", b"sip:127.0.0.9:5090;status=zombie\r\n"),
            "SIP/2.0 400",
        ),
        ("binary junk", kdmq(node.addr, from, "notification_peer", "text/plain", b"\x00\xff\xfe\x01junk"), "SIP/2.0 400"),
        // Not a member: refused before the peer lookup (members_only).
        ("unknown peer", kdmq(node.addr, from, "no_such_peer", "text/plain", b""), "SIP/2.0 403"),
        (
            "no Content-Length",
            sip_request("KDMQ", "notification_peer", node.addr, from, "text/plain", b"sip:127.0.0.9:5090\r\n", None),
            "SIP/2.0 400",
        ),
        ("oversized body", kdmq(node.addr, from, "notification_peer", "text/plain", &big[..60000]), "SIP/2.0 400"),
    ];
    for (what, datagram, expected) in cases {
        let reply = node.sip_exchange(&sock, &datagram, Duration::from_secs(5));
        let reply = reply.unwrap_or_else(|| panic!("{what}: no reply"));
        assert!(reply.starts_with(expected), "{what}: {reply}");
    }
    assert_eq!(node.rpc(&["dmq.list_nodes"]), before, "node list changed");
    // Still serving: a good notification is merged and answered.
    let good = b"sip:127.0.0.9:5090;status=active\r\n";
    let reply = node.sip_exchange(&sock, &kdmq(node.addr, from, "notification_peer", "text/plain", good), Duration::from_secs(5));
    assert!(reply.unwrap_or_default().starts_with("SIP/2.0 200"));
    assert!(node.rpc(&["dmq.list_nodes"]).contains("host: 127.0.0.9"));
}

fn three_rs_nodes(label: &str, extra: &str) -> (Node, Node, Node) {
    let base = || NodeConfig { extra_routes: extra.to_string(), ..Default::default() };
    let mut nodes = start_cluster(label, vec![base(), base(), base()]).into_iter();
    let mut next = || nodes.next().expect("three nodes");
    (next(), next(), next())
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
    let events =
        "event_route[dmq:node-active] {\n\txlog(\"L_NOTICE\", \"DMQ-EVENT active $xavp(dmq_node=>uri) $xavp(dmq_node=>status)\\n\");\n}\n\
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
    // The name's DNS lookups go to a server of the test's own, which has
    // no records: /etc/hosts answers (no query leaves the machine).
    let dns = common::dns::Dns::start("multi-dns", &[], &[], 1);
    let b = Node::start(
        "multi-b",
        &NodeConfig { resolv_conf: Some(dns.resolv_conf()), ..Default::default() }
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

// ---- nodes named by host name -----------------------------------------------

/// A route that tells whether a request comes from a cluster node.
const FROM_NODE_ROUTE: &str = "if (is_method(\"KDMQ\")) { dmq_handle_message(); exit; }\n\
    \tif (is_method(\"OPTIONS\")) { if (dmq_is_from_node()) { sl_send_reply(\"200\", \"From a node\"); } \
    else { sl_send_reply(\"403\", \"Not a node\"); } exit; }\n\
    \tsl_send_reply(\"404\", \"Not here\");";

/// The entries of `dmq.list_nodes` as (host, resolved_ip, status).
fn listed(node: &Node) -> Vec<(String, String, String)> {
    let out = node.try_rpc(&["dmq.list_nodes"]).unwrap_or_default();
    out.split('}')
        .filter(|e| e.contains("host:"))
        .map(|e| {
            let field = |name: &str| reply_field::<String>(e, name).unwrap_or_default();
            (field("host"), field("resolved_ip"), field("status"))
        })
        .collect()
}

#[test]
fn nodes_named_by_host_name_get_their_addresses_and_are_known_by_them() {
    named_nodes(false);
}

/// The same with `trusted_network`: a new named node is judged by its
/// addresses, which the DMQ DNS process looks up (issue 26: never the SIP
/// worker that got the notification).
#[test]
fn named_nodes_are_judged_by_trusted_network_after_the_dns_process_looked_them_up() {
    named_nodes(true);
}

fn named_nodes(trusted: bool) {
    let dir = node_dir(if trusted { "names-hosts-trusted" } else { "names-hosts" });
    let addrs: Vec<SocketAddr> = (0..3).map(|_| allocate_address()).collect();
    let names = ["dmq-a.cluster.test", "dmq-b.cluster.test", "dmq-c.cluster.test"];
    let hosts = dir.join("hosts");
    let mut text = String::from("127.0.0.1 localhost\n");
    for (name, addr) in names.iter().zip(&addrs) {
        text += &format!("{} {name}\n", addr.ip());
    }
    std::fs::write(&hosts, text).unwrap();
    // DNS of the test's own, without records: the names come from the hosts
    // file (and no query leaves the machine).
    let dns = common::dns::Dns::start(if trusted { "names-dns-trusted" } else { "names-dns" }, &[], &[], 1);
    let config = |i: usize| {
        let c = NodeConfig {
            host_name: Some(names[i].to_string()),
            hosts: Some(hosts.clone()),
            resolv_conf: Some(dns.resolv_conf()),
            core: "use_dns_cache=no\n".into(),
            route: FROM_NODE_ROUTE.into(),
            ..Default::default()
        }
        .param("ping_interval", "2");
        let c = if trusted { c.param("trusted_network", "\"127.0.0.0/8\"") } else { c };
        if i == 0 {
            c
        } else {
            c.param("notification_address", &format!("\"sip:{}:{}\"", names[0], addrs[0].port()))
        }
    };
    let label = if trusted { "names-trusted" } else { "names" };
    let nodes: Vec<Node> = (0..3).map(|i| Node::start_at(&format!("{label}-{i}"), &config(i), addrs[i])).collect();

    // Every node lists all three by name, active, with the address the name stands for.
    for node in &nodes {
        let ok = node.wait_until(CONVERGE, |n| {
            let l = listed(n);
            l.len() == 3
                && names
                    .iter()
                    .zip(&addrs)
                    .all(|(name, addr)| l.iter().any(|(h, ip, st)| h == name && *ip == addr.ip().to_string() && st == "active"))
        });
        assert!(ok, "node {} lists {:?}", node.addr, listed(node));
    }

    // dmq_is_from_node() knows a request from a node's address, as stock does.
    let a = &nodes[0];
    let from_b = UdpSocket::bind(format!("{}:0", addrs[1].ip())).unwrap();
    let options = |from: &UdpSocket| sip_request("OPTIONS", "x", a.addr, from.local_addr().unwrap(), "text/plain", b"", Some(0));
    let reply = a.sip_exchange(&from_b, &options(&from_b), Duration::from_secs(5)).unwrap_or_default();
    assert!(reply.starts_with("SIP/2.0 200"), "from node b: {reply}");
    let stranger = UdpSocket::bind(format!("{}:0", allocate_address().ip())).unwrap();
    let reply = a.sip_exchange(&stranger, &options(&stranger), Duration::from_secs(5)).unwrap_or_default();
    assert!(reply.starts_with("SIP/2.0 403"), "from elsewhere: {reply}");
}

// ---- what keeps a node listed, and how many ---------------------------------

fn stat(node: &Node, name: &str) -> i64 {
    reply_field(&node.rpc(&["dmq.stats"]), name).unwrap_or(-1)
}

#[test]
fn a_node_that_refuses_pings_stays_listed_as_with_stock() {
    let node = Node::start("ping-403", &NodeConfig::default().param("ping_interval", "1"));
    let fake = FakeNode::new();
    fake.join(&node);
    // Several ping rounds answered 403: stock changes nothing for it.
    fake.answer_pings(403, Duration::from_secs(5));
    assert_eq!(status_of(&node, fake.addr).as_deref(), Some("active"), "{}", node.rpc(&["dmq.list_nodes"]));
}

#[test]
fn notifications_in_a_dead_nodes_name_do_not_keep_it_listed() {
    let node = Node::start("spoofed-alive", &NodeConfig::default().param("ping_interval", "1"));
    let fake = FakeNode::new();
    fake.join(&node);
    // The node stops answering pings; someone else keeps sending
    // notifications in its name (From: the fake node, body: it is active).
    let spoofer = UdpSocket::bind(format!("{}:0", allocate_address().ip())).unwrap();
    let body = format!("sip:{};status=active\r\n", fake.addr);
    let gone = node.wait_until(Duration::from_secs(8), |n| {
        // From: names the fake node; the packet comes from the spoofer.
        let request = kdmq(n.addr, fake.addr, "notification_peer", "text/plain", body.as_bytes());
        spoofer.send_to(&request, n.addr).unwrap();
        status_of(n, fake.addr).as_deref() != Some("active")
    });
    assert!(gone, "a node that answers no ping is still active: {}", node.rpc(&["dmq.list_nodes"]));
}

#[test]
fn a_flood_of_bogus_nodes_fills_the_list_to_its_limit_and_changes_still_hold() {
    let node = Node::start("node-limit", &NodeConfig::default().param("ping_interval", "1"));
    let sock = UdpSocket::bind(format!("{}:0", allocate_address().ip())).unwrap();
    let from = sock.local_addr().unwrap();
    // 600 made-up nodes on loopback addresses nobody listens on.
    let body: String = (0..600).map(|i| format!("sip:127.1.{}.{}:5090;status=active\r\n", i / 250, 1 + i % 250)).collect();
    let reply =
        node.sip_exchange(&sock, &kdmq(node.addr, from, "notification_peer", "text/plain", body.as_bytes()), Duration::from_secs(5));
    assert!(reply.unwrap_or_default().starts_with("SIP/2.0 200"));
    let limit: usize = reply_field(&node.rpc(&["dmq.stats"]), "node_limit").unwrap();
    let listed = |n: &Node| n.try_rpc(&["dmq.list_nodes"]).unwrap_or_default().matches("host:").count();
    assert_eq!(listed(&node), limit, "the list holds up to the limit");
    assert_eq!(stat(&node, "nodes_refused"), (600 + 1 - limit) as i64);
    assert!(node.log_text().contains("beyond the limit"), "the refusal is logged");
    // Changes are still saved: the made-up nodes answer no ping and go.
    assert!(node.wait_until(Duration::from_secs(10), |n| listed(n) == 1), "{} nodes still listed", listed(&node));
}
