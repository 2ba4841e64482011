//! The module's figures in Kamailio's statistics, group `dmq`
//! (`kamcmd stats.get_statistics dmq:`, xhttp_prom's `kamailio_dmq_*`), and
//! in `dmq.stats` under the same names. The names, kinds and descriptions
//! are declared once in `dmq_core::statistics`; here each gets its reader.
//! Each value is computed when read, from the shm figures where they are
//! kept: the node list, `event_counts`, the job queues, the in-flight
//! table, the tm retry queue, the refusal counters (`admission`) and the
//! heal syncs (`heal`).
//!
//! Adding a statistic: a line in `dmq_core::for_each_statistic!`, then its
//! arm in [`read`] (the compiler asks for it), then its row in
//! doc/dmq_rs.md (`tests/guide.rs` fails until the guide has it).

use std::ffi::CStr;

use dmq_core::node_status::NodeStatus;
use dmq_core::pending::PendingStats;
use dmq_core::statistics::{Detail, Statistic as Declared};

use kamailio::stats::{self, Statistic};

use crate::event_counts::{self, EventCount};
use crate::{admission, direct_send, heal, messaging, node_list, ordering, sync_status, workers};

fn pending() -> PendingStats {
    direct_send::stats().unwrap_or_default()
}

fn queues() -> (u64, u64, u64, u64, u64) {
    workers::stats().map(|q| (q.queued as u64, q.peak as u64, q.rejected, q.processed(), q.in_place)).unwrap_or_default()
}

/// The value of a statistic now.
pub fn read(statistic: Declared) -> u64 {
    use Declared::*;
    match statistic {
        Nodes => node_list::count_nodes(None),
        NodesActive => node_list::count_nodes(Some(NodeStatus::Active)),
        NodesPending => node_list::count_nodes(Some(NodeStatus::Pending)),
        NodesTimeout => node_list::count_nodes(Some(NodeStatus::Timeout)),
        NodesNotActive => node_list::count_nodes(Some(NodeStatus::NotActive)),
        NodesDisabled => node_list::count_nodes(Some(NodeStatus::Disabled)),
        NodesRefused => node_list::nodes_refused(),
        NotificationsSent => event_counts::get(EventCount::NotificationsSent),
        NotificationsReceived => event_counts::get(EventCount::NotificationsReceived),
        PingsSent => event_counts::get(EventCount::PingsSent),
        PingsReceived => event_counts::get(EventCount::PingsReceived),
        PingsAnswered => event_counts::get(EventCount::PingsAnswered),
        MessagesSent => event_counts::get(EventCount::MessagesSent),
        MessagesReceived => event_counts::get(EventCount::MessagesReceived),
        MessagesReplied2xx => event_counts::get(EventCount::Replies2xx),
        MessagesReplied3xx => event_counts::get(EventCount::Replies3xx),
        MessagesReplied4xx => event_counts::get(EventCount::Replies4xx),
        MessagesReplied5xx => event_counts::get(EventCount::Replies5xx),
        MessagesReplied6xx => event_counts::get(EventCount::Replies6xx),
        MessagesBatched => event_counts::get(EventCount::MessagesBatched),
        BatchesSent => event_counts::get(EventCount::BatchesSent),
        ShmKeptForReuse => kamailio::shm::recycled::kept().1 as u64,
        MessagesRetransmitted => pending().retransmissions,
        MessagesTimedOut => pending().timeouts + event_counts::get(EventCount::TmTimeouts),
        MessagesSentThroughTm => event_counts::get(EventCount::MessagesSentThroughTm),
        MessagesRetriedAfter503 => pending().retries_after_503 + messaging::busy_retry_stats().1,
        MessagesInFlight => u64::from(pending().in_flight),
        MessagesInFlightPeak => u64::from(pending().peak),
        ForgedReplies => pending().forged_replies,
        JobsQueued => queues().0,
        JobsPeak => queues().1,
        JobsRejected => queues().2,
        JobsProcessed => queues().3,
        JobsInPlace => queues().4,
        RefusedNotMember => admission::stats().not_member,
        RefusedUntrustedNetwork => admission::stats().untrusted_network,
        RefusedBadSignature => admission::stats().bad_signature,
        RefusedBadJson => admission::stats().bad_json,
        HealSyncs => heal::stats().syncs,
        HealPulls => heal::stats().pulls,
        HealSyncsDeferred => heal::stats().deferred,
        DnsLookups => event_counts::get(EventCount::DnsLookups),
        DnsFailures => event_counts::get(EventCount::DnsFailures),
        DnsNodesAdded => event_counts::get(EventCount::DnsNodesAdded),
        DnsNodesRemoved => event_counts::get(EventCount::DnsNodesRemoved),
        HealStalls => heal::stats().stalls,
        UpdatesWaited => event_counts::get(EventCount::UpdatesWaited),
        UpdatesCoalesced => event_counts::get(EventCount::UpdatesCoalesced),
        UpdatesUnordered => event_counts::get(EventCount::UpdatesUnordered),
        UpdatesWaiting => u64::from(ordering::waiting()),
        DuplicatesIgnored => event_counts::get(EventCount::DuplicatesIgnored),
        SyncItemsRefused => event_counts::get(EventCount::SyncItemsRefused),
        SyncPending => sync_status::stats().0,
        Synced => u64::from(sync_status::is_synced(None)),
        SyncsDone => sync_status::stats().1,
        SyncsTimedOut => sync_status::stats().2,
        SyncLastDurationMs => sync_status::stats().3,
    }
}

/// The value of a `dmq.stats` detail now.
pub fn read_detail(detail: Detail) -> u64 {
    match detail {
        Detail::JobQueueLimit => workers::stats().map(|q| q.limit as u64).unwrap_or_default(),
        Detail::Workers => workers::stats().map(|q| q.workers.len() as u64).unwrap_or_default(),
        Detail::MessagesSentWithoutTm => pending().sent,
        Detail::MessagesTimedOutWithoutTm => pending().timeouts,
        Detail::MessagesRetriedAfter503WithoutTm => pending().retries_after_503,
        Detail::MessagesRetriedAfter503ThroughTm => messaging::busy_retry_stats().1,
        Detail::SentThroughTmTableFull => pending().overflows,
        Detail::TmRetriesWaiting => messaging::busy_retry_stats().0 as u64,
        Detail::NodeLimit => dmq_core::nodes::MAX_NODES as u64,
        Detail::HealSyncPushes => heal::stats().pushes,
        Detail::HealSyncsWaiting => heal::stats().waiting as u64,
    }
}

/// A name or description as the C string Kamailio keeps.
const fn c_text(with_nul: &'static str) -> &'static CStr {
    match CStr::from_bytes_with_nul(with_nul.as_bytes()) {
        Ok(text) => text,
        Err(_) => panic!("a statistic's text with a NUL inside"),
    }
}

macro_rules! kamailio_table {
    ($($variant:ident = $name:literal, $kind:ident, $description:literal;)*) => {
        /// Every statistic of group `dmq`, in the order they are declared.
        pub static STATISTICS: &[Statistic] = &[
            $(Statistic::new(c_text(concat!($name, "\0")), c_text(concat!($description, "\0")), || read(Declared::$variant)),)*
        ];
    };
}

dmq_core::for_each_statistic!(kamailio_table);

/// mod_init: registers the list under `dmq`.
pub fn register() -> Result<(), String> {
    stats::register(c"dmq", STATISTICS).map_err(|e| e.to_string())
}
