//! The DMQ bus: the node list in shm, node notifications in and out, pings.

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use dmq_core::nodes::{FailurePolicy, Node, NodeEvent, NodeList};
use dmq_core::protocol::{self, Kdmq, NodeLine, NodeStatus, NodeUri};
use dmq_core::tm_context;

use kamailio::clock::unix_now as now;
use kamailio::dns;
use kamailio::events::EventRoute;
use kamailio::log::RateLimit;
use kamailio::process;
use kamailio::send;
use kamailio::shm::ShmStore;
use kamailio::sip_msg::SipMsg;
use kamailio::tm::TmReply;

use crate::admission;
use crate::event_counts::{self, EventCount};
use crate::shared::{shared, Shared};
use crate::{heal, name_sources, peer_events, peers, sync_status};

const CONTENT_TYPE: &str = "text/plain";

/// The node list in shm (None before mod_init).
fn store() -> Option<&'static ShmStore> {
    shared().map(|s| &s.nodes.list)
}

/// Nodes notifications named that the full list could not take.
pub fn nodes_refused() -> u64 {
    shared().map(|s| s.nodes.refused.load(Ordering::Relaxed)).unwrap_or(0)
}

/// Counts and logs (at most once a second per process) refused nodes;
/// `from` names where they came from (built only when there are some).
fn refuse_nodes(count: usize, from: impl FnOnce() -> String) {
    if count == 0 {
        return;
    }
    if let Some(s) = shared() {
        s.nodes.refused.fetch_add(count as u64, Ordering::Relaxed);
    }
    static LOG: RateLimit = RateLimit::per(1000);
    if LOG.allow() {
        log::warn!(
            "{} named {count} node(s) beyond the limit of {} nodes: not added (counted in dmq.stats nodes_refused)",
            from(),
            dmq_core::nodes::MAX_NODES
        );
    }
}

/// Runs `f` on the node list under its lock; changes are written back.
/// None when the change could not be saved (nothing of it holds then).
/// Never send from inside `f`: copy what to send, send after it returns.
pub fn with_nodes<R>(f: impl FnOnce(&mut NodeList) -> R) -> Option<R> {
    let store = store()?;
    let result = store.with(|bytes| {
        let text = std::str::from_utf8(bytes).unwrap_or_default();
        let mut list = NodeList::decode(text);
        let before = list.clone();
        let r = f(&mut list);
        let changed = list != before;
        let events = if changed { dmq_core::peer_events::diff(&before, &list) } else { Vec::new() };
        let new = changed.then(|| list.encode().into_bytes());
        (new, (r, events))
    });
    match result {
        Ok((r, events)) => {
            // Upstream's peer events, after the lock is released.
            peer_events::report(&events);
            Some(r)
        }
        Err(_) => {
            // Cannot happen while the list keeps to MAX_NODES (the store
            // holds a full one); if it did, nothing may act on the change.
            log::error!("node list does not fit its store ({} bytes); change dropped", dmq_core::nodes::MAX_ENCODED_LEN);
            None
        }
    }
}

thread_local! {
    /// This process's decoded copy of the node list and the store generation
    /// it was decoded from: reads on the SIP-worker paths (every replicated
    /// message looks up targets or its sender) decode only after a change.
    static DECODED: RefCell<Option<(u64, NodeList)>> = const { RefCell::new(None) };
}

/// `f` on this process's copy of the list at `generation`, decoding `bytes`
/// only when the copy is older. Not reentrant: `f` must not read the list.
fn with_decoded<R>(generation: u64, bytes: &[u8], f: impl FnOnce(&NodeList) -> R) -> R {
    DECODED.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.as_ref().is_none_or(|(g, _)| *g != generation) {
            *cached = Some((generation, NodeList::decode(std::str::from_utf8(bytes).unwrap_or_default())));
        }
        f(&cached.as_ref().expect("just filled").1)
    })
}

/// Runs `f` on the node list under its lock, read-only (no copy, no write
/// back, no decode unless the list changed): for the SIP-worker paths such
/// as `dmq_is_from_node`, target lookups and RPC listing.
pub fn read_nodes<R>(f: impl FnOnce(&NodeList) -> R) -> Option<R> {
    Some(store()?.read(|generation, bytes| with_decoded(generation, bytes, f)))
}

fn policy(m: &Shared) -> FailurePolicy {
    FailurePolicy { remove_inactive: m.config.remove_inactive, fail_count_threshold: m.config.fail_count_threshold }
}

/// Logs node state changes and runs the script's event routes for them.
/// Called after the node-list lock is released: the routes may do anything.
/// `source`: the node the news came from itself (it answered our ping or
/// sent the notification), so it lists us; others were named by it.
fn report_events(m: &Shared, events: &[NodeEvent], source: Option<&NodeUri>) {
    let back = events.iter().filter_map(|e| if let NodeEvent::Active(uri) = e { Some(uri) } else { None });
    let (direct, named): (Vec<NodeUri>, Vec<NodeUri>) = back.cloned().partition(|uri| source.is_some_and(|s| s.same_node(uri)));
    heal::regained(&direct, &named);
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
                sync_status::node_gone(&node_or_stand_in(uri));
                if let Some(route) = m.routes.node_inactive {
                    run_node_route(route, uri, "inactive");
                }
            }
        }
    }
}

/// Looks up the host names among `uris` (outside the node-list lock: a
/// lookup may wait on DNS), for [`NodeList::set_addresses`].
fn look_up(uris: impl IntoIterator<Item = NodeUri>) -> Vec<(NodeUri, Vec<IpAddr>)> {
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

/// Drops the nodes outside `trusted_network` among `lines` (judged by the
/// addresses already listed). Nothing here looks a name up: this runs in
/// SIP workers. With `trusted_network`, a line naming a new node by host
/// name (or one without an address yet) waits for the DMQ DNS process
/// (`name_sources::defer`, `merge_deferred`), which looks it up and judges
/// it; without it the line is merged now and the DNS process resolves the
/// node within 200 ms. Outside the node-list lock.
fn admit_and_look_up(m: &Shared, lines: &mut Vec<NodeLine>, from: impl Fn() -> String) -> Vec<(NodeUri, Vec<IpAddr>)> {
    if !m.config.trusted_networks.is_set() {
        return Vec::new();
    }
    if lines.iter().any(|l| dmq_core::nodes::is_name(&l.uri.host)) {
        let unresolved =
            |list: &NodeList, l: &NodeLine| dmq_core::nodes::is_name(&l.uri.host) && list.find(&l.uri).is_none_or(|n| n.ips.is_empty());
        let waiting: Vec<NodeLine> = read_nodes(|list| lines.iter().filter(|l| unresolved(list, l)).cloned().collect()).unwrap_or_default();
        if !waiting.is_empty() {
            lines.retain(|l| !waiting.iter().any(|w| w.uri.same_node(&l.uri)));
            let dropped = name_sources::defer(&waiting);
            if dropped > 0 {
                log::warn!("{}: {dropped} named node(s) not judged: too many wait for the DNS process", from());
            }
        }
    }
    let ips_of = |uri: &NodeUri| read_nodes(|list| list.find(uri).map(|n| n.ips.clone())).flatten().unwrap_or_default();
    admission::admit_lines(m, lines, ips_of, from);
    Vec::new()
}

/// The DMQ DNS process: the named nodes notifications brought while
/// `trusted_network` is set are looked up here, judged by their addresses
/// and merged (their events run here too).
pub fn merge_deferred(m: &Shared) {
    let mut lines = name_sources::take_deferred();
    if lines.is_empty() {
        return;
    }
    let addresses = look_up(lines.iter().map(|l| l.uri.clone()));
    let ips_of = |uri: &NodeUri| addresses.iter().find(|(u, _)| u.same_node(uri)).map(|(_, ips)| ips.clone()).unwrap_or_default();
    admission::admit_lines(m, &mut lines, ips_of, || "a notification".to_string());
    let (events, refused) = with_nodes(|list| {
        let merged = list.merge(&lines, now());
        list.set_addresses(&addresses);
        (merged.events, merged.refused)
    })
    .unwrap_or_default();
    refuse_nodes(refused, || "a notification".to_string());
    report_events(m, &events, None);
}

/// A notification address: given as an address, or listed by a name now
/// (`name_sources`; an address its name dropped is an ordinary node).
fn is_seed(m: &Shared, node: &NodeUri) -> bool {
    m.notification_uris.iter().any(|s| s.same_node(node)) || name_sources::lists(node)
}

/// As `is_seed`, with the names' addresses already read.
fn is_seed_of(m: &Shared, from_names: &[NodeUri], node: &NodeUri) -> bool {
    m.notification_uris.iter().chain(from_names).any(|s| s.same_node(node))
}

/// Runs `event_route[dmq:node-active]`/`[dmq:node-inactive]` with
/// `$xavp(dmq_node=>uri)` and `$xavp(dmq_node=>status)` set, as stock.
fn run_node_route(route: EventRoute, uri: &NodeUri, status: &str) {
    let uri = uri.to_uri();
    if !route.run_with_xavp("dmq_node", [("uri", &uri), ("status", status)]) {
        log::error!("cannot run the event route for node {uri}");
    }
}

/// Sends our notification body to `targets` (sent after the lock is released).
fn send_notification(m: &Shared, targets: &[NodeUri], body: &str, max_forwards: i32, round: u32) {
    let channel = &m.config.notification_channel;
    // Nodes named by host name go to the address the DNS process found:
    // tm must not look names up here (the core's timer runs the pings).
    let hops = next_hops(targets);
    for (target, hop) in targets.iter().zip(&hops) {
        let kdmq = Kdmq {
            from: &m.local_uri,
            to: target,
            peer: channel,
            max_forwards,
            content_type: CONTENT_TYPE,
            body: body.as_bytes(),
            signing: m.signing(),
            sync_age_ms: None,
            sync_answer: None,
        };
        match m.send_through_tm(&kdmq, hop.as_deref(), on_notification_reply, tm_context::encode_notification(round, target).as_bytes()) {
            Ok(()) => event_counts::add(if round == 0 { EventCount::NotificationsSent } else { EventCount::PingsSent }),
            Err(e) => log::error!("cannot notify {target}: {e}"),
        }
    }
}

/// For each target named by a host name with a known address: where tm
/// sends to (`sip:ip:port;transport=x`), so it resolves nothing.
pub fn next_hops(targets: &[NodeUri]) -> Vec<Option<String>> {
    if !targets.iter().any(|t| dmq_core::nodes::is_name(&t.host)) {
        return vec![None; targets.len()];
    }
    read_nodes(|list| {
        targets
            .iter()
            .map(|t| {
                let ip = list.find(t).filter(|n| n.is_named()).and_then(|n| n.ip())?;
                Some(t.at(ip).to_uri())
            })
            .collect()
    })
    .unwrap_or_else(|| vec![None; targets.len()])
}

/// Reply to one of our notifications: 200 makes the node active and merges
/// the list it sent back; 408 (no answer) counts as a failure.
fn on_notification_reply(code: i32, reply: TmReply<'_>, context: &[u8]) {
    let reply = reply.msg();
    let Some(m) = shared() else { return };
    // The ping round the reply belongs to (0: not a ping) and the node the
    // notification went to.
    let Some((round, node)) = tm_context::decode_notification(context) else { return };
    if code == 200 {
        if round != 0 {
            event_counts::add(EventCount::PingsAnswered);
        }
        let mut lines = match reply.as_ref().map(|r| r.body()) {
            Some(Ok(body)) => match protocol::parse_body(&body) {
                Ok(lines) => lines,
                Err(e) => {
                    log::warn!("node {node} answered with a bad node list ({e}); ignored");
                    Vec::new()
                }
            },
            _ => Vec::new(),
        };
        let addresses = admit_and_look_up(m, &mut lines, || format!("the reply of {node}"));
        let (events, refused) = with_nodes(|list| {
            let mut events = list.mark_answered(&node, now());
            let merged = list.merge(&lines, now());
            events.extend(merged.events);
            list.set_addresses(&addresses);
            (events, merged.refused)
        })
        .unwrap_or_default();
        refuse_nodes(refused, || format!("the reply of {node}"));
        report_events(m, &events, Some(&node));
        join_sync(peer_events::init_with_single().then(|| node.clone()));
    } else if code == 408 {
        let seed = is_seed(m, &node);
        let events = with_nodes(|list| list.ping_timed_out(&node, round, seed, policy(m))).unwrap_or_default();
        log::debug!("node {node} did not answer a notification (ping round {round})");
        report_events(m, &events, None);
    } else {
        // As stock: a node that answers, but not with 200, keeps its state.
        log::debug!("node {node} answered a notification with {code}");
        if code >= 200 && round != 0 {
            with_nodes(|list| list.ping_refused(&node, round));
        }
    }
}

/// The listed node for `uri`, or a stand-in when it has left the list
/// meanwhile (consumers' callbacks still get a node).
pub fn node_or_stand_in(uri: &NodeUri) -> Node {
    read_nodes(|list| list.find(uri).cloned()).flatten().unwrap_or_else(|| Node::new(uri.clone(), NodeStatus::Disabled))
}

/// The listed node for `uri`.
pub fn find_node(uri: &NodeUri) -> Option<Node> {
    read_nodes(|list| list.find(uri).cloned()).flatten()
}

/// The node a KDMQ request comes from: its From URI (`sip:<peer>@node`).
pub fn sender_of(msg: &SipMsg) -> Option<NodeUri> {
    let value = std::str::from_utf8(msg.from_value()?).ok()?;
    protocol::parse_node_line(protocol::name_addr_uri(value)?).ok().map(|l| l.uri)
}

/// A KDMQ on the notification channel: merge, answer 200 with our list, and
/// pass the news on while Max-Forwards allows.
pub fn handle_notification(m: &Shared, msg: &SipMsg) -> bool {
    event_counts::add(EventCount::NotificationsReceived);
    // A ping round sends with Max-Forwards 1 (so does a node passing news on).
    if msg.max_forwards().is_some_and(|mf| mf <= 1) {
        event_counts::add(EventCount::PingsReceived);
    }
    let body = match msg.body() {
        Ok(b) => b,
        Err(_) => {
            log::warn!("KDMQ notification without Content-Length from {:?}: refused", msg.source_ip());
            return msg.reply(&m.sl, 400, "Bad request", None);
        }
    };
    let mut lines = match protocol::parse_body(&body) {
        Ok(lines) => lines,
        Err(e) => {
            log::warn!("bad KDMQ notification body from {:?}: {e}; node list unchanged", msg.source_ip());
            return msg.reply(&m.sl, 400, "Bad request", None);
        }
    };
    let addresses = admit_and_look_up(m, &mut lines, || format!("a notification from {:?}", msg.source_ip()));
    let max_forwards = msg.max_forwards().unwrap_or(0);
    let Some((outcome, our_body, targets)) = with_nodes(|list| {
        let outcome = list.merge(&lines, now());
        list.set_addresses(&addresses);
        (outcome, list.notification_body(), list.targets(false))
    }) else {
        return msg.reply(&m.sl, 500, "Server Internal Error", None);
    };
    refuse_nodes(outcome.refused, || format!("a notification from {:?}", msg.source_ip()));
    report_events(m, &outcome.events, sender_of(msg).as_ref());
    let ok = msg.reply(&m.sl, 200, "OK", Some((our_body.as_bytes(), CONTENT_TYPE)));
    if outcome.news > 0 && max_forwards - 1 > 0 {
        send_notification(m, &targets, &our_body, max_forwards - 1, 0);
    }
    join_sync(if peer_events::init_with_single() { sender_of(msg) } else { None });
    ok
}

/// A node answered one of our peer messages `403`: with `members_only` it
/// does not list us (it dropped us while we were cut off, or has not heard
/// of us yet). Tell it about us at once, so the message's next try finds
/// us listed, instead of at the next ping. At most once a second per node
/// and process: every message in flight to it may bring a 403.
pub fn renotify(target: &NodeUri) {
    thread_local! {
        static LAST: RefCell<Vec<(NodeUri, u64)>> = const { RefCell::new(Vec::new()) };
    }
    let Some(m) = shared() else { return };
    let now = kamailio::clock::monotonic_ms();
    let due = LAST.with(|last| {
        let mut last = last.borrow_mut();
        last.retain(|(_, at)| now.saturating_sub(*at) < 1000);
        if last.iter().any(|(uri, _)| uri.same_node(target)) {
            return false;
        }
        last.push((target.clone(), now));
        true
    });
    if !due {
        return;
    }
    let Some(body) = read_nodes(|list| list.notification_body()) else { return };
    log::info!("node {target} refused a peer message with 403: notifying it of this node");
    send_notification(m, std::slice::from_ref(target), &body, 1, 0);
}

/// The listed node at `addr` (a reply's source).
pub fn node_at(addr: std::net::SocketAddr) -> Option<NodeUri> {
    read_nodes(|list| list.nodes.iter().find(|n| n.ip() == Some(addr.ip()) && n.uri.port_no() == addr.port()).map(|n| n.uri.clone()))
        .flatten()
}

/// Notification addresses are never deleted: put back any that went missing.
fn add_seeds(m: &Shared, list: &mut NodeList) {
    for seed in &m.notification_uris {
        list.add(seed.clone());
    }
}

/// Tells `targets` (nodes a name listed that are new here) about this
/// node and the nodes it knows, as the notification addresses at startup.
pub fn notify_nodes(m: &Shared, targets: &[NodeUri]) {
    let Some(body) = read_nodes(|list| list.notification_body()) else { return };
    send_notification(m, targets, &body, 2, 0);
}

/// Startup (first SIP worker): learn the cluster from the notification addresses.
pub fn notify_seeds(m: &Shared) {
    if m.notification_uris.is_empty() {
        return;
    }
    let addresses = look_up(m.notification_uris.iter().filter(|u| dmq_core::nodes::is_name(&u.host)).cloned());
    let body = with_nodes(|list| {
        add_seeds(m, list);
        list.set_addresses(&addresses);
        list.notification_body()
    })
    .unwrap_or_default();
    send_notification(m, &m.notification_uris, &body, 2, 0);
}

/// The first contact with the cluster (or none to make): the consumers'
/// init callbacks run once (`peers::cluster_reached`); once their sync
/// requests left (each followed), the node is synced when they are done
/// (`sync_status`).
fn join_sync(single: Option<NodeUri>) {
    if peers::cluster_reached(single) {
        sync_status::join_ran();
    }
}

/// Ping rounds after which a node that knows no other node is alone even
/// if a name never answered.
const ALONE_AFTER_ROUNDS: u32 = 3;

/// Ping rounds are numbered by the one process that runs the ping timer.
static PING_ROUND: AtomicU32 = AtomicU32::new(0);

/// The ping timer: every `ping_interval`, count the nodes that did not answer
/// the last ping, then notify all nodes, inactive included.
fn ping_timer() {
    let Some(m) = shared() else { return };
    let round = PING_ROUND.fetch_add(1, Ordering::Relaxed).wrapping_add(1).max(1);
    // Named nodes are looked up again by the DMQ DNS process (`lookups`),
    // never here: a slow DNS server must not hold the core's timer.
    // What the names list, copied first: no two locks at once.
    let from_names = name_sources::listed();
    let (events, body, targets, alone) = with_nodes(|list| {
        add_seeds(m, list);
        let (events, targets) = list.start_ping_round(round, |n| is_seed_of(m, &from_names, n), policy(m));
        (events, list.notification_body(), targets, list.nodes.iter().all(|n| n.local))
    })
    .unwrap_or_default();
    report_events(m, &events, None);
    send_notification(m, &targets, &body, 1, round);
    // No other node known a ping interval after startup (no seed but this
    // node, a name that answered and lists nobody else): the first node of
    // a cluster. Its join sync runs now and asks nobody (as the stock
    // module's, which notifies itself); a node met later is pulled from
    // (`heal`). A name that has not answered yet may still list others:
    // the node waits for it, three ping intervals at most (a headless
    // service lists no pod that is not ready: the first pod's name has no
    // records until it is).
    if alone && !peers::init_done() && (name_sources::all_answered() || round >= ALONE_AFTER_ROUNDS) {
        log::info!("no other node known after a ping interval: this node is alone; its join sync asks nobody");
        join_sync(None);
    }
}

/// Shutdown (main process, after the children are gone): tell the active
/// nodes we are leaving, so they stop counting on us at once instead of
/// after missed pings. Sent directly from our UDP socket, since tm's timers
/// no longer run; nodes reached over other transports learn it from pings.
pub fn announce_leave(m: &Shared) {
    let store = &m.nodes.list;
    let active = |list: &NodeList| -> Vec<(NodeUri, Option<std::net::IpAddr>)> {
        list.nodes.iter().filter(|n| !n.local && n.status == protocol::NodeStatus::Active).map(|n| (n.uri.clone(), n.ip())).collect()
    };
    // A child killed inside its critical section may have left the lock held.
    let Some(targets) = store.read_within(Duration::from_millis(200), |generation, bytes| with_decoded(generation, bytes, active)) else {
        log::warn!("node list locked at shutdown; leaving without notice");
        return;
    };
    if m.socket.transport != Some(protocol::Transport::Udp) {
        log::info!("leaving without notice: the DMQ socket {} is not UDP", m.socket.name);
        return;
    }
    let body = protocol::build_body([(&m.local_uri, protocol::NodeStatus::Disabled)]);
    let token = format!("{}x{}", std::process::id(), now());
    let signing = m.config.shared_secret.as_deref().map(|s| (s, now()));
    for (uri, ip) in targets {
        if uri.transport != protocol::Transport::Udp {
            continue;
        }
        let Some(ip) = ip.or_else(|| dns::resolve_host(&uri.host, dmq_core::nodes::MAX_ADDRESSES).first().copied()) else { continue };
        let kdmq = Kdmq {
            from: &m.local_uri,
            to: &uri,
            peer: &m.config.notification_channel,
            max_forwards: 1,
            content_type: CONTENT_TYPE,
            body: body.as_bytes(),
            signing,
            sync_age_ms: None,
            sync_answer: None,
        };
        let request = protocol::leave_notice(&kdmq, &m.socket.sent_by, &token);
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

/// Nodes in the list (this one included) with `status`, or all of them.
pub fn count_nodes(status: Option<NodeStatus>) -> u64 {
    read_nodes(|list| list.nodes.iter().filter(|n| status.is_none_or(|s| n.status == s)).count() as u64).unwrap_or(0)
}

/// Starts the ping timer (mod_init).
pub fn start_ping_timer(interval: u32) -> Result<(), String> {
    process::register_core_timer(interval, ping_timer).map_err(|e| format!("the ping timer: {e}"))
}

/// `dmq.add`: the node joins the list as pending and is notified at once
/// (its answer makes it active, and it learns of us); without an answer
/// the ping rounds keep trying it, as any pending node.
pub fn add_by_operator(m: &Shared, uri: &NodeUri) -> Result<(), dmq_core::peer_events::ChangeError> {
    let addresses = look_up([uri.clone()].into_iter().filter(|u| dmq_core::nodes::is_name(&u.host)));
    let body = with_nodes(|list| {
        dmq_core::peer_events::add(list, uri)?;
        list.set_addresses(&addresses);
        Ok(list.notification_body())
    })
    .unwrap_or(Err(dmq_core::peer_events::ChangeError::Full))?;
    send_notification(m, std::slice::from_ref(uri), &body, 2, 0);
    Ok(())
}

/// `dmq.change_status`: Ok(true) when it changed. The peer events (and
/// replication, which goes to active nodes only) follow at once; the node's
/// next answer to a ping makes it active again, as upstream.
pub fn change_status_by_operator(uri: &NodeUri, status: NodeStatus) -> Result<bool, dmq_core::peer_events::ChangeError> {
    with_nodes(|list| dmq_core::peer_events::change_status(list, uri, status)).unwrap_or(Err(dmq_core::peer_events::ChangeError::NotFound))
}
