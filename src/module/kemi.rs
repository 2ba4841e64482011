//! KEMI exports: `KSR.dmq.*` for app_lua, app_python3 and the other KEMI
//! interpreters, registered from mod_register as C modules do.

use std::ffi::{c_int, c_void};

use crate::host::cell::CoreCell;
use crate::raw;

use super::script;

/// A `str` over a NUL-terminated literal, the NUL not counted: KEMI
/// interpreters also read these names as C strings (app_lua's snprintf).
const fn kstr(s: &'static std::ffi::CStr) -> raw::str_ {
    raw::str_ { s: s.as_ptr() as *mut _, len: s.count_bytes() as c_int }
}

const NONE: c_int = raw::SR_KEMIP_NONE as c_int;
const INT: c_int = raw::SR_KEMIP_INT as c_int;
const STR: c_int = raw::SR_KEMIP_STR as c_int;

const fn export(fname: &'static std::ffi::CStr, func: *mut c_void, params: [c_int; 6]) -> raw::sr_kemi_t {
    raw::sr_kemi_t { mname: kstr(c"dmq"), fname: kstr(fname), rtype: INT, func, ptypes: params }
}

const NO_PARAMS: [c_int; 6] = [NONE; 6];
const ONE_INT: [c_int; 6] = [INT, NONE, NONE, NONE, NONE, NONE];

static EXPORTS: CoreCell<[raw::sr_kemi_t; 10]> = CoreCell::new([
    export(c"handle_message", script::ki_handle_message as *mut c_void, NO_PARAMS),
    export(c"handle_message_rc", script::ki_handle_message_rc as *mut c_void, ONE_INT),
    export(c"process_message", script::ki_process_message as *mut c_void, NO_PARAMS),
    export(c"process_message_rc", script::ki_process_message_rc as *mut c_void, ONE_INT),
    export(c"send_message", script::ki_send_message as *mut c_void, [STR, STR, STR, STR, NONE, NONE]),
    export(c"bcast_message", script::ki_bcast_message as *mut c_void, [STR, STR, STR, NONE, NONE, NONE]),
    export(c"t_replicate", script::ki_t_replicate as *mut c_void, NO_PARAMS),
    export(c"t_replicate_mode", script::ki_t_replicate_mode as *mut c_void, ONE_INT),
    export(c"is_from_node", script::ki_is_from_node as *mut c_void, NO_PARAMS),
    // terminator
    raw::sr_kemi_t {
        mname: raw::str_ { s: std::ptr::null_mut(), len: 0 },
        fname: raw::str_ { s: std::ptr::null_mut(), len: 0 },
        rtype: 0,
        func: std::ptr::null_mut(),
        ptypes: NO_PARAMS,
    },
]);

/// Registers the KEMI functions (mod_register); 0 on success.
pub fn register() -> c_int {
    // SAFETY: the table is static and never changes; the core keeps the pointer.
    if unsafe { raw::sr_kemi_modules_add(EXPORTS.as_ptr() as *mut raw::sr_kemi_t) } < 0 {
        log::error!("cannot register the KEMI functions");
        return -1;
    }
    0
}
