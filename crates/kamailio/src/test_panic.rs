//! Test only: a panic injected on purpose into one kind of process, so an
//! integration test can show what [`panic_guard`](crate::panic_guard) does
//! with it in a running Kamailio. A module arms it in mod_init from a
//! parameter it documents as test-only ([`arm`]); unarmed, as in any real
//! deployment, each check is one read of a process-local flag.
//!
//! The spec is `<site>[-locked][:<trigger file>]`:
//! - `<site>` names where the panic fires, one of the names the module
//!   maps to a [`Site`]: at the top of a forked process's loop (each
//!   [`process::cfg_update`](crate::process::cfg_update)), or in a script
//!   function called by any other process (a SIP worker);
//! - `-locked`: inside a shm critical section (a lock made for the test,
//!   half of its data written), to show the abort that keeps other
//!   processes from seeing half-updated data;
//! - `:<trigger file>`: only while that file exists (else at once), so a
//!   test chooses the moment.

use std::cell::{Cell, RefCell};
use std::ffi::CStr;
use std::fmt;
use std::path::PathBuf;

use crate::shm::ShmMutex;

/// Where an armed panic fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// The module's forked process of this name (as given to
    /// [`fork_worker`](crate::process::fork_worker) or
    /// [`fork_timer_process`](crate::process::fork_timer_process)), at the
    /// top of its loop.
    Process(&'static CStr),
    /// A script function of the module, called in a process the module did
    /// not fork (a SIP worker).
    ScriptFunction,
}

crate::shm_zeroed! {
    /// What the `-locked` panic leaves half-written: both counts move
    /// together, under the lock.
    struct Pair {
        first: u64,
        second: u64,
    }
}

#[derive(Clone)]
struct Armed {
    site: Site,
    locked: Option<&'static ShmMutex<Pair>>,
    trigger: Option<PathBuf>,
}

thread_local! {
    // Set in mod_init (the main process, before fork): every process
    // inherits a copy.
    static ARMED: RefCell<Option<Armed>> = const { RefCell::new(None) };
    static IS_ARMED: Cell<bool> = const { Cell::new(false) };
    // Set in each process the module forks, first thing.
    static THIS_PROCESS: Cell<Option<&'static CStr>> = const { Cell::new(None) };
}

/// Why [`arm`] refused a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArmError {
    /// The spec (given) ends with `:` and no file.
    EmptyTrigger(String),
    /// The spec (given) names none of the sites (the words it may start with).
    UnknownSite(String, Vec<String>),
    /// No shm for the `-locked` test lock.
    OutOfShm,
}

impl fmt::Display for ArmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArmError::EmptyTrigger(spec) => write!(f, "{spec:?}: an empty trigger file"),
            ArmError::UnknownSite(spec, sites) => {
                write!(f, "{spec:?}: the site is one of {}, with -locked and :<trigger file> optional", sites.join(", "))
            }
            ArmError::OutOfShm => f.write_str("out of shm for the test lock"),
        }
    }
}

impl std::error::Error for ArmError {}

/// Arms the panic `spec` names (see the module docs) in mod_init, before
/// fork; `sites` maps the words a spec may start with to their [`Site`].
pub fn arm(spec: &str, sites: &[(&str, Site)]) -> Result<(), ArmError> {
    let (site_word, trigger) = match spec.split_once(':') {
        Some((site, file)) if !file.is_empty() => (site, Some(PathBuf::from(file))),
        Some(_) => return Err(ArmError::EmptyTrigger(spec.to_string())),
        None => (spec, None),
    };
    let (site_word, locked) = match site_word.strip_suffix("-locked") {
        Some(site) => (site, true),
        None => (site_word, false),
    };
    let Some(&(_, site)) = sites.iter().find(|(word, _)| *word == site_word) else {
        let words = sites.iter().map(|(w, _)| w.to_string()).collect();
        return Err(ArmError::UnknownSite(spec.to_string(), words));
    };
    let locked = match locked {
        true => Some(ShmMutex::new_zeroed().ok_or(ArmError::OutOfShm)?),
        false => None,
    };
    log::warn!("test_panic {spec:?} armed: a panic will be injected (for tests only)");
    ARMED.with(|a| *a.borrow_mut() = Some(Armed { site, locked, trigger }));
    IS_ARMED.with(|a| a.set(true));
    Ok(())
}

/// In a process the module just forked, named `name`.
pub(crate) fn entered(name: &'static CStr) {
    THIS_PROCESS.with(|p| p.set(Some(name)));
}

/// At the top of a forked process's loop.
pub(crate) fn at_loop() {
    if IS_ARMED.with(Cell::get) {
        if let Some(name) = THIS_PROCESS.with(Cell::get) {
            fire_if(|site| matches!(site, Site::Process(n) if n.to_bytes() == name.to_bytes()), name.to_str().unwrap_or("?"));
        }
    }
}

/// At the start of a script function.
pub(crate) fn at_script_function(function: &str) {
    if IS_ARMED.with(Cell::get) && THIS_PROCESS.with(Cell::get).is_none() {
        fire_if(|site| site == Site::ScriptFunction, function);
    }
}

fn fire_if(here: impl Fn(Site) -> bool, place: &str) {
    let Some(armed) = ARMED.with(|a| a.borrow().clone()) else { return };
    if !here(armed.site) || armed.trigger.as_ref().is_some_and(|t| !t.exists()) {
        return;
    }
    match armed.locked {
        None => panic!("test_panic: injected panic in {place}"),
        Some(pair) => {
            let mut pair = pair.lock();
            pair.first += 1;
            if pair.first != pair.second {
                panic!("test_panic: injected panic in {place}, inside a shm critical section");
            }
            pair.second += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::panic_guard::Panicked;

    const SITES: [(&str, Site); 2] = [("worker", Site::Process(c"W")), ("sip", Site::ScriptFunction)];

    #[test]
    #[cfg_attr(miri, ignore = "a trigger file: Miri isolates the file system")]
    fn specs_name_a_site_and_an_optional_lock_and_trigger() {
        let e = arm("nowhere", &SITES).unwrap_err().to_string();
        assert!(e.contains("one of worker, sip"), "{e}");
        assert!(arm("sip:", &SITES).unwrap_err().to_string().contains("empty trigger file"));
        // Armed in this thread only (each test thread stands for a process).
        let trigger = std::env::temp_dir().join(format!("krs-test-panic-{}", std::process::id()));
        arm(&format!("sip:{}", trigger.display()), &SITES).unwrap();
        // Without the trigger file: nothing.
        at_script_function("f");
        std::fs::write(&trigger, b"").unwrap();
        let caught = crate::panic_guard::catch(|| at_script_function("f"));
        std::fs::remove_file(&trigger).unwrap();
        assert_eq!(caught, Err(Panicked("test_panic: injected panic in f".to_string())));
        // Not in a process of the module's own, and not at its loop.
        entered(c"W");
        at_script_function("f");
    }

    #[test]
    fn a_process_site_fires_at_that_process_loop_only() {
        arm("worker", &SITES).unwrap();
        at_loop(); // not a forked process
        entered(c"OTHER");
        at_loop();
        entered(c"W");
        assert_eq!(crate::panic_guard::catch(at_loop), Err(Panicked("test_panic: injected panic in W".to_string())));
    }
}
