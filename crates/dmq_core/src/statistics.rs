//! The module's statistics, declared once: name, kind and a line of
//! description. From [`for_each_statistic!`](crate::for_each_statistic) come [`STATISTICS`] (read by
//! the guide test), the [`Statistic`] the module reads each value by, and in
//! the module the table registered with Kamailio (group `dmq`:
//! `kamcmd stats.get_statistics dmq:`, xhttp_prom's `kamailio_dmq_*`).
//! `dmq.stats` shows every statistic under the same name, then the
//! [`Detail`] figures that are not statistics (limits, parts of a total by
//! send path, waiting work), then one entry per DMQ worker.

/// Whether a value grows from startup or is a level now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    /// The word of the guide's table.
    pub fn word(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// Hands the declaration to `$callback!`, one entry per statistic in the
/// order they are registered: `Variant = "name", Kind, "description";`.
#[macro_export]
macro_rules! for_each_statistic {
    ($callback:ident) => {
        $callback! {
            Nodes = "nodes", Gauge, "nodes in the node list, this one included";
            NodesActive = "nodes_active", Gauge, "nodes active (this one included)";
            NodesPending = "nodes_pending", Gauge, "nodes learned but not confirmed yet";
            NodesTimeout = "nodes_timeout", Gauge, "nodes whose last ping went unanswered";
            NodesNotActive = "nodes_not_active", Gauge, "nodes kept after failed pings (remove_inactive=0)";
            NodesDisabled = "nodes_disabled", Gauge, "nodes that announced they leave";
            NodesRefused = "nodes_refused", Counter, "nodes notifications named beyond the node limit";
            NotificationsSent = "notifications_sent", Counter, "node notifications sent outside ping rounds";
            NotificationsReceived = "notifications_received", Counter, "node notifications received and admitted (pings included)";
            PingsSent = "pings_sent", Counter, "pings sent (one per node and ping round)";
            PingsReceived = "pings_received", Counter, "notifications received with Max-Forwards 1 (other nodes' pings)";
            PingsAnswered = "pings_answered", Counter, "our pings answered with 200";
            MessagesSent = "messages_sent", Counter, "peer messages sent, both paths (resends not included)";
            MessagesReceived = "messages_received", Counter, "peer messages received for a known peer and admitted";
            MessagesReplied2xx = "messages_replied_2xx", Counter, "peer messages sent and answered 2xx";
            MessagesReplied3xx = "messages_replied_3xx", Counter, "peer messages sent and answered 3xx";
            MessagesReplied4xx = "messages_replied_4xx", Counter, "peer messages sent and answered 4xx";
            MessagesReplied5xx = "messages_replied_5xx", Counter, "peer messages sent and answered 5xx (a 503 only when final)";
            MessagesReplied6xx = "messages_replied_6xx", Counter, "peer messages sent and answered 6xx";
            MessagesBatched = "messages_batched", Counter, "dmq_usrloc updates sent inside a batch (one multi message) with others to the same node";
            BatchesSent = "batches_sent", Counter, "batches of dmq_usrloc updates sent";
            ShmKeptForReuse = "shm_kept_for_reuse", Gauge, "bytes of shm blocks kept for the next messages instead of freed (part of shm used)";
            MessagesRetransmitted = "messages_retransmitted", Counter, "peer messages sent again without tm (UDP retransmissions; TCP/TLS copies after silence or a refused send)";
            MessagesTimedOut = "messages_timed_out", Counter, "peer messages that got no final reply within 30 s (both paths)";
            MessagesSentThroughTm = "messages_sent_through_tm", Counter, "peer messages sent through tm (nodes on another transport than the DMQ socket or unresolved, a full table)";
            MessagesRetriedAfter503 = "messages_retried_after_503", Counter, "peer messages sent again after a 503 (both paths)";
            MessagesInFlight = "messages_in_flight", Gauge, "peer messages waiting for their reply now (without tm)";
            MessagesInFlightPeak = "messages_in_flight_peak", Gauge, "most peer messages ever waiting for their reply";
            ForgedReplies = "forged_replies", Counter, "replies ignored: wrong source, Call-ID or CSeq";
            JobsQueued = "jobs_queued", Gauge, "received peer messages waiting for a DMQ worker now";
            JobsPeak = "jobs_peak", Gauge, "most jobs ever waiting at once";
            JobsRejected = "jobs_rejected", Counter, "peer messages refused with 503 (job_queue_limit reached)";
            JobsProcessed = "jobs_processed", Counter, "peer messages handed to their peer (by the DMQ workers or at once)";
            JobsInPlace = "jobs_in_place", Counter, "single-item updates run at once by the process that received them (updates_in_place)";
            RefusedNotMember = "refused_not_member", Counter, "peer messages refused with 403: not from a listed node (members_only)";
            RefusedUntrustedNetwork = "refused_untrusted_network", Counter, "notifications refused and nodes not listed: outside trusted_network";
            RefusedBadSignature = "refused_bad_signature", Counter, "KDMQ refused with 403: no valid recent signature (shared_secret)";
            RefusedBadJson = "refused_bad_json", Counter, "peer messages refused with 400: a body the consumer would crash on";
            HealSyncs = "heal_syncs", Counter, "heal syncs run: our state sent to a node that came back";
            HealPulls = "heal_pulls", Counter, "nodes asked for their state: met after this node's join sync (a merged group, nodes started at once)";
            HealSyncsDeferred = "heal_syncs_deferred", Counter, "node returns folded into a later heal sync (rate limit)";
            DnsLookups = "dns_lookups", Counter, "lookups of notification_address names (in the DMQ DNS process)";
            DnsFailures = "dns_failures", Counter, "lookups of notification_address names that found no address (no answer or no records)";
            DnsNodesAdded = "dns_nodes_added", Counter, "nodes added because a notification_address name listed a new address";
            DnsNodesRemoved = "dns_nodes_removed", Counter, "nodes removed because their name no longer listed them and they did not answer";
            HealStalls = "heal_stalls", Counter, "times this node's own processes stood still (it then sent its state to all)";
            UpdatesWaited = "updates_waited", Counter, "replicated updates that waited for the answer to an earlier copy of the same item to the same node (per-key order)";
            UpdatesCoalesced = "updates_coalesced", Counter, "waiting updates replaced by a newer one of the same item (the node only needs the newest)";
            UpdatesUnordered = "updates_unordered", Counter, "updates sent without per-key order: too many items on their way or waiting to track them";
            DuplicatesIgnored = "duplicates_ignored", Counter, "copies of a peer message received before (retransmissions): never handed to the consumer again, answered as the first";
            SyncItemsRefused = "sync_items_refused", Counter, "items of sync copies (join, heal) refused: older than a live update of the item already applied here";
            UpdatesWaiting = "updates_waiting", Gauge, "updates waiting now for the answer to an earlier copy of the same item";
            SyncPending = "sync_pending", Gauge, "consumers' syncs in progress: asked, neither done nor timed out (dmq.sync_status)";
            Synced = "synced", Gauge, "1 once every consumer's latest sync is done (what dmq_is_synced() says), else 0";
            SyncsDone = "syncs_done", Counter, "consumers' syncs done: every asked node answered and all it sent arrived";
            SyncsTimedOut = "syncs_timed_out", Counter, "consumers' syncs not done within sync_timeout";
            SyncLastDurationMs = "sync_last_duration_ms", Gauge, "how long the latest sync that ended took, in ms";
        }
    };
}

/// One declared figure: a statistic, or a detail of `dmq.stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Declared<Id: 'static> {
    pub id: Id,
    pub name: &'static str,
    pub kind: Kind,
    pub description: &'static str,
}

macro_rules! declare {
    ($(#[$doc:meta])* $enum:ident, $list:ident; $($variant:ident = $name:literal, $kind:ident, $description:literal;)*) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $enum {
            $(
                #[doc = $description]
                $variant,
            )*
        }

        pub const $list: &[Declared<$enum>] = &[
            $(Declared { id: $enum::$variant, name: $name, kind: Kind::$kind, description: $description },)*
        ];

        impl $enum {
            pub fn name(self) -> &'static str {
                $list[self as usize].name
            }
        }
    };
}

macro_rules! declare_statistics {
    ($($entries:tt)*) => {
        declare! {
            /// A statistic of group `dmq`.
            Statistic, STATISTICS; $($entries)*
        }
    };
}

for_each_statistic!(declare_statistics);

declare! {
    /// A figure `dmq.stats` shows besides the statistics.
    Detail, DETAILS;
    JobQueueLimit = "job_queue_limit", Gauge, "job_queue_limit as set";
    Workers = "workers", Gauge, "DMQ worker processes";
    MessagesSentWithoutTm = "messages_sent_without_tm", Counter, "of messages_sent, those sent without tm (a batch counting once)";
    MessagesTimedOutWithoutTm = "messages_timed_out_without_tm", Counter, "of messages_timed_out, those sent without tm";
    MessagesRetriedAfter503WithoutTm = "messages_retried_after_503_without_tm", Counter, "of messages_retried_after_503, those sent without tm";
    MessagesRetriedAfter503ThroughTm = "messages_retried_after_503_through_tm", Counter, "of messages_retried_after_503, those sent through tm";
    SentThroughTmTableFull = "sent_through_tm_table_full", Counter, "peer messages sent through tm because the in-flight table was full";
    TmRetriesWaiting = "tm_retries_waiting", Gauge, "peer messages waiting to be sent through tm again after a 503";
    NodeLimit = "node_limit", Gauge, "most nodes the node list holds";
    HealSyncPushes = "heal_sync_pushes", Counter, "peer state pushes sent by heal syncs";
    HealSyncsWaiting = "heal_syncs_waiting", Gauge, "heal syncs waiting to run";
}

/// The fields of each per-worker entry of `dmq.stats`, after the figures.
pub const WORKER_FIELDS: [&str; 3] = ["worker_pid", "jobs_queued", "jobs_processed"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_declared_once() {
        let names: Vec<&str> = STATISTICS.iter().map(|s| s.name).chain(DETAILS.iter().map(|d| d.name)).collect();
        for (i, name) in names.iter().enumerate() {
            assert!(!names[..i].contains(name), "{name} declared twice");
            assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{name}: a metric name");
        }
        assert!(STATISTICS.iter().all(|s| !s.description.is_empty() && !s.description.contains('"')));
    }

    #[test]
    fn ids_index_their_declaration() {
        for (i, s) in STATISTICS.iter().enumerate() {
            assert_eq!(s.id as usize, i);
            assert_eq!(s.id.name(), s.name);
        }
        for (i, d) in DETAILS.iter().enumerate() {
            assert_eq!(d.id as usize, i);
        }
        assert_eq!(Statistic::MessagesSent.name(), "messages_sent");
        assert_eq!(Detail::MessagesSentWithoutTm.name(), "messages_sent_without_tm");
    }
}
