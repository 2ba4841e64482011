//! Kamailio locks (gen_lock_t in shm): the only locks that work across the
//! forked processes. A guard releases the lock when dropped, so no path can
//! leave it held, except a panic inside the critical section: the guard
//! then aborts the process with the lock still taken, so no other process
//! sees the data it guards half-updated (see [`panic_guard`](crate::panic_guard)).

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

    /// The lock itself (unit tests: to look at it through the stand-in).
    #[cfg(test)]
    pub(crate) fn as_ptr(&self) -> *mut c_void {
        self.0
    }

    /// Blocks until the lock is taken.
    pub fn lock(&self) -> ShmLockGuard {
        // SAFETY: a valid shm lock (see `new`).
        unsafe { raw::krs_lock_get(self.0) };
        ShmLockGuard::taken(self.0)
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
        Some(ShmLockGuard::taken(self.0))
    }
}

/// Holds a [`ShmLock`]; releases it on drop, or aborts the process when
/// dropped by a panic's unwinding that began while it was held.
pub(crate) struct ShmLockGuard {
    lock: *mut c_void,
    /// Taken during a panic's unwinding (by a destructor): its critical
    /// section began after the panic and ends normally.
    taken_while_unwinding: bool,
}

impl ShmLockGuard {
    fn taken(lock: *mut c_void) -> ShmLockGuard {
        ShmLockGuard { lock, taken_while_unwinding: std::thread::panicking() }
    }
}

impl Drop for ShmLockGuard {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.taken_while_unwinding {
            // The panic interrupted the critical section: what the lock
            // guards may be half-updated. Releasing it would show that to
            // every other process; abort with it held instead (as a crash
            // in C would), and the core's main process stops the node.
            log::error!(
                "panic inside a shm critical section (pid {}): aborting the process with the lock held, so no other process sees the state it left",
                std::process::id()
            );
            std::process::abort();
        }
        // SAFETY: taken by `lock`/`lock_within` in this process, released once.
        unsafe { raw::krs_lock_release(self.lock) }
    }
}
