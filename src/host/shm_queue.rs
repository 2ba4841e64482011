//! A queue of byte records in shm, each due at a time: records pushed by
//! any process, taken by one (a timer) once due. Each record is its own
//! shm block (a header, then the bytes), linked under a Kamailio lock;
//! taking unlinks the due blocks under the lock and hands them over, so
//! their bytes are read, and the blocks freed, after the lock is released.

use std::ffi::c_void;
use std::ptr::null_mut;

use crate::host::lock::ShmLock;
use crate::raw;

/// The header of a record's block; `len` bytes follow it.
#[repr(C)]
struct Record {
    next: *mut Record,
    due_ms: u64,
    len: usize,
}

/// The list head, in shm.
#[repr(C)]
struct List {
    head: *mut Record,
    len: usize,
    /// Records taken out so far.
    taken: u64,
}

/// A queue shared by the process tree (made before fork, never freed).
pub struct ShmQueue {
    lock: ShmLock,
    list: *mut List,
    limit: usize,
}

// SAFETY: the pointers refer to shm made before fork and valid in every
// process; the list is only read or changed under `lock`.
unsafe impl Send for ShmQueue {}
// SAFETY: as above.
unsafe impl Sync for ShmQueue {}

/// A record taken out of the queue: its block is ours, freed on drop.
pub struct Taken(*mut Record);

impl Taken {
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: a block unlinked by `take_due`, owned by this value; the
        // bytes follow the header and were written by `push`.
        unsafe {
            let data = (self.0 as *const u8).add(std::mem::size_of::<Record>());
            std::slice::from_raw_parts(data, (*self.0).len)
        }
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        // SAFETY: allocated by `push`, unlinked by `take_due`, freed once here.
        unsafe { raw::dmq_rs_shm_free(self.0 as *mut c_void) }
    }
}

impl ShmQueue {
    /// An empty queue holding at most `limit` records (mod_init).
    pub fn new(limit: usize) -> Option<ShmQueue> {
        let lock = ShmLock::new()?;
        // SAFETY: zeroed shm block: an empty list.
        let list = unsafe { raw::dmq_rs_shm_mallocxz(std::mem::size_of::<List>()) } as *mut List;
        (!list.is_null()).then_some(ShmQueue { lock, list, limit })
    }

    /// Adds a copy of `bytes`, due at `due_ms`. False when the queue is
    /// full or shm is out.
    pub fn push(&self, due_ms: u64, bytes: &[u8]) -> bool {
        // Allocate and fill outside the lock.
        // SAFETY: plain shm allocation, freed by `Taken` (or below).
        let record = unsafe { raw::dmq_rs_shm_malloc(std::mem::size_of::<Record>() + bytes.len()) } as *mut Record;
        if record.is_null() {
            return false;
        }
        // SAFETY: the block has room for the header and the bytes.
        unsafe {
            record.write(Record { next: null_mut(), due_ms, len: bytes.len() });
            let data = (record as *mut u8).add(std::mem::size_of::<Record>());
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), data, bytes.len());
        }
        let linked = {
            let _held = self.lock.lock();
            // SAFETY: the list is only touched under the lock, which we hold.
            unsafe {
                let room = (*self.list).len < self.limit;
                if room {
                    (*record).next = (*self.list).head;
                    (*self.list).head = record;
                    (*self.list).len += 1;
                }
                room
            }
        };
        if !linked {
            // SAFETY: never linked, so still only ours; freed once.
            unsafe { raw::dmq_rs_shm_free(record as *mut c_void) };
        }
        linked
    }

    /// Unlinks every record due at `now_ms` and hands them over.
    pub fn take_due(&self, now_ms: u64) -> Vec<Taken> {
        let mut taken = Vec::new();
        let _held = self.lock.lock();
        // SAFETY: the list is only touched under the lock, which we hold;
        // each unlinked block is owned by its `Taken` from here on.
        unsafe {
            if (*self.list).len == 0 {
                return taken;
            }
            let mut link: *mut *mut Record = &mut (*self.list).head;
            while !(*link).is_null() {
                let record = *link;
                if (*record).due_ms <= now_ms {
                    *link = (*record).next;
                    (*self.list).len -= 1;
                    (*self.list).taken += 1;
                    taken.push(Taken(record));
                } else {
                    link = &mut (*record).next;
                }
            }
        }
        taken
    }

    /// Records waiting now, and records taken out so far.
    pub fn stats(&self) -> (usize, u64) {
        let _held = self.lock.lock();
        // SAFETY: read under the lock.
        unsafe { ((*self.list).len, (*self.list).taken) }
    }
}
