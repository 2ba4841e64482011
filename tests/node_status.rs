//! The node list as scripts and operators follow and steer it, with real
//! Kamailio nodes: the peer event routes (`dmq:peer-up/down/disabled`) fire
//! once per transition, also for a dead node walking out and coming back,
//! and `event_callback` hands them to a KEMI function; `dmq.change_status`
//! changes a node's status (and so where replication goes) and refuses bad
//! arguments; `dmq.add` makes a node that joins. (Upstream master's newer
//! surface, issue 25.)

mod common;

use std::time::Duration;

use common::*;

/// The peer event routes, each logging its event and `$ru`.
const PEER_ROUTES: &str = "event_route[dmq:peer-up] {\n\txlog(\"L_NOTICE\", \"PEER-EVENT up $ru\\n\");\n}\n\
    event_route[dmq:peer-down] {\n\txlog(\"L_NOTICE\", \"PEER-EVENT down $ru\\n\");\n}\n\
    event_route[dmq:peer-disabled] {\n\txlog(\"L_NOTICE\", \"PEER-EVENT disabled $ru\\n\");\n}\n\
    event_route[dmq:node-active] {\n\txlog(\"L_NOTICE\", \"NODE-EVENT active $xavp(dmq_node=>uri)\\n\");\n}\n";

/// The fault an RPC answers with (kamcmd prints it; the test fails on a
/// success).
fn fault_of(node: &Node, args: &[&str]) -> String {
    let out = node.try_rpc(args).unwrap_or_else(|e| e);
    assert!(out.contains("error"), "{args:?} succeeded: {out}");
    out
}

fn count(node: &Node, line: &str) -> usize {
    node.log_text().lines().filter(|l| l.ends_with(line)).count()
}

/// Waits until `line` was logged `n` times (the positive control: the
/// event fired and its line is seen), then watches for half a second that
/// it stays `n`; returns the count.
fn settle_count(node: &Node, line: &str, n: usize) -> usize {
    node.wait_until(Duration::from_secs(5), |x| count(x, line) >= n);
    observe(Duration::from_millis(500));
    count(node, line)
}

#[test]
fn peer_events_fire_once_per_transition_and_change_status_refuses_bad_arguments() {
    // No ping rounds during the test: every transition is the RPC's.
    let mut c = NodeConfig::default().param("ping_interval", "600");
    c.extra_routes = PEER_ROUTES.into();
    let a = Node::start("peerev-a", &c);
    let b = Node::start("peerev-b", &c.clone().param("notification_address", &format!("\"sip:{}\"", a.addr)));
    assert_converged(&[&a, &b]);
    let bu = format!("sip:{}", b.addr);
    assert_eq!(settle_count(&a, &format!("PEER-EVENT up {bu}"), 1), 1, "one peer-up for the joining node");
    assert_eq!(count(&a, &format!("NODE-EVENT active {bu}")), 1, "dmq_rs's own node-active still runs");
    // disabled, again disabled (no change), active, not_active
    assert!(a.rpc(&["dmq.change_status", &bu, "disabled"]).contains("changed"));
    assert_eq!(status_of(&a, b.addr).as_deref(), Some("disabled"));
    assert!(a.rpc(&["dmq.change_status", &bu, "disabled"]).contains("already"));
    assert_eq!(settle_count(&a, &format!("PEER-EVENT disabled {bu}"), 1), 1);
    a.rpc(&["dmq.change_status", &bu, "active"]);
    assert_eq!(settle_count(&a, &format!("PEER-EVENT up {bu}"), 2), 2);
    a.rpc(&["dmq.change_status", &bu, "not_active"]);
    assert_eq!(settle_count(&a, &format!("PEER-EVENT down {bu}"), 1), 1);
    assert_ne!(status_of(&a, b.addr).as_deref(), Some("active"));
    // Bad arguments: a fault and a log line; nothing changes.
    let before = a.rpc(&["dmq.list_nodes"]);
    for (args, fault) in [
        (vec!["dmq.change_status", bu.as_str(), "sleepy"], "Invalid Status"),
        (vec!["dmq.change_status", "127.0.0.1:x", "active"], "Invalid Parameters"),
        (vec!["dmq.change_status", "sip:127.0.250.250:5060", "active"], "Node Not Found"),
        (vec!["dmq.change_status", &format!("sip:{}", a.addr), "disabled"], "Node is local"),
        (vec!["dmq.change_status", bu.as_str()], "Invalid Parameters"),
    ] {
        let err = fault_of(&a, &args);
        assert!(err.contains(fault), "{args:?}: {err}");
    }
    assert_eq!(a.rpc(&["dmq.list_nodes"]), before, "a refused change changed the list");
    assert!(a.log_text().contains("dmq.change_status \"sip:127.0.250.250:5060\""), "no log line for a refused change");
    // A node that leaves (clean stop: it announces itself disabled).
    a.rpc(&["dmq.change_status", &bu, "active"]);
    assert_eq!(settle_count(&a, &format!("PEER-EVENT up {bu}"), 3), 3);
    drop(b);
    assert_eq!(settle_count(&a, &format!("PEER-EVENT disabled {bu}"), 2), 2);
    assert_eq!(count(&a, &format!("PEER-EVENT down {bu}")), 1);
}

#[test]
fn change_status_reaches_replication() {
    // A disabled node gets no replicated change; made active again, it does.
    let c = with_htable(NodeConfig::default().param("ping_interval", "600"));
    let a = Node::start("repl-a", &c);
    let b = Node::start("repl-b", &c.clone().param("notification_address", &format!("\"sip:{}\"", a.addr)));
    assert_converged(&[&a, &b]);
    let bu = format!("sip:{}", b.addr);
    a.rpc(&["dmq.change_status", &bu, "disabled"]);
    a.rpc(&["htable.seti", "t", "k1", "1"]);
    a.rpc(&["dmq.change_status", &bu, "active"]);
    a.rpc(&["htable.seti", "t", "k2", "2"]);
    assert!(b.wait_until(Duration::from_secs(5), |n| htable_get(n, "t", "k2").as_deref() == Some("2")), "not replicated once active again");
    // k2, written after k1 on the same path, arrived: k1 would have too.
    assert_eq!(htable_get(&b, "t", "k1"), None, "a disabled node got a replicated item");
}

#[test]
fn event_callback_calls_a_lua_function() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kemi/peer_events.lua");
    let mut c = with_htable(NodeConfig::default().param("ping_interval", "600").param("event_callback", "\"ksr_dmq_event\""));
    c.route = String::new();
    c.consumers += &format!("loadmodule \"app_lua.so\"\nmodparam(\"app_lua\", \"load\", \"{}\")\ncfgengine \"lua\"\n", script.display());
    let a = Node::start("evcb-a", &c);
    let b = Node::start(
        "evcb-b",
        &NodeConfig::default().param("ping_interval", "600").param("notification_address", &format!("\"sip:{}\"", a.addr)),
    );
    assert_converged(&[&a, &b]);
    let bu = format!("sip:{}", b.addr);
    assert_eq!(settle_count(&a, &format!("LUA-DMQ-EVENT dmq:peer-up {bu}"), 1), 1, "the Lua function got no peer-up");
    a.rpc(&["dmq.change_status", &bu, "disabled"]);
    assert_eq!(settle_count(&a, &format!("LUA-DMQ-EVENT dmq:peer-disabled {bu}"), 1), 1);
    // KSR.dmq.process_custom_message / handle_custom_message
    let sock = std::net::UdpSocket::bind(format!("{}:0", allocate_address().ip())).unwrap();
    assert!(send_options(&a, &sock, "process", "htable", &htable_set("p", 5)).starts_with("SIP/2.0 200"));
    assert_eq!(htable_get(&a, "t", "p").as_deref(), Some("5"));
    assert!(send_options(&a, &sock, "handle", "htable", &htable_set("h", 6)).starts_with("SIP/2.0 200"));
    assert!(a.wait_until(Duration::from_secs(3), |n| htable_get(n, "t", "h").as_deref() == Some("6")));
    assert!(send_options(&a, &sock, "process", "htable", "{\"action\":2,").starts_with("SIP/2.0 500"));
}

#[test]
fn dmq_add_makes_a_node_that_joins() {
    let c = NodeConfig::default().param("ping_interval", "2");
    let a = Node::start("add-a", &c);
    let b = Node::start("add-b", &c);
    let bu = format!("sip:{}", b.addr);
    assert!(a.rpc(&["dmq.add", &bu]).contains("added"));
    assert_converged(&[&a, &b]);
    let before = a.rpc(&["dmq.list_nodes"]);
    for (arg, fault) in [(bu.as_str(), "already"), ("not a uri", "Invalid Parameters"), ("sip:", "Invalid Parameters")] {
        let err = fault_of(&a, &["dmq.add", arg]);
        assert!(err.contains(fault), "dmq.add {arg:?}: {err}");
    }
    assert!(fault_of(&a, &["dmq.add"]).contains("Invalid Parameters"));
    assert_eq!(a.rpc(&["dmq.list_nodes"]), before);
    assert!(a.log_text().contains("dmq.add \"not a uri\""), "no log line for a refused dmq.add");
}

#[test]
fn a_dead_node_goes_down_then_disabled_once_and_up_once_when_back() {
    // fail_count_enabled (6.1's thresholds, defaults): a node that stops
    // answering goes not_active (peer-down), then disabled (peer-disabled),
    // then leaves the list (no event).
    let mut c = NodeConfig::default().param("ping_interval", "1").param("fail_count_enabled", "1");
    c.extra_routes = PEER_ROUTES.into();
    let a = Node::start("down-a", &c);
    let seeded_c = c.clone().param("notification_address", &format!("\"sip:{}\"", a.addr));
    let mut b = Node::start("down-b", &seeded_c);
    assert_converged(&[&a, &b]);
    let (b_addr, bu) = (b.addr, format!("sip:{}", b.addr));
    b.kill();
    assert!(a.wait_until(Duration::from_secs(10), |n| count(n, &format!("PEER-EVENT down {bu}")) >= 1), "no peer-down for the killed node");
    // Once it left the list (its last transition, after more failed
    // pings): one of each.
    // (The list answered, and without it: a failed RPC is not "gone".)
    let gone = |n: &Node| n.try_rpc(&["dmq.list_nodes"]).is_ok_and(|list| list_entry(&list, b_addr).is_none());
    let left = a.wait_until(Duration::from_secs(20), gone);
    assert!(left, "the dead node stays listed: {}", a.rpc(&["dmq.list_nodes"]));
    assert_eq!(count(&a, &format!("PEER-EVENT down {bu}")), 1);
    assert_eq!(count(&a, &format!("PEER-EVENT disabled {bu}")), 1);
    let b = Node::start_at("down-b2", &seeded_c, b_addr);
    assert_converged(&[&a, &b]);
    assert_eq!(settle_count(&a, &format!("PEER-EVENT up {bu}"), 2), 2, "one peer-up at the join, one at the return");
}
