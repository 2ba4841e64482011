//! `kamcmd dmq.*`.

use std::ffi::{c_char, c_void};

use crate::host::cell::CoreCell;
use crate::host::panic_guard::guard;
use crate::host::rpc::{RpcCall, Value};
use crate::raw;

/// rpc.h's RET_ARRAY: the reply is a list of entries.
const RET_ARRAY: u32 = 1;

struct Doc([*const c_char; 2]);
// SAFETY: pointers to 'static immutable C strings.
unsafe impl Sync for Doc {}

static LIST_NODES_DOC: CoreCell<Doc> = CoreCell::new(Doc([c"Print all nodes".as_ptr(), std::ptr::null()]));

static RPC_METHODS: CoreCell<[raw::rpc_export_t; 2]> = CoreCell::new([
    raw::rpc_export_t {
        name: c"dmq.list_nodes".as_ptr(),
        function: Some(rpc_list_nodes),
        doc_str: LIST_NODES_DOC.as_ptr() as *mut *const c_char,
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
        let Some(module) = super::lifecycle::module() else {
            call.fault(500, "dmq not initialized");
            return;
        };
        let uri = &module.server_uri;
        let ok = call.add_struct(&[
            ("host", Value::Str(&uri.host)),
            ("port", Value::Str(&uri.port)),
            ("proto", Value::Str(uri.transport.socket_name())),
            ("resolved_ip", Value::Str(&uri.host)),
            ("status", Value::Str("active")),
            ("last_notification", Value::Int(0)),
            ("local", Value::Int(1)),
        ]);
        if !ok {
            call.fault(500, "Server failure");
        }
    })
}
