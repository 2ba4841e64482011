//! Upstream's peer events (`event_route[dmq:peer-up]`, `[dmq:peer-down]`,
//! `[dmq:peer-disabled]`, or the `event_callback` KEMI function), and the
//! operator's changes to the node list (`dmq.add`, `dmq.change_status`).
//!
//! Peer events are found by comparing the node list before and after each
//! change, under the node-list lock: every change of the shared list passes
//! there exactly once, so each transition is reported once, by the process
//! that made it, whatever made it (a ping, a notification, a timeout, an RPC).

use crate::node_status::NodeStatus;
use crate::node_uri::{self, NodeUri};
use crate::nodes::{NodeList, MAX_NODES};

/// One of upstream's three peer events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerEvent {
    /// A remote node became active, or was added as active.
    Up,
    /// A remote node went from active to not active (not to disabled).
    Down,
    /// A remote node became disabled.
    Disabled,
}

impl PeerEvent {
    /// The event route's name, and what `event_callback` receives.
    pub fn name(self) -> &'static str {
        match self {
            PeerEvent::Up => "dmq:peer-up",
            PeerEvent::Down => "dmq:peer-down",
            PeerEvent::Disabled => "dmq:peer-disabled",
        }
    }

    pub const ALL: [PeerEvent; 3] = [PeerEvent::Up, PeerEvent::Down, PeerEvent::Disabled];
}

/// The event one node's status change makes (`None`: absent from the list).
/// Like upstream: after `disabled` only `peer-up` is announced again, and
/// a node that was never active is not announced `down`.
pub fn transition(before: Option<NodeStatus>, after: Option<NodeStatus>) -> Option<PeerEvent> {
    use NodeStatus::*;
    match (before, after) {
        (b, Some(Active)) if b != Some(Active) => Some(PeerEvent::Up),
        (b, Some(Disabled)) if b != Some(Disabled) => Some(PeerEvent::Disabled),
        // active → not_active, timeout, pending, or dropped from the list
        (Some(Active), Some(NotActive | Timeout | Pending) | None) => Some(PeerEvent::Down),
        _ => None,
    }
}

/// Every remote node's event between two versions of the list, in the
/// order of `after` (nodes that left it last).
pub fn diff(before: &NodeList, after: &NodeList) -> Vec<(PeerEvent, NodeUri)> {
    let mut events = Vec::new();
    for node in after.nodes.iter().filter(|n| !n.local) {
        let old = before.find(&node.uri).filter(|n| !n.local).map(|n| n.status);
        if let Some(e) = transition(old, Some(node.status)) {
            events.push((e, node.uri.clone()));
        }
    }
    for node in before.nodes.iter().filter(|n| !n.local) {
        if after.find(&node.uri).is_none() {
            if let Some(e) = transition(Some(node.status), None) {
                events.push((e, node.uri.clone()));
            }
        }
    }
    events
}

/// A status word `dmq.change_status` takes (upstream's three).
pub fn parse_status_word(word: &str) -> Option<NodeStatus> {
    match word.trim() {
        "active" => Some(NodeStatus::Active),
        "not_active" => Some(NodeStatus::NotActive),
        "disabled" => Some(NodeStatus::Disabled),
        _ => None,
    }
}

/// Why an operator's change was refused (the RPC fault's text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeError {
    BadAddress,
    BadStatus,
    NotFound,
    Local,
    AlreadyAdded,
    Full,
}

impl ChangeError {
    pub fn message(&self) -> &'static str {
        match self {
            ChangeError::BadAddress => "Invalid Parameters - address must be a SIP URI (sip:host[:port][;transport=…])",
            ChangeError::BadStatus => "Invalid Status - use: active, not_active, disabled",
            ChangeError::NotFound => "Node Not Found",
            ChangeError::Local => "Node is local",
            ChangeError::AlreadyAdded => "Node is already added",
            ChangeError::Full => "Node list is full",
        }
    }
}

/// The node an RPC names: a SIP URI (with `sip:`), nothing else.
pub fn parse_address(address: &str) -> Result<NodeUri, ChangeError> {
    let address = address.trim();
    if !address.starts_with("sip:") && !address.starts_with("sips:") {
        return Err(ChangeError::BadAddress);
    }
    let line = node_uri::parse_node_line(address).map_err(|_| ChangeError::BadAddress)?;
    if line.status.is_some() || line.uri.host.is_empty() {
        return Err(ChangeError::BadAddress);
    }
    Ok(line.uri)
}

/// `dmq.add`: the node joins the list as pending (the next notification
/// to it makes it active).
pub fn add(list: &mut NodeList, uri: &NodeUri) -> Result<(), ChangeError> {
    if list.find(uri).is_some() {
        return Err(ChangeError::AlreadyAdded);
    }
    if list.nodes.len() >= MAX_NODES {
        return Err(ChangeError::Full);
    }
    list.add(uri.clone());
    Ok(())
}

/// `dmq.change_status`: Ok(true) when the status changed, Ok(false) when it
/// was already that.
pub fn change_status(list: &mut NodeList, uri: &NodeUri, status: NodeStatus) -> Result<bool, ChangeError> {
    let node = list.nodes.iter_mut().find(|n| n.uri.same_node(uri)).ok_or(ChangeError::NotFound)?;
    if node.local {
        return Err(ChangeError::Local);
    }
    if node.status == status {
        return Ok(false);
    }
    node.status = status;
    if status == NodeStatus::Active {
        node.fail_count = 0;
    }
    Ok(true)
}

/// `modparam("dmq", "event_callback", …)`: a KEMI function name, or unset.
pub fn check_callback_name(name: &str) -> Result<Option<String>, String> {
    let name = name.trim();
    if name.is_empty() {
        return Ok(None);
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
        return Err(format!("{name:?} is not a function name"));
    }
    Ok(Some(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use NodeStatus::*;

    fn uri(s: &str) -> NodeUri {
        node_uri::parse_node_line(s).unwrap().uri
    }

    fn list(nodes: &[(&str, NodeStatus)]) -> NodeList {
        let mut l = NodeList::with_local(uri("sip:127.0.3.1:5060"));
        for (u, s) in nodes {
            l.add(uri(u));
            l.nodes.last_mut().unwrap().status = *s;
        }
        l
    }

    #[test]
    fn transitions_follow_upstream() {
        assert_eq!(transition(None, Some(Active)), Some(PeerEvent::Up));
        assert_eq!(transition(Some(Pending), Some(Active)), Some(PeerEvent::Up));
        assert_eq!(transition(Some(Disabled), Some(Active)), Some(PeerEvent::Up));
        assert_eq!(transition(Some(Active), Some(Active)), None);
        assert_eq!(transition(Some(Active), Some(NotActive)), Some(PeerEvent::Down));
        assert_eq!(transition(Some(Active), Some(Pending)), Some(PeerEvent::Down));
        assert_eq!(transition(Some(Active), None), Some(PeerEvent::Down));
        assert_eq!(transition(Some(Active), Some(Disabled)), Some(PeerEvent::Disabled));
        assert_eq!(transition(Some(NotActive), Some(Disabled)), Some(PeerEvent::Disabled));
        // never active: no down; after disabled only up
        assert_eq!(transition(Some(Pending), Some(NotActive)), None);
        assert_eq!(transition(Some(Disabled), Some(NotActive)), None);
        assert_eq!(transition(Some(Disabled), None), None);
        assert_eq!(transition(None, Some(Pending)), None);
    }

    #[test]
    fn diff_reports_each_remote_change_once() {
        let before = list(&[("sip:127.0.3.2:5060", Pending), ("sip:127.0.3.3:5060", Active), ("sip:127.0.3.4:5060", Active)]);
        let mut after = before.clone();
        after.nodes[1].status = Active;
        after.nodes[2].status = Disabled;
        after.remove(&uri("sip:127.0.3.4:5060"));
        after.add(uri("sip:127.0.3.5:5060"));
        let events = diff(&before, &after);
        assert_eq!(
            events,
            vec![
                (PeerEvent::Up, uri("sip:127.0.3.2:5060")),
                (PeerEvent::Disabled, uri("sip:127.0.3.3:5060")),
                (PeerEvent::Down, uri("sip:127.0.3.4:5060")),
            ]
        );
        assert!(diff(&after, &after).is_empty());
    }

    #[test]
    fn local_node_never_reported() {
        let before = list(&[]);
        let mut after = before.clone();
        after.nodes[0].status = Disabled;
        assert!(diff(&before, &after).is_empty());
    }

    #[test]
    fn operator_changes() {
        let mut l = list(&[("sip:127.0.3.2:5060", Active)]);
        assert_eq!(add(&mut l, &uri("sip:127.0.3.2:5060")), Err(ChangeError::AlreadyAdded));
        assert_eq!(add(&mut l, &uri("sip:127.0.3.6:5060")), Ok(()));
        assert_eq!(l.find(&uri("sip:127.0.3.6:5060")).unwrap().status, Pending);
        assert_eq!(change_status(&mut l, &uri("sip:127.0.3.2:5060"), Disabled), Ok(true));
        assert_eq!(change_status(&mut l, &uri("sip:127.0.3.2:5060"), Disabled), Ok(false));
        assert_eq!(change_status(&mut l, &uri("sip:127.0.3.1:5060"), Disabled), Err(ChangeError::Local));
        assert_eq!(change_status(&mut l, &uri("sip:127.0.3.9:5060"), Active), Err(ChangeError::NotFound));
        assert_eq!(parse_status_word("bogus"), None);
        assert_eq!(parse_status_word("not_active"), Some(NotActive));
        assert!(parse_address("127.0.0.1").is_err());
        assert!(parse_address("sip:").is_err());
        assert!(parse_address("sip:127.0.3.2:5060").is_ok());
        assert!(check_callback_name("ksr_dmq_event").unwrap().is_some());
        assert!(check_callback_name("").unwrap().is_none());
        assert!(check_callback_name("a b").is_err());
    }
}
