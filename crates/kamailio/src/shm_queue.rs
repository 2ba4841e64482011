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
