//! [`fnv`], the hash of the keys the shm tables compare between the
//! processes of a node: an item's key (`ordering`), a node's
//! (`ordering::node_hash`), a received request's (`duplicates::key`). On
//! its own so that those files share it without reading each other.

/// 64-bit FNV-1a: stable across processes and restarts (keys are compared
/// between processes of one node).
pub fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator: ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
