//! Every entry point Kamailio calls into goes through [`guard`]: a Rust panic
//! is caught, logged through Kamailio's logger and turned into an error code —
//! unwinding into C would be undefined behaviour.

use std::any::Any;
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

/// Runs `f`, turning a panic into `Err(message)`.
///
/// AssertUnwindSafe: after a panic the caller only logs and returns an error
/// code to Kamailio; shared state is guarded by locks whose guards release
/// them while unwinding, so no half-updated state is observed afterwards.
pub fn catch<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| message(payload.as_ref()))
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
        let r: Result<i32, String> = catch(|| panic!("boom {}", 42));
        let s: Result<i32, String> = catch(|| std::panic::panic_any(3u8));
        let t: Result<(), String> = catch(|| {
            let v: Vec<u8> = Vec::new();
            let _ = v[1];
        });
        panic::set_hook(prev);
        assert_eq!(r, Err("boom 42".to_string()));
        assert_eq!(s, Err("unknown panic".to_string()));
        assert!(t.unwrap_err().contains("index out of bounds"));
    }
}
