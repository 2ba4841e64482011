//! `kamcmd dmq.*`.

use crate::host::release::STATUS_WORDS;
use crate::host::rpc::{RpcCall, Value};

use dmq_core::protocol;

use super::figures::{self, Count};
use super::state::module;
use super::{admission, cluster, direct_send, heal, messaging, workers};

/// `dmq.list_nodes`: every node, as the stock module lists them, in the
/// status words of the release the module runs on (with 6.1's `fail_count`).
pub fn list_nodes(call: &RpcCall) {
    // Copy under the lock, reply after releasing it.
    let Some(list) = cluster::read_nodes(|list| list.clone()) else {
        call.fault(500, "dmq not initialized");
        return;
    };
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
    let Ok(line) = protocol::parse_node_line(&address) else {
        call.fault(500, "Invalid Parameters");
        return;
    };
    match cluster::with_nodes(|list| list.remove(&line.uri)) {
        Some(true) => {
            log::info!("node {} removed by RPC", line.uri);
            call.print("Ok. DMQ node removed.");
        }
        _ => call.fault(500, "Failure"),
    }
}

/// `dmq.add sip:host:port` (upstream master): a node the list did not have.
pub fn add(call: &RpcCall) {
    use dmq_core::peer_events::{parse_address, ChangeError};
    let Some(m) = module() else {
        call.fault(500, "dmq not initialized");
        return;
    };
    let Some(address) = call.string_param() else {
        call.fault(500, "Invalid Parameters");
        return;
    };
    let result = parse_address(&address).and_then(|uri| cluster::add_by_operator(m, &uri).map(|_| uri));
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
    let result = parse_address(&address)
        .and_then(|uri| Ok((uri, parse_status_word(&word).ok_or(ChangeError::BadStatus)?)))
        .and_then(|(uri, status)| cluster::change_status_by_operator(&uri, status).map(|changed| (uri, changed)));
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

/// `dmq.stats`: job queues, messages in flight, tm retries, node limit,
/// then one entry per worker.
pub fn stats(call: &RpcCall) {
    let Some(stats) = workers::stats() else {
        call.fault(500, "dmq not initialized");
        return;
    };
    let mut ok = call.add_struct(&[
        ("jobs_waiting", int(stats.queued)),
        ("jobs_peak", int(stats.peak)),
        ("jobs_rejected", int(stats.rejected)),
        ("jobs_processed", int(stats.processed())),
        ("jobs_in_place", int(stats.in_place)),
        ("job_queue_limit", int(stats.limit)),
        ("workers", int(stats.workers.len())),
    ]);
    if let Some(p) = direct_send::stats() {
        ok = ok
            && call.add_struct(&[
                ("messages_sent", int(p.sent)),
                ("messages_in_flight", int(p.in_flight)),
                ("messages_in_flight_peak", int(p.peak)),
                ("retransmissions", int(p.retransmissions)),
                ("timeouts", int(p.timeouts)),
                ("retries_after_503", int(p.retries_after_503)),
                ("sent_through_tm_table_full", int(p.overflows)),
                ("forged_replies", int(p.forged_replies)),
                ("messages_batched", int(figures::get(Count::MessagesBatched))),
                ("batches_sent", int(figures::get(Count::BatchesSent))),
                ("shm_kept_for_reuse", int(crate::host::shm::recycled::kept().1)),
            ]);
    }
    let (busy_waiting, busy_resent) = messaging::busy_retry_stats();
    ok = ok
        && call.add_struct(&[
            ("tm_retries_waiting", int(busy_waiting)),
            ("tm_retries_after_503", int(busy_resent)),
            ("nodes_refused", int(cluster::nodes_refused())),
            ("node_limit", int(dmq_core::nodes::MAX_NODES)),
        ]);
    let refused = admission::stats();
    ok = ok
        && call.add_struct(&[
            ("refused_not_member", int(refused.not_member)),
            ("refused_untrusted_network", int(refused.untrusted_network)),
            ("refused_bad_signature", int(refused.bad_signature)),
            ("refused_bad_json", int(refused.bad_json)),
        ]);
    let h = heal::stats();
    ok = ok
        && call.add_struct(&[
            ("heal_syncs", int(h.syncs)),
            ("heal_sync_pushes", int(h.pushes)),
            ("heal_syncs_deferred", int(h.deferred)),
            ("heal_syncs_waiting", int(h.waiting)),
            ("heal_stalls", int(h.stalls)),
            ("heal_pulls", int(h.pulls)),
        ]);
    ok = ok
        && call.add_struct(&[
            ("dns_lookups", int(figures::get(Count::DnsLookups))),
            ("dns_failures", int(figures::get(Count::DnsFailures))),
            ("dns_nodes_added", int(figures::get(Count::DnsNodesAdded))),
            ("dns_nodes_removed", int(figures::get(Count::DnsNodesRemoved))),
        ]);
    for w in &stats.workers {
        ok = ok && call.add_struct(&[("worker_pid", Value::Int(w.pid)), ("jobs_waiting", int(w.queued)), ("jobs_processed", int(w.processed))]);
    }
    if !ok {
        call.fault(500, "Server failure");
    }
}
