//! Kamailio's process model, as a module uses it: ranks, worker
//! processes forked from the main process, timer processes and core
//! timers, the cfg framework's per-process refresh, and wake-up pipes.
//! Everything here is registered in mod_init (before fork) and started
//! from child_init(PROC_MAIN), as the core requires.

use std::ffi::{c_int, c_uint, c_void, CStr};
use std::fmt;
use std::time::Duration;

use crate::panic_guard::guard;
use crate::raw;

/// What the core refused when the module registered or started one of its
/// processes or timers.
#[derive(Debug)]
pub enum ProcessError {
    /// The process of this name could not be forked.
    Fork(String),
    /// No timer process could be reserved.
    TimerProcess,
    /// The core timer could not be registered.
    CoreTimer,
    /// The wake-up pipe could not be made.
    WakePipe(std::io::Error),
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessError::Fork(name) => write!(f, "cannot fork {name}"),
            ProcessError::TimerProcess => f.write_str("cannot register a timer process"),
            ProcessError::CoreTimer => f.write_str("cannot register a core timer"),
            ProcessError::WakePipe(e) => write!(f, "cannot create a wake-up pipe: {e}"),
        }
    }
}

impl std::error::Error for ProcessError {}

/// The rank child_init runs with: which process this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rank(c_int);

impl Rank {
    pub(crate) fn from_core(rank: c_int) -> Rank {
        Rank(rank)
    }

    /// The main process, after the others were forked from it: the place
    /// to fork a module's own processes.
    pub fn is_main(self) -> bool {
        self.0 == raw::PROC_MAIN as c_int
    }

    /// The first SIP worker's early init (once per start).
    pub fn is_sip_init(self) -> bool {
        self.0 == raw::PROC_SIPINIT as c_int
    }

    /// A process that reads SIP from the network (UDP and TCP workers).
    pub fn reads_sip(self) -> bool {
        self.0 > 0
    }

    /// The core's rank number (core/sr_module.h: PROC_MAIN is 0, the
    /// core's own processes negative, SIP workers positive).
    pub fn number(self) -> i32 {
        self.0
    }
}

/// Reserves `count` worker processes with the core and with the cfg
/// framework (mod_init). Workers join the cfg framework, so the core must
/// know them: without it a cfg change's per-child callback can be freed
/// before a worker ran it.
pub fn register_workers(count: u32) {
    // SAFETY: plain counters in the core, before fork as both require.
    unsafe {
        raw::register_procs(count as c_int);
        raw::cfg_register_child(count as c_int);
    }
}

/// Forks one worker (child_init(PROC_MAIN), after [`register_workers`]):
/// the child joins the cfg framework and runs `body` (which loops for the
/// life of the process), and never returns to the caller.
///
/// The whole child runs under [`run_process`](crate::panic_guard::run_process):
/// a panic anywhere in it is logged and ends the process, which never
/// returns into the core's code (the core's main process then stops the
/// node, as it does when any child dies).
pub fn fork_worker(name: &'static CStr, body: impl FnOnce()) -> Result<(), ProcessError> {
    // A worker's body loops for the life of the process; if it ever
    // returned, the process exits there (it must not go on into the
    // caller's code).
    fork_child(raw::PROC_RPC as c_int, name, body)
}

/// Forks a process of the module's own that runs `body` and then exits:
/// the core's `fork_process` (which counts it, makes its socket pair and
/// runs the modules' child_init with `rank` in it), then, in the child,
/// the cfg framework and `body`, all under the panic guard. Only the
/// parent returns.
fn fork_child(rank: c_int, name: &'static CStr, body: impl FnOnce()) -> Result<(), ProcessError> {
    let label = name.to_string_lossy();
    let parent = std::process::id();
    // SAFETY: fork_process from child_init(PROC_MAIN), as C modules do; the
    // name is a static C string the core keeps.
    let pid = unsafe { raw::fork_process(rank, name.as_ptr() as *mut _, 1) };
    if pid != 0 && std::process::id() == parent {
        // The parent: the child's pid, or the fork failed.
        return if pid < 0 { Err(ProcessError::Fork(label.into_owned())) } else { Ok(()) };
    }
    // The child (fork_process also returns -1 here when the modules'
    // child_init failed in it): never back into the core from here.
    crate::panic_guard::run_process(&label, || {
        crate::test_panic::entered(name);
        if pid < 0 {
            log::error!("{label}: child_init failed in the new process");
            crate::panic_guard::exit_process(crate::panic_guard::FAILED_EXIT_STATUS);
        }
        // SAFETY: the forked child joins the cfg framework first.
        if unsafe { raw::cfg_child_init() } != 0 {
            log::error!("{label}: cfg_child_init failed");
            crate::panic_guard::exit_process(crate::panic_guard::FAILED_EXIT_STATUS);
        }
        body()
    })
}

/// Refreshes this process's copy of the cfg framework's values (a worker
/// loop calls it between jobs, as the core's own processes do). Also where
/// a test-only injected panic fires in a module's process
/// ([`test_panic`](crate::test_panic)).
pub fn cfg_update() {
    // SAFETY: the worker joined the cfg framework in `fork_worker`.
    unsafe { raw::krs_cfg_update() };
    crate::test_panic::at_loop();
}

/// Reserves one timer process with the core (mod_init).
pub fn register_timer_process() -> Result<(), ProcessError> {
    // SAFETY: a counter in the core, before fork.
    if unsafe { raw::register_basic_timers(1) } < 0 {
        return Err(ProcessError::TimerProcess);
    }
    Ok(())
}

/// Forks the timer process reserved by [`register_timer_process`]
/// (child_init(PROC_MAIN)): it runs `tick` every `interval_us`, after a
/// refresh of the cfg framework's values, as the core's
/// `fork_basic_utimer` does, but with the loop in Rust under the panic
/// guard (see [`fork_worker`]): a panic in a tick ends the process.
pub fn fork_timer_process(name: &'static CStr, interval_us: u32, tick: fn()) -> Result<(), ProcessError> {
    fork_child(raw::PROC_TIMER as c_int, name, || loop {
        std::thread::sleep(Duration::from_micros(u64::from(interval_us)));
        cfg_update();
        tick();
    })
}

unsafe extern "C" fn timer_trampoline(_ticks: c_uint, param: *mut c_void) {
    guard("core timer", (), || {
        // SAFETY: `param` is the `fn()` given to `register_core_timer`.
        let tick: fn() = unsafe { std::mem::transmute::<*mut c_void, fn()>(param) };
        tick()
    })
}

/// Runs `tick` every `interval_s` seconds in the core's timer process (mod_init).
pub fn register_core_timer(interval_s: u32, tick: fn()) -> Result<(), ProcessError> {
    // SAFETY: registers a static trampoline with a fn pointer as its
    // parameter, before fork.
    if unsafe { raw::register_timer(Some(timer_trampoline), tick as *mut c_void, interval_s) } < 0 {
        return Err(ProcessError::CoreTimer);
    }
    Ok(())
}

/// A pipe made before fork that wakes one worker: any process writes a
/// byte, the worker blocks reading. The write end never blocks (a full pipe
/// means wake-ups are pending anyway).
#[derive(Clone, Copy)]
pub struct WakePipe {
    read: c_int,
    write: c_int,
}

impl WakePipe {
    /// A new pipe (mod_init, before fork, so every process has both ends).
    pub fn new() -> Result<WakePipe, ProcessError> {
        let mut fds = [0 as c_int; 2];
        // SAFETY: pipe2 fills two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(ProcessError::WakePipe(std::io::Error::last_os_error()));
        }
        // SAFETY: fcntl on the descriptor just created.
        unsafe { libc::fcntl(fds[1], libc::F_SETFL, libc::O_NONBLOCK) };
        Ok(WakePipe { read: fds[0], write: fds[1] })
    }

    /// Wakes the worker (any process; never blocks).
    pub fn wake(&self) {
        // SAFETY: one byte from a static buffer to our non-blocking pipe.
        unsafe { libc::write(self.write, b"j".as_ptr() as *const c_void, 1) };
    }

    /// Blocks until woken (or a signal interrupts), draining pending
    /// wake-ups: for the one worker the pipe belongs to.
    pub fn wait(&self) {
        let mut drain = [0u8; 256];
        // SAFETY: a blocking read into our own buffer.
        unsafe { libc::read(self.read, drain.as_mut_ptr() as *mut c_void, drain.len()) };
    }
}
