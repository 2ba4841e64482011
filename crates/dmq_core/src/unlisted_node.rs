//! What a node missing from the node list counts as. Such a node still
//! comes up: the sender of a peer message not (or no longer) listed, the
//! node a message went to that was removed meanwhile (`dmq.remove`, a
//! dead node dropped after failed pings), a node handle a consumer holds
//! and sends to (dmq_usrloc, htable and dialog answer a sync request
//! with `send_message` to the node that asked).
//!
//! It is a stand-in [`Node`] with status [`UNLISTED`], `disabled`: the
//! node list does not have it, so it is not active here (`dmq.list_nodes`
//! does not show it, broadcasts do not reach it), and a consumer that
//! reads a handle's status (the stock ones do not) is not told that
//! replication reaches it; `disabled` is also the word for a node that
//! announced its leave, which the stock module then drops. Sending to
//! it by name is another matter: a message addressed to one node goes to
//! it whatever its status, as with stock's `send_message`.

use crate::node_status::NodeStatus;
use crate::node_uri::NodeUri;
use crate::nodes::{Node, NodeList};

/// The status of a node the node list does not have.
pub const UNLISTED: NodeStatus = NodeStatus::Disabled;

/// The stand-in for `uri`, a node the node list does not have.
pub fn stand_in(uri: NodeUri) -> Node {
    Node::new(uri, UNLISTED)
}

/// The listed node for `uri`, or its stand-in.
pub fn listed_or_stand_in(list: &NodeList, uri: &NodeUri) -> Node {
    list.find(uri).cloned().unwrap_or_else(|| stand_in(uri.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_uri::parse_node_line;

    fn uri(s: &str) -> NodeUri {
        parse_node_line(s).unwrap().uri
    }

    #[test]
    fn a_node_missing_from_the_list_is_disabled_and_keeps_its_address() {
        let node = listed_or_stand_in(&NodeList::default(), &uri("sip:10.0.0.9:5060"));
        assert_eq!(node.status, NodeStatus::Disabled);
        assert_eq!(node.uri, uri("sip:10.0.0.9:5060"));
        assert_eq!(node.ip(), Some("10.0.0.9".parse().unwrap()), "messages to it still have somewhere to go");
        assert!(!node.local);
        assert_eq!(stand_in(uri("sip:node-b.svc:5060")).ip(), None, "a name is not looked up here");
    }

    #[test]
    fn a_listed_node_is_the_list_s() {
        let mut list = NodeList::default();
        let b = uri("sip:10.0.0.2:5060");
        list.add(b.clone());
        let listed = list.find(&b).cloned().unwrap();
        assert_eq!(listed_or_stand_in(&list, &uri("sip:10.0.0.2")), listed, "found as the list finds it (default port)");
        assert_ne!(listed.status, UNLISTED);
    }
}
