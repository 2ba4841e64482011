//! Sending requests through tm (`t_request`), with a reply callback that
//! tm runs in whichever process sees the final reply (or the 408 timeout),
//! and relaying the script's request to several URIs (`t_replicate`).

use std::ffi::c_int;
use std::fmt;

use crate::api::Tm;
use crate::kstr;
use crate::raw;
use crate::shm::{ShmBlock, ShmData};
use crate::sip_msg::SipMsg;
use crate::socket::LocalSocket;

/// Why tm did not take a request ([`Tm::request`]) or a relay
/// ([`Tm::replicate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TmError {
    /// tm's API has no such function (`t_request`, `t_replicate`).
    Missing(&'static str),
    /// No shm for the reply handler's context.
    OutOfShm,
    /// `t_request` refused the request.
    Request {
        /// Its method.
        method: String,
        /// Its R-URI.
        to: String,
        /// What `t_request` returned.
        rc: i32,
    },
    /// `t_replicate` failed for this URI.
    Replicate(String),
}

impl fmt::Display for TmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TmError::Missing(function) => write!(f, "tm has no {function}"),
            TmError::OutOfShm => f.write_str("out of shm for the callback parameter"),
            TmError::Request { method, to, rc } => write!(f, "t_request {method} to {to} failed ({rc})"),
            TmError::Replicate(uri) => write!(f, "t_replicate to {uri} failed"),
        }
    }
}

impl std::error::Error for TmError {}

/// A request outside a dialog, for tm to send.
pub struct UacRequest<'a> {
    /// The method (`OPTIONS`, `MESSAGE`, …).
    pub method: &'a str,
    /// R-URI and To.
    pub to: &'a str,
    /// From (tm adds a tag).
    pub from: &'a str,
    /// Header lines of the caller's own, each ending in CRLF; tm writes
    /// Via, From, To, Call-ID, CSeq and Content-Length itself.
    pub headers: &'a str,
    /// The body (its Content-Type goes in `headers`).
    pub body: &'a [u8],
    /// Socket to send from ("udp:127.0.0.2:5090").
    pub socket: &'a str,
    /// The Call-ID, when the caller must know it before tm builds the
    /// request (it signs it, say); else tm makes one.
    pub call_id: Option<&'a str>,
    /// Where to send it (`sip:ip:port;transport=x`) instead of the R-URI's
    /// host: tm then looks nothing up.
    pub next_hop: Option<&'a str>,
}

/// The CSeq number tm's `t_request` gives a request outside a dialog
/// (DEFAULT_CSEQ in tm/uac.h, the same in 5.6, 6.0 and 6.1).
pub const UAC_CSEQ: &[u8] = b"10";

/// A Call-ID unique per process, call and start of the process tree:
/// `<prefix>-t<pid>x<n>x<start>`.
pub fn unique_call_id(prefix: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{prefix}-t{}x{n}x{started:x}", std::process::id())
}

/// A reply as tm (or a module's own transport standing in for it) hands it
/// to a reply handler: a received reply, or none (tm's FAKED_REPLY: a local
/// timeout, or a request that could not be sent). Valid during the handler.
#[derive(Clone, Copy)]
pub struct TmReply<'a> {
    msg: *mut raw::sip_msg,
    _call: std::marker::PhantomData<&'a raw::sip_msg>,
}

/// tm's marker for "no reply: a local timeout" (FAKED_REPLY).
const FAKED_REPLY: *mut raw::sip_msg = usize::MAX as *mut raw::sip_msg;

impl<'a> TmReply<'a> {
    /// No reply (a timeout): C callbacks receive tm's FAKED_REPLY marker.
    pub fn none() -> TmReply<'static> {
        TmReply { msg: FAKED_REPLY, _call: std::marker::PhantomData }
    }

    /// A received reply.
    pub fn received(msg: &'a SipMsg<'_>) -> TmReply<'a> {
        TmReply { msg: msg.as_ptr(), _call: std::marker::PhantomData }
    }

    /// The reply as a message, for as long as the handler runs; None for none.
    pub fn msg(&self) -> Option<SipMsg<'a>> {
        if self.msg.is_null() || self.msg == FAKED_REPLY {
            return None;
        }
        // SAFETY: a reply alive for 'a (from `received`, or tm's callback).
        unsafe { SipMsg::new(self.msg) }
    }

    /// What C callbacks of a module API receive (tm's FAKED_REPLY for none).
    pub fn as_ptr(&self) -> *mut raw::sip_msg {
        self.msg
    }
}

/// Called with the final reply code (408 on timeout), the reply and the
/// bytes given at send time.
pub type ReplyHandler = fn(code: i32, reply: TmReply<'_>, context: &[u8]);

crate::shm_data! {
    /// The tm callback parameter's header: it lives in shm because the
    /// reply may be handled by another process; the context bytes follow.
    #[derive(Clone, Copy)]
    struct CallbackParam {
        handler: ReplyHandler,
    }
}

// SAFETY: a function pointer into the module, loaded before fork.
unsafe impl ShmData for ReplyHandler {}

unsafe extern "C" fn on_reply(_t: *mut raw::cell, _type: c_int, params: *mut raw::tmcb_params) {
    crate::panic_guard::guard("tm reply callback", (), || {
        // SAFETY: tm passes valid params for TMCB_LOCAL_COMPLETED; *param is
        // the block `request` handed over, taken back exactly once here.
        let (block, code, reply) = unsafe {
            if params.is_null() || (*params).param.is_null() {
                return;
            }
            let block = ShmBlock::<CallbackParam>::from_raw(*(*params).param);
            *(*params).param = std::ptr::null_mut();
            (block, (*params).code, (*params).rpl)
        };
        // Freed when dropped, even if the handler panics.
        let Some(block) = block else { return };
        let reply = TmReply { msg: reply, _call: std::marker::PhantomData };
        (block.header().handler)(code, reply, block.bytes());
    })
}

impl Tm {
    /// Sends one request; `handler` runs on its final reply (in whichever
    /// process sees it) with `context`, which is kept in shm until then.
    pub fn request(&self, req: &UacRequest<'_>, handler: ReplyHandler, context: &[u8]) -> Result<(), TmError> {
        let t_request = self.0.t_request.ok_or(TmError::Missing("t_request"))?;
        let param = ShmBlock::new(CallbackParam { handler }, &[context]).ok_or(TmError::OutOfShm)?;
        let mut call_id = req.call_id.map(|c| kstr::borrowed(c.as_bytes()));
        let mut method = kstr::borrowed(req.method.as_bytes());
        let mut headers = kstr::borrowed(req.headers.as_bytes());
        let mut body = kstr::borrowed(req.body);
        let mut socket = kstr::borrowed(req.socket.as_bytes());
        let mut to = kstr::borrowed(req.to.as_bytes());
        let mut from = kstr::borrowed(req.from.as_bytes());
        let mut next_hop = req.next_hop.map(|h| kstr::borrowed(h.as_bytes()));
        let next_hop_ptr = next_hop.as_mut().map_or(std::ptr::null_mut(), |h| h as *mut raw::str_);
        let cbp = param.into_raw();
        let mut uac = raw::uac_req_t {
            method: &mut method,
            headers: &mut headers,
            body: &mut body,
            ssock: &mut socket,
            cb_flags: 1 << raw::TMCB_LOCAL_COMPLETED_N,
            cb: Some(on_reply),
            cbp,
            callid: call_id.as_mut().map_or(std::ptr::null_mut(), |c| c as *mut raw::str_),
            ..Default::default()
        };
        let to_ptr: *mut raw::str_ = &mut to;
        // SAFETY: every str points to memory alive for the call; tm copies
        // what it keeps (the request buffer) and owns cbp from here on when
        // it succeeds.
        let rc = unsafe { t_request(&mut uac, to_ptr, to_ptr, &mut from, next_hop_ptr) };
        if rc < 0 {
            // SAFETY: tm did not take the parameter: ours again, freed on drop.
            drop(unsafe { ShmBlock::<CallbackParam>::from_raw(cbp) });
            return Err(TmError::Request { method: req.method.to_string(), to: req.to.to_string(), rc });
        }
        Ok(())
    }

    /// Relays `msg` statefully to each of `uris` from `socket` (the script's
    /// request, in a request route): one branch per URI, as C modules do
    /// with tm's `t_replicate` (e.g. dmq's `dmq_t_replicate`). Errors name
    /// the URI that failed; a branch that cannot be added is logged and
    /// skipped.
    pub fn replicate(&self, msg: &SipMsg, socket: LocalSocket, uris: &[String]) -> Result<(), TmError> {
        let t_replicate = self.0.t_replicate.ok_or(TmError::Missing("t_replicate"))?;
        // SAFETY: the message of this script call; the socket is the core's.
        unsafe { raw::krs_set_force_socket(msg.as_ptr(), socket.as_ptr() as *mut _) };
        for (i, uri) in uris.iter().enumerate() {
            if i > 0 {
                // SAFETY: adds an empty branch bound to our socket, as C
                // modules do before each further t_replicate.
                let rc = unsafe {
                    raw::append_branch(
                        msg.as_ptr(),
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        -1, // Q_UNSPECIFIED
                        0,
                        socket.as_ptr(),
                        std::ptr::null_mut(),
                        0,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                    )
                };
                if rc == -1 {
                    log::error!("cannot append a branch for {uri}");
                    continue;
                }
            }
            let mut suri = kstr::borrowed(uri.as_bytes());
            // SAFETY: tm's t_replicate on the script's message; it copies the URI.
            if unsafe { t_replicate(msg.as_ptr(), &mut suri) } < 0 {
                return Err(TmError::Replicate(uri.clone()));
            }
        }
        Ok(())
    }
}
