//! Which of the nodes a received node list names may be listed here
//! (`trusted_network`: `admission::admit_lines` judges them by address),
//! and the lookups of named nodes that judging and sending need. A SIP
//! worker looks nothing up: with `trusted_network`, a line naming a new
//! node by host name waits for the DMQ DNS process (`name_sources::defer`),
//! which looks it up, judges and merges it ([`merge_deferred`]).

use std::net::IpAddr;

use dmq_core::node_uri::{NodeLine, NodeUri};
use dmq_core::nodes::NodeList;

use kamailio::clock::unix_now as now;
use kamailio::dns;

use crate::admission;
use crate::shared::Shared;
use crate::{name_sources, node_events, node_list};

/// Looks up the host names among `uris` (outside the node-list lock: a
/// lookup may wait on DNS), for [`NodeList::set_addresses`].
pub fn look_up(uris: impl IntoIterator<Item = NodeUri>) -> Vec<(NodeUri, Vec<IpAddr>)> {
    uris.into_iter()
        .map(|uri| {
            let ips = dns::resolve_host(&uri.host, dmq_core::nodes::MAX_ADDRESSES);
            if ips.is_empty() {
                log::warn!("node {uri}: its host does not resolve; messages to it go through tm");
            }
            (uri, ips)
        })
        .collect()
}

/// With `trusted_network`, before `lines` are merged: the lines naming a
/// node by host name that the list has no address for are taken out and
/// set aside for the DMQ DNS process (`name_sources::defer`,
/// [`merge_deferred`]); of the others, those outside `trusted_network`
/// are dropped (judged by the addresses already listed). Without it
/// nothing changes: the lines are merged as they are, and the DNS process
/// resolves new named nodes within 200 ms. Looks nothing up (this runs in
/// SIP workers); outside the node-list lock.
pub fn admit_or_defer(m: &Shared, lines: &mut Vec<NodeLine>, from: impl Fn() -> String) {
    if !m.config.trusted_networks.is_set() {
        return;
    }
    if lines.iter().any(|l| dmq_core::nodes::is_name(&l.uri.host)) {
        let unresolved =
            |list: &NodeList, l: &NodeLine| dmq_core::nodes::is_name(&l.uri.host) && list.find(&l.uri).is_none_or(|n| n.ips.is_empty());
        let waiting: Vec<NodeLine> = node_list::read_nodes(m, |list| lines.iter().filter(|l| unresolved(list, l)).cloned().collect());
        if !waiting.is_empty() {
            lines.retain(|l| !waiting.iter().any(|w| w.uri.same_node(&l.uri)));
            let dropped = name_sources::defer(m, &waiting);
            if dropped > 0 {
                log::warn!("{}: {dropped} named node(s) not judged: too many wait for the DNS process", from());
            }
        }
    }
    let ips_of = |uri: &NodeUri| node_list::read_nodes(m, |list| list.find(uri).map(|n| n.ips.clone())).unwrap_or_default();
    admission::admit_lines(m, lines, ips_of, from);
}

/// The DMQ DNS process: the named nodes notifications brought while
/// `trusted_network` is set are looked up here, judged by their addresses
/// and merged (their events run here too).
pub fn merge_deferred(m: &Shared) {
    let mut lines = name_sources::take_deferred(m);
    if lines.is_empty() {
        return;
    }
    let addresses = look_up(lines.iter().map(|l| l.uri.clone()));
    let ips_of = |uri: &NodeUri| addresses.iter().find(|(u, _)| u.same_node(uri)).map(|(_, ips)| ips.clone()).unwrap_or_default();
    admission::admit_lines(m, &mut lines, ips_of, || "a notification".to_string());
    let (events, refused) = node_list::with_nodes(m, |list| {
        let merged = list.merge(&lines, now());
        list.set_addresses(&addresses);
        (merged.events, merged.refused)
    })
    .unwrap_or_default();
    node_list::refuse_nodes(m, refused, || "a notification".to_string());
    node_events::report(m, &events, None);
}
