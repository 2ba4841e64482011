//! Integration-test harness: real Kamailio processes loading build/dmq_rs.so.
//!
//! Every node gets its own loopback address, UDP port, ctl socket, pid file
//! and runtime dir under target/itest/. Each node runs in its own process
//! group, and only those groups are ever signalled. Every wait is bounded.
//!
//! The harness by concern; everything but the last six is re-exported
//! here, so tests write `common::Node`, `common::start_cluster` and so on:
//! - `release`: which Kamailio a node runs (5.6, 6.0, 6.1) and its modules;
//! - `alloc`: a fresh loopback address and directory per node;
//! - `config`: `NodeConfig`, what a node's kamailio.cfg says;
//! - `node`: a running node, started, asked and stopped;
//! - `rpc`: `kamcmd` and its replies;
//! - `process`: helper processes and waits, bounded in time;
//! - `machine`: how many tests run Kamailio at once (from the cores here);
//! - `cluster`: several nodes that learn of each other, and convergence;
//! - `sip`: raw SIP requests and sipp;
//! - `skip`: a test that cannot run here fails, unless `DMQ_RS_ALLOW_SKIP` opts out;
//! - `guardian`: what an interrupted run leaves running (processes, namespaces) goes;
//! - `consumers`: registrar, htable and presence configs, and what they hold;
//! - `fake_node`: a stand-in cluster node the test drives over UDP;
//! - `dns`, `netns`, `tls`, `registered`: a DNS server of the test's own,
//!   network namespaces, a test CA, and the names the module registers;
//! - `binrpc`, `state`: RPC replies of any size, and the whole replicated
//!   state of a node (usrloc, htable) compared with another's.
// Every test binary builds the whole harness and uses a part of it.
#![allow(dead_code)]

mod alloc;
mod cluster;
mod config;
mod consumers;
mod fake_node;
mod guardian;
mod node;
mod process;
mod release;
mod rpc;
mod sip;
mod skip;

pub mod binrpc;
pub mod dns;
pub mod machine;
pub mod netns;
pub mod registered;
pub mod state;
pub mod tls;

// As with dead code: a binary that uses nothing of a concern would warn.
#[allow(unused_imports)]
pub use {
    alloc::*, cluster::*, config::*, consumers::*, fake_node::*, guardian::*, node::*, process::*, release::*, rpc::*, sip::*, skip::*,
};
