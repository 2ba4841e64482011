//! KEMI functions (`KSR.<module>.<name>` for app_lua, app_python3 and the
//! other interpreters): the entries of the module's KEMI table (built by
//! [`kemi!`](crate::kemi), whose C trampoline converts the interpreter's
//! arguments and runs the module's function inside the panic guard) and
//! their registration with the core ([`register_kemi`], in mod_register).
//! Items marked `doc(hidden)` are public only for the macro's expansion.

use std::ffi::{c_int, c_void, CStr};
use std::fmt;
use std::ptr::null_mut;

use crate::cell::CoreCell;
use crate::kstr;
use crate::panic_guard::guard;
use crate::raw;
use crate::sip_msg::SipMsg;

/// One KEMI function (built by [`kemi!`](crate::kemi)), in a table that
/// ends with [`KemiExport::END`] and is registered with [`register_kemi`].
#[repr(transparent)]
pub struct KemiExport(raw::sr_kemi_t);

/// KEMI parameter types, from the headers of the release being built.
#[doc(hidden)]
pub mod kemi_type {
    use crate::raw;
    pub const NONE: i32 = raw::SR_KEMIP_NONE as i32;
    pub const INT: i32 = raw::SR_KEMIP_INT as i32;
    pub const STR: i32 = raw::SR_KEMIP_STR as i32;
}

/// A `str` over a NUL-terminated literal, the NUL not counted: KEMI
/// interpreters also read these names as C strings (app_lua's snprintf).
const fn literal_str(s: &'static CStr) -> raw::str_ {
    raw::str_ { s: s.as_ptr() as *mut _, len: s.count_bytes() as c_int }
}

impl KemiExport {
    #[doc(hidden)]
    pub const fn new(module: &'static CStr, name: &'static CStr, func: *mut c_void, params: [i32; 6]) -> KemiExport {
        KemiExport(raw::sr_kemi_t { mname: literal_str(module), fname: literal_str(name), rtype: kemi_type::INT, func, ptypes: params })
    }
    /// The table's terminator.
    pub const END: KemiExport = KemiExport(raw::sr_kemi_t {
        mname: raw::str_ { s: null_mut(), len: 0 },
        fname: raw::str_ { s: null_mut(), len: 0 },
        rtype: 0,
        func: null_mut(),
        ptypes: [0; 6],
    });
}

/// The body of a KEMI trampoline.
///
/// # Safety
/// `msg` is the message the interpreter passed.
#[doc(hidden)]
pub unsafe fn run_kemi(name: &CStr, msg: *mut raw::sip_msg, f: impl FnOnce(&SipMsg) -> i32) -> c_int {
    guard(name.to_str().unwrap_or("KEMI"), -1, || {
        // SAFETY: the live message of this call (per the caller).
        let Some(sip) = (unsafe { SipMsg::new(msg) }) else { return -1 };
        f(&sip)
    })
}

/// The bytes of a KEMI string argument.
///
/// # Safety
/// `s` is NULL or a str the interpreter passed, valid for the call.
#[doc(hidden)]
pub unsafe fn kemi_str<'a>(s: *mut raw::str_) -> &'a [u8] {
    // SAFETY: per the caller.
    unsafe { kstr::bytes_at(s) }
}

/// The `ptypes` of a KEMI function with `params` (at most six), the rest NONE.
#[doc(hidden)]
pub const fn kemi_types(params: &[i32]) -> [i32; 6] {
    let mut out = [kemi_type::NONE; 6];
    let mut i = 0;
    while i < params.len() && i < 6 {
        out[i] = params[i];
        i += 1;
    }
    out
}

/// One KEMI function, `KSR.<module>.<name>`:
/// `kemi!(c"module", c"name", f, (a: int, b: str, ...))`, with `f` taking
/// `&SipMsg` and then an `i32` for each `int` and a `&[u8]` for each `str`.
#[macro_export]
macro_rules! kemi {
    (@c int) => { ::std::ffi::c_int };
    (@c str) => { *mut $crate::ffi::str_ };
    (@rust int, $a:ident) => { $a };
    (@rust str, $a:ident) => { $crate::kemi_export::kemi_str($a) };
    (@kind int) => { $crate::kemi_export::kemi_type::INT };
    (@kind str) => { $crate::kemi_export::kemi_type::STR };
    ($module:expr, $name:expr, $f:path, ($($arg:ident : $ty:ident),* $(,)?)) => {{
        #[allow(unsafe_code)]
        unsafe extern "C" fn trampoline(
            msg: *mut $crate::ffi::sip_msg
            $(, $arg: $crate::kemi!(@c $ty))*
        ) -> ::std::ffi::c_int {
            let (name, f): (&'static ::std::ffi::CStr, _) = ($name, $f);
            // SAFETY: the interpreter passes its message and the declared
            // arguments (strs valid for the call).
            unsafe {
                $(let $arg = $crate::kemi!(@rust $ty, $arg);)*
                $crate::kemi_export::run_kemi(name, msg, |m| f(m $(, $arg)*))
            }
        }
        $crate::kemi_export::KemiExport::new(
            $module,
            $name,
            trampoline as *mut ::std::ffi::c_void,
            $crate::kemi_export::kemi_types(&[$($crate::kemi!(@kind $ty)),*]),
        )
    }};
}

/// The core refused the KEMI table (a module registered twice, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KemiRegisterError;

impl fmt::Display for KemiRegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cannot register the KEMI functions")
    }
}

impl std::error::Error for KemiRegisterError {}

/// Registers the KEMI functions (from mod_register, before any modparam,
/// as C modules do).
pub fn register_kemi<const N: usize>(table: &'static CoreCell<[KemiExport; N]>) -> Result<(), KemiRegisterError> {
    // SAFETY: a static table ending with KemiExport::END that never changes;
    // the core keeps the pointer.
    if unsafe { raw::sr_kemi_modules_add(table.as_ptr() as *mut raw::sr_kemi_t) } < 0 {
        return Err(KemiRegisterError);
    }
    Ok(())
}
