//! How many tests run Kamailio at once: the harness decides from the cores
//! this machine has, not the test runner's thread count or luck.
//!
//! A test holds a share of the machine from its first node (or background
//! helper) to its end:
//! - one core for an ordinary test: a few nodes and a little traffic.
//!   Starting a node takes it by itself (`while_running`);
//! - every core for a test whose timing bounds assume the machine is its
//!   own: bursts, faults, 100 000 contacts (`alone()`, called first).
//!
//! On 2 cores two ordinary tests run side by side and a heavy one runs
//! alone; on 8 cores, up to 8 ordinary ones. A heavy test that waits goes
//! first: no ordinary test starts while it waits. `DMQ_RS_TEST_CORES`
//! sets the number of cores (e.g. 1: every test alone). The share belongs
//! to the test's thread (libtest names it after the test); threads a test
//! spawns for its helpers run under the test's share.
//!
//! The budget is per test binary: `cargo test` (libtest) runs the binaries
//! one after another and a binary's tests on threads of one process. A
//! runner that starts a process per test (nextest) shares nothing: run it
//! with `-j 1`.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Condvar, Mutex, OnceLock};

struct Budget {
    cores: usize,
    state: Mutex<Shares>,
    freed: Condvar,
}

/// Cores free, and heavy tests waiting for all of them.
struct Shares {
    free: usize,
    alone_waiting: usize,
}

fn budget() -> &'static Budget {
    static BUDGET: OnceLock<Budget> = OnceLock::new();
    BUDGET.get_or_init(|| {
        let cores = std::env::var("DMQ_RS_TEST_CORES")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|c| *c > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
        // Past libtest's capture (eprintln! would show only on a failure):
        // the run's log says how the harness shares the machine.
        let _ = writeln!(std::io::stderr(), "machine: {cores} core(s): up to {cores} ordinary cluster test(s) at once, a heavy one alone");
        Budget { cores, state: Mutex::new(Shares { free: cores, alone_waiting: 0 }), freed: Condvar::new() }
    })
}

/// Cores held by the current test; given back when its thread ends.
struct Share {
    cores: usize,
}

impl Share {
    fn take(cores: usize) -> Share {
        let b = budget();
        let alone = cores >= b.cores;
        let mut s = b.state.lock().unwrap_or_else(|e| e.into_inner());
        if alone {
            s.alone_waiting += 1;
        }
        // An ordinary test also waits while a heavy one does.
        while s.free < cores || (!alone && s.alone_waiting > 0) {
            s = b.freed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if alone {
            s.alone_waiting -= 1;
        }
        s.free -= cores;
        Share { cores }
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let b = budget();
        b.state.lock().unwrap_or_else(|e| e.into_inner()).free += self.cores;
        b.freed.notify_all();
    }
}

thread_local! {
    static HELD: RefCell<Option<Share>> = const { RefCell::new(None) };
}

/// True on a test's own thread (libtest names it after the test); false
/// on helper threads the test spawned, which run under its share.
fn on_a_test_thread() -> bool {
    std::thread::current().name().is_some_and(|n| n != "main")
}

/// Called before a node or background helper starts: the test takes one
/// core unless it holds a share already.
pub fn while_running() {
    if !on_a_test_thread() {
        return;
    }
    HELD.with(|held| {
        let mut held = held.borrow_mut();
        if held.is_none() {
            *held = Some(Share::take(1));
        }
    });
}

/// The test runs alone: it waits until no other test holds a share, then
/// holds every core until it ends. Call it first, before any node starts.
pub fn alone() {
    let cores = budget().cores;
    HELD.with(|held| {
        let mut held = held.borrow_mut();
        if held.as_ref().is_some_and(|s| s.cores >= cores) {
            return;
        }
        // Give back a core taken earlier before waiting for all of them.
        *held = None;
        *held = Some(Share::take(cores));
    });
}
