//! Sync copies older than what a node already applied. A sync (a node
//! that joins asks everyone for their state; a heal sync or pull) sends a
//! copy of the sender's state, read item by item while live updates go on.
//! A live update of an item (from its writer, in order: `ordering`) can
//! reach a node before a sync copy of the same item that another node read
//! earlier: applied after it, the copy would bring back what was deleted or
//! changed since. So a sync copy from a dmq_rs node says how long ago its
//! sync began (`sync_headers::SYNC_AGE_HEADER`), and the receiver refuses its
//! items that had a live update here since then ([`MARGIN_MS`] earlier, for
//! the time the copy spent on its way): the live stream brings their newest
//! state anyway, a sync copy adds only what the live stream did not bring.
//!
//! The live updates applied lately are a two-way set-associative table of
//! item keys and when (plain data, kept by the caller in shm under a
//! lock); an entry lives until a newer one takes its place (65 536
//! entries: some 16 s at 4 000 updates a second, beyond a sync's length).

/// A sync copy's items are refused when their item had a live update up to
/// this long before its sync began, as the receiver reckons it.
pub const MARGIN_MS: u64 = 1000;

/// When the sync of a copy received at `now_ms` with age `age_ms` began,
/// less the margin: a live update applied after it makes the copy stale.
pub fn stale_after(now_ms: u64, age_ms: u64) -> u64 {
    now_ms.saturating_sub(age_ms).saturating_sub(MARGIN_MS)
}

/// The live updates applied lately: `keys[i]` (0 empty) at `at_ms[i]`.
pub struct RecentWrites<'a> {
    pub keys: &'a mut [u64],
    pub at_ms: &'a mut [u64],
}

impl RecentWrites<'_> {
    fn set(&self, key: u64) -> usize {
        (key as usize % (self.keys.len() / 2).max(1)) * 2
    }

    fn slots(&self, key: u64) -> std::ops::Range<usize> {
        let s = self.set(key);
        s..(s + 2).min(self.keys.len())
    }

    /// Item `key` had a live update at `now_ms`.
    pub fn note(&mut self, key: u64, now_ms: u64) {
        let key = key.max(1);
        let slots = self.slots(key);
        let i = slots.clone().find(|&i| self.keys[i] == key).or_else(|| slots.min_by_key(|&i| self.at_ms[i]));
        if let Some(i) = i {
            (self.keys[i], self.at_ms[i]) = (key, now_ms);
        }
    }

    /// Whether item `key` had a live update after `since_ms`.
    pub fn written_after(&self, key: u64, since_ms: u64) -> bool {
        let key = key.max(1);
        self.slots(key).any(|i| self.keys[i] == key && self.at_ms[i] > since_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_older_than_a_live_update_is_stale() {
        let (mut keys, mut at) = (vec![0; 8], vec![0; 8]);
        let mut recent = RecentWrites { keys: &mut keys, at_ms: &mut at };
        recent.note(42, 10_000);
        // A sync that began 2 s before the copy came at 11 000: at 9 000.
        assert!(recent.written_after(42, stale_after(11_000, 2_000)));
        // One that began at 10 500 (margin: counts as 9 500): still stale.
        assert!(recent.written_after(42, stale_after(11_000, 500)));
        // One that began well after the live update: the copy is newer.
        assert!(!recent.written_after(42, stale_after(20_000, 1_000)));
        assert!(!recent.written_after(43, 0), "an item without live updates");
    }

    #[test]
    fn the_older_entry_of_a_set_gives_way() {
        let (mut keys, mut at) = (vec![0; 2], vec![0; 2]);
        let mut recent = RecentWrites { keys: &mut keys, at_ms: &mut at };
        recent.note(1, 100);
        recent.note(2, 200);
        recent.note(1, 300);
        recent.note(3, 400);
        assert!(recent.written_after(1, 250) && recent.written_after(3, 350));
        assert!(!recent.written_after(2, 0), "2 was the older: forgotten");
    }
}
