//! Issue 3: the DMQ bus between real Kamailio nodes, pure and mixed
//! with the stock dmq.so, and bad notifications sent as raw UDP.

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
        ("unknown status", kdmq(node.addr, from, "notification_peer", "text/plain", b"sip:127.0.0.9:5090;status=zombie\r\n"), "SIP/2.0 400"),
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
