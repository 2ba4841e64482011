//! What a Kamailio module exports, generated in one place: the version
//! symbols the loader checks, `mod_register`, the `exports` table, and the
//! C trampolines for script functions, KEMI functions, RPC commands and
//! function parameters. Every trampoline runs its Rust function inside the
//! panic guard, so no entry point can be left unguarded, and converts the
//! C arguments at the door: the module writes plain Rust functions.
//!
//! The macros (`kamailio_module!`, `cmd!`, `kemi!`, `rpc!`, `param_fn!`)
//! expand in the module's one exports file; the types they build are
//! opaque wrappers of the core's tables. Items marked `doc(hidden)` are
//! public only for those expansions: do not call them by hand.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr::null_mut;

use crate::cell::CoreCell;
use crate::kstr;
use crate::panic_guard::guard;
use crate::process::Rank;
use crate::raw;
use crate::rpc::RpcCall;
use crate::sip_msg::SipMsg;

/// The raw types the macros' trampolines name in their signatures; not for
/// use by hand.
#[doc(hidden)]
pub mod ffi {
    pub use crate::raw::{rpc_t, sip_msg, str_};
}

/// A pointer in a `#[no_mangle]` static the core reads with dlsym (made
/// by [`kamailio_module!`](crate::kamailio_module)).
#[repr(transparent)]
pub struct ExportedPtr(*const c_char);
// SAFETY: points to immutable, 'static bytes.
unsafe impl Sync for ExportedPtr {}

impl ExportedPtr {
    #[doc(hidden)]
    pub const fn new(bytes: &'static [u8]) -> ExportedPtr {
        ExportedPtr(bytes.as_ptr() as *const c_char)
    }
}

/// The core's SER_FULL_VERSION and SER_COMPILE_FLAGS (see build.rs).
#[doc(hidden)]
pub use crate::raw::core_version::{MODULE_FLAGS, MODULE_VERSION};
#[doc(hidden)]
pub const MODULE_INTERFACE_VER: u32 = raw::MODULE_INTERFACE_VER;

/// The core's version line without its NUL ("kamailio 5.6.3 (x86_64/linux)").
pub fn core_version() -> String {
    String::from_utf8_lossy(&MODULE_VERSION[..MODULE_VERSION.len() - 1]).into_owned()
}

const fn cstr_ptr(s: &'static CStr) -> *mut c_char {
    s.as_ptr() as *mut c_char
}

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

/// The C signatures of script functions by their parameter count: the
/// core's `cmd_function` takes the message and two parameters (unused
/// ones are null), and is cast to the three- or four-parameter form for
/// functions that declare as many.
#[doc(hidden)]
pub type ScriptFn2Params = unsafe extern "C" fn(*mut raw::sip_msg, *mut c_char, *mut c_char) -> c_int;
#[doc(hidden)]
pub type ScriptFn3Params = unsafe extern "C" fn(*mut raw::sip_msg, *mut c_char, *mut c_char, *mut c_char) -> c_int;
#[doc(hidden)]
pub type ScriptFn4Params = unsafe extern "C" fn(*mut raw::sip_msg, *mut c_char, *mut c_char, *mut c_char, *mut c_char) -> c_int;

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
            msg: *mut $crate::export::ffi::sip_msg,
            $($p: *mut ::std::ffi::c_char),+
        ) -> ::std::ffi::c_int {
            let (name, f): (&'static ::std::ffi::CStr, _) = ($name, $f);
            // SAFETY: the core calls with its message and the fixed-up
            // parameters this arity declares.
            unsafe { $crate::export::run_script_function(name, msg, &[$($p),+], f) }
        }
        $crate::export::CmdExport::$ctor($name, trampoline, $($n,)? $fixup, $flags)
    }};
    ($name:expr, $f:path, 0, $fixup:expr, $flags:expr) => { $crate::cmd!(@make $name, $f, up_to_two_params(0), $fixup, $flags, p1, p2) };
    ($name:expr, $f:path, 1, $fixup:expr, $flags:expr) => { $crate::cmd!(@make $name, $f, up_to_two_params(1), $fixup, $flags, p1, p2) };
    ($name:expr, $f:path, 2, $fixup:expr, $flags:expr) => { $crate::cmd!(@make $name, $f, up_to_two_params(2), $fixup, $flags, p1, p2) };
    ($name:expr, $f:path, 3, $fixup:expr, $flags:expr) => { $crate::cmd!(@make $name, $f, three_params, $fixup, $flags, p1, p2, p3) };
    ($name:expr, $f:path, 4, $fixup:expr, $flags:expr) => { $crate::cmd!(@make $name, $f, four_params, $fixup, $flags, p1, p2, p3, p4) };
}

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
            unsafe { $crate::export::run_param_function(name, val, f) }
        }
        $crate::export::ParamExport::str_function($name, trampoline)
    }};
}

/// RPC doc strings: the core reads them through `doc_str`.
#[doc(hidden)]
pub struct RpcDoc([*const c_char; 2]);
// SAFETY: pointers to 'static immutable C strings.
unsafe impl Sync for RpcDoc {}

impl RpcDoc {
    pub const fn new(doc: &'static CStr) -> RpcDoc {
        RpcDoc([doc.as_ptr(), std::ptr::null()])
    }
}

/// Whether an RPC command replies with a list of entries (rpc.h's RET_ARRAY).
#[derive(Clone, Copy)]
pub enum RpcReply {
    /// One reply (a structure, or a line of text).
    Single,
    /// Any number of entries (each [`add_struct`](crate::rpc::RpcCall::add_struct) adds one).
    Array,
}

/// One entry of the RPC table (built by [`rpc!`](macro@crate::rpc)), which ends
/// with [`RpcExport::END`] and is registered with [`register_rpcs`].
#[repr(transparent)]
pub struct RpcExport(raw::rpc_export_t);

#[doc(hidden)]
pub type RpcFn = unsafe extern "C" fn(*mut raw::rpc_t, *mut c_void);

impl RpcExport {
    #[doc(hidden)]
    pub const fn new(name: &'static CStr, f: RpcFn, doc: &'static RpcDoc, reply: RpcReply) -> RpcExport {
        RpcExport(raw::rpc_export_t {
            name: name.as_ptr(),
            function: Some(f),
            doc_str: doc.0.as_ptr() as *mut *const c_char,
            flags: match reply {
                RpcReply::Single => 0,
                RpcReply::Array => 1,
            },
        })
    }
    /// The table's terminator.
    pub const END: RpcExport = RpcExport(raw::rpc_export_t { name: std::ptr::null(), function: None, doc_str: null_mut(), flags: 0 });
}

/// The body of every RPC trampoline.
///
/// # Safety
/// `rpc` and `ctx` are what the core passed to the RPC handler.
#[doc(hidden)]
pub unsafe fn run_rpc(name: &CStr, rpc: *mut raw::rpc_t, ctx: *mut c_void, f: fn(&RpcCall)) {
    // SAFETY: per the caller, used only during this call.
    let call = unsafe { RpcCall::new(rpc, ctx) };
    guard(name.to_str().unwrap_or("rpc"), (), || f(&call));
}

/// One RPC command: `rpc!(c"<module>.name", f, c"doc", RpcReply::Array)` with `f: fn(&RpcCall)`.
#[macro_export]
macro_rules! rpc {
    ($name:expr, $f:path, $doc:expr, $reply:expr) => {{
        static DOC: $crate::export::RpcDoc = $crate::export::RpcDoc::new($doc);
        #[allow(unsafe_code)]
        unsafe extern "C" fn trampoline(rpc: *mut $crate::export::ffi::rpc_t, ctx: *mut ::std::ffi::c_void) {
            let (name, f): (&'static ::std::ffi::CStr, _) = ($name, $f);
            // SAFETY: the core passes its rpc API and reply context.
            unsafe { $crate::export::run_rpc(name, rpc, ctx, f) }
        }
        $crate::export::RpcExport::new($name, trampoline, &DOC, $reply)
    }};
}

/// Registers an RPC table ending with [`RpcExport::END`] (in mod_init, as
/// C modules do; the `exports` table carries none).
pub fn register_rpcs<const N: usize>(table: &'static CoreCell<[RpcExport; N]>) -> Result<(), String> {
    // SAFETY: a static table ending with RpcExport::END; the core keeps the
    // pointer for the life of the process.
    if unsafe { raw::rpc_register_array(table.as_ptr() as *mut raw::rpc_export_t) } != 0 {
        return Err("failed to register the RPC commands".into());
    }
    Ok(())
}

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
    (@c str) => { *mut $crate::export::ffi::str_ };
    (@rust int, $a:ident) => { $a };
    (@rust str, $a:ident) => { $crate::export::kemi_str($a) };
    (@kind int) => { $crate::export::kemi_type::INT };
    (@kind str) => { $crate::export::kemi_type::STR };
    ($module:expr, $name:expr, $f:path, ($($arg:ident : $ty:ident),* $(,)?)) => {{
        #[allow(unsafe_code)]
        unsafe extern "C" fn trampoline(
            msg: *mut $crate::export::ffi::sip_msg
            $(, $arg: $crate::kemi!(@c $ty))*
        ) -> ::std::ffi::c_int {
            let (name, f): (&'static ::std::ffi::CStr, _) = ($name, $f);
            // SAFETY: the interpreter passes its message and the declared
            // arguments (strs valid for the call).
            unsafe {
                $(let $arg = $crate::kemi!(@rust $ty, $arg);)*
                $crate::export::run_kemi(name, msg, |m| f(m $(, $arg)*))
            }
        }
        $crate::export::KemiExport::new(
            $module,
            $name,
            trampoline as *mut ::std::ffi::c_void,
            $crate::export::kemi_types(&[$($crate::kemi!(@kind $ty)),*]),
        )
    }};
}

/// Registers the KEMI functions (from mod_register, before any modparam,
/// as C modules do).
pub fn register_kemi<const N: usize>(table: &'static CoreCell<[KemiExport; N]>) -> Result<(), String> {
    // SAFETY: a static table ending with KemiExport::END that never changes;
    // the core keeps the pointer.
    if unsafe { raw::sr_kemi_modules_add(table.as_ptr() as *mut raw::sr_kemi_t) } < 0 {
        return Err("cannot register the KEMI functions".into());
    }
    Ok(())
}

/// The `exports` table (built by [`kamailio_module!`](crate::kamailio_module)).
#[repr(transparent)]
pub struct ModuleExports(CoreCell<raw::module_exports>);

#[doc(hidden)]
pub struct Lifecycle {
    pub init: unsafe extern "C" fn() -> c_int,
    pub child_init: unsafe extern "C" fn(c_int) -> c_int,
    pub destroy: unsafe extern "C" fn(),
}

impl ModuleExports {
    #[doc(hidden)]
    pub const fn new<const C: usize, const P: usize>(
        name: &'static CStr,
        cmds: &'static CoreCell<[CmdExport; C]>,
        params: &'static CoreCell<[ParamExport; P]>,
        lifecycle: Lifecycle,
    ) -> ModuleExports {
        ModuleExports(CoreCell::new(raw::module_exports {
            name: cstr_ptr(name),
            dlflags: 0, // DEFAULT_DLFLAGS: the core's usual RTLD_NOW
            cmds: cmds.as_ptr() as *mut raw::cmd_export_t,
            params: params.as_ptr() as *mut raw::param_export_t,
            rpc_methods: null_mut(), // registered in mod_init (register_rpcs)
            pv_items: null_mut(),
            // Replies are taken before the reply route (crate::replies).
            response_f: None,
            init_mod_f: Some(lifecycle.init),
            init_child_f: Some(lifecycle.child_init),
            destroy_mod_f: Some(lifecycle.destroy),
        }))
    }
}

#[doc(hidden)]
pub fn run_mod_register(name: &'static CStr, register: fn() -> Result<(), String>) -> c_int {
    guard("mod_register", -1, || {
        crate::log::init(name.to_str().unwrap_or("kamailio_rs"));
        crate::panic_guard::install_hook();
        match register() {
            Ok(()) => 0,
            Err(e) => {
                log::error!("{e}");
                -1
            }
        }
    })
}

#[doc(hidden)]
pub fn run_init(init: fn() -> Result<(), String>) -> c_int {
    guard("mod_init", -1, || match crate::shm::recycled::init().and_then(|()| init()) {
        Ok(()) => 0,
        Err(e) => {
            log::error!("{e}");
            -1
        }
    })
}

#[doc(hidden)]
pub fn run_child_init(rank: c_int, child_init: fn(Rank) -> Result<(), String>) -> c_int {
    guard("child_init", -1, || match child_init(Rank::from_core(rank)) {
        Ok(()) => 0,
        Err(e) => {
            log::error!("{e}");
            -1
        }
    })
}

#[doc(hidden)]
pub fn run_destroy(destroy: fn()) {
    guard("destroy", (), destroy)
}

/// The module's symbols: `module_version`, `module_flags`,
/// `module_interface_ver`, `mod_register` and `exports`. Invoke it once, in
/// the module's crate: `name` is the module's name as the script writes it
/// (`modparam("name", …)`, log lines); `cmds` and `params` are static
/// [`CoreCell`](crate::cell::CoreCell) tables ending with their `END`; `register` runs at
/// mod_register (before any modparam), `init` at mod_init (once, before
/// fork), `child_init` in each process after fork with its
/// [`Rank`](crate::process::Rank), `destroy` at shutdown. Errors are
/// logged and make the core refuse to start. See the crate's documentation
/// for an example.
#[macro_export]
macro_rules! kamailio_module {
    (
        name: $name:expr,
        cmds: $cmds:path,
        params: $params:path,
        register: $register:path,
        init: $init:path,
        child_init: $child_init:path,
        destroy: $destroy:path $(,)?
    ) => {
        /// Must equal the core's SER_FULL_VERSION, or the loader refuses the module.
        #[allow(unsafe_code)]
        #[no_mangle]
        pub static module_version: $crate::export::ExportedPtr = $crate::export::ExportedPtr::new($crate::export::MODULE_VERSION);
        /// Must equal the core's SER_COMPILE_FLAGS (same defines, same layouts).
        #[allow(unsafe_code)]
        #[no_mangle]
        pub static module_flags: $crate::export::ExportedPtr = $crate::export::ExportedPtr::new($crate::export::MODULE_FLAGS);
        /// Part of the same MODULE_VERSION block C modules declare.
        #[allow(unsafe_code)]
        #[no_mangle]
        pub static module_interface_ver: u32 = $crate::export::MODULE_INTERFACE_VER;

        /// Called by the loader right after dlopen, before any modparam: the
        /// earliest point to route logs and panics into Kamailio's logger.
        #[allow(unsafe_code)]
        #[no_mangle]
        pub extern "C" fn mod_register(
            _path: *mut ::std::ffi::c_char,
            _dlflags: *mut ::std::ffi::c_int,
            _p1: *mut ::std::ffi::c_void,
            _p2: *mut ::std::ffi::c_void,
        ) -> ::std::ffi::c_int {
            $crate::export::run_mod_register($name, $register)
        }

        extern "C" fn init_trampoline() -> ::std::ffi::c_int {
            $crate::export::run_init($init)
        }
        extern "C" fn child_init_trampoline(rank: ::std::ffi::c_int) -> ::std::ffi::c_int {
            $crate::export::run_child_init(rank, $child_init)
        }
        extern "C" fn destroy_trampoline() {
            $crate::export::run_destroy($destroy)
        }

        /// The table the core looks up with dlsym("exports").
        #[allow(unsafe_code)]
        #[no_mangle]
        pub static exports: $crate::export::ModuleExports = $crate::export::ModuleExports::new(
            $name,
            &$cmds,
            &$params,
            $crate::export::Lifecycle { init: init_trampoline, child_init: child_init_trampoline, destroy: destroy_trampoline },
        );
    };
}
