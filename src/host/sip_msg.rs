//! Read access to a received SIP message, and replies to it through sl.

use std::net::{IpAddr, SocketAddr};

use crate::host::addr;
use crate::host::kstr;
use crate::raw;

/// A SIP message the core handed to a script function or a tm callback,
/// valid for the duration of that call.
pub struct SipMsg(*mut raw::sip_msg);

/// The parts of a reply that name the request it answers.
#[derive(Debug, Clone, Copy)]
pub struct ReplyIds<'a> {
    pub status: u16,
    pub branch: &'a [u8],
    pub call_id: &'a [u8],
    pub cseq_number: &'a [u8],
    pub cseq_method: &'a [u8],
}

/// Why a message's body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    NoContentLength,
}

impl SipMsg {
    /// # Safety
    /// `msg` must be a live sip_msg from the core, used only during the call
    /// that received it.
    pub unsafe fn new(msg: *mut raw::sip_msg) -> Option<SipMsg> {
        (!msg.is_null()).then_some(SipMsg(msg))
    }

    pub fn ruri_user(&self) -> Option<String> {
        let mut user = raw::str_::default();
        // SAFETY: live message (see `new`); the user str points into its buffer.
        if unsafe { raw::dmq_rs_msg_ruri_user(self.0, &mut user) } < 0 {
            return None;
        }
        // SAFETY: as above.
        Some(unsafe { kstr::to_string(&user) })
    }

    /// The From URI (the sending node, for KDMQ).
    pub fn from_uri(&self) -> Option<String> {
        let mut uri = raw::str_::default();
        // SAFETY: live message; the uri str points into its buffer.
        if unsafe { raw::dmq_rs_msg_from_uri(self.0, &mut uri) } < 0 {
            return None;
        }
        // SAFETY: as above.
        Some(unsafe { kstr::to_string(&uri) })
    }

    pub fn body(&self) -> Result<Vec<u8>, BodyError> {
        let mut body = raw::str_::default();
        // SAFETY: live message; the body str points into its buffer and is
        // bounded by it (checked in the shim).
        if unsafe { raw::dmq_rs_msg_body(self.0, &mut body) } < 0 {
            return Err(BodyError::NoContentLength);
        }
        // SAFETY: as above.
        Ok(unsafe { kstr::bytes(&body) }.to_vec())
    }

    pub fn max_forwards(&self) -> Option<i32> {
        // SAFETY: live message.
        let mf = unsafe { raw::dmq_rs_msg_max_forwards(self.0) };
        (mf >= 0).then_some(mf)
    }

    pub fn source_ip(&self) -> Option<IpAddr> {
        self.source().map(|s| s.ip())
    }

    /// Where the message came from (address and port).
    pub fn source(&self) -> Option<SocketAddr> {
        let mut ip = [0u8; 16];
        let mut port: std::ffi::c_int = 0;
        // SAFETY: live message; the shim writes 16 bytes into ip and the port.
        let family = unsafe { raw::dmq_rs_msg_source(self.0, ip.as_mut_ptr(), &mut port) };
        Some(SocketAddr::new(addr::from_bytes(family, &ip)?, port as u16))
    }

    /// What identifies a reply's transaction: first Via branch, status,
    /// Call-ID and CSeq (None for a request, or a reply missing any).
    pub fn reply_ids(&self) -> Option<ReplyIds<'_>> {
        let (mut branch, mut call_id, mut number, mut method) =
            (raw::str_::default(), raw::str_::default(), raw::str_::default(), raw::str_::default());
        // SAFETY: live message; the strs point into its buffer.
        let status = unsafe { raw::dmq_rs_reply_ids(self.0, &mut branch, &mut call_id, &mut number, &mut method) };
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

    /// Replies statelessly through sl, with an optional body.
    pub fn reply(&self, sl: &raw::sl_api_t, code: i32, reason: &str, body: Option<(&[u8], &str)>) -> bool {
        if let Some((body, content_type)) = body {
            let header = format!("Content-Type: {content_type}\r\n");
            // SAFETY: add_lump_rpl copies the bytes into its own pkg memory.
            let ok = unsafe {
                !raw::add_lump_rpl2(self.0, header.as_ptr() as *mut _, header.len() as i32, raw::LUMP_RPL_HDR as i32).is_null()
                    && !raw::add_lump_rpl2(self.0, body.as_ptr() as *mut _, body.len() as i32, raw::LUMP_RPL_BODY as i32)
                        .is_null()
            };
            if !ok {
                log::error!("cannot add the reply body");
            }
        }
        let Some(freply) = sl.freply else { return false };
        let mut reason = kstr::borrowed(reason.as_bytes());
        // SAFETY: live message; sl copies the reason into the reply.
        unsafe { freply(self.0, code, &mut reason) >= 0 }
    }

    pub fn as_ptr(&self) -> *mut raw::sip_msg {
        self.0
    }
}
