//! The module's logic over host types: plain safe Rust, no raw pointers
//! (the compiler holds it to that). Files depend on each other one way:
//! state ← admission ← cluster, peers, in_flight ← messaging ← workers, script, c_api,
//! rpc_commands ← lifecycle ← exports.
#![deny(unsafe_code)]

mod admission;
mod c_api;
mod cluster;
mod exports;
mod figures;
mod in_flight;
mod lifecycle;
mod messaging;
mod params;
mod peers;
mod rpc_commands;
mod script;
mod state;
mod statistics;
mod workers;
