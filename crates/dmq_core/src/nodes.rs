//! The node list and its state machine, as the stock module runs it, without
//! Kamailio: the module keeps one `NodeList` in shm (serialized, see
//! [`NodeList::encode`]) and applies these operations under a Kamailio lock.

use std::net::IpAddr;

use crate::node_status::NodeStatus;
use crate::node_uri::{self, NodeLine, NodeUri};
use crate::notification;

/// The largest cluster a node keeps track of (the local node included).
/// Notifications that would list more are merged up to it; the rest is
/// refused (and counted), so the list always fits its shm store.
pub const MAX_NODES: usize = 256;

/// The most addresses kept for one node (a name may resolve to more).
pub const MAX_ADDRESSES: usize = 8;

/// The longest line one node takes in [`NodeList::encode`]: a URI line of
/// at most [`node_uri::MAX_LINE_LEN`], [`MAX_ADDRESSES`] IPv6 addresses and
/// the numbers, with room to spare.
pub const MAX_ENCODED_NODE_LEN: usize = 1024;

/// The store a full list needs.
pub const MAX_ENCODED_LEN: usize = MAX_NODES * MAX_ENCODED_NODE_LEN;

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub uri: NodeUri,
    pub status: NodeStatus,
    /// Unix time of the last notification exchanged with it (0: none yet).
    pub last_notification: i64,
    pub local: bool,
    /// Consecutive failed requests (for `fail_count_enabled`).
    pub fail_count: u32,
    /// Every address the node's host resolved to, first one preferred
    /// (empty: a name not resolved yet).
    pub ips: Vec<IpAddr>,
    /// The ping round whose ping the node has not answered yet (0: none).
    pub awaiting_ping: u32,
}

impl Node {
    pub fn new(uri: NodeUri, status: NodeStatus) -> Node {
        let ips = resolve_literal(&uri.host).into_iter().collect();
        Node { uri, status, last_notification: 0, local: false, fail_count: 0, ips, awaiting_ping: 0 }
    }

    /// The address messages go to: the first one the host resolved to.
    pub fn ip(&self) -> Option<IpAddr> {
        self.ips.first().copied()
    }

    /// Whether the node's host is a name (resolved by DNS, not written as an IP).
    pub fn is_named(&self) -> bool {
        is_name(&self.uri.host)
    }
}

/// Whether `host` is a name rather than an IP literal.
pub fn is_name(host: &str) -> bool {
    resolve_literal(host).is_none()
}

/// The IP of a host written as an IP literal (IPv6 in brackets).
pub fn resolve_literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// What a failed or answered request does to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePolicy {
    /// Remove a node after the second timeout (else mark it not_active).
    pub remove_inactive: bool,
    /// `fail_count_enabled`: state changes by the count of consecutive
    /// failures (Kamailio 6.1's thresholds).
    pub fail_count_threshold: Option<FailThresholds>,
}

/// With `fail_count_enabled` (Kamailio 6.1): a node goes `not_active` when
/// its consecutive failures exceed `not_active`, `disabled` when they exceed
/// `disabled`, and is removed at the next failure after that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailThresholds {
    pub not_active: u32,
    pub disabled: u32,
}

/// A state change worth telling the script about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    Active(NodeUri),
    Inactive(NodeUri),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeList {
    pub nodes: Vec<Node>,
}

/// What merging a notification did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeOutcome {
    /// Nodes added or changed (the stock module's "news" count, which decides
    /// whether the notification is forwarded).
    pub news: usize,
    pub events: Vec<NodeEvent>,
    /// New nodes not added because the list holds [`MAX_NODES`] already.
    pub refused: usize,
}

fn is_up(status: NodeStatus) -> bool {
    status == NodeStatus::Active
}

impl NodeList {
    pub fn with_local(local: NodeUri) -> NodeList {
        let mut node = Node::new(local, NodeStatus::Active);
        node.local = true;
        NodeList { nodes: vec![node] }
    }

    pub fn find(&self, uri: &NodeUri) -> Option<&Node> {
        self.nodes.iter().find(|n| n.uri.same_node(uri))
    }

    fn find_mut(&mut self, uri: &NodeUri) -> Option<&mut Node> {
        self.nodes.iter_mut().find(|n| n.uri.same_node(uri))
    }

    pub fn local(&self) -> Option<&Node> {
        self.nodes.iter().find(|n| n.local)
    }

    /// Whether `uri`, an IP literal, is this node's own address (port and
    /// transport too) under another host than the one it announces: this
    /// node, which must not be listed, and get messages, a second time.
    pub fn is_local_address(&self, uri: &NodeUri) -> bool {
        let Some(ip) = resolve_literal(&uri.host) else { return false };
        self.local().is_some_and(|l| {
            !l.uri.same_node(uri) && l.ips.contains(&ip) && l.uri.port_no() == uri.port_no() && l.uri.transport == uri.transport
        })
    }

    /// Adds a node (pending) unless it is known or the list is full;
    /// returns whether it was added.
    pub fn add(&mut self, uri: NodeUri) -> bool {
        if self.find(&uri).is_some() || self.is_local_address(&uri) || self.nodes.len() >= MAX_NODES {
            return false;
        }
        self.nodes.push(Node::new(uri, NodeStatus::Pending));
        true
    }

    /// Merges the lines of a received notification (request or reply body),
    /// as the stock module does: unknown nodes are added with the status they
    /// came with (pending without one); a known remote node takes the new
    /// status unless it is being disabled here. The local node is never
    /// changed by others, and never added twice.
    pub fn merge(&mut self, lines: &[NodeLine], now: i64) -> MergeOutcome {
        let mut out = MergeOutcome::default();
        for line in lines {
            let full = self.nodes.len() >= MAX_NODES;
            let this_node = self.is_local_address(&line.uri);
            match self.find_mut(&line.uri) {
                None if this_node => {}
                None if full => out.refused += 1,
                None => {
                    let status = line.status.unwrap_or(NodeStatus::Pending);
                    let mut node = Node::new(line.uri.clone(), status);
                    node.last_notification = now;
                    if is_up(status) {
                        out.events.push(NodeEvent::Active(line.uri.clone()));
                    }
                    self.nodes.push(node);
                    out.news += 1;
                }
                Some(node) if node.local => {}
                Some(node) => {
                    if let Some(status) = line.status {
                        // A node that failed our ping is active again only
                        // when it answers us, not because another node's
                        // list still names it (a notification address
                        // marked pending would flap back and forth).
                        let unproven = is_up(status) && node.fail_count > 0;
                        if status != node.status && node.status != NodeStatus::Disabled && !unproven {
                            let was_up = is_up(node.status);
                            node.status = status;
                            // Only the node's own answer clears its count
                            // (as 6.1): another node still listing it active
                            // must not keep a dead node in for ever.
                            out.news += 1;
                            match (was_up, is_up(status)) {
                                (false, true) => out.events.push(NodeEvent::Active(node.uri.clone())),
                                (true, false) => out.events.push(NodeEvent::Inactive(node.uri.clone())),
                                _ => {}
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// A ping of `round` got a final reply other than 200 or 408 (403,
    /// 404, 500…): the node is there but said no. The stock module changes
    /// nothing for such replies; here it only stops the round from counting
    /// the ping as unanswered.
    pub fn ping_refused(&mut self, uri: &NodeUri, round: u32) {
        if let Some(node) = self.find_mut(uri) {
            if round != 0 && node.awaiting_ping == round {
                node.awaiting_ping = 0;
            }
        }
    }

    /// A node answered a notification with 200: it is active.
    pub fn mark_answered(&mut self, uri: &NodeUri, now: i64) -> Vec<NodeEvent> {
        let Some(node) = self.find_mut(uri) else { return Vec::new() };
        node.last_notification = now;
        node.fail_count = 0;
        node.awaiting_ping = 0;
        if node.local || node.status == NodeStatus::Active {
            return Vec::new();
        }
        node.status = NodeStatus::Active;
        vec![NodeEvent::Active(uri.clone())]
    }

    /// A request to the node timed out (408). Notification addresses are
    /// never deleted, only marked pending; other nodes go disabled, then on
    /// the next failure are removed (or kept as not_active).
    pub fn mark_failed(&mut self, uri: &NodeUri, is_notification_address: bool, policy: FailurePolicy) -> Vec<NodeEvent> {
        let Some(idx) = self.nodes.iter().position(|n| n.uri.same_node(uri)) else { return Vec::new() };
        let node = &mut self.nodes[idx];
        if node.local {
            return Vec::new();
        }
        node.fail_count = node.fail_count.saturating_add(1);
        let was_up = is_up(node.status);
        let event = || if was_up { vec![NodeEvent::Inactive(uri.clone())] } else { Vec::new() };
        if let Some(t) = policy.fail_count_threshold {
            // 6.1: active → not_active past `not_active` failures, → disabled
            // past `disabled`, removed at the next failure once disabled
            // (whatever remove_inactive says); notification addresses only
            // ever go pending. Unlike 6.1, a node past both thresholds goes
            // disabled from any state: another node listing it active
            // between two failures cannot hold it at not_active for ever.
            let count = node.fail_count;
            if is_notification_address {
                if count > t.not_active {
                    node.status = NodeStatus::Pending;
                    return event();
                }
                return Vec::new();
            }
            match node.status {
                NodeStatus::Disabled => {
                    self.nodes.remove(idx);
                }
                _ if count > t.disabled => {
                    node.status = NodeStatus::Disabled;
                    return event();
                }
                NodeStatus::NotActive => {}
                _ => {
                    if count > t.not_active {
                        node.status = NodeStatus::NotActive;
                        return event();
                    }
                }
            }
            return Vec::new();
        }
        if is_notification_address {
            node.status = NodeStatus::Pending;
            return event();
        }
        match node.status {
            NodeStatus::Disabled | NodeStatus::NotActive => {
                if policy.remove_inactive {
                    self.nodes.remove(idx);
                } else {
                    node.status = NodeStatus::NotActive;
                }
                Vec::new()
            }
            _ => {
                node.status = NodeStatus::Disabled;
                event()
            }
        }
    }

    /// A ping round starts: every remote node still owing an answer to the
    /// previous round's ping counts one failure (so a dead node is noticed
    /// one `ping_interval` after its missed ping, whatever tm's fr_timer is);
    /// then all remote nodes, inactive ones included, are pinged in `round`.
    /// Returns the state changes and the nodes to ping.
    pub fn start_ping_round(
        &mut self,
        round: u32,
        is_notification_address: impl Fn(&NodeUri) -> bool,
        policy: FailurePolicy,
    ) -> (Vec<NodeEvent>, Vec<NodeUri>) {
        let overdue: Vec<NodeUri> = self.nodes.iter().filter(|n| !n.local && n.awaiting_ping != 0).map(|n| n.uri.clone()).collect();
        let mut events = Vec::new();
        for uri in overdue {
            if let Some(node) = self.find_mut(&uri) {
                node.awaiting_ping = 0;
            }
            events.extend(self.mark_failed(&uri, is_notification_address(&uri), policy));
        }
        for node in self.nodes.iter_mut().filter(|n| !n.local) {
            node.awaiting_ping = round;
        }
        (events, self.targets(true))
    }

    /// tm gave up on the ping of `round` (408) before the next round: that
    /// counts as the failure now. Late timeouts of older rounds, and of
    /// requests that were not pings, are left to the round logic.
    pub fn ping_timed_out(&mut self, uri: &NodeUri, round: u32, is_notification_address: bool, policy: FailurePolicy) -> Vec<NodeEvent> {
        match self.find_mut(uri) {
            Some(node) if round != 0 && node.awaiting_ping == round => node.awaiting_ping = 0,
            _ => return Vec::new(),
        }
        self.mark_failed(uri, is_notification_address, policy)
    }

    /// `dmq.remove`: removes a remote node; the local one stays.
    pub fn remove(&mut self, uri: &NodeUri) -> bool {
        let before = self.nodes.len();
        self.nodes.retain(|n| n.local || !n.uri.same_node(uri));
        self.nodes.len() != before
    }

    /// The body we send and answer with: the local node and active nodes.
    pub fn notification_body(&self) -> String {
        notification::build_body(self.nodes.iter().filter(|n| n.local || is_up(n.status)).map(|n| (&n.uri, n.status)))
    }

    /// Remote nodes to send to: active ones, or all with `include_inactive`.
    pub fn targets(&self, include_inactive: bool) -> Vec<NodeUri> {
        self.target_nodes(include_inactive).map(|n| n.uri.clone()).collect()
    }

    /// The remote nodes messages go to (with their resolved addresses).
    pub fn target_nodes(&self, include_inactive: bool) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(move |n| !n.local && (include_inactive || is_up(n.status)))
    }

    /// Whether `ip` is one of a remote node's addresses (`dmq_is_from_node`).
    pub fn is_remote_ip(&self, ip: IpAddr) -> bool {
        self.nodes.iter().any(|n| !n.local && n.ips.contains(&ip))
    }

    /// Whether a notification line names a host that must be looked up
    /// before it is merged: a name (IP literals need no lookup) of a node
    /// that is new here, has no address yet, or is re-notified with another
    /// status (a node that comes back may come back elsewhere).
    pub fn needs_lookup(&self, line: &NodeLine) -> bool {
        if !is_name(&line.uri.host) {
            return false;
        }
        match self.find(&line.uri) {
            None => true,
            Some(node) => node.ips.is_empty() || line.status.is_some_and(|s| s != node.status),
        }
    }

    /// The named nodes whose addresses a lookup refreshes (the ping timer
    /// does this once a round, away from the SIP workers).
    pub fn named_nodes(&self) -> Vec<NodeUri> {
        self.nodes.iter().filter(|n| n.is_named()).map(|n| n.uri.clone()).collect()
    }

    /// Stores looked-up addresses. A lookup that found nothing leaves the
    /// addresses a node had (a passing DNS failure must not make a node
    /// unreachable); nodes that left the list meanwhile are skipped.
    pub fn set_addresses(&mut self, resolved: &[(NodeUri, Vec<IpAddr>)]) {
        for (uri, ips) in resolved {
            if ips.is_empty() {
                continue;
            }
            let ips = &ips[..ips.len().min(MAX_ADDRESSES)];
            if let Some(node) = self.find_mut(uri) {
                if node.ips != ips {
                    node.ips = ips.to_vec();
                }
            }
        }
    }

    /// Compact text form for the shm copy: one node per line,
    /// `uri|status|last|local|fails|ip[,ip…]|awaiting_ping`.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        for n in &self.nodes {
            s.push_str(&format!(
                "{}|{}|{}|{}|{}|{}|{}\n",
                n.uri.to_uri(),
                n.status.as_str(),
                n.last_notification,
                n.local as u8,
                n.fail_count,
                n.ips.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(","),
                n.awaiting_ping
            ));
        }
        s
    }

    /// Reverses [`encode`](Self::encode); lines that do not parse are skipped.
    pub fn decode(text: &str) -> NodeList {
        let nodes = text
            .lines()
            .filter_map(|line| {
                let mut f = line.split('|');
                let uri = node_uri::parse_node_line(f.next()?).ok()?.uri;
                let status = NodeStatus::parse(f.next()?)?;
                let last_notification = f.next()?.parse().ok()?;
                let local = f.next()? == "1";
                let fail_count = f.next()?.parse().ok()?;
                let ips = f.next().unwrap_or_default().split(',').filter_map(|s| s.parse().ok()).collect();
                let awaiting_ping = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
                Some(Node { uri, status, last_notification, local, fail_count, ips, awaiting_ping })
            })
            .collect();
        NodeList { nodes }
    }
}

impl crate::text_state::TextState for NodeList {
    fn decode(text: &str) -> Self {
        NodeList::decode(text)
    }
    fn encode(&self) -> String {
        NodeList::encode(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::parse_body;

    fn uri(s: &str) -> NodeUri {
        node_uri::parse_node_line(s).unwrap().uri
    }

    const KEEP: FailurePolicy = FailurePolicy { remove_inactive: true, fail_count_threshold: None };

    #[test]
    fn local_node_is_there_once_even_when_notified_about_itself() {
        let mut list = NodeList::with_local(uri("sip:127.0.0.2:5090"));
        let lines = parse_body(b"sip:127.0.0.2:5090;status=disabled\r\nsip:127.0.0.3:5090;status=active\r\n").unwrap();
        let out = list.merge(&lines, 10);
        assert_eq!(out.news, 1);
        assert_eq!(out.events, vec![NodeEvent::Active(uri("sip:127.0.0.3:5090"))]);
        assert_eq!(list.nodes.len(), 2);
        assert_eq!(list.local().unwrap().status, NodeStatus::Active);
        assert!(!list.add(uri("sip:127.0.0.2:5090")));
    }

    #[test]
    fn this_node_by_its_address_is_not_listed_again() {
        let mut list = NodeList::with_local(uri("sip:node-a.example:5090"));
        list.set_addresses(&[(uri("sip:node-a.example:5090"), vec!["10.0.0.1".parse().unwrap()])]);
        let out = list.merge(
            &parse_body(
                b"sip:10.0.0.1:5090;status=active
sip:10.0.0.1:5091;status=active",
            )
            .unwrap(),
            0,
        );
        assert_eq!(out.news, 1, "another port is another node");
        assert!(!list.add(uri("sip:10.0.0.1:5090")));
        assert_eq!(list.nodes.len(), 2);
    }

    #[test]
    fn merge_updates_status_but_not_of_nodes_being_disabled() {
        let mut list = NodeList::with_local(uri("sip:a:1"));
        list.merge(&parse_body(b"sip:b:1;status=active").unwrap(), 0);
        let out = list.merge(&parse_body(b"sip:b:1;status=disabled").unwrap(), 0);
        assert_eq!(out.news, 1);
        assert_eq!(out.events, vec![NodeEvent::Inactive(uri("sip:b:1"))]);
        let out = list.merge(&parse_body(b"sip:b:1;status=active").unwrap(), 0);
        assert_eq!(out.news, 0, "a disabled node is ending, news about it is ignored");
        let out = list.merge(&parse_body(b"sip:b:1").unwrap(), 0);
        assert_eq!(out.news, 0);
    }

    #[test]
    fn timeouts_disable_then_remove() {
        let mut list = NodeList::with_local(uri("sip:a:1"));
        list.merge(&parse_body(b"sip:b:1;status=active").unwrap(), 0);
        assert_eq!(list.mark_failed(&uri("sip:b:1"), false, KEEP), vec![NodeEvent::Inactive(uri("sip:b:1"))]);
        assert_eq!(list.find(&uri("sip:b:1")).unwrap().status, NodeStatus::Disabled);
        list.mark_failed(&uri("sip:b:1"), false, KEEP);
        assert!(list.find(&uri("sip:b:1")).is_none());
    }

    #[test]
    fn without_remove_inactive_nodes_stay_not_active() {
        let policy = FailurePolicy { remove_inactive: false, fail_count_threshold: None };
        let mut list = NodeList::with_local(uri("sip:a:1"));
        list.merge(&parse_body(b"sip:b:1;status=active").unwrap(), 0);
        list.mark_failed(&uri("sip:b:1"), false, policy);
        list.mark_failed(&uri("sip:b:1"), false, policy);
        assert_eq!(list.find(&uri("sip:b:1")).unwrap().status, NodeStatus::NotActive);
        assert_eq!(list.mark_answered(&uri("sip:b:1"), 5), vec![NodeEvent::Active(uri("sip:b:1"))]);
    }

    #[test]
    fn fail_count_threshold_delays_state_changes() {
        let t = FailThresholds { not_active: 2, disabled: 3 };
        let policy = FailurePolicy { remove_inactive: true, fail_count_threshold: Some(t) };
        let mut list = NodeList::with_local(uri("sip:a:1"));
        list.merge(&parse_body(b"sip:b:1;status=active").unwrap(), 0);
        assert!(list.mark_failed(&uri("sip:b:1"), false, policy).is_empty());
        assert!(list.mark_failed(&uri("sip:b:1"), false, policy).is_empty());
        assert_eq!(list.find(&uri("sip:b:1")).unwrap().status, NodeStatus::Active);
        assert_eq!(list.mark_failed(&uri("sip:b:1"), false, policy).len(), 1);
        list.mark_answered(&uri("sip:b:1"), 0);
        assert_eq!(list.find(&uri("sip:b:1")).unwrap().fail_count, 0);
    }

    #[test]
    fn notification_addresses_are_never_removed() {
        let mut list = NodeList::with_local(uri("sip:a:1"));
        list.add(uri("sip:seed:1"));
        for _ in 0..5 {
            list.mark_failed(&uri("sip:seed:1"), true, KEEP);
        }
        assert_eq!(list.find(&uri("sip:seed:1")).unwrap().status, NodeStatus::Pending);
    }

    #[test]
    fn body_targets_and_remove() {
        let mut list = NodeList::with_local(uri("sip:127.0.0.2:5090"));
        list.merge(&parse_body(b"sip:127.0.0.3:5090;status=active\r\nsip:127.0.0.4:5090;status=pending").unwrap(), 0);
        assert_eq!(list.notification_body(), "sip:127.0.0.2:5090;status=active\r\nsip:127.0.0.3:5090;status=active\r\n");
        assert_eq!(list.targets(false), vec![uri("sip:127.0.0.3:5090")]);
        assert_eq!(list.targets(true).len(), 2);
        assert!(list.is_remote_ip("127.0.0.3".parse().unwrap()));
        assert!(!list.is_remote_ip("127.0.0.2".parse().unwrap()));
        assert!(!list.remove(&uri("sip:127.0.0.2:5090")));
        assert!(list.remove(&uri("sip:127.0.0.3:5090")));
        assert_eq!(list.nodes.len(), 2);
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut list = NodeList::with_local(uri("sip:127.0.0.2:5090"));
        list.merge(&parse_body(b"sip:[::1]:5090;transport=tcp;status=active\r\nsip:host.example:5060").unwrap(), 42);
        list.mark_failed(
            &uri("sip:host.example:5060"),
            false,
            FailurePolicy { remove_inactive: true, fail_count_threshold: Some(FailThresholds { not_active: 9, disabled: 9 }) },
        );
        assert_eq!(NodeList::decode(&list.encode()), list);
    }

    #[test]
    fn unanswered_ping_counts_as_failure_at_the_next_round() {
        let mut list = NodeList::with_local(uri("sip:a:1"));
        list.merge(&parse_body(b"sip:b:1;status=active\r\nsip:c:1;status=active").unwrap(), 0);
        let (events, targets) = list.start_ping_round(1, |_| false, KEEP);
        assert!(events.is_empty());
        assert_eq!(targets.len(), 2);
        list.mark_answered(&uri("sip:b:1"), 1);
        let (events, _) = list.start_ping_round(2, |_| false, KEEP);
        assert_eq!(events, vec![NodeEvent::Inactive(uri("sip:c:1"))]);
        assert_eq!(list.find(&uri("sip:b:1")).unwrap().status, NodeStatus::Active);
        // tm's own timeout of the same ping does not count twice
        assert!(list.ping_timed_out(&uri("sip:c:1"), 1, false, KEEP).is_empty());
        assert!(list.find(&uri("sip:c:1")).is_some());
        // a timeout of the current round counts, and removes the disabled node
        list.ping_timed_out(&uri("sip:c:1"), 2, false, KEEP);
        assert!(list.find(&uri("sip:c:1")).is_none());
    }

    #[test]
    fn requests_that_are_not_pings_never_time_out_nodes() {
        let mut list = NodeList::with_local(uri("sip:a:1"));
        list.merge(&parse_body(b"sip:b:1;status=active").unwrap(), 0);
        assert!(list.ping_timed_out(&uri("sip:b:1"), 0, false, KEEP).is_empty());
        assert_eq!(list.find(&uri("sip:b:1")).unwrap().status, NodeStatus::Active);
    }

    #[test]
    fn a_notification_does_not_prove_its_sender_alive() {
        // As in the stock module: only answered pings do. A notification
        // claiming to come from a dead node must not keep it listed.
        let mut list = NodeList::with_local(uri("sip:a:1"));
        list.merge(&parse_body(b"sip:b:1;status=active").unwrap(), 0);
        list.start_ping_round(1, |_| false, KEEP);
        let out = list.merge(&parse_body(b"sip:b:1;status=active").unwrap(), 5);
        assert!(out.events.is_empty());
        let (events, _) = list.start_ping_round(2, |_| false, KEEP);
        assert_eq!(events, vec![NodeEvent::Inactive(uri("sip:b:1"))]);
        // and news about the disabled node does not revive it
        let out = list.merge(&parse_body(b"sip:b:1;status=active").unwrap(), 6);
        assert!(out.events.is_empty());
        assert_eq!(list.find(&uri("sip:b:1")).unwrap().status, NodeStatus::Disabled);
        // its own leave notice still disables a node at once
        list.merge(&parse_body(b"sip:c:1;status=active").unwrap(), 0);
        let out = list.merge(&parse_body(b"sip:c:1;status=disabled").unwrap(), 7);
        assert_eq!(out.events, vec![NodeEvent::Inactive(uri("sip:c:1"))]);
    }

    #[test]
    fn a_notification_address_that_missed_a_ping_is_not_revived_by_others() {
        let mut list = NodeList::with_local(uri("sip:a:1"));
        list.add(uri("sip:seed:1"));
        list.merge(&parse_body(b"sip:seed:1;status=active").unwrap(), 0);
        list.start_ping_round(1, |_| true, KEEP);
        let (events, _) = list.start_ping_round(2, |_| true, KEEP);
        assert_eq!(events, vec![NodeEvent::Inactive(uri("sip:seed:1"))]);
        assert_eq!(list.find(&uri("sip:seed:1")).unwrap().status, NodeStatus::Pending);
        let out = list.merge(&parse_body(b"sip:seed:1;status=active").unwrap(), 5);
        assert!(out.events.is_empty() && out.news == 0, "another node's list does not prove it alive");
        assert_eq!(list.mark_answered(&uri("sip:seed:1"), 6), vec![NodeEvent::Active(uri("sip:seed:1"))]);
    }

    #[test]
    fn a_ping_refused_with_another_code_changes_nothing() {
        let mut list = NodeList::with_local(uri("sip:a:1"));
        list.merge(&parse_body(b"sip:b:1;status=active").unwrap(), 0);
        for round in 1..5 {
            let (events, _) = list.start_ping_round(round, |_| false, KEEP);
            assert!(events.is_empty(), "round {round}: {events:?}");
            list.ping_refused(&uri("sip:b:1"), round);
        }
        let b = list.find(&uri("sip:b:1")).unwrap();
        assert_eq!((b.status, b.fail_count), (NodeStatus::Active, 0));
        // a refusal of an older round does not cover the current one
        list.start_ping_round(5, |_| false, KEEP);
        list.ping_refused(&uri("sip:b:1"), 4);
        assert_eq!(list.start_ping_round(6, |_| false, KEEP).0, vec![NodeEvent::Inactive(uri("sip:b:1"))]);
    }

    #[test]
    fn the_list_stops_at_max_nodes_and_always_fits_its_store() {
        let mut list = NodeList::with_local(uri("sip:127.0.0.2:5090"));
        // The longest host and transport a line may carry, and the most addresses.
        let long = |i: usize| format!("sip:{}{i:04}.example:65535;transport=sctp;status=active", "h".repeat(240));
        let lines: Vec<NodeLine> = (0..MAX_NODES + 44).map(|i| node_uri::parse_node_line(&long(i)).unwrap()).collect();
        let out = list.merge(&lines, i64::MAX);
        assert_eq!(list.nodes.len(), MAX_NODES);
        assert_eq!(out.refused, 45);
        assert_eq!(out.news, MAX_NODES - 1);
        let v6: Vec<IpAddr> = (0..20).map(|i| format!("ffff:ffff:ffff:ffff:ffff:ffff:ffff:{i:x}").parse().unwrap()).collect();
        let resolved: Vec<(NodeUri, Vec<IpAddr>)> = list.nodes.iter().map(|n| (n.uri.clone(), v6.clone())).collect();
        list.set_addresses(&resolved);
        assert!(list.nodes.iter().all(|n| n.ips.len() <= MAX_ADDRESSES));
        for n in &mut list.nodes {
            (n.fail_count, n.awaiting_ping, n.last_notification) = (u32::MAX, u32::MAX, i64::MIN);
        }
        let encoded = list.encode();
        assert!(encoded.lines().all(|l| l.len() < MAX_ENCODED_NODE_LEN), "{}", encoded.lines().map(str::len).max().unwrap());
        assert!(encoded.len() <= MAX_ENCODED_LEN);
        assert_eq!(NodeList::decode(&encoded), list);
        assert!(!list.add(uri("sip:one-more:5060")));
        // Room again once a node leaves.
        assert!(list.remove(&list.nodes[1].uri.clone()));
        assert!(list.add(uri("sip:one-more:5060")));
    }

    #[test]
    fn named_nodes_are_looked_up_when_new_unresolved_or_renotified() {
        let mut list = NodeList::with_local(uri("sip:127.0.0.2:5090"));
        let lines = parse_body(b"sip:dmq-b.example:5090;status=active\r\nsip:127.0.0.4:5090;status=active").unwrap();
        assert!(list.needs_lookup(&lines[0]), "a new named node");
        assert!(!list.needs_lookup(&lines[1]), "an IP literal needs no lookup");
        list.merge(&lines, 0);
        assert!(list.needs_lookup(&lines[0]), "still without an address");
        let b = uri("sip:dmq-b.example:5090");
        let ips: Vec<IpAddr> = vec!["127.0.0.3".parse().unwrap(), "::1".parse().unwrap()];
        list.set_addresses(&[(b.clone(), ips.clone())]);
        assert_eq!(list.find(&b).unwrap().ips, ips);
        assert!(!list.needs_lookup(&lines[0]), "resolved, same status");
        let renotified = parse_body(b"sip:dmq-b.example:5090;status=disabled").unwrap();
        assert!(list.needs_lookup(&renotified[0]), "a status change looks the name up again");
        // every address counts as the node's, none of the local node's does
        assert!(list.is_remote_ip("127.0.0.3".parse().unwrap()));
        assert!(list.is_remote_ip("::1".parse().unwrap()));
        assert_eq!(list.find(&b).unwrap().ip(), Some("127.0.0.3".parse().unwrap()));
        // a failed lookup keeps what the node had
        list.set_addresses(&[(b.clone(), Vec::new())]);
        assert_eq!(list.find(&b).unwrap().ips, ips);
        assert_eq!(list.named_nodes(), vec![b]);
        assert_eq!(NodeList::decode(&list.encode()), list, "several addresses survive the shm encoding");
    }

    #[test]
    fn fail_counts_walk_a_node_out_as_6_1_does() {
        // 6.1's defaults: not_active after 1 failure, disabled after 2, removed at the 3rd.
        let t = FailThresholds { not_active: 0, disabled: 1 };
        let policy = FailurePolicy { remove_inactive: false, fail_count_threshold: Some(t) };
        let mut list = NodeList::with_local(uri("sip:a:1"));
        list.merge(&parse_body(b"sip:b:1;status=active").unwrap(), 0);
        assert_eq!(list.mark_failed(&uri("sip:b:1"), false, policy), vec![NodeEvent::Inactive(uri("sip:b:1"))]);
        assert_eq!(list.find(&uri("sip:b:1")).unwrap().status, NodeStatus::NotActive);
        assert!(list.mark_failed(&uri("sip:b:1"), false, policy).is_empty());
        assert_eq!(list.find(&uri("sip:b:1")).unwrap().status, NodeStatus::Disabled);
        list.mark_failed(&uri("sip:b:1"), false, policy);
        assert!(list.find(&uri("sip:b:1")).is_none());
    }

    #[test]
    fn others_listing_a_failing_node_active_do_not_reset_its_count() {
        let t = FailThresholds { not_active: 0, disabled: 2 };
        let policy = FailurePolicy { remove_inactive: true, fail_count_threshold: Some(t) };
        let mut list = NodeList::with_local(uri("sip:a:1"));
        let active = parse_body(b"sip:b:1;status=active").unwrap();
        list.merge(&active, 0);
        for _ in 0..3 {
            list.mark_failed(&uri("sip:b:1"), false, policy);
            list.merge(&active, 1);
        }
        assert_eq!(list.find(&uri("sip:b:1")).unwrap().status, NodeStatus::Disabled);
        list.mark_failed(&uri("sip:b:1"), false, policy);
        assert!(list.find(&uri("sip:b:1")).is_none());
    }
}
