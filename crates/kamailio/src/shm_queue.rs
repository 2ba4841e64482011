//! A queue of byte records in shm, each due at a time: records pushed by
//! any process, taken by one (a timer) once due. Each record is its own
//! [`ShmBlock`], listed in a [`ShmMutex`]; taking unlinks the due blocks
//! under the lock and hands them over, so their bytes are read, and the
//! blocks freed, after the lock is released.

use crate::shm::{ShmBlock, ShmFifo, ShmMutex};
use crate::shm_zeroed;

crate::shm_data! {
    /// When a record is due.
    #[derive(Clone, Copy)]
    struct DueMarker { due_ms: u64 }
}

shm_zeroed! {
    struct Records {
        list: ShmFifo<DueMarker>,
        /// Records taken out so far.
        taken: u64,
    }
}

/// A queue shared by the process tree (made before fork, never freed).
pub struct ShmQueue {
    records: &'static ShmMutex<Records>,
    limit: usize,
}

/// A record taken out of the queue: its block is ours, freed on drop.
pub struct Taken(ShmBlock<DueMarker>);

impl Taken {
    /// The record's bytes, as pushed.
    pub fn bytes(&self) -> &[u8] {
        self.0.bytes()
    }
}

impl ShmQueue {
    /// An empty queue holding at most `limit` records (mod_init).
    pub fn new(limit: usize) -> Option<ShmQueue> {
        Some(ShmQueue { records: ShmMutex::new_zeroed()?, limit })
    }

    /// Adds a copy of `bytes`, due at `due_ms`. False when the queue is
    /// full or shm is out.
    pub fn push(&self, due_ms: u64, bytes: &[u8]) -> bool {
        // Allocated and filled outside the lock; freed outside it when refused.
        let Some(block) = ShmBlock::new(DueMarker { due_ms }, &[bytes]) else { return false };
        let refused = {
            let mut records = self.records.lock();
            if records.list.len() < self.limit {
                records.list.push_back(block);
                None
            } else {
                Some(block)
            }
        };
        refused.is_none()
    }

    /// Unlinks every record due at `now_ms` and hands them over.
    pub fn take_due(&self, now_ms: u64) -> Vec<Taken> {
        let mut records = self.records.lock();
        if records.list.is_empty() {
            return Vec::new();
        }
        let taken = records.list.remove_where(|d| d.due_ms <= now_ms);
        records.taken += taken.len() as u64;
        taken.into_iter().map(Taken).collect()
    }

    /// Records waiting now, and records taken out so far.
    pub fn stats(&self) -> (usize, u64) {
        let records = self.records.lock();
        (records.list.len(), records.taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_shm::{live_blocks, serial};

    #[test]
    fn records_come_out_once_due_in_order_and_the_limit_refuses() {
        let _serial = serial();
        let q = ShmQueue::new(3).unwrap();
        // Blocks in use: allocated, not kept by the recycler.
        let in_use = || live_blocks() - crate::shm::recycled::kept().0;
        let start = in_use();
        assert!(q.push(300, b"c"));
        assert!(q.push(100, b"a"));
        assert!(q.push(200, b"b"));
        // Full: refused, and its block freed at once.
        assert!(!q.push(50, b"refused"));
        assert_eq!(q.stats(), (3, 0));
        assert!(q.take_due(99).is_empty());
        let due: Vec<Vec<u8>> = q.take_due(200).iter().map(|t| t.bytes().to_vec()).collect();
        assert_eq!(due, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(q.stats(), (1, 2));
        assert!(q.push(150, b"d"));
        // Another "process" takes the rest, in the order they were pushed.
        let q: &'static ShmQueue = Box::leak(Box::new(q));
        let rest = std::thread::spawn(|| q.take_due(u64::MAX).iter().map(|t| t.bytes().to_vec()).collect::<Vec<_>>()).join().unwrap();
        assert_eq!(rest, vec![b"c".to_vec(), b"d".to_vec()]);
        assert_eq!(q.stats(), (0, 4));
        // Every record's block went back (to the recycler or the allocator).
        assert_eq!(in_use(), start);
    }
}
