//! SIP from the test's side: raw requests over a UDP socket, and sipp for
//! REGISTER bursts and calls.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{allocate_address, node_dir, run_bounded, Background, Node};

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

/// An OPTIONS to `user@node` with `body` and an `X-Peer: peer` header;
/// the final reply (empty when none came).
pub fn send_options(node: &Node, sock: &std::net::UdpSocket, user: &str, peer: &str, body: &str) -> String {
    let from = sock.local_addr().unwrap();
    let mut req = sip_request("OPTIONS", user, node.addr, from, "application/json", body.as_bytes(), Some(body.len()));
    // X-Peer goes in the header block, before its blank line.
    let at = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 2;
    req.splice(at..at, format!("X-Peer: {peer}\r\n").into_bytes());
    node.sip_exchange(sock, &req, Duration::from_secs(3)).unwrap_or_default()
}

/// What a sipp run ended with: its status and its calls that succeeded
/// and failed (sipp's final screen).
#[derive(Debug)]
pub struct SippRun {
    pub status: ExitStatus,
    pub successful: usize,
    pub failed: usize,
}

/// Runs the sipp scenario `tests/sipp/<scenario>` in the foreground from a
/// fresh local address to `to`: `count` calls at `rate` per second, each
/// for its own AoR `<prefix><call number>` (the scenario's `user`), bounded
/// in time; sipp's files land in `dir`.
pub fn sipp_scenario(to: SocketAddr, dir: &Path, scenario: &str, prefix: &str, count: usize, rate: usize) -> SippRun {
    let template = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp").join(scenario)).unwrap();
    let file = dir.join(format!("{prefix}-{scenario}"));
    std::fs::write(&file, template.replace("user[call_number]", &format!("{prefix}[call_number]"))).unwrap();
    let local = allocate_address();
    let mut cmd = Command::new("sipp");
    cmd.arg("-sf")
        .arg(&file)
        .args(["-m", &count.to_string(), "-r", &rate.to_string(), "-i", &local.ip().to_string()])
        .args(["-p", &local.port().to_string(), "-trace_err", "-nostdin"])
        .arg(to.to_string())
        .current_dir(dir);
    let limit = Duration::from_secs(30 + (count / rate.max(1)) as u64 * 2);
    let (status, out, err) = run_bounded(cmd, limit).expect("sipp ran");
    std::fs::write(dir.join(format!("{prefix}-sipp.log")), format!("{out}\n{err}")).unwrap();
    let total = |what: &str| -> Option<usize> {
        out.lines().rfind(|l| l.contains(what))?.split('|').filter_map(|f| f.trim().parse().ok()).next_back()
    };
    let successful = total("Successful call").unwrap_or_else(|| panic!("no sipp statistics in:\n{out}\n{err}"));
    SippRun { status, successful, failed: total("Failed call").unwrap_or(0) }
}
