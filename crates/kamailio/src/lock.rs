//! Kamailio locks (gen_lock_t in shm): the only locks that work across the
//! forked processes. A guard releases the lock when dropped, also while
//! unwinding from a panic, so no path can leave it held.

use std::ffi::c_void;
use std::time::{Duration, Instant};

use crate::raw;

/// A lock allocated in shm. Only a pointer, so it can be embedded in other
/// shm structures; every process inherits it through fork.
#[repr(transparent)]
#[derive(Clone, Copy)]
pub(crate) struct ShmLock(*mut c_void);

// SAFETY: the lock is process-shared by design; the pointer is valid in
// every process of the tree (allocated before fork, never freed).
unsafe impl Send for ShmLock {}
// SAFETY: as above.
unsafe impl Sync for ShmLock {}

impl ShmLock {
    /// Allocates and initializes a lock in shm (before fork).
    pub fn new() -> Option<ShmLock> {
        // SAFETY: plain allocation from the core's shm allocator.
        let lock = unsafe { raw::krs_lock_alloc_init() };
        (!lock.is_null()).then_some(ShmLock(lock))
    }

    /// Blocks until the lock is taken.
    pub fn lock(&self) -> ShmLockGuard {
        // SAFETY: a valid shm lock (see `new`).
        unsafe { raw::krs_lock_get(self.0) };
        ShmLockGuard(self.0)
    }

    /// Takes the lock unless it stays held for `patience`: for shutdown,
    /// where a child killed inside its critical section may have left it
    /// taken for good.
    pub fn lock_within(&self, patience: Duration) -> Option<ShmLockGuard> {
        let deadline = Instant::now() + patience;
        // SAFETY: a valid shm lock (see `new`).
        while unsafe { raw::krs_lock_try(self.0) } != 0 {
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Some(ShmLockGuard(self.0))
    }
}

/// Holds a [`ShmLock`]; releases it on drop.
pub(crate) struct ShmLockGuard(*mut c_void);

impl Drop for ShmLockGuard {
    fn drop(&mut self) {
        // SAFETY: taken by `lock`/`lock_within` in this process, released once.
        unsafe { raw::krs_lock_release(self.0) }
    }
}
