//! Script functions, with the stock module's names and arities.

use std::ffi::{c_char, c_int};

use crate::host::panic_guard::guard;
use crate::raw;

fn not_yet(function: &str) -> c_int {
    log::error!("{function}() is not available in this dmq_rs build yet");
    -1
}

pub unsafe extern "C" fn w_dmq_handle_message(_msg: *mut raw::sip_msg, _p1: *mut c_char, _p2: *mut c_char) -> c_int {
    guard("dmq_handle_message", -1, || not_yet("dmq_handle_message"))
}

pub unsafe extern "C" fn w_dmq_process_message(_msg: *mut raw::sip_msg, _p1: *mut c_char, _p2: *mut c_char) -> c_int {
    guard("dmq_process_message", -1, || not_yet("dmq_process_message"))
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

pub unsafe extern "C" fn w_dmq_is_from_node(_msg: *mut raw::sip_msg, _p1: *mut c_char, _p2: *mut c_char) -> c_int {
    guard("dmq_is_from_node", -1, || not_yet("dmq_is_from_node"))
}
