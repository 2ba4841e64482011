//! What an operator sees when Kamailio starts with dmq_rs: the module loads
//! into the stock Kamailio and its workers are counted by Kamailio's cfg
//! framework like its own processes, a bad parameter stops the start with
//! one error line naming it, every example config passes `kamailio -c`, a
//! stock dmq config runs with only its loadmodule line switched, and the
//! debug level decides what the module logs.

mod common;

use std::time::Duration;

use common::*;

const REFUSE_LIMIT: Duration = Duration::from_secs(20);

#[test]
fn module_loads_and_kamailio_runs_with_it() {
    // kex serves mod.stats.
    let mut config = NodeConfig::default();
    config.consumers += "loadmodule \"kex.so\"\n";
    let node = Node::start("loads", &config);
    let log = node.log_text();
    assert!(log.contains(&format!("dmq_rs {} (Rust DMQ module, commit ", env!("CARGO_PKG_VERSION"))), "{log}");
    // Which build this is (build.rs): the commit the module was built from.
    let commit = log.split(", commit ").nth(1).and_then(|r| r.split(')').next()).unwrap_or("");
    assert!(commit == "unknown" || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())), "{commit:?}");
    // The node's processes map our module, not the stock one.
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", node.pid())).unwrap();
    assert!(maps.contains("dmq_rs.so"), "module not mapped");
    assert!(!maps.contains("/dmq.so"), "stock dmq.so mapped");
    let nodes = node.rpc(&["dmq.list_nodes"]);
    assert!(nodes.contains(&format!("host: {}", node.addr.ip())), "{nodes}");
    assert!(nodes.contains("local: 1"), "{nodes}");
    // The C shim's shm is the module's, under the name it registers as,
    // as the stock module's is (kamailio-sys is the same for any module).
    let shm = node.rpc(&["mod.stats", "dmq", "shm"]);
    assert!(shm.contains("krs_shm_malloc"), "the shim's allocations are not accounted to dmq: {shm}");
}

/// A config must fail to start, with one error line naming the parameter.
fn assert_refused(label: &str, config: NodeConfig, expected: &[&str]) {
    let (status, log) = run_to_exit(label, &config, REFUSE_LIMIT);
    let status = status.unwrap_or_else(|| panic!("kamailio kept running with a bad config:\n{log}"));
    assert!(!status.success(), "kamailio exited 0 with a bad config:\n{log}");
    let line = log
        .lines()
        .find(|l| l.contains("ERROR: dmq") && expected.iter().all(|e| l.contains(e)))
        .unwrap_or_else(|| panic!("no error line with {expected:?}:\n{log}"));
    assert!(!line.contains("panic"), "{line}");
}

#[test]
fn server_address_that_is_not_a_listening_socket_is_refused() {
    let cfg = NodeConfig::default().without_param("server_address").param("server_address", "\"sip:127.0.0.1:5999\"");
    assert_refused("bad-socket", cfg, &["server_address", "udp:127.0.0.1:5999", "not a socket this Kamailio listens on"]);
}

#[test]
fn server_socket_that_is_not_listening_is_refused() {
    let cfg = NodeConfig::default().param("server_socket", "\"udp:127.0.0.1:5999\"");
    assert_refused("bad-server-socket", cfg, &["server_socket", "udp:127.0.0.1:5999"]);
}

#[test]
fn unparsable_server_address_is_refused() {
    let cfg = NodeConfig::default().without_param("server_address").param("server_address", "\"sip:@@:bad:uri\"");
    assert_refused("bad-uri", cfg, &["server_address", "not a valid SIP URI"]);
}

#[test]
fn missing_server_address_is_refused() {
    let cfg = NodeConfig::default().without_param("server_address");
    assert_refused("no-server", cfg, &["server_address", "is required"]);
}

#[test]
fn zero_workers_are_refused() {
    let cfg = NodeConfig::default().param("num_workers", "0");
    assert_refused("no-workers", cfg, &["num_workers", "at least 1"]);
}

#[test]
fn unparsable_notification_address_is_refused() {
    let cfg = NodeConfig::default().param("notification_address", "\"sip:@@:bad:uri\"");
    let (status, log) = run_to_exit("bad-notify", &cfg, REFUSE_LIMIT);
    assert!(!status.expect("still running").success(), "{log}");
    assert!(log.lines().any(|l| l.contains("ERROR: dmq") && l.contains("notification_address") && l.contains("sip:@@:bad:uri")), "{log}");
}

#[test]
fn missing_tm_is_refused() {
    let cfg = NodeConfig { load_tm: false, ..Default::default() };
    assert_refused("no-tm", cfg, &["tm module is required", "loadmodule \"tm.so\""]);
}

#[test]
fn missing_sl_is_refused() {
    // The route uses sl_send_reply; give it one that doesn't.
    let cfg = NodeConfig { load_sl: false, route: "exit;".into(), ..Default::default() };
    assert_refused("no-sl", cfg, &["sl module is required", "loadmodule \"sl.so\""]);
}

#[test]
fn every_cfg_example_passes_kamailio_check() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cfg-examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("cfg") {
            continue;
        }
        let mut cmd = Release::suite().kamailio_command(None);
        cmd.arg("-c").arg("-f").arg(&path).arg("-L").arg(module_search_path());
        let (status, out, err) = run_bounded(cmd, Duration::from_secs(20)).unwrap();
        assert!(status.success(), "{} fails `kamailio -c`:\n{out}{err}", path.display());
        checked += 1;
    }
    assert!(checked > 0, "no cfg-examples/*.cfg");
}

/// A config written for the stock module, using every script function it
/// exports, starts with only its loadmodule line switched.
#[test]
fn stock_config_runs_with_only_the_loadmodule_line_switched() {
    let route = r#"
	if (is_method("KDMQ")) {
		if (dmq_is_from_node()) { xlog("L_INFO", "from a node\n"); }
		dmq_handle_message();
		dmq_handle_message("1");
		dmq_process_message();
		dmq_process_message("1");
		exit;
	}
	if (is_method("REGISTER")) {
		dmq_t_replicate();
		dmq_t_replicate("1");
	}
	$var(ch) = "custom";
	dmq_send_message("$var(ch)", "sip:127.0.0.1:5060", "body", "text/plain");
	dmq_bcast_message("custom", "$rb", "text/plain");
	sl_send_reply("404", "Not here");"#;
    let stock = NodeConfig { route: route.into(), ..NodeConfig::stock() }
        .param("notification_channel", "\"peers\"")
        .param("multi_notify", "0")
        .param("num_workers", "3")
        .param("worker_usleep", "0")
        .param("ping_interval", "60");
    // The same text must be a valid stock config first...
    let mut stock_node = Node::start("stock-cfg-stock", &stock);
    stock_node.stop();
    // ...and then run on dmq_rs with the loadmodule line switched.
    let ours = NodeConfig { dmq_module: "dmq_rs.so".into(), ..stock };
    let node = Node::start("stock-cfg-rs", &ours);
    assert!(node.rpc(&["dmq.list_nodes"]).contains("local: 1"));
}

#[test]
fn debug_level_decides_what_dmq_rs_logs() {
    let quiet = Node::start("log-quiet", &NodeConfig { debug: 2, ..Default::default() });
    assert!(!quiet.log_text().contains("DEBUG: dmq"), "{}", quiet.log_text());
    let verbose = Node::start("log-verbose", &NodeConfig { debug: 3, ..Default::default() });
    assert!(verbose.log_text().contains("DEBUG: dmq"), "{}", verbose.log_text());
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
