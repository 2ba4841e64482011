//! `make bench`: the same workloads against a three-node cluster of stock
//! dmq.so nodes and one of dmq_rs nodes (same Kamailio binary, same config
//! apart from the loadmodule line), alternating stock, dmq_rs, stock, dmq_rs
//! so machine drift cancels out. Prints each figure's median per
//! implementation and the dmq_rs/stock ratio, and writes
//! bench/results/results.md plus the CSV series bench/plot.py charts.
//!
//! Environment: BENCH_ROUNDS (default 2), BENCH_REGISTRATIONS (20000),
//! BENCH_RATE (1000), BENCH_HTABLE_WRITES (10000), BENCH_JOIN_CONTACTS
//! (100000), BENCH_SKIP (comma-separated: burst64, burst512, sustained,
//! htable, kill, join), BENCH_ONLY ("dmq_rs" or "stock dmq.so": one side of
//! the replication workloads, e.g. under a profiler).

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

struct Workload {
    key: &'static str,
    title: String,
    items: Items,
    count: usize,
    rate: usize,
    shm_mb: u32,
}

/// One figure of one run.
type Figures = BTreeMap<&'static str, Option<f64>>;

const LOST: &str = "copies lost";
const SETTLE: &str = "seconds after the last request until every node holds everything";
const CPU: &str = "cluster CPU seconds per 1 000 copies held";
const PEAK: &str = "entry node peak shm (MB)";
const REJECTED: &str = "jobs rejected (503, bounded queue)";
const KILL: &str = "seconds to detect a killed node";
const JOIN: &str = "seconds for a joining node to sync";
const JOIN_LOST: &str = "contacts missing on the joining node";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn skipped(key: &str) -> bool {
    std::env::var("BENCH_SKIP").map(|v| v.split(',').any(|s| s.trim() == key)).unwrap_or(false)
}

fn implementation(stock: bool) -> &'static str {
    if stock {
        "stock dmq.so"
    } else {
        "dmq_rs"
    }
}

/// The common part of every node: only `dmq_module` differs between the two.
fn node_config(stock: bool, shm_mb: u32) -> NodeConfig {
    let mut c = if stock { NodeConfig::stock() } else { NodeConfig::default() };
    c.shm_mb = shm_mb;
    c.children = 4;
    c
}

fn workload_config(w: &Workload, stock: bool) -> NodeConfig {
    let mut c = node_config(stock, w.shm_mb);
    match w.items {
        Items::Contacts => c = registrar(c),
        Items::HtableItems => {
            c.consumers += "loadmodule \"htable.so\"\nmodparam(\"htable\", \"enable_dmq\", 1)\n\
                            modparam(\"htable\", \"htable\", \"t=>size=16;dmqreplicate=1;\")\n";
            // One write per REGISTER, keyed by the AoR's user.
            c.route = "if (is_method(\"KDMQ\")) { dmq_handle_message(); exit; }\n\
                       \tif (is_method(\"REGISTER\")) { $sht(t=>$tU) = 1; sl_send_reply(\"200\", \"OK\"); exit; }\n\
                       \tsl_send_reply(\"404\", \"Not here\");"
                .into();
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

struct ReplicationRun {
    figures: Figures,
    shm_series: Vec<(f64, f64)>,
}

/// Sends the workload into the first node of a fresh three-node cluster and
/// waits (bounded) until every node holds everything or nothing changes for 5 s.
fn replication_run(w: &Workload, stock: bool, round: usize) -> ReplicationRun {
    let label = format!("bench-{}-{}-{round}", w.key, if stock { "stock" } else { "rs" });
    let nodes = start_cluster(&label, (0..3).map(|_| workload_config(w, stock)).collect());
    let cpu_before = cluster_cpu(&nodes);
    let sampler = ShmSampler::start(nodes[0].ctl.clone());
    let start = Instant::now();
    let _ = sipp_register(nodes[0].addr, &nodes[0].dir, w.count, w.rate);
    let sent = start.elapsed();
    let limit = Duration::from_secs((w.count / w.rate.max(1)) as u64 + 120).saturating_sub(sent);
    let (last, took) = wait_settled(
        limit,
        Duration::from_secs(5),
        Duration::from_millis(100),
        || nodes.iter().map(|n| held(n, w.items)).collect::<Vec<usize>>(),
        |counts| counts.iter().all(|&c| c >= w.count),
    );
    let settled = took.map(|t| t.as_secs_f64());
    let cpu = cluster_cpu(&nodes) - cpu_before;
    let shm_series = sampler.finish();
    let peak = nodes[0].try_rpc(&["core.shmmem"]).ok().and_then(|o| reply_field::<f64>(&o, "max_used")).map(|b| b / 1048576.0);
    let copies: usize = last.iter().map(|&c| c.min(w.count)).sum();
    let rejected = if stock { None } else { nodes.iter().map(|n| n.try_rpc(&["dmq.stats"]).ok().and_then(|o| reply_field::<f64>(&o, "jobs_rejected"))).sum() };
    let mut figures = Figures::new();
    figures.insert(LOST, Some((3 * w.count - copies) as f64));
    figures.insert(SETTLE, settled);
    figures.insert(CPU, (copies > 0).then(|| cpu / (copies as f64 / 1000.0)));
    figures.insert(PEAK, peak);
    figures.insert(REJECTED, rejected);
    eprintln!(
        "  {} round {round}: held {:?} of {}, settled {:?}, cpu {cpu:.2} s, peak shm {:?} MB, rejected {:?}",
        implementation(stock),
        last,
        w.count,
        settled,
        peak,
        rejected
    );
    ReplicationRun { figures, shm_series }
}

/// Kills one node of a three-node cluster and times until both others no
/// longer list it as active (bounded at 150 s: stock pings at most once a minute).
fn kill_detection(stock: bool) -> Option<f64> {
    let c = node_config(stock, 64).param("ping_interval", "5");
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
    let w = Workload { key: "join", title: String::new(), items: Items::Contacts, count: contacts, rate: 5000, shm_mb: 512 };
    let first = Node::start(&format!("bench-join-{}", if stock { "stock" } else { "rs" }), &workload_config(&w, stock));
    let _ = sipp_register(first.addr, &first.dir, contacts, w.rate);
    let filled = aor_count(&first);
    let start = Instant::now();
    let joiner = Node::start(&format!("bench-joiner-{}", if stock { "stock" } else { "rs" }), &seeded(workload_config(&w, stock), first.addr));
    let (held, took) =
        wait_settled(Duration::from_secs(240), Duration::from_secs(15), Duration::from_millis(250), || aor_count(&joiner), |&n| n >= filled);
    let missing = (contacts - held.min(contacts)) as f64;
    // From the joining node's start: its startup is part of joining.
    let took = took.map(|_| start.elapsed());
    match took {
        Some(t) => eprintln!("  {}: joiner holds {held} of {filled} after {:.1} s", implementation(stock), t.as_secs_f64()),
        None => eprintln!("  {}: joiner holds {held} of {filled} (the first node holds {filled} of {contacts})", implementation(stock)),
    }
    (took.map(|t| t.as_secs_f64()), missing)
}

fn median(values: &[Option<f64>]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().flatten().copied().collect();
    if v.is_empty() || v.len() < values.len() {
        // A run that did not reach the figure (e.g. never settled) has no median.
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 0 { (v[mid - 1] + v[mid]) / 2.0 } else { v[mid] })
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
    let model = cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).map(|m| m.trim_start_matches([' ', '\t', ':']).to_string()).unwrap_or_default();
    let cores = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|kb| kb.parse::<f64>().ok()))
        .map(|kb| kb / 1048576.0)
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let version = std::process::Command::new(KAMAILIO).arg("-v").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_string()).unwrap_or_default();
    format!("{model}, {cores} cores, {mem:.0} GiB RAM, Linux {}, {}", kernel.trim(), version.trim().trim_start_matches("version: "))
}

fn main() {
    let rounds = env_usize("BENCH_ROUNDS", 2).max(1);
    let count = env_usize("BENCH_REGISTRATIONS", 20000);
    let rate = env_usize("BENCH_RATE", 1000);
    let writes = env_usize("BENCH_HTABLE_WRITES", 10000);
    let join_contacts = env_usize("BENCH_JOIN_CONTACTS", 100000);
    let workloads = vec![
        Workload { key: "burst64", title: format!("dmq_usrloc, {count} REGISTER at {rate}/s, 64 MB shm"), items: Items::Contacts, count, rate, shm_mb: 64 },
        Workload { key: "burst512", title: format!("dmq_usrloc, {count} REGISTER at {rate}/s, 512 MB shm"), items: Items::Contacts, count, rate, shm_mb: 512 },
        Workload { key: "sustained", title: format!("dmq_usrloc, {} REGISTER at {}/s, 64 MB shm", count / 5, rate / 5), items: Items::Contacts, count: count / 5, rate: rate / 5, shm_mb: 64 },
        Workload { key: "htable", title: format!("htable dmqreplicate, {writes} writes at {rate}/s, 64 MB shm"), items: Items::HtableItems, count: writes, rate, shm_mb: 64 },
    ];
    let results_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results");
    std::fs::create_dir_all(&results_dir).unwrap();
    let started = Instant::now();

    // (workload key, figure) -> [stock runs, dmq_rs runs]
    let mut table: Vec<(String, &'static str, [Vec<Option<f64>>; 2])> = Vec::new();
    let mut shm_csv = String::from("workload,implementation,round,seconds,shm_mb\n");
    let mut loss_csv = String::from("workload,implementation,round,lost,sent_copies\n");
    for w in workloads.iter().filter(|w| !skipped(w.key)) {
        eprintln!("== {} ({rounds} rounds, stock and dmq_rs alternating)", w.title);
        let mut runs: [Vec<Figures>; 2] = [Vec::new(), Vec::new()];
        for round in 1..=rounds {
            for (side, stock) in [(0, true), (1, false)] {
                if std::env::var("BENCH_ONLY").is_ok_and(|only| only != implementation(stock)) {
                    continue;
                }
                let run = replication_run(w, stock, round);
                for (t, mb) in &run.shm_series {
                    let _ = writeln!(shm_csv, "{},{},{round},{t:.2},{mb:.2}", w.key, implementation(stock));
                }
                let _ = writeln!(loss_csv, "{},{},{round},{},{}", w.key, implementation(stock), run.figures[LOST].unwrap_or(0.0), 3 * w.count);
                runs[side].push(run.figures);
            }
        }
        for figure in [LOST, SETTLE, CPU, PEAK, REJECTED] {
            let per = |side: usize| runs[side].iter().map(|f| f.get(figure).copied().flatten()).collect::<Vec<_>>();
            table.push((w.title.clone(), figure, [per(0), per(1)]));
        }
    }
    if !skipped("kill") {
        eprintln!("== killed node (ping_interval 5; stock raises values below 60 to 60), both clusters at once");
        let stock = std::thread::spawn(|| kill_detection(true));
        let rs = kill_detection(false);
        let stock = stock.join().unwrap_or(None);
        eprintln!("  stock {stock:?} s, dmq_rs {rs:?} s");
        table.push(("3 nodes, one killed with SIGKILL".into(), KILL, [vec![stock], vec![rs]]));
    }
    if !skipped("join") {
        eprintln!("== joining node syncs {join_contacts} contacts (dmq_usrloc sync, 512 MB shm)");
        let (stock_time, stock_lost) = join_sync(true, join_contacts);
        let (rs_time, rs_lost) = join_sync(false, join_contacts);
        let title = format!("joining node, {join_contacts} contacts (512 MB shm)");
        table.push((title.clone(), JOIN, [vec![stock_time], vec![rs_time]]));
        table.push((title, JOIN_LOST, [vec![Some(stock_lost)], vec![Some(rs_lost)]]));
    }

    let mut md = String::new();
    let _ = writeln!(md, "# dmq_rs against the stock dmq.so\n");
    let _ = writeln!(md, "Machine: {}", machine());
    let _ = writeln!(md, "Run: {rounds} round(s) per workload, stock and dmq_rs alternating; medians; {:.0} s in all.\n", started.elapsed().as_secs_f64());
    let _ = writeln!(md, "| workload | figure | stock dmq.so | dmq_rs | dmq_rs / stock |");
    let _ = writeln!(md, "|---|---|---:|---:|---:|");
    for (title, figure, [stock, rs]) in &table {
        let (s, r) = (median(stock), median(rs));
        let _ = writeln!(md, "| {title} | {figure} | {} | {} | {} |", show(s), show(r), ratio(s, r));
    }
    let _ = writeln!(md, "\n— : not reached within the run's bound (or not applicable: the stock module has no bounded queue).");
    let _ = writeln!(md, "Lost copies count what the three nodes hold once nothing changes for 5 s, against three times what was sent.");
    println!("\n{md}");
    std::fs::write(results_dir.join("results.md"), &md).unwrap();
    std::fs::write(results_dir.join("shm.csv"), shm_csv).unwrap();
    std::fs::write(results_dir.join("loss.csv"), loss_csv).unwrap();
    eprintln!("wrote {}", results_dir.display());
}
