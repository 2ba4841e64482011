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
    named_nodes(false);
}

/// The same with `trusted_network`: a new named node is judged by its
/// addresses, which the DMQ DNS process looks up (issue 26: never the SIP
/// worker that got the notification).
#[test]
fn named_nodes_are_judged_by_trusted_network_after_the_dns_process_looked_them_up() {
    named_nodes(true);
}

fn named_nodes(trusted: bool) {
    let dir = node_dir(if trusted { "names-hosts-trusted" } else { "names-hosts" });
    let addrs: Vec<SocketAddr> = (0..3).map(|_| allocate_address()).collect();
    let names = ["dmq-a.cluster.test", "dmq-b.cluster.test", "dmq-c.cluster.test"];
    let hosts = dir.join("hosts");
    let mut text = String::from("127.0.0.1 localhost\n");
    for (name, addr) in names.iter().zip(&addrs) {
        text += &format!("{} {name}\n", addr.ip());
    }
    std::fs::write(&hosts, text).unwrap();
    // DNS of the test's own, without records: the names come from the hosts
    // file (and no query leaves the machine).
    let dns = common::dns::Dns::start(if trusted { "names-dns-trusted" } else { "names-dns" }, &[], &[], 1);
    let config = |i: usize| {
        let c = NodeConfig {
            host_name: Some(names[i].to_string()),
            hosts: Some(hosts.clone()),
            resolv_conf: Some(dns.resolv_conf()),
            core: "use_dns_cache=no\n".into(),
            route: FROM_NODE_ROUTE.into(),
            ..Default::default()
        }
        .param("ping_interval", "2");
        let c = if trusted { c.param("trusted_network", "\"127.0.0.0/8\"") } else { c };
        if i == 0 { c } else { c.param("notification_address", &format!("\"sip:{}:{}\"", names[0], addrs[0].port())) }
    };
    let label = if trusted { "names-trusted" } else { "names" };
    let nodes: Vec<Node> = (0..3).map(|i| Node::start_at(&format!("{label}-{i}"), &config(i), addrs[i])).collect();

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

// ---- a fake node: a UDP socket the test drives -----------------------------

/// A stand-in cluster node: a UDP socket on its own loopback address.
struct FakeNode {
    sock: UdpSocket,
    addr: SocketAddr,
}

/// A datagram the fake node received, with where it came from.
struct Received {
    text: String,
    from: SocketAddr,
}

impl Received {
    fn header(&self, name: &str) -> Option<String> {
        self.text.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    fn branch(&self) -> String {
        self.header("Via").and_then(|v| v.split("branch=").nth(1).map(|b| b.split(';').next().unwrap().to_string())).unwrap()
    }

    /// A reply to this request, with `edit` applied to its header lines.
    fn reply(&self, code: u16, edit: impl Fn(&str) -> String) -> Vec<u8> {
        let mut out = format!("SIP/2.0 {code} Whatever\r\n");
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            let line = format!("{name}: {}", self.header(name).unwrap());
            out += &edit(&line);
            out += "\r\n";
        }
        out += "Content-Length: 0\r\n\r\n";
        out.into_bytes()
    }
}

impl FakeNode {
    fn new() -> FakeNode {
        let sock = UdpSocket::bind(allocate_address()).unwrap();
        let addr = sock.local_addr().unwrap();
        FakeNode { sock, addr }
    }

    /// Joins `node`'s cluster: a notification listing itself as active.
    fn join(&self, node: &Node) {
        let body = format!("sip:{};status=active\r\n", self.addr);
        let reply = node.sip_exchange(&self.sock, &kdmq(node.addr, self.addr, "notification_peer", "text/plain", body.as_bytes()), Duration::from_secs(5));
        assert!(reply.unwrap_or_default().starts_with("SIP/2.0 200"));
    }

    /// The next datagram within `limit`.
    fn recv(&self, limit: Duration) -> Option<Received> {
        let mut buf = vec![0u8; 65536];
        self.sock.set_read_timeout(Some(limit.max(Duration::from_millis(1)))).unwrap();
        let (n, from) = self.sock.recv_from(&mut buf).ok()?;
        Some(Received { text: String::from_utf8_lossy(&buf[..n]).into_owned(), from })
    }

    /// Answers every notification and ping with `code` for `time`.
    fn answer_pings(&self, code: u16, time: Duration) {
        let start = std::time::Instant::now();
        while start.elapsed() < time {
            let Some(got) = self.recv(Duration::from_millis(100)) else { continue };
            if got.text.starts_with("KDMQ sip:notification_peer@") {
                self.sock.send_to(&got.reply(code, |l| l.to_string()), got.from).unwrap();
            }
        }
    }

    /// The next request for `peer` (bounded); notifications and pings on
    /// the way are answered 200, as a node would.
    fn next_request(&self, peer: &str, limit: Duration) -> Option<Received> {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            let Some(got) = self.recv(Duration::from_millis(200)) else { continue };
            if got.text.starts_with(&format!("KDMQ sip:{peer}@")) {
                return Some(got);
            }
            if got.text.starts_with("KDMQ sip:notification_peer@") {
                self.sock.send_to(&got.reply(200, |l| l.to_string()), got.from).unwrap();
            }
        }
        None
    }
}

/// `config` with a script that broadcasts the body of a MESSAGE to peer `testpeer`.
fn broadcasting(config: NodeConfig) -> NodeConfig {
    NodeConfig {
        route: "if (is_method(\"KDMQ\")) { dmq_handle_message(); exit; }\n\
                \tif (is_method(\"MESSAGE\")) { dmq_bcast_message(\"testpeer\", \"$rb\", \"text/plain\"); sl_send_reply(\"200\", \"Sent\"); exit; }\n\
                \tsl_send_reply(\"404\", \"Not here\");"
            .into(),
        ..config
    }
}

/// Makes `node` broadcast one `testpeer` message.
fn broadcast(node: &Node) {
    let sock = UdpSocket::bind(format!("{}:0", allocate_address().ip())).unwrap();
    let from = sock.local_addr().unwrap();
    let reply = node.sip_exchange(&sock, &sip_request("MESSAGE", "x", node.addr, from, "text/plain", b"hello", Some(5)), Duration::from_secs(5));
    assert!(reply.unwrap_or_default().starts_with("SIP/2.0 200"));
}

fn stat(node: &Node, name: &str) -> i64 {
    reply_field(&node.rpc(&["dmq.stats"]), name).unwrap_or(-1)
}

#[test]
fn forged_replies_neither_complete_nor_silence_a_message() {
    let node = Node::start("forged", &broadcasting(NodeConfig::default()));
    let fake = FakeNode::new();
    fake.join(&node);
    broadcast(&node);
    let request = fake.next_request("testpeer", Duration::from_secs(5)).expect("the message reaches the node");
    assert_eq!(stat(&node, "messages_in_flight"), 1);
    let attacker = UdpSocket::bind(format!("{}:0", allocate_address().ip())).unwrap();

    // The right branch and Call-ID from another address: refused.
    attacker.send_to(&request.reply(200, |l| l.to_string()), node.addr).unwrap();
    attacker.send_to(&request.reply(100, |l| l.to_string()), node.addr).unwrap();
    // From the node's own address but with another Call-ID: refused.
    fake.sock.send_to(&request.reply(200, |l| if l.starts_with("Call-ID") { "Call-ID: dmqrs-1.1.0@x".into() } else { l.to_string() }), node.addr).unwrap();
    // A branch guessed from slot and sequence alone (no nonce): refused too.
    let branch = request.branch();
    let guessed: String = branch.rsplitn(2, '.').nth(1).unwrap().to_string();
    fake.sock.send_to(&request.reply(200, |l| l.replace(&branch, &guessed)), node.addr).unwrap();
    assert!(node.wait_until(Duration::from_secs(3), |n| stat(n, "forged_replies") == 4), "{}", node.rpc(&["dmq.stats"]));
    assert_eq!(stat(&node, "messages_in_flight"), 1, "a forged reply completed the message");
    // Not silenced either: the message is still retransmitted to the node.
    let again = fake.next_request("testpeer", Duration::from_secs(3)).expect("retransmitted after forged replies");
    assert_eq!(again.branch(), branch);

    // The node's own reply completes it.
    fake.sock.send_to(&request.reply(200, |l| l.to_string()), node.addr).unwrap();
    assert!(node.wait_until(Duration::from_secs(3), |n| stat(n, "messages_in_flight") == 0));
    assert!(node.log_text().contains("was ignored"), "the refusal is logged");
}

#[test]
fn the_via_names_the_socket_the_request_leaves_from() {
    // DMQ sends from a second socket on another port than server_address.
    let main = allocate_address();
    let second = UdpSocket::bind(format!("{}:0", main.ip())).unwrap().local_addr().unwrap();
    let config = broadcasting(NodeConfig { globals: format!("listen=udp:{second}\n"), ..Default::default() })
        .param("server_socket", &format!("\"udp:{second}\""));
    let node = Node::start_at("via", &config, main);
    let fake = FakeNode::new();
    fake.join(&node);
    broadcast(&node);
    let request = fake.next_request("testpeer", Duration::from_secs(5)).expect("the message reaches the node");
    assert_eq!(request.from, second, "sent from server_socket");
    let via = request.header("Via").unwrap();
    assert!(via.starts_with(&format!("SIP/2.0/UDP {second};")), "Via {via} does not name {second}");
    // Replying where the Via says completes the message.
    fake.sock.send_to(&request.reply(200, |l| l.to_string()), second).unwrap();
    assert!(node.wait_until(Duration::from_secs(3), |n| stat(n, "messages_in_flight") == 0), "{}", node.rpc(&["dmq.stats"]));
}

#[test]
fn replies_reach_dmq_through_a_reply_route_that_drops_unknown_replies() {
    // As in Kamailio's own example configs.
    let drop_route = "onreply_route {\n\tif (!t_check_trans()) { drop; }\n}\n";
    let config = || NodeConfig { extra_routes: drop_route.into(), ..registrar(NodeConfig::default()) };
    let nodes = start_cluster("reply-route", vec![config(), config(), config()]);
    let count = 1000;
    let (status, out, err) = sipp_register(nodes[0].addr, &nodes[0].dir, count, 500);
    assert!(status.success(), "sipp: {out}{err}");
    for node in &nodes {
        let (held, done) = wait_settled(Duration::from_secs(20), Duration::from_secs(5), Duration::from_millis(200), || aor_count(node), |n| *n >= count);
        assert!(done.is_some(), "node {} holds {held} of {count}", node.addr);
    }
    let entry = &nodes[0];
    assert!(
        entry.wait_until(Duration::from_secs(5), |n| stat(n, "messages_in_flight") == 0),
        "replies did not complete the messages: {}",
        entry.rpc(&["dmq.stats"])
    );
    let sent = stat(entry, "messages_sent_without_tm");
    // Each copy went alone or in a batch.
    let copies = sent - stat(entry, "batches_sent") + stat(entry, "messages_batched");
    assert!(copies >= 2 * count as i64, "{}", entry.rpc(&["dmq.stats"]));
    // Without the replies every message would be sent again about 7 times.
    let retransmissions = stat(entry, "messages_retransmitted");
    assert!(retransmissions * 20 < sent, "{retransmissions} retransmissions for {sent} messages");
    assert_eq!(stat(entry, "messages_timed_out_without_tm"), 0);
}

#[test]
fn a_node_that_refuses_pings_stays_listed_as_with_stock() {
    let node = Node::start("ping-403", &NodeConfig::default().param("ping_interval", "1"));
    let fake = FakeNode::new();
    fake.join(&node);
    // Several ping rounds answered 403: stock changes nothing for it.
    fake.answer_pings(403, Duration::from_secs(5));
    assert_eq!(status_of(&node, fake.addr).as_deref(), Some("active"), "{}", node.rpc(&["dmq.list_nodes"]));
}

#[test]
fn notifications_in_a_dead_nodes_name_do_not_keep_it_listed() {
    let node = Node::start("spoofed-alive", &NodeConfig::default().param("ping_interval", "1"));
    let fake = FakeNode::new();
    fake.join(&node);
    // The node stops answering pings; someone else keeps sending
    // notifications in its name (From: the fake node, body: it is active).
    let spoofer = UdpSocket::bind(format!("{}:0", allocate_address().ip())).unwrap();
    let body = format!("sip:{};status=active\r\n", fake.addr);
    let gone = node.wait_until(Duration::from_secs(8), |n| {
        // From: names the fake node; the packet comes from the spoofer.
        let request = kdmq(n.addr, fake.addr, "notification_peer", "text/plain", body.as_bytes());
        spoofer.send_to(&request, n.addr).unwrap();
        status_of(n, fake.addr).as_deref() != Some("active")
    });
    assert!(gone, "a node that answers no ping is still active: {}", node.rpc(&["dmq.list_nodes"]));
}

// ---- 503s on the tm path, 100 Trying --------------------------------------

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

#[test]
fn a_full_job_queue_loses_nothing_over_tcp() {
    // The receiver takes one waiting job at a time from a slow worker: a
    // burst overflows it, and the 503s it answers must be sent again
    // (every message through the queue: updates_in_place 0).
    let sender = Node::start("tcp-503-a", &over_tcp(htable_node(), None));
    let receiver_config = htable_node().param("updates_in_place", "0").param("num_workers", "1").param("worker_usleep", "50000").param("job_queue_limit", "1");
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
    // The test's socket is no cluster node: let its KDMQs in (members_only 0).
    // Every message through the queue (updates_in_place 0).
    let node = Node::start(
        "trying",
        &htable_node().param("num_workers", "1").param("members_only", "0").param("updates_in_place", "0"),
    );
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

#[test]
fn a_flood_of_bogus_nodes_fills_the_list_to_its_limit_and_changes_still_hold() {
    let node = Node::start("node-limit", &NodeConfig::default().param("ping_interval", "1"));
    let sock = UdpSocket::bind(format!("{}:0", allocate_address().ip())).unwrap();
    let from = sock.local_addr().unwrap();
    // 600 made-up nodes on loopback addresses nobody listens on.
    let body: String = (0..600).map(|i| format!("sip:127.1.{}.{}:5090;status=active\r\n", i / 250, 1 + i % 250)).collect();
    let reply = node.sip_exchange(&sock, &kdmq(node.addr, from, "notification_peer", "text/plain", body.as_bytes()), Duration::from_secs(5));
    assert!(reply.unwrap_or_default().starts_with("SIP/2.0 200"));
    let limit: usize = reply_field(&node.rpc(&["dmq.stats"]), "node_limit").unwrap();
    let listed = |n: &Node| n.try_rpc(&["dmq.list_nodes"]).unwrap_or_default().matches("host:").count();
    assert_eq!(listed(&node), limit, "the list holds up to the limit");
    assert_eq!(stat(&node, "nodes_refused"), (600 + 1 - limit) as i64);
    assert!(node.log_text().contains("beyond the limit"), "the refusal is logged");
    // Changes are still saved: the made-up nodes answer no ping and go.
    assert!(
        node.wait_until(Duration::from_secs(10), |n| listed(n) == 1),
        "{} nodes still listed",
        listed(&node)
    );
}

// ---- cfg framework ------------------------------------------------------

/// Reads `len` bytes at `addr` in process `pid` (root reads any process).
fn peek(pid: u32, addr: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut buf = vec![0u8; len];
    mem.read_exact_at(&mut buf, addr).unwrap();
    buf
}

/// How many processes the cfg framework waits for before it frees a
/// config change (the refcount `cfg_register_child` raises on the first
/// per-child callback item), read from the node's main process.
fn cfg_children(node: &Node) -> i32 {
    let pid = node.pid();
    // /proc/pid/maps names the file by its real path
    let binary = node.release.host_path(KAMAILIO).canonicalize().unwrap();
    let binary = binary.to_str().unwrap();
    let nm = std::process::Command::new("nm").args(["-D", binary]).output().expect("nm (binutils)");
    let symbol = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .find_map(|l| l.strip_suffix(" B cfg_child_cb_first").map(|a| u64::from_str_radix(a.trim(), 16).unwrap()))
        .expect("cfg_child_cb_first in kamailio's dynamic symbols");
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let base = maps
        .lines()
        .find(|l| l.ends_with(binary) && l.split_whitespace().nth(2) == Some("00000000"))
        .map(|l| u64::from_str_radix(l.split('-').next().unwrap(), 16).unwrap())
        .unwrap_or_else(|| panic!("kamailio's mapping ({binary}) in:\n{maps}"));
    let word = |addr: u64| u64::from_ne_bytes(peek(pid, addr, 8).try_into().unwrap());
    let first = word(word(base + symbol));
    i32::from_ne_bytes(peek(pid, first, 4).try_into().unwrap())
}

#[test]
fn dmq_workers_are_counted_by_the_cfg_framework() {
    let one = Node::start("cfg-1", &NodeConfig::default().param("num_workers", "1"));
    let four = Node::start("cfg-4", &NodeConfig::default().param("num_workers", "4"));
    assert_eq!(cfg_children(&four) - cfg_children(&one), 3, "three more workers, three more cfg children");
}
