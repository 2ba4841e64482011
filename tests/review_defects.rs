//! Issue 14: defects found in review, each shown against real Kamailio
//! processes (host-named nodes, replies a common reply route drops, 503s on
//! the tm path, forged replies, the Via of peer messages, a full node store,
//! node states that differ from stock).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::*;

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
    let dir = node_dir("names-hosts");
    let addrs: Vec<SocketAddr> = (0..3).map(|_| allocate_address()).collect();
    let names = ["dmq-a.cluster.test", "dmq-b.cluster.test", "dmq-c.cluster.test"];
    let hosts = dir.join("hosts");
    let mut text = String::from("127.0.0.1 localhost\n");
    for (name, addr) in names.iter().zip(&addrs) {
        text += &format!("{} {name}\n", addr.ip());
    }
    std::fs::write(&hosts, text).unwrap();
    let config = |i: usize| {
        let c = NodeConfig {
            host_name: Some(names[i].to_string()),
            hosts: Some(hosts.clone()),
            core: "use_dns_cache=no\n".into(),
            route: FROM_NODE_ROUTE.into(),
            ..Default::default()
        }
        .param("ping_interval", "2");
        if i == 0 { c } else { c.param("notification_address", &format!("\"sip:{}:{}\"", names[0], addrs[0].port())) }
    };
    let nodes: Vec<Node> = (0..3).map(|i| Node::start_at(&format!("names-{i}"), &config(i), addrs[i])).collect();

    // Every node lists all three by name, active, with the address the name stands for.
    for node in &nodes {
        let ok = node.wait_until(CONVERGE, |n| {
            let l = listed(n);
            l.len() == 3
                && names.iter().zip(&addrs).all(|(name, addr)| {
                    l.iter().any(|(h, ip, st)| h == name && *ip == addr.ip().to_string() && st == "active")
                })
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
