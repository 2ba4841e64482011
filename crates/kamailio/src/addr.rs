//! IP addresses as the C side passes them: a family and 16 address bytes
//! (4 of them used for IPv4), as the shim fills and reads them.

use std::net::IpAddr;

/// The address in `bytes` for family 4 or 6; None for any other family.
pub fn from_bytes(family: i32, bytes: &[u8; 16]) -> Option<IpAddr> {
    match family {
        4 => Some(IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])),
        6 => Some(IpAddr::from(*bytes)),
        _ => None,
    }
}

/// (whether it is IPv6, the 16 address bytes) for the shim.
pub fn to_bytes(ip: IpAddr) -> (bool, [u8; 16]) {
    match ip {
        IpAddr::V4(v4) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v4.octets());
            (false, b)
        }
        IpAddr::V6(v6) => (true, v6.octets()),
    }
}
