//! A node whose job queue is full or whose workers lag: a KDMQ that finds
//! the queue full is answered 503 at once and the node keeps serving, the
//! sender sends it again later so nothing is lost (over UDP and TCP), and a
//! KDMQ waiting behind another hears 100 Trying before it would be
//! retransmitted.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::*;

const REPLICATE: Duration = Duration::from_secs(15);

fn htable_node() -> NodeConfig {
    with_htable(NodeConfig::default())
}

fn htable_value(node: &Node, key: &str) -> Option<String> {
    htable_get(node, "t", key)
}

/// `base` as a node whose DMQ runs over TCP.
fn over_tcp(base: NodeConfig, seed: Option<SocketAddr>) -> NodeConfig {
    let mut c = NodeConfig { globals: base.globals.clone() + "listen=tcp:{ADDR}\n", ..base }
        .without_param("server_address")
        .param("server_address", "\"sip:{ADDR};transport=tcp\"")
        .param("ping_interval", "2");
    if let Some(seed) = seed {
        c = c.param("notification_address", &format!("\"sip:{seed};transport=tcp\""));
    }
    c
}

fn stat(node: &Node, name: &str) -> i64 {
    reply_field(&node.rpc(&["dmq.stats"]), name).unwrap_or(-1)
}

/// A figure from `kamcmd dmq.stats`.
fn dmq_stat(node: &Node, name: &str) -> Option<i64> {
    reply_field(&node.try_rpc(&["dmq.stats"]).ok()?, name)
}

#[test]
fn full_job_queue_answers_503_at_once_and_keeps_serving() {
    // One slow worker (polling every 2 s) and room for one waiting job;
    // every message goes through the queue (updates_in_place 0).
    // The test's socket is no cluster node: let its KDMQs in (members_only 0).
    let c = htable_node()
        .param("updates_in_place", "0")
        .param("num_workers", "1")
        .param("worker_usleep", "2000000")
        .param("job_queue_limit", "1")
        .param("members_only", "0");
    let node = Node::start("queue-full", &c);
    let sock = std::net::UdpSocket::bind(format!("{}:0", allocate_address().ip())).unwrap();
    let from = sock.local_addr().unwrap();
    // What htable itself sends for `sht_seti t q 7` (an empty object would
    // crash htable 5.6's handler, stock or not: it reads root->child blindly).
    let set_q = |from, value: u32| {
        let body = format!(r#"{{"action":2,"htname":"t","cname":"q","type":0,"intval":{value},"mode":0}}"#);
        kdmq(node.addr, from, "htable", "application/json", body.as_bytes())
    };
    sock.send_to(&set_q(from, 7), node.addr).unwrap();
    // Queued: the worker takes it at its next poll (every 2 s).
    let queued = wait_for(Duration::from_secs(2), || dmq_stat(&node, "jobs_queued") == Some(1));
    assert!(queued.is_some(), "the first job was not queued: {:?}", node.try_rpc(&["dmq.stats"]));
    let reply = node.sip_exchange(&sock, &set_q(from, 7), Duration::from_secs(1)).unwrap_or_default();
    assert!(reply.starts_with("SIP/2.0 503"), "expected 503 at once, got: {reply}");
    assert!(node.log_text().contains("job queue full"), "no log line for the refused job");
    let stat = dmq_stat;
    assert_eq!(stat(&node, "jobs_rejected"), Some(1), "dmq.stats: {:?}", node.try_rpc(&["dmq.stats"]));
    // Still serving once the worker catches up: the queued job ran, a new one runs too.
    assert!(node.wait_until(Duration::from_secs(10), |n| stat(n, "jobs_queued") == Some(0)), "the queue did not drain");
    assert_eq!(htable_value(&node, "q").as_deref(), Some("7"));
    let later = std::net::UdpSocket::bind(format!("{}:0", allocate_address().ip())).unwrap();
    let reply = node.sip_exchange(&later, &set_q(later.local_addr().unwrap(), 8), Duration::from_secs(5)).unwrap_or_default();
    assert!(reply.starts_with("SIP/2.0 200"), "after draining: {reply}");
    assert_eq!(htable_value(&node, "q").as_deref(), Some("8"));
    assert_eq!(stat(&node, "jobs_rejected"), Some(1));
    assert_eq!(stat(&node, "jobs_processed"), Some(2));
}

#[test]
fn a_full_job_queue_loses_nothing_between_dmq_rs_nodes() {
    // The receiver takes one waiting job at a time, and its one worker polls
    // every 50 ms: a burst of writes overflows it, its 503s make the sender
    // send again later, and every item arrives (every message through the
    // queue: updates_in_place 0).
    let receiver = htable_node()
        .param("updates_in_place", "0")
        .param("num_workers", "1")
        .param("worker_usleep", "50000")
        .param("job_queue_limit", "1");
    let nodes = start_cluster("queue-retry", vec![htable_node(), receiver]);
    for i in 0..20 {
        nodes[0].rpc(&["htable.seti", "t", &format!("burst{i}"), &i.to_string()]);
    }
    for i in 0..20 {
        let key = format!("burst{i}");
        assert!(nodes[1].wait_until(REPLICATE, |n| htable_value(n, &key) == Some(i.to_string())), "{key} never arrived");
    }
    assert!(dmq_stat(&nodes[1], "jobs_rejected").unwrap_or(0) > 0, "the queue never overflowed: {:?}", nodes[1].try_rpc(&["dmq.stats"]));
    assert!(dmq_stat(&nodes[0], "messages_retried_after_503_without_tm").unwrap_or(0) > 0, "{:?}", nodes[0].try_rpc(&["dmq.stats"]));
}

#[test]
fn a_full_job_queue_loses_nothing_over_tcp() {
    // The receiver takes one waiting job at a time from a slow worker: a
    // burst overflows it, and the 503s it answers must be sent again
    // (every message through the queue: updates_in_place 0).
    let sender = Node::start("tcp-503-a", &over_tcp(htable_node(), None));
    let receiver_config = htable_node()
        .param("updates_in_place", "0")
        .param("num_workers", "1")
        .param("worker_usleep", "50000")
        .param("job_queue_limit", "1");
    let receiver = Node::start("tcp-503-b", &over_tcp(receiver_config, Some(sender.addr)));
    let converged = |n: &Node| {
        let out = n.try_rpc(&["dmq.list_nodes"]).unwrap_or_default();
        out.matches("status: active").count() == 2 && out.matches("proto: tcp").count() == 2
    };
    assert!(sender.wait_until(CONVERGE, converged) && receiver.wait_until(CONVERGE, converged));
    for i in 0..20 {
        sender.rpc(&["htable.seti", "t", &format!("burst{i}"), &i.to_string()]);
    }
    for i in 0..20 {
        let key = format!("burst{i}");
        assert!(
            receiver.wait_until(Duration::from_secs(15), |n| htable_value(n, &key) == Some(i.to_string())),
            "{key} never arrived: {}",
            sender.rpc(&["dmq.stats"])
        );
    }
    assert!(stat(&receiver, "jobs_rejected") > 0, "the queue never overflowed: {}", receiver.rpc(&["dmq.stats"]));
    // Over TCP too every message goes through the in-flight table, and the
    // 503s are sent again from there (before issue 22: through tm).
    assert!(stat(&sender, "messages_retried_after_503_without_tm") > 0, "{}", sender.rpc(&["dmq.stats"]));
    assert_eq!(stat(&sender, "messages_sent_without_tm"), 20, "{}", sender.rpc(&["dmq.stats"]));
    assert_eq!(stat(&sender, "messages_retried_after_503_through_tm"), 0, "{}", sender.rpc(&["dmq.stats"]));
}

#[test]
fn a_kdmq_that_waits_behind_another_hears_100_trying_at_once() {
    // "At once" is a time bound: alone on the machine.
    common::machine::alone();
    // The test's socket is no cluster node: let its KDMQs in (members_only 0).
    // Every message through the queue (updates_in_place 0).
    let node = Node::start("trying", &htable_node().param("num_workers", "1").param("members_only", "0").param("updates_in_place", "0"));
    let worker: i32 = reply_field(&node.rpc(&["dmq.stats"]), "worker_pid").expect("a worker pid");
    let sock = UdpSocket::bind(format!("{}:0", allocate_address().ip())).unwrap();
    let from = sock.local_addr().unwrap();
    let set = |value: u32| {
        let body = format!(r#"{{"action":2,"htname":"t","cname":"w{value}","type":0,"intval":{value},"mode":0}}"#);
        kdmq(node.addr, from, "htable", "application/json", body.as_bytes())
    };
    // SAFETY: stops only the worker of the node this test started.
    unsafe { libc::kill(worker, libc::SIGSTOP) };
    struct Resume(i32);
    impl Drop for Resume {
        fn drop(&mut self) {
            // SAFETY: as above.
            unsafe { libc::kill(self.0, libc::SIGCONT) };
        }
    }
    let resume = Resume(worker);
    sock.send_to(&set(1), node.addr).unwrap();
    sock.send_to(&set(2), node.addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(400))).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = sock.recv_from(&mut buf).expect("a reply within 400 ms, before the sender would retransmit");
    let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(reply.starts_with("SIP/2.0 100"), "{reply}");
    drop(resume);
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut finals = 0;
    for _ in 0..2 {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            finals += buf[..n].starts_with(b"SIP/2.0 200") as usize;
        }
    }
    assert_eq!(finals, 2);
    // Two SIP workers may queue the two in either order: both arrive.
    assert_eq!(htable_value(&node, "w1").as_deref(), Some("1"));
    assert_eq!(htable_value(&node, "w2").as_deref(), Some("2"));
}
