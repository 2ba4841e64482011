//! One copy of an item applied at a time (`dmq_core::item_buckets`: why,
//! and which messages): the buckets live in shm (`shared::ItemBuckets`),
//! one atomic each, taken by compare-and-swap, so any process (a SIP
//! worker running a message at once, a DMQ worker) holds one while its
//! consumer runs. Not a Kamailio lock: nothing is sent while one is held.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dmq_core::item_buckets::{self, WAIT_LIMIT_MS};
use kamailio::clock::monotonic_ms;

use crate::shared::Shared;

/// A bucket held; free again when dropped (a panicking consumer too).
pub struct Held(&'static AtomicU64);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

/// Holds item `key`'s bucket, waiting while another process holds it;
/// None when that takes longer than `WAIT_LIMIT_MS` (the message then runs
/// without it).
pub fn hold(m: &Shared, key: u64) -> Option<Held> {
    let bucket = &m.applying[item_buckets::bucket(key)];
    let start = monotonic_ms();
    loop {
        if bucket.compare_exchange(0, item_buckets::tag(key), Ordering::AcqRel, Ordering::Acquire).is_ok() {
            return Some(Held(bucket));
        }
        if monotonic_ms().saturating_sub(start) >= WAIT_LIMIT_MS {
            log::debug!("an item's bucket stayed held for {WAIT_LIMIT_MS} ms: applying a copy without it");
            return None;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}
