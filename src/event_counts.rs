//! How many times each event happened (a ping sent, a reply received, …):
//! one atomic per kind of event in shm (`shared::EventCounters`), shared
//! by every process. Above `shared` alone: any file may add one. `statistics` turns
//! them (and the figures other parts keep: the job queues, the in-flight
//! table) into the statistics Kamailio and `dmq.stats` show.

use std::sync::atomic::Ordering;

use crate::shared::Shared;

/// What is counted here. Adding one: a variant, then the statistic that
/// shows it (`dmq_core::statistics`, read in `statistics::read`).
#[derive(Clone, Copy, Debug)]
pub enum EventCount {
    /// Node notifications sent outside ping rounds (startup, news passed on).
    NotificationsSent,
    /// Notifications (pings included) received on the notification channel.
    NotificationsReceived,
    /// Pings sent (one per node and ping round).
    PingsSent,
    /// Notifications received with Max-Forwards 1 (pings of other nodes).
    PingsReceived,
    /// Our pings that were answered 200.
    PingsAnswered,
    /// Peer messages sent (htable, dmq_usrloc, ... and the script's), on
    /// either path; resends after a 503 not included.
    MessagesSent,
    /// Of those, sent through tm.
    MessagesSentThroughTm,
    /// Peer messages received for a known peer (queued, refused or run).
    MessagesReceived,
    /// Final replies to the peer messages we sent, by class.
    Replies2xx,
    Replies3xx,
    Replies4xx,
    Replies5xx,
    Replies6xx,
    /// Peer messages sent through tm that got no reply (tm's 408).
    TmTimeouts,
    /// dmq_usrloc updates that went to a node inside a batch (one `multi`
    /// message) instead of alone.
    MessagesBatched,
    /// Batches sent.
    BatchesSent,
    /// Lookups of `notification_address` names (the DNS process).
    DnsLookups,
    /// Of those, lookups that found no address (no answer, or no records).
    DnsFailures,
    /// Nodes added because a name listed a new address.
    DnsNodesAdded,
    /// Nodes removed because their name no longer listed them and they
    /// did not answer (or another entry stood for the same node).
    DnsNodesRemoved,
    /// Updates that waited for an earlier copy of their key (`ordering`).
    UpdatesWaited,
    /// Waiting updates replaced by a newer one of the same key.
    UpdatesCoalesced,
    /// Updates sent without per-key order (no room to track them).
    UpdatesUnordered,
    /// Copies of a peer message received before (`duplicates`).
    DuplicatesIgnored,
    /// Items of sync copies older than a live update applied here (`freshness`).
    SyncItemsRefused,
}

const KINDS: usize = EventCount::SyncItemsRefused as usize + 1;

// The shared counters have one place per kind.
const _: () = assert!(KINDS == crate::shared::EVENT_KINDS, "shared::EVENT_KINDS must be the number of EventCount variants");

/// One more `what`.
pub fn add(m: &Shared, what: EventCount) {
    m.events[what as usize].fetch_add(1, Ordering::Relaxed);
}

/// A final reply `code` to a peer message we sent, counted by its class.
pub fn add_reply(m: &Shared, code: i32) {
    let what = match code {
        200..=299 => EventCount::Replies2xx,
        300..=399 => EventCount::Replies3xx,
        400..=499 => EventCount::Replies4xx,
        500..=599 => EventCount::Replies5xx,
        600..=699 => EventCount::Replies6xx,
        _ => return,
    };
    add(m, what);
}

/// How many `what` so far.
pub fn get(m: &Shared, what: EventCount) -> u64 {
    m.events[what as usize].load(Ordering::Relaxed)
}
