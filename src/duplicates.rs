//! Peer messages received more than once (`dmq_core::duplicates`): a copy
//! of one still queued or running is absorbed, a copy of one answered is
//! answered again with the same code; neither reaches the consumer twice.
//! The table of messages seen lately is `shared::SeenData`, under its own
//! lock.

use dmq_core::duplicates::{Seen, SeenTable};

use crate::shared::{SeenData, Shared};

fn with<R>(m: &Shared, f: impl FnOnce(&mut SeenTable<'_>) -> R) -> R {
    let mut data = m.seen.lock();
    let SeenData { keys, codes, ages, clock } = &mut *data;
    f(&mut SeenTable { keys, codes, ages, clock })
}

/// Notes that `key` arrived; what became of earlier copies.
pub fn arrived(m: &Shared, key: u64) -> Seen {
    with(m, |t| t.arrived(key))
}

/// The message `key` was answered `code`.
pub fn answered(m: &Shared, key: Option<u64>, code: i32) {
    if let Some(key) = key {
        with(m, |t| t.answered(key, u16::try_from(code).unwrap_or(0)));
    }
}

/// The message `key` was not taken (queue full): its next copy is new.
pub fn forget(m: &Shared, key: Option<u64>) {
    if let Some(key) = key {
        with(m, |t| t.forget(key));
    }
}
