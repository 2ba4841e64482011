//! What differs between the Kamailio releases this crate builds for, beyond
//! the bindings (which follow each release's headers): decided here from
//! build.rs's `cfg(kamailio_6_1)`, handed to the module as plain values, so
//! the module (`src/`) never names a release.

use dmq_core::node_status::StatusWords;

/// The node-status words of the Kamailio this build loads into (what
/// `dmq.list_nodes` shows).
#[cfg(kamailio_6_1)]
pub const STATUS_WORDS: StatusWords = StatusWords::NotActive;
/// The node-status words of the Kamailio this build loads into (what
/// `dmq.list_nodes` shows).
#[cfg(not(kamailio_6_1))]
pub const STATUS_WORDS: StatusWords = StatusWords::Classic;
