//! Read access to a received SIP message, and replies to it through sl.

use std::ffi::c_int;
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::ops::Deref;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::addr;
use crate::api::Sl;
use crate::kstr;
use crate::raw;
use crate::shm::ShmData;

/// A SIP message the core handed to a script function, a reply hook or a
/// tm callback: `'a` is that call, which the message cannot outlive.
pub struct SipMsg<'a>(*mut raw::sip_msg, PhantomData<&'a mut raw::sip_msg>);

/// The parts of a reply that name the request it answers.
#[derive(Debug, Clone, Copy)]
pub struct ReplyIds<'a> {
    /// The status code.
    pub status: u16,
    /// The first Via's branch parameter.
    pub branch: &'a [u8],
    /// The Call-ID.
    pub call_id: &'a [u8],
    /// The CSeq number, as written.
    pub cseq_number: &'a [u8],
    /// The CSeq method.
    pub cseq_method: &'a [u8],
}

/// The parts of a request that identify it.
#[derive(Debug, Clone, Copy)]
pub struct RequestIds<'a> {
    /// The Request-URI as written in the first line.
    pub ruri: &'a [u8],
    /// The Call-ID.
    pub call_id: &'a [u8],
    /// The CSeq number, as written.
    pub cseq_number: &'a [u8],
}

/// Why a message's body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// The message has no (valid) Content-Length, so its body is unknown.
    NoContentLength,
}

impl<'a> SipMsg<'a> {
    /// Wraps the core's message; None for NULL.
    ///
    /// # Safety
    /// `msg` is null or a live sip_msg from the core, alive and not used
    /// elsewhere for `'a` (the call that received it).
    pub(crate) unsafe fn new(msg: *mut raw::sip_msg) -> Option<SipMsg<'a>> {
        (!msg.is_null()).then_some(SipMsg(msg, PhantomData))
    }

    /// The user part of the Request-URI (its current value, after any
    /// rewrite by the script; empty when it has none); None when there is
    /// no R-URI to parse (a reply).
    pub fn ruri_user(&self) -> Option<String> {
        let mut user = raw::str_::default();
        // SAFETY: live message (see `new`); the user str points into its buffer.
        if unsafe { raw::krs_msg_ruri_user(self.0, &mut user) } < 0 {
            return None;
        }
        // SAFETY: as above.
        Some(unsafe { kstr::to_string(&user) })
    }

    /// The From header's value as received (name-addr and parameters).
    pub fn from_value(&self) -> Option<&[u8]> {
        let mut value = raw::str_::default();
        // SAFETY: live message; the value str points into its buffer.
        if unsafe { raw::krs_msg_from_value(self.0, &mut value) } < 0 {
            return None;
        }
        // SAFETY: as above; the buffer lives as long as the message (&self).
        Some(unsafe { kstr::bytes(&value) })
    }

    /// A copy of the body (see [`body_bytes`](Self::body_bytes)).
    pub fn body(&self) -> Result<Vec<u8>, BodyError> {
        self.body_bytes().map(<[u8]>::to_vec)
    }

    /// The body in the message's buffer (no copy).
    pub fn body_bytes(&self) -> Result<&[u8], BodyError> {
        let mut body = raw::str_::default();
        // SAFETY: live message; the body str points into its buffer and is
        // bounded by it (checked in the shim).
        if unsafe { raw::krs_msg_body(self.0, &mut body) } < 0 {
            return Err(BodyError::NoContentLength);
        }
        // SAFETY: as above; the buffer lives as long as the message (&self).
        Ok(unsafe { kstr::bytes(&body) })
    }

    /// The value of the first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        let mut value = raw::str_::default();
        // SAFETY: live message; the name is read for name.len() bytes, the
        // value points into the message's buffer.
        if unsafe { raw::krs_msg_header(self.0, name.as_ptr().cast(), name.len() as c_int, &mut value) } < 0 {
            return None;
        }
        // SAFETY: as above; the buffer lives as long as the message (&self).
        Some(unsafe { kstr::bytes(&value) })
    }

    /// What identifies a request: R-URI as written, Call-ID, CSeq number
    /// (None for a reply or a request missing any).
    pub fn request_ids(&self) -> Option<RequestIds<'_>> {
        let (mut ruri, mut call_id, mut number) = (raw::str_::default(), raw::str_::default(), raw::str_::default());
        // SAFETY: live message; the strs point into its buffer.
        if unsafe { raw::krs_request_ids(self.0, &mut ruri, &mut call_id, &mut number) } < 0 {
            return None;
        }
        // SAFETY: as above; the buffer lives as long as the message (&self).
        unsafe { Some(RequestIds { ruri: kstr::bytes(&ruri), call_id: kstr::bytes(&call_id), cseq_number: kstr::bytes(&number) }) }
    }

    /// The Max-Forwards value; None when absent or invalid.
    pub fn max_forwards(&self) -> Option<i32> {
        // SAFETY: live message.
        let mf = unsafe { raw::krs_msg_max_forwards(self.0) };
        (mf >= 0).then_some(mf)
    }

    /// The address the message came from (see [`source`](Self::source)).
    pub fn source_ip(&self) -> Option<IpAddr> {
        self.source().map(|s| s.ip())
    }

    /// Where the message came from (address and port).
    pub fn source(&self) -> Option<SocketAddr> {
        let mut ip = [0u8; 16];
        let mut port: std::ffi::c_int = 0;
        // SAFETY: live message; the shim writes 16 bytes into ip and the port.
        let family = unsafe { raw::krs_msg_source(self.0, ip.as_mut_ptr(), &mut port) };
        Some(SocketAddr::new(addr::from_bytes(family, &ip)?, port as u16))
    }

    /// What identifies a reply's transaction: first Via branch, status,
    /// Call-ID and CSeq (None for a request, or a reply missing any).
    pub fn reply_ids(&self) -> Option<ReplyIds<'_>> {
        let (mut branch, mut call_id, mut number, mut method) =
            (raw::str_::default(), raw::str_::default(), raw::str_::default(), raw::str_::default());
        // SAFETY: live message; the strs point into its buffer.
        let status = unsafe { raw::krs_reply_ids(self.0, &mut branch, &mut call_id, &mut number, &mut method) };
        if status < 0 {
            return None;
        }
        // SAFETY: as above; the buffer lives as long as the message (&self).
        unsafe {
            Some(ReplyIds {
                status: status as u16,
                branch: kstr::bytes(&branch),
                call_id: kstr::bytes(&call_id),
                cseq_number: kstr::bytes(&number),
                cseq_method: kstr::bytes(&method),
            })
        }
    }

    /// The message as received (its buffer, without the core's NUL).
    pub fn raw_bytes(&self) -> &[u8] {
        // SAFETY: live message; buf holds len bytes for its life.
        unsafe { std::slice::from_raw_parts((*self.0).buf as *const u8, (*self.0).len as usize) }
    }

    /// Where and how the message was received (decides where replies go).
    pub fn receive_info(&self) -> ReceiveInfo {
        // SAFETY: live message; a plain copy of its receive info.
        ReceiveInfo(unsafe { (*self.0).rcv })
    }

    /// Adds a header line (with its CRLF) to the reply this message will
    /// get (`reply`).
    pub fn add_reply_header(&self, header: &str) -> bool {
        // SAFETY: add_lump_rpl copies the bytes into its own pkg memory.
        let ok = unsafe { !raw::add_lump_rpl2(self.0, header.as_ptr() as *mut _, header.len() as i32, raw::LUMP_RPL_HDR as i32).is_null() };
        if !ok {
            log::error!("cannot add a reply header");
        }
        ok
    }

    /// Replies statelessly through sl, with an optional body `(bytes,
    /// content type)`; a request's only. False when sl could not send it.
    pub fn reply(&self, sl: &Sl, code: i32, reason: &str, body: Option<(&[u8], &str)>) -> bool {
        if let Some((body, content_type)) = body {
            let header = format!("Content-Type: {content_type}\r\n");
            // SAFETY: add_lump_rpl copies the bytes into its own pkg memory.
            let ok = unsafe {
                !raw::add_lump_rpl2(self.0, header.as_ptr() as *mut _, header.len() as i32, raw::LUMP_RPL_HDR as i32).is_null()
                    && !raw::add_lump_rpl2(self.0, body.as_ptr() as *mut _, body.len() as i32, raw::LUMP_RPL_BODY as i32).is_null()
            };
            if !ok {
                log::error!("cannot add the reply body");
            }
        }
        let Some(freply) = sl.0.freply else { return false };
        // sl needs the reason NUL-terminated: when the str handed to it
        // ends with the NUL it uses it as it is, else it makes a pkg copy
        // first (a q_malloc per reply).
        let mut terminated = [0u8; 128];
        let mut reason = match terminated.get_mut(..reason.len() + 1) {
            Some(buf) if !reason.as_bytes().contains(&0) => {
                buf[..reason.len()].copy_from_slice(reason.as_bytes());
                kstr::borrowed(buf)
            }
            _ => kstr::borrowed(reason.as_bytes()),
        };
        // SAFETY: live message; sl copies the reason into the reply.
        unsafe { freply(self.0, code, &mut reason) >= 0 }
    }

    /// The core's message, for a crate that hands it to C (a module API's
    /// callback): valid for `'a` only.
    pub fn as_ptr(&self) -> *mut raw::sip_msg {
        self.0
    }
}

/// A message's receive info (socket, source, protocol): may be kept (in
/// shm too) with a message queued for later, so that a reply goes where a
/// reply to the original would.
#[derive(Clone, Copy)]
pub struct ReceiveInfo(raw::receive_info);

// SAFETY: addresses, ports and a pointer into the core's socket list (made
// before fork, never freed): the same in every process.
unsafe impl ShmData for ReceiveInfo {}

impl ReceiveInfo {
    /// For a message the module makes itself and hands to code that expects
    /// a received one (another module's callback, say): received on
    /// `socket` over UDP, from no address (nothing may be sent back to it).
    pub fn local(socket: crate::socket::LocalSocket) -> ReceiveInfo {
        let mut rcv = raw::receive_info { bind_address: socket.as_ptr(), ..Default::default() };
        rcv.proto = raw::sip_protos_PROTO_UDP as _;
        ReceiveInfo(rcv)
    }
}

/// A message parsed from bytes (one queued for later, or made by the
/// module), in this process's pkg memory; it points into the bytes it was
/// parsed from and is freed on drop.
pub struct OwnedSipMsg<'a> {
    /// A leaked Box, taken back on drop.
    view: SipMsg<'a>,
    _bytes: std::marker::PhantomData<&'a mut [u8]>,
}

static MSG_ID: AtomicU32 = AtomicU32::new(1);

impl<'a> OwnedSipMsg<'a> {
    /// Parses `bytes` (the message, then one NUL byte, as the core's
    /// parsers expect of a receive buffer) with every header, as callbacks
    /// expect of a message handed to them; `rcv` says where it came from.
    pub fn parse(bytes: &'a mut [u8], rcv: ReceiveInfo) -> Option<OwnedSipMsg<'a>> {
        let (0, len) = (*bytes.last()?, bytes.len() - 1) else { return None };
        let mut msg = Box::new(raw::sip_msg::default());
        let id = MSG_ID.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the buffer outlives the message ('a); the core's parser
        // reads up to its NUL.
        let built = unsafe { raw::build_sip_msg_from_buf(&mut *msg, bytes.as_mut_ptr() as *mut _, len as c_int, id) } >= 0;
        // SAFETY: msg was just built from the buffer.
        if !built || unsafe { raw::krs_parse_all_headers(&mut *msg) } < 0 {
            // SAFETY: frees what parsing allocated so far (pkg), once.
            unsafe { raw::free_sip_msg(&mut *msg) };
            return None;
        }
        msg.rcv = rcv.0;
        Some(OwnedSipMsg { view: SipMsg(Box::into_raw(msg), PhantomData), _bytes: PhantomData })
    }
}

impl<'a> Deref for OwnedSipMsg<'a> {
    type Target = SipMsg<'a>;
    fn deref(&self) -> &SipMsg<'a> {
        &self.view
    }
}

impl Drop for OwnedSipMsg<'_> {
    fn drop(&mut self) {
        // SAFETY: frees the pkg parts (headers, lumps) once, then the Box
        // leaked in `parse`; the bytes are the caller's.
        unsafe {
            raw::free_sip_msg(self.view.0);
            drop(Box::from_raw(self.view.0));
        }
    }
}
