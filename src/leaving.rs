//! Leaving the cluster at shutdown (main process, after the children are
//! gone): the active nodes are told at once, so they stop counting on this
//! node instead of after missed pings.

use std::time::Duration;

use dmq_abi::api::PeerMessage;
use dmq_core::leave_notice::leave_notice;
use dmq_core::node_status::NodeStatus;
use dmq_core::node_uri::{NodeUri, Transport};
use dmq_core::nodes::NodeList;
use dmq_core::notification;

use kamailio::clock::unix_now as now;
use kamailio::dns;
use kamailio::send;

use crate::notifications::CONTENT_TYPE;
use crate::shared::Shared;
use crate::{node_list, requests};

/// Tells the active nodes we are leaving. Sent directly from our UDP
/// socket, since tm's timers no longer run; nodes reached over other
/// transports learn it from pings.
pub fn announce_leave(m: &Shared) {
    let active = |list: &NodeList| -> Vec<(NodeUri, Option<std::net::IpAddr>)> {
        list.nodes.iter().filter(|n| !n.local && n.status == NodeStatus::Active).map(|n| (n.uri.clone(), n.ip())).collect()
    };
    // A child killed inside its critical section may have left the lock held.
    let Some(targets) = node_list::read_nodes_within(m, Duration::from_millis(200), active) else {
        log::warn!("node list locked at shutdown; leaving without notice");
        return;
    };
    if m.socket.transport != Some(Transport::Udp) {
        log::info!("leaving without notice: the DMQ socket {} is not UDP", m.socket.name);
        return;
    }
    let body = notification::build_body([(&m.local_uri, NodeStatus::Disabled)]);
    let token = format!("{}x{}", std::process::id(), now());
    let message = PeerMessage::plain(&m.config.notification_channel, body.as_bytes(), CONTENT_TYPE);
    for (uri, ip) in targets {
        if uri.transport != Transport::Udp {
            continue;
        }
        let Some(ip) = ip.or_else(|| dns::resolve_host(&uri.host, dmq_core::nodes::MAX_ADDRESSES).first().copied()) else { continue };
        let request = leave_notice(&requests::to_node(m, &uri, &message), &m.socket.sent_by, &token);
        match send::send_from(
            m.socket.local,
            kamailio::sip_uri::Proto::Udp,
            std::net::SocketAddr::new(ip, uri.port_no()),
            request.as_bytes(),
        ) {
            Ok(()) => log::info!("told {uri} that this node is leaving"),
            Err(e) => log::warn!("{e}"),
        }
    }
}
