//! A DNS server of the test's own: Debian's dnsmasq on a loopback address
//! from `allocate_address()`, port 53 (resolv.conf cannot name another),
//! answering only from a hosts file and SRV lines the test writes; it never
//! forwards a query anywhere (`--no-resolv`, `--no-hosts`, no servers).
//! Nodes use it through a resolv.conf bind-mounted over theirs
//! (`NodeConfig::resolv_conf`). Records change by rewriting the hosts file
//! and SIGHUP. It runs in its own process group, killed with it when the
//! test ends (`Background`).

use std::fmt::Write as _;
use std::fs;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{allocate_address, node_dir, Background};

/// A running dnsmasq.
pub struct Dns {
    pub ip: IpAddr,
    pub dir: PathBuf,
    hosts: PathBuf,
    process: Background,
}

/// A record of the hosts file: `name` resolves to each of `ips`.
pub type Records<'a> = &'a [(&'a str, Vec<IpAddr>)];

impl Dns {
    /// Starts dnsmasq with `records`, SRV records `srv` (`(name, target,
    /// port)`, fixed for its life) and `ttl` seconds on every answer.
    pub fn start(label: &str, records: Records<'_>, srv: &[(&str, &str, u16)], ttl: u32) -> Dns {
        let ip = allocate_address().ip();
        let dir = node_dir(label);
        let hosts = dir.join("hosts");
        write_hosts(&hosts, records);
        let mut cmd = Command::new("dnsmasq");
        cmd.args(["--keep-in-foreground", "--user=root", "--no-resolv", "--no-hosts", "--bind-interfaces", "--port=53"])
            .arg(format!("--listen-address={ip}"))
            .arg(format!("--addn-hosts={}", hosts.display()))
            .arg(format!("--local-ttl={ttl}"))
            .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
            .arg(format!("--log-facility={}", dir.join("queries.log").display()))
            .arg("--log-queries");
        for (name, target, port) in srv {
            cmd.arg(format!("--srv-host={name},{target},{port},0,0"));
        }
        let process = Background::spawn(cmd, &dir.join("dnsmasq.out"));
        let dns = Dns { ip, dir, hosts, process };
        let start = Instant::now();
        while !dns.answers() {
            assert!(start.elapsed() < Duration::from_secs(10), "dnsmasq on {ip} did not start:\n{}", dns.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        dns
    }

    /// A resolv.conf that names this server alone, with short timeouts.
    pub fn resolv_conf(&self) -> PathBuf {
        let path = self.dir.join("resolv.conf");
        fs::write(&path, format!("nameserver {}\noptions timeout:1 attempts:1\n", self.ip)).unwrap();
        path
    }

    /// Replaces the records (hosts file, then SIGHUP: dnsmasq rereads it
    /// and clears its cache).
    pub fn set(&self, records: Records<'_>) {
        write_hosts(&self.hosts, records);
        self.signal(libc::SIGHUP);
    }

    /// The server stops answering (SIGSTOP: queries wait for their timeout).
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: i32) {
        // SAFETY: signals only the process group this harness created.
        unsafe { libc::kill(-(self.process.0.id() as i32), sig) };
    }

    /// dnsmasq's log (queries included).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("queries.log")).unwrap_or_default()
            + &fs::read_to_string(self.dir.join("dnsmasq.out")).unwrap_or_default()
    }

    /// How many queries for `name` it received so far.
    pub fn queries_for(&self, name: &str) -> usize {
        self.log().lines().filter(|l| l.contains(": query[") && l.contains(&format!(" {name} from"))).count()
    }

    /// Whether it answers a query (an A query for a name it may not know).
    fn answers(&self) -> bool {
        let sock = UdpSocket::bind(SocketAddr::new(allocate_address().ip(), 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in ["probe", "test"] {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        if sock.send_to(&q, SocketAddr::new(self.ip, 53)).is_err() {
            return false;
        }
        let mut buf = [0u8; 512];
        matches!(sock.recv_from(&mut buf), Ok((n, _)) if n >= 12 && buf[..2] == [0x12, 0x34])
    }
}

fn write_hosts(path: &PathBuf, records: Records<'_>) {
    let mut text = String::new();
    for (name, ips) in records {
        for ip in ips {
            let _ = writeln!(text, "{ip} {name}");
        }
    }
    // Written aside and renamed: dnsmasq never reads half a file.
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, path).unwrap();
}
