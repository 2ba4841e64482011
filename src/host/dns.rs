//! DNS lookups: SRV records for `multi_notify` and node host names through
//! the core's resolver (its resolv.conf handling, DNS cache, `dns_try_ipv6`
//! and /etc/hosts, as the stock module resolves nodes), and addresses for
//! `multi_notify` through the system resolver.

use std::ffi::CString;
use std::net::{IpAddr, ToSocketAddrs};

use dmq_core::discovery::SrvTarget;

use dmq_core::nodes::MAX_ADDRESSES;

use crate::host::addr;
use crate::host::raw;

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
                // `name` is a one-byte array the core allocates past: take
                // its address from the raw pointer, not through a reference
                // to the array, so reading `len` bytes stays in bounds of
                // the record's allocation.
                let name = std::ptr::addr_of!((*srv).name) as *const u8;
                let bytes = std::slice::from_raw_parts(name, len);
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

/// Every address `host` (a node URI's host: a name, or an IP literal,
/// IPv6 in brackets) stands for, through the core's resolver, as the stock
/// module resolves nodes. Literals are parsed without any lookup.
pub fn resolve_host(host: &str) -> Vec<IpAddr> {
    if let Some(ip) = dmq_core::nodes::resolve_literal(host) {
        return vec![ip];
    }
    let Ok(name) = CString::new(host) else { return Vec::new() };
    let mut out = [0u8; 17 * MAX_ADDRESSES];
    // SAFETY: the shim reads the NUL-terminated name and writes at most
    // MAX_ADDRESSES records of 17 bytes into `out`.
    let n = unsafe { raw::dmq_rs_resolve_host(name.as_ptr(), out.as_mut_ptr(), MAX_ADDRESSES as i32) };
    let mut ips: Vec<IpAddr> = Vec::new();
    for rec in out.chunks_exact(17).take(n.max(0) as usize) {
        let Some(ip) = addr::from_bytes(i32::from(rec[0]), rec[1..17].try_into().expect("16 bytes")) else { continue };
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips
}
