//! Ring 2: safe Rust over Kamailio. Each submodule owns one concern and keeps
//! its `unsafe` next to the reason it holds.

pub mod addr;
pub mod api;
pub mod cell;
pub mod clock;
pub mod dns;
pub mod events;
pub mod kstr;
pub mod lock;
pub mod log;
pub mod panic_guard;
pub mod replies;
pub mod rpc;
pub mod shm;
pub mod shm_queue;
pub mod sip_msg;
pub mod sip_uri;
pub mod tm;
pub mod socket;
pub mod udp;
