//! What the `bind_dmq` API does, in plain Rust: `dmq_abi::api` converts
//! the consumers' C arguments and calls these.

use dmq_core::node_uri::NodeUri;
use dmq_core::nodes::Node;

use dmq_abi::api::{DmqApi, Peer, PeerMessage, PeerSpec};

use dmq_core::ordering::Retained;
use dmq_core::sync_runs::Reason;

use crate::peers::BroadcastMode;
use crate::shared::{shared, Shared};
use crate::{freshness, heal, messaging, node_list, origin, peers, sync_status};

/// The module's side of `dmq_api_t`.
pub enum Api {}

impl DmqApi for Api {
    fn register_peer(spec: &PeerSpec<'_>) -> Option<Peer> {
        peers::register(spec)
    }

    fn bcast_message(peer: Peer, message: &PeerMessage<'_>, except: Option<NodeUri>) -> Result<(), String> {
        // A heal sync runs the init callbacks to learn their sync requests;
        // init_with_single sends the join sync's to one node (below).
        let mode = peers::broadcast_mode();
        if mode == BroadcastMode::Capture {
            peers::capture(peer, message.body, message.content_type);
            return Ok(());
        }
        // Before mod_init no node is listed: the broadcast reaches nobody.
        let Some(m) = shared() else { return Ok(()) };
        // A consumer that answers a sync request by broadcasting (dialog's
        // dmq_send_all_dlgs(0)): its copies are the sync's, for the node
        // that asked (as dmq_usrloc's and htable's, which name it). Sent to
        // every node as live updates, a heal pull's answer in the middle of
        // traffic put older dialog states on nodes that had newer ones.
        if let Some(node) = origin::sync_requester() {
            return send_to_node(m, message, node);
        }
        let keys = dmq_core::ordering::identify(message.peer_id, message.body);
        // A consumer's sync request (its init callback at the join): the
        // sync is followed until done (`sync_status`).
        let follow = |targets: &[Node]| {
            if origin::is_sync_request(message.peer_id, keys.as_ref()) {
                sync_status::started(m, message.peer_id, Reason::Start, targets);
            }
        };
        // init_with_single: the join sync's requests go to one node.
        if let BroadcastMode::OnlyTo(node) = mode {
            let target = node_list::node_or_stand_in(m, &node);
            follow(std::slice::from_ref(&target));
            return send(m, message, &[target]);
        }
        let targets = messaging::active_targets(m, except.as_ref());
        follow(&targets);
        let sent = messaging::send_keyed(m, message, keys.as_ref(), &targets);
        // An update of our consumer's own: the item is ours (a delete: kept
        // for the nodes it did not reach, `origin`), and newer than any
        // sync copy of it on its way here (`freshness`).
        origin::wrote(m, message, keys.as_ref(), &targets, || heal::seen(m));
        freshness::note_live(m, message.peer_id, keys.as_ref());
        sent
    }

    fn send_message(_peer: Peer, message: &PeerMessage<'_>, node: NodeUri) -> Result<(), String> {
        // Before mod_init the one send fails.
        let Some(m) = shared() else {
            log::error!("cannot send a {} message to {node}: dmq is not initialized", message.peer_id);
            return Err("1 of 1 sends failed".into());
        };
        send_to_node(m, message, node)
    }

    fn find_node(uri: &NodeUri) -> Option<Node> {
        shared().and_then(|m| node_list::find_node(m, uri))
    }

    fn server_socket() -> Option<String> {
        shared().map(|m| m.socket.name.clone())
    }
}

/// `send_message`, also a broadcast answering a node's sync request.
fn send_to_node(m: &Shared, message: &PeerMessage<'_>, node: NodeUri) -> Result<(), String> {
    // A node that left the list meanwhile is still tried (through tm).
    let target = node_list::node_or_stand_in(m, &node);
    // A sync's copy says when its sync began (`freshness` on the
    // receiver); a heal sync carries only what this node wrote last
    // (`origin`).
    // A copy answering the target's own sync request says so, and its
    // items are counted for the answer's reply (`sync_status`).
    let since = origin::current_sync().map(|s| s.since_ms);
    let message = PeerMessage { sync_since: since, sync_answer: origin::answer_to(&target.uri), ..*message };
    let send_counted = |message: &PeerMessage<'_>| {
        origin::count_sent(message);
        send(m, message, std::slice::from_ref(&target))
    };
    match origin::sendable(m, &message) {
        Retained::All => send_counted(&message),
        Retained::Nothing => Ok(()),
        Retained::Some(body) => send_counted(&PeerMessage { body: &body, ..message }),
    }
}

fn send(m: &Shared, message: &PeerMessage<'_>, targets: &[Node]) -> Result<(), String> {
    messaging::send_to(m, message, targets)
}
