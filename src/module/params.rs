//! Module parameters: slots the core writes while parsing `modparam("dmq", …)`.
//! Names, types and defaults are the stock module's (5.6), plus upstream's
//! `remove_inactive`, `fail_count_enabled` and `fail_count_threshold`.

use std::ffi::{c_char, c_int, c_void};
use std::ptr::null_mut;
use std::sync::Mutex;

use dmq_core::config::{self, RawParams};

use crate::host::cell::CoreCell;
use crate::host::{kstr, panic_guard, sip_uri};
use crate::raw;

const PARAM_USE_FUNC: u32 = 1 << 31;
const EMPTY_STR: raw::str_ = raw::str_ { s: null_mut(), len: 0 };

static SERVER_ADDRESS: CoreCell<raw::str_> = CoreCell::new(EMPTY_STR);
static SERVER_SOCKET: CoreCell<raw::str_> = CoreCell::new(EMPTY_STR);
static NOTIFICATION_CHANNEL: CoreCell<raw::str_> = CoreCell::new(EMPTY_STR);
static MULTI_NOTIFY: CoreCell<c_int> = CoreCell::new(0);
static NUM_WORKERS: CoreCell<c_int> = CoreCell::new(config::DEFAULT_NUM_WORKERS);
static WORKER_USLEEP: CoreCell<c_int> = CoreCell::new(0);
static PING_INTERVAL: CoreCell<c_int> = CoreCell::new(config::DEFAULT_PING_INTERVAL);
static REMOVE_INACTIVE: CoreCell<c_int> = CoreCell::new(1);
static FAIL_COUNT_ENABLED: CoreCell<c_int> = CoreCell::new(0);
static FAIL_COUNT_THRESHOLD: CoreCell<c_int> = CoreCell::new(config::DEFAULT_FAIL_COUNT_THRESHOLD);
static JOB_QUEUE_LIMIT: CoreCell<c_int> = CoreCell::new(config::DEFAULT_JOB_QUEUE_LIMIT);

/// `notification_address` may be given many times; collected in the main
/// process while the config is parsed, read after fork as an inherited copy.
static NOTIFICATION_ADDRESSES: Mutex<Vec<String>> = Mutex::new(Vec::new());

const fn param(name: &'static std::ffi::CStr, type_: u32, ptr: *mut c_void) -> raw::param_export_t {
    raw::param_export_t { name: name.as_ptr() as *mut c_char, type_, param_pointer: ptr }
}

pub static PARAMS: CoreCell<[raw::param_export_t; 13]> = CoreCell::new([
    param(c"num_workers", raw::PARAM_INT, NUM_WORKERS.as_ptr() as *mut c_void),
    param(c"ping_interval", raw::PARAM_INT, PING_INTERVAL.as_ptr() as *mut c_void),
    param(c"server_address", raw::PARAM_STR, SERVER_ADDRESS.as_ptr() as *mut c_void),
    param(c"server_socket", raw::PARAM_STR, SERVER_SOCKET.as_ptr() as *mut c_void),
    param(
        c"notification_address",
        raw::PARAM_STR | PARAM_USE_FUNC,
        add_notification_address as *const () as *mut c_void,
    ),
    param(c"notification_channel", raw::PARAM_STR, NOTIFICATION_CHANNEL.as_ptr() as *mut c_void),
    param(c"multi_notify", raw::PARAM_INT, MULTI_NOTIFY.as_ptr() as *mut c_void),
    param(c"worker_usleep", raw::PARAM_INT, WORKER_USLEEP.as_ptr() as *mut c_void),
    param(c"remove_inactive", raw::PARAM_INT, REMOVE_INACTIVE.as_ptr() as *mut c_void),
    param(c"fail_count_enabled", raw::PARAM_INT, FAIL_COUNT_ENABLED.as_ptr() as *mut c_void),
    param(c"fail_count_threshold", raw::PARAM_INT, FAIL_COUNT_THRESHOLD.as_ptr() as *mut c_void),
    param(c"job_queue_limit", raw::PARAM_INT, JOB_QUEUE_LIMIT.as_ptr() as *mut c_void),
    raw::param_export_t { name: null_mut(), type_: 0, param_pointer: null_mut() },
]);

/// `modparam("dmq", "notification_address", "sip:…")`: checked at once, like
/// the stock module, so a typo stops Kamailio at the line that has it.
unsafe extern "C" fn add_notification_address(_type: raw::modparam_t, val: *mut c_void) -> c_int {
    panic_guard::guard("modparam notification_address", -1, || {
        if val.is_null() {
            log::error!("modparam(\"dmq\", \"notification_address\"): empty value");
            return -1;
        }
        // SAFETY: for a PARAM_STR function parameter the core passes a str*
        // whose text it keeps for the life of the process.
        let uri = unsafe { kstr::to_string(&*(val as *const raw::str_)) };
        if sip_uri::parse(&uri).is_none() {
            log::error!("modparam(\"dmq\", \"notification_address\"): {uri:?} is not a valid SIP URI");
            return -1;
        }
        NOTIFICATION_ADDRESSES.lock().unwrap_or_else(|e| e.into_inner()).push(uri);
        0
    })
}

fn optional_string(cell: &CoreCell<raw::str_>) -> Option<String> {
    let s = cell.get();
    // SAFETY: the core stores PARAM_STR values in memory it never frees.
    (!s.s.is_null()).then(|| unsafe { kstr::to_string(s) })
}

/// The parameters as the script set them.
pub fn raw_params() -> RawParams {
    RawParams {
        server_address: optional_string(&SERVER_ADDRESS),
        server_socket: optional_string(&SERVER_SOCKET),
        notification_addresses: NOTIFICATION_ADDRESSES.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        notification_channel: optional_string(&NOTIFICATION_CHANNEL),
        multi_notify: *MULTI_NOTIFY.get(),
        num_workers: *NUM_WORKERS.get(),
        worker_usleep: *WORKER_USLEEP.get(),
        ping_interval: *PING_INTERVAL.get(),
        remove_inactive: *REMOVE_INACTIVE.get(),
        fail_count_enabled: *FAIL_COUNT_ENABLED.get(),
        fail_count_threshold: *FAIL_COUNT_THRESHOLD.get(),
        job_queue_limit: *JOB_QUEUE_LIMIT.get(),
    }
}
