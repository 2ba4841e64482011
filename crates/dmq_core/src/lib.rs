//! The pure crate of dmq_rs: everything that can be decided without Kamailio.
//! Unit tested with plain `cargo test`; the module crate feeds it data read
//! from Kamailio and acts on its answers.

#![forbid(unsafe_code)]

pub mod admission_order;
pub mod auth;
pub mod batching;
pub mod body_check;
pub mod config;
pub mod discovery;
pub mod duplicates;
pub mod fnv;
pub mod freshness;
pub mod header_scan;
pub mod heal;
pub mod item_buckets;
pub mod jobs;
pub mod kdmq;
pub mod leave_notice;
pub mod network;
pub mod node_status;
pub mod node_uri;
pub mod nodes;
pub mod notification;
pub mod notification_addresses;
pub mod ordering;
pub mod origin;
pub mod parameters;
pub mod peer_events;
pub mod peer_message;
pub mod pending;
pub mod probe;
pub mod reply_codes;
pub mod sources;
pub mod statistics;
pub mod sync_headers;
pub mod sync_runs;
pub mod text_state;
pub mod tm_context;
pub mod unlisted_node;
