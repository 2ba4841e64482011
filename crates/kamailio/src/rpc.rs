//! Replies to RPC commands (`kamcmd <module>.*`), over the core's `rpc_t`.

use std::ffi::{c_void, CString};

use crate::raw;

/// One RPC call in progress: the core's function table and reply context.
pub struct RpcCall {
    rpc: *mut raw::rpc_t,
    ctx: *mut c_void,
}

/// A value in an RPC reply structure.
pub enum Value<'a> {
    /// A string (NULs dropped).
    Str(&'a str),
    /// An integer.
    Int(i32),
}

fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

impl RpcCall {
    /// # Safety
    /// `rpc` and `ctx` must be the pointers the core passed to an RPC handler,
    /// used only during that call.
    pub(crate) unsafe fn new(rpc: *mut raw::rpc_t, ctx: *mut c_void) -> RpcCall {
        RpcCall { rpc, ctx }
    }

    fn api(&self) -> &raw::rpc_t {
        // SAFETY: `rpc` is the core's live function table (see `new`).
        unsafe { &*self.rpc }
    }

    /// Replies with an error code and message.
    pub fn fault(&self, code: i32, message: &str) {
        let msg = cstring(message);
        if let Some(fault) = self.api().fault {
            // SAFETY: "%s" with one NUL-terminated argument.
            unsafe { fault(self.ctx, code, c"%s".as_ptr() as *mut _, msg.as_ptr()) };
        }
    }

    /// Adds a line of text to the reply.
    pub fn print(&self, text: &str) -> bool {
        let text = cstring(text);
        match self.api().rpl_printf {
            // SAFETY: "%s" with one NUL-terminated argument.
            Some(printf) => unsafe { printf(self.ctx, c"%s".as_ptr() as *mut _, text.as_ptr()) >= 0 },
            None => false,
        }
    }

    /// The first string parameter of the call, if any.
    pub fn string_param(&self) -> Option<String> {
        let scan = self.api().scan?;
        let mut s = raw::str_::default();
        // SAFETY: ".S" asks for an optional str, written into `s`; the text
        // stays valid for the duration of the call and is copied out here.
        let n = unsafe { scan(self.ctx, c".S".as_ptr() as *mut _, &mut s as *mut raw::str_) };
        if n < 1 {
            return None;
        }
        // SAFETY: filled by the core, valid during the call.
        Some(unsafe { crate::kstr::to_string(&s) })
    }

    /// Adds one structure `{ name: value, ... }` to the reply (an array entry
    /// when the command is flagged RET_ARRAY). Fields keep their order.
    pub fn add_struct(&self, fields: &[(&str, Value<'_>)]) -> bool {
        let (Some(add), Some(struct_add)) = (self.api().add, self.api().struct_add) else {
            return false;
        };
        let mut handle: *mut c_void = std::ptr::null_mut();
        // SAFETY: "{" creates a structure and stores its handle in `handle`.
        if unsafe { add(self.ctx, c"{".as_ptr() as *mut _, &mut handle as *mut *mut c_void) } < 0 {
            return false;
        }
        for (name, value) in fields {
            let name = cstring(name);
            let rc = match value {
                Value::Str(s) => {
                    let v = cstring(s);
                    // SAFETY: "s" takes (name, char*); both NUL-terminated and
                    // copied by the core before returning.
                    unsafe { struct_add(handle, c"s".as_ptr() as *mut _, name.as_ptr(), v.as_ptr()) }
                }
                // SAFETY: "d" takes (name, int).
                Value::Int(i) => unsafe { struct_add(handle, c"d".as_ptr() as *mut _, name.as_ptr(), *i) },
            };
            if rc < 0 {
                return false;
            }
        }
        true
    }
}
