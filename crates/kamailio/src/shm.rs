//! Typed Kamailio shared memory: everything shared by the forked processes
//! lives in blocks made here, so a module never lays out memory by hand.
//!
//! The rule the `Send`/`Sync` impls below rest on: Kamailio runs one thread
//! per process; shm is allocated in mod_init before fork (or by any process
//! later, from the same shm pool every process maps at the same address), so
//! a pointer into shm means the same thing in every process.
//!
//! - [`ShmData`] / [`ShmZeroed`]: marker traits for values that may live in
//!   shm (no pointers into one process's memory); [`shm_data!`](crate::shm_data) and
//!   [`shm_zeroed!`](crate::shm_zeroed) declare structs of such fields, checked field by field.
//! - [`leak_zeroed`]: a zeroed value that lives as long as the process tree
//!   (counters made of atomics).
//! - [`ShmMutex`]: a Kamailio lock and the data it guards in one block; the
//!   data is reachable only through the guard.
//! - [`ShmBlock`]: a typed header and trailing bytes, owned, freed once on
//!   drop; [`ShmFifo`] links such blocks.
//! - [`ShmArc`]: the same, shared and reference counted across processes.
//! - [`ShmStore`]: a byte buffer of fixed capacity with a generation counter.

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::lock::{ShmLock, ShmLockGuard};
use crate::raw;

/// A value that may live in shared memory and be seen by every process.
///
/// # Safety
/// The type holds no pointer into one process's private memory (pkg,
/// heap, stack): only plain values, pointers into shm, or pointers into
/// code and data loaded before fork (function pointers, the core's tables).
pub unsafe trait ShmData: Sized {}

/// A [`ShmData`] value for which all-zero bytes are a valid value.
///
/// # Safety
/// As for [`ShmData`], and a block of zero bytes is a valid `Self`.
pub unsafe trait ShmZeroed: ShmData {}

macro_rules! plain_shm_data {
    ($($t:ty),*) => {$(
        // SAFETY: a plain value with no pointers; zero is a valid value.
        unsafe impl ShmData for $t {}
        // SAFETY: as above.
        unsafe impl ShmZeroed for $t {}
    )*};
}
plain_shm_data!(
    bool,
    u8,
    u16,
    u32,
    u64,
    usize,
    i32,
    i64,
    std::sync::atomic::AtomicBool,
    std::sync::atomic::AtomicI32,
    std::sync::atomic::AtomicU32,
    std::sync::atomic::AtomicU64,
    std::sync::atomic::AtomicUsize
);
// SAFETY: an address and a port, plain values (not zero-valid by contract,
// so only ShmData: it is written, never zero-filled).
unsafe impl ShmData for std::net::SocketAddr {}
// SAFETY: an array of such values is such a value.
unsafe impl<T: ShmData, const N: usize> ShmData for [T; N] {}
// SAFETY: as above; zero bytes are zero elements.
unsafe impl<T: ShmZeroed, const N: usize> ShmZeroed for [T; N] {}
// SAFETY: None or a ShmData value.
unsafe impl<T: ShmData> ShmData for Option<T> {}

/// Compile-time proof that `T` is [`ShmData`] (used by [`shm_data!`]).
#[doc(hidden)]
pub const fn assert_shm_data<T: ShmData>() {}
/// Compile-time proof that `T` is [`ShmZeroed`] (used by [`shm_zeroed!`]).
#[doc(hidden)]
pub const fn assert_shm_zeroed<T: ShmZeroed>() {}

/// Declares a `#[repr(C)]` struct that may live in shm: every field must be
/// [`ShmData`] (checked at compile time), so the struct is too.
#[macro_export]
macro_rules! shm_data {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[repr(C)]
        $vis struct $name { $($(#[$fmeta])* $fvis $field: $ty),* }
        #[allow(unsafe_code)]
        // SAFETY: every field is ShmData (asserted below), so the struct
        // holds no process-local pointers either.
        unsafe impl $crate::shm::ShmData for $name {}
        const _: () = { $($crate::shm::assert_shm_data::<$ty>();)* };
    };
}

/// Like [`shm_data!`](crate::shm_data), for structs whose fields are all [`ShmZeroed`]: the
/// struct may then be made zero-filled ([`leak_zeroed`], [`ShmMutex::new_zeroed`]).
#[macro_export]
macro_rules! shm_zeroed {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty),* $(,)? }) => {
        $crate::shm_data! { $(#[$meta])* $vis struct $name { $($(#[$fmeta])* $fvis $field : $ty),* } }
        #[allow(unsafe_code)]
        // SAFETY: every field is ShmZeroed (asserted below): all-zero bytes
        // are a valid value of each, hence of the struct.
        unsafe impl $crate::shm::ShmZeroed for $name {}
        const _: () = { $($crate::shm::assert_shm_zeroed::<$ty>();)* };
    };
}

fn alloc(size: usize, zeroed: bool) -> Option<NonNull<u8>> {
    // SAFETY: plain allocations from the core's shm pool (aligned to at
    // least 8 bytes, as every type stored here needs).
    let p = unsafe {
        if zeroed {
            raw::krs_shm_mallocxz(size)
        } else {
            raw::krs_shm_malloc(size)
        }
    };
    NonNull::new(p as *mut u8)
}

/// # Safety
/// `p` came from `alloc` and is freed once.
unsafe fn free(p: NonNull<u8>) {
    // SAFETY: per the caller.
    unsafe { raw::krs_shm_free(p.as_ptr() as *mut c_void) }
}

/// A zeroed `T` in shm that lives as long as the process tree: made in
/// mod_init (before fork, so every process sees the same one) and never
/// freed. None when shm is out.
pub fn leak_zeroed<T: ShmZeroed + Sync>() -> Option<&'static T> {
    const { assert!(std::mem::align_of::<T>() <= 8) };
    let block = alloc(std::mem::size_of::<T>(), true)?;
    // SAFETY: a zeroed block of T's size and alignment; all-zero is a valid
    // T (ShmZeroed) and the block is never freed, so 'static holds.
    Some(unsafe { &*(block.as_ptr() as *const T) })
}

/// A Kamailio lock and the value it guards, in one shm block that lives as
/// long as the process tree. The value is reachable only through
/// [`lock`](Self::lock)'s guard, which releases the lock when dropped; a
/// panic while the guard is held aborts the process instead, the lock
/// still taken, so no other process sees a half-updated value
/// ([`panic_guard`](crate::panic_guard)). Never hold a guard across a send
/// or a call into another module.
#[repr(C)]
pub struct ShmMutex<T> {
    lock: ShmLock,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached under the process-shared lock (see the
// module docs for why shm pointers are valid in every process).
unsafe impl<T: ShmData> Sync for ShmMutex<T> {}
// SAFETY: as above.
unsafe impl<T: ShmData> Send for ShmMutex<T> {}

impl<T: ShmZeroed> ShmMutex<T> {
    /// A zero-filled value under a new lock (mod_init, before fork).
    pub fn new_zeroed() -> Option<&'static ShmMutex<T>> {
        const { assert!(std::mem::align_of::<T>() <= 8) };
        let lock = ShmLock::new()?;
        let block = alloc(std::mem::size_of::<ShmMutex<T>>(), true)?.as_ptr() as *mut ShmMutex<T>;
        // SAFETY: a zeroed block of the right size; the value part is a
        // valid zero T; the lock field is written before anyone sees it.
        unsafe {
            std::ptr::addr_of_mut!((*block).lock).write(lock);
            Some(&*block)
        }
    }
}

impl<T: ShmData> ShmMutex<T> {
    /// `value` under a new lock (mod_init, before fork).
    pub fn new(value: T) -> Option<&'static ShmMutex<T>> {
        const { assert!(std::mem::align_of::<T>() <= 8) };
        let lock = ShmLock::new()?;
        let block = alloc(std::mem::size_of::<ShmMutex<T>>(), false)?.as_ptr() as *mut ShmMutex<T>;
        // SAFETY: a fresh block of the right size, written whole.
        unsafe {
            block.write(ShmMutex { lock, value: UnsafeCell::new(value) });
            Some(&*block)
        }
    }

    /// Waits for the lock.
    pub fn lock(&self) -> ShmGuard<'_, T> {
        ShmGuard { _held: self.lock.lock(), mutex: self }
    }

    /// Takes the lock unless it stays held for `patience` (shutdown: a child
    /// killed inside its critical section may have left it taken for good).
    pub fn lock_within(&self, patience: Duration) -> Option<ShmGuard<'_, T>> {
        Some(ShmGuard { _held: self.lock.lock_within(patience)?, mutex: self })
    }
}

/// The value of a [`ShmMutex`] while its lock is held.
pub struct ShmGuard<'a, T> {
    _held: ShmLockGuard,
    mutex: &'a ShmMutex<T>,
}

impl<T> Deref for ShmGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the lock is held for the guard's life: no other view exists.
        unsafe { &*self.mutex.value.get() }
    }
}

impl<T> DerefMut for ShmGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above, and &mut self makes this the only view here.
        unsafe { &mut *self.mutex.value.get() }
    }
}

/// The start of every [`ShmBlock`] and [`ShmArc`] block; `len` bytes follow.
#[repr(C)]
struct Inner<H> {
    /// The next block of a [`ShmFifo`] (owned blocks only).
    next: *mut Inner<H>,
    /// References to a [`ShmArc`] block.
    refs: AtomicU32,
    len: usize,
    header: H,
}

impl<H: ShmData + Copy> Inner<H> {
    fn new(header: H, parts: &[&[u8]]) -> Option<NonNull<Inner<H>>> {
        const { assert!(std::mem::align_of::<H>() <= 8) };
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let block = recycled::take(std::mem::size_of::<Inner<H>>() + len)?.cast::<Inner<H>>();
        // SAFETY: the block has room for the header and `len` bytes after it.
        unsafe {
            block.as_ptr().write(Inner { next: std::ptr::null_mut(), refs: AtomicU32::new(1), len, header });
            let mut at = (block.as_ptr() as *mut u8).add(std::mem::size_of::<Inner<H>>());
            for part in parts {
                std::ptr::copy_nonoverlapping(part.as_ptr(), at, part.len());
                at = at.add(part.len());
            }
        }
        Some(block)
    }

    /// Gives the block back (to the recycler, or to the core's pool).
    ///
    /// # Safety
    /// `block` came from [`new`](Self::new), nothing refers to it any more,
    /// and it is released once.
    unsafe fn release(block: NonNull<Inner<H>>) {
        // SAFETY: per the caller; `len` was written with the block.
        unsafe {
            let size = std::mem::size_of::<Inner<H>>() + (*block.as_ptr()).len;
            recycled::give_back(block.cast(), size)
        }
    }

    /// # Safety
    /// `block` is live for `'a`.
    unsafe fn bytes<'a>(block: NonNull<Inner<H>>) -> &'a [u8] {
        // SAFETY: per the caller; the bytes were written with the block.
        unsafe {
            let data = (block.as_ptr() as *const u8).add(std::mem::size_of::<Inner<H>>());
            std::slice::from_raw_parts(data, (*block.as_ptr()).len)
        }
    }
}

/// A shm block holding a header `H` and bytes, owned by one value at a
/// time (it may move between processes through a [`ShmFifo`] or through C
/// as a raw pointer) and freed once, on drop.
pub struct ShmBlock<H: ShmData + Copy>(NonNull<Inner<H>>);

// SAFETY: unique owner of a shm block, valid in every process.
unsafe impl<H: ShmData + Copy> Send for ShmBlock<H> {}

// SAFETY: the unique owner of a shm block (a pointer into shm): it may be
// kept in shm (e.g. under a ShmMutex) and taken out by any process.
unsafe impl<H: ShmData + Copy> ShmData for ShmBlock<H> {}
// SAFETY: None is the null pointer (NonNull's niche).
unsafe impl<H: ShmData + Copy> ShmZeroed for Option<ShmBlock<H>> {}

impl<H: ShmData + Copy> ShmBlock<H> {
    /// A block holding `header` and the concatenation of `parts`; None
    /// when shm is out.
    pub fn new(header: H, parts: &[&[u8]]) -> Option<ShmBlock<H>> {
        Inner::new(header, parts).map(ShmBlock)
    }

    /// A block holding `header` and `len` zero bytes, to be written through
    /// [`bytes_mut`](Self::bytes_mut); None when shm is out.
    pub fn zeroed(header: H, len: usize) -> Option<ShmBlock<H>> {
        const { assert!(std::mem::align_of::<H>() <= 8) };
        let block = recycled::take(std::mem::size_of::<Inner<H>>() + len)?.cast::<Inner<H>>();
        // SAFETY: the block has room for the header and `len` bytes after
        // it; all of them are written here.
        unsafe {
            block.as_ptr().write(Inner { next: std::ptr::null_mut(), refs: AtomicU32::new(1), len, header });
            std::ptr::write_bytes((block.as_ptr() as *mut u8).add(std::mem::size_of::<Inner<H>>()), 0, len);
        }
        Some(ShmBlock(block))
    }

    /// The header.
    pub fn header(&self) -> &H {
        // SAFETY: the block is live while we own it.
        unsafe { &(*self.0.as_ptr()).header }
    }

    /// The header, to change (the block has one owner).
    pub fn header_mut(&mut self) -> &mut H {
        // SAFETY: as above, and we are its only owner.
        unsafe { &mut (*self.0.as_ptr()).header }
    }

    /// The bytes after the header.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: live while we own it.
        unsafe { Inner::bytes(self.0) }
    }

    /// The bytes after the header, to write (their length is fixed).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: live while we own it, and we are its only owner; the
        // bytes follow the header.
        unsafe {
            let data = (self.0.as_ptr() as *mut u8).add(std::mem::size_of::<Inner<H>>());
            std::slice::from_raw_parts_mut(data, (*self.0.as_ptr()).len)
        }
    }

    /// Hands the block to C (a callback parameter); see [`from_raw`](Self::from_raw).
    pub(crate) fn into_raw(self) -> *mut c_void {
        let p = self.0.as_ptr() as *mut c_void;
        std::mem::forget(self);
        p
    }

    /// # Safety
    /// `p` came from [`into_raw`](Self::into_raw) with the same `H` and is
    /// taken back once.
    pub(crate) unsafe fn from_raw(p: *mut c_void) -> Option<ShmBlock<H>> {
        NonNull::new(p as *mut Inner<H>).map(ShmBlock)
    }
}

impl<H: ShmData + Copy> Drop for ShmBlock<H> {
    fn drop(&mut self) {
        // SAFETY: we own the block (no list links to it any more: pop and
        // remove unlink before handing it out); released once.
        unsafe { Inner::release(self.0) }
    }
}

/// A first-in first-out list of [`ShmBlock`]s, for a [`ShmMutex`]: zero
/// bytes are the empty list. Blocks still listed when the process tree
/// exits are never freed (shm goes with it).
#[repr(C)]
pub struct ShmFifo<H: ShmData + Copy> {
    head: *mut Inner<H>,
    tail: *mut Inner<H>,
    len: usize,
    _owns: PhantomData<ShmBlock<H>>,
}

// SAFETY: null pointers and a count, or links to shm blocks it owns.
unsafe impl<H: ShmData + Copy> ShmData for ShmFifo<H> {}
// SAFETY: all-zero is the empty list.
unsafe impl<H: ShmData + Copy> ShmZeroed for ShmFifo<H> {}

impl<H: ShmData + Copy> ShmFifo<H> {
    /// How many blocks are listed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no block is listed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `block` (the list owns it from here).
    pub fn push_back(&mut self, block: ShmBlock<H>) {
        let p = block.0.as_ptr();
        std::mem::forget(block);
        // SAFETY: p is a live block we now own; head/tail are live listed
        // blocks or null (only this list links them).
        unsafe {
            (*p).next = std::ptr::null_mut();
            if self.tail.is_null() {
                self.head = p;
            } else {
                (*self.tail).next = p;
            }
        }
        self.tail = p;
        self.len += 1;
    }

    /// Takes the first block out.
    pub fn pop_front(&mut self) -> Option<ShmBlock<H>> {
        let p = NonNull::new(self.head)?;
        // SAFETY: a listed block, unlinked here and handed to its new owner.
        unsafe {
            self.head = (*p.as_ptr()).next;
            (*p.as_ptr()).next = std::ptr::null_mut();
        }
        if self.head.is_null() {
            self.tail = std::ptr::null_mut();
        }
        self.len -= 1;
        Some(ShmBlock(p))
    }

    /// Takes out every block whose header `take` accepts, keeping the order
    /// of the others.
    pub fn remove_where(&mut self, mut take: impl FnMut(&H) -> bool) -> Vec<ShmBlock<H>> {
        let mut taken = Vec::new();
        let mut kept = ShmFifo { head: std::ptr::null_mut(), tail: std::ptr::null_mut(), len: 0, _owns: PhantomData };
        while let Some(block) = self.pop_front() {
            if take(block.header()) {
                taken.push(block);
            } else {
                kept.push_back(block);
            }
        }
        *self = kept;
        taken
    }
}

/// A shm block holding a header `H` and bytes that never change, shared by
/// several owners (possibly in different processes): the last one to drop
/// its reference frees it.
pub struct ShmArc<H: ShmData + Copy>(NonNull<Inner<H>>);

// SAFETY: the header and bytes are read-only after creation and the count
// is atomic; the block is in shm, valid in every process.
unsafe impl<H: ShmData + Copy + Sync> Send for ShmArc<H> {}
// SAFETY: as above.
unsafe impl<H: ShmData + Copy + Sync> Sync for ShmArc<H> {}
// SAFETY: a pointer into shm.
unsafe impl<H: ShmData + Copy> ShmData for ShmArc<H> {}
// SAFETY: None is the null pointer (NonNull's niche).
unsafe impl<H: ShmData + Copy> ShmZeroed for Option<ShmArc<H>> {}

impl<H: ShmData + Copy> ShmArc<H> {
    /// A block holding `header` and the concatenation of `parts`, with one
    /// reference (this value); None when shm is out.
    pub fn new(header: H, parts: &[&[u8]]) -> Option<ShmArc<H>> {
        Inner::new(header, parts).map(ShmArc)
    }

    /// The header (never changes).
    pub fn header(&self) -> &H {
        // SAFETY: alive while we hold a reference; never written after creation.
        unsafe { &(*self.0.as_ptr()).header }
    }

    /// The bytes after the header (never change).
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: as above.
        unsafe { Inner::bytes(self.0) }
    }
}

impl<H: ShmData + Copy> Clone for ShmArc<H> {
    fn clone(&self) -> Self {
        // SAFETY: alive while we hold a reference.
        unsafe { (*self.0.as_ptr()).refs.fetch_add(1, Ordering::AcqRel) };
        ShmArc(self.0)
    }
}

impl<H: ShmData + Copy> Drop for ShmArc<H> {
    fn drop(&mut self) {
        // SAFETY: we hold one reference, so the block is alive until this
        // decrement; only whoever drops the last frees it, once.
        unsafe {
            if (*self.0.as_ptr()).refs.fetch_sub(1, Ordering::AcqRel) == 1 {
                Inner::release(self.0);
            }
        }
    }
}

/// The header of a [`ShmStore`] block, followed by `capacity` bytes.
#[repr(C)]
struct StoreHeader {
    len: usize,
    generation: u64,
}

/// A fixed-capacity byte buffer in shm with its lock. Every write bumps a
/// generation counter, so readers can keep a decoded copy per process and
/// skip decoding while nothing changed.
pub struct ShmStore {
    lock: ShmLock,
    block: NonNull<StoreHeader>,
    capacity: usize,
}

// SAFETY: the block is shm shared by all processes; every access to it
// goes through the Kamailio lock.
unsafe impl Send for ShmStore {}
// SAFETY: as above.
unsafe impl Sync for ShmStore {}

impl ShmStore {
    /// Allocates the store in shm (zero: empty, generation 0); None when
    /// shm or locks are exhausted.
    pub fn new(capacity: usize) -> Option<ShmStore> {
        let lock = ShmLock::new()?;
        let block = alloc(std::mem::size_of::<StoreHeader>() + capacity, true)?.cast();
        Some(ShmStore { lock, block, capacity })
    }

    /// The stored bytes and their generation; the caller holds `_guard`.
    fn contents(&self, _guard: &ShmLockGuard) -> (u64, &[u8]) {
        // SAFETY: the lock is held (the guard proves it); len never exceeds
        // capacity (checked on write); the bytes follow the header.
        unsafe {
            let head = self.block.as_ptr();
            let data = (head as *const u8).add(std::mem::size_of::<StoreHeader>());
            ((*head).generation, std::slice::from_raw_parts(data, (*head).len.min(self.capacity)))
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
                // SAFETY: we hold the lock and the bytes fit the capacity.
                unsafe {
                    let head = self.block.as_ptr();
                    let data = (head as *mut u8).add(std::mem::size_of::<StoreHeader>());
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), data, bytes.len());
                    (*head).len = bytes.len();
                    (*head).generation += 1;
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
    /// held for `patience`.
    pub fn read_within<R>(&self, patience: Duration, f: impl FnOnce(u64, &[u8]) -> R) -> Option<R> {
        let guard = self.lock.lock_within(patience)?;
        let (generation, bytes) = self.contents(&guard);
        Some(f(generation, bytes))
    }
}

/// Blocks of [`ShmBlock`]s and [`ShmArc`]s kept for reuse instead of going
/// back to the core's pool. A module that makes a block per unit of work
/// (a queued job, a request waiting for its reply) allocates often, and
/// with the core's default allocator (q_malloc, freed fragments joined)
/// nearly every fresh block means scanning its whole table of
/// free-fragment lists under the one shm lock every process shares. Kept
/// blocks are reused under a lock of their own size class, so a busy
/// module allocates from the core only what it holds at its peak, once.
/// Set up by [`kamailio_module!`](crate::kamailio_module) before the
/// module's mod_init; only [`kept`](recycled::kept) is for the module.
pub mod recycled {
    use std::ptr::NonNull;
    use std::sync::OnceLock;

    use super::{alloc, free, ShmMutex};

    /// Block sizes kept, smallest first; a request takes the first class
    /// that fits it, so a kept block serves any request of its class.
    /// Larger requests go to the core's pool as they are.
    const CLASSES: [usize; 4] = [512, 1024, 2048, 4096];
    /// At most this many blocks are kept per class (at most 1.9 MB in all;
    /// in practice far less: what the module held at its busiest moment).
    const KEPT: usize = 256;

    crate::shm_zeroed! {
        /// One class's kept blocks (addresses in shm).
        struct Kept {
            count: usize,
            blocks: [usize; KEPT],
        }
    }

    static BINS: OnceLock<[&'static ShmMutex<Kept>; CLASSES.len()]> = OnceLock::new();

    /// Before the module's mod_init (by [`kamailio_module!`](crate::kamailio_module)'s
    /// trampoline, before fork): the bins, empty.
    pub(crate) fn init() -> Result<(), String> {
        let bins = [ShmMutex::new_zeroed(), ShmMutex::new_zeroed(), ShmMutex::new_zeroed(), ShmMutex::new_zeroed()];
        let [Some(a), Some(b), Some(c), Some(d)] = bins else { return Err("out of shm for the block recycler".into()) };
        BINS.set([a, b, c, d]).map_err(|_| "block recycler initialized twice".to_string())
    }

    fn class_of(size: usize) -> Option<usize> {
        CLASSES.iter().position(|&c| size <= c)
    }

    /// A block of at least `size` bytes: a kept one when there is one.
    pub(super) fn take(size: usize) -> Option<NonNull<u8>> {
        let Some(class) = class_of(size) else { return alloc(size, false) };
        if let Some(bins) = BINS.get() {
            let mut kept = bins[class].lock();
            if kept.count > 0 {
                kept.count -= 1;
                let at = kept.blocks[kept.count];
                return NonNull::new(at as *mut u8);
            }
        }
        // Always the class's full size: the block may be kept later.
        alloc(CLASSES[class], false)
    }

    /// # Safety
    /// `block` came from [`take`] for `size` bytes, nothing refers to it any
    /// more, and it is given back once.
    pub(super) unsafe fn give_back(block: NonNull<u8>, size: usize) {
        if let (Some(class), Some(bins)) = (class_of(size), BINS.get()) {
            let mut kept = bins[class].lock();
            if kept.count < KEPT {
                let n = kept.count;
                kept.blocks[n] = block.as_ptr() as usize;
                kept.count += 1;
                return;
            }
        }
        // SAFETY: per the caller.
        unsafe { free(block) }
    }

    /// Blocks kept now, and the shm bytes they hold (for a module's
    /// statistics: the shm it holds beyond its live data).
    pub fn kept() -> (usize, usize) {
        let Some(bins) = BINS.get() else { return (0, 0) };
        bins.iter().zip(CLASSES).fold((0, 0), |(n, bytes), (bin, size)| {
            let count = bin.lock().count;
            (n + count, bytes + count * size)
        })
    }
}

#[cfg(test)]
mod tests;
