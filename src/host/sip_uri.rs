//! SIP URIs parsed by the core's own parser, so that what the stock module
//! accepts we accept, and what it refuses we refuse.

pub use dmq_core::protocol::Transport;

use crate::host::kstr;
use crate::host::raw;

/// Kamailio's `enum sip_protos` as our transport; no transport parameter
/// (and anything unknown) means UDP on the wire, as in the stock module.
fn transport_from_core(proto: u32) -> Transport {
    match proto {
        raw::sip_protos_PROTO_TCP => Transport::Tcp,
        raw::sip_protos_PROTO_TLS => Transport::Tls,
        raw::sip_protos_PROTO_SCTP => Transport::Sctp,
        raw::sip_protos_PROTO_WS => Transport::Ws,
        raw::sip_protos_PROTO_WSS => Transport::Wss,
        _ => Transport::Udp,
    }
}

/// The parts of a SIP URI that DMQ uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    pub user: String,
    pub host: String,
    /// The port as written; empty when absent.
    pub port: String,
    pub port_no: u16,
    pub transport: Transport,
}

/// Parses `uri` with the core's `parse_uri`. `None` when the core refuses it.
pub fn parse(uri: &str) -> Option<SipUri> {
    let mut buf = uri.as_bytes().to_vec();
    let mut parsed = raw::sip_uri::default();
    // SAFETY: buf is a live, writable buffer of the given length; parse_uri
    // fills `parsed` with pointers into buf, which we copy out before buf drops.
    let rc = unsafe { raw::parse_uri(buf.as_mut_ptr() as *mut _, buf.len() as i32, &mut parsed) };
    if rc < 0 {
        return None;
    }
    // SAFETY: the str fields point into buf (alive here) or are empty.
    unsafe {
        Some(SipUri {
            user: kstr::to_string(&parsed.user),
            host: kstr::to_string(&parsed.host),
            port: kstr::to_string(&parsed.port),
            port_no: parsed.port_no,
            transport: transport_from_core(parsed.proto as u32),
        })
    }
}
