//! `kamcmd` against a node's ctl socket, and reading its replies.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::{run_bounded, KAMCMD};

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

/// A field of a `kamcmd` struct reply ("name: value").
pub fn reply_field<T: std::str::FromStr>(out: &str, name: &str) -> Option<T> {
    out.lines().find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
}
