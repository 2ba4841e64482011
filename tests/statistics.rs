//! dmq_rs's figures in Kamailio's statistics (group `dmq`), as
//! `kamcmd stats.get_statistics` shows them and as xhttp_prom (Kamailio's
//! Prometheus exporter) serves them on /metrics, fetched over HTTP.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::registered::registered;
use common::*;
use dmq_core::statistics::{DETAILS, WORKER_FIELDS};

const REPLICATE: Duration = Duration::from_secs(15);

/// A node with htable replicating through dmq and kex (stats.*); with
/// `http` also xhttp + xhttp_prom serving the `dmq:` group on that TCP port.
fn node_config(http: Option<u16>) -> NodeConfig {
    let mut c = with_htable(NodeConfig::default());
    c.globals += "loadmodule \"kex.so\"\n";
    if let Some(port) = http {
        // The HTTP socket on the node's own address ({ADDR} is ip:port).
        c.core += "tcp_accept_no_cl=yes\n";
        c.globals += &format!("listen=tcp:{{IP}}:{port}\nloadmodule \"xhttp.so\"\nloadmodule \"xhttp_prom.so\"\n");
        c.consumers += "modparam(\"xhttp_prom\", \"xhttp_prom_stats\", \"dmq:\")\n";
        c.extra_routes += "event_route[xhttp:request] {\n\tprom_dispatch();\n}\n";
        // A MESSAGE makes this node send a message for a peer no other node
        // has: each answers 404.
        c.route = format!(
            "if (is_method(\"MESSAGE\")) {{ dmq_bcast_message(\"nobody\", \"x\", \"text/plain\"); sl_send_reply(\"200\", \"sent\"); exit; }}\n\t{}",
            c.route
        );
    }
    c
}

/// `kamcmd stats.get_statistics <what>` as name → value ("dmq:nodes" → 3).
fn statistics(node: &Node, what: &str) -> BTreeMap<String, u64> {
    let out = node.rpc(&["stats.get_statistics", what]);
    out.lines()
        .filter_map(|l| {
            let (name, value) = l.trim().split_once(" = ")?;
            Some((name.trim().to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

fn stat(node: &Node, name: &str) -> u64 {
    statistics(node, "dmq:").get(&format!("dmq:{name}")).copied().unwrap_or_else(|| panic!("no dmq:{name} on {}", node.addr))
}

/// GET /metrics over HTTP/1.0 with a bounded wait; the body's samples as
/// metric name → value.
fn scrape(addr: SocketAddr) -> BTreeMap<String, u64> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to xhttp");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: dmq_rs-test\r\n\r\n").unwrap();
    let mut reply = Vec::new();
    let start = Instant::now();
    let mut buf = [0u8; 16384];
    // xhttp keeps the connection open: read until the body is complete.
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading /metrics: {e}; so far: {}", String::from_utf8_lossy(&reply)),
        }
        let text = String::from_utf8_lossy(&reply);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)));
            if len.is_some_and(|len| body.len() >= len) {
                break;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(10), "/metrics did not complete");
    }
    let text = String::from_utf8_lossy(&reply).into_owned();
    assert!(text.starts_with("HTTP/1.") && text.lines().next().unwrap().contains(" 200 "), "GET /metrics: {text}");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.parse().ok()?))
        })
        .collect()
}

fn free_tcp_port(ip: std::net::IpAddr) -> u16 {
    TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap().port()
}

/// The scraped series, for contrib/dashboard (the screenshot in the README).
fn write_series(rows: &[(f64, BTreeMap<String, u64>)]) {
    let names: Vec<&String> = rows.iter().flat_map(|(_, m)| m.keys()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let mut csv = format!("seconds,{}\n", names.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(","));
    for (t, m) in rows {
        csv += &format!(
            "{t:.2},{}\n",
            names.iter().map(|n| m.get(*n).map(|v| v.to_string()).unwrap_or_default()).collect::<Vec<_>>().join(",")
        );
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/itest/metrics-{}.csv", Release::suite().name()));
    std::fs::write(&path, csv).unwrap();
    eprintln!("scraped series: {}", path.display());
}

#[test]
fn dmq_figures_reach_kamailio_statistics_and_prometheus() {
    let registered = registered();
    let names = registered.statistics.clone();
    // Node 0 serves /metrics; the addresses come first so its config can name them.
    let addr0 = allocate_address();
    let http = SocketAddr::new(addr0.ip(), free_tcp_port(addr0.ip()));
    let mut first = node_config(Some(http.port())).param("ping_interval", "2");
    first.globals = first.globals.replace("{IP}", &addr0.ip().to_string());
    let n0 = Node::start_at("stats-0", &first, addr0);
    let n1 = Node::start("stats-1", &seeded(node_config(None), n0.addr));
    let n2 = Node::start("stats-2", &seeded(node_config(None), n0.addr));
    let nodes = [&n0, &n1, &n2];
    assert_converged(&nodes);

    // Every statistic is registered, under `dmq:` and in `all`, and served.
    let group = statistics(&n0, "dmq:");
    let all = statistics(&n0, "all");
    let metrics = scrape(http);
    for name in &names {
        assert!(group.contains_key(&format!("dmq:{name}")), "stats.get_statistics dmq: lacks {name}: {group:?}");
        assert!(all.contains_key(&format!("dmq:{name}")), "stats.get_statistics all lacks dmq:{name}");
        assert!(metrics.contains_key(&format!("kamailio_dmq_{name}")), "/metrics lacks kamailio_dmq_{name}: {metrics:?}");
    }
    assert_eq!(group.len(), names.len(), "group dmq holds exactly the module's statistics: {group:?}");
    // dmq.stats: every statistic under the name it has in the group, then
    // the details and the per-worker fields, and no other name.
    let rpc = n0.rpc(&["dmq.stats"]);
    let fields: BTreeSet<String> = rpc.lines().filter_map(|l| Some(l.trim().split_once(':')?.0.trim().to_string())).collect();
    let declared: BTreeSet<String> =
        names.iter().cloned().chain(DETAILS.iter().map(|d| d.name.to_string())).chain(WORKER_FIELDS.map(String::from)).collect();
    assert_eq!(fields, declared, "dmq.stats: {rpc}");
    // The RPC commands the source declares are the ones the node has.
    let methods: std::collections::BTreeSet<String> =
        n0.rpc(&["system.listMethods"]).lines().map(|l| l.trim().to_string()).filter(|l| l.starts_with("dmq.")).collect();
    assert_eq!(methods, registered.rpcs, "dmq.* RPC commands");
    assert_eq!(metrics["kamailio_dmq_nodes"], 3);
    assert_eq!(metrics["kamailio_dmq_nodes_active"], 3);
    // Notifications: the two later nodes told node 0 at startup; pings go
    // round every 2 s and are answered.
    assert!(metrics["kamailio_dmq_notifications_received"] >= 2, "{metrics:?}");
    assert!(stat(&n1, "notifications_sent") >= 1 && stat(&n2, "notifications_sent") >= 1);
    assert!(
        n0.wait_until(Duration::from_secs(10), |_| {
            let m = scrape(http);
            m["kamailio_dmq_pings_sent"] >= 2 && m["kamailio_dmq_pings_answered"] >= 2
        }),
        "no pings counted: {:?}",
        scrape(http)
    );
    assert!(n1.wait_until(Duration::from_secs(10), |n| stat(n, "pings_received") >= 1 && stat(n, "notifications_received") >= 1));

    // N htable writes on node 0: 2N peer messages out, N in on each other node.
    const WRITES: u64 = 20;
    let before0 = scrape(http);
    let (received1, received2) = (stat(&n1, "messages_received"), stat(&n2, "messages_received"));
    let start = Instant::now();
    let mut series = vec![(0.0, before0.clone())];
    for i in 0..WRITES {
        n0.rpc(&["htable.seti", "t", &format!("k{i}"), &i.to_string()]);
        std::thread::sleep(Duration::from_millis(100));
        series.push((start.elapsed().as_secs_f64(), scrape(http)));
    }
    let key = format!("k{}", WRITES - 1);
    for node in [&n1, &n2] {
        assert!(
            node.wait_until(REPLICATE, |n| n
                .try_rpc(&["htable.get", "t", &key])
                .is_ok_and(|o| o.contains(&format!("value: {}", WRITES - 1)))),
            "{key} did not reach {}",
            node.addr
        );
    }
    let delta = |m: &BTreeMap<String, u64>, name: &str| m[&format!("kamailio_dmq_{name}")] - before0[&format!("kamailio_dmq_{name}")];
    let done = n0.wait_until(REPLICATE, |_| {
        let m = scrape(http);
        delta(&m, "messages_replied_2xx") == 2 * WRITES && m["kamailio_dmq_messages_in_flight"] == 0
    });
    let after = scrape(http);
    series.push((start.elapsed().as_secs_f64(), after.clone()));
    assert!(done, "replies not all counted: {after:?}");
    assert_eq!(delta(&after, "messages_sent"), 2 * WRITES, "{after:?}");
    assert_eq!(delta(&after, "messages_replied_2xx"), 2 * WRITES);
    for class in ["3xx", "4xx", "5xx", "6xx"] {
        assert_eq!(delta(&after, &format!("messages_replied_{class}")), 0, "{after:?}");
    }
    assert_eq!(delta(&after, "messages_sent_through_tm"), 0);
    assert_eq!(delta(&after, "messages_timed_out"), 0);
    assert_eq!(after["kamailio_dmq_jobs_rejected"], 0);
    for reason in ["not_member", "untrusted_network", "bad_signature", "bad_json"] {
        assert_eq!(after[&format!("kamailio_dmq_refused_{reason}")], 0, "{after:?}");
    }
    assert_eq!(after["kamailio_dmq_nodes_active"], 3);
    // The receivers: N each, run by their workers; the kamcmd view agrees.
    assert_eq!(stat(&n1, "messages_received") - received1, WRITES);
    assert_eq!(stat(&n2, "messages_received") - received2, WRITES);
    assert!(n1.wait_until(REPLICATE, |n| stat(n, "jobs_processed") >= WRITES && stat(n, "jobs_queued") == 0));
    assert_eq!(stat(&n0, "messages_sent"), after["kamailio_dmq_messages_sent"]);
    // dmq.stats shows the same figures under the same names; the part sent
    // without tm (all of them here) under its own.
    let rpc = n0.rpc(&["dmq.stats"]);
    assert_eq!(reply_field::<u64>(&rpc, "messages_sent"), Some(after["kamailio_dmq_messages_sent"]), "{rpc}");
    assert_eq!(reply_field::<u64>(&rpc, "messages_sent_without_tm"), Some(after["kamailio_dmq_messages_sent"]), "{rpc}");
    assert_eq!(reply_field::<u64>(&rpc, "messages_replied_2xx"), Some(after["kamailio_dmq_messages_replied_2xx"]), "{rpc}");

    // A message for a peer the others lack: 404 from each, counted as 4xx,
    // and not as received there.
    let before = scrape(http);
    let sock = std::net::UdpSocket::bind(format!("{}:0", n0.addr.ip())).unwrap();
    let message = sip_request("MESSAGE", "stats", n0.addr, sock.local_addr().unwrap(), "text/plain", b"", Some(0));
    let reply = n0.sip_exchange(&sock, &message, Duration::from_secs(5)).unwrap_or_default();
    assert!(reply.starts_with("SIP/2.0 200"), "{reply}");
    let fours = |m: &BTreeMap<String, u64>| m["kamailio_dmq_messages_replied_4xx"] - before["kamailio_dmq_messages_replied_4xx"];
    assert!(n0.wait_until(REPLICATE, |_| fours(&scrape(http)) == 2), "404s not counted: {:?}", scrape(http));
    let after_404 = scrape(http);
    series.push((start.elapsed().as_secs_f64(), after_404.clone()));
    assert_eq!(after_404["kamailio_dmq_messages_sent"] - before["kamailio_dmq_messages_sent"], 2);
    assert_eq!(after_404["kamailio_dmq_messages_replied_2xx"], before["kamailio_dmq_messages_replied_2xx"]);
    assert_eq!(stat(&n1, "messages_received") - received1, WRITES, "a message for an unknown peer is not counted as received");

    // A peer message from an address that is no node: 403, counted by reason.
    let stranger = std::net::UdpSocket::bind(allocate_address()).unwrap();
    let body = br#"{"action":1,"htname":"t","cname":"x","type":0,"strval":"","intval":1,"mode":0}"#;
    let request = kdmq(n0.addr, stranger.local_addr().unwrap(), "htable", "application/json", body);
    let reply = n0.sip_exchange(&stranger, &request, Duration::from_secs(5)).unwrap_or_default();
    assert!(reply.starts_with("SIP/2.0 403"), "{reply}");
    assert_eq!(scrape(http)["kamailio_dmq_refused_not_member"], 1);
    series.push((start.elapsed().as_secs_f64(), scrape(http)));

    // A node stops: the others' figures follow.
    drop(n2);
    assert!(
        n0.wait_until(Duration::from_secs(20), |_| {
            let m = scrape(http);
            series.push((start.elapsed().as_secs_f64(), m.clone()));
            m["kamailio_dmq_nodes_active"] == 2
        }),
        "nodes_active did not drop: {:?}",
        scrape(http)
    );
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(200));
        series.push((start.elapsed().as_secs_f64(), scrape(http)));
    }
    write_series(&series);
}
