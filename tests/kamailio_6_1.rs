//! What Kamailio 6.1 does differently, through dmq_rs on 6.1.
//! dmq_usrloc asks for the DMQ server socket (`get_dmq_server_socket`, the
//! fifth member of 6.1's `dmq_api_t`), dialog confirms a replicated dialog
//! on ACK, presence replicates subscriptions, `dmq.list_nodes` shows 6.1's
//! status words and `fail_count`, and 6.1's `fail_count_threshold_*`
//! parameters walk a dead node out. Stock 6.1 nodes in the same clusters
//! must never refuse a notification over its status words.
//!
//! These start Kamailio 6.1 themselves (from its Debian root), whatever the
//! run's release, so `make test` runs them once, in its host pass; without
//! a 6.1 root or build they fail, unless `DMQ_RS_ALLOW_SKIP=6.1`. The first
//! shows a 6.1 config's dmq parameters start dmq_rs on every release.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::*;

const REPLICATE: Duration = Duration::from_secs(20);

/// The log line stock 6.1 writes when a notification line has a status word
/// it does not know (and then drops the whole notification).
const REFUSED_WORD: &str = "invalid status parameter";

/// Whether the dmq_rs node's body check refused a consumer's body (400).
fn body_refused(node: &Node) -> bool {
    node.log_text().lines().any(|l| l.contains("KDMQ for") && l.contains("refused with 400"))
}

/// A dmq_rs node (or a stock one) on Kamailio 6.1.
fn k61(stock: bool) -> NodeConfig {
    if stock { NodeConfig::stock() } else { NodeConfig::default() }.on(Release::K61)
}

#[test]
fn a_6_1_config_starts_on_every_release() {
    let releases = [Release::Host, Release::K60, Release::K61];
    if !releases_available(&releases) {
        return;
    }
    for release in releases {
        let config = || {
            NodeConfig::default()
                .on(release)
                .param("remove_inactive", "0")
                .param("fail_count_enabled", "1")
                .param("fail_count_threshold_not_active", "1")
                .param("fail_count_threshold_disabled", "2")
        };
        let nodes = start_cluster(&format!("cfg61-{}", release.name()), vec![config(), config().param("fail_count_threshold", "3")]);
        for n in &nodes {
            assert_eq!(node_field(n, nodes[0].addr, "fail_count").as_deref(), Some("0"), "{}", n.rpc(&["dmq.list_nodes"]));
        }
        // The alias next to 6.1's thresholds is ignored, and says so.
        assert!(nodes[1].log_text().contains("is an alias of fail_count_threshold_not_active"), "{}", nodes[1].log_text());
    }
}

fn assert_no_refused_words(nodes: &[&Node]) {
    for n in nodes {
        assert!(!n.log_text().contains(REFUSED_WORD), "{} refused a status word:\n{}", n.addr, n.log_text());
    }
}

#[test]
fn dmq_usrloc_6_1_gets_the_server_socket_and_replicates_it() {
    if !releases_available(&[Release::K61]) {
        return;
    }
    // replicate_socket_info 3: contacts replicated with the socket that
    // get_dmq_server_socket named (dmq_usrloc looked it up at startup).
    let node = |stock: bool| {
        let base = k61(stock);
        let mut c = registrar(base);
        c.consumers += "modparam(\"dmq_usrloc\", \"replicate_socket_info\", 3)\n";
        c
    };
    let nodes = start_cluster("srvsock61", vec![node(false), node(false), node(true)]);
    for n in &nodes {
        let log = n.log_text();
        assert!(!log.contains("dmq local server socket"), "{}: dmq_usrloc did not find the DMQ socket:\n{log}", n.addr);
    }
    let (status, out, err) = sipp_register(nodes[0].addr, &nodes[0].dir, 50, 50);
    assert!(status.success(), "sipp failed ({status}):\n{out}\n{err}");
    for n in &nodes {
        assert!(n.wait_until(REPLICATE, |x| aor_count(x) == 50), "{} holds {} of 50 AoRs", n.addr, aor_count(n));
    }
    // The replicated contacts name the receiving node's own DMQ socket.
    let shown = nodes[1].rpc(&["ul.dump"]);
    assert!(shown.contains(&format!("udp:{}", nodes[1].addr)), "contacts on {} do not name its socket:\n{shown}", nodes[1].addr);
    assert!(!body_refused(&nodes[1]), "{}", nodes[1].log_text());
    assert_no_refused_words(&nodes.iter().collect::<Vec<_>>());
}

fn dialog_node(stock: bool) -> NodeConfig {
    let mut c = k61(stock);
    c.consumers += "loadmodule \"rr.so\"\nloadmodule \"siputils.so\"\nloadmodule \"dialog.so\"\nmodparam(\"dialog\", \"enable_dmq\", 1)\n";
    c.route = "if (is_method(\"KDMQ\")) { dmq_handle_message(); exit; }\n\
               \tif (has_totag()) { dlg_manage(); loose_route(); t_relay(); exit; }\n\
               \tif (is_method(\"INVITE\")) { dlg_manage(); record_route(); t_relay(); exit; }\n\
               \tsl_send_reply(\"404\", \"Not here\");"
        .into();
    c
}

/// How many dialogs `node` lists in state 4 (confirmed).
fn confirmed_dialogs(node: &Node) -> usize {
    let Ok(out) = node.try_rpc(&["dlg.list"]) else { return 0 };
    out.lines().filter(|l| l.trim() == "state: 4").count()
}

#[test]
fn dialog_6_1_confirms_replicated_dialogs_on_ack() {
    if !releases_available(&[Release::K61]) {
        return;
    }
    let nodes = start_cluster("dlg61", vec![dialog_node(false), dialog_node(false), dialog_node(true)]);
    let started = std::time::Instant::now();
    let _calls = hold_calls(&nodes[0], 4, 25_000);
    for n in &nodes {
        assert!(
            n.wait_until(REPLICATE, |x| confirmed_dialogs(x) == 4),
            "{} holds {} confirmed dialogs of 4:\n{}",
            n.addr,
            confirmed_dialogs(n),
            n.try_rpc(&["dlg.list"]).unwrap_or_default()
        );
    }
    assert!(started.elapsed() < Duration::from_secs(24), "the check outlasted the calls: {:?}", started.elapsed());
    // The calls hang up: every node ends the replicated dialogs too.
    for n in &nodes {
        assert!(
            n.wait_until(Duration::from_secs(40), |x| x.try_rpc(&["dlg.list"]).map(|o| !o.contains("call-id:")).unwrap_or(false)),
            "{} still holds dialogs after the BYEs:\n{}",
            n.addr,
            n.try_rpc(&["dlg.list"]).unwrap_or_default()
        );
    }
    assert!(!body_refused(&nodes[1]), "{}", nodes[1].log_text());
    assert_no_refused_words(&nodes.iter().collect::<Vec<_>>());
}

fn presence_node(stock: bool, label: &str) -> NodeConfig {
    let dbdir = db_text_schema_on(label, Release::K61);
    let mut c = k61(stock);
    c.consumers += &format!(
        "loadmodule \"db_text.so\"\nmodparam(\"db_text\", \"default_connection\", \"text://{db}\")\n\
         loadmodule \"presence.so\"\nloadmodule \"presence_xml.so\"\n\
         modparam(\"presence\", \"db_url\", \"text://{db}\")\nmodparam(\"presence\", \"enable_dmq\", 1)\n\
         modparam(\"presence\", \"enable_subs_dmq\", 1)\n\
         modparam(\"presence_xml\", \"db_url\", \"text://{db}\")\nmodparam(\"presence_xml\", \"force_active\", 1)\n",
        db = dbdir.display()
    );
    c.route = "if (is_method(\"KDMQ\")) { dmq_handle_message(); exit; }\n\
               \tif (is_method(\"PUBLISH\")) { handle_publish(); exit; }\n\
               \tif (is_method(\"SUBSCRIBE\")) { handle_subscribe(); exit; }\n\
               \tsl_send_reply(\"404\", \"Not here\");"
        .into();
    c
}

fn subscribe(to: SocketAddr, from: SocketAddr) -> String {
    let n = rand_tag();
    format!(
        "SUBSCRIBE sip:alice@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-sub{n}\r\n\
         From: <sip:bob@dmq.test>;tag=w{n}\r\nTo: <sip:alice@{to}>\r\nCall-ID: sub-{n}@{from}\r\nCSeq: 1 SUBSCRIBE\r\n\
         Contact: <sip:bob@{from}>\r\nEvent: presence\r\nExpires: 600\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn presence_6_1_replicates_subscriptions() {
    if !releases_available(&[Release::K61]) {
        return;
    }
    let configs = vec![presence_node(false, "pres61-0"), presence_node(false, "pres61-1"), presence_node(true, "pres61-2")];
    let nodes = start_cluster("pres61", configs);
    let sock = UdpSocket::bind(format!("{}:0", allocate_address().ip())).unwrap();
    let from = sock.local_addr().unwrap();
    let reply = nodes[0].sip_exchange(&sock, subscribe(nodes[0].addr, from).as_bytes(), Duration::from_secs(5)).unwrap_or_default();
    assert!(reply.starts_with("SIP/2.0 2"), "SUBSCRIBE was not accepted: {reply}");
    // presence names the presentity by user and host (no port).
    let pres_uri = format!("sip:alice@{}", nodes[0].addr.ip());
    for n in &nodes {
        let watched = |x: &Node| x.try_rpc(&["presence.watcher_list", "basic", &pres_uri]).map(|o| o.contains("bob")).unwrap_or(false);
        assert!(
            n.wait_until(REPLICATE, watched),
            "{} has no subscription of bob to {pres_uri}:\n{}",
            n.addr,
            n.try_rpc(&["presence.watcher_list", "basic", &pres_uri]).unwrap_or_default()
        );
    }
    // No body of 6.1's presence was refused by the body check.
    for n in &nodes[..2] {
        assert!(!body_refused(n), "{}:\n{}", n.addr, n.log_text());
    }
    assert_no_refused_words(&nodes.iter().collect::<Vec<_>>());
}

#[test]
fn a_dead_node_is_shown_in_6_1_words_and_no_notification_is_refused() {
    if !releases_available(&[Release::K61]) {
        return;
    }
    // dmq_rs with 6.1's fail count parameters, a dmq_rs node with the
    // earlier alias, a stock 6.1 node, and a plain dmq_rs node that dies.
    let counting = k61(false)
        .param("remove_inactive", "0")
        .param("fail_count_enabled", "1")
        .param("fail_count_threshold_not_active", "0")
        .param("fail_count_threshold_disabled", "3");
    let alias = k61(false).param("fail_count_enabled", "1").param("fail_count_threshold", "2");
    let mut nodes = start_cluster("words61", vec![counting, k61(true), alias, k61(false)]);
    let dead = nodes[3].addr;
    nodes[3].kill();
    // not_active after the first failure (a notification of a node that
    // has not noticed yet may show it active again).
    assert!(
        nodes[0].wait_until(Duration::from_secs(15), |n| matches!(status_of(n, dead).as_deref(), Some("not_active" | "disabled"))),
        "{} does not list the dead node not_active:\n{}",
        nodes[0].addr,
        nodes[0].rpc(&["dmq.list_nodes"])
    );
    assert!(
        node_field(&nodes[0], dead, "fail_count").and_then(|c| c.parse::<u32>().ok()).unwrap_or(0) >= 1,
        "{}",
        nodes[0].rpc(&["dmq.list_nodes"])
    );
    // (It goes past 3 failures; the stock node, which learns of the death
    // only from tm's 408 after its fr_timer, lists it active meanwhile and
    // brings it back: the unit tests of dmq_core::nodes follow the walk.)
    // A node joining while the other is down is taken in by all.
    let joiner = Node::start("words61-join", &seeded(k61(true), nodes[1].addr));
    let live: Vec<&Node> = vec![&nodes[0], &nodes[1], &nodes[2], &joiner];
    let all: Vec<SocketAddr> = live.iter().map(|n| n.addr).collect();
    for n in &live {
        assert!(
            n.wait_until(CONVERGE + CONVERGE, |x| all.iter().all(|a| status_of(x, *a).as_deref() == Some("active"))),
            "{} did not take the joiner in:\n{}",
            n.addr,
            n.try_rpc(&["dmq.list_nodes"]).unwrap_or_default()
        );
    }
    for n in &live {
        let out = n.rpc(&["dmq.list_nodes"]);
        for word in ["timeout", "pending", "not-active"] {
            assert!(!out.contains(&format!("status: {word}")), "{} shows a word 6.1 does not have:\n{out}", n.addr);
        }
    }
    assert_no_refused_words(&live);
}
