//! A byte store in Kamailio shared memory, guarded by a Kamailio lock: the
//! one place where state shared by all processes lives. Allocated in mod_init
//! (before fork), so every process inherits the same pointers.

use std::ffi::c_void;

use crate::raw;

/// A fixed-capacity buffer in shm with its lock.
pub struct ShmStore {
    lock: *mut c_void,
    /// shm block: [len: usize][capacity bytes]
    block: *mut u8,
    capacity: usize,
}

// SAFETY: the pointers refer to shm shared by all processes; every access to
// the bytes goes through `with`, which holds the Kamailio lock.
unsafe impl Send for ShmStore {}
// SAFETY: as above.
unsafe impl Sync for ShmStore {}

/// Releases the lock when dropped, also while unwinding from a panic.
struct LockGuard(*mut c_void);

impl Drop for LockGuard {
    fn drop(&mut self) {
        // SAFETY: the lock was taken by `with` in this process and is released once.
        unsafe { raw::dmq_rs_lock_release(self.0) }
    }
}

impl ShmStore {
    /// Allocates the store in shm; None when shm or locks are exhausted.
    pub fn new(capacity: usize) -> Option<ShmStore> {
        // SAFETY: plain allocations from the core's shm allocator.
        let lock = unsafe { raw::dmq_rs_lock_alloc_init() };
        if lock.is_null() {
            return None;
        }
        // SAFETY: as above; zeroed so the stored length starts at 0.
        let block = unsafe { raw::dmq_rs_shm_mallocxz(std::mem::size_of::<usize>() + capacity) } as *mut u8;
        if block.is_null() {
            // SAFETY: the lock was allocated above and is not shared yet.
            unsafe { raw::dmq_rs_lock_destroy_dealloc(lock) };
            return None;
        }
        Some(ShmStore { lock, block, capacity })
    }

    /// Runs `f` on the stored bytes under the lock. `f` returns new contents
    /// to store (None: unchanged) and a result. New contents larger than the
    /// capacity are refused (the old ones stay) and reported as `Err`.
    pub fn with<R>(&self, f: impl FnOnce(&[u8]) -> (Option<Vec<u8>>, R)) -> Result<R, R> {
        // SAFETY: the lock lives in shm for the life of the process tree.
        unsafe { raw::dmq_rs_lock_get(self.lock) };
        self.locked(f)
    }

    /// Like [`with`](Self::with), but gives up (None) when the lock stays
    /// held for `patience`: for shutdown, where a child killed inside its
    /// critical section may have left the lock taken for good.
    pub fn try_with<R>(
        &self,
        patience: std::time::Duration,
        f: impl FnOnce(&[u8]) -> (Option<Vec<u8>>, R),
    ) -> Option<Result<R, R>> {
        let deadline = std::time::Instant::now() + patience;
        // SAFETY: the lock lives in shm for the life of the process tree.
        while unsafe { raw::dmq_rs_lock_try(self.lock) } != 0 {
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Some(self.locked(f))
    }

    /// The body of `with`, entered with the lock held; releases it.
    fn locked<R>(&self, f: impl FnOnce(&[u8]) -> (Option<Vec<u8>>, R)) -> Result<R, R> {
        let _guard = LockGuard(self.lock);
        // SAFETY: we hold the lock; the block is valid for size_of::<usize>()
        // + capacity bytes, and len never exceeds capacity (checked on write).
        let (len_ptr, data) = unsafe {
            let len_ptr = self.block as *mut usize;
            (len_ptr, self.block.add(std::mem::size_of::<usize>()))
        };
        // SAFETY: as above.
        let current = unsafe { std::slice::from_raw_parts(data, (*len_ptr).min(self.capacity)) };
        let (new, result) = f(current);
        match new {
            None => Ok(result),
            Some(bytes) if bytes.len() > self.capacity => Err(result),
            Some(bytes) => {
                // SAFETY: we hold the lock and bytes fit the capacity.
                unsafe {
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), data, bytes.len());
                    *len_ptr = bytes.len();
                }
                Ok(result)
            }
        }
    }
}
