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

use common::state::{diff, ul_state};
use common::{node_dir, reply_field, sipp_register, Node, Release};

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

/// What `dmq.sync_status` says of `consumer`'s latest sync: its state word.
fn sync_state(node: &Node, consumer: &str) -> Option<String> {
    let out = node.try_rpc(&["dmq.sync_status"]).ok()?;
    let block = out.split('{').find(|b| b.contains(&format!("consumer: {consumer}\n")))?;
    block.lines().find_map(|l| l.trim().strip_prefix("state: ")).map(str::to_string)
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
    // Alone: ready after its first ping round (10 s in kubernetes.cfg).
    assert!(first.wait_until(Duration::from_secs(30), |n| http_status(n, "/ready") == Some(200)), "the first pod never got ready");
    assert_eq!(http_status(&first, "/live"), Some(200));
    let dir = node_dir("ready-sipp");
    let (status, out, err) = sipp_register(first.addr, &dir, CONTACTS, 1000);
    assert!(status.success(), "sipp: {out}{err}");
    let expected = ul_state(&first).expect("the first pod's registrations");
    assert_eq!(expected.len(), CONTACTS);

    let second = pod("ready-b", Some(first.addr), 128);
    let started = Instant::now();
    let (mut not_ready, mut ready_at) = (0, None);
    while started.elapsed() < Duration::from_secs(60) {
        match http_status(&second, "/ready") {
            Some(200) => {
                ready_at = Some(started.elapsed());
                break;
            }
            Some(503) => not_ready += 1,
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let held = ul_state(&second).expect("the second pod's registrations");
    let ready_at = ready_at.unwrap_or_else(|| panic!("/ready never answered 200; dmq.sync_status: {:?}", second.try_rpc(&["dmq.sync_status"])));
    let d = diff(&expected, &held);
    assert!(
        d.ghosts.is_empty() && d.missing.is_empty() && d.differing.is_empty(),
        "ready while holding {} of {} registrations: {} missing (first {:?}), {} differing (first {:?}), {} others",
        held.len(),
        expected.len(),
        d.missing.len(),
        d.missing.first(),
        d.differing.len(),
        d.differing.first(),
        d.ghosts.len()
    );
    assert!(not_ready > 0, "/ready never answered 503: the sync was not seen running");
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
