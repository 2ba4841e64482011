//! Sending KDMQ requests through tm (`t_request`), with a reply callback that
//! tm runs in whichever process sees the final reply (or the 408 timeout).

use std::ffi::{c_int, c_void};

use crate::host::kstr;
use crate::host::sip_msg::SipMsg;
use crate::raw;

/// A request to send.
pub struct KdmqRequest<'a> {
    /// R-URI and To: `sip:<channel>@<node>`.
    pub to: &'a str,
    /// From: `sip:<channel>@<our server address>`.
    pub from: &'a str,
    pub body: &'a [u8],
    pub content_type: &'a str,
    pub max_forwards: i32,
    /// Socket to send from ("udp:127.0.0.2:5090").
    pub socket: &'a str,
}

/// Called with the final reply code (408 on timeout), the reply as tm gives
/// it (NULL or FAKED_REPLY for a local timeout: see [`reply_msg`]) and the
/// bytes given at send time.
pub type ReplyHandler = fn(code: i32, reply: *mut raw::sip_msg, context: &[u8]);

/// tm's marker for "no reply: a local timeout" (FAKED_REPLY), passed to
/// reply callbacks instead of a message.
pub const FAKED_REPLY: *mut raw::sip_msg = usize::MAX as *mut raw::sip_msg;

/// The reply as a message, None for NULL or tm's FAKED_REPLY (a local timeout).
///
/// # Safety
/// `reply` must be NULL, FAKED_REPLY, or a reply alive for as long as the
/// returned value is used (as in the tm callback that received it).
pub unsafe fn reply_msg(reply: *mut raw::sip_msg) -> Option<SipMsg> {
    if reply.is_null() || reply == FAKED_REPLY {
        return None;
    }
    // SAFETY: per the caller's promise.
    unsafe { SipMsg::new(reply) }
}

/// The tm callback parameter: lives in shm because the reply may be handled
/// by another process. Layout: handler, context length, context bytes.
#[repr(C)]
struct CallbackParam {
    handler: ReplyHandler,
    len: usize,
    // followed by `len` bytes
}

unsafe extern "C" fn on_reply(_t: *mut raw::cell, _type: c_int, params: *mut raw::tmcb_params) {
    crate::host::panic_guard::guard("KDMQ reply callback", (), || {
        // SAFETY: tm passes valid params for TMCB_LOCAL_COMPLETED; *param is
        // the CallbackParam we allocated in `send`, used exactly once here.
        unsafe {
            if params.is_null() || (*params).param.is_null() {
                return;
            }
            let cbp = *(*params).param as *mut CallbackParam;
            if cbp.is_null() {
                return;
            }
            let code = (*params).code;
            let reply = (*params).rpl;
            let context = std::slice::from_raw_parts((cbp as *const u8).add(std::mem::size_of::<CallbackParam>()), (*cbp).len);
            let handler = (*cbp).handler;
            // Free even if the handler panics.
            struct Free(*mut c_void);
            impl Drop for Free {
                fn drop(&mut self) {
                    // SAFETY: allocated with shm_malloc in `send`, freed once.
                    unsafe { raw::dmq_rs_shm_free(self.0) }
                }
            }
            let _free = Free(cbp as *mut c_void);
            *(*params).param = std::ptr::null_mut();
            handler(code, reply, context);
        }
    })
}

/// Sends one KDMQ request; `handler` runs on its final reply.
pub fn send(tm: &raw::tm_binds, req: &KdmqRequest<'_>, handler: ReplyHandler, context: &[u8]) -> Result<(), String> {
    let t_request = tm.t_request.ok_or("tm has no t_request")?;
    let size = std::mem::size_of::<CallbackParam>() + context.len();
    // SAFETY: plain shm allocation; freed by on_reply or below on failure.
    let cbp = unsafe { raw::dmq_rs_shm_malloc(size) } as *mut CallbackParam;
    if cbp.is_null() {
        return Err("out of shm for the callback parameter".into());
    }
    // SAFETY: cbp has room for the header plus context bytes.
    unsafe {
        cbp.write(CallbackParam { handler, len: context.len() });
        std::ptr::copy_nonoverlapping(context.as_ptr(), (cbp as *mut u8).add(std::mem::size_of::<CallbackParam>()), context.len());
    }
    let headers = format!("Max-Forwards: {}\r\nContent-Type: {}\r\n", req.max_forwards, req.content_type);
    let mut method = kstr::borrowed(b"KDMQ");
    let mut headers = kstr::borrowed(headers.as_bytes());
    let mut body = kstr::borrowed(req.body);
    let mut socket = kstr::borrowed(req.socket.as_bytes());
    let mut to = kstr::borrowed(req.to.as_bytes());
    let mut from = kstr::borrowed(req.from.as_bytes());
    let mut uac = raw::uac_req_t {
        method: &mut method,
        headers: &mut headers,
        body: &mut body,
        ssock: &mut socket,
        cb_flags: 1 << raw::TMCB_LOCAL_COMPLETED_N,
        cb: Some(on_reply),
        cbp: cbp as *mut c_void,
        ..Default::default()
    };
    let to_ptr: *mut raw::str_ = &mut to;
    // SAFETY: every str points to memory alive for the call; tm copies what it
    // keeps (the request buffer) and owns cbp from here on when it succeeds.
    let rc = unsafe { t_request(&mut uac, to_ptr, to_ptr, &mut from, std::ptr::null_mut()) };
    if rc < 0 {
        // SAFETY: tm did not take the parameter; free it once.
        unsafe { raw::dmq_rs_shm_free(cbp as *mut c_void) };
        return Err(format!("t_request to {} failed ({rc})", req.to));
    }
    Ok(())
}
