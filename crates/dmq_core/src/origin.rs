//! Who wrote an item last, and the deletes a node missed: what a heal
//! needs so that it never brings back what was deleted.
//!
//! A heal sync sends a regained node our state. Sent whole, it carries
//! items another node wrote and has deleted since (while we were apart):
//! the regained node, and through it that writer, would get them back. So
//! a heal sync carries only the items this node wrote last ([`KeySet`] of
//! their keys: marked when our consumer broadcasts an update of its own,
//! unmarked when it deletes the item or applies another node's update of
//! it); each node answers for its own writes. The other half: a delete
//! that could not reach a node (it was not active, or the copy timed out)
//! is kept for it ([`MissedDeletes`], bounded; a later write of the item,
//! here or from another node, makes it moot) and sent when the node is
//! regained, before the heal sync.
//!
//! Plain data, kept by the caller in shm under a lock; each kept delete is
//! the caller's `M` (a shm block), opaque here.

/// A set of item keys (`ordering::identify`'s), open addressing with
/// linear probing (`keys[i] == 0` empty), 3/4 full at most.
pub struct KeySet<'a> {
    pub keys: &'a mut [u64],
    pub used: &'a mut u32,
}

fn slot_key(key: u64) -> u64 {
    if key == 0 {
        1
    } else {
        key
    }
}

impl KeySet<'_> {
    pub fn contains(&self, key: u64) -> bool {
        crate::probe::find(self.keys, slot_key(key)).is_some()
    }

    /// Adds `key`; false when the set is full.
    pub fn insert(&mut self, key: u64) -> bool {
        let key = slot_key(key);
        if crate::probe::find(self.keys, key).is_some() {
            return true;
        }
        if (*self.used as usize + 1) * 4 > self.keys.len() * 3 {
            return false;
        }
        let i = crate::probe::free_entry(self.keys, key);
        self.keys[i] = key;
        *self.used += 1;
        true
    }

    pub fn remove(&mut self, key: u64) {
        let Some(i) = crate::probe::find(self.keys, slot_key(key)) else { return };
        *self.used -= 1;
        crate::probe::remove(self.keys, i, |_, _| {});
    }
}

/// Deletes kept for nodes that missed them: `nodes[i]`, `keys[i]` and
/// `ages[i]` (0: a free place) beside each kept message.
pub struct MissedDeletes<'a, M> {
    pub nodes: &'a mut [u64],
    pub keys: &'a mut [u64],
    pub ages: &'a mut [u64],
    pub messages: &'a mut [Option<M>],
    pub clock: &'a mut u64,
    pub kept: &'a mut u32,
}

impl<M> MissedDeletes<'_, M> {
    /// Keeps `message`, the delete of `key`, for `node`: in place of one
    /// kept for the same node and key, else in a free place, else in place
    /// of the oldest. Returns what it replaced (to drop) and whether that
    /// was another key's delete, lost.
    pub fn keep(&mut self, node: u64, key: u64, message: M) -> (Option<M>, bool) {
        *self.clock += 1;
        let same = (0..self.ages.len()).find(|&i| self.ages[i] != 0 && self.nodes[i] == node && self.keys[i] == key);
        let (i, lost) = match same {
            Some(i) => (i, false),
            None => match (0..self.ages.len()).find(|&i| self.ages[i] == 0) {
                Some(i) => {
                    *self.kept += 1;
                    (i, false)
                }
                None => match (0..self.ages.len()).min_by_key(|&i| self.ages[i]) {
                    Some(i) => (i, true),
                    None => return (Some(message), true),
                },
            },
        };
        (self.nodes[i], self.keys[i], self.ages[i]) = (node, key, *self.clock);
        (self.messages[i].replace(message), lost)
    }

    /// `key` was written since (here or by another node): no node needs
    /// its delete. Returns the deletes dropped.
    pub fn written(&mut self, key: u64) -> Vec<M> {
        if *self.kept == 0 {
            return Vec::new();
        }
        let found: Vec<usize> = (0..self.ages.len()).filter(|&i| self.ages[i] != 0 && self.keys[i] == key).collect();
        found.into_iter().filter_map(|i| self.free(i)).collect()
    }

    /// The deletes kept for `node`, oldest first; they are no longer kept.
    pub fn take(&mut self, node: u64) -> Vec<M> {
        if *self.kept == 0 {
            return Vec::new();
        }
        let mut found: Vec<usize> = (0..self.ages.len()).filter(|&i| self.ages[i] != 0 && self.nodes[i] == node).collect();
        found.sort_by_key(|&i| self.ages[i]);
        found.into_iter().filter_map(|i| self.free(i)).collect()
    }

    fn free(&mut self, i: usize) -> Option<M> {
        (self.nodes[i], self.keys[i], self.ages[i]) = (0, 0, 0);
        *self.kept = self.kept.saturating_sub(1);
        self.messages[i].take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_set_keeps_what_is_added_until_removed() {
        let (mut keys, mut used) = (vec![0u64; 16], 0);
        let mut set = KeySet { keys: &mut keys, used: &mut used };
        for k in [0u64, 1, 17, 33, 5, 21] {
            assert!(set.insert(k));
        }
        assert!(set.contains(0) && set.contains(1) && set.contains(33));
        set.remove(17);
        assert!(!set.contains(17));
        assert!(set.contains(33), "a key past the removed one in its probe run is still found");
        assert!(set.contains(1), "0 and 1 are one key (0 is the empty mark)");
        for k in 100..200 {
            set.insert(k);
        }
        assert_eq!(*set.used, 12, "3/4 of 16 at most");
        assert!(!set.insert(1000));
    }

    #[test]
    fn a_key_set_agrees_with_a_hash_set_under_churn() {
        let (mut keys, mut used) = (vec![0u64; 64], 0);
        let mut set = KeySet { keys: &mut keys, used: &mut used };
        let mut model = std::collections::HashSet::new();
        let mut x: u64 = 88_172_645_463_325_252;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = 2 + (x % 80) * 64 + (x >> 40) % 3; // collisions on purpose (never 0 or 1: one key)
            if x.is_multiple_of(3) {
                set.remove(k);
                model.remove(&k);
            } else if set.insert(k) {
                model.insert(k);
            }
            for m in &model {
                assert!(set.contains(*m));
            }
            assert_eq!(*set.used as usize, model.len());
        }
    }

    struct Store {
        nodes: Vec<u64>,
        keys: Vec<u64>,
        ages: Vec<u64>,
        messages: Vec<Option<&'static str>>,
        clock: u64,
        kept: u32,
    }

    impl Store {
        fn new(n: usize) -> Store {
            Store { nodes: vec![0; n], keys: vec![0; n], ages: vec![0; n], messages: vec![None; n], clock: 0, kept: 0 }
        }
        fn view(&mut self) -> MissedDeletes<'_, &'static str> {
            MissedDeletes {
                nodes: &mut self.nodes,
                keys: &mut self.keys,
                ages: &mut self.ages,
                messages: &mut self.messages,
                clock: &mut self.clock,
                kept: &mut self.kept,
            }
        }
    }

    #[test]
    fn missed_deletes_go_to_their_node_once_unless_written_since() {
        let mut s = Store::new(3);
        assert_eq!(s.view().keep(1, 10, "del 10 for 1"), (None, false));
        assert_eq!(s.view().keep(2, 10, "del 10 for 2"), (None, false));
        assert_eq!(s.view().keep(1, 11, "del 11 for 1"), (None, false));
        assert_eq!(s.view().keep(1, 10, "del 10 again"), (Some("del 10 for 1"), false));
        assert_eq!(s.view().take(1), vec!["del 11 for 1", "del 10 again"], "oldest first");
        assert!(s.view().take(1).is_empty());
        assert_eq!(s.view().written(10), vec!["del 10 for 2"]);
        assert_eq!(s.kept, 0);
        for (i, m) in ["a", "b", "c"].into_iter().enumerate() {
            s.view().keep(9, i as u64, m);
        }
        assert_eq!(s.view().keep(9, 7, "d"), (Some("a"), true), "full: the oldest gives way");
    }
}
