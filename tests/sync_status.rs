//! Issue 33: a node knows when it holds the cluster's state. Each
//! consumer's sync is followed until every asked node answered and all it
//! sent arrived (`dmq.sync_status`, `dmq_is_synced()`, the `synced`
//! statistic), and `dmq.resync` asks again. Checked by state: when a node
//! first says it is synced, its dump equals the donor's.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::state::{diff, htable_state, ul_state, wait_converged};
use common::{
    aor_count, node_dir, registrar, reply_field, seeded, sipp_register, start_cluster, sync_state, tls_left_out, with_htable, DmqTransport,
    Node, NodeConfig, Release,
};

/// The probes' port (kubernetes.cfg's HTTP_LISTEN) on each pod's address.
const HTTP_PORT: u16 = 8080;

fn kubernetes_cfg() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cfg-examples/kubernetes.cfg")
}

/// A pod of cfg-examples/kubernetes.cfg as it is, on its own address
/// (the pod network: 127.0.0.0/8 here), joining through `seed`.
fn pod(label: &str, seed: Option<SocketAddr>, shm_mb: u32) -> Node {
    let more = |addr: SocketAddr| vec![format!("HTTP_LISTEN=tcp:{}:{HTTP_PORT}", addr.ip()), "POD_NETWORK=\"127.0.0.0/8\"".to_string()];
    Node::start_example_with(Release::suite(), label, &kubernetes_cfg(), seed, more, shm_mb)
}

/// The status code of `GET path` on the pod's HTTP port (None: no answer
/// within a second).
fn http_status(node: &Node, path: &str) -> Option<u16> {
    let to = SocketAddr::new(node.addr.ip(), HTTP_PORT);
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).ok()?;
    std::str::from_utf8(&head[..n]).ok()?.split(' ').nth(1)?.parse().ok()
}

fn stat(node: &Node, name: &str) -> u64 {
    node.try_rpc(&["dmq.stats"]).ok().and_then(|s| reply_field::<u64>(&s, name)).unwrap_or(0)
}

/// The first pod of a cluster is ready at once (nobody to ask); 10 000
/// phones register on it; a second pod starts: its /ready answers 503
/// while it syncs and 200 only once it holds every registration (its
/// ul.dump equals the first pod's at that moment).
#[test]
fn a_pod_that_joins_answers_ready_503_until_it_holds_every_registration_then_200() {
    common::machine::alone();
    const CONTACTS: usize = 10_000;
    let first = pod("ready-a", None, 128);
    // Before its first ping round (10 s in kubernetes.cfg) the first pod
    // does not know it is alone: 503 (the probe's other answer, seen);
    // then it is ready.
    assert_eq!(http_status(&first, "/ready"), Some(503), "a pod that just started is not ready");
    assert!(first.wait_until(Duration::from_secs(30), |n| http_status(n, "/ready") == Some(200)), "the first pod never got ready");
    assert_eq!(http_status(&first, "/live"), Some(200));
    let dir = node_dir("ready-sipp");
    let (status, out, err) = sipp_register(first.addr, &dir, CONTACTS, 1000);
    assert!(status.success(), "sipp: {out}{err}");
    let expected = ul_state(&first).expect("the first pod's registrations");
    assert_eq!(expected.len(), CONTACTS);

    let second = pod("ready-b", Some(first.addr), 128);
    let started = Instant::now();
    let (mut not_ready, mut ready_at, mut held_at_ready) = (0, None, 0);
    while started.elapsed() < Duration::from_secs(60) {
        match http_status(&second, "/ready") {
            Some(200) => {
                // What it holds the moment it says so (a counter: read at
                // once; the dump below takes a while).
                held_at_ready = aor_count(&second);
                ready_at = Some(started.elapsed());
                break;
            }
            Some(503) => not_ready += 1,
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let held = ul_state(&second).expect("the second pod's registrations");
    let ready_at =
        ready_at.unwrap_or_else(|| panic!("/ready never answered 200; dmq.sync_status: {:?}", second.try_rpc(&["dmq.sync_status"])));
    assert_eq!(held_at_ready, CONTACTS, "ready while holding {held_at_ready} of {CONTACTS} registrations");
    assert_same("the second pod at its first 200", &expected, &held);
    assert_eq!(sync_state(&second, "usrloc").as_deref(), Some("done"));
    assert_eq!(stat(&second, "synced"), 1);
    assert_eq!(stat(&second, "sync_pending"), 0);
    assert!(stat(&second, "syncs_done") >= 1);
    eprintln!(
        "FIGURES readiness: a pod joining {CONTACTS} registrations answered /ready 503 {not_ready} times, 200 after {:.1} s holding all of them; sync {} ms",
        ready_at.as_secs_f64(),
        stat(&second, "sync_last_duration_ms")
    );
}

/// Waits until `node` says it is synced (the `synced` statistic, what
/// `dmq_is_synced()` says); returns how many items it held at that moment
/// (`count`, a counter read at once) and then what `dump` holds.
fn when_synced<T>(node: &Node, limit: Duration, count: impl Fn(&Node) -> usize, dump: impl Fn(&Node) -> T) -> (usize, T) {
    let mut held = 0;
    assert!(
        node.wait_until(limit, |n| {
            let synced = stat(n, "synced") == 1;
            if synced {
                held = count(n);
            }
            synced
        }),
        "{} never said it is synced; dmq.sync_status: {:?}",
        node.addr,
        node.try_rpc(&["dmq.sync_status"])
    );
    (held, dump(node))
}

/// Items in htable's table `t` (`htable.stats`: read at once).
fn htable_count(node: &Node) -> usize {
    let out = node.try_rpc(&["htable.stats"]).unwrap_or_default();
    let block = out.split('{').find(|b| b.contains("name: t\n")).unwrap_or_default();
    block.lines().find_map(|l| l.trim().strip_prefix("all: ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

fn assert_same<K: Ord + Clone + std::fmt::Debug, V: common::state::SameState + Clone + std::fmt::Debug>(
    what: &str,
    expected: &std::collections::BTreeMap<K, V>,
    held: &std::collections::BTreeMap<K, V>,
) {
    let d = diff(expected, held);
    assert!(d.is_empty(), "{what}: holds {} of {}: {}", held.len(), expected.len(), d.summary());
}

/// htable with the replicated table `t`, synced at start (`dmq_init_sync`).
fn htable_node(base: NodeConfig) -> NodeConfig {
    let mut c = with_htable(base);
    c.consumers += "modparam(\"htable\", \"dmq_init_sync\", 1)\n";
    c
}

fn fill_htable(node: &Node, items: usize) {
    for i in 0..items {
        node.rpc(&["htable.seti", "t", &format!("k{i}"), &i.to_string()]);
    }
}

/// htable: a node that joins says it is synced once it holds every item
/// of the node it asked; its table flushed by hand, `dmq.resync htable`
/// brings every item back and is followed like the join.
#[test]
fn htable_a_joining_node_is_synced_once_it_holds_every_item_and_resync_brings_a_flushed_table_back() {
    const ITEMS: usize = 300;
    let a = Node::start("sync-ht-a", &htable_node(NodeConfig::default()).param("ping_interval", "2"));
    fill_htable(&a, ITEMS);
    let expected = htable_state(&a, "t").unwrap();
    assert_eq!(expected.len(), ITEMS);
    let b = Node::start("sync-ht-b", &seeded(htable_node(NodeConfig::default()), a.addr));
    let (count, held) = when_synced(&b, Duration::from_secs(30), htable_count, |n| htable_state(n, "t").unwrap());
    assert_eq!(count, ITEMS, "synced while holding {count} items");
    assert_same("htable after the join sync", &expected, &held);
    assert_eq!(sync_state(&b, "htable").as_deref(), Some("done"));

    // Removed by hand on b alone (htable.flush does not replicate).
    b.rpc(&["htable.flush", "t"]);
    assert!(htable_state(&b, "t").unwrap().is_empty());
    let out = b.rpc(&["dmq.resync", "htable"]);
    assert!(out.contains("Resync of htable started"), "{out}");
    let (count, held) = when_synced(&b, Duration::from_secs(30), htable_count, |n| htable_state(n, "t").unwrap());
    assert_eq!(count, ITEMS, "synced while holding {count} items");
    assert_same("htable after dmq.resync", &expected, &held);
    let status = b.rpc(&["dmq.sync_status"]);
    assert!(status.contains("reason: command") && status.contains("state: done"), "{status}");
    assert_eq!(htable_state(&a, "t").unwrap(), expected, "the donor is unchanged");
}

/// usrloc: contacts removed by hand on one node (dmq_usrloc
/// `usrloc_delete` 0 there: removals stay local) come back with `dmq.resync usrloc`, from a
/// named node.
#[test]
fn usrloc_resync_brings_back_contacts_removed_by_hand_on_one_node() {
    resync_after_removals_by_hand("sync-ul", DmqTransport::Udp);
}

#[test]
fn over_tcp_usrloc_resync_brings_back_contacts_removed_by_hand_on_one_node() {
    resync_after_removals_by_hand("sync-ul-tcp", DmqTransport::Tcp);
}

#[test]
fn over_tls_usrloc_resync_brings_back_contacts_removed_by_hand_on_one_node() {
    resync_after_removals_by_hand("sync-ul-tls", DmqTransport::Tls);
}

/// The join and a resync over `transport`: the exact count of a dmq_rs
/// donor holds on every transport (its answer's items are told apart
/// from its other messages by the header its copies carry).
fn resync_after_removals_by_hand(label: &str, transport: DmqTransport) {
    if transport == DmqTransport::Tls && tls_left_out(label) {
        return;
    }
    let mut b_config = registrar(NodeConfig::default()).over(transport);
    b_config.consumers += "modparam(\"dmq_usrloc\", \"usrloc_delete\", 0)\n";
    let nodes = start_cluster(label, vec![registrar(NodeConfig::default()).over(transport), b_config]);
    let (a, b) = (&nodes[0], &nodes[1]);
    let dir = node_dir(&format!("{label}-sipp"));
    let (status, out, err) = sipp_register(a.addr, &dir, 100, 200);
    assert!(status.success(), "sipp: {out}{err}");
    let expected = wait_converged(a, &[b], Duration::from_secs(20), ul_state);
    let removed: Vec<String> = expected.keys().map(|(aor, _)| aor.clone()).take(10).collect();
    for aor in &removed {
        b.rpc(&["ul.rm", "location", aor]);
    }
    assert_eq!(ul_state(b).unwrap().len(), expected.len() - removed.len(), "removed on b");
    assert_eq!(ul_state(a).unwrap().len(), expected.len(), "a keeps them (no delete replicated)");
    let a_uri = format!("sip:{}{}", a.addr, transport.uri_param());
    assert_eq!(sync_state(b, "usrloc").as_deref(), Some("done"), "the join sync: {:?}", b.try_rpc(&["dmq.sync_status"]));
    let out = b.rpc(&["dmq.resync", "usrloc", &a_uri]);
    assert!(out.contains("Resync of usrloc started"), "{out}");
    let (count, held) = when_synced(b, Duration::from_secs(30), aor_count, |n| ul_state(n).unwrap());
    assert_eq!(count, expected.len(), "synced while holding {count} contacts");
    assert_same("usrloc after dmq.resync", &expected, &held);
    let status = b.rpc(&["dmq.sync_status"]);
    assert!(status.contains(&format!("{a_uri} done: 200, ")), "{status}");
    // A node not in the list, an unknown consumer: refused, nothing asked.
    for (args, fault) in [
        (vec!["dmq.resync", "usrloc", "sip:127.0.0.1:9"], "is not another node of the list"),
        (vec!["dmq.resync", "nosuchpeer"], "no DMQ peer \"nosuchpeer\""),
        (vec!["dmq.resync", "usrloc", "not a uri"], "Invalid node address"),
    ] {
        let out = b.try_rpc(&args).unwrap_or_else(|e| e);
        assert!(out.contains("error") && out.contains(fault), "{args:?}: {out}");
    }
    assert_eq!(sync_state(b, "usrloc").as_deref(), Some("done"), "a refused resync starts nothing");
}

/// A stock donor says nothing of what it sent: the joining dmq_rs node
/// is synced once the stock node answered and sent nothing more for the
/// settle time, and then holds every contact.
#[test]
fn a_node_joining_a_stock_donor_is_synced_after_the_settle_time_holding_every_contact() {
    const CONTACTS: usize = 2000;
    let stock = Node::start("sync-stock-a", &registrar(NodeConfig::stock()).param("ping_interval", "2"));
    let dir = node_dir("sync-stock-sipp");
    let (status, out, err) = sipp_register(stock.addr, &dir, CONTACTS, 500);
    assert!(status.success(), "sipp: {out}{err}");
    let expected = ul_state(&stock).unwrap();
    assert_eq!(expected.len(), CONTACTS);
    let joiner = Node::start("sync-stock-b", &seeded(registrar(NodeConfig::default()), stock.addr));
    let (count, held) = when_synced(&joiner, Duration::from_secs(60), aor_count, |n| ul_state(n).unwrap());
    assert_eq!(count, CONTACTS, "synced while holding {count} contacts");
    assert_same("usrloc from a stock donor", &expected, &held);
    let status = joiner.rpc(&["dmq.sync_status"]);
    assert!(status.contains("200 (stock)"), "{status}");
}
