//! The module's logic over host types: plain safe Rust, no raw pointers
//! (the compiler holds it to that). Files depend on each other one way
//! (the full order is in ARCHITECTURE.md): state ← admission, peers ← heal
//! ← cluster ← direct_send ← usrloc_batches, workers ← resync ← messaging
//! ← script, c_api,
//! rpc_commands ← lifecycle ← exports.
#![deny(unsafe_code)]

mod admission;
mod c_api;
mod cluster;
mod custom;
mod direct_send;
mod exports;
mod figures;
mod heal;
mod lifecycle;
mod lookups;
mod messaging;
mod name_sources;
mod params;
mod peer_events;
mod peers;
mod resync;
mod rpc_commands;
mod script;
mod state;
mod statistics;
mod usrloc_batches;
mod workers;
