//! RPC commands: the entries of the module's RPC table (built by
//! [`rpc!`](macro@crate::rpc), whose C trampoline runs the module's
//! `fn(&RpcCall)` inside the panic guard) and their registration with the
//! core ([`register_rpcs`], in mod_init). Replying is [`rpc`](mod@crate::rpc)'s.
//! Items marked `doc(hidden)` are public only for the macro's expansion.

use std::ffi::{c_char, c_void, CStr};
use std::fmt;
use std::ptr::null_mut;

use crate::cell::CoreCell;
use crate::panic_guard::guard;
use crate::raw;
use crate::rpc::RpcCall;

/// RPC doc strings: the core reads them through `doc_str`.
#[doc(hidden)]
pub struct RpcDoc([*const c_char; 2]);
// SAFETY: pointers to 'static immutable C strings.
unsafe impl Sync for RpcDoc {}

impl RpcDoc {
    pub const fn new(doc: &'static CStr) -> RpcDoc {
        RpcDoc([doc.as_ptr(), std::ptr::null()])
    }
}

/// Whether an RPC command replies with a list of entries (rpc.h's RET_ARRAY).
#[derive(Clone, Copy)]
pub enum RpcReply {
    /// One reply (a structure, or a line of text).
    Single,
    /// Any number of entries (each [`add_struct`](crate::rpc::RpcCall::add_struct) adds one).
    Array,
}

/// One entry of the RPC table (built by [`rpc!`](macro@crate::rpc)), which ends
/// with [`RpcExport::END`] and is registered with [`register_rpcs`].
#[repr(transparent)]
pub struct RpcExport(raw::rpc_export_t);

#[doc(hidden)]
pub type RpcFn = unsafe extern "C" fn(*mut raw::rpc_t, *mut c_void);

impl RpcExport {
    #[doc(hidden)]
    pub const fn new(name: &'static CStr, f: RpcFn, doc: &'static RpcDoc, reply: RpcReply) -> RpcExport {
        RpcExport(raw::rpc_export_t {
            name: name.as_ptr(),
            function: Some(f),
            doc_str: doc.0.as_ptr() as *mut *const c_char,
            flags: match reply {
                RpcReply::Single => 0,
                RpcReply::Array => 1,
            },
        })
    }
    /// The table's terminator.
    pub const END: RpcExport = RpcExport(raw::rpc_export_t { name: std::ptr::null(), function: None, doc_str: null_mut(), flags: 0 });
}

/// The body of every RPC trampoline.
///
/// # Safety
/// `rpc` and `ctx` are what the core passed to the RPC handler.
#[doc(hidden)]
pub unsafe fn run_rpc(name: &CStr, rpc: *mut raw::rpc_t, ctx: *mut c_void, f: fn(&RpcCall)) {
    // SAFETY: per the caller, used only during this call.
    let call = unsafe { RpcCall::new(rpc, ctx) };
    guard(name.to_str().unwrap_or("rpc"), (), || f(&call));
}

/// One RPC command: `rpc!(c"<module>.name", f, c"doc", RpcReply::Array)` with `f: fn(&RpcCall)`.
#[macro_export]
macro_rules! rpc {
    ($name:expr, $f:path, $doc:expr, $reply:expr) => {{
        static DOC: $crate::rpc_export::RpcDoc = $crate::rpc_export::RpcDoc::new($doc);
        #[allow(unsafe_code)]
        unsafe extern "C" fn trampoline(rpc: *mut $crate::ffi::rpc_t, ctx: *mut ::std::ffi::c_void) {
            let (name, f): (&'static ::std::ffi::CStr, _) = ($name, $f);
            // SAFETY: the core passes its rpc API and reply context.
            unsafe { $crate::rpc_export::run_rpc(name, rpc, ctx, f) }
        }
        $crate::rpc_export::RpcExport::new($name, trampoline, &DOC, $reply)
    }};
}

/// The core refused the RPC table (a command name registered twice, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcRegisterError;

impl fmt::Display for RpcRegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("failed to register the RPC commands")
    }
}

impl std::error::Error for RpcRegisterError {}

/// Registers an RPC table ending with [`RpcExport::END`] (in mod_init, as
/// C modules do; the `exports` table carries none).
pub fn register_rpcs<const N: usize>(table: &'static CoreCell<[RpcExport; N]>) -> Result<(), RpcRegisterError> {
    // SAFETY: a static table ending with RpcExport::END; the core keeps the
    // pointer for the life of the process.
    if unsafe { raw::rpc_register_array(table.as_ptr() as *mut raw::rpc_export_t) } != 0 {
        return Err(RpcRegisterError);
    }
    Ok(())
}
