//! `multi_notify`: one notification address standing for many nodes. The
//! host is looked up as an SRV name (targets whose port matches the URI's,
//! when it gives one), and its A/AAAA addresses are added; every address
//! becomes a node URI with the original port and transport. The lookups
//! are passed in, so this is testable without DNS.

use std::net::IpAddr;

use crate::node_uri::NodeUri;
use crate::nodes::resolve_literal;

/// At most this many nodes from one address (the stock module's MAXDMQHOSTS).
pub const MAX_HOSTS: usize = 30;

/// An SRV answer: target host and port.
pub type SrvTarget = (String, u16);

/// Expands `uri` into node URIs. An IP literal is itself; a name that
/// resolves to nothing yields nothing (the caller keeps the name then).
pub fn expand(uri: &NodeUri, srv: &dyn Fn(&str) -> Vec<SrvTarget>, addresses: &dyn Fn(&str) -> Vec<IpAddr>) -> Vec<NodeUri> {
    if resolve_literal(&uri.host).is_some() {
        return vec![uri.clone()];
    }
    let mut out: Vec<NodeUri> = Vec::new();
    let mut push = |ip: IpAddr, port: String| {
        let host = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        let node = NodeUri { host, port, transport: uri.transport };
        if out.len() < MAX_HOSTS && !out.iter().any(|n| n.same_node(&node)) {
            out.push(node);
        }
    };
    let wanted_port: Option<u16> = uri.port.parse().ok();
    for (target, port) in srv(&uri.host) {
        if wanted_port.is_some_and(|p| p != port) {
            continue;
        }
        for ip in addresses(&target) {
            push(ip, port.to_string());
        }
    }
    for ip in addresses(&uri.host) {
        push(ip, uri.port.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_uri::parse_node_line;

    fn uri(s: &str) -> NodeUri {
        parse_node_line(s).unwrap().uri
    }

    fn no_srv(_: &str) -> Vec<SrvTarget> {
        Vec::new()
    }

    #[test]
    fn ip_literals_stay_as_they_are() {
        let u = uri("sip:127.0.0.2:5090");
        assert_eq!(expand(&u, &no_srv, &|_| panic!("no lookup for literals")), vec![u]);
    }

    #[test]
    fn a_and_aaaa_records_become_nodes_with_the_same_port_and_transport() {
        let got = expand(&uri("sip:dmq.example:5090;transport=tcp"), &no_srv, &|h| {
            assert_eq!(h, "dmq.example");
            vec!["10.0.0.1".parse().unwrap(), "10.0.0.1".parse().unwrap(), "2001:db8::1".parse().unwrap()]
        });
        assert_eq!(got, vec![uri("sip:10.0.0.1:5090;transport=tcp"), uri("sip:[2001:db8::1]:5090;transport=tcp")]);
    }

    #[test]
    fn srv_targets_with_a_matching_port_are_resolved() {
        let srv = |name: &str| {
            assert_eq!(name, "_sip._udp.dmq.example");
            vec![("n1.example".to_string(), 5090), ("n2.example".to_string(), 5090), ("other".to_string(), 7000)]
        };
        let addresses = |h: &str| match h {
            "n1.example" => vec!["10.0.0.1".parse().unwrap()],
            "n2.example" => vec!["10.0.0.2".parse().unwrap()],
            "other" => vec!["10.0.0.3".parse().unwrap()],
            _ => Vec::new(),
        };
        let got = expand(&uri("sip:_sip._udp.dmq.example:5090"), &srv, &addresses);
        assert_eq!(got, vec![uri("sip:10.0.0.1:5090"), uri("sip:10.0.0.2:5090")]);
        let any_port = expand(&uri("sip:_sip._udp.dmq.example"), &srv, &addresses);
        assert_eq!(any_port.len(), 3);
        assert_eq!(any_port[2], uri("sip:10.0.0.3:7000"));
    }

    #[test]
    fn expansion_is_capped() {
        let many: Vec<IpAddr> = (0..100u8).map(|i| IpAddr::from([10, 0, 1, i])).collect();
        assert_eq!(expand(&uri("sip:big.example:5060"), &no_srv, &|_| many.clone()).len(), MAX_HOSTS);
    }
}
