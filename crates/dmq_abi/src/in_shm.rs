//! Which `dmq_core` values may live in shared memory. The pure crate
//! cannot say so itself (it knows nothing of Kamailio, and marking a type
//! is `unsafe`), and the `kamailio` crate knows nothing of DMQ.

use dmq_core::ordering::ParkedMeta;
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

/// The per-key order state as `dmq_core::ordering::Lanes` views it, in one
/// shm block: the key table (`K` entries) and the waiting messages (`P`
/// places, each the module's `M`, with its meta and its place in the order).
#[repr(C)]
pub struct OrderParts<M, const K: usize, const P: usize> {
    pub keys: [u64; K],
    pub flight: [u32; K],
    pub waiting: [u32; K],
    pub used: u32,
    pub parked: [M; P],
    pub meta: [ParkedMeta; P],
    pub order: [u32; P],
    pub queued: u32,
}

// SAFETY: ParkedMeta is integers and a boolean (dmq_core::ordering
// declares it so, `Copy`, without references); the other fields are
// integers; the messages are ShmData (and ShmZeroed) by the bound. No
// pointer into a process's memory; zero is a valid value of each field.
unsafe impl<M: ShmData, const K: usize, const P: usize> ShmData for OrderParts<M, K, P> {}
// SAFETY: as above; all-zero bytes are a valid value of every field.
unsafe impl<M: ShmZeroed, const K: usize, const P: usize> ShmZeroed for OrderParts<M, K, P> {}

const _: () = {
    const fn plain<T: Copy + Send + Sync + 'static>() {}
    plain::<ParkedMeta>();
};
#[allow(dead_code)]
fn parked_meta_is_integers(m: ParkedMeta) -> (u64, u64, u32, bool) {
    let ParkedMeta { node, first, count, replaceable } = m;
    (node, first, count, replaceable)
}
