//! A loopback address and a directory of its own for every node.

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

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
