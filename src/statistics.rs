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
use crate::shared::{shared, Shared};
use crate::{admission, direct_send, heal, messaging, node_list, ordering, sync_status, workers};

fn pending(m: &Shared) -> PendingStats {
    direct_send::stats(m)
}

fn queues(m: &Shared) -> (u64, u64, u64, u64, u64) {
    let q = workers::stats(m);
    (q.queued as u64, q.peak as u64, q.rejected, q.processed(), q.in_place)
}

/// What Kamailio reads (`kamcmd stats.get_statistics dmq:`): a statistic
/// now, 0 before mod_init but for what needs no shared state.
fn read_now(statistic: Declared) -> u64 {
    match shared() {
        Some(m) => read(m, statistic),
        None if statistic == Declared::ShmKeptForReuse => kamailio::shm::recycled::kept().1 as u64,
        None => 0,
    }
}

/// The value of a statistic now.
pub fn read(m: &Shared, statistic: Declared) -> u64 {
    use Declared::*;
    match statistic {
        Nodes => node_list::count_nodes(m, None),
        NodesActive => node_list::count_nodes(m, Some(NodeStatus::Active)),
        NodesPending => node_list::count_nodes(m, Some(NodeStatus::Pending)),
        NodesTimeout => node_list::count_nodes(m, Some(NodeStatus::Timeout)),
        NodesNotActive => node_list::count_nodes(m, Some(NodeStatus::NotActive)),
        NodesDisabled => node_list::count_nodes(m, Some(NodeStatus::Disabled)),
        NodesRefused => node_list::nodes_refused(m),
        NotificationsSent => event_counts::get(m, EventCount::NotificationsSent),
        NotificationsReceived => event_counts::get(m, EventCount::NotificationsReceived),
        PingsSent => event_counts::get(m, EventCount::PingsSent),
        PingsReceived => event_counts::get(m, EventCount::PingsReceived),
        PingsAnswered => event_counts::get(m, EventCount::PingsAnswered),
        MessagesSent => event_counts::get(m, EventCount::MessagesSent),
        MessagesReceived => event_counts::get(m, EventCount::MessagesReceived),
        MessagesReplied2xx => event_counts::get(m, EventCount::Replies2xx),
        MessagesReplied3xx => event_counts::get(m, EventCount::Replies3xx),
        MessagesReplied4xx => event_counts::get(m, EventCount::Replies4xx),
        MessagesReplied5xx => event_counts::get(m, EventCount::Replies5xx),
        MessagesReplied6xx => event_counts::get(m, EventCount::Replies6xx),
        MessagesBatched => event_counts::get(m, EventCount::MessagesBatched),
        BatchesSent => event_counts::get(m, EventCount::BatchesSent),
        ShmKeptForReuse => kamailio::shm::recycled::kept().1 as u64,
        MessagesRetransmitted => pending(m).retransmissions,
        MessagesTimedOut => pending(m).timeouts + event_counts::get(m, EventCount::TmTimeouts),
        MessagesSentThroughTm => event_counts::get(m, EventCount::MessagesSentThroughTm),
        MessagesRetriedAfter503 => pending(m).retries_after_503 + messaging::busy_retry_stats(m).1,
        MessagesInFlight => u64::from(pending(m).in_flight),
        MessagesInFlightPeak => u64::from(pending(m).peak),
        ForgedReplies => pending(m).forged_replies,
        JobsQueued => queues(m).0,
        JobsPeak => queues(m).1,
        JobsRejected => queues(m).2,
        JobsProcessed => queues(m).3,
        JobsInPlace => queues(m).4,
        RefusedNotMember => admission::stats(m).not_member,
        RefusedUntrustedNetwork => admission::stats(m).untrusted_network,
        RefusedBadSignature => admission::stats(m).bad_signature,
        RefusedBadJson => admission::stats(m).bad_json,
        HealSyncs => heal::stats(m).syncs,
        HealPulls => heal::stats(m).pulls,
        HealSyncsDeferred => heal::stats(m).deferred,
        DnsLookups => event_counts::get(m, EventCount::DnsLookups),
        DnsFailures => event_counts::get(m, EventCount::DnsFailures),
        DnsNodesAdded => event_counts::get(m, EventCount::DnsNodesAdded),
        DnsNodesRemoved => event_counts::get(m, EventCount::DnsNodesRemoved),
        HealStalls => heal::stats(m).stalls,
        UpdatesWaited => event_counts::get(m, EventCount::UpdatesWaited),
        UpdatesCoalesced => event_counts::get(m, EventCount::UpdatesCoalesced),
        UpdatesUnordered => event_counts::get(m, EventCount::UpdatesUnordered),
        UpdatesWaiting => u64::from(ordering::waiting(m)),
        DuplicatesIgnored => event_counts::get(m, EventCount::DuplicatesIgnored),
        SyncItemsRefused => event_counts::get(m, EventCount::SyncItemsRefused),
        SyncPending => sync_status::stats(m).0,
        Synced => u64::from(sync_status::is_synced(m, None)),
        SyncsDone => sync_status::stats(m).1,
        SyncsTimedOut => sync_status::stats(m).2,
        SyncLastDurationMs => sync_status::stats(m).3,
    }
}

/// The value of a `dmq.stats` detail now.
pub fn read_detail(m: &Shared, detail: Detail) -> u64 {
    match detail {
        Detail::JobQueueLimit => workers::stats(m).limit as u64,
        Detail::Workers => workers::stats(m).workers.len() as u64,
        Detail::MessagesSentWithoutTm => pending(m).sent,
        Detail::MessagesTimedOutWithoutTm => pending(m).timeouts,
        Detail::MessagesRetriedAfter503WithoutTm => pending(m).retries_after_503,
        Detail::MessagesRetriedAfter503ThroughTm => messaging::busy_retry_stats(m).1,
        Detail::SentThroughTmTableFull => pending(m).overflows,
        Detail::TmRetriesWaiting => messaging::busy_retry_stats(m).0 as u64,
        Detail::NodeLimit => dmq_core::nodes::MAX_NODES as u64,
        Detail::HealSyncPushes => heal::stats(m).pushes,
        Detail::HealSyncsWaiting => heal::stats(m).waiting as u64,
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
            $(Statistic::new(c_text(concat!($name, "\0")), c_text(concat!($description, "\0")), || read_now(Declared::$variant)),)*
        ];
    };
}

dmq_core::for_each_statistic!(kamailio_table);

/// mod_init: registers the list under `dmq`.
pub fn register() -> Result<(), String> {
    stats::register(c"dmq", STATISTICS).map_err(|e| e.to_string())
}
