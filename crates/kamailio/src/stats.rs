//! Kamailio's statistics: the core's counters framework (`core/counters.h`),
//! which `kamcmd stats.get_statistics`, `cnt.*`, SNMP and xhttp_prom read.
//!
//! Every statistic of the module is a value computed on read (what tm and
//! sl declare with `STAT_IS_FUNC`): the core calls a function when someone
//! asks, and that function reads the module's own figures in shm. Nothing
//! is counted twice, nothing is copied into the core's per-process counter
//! slots, and a figure is the same whichever process reads it. The
//! registration goes through `counter_register`, which `register_stat` and
//! `register_module_stats` call underneath on 5.6 and 6.0 alike; it takes a
//! parameter for the read callback (so one trampoline serves every
//! statistic) and a description (shown by `kamcmd cnt.help <group> <name>`).

use std::ffi::{c_int, c_void, CStr};
use std::fmt;

use crate::panic_guard::guard;
use crate::raw;

/// One statistic of a group: its name, a line of description, and the
/// function that computes its value (from shm) when it is read.
pub struct Statistic {
    /// The name within its group (`stats.get_statistics <group>:<name>`).
    pub name: &'static CStr,
    /// One line of description (`kamcmd cnt.help`).
    pub doc: &'static CStr,
    /// Computes the value when read, in whichever process reads it: from
    /// shm only, never blocking for long (it runs inside RPCs).
    pub read: fn() -> u64,
}

impl Statistic {
    /// A statistic `name` described by `doc`, whose value `read` computes.
    pub const fn new(name: &'static CStr, doc: &'static CStr, read: fn() -> u64) -> Statistic {
        Statistic { name, doc, read }
    }

    /// The name as text.
    pub fn name(&self) -> &'static str {
        self.name.to_str().unwrap_or("?")
    }
}

/// A statistic the core refused to register (a name registered twice, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatisticError {
    /// The group.
    pub group: &'static str,
    /// The statistic's name.
    pub name: &'static str,
    /// What `counter_register` returned.
    pub rc: i32,
}

impl fmt::Display for StatisticError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot register the statistic {}:{} ({})", self.group, self.name, self.rc)
    }
}

impl std::error::Error for StatisticError {}

/// The counters framework's read callback for every statistic: `param` is
/// the `&'static Statistic` given at registration.
unsafe extern "C" fn read_statistic(_handle: raw::counter_handle_t, param: *mut c_void) -> raw::counter_val_t {
    // SAFETY: `register` passes a pointer to a Statistic of a 'static slice
    // as this callback's parameter; it is never freed nor changed.
    let statistic = unsafe { &*(param as *const Statistic) };
    guard("statistic", 0, || {
        let value = (statistic.read)();
        raw::counter_val_t::try_from(value).unwrap_or(raw::counter_val_t::MAX)
    })
}

/// Registers `statistics` under `group` (mod_init, before fork: the core
/// sizes its counter tables when it forks). Fails on the first one the core
/// refuses (e.g. a name registered twice).
pub fn register(group: &'static CStr, statistics: &'static [Statistic]) -> Result<(), StatisticError> {
    for statistic in statistics {
        let mut handle = raw::counter_handle_t::default();
        // SAFETY: the group, name and description are 'static NUL-terminated
        // strings (the core keeps the pointers); the callback parameter
        // points into a 'static slice, as `read_statistic` expects.
        let rc = unsafe {
            raw::counter_register(
                &mut handle,
                group.as_ptr(),
                statistic.name.as_ptr(),
                raw::CNT_F_NO_RESET as c_int,
                Some(read_statistic),
                statistic as *const Statistic as *mut c_void,
                statistic.doc.as_ptr(),
                0,
            )
        };
        if rc < 0 {
            return Err(StatisticError { group: group.to_str().unwrap_or("?"), name: statistic.name(), rc });
        }
    }
    Ok(())
}
