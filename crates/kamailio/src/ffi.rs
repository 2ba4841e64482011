//! The C side of the export tables, not for use by hand: the raw types the
//! macros' trampolines name in their signatures, and the C signatures of
//! script functions as the core stores them (a `cmds` entry's function,
//! and what the core's `find_export` returns for one, see [`api`](crate::api)).

use std::ffi::{c_char, c_int, CStr};

pub use crate::raw::{rpc_t, sip_msg, str_};

/// The C signatures of script functions by their parameter count: the
/// core's `cmd_function` takes the message and two parameters (unused
/// ones are null), and is cast to the three- or four-parameter form for
/// functions that declare as many.
pub type ScriptFn2Params = unsafe extern "C" fn(*mut sip_msg, *mut c_char, *mut c_char) -> c_int;
/// See [`ScriptFn2Params`].
pub type ScriptFn3Params = unsafe extern "C" fn(*mut sip_msg, *mut c_char, *mut c_char, *mut c_char) -> c_int;
/// See [`ScriptFn2Params`].
pub type ScriptFn4Params = unsafe extern "C" fn(*mut sip_msg, *mut c_char, *mut c_char, *mut c_char, *mut c_char) -> c_int;

/// A static C string as the `char *` name fields of the core's tables.
pub(crate) const fn cstr_ptr(s: &'static CStr) -> *mut c_char {
    s.as_ptr() as *mut c_char
}
