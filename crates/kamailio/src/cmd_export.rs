//! Script functions: the entries of the module's `cmds` table (built by
//! [`cmd!`](crate::cmd), or [`CmdExport::api`] for a C API other modules
//! bind), the routes and fixups they declare, and [`ScriptArgs`], their
//! parameters as the module's function reads them. Each entry's C
//! trampoline runs the module's `fn(&SipMsg, &ScriptArgs) -> i32` inside
//! the panic guard. Items marked `doc(hidden)` are public only for the
//! macro's expansion.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr::null_mut;

use crate::ffi::{cstr_ptr, ScriptFn2Params, ScriptFn3Params, ScriptFn4Params};
use crate::kstr;
use crate::panic_guard::guard;
use crate::raw;
use crate::sip_msg::SipMsg;

/// Script routes a function may be used in (the `flags` of [`cmd!`](crate::cmd)).
pub mod route {
    use crate::raw;
    /// `request_route` and the routes it calls only.
    pub const REQUEST: u32 = raw::REQUEST_ROUTE;
    /// Every route (request, reply, failure, branch, event routes…).
    pub const ANY: u32 = raw::ANY_ROUTE;
}

/// The fixups the core applies to a script function's parameters.
#[derive(Clone, Copy)]
pub enum Fixup {
    /// No fixup: for functions without parameters.
    None,
    /// An optional integer (fixup_int_1): read with [`ScriptArgs::int`].
    Int,
    /// Every parameter a string with variables (fixup_spve_all).
    AllStrings,
    /// The first parameter a string with variables (fixup_spve_null).
    FirstString,
}

type FixupFn = unsafe extern "C" fn(*mut *mut c_void, c_int) -> c_int;

impl Fixup {
    const fn functions(self) -> (Option<FixupFn>, Option<FixupFn>) {
        match self {
            Fixup::None => (None, None),
            Fixup::Int => (Some(raw::fixup_int_1), None),
            Fixup::AllStrings => (Some(raw::fixup_spve_all), Some(raw::fixup_free_spve_all)),
            Fixup::FirstString => (Some(raw::fixup_spve_null), Some(raw::fixup_free_spve_null)),
        }
    }
}

/// One script function of the `cmds` table (built by [`cmd!`](crate::cmd)).
#[repr(transparent)]
pub struct CmdExport(raw::cmd_export_t);

impl CmdExport {
    const fn with(name: &'static CStr, function: ScriptFn2Params, params: c_int, fixup: Fixup, flags: u32) -> CmdExport {
        let (fixup, free_fixup) = fixup.functions();
        CmdExport(raw::cmd_export_t { name: cstr_ptr(name), function: Some(function), param_no: params, fixup, free_fixup, flags })
    }

    #[doc(hidden)]
    pub const fn up_to_two_params(name: &'static CStr, f: ScriptFn2Params, params: c_int, fixup: Fixup, flags: u32) -> CmdExport {
        CmdExport::with(name, f, params, fixup, flags)
    }

    // The core stores every cmd as `cmd_function` and casts it back to the
    // arity the table declares before calling (action.c, MODULE3_T and
    // MODULE4_T), as C modules rely on.
    #[doc(hidden)]
    pub const fn three_params(name: &'static CStr, f: ScriptFn3Params, fixup: Fixup, flags: u32) -> CmdExport {
        // SAFETY: only the pointer type changes; the core calls it as ScriptFn3Params.
        CmdExport::with(name, unsafe { std::mem::transmute::<ScriptFn3Params, ScriptFn2Params>(f) }, 3, fixup, flags)
    }

    #[doc(hidden)]
    pub const fn four_params(name: &'static CStr, f: ScriptFn4Params, fixup: Fixup, flags: u32) -> CmdExport {
        // SAFETY: as above, called as ScriptFn4Params.
        CmdExport::with(name, unsafe { std::mem::transmute::<ScriptFn4Params, ScriptFn2Params>(f) }, 4, fixup, flags)
    }

    /// A module's C API for other modules (a `bind_<module>` function that
    /// fills the caller's API structure, e.g. dmq's `bind_dmq`), found by
    /// them with `find_export(name, 0, 0)`; never callable from the script.
    pub const fn api(name: &'static CStr, f: unsafe extern "C" fn(*mut c_void) -> c_int) -> CmdExport {
        // SAFETY: only the pointer type changes; find_export() callers cast it
        // back to their bind function's type before calling it.
        let f = unsafe { std::mem::transmute::<unsafe extern "C" fn(*mut c_void) -> c_int, ScriptFn2Params>(f) };
        CmdExport::with(name, f, 0, Fixup::None, 0)
    }

    /// The table's terminator.
    pub const END: CmdExport =
        CmdExport(raw::cmd_export_t { name: null_mut(), function: None, param_no: 0, fixup: None, free_fixup: None, flags: 0 });
}

/// A script function's parameters after their fixups, valid for the call.
pub struct ScriptArgs {
    msg: *mut raw::sip_msg,
    params: [*mut c_char; 4],
}

impl ScriptArgs {
    /// Parameter `i` as an integer (after [`Fixup::Int`]); None when absent.
    pub fn int(&self, i: usize) -> Option<i32> {
        let p = *self.params.get(i)?;
        if p.is_null() {
            return None;
        }
        let mut value: c_int = 0;
        // SAFETY: p is the fparam_t fixup_int_1 built for this parameter;
        // msg is the message of this call.
        (unsafe { raw::get_int_fparam(&mut value, self.msg, p as *mut raw::fparam_t) } >= 0).then_some(value)
    }

    /// Parameter `i` as bytes (after a string fixup), variables evaluated;
    /// None (logged) when absent or when it cannot be evaluated.
    pub fn bytes(&self, i: usize, what: &str) -> Option<Vec<u8>> {
        let p = *self.params.get(i)?;
        if p.is_null() {
            return None;
        }
        let mut out = raw::str_::default();
        // SAFETY: p is the fparam_t a spve fixup built for this parameter.
        if unsafe { raw::get_str_fparam(&mut out, self.msg, p as *mut raw::fparam_t) } < 0 {
            log::error!("cannot get the {what} parameter");
            return None;
        }
        // SAFETY: the value points into the message or the fixup's storage,
        // both alive for this call; copied out here.
        Some(unsafe { kstr::bytes(&out) }.to_vec())
    }
}

/// A script function as the module writes it. Its return is the script's:
/// above 0 true, below 0 false, 0 stops the script (`exit`).
pub type ScriptFunction = fn(&SipMsg, &ScriptArgs) -> i32;

/// The body of every script-function trampoline.
///
/// # Safety
/// `msg` and `params` are what the core passed to the cmd function.
#[doc(hidden)]
pub unsafe fn run_script_function(name: &CStr, msg: *mut raw::sip_msg, given: &[*mut c_char], f: ScriptFunction) -> c_int {
    let mut params = [std::ptr::null_mut(); 4];
    params.iter_mut().zip(given).for_each(|(p, g)| *p = *g);
    let function = name.to_str().unwrap_or("script function");
    guard(function, -1, || {
        crate::test_panic::at_script_function(function);
        // SAFETY: the live message of this call (per the caller).
        let Some(sip) = (unsafe { SipMsg::new(msg) }) else { return -1 };
        f(&sip, &ScriptArgs { msg, params })
    })
}

/// One entry of the `cmds` table: `cmd!(c"name", function, param_no, Fixup, flags)`.
/// The trampoline takes as many parameters as the core passes for `param_no`
/// (two for 0–2; three and four are cast back by the core, see `CmdExport`).
#[macro_export]
macro_rules! cmd {
    (@make $name:expr, $f:path, $ctor:ident $(($n:literal))?, $fixup:expr, $flags:expr, $($p:ident),+) => {{
        #[allow(unsafe_code)]
        unsafe extern "C" fn trampoline(
            msg: *mut $crate::ffi::sip_msg,
            $($p: *mut ::std::ffi::c_char),+
        ) -> ::std::ffi::c_int {
            let (name, f): (&'static ::std::ffi::CStr, _) = ($name, $f);
            // SAFETY: the core calls with its message and the fixed-up
            // parameters this arity declares.
            unsafe { $crate::cmd_export::run_script_function(name, msg, &[$($p),+], f) }
        }
        $crate::cmd_export::CmdExport::$ctor($name, trampoline, $($n,)? $fixup, $flags)
    }};
    ($name:expr, $f:path, 0, $fixup:expr, $flags:expr) => { $crate::cmd!(@make $name, $f, up_to_two_params(0), $fixup, $flags, p1, p2) };
    ($name:expr, $f:path, 1, $fixup:expr, $flags:expr) => { $crate::cmd!(@make $name, $f, up_to_two_params(1), $fixup, $flags, p1, p2) };
    ($name:expr, $f:path, 2, $fixup:expr, $flags:expr) => { $crate::cmd!(@make $name, $f, up_to_two_params(2), $fixup, $flags, p1, p2) };
    ($name:expr, $f:path, 3, $fixup:expr, $flags:expr) => { $crate::cmd!(@make $name, $f, three_params, $fixup, $flags, p1, p2, p3) };
    ($name:expr, $f:path, 4, $fixup:expr, $flags:expr) => { $crate::cmd!(@make $name, $f, four_params, $fixup, $flags, p1, p2, p3, p4) };
}
