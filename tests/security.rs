//! Only members speak DMQ, members may have to prove it (a shared secret),
//! and one packet can no longer crash or hijack a node.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use dmq_core::auth;

const ANSWER: Duration = Duration::from_secs(5);

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn dmq_stat(node: &Node, name: &str) -> u64 {
    reply_field(&node.rpc(&["dmq.stats"]), name).unwrap_or_else(|| panic!("no {name} in dmq.stats"))
}

/// A contact as dmq_usrloc replicates it, pointing somewhere else.
fn planted_contact(aor: &str) -> String {
    let now = unix_now();
    format!(
        r#"{{"action":1,"aor":"{aor}","ruid":"planted-{aor}","c":"sip:{aor}@192.0.2.66:5060","received":"","path":"","callid":"evil","user_agent":"attacker","instance":"","expires":{},"cseq":1,"flags":0,"cflags":0,"q":-1,"last_modified":{now},"methods":4294967295,"reg_id":0,"server_id":0}}"#,
        now + 3600
    )
}

fn holds_aor(node: &Node, aor: &str) -> bool {
    node.try_rpc(&["ul.lookup", "location", aor]).is_ok_and(|out| out.contains(aor))
}

/// Every consumer the stock modules bring: dmq_usrloc (with a registrar),
/// htable, dialog and presence (db_text tables in `dbdir`).
fn all_consumers(dbdir: &std::path::Path) -> NodeConfig {
    let mut c = with_htable(registrar(NodeConfig::default()));
    c.consumers += &format!(
        "loadmodule \"rr.so\"\nloadmodule \"dialog.so\"\nmodparam(\"dialog\", \"enable_dmq\", 1)\n\
         loadmodule \"db_text.so\"\nloadmodule \"presence.so\"\n\
         modparam(\"presence\", \"db_url\", \"text://{}\")\nmodparam(\"presence\", \"enable_dmq\", 1)\n",
        dbdir.display()
    );
    c
}

fn trusted(c: NodeConfig, members: &[SocketAddr]) -> NodeConfig {
    members.iter().fold(c, |c, m| c.param("trusted_network", &format!("\"{}\"", m.ip())))
}

fn exchange(node: &Node, sock: &UdpSocket, datagram: &[u8], what: &str) -> String {
    node.sip_exchange(sock, datagram, ANSWER).unwrap_or_else(|| panic!("{what}: no answer from {}", node.addr))
}

#[test]
fn strangers_cannot_plant_contacts_join_or_crash_a_node() {
    let (a_addr, b_addr) = (allocate_address(), allocate_address());
    let dbdir = db_text_schema("sec-db");
    let base = || trusted(all_consumers(&dbdir), &[a_addr, b_addr]);
    let a = Node::start_at("sec-a", &base().param("ping_interval", "2"), a_addr);
    let b = Node::start_at("sec-b", &seeded(base(), a_addr), b_addr);
    assert_converged(&[&a, &b]);
    let list_before = b.rpc(&["dmq.list_nodes"]);

    // 1. A contact planted from an address that is no cluster node.
    let stranger = UdpSocket::bind(format!("{}:0", allocate_address().ip())).unwrap();
    let from = stranger.local_addr().unwrap();
    let plant = kdmq(b.addr, from, "usrloc", "application/json", planted_contact("victim").as_bytes());
    let reply = exchange(&b, &stranger, &plant, "planted contact");
    assert!(reply.starts_with("SIP/2.0 403"), "{reply}");
    // 2. A node announced by a stranger.
    let fake_node = format!("sip:{}:5090;status=active\r\n", from.ip());
    let reply = exchange(&b, &stranger, &kdmq(b.addr, from, "notification_peer", "text/plain", fake_node.as_bytes()), "notification");
    assert!(reply.starts_with("SIP/2.0 403"), "{reply}");
    // 3. The body that crashes dmq_usrloc, from a stranger.
    let reply = exchange(&b, &stranger, &kdmq(b.addr, from, "usrloc", "application/json", b"{}"), "{}");
    assert!(reply.starts_with("SIP/2.0 403"), "{reply}");
    assert!(!holds_aor(&b, "victim"), "the planted contact was stored");
    assert_eq!(b.rpc(&["dmq.list_nodes"]), list_before, "a stranger changed the node list");

    // From a member's address (A's IP, another port) the same contact is
    // accepted: the source is what was refused.
    let member = UdpSocket::bind(format!("{}:0", a_addr.ip())).unwrap();
    let from_member = member.local_addr().unwrap();
    let reply = exchange(
        &b,
        &member,
        &kdmq(b.addr, from_member, "usrloc", "application/json", planted_contact("member-made").as_bytes()),
        "member",
    );
    assert!(reply.starts_with("SIP/2.0 200"), "{reply}");
    assert!(holds_aor(&b, "member-made"), "a member's contact was not stored");
    // A member that names a node outside trusted_network: answered, not listed.
    let reply =
        exchange(&b, &member, &kdmq(b.addr, from_member, "notification_peer", "text/plain", fake_node.as_bytes()), "member notification");
    assert!(reply.starts_with("SIP/2.0 200"), "{reply}");
    assert!(!b.rpc(&["dmq.list_nodes"]).contains(&format!("host: {}\n", from.ip())), "an untrusted node was listed");

    // Bodies that crash the stock consumers, from a member: 400, and the
    // consumer never sees them.
    let crashing: &[(&str, &str)] = &[
        ("usrloc", "{}"),
        ("usrloc", r#"{"action":1,"aor":null,"c":"sip:x@h"}"#),
        ("usrloc", r#"{"multi":{"1":{"action":1,"aor":5}}}"#),
        ("htable", "{}"),
        ("htable", r#"{"action":1,"htname":"t","cname":"k","type":2,"strval":7}"#),
        ("htable", r#"{"cells":[[1]]}"#),
        ("dialog", r#"{"callid":1}"#),
        ("dialog", r#"{"action":1,"vars":["x"]}"#),
        ("presence", "[1]"),
        ("presence", r#"{"action":1,"presentity":{"user":1}}"#),
    ];
    for (peer, body) in crashing {
        let reply = exchange(&b, &member, &kdmq(b.addr, from_member, peer, "application/json", body.as_bytes()), body);
        assert!(reply.starts_with("SIP/2.0 400"), "{peer} {body}: {reply}");
    }
    assert!(b.log_text().contains("the consumer never saw it"), "no log line for a refused body");

    // Alive and replicating.
    let dir = node_dir("sec-sipp");
    let (status, _, err) = sipp_register(a.addr, &dir, 20, 100);
    assert!(status.success(), "sipp: {err}");
    let (held, took) =
        wait_settled(Duration::from_secs(15), Duration::from_secs(5), Duration::from_millis(200), || aor_count(&b), |n| *n >= 21);
    assert!(took.is_some(), "B holds {held} of 21 contacts after the attacks");
    assert_eq!(dmq_stat(&b, "refused_not_member"), 2, "{}", b.rpc(&["dmq.stats"]));
    assert_eq!(dmq_stat(&b, "refused_untrusted_network"), 2, "{}", b.rpc(&["dmq.stats"]));
    assert_eq!(dmq_stat(&b, "refused_bad_json"), crashing.len() as u64, "{}", b.rpc(&["dmq.stats"]));
    eprintln!("refused: {}", b.rpc(&["dmq.stats"]).lines().filter(|l| l.contains("refused")).collect::<Vec<_>>().join(", "));
}

#[test]
fn without_trusted_network_the_log_says_any_host_can_join() {
    let node = Node::start("sec-warn", &NodeConfig::default());
    assert!(node.log_text().contains("\"trusted_network\") is not set: any host"), "no startup warning");
}

const SECRET: &str = "test-only-secret-0123456789";

/// A KDMQ with an `X-DMQ-Signature` made with `secret` at `signed_at`
/// (None: unsigned).
fn signed_kdmq(to: SocketAddr, from: SocketAddr, peer: &str, body: &[u8], signing: Option<(&str, i64)>) -> Vec<u8> {
    let n = rand_tag();
    let ruri = format!("sip:{peer}@{to}");
    let call_id = format!("signed-{n}@{from}");
    let signature = signing
        .map(|(secret, at)| {
            let parts = auth::SignedParts { ruri: ruri.as_bytes(), call_id: call_id.as_bytes(), cseq: b"1", body };
            format!("{}: {}\r\n", auth::HEADER, auth::sign(secret.as_bytes(), &parts, at))
        })
        .unwrap_or_default();
    let mut m = format!(
        "KDMQ {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-s{n}\r\nFrom: <sip:{peer}@{from}>;tag=s{n}\r\n\
         To: <{ruri}>\r\nCall-ID: {call_id}\r\nCSeq: 1 KDMQ\r\nMax-Forwards: 1\r\n{signature}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    m.extend_from_slice(body);
    m
}

#[test]
fn a_shared_secret_keeps_out_every_unsigned_or_stale_kdmq() {
    let secret = format!("\"{SECRET}\"");
    let nodes = start_cluster("sec-secret", (0..3).map(|_| registrar(NodeConfig::default()).param("shared_secret", &secret)).collect());
    let dir = node_dir("sec-secret-sipp");
    let (status, _, err) = sipp_register(nodes[0].addr, &dir, 30, 100);
    assert!(status.success(), "sipp: {err}");
    for n in &nodes[1..] {
        let (held, took) =
            wait_settled(Duration::from_secs(15), Duration::from_secs(5), Duration::from_millis(200), || aor_count(n), |c| *c >= 30);
        assert!(took.is_some(), "{} holds {held} of 30 contacts in a signed cluster", n.addr);
    }

    // A node with another secret is refused and never becomes active.
    let intruder = Node::start(
        "sec-secret-other",
        &seeded(registrar(NodeConfig::default()), nodes[0].addr).param("shared_secret", "\"another-secret-456789\""),
    );
    // It was refused (the positive signal), and stays refused when it asks
    // again (a notification every ping round).
    let refused = wait_for(Duration::from_secs(15), || dmq_stat(&nodes[0], "refused_bad_signature") >= 2);
    assert!(refused.is_some(), "the intruder was refused {} times", dmq_stat(&nodes[0], "refused_bad_signature"));
    assert_ne!(status_of(&nodes[0], intruder.addr).as_deref(), Some("active"), "a node with another secret joined");
    assert!(nodes[0].log_text().contains("does not match"), "no log line for the wrong secret");
    assert!(!nodes[0].log_text().contains(SECRET), "the secret appears in the log");

    // From a member's address: unsigned, stale (a replay) and wrongly
    // signed KDMQs are refused; a fresh signed one is taken.
    let member = UdpSocket::bind(format!("{}:0", nodes[1].addr.ip())).unwrap();
    let from = member.local_addr().unwrap();
    let to = nodes[0].addr;
    let body = planted_contact("signed-check");
    let cases = [
        ("unsigned", None, "SIP/2.0 403"),
        ("replayed", Some((SECRET, unix_now() - 120)), "SIP/2.0 403"),
        ("another secret", Some(("another-secret-456789", unix_now())), "SIP/2.0 403"),
        ("signed", Some((SECRET, unix_now())), "SIP/2.0 200"),
    ];
    for (what, signing, expected) in cases {
        let reply = exchange(&nodes[0], &member, &signed_kdmq(to, from, "usrloc", body.as_bytes(), signing), what);
        assert!(reply.starts_with(expected), "{what}: {reply}");
    }
    assert!(holds_aor(&nodes[0], "signed-check"));
}

#[test]
fn a_node_dropped_from_a_peers_list_gets_its_messages_through() {
    // Pings once a minute: only the 403 can bring B back into A's list in time.
    let c = with_htable(NodeConfig::default()).param("ping_interval", "60");
    let a = Node::start("sec-drop-a", &c);
    let b = Node::start("sec-drop-b", &c.clone().param("notification_address", &format!("\"sip:{}\"", a.addr)));
    assert_converged(&[&a, &b]);
    // A forgets B (as after missed pings); B still lists A as active.
    a.rpc(&["dmq.remove", &format!("sip:{}", b.addr)]);
    assert_eq!(status_of(&a, b.addr), None);
    b.rpc(&["htable.seti", "t", "after-drop", "7"]);
    assert!(
        a.wait_until(Duration::from_secs(8), |n| htable_get(n, "t", "after-drop").as_deref() == Some("7")),
        "the item from a node A had dropped never arrived: {}",
        b.rpc(&["dmq.stats"])
    );
    assert!(dmq_stat(&a, "refused_not_member") >= 1, "A did not refuse B first");
    assert_eq!(status_of(&a, b.addr).as_deref(), Some("active"), "A does not list B again");
}
