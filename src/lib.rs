//! dmq_rs: Kamailio's DMQ module in Rust, over safe types only (the
//! compiler holds it to that: no `unsafe` here). Below it (ARCHITECTURE.md):
//! `kamailio` (safe Rust over Kamailio), `dmq_abi` (the stock dmq's C API
//! and dmq_core's values in shm) and the pure `dmq_core` (protocol, node
//! list, in-flight table, every decision that needs no Kamailio).
//!
//! Files import each other one way. ARCHITECTURE.md maps what each one
//! imports, and tests/architecture.rs checks that map against the code.
//! From the bottom: leaves (`shared`: what mod_init settled and every
//! part's shm; `params`, `peers`, `transports`, `stored`), each part's
//! state (`admission`, `event_counts`, `duplicates`, `heal`, `ordering`,
//! `freshness`, `origin`, `sync_status`, `item_locks`), the node list and what changes it
//! (`name_sources`, `peer_events`, `node_list`, `node_events`,
//! `node_admission`, `notifications`,
//! `pings`, `leaving`, `operator_changes`, `lookups`), sending (`requests`,
//! `direct_send`, `usrloc_batches`, `workers`, `heal_pushes`,
//! `messaging`), what C calls (`script`, `c_api`, `custom`,
//! `rpc_commands`, `statistics`), then `lifecycle` and `exports`, which
//! declares what Kamailio loads. Only those entry points look the shared
//! state up (`shared::shared`); they hand it down.
#![deny(unsafe_code)]

mod admission;
mod c_api;
mod custom;
mod direct_send;
mod duplicates;
mod event_counts;
mod exports;
mod freshness;
mod heal;
mod heal_pushes;
mod item_locks;
mod leaving;
mod lifecycle;
mod lookups;
mod messaging;
mod name_sources;
mod node_admission;
mod node_events;
mod node_list;
mod notifications;
mod operator_changes;
mod ordering;
mod origin;
mod params;
mod peer_events;
mod peers;
mod pings;
mod requests;
mod rpc_commands;
mod script;
mod shared;
mod statistics;
mod stored;
mod sync_status;
mod transports;
mod usrloc_batches;
mod workers;
