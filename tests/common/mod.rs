//! Integration-test harness: real Kamailio processes loading build/dmq_rs.so.
//!
//! Every node gets its own loopback address, UDP port, ctl socket, pid file
//! and runtime dir under target/itest/. Each node runs in its own process
//! group, and only those groups are ever signalled. Every wait is bounded.
//!
//! A node runs either the machine's Kamailio (`Release::Host`, Debian 12:
//! 5.6), Kamailio 6.0 from the Debian 13 root that `make deps` makes in
//! `.cache/debian13-root` (`Release::K60`) or Kamailio 6.1 from the Debian
//! testing root in `.cache/debian-testing-root` (`Release::K61`):
//! `chroot ROOT kamailio`, in a
//! private mount namespace where the repository (and the module's
//! directory) are bind-mounted at their own paths inside the root, so every
//! path in a config, the ctl socket and the logs are the same on both sides.
//! The root shares the machine's network. `DMQ_RS_KAMAILIO=6.0` (or 6.1)
//! makes that the default release of every node of a test run.
#![allow(dead_code)]

pub mod registered;

use std::fs;
use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub mod dns;
pub mod netns;
pub mod tls;

pub const KAMAILIO: &str = "/usr/sbin/kamailio";
pub const KAMCMD: &str = "/usr/sbin/kamcmd";

/// Which Kamailio a node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// The machine's own (/usr/sbin/kamailio; Debian 12: 5.6.3).
    Host,
    /// Kamailio 6.0 in the Debian 13 root (`make deps`).
    K60,
    /// Kamailio 6.1 in the Debian testing root (`make deps`).
    K61,
}

impl Release {
    /// The release of a test run: `DMQ_RS_KAMAILIO=6.0` or `6.1`, else the host's.
    pub fn suite() -> Release {
        match std::env::var("DMQ_RS_KAMAILIO").ok().as_deref() {
            None | Some("") | Some("host") => Release::Host,
            Some("6.0") => Release::K60,
            Some("6.1") => Release::K61,
            Some(other) => panic!("DMQ_RS_KAMAILIO={other}: known are 6.0, 6.1 and host"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Release::Host => "host",
            Release::K60 => "6.0",
            Release::K61 => "6.1",
        }
    }

    /// The version prefix `core.version` shows ("6.1.").
    pub fn version_prefix(self) -> &'static str {
        match self {
            Release::Host => "5.6.",
            Release::K60 => "6.0.",
            Release::K61 => "6.1.",
        }
    }

    /// The root the release runs in (None: the machine's own /).
    /// `DMQ_RS_ROOT_60` / `DMQ_RS_ROOT_61` override the roots' places.
    pub fn root(self) -> Option<PathBuf> {
        let (var, dir) = match self {
            Release::Host => return None,
            Release::K60 => ("DMQ_RS_ROOT_60", ".cache/debian13-root"),
            Release::K61 => ("DMQ_RS_ROOT_61", ".cache/debian-testing-root"),
        };
        let root = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(dir));
        assert!(root.join("usr/sbin/kamailio").exists(), "{} has no Kamailio {}: run `make deps`", root.display(), self.name());
        Some(root)
    }

    /// Where a path of the release's file system (e.g. its db_text schema)
    /// is seen from this machine.
    pub fn host_path(self, path: &str) -> PathBuf {
        match self.root() {
            Some(root) => root.join(path.trim_start_matches('/')),
            None => PathBuf::from(path),
        }
    }

    /// The dmq_rs build for this release: $DMQ_RS_MODULE for the suite's
    /// release; for the others $DMQ_RS_MODULE_60 (6.0), $DMQ_RS_MODULE_61
    /// (6.1) or $DMQ_RS_MODULE_HOST (host); else what `make` /
    /// `make KAMAILIO=6.0|6.1` build.
    pub fn module_path(self) -> PathBuf {
        let (var, default) = match self {
            Release::Host => ("DMQ_RS_MODULE_HOST", "build/dmq_rs.so"),
            Release::K60 => ("DMQ_RS_MODULE_60", "build/kamailio-6.0/dmq_rs.so"),
            Release::K61 => ("DMQ_RS_MODULE_61", "build/kamailio-6.1/dmq_rs.so"),
        };
        let var = if self == Release::suite() { "DMQ_RS_MODULE" } else { var };
        let p = std::env::var_os(var)
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(default));
        assert!(p.exists(), "{} is missing: run `make` / `make KAMAILIO=6.0|6.1` (or `make test`) first", p.display());
        p
    }

    /// Kamailio's module directory (tm.so, the stock dmq.so) as the release
    /// sees it.
    pub fn stock_module_dir(self) -> PathBuf {
        for dir in ["/usr/lib/x86_64-linux-gnu/kamailio/modules", "/usr/lib/kamailio/modules", "/usr/local/lib64/kamailio/modules"] {
            if self.host_path(dir).join("tm.so").exists() {
                return PathBuf::from(dir);
            }
        }
        panic!("cannot find Kamailio's module directory of release {} (run `make deps`)", self.name());
    }

    /// The module search path for nodes: our build dir first, then the stock one.
    pub fn module_search_path(self) -> String {
        let module = self.module_path();
        // Kamailio loads "dmq_rs.so" by file name: make sure that name exists.
        // (its real path: for 6.0 that is the path bind-mounted into the root)
        let dir = module.parent().unwrap().canonicalize().unwrap();
        let named = dir.join("dmq_rs.so");
        assert!(named.exists(), "{} is missing", named.display());
        format!("{}:{}", dir.display(), self.stock_module_dir().display())
    }

    /// A command running this release's kamailio with `hosts` (if any) as
    /// its /etc/hosts (see `kamailio_command_with`).
    pub fn kamailio_command(self, hosts: Option<&Path>) -> Command {
        self.kamailio_command_with(hosts, None)
    }

    /// A command running this release's kamailio with `hosts` (if any) as
    /// its /etc/hosts and `resolv` (if any) as its /etc/resolv.conf. For 6.0: a private mount namespace (the mounts are
    /// the node's alone and go away with it) where the repository and the
    /// module's directory are bind-mounted at their own paths inside the
    /// root, then `chroot ROOT /usr/sbin/kamailio`. Every step execs the
    /// next, so the child's pid is kamailio's.
    pub fn kamailio_command_with(self, hosts: Option<&Path>, resolv: Option<&Path>) -> Command {
        let Some(root) = self.root() else {
            if hosts.is_none() && resolv.is_none() {
                return Command::new(KAMAILIO);
            }
            let mut script = String::from("set -e; ");
            for (file, over) in [(hosts, "/etc/hosts"), (resolv, "/etc/resolv.conf")] {
                if let Some(file) = file {
                    script += &format!("mount --bind {} {over}; ", sh_quote(&file.display().to_string()));
                }
            }
            script += "exec \"$@\"";
            let mut c = Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "sh", "-c", &script]).arg("sh").arg(KAMAILIO);
            return c;
        };
        // The repository as tests name it (configs, node dirs) and by its
        // real path (the module search path), and the module's directory.
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let real_repo = repo.canonicalize().unwrap();
        let mut binds = vec![repo.clone()];
        if real_repo != repo {
            binds.push(real_repo.clone());
        }
        let module_dir = self.module_path().parent().unwrap().canonicalize().unwrap();
        if !module_dir.starts_with(&real_repo) {
            binds.push(module_dir);
        }
        let mut script = String::from("set -e; root=\"$0\"; ");
        for dir in &binds {
            let q = sh_quote(&dir.display().to_string());
            script += &format!("mkdir -p \"$root\"{q}; mount --bind {q} \"$root\"{q}; ");
        }
        for (file, over) in [(hosts, "etc/hosts"), (resolv, "etc/resolv.conf")] {
            if let Some(file) = file {
                script += &format!("mount --bind {} \"$root/{over}\"; ", sh_quote(&file.display().to_string()));
            }
        }
        script += "exec chroot \"$root\" /usr/sbin/kamailio \"$@\"";
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "sh", "-c", &script]).arg(&root);
        c
    }
}

/// `s` as one single-quoted shell word.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The module under test for the suite's release (see `Release::module_path`).
pub fn module_path() -> PathBuf {
    Release::suite().module_path()
}

/// Kamailio's own module directory for the suite's release.
pub fn stock_module_dir() -> PathBuf {
    Release::suite().stock_module_dir()
}

/// The module search path for nodes of the suite's release.
pub fn module_search_path() -> String {
    Release::suite().module_search_path()
}

static NEXT_NODE: AtomicU32 = AtomicU32::new(0);

/// A fresh loopback address and a free UDP port on it.
pub fn allocate_address() -> SocketAddr {
    // The process id spreads concurrent test binaries (nextest) apart.
    let n = NEXT_NODE.fetch_add(1, Ordering::SeqCst) + (std::process::id() % 50) * 20;
    let ip = format!("127.0.{}.{}", 1 + (n / 200) % 250, 10 + n % 200);
    let sock = UdpSocket::bind(format!("{ip}:0")).expect("bind a loopback address");
    sock.local_addr().unwrap()
}

fn test_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/itest");
    fs::create_dir_all(&root).unwrap();
    root
}

/// A node directory, unique per test run.
pub fn node_dir(label: &str) -> PathBuf {
    let dir = test_root().join(format!("{}-{}-{}", label, std::process::id(), NEXT_NODE.load(Ordering::SeqCst)));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// What DMQ between nodes travels over (SIP from test clients stays UDP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmqTransport {
    Udp,
    /// `listen=tcp:` on the node's address and port; DMQ URIs `;transport=tcp`.
    Tcp,
    /// `listen=tls:` likewise, with the tls module, a key and certificate
    /// from the run's test CA (`tls::Ca::shared`), verified both ways.
    Tls,
}

impl DmqTransport {
    /// The test name's word for it.
    pub fn name(self) -> &'static str {
        match self {
            DmqTransport::Udp => "udp",
            DmqTransport::Tcp => "tcp",
            DmqTransport::Tls => "tls",
        }
    }

    /// `;transport=…` for a DMQ URI (nothing for UDP).
    pub fn uri_param(self) -> String {
        match self {
            DmqTransport::Udp => String::new(),
            other => format!(";transport={}", other.name()),
        }
    }
}

/// What a node's config says beyond the common parts.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// "dmq_rs.so" or the stock "dmq.so"; empty: no dmq at all (no
    /// loadmodule line, no dmq modparams), see `NodeConfig::without_dmq`.
    pub dmq_module: String,
    /// Extra global lines (e.g. more loadmodule lines).
    pub globals: String,
    /// Lines after the dmq module and its parameters: modules that bind to
    /// dmq (the stock dmq.so must be initialized before them).
    pub consumers: String,
    /// `modparam("dmq", …)` lines; `{ADDR}` stands for this node's ip:port.
    pub dmq_params: Vec<(String, String)>,
    /// The request_route body.
    pub route: String,
    /// Other routes (event_route, route[x]) verbatim.
    pub extra_routes: String,
    pub load_tm: bool,
    pub load_sl: bool,
    pub debug: i32,
    /// Kamailio's shared memory (-m), in MB.
    pub shm_mb: u32,
    /// SIP worker processes (children=).
    pub children: u32,
    /// Name the node by this host name instead of its IP (listen= and
    /// `{ADDR}`); the name must be in `hosts`.
    pub host_name: Option<String>,
    /// An /etc/hosts of the node's own: Kamailio runs in a mount namespace
    /// where this file is bind-mounted over /etc/hosts (the machine's own
    /// file is never touched).
    pub hosts: Option<PathBuf>,
    /// A /etc/resolv.conf of the node's own (bind-mounted likewise), e.g.
    /// `dns::Dns::resolv_conf`: the node asks that DNS server only.
    pub resolv_conf: Option<PathBuf>,
    /// Extra core settings (e.g. `use_dns_cache=no`), at the top.
    pub core: String,
    /// The Kamailio the node runs (default: the suite's, `DMQ_RS_KAMAILIO`).
    pub release: Release,
    /// A network namespace to run the node in (`ip netns exec NAME …`; see
    /// `netns::TestNet`).
    pub netns: Option<String>,
    /// A command that runs kamailio (e.g. valgrind and its options; `{DIR}`
    /// stands for the node's directory). Only for the host's release.
    pub wrapper: Vec<String>,
    /// What DMQ travels over: `server_address` and `notification_address`
    /// get its `;transport=` and the node listens for it on its address.
    pub dmq_transport: DmqTransport,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            dmq_module: "dmq_rs.so".into(),
            globals: String::new(),
            consumers: String::new(),
            dmq_params: vec![("server_address".into(), "\"sip:{ADDR}\"".into())],
            route: "if (is_method(\"KDMQ\")) { dmq_handle_message(); exit; }\n\tsl_send_reply(\"404\", \"Not here\");".into(),
            extra_routes: String::new(),
            load_tm: true,
            load_sl: true,
            debug: 2,
            shm_mb: 64,
            children: 2,
            host_name: None,
            hosts: None,
            resolv_conf: None,
            core: String::new(),
            release: Release::suite(),
            netns: None,
            wrapper: Vec::new(),
            dmq_transport: DmqTransport::Udp,
        }
    }
}

impl NodeConfig {
    pub fn stock() -> Self {
        NodeConfig { dmq_module: "dmq.so".into(), ..Default::default() }
    }

    /// A node without dmq (the bench's no-replication baseline): no dmq
    /// module, no dmq parameters, a route that does not hand KDMQ to dmq.
    pub fn without_dmq() -> Self {
        NodeConfig {
            dmq_module: String::new(),
            dmq_params: Vec::new(),
            route: "sl_send_reply(\"404\", \"Not here\");".into(),
            ..Default::default()
        }
    }

    pub fn param(mut self, name: &str, value: &str) -> Self {
        self.dmq_params.push((name.into(), value.into()));
        self
    }

    /// The same config with DMQ over `transport`.
    pub fn over(mut self, transport: DmqTransport) -> Self {
        self.dmq_transport = transport;
        self
    }

    /// The same config on another Kamailio release.
    pub fn on(mut self, release: Release) -> Self {
        self.release = release;
        self
    }

    pub fn without_param(mut self, name: &str) -> Self {
        self.dmq_params.retain(|(n, _)| n != name);
        self
    }

    /// The full kamailio.cfg text for a node at `addr` with ctl at `ctl`.
    pub fn render(&self, addr: SocketAddr, ctl: &Path) -> String {
        let mut s = String::new();
        s += "#!KAMAILIO\n";
        s += &format!("debug={}\nlog_stderror=yes\nchildren={}\nauto_aliases=no\ndns=no\nrev_dns=no\n", self.debug, self.children);
        s += &self.core;
        let addr = match &self.host_name {
            Some(name) => format!("{name}:{}", addr.port()),
            None => addr.to_string(),
        };
        s += &format!("listen=udp:{addr}\n");
        match self.dmq_transport {
            DmqTransport::Udp => {}
            DmqTransport::Tcp => s += &format!("listen=tcp:{addr}\n"),
            DmqTransport::Tls => s += &format!("enable_tls=yes\nlisten=tls:{addr}\n"),
        }
        if self.dmq_transport != DmqTransport::Udp {
            // The core drops a TCP/TLS message larger than its read buffer
            // (16 KB by default) with its connection: dmq_usrloc's and
            // htable's sync batches are up to 60 000 bytes (see the guide).
            s += "tcp_rd_buf_size=65536\n";
        }
        if self.load_tm {
            s += "loadmodule \"tm.so\"\n";
        }
        if self.load_sl {
            s += "loadmodule \"sl.so\"\n";
        }
        s += "loadmodule \"ctl.so\"\nloadmodule \"pv.so\"\nloadmodule \"textops.so\"\nloadmodule \"xlog.so\"\n";
        s += &self.globals.replace("{ADDR}", &addr);
        if self.dmq_transport == DmqTransport::Tls {
            // Written next to the ctl socket by `Node::spawn`.
            let dir = ctl.parent().unwrap();
            s += &format!("loadmodule \"tls.so\"\nmodparam(\"tls\", \"config\", \"{}\")\n", dir.join("tls.cfg").display());
        }
        if !self.dmq_module.is_empty() {
            s += &format!("\nloadmodule \"{}\"\n", self.dmq_module);
        }
        s += &format!("modparam(\"ctl\", \"binrpc\", \"unix:{}\")\n", ctl.display());
        // Without a dmq module there is nothing to take dmq parameters.
        for (name, value) in self.dmq_params.iter().filter(|_| !self.dmq_module.is_empty()) {
            let mut value = value.replace("{ADDR}", &addr);
            // A DMQ URI without a transport of its own gets the node's.
            let uri_param = ["server_address", "notification_address"].contains(&name.as_str()) && !value.contains("transport=");
            if uri_param && value.ends_with('"') {
                value.insert_str(value.len() - 1, &self.dmq_transport.uri_param());
            }
            s += &format!("modparam(\"dmq\", \"{}\", {})\n", name, value);
        }
        s += &self.consumers.replace("{ADDR}", &addr);
        // An empty route leaves routing to a KEMI engine (cfgengine).
        if !self.route.is_empty() {
            s += &format!("\nrequest_route {{\n\t{}\n}}\n", self.route);
        }
        s += &format!("{}\n", self.extra_routes);
        s
    }
}

/// A running Kamailio node.
pub struct Node {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub ctl: PathBuf,
    pub log: PathBuf,
    pub release: Release,
    child: Option<Child>,
}

impl Node {
    /// Starts a node and waits (bounded) until it answers RPC.
    pub fn start(label: &str, config: &NodeConfig) -> Node {
        let addr = allocate_address();
        Node::start_at(label, config, addr)
    }

    pub fn start_at(label: &str, config: &NodeConfig, addr: SocketAddr) -> Node {
        let mut node = Node::spawn(label, config, addr);
        node.wait_ready(Duration::from_secs(20));
        node
    }

    /// Writes the node's config into a fresh directory and starts Kamailio.
    fn spawn(label: &str, config: &NodeConfig, addr: SocketAddr) -> Node {
        let dir = node_dir(label);
        let ctl = dir.join("ctl.sock");
        let cfg = dir.join("kamailio.cfg");
        if config.dmq_transport == DmqTransport::Tls {
            tls::Ca::shared().issue_into(&dir, addr.ip());
            tls::write_tls_cfg(&dir);
        }
        fs::write(&cfg, config.render(addr, &ctl)).unwrap();
        let log = dir.join("kamailio.log");
        let child = spawn_kamailio(
            config.release,
            &cfg,
            &dir,
            &log,
            config.shm_mb,
            &[],
            config.hosts.as_deref(),
            config.resolv_conf.as_deref(),
            config.netns.as_deref(),
            &config.wrapper,
        );
        Node { addr, dir, ctl, log, release: config.release, child: Some(child) }
    }

    /// Starts a config file as it is (cfg-examples/), filling the defines
    /// the examples take: NODE_LISTEN, DMQ_SERVER, DMQ_SEED, CTL_SOCKET.
    pub fn start_example(label: &str, cfg: &Path, seed: Option<SocketAddr>) -> Node {
        Node::start_example_on(Release::suite(), label, cfg, seed)
    }

    pub fn start_example_on(release: Release, label: &str, cfg: &Path, seed: Option<SocketAddr>) -> Node {
        let addr = allocate_address();
        let dir = node_dir(label);
        let ctl = dir.join("ctl.sock");
        let log = dir.join("kamailio.log");
        let defines = [
            format!("NODE_LISTEN=udp:{addr}"),
            format!("DMQ_SERVER=\"sip:{addr}\""),
            format!("DMQ_SEED=\"sip:{}\"", seed.unwrap_or(addr)),
            format!("CTL_SOCKET=\"unix:{}\"", ctl.display()),
        ];
        let child = spawn_kamailio(release, cfg, &dir, &log, 64, &defines, None, None, None, &[]);
        let mut node = Node { addr, dir, ctl, log, release, child: Some(child) };
        node.wait_ready(Duration::from_secs(20));
        node
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    fn wait_ready(&mut self, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("node {} exited during startup ({status}):\n{}", self.addr, self.log_text());
            }
            if self.ctl.exists() && self.try_rpc(&["core.uptime"]).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("node {} not ready within {limit:?}:\n{}", self.addr, self.log_text());
    }

    /// Runs `kamcmd` against this node (bounded to 10 s).
    pub fn try_rpc(&self, args: &[&str]) -> Result<String, String> {
        rpc_at(&self.ctl, args)
    }

    pub fn rpc(&self, args: &[&str]) -> String {
        self.try_rpc(args).unwrap_or_else(|e| panic!("{e}\nlog of {}:\n{}", self.addr, self.log_text()))
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until `check` holds; returns whether it did.
    pub fn wait_until(&self, limit: Duration, mut check: impl FnMut(&Node) -> bool) -> bool {
        let start = Instant::now();
        loop {
            if check(self) {
                return true;
            }
            if start.elapsed() >= limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the node's process group: SIGTERM, then SIGKILL after 5 s.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.stop_within(Duration::from_secs(5), false)
    }

    /// SIGTERM to the node's process group, SIGKILL after `limit`; with
    /// `whole_group` it also waits (within `limit`) for every process of
    /// the group to exit, not only the main one (e.g. each writing its
    /// profile at exit).
    pub fn stop_within(&mut self, limit: Duration, whole_group: bool) -> Option<ExitStatus> {
        self.resume();
        let mut child = self.child.take()?;
        let pgid = child.id() as i32;
        // SAFETY: signals only the process group this harness created.
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = child.try_wait() {
                // SAFETY: signal 0 only asks whether our own group still has a process.
                while whole_group && start.elapsed() < limit && unsafe { libc::kill(-pgid, 0) } == 0 {
                    std::thread::sleep(Duration::from_millis(50));
                }
                // SAFETY: as above; reaps stragglers of our own group.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        child.wait().ok()
    }

    /// Freezes the whole node (SIGSTOP to its group): it receives nothing
    /// until `resume`, like a node behind a stalled link.
    pub fn pause(&self) {
        if let Some(child) = &self.child {
            // SAFETY: signals only the process group this harness created.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGSTOP) };
        }
    }

    pub fn resume(&self) {
        if let Some(child) = &self.child {
            // SAFETY: as above.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGCONT) };
        }
    }

    /// SIGKILL to the whole node at once (a crash, as far as peers can tell).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signals only the process group this harness created.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
        }
    }

    /// Sends one UDP datagram to the node and waits (bounded) for a reply.
    pub fn sip_exchange(&self, from: &UdpSocket, datagram: &[u8], limit: Duration) -> Option<String> {
        from.set_read_timeout(Some(limit)).unwrap();
        from.send_to(datagram, self.addr).unwrap();
        let mut buf = vec![0u8; 65536];
        let start = Instant::now();
        while start.elapsed() < limit {
            match from.recv_from(&mut buf) {
                Ok((n, _)) => {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    // skip provisional replies
                    if text.starts_with("SIP/2.0 1") {
                        continue;
                    }
                    return Some(text);
                }
                Err(_) => return None,
            }
        }
        None
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("----- log of node {} ({}) -----\n{}", self.addr, self.dir.display(), self.log_text());
        }
        self.stop();
    }
}

/// `kamcmd` against a ctl socket, bounded (usable from a sampling thread).
pub fn rpc_at(ctl: &Path, args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new(KAMCMD);
    cmd.arg("-s").arg(format!("unix:{}", ctl.display())).args(args);
    let (status, out, err) = run_bounded(cmd, Duration::from_secs(10))?;
    if status.success() {
        Ok(out)
    } else {
        Err(format!("kamcmd {args:?}: {status}: {out}{err}"))
    }
}

fn spawn_kamailio(
    release: Release,
    cfg: &Path,
    dir: &Path,
    log: &Path,
    shm_mb: u32,
    defines: &[String],
    hosts: Option<&Path>,
    resolv: Option<&Path>,
    netns: Option<&str>,
    wrapper: &[String],
) -> Child {
    let log_file = fs::File::create(log).unwrap();
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            assert!(release.root().is_none() && hosts.is_none() && resolv.is_none(), "a wrapper runs the host's kamailio only");
            let mut c = Command::new(program);
            c.args(args.iter().map(|a| a.replace("{DIR}", &dir.display().to_string()))).arg(KAMAILIO);
            c
        }
        None => release.kamailio_command_with(hosts, resolv),
    };
    for define in defines {
        cmd.arg("-A").arg(define);
    }
    cmd.arg("-f")
        .arg(cfg)
        .arg("-L")
        .arg(release.module_search_path())
        .args(["-DD", "-E", "-M", "8"])
        .arg("-m")
        .arg(shm_mb.to_string())
        .arg("-Y")
        .arg(dir)
        .arg("-P")
        .arg(dir.join("kamailio.pid"))
        .arg("-w")
        .arg(dir);
    if let Some(ns) = netns {
        // `ip netns exec` execs the command: the child's pid stays kamailio's.
        cmd = netns::in_netns(ns, &cmd);
    }
    cmd.stdin(Stdio::null()).stdout(log_file.try_clone().unwrap()).stderr(log_file).process_group(0);
    cmd.spawn().expect("start kamailio")
}

/// Runs a node config to its exit (for configs that must refuse to start):
/// returns the exit status (None if it was still running after `limit` and
/// had to be killed) and the log.
pub fn run_to_exit(label: &str, config: &NodeConfig, limit: Duration) -> (Option<ExitStatus>, String) {
    let mut node = Node::spawn(label, config, allocate_address());
    let mut child = node.child.take().unwrap();
    let start = Instant::now();
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if start.elapsed() > limit {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // SAFETY: signals only the process group this harness created.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
    (status, node.log_text())
}

/// Runs a command with a time limit; kills it when the limit passes.
/// Output is drained by threads so a long reply cannot block the child.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Result<(ExitStatus, String, String), String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {cmd:?}: {e}"))?;
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).ok();
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).ok();
        s
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{cmd:?} did not finish within {limit:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    };
    Ok((status, out_reader.join().unwrap_or_default(), err_reader.join().unwrap_or_default()))
}

// ---- clusters -------------------------------------------------------------

/// How long a cluster may take to agree on its members.
pub const CONVERGE: Duration = Duration::from_secs(15);

/// `base` with a 2 s ping interval, learning the cluster from `seed`.
pub fn seeded(base: NodeConfig, seed: SocketAddr) -> NodeConfig {
    base.param("notification_address", &format!("\"sip:{seed}\"")).param("ping_interval", "2")
}

/// The status `node` lists for the node at `addr` (None: not listed).
pub fn status_of(node: &Node, addr: SocketAddr) -> Option<String> {
    node_field(node, addr, "status")
}

/// A field `dmq.list_nodes` of `node` shows for the node at `addr` (None:
/// not listed, or no such field).
pub fn node_field(node: &Node, addr: SocketAddr, field: &str) -> Option<String> {
    let out = node.try_rpc(&["dmq.list_nodes"]).ok()?;
    let entry = out.split('}').find(|e| e.contains(&format!("host: {}\n", addr.ip())) && e.contains(&format!("port: {}\n", addr.port())))?;
    Some(entry.split(&format!("{field}: ")).nth(1)?.lines().next()?.trim().to_string())
}

/// Whether `node` lists every address in `all` as active, and itself once.
pub fn lists_all_active(node: &Node, all: &[SocketAddr]) -> bool {
    let Ok(out) = node.try_rpc(&["dmq.list_nodes"]) else { return false };
    let entries = out.split('}').filter(|e| e.contains("host:")).count();
    entries == all.len()
        && all.iter().all(|a| status_of(node, *a).as_deref() == Some("active"))
        && out.matches("local: 1").count() == 1
}

/// Waits until every node lists all of them as active; panics otherwise.
pub fn assert_converged(nodes: &[&Node]) {
    let all: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    for node in nodes {
        assert!(
            node.wait_until(CONVERGE, |n| lists_all_active(n, &all)),
            "node {} did not converge:\n{}",
            node.addr,
            node.try_rpc(&["dmq.list_nodes"]).unwrap_or_default()
        );
    }
}

/// Starts one node per config: the first unseeded (a stock node seeded from
/// itself would list itself twice), the others seeded from it; all ping
/// every 2 s. Returns once all of them agree on the cluster.
pub fn start_cluster(label: &str, configs: Vec<NodeConfig>) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for (i, c) in configs.into_iter().enumerate() {
        let config = match nodes.first() {
            Some(first) => seeded(c, first.addr),
            None => c.param("ping_interval", "2"),
        };
        nodes.push(Node::start(&format!("{label}-{i}"), &config));
    }
    assert_converged(&nodes.iter().collect::<Vec<_>>());
    nodes
}

// ---- raw SIP ----------------------------------------------------------------

/// A unique token for branches, tags and Call-IDs.
pub fn rand_tag() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    N.fetch_add(1, Ordering::SeqCst) * 7919 + std::process::id() as u64
}

/// A SIP request from `from` to `user@to` with `body`. `content_length`
/// None leaves the header out (a bad request, on purpose).
pub fn sip_request(
    method: &str,
    user: &str,
    to: SocketAddr,
    from: SocketAddr,
    content_type: &str,
    body: &[u8],
    content_length: Option<usize>,
) -> Vec<u8> {
    let mut m = format!(
        "{method} sip:{user}@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-{n}\r\nFrom: <sip:{user}@{from}>;tag=t{n}\r\n\
         To: <sip:{user}@{to}>\r\nCall-ID: test-{n}@{from}\r\nCSeq: 1 {method}\r\nMax-Forwards: 1\r\nContent-Type: {content_type}\r\n",
        n = rand_tag()
    );
    if let Some(len) = content_length {
        m += &format!("Content-Length: {len}\r\n");
    }
    m += "\r\n";
    let mut bytes = m.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// `count` calls through `entry` to a sipp callee, each hung up (BYE) after
/// `hold_ms`; both sipp processes are killed when the pair is dropped.
pub fn hold_calls(entry: &Node, count: usize, hold_ms: u32) -> [Background; 2] {
    let dir = node_dir("calls");
    let uas_addr = allocate_address();
    let mut uas = Command::new("sipp");
    uas.args(["-sn", "uas", "-i", &uas_addr.ip().to_string(), "-p", &uas_addr.port().to_string(), "-nostdin"]).current_dir(&dir);
    let uas = Background::spawn(uas, &dir.join("uas.log"));
    let uac_addr = allocate_address();
    let mut uac = Command::new("sipp");
    // The R-URI names the callee; -rsa sends the INVITEs to the entry node.
    uac.args(["-sn", "uac", "-m", &count.to_string(), "-d", &hold_ms.to_string(), "-i", &uac_addr.ip().to_string()])
        .args(["-p", &uac_addr.port().to_string(), "-nostdin", "-rsa", &entry.addr.to_string()])
        .arg(uas_addr.to_string())
        .current_dir(&dir);
    let uac = Background::spawn(uac, &dir.join("uac.log"));
    [uac, uas]
}

/// A KDMQ for peer `user` with a correct Content-Length.
pub fn kdmq(to: SocketAddr, from: SocketAddr, user: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    sip_request("KDMQ", user, to, from, content_type, body, Some(body.len()))
}

// ---- helper processes -----------------------------------------------------

/// A helper process (e.g. a sipp call generator) in its own process group,
/// killed with that group when dropped, so a failing test leaves nothing.
pub struct Background(Child);

impl Background {
    pub fn spawn(mut cmd: Command, log: &Path) -> Background {
        let out = fs::File::create(log).unwrap();
        cmd.stdin(Stdio::null()).stdout(out.try_clone().unwrap()).stderr(out).process_group(0);
        Background(cmd.spawn().unwrap_or_else(|e| panic!("start {cmd:?}: {e}")))
    }
}

impl Background {
    /// Waits (bounded) for the process to exit; None when it is still running.
    pub fn wait_bounded(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            if start.elapsed() >= limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // SAFETY: signals only the process group this harness created.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

// ---- registrations --------------------------------------------------------

/// A registrar on top of `c`: usrloc in memory, replicated by dmq_usrloc;
/// REGISTERs are saved, KDMQ handed to dmq. Without dmq (`c.dmq_module`
/// empty): the same registrar, alone (no dmq_usrloc, no KDMQ).
pub fn registrar(mut c: NodeConfig) -> NodeConfig {
    let dmq = !c.dmq_module.is_empty();
    c.consumers += "loadmodule \"kex.so\"\nloadmodule \"usrloc.so\"\nloadmodule \"registrar.so\"\n";
    if dmq {
        c.consumers += "loadmodule \"dmq_usrloc.so\"\n";
    }
    c.consumers += "modparam(\"usrloc\", \"db_mode\", 0)\n";
    if dmq {
        c.consumers += "modparam(\"dmq_usrloc\", \"enable\", 1)\n";
    }
    c.route = String::new();
    if dmq {
        c.route += "if (is_method(\"KDMQ\")) { dmq_handle_message(); exit; }\n\t";
    }
    c.route += "if (is_method(\"REGISTER\")) { if (!save(\"location\")) { sl_reply_error(); } exit; }\n\
                \tsl_send_reply(\"404\", \"Not here\");";
    c
}

/// A field of a `kamcmd` struct reply ("name: value").
pub fn reply_field<T: std::str::FromStr>(out: &str, name: &str) -> Option<T> {
    out.lines().find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
}

/// Polls `probe` every `poll` until `done` holds (returns the last value
/// and the time it took) or the value stops changing for `quiet` or `limit`
/// passes (returns the last value and None).
pub fn wait_settled<T: PartialEq>(
    limit: Duration,
    quiet: Duration,
    poll: Duration,
    mut probe: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> (T, Option<Duration>) {
    let start = Instant::now();
    let mut last = probe();
    let mut last_change = Instant::now();
    loop {
        if done(&last) {
            return (last, Some(start.elapsed()));
        }
        if start.elapsed() > limit || last_change.elapsed() > quiet {
            return (last, None);
        }
        std::thread::sleep(poll);
        let now = probe();
        if now != last {
            last = now;
            last_change = Instant::now();
        }
    }
}

/// Contacts in the node's location table (usrloc's own statistic: a dump
/// of thousands of AoRs does not fit kamcmd's reply buffer).
pub fn aor_count(node: &Node) -> usize {
    let Ok(out) = node.try_rpc(&["stats.get_statistics", "all"]) else { return 0 };
    out.lines()
        .find_map(|l| l.trim().strip_prefix("usrloc:location_contacts = "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Sends `count` REGISTERs (one AoR each, user<n>) at `rate` per second to
/// `to` with sipp in the foreground, bounded in time; sipp's output lands in
/// `dir`. Returns sipp's status (non-zero when some REGISTERs failed).
pub fn sipp_register(to: SocketAddr, dir: &Path, count: usize, rate: usize) -> (ExitStatus, String, String) {
    let limit = Duration::from_secs(30 + (count / rate.max(1)) as u64 * 2);
    run_bounded(sipp_register_command(to, dir, count, rate), limit).expect("sipp ran")
}

/// The sipp command `sipp_register` runs, from a fresh local address.
pub fn sipp_register_command(to: SocketAddr, dir: &Path, count: usize, rate: usize) -> Command {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/register.xml");
    let local = allocate_address();
    let mut cmd = Command::new("sipp");
    cmd.arg("-sf")
        .arg(&scenario)
        .args(["-m", &count.to_string(), "-r", &rate.to_string(), "-i", &local.ip().to_string()])
        .args(["-p", &local.port().to_string(), "-trace_err", "-nostdin"])
        .arg(to.to_string())
        .current_dir(dir);
    cmd
}

// ---- consumers ------------------------------------------------------------

/// htable on top of `c`, with the replicated table `t`.
pub fn with_htable(mut c: NodeConfig) -> NodeConfig {
    c.consumers += "loadmodule \"htable.so\"\nmodparam(\"htable\", \"enable_dmq\", 1)\n\
                    modparam(\"htable\", \"htable\", \"t=>size=8;dmqreplicate=1;\")\n";
    c
}

/// The value of `key` in `table` on `node` (None: not there).
pub fn htable_get(node: &Node, table: &str, key: &str) -> Option<String> {
    let out = node.try_rpc(&["htable.get", table, key]).ok()?;
    out.split("value:").nth(1).and_then(|v| v.lines().next()).map(|v| v.trim().to_string())
}

/// A fresh directory holding a copy of the db_text schema Kamailio installs
/// (presence needs its tables).
pub fn db_text_schema(label: &str) -> PathBuf {
    let dir = node_dir(label);
    for entry in fs::read_dir(Release::suite().host_path("/usr/share/kamailio/dbtext/kamailio")).expect("kamailio's db_text schema") {
        let entry = entry.unwrap();
        fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}
