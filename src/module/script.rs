//! Script functions, with the stock module's names and arities.

use std::ffi::{c_char, c_int};

use crate::host::panic_guard::guard;
use crate::host::sip_msg::SipMsg;
use crate::raw;

use super::cluster;
use super::lifecycle::module;

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

/// dmq_handle_message / dmq_process_message: the peer is the R-URI user.
fn handle(msg: *mut raw::sip_msg, returnval: c_int) -> c_int {
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
    log::warn!("KDMQ for unknown peer {channel:?} from {:?}", msg.source_ip());
    if !msg.reply(&m.sl, 404, "User Not Found", None) {
        return -1;
    }
    returnval
}

pub unsafe extern "C" fn w_dmq_handle_message(msg: *mut raw::sip_msg, p1: *mut c_char, _p2: *mut c_char) -> c_int {
    guard("dmq_handle_message", -1, || handle(msg, continue_flag(msg, p1)))
}

pub unsafe extern "C" fn w_dmq_process_message(msg: *mut raw::sip_msg, p1: *mut c_char, _p2: *mut c_char) -> c_int {
    guard("dmq_process_message", -1, || handle(msg, continue_flag(msg, p1)))
}

fn not_yet(function: &str) -> c_int {
    log::error!("{function}() is not available in this dmq_rs build yet");
    -1
}

pub unsafe extern "C" fn w_dmq_send_message(_msg: *mut raw::sip_msg, _p1: *mut c_char, _p2: *mut c_char) -> c_int {
    guard("dmq_send_message", -1, || not_yet("dmq_send_message"))
}

pub unsafe extern "C" fn w_dmq_bcast_message(_msg: *mut raw::sip_msg, _p1: *mut c_char, _p2: *mut c_char) -> c_int {
    guard("dmq_bcast_message", -1, || not_yet("dmq_bcast_message"))
}

pub unsafe extern "C" fn w_dmq_t_replicate(_msg: *mut raw::sip_msg, _p1: *mut c_char, _p2: *mut c_char) -> c_int {
    guard("dmq_t_replicate", -1, || not_yet("dmq_t_replicate"))
}

pub unsafe extern "C" fn w_dmq_is_from_node(msg: *mut raw::sip_msg, _p1: *mut c_char, _p2: *mut c_char) -> c_int {
    guard("dmq_is_from_node", -1, || {
        // SAFETY: the message the core passed to this script function.
        let Some(ip) = (unsafe { SipMsg::new(msg) }).and_then(|m| m.source_ip()) else { return -1 };
        if cluster::read_nodes(|list| list.is_remote_ip(ip)).unwrap_or(false) {
            1
        } else {
            -1
        }
    })
}
