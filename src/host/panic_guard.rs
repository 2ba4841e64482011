//! Every entry point Kamailio calls into goes through [`guard`]: a Rust panic
//! is caught, logged through Kamailio's logger and turned into an error code —
//! unwinding into C would be undefined behaviour.

use std::panic;

/// Runs `f`; if it panics, logs which entry point failed and returns `on_panic`.
pub fn guard<R>(entry_point: &str, on_panic: R, f: impl FnOnce() -> R) -> R {
    dmq_core::panic::catch(f).unwrap_or_else(|what| {
        log::error!("internal error in {entry_point}: {what} (caught, returning an error)");
        on_panic
    })
}

/// Sends the default panic report (with its location) to Kamailio's log
/// instead of stderr, which a daemonized Kamailio has closed.
pub fn install_hook() {
    panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        log::error!("panic{location}: {}", dmq_core::panic::message(info.payload()));
    }));
}
