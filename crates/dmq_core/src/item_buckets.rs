//! One copy of an item applied at a time. Two copies of one item can
//! reach a node at once from two senders (two nodes answering a joining
//! node's sync, a live update beside a sync's copy) and run in two
//! processes (SIP workers running a message at once, DMQ workers). A
//! consumer that makes an item it does not find (dialog makes a dialog)
//! then makes it twice, or leaves it in a state neither copy had. So a
//! message of one item holds that item's bucket while its consumer runs,
//! and another message for the same bucket waits for it, a bounded time.
//! Messages of several items (dmq_usrloc batches, from dmq_rs nodes) hold
//! none: their consumer locks what it changes.

use crate::ordering::Keys;

/// Buckets of items being applied: more than the processes that apply at
/// once, so two items rarely share one.
pub const BUCKETS: usize = 256;

/// How long a message waits for its item's bucket; past it, it runs all
/// the same (a consumer call does not take this long; better a race than
/// a stall).
pub const WAIT_LIMIT_MS: u64 = 500;

/// The bucket of item `key`.
pub fn bucket(key: u64) -> usize {
    (key % BUCKETS as u64) as usize
}

/// What a held bucket holds for `key` (never 0: 0 marks a free bucket).
pub fn tag(key: u64) -> u64 {
    key.max(1)
}

/// The one item a message carries (`ordering::identify`), if it carries
/// exactly one (named once or more).
pub fn single_item(keys: Option<&Keys>) -> Option<u64> {
    let items = &keys?.items;
    let first = *items.first()?;
    items.iter().all(|&k| k == first).then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(items: &[u64]) -> Keys {
        Keys { items: items.to_vec(), replaces: false, deletes: false }
    }

    #[test]
    fn only_a_message_of_one_item_holds_a_bucket() {
        assert_eq!(single_item(Some(&keys(&[7]))), Some(7));
        assert_eq!(single_item(Some(&keys(&[7, 7]))), Some(7), "one item named twice");
        assert_eq!(single_item(Some(&keys(&[7, 8]))), None, "a batch");
        assert_eq!(single_item(Some(&keys(&[]))), None);
        assert_eq!(single_item(None), None, "a sync request carries no item");
    }

    #[test]
    fn buckets_and_tags() {
        assert_eq!(bucket(7), bucket(7 + BUCKETS as u64), "the same item, the same bucket");
        assert!((0..10_000u64).all(|k| bucket(k) < BUCKETS));
        assert_eq!(tag(0), 1, "a held bucket is never 0");
        assert_eq!(tag(42), 42);
    }
}
