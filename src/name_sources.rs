//! What the `notification_address` names list now (issue 26): the node
//! addresses the DMQ DNS process (`lookups`) found, in shm, so every
//! process can tell them apart from other nodes. Such an address is a
//! notification address while its name lists it: pings mark it pending
//! when it does not answer, never remove it. A leaf: it depends on no
//! other file of the module but `shared`.

use std::cell::RefCell;

use dmq_core::node_uri::{self, NodeLine, NodeUri};
use dmq_core::nodes::MAX_NODES;

use crate::shared::Shared;

/// A SIP worker: these lines (new nodes named by host name) wait for the
/// DNS process, which looks them up (never the SIP worker). At most
/// MAX_NODES wait; a line already waiting is not added twice. Returns how
/// many did not fit.
pub fn defer(m: &Shared, lines: &[NodeLine]) -> usize {
    m.names
        .deferred
        .with(|old| {
            let mut text = String::from_utf8_lossy(old).into_owned();
            let mut dropped = 0;
            for line in lines {
                let entry = line_text(line);
                if text.lines().any(|l| l == entry) {
                    continue;
                }
                if text.lines().count() >= MAX_NODES {
                    dropped += 1;
                    continue;
                }
                text += &entry;
                text.push('\n');
            }
            (Some(text.into_bytes()), dropped)
        })
        .unwrap_or(lines.len())
}

/// The DNS process: the lines waiting (taken: the store is emptied).
pub fn take_deferred(m: &Shared) -> Vec<NodeLine> {
    let taken = m.names.deferred.with(|old| {
        if old.is_empty() {
            return (None, Vec::new());
        }
        let text = String::from_utf8_lossy(old).into_owned();
        (Some(Vec::new()), text.lines().filter_map(|l| node_uri::parse_node_line(l).ok()).collect())
    });
    taken.unwrap_or_default()
}

fn line_text(line: &NodeLine) -> String {
    match line.status {
        Some(status) => format!("{};status={}", line.uri.to_uri(), status.as_str()),
        None => line.uri.to_uri(),
    }
}

/// The DNS process: the addresses the names list now (at most MAX_NODES).
pub fn publish(m: &Shared, listed: &[NodeUri]) {
    let mut text = String::new();
    for uri in listed.iter().take(MAX_NODES) {
        text += &uri.to_uri();
        text.push('\n');
    }
    let _ = m.names.addresses.with(|old| ((old != text.as_bytes()).then(|| text.into_bytes()), ()));
}

thread_local! {
    /// This process's decoded copy and the generation it was decoded from.
    static DECODED: RefCell<(u64, Vec<NodeUri>)> = const { RefCell::new((0, Vec::new())) };
}

/// `f` on the addresses the names list now (empty without names).
pub fn with_listed<R>(m: &Shared, f: impl FnOnce(&[NodeUri]) -> R) -> R {
    m.names.addresses.read(|generation, bytes| {
        DECODED.with(|cell| {
            let mut cached = cell.borrow_mut();
            if cached.0 != generation {
                let text = std::str::from_utf8(bytes).unwrap_or_default();
                let uris = text.lines().filter_map(|l| node_uri::parse_node_line(l).ok().map(|l| l.uri)).collect();
                *cached = (generation, uris);
            }
            f(&cached.1)
        })
    })
}

/// Whether every `notification_address` name has answered a lookup with
/// addresses at least once (true without names).
pub fn all_answered(m: &Shared) -> bool {
    m.names.unanswered.load(std::sync::atomic::Ordering::Relaxed) == 0
}

/// The addresses the names list now.
pub fn listed(m: &Shared) -> Vec<NodeUri> {
    with_listed(m, |l| l.to_vec())
}
