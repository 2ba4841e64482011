//! Script functions, with the stock module's names, arities and return
//! values, and the same functions for KEMI (`KSR.dmq.*`).

use std::ffi::{c_char, c_int};

use crate::host::kstr;
use crate::host::panic_guard::guard;
use crate::host::sip_msg::SipMsg;
use crate::raw;

use super::cluster;
use super::lifecycle::module;
use super::messaging;
use super::peers;
use super::workers::{self, QueueError};

/// The optional "continue" parameter (an fparam_t after fixup_int_1); any
/// value above 1 counts as 1, as in the stock module.
fn continue_flag(msg: *mut raw::sip_msg, p1: *mut c_char) -> c_int {
    if p1.is_null() {
        return 0;
    }
    let mut value: c_int = 0;
    // SAFETY: p1 is the fparam_t fixup_int_1 built for this parameter.
    if unsafe { raw::get_int_fparam(&mut value, msg, p1 as *mut raw::fparam_t) } < 0 {
        return 0;
    }
    value.clamp(0, 1)
}

/// A string parameter after fixup_spve_*.
fn str_param(msg: *mut raw::sip_msg, p: *mut c_char, what: &str) -> Option<Vec<u8>> {
    if p.is_null() {
        return None;
    }
    let mut out = raw::str_::default();
    // SAFETY: p is the fparam_t the spve fixup built for this parameter.
    if unsafe { raw::get_str_fparam(&mut out, msg, p as *mut raw::fparam_t) } < 0 {
        log::error!("cannot get the {what} parameter");
        return None;
    }
    // SAFETY: the value points into the message or the fixup's storage.
    Some(unsafe { kstr::bytes(&out) }.to_vec())
}

/// dmq_handle_message / dmq_process_message: the peer is the R-URI user.
/// Returns `returnval` once the message is answered or queued, -1 on error.
fn handle(msg: *mut raw::sip_msg, returnval: c_int, queue: bool) -> c_int {
    let Some(m) = module() else { return -1 };
    // SAFETY: the message the core passed to this script function.
    let Some(msg) = (unsafe { SipMsg::new(msg) }) else { return -1 };
    let Some(channel) = msg.ruri_user() else {
        log::warn!("KDMQ with an unparsable R-URI from {:?}", msg.source_ip());
        msg.reply(&m.sl, 400, "Bad request", None);
        return -1;
    };
    if channel == m.config.notification_channel {
        cluster::handle_notification(m, &msg);
        return returnval;
    }
    let Some(peer) = peers::find(channel.as_bytes()) else {
        log::warn!("KDMQ for unknown peer {channel:?} from {:?}", msg.source_ip());
        if !msg.reply(&m.sl, 404, "User Not Found", None) {
            return -1;
        }
        return returnval;
    };
    if !queue {
        return if workers::run_peer_callback(m, &msg, peer) { returnval } else { -1 };
    }
    match workers::enqueue(&msg, peer) {
        Ok(queued) => {
            if queued.waits {
                msg.reply(&m.sl, 100, "Trying", None);
            }
            returnval
        }
        Err(QueueError::Full) => {
            log::warn!("DMQ job queue full (job_queue_limit {}): {channel} message from {:?} refused with 503", m.config.job_queue_limit, msg.source_ip());
            msg.reply(&m.sl, 503, "Service Unavailable", None);
            returnval
        }
        Err(QueueError::Failed(e)) => {
            log::error!("cannot queue a {channel} message: {e}");
            msg.reply(&m.sl, 500, "Server Internal Error", None);
            -1
        }
    }
}

pub unsafe extern "C" fn w_dmq_handle_message(msg: *mut raw::sip_msg, p1: *mut c_char, _p2: *mut c_char) -> c_int {
    guard("dmq_handle_message", -1, || handle(msg, continue_flag(msg, p1), true))
}

pub unsafe extern "C" fn w_dmq_process_message(msg: *mut raw::sip_msg, p1: *mut c_char, _p2: *mut c_char) -> c_int {
    guard("dmq_process_message", -1, || handle(msg, continue_flag(msg, p1), false))
}

/// dmq_send_message / dmq_bcast_message: 1 when sent, -1 otherwise.
fn send(peer_id: &[u8], node: Option<&[u8]>, body: &[u8], content_type: &[u8]) -> c_int {
    let Some(peer) = peers::find_or_register_script_peer(peer_id) else {
        log::error!("cannot register DMQ peer {:?}", String::from_utf8_lossy(peer_id));
        return -1;
    };
    let targets = match node {
        Some(node) => {
            let text = String::from_utf8_lossy(node);
            let known = dmq_core::protocol::parse_node_line(&text)
                .ok()
                .and_then(|l| cluster::read_nodes(|list| list.find(&l.uri).cloned()).flatten());
            match known {
                Some(node) => vec![node],
                None => {
                    log::error!("cannot find DMQ node {text}");
                    return -1;
                }
            }
        }
        None => messaging::active_targets(None),
    };
    match messaging::send_to(&peer.id(), &targets, body, &String::from_utf8_lossy(content_type), 1, None) {
        Ok(()) => 1,
        Err(e) => {
            log::error!("cannot send DMQ message for {}: {e}", peer.id());
            -1
        }
    }
}

/// dmq_send_message(peer, node, body, content_type): the core calls cmd
/// functions with as many parameters as they declare (see mod.rs).
pub unsafe extern "C" fn w_dmq_send_message(
    msg: *mut raw::sip_msg,
    peer: *mut c_char,
    node: *mut c_char,
    body: *mut c_char,
    content_type: *mut c_char,
) -> c_int {
    guard("dmq_send_message", -1, || {
        let (Some(peer), Some(node), Some(body), Some(ct)) = (
            str_param(msg, peer, "peer"),
            str_param(msg, node, "node"),
            str_param(msg, body, "body"),
            str_param(msg, content_type, "content type"),
        ) else {
            return -1;
        };
        send(&peer, Some(&node), &body, &ct)
    })
}

pub unsafe extern "C" fn w_dmq_bcast_message(
    msg: *mut raw::sip_msg,
    peer: *mut c_char,
    body: *mut c_char,
    content_type: *mut c_char,
) -> c_int {
    guard("dmq_bcast_message", -1, || {
        let (Some(peer), Some(body), Some(ct)) =
            (str_param(msg, peer, "peer"), str_param(msg, body, "body"), str_param(msg, content_type, "content type"))
        else {
            return -1;
        };
        send(&peer, None, &body, &ct)
    })
}

fn is_from_node(msg: *mut raw::sip_msg) -> bool {
    // SAFETY: the message the core passed to the script function.
    let Some(ip) = (unsafe { SipMsg::new(msg) }).and_then(|m| m.source_ip()) else { return false };
    cluster::read_nodes(|list| list.is_remote_ip(ip)).unwrap_or(false)
}

/// dmq_t_replicate: relays the request statefully to every active node,
/// from the DMQ socket. Like the stock module it returns 0 on success (which
/// ends the route) and -1 when it skipped or failed.
fn t_replicate(msg: *mut raw::sip_msg, skip_loop_test: bool) -> c_int {
    let Some(m) = module() else { return -1 };
    if !skip_loop_test && is_from_node(msg) {
        log::debug!("message came from another node: not replicated");
        return -1;
    }
    let Some(t_replicate) = m.tm.t_replicate else { return -1 };
    let socket = m.server_sock.as_ptr();
    // SAFETY: the message of this script call; the socket is the core's.
    unsafe { raw::dmq_rs_set_force_socket(msg, socket as *mut _) };
    let targets = messaging::active_targets(None);
    for (i, target) in targets.iter().enumerate() {
        if i > 0 {
            // SAFETY: adds an empty branch bound to our socket, as the stock
            // module does before each further t_replicate.
            let rc = unsafe {
                raw::append_branch(
                    msg,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    -1, // Q_UNSPECIFIED
                    0,
                    socket,
                    std::ptr::null_mut(),
                    0,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
            if rc == -1 {
                log::error!("cannot append a branch for {}", target.uri);
                continue;
            }
        }
        let uri = target.uri.to_uri();
        let mut suri = kstr::borrowed(uri.as_bytes());
        // SAFETY: tm's t_replicate on the script's message; it copies the URI.
        if unsafe { t_replicate(msg, &mut suri) } < 0 {
            log::error!("t_replicate to {} failed", target.uri);
            return -1;
        }
    }
    0
}

pub unsafe extern "C" fn w_dmq_t_replicate(msg: *mut raw::sip_msg, p1: *mut c_char, _p2: *mut c_char) -> c_int {
    guard("dmq_t_replicate", -1, || {
        let skip = match str_param(msg, p1, "skip_loop_test") {
            Some(v) => String::from_utf8_lossy(&v).trim().parse::<i32>().unwrap_or(0) != 0,
            None => false,
        };
        t_replicate(msg, skip)
    })
}

pub unsafe extern "C" fn w_dmq_is_from_node(msg: *mut raw::sip_msg, _p1: *mut c_char, _p2: *mut c_char) -> c_int {
    guard("dmq_is_from_node", -1, || if is_from_node(msg) { 1 } else { -1 })
}

// KEMI: KSR.dmq.* (same behaviour, typed parameters).

fn kemi_str<'a>(s: *mut raw::str_) -> &'a [u8] {
    // SAFETY: KEMI passes strs valid for the call.
    unsafe { kstr::bytes_at(s) }
}

pub unsafe extern "C" fn ki_handle_message(msg: *mut raw::sip_msg) -> c_int {
    guard("KSR.dmq.handle_message", -1, || handle(msg, 0, true))
}
pub unsafe extern "C" fn ki_handle_message_rc(msg: *mut raw::sip_msg, rc: c_int) -> c_int {
    guard("KSR.dmq.handle_message_rc", -1, || handle(msg, rc.clamp(0, 1), true))
}
pub unsafe extern "C" fn ki_process_message(msg: *mut raw::sip_msg) -> c_int {
    guard("KSR.dmq.process_message", -1, || handle(msg, 0, false))
}
pub unsafe extern "C" fn ki_process_message_rc(msg: *mut raw::sip_msg, rc: c_int) -> c_int {
    guard("KSR.dmq.process_message_rc", -1, || handle(msg, rc.clamp(0, 1), false))
}
pub unsafe extern "C" fn ki_send_message(
    _msg: *mut raw::sip_msg,
    peer: *mut raw::str_,
    node: *mut raw::str_,
    body: *mut raw::str_,
    ct: *mut raw::str_,
) -> c_int {
    guard("KSR.dmq.send_message", -1, || send(kemi_str(peer), Some(kemi_str(node)), kemi_str(body), kemi_str(ct)))
}
pub unsafe extern "C" fn ki_bcast_message(
    _msg: *mut raw::sip_msg,
    peer: *mut raw::str_,
    body: *mut raw::str_,
    ct: *mut raw::str_,
) -> c_int {
    guard("KSR.dmq.bcast_message", -1, || send(kemi_str(peer), None, kemi_str(body), kemi_str(ct)))
}
pub unsafe extern "C" fn ki_t_replicate(msg: *mut raw::sip_msg) -> c_int {
    guard("KSR.dmq.t_replicate", -1, || t_replicate(msg, false))
}
pub unsafe extern "C" fn ki_t_replicate_mode(msg: *mut raw::sip_msg, mode: c_int) -> c_int {
    guard("KSR.dmq.t_replicate_mode", -1, || t_replicate(msg, mode != 0))
}
pub unsafe extern "C" fn ki_is_from_node(msg: *mut raw::sip_msg) -> c_int {
    guard("KSR.dmq.is_from_node", -1, || if is_from_node(msg) { 1 } else { -1 })
}
