//! Changes to the state kept in shm as text (`dmq_core::text_state`: the
//! node list, the heal table), under the store's lock: written back only
//! when it changed.

use dmq_core::text_state::{self, Change, TextState};
use kamailio::shm::ShmStore;

/// The new encoding did not fit the store: the change was dropped.
pub struct StoreFull;

/// Runs `f` on the value `store` holds, under its lock, and stores it again
/// when `f` changed it. Never send from inside `f`: copy what to send, send
/// after it returns.
pub fn change<T: TextState, R>(store: &ShmStore, f: impl FnOnce(&mut T) -> R) -> Result<Change<T, R>, StoreFull> {
    store
        .with(|bytes| {
            let change = text_state::change(std::str::from_utf8(bytes).unwrap_or_default(), f);
            (change.changed.as_ref().map(|(_, after)| after.encode().into_bytes()), change)
        })
        .map_err(|_| StoreFull)
}
