//! Module parameters: the entries of the module's `params` table, the
//! typed statics the core writes `modparam` values into ([`IntParam`],
//! [`StrParam`]), and string parameters handled by a function of the
//! module ([`param_fn!`](crate::param_fn), whose C trampoline runs it
//! inside the panic guard). Items marked `doc(hidden)` are public only for
//! the macro's expansion.

use std::ffi::{c_int, c_void, CStr};
use std::ptr::null_mut;

use crate::cell::CoreCell;
use crate::ffi::cstr_ptr;
use crate::kstr;
use crate::panic_guard::guard;
use crate::raw;

/// An integer module parameter (`modparam("<module>", "name", 3)`): a
/// `static` named in the `params` table through [`ParamExport::int`]. The
/// core writes it while parsing the config, before mod_init and fork.
pub struct IntParam(CoreCell<c_int>);

impl IntParam {
    /// A parameter worth `default` until the script sets it.
    pub const fn new(default: i32) -> IntParam {
        IntParam(CoreCell::new(default))
    }
    /// The value the script set (or the default); final from mod_init on.
    pub fn get(&self) -> i32 {
        *self.0.get()
    }
}

/// A string module parameter; None when the script does not set it. A
/// `static` named in the `params` table through [`ParamExport::str`].
pub struct StrParam(CoreCell<raw::str_>);

impl StrParam {
    /// A parameter not set yet (a default is the module's to apply).
    pub const fn new() -> StrParam {
        StrParam(CoreCell::new(raw::str_ { s: null_mut(), len: 0 }))
    }
    /// The value the script set last, None if it set none; final from mod_init on.
    pub fn get(&self) -> Option<String> {
        let s = self.0.get();
        // SAFETY: the core stores PARAM_STR values in memory it never frees.
        (!s.s.is_null()).then(|| unsafe { kstr::to_string(s) })
    }
}

impl Default for StrParam {
    fn default() -> Self {
        StrParam::new()
    }
}

const PARAM_USE_FUNC: u32 = 1 << 31;

/// One entry of the `params` table (`kamailio_module!`'s `params`), which
/// ends with [`ParamExport::END`].
#[repr(transparent)]
pub struct ParamExport(raw::param_export_t);

#[doc(hidden)]
pub type ParamFn = unsafe extern "C" fn(raw::modparam_t, *mut c_void) -> c_int;

impl ParamExport {
    /// The integer parameter `name`, stored in `slot`.
    pub const fn int(name: &'static CStr, slot: &'static IntParam) -> ParamExport {
        ParamExport(raw::param_export_t { name: cstr_ptr(name), type_: raw::PARAM_INT, param_pointer: slot.0.as_ptr() as *mut c_void })
    }
    /// The string parameter `name`, stored in `slot`.
    pub const fn str(name: &'static CStr, slot: &'static StrParam) -> ParamExport {
        ParamExport(raw::param_export_t { name: cstr_ptr(name), type_: raw::PARAM_STR, param_pointer: slot.0.as_ptr() as *mut c_void })
    }
    #[doc(hidden)]
    pub const fn str_function(name: &'static CStr, f: ParamFn) -> ParamExport {
        ParamExport(raw::param_export_t {
            name: cstr_ptr(name),
            type_: raw::PARAM_STR | PARAM_USE_FUNC,
            param_pointer: f as *const () as *mut c_void,
        })
    }
    /// The table's terminator.
    pub const END: ParamExport = ParamExport(raw::param_export_t { name: null_mut(), type_: 0, param_pointer: null_mut() });
}

/// The body of a string-function parameter's trampoline.
///
/// # Safety
/// `val` is what the core passes a PARAM_STR|PARAM_USE_FUNC function.
#[doc(hidden)]
pub unsafe fn run_param_function(name: &CStr, val: *mut c_void, f: fn(&str) -> Result<(), String>) -> c_int {
    let name = name.to_str().unwrap_or("?");
    guard("modparam", -1, || {
        if val.is_null() {
            log::error!("modparam(\"{}\", \"{name}\"): empty value", crate::log::module_name());
            return -1;
        }
        // SAFETY: for a PARAM_STR function parameter the core passes a str*
        // whose text it keeps for the life of the process.
        let value = unsafe { kstr::to_string(&*(val as *const raw::str_)) };
        match f(&value) {
            Ok(()) => 0,
            Err(e) => {
                log::error!("modparam(\"{}\", \"{name}\"): {e}", crate::log::module_name());
                -1
            }
        }
    })
}

/// A string parameter handled by a function, called for each
/// `modparam` line: `param_fn!(c"name", f)` with `f: fn(&str) -> Result<(), String>`.
#[macro_export]
macro_rules! param_fn {
    ($name:expr, $f:path) => {{
        #[allow(unsafe_code)]
        unsafe extern "C" fn trampoline(_type: ::std::ffi::c_uint, val: *mut ::std::ffi::c_void) -> ::std::ffi::c_int {
            let (name, f): (&'static ::std::ffi::CStr, _) = ($name, $f);
            // SAFETY: the core passes the parameter's str* (PARAM_STR).
            unsafe { $crate::param_export::run_param_function(name, val, f) }
        }
        $crate::param_export::ParamExport::str_function($name, trampoline)
    }};
}
