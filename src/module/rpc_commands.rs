//! `kamcmd dmq.*`.

use std::ffi::{c_char, c_void};

use crate::host::cell::CoreCell;
use crate::host::panic_guard::guard;
use crate::host::rpc::{RpcCall, Value};
use crate::raw;

use dmq_core::protocol;

use super::{cluster, in_flight, workers};

/// rpc.h's RET_ARRAY: the reply is a list of entries.
const RET_ARRAY: u32 = 1;

/// A doc-string table the core reads through `doc_str`.
#[allow(dead_code)] // read by C only
struct Doc([*const c_char; 2]);
// SAFETY: pointers to 'static immutable C strings.
unsafe impl Sync for Doc {}

static LIST_NODES_DOC: CoreCell<Doc> = CoreCell::new(Doc([c"Print all nodes".as_ptr(), std::ptr::null()]));

static REMOVE_DOC: CoreCell<Doc> =
    CoreCell::new(Doc([c"Remove a DMQ node (parameter: its SIP address)".as_ptr(), std::ptr::null()]));

static STATS_DOC: CoreCell<Doc> = CoreCell::new(Doc([
    c"Job queue figures (waiting, peak, rejected with 503, processed; per worker), then peer messages in flight (sent, waiting for their reply, peak, retransmissions, timeouts, sent through tm)".as_ptr(),
    std::ptr::null(),
]));

static RPC_METHODS: CoreCell<[raw::rpc_export_t; 4]> = CoreCell::new([
    raw::rpc_export_t {
        name: c"dmq.list_nodes".as_ptr(),
        function: Some(rpc_list_nodes),
        doc_str: LIST_NODES_DOC.as_ptr() as *mut *const c_char,
        flags: RET_ARRAY,
    },
    raw::rpc_export_t {
        name: c"dmq.remove".as_ptr(),
        function: Some(rpc_remove),
        doc_str: REMOVE_DOC.as_ptr() as *mut *const c_char,
        flags: 0,
    },
    raw::rpc_export_t {
        name: c"dmq.stats".as_ptr(),
        function: Some(rpc_stats),
        doc_str: STATS_DOC.as_ptr() as *mut *const c_char,
        flags: RET_ARRAY,
    },
    raw::rpc_export_t { name: std::ptr::null(), function: None, doc_str: std::ptr::null_mut(), flags: 0 },
]);

pub fn register() -> Result<(), String> {
    // SAFETY: a NULL-terminated static table that lives as long as the process.
    if unsafe { raw::rpc_register_array(RPC_METHODS.as_ptr() as *mut raw::rpc_export_t) } != 0 {
        return Err("failed to register the dmq.* RPC commands".into());
    }
    Ok(())
}

unsafe extern "C" fn rpc_list_nodes(rpc: *mut raw::rpc_t, ctx: *mut c_void) {
    // SAFETY: the pointers the core passes to an RPC handler, used in this call.
    let call = unsafe { RpcCall::new(rpc, ctx) };
    guard("dmq.list_nodes", (), || {
        // Copy under the lock, reply after releasing it.
        let Some(list) = cluster::read_nodes(|list| list.clone()) else {
            call.fault(500, "dmq not initialized");
            return;
        };
        for node in &list.nodes {
            let ip = node.ip().map(|i| i.to_string()).unwrap_or_default();
            let ok = call.add_struct(&[
                ("host", Value::Str(&node.uri.host)),
                ("port", Value::Str(&node.uri.port)),
                ("proto", Value::Str(node.uri.transport.as_str())),
                ("resolved_ip", Value::Str(&ip)),
                ("status", Value::Str(node.status.as_str())),
                ("last_notification", Value::Int(node.last_notification as i32)),
                ("local", Value::Int(node.local as i32)),
            ]);
            if !ok {
                call.fault(500, "Server failure");
                return;
            }
        }
    })
}

unsafe extern "C" fn rpc_remove(rpc: *mut raw::rpc_t, ctx: *mut c_void) {
    // SAFETY: the pointers the core passes to an RPC handler, used in this call.
    let call = unsafe { RpcCall::new(rpc, ctx) };
    guard("dmq.remove", (), || {
        let Some(address) = call.string_param() else {
            call.fault(500, "Invalid Parameters");
            return;
        };
        let Ok(line) = protocol::parse_node_line(&address) else {
            call.fault(500, "Invalid Parameters");
            return;
        };
        match cluster::with_nodes(|list| list.remove(&line.uri)) {
            Some(true) => {
                log::info!("node {} removed by RPC", line.uri);
                call.print("Ok. DMQ node removed.");
            }
            _ => call.fault(500, "Failure"),
        }
    })
}

/// Counters beyond i32 are clamped: kamcmd's integers are 32-bit.
fn int(n: impl TryInto<i32>) -> Value<'static> {
    Value::Int(n.try_into().unwrap_or(i32::MAX))
}

unsafe extern "C" fn rpc_stats(rpc: *mut raw::rpc_t, ctx: *mut c_void) {
    // SAFETY: the pointers the core passes to an RPC handler, used in this call.
    let call = unsafe { RpcCall::new(rpc, ctx) };
    guard("dmq.stats", (), || {
        let Some(stats) = workers::stats() else {
            call.fault(500, "dmq not initialized");
            return;
        };
        let processed: u64 = stats.workers.iter().map(|w| w.processed).sum();
        let mut ok = call.add_struct(&[
            ("jobs_waiting", int(stats.queued)),
            ("jobs_peak", int(stats.peak)),
            ("jobs_rejected", int(stats.rejected)),
            ("jobs_processed", int(processed)),
            ("job_queue_limit", int(stats.limit)),
            ("workers", int(stats.workers.len())),
        ]);
        if let Some(p) = in_flight::stats() {
            ok = ok
                && call.add_struct(&[
                    ("messages_sent", int(p.sent)),
                    ("messages_in_flight", int(p.in_flight)),
                    ("messages_in_flight_peak", int(p.peak)),
                    ("retransmissions", int(p.retransmissions)),
                    ("timeouts", int(p.timeouts)),
                    ("retries_after_503", int(p.retries_after_503)),
                    ("sent_through_tm_table_full", int(p.overflows)),
                    ("forged_replies", int(p.forged_replies)),
                ]);
        }
        let (busy_waiting, busy_resent) = super::messaging::busy_retry_stats();
        ok = ok
            && call.add_struct(&[
                ("tm_retries_waiting", int(busy_waiting)),
                ("tm_retries_after_503", int(busy_resent)),
                ("nodes_refused", int(cluster::nodes_refused())),
                ("node_limit", int(dmq_core::nodes::MAX_NODES)),
            ]);
        for w in &stats.workers {
            ok = ok && call.add_struct(&[("worker_pid", Value::Int(w.pid)), ("jobs_waiting", int(w.queued)), ("jobs_processed", int(w.processed))]);
        }
        if !ok {
            call.fault(500, "Server failure");
        }
    })
}
