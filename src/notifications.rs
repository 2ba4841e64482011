//! Node notifications in and out, on the notification channel: ours sent
//! through tm (to the notification addresses at startup, to nodes a name
//! lists or an operator adds, passed on while Max-Forwards allows, to a
//! node that refused a peer message with 403, and the pings'), what their
//! replies mean for the node list (`dmq_core::reply_codes`), the ones we
//! receive merged and answered with our list, and the join sync the first
//! contact with the cluster starts.

use std::cell::RefCell;

use dmq_abi::api::PeerMessage;
use dmq_core::node_uri::NodeUri;
use dmq_core::nodes::{FailurePolicy, NodeList};
use dmq_core::notification;
use dmq_core::reply_codes::{self, NotificationReply};
use dmq_core::tm_context;

use kamailio::clock::unix_now as now;
use kamailio::sip_msg::SipMsg;
use kamailio::tm::TmReply;

use crate::event_counts::{self, EventCount};
use crate::shared::{shared, Shared};
use crate::{name_sources, node_admission, node_events, node_list, peer_events, peers, requests, sync_status};

/// The content type of a notification body (a node list).
pub const CONTENT_TYPE: &str = "text/plain";

/// When a node that does not answer pings fails (`remove_inactive`,
/// `fail_count_enabled`).
pub fn policy(m: &Shared) -> FailurePolicy {
    FailurePolicy { remove_inactive: m.config.remove_inactive, fail_count_threshold: m.config.fail_count_threshold }
}

/// A notification address: given as an address, or listed now by a name
/// (`from_names`: what `name_sources` lists, read first; an address its
/// name dropped is an ordinary node).
pub fn is_seed(m: &Shared, from_names: &[NodeUri], node: &NodeUri) -> bool {
    m.notification_uris.iter().chain(from_names).any(|s| s.same_node(node))
}

/// Sends our notification body to `targets` (sent after the lock is
/// released); `round`: the ping round it is part of (0: not a ping).
pub fn send_notification(m: &Shared, targets: &[NodeUri], body: &str, max_forwards: i32, round: u32) {
    let channel = &m.config.notification_channel;
    // Nodes named by host name go to the address the DNS process found:
    // tm must not look names up here (the core's timer runs the pings).
    let hops = node_list::next_hops(m, targets);
    let message = PeerMessage { max_forwards, ..PeerMessage::plain(channel, body.as_bytes(), CONTENT_TYPE) };
    for (target, hop) in targets.iter().zip(&hops) {
        let kdmq = requests::to_node(m, target, &message);
        match requests::send_through_tm(m, &kdmq, hop.as_deref(), on_reply, tm_context::encode_notification(round, target).as_bytes()) {
            Ok(()) => event_counts::add(m, if round == 0 { EventCount::NotificationsSent } else { EventCount::PingsSent }),
            Err(e) => log::error!("cannot notify {target}: {e}"),
        }
    }
}

/// Reply to one of our notifications (`reply_codes::notification_reply`):
/// 200 makes the node active and merges the list it sent back; 408 (no
/// answer) counts as a failure; another final reply to a ping, as a ping
/// refused.
fn on_reply(code: i32, reply: TmReply<'_>, context: &[u8]) {
    let reply = reply.msg();
    let Some(m) = shared() else { return };
    // The ping round the reply belongs to (0: not a ping) and the node the
    // notification went to.
    let Some((round, node)) = tm_context::decode_notification(context) else { return };
    match reply_codes::notification_reply(code, round) {
        NotificationReply::Answered => {
            if round != 0 {
                event_counts::add(m, EventCount::PingsAnswered);
            }
            let mut lines = match reply.as_ref().map(|r| r.body()) {
                Some(Ok(body)) => match notification::parse_body(&body) {
                    Ok(lines) => lines,
                    Err(e) => {
                        log::warn!("node {node} answered with a bad node list ({e}); ignored");
                        Vec::new()
                    }
                },
                _ => Vec::new(),
            };
            node_admission::admit_or_defer(m, &mut lines, || format!("the reply of {node}"));
            let (events, refused) = node_list::with_nodes(m, |list| {
                let mut events = list.mark_answered(&node, now());
                let merged = list.merge(&lines, now());
                events.extend(merged.events);
                (events, merged.refused)
            })
            .unwrap_or_default();
            node_list::refuse_nodes(m, refused, || format!("the reply of {node}"));
            node_events::report(m, &events, Some(&node));
            join_sync(m, peer_events::init_with_single(m).then(|| node.clone()));
        }
        NotificationReply::TimedOut => {
            let seed = name_sources::with_listed(m, |names| is_seed(m, names, &node));
            let events = node_list::with_nodes(m, |list| list.ping_timed_out(&node, round, seed, policy(m))).unwrap_or_default();
            log::debug!("node {node} did not answer a notification (ping round {round})");
            node_events::report(m, &events, None);
        }
        meaning @ (NotificationReply::PingRefused | NotificationReply::Nothing) => {
            // As stock: a node that answers, but not with 200, keeps its state.
            log::debug!("node {node} answered a notification with {code}");
            if meaning == NotificationReply::PingRefused {
                node_list::with_nodes(m, |list| list.ping_refused(&node, round));
            }
        }
    }
}

/// A KDMQ on the notification channel: merge, answer 200 with our list, and
/// pass the news on while Max-Forwards allows.
pub fn handle(m: &Shared, msg: &SipMsg) -> bool {
    event_counts::add(m, EventCount::NotificationsReceived);
    // A ping round sends with Max-Forwards 1 (so does a node passing news on).
    if msg.max_forwards().is_some_and(|mf| mf <= 1) {
        event_counts::add(m, EventCount::PingsReceived);
    }
    let body = match msg.body() {
        Ok(b) => b,
        Err(_) => {
            log::warn!("KDMQ notification without Content-Length from {:?}: refused", msg.source_ip());
            return msg.reply(&m.sl, 400, "Bad request", None);
        }
    };
    let mut lines = match notification::parse_body(&body) {
        Ok(lines) => lines,
        Err(e) => {
            log::warn!("bad KDMQ notification body from {:?}: {e}; node list unchanged", msg.source_ip());
            return msg.reply(&m.sl, 400, "Bad request", None);
        }
    };
    node_admission::admit_or_defer(m, &mut lines, || format!("a notification from {:?}", msg.source_ip()));
    let max_forwards = msg.max_forwards().unwrap_or(0);
    let Some((outcome, our_body, targets)) = node_list::with_nodes(m, |list| {
        let outcome = list.merge(&lines, now());
        (outcome, list.notification_body(), list.targets(false))
    }) else {
        return msg.reply(&m.sl, 500, "Server Internal Error", None);
    };
    node_list::refuse_nodes(m, outcome.refused, || format!("a notification from {:?}", msg.source_ip()));
    node_events::report(m, &outcome.events, node_list::sender_of(msg).as_ref());
    let ok = msg.reply(&m.sl, 200, "OK", Some((our_body.as_bytes(), CONTENT_TYPE)));
    if outcome.news > 0 && max_forwards - 1 > 0 {
        send_notification(m, &targets, &our_body, max_forwards - 1, 0);
    }
    join_sync(m, if peer_events::init_with_single(m) { node_list::sender_of(msg) } else { None });
    ok
}

/// A node answered one of our peer messages `403`: with `members_only` it
/// does not list us (it dropped us while we were cut off, or has not heard
/// of us yet). Tell it about us at once, so the message's next try finds
/// us listed, instead of at the next ping. At most once a second per node
/// and process: every message in flight to it may bring a 403.
pub fn renotify(m: &Shared, target: &NodeUri) {
    thread_local! {
        static LAST: RefCell<Vec<(NodeUri, u64)>> = const { RefCell::new(Vec::new()) };
    }
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
    let body = node_list::read_nodes(m, |list| list.notification_body());
    log::info!("node {target} refused a peer message with 403: notifying it of this node");
    send_notification(m, std::slice::from_ref(target), &body, 1, 0);
}

/// Notification addresses are never deleted: put back any that went missing.
pub fn add_seeds(m: &Shared, list: &mut NodeList) {
    for seed in &m.notification_uris {
        list.add(seed.clone());
    }
}

/// Tells `targets` (nodes a name listed that are new here) about this
/// node and the nodes it knows, as the notification addresses at startup.
pub fn notify_nodes(m: &Shared, targets: &[NodeUri]) {
    let body = node_list::read_nodes(m, |list| list.notification_body());
    send_notification(m, targets, &body, 2, 0);
}

/// Startup (first SIP worker): learn the cluster from the notification addresses.
pub fn notify_seeds(m: &Shared) {
    if m.notification_uris.is_empty() {
        return;
    }
    let addresses = node_admission::look_up(m.notification_uris.iter().filter(|u| dmq_core::nodes::is_name(&u.host)).cloned());
    let body = node_list::with_nodes(m, |list| {
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
pub fn join_sync(m: &Shared, single: Option<NodeUri>) {
    if peers::cluster_reached(single) {
        sync_status::join_ran(m);
    }
}
