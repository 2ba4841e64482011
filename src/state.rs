//! The module's settled state: everything mod_init decides, set once in
//! the main process before fork, so every process has its own identical,
//! immutable copy. A leaf: it depends on no other file of the module.

use std::sync::OnceLock;

use dmq_core::config::Config;
use dmq_core::protocol::{Kdmq, NodeUri, Transport};

use kamailio::api::{Sl, Tm};
use kamailio::tm::{ReplyHandler, UacRequest, UAC_CSEQ};
use kamailio::events::EventRoute;
use kamailio::sip_uri::Proto;
use kamailio::socket::LocalSocket;

pub struct Module {
    pub config: Config,
    /// The socket DMQ sends from ("udp:127.0.0.2:5090").
    pub server_socket: String,
    /// The same, as the core's socket (resolved once).
    pub server_sock: LocalSocket,
    /// What the Via of a request sent from that socket names (`host:port`).
    pub server_sent_by: String,
    /// That socket's transport, when peer messages can go without tm on
    /// it (UDP, TCP, TLS): to nodes of the same transport they do.
    pub server_transport: Option<Transport>,
    pub tm: Tm,
    pub sl: Sl,
    /// This node as it appears in notification bodies.
    pub local_uri: NodeUri,
    /// The `notification_address` nodes (never deleted, only marked).
    pub notification_uris: Vec<NodeUri>,
    pub routes: NodeRoutes,
}

/// The script's `event_route[dmq:node-active]` and `[dmq:node-inactive]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeRoutes {
    pub node_active: Option<EventRoute>,
    pub node_inactive: Option<EventRoute>,
}

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

impl Module {
    /// What a KDMQ request of ours is signed with now (None: the cluster
    /// does not sign).
    pub fn signing(&self) -> Option<(&[u8], i64)> {
        self.config.shared_secret.as_deref().map(|secret| (secret, kamailio::clock::unix_now()))
    }

    /// Sends `kdmq` through tm from the DMQ socket (to `next_hop` when
    /// given: tm then resolves nothing); `handler` runs on its final reply
    /// with `context`.
    pub fn send_through_tm(&self, kdmq: &Kdmq<'_>, next_hop: Option<&str>, handler: ReplyHandler, context: &[u8]) -> Result<(), String> {
        // A Call-ID of our own when signing: the signature covers it.
        let call_id = kdmq.signing.map(|_| kamailio::tm::unique_call_id("dmqrs"));
        let headers = kdmq.tm_headers(call_id.as_deref().unwrap_or(""), UAC_CSEQ);
        let (to, from) = (kdmq.ruri(), kdmq.from_uri());
        let request = UacRequest {
            method: "KDMQ",
            to: &to,
            from: &from,
            headers: &headers,
            body: kdmq.body,
            socket: &self.server_socket,
            call_id: call_id.as_deref(),
            next_hop,
        };
        self.tm.request(&request, handler, context)
    }
}

static MODULE: OnceLock<Module> = OnceLock::new();

/// The initialized module (None before mod_init succeeded).
pub fn module() -> Option<&'static Module> {
    MODULE.get()
}

/// Settles the state (the end of mod_init).
pub fn set(module: Module) -> Result<(), String> {
    MODULE.set(module).map_err(|_| "mod_init ran twice".to_string())
}
