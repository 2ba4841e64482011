//! A run that is interrupted leaves nothing running (issue 31): Ctrl-C
//! (SIGINT to the test binary's process group, as a terminal sends it) or
//! SIGKILL (a CI timeout) in the middle of a test that holds a node, a
//! helper process and a network namespace. The test binary is run again
//! as a child, on an ignored helper test that makes them and waits; the
//! interruption comes once the helper reported them (a positive control:
//! each is checked to exist first). `common::guardian` must remove them.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::netns::TestNet;
use common::*;

/// Where the helper writes what it made (set by the parent test).
const REPORT: &str = "DMQ_RS_INTERRUPTED_REPORT";

#[test]
#[ignore = "helper of a_run_interrupted_in_a_test_leaves_no_process_or_namespace (run by it)"]
fn helper_holds_a_node_a_helper_and_a_namespace() {
    let Ok(report) = std::env::var(REPORT) else {
        say_uncaptured("ignored: helper_holds_a_node_a_helper_and_a_namespace runs only under a_run_interrupted_in_a_test_leaves_no_process_or_namespace");
        return;
    };
    let net = TestNet::new(1);
    let node = Node::start("interrupted", &NodeConfig::default());
    let mut sleep = Command::new("sleep");
    sleep.arg("300");
    let helper = Background::spawn(sleep, &node.dir.join("sleep.log"));
    let netns = net.as_ref().map(|n| n.hosts[0].clone()).unwrap_or_default();
    std::fs::write(&report, format!("{} {} {netns}\n", node.pid(), helper.pid())).unwrap();
    // Held until the parent interrupts this process (bounded all the same).
    std::thread::sleep(Duration::from_secs(120));
}

/// Whether process `pid` exists and is not a zombie.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

fn netns_exists(name: &str) -> bool {
    !name.is_empty() && Path::new("/run/netns").join(name).exists()
}

/// Runs the helper, interrupts it with `signal` once it reported, and
/// checks (bounded) that what it made is gone.
fn interrupt_with(signal: i32, name: &str) {
    let dir = node_dir(&format!("interrupted-{name}"));
    let report: PathBuf = dir.join("report");
    let output = std::fs::File::create(dir.join("helper.log")).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args(["--ignored", "--exact", "helper_holds_a_node_a_helper_and_a_namespace", "--nocapture", "--test-threads=1"])
        .env(REPORT, &report)
        .stdin(Stdio::null())
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        .process_group(0);
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    let made = loop {
        if let Some(line) = std::fs::read_to_string(&report).ok().filter(|s| s.ends_with('\n')) {
            break line;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("helper.log")).unwrap_or_default();
            panic!("the helper ended ({status}) before it reported what it made:\n{log}");
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the helper did not report what it made");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut fields = made.split_whitespace();
    let node: u32 = fields.next().unwrap().parse().unwrap();
    let helper: u32 = fields.next().unwrap().parse().unwrap();
    let netns = fields.next().unwrap_or_default().to_string();
    // Positive control: all of it is there before the interruption.
    assert!(running(node) && running(helper), "{name}: the helper's node or sleep is not running");
    if netns.is_empty() {
        // Only with DMQ_RS_ALLOW_SKIP=netns: the helper's TestNet said so.
        say_uncaptured(&format!("ignored: {name}: the namespace part (this machine makes no namespaces)"));
    } else {
        assert!(netns_exists(&netns), "{name}: the helper's namespace {netns:?} does not exist");
    }
    // SAFETY: signals only the process group this test created.
    unsafe { libc::kill(-(child.id() as i32), signal) };
    let _ = child.wait();
    let start = Instant::now();
    while (running(node) || running(helper) || netns_exists(&netns)) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left: Vec<String> = [
        running(node).then(|| format!("kamailio {node}")),
        running(helper).then(|| format!("sleep {helper}")),
        netns_exists(&netns).then(|| format!("namespace {netns}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    eprintln!("FIGURES interrupted by {name}: cleaned up in {:.1} s, left {left:?}", start.elapsed().as_secs_f64());
    assert!(left.is_empty(), "a run interrupted by {name} left {left:?}");
}

#[test]
fn a_run_interrupted_in_a_test_leaves_no_process_or_namespace() {
    interrupt_with(libc::SIGINT, "Ctrl-C");
    interrupt_with(libc::SIGKILL, "SIGKILL");
}
