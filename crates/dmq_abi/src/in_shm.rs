//! Which `dmq_core` values may live in shared memory. The pure crate
//! cannot say so itself (it knows nothing of Kamailio, and marking a type
//! is `unsafe`), and the `kamailio` crate knows nothing of DMQ.

use dmq_core::pending::{Header, PendingStats, Slot};
use kamailio::shm::{ShmData, ShmZeroed};

/// The in-flight table's parts as `dmq_core::pending` declares them, in
/// one shm block: its header, its slots and the free-slot stack, and each
/// slot's message (`M`, the module's). `PendingTable` views them.
#[repr(C)]
pub struct PendingParts<M, const N: usize> {
    pub head: Header,
    pub slots: [Slot; N],
    pub free: [u32; N],
    pub messages: [M; N],
}

// SAFETY: Header, Slot and PendingStats are plain integers and booleans
// (dmq_core::pending declares them so, `Copy` and without references):
// no pointers into a process's memory, and zero is a valid value of each.
// The messages are ShmData (and ShmZeroed) by the bound.
unsafe impl<M: ShmData, const N: usize> ShmData for PendingParts<M, N> {}
// SAFETY: as above; all-zero bytes are a valid value of every field.
unsafe impl<M: ShmZeroed, const N: usize> ShmZeroed for PendingParts<M, N> {}

// What can be checked at compile time of the SAFETY notes above: the
// parts are Copy (no owned heap memory, no Drop), Header being a few
// integers beside its PendingStats.
const _: () = {
    const fn plain<T: Copy + Send + Sync + 'static>() {}
    plain::<Slot>();
    plain::<PendingStats>();
};
#[allow(dead_code)]
fn header_is_integers_and_stats(h: Header) -> (u64, u32, PendingStats) {
    let Header { next_seq, free_top, stats } = h;
    (next_seq, free_top, stats)
}
