//! SIP URIs parsed by the core's own parser, so that what the core
//! accepts a module accepts, and what it refuses the module refuses.

use crate::kstr;
use crate::raw;

/// A SIP transport (the core's `enum sip_protos`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// SCTP.
    Sctp,
    /// WebSocket.
    Ws,
    /// WebSocket over TLS.
    Wss,
}

impl Proto {
    /// The core's value; None for one it has no sockets for.
    pub(crate) fn from_core(proto: u32) -> Option<Proto> {
        Some(match proto {
            raw::sip_protos_PROTO_UDP => Proto::Udp,
            raw::sip_protos_PROTO_TCP => Proto::Tcp,
            raw::sip_protos_PROTO_TLS => Proto::Tls,
            raw::sip_protos_PROTO_SCTP => Proto::Sctp,
            raw::sip_protos_PROTO_WS => Proto::Ws,
            raw::sip_protos_PROTO_WSS => Proto::Wss,
            _ => return None,
        })
    }

    pub(crate) fn to_core(self) -> raw::sip_protos {
        match self {
            Proto::Udp => raw::sip_protos_PROTO_UDP,
            Proto::Tcp => raw::sip_protos_PROTO_TCP,
            Proto::Tls => raw::sip_protos_PROTO_TLS,
            Proto::Sctp => raw::sip_protos_PROTO_SCTP,
            Proto::Ws => raw::sip_protos_PROTO_WS,
            Proto::Wss => raw::sip_protos_PROTO_WSS,
        }
    }
}

/// The parts of a SIP URI a module reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    /// The user part; empty when absent.
    pub user: String,
    /// The host as written (IPv6 in brackets).
    pub host: String,
    /// The port as written; empty when absent.
    pub port: String,
    /// The port as a number; 0 when absent.
    pub port_no: u16,
    /// No transport parameter (and an unknown one) means UDP on the wire.
    pub transport: Proto,
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
            transport: Proto::from_core(parsed.proto as u32).unwrap_or(Proto::Udp),
        })
    }
}
