//! DNS lookups for `multi_notify`: SRV through the core's resolver (its
//! resolv.conf handling and DNS cache settings), addresses through the
//! system resolver (so /etc/hosts names work as well).

use std::ffi::CString;
use std::net::{IpAddr, ToSocketAddrs};

use dmq_core::discovery::SrvTarget;

use crate::raw;

/// RFC 2782's record type number for SRV.
const T_SRV: i32 = 33;

/// The SRV records of `name` as (target, port).
pub fn srv(name: &str) -> Vec<SrvTarget> {
    let Ok(cname) = CString::new(name) else { return Vec::new() };
    let mut out = Vec::new();
    // SAFETY: get_record reads the NUL-terminated name and returns a list it
    // allocated, which we walk and then free once with free_rdata_list.
    unsafe {
        let head = raw::get_record(cname.as_ptr() as *mut _, T_SRV, raw::RES_ONLY_TYPE as i32);
        let mut rec = head;
        while !rec.is_null() {
            let srv = (*rec).rdata as *const raw::srv_rdata;
            if !srv.is_null() {
                let len = (*srv).name_len as usize;
                let bytes = std::slice::from_raw_parts((*srv).name.as_ptr() as *const u8, len);
                out.push((String::from_utf8_lossy(bytes).into_owned(), (*srv).port));
            }
            rec = (*rec).next;
        }
        if !head.is_null() {
            raw::free_rdata_list(head);
        }
    }
    out
}

/// The IPv4 and IPv6 addresses of `host`.
pub fn addresses(host: &str) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = Vec::new();
    if let Ok(addrs) = (host, 0).to_socket_addrs() {
        for a in addrs {
            if !ips.contains(&a.ip()) {
                ips.push(a.ip());
            }
        }
    }
    ips
}
