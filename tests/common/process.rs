//! Helper processes (sipp, kamcmd, …) and waits, every one bounded in time.

use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::guardian;

/// Runs a command with a time limit; kills it when the limit passes.
/// Output is drained by threads so a long reply cannot block the child.
/// It stays in the test's process group (a short helper: kamcmd, a sipp
/// run in the foreground), so Ctrl-C or a timeout's signal to the group
/// ends it with the run; the `guardian` watches only the long-lived groups
/// (nodes, background helpers), as each line it reads costs it work.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Result<(ExitStatus, String, String), String> {
    let mut child =
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| format!("spawn {cmd:?}: {e}"))?;
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

/// A helper process (e.g. a sipp call generator) in its own process group,
/// killed with that group when dropped, so a failing test leaves nothing.
pub struct Background(pub(super) Child);

impl Background {
    pub fn spawn(mut cmd: Command, log: &Path) -> Background {
        super::machine::while_running();
        let out = fs::File::create(log).unwrap();
        cmd.stdin(Stdio::null()).stdout(out.try_clone().unwrap()).stderr(out).process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
        guardian::watch_group(child.id());
        Background(child)
    }
}

impl Background {
    /// Its pid (its process group's id).
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

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
        guardian::released_group(self.0.id());
    }
}

/// Keeps a fault in place (a cut link, a frozen, dead or absent node) for
/// `d`: how long it lasts is part of the scenario, not a wait for
/// something to happen (those poll a positive signal: [`wait_for`]).
pub fn fault_lasts(d: Duration) {
    std::thread::sleep(d);
}

/// Lets `d` pass while the test watches that something does not happen
/// (a count stays, shm does not grow): the window is the length of that
/// check, not a wait for a result. Where a control exists the test has it
/// beside the window: the same count reached its value, a later item
/// arrived.
pub fn observe(d: Duration) {
    std::thread::sleep(d);
}

/// Polls `done` every 100 ms until it holds (returns the time it took) or
/// `limit` passes (None).
pub fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if done() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
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
