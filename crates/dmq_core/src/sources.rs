//! Names in `notification_address`: sources of node addresses, never nodes
//! of their own (issue 26). A name (a Kubernetes headless service, a Consul
//! service, an autoscaling group's record) is looked up again and again;
//! each address it yields is a node (with `multi_notify`: every A/AAAA
//! address and SRV target; without it: one address, kept while the name
//! still lists it). Addresses that appear are added and notified, so
//! groups that formed apart merge; an address the name no longer lists
//! leaves the list when it does not answer (it stays when it does: then it
//! is an ordinary node, which pings keep or drop).
//!
//! This is the policy: when to look a name up again (its TTL, within
//! [`MIN_RECHECK_MS`]..the interval; sooner after a failure), what an
//! answer changes, what that does to the node list, and which listed
//! entries stand for one node (so no node gets a message twice, and this
//! node none). The lookups themselves are the module's.

use std::net::IpAddr;

use crate::discovery::{self, SrvTarget};
use crate::node_status::NodeStatus;
use crate::node_uri::{NodeUri, Transport};
use crate::nodes::{resolve_literal, Node, NodeList};

/// The shortest time between two lookups of one name, whatever its TTL says.
pub const MIN_RECHECK_MS: u64 = 1000;

/// After a failed lookup (no answer, or no records) the name is tried
/// again sooner than its interval: 1 s, 2 s, 4 s, then every this many ms
/// (at most the interval), so a cold start converges within seconds of
/// the records appearing.
pub const MAX_RETRY_MS: u64 = 4000;

/// What one lookup of a name gave: node addresses and the shortest TTL of
/// the records they came from (None: the resolver did not say, e.g. an
/// answer from /etc/hosts). No addresses: the lookup failed or the name
/// has no records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub nodes: Vec<NodeUri>,
    pub ttl_s: Option<u32>,
}

/// A resolver of one record type: the records for a name and their
/// shortest TTL.
pub type Resolver<'a, T> = &'a dyn Fn(&str) -> (Vec<T>, Option<u32>);

/// Looks `name` up with the given resolvers, which return records and
/// their TTL: with `multi` its SRV targets (as [`discovery::expand`]) and
/// its A/AAAA addresses, without it its addresses only. The URIs keep the
/// name's port (or the SRV target's) and transport.
pub fn look_up(name: &NodeUri, multi: bool, srv: Resolver<'_, SrvTarget>, addresses: Resolver<'_, IpAddr>) -> Answer {
    let ttl = std::cell::Cell::new(None::<u32>);
    let note = |t: Option<u32>| {
        if let Some(t) = t {
            ttl.set(Some(ttl.get().map_or(t, |old| old.min(t))));
        }
    };
    let no_srv = |_: &str| -> Vec<SrvTarget> { Vec::new() };
    let srv_records = |n: &str| {
        let (records, t) = srv(n);
        if !records.is_empty() {
            note(t);
        }
        records
    };
    let address_records = |n: &str| {
        let (ips, t) = addresses(n);
        if !ips.is_empty() {
            note(t);
        }
        ips
    };
    let nodes =
        if multi { discovery::expand(name, &srv_records, &address_records) } else { discovery::expand(name, &no_srv, &address_records) };
    Answer { nodes, ttl_s: ttl.get() }
}

/// What one answer changed for its name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// The lookup found nothing: the name's addresses stay as they were
    /// (a DNS outage must not change the cluster).
    pub failed: bool,
    /// Addresses the name lists now and did not before.
    pub appeared: Vec<NodeUri>,
    /// Addresses the name listed before and does not now.
    pub vanished: Vec<NodeUri>,
}

/// One name and what it lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameSource {
    /// The name as configured (`sip:kamailio-headless.ns.svc:5060`).
    pub name: NodeUri,
    /// `multi_notify`: every address is a node; else one.
    pub multi: bool,
    /// The addresses it lists now (what the last successful lookup gave).
    pub listed: Vec<NodeUri>,
    /// When to look it up next (ms, monotonic; 0: at once).
    pub due_ms: u64,
    /// Lookups that failed in a row.
    pub failures: u32,
}

impl NameSource {
    pub fn new(name: NodeUri, multi: bool) -> NameSource {
        NameSource { name, multi, listed: Vec::new(), due_ms: 0, failures: 0 }
    }

    pub fn is_due(&self, now_ms: u64) -> bool {
        now_ms >= self.due_ms
    }

    /// Takes an answer at `now_ms`; `interval_ms` is the longest time
    /// between two lookups; `is_self` tells this node's own address, which
    /// the name may list but which is never one of its nodes (without
    /// `multi_notify` the name's one node is another address, if any).
    /// Returns what changed; schedules the next lookup.
    pub fn apply(&mut self, answer: Answer, now_ms: u64, interval_ms: u64, is_self: impl Fn(&NodeUri) -> bool) -> Change {
        if answer.nodes.is_empty() {
            self.failures = self.failures.saturating_add(1);
            self.due_ms = now_ms.saturating_add(retry_ms(self.failures, interval_ms));
            return Change { failed: true, ..Change::default() };
        }
        self.failures = 0;
        self.due_ms = now_ms.saturating_add(recheck_ms(answer.ttl_s, interval_ms));
        let others: Vec<NodeUri> = answer.nodes.into_iter().filter(|n| !is_self(n)).collect();
        let now = match (self.multi, others.is_empty()) {
            (true, _) => others,
            (false, true) => Vec::new(),
            (false, false) => vec![pick_one(&self.listed, &others)],
        };
        let appeared = now.iter().filter(|n| !self.listed.iter().any(|l| l.same_node(n))).cloned().collect();
        let vanished = self.listed.iter().filter(|l| !now.iter().any(|n| n.same_node(l))).cloned().collect();
        self.listed = now;
        Change { failed: false, appeared, vanished }
    }
}

/// Without `multi_notify` a name stands for one node: the address it had,
/// while the name still lists it (a round-robin answer must not make the
/// node hop between addresses), else the first one.
fn pick_one(listed: &[NodeUri], answer: &[NodeUri]) -> NodeUri {
    answer.iter().find(|a| listed.iter().any(|l| l.same_node(a))).unwrap_or(&answer[0]).clone()
}

/// The wait after a successful lookup: the answer's TTL within
/// [`MIN_RECHECK_MS`]..`interval_ms`, the interval without a TTL.
pub fn recheck_ms(ttl_s: Option<u32>, interval_ms: u64) -> u64 {
    let floor = MIN_RECHECK_MS.min(interval_ms);
    match ttl_s {
        Some(t) => (u64::from(t) * 1000).clamp(floor, interval_ms.max(floor)),
        None => interval_ms.max(floor),
    }
}

/// The wait after the `failures`-th failed lookup in a row.
pub fn retry_ms(failures: u32, interval_ms: u64) -> u64 {
    let backoff = 1000u64 << failures.saturating_sub(1).min(6);
    backoff.min(MAX_RETRY_MS).min(interval_ms.max(MIN_RECHECK_MS))
}

/// Every address the names list now (each once).
pub fn all_listed<'a>(sources: impl IntoIterator<Item = &'a NameSource>) -> Vec<NodeUri> {
    let mut out: Vec<NodeUri> = Vec::new();
    for s in sources {
        for n in &s.listed {
            if !out.iter().any(|o| o.same_node(n)) {
                out.push(n.clone());
            }
        }
    }
    out
}

/// The address, port and transport a node is reached at (None: a name
/// not resolved yet).
fn endpoint(node: &Node) -> Vec<(IpAddr, u16, Transport)> {
    node.ips.iter().map(|ip| (*ip, node.uri.port_no(), node.uri.transport)).collect()
}

/// The entry, other than the one for `uri` itself, that stands for the
/// same node as the address `uri` (an IP literal): this node, or a node
/// listed under a name that resolves to that address, same port and
/// transport. The name a node announces itself with wins over the address
/// a DNS name gave for it.
pub fn same_node_as<'a>(list: &'a NodeList, uri: &NodeUri) -> Option<&'a Node> {
    if let Some(local) = list.find(uri).filter(|n| n.local) {
        return Some(local);
    }
    let ip = resolve_literal(&uri.host)?;
    list.nodes.iter().filter(|n| !n.uri.same_node(uri)).find(|n| endpoint(n).contains(&(ip, uri.port_no(), uri.transport)))
}

/// What applying the names' addresses did to the node list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Added (pending): to be notified now.
    pub added: Vec<NodeUri>,
    /// Removed: gone from the names and not answering.
    pub removed: Vec<NodeUri>,
    /// Not added: the list is full.
    pub refused: usize,
}

/// Applies the names' addresses to the node list: every address they list
/// that is not a node yet, not this node and not a node listed under
/// another name becomes a node (pending: notified, then active once it
/// answers). An address that `vanished` from its name (and no other name
/// lists) leaves the list unless it is active: a node that answers stays,
/// and pings then keep or drop it as any other node.
pub fn reconcile(list: &mut NodeList, listed: &[NodeUri], vanished: &[NodeUri]) -> Reconciled {
    let mut out = Reconciled::default();
    for uri in listed {
        if list.find(uri).is_some() || same_node_as(list, uri).is_some() {
            continue;
        }
        if list.add(uri.clone()) {
            out.added.push(uri.clone());
        } else {
            out.refused += 1;
        }
    }
    for uri in vanished {
        if listed.iter().any(|l| l.same_node(uri)) {
            continue;
        }
        let silent = list.find(uri).is_some_and(|n| !n.local && n.status != NodeStatus::Active);
        if silent && list.remove(uri) {
            out.removed.push(uri.clone());
        }
    }
    out.removed.extend(drop_duplicates(list, listed));
    out
}

/// Removes the entries for addresses the names gave that another entry
/// stands for (see [`same_node_as`]); returns them.
pub fn drop_duplicates(list: &mut NodeList, listed: &[NodeUri]) -> Vec<NodeUri> {
    let dups = duplicates(list, listed);
    for uri in &dups {
        list.remove(uri);
    }
    dups
}

/// The entries [`drop_duplicates`] would remove: this node under another
/// host (see [`is_this_node`]), and addresses the names gave that another
/// entry stands for.
pub fn duplicates(list: &NodeList, listed: &[NodeUri]) -> Vec<NodeUri> {
    let mut out: Vec<NodeUri> = list.nodes.iter().filter(|n| is_this_node(list, n)).map(|n| n.uri.clone()).collect();
    for uri in listed {
        if list.find(uri).is_some_and(|n| !n.local) && same_node_as(list, uri).is_some() && !out.iter().any(|o| o.same_node(uri)) {
            out.push(uri.clone());
        }
    }
    out
}

/// Whether a remote entry is reached at this node's own address, port and
/// transport (a name that resolves to this node, say).
pub fn is_this_node(list: &NodeList, node: &Node) -> bool {
    let local = list.local().map(endpoint).unwrap_or_default();
    !node.local && endpoint(node).iter().any(|e| local.contains(e))
}

/// The remote nodes messages go to (active ones, or all with
/// `include_inactive`), each node once: an entry reached at the same
/// address, port and transport as this node or as an earlier entry is
/// skipped (a node listed twice, under its name and an address, or a name
/// that resolves to this node gets nothing).
pub fn distinct_targets(list: &NodeList, include_inactive: bool) -> Vec<&Node> {
    let mut seen: Vec<(IpAddr, u16, Transport)> = list.local().map(endpoint).unwrap_or_default();
    let mut out: Vec<&Node> = Vec::new();
    for node in list.target_nodes(include_inactive) {
        let ends = endpoint(node);
        if ends.iter().any(|e| seen.contains(e)) || out.iter().any(|o| o.uri.same_node(&node.uri)) {
            continue;
        }
        seen.extend(ends);
        out.push(node);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_uri::parse_node_line;
    use crate::notification::parse_body;

    fn uri(s: &str) -> NodeUri {
        parse_node_line(s).unwrap().uri
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn answer(nodes: &[&str], ttl: Option<u32>) -> Answer {
        Answer { nodes: nodes.iter().map(|n| uri(n)).collect(), ttl_s: ttl }
    }

    #[test]
    fn a_lookup_gives_addresses_with_the_shortest_ttl() {
        let name = uri("sip:dmq.svc:5060");
        let srv = |n: &str| {
            assert_eq!(n, "dmq.svc");
            (vec![("pod-a.svc".to_string(), 5060)], Some(30))
        };
        let addresses = |n: &str| match n {
            "pod-a.svc" => (vec![ip("10.0.0.1")], Some(20)),
            "dmq.svc" => (vec![ip("10.0.0.1"), ip("10.0.0.2")], Some(5)),
            _ => (Vec::new(), None),
        };
        let got = look_up(&name, true, &srv, &addresses);
        assert_eq!(got, answer(&["sip:10.0.0.1:5060", "sip:10.0.0.2:5060"], Some(5)));
        // without multi_notify: no SRV, addresses only
        let got = look_up(&name, false, &|_| panic!("no SRV without multi_notify"), &addresses);
        assert_eq!(got.nodes.len(), 2);
        // /etc/hosts gives no TTL; no records give nothing
        let got = look_up(&name, true, &|_| (Vec::new(), None), &|_| (vec![ip("10.0.0.9")], None));
        assert_eq!(got, answer(&["sip:10.0.0.9:5060"], None));
        assert_eq!(look_up(&name, true, &|_| (Vec::new(), None), &|_| (Vec::new(), Some(1))), Answer::default());
    }

    fn nobody(_: &NodeUri) -> bool {
        false
    }

    #[test]
    fn this_node_is_never_one_of_the_names_nodes() {
        let me = |n: &NodeUri| n.same_node(&uri("sip:10.0.0.1:5060"));
        let mut s = NameSource::new(uri("sip:dmq.svc:5060"), false);
        s.apply(answer(&["sip:10.0.0.1:5060", "sip:10.0.0.2:5060"], None), 0, 30_000, me);
        assert_eq!(s.listed, vec![uri("sip:10.0.0.2:5060")], "without multi_notify: another address");
        let c = s.apply(answer(&["sip:10.0.0.1:5060"], None), 1, 30_000, me);
        assert!(!c.failed && s.listed.is_empty(), "only this node: an answer, no node");
        let mut s = NameSource::new(uri("sip:dmq.svc:5060"), true);
        s.apply(answer(&["sip:10.0.0.1:5060", "sip:10.0.0.2:5060", "sip:10.0.0.3:5060"], None), 0, 30_000, me);
        assert_eq!(s.listed.len(), 2);
    }

    #[test]
    fn answers_add_and_drop_addresses_and_schedule_the_next_lookup() {
        let mut s = NameSource::new(uri("sip:dmq.svc:5060"), true);
        assert!(s.is_due(0));
        let c = s.apply(answer(&["sip:10.0.0.1:5060", "sip:10.0.0.2:5060"], Some(5)), 1000, 30_000, nobody);
        assert_eq!(c.appeared.len(), 2);
        assert_eq!(s.due_ms, 6000, "the TTL decides");
        let c = s.apply(answer(&["sip:10.0.0.2:5060", "sip:10.0.0.3:5060"], Some(300)), 6000, 30_000, nobody);
        assert_eq!(c.appeared, vec![uri("sip:10.0.0.3:5060")]);
        assert_eq!(c.vanished, vec![uri("sip:10.0.0.1:5060")]);
        assert_eq!(s.due_ms, 36_000, "at most the interval");
        // a failure changes nothing but the schedule: 1 s, 2 s, 4 s, 4 s
        for (i, wait) in [1000, 2000, 4000, 4000].into_iter().enumerate() {
            let c = s.apply(Answer::default(), 40_000, 30_000, nobody);
            assert!(c.failed && c.appeared.is_empty() && c.vanished.is_empty());
            assert_eq!(s.due_ms, 40_000 + wait, "failure {}", i + 1);
        }
        assert_eq!(s.listed.len(), 2);
        let c = s.apply(answer(&["sip:10.0.0.2:5060", "sip:10.0.0.3:5060"], Some(0)), 50_000, 30_000, nobody);
        assert_eq!((c.appeared.len(), c.vanished.len(), s.failures), (0, 0, 0));
        assert_eq!(s.due_ms, 51_000, "a TTL of 0 waits the floor");
    }

    #[test]
    fn without_multi_notify_a_name_is_one_node_that_does_not_hop() {
        let mut s = NameSource::new(uri("sip:dmq.svc:5060"), false);
        s.apply(answer(&["sip:10.0.0.1:5060", "sip:10.0.0.2:5060"], None), 0, 30_000, nobody);
        assert_eq!(s.listed, vec![uri("sip:10.0.0.1:5060")]);
        // round robin: the same address, listed second now, is kept
        let c = s.apply(answer(&["sip:10.0.0.2:5060", "sip:10.0.0.1:5060"], None), 1, 30_000, nobody);
        assert_eq!((c.appeared.len(), c.vanished.len()), (0, 0));
        // gone: the name's node is the address it gives now
        let c = s.apply(answer(&["sip:10.0.0.3:5060", "sip:10.0.0.2:5060"], None), 2, 30_000, nobody);
        assert_eq!(c.appeared, vec![uri("sip:10.0.0.3:5060")]);
        assert_eq!(c.vanished, vec![uri("sip:10.0.0.1:5060")]);
    }

    #[test]
    fn schedules_stay_within_their_bounds() {
        assert_eq!(recheck_ms(None, 30_000), 30_000);
        assert_eq!(recheck_ms(Some(5), 30_000), 5000);
        assert_eq!(recheck_ms(Some(u32::MAX), 30_000), 30_000);
        assert_eq!(recheck_ms(Some(0), 500), 500, "an interval under the floor wins");
        assert_eq!(retry_ms(1, 30_000), 1000);
        assert_eq!(retry_ms(u32::MAX, 30_000), MAX_RETRY_MS);
        assert_eq!(retry_ms(3, 2000), 2000);
    }

    fn cluster() -> NodeList {
        let mut list = NodeList::with_local(uri("sip:10.0.0.1:5060"));
        list.merge(&parse_body(b"sip:10.0.0.2:5060;status=active").unwrap(), 0);
        list
    }

    #[test]
    fn new_addresses_are_added_once_and_never_this_node() {
        let mut list = cluster();
        let listed: Vec<NodeUri> = ["sip:10.0.0.1:5060", "sip:10.0.0.2:5060", "sip:10.0.0.3:5060"].iter().map(|s| uri(s)).collect();
        let r = reconcile(&mut list, &listed, &[]);
        assert_eq!(r.added, vec![uri("sip:10.0.0.3:5060")]);
        assert_eq!(list.nodes.len(), 3);
        assert_eq!(list.find(&uri("sip:10.0.0.3:5060")).unwrap().status, NodeStatus::Pending);
        assert!(reconcile(&mut list, &listed, &[]).added.is_empty(), "added once");
        // a node removed meanwhile (dmq.remove, missed pings) comes back while listed
        list.remove(&uri("sip:10.0.0.3:5060"));
        assert_eq!(reconcile(&mut list, &listed, &[]).added.len(), 1);
    }

    #[test]
    fn vanished_addresses_leave_only_when_silent() {
        let mut list = cluster();
        reconcile(&mut list, &[uri("sip:10.0.0.3:5060")], &[]);
        let vanished = [uri("sip:10.0.0.2:5060"), uri("sip:10.0.0.3:5060")];
        let r = reconcile(&mut list, &[], &vanished);
        assert_eq!(r.removed, vec![uri("sip:10.0.0.3:5060")], "pending, never answered");
        assert!(list.find(&uri("sip:10.0.0.2:5060")).is_some(), "active: it answers, it stays");
        // another name still lists it: it stays
        let mut list = cluster();
        reconcile(&mut list, &[uri("sip:10.0.0.3:5060")], &[]);
        assert!(reconcile(&mut list, &[uri("sip:10.0.0.3:5060")], &[uri("sip:10.0.0.3:5060")]).removed.is_empty());
    }

    #[test]
    fn a_node_known_by_its_own_name_is_not_listed_again_by_address() {
        let mut list = NodeList::with_local(uri("sip:10.0.0.1:5060"));
        list.merge(&parse_body(b"sip:pod-b.svc:5060;status=active").unwrap(), 0);
        list.set_addresses(&[(uri("sip:pod-b.svc:5060"), vec![ip("10.0.0.2")])]);
        let listed = [uri("sip:10.0.0.2:5060"), uri("sip:10.0.0.2:5070"), uri("sip:10.0.0.2:5060;transport=tcp")];
        let r = reconcile(&mut list, &listed, &[]);
        assert_eq!(r.added, listed[1..].to_vec(), "another port or transport is another node");
        // added by address first, then the node announced itself by name
        let mut list = NodeList::with_local(uri("sip:10.0.0.1:5060"));
        reconcile(&mut list, &listed[..1], &[]);
        list.merge(&parse_body(b"sip:pod-b.svc:5060;status=active").unwrap(), 0);
        assert!(duplicates(&list, &listed[..1]).is_empty(), "not resolved yet: not known as the same");
        list.set_addresses(&[(uri("sip:pod-b.svc:5060"), vec![ip("10.0.0.2")])]);
        assert_eq!(drop_duplicates(&mut list, &listed[..1]), vec![listed[0].clone()]);
        // a name that resolves to this node is this node: dropped, with or without names
        list.merge(&parse_body(b"sip:me.svc:5060;status=active").unwrap(), 0);
        list.set_addresses(&[(uri("sip:me.svc:5060"), vec![ip("10.0.0.1")])]);
        assert_eq!(drop_duplicates(&mut list, &[]), vec![uri("sip:me.svc:5060")]);
        assert_eq!(list.nodes.len(), 2);
        assert!(list.find(&uri("sip:pod-b.svc:5060")).is_some());
    }

    #[test]
    fn every_node_gets_one_copy_and_this_node_none() {
        let mut list = NodeList::with_local(uri("sip:node-a.svc:5060"));
        list.set_addresses(&[(uri("sip:node-a.svc:5060"), vec![ip("10.0.0.1")])]);
        list.merge(
            &parse_body(
                b"sip:10.0.0.1:5060;status=active\r\nsip:10.0.0.2:5060;status=active\r\nsip:node-b.svc:5060;status=active\r\n\
                  sip:10.0.0.3:5060;status=active\r\nsip:10.0.0.3:5060;transport=tcp;status=active\r\nsip:node-x.svc:5060;status=active",
            )
            .unwrap(),
            0,
        );
        list.set_addresses(&[(uri("sip:node-b.svc:5060"), vec![ip("10.0.0.2")])]);
        let targets: Vec<String> = distinct_targets(&list, false).iter().map(|n| n.uri.to_uri()).collect();
        assert_eq!(
            targets,
            vec!["sip:10.0.0.2:5060", "sip:10.0.0.3:5060", "sip:10.0.0.3:5060;transport=tcp", "sip:node-x.svc:5060"],
            "this node's address and node-b (10.0.0.2 again) are skipped; unresolved names are kept"
        );
    }
}
