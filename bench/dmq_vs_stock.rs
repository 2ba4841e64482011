//! `make bench`: the same workloads against a three-node cluster of stock
//! dmq.so nodes and one of dmq_rs nodes (same Kamailio binary, same config
//! apart from the loadmodule line), alternating stock, dmq_rs, stock, dmq_rs
//! so machine drift cancels out. Prints each figure's median per
//! implementation and the dmq_rs/stock ratio, and writes
//! bench/results/results.md plus the CSV series bench/plot.py charts.
//!
//! Beside the two clusters:
//! - baseline: each round of a replication workload also runs the entry node
//!   alone without dmq (no dmq module, no dmq_usrloc, no htable replication;
//!   same usrloc/registrar or htable config, children and shm). The table
//!   gets its CPU per REGISTER, each implementation's replication overhead
//!   per copy ((cluster CPU − that round's baseline CPU) / copies held on the
//!   non-entry nodes) and the overhead ÷ the baseline CPU per REGISTER.
//! - ceiling: the highest rate of a rate ladder that a fresh three-node
//!   cluster replicates with nothing lost, no failed REGISTER (no 503; for
//!   dmq_rs also dmq.stats jobs_rejected 0) and sipp keeping up (at most
//!   1.5 × the nominal time), and the baseline node's own ceiling; each
//!   ladder stops at its first failing step.
//! - scale: clusters of 3, 5, 10, 20 nodes (REGISTERs into node 0), stock
//!   and dmq_rs alternating per size, against a baseline run of the same
//!   workload: a second table and scale.csv.
//! - cost floor: bench/floor.md, if it exists, goes verbatim into results.md.
//!
//! Environment: BENCH_ROUNDS (default 2), BENCH_REGISTRATIONS (20000),
//! BENCH_RATE (1000), BENCH_HTABLE_WRITES (10000), BENCH_JOIN_CONTACTS
//! (100000), BENCH_SCALE_NODES ("3,5,10,20"), BENCH_SCALE_REGISTRATIONS
//! (2000), BENCH_SCALE_RATE (500), BENCH_SCALE_ROUNDS (1),
//! BENCH_CEILING_RATES ("500,1000,1500,2000,3000,4000,6000,8000"),
//! BENCH_CEILING_SECONDS (5: each step sends rate × this many REGISTERs),
//! BENCH_SKIP (comma-separated: burst64, burst512, burst64-tcp,
//! burst512-tcp, burst64-tls, burst512-tls, sustained, htable,
//! baseline, instructions, ceiling, kill, join, scale; skipping baseline drops the
//! baseline runs of the replication workloads, not those of scale and
//! ceiling), BENCH_ONLY ("dmq_rs", "stock dmq.so" or "baseline": one side of
//! the replication workloads, e.g. under a profiler), BENCH_RESULTS_DIR
//! (where results.md and the CSVs go; default bench/results).
//!
//! The dmq_usrloc bursts run with DMQ over UDP, TCP and TLS (every node
//! `tcp_rd_buf_size=65536`, TLS with certificates from a test CA verified
//! both ways; REGISTERs from sipp stay UDP); over TCP/TLS the table adds
//! each implementation's overhead per copy against its own over UDP.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

#[derive(Clone, Copy, PartialEq)]
enum Items {
    /// Contacts saved by registrar and replicated by dmq_usrloc.
    Contacts,
    /// htable items written by the script and replicated (dmqreplicate=1).
    HtableItems,
}

/// What runs: a cluster of one of the two implementations, or the entry
/// node alone without dmq.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    Stock,
    Rs,
    Baseline,
}

impl Side {
    fn of(stock: bool) -> Side {
        if stock {
            Side::Stock
        } else {
            Side::Rs
        }
    }

    fn name(self) -> &'static str {
        match self {
            Side::Stock => "stock dmq.so",
            Side::Rs => "dmq_rs",
            Side::Baseline => "baseline (no dmq)",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Side::Stock => "stock",
            Side::Rs => "rs",
            Side::Baseline => "base",
        }
    }
}

struct Workload {
    key: &'static str,
    title: String,
    items: Items,
    count: usize,
    rate: usize,
    shm_mb: u32,
    /// What DMQ travels over between the nodes (REGISTERs stay UDP).
    transport: DmqTransport,
}

/// One figure of one run.
type Figures = BTreeMap<&'static str, Option<f64>>;

/// A row of the main table: workload, figure, [stock runs, dmq_rs runs].
type Row = (String, &'static str, [Vec<Option<f64>>; 2]);

const LOST: &str = "copies lost";
const SETTLE: &str = "seconds after the last request until every node holds everything";
const CPU: &str = "cluster CPU seconds per 1 000 copies held";
const PEAK: &str = "entry node peak shm (MB)";
const REJECTED: &str = "jobs rejected (503, bounded queue)";
const BASE_CPU: &str = "baseline: CPU per REGISTER of the entry node alone, without dmq (µs; the same runs in both columns)";
const OVERHEAD: &str = "replication overhead per copy (µs): (cluster CPU − baseline CPU) / copies held on the other nodes";
const OVERHEAD_RATIO: &str = "replication overhead per copy ÷ baseline CPU per REGISTER";
const OVERHEAD_VS_UDP: &str = "replication overhead per copy ÷ the same implementation's over UDP (same shm, same run)";
const IR_BASE: &str = "baseline: instructions per REGISTER of the entry node alone, without dmq (callgrind; the same run in both columns)";
const IR_OVERHEAD: &str = "replication overhead per copy in instructions: both nodes' per REGISTER − the baseline's (callgrind)";
const IR_RATIO: &str = "replication overhead per copy ÷ baseline instructions per REGISTER (callgrind)";
const KILL: &str = "seconds to detect a killed node";
const JOIN: &str = "seconds for a joining node to sync";
const JOIN_LOST: &str = "contacts missing on the joining node";
const CEILING: &str = "highest sustained REGISTER rate with nothing lost and no 503 (3 nodes, 64 MB shm)";
const CEILING_BASE: &str =
    "baseline: highest sustained REGISTER rate of the entry node alone, without dmq (all answered 200, nothing missing; the same runs in both columns)";
/// Figures kept per run for the derived ones (not tabulated themselves).
const CPU_S: &str = "cluster CPU seconds";
const REPLICATED: &str = "copies held on the non-entry nodes";

/// How long nothing may change before a run counts what the nodes hold.
const QUIET: Duration = Duration::from_secs(5);
/// The same for the scale runs: a node of a big, overloaded cluster may get
/// its copies later (retransmissions, heal syncs after a missed ping).
const SCALE_QUIET: Duration = Duration::from_secs(15);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn env_list(name: &str, default: &str) -> Vec<usize> {
    let v = std::env::var(name).unwrap_or_else(|_| default.into());
    v.split(',').filter_map(|s| s.trim().parse().ok()).collect()
}

fn skipped(key: &str) -> bool {
    std::env::var("BENCH_SKIP").map(|v| v.split(',').any(|s| s.trim() == key)).unwrap_or(false)
}

fn implementation(stock: bool) -> &'static str {
    Side::of(stock).name()
}

/// The common part of every node: only `dmq_module` differs between the
/// two implementations; the baseline has no dmq at all.
fn node_config(side: Side, shm_mb: u32) -> NodeConfig {
    let mut c = match side {
        Side::Stock => NodeConfig::stock(),
        Side::Rs => NodeConfig::default(),
        Side::Baseline => NodeConfig::without_dmq(),
    };
    c.shm_mb = shm_mb;
    c.children = 4;
    c
}

fn workload_config(w: &Workload, side: Side) -> NodeConfig {
    let mut c = node_config(side, w.shm_mb);
    if side != Side::Baseline {
        c = c.over(w.transport);
    }
    match w.items {
        // registrar() leaves dmq_usrloc and KDMQ out of a node without dmq.
        Items::Contacts => c = registrar(c),
        Items::HtableItems => {
            let (kdmq, replicated) = match side {
                Side::Baseline => ("", ""),
                _ => ("if (is_method(\"KDMQ\")) { dmq_handle_message(); exit; }\n\t", "dmqreplicate=1;"),
            };
            if side != Side::Baseline {
                c.consumers += "loadmodule \"htable.so\"\nmodparam(\"htable\", \"enable_dmq\", 1)\n";
            } else {
                c.consumers += "loadmodule \"htable.so\"\n";
            }
            c.consumers += &format!("modparam(\"htable\", \"htable\", \"t=>size=16;{replicated}\")\n");
            // One write per REGISTER, keyed by the AoR's user.
            c.route = format!(
                "{kdmq}if (is_method(\"REGISTER\")) {{ $sht(t=>$tU) = 1; sl_send_reply(\"200\", \"OK\"); exit; }}\n\
                 \tsl_send_reply(\"404\", \"Not here\");"
            );
        }
    }
    c
}

fn held(node: &Node, items: Items) -> usize {
    match items {
        Items::Contacts => aor_count(node),
        Items::HtableItems => {
            let Ok(out) = node.try_rpc(&["htable.stats"]) else { return 0 };
            reply_field(&out, "all").unwrap_or(0)
        }
    }
}

/// CPU seconds (user + system) used so far by every process of the nodes'
/// process groups (each node runs in a group of its own, led by its main).
fn cluster_cpu(nodes: &[Node]) -> f64 {
    let groups: Vec<i64> = nodes.iter().map(|n| n.pid() as i64).collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut total = 0u64;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // Fields after "(comm)": state ppid pgrp ... utime(14) stime(15).
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() < 13 {
            continue;
        }
        if groups.contains(&f[2].parse().unwrap_or(-1)) {
            total += f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
        }
    }
    total as f64 / ticks
}

/// Samples the entry node's shm in use every 250 ms until stopped.
struct ShmSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(f64, f64)>>,
}

impl ShmSampler {
    fn start(ctl: PathBuf) -> ShmSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut series = Vec::new();
            // Bounded: the run itself is bounded, and so is this loop.
            while !flag.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(600) {
                if let Some(used) = rpc_at(&ctl, &["core.shmmem"]).ok().and_then(|o| reply_field::<f64>(&o, "real_used")) {
                    series.push((start.elapsed().as_secs_f64(), used / 1048576.0));
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            series
        });
        ShmSampler { stop, thread }
    }

    fn finish(self) -> Vec<(f64, f64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// Whether every node lists `n` nodes, all active (one `dmq.list_nodes`
/// per node: `lists_all_active` asks once more per address, too slow for
/// 20 nodes).
fn all_agree(nodes: &[Node]) -> bool {
    nodes.iter().all(|node| {
        let Ok(out) = node.try_rpc(&["dmq.list_nodes"]) else { return false };
        let entries: Vec<&str> = out.split('}').filter(|e| e.contains("host:")).collect();
        entries.len() == nodes.len() && entries.iter().all(|e| e.contains("status: active"))
    })
}

/// Starts `n` nodes as `start_cluster` does (the first unseeded, the others
/// seeded from it, all pinging every 2 s) and waits, bounded, until they
/// agree; unlike `start_cluster` it does not panic when they do not (the run
/// goes on and shows what was lost). A node without dmq starts alone.
fn start_nodes(label: &str, config: &NodeConfig, n: usize) -> (Vec<Node>, Option<f64>) {
    let start = Instant::now();
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..n {
        let c = match nodes.first() {
            Some(first) => seeded(config.clone(), first.addr),
            None => config.clone().param("ping_interval", "2"),
        };
        nodes.push(Node::start(&format!("{label}-{i}"), &c));
    }
    if config.dmq_module.is_empty() {
        return (nodes, Some(start.elapsed().as_secs_f64()));
    }
    let limit = CONVERGE + Duration::from_secs(2 * n as u64);
    let agreed = Instant::now();
    while agreed.elapsed() < limit {
        if all_agree(&nodes) {
            return (nodes, Some(start.elapsed().as_secs_f64()));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    (nodes, None)
}

/// Stops the nodes all at once (each `Node::stop` waits up to 5 s).
fn stop_all(nodes: Vec<Node>) {
    std::thread::scope(|s| {
        for node in nodes {
            s.spawn(move || drop(node));
        }
    });
}

/// `sipp_register` without its panic: sipp's exit status (None: it did not
/// finish within its bound and was killed) and how long it took.
fn sipp(to: std::net::SocketAddr, dir: &Path, count: usize, rate: usize) -> (Option<bool>, f64) {
    let cmd = sipp_register_command(to, dir, count, rate);
    let start = Instant::now();
    let status = run_bounded(cmd, Duration::from_secs(60 + (count / rate.max(1)) as u64 * 3)).ok().map(|(s, _, _)| s.success());
    (status, start.elapsed().as_secs_f64())
}

/// One workload run on a fresh cluster (or the baseline node).
struct Run {
    count: usize,
    /// What each node holds once done or nothing changed for the quiet period.
    held: Vec<usize>,
    /// Seconds after sipp's last REGISTER until every node held everything.
    settled: Option<f64>,
    /// Seconds to start the nodes and for them to agree (None: they did not).
    started: Option<f64>,
    cpu: f64,
    peak: Option<f64>,
    rejected: Option<f64>,
    shm_series: Vec<(f64, f64)>,
    /// sipp's exit status was 0 (every REGISTER answered 200); None: killed.
    sipp_ok: Option<bool>,
    sipp_secs: f64,
}

impl Run {
    fn copies(&self) -> usize {
        self.held.iter().map(|&c| c.min(self.count)).sum()
    }

    fn lost(&self) -> usize {
        self.held.len() * self.count - self.copies()
    }

    /// Copies held on the nodes other than the entry node.
    fn replicated(&self) -> usize {
        self.held.iter().skip(1).map(|&c| c.min(self.count)).sum()
    }

    fn figures(&self) -> Figures {
        let copies = self.copies();
        let mut f = Figures::new();
        f.insert(LOST, Some(self.lost() as f64));
        f.insert(SETTLE, self.settled);
        f.insert(CPU, (copies > 0).then(|| self.cpu / (copies as f64 / 1000.0)));
        f.insert(PEAK, self.peak);
        f.insert(REJECTED, self.rejected);
        f.insert(CPU_S, Some(self.cpu));
        f.insert(REPLICATED, Some(self.replicated() as f64));
        f
    }
}

/// Sends the workload into the first of `n` fresh nodes of `side` (the
/// baseline: one node) and waits (bounded) until every node holds
/// everything or nothing changes for `quiet`.
fn run(w: &Workload, side: Side, n: usize, label: &str, quiet: Duration) -> Run {
    let n = if side == Side::Baseline { 1 } else { n };
    let (nodes, started) = start_nodes(label, &workload_config(w, side), n);
    if started.is_none() {
        eprintln!("  {} × {n}: the nodes did not agree on the cluster within the bound; running anyway", side.name());
    }
    let cpu_before = cluster_cpu(&nodes);
    let sampler = ShmSampler::start(nodes[0].ctl.clone());
    let start = Instant::now();
    let (sipp_ok, sipp_secs) = sipp(nodes[0].addr, &nodes[0].dir, w.count, w.rate);
    let sent = start.elapsed();
    let limit = Duration::from_secs((w.count / w.rate.max(1)) as u64 + 120).saturating_sub(sent);
    // The CPU used until the last change: not the idle quiet wait.
    let mut cpu_after = cpu_before;
    let mut previous: Option<Vec<usize>> = None;
    let (held, took) = wait_settled(
        limit,
        quiet,
        Duration::from_millis(100),
        || {
            let counts = nodes.iter().map(|n| held(n, w.items)).collect::<Vec<usize>>();
            if previous.as_ref() != Some(&counts) {
                cpu_after = cluster_cpu(&nodes);
                previous = Some(counts.clone());
            }
            counts
        },
        |counts| counts.iter().all(|&c| c >= w.count),
    );
    let cpu = cpu_after - cpu_before;
    let shm_series = sampler.finish();
    let peak = nodes[0].try_rpc(&["core.shmmem"]).ok().and_then(|o| reply_field::<f64>(&o, "max_used")).map(|b| b / 1048576.0);
    let rejected = if side == Side::Rs {
        nodes.iter().map(|n| n.try_rpc(&["dmq.stats"]).ok().and_then(|o| reply_field::<f64>(&o, "jobs_rejected"))).sum()
    } else {
        None
    };
    stop_all(nodes);
    Run { count: w.count, held, settled: took.map(|t| t.as_secs_f64()), started, cpu, peak, rejected, shm_series, sipp_ok, sipp_secs }
}

fn describe(r: &Run) -> String {
    let held = if r.held.len() > 5 {
        format!(
            "{} of {} nodes hold all, least {}",
            r.held.iter().filter(|&&c| c >= r.count).count(),
            r.held.len(),
            r.held.iter().min().unwrap_or(&0)
        )
    } else {
        format!("held {:?}", r.held)
    };
    format!(
        "{held} of {}, settled {:?}, cpu {:.2} s, peak shm {:?} MB, rejected {:?}, sipp ok {:?} in {:.1} s (nodes up in {:?} s)",
        r.count,
        r.settled.map(|s| (s * 1000.0).round() / 1000.0),
        r.cpu,
        r.peak.map(|p| (p * 10.0).round() / 10.0),
        r.rejected,
        r.sipp_ok,
        r.sipp_secs,
        r.started.map(|s| (s * 10.0).round() / 10.0)
    )
}

/// µs of overhead per replicated copy, against the baseline's CPU seconds.
fn overhead_us(cluster_cpu: Option<f64>, baseline_cpu: Option<f64>, replicated: Option<f64>) -> Option<f64> {
    match (cluster_cpu, baseline_cpu, replicated) {
        (Some(c), Some(b), Some(r)) if r > 0.0 => Some((c - b) / r * 1e6),
        _ => None,
    }
}

/// Instructions (callgrind) per REGISTER handled in each node: `side`'s entry node
/// alone (the baseline: one figure), or both nodes of a two-node cluster,
/// REGISTERs into the first (the entry node's and the other's). Counted is
/// the SIP receivers' work from each message's receipt (`receive_msg`) and
/// the DMQ workers' (`worker_loop`, the name in both modules): all a copy
/// costs but timers. Repeatable where CPU time on a shared machine is not.
/// Also the peer messages the entry node sent (dmq_rs: batches make them
/// fewer than the copies). None when the run did not replicate everything.
fn instructions(side: Side, count: usize, rate: usize) -> Option<(Vec<f64>, Option<f64>)> {
    let wrapper = [
        "valgrind",
        "--tool=callgrind",
        "-q",
        "--collect-atstart=no",
        "--toggle-collect=receive_msg",
        "--toggle-collect=*worker_loop*",
        "--callgrind-out-file={DIR}/callgrind.%p",
    ];
    let config = NodeConfig { wrapper: wrapper.map(String::from).to_vec(), ..registrar(node_config(side, 64)) };
    let label = format!("bench-ir-{}", side.short());
    let mut nodes = start_nodes(&format!("{label}-entry"), &config, 1).0;
    if side != Side::Baseline {
        nodes.push(Node::start(&format!("{label}-other"), &seeded(config, nodes[0].addr)));
        if !nodes[0].wait_until(CONVERGE + Duration::from_secs(20), |_| all_agree(&nodes)) {
            eprintln!("  {}: the two nodes never agreed", side.name());
            return None;
        }
    }
    let _ = sipp(nodes[0].addr, &nodes[0].dir, count, rate);
    let all_there = nodes.iter().all(|node| node.wait_until(Duration::from_secs(90), |n| aor_count(n) >= count));
    // REGISTERs the entry node handled: sipp sends one again when the reply
    // is late (valgrind is slow), and each is saved and replicated again.
    let received = nodes[0]
        .try_rpc(&["stats.get_statistics", "core:rcv_requests_register"])
        .ok()
        .and_then(|o| o.lines().find_map(|l| l.trim().strip_prefix("core:rcv_requests_register = ")?.trim().parse::<usize>().ok()))
        .unwrap_or(count)
        .max(count);
    let sent = (side == Side::Rs)
        .then(|| nodes[0].try_rpc(&["dmq.stats"]).ok().and_then(|o| reply_field::<f64>(&o, "messages_sent_without_tm")))
        .flatten();
    let dirs: Vec<PathBuf> = nodes.iter().map(|n| n.dir.clone()).collect();
    std::thread::scope(|s| {
        for mut node in nodes {
            s.spawn(move || node.stop_within(Duration::from_secs(90), true));
        }
    });
    let per_node: Vec<f64> = dirs
        .iter()
        .map(|dir| {
            let total: u64 = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("callgrind."))
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .filter_map(|text| {
                    text.lines()
                        .find_map(|l| l.strip_prefix("totals:").or_else(|| l.strip_prefix("summary:")))
                        .and_then(|v| v.trim().parse::<u64>().ok())
                })
                .sum();
            total as f64 / received as f64
        })
        .collect();
    (all_there && per_node.iter().all(|&n| n > 0.0)).then_some((per_node, sent))
}

/// Kills one node of a three-node cluster and times until both others no
/// longer list it as active (bounded at 150 s: stock pings at most once a minute).
fn kill_detection(stock: bool) -> Option<f64> {
    let c = node_config(Side::of(stock), 64).param("ping_interval", "5");
    let mut nodes = start_cluster(&format!("bench-kill-{}", if stock { "stock" } else { "rs" }), vec![c.clone(), c.clone(), c]);
    let victim = nodes.pop().unwrap();
    let addr = victim.addr;
    let mut victim = victim;
    victim.kill();
    let start = Instant::now();
    let gone = |n: &Node| status_of(n, addr).map(|s| s != "active").unwrap_or(true);
    while start.elapsed() < Duration::from_secs(150) {
        if nodes.iter().all(gone) {
            return Some(start.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// Fills one node with `contacts` registrations, then starts a second node
/// seeded from it and times until it holds them all (bounded).
fn join_sync(stock: bool, contacts: usize) -> (Option<f64>, f64) {
    let w = Workload {
        key: "join",
        title: String::new(),
        items: Items::Contacts,
        count: contacts,
        rate: 5000,
        shm_mb: 512,
        transport: DmqTransport::Udp,
    };
    let side = Side::of(stock);
    let first = Node::start(&format!("bench-join-{}", side.short()), &workload_config(&w, side));
    let _ = sipp_register(first.addr, &first.dir, contacts, w.rate);
    let filled = aor_count(&first);
    let start = Instant::now();
    let joiner = Node::start(&format!("bench-joiner-{}", side.short()), &seeded(workload_config(&w, side), first.addr));
    let (held, took) = wait_settled(
        Duration::from_secs(240),
        Duration::from_secs(15),
        Duration::from_millis(250),
        || aor_count(&joiner),
        |&n| n >= filled,
    );
    let missing = (contacts - held.min(contacts)) as f64;
    // From the joining node's start: its startup is part of joining.
    let took = took.map(|_| start.elapsed());
    match took {
        Some(t) => eprintln!("  {}: joiner holds {held} of {filled} after {:.1} s", implementation(stock), t.as_secs_f64()),
        None => eprintln!("  {}: joiner holds {held} of {filled} (the first node holds {filled} of {contacts})", implementation(stock)),
    }
    (took.map(|t| t.as_secs_f64()), missing)
}

/// One step of a ceiling ladder: `seconds` worth of REGISTERs at `rate` into
/// a fresh three-node cluster (the baseline: one node). Passes when sipp
/// exits 0 (every REGISTER answered 200: no 503) within 1.5 × the nominal
/// time, every node holds everything and dmq_rs rejected no job. Returns
/// the reasons it failed (empty: it passed).
fn ceiling_step(side: Side, rate: usize, seconds: usize, csv: &mut String) -> Vec<String> {
    let count = rate * seconds;
    let w =
        Workload { key: "ceiling", title: String::new(), items: Items::Contacts, count, rate, shm_mb: 64, transport: DmqTransport::Udp };
    let r = run(&w, side, 3, &format!("bench-ceiling-{}-{rate}", side.short()), QUIET);
    let nominal = count as f64 / rate as f64;
    let mut failed = Vec::new();
    match r.sipp_ok {
        Some(true) => {}
        Some(false) => failed.push("some REGISTERs failed".to_string()),
        None => failed.push("sipp did not finish".to_string()),
    }
    if r.sipp_secs > 1.5 * nominal {
        failed.push(format!("sipp took {:.1} s for {nominal:.0} s worth", r.sipp_secs));
    }
    if r.lost() > 0 {
        failed.push(format!("{} copies lost", r.lost()));
    }
    if r.rejected.unwrap_or(0.0) > 0.0 {
        failed.push(format!("{} jobs rejected", r.rejected.unwrap_or(0.0)));
    }
    eprintln!("  {} at {rate}/s: {} — {}", side.name(), if failed.is_empty() { "pass" } else { "FAIL" }, describe(&r));
    let _ = writeln!(
        csv,
        "{},{rate},{count},{:.2},{},{},{},{}",
        side.name(),
        r.sipp_secs,
        r.sipp_ok.map(|ok| if ok { "1" } else { "0" }).unwrap_or(""),
        r.lost(),
        r.rejected.map(|x| x.to_string()).unwrap_or_default(),
        if failed.is_empty() { 1 } else { 0 }
    );
    failed
}

/// Where a ladder ended: the highest passing rate, whether every step passed.
struct Ceiling {
    best: Option<usize>,
    topped: bool,
    first: usize,
}

impl Ceiling {
    fn show(&self) -> String {
        match self.best {
            None => format!("< {}", self.first),
            Some(b) if self.topped => format!("≥ {b}"),
            Some(b) => b.to_string(),
        }
    }
}

fn ceiling_ratio(stock: &Ceiling, rs: &Ceiling) -> String {
    match (stock.best, rs.best) {
        (Some(s), Some(r)) => {
            let prefix = match (stock.topped, rs.topped) {
                (false, false) => "",
                (true, false) => "≤ ",
                (false, true) => "≥ ",
                (true, true) => return "—".into(),
            };
            format!("{prefix}{:.2}", r as f64 / s as f64)
        }
        _ => "—".into(),
    }
}

struct ScaleRow {
    nodes: usize,
    side: Side,
    run: Run,
    baseline_cpu: Option<f64>,
}

impl ScaleRow {
    fn overhead(&self) -> Option<f64> {
        overhead_us(Some(self.run.cpu), self.baseline_cpu, Some(self.run.replicated() as f64))
    }
}

fn median(values: &[Option<f64>]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().flatten().copied().collect();
    if v.is_empty() || v.len() < values.len() {
        // A run that did not reach the figure (e.g. never settled) has no median.
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) { (v[mid - 1] + v[mid]) / 2.0 } else { v[mid] })
}

fn show(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(x) if x >= 100.0 || x.fract() == 0.0 => format!("{x:.0}"),
        Some(x) if x >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.3}"),
    }
}

fn ratio(stock: Option<f64>, rs: Option<f64>) -> String {
    match (stock, rs) {
        (Some(s), Some(r)) if s > 0.0 => format!("{:.2}", r / s),
        (Some(s), Some(r)) if s == 0.0 && r == 0.0 => "=".into(),
        _ => "—".into(),
    }
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let cores = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|kb| kb.parse::<f64>().ok()))
        .map(|kb| kb / 1048576.0)
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let version = std::process::Command::new(KAMAILIO)
        .arg("-v")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_string())
        .unwrap_or_default();
    format!("{model}, {cores} cores, {mem:.0} GiB RAM, Linux {}, {}", kernel.trim(), version.trim().trim_start_matches("version: "))
}

fn main() {
    let rounds = env_usize("BENCH_ROUNDS", 2).max(1);
    let count = env_usize("BENCH_REGISTRATIONS", 20000);
    let rate = env_usize("BENCH_RATE", 1000);
    let writes = env_usize("BENCH_HTABLE_WRITES", 10000);
    let join_contacts = env_usize("BENCH_JOIN_CONTACTS", 100000);
    let scale_nodes = env_list("BENCH_SCALE_NODES", "3,5,10,20");
    let scale_count = env_usize("BENCH_SCALE_REGISTRATIONS", 2000);
    let scale_rate = env_usize("BENCH_SCALE_RATE", 500);
    let scale_rounds = env_usize("BENCH_SCALE_ROUNDS", 1).max(1);
    let ceiling_rates = env_list("BENCH_CEILING_RATES", "500,1000,1500,2000,3000,4000,6000,8000");
    let ceiling_seconds = env_usize("BENCH_CEILING_SECONDS", 5).max(1);
    let contacts = |key, transport: DmqTransport, count, rate, shm_mb| {
        let over = match transport {
            DmqTransport::Udp => String::new(),
            t => format!(" over {}", t.name().to_uppercase()),
        };
        Workload {
            key,
            title: format!("dmq_usrloc{over}, {count} REGISTER at {rate}/s, {shm_mb} MB shm"),
            items: Items::Contacts,
            count,
            rate,
            shm_mb,
            transport,
        }
    };
    let workloads = [
        contacts("burst64", DmqTransport::Udp, count, rate, 64),
        contacts("burst512", DmqTransport::Udp, count, rate, 512),
        contacts("burst64-tcp", DmqTransport::Tcp, count, rate, 64),
        contacts("burst512-tcp", DmqTransport::Tcp, count, rate, 512),
        contacts("burst64-tls", DmqTransport::Tls, count, rate, 64),
        contacts("burst512-tls", DmqTransport::Tls, count, rate, 512),
        contacts("sustained", DmqTransport::Udp, count / 5, rate / 5, 64),
        Workload {
            key: "htable",
            title: format!("htable dmqreplicate, {writes} writes at {rate}/s, 64 MB shm"),
            items: Items::HtableItems,
            count: writes,
            rate,
            shm_mb: 64,
            transport: DmqTransport::Udp,
        },
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // A partial run (BENCH_SKIP) can write elsewhere and leave the full
    // results in place.
    let results_dir = std::env::var_os("BENCH_RESULTS_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("bench/results"));
    std::fs::create_dir_all(&results_dir).unwrap();
    let started = Instant::now();
    let mut timings: Vec<(String, f64)> = Vec::new();
    let only = std::env::var("BENCH_ONLY").ok();
    let wanted = |side: Side| match side {
        Side::Baseline => !skipped("baseline") && only.as_deref().is_none_or(|o| o == side.name() || o == "baseline"),
        _ => only.as_deref().is_none_or(|o| o == side.name()),
    };

    // (workload key, figure) -> [stock runs, dmq_rs runs]
    let mut table: Vec<Row> = Vec::new();
    // Workload key -> (transport, shm, [stock, dmq_rs] median overhead per copy).
    let mut overhead_by_workload: BTreeMap<&str, (DmqTransport, u32, [Option<f64>; 2])> = BTreeMap::new();
    // Rows already formatted (the ceilings), after the others.
    let mut text_rows: Vec<String> = Vec::new();
    let mut shm_csv = String::from("workload,implementation,round,seconds,shm_mb\n");
    let mut loss_csv = String::from("workload,implementation,round,lost,sent_copies\n");
    let mut cpu_csv = String::from("workload,implementation,round,nodes,requests,cpu_s,replicated_copies\n");
    for w in workloads.iter().filter(|w| !skipped(w.key)) {
        let section = Instant::now();
        eprintln!("== {} ({rounds} rounds: stock, dmq_rs and the baseline node without dmq alternating)", w.title);
        let mut runs: [Vec<Figures>; 2] = [Vec::new(), Vec::new()];
        let mut baseline: Vec<Option<f64>> = Vec::new();
        for round in 1..=rounds {
            for side in [Side::Stock, Side::Rs, Side::Baseline] {
                if !wanted(side) {
                    continue;
                }
                let run = run(w, side, 3, &format!("bench-{}-{}-{round}", w.key, side.short()), QUIET);
                eprintln!("  {} round {round}: {}", side.name(), describe(&run));
                for (t, mb) in &run.shm_series {
                    let _ = writeln!(shm_csv, "{},{},{round},{t:.2},{mb:.2}", w.key, side.name());
                }
                let _ = writeln!(
                    cpu_csv,
                    "{},{},{round},{},{},{:.3},{}",
                    w.key,
                    side.name(),
                    run.held.len(),
                    w.count,
                    run.cpu,
                    run.replicated()
                );
                match side {
                    Side::Baseline => baseline.push(Some(run.cpu)),
                    _ => {
                        let _ = writeln!(loss_csv, "{},{},{round},{},{}", w.key, side.name(), run.lost(), 3 * w.count);
                        runs[(side == Side::Rs) as usize].push(run.figures());
                    }
                }
            }
            // The round's baseline against the round's clusters.
            let base = baseline.get(round - 1).copied().flatten();
            let per_register = base.map(|b| b / w.count as f64 * 1e6);
            for side_runs in runs.iter_mut() {
                if let Some(f) = side_runs.get_mut(round - 1) {
                    let over = overhead_us(f[CPU_S], base, f[REPLICATED]);
                    f.insert(BASE_CPU, per_register);
                    f.insert(OVERHEAD, over);
                    f.insert(OVERHEAD_RATIO, over.zip(per_register).map(|(o, p)| o / p));
                }
            }
        }
        let mut figures = vec![LOST, SETTLE, CPU, PEAK, REJECTED];
        if !baseline.is_empty() {
            figures.extend([BASE_CPU, OVERHEAD, OVERHEAD_RATIO]);
        }
        let per = |side: usize, figure| runs[side].iter().map(|f| f.get(figure).copied().flatten()).collect::<Vec<_>>();
        for figure in figures {
            table.push((w.title.clone(), figure, [per(0, figure), per(1, figure)]));
        }
        // Over TCP/TLS: the overhead against the same workload over UDP.
        let overheads = [median(&per(0, OVERHEAD)), median(&per(1, OVERHEAD))];
        overhead_by_workload.insert(w.key, (w.transport, w.shm_mb, overheads));
        if w.transport != DmqTransport::Udp {
            let udp =
                overhead_by_workload.values().find(|(t, mb, _)| *t == DmqTransport::Udp && *mb == w.shm_mb && w.items == Items::Contacts);
            if let Some((_, _, udp)) = udp {
                let vs = |i: usize| overheads[i].zip(udp[i]).map(|(o, u)| o / u);
                table.push((w.title.clone(), OVERHEAD_VS_UDP, [vec![vs(0)], vec![vs(1)]]));
            }
        }
        timings.push((w.key.to_string(), section.elapsed().as_secs_f64()));
    }
    let mut ceiling_csv = String::from("implementation,rate,count,sipp_seconds,sipp_ok,lost,rejected,passed\n");
    if !skipped("ceiling") && !ceiling_rates.is_empty() {
        let section = Instant::now();
        eprintln!("== ceiling: rate ladder {ceiling_rates:?}, {ceiling_seconds} s of REGISTERs per step, fresh nodes, 64 MB shm");
        let sides = [Side::Stock, Side::Rs, Side::Baseline];
        let mut ceilings: Vec<Ceiling> = sides.iter().map(|_| Ceiling { best: None, topped: true, first: ceiling_rates[0] }).collect();
        for &rate in &ceiling_rates {
            for (i, &side) in sides.iter().enumerate() {
                if !ceilings[i].topped {
                    continue;
                }
                if ceiling_step(side, rate, ceiling_seconds, &mut ceiling_csv).is_empty() {
                    ceilings[i].best = Some(rate);
                } else {
                    ceilings[i].topped = false;
                }
            }
            if ceilings.iter().all(|c| !c.topped) {
                break;
            }
        }
        let title = format!(
            "ladder {}/s, {ceiling_seconds} s per step",
            ceiling_rates.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ")
        );
        text_rows.push(format!(
            "| {title} | {CEILING} | {} | {} | {} |",
            ceilings[0].show(),
            ceilings[1].show(),
            ceiling_ratio(&ceilings[0], &ceilings[1])
        ));
        text_rows.push(format!("| {title} | {CEILING_BASE} | {} | {} | — |", ceilings[2].show(), ceilings[2].show()));
        timings.push(("ceiling".into(), section.elapsed().as_secs_f64()));
    }
    if !skipped("instructions") {
        let section = Instant::now();
        let (count, rate) = (env_usize("BENCH_IR_REGISTRATIONS", 400), env_usize("BENCH_IR_RATE", 40));
        eprintln!("== instructions per copy under callgrind ({count} REGISTER at {rate}/s, two nodes)");
        let baseline = instructions(Side::Baseline, count, rate).map(|(n, _)| n[0]);
        let mut overheads = [None, None];
        for (i, side) in [Side::Stock, Side::Rs].into_iter().enumerate() {
            let run = instructions(side, count, rate);
            eprintln!(
                "  {}: {run:?} instructions per REGISTER (entry node, other node; messages sent), baseline {baseline:?}",
                side.name()
            );
            overheads[i] = run.zip(baseline).map(|((n, _), b)| n.iter().sum::<f64>() - b);
        }
        let title = format!("dmq_usrloc, {count} REGISTER at {rate}/s, two nodes under callgrind");
        let ratio = |o: Option<f64>| o.zip(baseline).map(|(o, b)| o / b);
        table.push((title.clone(), IR_BASE, [vec![baseline], vec![baseline]]));
        table.push((title.clone(), IR_OVERHEAD, [vec![overheads[0]], vec![overheads[1]]]));
        table.push((title, IR_RATIO, [vec![ratio(overheads[0])], vec![ratio(overheads[1])]]));
        timings.push(("instructions".into(), section.elapsed().as_secs_f64()));
    }
    if !skipped("kill") {
        let section = Instant::now();
        eprintln!("== killed node (ping_interval 5; stock raises values below 60 to 60), both clusters at once");
        let stock = std::thread::spawn(|| kill_detection(true));
        let rs = kill_detection(false);
        let stock = stock.join().unwrap_or(None);
        eprintln!("  stock {stock:?} s, dmq_rs {rs:?} s");
        table.push(("3 nodes, one killed with SIGKILL".into(), KILL, [vec![stock], vec![rs]]));
        timings.push(("kill".into(), section.elapsed().as_secs_f64()));
    }
    if !skipped("join") {
        let section = Instant::now();
        eprintln!("== joining node syncs {join_contacts} contacts (dmq_usrloc sync, 512 MB shm)");
        let (stock_time, stock_lost) = join_sync(true, join_contacts);
        let (rs_time, rs_lost) = join_sync(false, join_contacts);
        let title = format!("joining node, {join_contacts} contacts (512 MB shm)");
        table.push((title.clone(), JOIN, [vec![stock_time], vec![rs_time]]));
        table.push((title, JOIN_LOST, [vec![Some(stock_lost)], vec![Some(rs_lost)]]));
        timings.push(("join".into(), section.elapsed().as_secs_f64()));
    }
    let mut scale: Vec<ScaleRow> = Vec::new();
    let scale_w = Workload {
        key: "scale",
        title: format!("dmq_usrloc, {scale_count} REGISTER at {scale_rate}/s into node 0, 64 MB shm, children 4"),
        items: Items::Contacts,
        count: scale_count,
        rate: scale_rate,
        shm_mb: 64,
        transport: DmqTransport::Udp,
    };
    let mut scale_baseline: Vec<Option<f64>> = Vec::new();
    let mut scale_csv = String::from(
        "nodes,implementation,round,sent,held_copies,expected_copies,lost,settle_s,cluster_cpu_s,baseline_cpu_s,replicated_copies,overhead_us_per_copy,peak_shm_mb,rejected,start_s\n",
    );
    if !skipped("scale") && !scale_nodes.is_empty() {
        let section = Instant::now();
        eprintln!(
            "== scale: {} on {scale_nodes:?} nodes ({scale_rounds} round(s): a baseline run, then stock and dmq_rs per size)",
            scale_w.title
        );
        for round in 1..=scale_rounds {
            let base = run(&scale_w, Side::Baseline, 1, &format!("bench-scale-base-{round}"), QUIET);
            eprintln!("  baseline round {round}: {}", describe(&base));
            let base_cpu = (base.lost() == 0).then_some(base.cpu);
            scale_baseline.push(base_cpu);
            for &n in &scale_nodes {
                for side in [Side::Stock, Side::Rs] {
                    let t = Instant::now();
                    let r = run(&scale_w, side, n, &format!("bench-scale{n}-{}-{round}", side.short()), SCALE_QUIET);
                    eprintln!("  {n} nodes, {} round {round} ({:.0} s): {}", side.name(), t.elapsed().as_secs_f64(), describe(&r));
                    let row = ScaleRow { nodes: n, side, run: r, baseline_cpu: base_cpu };
                    let r = &row.run;
                    let _ = writeln!(
                        scale_csv,
                        "{n},{},{round},{},{},{},{},{},{:.3},{},{},{},{},{},{}",
                        side.name(),
                        r.count,
                        r.copies(),
                        n * r.count,
                        r.lost(),
                        r.settled.map(|s| format!("{s:.3}")).unwrap_or_default(),
                        r.cpu,
                        base_cpu.map(|b| format!("{b:.3}")).unwrap_or_default(),
                        r.replicated(),
                        row.overhead().map(|o| format!("{o:.2}")).unwrap_or_default(),
                        r.peak.map(|p| format!("{p:.2}")).unwrap_or_default(),
                        r.rejected.map(|x| x.to_string()).unwrap_or_default(),
                        r.started.map(|s| format!("{s:.1}")).unwrap_or_default(),
                    );
                    scale.push(row);
                }
            }
        }
        timings.push(("scale".into(), section.elapsed().as_secs_f64()));
    }

    let mut md = String::new();
    let _ = writeln!(md, "# dmq_rs against the stock dmq.so\n");
    let _ = writeln!(md, "Machine: {}", machine());
    let _ = writeln!(
        md,
        "Run: {rounds} round(s) per workload, stock, dmq_rs and the baseline node alternating; medians; {:.0} s in all.\n",
        started.elapsed().as_secs_f64()
    );
    let _ = writeln!(md, "| workload | figure | stock dmq.so | dmq_rs | dmq_rs / stock |");
    let _ = writeln!(md, "|---|---|---:|---:|---:|");
    for (title, figure, [stock, rs]) in &table {
        let (s, r) = (median(stock), median(rs));
        let (s_text, r_text) = if [OVERHEAD_RATIO, IR_RATIO, OVERHEAD_VS_UDP].contains(figure) {
            let two = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "—".into());
            (two(s), two(r))
        } else {
            (show(s), show(r))
        };
        let _ = writeln!(md, "| {title} | {figure} | {s_text} | {r_text} | {} |", ratio(s, r));
    }
    for row in &text_rows {
        let _ = writeln!(md, "{row}");
    }
    let _ = writeln!(md, "\n— : not reached within the run's bound (or not applicable: the stock module has no bounded queue).");
    let _ = writeln!(md, "Lost copies count what the three nodes hold once nothing changes for 5 s, against three times what was sent.");
    let _ = writeln!(
        md,
        "Cluster CPU: every process of the nodes, from the first REGISTER until the last change of what the nodes hold (the quiet wait \
         after it is left out)."
    );
    if table.iter().any(|(_, figure, _)| *figure == BASE_CPU) {
        let _ = writeln!(
            md,
            "Baseline: each round also runs the entry node alone without dmq (no dmq module, no dmq_usrloc or htable replication; same \
             config otherwise), the same workload; its CPU per REGISTER is that node's CPU / the REGISTERs sent. The replication overhead \
             per copy is, per round, (cluster CPU − that round's baseline CPU) / copies held on the two non-entry nodes (at most 2 × sent); \
             the figures are medians of the per-round values. The issue's target: overhead per copy ÷ baseline CPU per REGISTER ≤ 1.0 for \
             dmq_rs, and dmq_rs / stock ≤ 0.6."
        );
    }
    if !text_rows.is_empty() {
        let _ = writeln!(
            md,
            "Ceiling: a rate ladder, each step {ceiling_seconds} s worth of REGISTERs on fresh nodes; a step passes when sipp exits 0 (every \
             REGISTER answered 200, so no 503) within 1.5 × the nominal time, every node holds everything and (dmq_rs) dmq.stats \
             jobs_rejected is 0; the ladder stops at the first failing step. ≥ : every step passed; < : the first one failed."
        );
    }
    if !scale.is_empty() {
        let _ = writeln!(md, "\n## Scale: {}\n", scale_w.title);
        let _ = writeln!(
            md,
            "| nodes | implementation | copies held (of nodes × sent) | copies lost | seconds after the last REGISTER until every node holds everything \
             | replication overhead per copy (µs) | overhead per copy ÷ baseline CPU per REGISTER | entry node peak shm (MB) | jobs rejected |"
        );
        let _ = writeln!(md, "|---:|---|---:|---:|---:|---:|---:|---:|---:|");
        let base_per_register = median(&scale_baseline).map(|b| b / scale_count as f64 * 1e6);
        for &n in &scale_nodes {
            for side in [Side::Stock, Side::Rs] {
                let rows: Vec<&ScaleRow> = scale.iter().filter(|r| r.nodes == n && r.side == side).collect();
                let m = |f: &dyn Fn(&ScaleRow) -> Option<f64>| median(&rows.iter().map(|r| f(r)).collect::<Vec<_>>());
                let held = m(&|r| Some(r.run.copies() as f64));
                let over = m(&|r| r.overhead());
                let over_ratio = m(&|r| r.overhead().zip(r.baseline_cpu).map(|(o, b)| o / (b / scale_count as f64 * 1e6)));
                let _ = writeln!(
                    md,
                    "| {n} | {} | {} of {} | {} | {} | {} | {} | {} | {} |",
                    side.name(),
                    show(held),
                    n * scale_count,
                    show(m(&|r| Some(r.run.lost() as f64))),
                    show(m(&|r| r.run.settled)),
                    show(over),
                    over_ratio.map(|x| format!("{x:.2}")).unwrap_or_else(|| "—".into()),
                    show(m(&|r| r.run.peak)),
                    show(m(&|r| r.run.rejected)),
                );
            }
        }
        let _ = writeln!(
            md,
            "\nBaseline: the entry node alone without dmq, the same workload, once per round before the clusters: {} µs CPU per REGISTER \
             (median). Overhead per copy: (cluster CPU − that round's baseline CPU) / copies held on the non-entry nodes (at most \
             (nodes − 1) × sent). What the nodes hold is counted once every node holds everything or nothing changed for {} s. \
             {scale_rounds} round(s); medians.",
            show(base_per_register),
            SCALE_QUIET.as_secs()
        );
    }
    // ---- Cost floor: bench/floor.md, written by hand from a profile, goes
    // here verbatim (nothing at all when the file is absent).
    if let Ok(floor) = std::fs::read_to_string(root.join("bench/floor.md")) {
        let _ = writeln!(md, "\n<!-- cost floor: bench/floor.md, included verbatim -->\n{}", floor.trim_end());
        let _ = writeln!(md, "<!-- end of bench/floor.md -->");
    }
    println!("\n{md}");
    let timing = timings.iter().map(|(k, s)| format!("{k} {s:.0} s")).collect::<Vec<_>>().join(", ");
    eprintln!("timings: {timing}; {:.0} s in all", started.elapsed().as_secs_f64());
    std::fs::write(results_dir.join("results.md"), &md).unwrap();
    std::fs::write(results_dir.join("shm.csv"), shm_csv).unwrap();
    std::fs::write(results_dir.join("loss.csv"), loss_csv).unwrap();
    std::fs::write(results_dir.join("cpu.csv"), cpu_csv).unwrap();
    if !skipped("ceiling") {
        std::fs::write(results_dir.join("ceiling.csv"), ceiling_csv).unwrap();
    }
    if !scale.is_empty() {
        std::fs::write(results_dir.join("scale.csv"), scale_csv).unwrap();
    }
    eprintln!("wrote {}", results_dir.display());
}
