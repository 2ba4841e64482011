//! A byte store in Kamailio shared memory, guarded by a Kamailio lock: the
//! one place where state shared by all processes lives. Allocated in mod_init
//! (before fork), so every process inherits the same pointers.
//!
//! Every write bumps a generation counter, so readers can keep a decoded
//! copy per process and skip decoding while nothing changed.

use std::time::Duration;

use crate::host::lock::{ShmLock, ShmLockGuard};
use crate::raw;

/// The header of the shm block, followed by `capacity` bytes.
#[repr(C)]
struct Header {
    len: usize,
    generation: u64,
}

/// A fixed-capacity buffer in shm with its lock.
pub struct ShmStore {
    lock: ShmLock,
    block: *mut Header,
    capacity: usize,
}

// SAFETY: the pointers refer to shm shared by all processes; every access to
// the block goes through the Kamailio lock.
unsafe impl Send for ShmStore {}
// SAFETY: as above.
unsafe impl Sync for ShmStore {}

impl ShmStore {
    /// Allocates the store in shm; None when shm or locks are exhausted.
    pub fn new(capacity: usize) -> Option<ShmStore> {
        let lock = ShmLock::new()?;
        // SAFETY: plain allocation, zeroed: length 0, generation 0.
        let block = unsafe { raw::dmq_rs_shm_mallocxz(std::mem::size_of::<Header>() + capacity) } as *mut Header;
        if block.is_null() {
            return None;
        }
        Some(ShmStore { lock, block, capacity })
    }

    /// The stored bytes and their generation; the caller holds `_guard`.
    fn contents(&self, _guard: &ShmLockGuard) -> (u64, &[u8]) {
        // SAFETY: the lock is held (the guard proves it); len never exceeds
        // capacity (checked on write); the bytes follow the header.
        unsafe {
            let data = (self.block as *const u8).add(std::mem::size_of::<Header>());
            ((*self.block).generation, std::slice::from_raw_parts(data, (*self.block).len.min(self.capacity)))
        }
    }

    /// Runs `f` on the stored bytes under the lock. `f` returns new contents
    /// to store (None: unchanged) and a result. New contents larger than the
    /// capacity are refused (the old ones stay) and reported as `Err`.
    pub fn with<R>(&self, f: impl FnOnce(&[u8]) -> (Option<Vec<u8>>, R)) -> Result<R, R> {
        let guard = self.lock.lock();
        let (_, current) = self.contents(&guard);
        let (new, result) = f(current);
        match new {
            None => Ok(result),
            Some(bytes) if bytes.len() > self.capacity => Err(result),
            Some(bytes) => {
                // SAFETY: we hold the lock and bytes fit the capacity.
                unsafe {
                    let data = (self.block as *mut u8).add(std::mem::size_of::<Header>());
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), data, bytes.len());
                    (*self.block).len = bytes.len();
                    (*self.block).generation += 1;
                }
                Ok(result)
            }
        }
    }

    /// Runs `f` on the generation and bytes under the lock, read-only.
    pub fn read<R>(&self, f: impl FnOnce(u64, &[u8]) -> R) -> R {
        let guard = self.lock.lock();
        let (generation, bytes) = self.contents(&guard);
        f(generation, bytes)
    }

    /// Like [`read`](Self::read), but gives up (None) when the lock stays
    /// held for `patience` (see [`ShmLock::lock_within`]).
    pub fn read_within<R>(&self, patience: Duration, f: impl FnOnce(u64, &[u8]) -> R) -> Option<R> {
        let guard = self.lock.lock_within(patience)?;
        let (generation, bytes) = self.contents(&guard);
        Some(f(generation, bytes))
    }
}

/// Plain data that may live in shm, zero-initialized and shared by every
/// process of the tree.
///
/// # Safety
/// All-zero bytes must be a valid value, the type must hold no pointers
/// into process-local memory, and shared access (`&T` from several
/// processes at once) must be sound: atomics, not cells.
pub unsafe trait ShmZeroable: Sync {}

// SAFETY: zero is a valid atomic integer; atomics are shared safely.
unsafe impl ShmZeroable for std::sync::atomic::AtomicU64 {}
// SAFETY: as above.
unsafe impl ShmZeroable for std::sync::atomic::AtomicUsize {}
// SAFETY: an array of such values is such a value.
unsafe impl<T: ShmZeroable, const N: usize> ShmZeroable for [T; N] {}

/// A zeroed `T` in shm that lives as long as the process tree: allocated
/// in mod_init (before fork, so every process sees the same one) and
/// never freed. None when shm is out.
pub fn leak_zeroed<T: ShmZeroable>() -> Option<&'static T> {
    // SAFETY: a zeroed block of T's size (shm_malloc aligns to at least 8,
    // enough for atomics); all-zero is a valid T (ShmZeroable), and the
    // block is never freed, so 'static holds.
    unsafe {
        let block = raw::dmq_rs_shm_mallocxz(std::mem::size_of::<T>()) as *const T;
        block.as_ref()
    }
}
