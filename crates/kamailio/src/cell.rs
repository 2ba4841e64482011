//! Storage that Kamailio's C code reads or writes through raw pointers: the
//! `exports` tables and the module-parameter slots.

use std::cell::UnsafeCell;

/// A static the core may write through a pointer we hand it.
///
/// Kamailio processes are single-threaded. The core writes these cells only
/// while it parses the config (modparam), in the main process before any
/// fork; afterwards every process reads its own copy-on-write copy. That is
/// why sharing them without a lock is sound, and why nothing that changes
/// after startup may live here (that belongs in shm, under a Kamailio lock).
#[repr(transparent)]
pub struct CoreCell<T>(UnsafeCell<T>);

// SAFETY: see the type's documentation: no two threads ever touch a CoreCell;
// Kamailio runs one thread per process and writes before forking.
unsafe impl<T> Sync for CoreCell<T> {}

impl<T> CoreCell<T> {
    /// A cell holding `value` (a `static`'s initializer).
    pub const fn new(value: T) -> Self {
        CoreCell(UnsafeCell::new(value))
    }

    /// The address handed to the core (param_export_t, module_exports).
    pub const fn as_ptr(&self) -> *mut T {
        self.0.get()
    }

    /// Reads the current value.
    pub fn get(&self) -> &T {
        // SAFETY: writes happen only during config parsing, before any Rust
        // code holds a reference (see the type's documentation).
        unsafe { &*self.0.get() }
    }
}
