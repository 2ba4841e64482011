//! Safe Rust for Kamailio modules, over the raw `kamailio-sys` bindings:
//! every FFI call and every shm layout is here, each `unsafe` next to the
//! reason it holds. Nothing in it knows which module uses it; the module's
//! name comes in through [`kamailio_module!`] and its logger.
//!
//! One concern per submodule: the tables the loader reads, each entry with
//! its guarded C trampoline, in [`module_export`] (the module's symbols and
//! lifecycle, [`kamailio_module!`]), [`cmd_export`] (script functions),
//! [`param_export`] (parameters), [`rpc_export`] (RPC commands) and
//! [`kemi_export`] (KEMI functions); [`shm`] and [`shm_queue`] (typed shared
//! memory, locks), [`process`] (forked workers, timers), [`sip_msg`],
//! [`sip_uri`], [`socket`], [`send`] (SIP without tm), [`api`]/[`tm`]/
//! [`replies`] (tm and sl), [`rpc`](mod@rpc), [`stats`], [`events`] (script event
//! routes), [`dns`], [`log`], [`panic_guard`] (and [`test_panic`], which
//! injects a panic for tests).
//!
//! The rules every module keeps: Kamailio runs one thread per process and
//! forks its processes from the main one, so whatever is shared is made in
//! shm before fork (mod_init) and reached through this crate's shm types;
//! statics written after startup are per process; every entry point the
//! core calls is guarded by the macros (a panic becomes an error code), a
//! process the module forks ends on a panic, and a panic inside a shm
//! critical section aborts the process ([`panic_guard`]);
//! never hold a [`ShmMutex`](shm::ShmMutex) guard across a send, an event
//! route or a call into another module.
//!
//! # A minimal module
//!
//! One file, `src/lib.rs` of a `cdylib` crate named after the module (the
//! core loads `hello.so` with `loadmodule "hello.so"`), with one script
//! function `hello_say([n])`, one parameter `modparam("hello", "times", 2)`
//! and one RPC command `kamcmd hello.ping`:
//!
//! ```ignore
//! use kamailio::cell::CoreCell;
//! use kamailio::cmd_export::{route, CmdExport, Fixup, ScriptArgs};
//! use kamailio::param_export::{IntParam, ParamExport};
//! use kamailio::process::Rank;
//! use kamailio::rpc::{RpcCall, Value};
//! use kamailio::rpc_export::{self, RpcExport, RpcReply};
//! use kamailio::sip_msg::SipMsg;
//! use kamailio::{cmd, kamailio_module, rpc};
//!
//! kamailio_module! {
//!     name: c"hello",
//!     cmds: CMDS,
//!     params: PARAMS,
//!     register: register,
//!     init: init,
//!     child_init: child_init,
//!     destroy: destroy,
//! }
//!
//! /// `modparam("hello", "times", n)`: written by the core before mod_init.
//! static TIMES: IntParam = IntParam::new(1);
//!
//! static PARAMS: CoreCell<[ParamExport; 2]> = CoreCell::new([
//!     ParamExport::int(c"times", &TIMES),
//!     ParamExport::END,
//! ]);
//!
//! static CMDS: CoreCell<[CmdExport; 3]> = CoreCell::new([
//!     cmd!(c"hello_say", say, 0, Fixup::None, route::ANY),
//!     cmd!(c"hello_say", say, 1, Fixup::Int, route::ANY),
//!     CmdExport::END,
//! ]);
//!
//! static RPCS: CoreCell<[RpcExport; 2]> = CoreCell::new([
//!     rpc!(c"hello.ping", ping, c"Answers pong", RpcReply::Single),
//!     RpcExport::END,
//! ]);
//!
//! /// `hello_say([n])`: logs the R-URI user n times (default: the parameter).
//! fn say(msg: &SipMsg, args: &ScriptArgs) -> i32 {
//!     let n = args.int(0).unwrap_or_else(|| TIMES.get());
//!     let user = msg.ruri_user().unwrap_or_default();
//!     for _ in 0..n {
//!         log::info!("hello, {user}");
//!     }
//!     1 // > 0: true for the script
//! }
//!
//! fn ping(call: &RpcCall) {
//!     call.add_struct(&[("reply", Value::Str("pong"))]);
//! }
//!
//! /// mod_register: right after dlopen, before any modparam (KEMI goes here).
//! fn register() -> Result<(), String> {
//!     Ok(())
//! }
//!
//! /// mod_init: once, in the main process, before fork (shm, locks, RPCs).
//! fn init() -> Result<(), String> {
//!     rpc_export::register_rpcs(&RPCS).map_err(|e| e.to_string())
//! }
//!
//! /// child_init: in every process after fork (fork own processes at `rank.is_main()`).
//! fn child_init(_rank: Rank) -> Result<(), String> {
//!     Ok(())
//! }
//!
//! /// destroy: at shutdown, in the main process.
//! fn destroy() {}
//! ```
//!
//! The module's `Cargo.toml` has `crate-type = ["cdylib"]` and depends on
//! `kamailio` and `log`. Nothing else names the module: the name given to
//! `kamailio_module!` is the one the core knows it by, and the C shim's
//! log lines and shm allocations are accounted to it from registration.
//! `kamailio-sys`'s build script finds the core's headers and defines
//! (see its `build.rs` for `KAMAILIO_RELEASE` and the other inputs); a
//! module that binds another module's API takes them from
//! `DEP_KAMAILIO_CLANG_ARGS` in its own build script (as `dmq_abi` does).
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(not(test))]
use kamailio_sys as raw;

/// Unit tests: the raw API with the shm and lock functions of
/// [`test_shm`] in place of the C shim's (names given here shadow the glob).
#[cfg(test)]
mod raw {
    pub use crate::test_shm::{
        krs_lock_alloc_init, krs_lock_get, krs_lock_release, krs_lock_try, krs_shm_free, krs_shm_malloc, krs_shm_mallocxz,
    };
    pub use kamailio_sys::*;
}
#[cfg(test)]
mod test_shm;

mod addr;
pub mod api;
pub mod cell;
pub mod clock;
pub mod cmd_export;
pub mod dns;
pub mod events;
#[doc(hidden)]
pub mod ffi;
pub mod kemi_export;
pub mod kstr;
mod lock;
pub mod log;
pub mod module_export;
pub mod panic_guard;
pub mod param_export;
pub mod process;
pub mod replies;
pub mod rpc;
pub mod rpc_export;
pub mod send;
pub mod shm;
pub mod shm_queue;
pub mod sip_msg;
pub mod sip_uri;
pub mod socket;
pub mod stats;
pub mod test_panic;
pub mod tm;
