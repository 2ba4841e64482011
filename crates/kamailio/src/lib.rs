//! Safe Rust for Kamailio modules, over the raw `kamailio-sys` bindings:
//! every FFI call and every shm layout is here, each `unsafe` next to the
//! reason it holds. Nothing in it knows which module uses it; the module's
//! name comes in through [`kamailio_module!`] and its logger.
//!
//! One concern per submodule: [`export`] (the tables the loader reads and
//! the guarded C trampolines), [`shm`] and [`shm_queue`] (typed shared
//! memory, locks), [`process`] (forked workers, timers), [`sip_msg`],
//! [`sip_uri`], [`socket`], [`send`] (SIP without tm), [`api`]/[`tm`]/
//! [`replies`] (tm and sl), [`rpc`], [`stats`], [`events`] (script event
//! routes), [`dns`], [`log`], [`panic_guard`].
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

use kamailio_sys as raw;

pub mod addr;
pub mod api;
pub mod cell;
pub mod clock;
pub mod dns;
pub mod events;
pub mod export;
pub mod kstr;
mod lock;
pub mod log;
pub mod panic_guard;
pub mod process;
pub mod replies;
pub mod rpc;
pub mod send;
pub mod shm;
pub mod shm_queue;
pub mod sip_msg;
pub mod sip_uri;
pub mod socket;
pub mod stats;
pub mod tm;
