//! The DMQ DNS process (issue 26): every DNS lookup the module makes while
//! it runs happens here, in a process of its own.
//!
//! A lookup blocks until the DNS server answers or the resolver gives up
//! (seconds when the server is gone). In a SIP worker that would stall
//! SIP; in the core's timer process every module's timers (tm's
//! retransmissions, our pings); in the DMQ retransmission timer the
//! in-flight resends and heal syncs. Here it delays nothing but the next
//! lookup. The process ticks every 200 ms and, when something is due:
//! - looks up the names in `notification_address` (`dmq_core::sources`:
//!   at the answer's TTL, at most every `dns_interval`, sooner after a
//!   failure), publishes what they list (`name_sources`), adds the new
//!   addresses to the node list and notifies them (groups that formed
//!   apart merge; `heal` then syncs them), and drops addresses that left
//!   their name and do not answer;
//! - resolves nodes listed by host name: new ones at once, all of them
//!   again every ping interval (a node may move); with `trusted_network`,
//!   looks up and judges the new named nodes notifications brought
//!   (`node_admission::merge_deferred`) before they are listed;
//! - drops entries that stand for a node listed under another name.
//!
//! No lock is held during a lookup or a send.

use std::cell::{Cell, RefCell};
use std::net::IpAddr;

use dmq_core::node_uri::NodeUri;
use dmq_core::sources::{self, NameSource};

use kamailio::clock::monotonic_ms;
use kamailio::dns;
use kamailio::process;

use crate::event_counts::{self, EventCount};
use crate::shared::{shared, Shared};
use crate::{name_sources, node_admission, node_list, notifications};

/// How often the process looks for due work.
const TICK_US: u32 = 200_000;

thread_local! {
    /// The names and what they list: set in mod_init (inherited by the
    /// fork), used by the DNS process alone.
    static SOURCES: RefCell<Vec<NameSource>> = const { RefCell::new(Vec::new()) };
    /// When the DNS process last resolved every named node.
    static NAMED_REFRESHED: Cell<u64> = const { Cell::new(0) };
    /// The names that answered a lookup with addresses at least once.
    static ANSWERED: RefCell<Vec<NodeUri>> = const { RefCell::new(Vec::new()) };
}

/// mod_init: the names to look up, and the DNS process.
pub fn init(m: &Shared, names: Vec<NodeUri>, multi: bool) -> Result<(), String> {
    for name in &names {
        log::info!(
            "notification_address {name} is a name: its {} the node(s), looked up again at least every dns_interval",
            if multi { "addresses (SRV, A, AAAA) are" } else { "address is" }
        );
    }
    m.names.unanswered.store(names.len(), std::sync::atomic::Ordering::Relaxed);
    SOURCES.with(|s| *s.borrow_mut() = names.into_iter().map(|n| NameSource::new(n, multi)).collect());
    process::register_timer_process().map_err(|e| format!("the DMQ DNS process: {e}"))
}

/// child_init(PROC_MAIN): forks the DNS process.
pub fn start() -> Result<(), String> {
    process::fork_timer_process(c"DMQ DNS", TICK_US, tick).map_err(|e| e.to_string())
}

fn tick() {
    let Some(m) = shared() else { return };
    look_up_names(m);
    node_admission::merge_deferred(m);
    resolve_named_nodes(m);
    drop_duplicates(m);
}

/// Looks up the names that are due and applies what they list.
fn look_up_names(m: &Shared) {
    let now = monotonic_ms();
    let due: Vec<NameSource> = SOURCES.with(|s| s.borrow().iter().filter(|x| x.is_due(now)).cloned().collect());
    if due.is_empty() {
        return;
    }
    let interval_ms = u64::from(m.config.dns_interval) * 1000;
    // This node, as the names may list it (its address, or its name's).
    let local = node_list::read_nodes(m, |l| l.local().cloned());
    let is_self = |n: &NodeUri| {
        local.as_ref().is_some_and(|l| {
            l.uri.same_node(n)
                || dmq_core::nodes::resolve_literal(&n.host)
                    .is_some_and(|ip| l.ips.contains(&ip) && l.uri.port_no() == n.port_no() && l.uri.transport == n.transport)
        })
    };
    let mut vanished: Vec<NodeUri> = Vec::new();
    for source in due {
        let answer = dmq_core::sources::look_up(&source.name, source.multi, &dns::srv_with_ttl, &dns::addresses_with_ttl);
        event_counts::add(m, EventCount::DnsLookups);
        let found = answer.nodes.clone();
        let Some((change, failures, first)) = SOURCES.with(|s| {
            let mut s = s.borrow_mut();
            let x = s.iter_mut().find(|x| x.name == source.name)?;
            let first = x.listed.is_empty();
            Some((x.apply(answer, monotonic_ms(), interval_ms, is_self), x.failures, first))
        }) else {
            continue;
        };
        if change.failed {
            event_counts::add(m, EventCount::DnsFailures);
            // The first failure of a run, then every tenth: a name without
            // records yet (a cold start) or a DNS server that is gone.
            if failures == 1 || failures % 10 == 0 {
                log::warn!(
                    "notification_address {}: no address found ({failures} lookup(s) in a row); the nodes it listed stay",
                    source.name
                );
            }
            continue;
        }
        let newly_answered = ANSWERED.with(|a| {
            let mut a = a.borrow_mut();
            let new = !a.iter().any(|n| n.same_node(&source.name));
            if new {
                a.push(source.name.clone());
            }
            new
        });
        if newly_answered {
            let _ = m
                .names
                .unanswered
                .fetch_update(std::sync::atomic::Ordering::Relaxed, std::sync::atomic::Ordering::Relaxed, |n| n.checked_sub(1));
        }
        if first && source.multi {
            log::info!("multi_notify: {} stands for {} node(s): {found:?}", source.name, found.len());
        }
        for uri in &change.appeared {
            log::info!("{} lists {uri} now", source.name);
        }
        for uri in &change.vanished {
            log::info!("{} no longer lists {uri}", source.name);
        }
        vanished.extend(change.vanished);
    }
    let listed = SOURCES.with(|s| sources::all_listed(s.borrow().iter()));
    name_sources::publish(m, &listed);
    let Some(done) = node_list::with_nodes(m, |list| sources::reconcile(list, &listed, &vanished)) else { return };
    for uri in &done.removed {
        log::info!("node {uri} left the node list: its name no longer lists it and it does not answer");
        event_counts::add(m, EventCount::DnsNodesRemoved);
    }
    if done.refused > 0 {
        log::warn!("{} address(es) of notification_address names not added: the node list is full", done.refused);
    }
    if !done.added.is_empty() {
        for uri in &done.added {
            log::info!("node {uri} added from DNS: notifying it");
            event_counts::add(m, EventCount::DnsNodesAdded);
        }
        notifications::notify_nodes(m, &done.added);
    }
}

/// Resolves nodes listed by host name: those without an address at once,
/// every one of them once a ping interval.
fn resolve_named_nodes(m: &Shared) {
    let now = monotonic_ms();
    let all_due = now.saturating_sub(NAMED_REFRESHED.with(|c| c.get())) >= u64::from(m.config.ping_interval) * 1000;
    let wanted = node_list::read_nodes(m, |list| {
        list.nodes.iter().filter(|n| n.is_named() && (all_due || n.ips.is_empty())).map(|n| n.uri.clone()).collect::<Vec<_>>()
    });
    if all_due {
        NAMED_REFRESHED.with(|c| c.set(now));
    }
    if wanted.is_empty() {
        return;
    }
    let resolved: Vec<(NodeUri, Vec<IpAddr>)> = wanted
        .into_iter()
        .map(|uri| {
            let ips = dns::resolve_host(&uri.host, dmq_core::nodes::MAX_ADDRESSES);
            if ips.is_empty() {
                log::debug!("node {uri}: its host does not resolve; messages to it go through tm");
            }
            (uri, ips)
        })
        .collect();
    node_list::with_nodes(m, |list| list.set_addresses(&resolved));
}

/// Entries that stand for this node (a name that resolves to it), and
/// entries for an address a name gave that stand for a node listed under
/// its own name, leave the list.
fn drop_duplicates(m: &Shared) {
    // A copy: no two locks at once.
    let listed = name_sources::listed(m);
    if !node_list::read_nodes(m, |l| !sources::duplicates(l, &listed).is_empty()) {
        return;
    }
    for uri in node_list::with_nodes(m, |l| sources::drop_duplicates(l, &listed)).unwrap_or_default() {
        log::info!("node {uri} is listed under another name: its address entry is dropped");
        event_counts::add(m, EventCount::DnsNodesRemoved);
    }
}
