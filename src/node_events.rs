//! What follows when nodes change state in this node's list (the
//! `NodeEvent`s `dmq_core::nodes` returns): a log line, a heal sync noted
//! for a regained node (`heal`), the syncs that wait on a node that went
//! told (`sync_status`), and the script's `event_route[dmq:node-active]`
//! and `[dmq:node-inactive]`. Upstream's peer events are `peer_events`'.

use dmq_core::node_uri::NodeUri;
use dmq_core::nodes::NodeEvent;

use kamailio::events::EventRoute;

use crate::node_list;
use crate::shared::Shared;
use crate::{heal, sync_status};

/// Logs node state changes and runs the script's event routes for them.
/// Called after the node-list lock is released: the routes may do anything.
/// `source`: the node the news came from itself (it answered our ping or
/// sent the notification), so it lists us; others were named by it.
pub fn report(m: &Shared, events: &[NodeEvent], source: Option<&NodeUri>) {
    let back = events.iter().filter_map(|e| if let NodeEvent::Active(uri) = e { Some(uri) } else { None });
    let (direct, named): (Vec<NodeUri>, Vec<NodeUri>) = back.cloned().partition(|uri| source.is_some_and(|s| s.same_node(uri)));
    heal::regained(m, &direct, &named);
    for e in events {
        match e {
            NodeEvent::Active(uri) => {
                log::info!("node {uri} is active");
                if let Some(route) = m.routes.node_active {
                    run_node_route(route, uri, "active");
                }
            }
            NodeEvent::Inactive(uri) => {
                log::info!("node {uri} is no longer active");
                sync_status::node_gone(m, &node_list::node_or_stand_in(m, uri));
                if let Some(route) = m.routes.node_inactive {
                    run_node_route(route, uri, "inactive");
                }
            }
        }
    }
}

/// Runs `event_route[dmq:node-active]`/`[dmq:node-inactive]` with
/// `$xavp(dmq_node=>uri)` and `$xavp(dmq_node=>status)` set, as stock.
fn run_node_route(route: EventRoute, uri: &NodeUri, status: &str) {
    let uri = uri.to_uri();
    if !route.run_with_xavp("dmq_node", [("uri", &uri), ("status", status)]) {
        log::error!("cannot run the event route for node {uri}");
    }
}
