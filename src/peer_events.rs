//! Upstream's newer surface that is about the node list, not messages:
//! the peer events (`event_route[dmq:peer-up]`, `[dmq:peer-down]`,
//! `[dmq:peer-disabled]`, or `modparam("dmq", "event_callback", …)`, a KEMI
//! function called with the event's name) and the two switches
//! `init_with_single` and `sl_send`. Settled in mod_init (before fork);
//! the events are found by `dmq_core::peer_events::diff` in
//! `node_list::with_nodes` and run here after the node-list lock is released.

use dmq_core::node_uri::NodeUri;
use dmq_core::peer_events::PeerEvent;

use kamailio::events::{EventRoute, EventTarget};

use crate::shared::{PeerEventSettings, Shared};

/// mod_init: looks up the routes (unless `event_callback` names a KEMI
/// function, which then gets every event, as upstream).
pub fn settings(init_with_single: bool, sl_send: bool, callback: Option<String>) -> PeerEventSettings {
    // In PeerEvent::ALL's order (the names are PeerEvent::name's).
    let routes = [EventRoute::lookup(c"dmq:peer-up"), EventRoute::lookup(c"dmq:peer-down"), EventRoute::lookup(c"dmq:peer-disabled")];
    let targets = routes.map(|route| match &callback {
        Some(name) => EventTarget::Kemi(name.clone()),
        None => EventTarget::Route(route),
    });
    if let Some(name) = &callback {
        log::info!("dmq peer events go to the KEMI function {name}");
    }
    if sl_send {
        // Upstream's sl_send sends peer messages without tm; here they go
        // without tm already (the in-flight path, with its retransmissions
        // and replies), and tm is kept only where that path has no room.
        log::info!("sl_send: peer messages already go without tm (the in-flight path); tm only where it has no slot");
    }
    PeerEventSettings { init_with_single, targets }
}

/// Whether the join sync goes to one node only.
pub fn init_with_single(m: &Shared) -> bool {
    m.peer_events.init_with_single
}

/// Runs the peer events of one node-list change. Called with no lock held.
pub fn report(m: &Shared, events: &[(PeerEvent, NodeUri)]) {
    let s = &m.peer_events;
    for (event, uri) in events {
        let i = PeerEvent::ALL.iter().position(|e| e == event).unwrap_or(0);
        log::debug!("{} for node {uri}", event.name());
        s.targets[i].run(event.name(), &uri.to_uri());
    }
}
