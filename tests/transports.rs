//! Peer messages over TCP and TLS go through dmq_rs's in-flight table, not a
//! tm transaction each (since issue 22), in clusters with stock nodes too:
//! stock nodes answer through sl on the connection, and their replies must
//! complete our messages; stock's own messages reach us through its tm.

mod common;

use std::time::Duration;

use common::*;

fn stat(node: &Node, name: &str) -> u64 {
    reply_field(&node.rpc(&["dmq.stats"]), name).unwrap_or(u64::MAX)
}

fn statistic(node: &Node, name: &str) -> u64 {
    let out = node.rpc(&["stats.get_statistics", "dmq:"]);
    out.lines().find_map(|l| l.trim().strip_prefix(&format!("dmq:{name} = "))?.trim().parse().ok()).unwrap_or(u64::MAX)
}

/// dmq_rs, stock, dmq_rs over `transport`; REGISTERs into each kind.
fn mixed_cluster_replicates_in_flight(transport: DmqTransport) {
    let label = format!("mixed-{}", transport.name());
    let rs = registrar(NodeConfig::default()).over(transport);
    let stock = registrar(NodeConfig::stock()).over(transport);
    let nodes = start_cluster(&label, vec![rs.clone(), stock, rs]);
    let held_everywhere = |want: usize| nodes.iter().all(|n| n.wait_until(Duration::from_secs(20), |n| aor_count(n) >= want));
    // Into dmq_rs: its copies go to the stock node and the other dmq_rs node.
    let (status, _, err) = sipp_register(nodes[0].addr, &nodes[0].dir, 300, 100);
    assert!(status.success(), "sipp: {err}");
    assert!(held_everywhere(300), "{:?}", nodes.iter().map(aor_count).collect::<Vec<_>>());
    // Into the stock node: through its tm, over the same transport.
    let (status, _, err) = sipp_register(nodes[1].addr, &nodes[1].dir, 400, 100);
    assert!(status.success(), "sipp: {err}");
    assert!(held_everywhere(400), "{:?}", nodes.iter().map(aor_count).collect::<Vec<_>>());
    let entry = &nodes[0];
    assert!(entry.wait_until(Duration::from_secs(10), |n| stat(n, "messages_in_flight") == 0), "{}", entry.rpc(&["dmq.stats"]));
    // Every copy went through the table and was completed by a reply (the
    // stock node's included): none through tm, none timed out, all 2xx.
    assert!(stat(entry, "messages_sent_without_tm") >= 2, "{}", entry.rpc(&["dmq.stats"]));
    assert_eq!(statistic(entry, "messages_sent_through_tm"), 0, "{}", entry.rpc(&["stats.get_statistics", "dmq:"]));
    assert_eq!(stat(entry, "messages_timed_out_without_tm"), 0, "{}", entry.rpc(&["dmq.stats"]));
    assert_eq!(stat(entry, "forged_replies"), 0, "{}", entry.rpc(&["dmq.stats"]));
    // 300 updates to each of two nodes, answered 2xx (a batch counts each).
    assert!(statistic(entry, "messages_replied_2xx") >= 600, "{}", entry.rpc(&["stats.get_statistics", "dmq:"]));
}

#[test]
fn dmq_rs_and_stock_replicate_over_tcp_without_a_tm_transaction_per_copy() {
    mixed_cluster_replicates_in_flight(DmqTransport::Tcp);
}

#[test]
fn dmq_rs_and_stock_replicate_over_tls_without_a_tm_transaction_per_copy() {
    if tls_left_out("dmq_rs_and_stock_replicate_over_tls") {
        return;
    }
    mixed_cluster_replicates_in_flight(DmqTransport::Tls);
}
