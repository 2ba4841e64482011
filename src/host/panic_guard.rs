//! Every entry point Kamailio calls into goes through [`guard`]: a Rust panic
//! is caught, logged through Kamailio's logger and turned into an error code —
//! unwinding into C would be undefined behaviour.

use std::panic::{self, AssertUnwindSafe};

/// Runs `f`; if it panics, logs which entry point failed and returns `on_panic`.
pub fn guard<R>(entry_point: &str, on_panic: R, f: impl FnOnce() -> R) -> R {
    // AssertUnwindSafe: after a panic we only log and return an error code;
    // shared state is protected by its own locks (released by their guards
    // while unwinding), so no broken invariant is observed afterwards.
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let what = panic_message(payload.as_ref());
            log::error!("internal error in {entry_point}: {what} (caught, returning an error)");
            on_panic
        }
    }
}

/// Sends the default panic message (with its location) to Kamailio's log
/// instead of stderr, which is often closed in a daemonized Kamailio.
pub fn install_hook() {
    panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let what = panic_message(info.payload());
        log::error!("panic{location}: {what}");
    }));
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}
