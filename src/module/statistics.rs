//! The module's figures in Kamailio's statistics, group `dmq`
//! (`kamcmd stats.get_statistics dmq:`, xhttp_prom's `kamailio_dmq_*`).
//! Each is computed when read, from the shm figures where they are kept:
//! the node list, `figures`, the job queues, the in-flight table, the
//! tm retry queue, the refusal counters (`admission`) and the heal syncs
//! (`heal`). `dmq.stats` keeps the per-worker detail.
//!
//! Adding a statistic is one line in [`STATISTICS`]: its name, a line of
//! description and the function that reads it (doc/dmq_rs.md lists every
//! name: `tests/guide.rs` fails until the guide has it).

use dmq_core::pending::PendingStats;
use dmq_core::protocol::NodeStatus;

use crate::host::stats::{self, Statistic};

use super::figures::{self, Count};
use super::{admission, cluster, direct_send, heal, messaging, workers};

fn pending() -> PendingStats {
    direct_send::stats().unwrap_or_default()
}

fn queues() -> (u64, u64, u64, u64, u64) {
    workers::stats().map(|q| (q.queued as u64, q.peak as u64, q.rejected, q.processed(), q.in_place)).unwrap_or_default()
}

/// Every statistic of group `dmq`, in the order they are listed.
pub static STATISTICS: &[Statistic] = &[
    Statistic::new(c"nodes", c"nodes in the node list, this one included", || cluster::count_nodes(None)),
    Statistic::new(c"nodes_active", c"nodes active (this one included)", || cluster::count_nodes(Some(NodeStatus::Active))),
    Statistic::new(c"nodes_pending", c"nodes learned but not confirmed yet", || cluster::count_nodes(Some(NodeStatus::Pending))),
    Statistic::new(c"nodes_timeout", c"nodes whose last ping went unanswered", || cluster::count_nodes(Some(NodeStatus::Timeout))),
    Statistic::new(c"nodes_not_active", c"nodes kept after failed pings (remove_inactive=0)", || cluster::count_nodes(Some(NodeStatus::NotActive))),
    Statistic::new(c"nodes_disabled", c"nodes that announced they leave", || cluster::count_nodes(Some(NodeStatus::Disabled))),
    Statistic::new(c"nodes_refused", c"nodes notifications named beyond the node limit", cluster::nodes_refused),
    Statistic::new(c"notifications_sent", c"node notifications sent outside ping rounds", || figures::get(Count::NotificationsSent)),
    Statistic::new(c"notifications_received", c"node notifications received and admitted (pings included)", || figures::get(Count::NotificationsReceived)),
    Statistic::new(c"pings_sent", c"pings sent (one per node and ping round)", || figures::get(Count::PingsSent)),
    Statistic::new(c"pings_received", c"notifications received with Max-Forwards 1 (other nodes' pings)", || figures::get(Count::PingsReceived)),
    Statistic::new(c"pings_answered", c"our pings answered with 200", || figures::get(Count::PingsAnswered)),
    Statistic::new(c"messages_sent", c"peer messages sent, both paths (resends not included)", || figures::get(Count::MessagesSent)),
    Statistic::new(c"messages_received", c"peer messages received for a known peer and admitted", || figures::get(Count::MessagesReceived)),
    Statistic::new(c"messages_replied_2xx", c"peer messages sent and answered 2xx", || figures::get(Count::Replies2xx)),
    Statistic::new(c"messages_replied_3xx", c"peer messages sent and answered 3xx", || figures::get(Count::Replies3xx)),
    Statistic::new(c"messages_replied_4xx", c"peer messages sent and answered 4xx", || figures::get(Count::Replies4xx)),
    Statistic::new(c"messages_replied_5xx", c"peer messages sent and answered 5xx (a 503 only when final)", || figures::get(Count::Replies5xx)),
    Statistic::new(c"messages_replied_6xx", c"peer messages sent and answered 6xx", || figures::get(Count::Replies6xx)),
    Statistic::new(c"messages_batched", c"dmq_usrloc updates sent inside a batch (one multi message) with others to the same node", || {
        figures::get(Count::MessagesBatched)
    }),
    Statistic::new(c"batches_sent", c"batches of dmq_usrloc updates sent", || figures::get(Count::BatchesSent)),
    Statistic::new(c"shm_kept_for_reuse", c"bytes of shm blocks kept for the next messages instead of freed (part of shm used)", || {
        crate::host::shm::recycled::kept().1 as u64
    }),
    Statistic::new(c"messages_retransmitted", c"peer messages sent again without tm (UDP retransmissions; TCP/TLS copies after silence or a refused send)", || pending().retransmissions),
    Statistic::new(c"messages_timed_out", c"peer messages that got no final reply within 30 s (both paths)", || {
        pending().timeouts + figures::get(Count::TmTimeouts)
    }),
    Statistic::new(c"messages_sent_through_tm", c"peer messages sent through tm (nodes on another transport than the DMQ socket or unresolved, a full table)", || {
        figures::get(Count::MessagesSentThroughTm)
    }),
    Statistic::new(c"messages_retried_after_503", c"peer messages sent again after a 503 (both paths)", || {
        pending().retries_after_503 + messaging::busy_retry_stats().1
    }),
    Statistic::new(c"messages_in_flight", c"peer messages waiting for their reply now (without tm)", || u64::from(pending().in_flight)),
    Statistic::new(c"messages_in_flight_peak", c"most peer messages ever waiting for their reply", || u64::from(pending().peak)),
    Statistic::new(c"forged_replies", c"replies ignored: wrong source, Call-ID or CSeq", || pending().forged_replies),
    Statistic::new(c"jobs_queued", c"received peer messages waiting for a DMQ worker now", || queues().0),
    Statistic::new(c"jobs_peak", c"most jobs ever waiting at once", || queues().1),
    Statistic::new(c"jobs_rejected", c"peer messages refused with 503 (job_queue_limit reached)", || queues().2),
    Statistic::new(c"jobs_processed", c"peer messages handed to their peer (by the DMQ workers or at once)", || queues().3),
    Statistic::new(c"jobs_in_place", c"single-item updates run at once by the process that received them (updates_in_place)", || queues().4),
    Statistic::new(c"refused_not_member", c"peer messages refused with 403: not from a listed node (members_only)", || admission::stats().not_member),
    Statistic::new(c"refused_untrusted_network", c"notifications refused and nodes not listed: outside trusted_network", || admission::stats().untrusted_network),
    Statistic::new(c"refused_bad_signature", c"KDMQ refused with 403: no valid recent signature (shared_secret)", || admission::stats().bad_signature),
    Statistic::new(c"refused_bad_json", c"peer messages refused with 400: a body the consumer would crash on", || admission::stats().bad_json),
    Statistic::new(c"heal_syncs", c"heal syncs run: our state sent to a node that came back", || heal::stats().syncs),
    Statistic::new(c"heal_pulls", c"nodes asked for their state: met after this node's join sync (a merged group, nodes started at once)", || {
        heal::stats().pulls
    }),
    Statistic::new(c"heal_syncs_deferred", c"node returns folded into a later heal sync (rate limit)", || heal::stats().deferred),
    Statistic::new(c"dns_lookups", c"lookups of notification_address names (in the DMQ DNS process)", || figures::get(Count::DnsLookups)),
    Statistic::new(c"dns_failures", c"lookups of notification_address names that found no address (no answer or no records)", || {
        figures::get(Count::DnsFailures)
    }),
    Statistic::new(c"dns_nodes_added", c"nodes added because a notification_address name listed a new address", || {
        figures::get(Count::DnsNodesAdded)
    }),
    Statistic::new(c"dns_nodes_removed", c"nodes removed because their name no longer listed them and they did not answer", || {
        figures::get(Count::DnsNodesRemoved)
    }),
    Statistic::new(c"heal_stalls", c"times this node's own processes stood still (it then sent its state to all)", || heal::stats().stalls),
];

/// mod_init: registers the list under `dmq`.
pub fn register() -> Result<(), String> {
    stats::register(c"dmq", STATISTICS)
}

