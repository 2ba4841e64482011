//! The pure crate of dmq_rs: everything that can be decided without Kamailio.
//! Unit tested with plain `cargo test`; the module crate feeds it data read
//! from Kamailio and acts on its answers.

#![forbid(unsafe_code)]

pub mod auth;
pub mod batching;
pub mod body_check;
pub mod config;
pub mod discovery;
pub mod duplicates;
pub mod freshness;
pub mod heal;
pub mod jobs;
pub mod network;
pub mod nodes;
pub mod ordering;
pub mod origin;
pub mod parameters;
pub mod peer_events;
pub mod pending;
pub mod probe;
pub mod protocol;
pub mod sources;
pub mod statistics;
pub mod sync_runs;
pub mod tm_context;
