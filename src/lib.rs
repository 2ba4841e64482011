//! dmq_rs: Kamailio's DMQ module in Rust.
//!
//! Three rings: `raw` (bindgen output and the C shim), `host` (safe Rust over
//! Kamailio), and the pure `dmq_core` crate (protocol and state, no Kamailio).
//! `module` ties them together into the exports Kamailio loads.

pub mod raw;
pub mod host;
mod module;
