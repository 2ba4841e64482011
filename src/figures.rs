//! Event counts the module keeps in shm for Kamailio's statistics (see
//! `statistics`): one atomic per kind of event, shared by every process,
//! made in mod_init before fork. A leaf: any file may count.
//! Figures that other parts already keep (the job queues, the in-flight
//! table) stay there; `statistics` reads them where they are.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use kamailio::shm::leak_zeroed;

/// What is counted here. Adding one: a variant, then a line in
/// `statistics::STATISTICS` that reads it.
#[derive(Clone, Copy, Debug)]
pub enum Count {
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
}

const KINDS: usize = Count::DnsNodesRemoved as usize + 1;

static COUNTS: OnceLock<&'static [AtomicU64; KINDS]> = OnceLock::new();

/// mod_init: the counters in shm.
pub fn init() -> Result<(), String> {
    let counts = leak_zeroed::<[AtomicU64; KINDS]>().ok_or("out of shm for the DMQ statistics")?;
    COUNTS.set(counts).map_err(|_| "statistics initialized twice".to_string())
}

/// One more `what`.
pub fn count(what: Count) {
    if let Some(c) = COUNTS.get() {
        c[what as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// A final reply `code` to a peer message we sent, counted by its class.
pub fn count_reply(code: i32) {
    let what = match code {
        200..=299 => Count::Replies2xx,
        300..=399 => Count::Replies3xx,
        400..=499 => Count::Replies4xx,
        500..=599 => Count::Replies5xx,
        600..=699 => Count::Replies6xx,
        _ => return,
    };
    count(what);
}

/// How many `what` so far (0 before mod_init).
pub fn get(what: Count) -> u64 {
    COUNTS.get().map(|c| c[what as usize].load(Ordering::Relaxed)).unwrap_or(0)
}
