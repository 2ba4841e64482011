//! A transport's two names: a node URI's (`dmq_core::node_uri::Transport`,
//! what the node list and the wire speak) and the core's
//! (`kamailio::sip_uri::Proto`, what sockets and sends take).

use dmq_core::node_uri::Transport;
use kamailio::sip_uri::Proto;

/// The transport of a node URI as the core's SIP transport.
pub fn proto(transport: Transport) -> Proto {
    match transport {
        Transport::Udp => Proto::Udp,
        Transport::Tcp => Proto::Tcp,
        Transport::Tls => Proto::Tls,
        Transport::Sctp => Proto::Sctp,
        Transport::Ws => Proto::Ws,
        Transport::Wss => Proto::Wss,
    }
}

/// The core's SIP transport as a node URI's.
pub fn transport(proto: Proto) -> Transport {
    match proto {
        Proto::Udp => Transport::Udp,
        Proto::Tcp => Transport::Tcp,
        Proto::Tls => Transport::Tls,
        Proto::Sctp => Transport::Sctp,
        Proto::Ws => Transport::Ws,
        Proto::Wss => Transport::Wss,
    }
}
