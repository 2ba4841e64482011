//! The module itself as the loader sees it, made by
//! [`kamailio_module!`](crate::kamailio_module): the version symbols the
//! loader checks, `mod_register`, the `exports` table (naming the `cmds`
//! and `params` tables of [`cmd_export`](crate::cmd_export) and
//! [`param_export`](crate::param_export)), and the lifecycle: the module's
//! register, init, child_init and destroy functions, each run inside the
//! panic guard with its error logged. Items marked `doc(hidden)` are
//! public only for the macro's expansion.

use std::ffi::{c_char, c_int, CStr};
use std::ptr::null_mut;

use crate::cell::CoreCell;
use crate::cmd_export::CmdExport;
use crate::ffi::cstr_ptr;
use crate::panic_guard::guard;
use crate::param_export::ParamExport;
use crate::process::Rank;
use crate::raw;

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
        crate::log::init(name);
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
/// [`CoreCell`] tables ending with their `END`; `register` runs at
/// mod_register (before any modparam), `init` at mod_init (once, before
/// fork), `child_init` in each process after fork with its
/// [`Rank`], `destroy` at shutdown. Errors are
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
        pub static module_version: $crate::module_export::ExportedPtr =
            $crate::module_export::ExportedPtr::new($crate::module_export::MODULE_VERSION);
        /// Must equal the core's SER_COMPILE_FLAGS (same defines, same layouts).
        #[allow(unsafe_code)]
        #[no_mangle]
        pub static module_flags: $crate::module_export::ExportedPtr =
            $crate::module_export::ExportedPtr::new($crate::module_export::MODULE_FLAGS);
        /// Part of the same MODULE_VERSION block C modules declare.
        #[allow(unsafe_code)]
        #[no_mangle]
        pub static module_interface_ver: u32 = $crate::module_export::MODULE_INTERFACE_VER;

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
            $crate::module_export::run_mod_register($name, $register)
        }

        extern "C" fn init_trampoline() -> ::std::ffi::c_int {
            $crate::module_export::run_init($init)
        }
        extern "C" fn child_init_trampoline(rank: ::std::ffi::c_int) -> ::std::ffi::c_int {
            $crate::module_export::run_child_init(rank, $child_init)
        }
        extern "C" fn destroy_trampoline() {
            $crate::module_export::run_destroy($destroy)
        }

        /// The table the core looks up with dlsym("exports").
        #[allow(unsafe_code)]
        #[no_mangle]
        pub static exports: $crate::module_export::ModuleExports = $crate::module_export::ModuleExports::new(
            $name,
            &$cmds,
            &$params,
            $crate::module_export::Lifecycle { init: init_trampoline, child_init: child_init_trampoline, destroy: destroy_trampoline },
        );
    };
}
