//! Outgoing peer messages: what the script functions and the `bind_dmq` API
//! (htable, dmq_usrloc, dialog, presence) send to replicate their data.
//! Each goes without tm when it can (`direct_send`; dmq_usrloc's updates
//! may wait in a batch first, `usrloc_batches`), through tm otherwise;
//! tm-path messages a busy node answered 503 wait in a shm queue that the
//! retransmission timer drains. Targets are copied under the node-list
//! lock; sending happens after it is released, so concurrent senders never
//! queue behind each other's sends.

use dmq_core::batching;
use dmq_core::node_uri::NodeUri;
use dmq_core::nodes::Node;
use dmq_core::ordering::Keys;
use dmq_core::pending;
use dmq_core::reply_codes::{self, PeerReply};
use dmq_core::sync_runs::Reason;
use dmq_core::tm_context::TmContext;

use dmq_abi::api::{PeerMessage, ResponseCallback};
use kamailio::clock::monotonic_ms;
use kamailio::process;
use kamailio::replies::Verdict as ReplyVerdict;
use kamailio::sip_msg::SipMsg;
use kamailio::tm::TmReply;

use crate::direct_send::{self, Outgoing, SendError};
use crate::event_counts::{self, EventCount};
use crate::ordering::{self, Verdict};
use crate::origin;
use crate::shared::{shared, Shared};
use crate::usrloc_batches;
use crate::{heal, heal_pushes, node_list, notifications, peers, requests, sync_status};

/// How often the retransmission timer runs.
const TICK_US: u32 = 100_000;

/// mod_init: the retransmission timer's process.
pub fn init() -> Result<(), String> {
    process::register_timer_process().map_err(|e| format!("the DMQ retransmission timer: {e}"))
}

/// Every reply the core receives, before the script's reply route: ours
/// to a message sent without tm complete it (`direct_send`), then it is
/// finished here.
pub fn on_reply(msg: &SipMsg) -> ReplyVerdict {
    let Some(m) = shared() else { return ReplyVerdict::NotMine };
    let (verdict, completed) = direct_send::on_reply(m, msg);
    if let Some(completed) = completed {
        finish_direct(m, completed);
    }
    verdict
}

/// A message sent without tm is done (its consumer's callback ran): its
/// node's usrloc batch goes, and the keys it carried are free.
fn finish_direct(m: &Shared, completed: direct_send::Completed) {
    if completed.counted_in_batch() {
        if let Some(unsent) = usrloc_batches::release(m, completed.to(), completed.uri()) {
            send_unsent_batch(m, unsent);
        }
    }
    let items = completed.items();
    if !items.is_empty() {
        direct_done(m, completed.uri(), &items, completed.code, completed.request());
    }
}

/// A usrloc batch that could not go without tm goes through tm; when it
/// cannot, the keys of its updates are freed as if answered 500.
fn send_unsent_batch(m: &Shared, unsent: usrloc_batches::UnsentBatch) {
    let through_tm = match &unsent.target {
        // A batch: its updates' keys are on their way.
        Some(target) => send_through_tm(m, &unsent.message(), target, true),
        None => Err("no way to send it".into()),
    };
    match through_tm {
        Ok(()) => {
            event_counts::add(m, EventCount::MessagesSentThroughTm);
            event_counts::add(m, EventCount::BatchesSent);
        }
        Err(e) => {
            let uri = String::from_utf8_lossy(&unsent.uri);
            log::error!("cannot send a batch of {} {} updates to {uri}: {e}", unsent.updates(), batching::BATCHED_PEER);
            direct_done(m, &unsent.uri, &unsent.items, 500, &[]);
        }
    }
}

/// child_init(PROC_MAIN): forks the retransmission timer process.
pub fn start_timer() -> Result<(), String> {
    process::fork_timer_process(c"DMQ RETRANSMIT TIMER", TICK_US, timer_tick).map_err(|e| e.to_string())
}

/// Every 100 ms: the in-flight table's retransmissions and timeouts, and
/// the tm-path messages due after a 503.
fn timer_tick() {
    if let Some(m) = shared() {
        let active_nodes = || node_list::read_nodes(m, |list| list.targets(false));
        for node in heal_pushes::tick(m, active_nodes, |node| send_missed_deletes(m, node)) {
            pull_from(m, &node);
        }
        direct_send::tick(m, |completed| finish_direct(m, completed));
        sync_status::tick(m);
        resend_busy(m, monotonic_ms());
    }
    heal::tick_end();
}

/// A heal pull (`heal`): asks `uri`, a node met after this node's join
/// sync, for its state: each consumer's sync request (its init callback's
/// broadcast, captured) goes to that node alone, which answers by sending
/// its state, as to a joining node. The request is sent as part of a sync
/// (it says its age): a dmq_rs node answers it as a heal sync, with what
/// it wrote last, so a lagging node brings back nothing deleted meanwhile.
fn pull_from(m: &Shared, uri: &NodeUri) {
    let Some(node) = node_list::read_nodes(m, |l| l.find(uri).filter(|n| !dmq_core::sources::is_this_node(l, n)).cloned()) else {
        return;
    };
    for (peer, body, content_type) in peers::sync_requests() {
        let id = peer.id();
        sync_status::started(m, &id, Reason::HealPull, std::slice::from_ref(&node));
        let message = PeerMessage { sync_since: Some(monotonic_ms()), ..PeerMessage::plain(&id, &body, &content_type) };
        match send_to(m, &message, std::slice::from_ref(&node)) {
            Ok(()) => log::info!("heal pull: asked {uri} for the state of DMQ peer {id:?}"),
            Err(e) => {
                log::warn!("heal pull: cannot ask {uri} for the state of DMQ peer {id:?}: {e}");
                sync_status::request_failed(m, &id, &node);
            }
        }
    }
}

/// `dmq.resync`: asks `node` (None: every active node) for the state of
/// `consumer` (None: every consumer that syncs) again, as a joining node
/// does: each donor answers with its whole state (not a heal pull's
/// "what it wrote last": a contact removed here by hand comes back).
/// Each sync is followed (`sync_status`). Returns the consumers asked.
pub fn resync(m: &Shared, consumer: Option<&str>, node: Option<&NodeUri>) -> Result<Vec<String>, String> {
    let targets: Vec<Node> = match node {
        Some(uri) => {
            let found = node_list::read_nodes(m, |l| l.find(uri).filter(|n| !dmq_core::sources::is_this_node(l, n)).cloned());
            vec![found.ok_or_else(|| format!("{uri} is not another node of the list"))?]
        }
        None => active_targets(m, None),
    };
    let requests: Vec<_> = peers::sync_requests().into_iter().filter(|(peer, _, _)| consumer.is_none_or(|c| peer.id() == c)).collect();
    if requests.is_empty() {
        return Err(match consumer {
            Some(c) => format!("no DMQ peer {c:?} that asks for a sync (its module syncs at start only when set to)"),
            None => "no DMQ peer asks for a sync".into(),
        });
    }
    let mut asked = Vec::new();
    for (peer, body, content_type) in requests {
        let id = peer.id();
        sync_status::started(m, &id, Reason::Command, &targets);
        let message = PeerMessage::plain(&id, &body, &content_type);
        // One node at a time: a send that fails tells its node's part.
        for target in &targets {
            if let Err(e) = send_to(m, &message, std::slice::from_ref(target)) {
                log::warn!("dmq.resync: asking {} for the state of DMQ peer {id:?}: {e}", target.uri);
                sync_status::request_failed(m, &id, target);
            }
        }
        asked.push(id);
    }
    Ok(asked)
}

/// Before a heal sync to `node`: the deletes it missed (`origin`), in
/// the order they were made, each after any copy of its item on its way.
fn send_missed_deletes(m: &Shared, node: &NodeUri) {
    let missed = origin::missed_by(m, node);
    if missed.is_empty() {
        return;
    }
    let target = node_list::node_or_stand_in(m, node);
    log::info!("heal sync: sending {node} the {} deletes it missed", missed.len());
    for waiting in &missed {
        let Some((_, message, _)) = waiting.open() else { continue };
        if let Err(e) = send_to(m, &message, std::slice::from_ref(&target)) {
            log::warn!("heal sync: a missed delete to {node}: {e}");
        }
    }
}

/// The tm-path retry figures: (waiting now, sent again so far).
pub fn busy_retry_stats(m: &Shared) -> (usize, u64) {
    m.tm_retries.stats()
}

/// Final reply (or 408) to a peer message: hand it to the consumer's
/// callback, with the node it went to.
fn run_response_callback(m: &Shared, code: i32, reply: TmReply<'_>, uri: &NodeUri, callback: Option<ResponseCallback>) {
    if code >= 300 {
        log::debug!("peer message to {uri} answered {code}");
    }
    let Some(callback) = callback else { return };
    if !callback.call(code, reply, &node_list::node_or_stand_in(m, uri)) {
        log::warn!("response callback for a message to {uri} failed");
    }
}

/// The consumer's callback a tm context carries (`ResponseCallback::to_bytes`).
fn callback_of(context: &TmContext<'_>) -> Option<ResponseCallback> {
    context.message.callback.as_ref().and_then(ResponseCallback::from_bytes)
}

/// The reply to a tm-path peer message (`reply_codes::peer_reply`).
fn on_tm_reply(code: i32, reply: TmReply<'_>, context: &[u8]) {
    let Some(mut message) = TmContext::decode(context) else { return };
    // Never None here: only a send that had the shared state arms this.
    let Some(m) = shared() else { return };
    let meaning = reply_codes::peer_reply(code, reply.msg().is_some());
    if meaning.retried() {
        // A node whose job queue is full: send it again later, as the
        // direct path (`direct_send`) does, instead of handing the consumer
        // a lost copy.
        // A 403: the node does not list us (members_only); it hears from
        // us now and the message goes again after it.
        if meaning == PeerReply::NotListed {
            notifications::renotify(m, &message.target);
        }
        let now = monotonic_ms();
        if let Some((due, next)) = pending::retry_after_busy(now, message.deadline_ms, message.backoff_ms) {
            message.backoff_ms = next;
            if m.tm_retries.push(due, &message.encode()) {
                return;
            }
            log::warn!("DMQ retry queue full: a 503 from {} is final", message.target);
        }
    }
    if meaning == PeerReply::TimedOut {
        event_counts::add(m, EventCount::TmTimeouts);
        // A delete the node never got: kept for it (`origin`).
        let c = &message.message;
        let callback = callback_of(&message);
        let sent = PeerMessage {
            peer_id: c.peer_id,
            body: c.body,
            content_type: c.content_type,
            max_forwards: c.max_forwards,
            callback,
            sync_since: c.sync_since,
            sync_answer: c.sync_answer,
        };
        origin::timed_out(m, &sent, &message.target);
    } else {
        event_counts::add_reply(m, code);
    }
    if sync_status::following_any(m) {
        let node = node_list::node_or_stand_in(m, &message.target);
        sync_status::request_answered(m, message.message.peer_id, message.message.body, &node, code, reply.msg());
    }
    run_response_callback(m, code, reply, &message.target, callback_of(&message));
    finish_tm(m, &message);
}

/// The timer process: sends again the tm-path messages due after a 503.
fn resend_busy(m: &Shared, now_ms: u64) {
    let queue = &m.tm_retries;
    for record in queue.take_due(now_ms) {
        let Some(message) = TmContext::decode(record.bytes()) else { continue };
        if let Err(e) = send_tm_message(m, &message) {
            log::error!("cannot send a {} message to {} again: {e}", message.message.peer_id, message.target);
            let node = node_list::node_or_stand_in(m, &message.target);
            sync_status::request_answered(m, message.message.peer_id, message.message.body, &node, 503, None);
            run_response_callback(m, 503, TmReply::none(), &message.target, callback_of(&message));
            finish_tm(m, &message);
        }
    }
}

fn send_tm_message(m: &Shared, context: &TmContext<'_>) -> Result<(), String> {
    let hop = node_list::next_hops(m, std::slice::from_ref(&context.target)).pop().flatten();
    let message = &context.message;
    let kdmq = requests::to_node(m, &context.target, message);
    requests::send_through_tm(m, &kdmq, hop.as_deref(), on_tm_reply, &context.encode())
}

/// One peer message through tm: for nodes over TCP/TLS, nodes without a
/// resolved address, and when `direct_send`'s table is full.
fn send_through_tm(m: &Shared, message: &PeerMessage<'_>, target: &NodeUri, ordered: bool) -> Result<(), String> {
    let context = TmContext {
        message: dmq_core::peer_message::PeerMessage {
            peer_id: message.peer_id,
            body: message.body,
            content_type: message.content_type,
            max_forwards: message.max_forwards,
            callback: message.callback.map(|c| c.to_bytes()),
            sync_since: message.sync_since,
            sync_answer: message.sync_answer,
        },
        target: target.clone(),
        deadline_ms: monotonic_ms() + pending::TIMEOUT_MS,
        backoff_ms: pending::T1_MS,
        ordered,
    };
    send_tm_message(m, &context)
}

/// Sends `message` to each target, each key it carries after the one
/// before it (`ordering`); counts failures.
pub fn send_to(m: &Shared, message: &PeerMessage<'_>, targets: &[Node]) -> Result<(), String> {
    send_keyed(m, message, dmq_core::ordering::identify(message.peer_id, message.body).as_ref(), targets)
}

/// [`send_to`] for a message whose keys (`dmq_core::ordering::identify`)
/// the caller read already.
pub fn send_keyed(m: &Shared, message: &PeerMessage<'_>, keys: Option<&Keys>, targets: &[Node]) -> Result<(), String> {
    let mut failed = 0;
    for target in targets {
        let sent = match keys {
            Some(keys) => match ordering::admit(m, message, &target.uri, keys) {
                Verdict::Send => send_tracked(m, message, target, &keys.items),
                Verdict::Waits => Ok(()),
                Verdict::SendUntracked => send_one(m, message, target, &[]),
            },
            None => send_one(m, message, target, &[]),
        };
        if let Err(e) = sent {
            log::error!("cannot send a {} message to {}: {e}", message.peer_id, target.uri);
            failed += 1;
        }
    }
    if failed > 0 {
        return Err(format!("{failed} of {} sends failed", targets.len()));
    }
    Ok(())
}

/// Sends a message whose keys (`items`) are on their way to `target`
/// now; one that cannot go frees them at once.
fn send_tracked(m: &Shared, message: &PeerMessage<'_>, target: &Node, items: &[u64]) -> Result<(), String> {
    let sent = send_one(m, message, target, items);
    if sent.is_err() {
        finish(m, target.uri.to_uri().as_bytes(), items);
    }
    sent
}

/// One message to one node, on the path it can take: without tm (a
/// dmq_usrloc update possibly in a batch), else through tm. `items`: the
/// keys it carries that `ordering` tracks (empty: none), freed when it is
/// done ([`finish`]).
fn send_one(m: &Shared, message: &PeerMessage<'_>, target: &Node, items: &[u64]) -> Result<(), String> {
    let &PeerMessage { peer_id, body, content_type, max_forwards, .. } = message;
    // Only a tracked update joins a batch: the batch frees the keys of all
    // its updates when done.
    let batchable = !items.is_empty() && batching::is_batchable(peer_id, content_type, max_forwards, body);
    let sent = match direct_send::address(m, &target.uri, target.ip()) {
        Ok(to) if batchable => {
            let (sent, unsent) = usrloc_batches::send(m, message, &target.uri, to, items);
            if let Some(unsent) = unsent {
                send_unsent_batch(m, unsent);
            }
            sent
        }
        Ok(to) => direct_send::send(m, &Outgoing::alone(*message, &target.uri, to, items)),
        Err(e) => Err(e),
    };
    let sent = match sent {
        Ok(()) => Ok(()),
        Err(SendError::Failed(e)) => Err(e),
        // Not for this path (another transport, no address, no free slot).
        Err(SendError::OtherTransport | SendError::NoAddress | SendError::TableFull) => {
            send_through_tm(m, message, &target.uri, !items.is_empty())
                .inspect(|()| event_counts::add(m, EventCount::MessagesSentThroughTm))
        }
    };
    if sent.is_ok() {
        event_counts::add(m, EventCount::MessagesSent);
    }
    sent
}

/// A message without tm to the node `uri` (its URI text) is done with
/// `code` ([`finish_direct`]): a delete that timed out is kept
/// for the node (`origin`), and the keys it carried are free.
fn direct_done(m: &Shared, uri: &[u8], items: &[u64], code: i32, request: &[u8]) {
    if code == 408 {
        origin::timed_out_request(m, uri, request);
    }
    finish(m, uri, items);
}

/// A message that carried `items` to the node `uri` (its URI text) is
/// done: the messages that waited for those
/// keys go now, in the order they came; one that cannot go frees its own.
pub fn finish(m: &Shared, uri: &[u8], items: &[u64]) {
    if items.is_empty() {
        return;
    }
    let mut go: std::collections::VecDeque<ordering::Waiting> = ordering::done(m, uri, items).into();
    while let Some(waiting) = go.pop_front() {
        let Some((items, message, target)) = waiting.open() else { continue };
        let node = node_list::node_or_stand_in(m, &target);
        if let Err(e) = send_one(m, &message, &node, &items) {
            log::error!("cannot send a {} message to {target}: {e}", message.peer_id);
            go.extend(ordering::done(m, target.to_uri().as_bytes(), &items));
        }
    }
}

/// When a tm-path message is done: the keys it carried are free.
fn finish_tm(m: &Shared, context: &TmContext<'_>) {
    if !context.ordered {
        return;
    }
    if let Some(keys) = dmq_core::ordering::identify(context.message.peer_id, context.message.body) {
        finish(m, context.target.to_uri().as_bytes(), &keys.items);
    }
}

/// Active remote nodes except `except`, each node once and never this one
/// (`dmq_core::sources::distinct_targets`: a node listed under its name
/// and an address, or a name that resolves to this node).
pub fn active_targets(m: &Shared, except: Option<&NodeUri>) -> Vec<Node> {
    node_list::read_nodes(m, |list| {
        dmq_core::sources::distinct_targets(list, false)
            .into_iter()
            .filter(|t| except.is_none_or(|e| !e.same_node(&t.uri)))
            .cloned()
            .collect()
    })
}
