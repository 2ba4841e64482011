//! The ping timer (the core's timer process): every `ping_interval`, the
//! nodes that did not answer the last round are counted as failed
//! (`dmq_core::nodes`), every node is notified again, inactive ones
//! included, and a node that knows no other node after a while runs its
//! join sync alone.

use std::sync::atomic::{AtomicU32, Ordering};

use kamailio::process;

use crate::notifications::{self, add_seeds, is_seed, join_sync, policy};
use crate::shared::shared;
use crate::{name_sources, node_events, node_list, peers};

/// Ping rounds after which a node that knows no other node is alone even
/// if a name never answered.
const ALONE_AFTER_ROUNDS: u32 = 3;

/// Ping rounds are numbered by the one process that runs the ping timer.
static PING_ROUND: AtomicU32 = AtomicU32::new(0);

/// Starts the ping timer (mod_init).
pub fn start(interval: u32) -> Result<(), String> {
    process::register_core_timer(interval, ping_timer).map_err(|e| format!("the ping timer: {e}"))
}

/// The ping timer: every `ping_interval`, count the nodes that did not answer
/// the last ping, then notify all nodes, inactive included.
fn ping_timer() {
    let Some(m) = shared() else { return };
    let round = PING_ROUND.fetch_add(1, Ordering::Relaxed).wrapping_add(1).max(1);
    // Named nodes are looked up again by the DMQ DNS process (`lookups`),
    // never here: a slow DNS server must not hold the core's timer.
    // What the names list, copied first: no two locks at once.
    let from_names = name_sources::listed(m);
    let (events, body, targets, alone) = node_list::with_nodes(m, |list| {
        add_seeds(m, list);
        let (events, targets) = list.start_ping_round(round, |n| is_seed(m, &from_names, n), policy(m));
        (events, list.notification_body(), targets, list.nodes.iter().all(|n| n.local))
    })
    .unwrap_or_default();
    node_events::report(m, &events, None);
    notifications::send_notification(m, &targets, &body, 1, round);
    // No other node known a ping interval after startup (no seed but this
    // node, a name that answered and lists nobody else): the first node of
    // a cluster. Its join sync runs now and asks nobody (as the stock
    // module's, which notifies itself); a node met later is pulled from
    // (`heal`). A name that has not answered yet may still list others:
    // the node waits for it, three ping intervals at most (a headless
    // service lists no pod that is not ready: the first pod's name has no
    // records until it is).
    if alone && !peers::init_done() && (name_sources::all_answered(m) || round >= ALONE_AFTER_ROUNDS) {
        log::info!("no other node known after a ping interval: this node is alone; its join sync asks nobody");
        join_sync(m, None);
    }
}
