//! The node-list changes an operator makes (`dmq.add`, `dmq.remove`,
//! `dmq.change_status`); the peer events they cause are reported by
//! `node_list::with_nodes`, in the RPC process.

use dmq_core::node_status::NodeStatus;
use dmq_core::node_uri::NodeUri;
use dmq_core::peer_events::{self, ChangeError};

use crate::notifications::send_notification;
use crate::shared::Shared;
use crate::{node_admission, node_list};

/// `dmq.add`: the node joins the list as pending and is notified at once
/// (its answer makes it active, and it learns of us); without an answer
/// the ping rounds keep trying it, as any pending node.
pub fn add(m: &Shared, uri: &NodeUri) -> Result<(), ChangeError> {
    let addresses = node_admission::look_up([uri.clone()].into_iter().filter(|u| dmq_core::nodes::is_name(&u.host)));
    let body = node_list::with_nodes(m, |list| {
        peer_events::add(list, uri)?;
        list.set_addresses(&addresses);
        Ok(list.notification_body())
    })
    .unwrap_or(Err(ChangeError::Full))?;
    send_notification(m, std::slice::from_ref(uri), &body, 2, 0);
    Ok(())
}

/// `dmq.remove`: whether the list had the node (it has it no more).
pub fn remove(m: &Shared, uri: &NodeUri) -> bool {
    node_list::with_nodes(m, |list| list.remove(uri)) == Some(true)
}

/// `dmq.change_status`: Ok(true) when it changed. The peer events (and
/// replication, which goes to active nodes only) follow at once; the node's
/// next answer to a ping makes it active again, as upstream.
pub fn change_status(m: &Shared, uri: &NodeUri, status: NodeStatus) -> Result<bool, ChangeError> {
    node_list::with_nodes(m, |list| peer_events::change_status(list, uri, status)).unwrap_or(Err(ChangeError::NotFound))
}
