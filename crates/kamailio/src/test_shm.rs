//! Unit tests only: stand-ins for the few raw functions the shm and lock
//! layer calls (`krs_shm_*`, `krs_lock_*` of the C shim), so `shm.rs`,
//! `shm_queue.rs` and `lock.rs` run without a Kamailio core: memory from
//! Rust's allocator, every live block recorded (a free of a block that is
//! not live, a double free, fails the test), locks as spin locks. Under
//! `cfg(test)` the crate's `raw` module takes these instead of the shim's
//! (see lib.rs). Threads stand in for Kamailio's processes: the layer's
//! `Send`/`Sync` rest on shm being at the same address in every process,
//! which threads of one process share too. Pure Rust, so Miri runs it.

use std::alloc::Layout;
use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

/// The live blocks: address → size.
static LIVE: Mutex<Option<HashMap<usize, usize>>> = Mutex::new(None);

fn live() -> MutexGuard<'static, Option<HashMap<usize, usize>>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Shm blocks allocated and not freed yet (for leak checks).
pub fn live_blocks() -> usize {
    live().as_ref().map_or(0, HashMap::len)
}

/// Whether `p` is a live block.
pub fn is_live(p: *const u8) -> bool {
    live().as_ref().is_some_and(|l| l.contains_key(&(p as usize)))
}

/// Tests that count blocks or use the block recycler (a process-wide
/// store) take this, so they run one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn layout(size: usize) -> Layout {
    // Kamailio's allocators align to at least 8 bytes; 16 as malloc does.
    Layout::from_size_align(size.max(1), 16).unwrap()
}

fn allocate(size: usize, zeroed: bool) -> *mut c_void {
    let layout = layout(size);
    // SAFETY: a non-zero size.
    let p = unsafe {
        if zeroed {
            std::alloc::alloc_zeroed(layout)
        } else {
            std::alloc::alloc(layout)
        }
    };
    if !p.is_null() {
        live().get_or_insert_with(HashMap::new).insert(p as usize, size);
    }
    p as *mut c_void
}

/// `shm_malloc`.
///
/// # Safety
/// None beyond the C function's: the caller frees the block once.
pub unsafe fn krs_shm_malloc(size: usize) -> *mut c_void {
    allocate(size, false)
}

/// `shm_mallocxz`.
///
/// # Safety
/// As [`krs_shm_malloc`].
pub unsafe fn krs_shm_mallocxz(size: usize) -> *mut c_void {
    allocate(size, true)
}

/// `shm_free`: panics on a pointer that is not a live block.
///
/// # Safety
/// `p` came from [`krs_shm_malloc`] or [`krs_shm_mallocxz`].
pub unsafe fn krs_shm_free(p: *mut c_void) {
    let size = live().as_mut().and_then(|l| l.remove(&(p as usize)));
    let size = size.unwrap_or_else(|| panic!("shm_free of {p:?}: not a live block (freed twice?)"));
    // SAFETY: allocated by `allocate` with this layout, freed once (it was live).
    unsafe { std::alloc::dealloc(p as *mut u8, layout(size)) }
}

/// `lock_alloc` + `lock_init`: a spin lock, never freed (as the layer's locks).
///
/// # Safety
/// None.
pub unsafe fn krs_lock_alloc_init() -> *mut c_void {
    Box::into_raw(Box::new(AtomicBool::new(false))) as *mut c_void
}

fn spin_lock(lock: *mut c_void) -> &'static AtomicBool {
    // SAFETY: made by `krs_lock_alloc_init`, never freed.
    unsafe { &*(lock as *const AtomicBool) }
}

/// `lock_get`.
///
/// # Safety
/// `lock` came from [`krs_lock_alloc_init`].
pub unsafe fn krs_lock_get(lock: *mut c_void) {
    while spin_lock(lock).compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
        std::thread::yield_now();
    }
}

/// `lock_try`: 0 when taken, -1 when held by someone else.
///
/// # Safety
/// As [`krs_lock_get`].
pub unsafe fn krs_lock_try(lock: *mut c_void) -> c_int {
    match spin_lock(lock).compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed) {
        Ok(_) => 0,
        Err(_) => -1,
    }
}

/// `lock_release`: panics when the lock was not held.
///
/// # Safety
/// As [`krs_lock_get`].
pub unsafe fn krs_lock_release(lock: *mut c_void) {
    assert!(spin_lock(lock).swap(false, Ordering::Release), "lock_release of a lock that is not held");
}

/// Whether `lock` is held now.
pub fn lock_held(lock: *mut c_void) -> bool {
    spin_lock(lock).load(Ordering::Acquire)
}
