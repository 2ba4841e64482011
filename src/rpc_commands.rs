//! `kamcmd dmq.*`.

use dmq_abi::release::STATUS_WORDS;
use kamailio::rpc::{RpcCall, Value};

use dmq_core::node_uri;

use crate::shared::shared;
use crate::{messaging, node_list, operator_changes, statistics, sync_status, workers};

/// `dmq.list_nodes`: every node, as the stock module lists them, in the
/// status words of the release the module runs on (with 6.1's `fail_count`).
pub fn list_nodes(call: &RpcCall) {
    let Some(m) = shared() else {
        call.fault(500, "dmq not initialized");
        return;
    };
    // Copy under the lock, reply after releasing it.
    let list = node_list::read_nodes(m, |list| list.clone());
    for node in &list.nodes {
        let ip = node.ip().map(|i| i.to_string()).unwrap_or_default();
        let ok = call.add_struct(&[
            ("host", Value::Str(&node.uri.host)),
            ("port", Value::Str(&node.uri.port)),
            ("proto", Value::Str(node.uri.transport.as_str())),
            ("resolved_ip", Value::Str(&ip)),
            ("status", Value::Str(node.status.word(STATUS_WORDS))),
            ("last_notification", Value::Int(node.last_notification as i32)),
            ("local", Value::Int(node.local as i32)),
            ("fail_count", Value::Int(node.fail_count.min(i32::MAX as u32) as i32)),
        ]);
        if !ok {
            call.fault(500, "Server failure");
            return;
        }
    }
}

/// `dmq.remove sip:host:port`.
pub fn remove(call: &RpcCall) {
    let Some(address) = call.string_param() else {
        call.fault(500, "Invalid Parameters");
        return;
    };
    let Ok(line) = node_uri::parse_node_line(&address) else {
        call.fault(500, "Invalid Parameters");
        return;
    };
    // Before mod_init there is no list to remove it from.
    if shared().is_some_and(|m| operator_changes::remove(m, &line.uri)) {
        log::info!("node {} removed by RPC", line.uri);
        call.print("Ok. DMQ node removed.");
    } else {
        call.fault(500, "Failure");
    }
}

/// `dmq.add sip:host:port` (upstream master): a node the list did not have.
pub fn add(call: &RpcCall) {
    use dmq_core::peer_events::{parse_address, ChangeError};
    let Some(m) = shared() else {
        call.fault(500, "dmq not initialized");
        return;
    };
    let Some(address) = call.string_param() else {
        call.fault(500, "Invalid Parameters");
        return;
    };
    let result = parse_address(&address).and_then(|uri| operator_changes::add(m, &uri).map(|_| uri));
    match result {
        Ok(uri) => {
            log::info!("node {uri} added by RPC");
            call.print("Ok. DMQ node added.");
        }
        Err(e) => {
            if e != ChangeError::AlreadyAdded {
                log::warn!("dmq.add {address:?}: {}", e.message());
            }
            call.fault(500, e.message());
        }
    }
}

/// `dmq.change_status sip:host:port active|not_active|disabled` (upstream
/// master).
pub fn change_status(call: &RpcCall) {
    use dmq_core::peer_events::{parse_address, parse_status_word, ChangeError};
    let (Some(address), Some(word)) = (call.string_param(), call.string_param()) else {
        call.fault(500, "Invalid Parameters");
        return;
    };
    // Before mod_init no node is found.
    let change =
        |uri: &node_uri::NodeUri, status| shared().map_or(Err(ChangeError::NotFound), |m| operator_changes::change_status(m, uri, status));
    let result = parse_address(&address)
        .and_then(|uri| Ok((uri, parse_status_word(&word).ok_or(ChangeError::BadStatus)?)))
        .and_then(|(uri, status)| change(&uri, status).map(|changed| (uri, changed)));
    match result {
        Ok((uri, true)) => {
            log::info!("node {uri} set {word} by RPC");
            call.print("Ok. DMQ node status changed.");
        }
        Ok((_, false)) => {
            call.print(&format!("Ok. DMQ node status is already {}.", word.trim()));
        }
        Err(e) => {
            log::warn!("dmq.change_status {address:?} {word:?}: {}", e.message());
            call.fault(500, e.message());
        }
    }
}

/// Counters beyond i32 are clamped: kamcmd's integers are 32-bit.
fn int(n: impl TryInto<i32>) -> Value<'static> {
    Value::Int(n.try_into().unwrap_or(i32::MAX))
}

/// `dmq.stats`: every statistic under its name in `stats.get_statistics
/// dmq:`, then the details that are not statistics (limits, the parts of a
/// total by send path, waiting work), then one entry per DMQ worker.
pub fn stats(call: &RpcCall) {
    let Some(m) = shared() else {
        call.fault(500, "dmq not initialized");
        return;
    };
    let queues = workers::stats(m);
    let figures: Vec<(&str, Value)> = dmq_core::statistics::STATISTICS.iter().map(|s| (s.name, int(statistics::read(m, s.id)))).collect();
    let details: Vec<(&str, Value)> =
        dmq_core::statistics::DETAILS.iter().map(|d| (d.name, int(statistics::read_detail(m, d.id)))).collect();
    let mut ok = call.add_struct(&figures) && call.add_struct(&details);
    let [pid, queued, processed] = dmq_core::statistics::WORKER_FIELDS;
    for w in &queues.workers {
        ok = ok && call.add_struct(&[(pid, Value::Int(w.pid)), (queued, int(w.queued)), (processed, int(w.processed))]);
    }
    if !ok {
        call.fault(500, "Server failure");
    }
}

/// `dmq.sync_status`: whether the node is synced, then one entry per
/// consumer's latest sync: why it ran, its state, how long it took (or
/// has taken), what arrived, and each asked node's answer.
pub fn sync_status(call: &RpcCall) {
    use dmq_core::sync_runs::{Answer, State};
    let Some(m) = shared() else {
        call.fault(500, "dmq not initialized");
        return;
    };
    let Some((joined, runs)) = sync_status::snapshot(m) else {
        call.fault(500, "dmq not initialized");
        return;
    };
    let now = kamailio::clock::monotonic_ms();
    let policy = m.config.sync_policy;
    let synced = sync_status::is_synced(m, None);
    let mut ok = call.add_struct(&[("synced", Value::Int(synced as i32)), ("join_sync_sent", Value::Int(joined as i32))]);
    for run in &runs.runs {
        let state = match run.state {
            State::Pending => "pending",
            State::Done { .. } => "done",
            State::TimedOut { .. } => "timed_out",
        };
        let (messages, bytes) = run.received();
        let donors: Vec<String> = run
            .donors
            .iter()
            .map(|d| {
                let answer = match d.answer {
                    Answer::Waiting => "no answer yet".to_string(),
                    Answer::Sent { counted: Some((n, id)), .. } => format!("200, {}/{n} items", d.items_of(id)),
                    Answer::Sent { counted: None, .. } => format!("200 (stock), {} messages", d.messages),
                    Answer::Failed { code: 0 } => "gone".to_string(),
                    Answer::Failed { code } => format!("{code}"),
                };
                let done = if d.done(now, &policy) { "done" } else { "waiting" };
                format!("{} {done}: {answer}", d.node)
            })
            .collect();
        let donors = if donors.is_empty() { "none (alone)".to_string() } else { donors.join("; ") };
        ok = ok
            && call.add_struct(&[
                ("consumer", Value::Str(&run.consumer)),
                ("reason", Value::Str(run.reason.name())),
                ("state", Value::Str(state)),
                ("duration_ms", Value::Int(run.duration_ms(now).min(i32::MAX as u64) as i32)),
                ("started_ms_ago", Value::Int(now.saturating_sub(run.started_ms).min(i32::MAX as u64) as i32)),
                ("messages", Value::Int(messages.min(i32::MAX as u64) as i32)),
                ("bytes", Value::Int(bytes.min(i32::MAX as u64) as i32)),
                ("donors", Value::Str(&donors)),
            ]);
    }
    if !ok {
        call.fault(500, "Server failure");
    }
}

/// `dmq.resync [consumer] [node]`: asks one node (or every active node)
/// for one consumer's state (or every consumer's) again; followed in
/// `dmq.sync_status`. A consumer named `*` stands for every one, so that a
/// node can be given alone.
pub fn resync(call: &RpcCall) {
    let consumer = call.string_param().filter(|c| c != "*" && !c.is_empty());
    let node = match call.string_param().map(|a| node_uri::parse_node_line(&a)) {
        None => None,
        Some(Ok(line)) => Some(line.uri),
        Some(Err(_)) => {
            call.fault(400, "Invalid node address");
            return;
        }
    };
    let Some(m) = shared() else {
        call.fault(500, "dmq not initialized");
        return;
    };
    match messaging::resync(m, consumer.as_deref(), node.as_ref()) {
        Ok(asked) => {
            log::info!(
                "dmq.resync: asked {} for the state of {}",
                node.as_ref().map_or("every node".to_string(), |n| n.to_string()),
                asked.join(", ")
            );
            call.print(&format!("Ok. Resync of {} started.", asked.join(", ")));
        }
        Err(e) => call.fault(404, &e),
    }
}
