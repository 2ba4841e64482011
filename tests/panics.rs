//! What a Rust panic does in a running node (ARCHITECTURE.md, "Panics"),
//! injected with the test-only parameter `test_panic` at the moment the
//! test creates its trigger file:
//! - in a process of dmq's own (a DMQ worker, the retransmission timer,
//!   the DMQ DNS process): the panic and the process's exit (status 70)
//!   are logged, the process says nothing more (it never went back into
//!   the core's code), and Kamailio stops the node cleanly; the other node
//!   of the cluster is told it left;
//! - in a script function in a SIP worker: caught, logged, the function
//!   returns an error, and the node keeps serving;
//! - inside a shm critical section: the process aborts with the lock held
//!   (signal 6) and Kamailio stops the node.

mod common;

use std::net::UdpSocket;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::Duration;

use common::*;

/// How long a node may take to stop once its process died.
const STOP_LIMIT: Duration = Duration::from_secs(20);

/// A node config with `test_panic` set to `site` and a trigger file in a
/// fresh directory (the file does not exist yet).
fn armed(label: &str, site: &str, base: NodeConfig) -> (NodeConfig, PathBuf) {
    let trigger = node_dir(&format!("{label}-trigger")).join("panic-now");
    let config = base.param("test_panic", &format!("\"{site}:{}\"", trigger.display()));
    (config, trigger)
}

/// The pid Kamailio writes in a log line's prefix: ` 0(1234) ERROR: …`.
fn pid_of(line: &str) -> Option<u32> {
    let open = line.find('(')?;
    let close = open + line[open..].find(')')?;
    line[open + 1..close].parse().ok()
}

/// The pid of the process that logged its exit after an injected panic in
/// `process`, checked against everything the log says after it: the core's
/// main process saw that pid exit with status 70 and stopped the node, and
/// the process itself logged nothing more (it did not go on in the core's
/// code).
fn assert_process_exited_after_its_panic(log: &str, process: &str) -> u32 {
    let panic_line = log
        .lines()
        .find(|l| l.contains(&format!("test_panic: injected panic in {process}")) && l.contains("panic at "))
        .unwrap_or_else(|| panic!("no panic (with its location) logged in {process}:\n{log}"));
    let pid = pid_of(panic_line).unwrap_or_else(|| panic!("no pid in {panic_line:?}"));
    let exit_line =
        format!("internal error in {process} (pid {pid}): test_panic: injected panic in {process}; the process exits (status 70)");
    let at = log.find(&exit_line).unwrap_or_else(|| panic!("no line {exit_line:?}:\n{log}"));
    let after = &log[at..];
    let after_exit: Vec<&str> = after.lines().skip(1).filter(|l| pid_of(l) == Some(pid)).collect();
    assert!(after_exit.is_empty(), "process {pid} logged after its exit line:\n{}\n\nlog:\n{log}", after_exit.join("\n"));
    assert!(after.contains(&format!("child process {pid} exited normally, status=70")), "the main process did not see {pid} exit:\n{log}");
    assert!(after.contains("terminating due to SIGCHLD"), "{log}");
    pid
}

/// A two-node cluster whose first node has `site` armed; the trigger file
/// is created, and the first node must stop on its own, the second learn
/// that it left.
fn panic_in_own_process_stops_the_node(label: &str, site: &str, process: &str, base: NodeConfig) {
    let (config, trigger) = armed(label, site, base);
    let mut nodes = start_cluster(label, vec![config, NodeConfig::default()]);
    let log = nodes[0].log_text();
    assert!(log.contains("armed: a panic will be injected (for tests only)"), "{log}");
    assert!(!log.contains("injected panic"), "a panic before the trigger:\n{log}");

    std::fs::write(&trigger, b"").unwrap();
    let (status, all_exited) = nodes[0]
        .wait_exit(STOP_LIMIT)
        .unwrap_or_else(|| panic!("node still running {STOP_LIMIT:?} after the trigger:\n{}", nodes[0].log_text()));
    let log = nodes[0].log_text();
    assert!(status.success(), "Kamailio's main process exited with {status}:\n{log}");
    assert!(all_exited, "processes of the node outlived its main process:\n{log}");
    assert_process_exited_after_its_panic(&log, process);
    assert!(!log.contains("shm critical section"), "{log}");

    // The other node: told the first one left (destroy), it no longer
    // lists it as active.
    let (first, second) = (nodes[0].addr, &nodes[1]);
    assert!(
        second.wait_until(Duration::from_secs(15), |n| status_of(n, first).as_deref() != Some("active")),
        "{} still lists the stopped node as active:\n{}",
        second.addr,
        second.rpc(&["dmq.list_nodes"])
    );
    assert!(second.try_rpc(&["core.uptime"]).is_ok(), "{}", second.log_text());
}

#[test]
fn a_panic_in_a_dmq_worker_ends_that_process_and_kamailio_stops_the_node() {
    // Polling workers reach the top of their loop every 20 ms. One worker:
    // two would both see the trigger and panic at the same moment, and the
    // log lines two processes write at once can interleave mid-line (a
    // fresh-clone run failed on that, not on what it checks).
    let base = NodeConfig::default().param("worker_usleep", "20000").param("num_workers", "1");
    panic_in_own_process_stops_the_node("panic-worker", "worker", "DMQ WORKER", base);
}

#[test]
fn a_panic_in_the_retransmission_timer_ends_that_process_and_kamailio_stops_the_node() {
    panic_in_own_process_stops_the_node("panic-timer", "timer", "DMQ RETRANSMIT TIMER", NodeConfig::default());
}

#[test]
fn a_panic_in_the_dns_process_ends_that_process_and_kamailio_stops_the_node() {
    panic_in_own_process_stops_the_node("panic-dns", "dns", "DMQ DNS", NodeConfig::default());
}

/// The route of the SIP tests: a KDMQ that dmq_handle_message fails
/// (returns an error) gets a 500 naming it.
const ROUTE_REPORTING_FAILURE: &str = "if (is_method(\"KDMQ\")) {\n\t\tif (!dmq_handle_message()) { sl_send_reply(\"500\", \"dmq_handle_message failed\"); }\n\t\texit;\n\t}\n\tsl_send_reply(\"404\", \"Not here\");";

/// A KDMQ notification request from `sock` to `node`; its final reply.
fn send_kdmq(node: &Node, sock: &UdpSocket) -> String {
    let from = sock.local_addr().unwrap();
    let req = kdmq(node.addr, from, "notification_peer", "text/plain", format!("sip:{from}\n").as_bytes());
    node.sip_exchange(sock, &req, Duration::from_secs(5)).unwrap_or_default()
}

#[test]
fn a_panic_in_a_script_function_is_caught_and_the_sip_worker_keeps_serving() {
    // One SIP worker: the request after the panic reaches the process that panicked.
    let base = NodeConfig { route: ROUTE_REPORTING_FAILURE.into(), children: 1, ..NodeConfig::default() };
    let (config, trigger) = armed("panic-sip", "sip", base);
    let node = Node::start("panic-sip", &config);
    let sock = UdpSocket::bind(format!("{}:0", node.addr.ip())).unwrap();
    let before = send_kdmq(&node, &sock);
    assert!(before.starts_with("SIP/2.0 ") && !before.starts_with("SIP/2.0 500"), "{before}\n{}", node.log_text());

    std::fs::write(&trigger, b"").unwrap();
    let during = send_kdmq(&node, &sock);
    assert!(during.starts_with("SIP/2.0 500 dmq_handle_message failed"), "{during:?}\n{}", node.log_text());
    let log = node.log_text();
    let caught = log
        .lines()
        .find(|l| {
            l.contains(
                "internal error in dmq_handle_message: test_panic: injected panic in dmq_handle_message (caught, returning an error)",
            )
        })
        .unwrap_or_else(|| panic!("no caught panic logged:\n{log}"));
    assert!(log.contains("panic at "), "the panic's location is not logged:\n{log}");
    let worker = pid_of(caught).unwrap();

    std::fs::remove_file(&trigger).unwrap();
    let after = send_kdmq(&node, &sock);
    assert_eq!(after.lines().next(), before.lines().next(), "{}", node.log_text());
    let log = node.log_text();
    // The same SIP worker answered: it logs on.
    assert!(log.lines().filter(|l| pid_of(l) == Some(worker)).count() > 1, "{log}");
    assert!(!log.contains("child process"), "a process of the node died:\n{log}");
    assert!(node.try_rpc(&["dmq.list_nodes"]).is_ok(), "{log}");
}

#[test]
fn a_panic_inside_a_shm_critical_section_aborts_the_process_with_the_lock_held() {
    let base = NodeConfig { route: ROUTE_REPORTING_FAILURE.into(), children: 1, ..NodeConfig::default() };
    let (config, trigger) = armed("panic-locked", "sip-locked", base);
    let mut node = Node::start("panic-locked", &config);
    let sock = UdpSocket::bind(format!("{}:0", node.addr.ip())).unwrap();
    std::fs::write(&trigger, b"").unwrap();
    // No reply: the SIP worker aborts inside dmq_handle_message.
    let reply = send_kdmq(&node, &sock);
    let (status, all_exited) =
        node.wait_exit(STOP_LIMIT).unwrap_or_else(|| panic!("node still running after the abort:\n{}", node.log_text()));
    let log = node.log_text();
    assert!(reply.is_empty(), "a reply from the aborted worker: {reply:?}\n{log}");
    // The main process exits 1 when a child died by a signal.
    assert_eq!(status.code(), Some(1), "{status}:\n{log}");
    assert!(status.signal().is_none(), "{log}");
    assert!(all_exited, "{log}");
    let abort_line = log
        .lines()
        .find(|l| l.contains("panic inside a shm critical section") && l.contains("aborting the process with the lock held"))
        .unwrap_or_else(|| panic!("no abort logged:\n{log}"));
    let pid = pid_of(abort_line).unwrap();
    assert!(log.contains("test_panic: injected panic in dmq_handle_message, inside a shm critical section"), "{log}");
    assert!(log.contains(&format!("child process {pid} exited by a signal 6")), "{log}");
    // The harness names the death first when a test fails (node.rs).
    assert!(death_lines(&log).iter().any(|l| l.contains(&format!("child process {pid} exited by a signal 6"))), "{log}");
    // Never caught: the guard of the script function did not return.
    assert!(!log.contains("(caught, returning an error)"), "{log}");
}
