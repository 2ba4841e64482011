//! Test hosts in network namespaces: N hosts, each a namespace of its own
//! with one veth link (`eth0`, 10.77.0.<i+1>/24) to a bridge in another
//! namespace (which has 10.77.0.254 on the bridge). Cutting a host takes
//! its link down on the bridge side; healing brings it up again. Nodes run
//! inside with `ip netns exec` (`NodeConfig::netns`), sipp too; kamcmd
//! reaches them through their ctl socket (a file path).
//!
//! The namespaces are named after this process and a counter, so parallel
//! runs cannot collide; the addresses exist only inside them. Everything
//! made is removed when the `TestNet` is dropped (panics included), by the
//! names recorded when it was made. A machine where namespaces cannot be
//! made (not root, no iproute2, no veth/bridge) fails the test, unless
//! `DMQ_RS_ALLOW_SKIP=netns` (`skip`): then `None` and "ignored: …".

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{run_bounded, NodeConfig};

/// `cmd` run inside namespace `ns` (`ip netns exec ns …`; ip execs the
/// command, so the child's pid is the command's own).
pub fn in_netns(ns: &str, cmd: &Command) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).arg(cmd.get_program()).args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        c.current_dir(dir);
    }
    c
}

const SUBNET: [u8; 3] = [10, 77, 0];

/// The link address of host `n - 1` (254: the bridge).
fn mac(n: u8) -> String {
    format!("02:77:00:00:00:{n:02x}")
}
/// The SIP port every node listens on (each host has its own stack).
pub const SIP_PORT: u16 = 5060;

static NEXT_NET: AtomicU32 = AtomicU32::new(0);
static NEXT_PORT: AtomicU32 = AtomicU32::new(0);

pub struct TestNet {
    /// The namespace holding the bridge.
    pub bridge: String,
    /// One namespace per host.
    pub hosts: Vec<String>,
    /// What was made, in order (removed in reverse on drop).
    made: Vec<String>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    match run_bounded(cmd, Duration::from_secs(10)) {
        Ok((status, _, _)) if status.success() => Ok(()),
        Ok((status, out, err)) => Err(format!("ip {}: {status}: {out}{err}", args.join(" "))),
        Err(e) => Err(e),
    }
}

impl TestNet {
    /// Makes `n` hosts on one bridge. When this machine cannot make
    /// namespaces the test fails, or with `DMQ_RS_ALLOW_SKIP=netns` gets
    /// None (and "ignored: …" on stderr).
    pub fn new(n: usize) -> Option<TestNet> {
        assert!(n < 250);
        let tag = format!("dmqrs-{}-{}", std::process::id(), NEXT_NET.fetch_add(1, Ordering::SeqCst));
        let mut net = TestNet { bridge: format!("{tag}-br"), hosts: (0..n).map(|i| format!("{tag}-h{i}")).collect(), made: Vec::new() };
        if let Err(e) = net.add_namespace(&net.bridge.clone()) {
            super::cannot_run(
                "netns",
                &format!("cannot make network namespaces on this machine ({e}); the fault tests need root and iproute2 (make deps)"),
            );
            return None;
        }
        if let Err(e) = net.build() {
            // Namespaces work, but the links do not: that is a failure.
            panic!("cannot build the test network: {e}");
        }
        Some(net)
    }

    fn add_namespace(&mut self, name: &str) -> Result<(), String> {
        // Deleted if this run is interrupted before the drop.
        super::guardian::watch_netns(name);
        ip(&["netns", "add", name])?;
        self.made.push(name.to_string());
        Ok(())
    }

    fn build(&mut self) -> Result<(), String> {
        let b = self.bridge.clone();
        let gateway = format!("{}/24", self.bridge_ip());
        ip(&["-n", &b, "link", "set", "lo", "up"])?;
        ip(&["-n", &b, "link", "add", "br0", "address", &mac(254), "type", "bridge"])?;
        ip(&["-n", &b, "addr", "add", &gateway, "dev", "br0"])?;
        ip(&["-n", &b, "link", "set", "br0", "up"])?;
        for i in 0..self.hosts.len() {
            let h = self.hosts[i].clone();
            self.add_namespace(&h)?;
            let port = format!("v{i}");
            let addr = format!("{}/24", self.ip(i));
            ip(&["-n", &b, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "address", &mac(i as u8 + 1), "netns", &h])?;
            ip(&["-n", &b, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &b, "link", "set", &port, "up"])?;
            ip(&["-n", &h, "link", "set", "lo", "up"])?;
            ip(&["-n", &h, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &h, "link", "set", "eth0", "up"])?;
        }
        // Every host knows every other's link address for good: a cut host
        // is then a silent drop, as behind a router. (Without this, sends
        // to it wait for ARP, and a blocking UDP socket stalls its sender
        // while the kernel holds the queued datagrams, up to 3 s.)
        let peers: Vec<(String, String)> = (0..self.hosts.len())
            .map(|j| (self.ip(j).to_string(), mac(j as u8 + 1)))
            .chain([(self.bridge_ip().to_string(), mac(254))])
            .collect();
        for (i, h) in self.hosts.iter().enumerate() {
            for (j, (addr, lladdr)) in peers.iter().enumerate() {
                if j != i {
                    ip(&["-n", h, "neigh", "replace", addr, "lladdr", lladdr, "dev", "eth0", "nud", "permanent"])?;
                }
            }
        }
        for (addr, lladdr) in &peers[..self.hosts.len()] {
            ip(&["-n", &b, "neigh", "replace", addr, "lladdr", lladdr, "dev", "br0", "nud", "permanent"])?;
        }
        Ok(())
    }

    /// Host `i`'s address.
    pub fn ip(&self, i: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], i as u8 + 1))
    }

    /// The bridge's own address (a client that reaches every host).
    pub fn bridge_ip(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], 254))
    }

    /// Where the node of host `i` listens.
    pub fn addr(&self, i: usize) -> SocketAddr {
        SocketAddr::new(self.ip(i), SIP_PORT)
    }

    /// `base` run on host `i`.
    pub fn on_host(&self, i: usize, mut base: NodeConfig) -> NodeConfig {
        base.netns = Some(self.hosts[i].clone());
        base
    }

    /// Cuts host `i` off: its link goes down on the bridge side.
    pub fn cut(&self, i: usize) {
        ip(&["-n", &self.bridge, "link", "set", &format!("v{i}"), "down"]).expect("cut a host off");
    }

    /// Brings host `i`'s link back.
    pub fn heal(&self, i: usize) {
        ip(&["-n", &self.bridge, "link", "set", &format!("v{i}"), "up"]).expect("heal a host's link");
    }

    /// `program` run on host `i`.
    pub fn command(&self, i: usize, program: &str) -> Command {
        in_netns(&self.hosts[i], &Command::new(program))
    }

    /// Sends `count` REGISTERs at `rate`/s from host `i` itself (so a cut
    /// host can still be reached) to `to`, one AoR each: `<prefix><n>`,
    /// with `expires` (0: removes them; the Contact names no port, so a
    /// later run from another port removes them). Bounded in time; returns sipp's
    /// status and how many got a 200.
    // Each argument is one of sipp's own options for the run; a struct of
    // them would only rename them at every call.
    #[allow(clippy::too_many_arguments)]
    pub fn sipp_register(
        &self,
        i: usize,
        to: SocketAddr,
        dir: &Path,
        prefix: &str,
        count: usize,
        rate: usize,
        expires: u32,
    ) -> (ExitStatus, usize) {
        let template = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/register.xml")).unwrap();
        let scenario = dir.join(format!("register-{prefix}-{expires}.xml"));
        std::fs::write(
            &scenario,
            template
                .replace("user[call_number]", &format!("{prefix}[call_number]"))
                .replace("Expires: 3600", &format!("Expires: {expires}"))
                .replace("@[local_ip]:[local_port]>", "@[local_ip]>"),
        )
        .unwrap();
        let port = 6000 + NEXT_PORT.fetch_add(1, Ordering::SeqCst) % 2000;
        let mut cmd = self.command(i, "sipp");
        cmd.arg("-sf")
            .arg(&scenario)
            .args(["-m", &count.to_string(), "-r", &rate.to_string(), "-i", &self.ip(i).to_string()])
            .args(["-p", &port.to_string(), "-nostdin", "-trace_err"])
            .arg(to.to_string())
            .current_dir(dir);
        let limit = Duration::from_secs(30 + (count / rate.max(1)) as u64 * 2);
        let (status, out, err) = run_bounded(cmd, limit).expect("sipp ran");
        let ok = successful_calls(&out).unwrap_or_else(|| panic!("no sipp statistics in:\n{out}\n{err}"));
        (status, ok)
    }
}

/// The "Successful call" total of sipp's final screen.
pub fn successful_calls(screen: &str) -> Option<usize> {
    screen.lines().rfind(|l| l.contains("Successful call"))?.split('|').filter_map(|f| f.trim().parse().ok()).next_back()
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for name in self.made.iter().rev() {
            match ip(&["netns", "del", name]) {
                Ok(()) => super::guardian::released_netns(name),
                Err(e) => eprintln!("could not remove network namespace {name}: {e}"),
            }
        }
    }
}
