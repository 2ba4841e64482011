//! Runs the heal syncs `heal` finds due, both ways, for each regained node:
//!
//! - pull: our peers' init callbacks run with their broadcasts narrowed to
//!   the node (`peers::run_inits_towards`): it answers our consumers' sync
//!   requests with its whole state;
//! - push: the same sync requests are handed to our own peers (a queued
//!   job in a DMQ worker, as a KDMQ from the node): our consumers answer as
//!   if the node had asked, sending it our whole state. The node may not
//!   know it was away (frozen, restarted, or it never missed our pings),
//!   so it would not ask by itself.

use std::sync::atomic::{AtomicU64, Ordering};

use dmq_core::protocol::{self, NodeUri, PeerRequest};

use crate::host::clock::monotonic_ms;
use crate::host::sip_msg::ReceiveInfo;

use super::state::module;
use super::{heal, peers, workers};

/// The retransmission timer's tick: the due heal syncs, run here (no lock
/// held; the pushes' work runs in the DMQ workers).
pub fn tick(active_nodes: impl FnOnce() -> Vec<NodeUri>) {
    for node in heal::tick(active_nodes) {
        run(&node);
    }
}

fn run(node: &NodeUri) {
    let Some(m) = module() else { return };
    let requests = peers::run_inits_towards(node);
    static SEQ: AtomicU64 = AtomicU64::new(0);
    for (peer, body, content_type) in requests {
        let token = format!("heal{}x{}x{}", std::process::id(), monotonic_ms(), SEQ.fetch_add(1, Ordering::Relaxed));
        let request = protocol::build_peer_request(&PeerRequest {
            from: node,
            to: &m.local_uri,
            sent_by: &m.server_sent_by,
            peer: &peer.id(),
            branch: &format!("z9hG4bK-{token}"),
            token: &token,
            max_forwards: 1,
            content_type: &content_type,
            body: &body,
        });
        match workers::enqueue_local(&request, ReceiveInfo::local(m.server_sock), peer) {
            Ok(_) => {
                heal::count_push();
                log::info!("heal sync: DMQ peer {:?} sends our state to {node}", peer.id());
            }
            Err(workers::QueueError::Full) => log::warn!("heal sync: job queue full; our state is not pushed to {node}"),
            Err(workers::QueueError::Failed(e)) => log::warn!("heal sync: our state is not pushed to {node}: {e}"),
        }
    }
}
