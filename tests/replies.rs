//! Replies to peer messages: a message in flight is completed by its
//! node's own reply only (a forged one neither completes nor silences it),
//! the Via names the socket the message leaves from so the reply finds it,
//! and replies reach dmq through a reply route that drops unknown ones.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::*;

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
    let reply =
        node.sip_exchange(&sock, &sip_request("MESSAGE", "x", node.addr, from, "text/plain", b"hello", Some(5)), Duration::from_secs(5));
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
    fake.sock
        .send_to(&request.reply(200, |l| if l.starts_with("Call-ID") { "Call-ID: dmqrs-1.1.0@x".into() } else { l.to_string() }), node.addr)
        .unwrap();
    // A branch guessed from slot and sequence alone (no nonce): refused too.
    let branch = request.branch();
    let guessed: String = branch.rsplit_once('.').unwrap().0.to_string();
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
        let (held, done) =
            wait_settled(Duration::from_secs(20), Duration::from_secs(5), Duration::from_millis(200), || aor_count(node), |n| *n >= count);
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
