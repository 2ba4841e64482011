//! No Rust panic ever unwinds into Kamailio's C code (that would be
//! undefined behaviour), and none lets another process see shared state
//! half-updated:
//!
//! - Every entry point Kamailio calls into (script and KEMI functions,
//!   RPCs, callbacks, mod_init, child_init, core timers) goes through
//!   [`guard`]: a panic is caught, logged through Kamailio's logger and
//!   turned into an error code; the process (a SIP worker, say) goes on
//!   serving.
//! - A process the module forks ([`process::fork_worker`](crate::process::fork_worker),
//!   [`process::fork_timer_process`](crate::process::fork_timer_process))
//!   runs its whole body under [`run_process`]: a panic is logged and the
//!   process exits ([`PANIC_EXIT_STATUS`]) without running anything else,
//!   never returning into the core's code that forked it. The core's main
//!   process then stops the whole node, as it does when any child dies (a
//!   C module's crash included).
//! - A panic while a shm lock is held (inside a [`ShmMutex`](crate::shm::ShmMutex)
//!   guard or a [`ShmStore`](crate::shm::ShmStore) access) aborts the
//!   process before the lock is released: the data under it may be
//!   half-updated, and no other process may see it so. The lock stays
//!   taken and the core's main process stops the node, as after a C crash
//!   there. (The alternative, poisoning the lock and rebuilding the state,
//!   would need every shared structure to know how to rebuild itself from
//!   the other nodes; stopping the node lets the cluster treat it as a dead
//!   node and heal it when it is restarted.) A guard taken and released
//!   while already unwinding (a destructor freeing a block) is not aborted:
//!   its critical section ran whole.

use std::any::Any;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};

/// Runs `f`; if it panics, logs which entry point failed and returns `on_panic`.
/// The macros wrap every export in it; a module needs it only for entry
/// points of its own that C calls (a callback it hands another module).
pub fn guard<R>(entry_point: &str, on_panic: R, f: impl FnOnce() -> R) -> R {
    catch(f).unwrap_or_else(|what| {
        log::error!("internal error in {entry_point}: {what} (caught, returning an error)");
        on_panic
    })
}

/// Sends the default panic report (with its location) to Kamailio's log
/// instead of stderr, which a daemonized Kamailio has closed. Installed by
/// [`kamailio_module!`](crate::kamailio_module)'s `mod_register`.
pub(crate) fn install_hook() {
    panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        log::error!("panic{location}: {}", message(info.payload()));
    }));
}

/// The exit status of a forked process that panicked (EX_SOFTWARE): the
/// core's main process logs "child process … exited normally, status=70"
/// and stops the node.
pub const PANIC_EXIT_STATUS: i32 = 70;

/// The exit status of a forked process that could not start (its
/// child_init or the cfg framework failed).
pub const FAILED_EXIT_STATUS: i32 = 71;

/// Runs the whole body of a process the module forked: `body` under the
/// panic guard. On a panic the process logs it (the hook logged where) and
/// exits with [`PANIC_EXIT_STATUS`]; if `body` returns, it exits with 0.
/// Either way nothing after this runs: not the core's code that forked the
/// process, not atexit handlers (which, in a child, could free what
/// libraries share with the other processes), not destructors.
pub fn run_process(name: &str, body: impl FnOnce()) -> ! {
    match catch(body) {
        Ok(()) => exit_process(0),
        Err(what) => {
            log::error!(
                "internal error in {name} (pid {}): {what}; the process exits (status {PANIC_EXIT_STATUS}) and Kamailio stops the node",
                std::process::id()
            );
            exit_process(PANIC_EXIT_STATUS)
        }
    }
}

/// Ends this process at once with `status` (`_exit`: no atexit handlers,
/// no destructors, nothing returns).
pub fn exit_process(status: i32) -> ! {
    // SAFETY: _exit only ends the process.
    unsafe { libc::_exit(status) }
}

/// A panic [`catch`] caught: its message (see [`message`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panicked(pub String);

impl fmt::Display for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Panicked {}

/// Runs `f`, turning a panic into `Err` with its message.
///
/// AssertUnwindSafe: after a panic the caller only logs and returns an error
/// code to Kamailio (or ends the process, [`run_process`]); a panic inside a
/// shm critical section never gets here (the lock's guard aborts the
/// process first), so no half-updated shared state is observed afterwards.
/// Process-local state the panic interrupted may be half-updated: in an
/// entry point it is only what the call was building.
pub fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Panicked> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| Panicked(message(payload.as_ref())))
}

/// The text of a panic payload.
pub fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_pass_through() {
        assert_eq!(catch(|| 7), Ok(7));
    }

    #[test]
    fn panics_become_errors_with_their_message() {
        let prev = panic::take_hook();
        panic::set_hook(Box::new(|_| {}));
        let r: Result<i32, Panicked> = catch(|| panic!("boom {}", 42));
        let s: Result<i32, Panicked> = catch(|| std::panic::panic_any(3u8));
        let t: Result<(), Panicked> = catch(|| {
            let v: Vec<u8> = Vec::new();
            let _ = v[1];
        });
        panic::set_hook(prev);
        assert_eq!(r, Err(Panicked("boom 42".to_string())));
        assert_eq!(s, Err(Panicked("unknown panic".to_string())));
        assert!(t.unwrap_err().0.contains("index out of bounds"));
    }
}
