//! DNS lookups: SRV, A and AAAA records with their TTL through the core's
//! resolver (/etc/hosts through the system's when DNS has nothing), and
//! host names the way the core resolves a SIP destination (its resolv.conf
//! handling, DNS cache, `dns_try_ipv6` and /etc/hosts). Every one of them
//! may block on a DNS server: call them from a process of the module's
//! own, never from a SIP worker or the core's timer.

use std::ffi::CString;
use std::net::{IpAddr, ToSocketAddrs};

use crate::addr;
use crate::raw;

/// An SRV record's target host and port.
pub type SrvTarget = (String, u16);

/// An IP literal (IPv6 with or without brackets) as an address, without
/// any lookup.
pub fn ip_literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// RFC 2782's record type number for SRV.
const T_SRV: i32 = 33;

/// Record types (RFC 1035, RFC 3596, RFC 2782).
const T_A: i32 = 1;
const T_AAAA: i32 = 28;

/// The records of type `rtype` for `name` through the core's resolver
/// (`get_record`: a DNS query, no cache, the search list as configured),
/// each read by `read` from its record data, and the shortest TTL among
/// them. Blocks while the DNS server answers or times out: never call it
/// from a SIP worker or the core's timer process.
fn records<T>(name: &str, rtype: i32, read: impl Fn(*const raw::rdata) -> Option<T>) -> (Vec<T>, Option<u32>) {
    let Ok(cname) = CString::new(name) else { return (Vec::new(), None) };
    let mut out = Vec::new();
    let mut ttl: Option<u32> = None;
    // SAFETY: get_record reads the NUL-terminated name and returns a list it
    // allocated (or null), which we walk and then free once with
    // free_rdata_list; `read` only looks at the record it is given.
    unsafe {
        let head = raw::get_record(cname.as_ptr() as *mut _, rtype, raw::RES_ONLY_TYPE as i32);
        let mut rec = head;
        while !rec.is_null() {
            if i32::from((*rec).type_) == rtype && !(*rec).rdata.is_null() {
                if let Some(item) = read(rec) {
                    out.push(item);
                    ttl = Some(ttl.map_or((*rec).ttl, |t| t.min((*rec).ttl)));
                }
            }
            rec = (*rec).next;
        }
        if !head.is_null() {
            raw::free_rdata_list(head);
        }
    }
    (out, ttl)
}

/// The SRV records of `name` as (target, port), and their shortest TTL.
pub fn srv_with_ttl(name: &str) -> (Vec<SrvTarget>, Option<u32>) {
    records(name, T_SRV, |rec| {
        // SAFETY: `records` hands over a live record of type SRV, whose
        // data is the core's srv_rdata.
        unsafe {
            let srv = (*rec).rdata as *const raw::srv_rdata;
            let len = (*srv).name_len as usize;
            // `name` is a one-byte array the core allocates past: take
            // its address from the raw pointer, not through a reference
            // to the array, so reading `len` bytes stays in bounds of
            // the record's allocation.
            let name = std::ptr::addr_of!((*srv).name) as *const u8;
            let bytes = std::slice::from_raw_parts(name, len);
            Some((String::from_utf8_lossy(bytes).into_owned(), (*srv).port))
        }
    })
}

/// The SRV records of `name` as (target, port).
pub fn srv(name: &str) -> Vec<SrvTarget> {
    srv_with_ttl(name).0
}

/// The A and AAAA records of `host` and their shortest TTL, from DNS;
/// when DNS has none, the system resolver's addresses (/etc/hosts), which
/// come without a TTL. An IP literal is itself.
pub fn addresses_with_ttl(host: &str) -> (Vec<IpAddr>, Option<u32>) {
    if let Some(ip) = ip_literal(host) {
        return (vec![ip], None);
    }
    let (mut ips, ttl4) = records(host, T_A, |rec| {
        // SAFETY: a live record of type A: its data is the core's a_rdata.
        let a = unsafe { *((*rec).rdata as *const raw::a_rdata) };
        Some(IpAddr::from(a.ip))
    });
    let (v6, ttl6) = records(host, T_AAAA, |rec| {
        // SAFETY: a live record of type AAAA: its data is the core's aaaa_rdata.
        let a = unsafe { *((*rec).rdata as *const raw::aaaa_rdata) };
        Some(IpAddr::from(a.ip6))
    });
    for ip in v6 {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    if ips.is_empty() {
        return (addresses(host), None);
    }
    let ttl = match (ttl4, ttl6) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    (ips, ttl)
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

/// Every address `host` (a SIP URI's host: a name, or an IP literal, IPv6
/// in brackets) stands for, at most `max`, through the core's resolver, as
/// the core resolves a destination. Literals are parsed without any lookup.
pub fn resolve_host(host: &str, max: usize) -> Vec<IpAddr> {
    if let Some(ip) = ip_literal(host) {
        return vec![ip];
    }
    let Ok(name) = CString::new(host) else { return Vec::new() };
    let mut out = vec![0u8; 17 * max];
    // SAFETY: the shim reads the NUL-terminated name and writes at most
    // `max` records of 17 bytes into `out`.
    let n = unsafe { raw::krs_resolve_host(name.as_ptr(), out.as_mut_ptr(), max as i32) };
    let mut ips: Vec<IpAddr> = Vec::new();
    for rec in out.chunks_exact(17).take(n.max(0) as usize) {
        let Some(ip) = addr::from_bytes(i32::from(rec[0]), rec[1..17].try_into().expect("16 bytes")) else { continue };
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips
}
