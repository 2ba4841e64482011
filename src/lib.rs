//! dmq_rs: Kamailio's DMQ module in Rust.
//!
//! Rings (see ARCHITECTURE.md): `host` (safe Rust over Kamailio, with the
//! raw bindings private inside it), the pure `dmq_core` crate (protocol and
//! state, no Kamailio), and `module` (the module's logic over host types,
//! without `unsafe`), which the exports Kamailio loads are generated from.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod host;
mod module;
