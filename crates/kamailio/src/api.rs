//! The tm and sl module APIs, bound the way C modules bind them: through the
//! core's `find_export` (their symbols are not visible to other modules).

use std::ffi::CStr;

use crate::raw;

/// What went wrong binding another module's API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindError {
    /// The module exporting it is not loaded (or loaded after us).
    NotLoaded(&'static str),
    /// It is loaded but refused to fill the API structure.
    Refused(&'static str),
}

fn find_export(name: &CStr, param_no: i32) -> Option<unsafe extern "C" fn()> {
    // SAFETY: the name is NUL-terminated and only read; find_export searches
    // the modules loaded so far and returns a function pointer or NULL.
    let f = unsafe { raw::find_export(name.as_ptr() as *mut _, param_no, 0) }?;
    // SAFETY: only used to carry the pointer; callers cast it back to the
    // signature the exporting module documents before calling it.
    Some(unsafe { std::mem::transmute::<crate::ffi::ScriptFn2Params, unsafe extern "C" fn()>(f) })
}

/// tm's API: function pointers into the tm module, filled once in mod_init.
pub struct Tm(pub(crate) raw::tm_binds);

/// sl's API, likewise.
pub struct Sl(pub(crate) raw::sl_api_t);

// SAFETY: function pointers into modules loaded before fork, written once in
// mod_init and then only read (one thread per process).
unsafe impl Send for Tm {}
// SAFETY: as above.
unsafe impl Sync for Tm {}
// SAFETY: as above.
unsafe impl Send for Sl {}
// SAFETY: as above.
unsafe impl Sync for Sl {}

/// Binds tm's API (`load_tm`, exported with param_no NO_SCRIPT): in
/// mod_init, with tm loaded before this module (`loadmodule` order).
pub fn bind_tm() -> Result<Tm, BindError> {
    let f = find_export(c"load_tm", -1).ok_or(BindError::NotLoaded("tm"))?;
    // SAFETY: tm exports `load_tm` as `int load_tm(struct tm_binds*)`.
    let load_tm: unsafe extern "C" fn(*mut raw::tm_binds) -> i32 = unsafe { std::mem::transmute(f) };
    let mut binds = raw::tm_binds::default();
    // SAFETY: binds is a properly laid out tm_binds (same headers and defines
    // as the tm module), which load_tm fills in.
    if unsafe { load_tm(&mut binds) } < 0 {
        return Err(BindError::Refused("tm"));
    }
    Ok(Tm(binds))
}

/// Binds sl's API (`bind_sl`): in mod_init, with sl loaded before this
/// module.
pub fn bind_sl() -> Result<Sl, BindError> {
    let f = find_export(c"bind_sl", 0).ok_or(BindError::NotLoaded("sl"))?;
    // SAFETY: sl exports `bind_sl` as `int bind_sl(sl_api_t*)`.
    let bind_sl: unsafe extern "C" fn(*mut raw::sl_api_t) -> i32 = unsafe { std::mem::transmute(f) };
    let mut api = raw::sl_api_t::default();
    // SAFETY: api is a properly laid out sl_api_t which bind_sl fills in.
    if unsafe { bind_sl(&mut api) } < 0 {
        return Err(BindError::Refused("sl"));
    }
    Ok(Sl(api))
}
