//! Replies the core receives, seen before the script's `onreply_route`.
//!
//! A module's `response_f` runs only after `onreply_route`, and a common
//! reply route (`if (!t_check_trans()) { drop; }`, in Kamailio's own example
//! configs) drops every reply that matches no tm transaction before that.
//! A pre-script ONREPLY callback runs first (receive_msg, after the core's
//! sanity checks), and returning 0 from it consumes the reply.

use std::ffi::{c_int, c_uint, c_void};
use std::fmt;

use crate::panic_guard::guard;
use crate::raw;
use crate::sip_msg::SipMsg;

/// What a reply hook did with a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Ours, handled: the core stops here (no reply route, no forwarding).
    Consumed,
    /// Not ours: the core goes on with it as usual.
    NotMine,
}

/// A function that sees every reply first.
pub type ReplyHook = fn(&SipMsg<'_>) -> Verdict;

unsafe extern "C" fn trampoline(msg: *mut raw::sip_msg, _flags: c_uint, param: *mut c_void) -> c_int {
    guard("reply hook", 1, || {
        // SAFETY: `param` is the ReplyHook registered in `hook_replies`
        // (a fn pointer, valid in every process of the tree).
        let hook: ReplyHook = unsafe { std::mem::transmute::<*mut c_void, ReplyHook>(param) };
        // SAFETY: the reply the core is processing, alive for this call.
        let Some(msg) = (unsafe { SipMsg::new(msg) }) else { return 1 };
        match hook(&msg) {
            Verdict::Consumed => 0,
            Verdict::NotMine => 1,
        }
    })
}

/// The core refused the reply hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyHookError;

impl fmt::Display for ReplyHookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cannot register the reply hook")
    }
}

impl std::error::Error for ReplyHookError {}

/// Registers `hook` for every reply, before the reply route (mod_init).
pub fn hook_replies(hook: ReplyHook) -> Result<(), ReplyHookError> {
    // SAFETY: registers a static trampoline with a fn pointer as its
    // parameter, before fork, as the core requires.
    if unsafe { raw::krs_register_pre_reply_cb(Some(trampoline), hook as *mut c_void) } < 0 {
        return Err(ReplyHookError);
    }
    Ok(())
}
