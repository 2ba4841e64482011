//! `modparam("dmq", "notification_address", …)` values split into seeds
//! and names. A value written as an address is a seed: a notification
//! address, notified at startup and kept in the node list for good (never
//! this node itself, each node once). A value written as a host name is
//! a name: never a node, but a source of node addresses that the DMQ DNS
//! process looks up again and again (`sources`; each name once).

use std::fmt;

use crate::node_uri::{parse_node_line, NodeUri, ParseError};
use crate::nodes::is_name;

/// The `notification_address` values, split.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotificationAddresses {
    /// Literal addresses: notification addresses (this node left out).
    pub seeds: Vec<NodeUri>,
    /// Host names: looked up by DNS for the addresses they list.
    pub names: Vec<NodeUri>,
}

/// A value that is not a node URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadAddress {
    pub value: String,
    pub error: ParseError,
}

impl fmt::Display for BadAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "modparam(\"dmq\", \"notification_address\"): {:?}: {}", self.value, self.error)
    }
}

impl std::error::Error for BadAddress {}

/// Splits the `notification_address` values of a node whose own URI is
/// `local`, in the order given, without repeats.
pub fn split(values: &[String], local: &NodeUri) -> Result<NotificationAddresses, BadAddress> {
    let mut split = NotificationAddresses::default();
    for value in values {
        let uri = parse_node_line(value).map_err(|error| BadAddress { value: value.clone(), error })?.uri;
        let (list, own) = if is_name(&uri.host) { (&mut split.names, false) } else { (&mut split.seeds, uri.same_node(local)) };
        if !own && !list.iter().any(|n| n.same_node(&uri)) {
            list.push(uri);
        }
    }
    Ok(split)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> NodeUri {
        parse_node_line(s).unwrap().uri
    }

    fn values(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn addresses_are_seeds_and_names_are_looked_up() {
        let local = uri("sip:10.0.0.1:5060");
        let got = split(&values(&["sip:10.0.0.2:5060", "sip:dmq.svc.cluster.local:5060", "sip:[2001:db8::3]:5060"]), &local).unwrap();
        assert_eq!(got.seeds, vec![uri("sip:10.0.0.2:5060"), uri("sip:[2001:db8::3]:5060")]);
        assert_eq!(got.names, vec![uri("sip:dmq.svc.cluster.local:5060")]);
    }

    #[test]
    fn this_node_is_no_seed_and_each_entry_counts_once() {
        let local = uri("sip:10.0.0.1:5060");
        let got = split(
            &values(&[
                "sip:10.0.0.1:5060",
                "sip:10.0.0.2",
                "sip:10.0.0.2:5060",
                "sip:dmq.svc:5060",
                "sip:DMQ.svc:5060",
                "sip:10.0.0.3:5060",
            ]),
            &local,
        )
        .unwrap();
        assert_eq!(got.seeds, vec![uri("sip:10.0.0.2"), uri("sip:10.0.0.3:5060")], "the first of two ways to write a node");
        assert_eq!(got.names.len(), 1);
    }

    #[test]
    fn another_transport_or_port_of_this_node_is_a_seed() {
        let local = uri("sip:10.0.0.1:5060");
        let got = split(&values(&["sip:10.0.0.1:5060;transport=tcp", "sip:10.0.0.1:5070"]), &local).unwrap();
        assert_eq!(got.seeds.len(), 2);
    }

    #[test]
    fn a_name_is_kept_even_when_it_may_list_this_node() {
        // A headless service's name lists every pod, this one included:
        // the DNS process drops this node from what it lists.
        let local = uri("sip:pod-a.svc:5060");
        assert_eq!(split(&values(&["sip:pod-a.svc:5060"]), &local).unwrap().names, vec![local]);
    }

    #[test]
    fn a_value_that_is_no_node_uri_is_refused_with_its_text() {
        let local = uri("sip:10.0.0.1:5060");
        let err = split(&values(&["sip:10.0.0.2:5060", "http://x"]), &local).unwrap_err();
        assert_eq!(err.value, "http://x");
        assert_eq!(err.to_string(), "modparam(\"dmq\", \"notification_address\"): \"http://x\": not a sip: URI");
        assert_eq!(split(&[], &local).unwrap(), NotificationAddresses::default());
    }
}
