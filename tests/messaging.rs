//! Messages carried for other modules. The unmodified htable, dmq_usrloc,
//! dialog and presence modules from Debian bind to dmq_rs through bind_dmq
//! and replicate through it, in pure and mixed clusters and with the example
//! configs; a joining node syncs (from one node with `init_with_single`);
//! updates to a stalled node are retransmitted or batched until they arrive;
//! script peers, dmq_t_replicate, KEMI, and `dmq_process_custom` /
//! `dmq_handle_custom` handing a body to a consumer.

mod common;

use std::time::Duration;

use common::state::{ul_state, wait_converged};
use common::*;

const REPLICATE: Duration = Duration::from_secs(15);

fn htable_node(stock: bool) -> NodeConfig {
    with_htable(if stock { NodeConfig::stock() } else { NodeConfig::default() })
}

fn htable_value(node: &Node, key: &str) -> Option<String> {
    htable_get(node, "t", key)
}

fn htable_replicates(label: &str, kinds: [bool; 3]) {
    let nodes = start_cluster(label, kinds.iter().map(|&stock| htable_node(stock)).collect());
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

fn registrar_node(stock: bool) -> NodeConfig {
    registrar(if stock { NodeConfig::stock() } else { NodeConfig::default() })
}

/// Sends `count` REGISTERs (one AoR each) to `node` with sipp; all must succeed.
fn register_with_sipp(node: &Node, count: usize, rate: usize) {
    let (status, out, err) = sipp_register(node.addr, &node.dir, count, rate);
    assert!(status.success(), "sipp failed ({status}):\n{out}\n{err}");
}

fn contacts_replicate(label: &str, kinds: [bool; 3], entry: usize) {
    let nodes = start_cluster(label, kinds.iter().map(|&stock| registrar_node(stock)).collect());
    register_with_sipp(&nodes[entry], 1000, 500);
    for node in &nodes {
        assert!(node.wait_until(REPLICATE, |n| aor_count(n) == 1000), "{} holds {} of 1000 AoRs", node.addr, aor_count(node));
    }
    if !kinds[entry] {
        // A dmq_rs entry sent them itself, without tm, and is done with them.
        let entry = &nodes[entry];
        assert!(entry.wait_until(REPLICATE, |n| dmq_stat(n, "messages_in_flight") == Some(0)), "{:?}", entry.try_rpc(&["dmq.stats"]));
        // Each copy went alone or in a batch (dmq_usrloc's multi form, which
        // stock nodes read as well).
        let sent = dmq_stat(entry, "messages_sent_without_tm").unwrap_or(0) - dmq_stat(entry, "batches_sent").unwrap_or(0);
        assert!(sent + dmq_stat(entry, "messages_batched").unwrap_or(0) >= 2000, "{:?}", entry.try_rpc(&["dmq.stats"]));
        assert_eq!(dmq_stat(entry, "sent_through_tm_table_full"), Some(0));
    }
}

#[test]
fn updates_to_a_frozen_node_go_in_batches_and_all_arrive_stock_or_not() {
    // Both receivers stand still for a moment while REGISTERs come in: the
    // first update to each waits for its reply, the next ones wait in that
    // node's batch and go as dmq_usrloc `multi` messages once it answers.
    let nodes = start_cluster("batches", vec![registrar_node(false), registrar_node(false), registrar_node(true)]);
    nodes[1].pause();
    nodes[2].pause();
    register_with_sipp(&nodes[0], 200, 400);
    fault_lasts(Duration::from_millis(300));
    nodes[1].resume();
    nodes[2].resume();
    for node in &nodes {
        assert!(node.wait_until(REPLICATE, |n| aor_count(n) == 200), "{} holds {} of 200 AoRs", node.addr, aor_count(node));
    }
    let entry = &nodes[0];
    let stats = || entry.try_rpc(&["dmq.stats"]);
    assert!(entry.wait_until(REPLICATE, |n| dmq_stat(n, "messages_in_flight") == Some(0)), "{:?}", stats());
    let batched = dmq_stat(entry, "messages_batched").unwrap_or(0);
    assert!(batched > 0 && dmq_stat(entry, "batches_sent").unwrap_or(0) > 0, "no batch went out: {:?}", stats());
    assert_eq!(dmq_stat(entry, "messages_timed_out_without_tm"), Some(0), "{:?}", stats());
}

/// A figure from `kamcmd dmq.stats`.
fn dmq_stat(node: &Node, name: &str) -> Option<i64> {
    reply_field(&node.try_rpc(&["dmq.stats"]).ok()?, name)
}

#[test]
fn a_message_to_a_stalled_node_is_retransmitted_until_it_gets_there() {
    let nodes = start_cluster("retransmit", vec![htable_node(false), htable_node(false)]);
    nodes[1].pause();
    nodes[0].rpc(&["htable.seti", "t", "late", "5"]);
    // T1 is 500 ms: the first two retransmissions go out 0.5 s and 1.5 s
    // after the message (3 s allowed for a loaded machine).
    let resent = wait_for(Duration::from_secs(3), || dmq_stat(&nodes[0], "messages_retransmitted").unwrap_or(0) >= 2);
    let retransmissions = dmq_stat(&nodes[0], "messages_retransmitted").unwrap_or(0);
    nodes[1].resume();
    assert!(resent.is_some() && retransmissions >= 2, "{:?}", nodes[0].try_rpc(&["dmq.stats"]));
    assert!(nodes[1].wait_until(REPLICATE, |n| htable_value(n, "late").as_deref() == Some("5")), "the item never reached the stalled node");
    assert!(
        nodes[0].wait_until(REPLICATE, |n| dmq_stat(n, "messages_in_flight") == Some(0)),
        "still waiting: {:?}",
        nodes[0].try_rpc(&["dmq.stats"])
    );
    assert_eq!(dmq_stat(&nodes[0], "messages_timed_out_without_tm"), Some(0));
}

#[test]
fn dmq_usrloc_replicates_1000_registrations_between_dmq_rs_nodes() {
    contacts_replicate("ul-rs", [false, false, false], 0);
}

#[test]
fn dmq_usrloc_replicates_through_a_dmq_rs_entry_in_a_mixed_cluster() {
    contacts_replicate("ul-mix-rs", [true, true, false], 2);
}

#[test]
fn dmq_usrloc_replicates_through_a_stock_entry_in_a_mixed_cluster() {
    contacts_replicate("ul-mix-stock", [true, true, false], 0);
}

#[test]
fn joining_node_receives_existing_registrations_through_sync() {
    let nodes = start_cluster("ul-join", vec![registrar_node(false), registrar_node(false)]);
    register_with_sipp(&nodes[0], 500, 500);
    for node in &nodes {
        assert!(node.wait_until(REPLICATE, |n| aor_count(n) == 500), "{} holds {} of 500 AoRs", node.addr, aor_count(node));
    }
    let late = Node::start("ul-join-late", &seeded(registrar_node(false), nodes[0].addr));
    assert!(late.wait_until(REPLICATE, |n| aor_count(n) == 500), "the joining node holds {} of 500 AoRs", aor_count(&late));
}

/// A registrar that logs every dmq_usrloc sync request it receives (the
/// body `{"action":N}` alone).
fn logging_registrar(c: NodeConfig) -> NodeConfig {
    let mut c = registrar(c);
    c.route = format!(
        "if (is_method(\"KDMQ\") && $rU == \"usrloc\" && $cl < 20) {{ xlog(\"L_NOTICE\", \"SYNC-REQUEST from $si\\n\"); }}\n\t{}",
        c.route
    );
    c
}

/// Lines of the node's log that end with `line`.
fn count(node: &Node, line: &str) -> usize {
    node.log_text().lines().filter(|l| l.ends_with(line)).count()
}

#[test]
fn init_with_single_syncs_from_one_node() {
    let nodes = start_cluster("single", vec![logging_registrar(NodeConfig::default()), logging_registrar(NodeConfig::default())]);
    let dir = node_dir("single-sipp");
    let (status, _, err) = sipp_register(nodes[0].addr, &dir, 30, 100);
    assert!(status.success(), "sipp: {err}");
    assert!(nodes[1].wait_until(Duration::from_secs(10), |n| aor_count(n) == 30), "B did not get every registration");
    let c = logging_registrar(NodeConfig::default())
        .param("init_with_single", "1")
        .param("ping_interval", "2")
        .param("notification_address", &format!("\"sip:{}\"", nodes[0].addr))
        .param("notification_address", &format!("\"sip:{}\"", nodes[1].addr));
    // The control: a node that joins the same way without init_with_single
    // asks both (the count sees a second request when there is one).
    let d = logging_registrar(NodeConfig::default())
        .param("ping_interval", "2")
        .param("notification_address", &format!("\"sip:{}\"", nodes[0].addr))
        .param("notification_address", &format!("\"sip:{}\"", nodes[1].addr));
    let c = Node::start("single-c", &c);
    let d = Node::start("single-d", &d);
    assert_converged(&[&nodes[0], &nodes[1], &c, &d]);
    for joiner in [&c, &d] {
        assert!(joiner.wait_until(Duration::from_secs(10), |n| aor_count(n) == 30), "{} holds {} of 30", joiner.addr, aor_count(joiner));
    }
    // Each joiner holds the entry node's whole location table.
    wait_converged(&nodes[0], &[&nodes[1], &c, &d], Duration::from_secs(10), ul_state);
    // Nodes asked (a request resent by tm is logged again: count nodes).
    let asked = |from: &Node| -> usize { nodes.iter().filter(|n| count(n, &format!("SYNC-REQUEST from {}", from.addr.ip())) > 0).count() };
    let asked_both = wait_for(Duration::from_secs(10), || asked(&d) == 2);
    assert!(asked_both.is_some(), "the control node asked {} nodes, not both", asked(&d));
    // C started before D: its requests were logged before D's.
    assert_eq!(asked(&c), 1, "the joining node asked {} nodes, not one", asked(&c));
}

#[test]
fn dmq_t_replicate_copies_registers_to_the_other_nodes_without_loops() {
    let node = || {
        let mut c = NodeConfig::default();
        c.consumers +=
            "loadmodule \"kex.so\"\nloadmodule \"usrloc.so\"\nloadmodule \"registrar.so\"\nmodparam(\"usrloc\", \"db_mode\", 0)\n";
        // dmq_t_replicate returns 0 on success, which ends the route (as
        // with the stock module): save first, replicate last.
        // A copy from a node is logged as such: a loop (a copy taken for a
        // phone's REGISTER and replicated again) would log none.
        c.route = "if (is_method(\"KDMQ\")) { dmq_handle_message(); exit; }\n\
                   \tif (is_method(\"REGISTER\")) {\n\t\tif (!save(\"location\")) { sl_reply_error(); }\n\
                   \t\tif (!dmq_is_from_node()) { dmq_t_replicate(); }\n\
                   \t\telse { xlog(\"L_NOTICE\", \"COPY-FROM-NODE $ci $si\\n\"); }\n\t\texit;\n\t}\n\
                   \tsl_send_reply(\"404\", \"Not here\");"
            .into();
        c
    };
    let nodes = start_cluster("trepl", vec![node(), node(), node()]);
    register_with_sipp(&nodes[1], 50, 100);
    for n in &nodes {
        assert!(n.wait_until(REPLICATE, |x| aor_count(x) == 50), "{} holds {} of 50", n.addr, aor_count(n));
    }
    // No loops: each other node took each REGISTER as a node's copy from
    // the entry node alone (the positive control: a loop replicates copies
    // instead of logging them, or logs another sender), and none came
    // back to the entry node. tm may resend a copy: a Call-ID counts once.
    let copies = |n: &Node| -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
        let mut by_call = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
        for l in n.log_text().lines() {
            if let Some((call, from)) = l.split("COPY-FROM-NODE ").nth(1).and_then(|rest| rest.split_once(' ')) {
                by_call.entry(call.to_string()).or_default().insert(from.trim().to_string());
            }
        }
        by_call
    };
    let entry_ip = nodes[1].addr.ip().to_string();
    for n in [&nodes[0], &nodes[2]] {
        let all = wait_for(REPLICATE, || copies(n).len() >= 50);
        let got = copies(n);
        assert!(all.is_some(), "{} took {} of 50 REGISTERs as a node's copy", n.addr, got.len());
        let others: Vec<_> = got.iter().filter(|(_, from)| from.iter().any(|f| *f != entry_ip)).collect();
        assert!(others.is_empty(), "{} took copies from another node than the entry: {others:?}", n.addr);
    }
    // A copy that looped back would come within a round trip of the others.
    observe(Duration::from_secs(1));
    assert!(copies(&nodes[1]).is_empty(), "copies came back to the entry node: {:?}", copies(&nodes[1]));
    for n in &nodes {
        assert_eq!(aor_count(n), 50);
        assert!(!n.log_text().contains("t_replicate to"), "replication errors on {}", n.addr);
    }
}

#[test]
fn dmq_bcast_message_from_the_script_reaches_every_node() {
    let node = || NodeConfig {
        route: "if (is_method(\"KDMQ\") && $rU == \"app\") {\n\
                \t\txlog(\"L_NOTICE\", \"APP-MSG $rb from $si\\n\");\n\t\tdmq_handle_message();\n\t\texit;\n\t}\n\
                \tif (is_method(\"KDMQ\")) { dmq_handle_message(); exit; }\n\
                \tif (is_method(\"MESSAGE\")) {\n\t\tdmq_bcast_message(\"app\", \"$rb\", \"text/plain\");\n\
                \t\tsl_send_reply(\"200\", \"Broadcast\");\n\t\texit;\n\t}\n\
                \tsl_send_reply(\"404\", \"Not here\");"
            .into(),
        ..Default::default()
    };
    let nodes = start_cluster("bcast", vec![node(), node(), node()]);
    // The receiving nodes learn the "app" peer the way the stock module's
    // users do: each node broadcasts once, which registers it everywhere.
    let sock = std::net::UdpSocket::bind(format!("{}:0", allocate_address().ip())).unwrap();
    let from = sock.local_addr().unwrap();
    for (i, n) in nodes.iter().enumerate() {
        let body = format!("hello-{i}");
        let msg = sip_request("MESSAGE", "app", n.addr, from, "text/plain", body.as_bytes(), Some(body.len()));
        let reply = n.sip_exchange(&sock, &msg, Duration::from_secs(5)).unwrap_or_default();
        assert!(reply.starts_with("SIP/2.0 200"), "{reply}");
    }
    for (i, sender) in nodes.iter().enumerate() {
        for n in nodes.iter().filter(|n| n.addr != sender.addr) {
            let line = format!("APP-MSG hello-{i} from {}", sender.addr.ip());
            assert!(n.wait_until(REPLICATE, |x| x.log_text().contains(&line)), "{} did not get {line}", n.addr);
        }
    }
}

#[test]
fn dialog_and_presence_bind_with_enable_dmq() {
    let node = || {
        let mut c = NodeConfig::default();
        c.consumers += "loadmodule \"rr.so\"\nloadmodule \"dialog.so\"\nmodparam(\"dialog\", \"enable_dmq\", 1)\n\
                        loadmodule \"db_text.so\"\nloadmodule \"presence.so\"\n\
                        modparam(\"presence\", \"db_url\", \"text://{DBDIR}\")\nmodparam(\"presence\", \"enable_dmq\", 1)\n";
        c
    };
    // presence needs its tables: a copy of the db_text schema Kamailio installs.
    let dbdir = db_text_schema("dlg-dbtext");
    let configs: Vec<NodeConfig> = (0..2)
        .map(|_| {
            let mut c = node();
            c.consumers = c.consumers.replace("{DBDIR}", &dbdir.display().to_string());
            c
        })
        .collect();
    let nodes = start_cluster("dlg", configs);
    for n in &nodes {
        let log = n.log_text();
        assert!(log.contains("DMQ peer \"dialog\" registered"), "dialog did not bind on {}", n.addr);
        assert!(log.contains("DMQ peer \"presence\" registered"), "presence did not bind on {}", n.addr);
    }
}

#[test]
fn kemi_lua_script_runs_a_node() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kemi/dmq.lua");
    let c = NodeConfig {
        route: String::new(), // a native request_route would take precedence
        consumers: format!("loadmodule \"app_lua.so\"\nmodparam(\"app_lua\", \"load\", \"{}\")\ncfgengine \"lua\"\n", script.display()),
        ..Default::default()
    };
    let nodes = start_cluster("kemi", vec![c.clone(), c]);
    for n in &nodes {
        assert!(
            n.wait_until(Duration::from_secs(5), |x| x.log_text().contains("KEMI dmq: notification_peer")),
            "the Lua route did not run on {}",
            n.addr
        );
    }
}

/// A node whose request route hands an OPTIONS body to htable through the
/// custom functions: user `process` (at once) or `handle` (a DMQ worker);
/// 200 when the function returned true, 500 otherwise.
fn custom_node() -> NodeConfig {
    let mut c = with_htable(NodeConfig::default());
    c.route = "if (is_method(\"KDMQ\")) { dmq_handle_message(); exit; }\n\
        \tif ($rU == \"process\") { if (dmq_process_custom(\"$hdr(X-Peer)\", \"sip:127.0.9.9:5060\", \"$rb\", \"application/json\")) { sl_send_reply(\"200\", \"OK\"); } else { sl_send_reply(\"500\", \"Refused\"); } exit; }\n\
        \tif ($rU == \"handle\") { if (dmq_handle_custom(\"$hdr(X-Peer)\", \"sip:127.0.9.9:5060\", \"$rb\", \"application/json\")) { sl_send_reply(\"200\", \"OK\"); } else { sl_send_reply(\"500\", \"Refused\"); } exit; }\n\
        \tsl_send_reply(\"404\", \"Not here\");"
        .into();
    c
}

#[test]
fn custom_functions_reach_a_consumer_with_admission_checks() {
    let node = Node::start("custom", &custom_node());
    let sock = std::net::UdpSocket::bind(format!("{}:0", allocate_address().ip())).unwrap();
    let send = |user: &str, peer: &str, body: &str| send_options(&node, &sock, user, peer, body);
    let set = htable_set;
    assert!(send("process", "htable", &set("p", 7)).starts_with("SIP/2.0 200"));
    assert_eq!(htable_get(&node, "t", "p").as_deref(), Some("7"));
    assert!(send("handle", "htable", &set("h", 8)).starts_with("SIP/2.0 200"));
    assert!(node.wait_until(Duration::from_secs(3), |n| htable_get(n, "t", "h").as_deref() == Some("8")));
    // A body htable would choke on, an unknown peer, a bad node: refused.
    for (user, peer, body) in
        [("process", "htable", "{\"action\":2,\"htname\""), ("handle", "htable", "[1,2"), ("process", "nosuchpeer", &set("x", 1))]
    {
        let reply = send(user, peer, body);
        assert!(reply.starts_with("SIP/2.0 500"), "{user} {peer} {body}: {reply}");
    }
    assert_eq!(htable_get(&node, "t", "x"), None);
    assert_eq!(reply_field::<u64>(&node.rpc(&["dmq.stats"]), "refused_bad_json"), Some(2), "refused bodies are counted as from the wire");
    assert!(node.log_text().contains("no DMQ peer \"nosuchpeer\""));
}

/// Dialogs in a node's table, as `dlg.list` shows them.
fn dialog_call_ids(node: &Node) -> Vec<String> {
    let Ok(out) = node.try_rpc(&["dlg.list"]) else { return Vec::new() };
    out.lines().filter_map(|l| l.trim().strip_prefix("call-id:").map(|v| v.trim().to_string())).collect()
}

#[test]
fn dialogs_created_on_one_node_are_known_to_the_others() {
    dialogs_replicate("dlg-rs", [false, false, false]);
}

#[test]
fn dialogs_replicate_in_a_mixed_cluster() {
    dialogs_replicate("dlg-mix", [false, true, true]);
}

fn dialogs_replicate(label: &str, kinds: [bool; 3]) {
    let node = |stock: bool| {
        let mut c = if stock { NodeConfig::stock() } else { NodeConfig::default() };
        c.consumers +=
            "loadmodule \"rr.so\"\nloadmodule \"siputils.so\"\nloadmodule \"dialog.so\"\nmodparam(\"dialog\", \"enable_dmq\", 1)\n";
        c.route = "if (is_method(\"KDMQ\")) { dmq_handle_message(); exit; }\n\
                   \tif (has_totag()) { if (loose_route()) { t_relay(); } else { t_check_trans(); } exit; }\n\
                   \tif (is_method(\"INVITE\")) { dlg_manage(); record_route(); t_relay(); exit; }\n\
                   \tsl_send_reply(\"404\", \"Not here\");"
            .into();
        c
    };
    let nodes = start_cluster(label, kinds.iter().map(|&stock| node(stock)).collect());
    let _calls = hold_calls(&nodes[0], 5, 20_000);
    assert_dialogs_replicated(&nodes, 5);
}

/// The first node holds `count` dialogs, and every other node the same ones.
fn assert_dialogs_replicated(nodes: &[Node], count: usize) {
    let sorted_ids = |n: &Node| {
        let mut ids = dialog_call_ids(n);
        ids.sort();
        ids
    };
    let entry = &nodes[0];
    assert!(entry.wait_until(REPLICATE, |n| dialog_call_ids(n).len() == count), "the entry node holds {:?}", dialog_call_ids(entry));
    let created = sorted_ids(entry);
    for n in &nodes[1..] {
        assert!(
            n.wait_until(REPLICATE, |x| sorted_ids(x) == created),
            "{} holds {:?}, the entry node {:?}",
            n.addr,
            sorted_ids(n),
            created
        );
    }
}

fn example(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cfg-examples").join(name)
}

/// Two nodes running an example config as it is, the second seeded from the first.
fn example_cluster(name: &str) -> Vec<Node> {
    let first = Node::start_example(name, &example(name), None);
    let second = Node::start_example(name, &example(name), Some(first.addr));
    let nodes = vec![first, second];
    let all: Vec<_> = nodes.iter().map(|n| n.addr).collect();
    for n in &nodes {
        assert!(n.wait_until(CONVERGE, |x| lists_all_active(x, &all)), "{name}: {} did not converge", n.addr);
    }
    nodes
}

#[test]
fn registrar_example_replicates_registrations() {
    let nodes = example_cluster("registrar-cluster.cfg");
    register_with_sipp(&nodes[1], 50, 50);
    for n in &nodes {
        assert!(n.wait_until(REPLICATE, |x| aor_count(x) == 50), "{} holds {} of 50 AoRs", n.addr, aor_count(n));
    }
}

#[test]
fn htable_example_replicates_items() {
    let nodes = example_cluster("htable-cluster.cfg");
    let table = std::fs::read_to_string(example("htable-cluster.cfg")).unwrap();
    let name = table
        .split("modparam(\"htable\", \"htable\", \"")
        .nth(1)
        .and_then(|t| t.split("=>").next())
        .expect("a table in the example")
        .to_string();
    nodes[1].rpc(&["htable.seti", &name, "example", "42"]);
    assert!(
        nodes[0].wait_until(REPLICATE, |n| htable_get(n, &name, "example").as_deref() == Some("42")),
        "the item did not reach {}",
        nodes[0].addr
    );
}

#[test]
fn dialog_example_replicates_dialogs() {
    let nodes = example_cluster("dialog-cluster.cfg");
    let _calls = hold_calls(&nodes[0], 3, 20_000);
    assert_dialogs_replicated(&nodes, 3);
}

#[test]
fn presence_publications_replicate() {
    // Each node keeps its presentities in its own db_text copy of Kamailio's
    // schema; db_text.query reads them back over RPC.
    let configs: Vec<NodeConfig> = (0..3)
        .map(|i| {
            let dbdir = db_text_schema(&format!("pres-db{i}"));
            let mut c = NodeConfig::default();
            c.consumers += &format!(
                "loadmodule \"db_text.so\"\nmodparam(\"db_text\", \"default_connection\", \"text://{db}\")\n\
                 loadmodule \"presence.so\"\nloadmodule \"presence_xml.so\"\n\
                 modparam(\"presence\", \"db_url\", \"text://{db}\")\nmodparam(\"presence\", \"enable_dmq\", 1)\n\
                 modparam(\"presence_xml\", \"db_url\", \"text://{db}\")\nmodparam(\"presence_xml\", \"force_active\", 1)\n",
                db = dbdir.display()
            );
            c.route = "if (is_method(\"KDMQ\")) { dmq_handle_message(); exit; }\n\
                       \tif (is_method(\"PUBLISH\")) { handle_publish(); exit; }\n\
                       \tsl_send_reply(\"404\", \"Not here\");"
                .into();
            c
        })
        .collect();
    let nodes = start_cluster("pres", configs);
    let sock = std::net::UdpSocket::bind(format!("{}:0", allocate_address().ip())).unwrap();
    let from = sock.local_addr().unwrap();
    let pidf = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:alice@{to}\">\
         <tuple id=\"t1\"><status><basic>open</basic></status></tuple></presence>",
        to = nodes[0].addr
    );
    let publish =
        String::from_utf8(sip_request("PUBLISH", "alice", nodes[0].addr, from, "application/pidf+xml", pidf.as_bytes(), Some(pidf.len())))
            .unwrap()
            .replacen("Content-Type:", "Event: presence\r\nExpires: 600\r\nContent-Type:", 1);
    let reply = nodes[0].sip_exchange(&sock, publish.as_bytes(), Duration::from_secs(5)).unwrap_or_default();
    assert!(reply.starts_with("SIP/2.0 200"), "PUBLISH was not accepted: {reply}");
    let holds_alice =
        |n: &Node| n.try_rpc(&["db_text.query", "select username,event from presentity"]).map(|o| o.contains("alice")).unwrap_or(false);
    for n in &nodes {
        assert!(n.wait_until(REPLICATE, holds_alice), "{} has no presentity for alice", n.addr);
    }
}
