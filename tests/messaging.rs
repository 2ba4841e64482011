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

fn registrar_node(stock: bool) -> NodeConfig {
    let mut c = if stock { NodeConfig::stock() } else { NodeConfig::default() };
    c.consumers += "loadmodule \"kex.so\"\nloadmodule \"usrloc.so\"\nloadmodule \"registrar.so\"\nloadmodule \"dmq_usrloc.so\"\n\
                    modparam(\"usrloc\", \"db_mode\", 0)\nmodparam(\"dmq_usrloc\", \"enable\", 1)\n";
    c.route = "if (is_method(\"KDMQ\")) { dmq_handle_message(); exit; }\n\
               \tif (is_method(\"REGISTER\")) { if (!save(\"location\")) { sl_reply_error(); } exit; }\n\
               \tsl_send_reply(\"404\", \"Not here\");"
        .into();
    c
}

/// Contacts in the node's location table (usrloc's own statistic: a dump
/// of thousands of AoRs does not fit kamcmd's reply buffer).
fn aor_count(node: &Node) -> usize {
    let Ok(out) = node.try_rpc(&["stats.get_statistics", "all"]) else { return 0 };
    out.lines()
        .find_map(|l| l.trim().strip_prefix("usrloc:location_contacts = "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Sends `count` REGISTERs (one AoR each) to `node` with sipp, bounded.
fn register_with_sipp(node: &Node, count: usize, rate: usize) {
    let scenario = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/register.xml");
    let local = allocate_address();
    let mut cmd = std::process::Command::new("sipp");
    cmd.arg("-sf")
        .arg(&scenario)
        .args(["-m", &count.to_string(), "-r", &rate.to_string(), "-i", &local.ip().to_string()])
        .args(["-p", &local.port().to_string(), "-bg", "-trace_err", "-nostdin"])
        .arg(node.addr.to_string())
        .current_dir(&node.dir);
    // -bg would detach; run in the foreground instead so the wait is bounded.
    let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).filter(|a| a != "-bg").collect();
    let mut fg = std::process::Command::new("sipp");
    fg.args(&args).current_dir(&node.dir);
    let limit = Duration::from_secs(30 + (count / rate.max(1)) as u64 * 2);
    let (status, out, err) = run_bounded(fg, limit).expect("sipp ran");
    assert!(status.success(), "sipp failed ({status}):\n{out}\n{err}");
}

fn contacts_replicate(label: &str, kinds: [bool; 3], entry: usize) {
    let nodes = cluster(label, kinds.iter().map(|&stock| registrar_node(stock)).collect());
    register_with_sipp(&nodes[entry], 1000, 500);
    for node in &nodes {
        assert!(node.wait_until(REPLICATE, |n| aor_count(n) == 1000), "{} holds {} of 1000 AoRs", node.addr, aor_count(node));
    }
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
    let nodes = cluster("ul-join", vec![registrar_node(false), registrar_node(false)]);
    register_with_sipp(&nodes[0], 500, 500);
    for node in &nodes {
        assert!(node.wait_until(REPLICATE, |n| aor_count(n) == 500), "{} holds {} of 500 AoRs", node.addr, aor_count(node));
    }
    let late = Node::start("ul-join-late", &seeded(registrar_node(false), Some(nodes[0].addr)));
    assert!(late.wait_until(REPLICATE, |n| aor_count(n) == 500), "the joining node holds {} of 500 AoRs", aor_count(&late));
}
