//! Convergence by state (issue 30): after each scenario every node must
//! hold exactly what the node that took the writes (the entry node) holds,
//! key by key — the whole location table (`ul.dump`: AoR + ruid, with the
//! contact, Call-ID, CSeq and expiry) or the whole htable — never only as
//! many entries. A failure names the differences per node: ghosts (held by
//! a peer, not by the entry node: e.g. a contact unregistered on the entry
//! node and still registered on the peer), missing entries and differing
//! values (an older update applied after a newer one).
//!
//! The scenarios: phones that register and unregister within milliseconds,
//! in bursts, over UDP, TCP and TLS, with stock nodes on either side, with
//! a peer frozen (SIGSTOP) for 3 s, with a peer killed and restarted;
//! htable keys written over and over with a peer frozen; a partition
//! (network namespaces, root needed) during which contacts are
//! unregistered on the entry node, healed after 10 s and after 45 s;
//! dialogs set up and torn down in bursts (`dlg.list`).
//! Each prints a FIGURES line (time, contacts per node), and each runs
//! alone on the machine (`common::machine::alone`).

mod common;

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::netns::TestNet;
use common::state::{aors, diff, dlg_state, htable_state, state_report, try_wait_converged, ul_state, wait_converged, wait_quiet, UlState};
use common::*;

/// How long after the last write every node must hold the entry node's state.
const CONVERGE_LIMIT: Duration = Duration::from_secs(30);

/// Phones that register and unregister at once: groups of `BURST_GROUP`
/// phones at `BURST_RATE` a second (two REGISTERs each), `BURST_GROUPS`
/// groups one after the other.
const BURST_GROUPS: usize = 8;
const BURST_GROUP: usize = 1000;
const BURST_RATE: usize = 2500;
/// Phones registered for good after the bursts.
const KEPT: usize = 200;

/// A registrar (usrloc in memory, dmq_usrloc) with the dmq module of
/// `stock` or dmq_rs, DMQ over `transport`.
fn registrar_node(stock: bool, transport: DmqTransport) -> NodeConfig {
    let mut c = registrar(if stock { NodeConfig::stock() } else { NodeConfig::default() }).over(transport);
    // dmq_usrloc's and htable's sync batches are up to 60000 bytes;
    // Kamailio 6 drops a datagram of msg_recv_max_size (32767) or more.
    c.core = "#!ifdef KAMAILIO_6\nmsg_recv_max_size=65535\n#!endif\n".into();
    c
}

/// What the phones did on the entry node.
#[derive(Default, Debug)]
struct Load {
    /// Phones whose REGISTER and de-REGISTER were both answered 200.
    bursts_ok: usize,
    /// Phones whose REGISTER or de-REGISTER failed (they may stay registered
    /// on the entry node: the comparison is with what it holds).
    bursts_failed: usize,
    /// The AoRs registered for good and answered 200.
    kept: BTreeSet<String>,
}

impl Load {
    fn add(&mut self, other: Load) {
        self.bursts_ok += other.bursts_ok;
        self.bursts_failed += other.bursts_failed;
        self.kept.extend(other.kept);
    }
}

/// How phones come in: `groups` groups of `size` phones at `rate` a second.
#[derive(Clone)]
struct Bursts {
    groups: std::ops::Range<usize>,
    size: usize,
    rate: usize,
}

/// The bursts of scenario 1.
fn full_bursts() -> Bursts {
    Bursts { groups: 0..BURST_GROUPS, size: BURST_GROUP, rate: BURST_RATE }
}

/// Groups of phones that register and unregister at once on `entry`, AoRs
/// `<tag>b<group>-<n>`; `between` runs after each group (with the group's
/// number).
fn bursts(entry: &Node, tag: &str, how: Bursts, mut between: impl FnMut(usize)) -> Load {
    let mut load = Load::default();
    for g in how.groups {
        let run = sipp_scenario(entry.addr, &entry.dir, "register-unregister.xml", &format!("{tag}b{g}-"), how.size, how.rate);
        load.bursts_ok += run.successful;
        load.bursts_failed += how.size - run.successful;
        between(g);
    }
    load
}

/// `count` phones registered for good on `entry`: AoRs `<prefix><n>`.
fn register_kept(entry: &Node, prefix: &str, count: usize) -> Load {
    let run = sipp_scenario(entry.addr, &entry.dir, "register.xml", prefix, count, 200);
    assert_eq!(run.successful, count, "not every REGISTER for good was answered 200 ({run:?})");
    // usrloc keeps the user part alone as the AoR (use_domain 0).
    Load { kept: (1..=count).map(|n| format!("{prefix}{n}")).collect(), ..Load::default() }
}

/// How the entry node's state differs from what the phones left there
/// (every phone registered for good, and of the others only those whose
/// unregistration failed), if it does.
fn entry_deviation(entry_state: &UlState, load: &Load) -> Option<String> {
    let held = aors(entry_state);
    let lost: Vec<&String> = load.kept.difference(&held).collect();
    let others: Vec<&String> = held.difference(&load.kept).collect();
    (!lost.is_empty() || others.len() > load.bursts_failed).then(|| {
        format!(
            "the entry node lost {} phones registered for good (first: {:?}) and holds {} other AoRs (first: {:?}) where {} phones failed to unregister",
            lost.len(),
            lost.first(),
            others.len(),
            others.first(),
            load.bursts_failed
        )
    })
}

/// Every node holds the entry node's contacts, and the entry node what the
/// phones left there; panics with what differs otherwise. Returns the
/// entry node's state.
fn assert_converged_on_entry(nodes: &[Node], entry: usize, load: &Load) -> UlState {
    let converged = try_wait_converged(&nodes[entry], &peers_of(nodes, entry), CONVERGE_LIMIT, ul_state);
    let now = ul_state(&nodes[entry]).expect("the entry node's contacts");
    match (converged, entry_deviation(&now, load)) {
        (Ok(state), None) => state,
        (converged, deviation) => {
            // What each node did, to tell why.
            for n in nodes {
                eprintln!("node {} dmq.stats:\n{}", n.addr, n.try_rpc(&["dmq.stats"]).unwrap_or_else(|e| e));
            }
            panic!(
                "{}\n{}",
                converged.err().unwrap_or_else(|| "every node holds the entry node's contacts".into()),
                deviation.unwrap_or_else(|| "the entry node holds what the phones left there".into())
            )
        }
    }
}

fn peers_of(nodes: &[Node], entry: usize) -> Vec<&Node> {
    nodes.iter().enumerate().filter(|(i, _)| *i != entry).map(|(_, n)| n).collect()
}

fn figures(label: &str, started: Instant, nodes: &[Node], entry: &UlState, load: &Load) {
    eprintln!(
        "FIGURES {label}: {:.1} s, {} phones registered and unregistered ({} failed), {} kept; every node holds the entry node's {} contacts",
        started.elapsed().as_secs_f64(),
        load.bursts_ok,
        load.bursts_failed,
        load.kept.len(),
        entry.len()
    );
    for n in nodes {
        eprintln!("[{label}] node {}: {}", n.addr, n.try_rpc(&["dmq.stats"]).map(|s| heal_figures(&s)).unwrap_or_else(|_| "stock".into()));
    }
}

fn heal_figures(stats: &str) -> String {
    let f = |name: &str| reply_field::<u64>(stats, name).unwrap_or(0);
    format!(
        "messages_sent_without_tm {} retransmitted {} batched {} heal_syncs {} heal_sync_pushes {}",
        f("messages_sent_without_tm"),
        f("messages_retransmitted"),
        f("messages_batched"),
        f("heal_syncs"),
        f("heal_sync_pushes")
    )
}

// ---- 1. register-then-unregister bursts ------------------------------------

/// Three registrars of `kinds` (true: stock) over `transport`; bursts of
/// phones that register and unregister at once on node `entry`, then
/// `KEPT` phones for good; every node must end with the entry node's
/// contacts.
fn bursts_then_kept(label: &str, kinds: [bool; 3], entry: usize, transport: DmqTransport) {
    if transport == DmqTransport::Tls && tls_left_out(label) {
        return;
    }
    common::machine::alone();
    let nodes = start_cluster(label, kinds.iter().map(|&stock| registrar_node(stock, transport)).collect());
    let started = Instant::now();
    let mut load = bursts(&nodes[entry], label, full_bursts(), |_| {});
    load.add(register_kept(&nodes[entry], &format!("{label}k"), KEPT));
    let state = assert_converged_on_entry(&nodes, entry, &load);
    figures(label, started, &nodes, &state, &load);
}

#[test]
fn register_unregister_bursts_leave_every_node_with_the_entry_nodes_contacts_over_udp() {
    bursts_then_kept("burst-udp", [false; 3], 0, DmqTransport::Udp);
}

#[test]
fn register_unregister_bursts_leave_every_node_with_the_entry_nodes_contacts_over_tcp() {
    bursts_then_kept("burst-tcp", [false; 3], 0, DmqTransport::Tcp);
}

#[test]
fn register_unregister_bursts_leave_every_node_with_the_entry_nodes_contacts_over_tls() {
    bursts_then_kept("burst-tls", [false; 3], 0, DmqTransport::Tls);
}

/// A stock entry node keeps no per-key order (tm sends a register and
/// its unregister at once, and either may be retransmitted), and under
/// this load its own shm runs out: what it shows is stock's, so it is a
/// comparison, run by hand or by `make bench`, not a claim of dmq_rs.
#[test]
#[ignore = "stock comparison: a stock sender keeps no per-key order (make bench)"]
fn register_unregister_bursts_through_a_stock_entry_node_reach_dmq_rs_peers_as_they_are() {
    bursts_then_kept("burst-stock-entry", [true, false, false], 0, DmqTransport::Udp);
}

#[test]
fn register_unregister_bursts_through_a_dmq_rs_entry_node_reach_a_stock_peer_as_they_are() {
    bursts_then_kept("burst-rs-entry", [false, false, true], 0, DmqTransport::Udp);
}

// ---- 2. the same with a peer frozen ----------------------------------------

#[test]
fn register_unregister_bursts_with_a_peer_frozen_for_3_s_leave_every_node_with_the_entry_nodes_contacts() {
    bursts_with_a_peer_frozen("burst-frozen", DmqTransport::Udp);
}

#[test]
fn over_tcp_register_unregister_bursts_with_a_peer_frozen_for_3_s_leave_every_node_with_the_entry_nodes_contacts() {
    bursts_with_a_peer_frozen("burst-frozen-tcp", DmqTransport::Tcp);
}

#[test]
fn over_tls_register_unregister_bursts_with_a_peer_frozen_for_3_s_leave_every_node_with_the_entry_nodes_contacts() {
    bursts_with_a_peer_frozen("burst-frozen-tls", DmqTransport::Tls);
}

fn bursts_with_a_peer_frozen(label: &str, transport: DmqTransport) {
    if transport == DmqTransport::Tls && tls_left_out(label) {
        return;
    }
    common::machine::alone();
    let nodes = start_cluster(label, vec![registrar_node(false, transport); 3]);
    let started = Instant::now();
    // Frozen for 3 s from the end of the first group on, while the next
    // groups run.
    let groups_done = AtomicUsize::new(0);
    let mut load = std::thread::scope(|s| {
        // Gentler than scenario 1: the entry node must answer every REGISTER
        // while a peer does not answer it (the comparison is by state).
        let how = Bursts { groups: 0..8, size: 500, rate: 500 };
        let worker = s.spawn(|| bursts(&nodes[0], label, how, |g| groups_done.store(g + 1, Ordering::SeqCst)));
        let t = Instant::now();
        while groups_done.load(Ordering::SeqCst) == 0 && t.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(10));
        }
        nodes[2].pause();
        eprintln!("[{label}] node 2 frozen");
        fault_lasts(Duration::from_secs(3));
        nodes[2].resume();
        eprintln!("[{label}] node 2 resumed; {} groups of 8 done", groups_done.load(Ordering::SeqCst));
        worker.join().unwrap()
    });
    load.add(register_kept(&nodes[0], &format!("{label}k"), KEPT));
    let state = assert_converged_on_entry(&nodes, 0, &load);
    figures(label, started, &nodes, &state, &load);
}

// ---- 3. htable keys written over and over ----------------------------------

/// Keys written, each `WRITES` times (1, 2, …, WRITES), each write answered
/// before the next; the keys are written side by side.
const KEYS: usize = 40;
const WRITES: usize = 50;

/// htable (`t`, replicated) and a route that sets `t` item <R-URI user> to
/// the body's number for a MESSAGE and answers 200 once it is set.
fn htable_writer_node() -> NodeConfig {
    let mut c = with_htable(NodeConfig::default());
    c.route = "if (is_method(\"KDMQ\")) { dmq_handle_message(); exit; }\n\
               \tif (is_method(\"MESSAGE\")) { $sht(t=>$rU) = $(rb{s.int}); sl_send_reply(\"200\", \"Set\"); exit; }\n\
               \tsl_send_reply(\"404\", \"Not here\");"
        .into();
    c
}

/// Sets `key` to `value` on `node` through its MESSAGE route: resent until
/// answered 200 (bounded).
fn write_item(node: &Node, sock: &UdpSocket, key: &str, value: usize) {
    let body = value.to_string();
    let from = sock.local_addr().unwrap();
    let req = sip_request("MESSAGE", key, node.addr, from, "text/plain", body.as_bytes(), Some(body.len()));
    let call_id = String::from_utf8_lossy(&req).lines().find(|l| l.starts_with("Call-ID:")).unwrap().to_string();
    sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut buf = vec![0u8; 65536];
    for _ in 0..20 {
        sock.send_to(&req, node.addr).unwrap();
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            let Ok((n, _)) = sock.recv_from(&mut buf) else { break };
            let reply = String::from_utf8_lossy(&buf[..n]);
            if reply.contains(&call_id) && !reply.starts_with("SIP/2.0 1") {
                assert!(reply.starts_with("SIP/2.0 200"), "{key} = {value}: {reply}");
                return;
            }
        }
    }
    panic!("{key} = {value}: no reply from {}", node.addr);
}

#[test]
fn htable_keys_written_over_and_over_end_at_their_last_value_on_every_node_after_a_peer_was_frozen() {
    common::machine::alone();
    let label = "ht-rewrite";
    let nodes = start_cluster(label, vec![htable_writer_node(); 3]);
    let started = Instant::now();
    let written = AtomicUsize::new(0);
    let ip = allocate_address().ip();
    let entry = &nodes[0];
    std::thread::scope(|s| {
        for k in 0..KEYS {
            let written = &written;
            s.spawn(move || {
                let sock = UdpSocket::bind((ip, 0)).unwrap();
                for v in 1..=WRITES {
                    write_item(entry, &sock, &format!("key{k}"), v);
                    written.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        // Frozen from a third of the writes on, for 3 s.
        let third = KEYS * WRITES / 3;
        let t = Instant::now();
        while written.load(Ordering::SeqCst) < third && t.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(10));
        }
        nodes[2].pause();
        eprintln!("[{label}] node 2 frozen after {} writes", written.load(Ordering::SeqCst));
        fault_lasts(Duration::from_secs(3));
        nodes[2].resume();
        eprintln!("[{label}] node 2 resumed; {} writes so far", written.load(Ordering::SeqCst));
    });
    let peers = peers_of(&nodes, 0);
    let state = wait_converged(entry, &peers, CONVERGE_LIMIT, |n| htable_state(n, "t"));
    let not_last: Vec<_> = state.iter().filter(|(_, v)| **v != WRITES.to_string()).collect();
    assert!(
        state.len() == KEYS && not_last.is_empty(),
        "the entry node holds {} keys, {} of them not at {WRITES} (first: {:?})",
        state.len(),
        not_last.len(),
        not_last.first()
    );
    eprintln!(
        "FIGURES {label}: {:.1} s, {KEYS} keys written {WRITES} times each ({} writes); every node holds every key at {WRITES}",
        started.elapsed().as_secs_f64(),
        written.load(Ordering::SeqCst)
    );
}

// ---- 4. a partition healed ---------------------------------------------------

/// Contacts registered and replicated before the cut; of them, those
/// unregistered on the entry node during it.
const PARTITION_REGISTERED: usize = 500;
const PARTITION_UNREGISTERED: usize = 300;

/// Three registrars on test hosts of their own; 500 contacts registered on
/// host 0 and replicated; host 2 cut off for `cut`, 300 of the contacts
/// unregistered on host 0 meanwhile; healed. Every node must end with
/// exactly host 0's 200, and host 0 with the 200 it had (nothing brought
/// back).
fn partition_heal(label: &str, cut: Duration) {
    common::machine::alone();
    let net = TestNet::new(3).expect("the partition tests need network namespaces (root and iproute2: make deps)");
    let base = registrar_node(false, DmqTransport::Udp);
    let nodes: Vec<Node> = (0..3)
        .map(|i| {
            let config = net.on_host(i, base.clone());
            let config = if i == 0 { config.param("ping_interval", "2") } else { seeded(config, net.addr(0)) };
            Node::start_at(&format!("{label}-{i}"), &config, net.addr(i))
        })
        .collect();
    assert_converged(&nodes.iter().collect::<Vec<_>>());
    let peers = peers_of(&nodes, 0);
    let (_, ok) = net.sipp_register(0, net.addr(0), &nodes[0].dir, "pa", PARTITION_REGISTERED, 100, 3600);
    assert_eq!(ok, PARTITION_REGISTERED, "every REGISTER answered 200");
    let before = wait_converged(&nodes[0], &peers, CONVERGE_LIMIT, ul_state);
    assert_eq!(before.len(), PARTITION_REGISTERED, "contacts on the entry node before the cut");
    net.cut(2);
    let cut_at = Instant::now();
    eprintln!("[{label}] host 2 cut off");
    let (_, ok) = net.sipp_register(0, net.addr(0), &nodes[0].dir, "pa", PARTITION_UNREGISTERED, 100, 0);
    assert_eq!(ok, PARTITION_UNREGISTERED, "every de-REGISTER answered 200");
    let after_deletes = ul_state(&nodes[0]).expect("the entry node's contacts");
    assert_eq!(after_deletes.len(), PARTITION_REGISTERED - PARTITION_UNREGISTERED, "contacts on the entry node after the deletes");
    fault_lasts(cut.saturating_sub(cut_at.elapsed()));
    net.heal(2);
    let healed_at = Instant::now();
    eprintln!("[{label}] host 2 back after {:.1} s", cut_at.elapsed().as_secs_f64());
    // The nodes find each other again (their heal syncs follow).
    assert_converged(&nodes.iter().collect::<Vec<_>>());
    let converged = try_wait_converged(&nodes[0], &peers, Duration::from_secs(45), ul_state);
    let now = ul_state(&nodes[0]).expect("the entry node's contacts");
    let brought_back = diff(&after_deletes, &now);
    let state = match (converged, brought_back.is_empty()) {
        (Ok(state), true) => state,
        (converged, _) => panic!(
            "{}\nthe entry node against its own contacts after the deletes: {}",
            converged.err().unwrap_or_else(|| "every node holds the entry node's contacts".into()),
            brought_back.summary().replace("ghosts", "unregistered and back")
        ),
    };
    eprintln!(
        "FIGURES {label}: cut {:.1} s, every node holds the entry node's {} contacts {:.1} s after the heal",
        cut.as_secs_f64(),
        state.len(),
        healed_at.elapsed().as_secs_f64()
    );
}

#[test]
fn a_partition_of_10_s_during_which_contacts_are_unregistered_heals_to_the_entry_nodes_contacts() {
    partition_heal("heal10", Duration::from_secs(10));
}

#[test]
fn a_partition_of_45_s_during_which_contacts_are_unregistered_heals_to_the_entry_nodes_contacts() {
    partition_heal("heal45", Duration::from_secs(45));
}

// ---- 5. a peer killed and restarted ----------------------------------------

#[test]
fn a_peer_killed_and_restarted_during_register_unregister_bursts_ends_with_the_entry_nodes_contacts() {
    common::machine::alone();
    let label = "restart";
    let base = registrar_node(false, DmqTransport::Udp);
    let mut nodes = start_cluster(label, vec![base.clone(); 3]);
    let started = Instant::now();
    let (entry_addr, victim) = (nodes[0].addr, nodes[2].addr);
    let mut load = register_kept(&nodes[0], &format!("{label}k0-"), KEPT / 2);
    // The bursts and the rest of the phones registered for good go on while
    // node 2 is killed, stays dead for 3 s and starts again (and syncs).
    let (entry, rest) = nodes.split_at_mut(1);
    let entry = &entry[0];
    let victim_node = &mut rest[1];
    let groups_done = AtomicUsize::new(0);
    let restarted = std::thread::scope(|s| {
        let worker = s.spawn(|| {
            let mut load = Load::default();
            for g in 0..6 {
                load.add(bursts(entry, label, Bursts { groups: g..g + 1, size: 500, rate: 500 }, |_| {}));
                groups_done.store(g + 1, Ordering::SeqCst);
                load.add(register_kept(entry, &format!("{label}k{}-", g + 1), KEPT / 12));
            }
            load
        });
        // Killed once the first group of bursts is done.
        let t = Instant::now();
        while groups_done.load(Ordering::SeqCst) == 0 && t.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(10));
        }
        victim_node.kill();
        eprintln!("[{label}] node 2 killed");
        fault_lasts(Duration::from_secs(3));
        let again = Node::start_at(&format!("{label}-2-again"), &seeded(base.clone(), entry_addr), victim);
        eprintln!("[{label}] node 2 started again after {:.1} s", started.elapsed().as_secs_f64());
        load.add(worker.join().unwrap());
        again
    });
    nodes[2] = restarted;
    assert_converged(&nodes.iter().collect::<Vec<_>>());
    let state = assert_converged_on_entry(&nodes, 0, &load);
    figures(label, started, &nodes, &state, &load);
    eprintln!("[{label}] {}", state_report(&nodes[0], &peers_of(&nodes, 0), ul_state).trim_end());
}

// ---- the comparison itself ---------------------------------------------------

/// The dumps and the comparison see everything: 1500 AoRs (more than
/// kamcmd's reply buffer and ctl's default struct size take) registered on
/// one of two unconnected registrars are all in its dump and all missing
/// on the other, and a wait for convergence reports them.
#[test]
fn the_state_comparison_sees_every_contact_of_a_large_location_table() {
    common::machine::alone();
    let a = Node::start("cmp-a", &registrar(NodeConfig::without_dmq()));
    let b = Node::start("cmp-b", &registrar(NodeConfig::without_dmq()));
    let run = sipp_scenario(a.addr, &a.dir, "register.xml", "cmp", 1500, 1000);
    assert_eq!(run.successful, 1500, "{run:?}");
    let state = ul_state(&a).expect("a dump of 1500 contacts");
    assert_eq!(aors(&state).len(), 1500);
    assert_eq!(state.len(), aor_count(&a), "the dump holds every contact usrloc counts");
    let d = diff(&state, &ul_state(&b).unwrap());
    assert_eq!((d.ghosts.len(), d.missing.len(), d.differing.len()), (0, 1500, 0));
    let err = try_wait_converged(&a, &[&b], Duration::from_secs(3), ul_state).expect_err("two unconnected nodes differ");
    assert!(err.contains(&format!("node {}: 0 ghosts, 1500 missing (first: (\"cmp", b.addr)), "{err}");
    let err = try_wait_converged(&b, &[&a], Duration::from_secs(3), ul_state).expect_err("two unconnected nodes differ");
    assert!(err.contains("1500 ghosts (first: (\"cmp"), "{err}");
}

// ---- 6. dialogs set up and torn down in bursts -----------------------------

/// A proxy with dialog replication: every INVITE through it is a dialog.
fn dialog_node() -> NodeConfig {
    // 1 000 calls a second keep thousands of tm transactions (8 KB each)
    // alive through their wait timers: 64 MB ran out on the entry node
    // (tm, dialog and dmq could not allocate; dialogs went unreplicated).
    let mut c = NodeConfig { shm_mb: 256, ..NodeConfig::default() };
    c.consumers += "loadmodule \"rr.so\"\nloadmodule \"siputils.so\"\nloadmodule \"dialog.so\"\nmodparam(\"dialog\", \"enable_dmq\", 1)\n";
    // sipp sends ACK and BYE to the proxy without a Route header: dialog
    // matches them by their ids, the R-URI (the UAS's contact) takes them on.
    c.route = "if (is_method(\"KDMQ\")) { dmq_handle_message(); exit; }\n\
               \tif (has_totag()) { loose_route(); dlg_manage(); t_relay(); exit; }\n\
               \tif (is_method(\"INVITE\")) { dlg_manage(); record_route(); t_relay(); exit; }\n\
               \tsl_send_reply(\"404\", \"Not here\");"
        .into();
    c
}

/// How many dialogs a dump holds in each state.
fn by_state(state: &std::collections::BTreeMap<String, String>) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for s in state.values() {
        *out.entry(s.clone()).or_insert(0) += 1;
    }
    out
}

/// sipp calls through `entry` to a sipp UAS: `count` at `rate` per second,
/// each held `hold_ms` (then BYE); returns (uac, uas) and the directory
/// where both write their errors (`-trace_err`).
fn calls_traced(entry: &Node, count: usize, rate: usize, hold_ms: u32) -> ([Background; 2], std::path::PathBuf) {
    let dir = node_dir("dlg-calls");
    let uas_addr = allocate_address();
    let mut uas = std::process::Command::new("sipp");
    uas.args(["-sn", "uas", "-i", &uas_addr.ip().to_string(), "-p", &uas_addr.port().to_string(), "-nostdin", "-trace_err"])
        .current_dir(&dir);
    let uas = Background::spawn(uas, &dir.join("uas.log"));
    let uac_addr = allocate_address();
    let mut uac = std::process::Command::new("sipp");
    uac.args(["-sn", "uac", "-m", &count.to_string(), "-r", &rate.to_string(), "-d", &hold_ms.to_string()])
        .args([
            "-i",
            &uac_addr.ip().to_string(),
            "-p",
            &uac_addr.port().to_string(),
            "-nostdin",
            "-trace_err",
            "-rsa",
            &entry.addr.to_string(),
        ])
        .arg(uas_addr.to_string())
        .current_dir(&dir);
    let uac = Background::spawn(uac, &dir.join("uac.log"));
    ([uac, uas], dir)
}

fn calls(entry: &Node, count: usize, rate: usize, hold_ms: u32) -> [Background; 2] {
    calls_traced(entry, count, rate, hold_ms).0
}

/// What sipp logged as errors in `dir` (its `*_errors.log`), last lines first cut.
fn sipp_errors(dir: &std::path::Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with("_errors.log") || name.ends_with(".log") {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out += &format!("\n--- {name} (last {} lines) ---\n", tail.len());
            out += &tail.into_iter().rev().collect::<Vec<_>>().join("\n");
        }
    }
    out
}

/// Dialogs set up and torn down at once (INVITE, ACK, BYE: dialog's
/// update, state and removal copies of one dialog back to back), then 30
/// held: every node must end with the entry node's dialogs, in its states.
#[test]
fn dialogs_set_up_and_torn_down_in_bursts_leave_every_node_with_the_entry_nodes_dialogs() {
    common::machine::alone();
    let label = "dlg-burst";
    let nodes = start_cluster(label, vec![dialog_node(); 3]);
    let started = Instant::now();
    let [mut short, _short_uas] = calls(&nodes[0], 3000, 1000, 0);
    let done = short.wait_bounded(Duration::from_secs(60));
    assert!(done.is_some(), "[{label}] the short calls did not end within 60 s");
    // The held calls start once the burst's copies are all delivered, at a
    // rate the entry node takes while it is still busy: in CI (30 at 100/s
    // right after the burst) one held call was missing at the entry node
    // 30 s later, before any copy of it mattered.
    let all: Vec<&Node> = nodes.iter().collect();
    assert!(wait_quiet(&all, Duration::from_secs(30)), "[{label}] the nodes stay busy after the burst");
    let (_held, held_dir) = calls_traced(&nodes[0], 30, 20, 120_000);
    let held = |n: &Node| dlg_state(n).map(|d| d.values().filter(|s| s.as_str() == "4").count()).unwrap_or(0);
    assert!(
        nodes[0].wait_until(Duration::from_secs(45), |n| held(n) >= 30),
        "[{label}] the entry node holds dialogs in these states (4: confirmed): {:?}; sipp says: {}",
        dlg_state(&nodes[0]).map(|d| by_state(&d)),
        sipp_errors(&held_dir)
    );
    // Stock dialog replicates no state before confirmed: 1-3 (a call whose
    // ACK sipp lost stays in 3 on the entry node, 2 on the others) read as
    // one, "not confirmed"; 5 (ended) as gone.
    let dialogs = |n: &Node| {
        dlg_state(n).map(|d| {
            d.into_iter()
                // 5: ended, listed until dialog's timer drops it: gone.
                .filter(|(_, v)| v.as_str() != "5")
                .map(|(k, v)| (k, if ["1", "2", "3"].contains(&v.as_str()) { "not confirmed".into() } else { v }))
                .collect()
        })
    };
    let state = wait_converged(&nodes[0], &peers_of(&nodes, 0), CONVERGE_LIMIT, dialogs);
    let confirmed = state.values().filter(|s| s.as_str() == "4").count();
    // At this rate sipp may lose a BYE: a short call then stays confirmed.
    assert!(confirmed >= 30, "[{label}] the entry node holds the 30 held calls confirmed: {:?}", by_state(&state));
    let peak_shm = nodes[0].try_rpc(&["core.shmmem"]).ok().and_then(|o| reply_field::<u64>(&o, "max_used")).unwrap_or(0);
    eprintln!(
        "FIGURES {label}: {:.1} s, 3000 calls set up and torn down, 30 held; every node holds the entry node's {} dialogs; entry node's shm peak {} MB",
        started.elapsed().as_secs_f64(),
        state.len(),
        peak_shm >> 20
    );
}

/// A node that joins asks for the dialogs; stock dialog answers a sync
/// request by broadcasting every dialog (`dmq_send_all_dlgs(0)`). dmq_rs
/// sends that answer to the node that asked alone, as the sync's copies:
/// sent to every node as live updates, a heal pull's answer in the middle
/// of traffic put older dialog states on nodes that held newer ones (this
/// test's burst above failed one run in three on it).
#[test]
fn a_dialog_sync_answer_goes_to_the_node_that_asked_alone() {
    let label = "dlg-sync-to";
    let mut logging = dialog_node();
    logging.route =
        format!("if (is_method(\"KDMQ\") && $rU == \"dialog\") {{ xlog(\"L_NOTICE\", \"DIALOG-KDMQ $si $rb\\n\"); }}\n\t{}", logging.route);
    let nodes = start_cluster(label, vec![logging.clone(); 2]);
    let (a, b) = (&nodes[0], &nodes[1]);
    let _held = calls(a, 5, 10, 120_000);
    let confirmed = |n: &Node| dlg_state(n).map(|d| d.values().filter(|s| s.as_str() == "4").count()).unwrap_or(0);
    for n in [a, b] {
        assert!(n.wait_until(Duration::from_secs(20), |n| confirmed(n) == 5), "[{label}] {} holds {} of 5 calls", n.addr, confirmed(n));
    }
    // Dialog updates B took from A (action 1: the whole dialog).
    let updates_from_a = |n: &Node| {
        let from = format!("DIALOG-KDMQ {} ", a.addr.ip());
        n.log_text().lines().filter(|l| l.contains(&from) && l.contains("\"action\":1,")).count()
    };
    let before = updates_from_a(b);
    let c = Node::start(&format!("{label}-c"), &seeded(logging, a.addr));
    // The positive control: the node that asked gets A's dialogs.
    assert!(c.wait_until(Duration::from_secs(20), |n| confirmed(n) == 5), "[{label}] the joiner holds {} of 5 calls", confirmed(&c));
    assert!(updates_from_a(&c) > 0, "[{label}] A's sync answer did not reach the joiner");
    assert!(wait_quiet(&[a, b, &c], Duration::from_secs(20)), "[{label}] the nodes stay busy");
    assert_eq!(updates_from_a(b), before, "[{label}] A's sync answer reached a node that did not ask");
    // And every node holds A's dialogs, in A's states.
    wait_converged(a, &[b, &c], CONVERGE_LIMIT, dlg_state);
}

/// A joining node asks every node it knows for the dialogs, and each
/// answers with all of them: two copies of each dialog reach it close
/// together. Stock dialog makes a dialog it does not find, so two copies
/// applied at once in two processes can make it twice (a CI run of the
/// test above saw "the joiner holds 4 of 5 calls": `dlg.list` listing a
/// call twice reads as not confirmed). One copy of an item is applied at a
/// time (`item_locks`). That race is rare: this test has not caught it
/// here without `item_locks` either (3 runs). What it checks is that a
/// joiner answered by two nodes ends with each of 200 calls once, in the
/// entry node's state.
#[test]
fn a_joiner_answered_by_two_nodes_holds_each_dialog_once() {
    common::machine::alone();
    let label = "dlg-two-donors";
    let nodes = start_cluster(label, vec![dialog_node(); 2]);
    let (a, b) = (&nodes[0], &nodes[1]);
    let calls_held = 200;
    let _held = calls(a, calls_held, 100, 120_000);
    let confirmed = |n: &Node| dlg_state(n).map(|d| d.values().filter(|s| s.as_str() == "4").count()).unwrap_or(0);
    for n in [a, b] {
        assert!(
            n.wait_until(Duration::from_secs(30), |n| confirmed(n) == calls_held),
            "[{label}] {} holds {} of {calls_held} calls",
            n.addr,
            confirmed(n)
        );
    }
    let c = Node::start(&format!("{label}-c"), &seeded(dialog_node(), a.addr));
    let asked_both = c.wait_until(Duration::from_secs(20), |n| {
        n.log_text().lines().any(|l| {
            l.contains("sync of dialog (start) started: asked") && l.contains(&a.addr.to_string()) && l.contains(&b.addr.to_string())
        })
    });
    assert!(asked_both, "[{label}] the joiner's sync did not ask both nodes:\n{}", c.log_text());
    assert!(
        c.wait_until(Duration::from_secs(30), |n| confirmed(n) == calls_held),
        "[{label}] the joiner holds {} of {calls_held} calls confirmed; not: {:?}",
        confirmed(&c),
        dlg_state(&c).map(|d| d.into_iter().filter(|(_, s)| s != "4").take(5).collect::<Vec<_>>())
    );
    wait_converged(a, &[b, &c], CONVERGE_LIMIT, dlg_state);
}
