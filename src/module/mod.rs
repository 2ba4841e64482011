//! What Kamailio loads: the `exports` table, the version symbols the loader
//! checks, and the entry points behind them. Registered under the name `dmq`
//! so that existing `modparam("dmq", ...)` lines apply unchanged.

mod cluster;
mod in_flight;
mod kemi;
mod lifecycle;
mod messaging;
mod node_handles;
pub mod params;
mod peers;
mod rpc_commands;
mod script;
mod workers;

use std::ffi::{c_char, c_int, c_void};
use std::ptr::null_mut;

use crate::host::cell::CoreCell;
use crate::raw;
use crate::raw::core_version::{MODULE_FLAGS, MODULE_VERSION};

/// A pointer in a `#[no_mangle]` static the core reads with dlsym.
#[repr(transparent)]
pub struct ExportedPtr(*const c_char);
// SAFETY: points to immutable, 'static bytes.
unsafe impl Sync for ExportedPtr {}

/// Must equal the core's SER_FULL_VERSION, or the loader refuses the module.
#[no_mangle]
pub static module_version: ExportedPtr = ExportedPtr(MODULE_VERSION.as_ptr() as *const c_char);
/// Must equal the core's SER_COMPILE_FLAGS (same defines, same layouts).
#[no_mangle]
pub static module_flags: ExportedPtr = ExportedPtr(MODULE_FLAGS.as_ptr() as *const c_char);
/// Part of the same MODULE_VERSION block C modules declare.
#[no_mangle]
pub static module_interface_ver: u32 = raw::MODULE_INTERFACE_VER;

/// Called by the loader right after dlopen, before any modparam: the earliest
/// point to route logs and panics into Kamailio's logger.
#[no_mangle]
pub extern "C" fn mod_register(
    _path: *mut c_char,
    _dlflags: *mut c_int,
    _p1: *mut c_void,
    _p2: *mut c_void,
) -> c_int {
    crate::host::panic_guard::guard("mod_register", -1, || {
        crate::host::log::init();
        crate::host::panic_guard::install_hook();
        kemi::register()
    })
}

const fn name(s: &'static std::ffi::CStr) -> *mut c_char {
    s.as_ptr() as *mut c_char
}

type CmdFn = unsafe extern "C" fn(*mut raw::sip_msg, *mut c_char, *mut c_char) -> c_int;
type Cmd3Fn = unsafe extern "C" fn(*mut raw::sip_msg, *mut c_char, *mut c_char, *mut c_char) -> c_int;
type Cmd4Fn = unsafe extern "C" fn(*mut raw::sip_msg, *mut c_char, *mut c_char, *mut c_char, *mut c_char) -> c_int;
type BindFn = unsafe extern "C" fn(*mut raw::dmq_api_t) -> c_int;

// The core stores every cmd as `cmd_function` and casts it back to the
// arity the table declares before calling (action.c, MODULE3_T/MODULE4_T),
// as C modules rely on; find_export() callers cast bind_dmq back likewise.
// SAFETY: only the pointer type changes; calls go through the right type.
const DMQ_SEND_MESSAGE: CmdFn = unsafe { std::mem::transmute::<Cmd4Fn, CmdFn>(script::w_dmq_send_message) };
// SAFETY: as above.
const DMQ_BCAST_MESSAGE: CmdFn = unsafe { std::mem::transmute::<Cmd3Fn, CmdFn>(script::w_dmq_bcast_message) };
// SAFETY: as above.
const BIND_DMQ: CmdFn = unsafe { std::mem::transmute::<BindFn, CmdFn>(messaging::bind_dmq) };
type FixupFn = unsafe extern "C" fn(*mut *mut c_void, c_int) -> c_int;

const fn cmd(
    cmd_name: &'static std::ffi::CStr,
    function: CmdFn,
    param_no: c_int,
    fixup: Option<FixupFn>,
    free_fixup: Option<FixupFn>,
    flags: u32,
) -> raw::cmd_export_t {
    raw::cmd_export_t { name: name(cmd_name), function: Some(function), param_no, fixup, free_fixup, flags }
}

const NO_CMD: raw::cmd_export_t =
    raw::cmd_export_t { name: null_mut(), function: None, param_no: 0, fixup: None, free_fixup: None, flags: 0 };

/// Script functions: the stock module's names, arities, fixups and route flags.
static CMDS: CoreCell<[raw::cmd_export_t; 11]> = CoreCell::new([
    cmd(c"dmq_handle_message", script::w_dmq_handle_message, 0, None, None, raw::REQUEST_ROUTE),
    cmd(c"dmq_handle_message", script::w_dmq_handle_message, 1, Some(raw::fixup_int_1), None, raw::REQUEST_ROUTE),
    cmd(c"dmq_process_message", script::w_dmq_process_message, 0, None, None, raw::REQUEST_ROUTE),
    cmd(c"dmq_process_message", script::w_dmq_process_message, 1, Some(raw::fixup_int_1), None, raw::REQUEST_ROUTE),
    cmd(
        c"dmq_send_message",
        DMQ_SEND_MESSAGE,
        4,
        Some(raw::fixup_spve_all),
        Some(raw::fixup_free_spve_all),
        raw::ANY_ROUTE,
    ),
    cmd(
        c"dmq_bcast_message",
        DMQ_BCAST_MESSAGE,
        3,
        Some(raw::fixup_spve_all),
        Some(raw::fixup_free_spve_all),
        raw::ANY_ROUTE,
    ),
    cmd(c"dmq_t_replicate", script::w_dmq_t_replicate, 0, None, None, raw::REQUEST_ROUTE),
    cmd(
        c"dmq_t_replicate",
        script::w_dmq_t_replicate,
        1,
        Some(raw::fixup_spve_null),
        Some(raw::fixup_free_spve_null),
        raw::REQUEST_ROUTE,
    ),
    cmd(c"dmq_is_from_node", script::w_dmq_is_from_node, 0, None, None, raw::REQUEST_ROUTE),
    // The C API for htable, dmq_usrloc, dialog and presence: find_export("bind_dmq", 0, 0).
    cmd(c"bind_dmq", BIND_DMQ, 0, None, None, 0),
    NO_CMD,
]);

/// The table the core looks up with dlsym("exports").
#[no_mangle]
pub static exports: CoreCell<raw::module_exports> = CoreCell::new(raw::module_exports {
    name: name(c"dmq"),
    dlflags: 0, // DEFAULT_DLFLAGS: the core's usual RTLD_NOW
    cmds: CMDS.as_ptr() as *mut raw::cmd_export_t,
    params: params::PARAMS.as_ptr() as *mut raw::param_export_t,
    rpc_methods: null_mut(), // registered in mod_init, as the stock module does
    pv_items: null_mut(),
    // Replies are taken before the reply route (host::replies), not here.
    response_f: None,
    init_mod_f: Some(lifecycle::mod_init),
    init_child_f: Some(lifecycle::child_init),
    destroy_mod_f: Some(lifecycle::destroy),
});
