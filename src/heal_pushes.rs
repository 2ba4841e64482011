//! Runs the heal syncs `heal` finds due: sends a regained node our whole
//! state. The consumers have no "send everything to node N" entry point,
//! but they answer a sync request by doing exactly that to the node that
//! sent it. So their sync requests are made (the init callbacks run with
//! their broadcasts captured, `peers::sync_requests`) and handed to them
//! as a KDMQ from the regained node: a job queued in a DMQ worker, whose
//! reply is sent nowhere. The consumers then send the node their state
//! with `send_message`, as they do for a joining node.
//!
//! A sync waits while this node is busy sending (a join sync, another heal
//! sync): not more than a quarter of the in-flight table (`direct_send`) in use and no job
//! waiting, so two full transfers do not pile up in shm.

use dmq_abi::api::PeerMessage;
use dmq_core::node_uri::NodeUri;

use kamailio::sip_msg::ReceiveInfo;

use crate::shared::Shared;
use crate::{direct_send, heal, peers, workers};

/// The retransmission timer's tick: the due heal syncs, run here (no lock
/// held; the consumers' work runs in the DMQ workers), each after
/// `before_sync` for its node (`messaging` sends it the deletes it
/// missed). Returns the nodes due a pull (asked for their state:
/// `messaging` sends the requests).
pub fn tick(m: &Shared, active_nodes: impl FnOnce() -> Vec<NodeUri>, before_sync: impl Fn(&NodeUri)) -> Vec<NodeUri> {
    let quiet = || {
        let messages_waiting = Some(direct_send::stats(m).in_flight as usize);
        dmq_core::heal::quiet_enough(messages_waiting, direct_send::CAPACITY, Some(workers::stats(m).queued))
    };
    let mut pulls = Vec::new();
    for (node, pull) in heal::tick(m, active_nodes, quiet) {
        if pull {
            pulls.push(node);
        } else {
            before_sync(&node);
            run(m, &node);
        }
    }
    pulls
}

fn run(m: &Shared, node: &NodeUri) {
    for (peer, body, content_type) in peers::sync_requests() {
        // Never sent: it goes to our own consumer, past admission.
        let peer_id = peer.id();
        let message = PeerMessage::plain(&peer_id, &body, &content_type);
        let request = workers::local_request(m, "heal", node, &message);
        match workers::enqueue_local(m, &request, ReceiveInfo::local(m.socket.local), peer, true) {
            Ok(_) => {
                heal::count_push(m);
                log::info!("heal sync: DMQ peer {:?} sends our state to {node}", peer.id());
            }
            Err(workers::QueueError::Full) => log::warn!("heal sync: job queue full; our state is not sent to {node}"),
            Err(workers::QueueError::Failed(e)) => log::warn!("heal sync: our state is not sent to {node}: {e}"),
        }
    }
}
