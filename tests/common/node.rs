//! A running Kamailio node: started from a `NodeConfig` (or a config file
//! as it is), asked over RPC, signalled (stop, pause, kill) as one process
//! group, and always stopped when dropped.

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{allocate_address, guardian, netns, node_dir, rpc_at, tls, DmqTransport, NodeConfig, Release, KAMAILIO};

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
        let child = spawn_kamailio(config, &cfg, &dir, &log, &[]);
        Node { addr, dir, ctl, log, release: config.release, child: Some(child) }
    }

    /// Starts a config file as it is (cfg-examples/), filling the defines
    /// the examples take: NODE_LISTEN, DMQ_SERVER, DMQ_SEED, CTL_SOCKET.
    pub fn start_example(label: &str, cfg: &Path, seed: Option<SocketAddr>) -> Node {
        Node::start_example_on(Release::suite(), label, cfg, seed)
    }

    pub fn start_example_on(release: Release, label: &str, cfg: &Path, seed: Option<SocketAddr>) -> Node {
        Node::start_example_with(release, label, cfg, seed, |_| Vec::new(), 64)
    }

    /// [`start_example_on`](Self::start_example_on) with more defines
    /// (made from the node's address) and `shm_mb` of shm.
    pub fn start_example_with(
        release: Release,
        label: &str,
        cfg: &Path,
        seed: Option<SocketAddr>,
        more: impl Fn(SocketAddr) -> Vec<String>,
        shm_mb: u32,
    ) -> Node {
        let addr = allocate_address();
        let dir = node_dir(label);
        let ctl = dir.join("ctl.sock");
        let log = dir.join("kamailio.log");
        let mut defines = vec![
            format!("NODE_LISTEN=udp:{addr}"),
            format!("DMQ_SERVER=\"sip:{addr}\""),
            format!("DMQ_SEED=\"sip:{}\"", seed.unwrap_or(addr)),
            format!("CTL_SOCKET=\"unix:{}\"", ctl.display()),
        ];
        defines.extend(more(addr));
        // The machine's hosts and resolv.conf, no namespace.
        let mut config = NodeConfig::default().on(release);
        config.shm_mb = shm_mb;
        let child = spawn_kamailio(&config, cfg, &dir, &log, &defines);
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

    /// Waits (bounded) for the node to stop on its own (no signal from
    /// here): its main process's exit status, and whether every other
    /// process of its group had exited too within `limit` (stragglers are
    /// then killed). None when the main process still ran after `limit`
    /// (the node is left running; dropping it stops it).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<(ExitStatus, bool)> {
        let start = Instant::now();
        let status = loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                break status;
            }
            if start.elapsed() >= limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let pgid = self.child.take().map(|c| c.id() as i32)?;
        // SAFETY: signal 0 only asks whether our own group still has a process.
        let group_alive = || unsafe { libc::kill(-pgid, 0) } == 0;
        while group_alive() && start.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(50));
        }
        let all_exited = !group_alive();
        // SAFETY: signals only the process group this harness created.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        guardian::released_group(pgid as u32);
        Some((status, all_exited))
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
                guardian::released_group(pgid as u32);
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let status = child.wait().ok();
        guardian::released_group(pgid as u32);
        status
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
            guardian::released_group(child.id());
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

/// The lines of a Kamailio log that say one of its processes died or hit
/// a bug: a child killed by a signal, a core dump, the core's `BUG:`
/// reports (a double free, say).
pub fn death_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains("exited by a signal") || l.contains("core was generated") || l.contains("BUG:")).collect()
}

impl Drop for Node {
    fn drop(&mut self) {
        let log = self.log_text();
        let deaths = death_lines(&log);
        if std::thread::panicking() {
            // A process that died is the likeliest cause: said first.
            if !deaths.is_empty() {
                eprintln!("===== node {}: a Kamailio process died =====\n{}", self.addr, deaths.join("\n"));
            }
            eprintln!("----- log of node {} ({}) -----\n{log}", self.addr, self.dir.display());
        } else if !deaths.is_empty() {
            // The test passed; still worth seeing (a test that kills on purpose sees it too).
            eprintln!("note: node {} ({}): a Kamailio process died:\n{}", self.addr, self.dir.display(), deaths.join("\n"));
        }
        self.stop();
    }
}

/// Starts kamailio on the config file `cfg`, run the way `config` says
/// (release, shared memory, hosts and resolv.conf files, network namespace,
/// wrapper; the rest of `config` is in `cfg` already), with `defines`.
fn spawn_kamailio(config: &NodeConfig, cfg: &Path, dir: &Path, log: &Path, defines: &[String]) -> Child {
    super::machine::while_running();
    let release = config.release;
    let (hosts, resolv) = (config.hosts.as_deref(), config.resolv_conf.as_deref());
    let log_file = fs::File::create(log).unwrap();
    let mut cmd = match config.wrapper.split_first() {
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
        .arg(config.shm_mb.to_string())
        .arg("-Y")
        .arg(dir)
        .arg("-P")
        .arg(dir.join("kamailio.pid"))
        .arg("-w")
        .arg(dir);
    if let Some(ns) = config.netns.as_deref() {
        // `ip netns exec` execs the command: the child's pid stays kamailio's.
        cmd = netns::in_netns(ns, &cmd);
    }
    cmd.stdin(Stdio::null()).stdout(log_file.try_clone().unwrap()).stderr(log_file).process_group(0);
    let child = cmd.spawn().expect("start kamailio");
    // Its group goes if this run is interrupted before it stops the node.
    guardian::watch_group(child.id());
    child
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
    guardian::released_group(child.id());
    (status, node.log_text())
}
