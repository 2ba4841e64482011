//! The `log` crate, routed into Kamailio's own logger.
//!
//! Records go through the core's LOG machinery under the module's name, so
//! `debug=`, `log_stderror`, syslog facilities and per-module levels all apply.
//! Filtering asks the core every time because the level can change at run time
//! (`kamcmd cfg.set_now_int core debug 3`).

use std::ffi::CString;

use crate::raw;

// Kamailio's log levels (core/dprint.h).
const L_ERR: i32 = -1;
const L_WARN: i32 = 0;
const L_INFO: i32 = 2;
const L_DBG: i32 = 3;

fn kamailio_level(level: log::Level) -> i32 {
    match level {
        log::Level::Error => L_ERR,
        log::Level::Warn => L_WARN,
        log::Level::Info => L_INFO,
        log::Level::Debug | log::Level::Trace => L_DBG,
    }
}

struct KamailioLogger;

/// The module's name, as its log lines start (`<module>: ...`).
static MODULE_NAME: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

impl log::Log for KamailioLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        // SAFETY: reads the core's debug level; valid in every process once the
        // config is parsed, which happens before any module code runs.
        unsafe { raw::krs_log_enabled(kamailio_level(metadata.level())) != 0 }
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = kamailio_level(record.level());
        let module = module_name();
        let prefix = match (record.file(), record.line()) {
            (Some(file), Some(line)) => {
                let file = file.rsplit('/').next().unwrap_or(file);
                format!("{module} [{file}:{line}]: ")
            }
            _ => format!("{module}: "),
        };
        // The module path (without its crate) stands where C modules print
        // the function name.
        let path = record.module_path().unwrap_or(module);
        let func = path.split_once("::").map_or(path, |(_, rest)| rest);
        let msg = record.args().to_string();
        let (Ok(prefix), Ok(func), Ok(msg)) = (CString::new(prefix), CString::new(func), CString::new(msg.replace('\0', "\\0"))) else {
            return;
        };
        // SAFETY: three NUL-terminated strings that outlive the call; the shim
        // formats them with "%s" so no format string comes from the message.
        unsafe { raw::krs_log(level, prefix.as_ptr(), func.as_ptr(), msg.as_ptr()) }
    }

    fn flush(&self) {}
}

static LOGGER: KamailioLogger = KamailioLogger;

/// Installs the logger for the module `module` (idempotent: the first
/// name stays), and gives the name to the C shim, whose log lines and shm
/// allocations are the module's (`kamcmd mod.stats <module> shm`). The
/// core decides what is printed. Called by
/// [`kamailio_module!`](crate::kamailio_module)'s `mod_register`.
pub(crate) fn init(module: &'static std::ffi::CStr) {
    if MODULE_NAME.set(module.to_str().unwrap_or("kamailio_rs")).is_ok() {
        // SAFETY: `module` is a NUL-terminated string that lives as long as
        // the module (a 'static in its exports); the shim keeps the pointer.
        unsafe { raw::krs_set_module_name(module.as_ptr()) }
    }
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
    }
}

/// The module's name as given to [`kamailio_module!`](crate::kamailio_module)
/// (for messages that must name it, e.g. a modparam error).
pub fn module_name() -> &'static str {
    MODULE_NAME.get().copied().unwrap_or("kamailio_rs")
}

/// Lets one log line through per interval (per process): for lines that
/// input from the network can trigger, so a flood cannot flood the log.
pub struct RateLimit {
    last_ms: std::sync::atomic::AtomicU64,
    interval_ms: u64,
}

impl RateLimit {
    /// At most one line per `interval_ms` (a `static` per kind of line).
    pub const fn per(interval_ms: u64) -> RateLimit {
        RateLimit { last_ms: std::sync::atomic::AtomicU64::new(0), interval_ms }
    }

    /// Whether a line may be logged now.
    pub fn allow(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let now = crate::clock::monotonic_ms();
        let last = self.last_ms.load(Relaxed);
        now.saturating_sub(last) >= self.interval_ms && self.last_ms.compare_exchange(last, now, Relaxed, Relaxed).is_ok()
    }
}
