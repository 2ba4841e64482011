//! Sync copies older than an update applied here (`dmq_core::freshness`):
//! live updates applied here are noted with their time; a sync copy from a
//! dmq_rs node (`X-DMQ-Sync-Age`) keeps only its items that had no live
//! update since its sync began. The table is `shared::RecentData`, under
//! its own lock.

use dmq_core::freshness::{self, RecentWrites};
use dmq_core::ordering::{self, Keys, Retained};

use kamailio::clock::monotonic_ms;

use crate::event_counts::{self, EventCount};
use crate::shared::{RecentData, Shared};

fn with<R>(m: &Shared, f: impl FnOnce(&mut RecentWrites<'_>) -> R) -> R {
    let mut data = m.recent.lock();
    let RecentData { keys, at_ms } = &mut *data;
    f(&mut RecentWrites { keys, at_ms })
}

fn identified(peer: &str) -> bool {
    dmq_core::body_check::consumer_shape(peer).is_some()
}

/// A live update (not a sync copy) of these items (`ordering::identify`
/// of its body) was applied here, or made here, now.
pub fn note_live(m: &Shared, peer: &str, keys: Option<&Keys>) {
    let Some(keys) = keys.filter(|_| identified(peer)) else { return };
    let now = monotonic_ms();
    with(m, |recent| keys.items.iter().for_each(|&k| recent.note(k, now)));
}

/// What of a sync copy (`body`, its items `keys` as `ordering::identify`
/// read them, its sync begun `age_ms` before now) is not older than a live
/// update applied here: all, nothing, or a rebuilt body. Refused items are
/// counted.
pub fn fresh_part(m: &Shared, peer: &str, body: &[u8], keys: Option<&Keys>, age_ms: u64) -> Retained {
    if !identified(peer) {
        return Retained::All;
    }
    let Some(keys) = keys else { return Retained::All };
    let since = freshness::stale_after(monotonic_ms(), age_ms);
    let stale: Vec<u64> = with(m, |recent| keys.items.iter().copied().filter(|&k| recent.written_after(k, since)).collect());
    if stale.is_empty() {
        return Retained::All;
    }
    for _ in &stale {
        event_counts::add(m, EventCount::SyncItemsRefused);
    }
    ordering::retain_items(peer, body, |k| !stale.contains(&k))
}
