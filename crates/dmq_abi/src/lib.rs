//! DMQ's binary interfaces, the one place where DMQ meets C memory:
//! - [`api`]: the stock dmq module's `bind_dmq` API, which htable,
//!   dmq_usrloc, dialog and presence call (`dmq_api_t`, `dmq_peer_t`,
//!   `dmq_node_t` of the release built for), converted at the door into
//!   plain Rust values and calls of a [`api::DmqApi`] implementation;
//! - [`release`]: what else differs between the releases' dmq modules;
//! - [`in_shm`]: which `dmq_core` values may live in shared memory.
//!
//! Every `unsafe` here carries a `// SAFETY:` note; the dmq_rs crate above
//! holds none.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

/// The raw items: Kamailio's (kamailio-sys) and the stock dmq module's
/// ABI bound by build.rs over them.
#[allow(non_camel_case_types, non_upper_case_globals, dead_code, clippy::all, clippy::undocumented_unsafe_blocks)]
mod raw {
    pub use kamailio_sys::*;
    include!(concat!(env!("OUT_DIR"), "/dmq_bindings.rs"));
}

pub mod api;
pub mod in_shm;
pub mod release;
