//! Ring 2: safe Rust over Kamailio. Every FFI call and every shm layout of
//! the crate is here, each `unsafe` next to the reason it holds; `raw` (the
//! bindgen output and the C shim) is private to this ring. Each submodule
//! owns one concern.

mod raw;

pub mod addr;
pub mod api;
pub mod cell;
pub mod clock;
pub mod dmq_api;
pub mod dns;
pub mod events;
pub mod export;
mod kstr;
mod lock;
pub mod log;
pub mod panic_guard;
pub mod process;
pub mod release;
pub mod replies;
pub mod rpc;
pub mod send;
pub mod shm;
pub mod shm_queue;
pub mod sip_msg;
pub mod sip_uri;
pub mod stats;
pub mod socket;
pub mod tm;
