//! The module's settled state: everything mod_init decides, set once in
//! the main process before fork, so every process has its own identical,
//! immutable copy. A leaf: it depends on no other file of the module.

use std::sync::OnceLock;

use dmq_core::config::Config;
use dmq_core::protocol::{NodeUri, Transport};

use crate::host::api::{Sl, Tm};
use crate::host::events::EventRoute;
use crate::host::socket::LocalSocket;

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

static MODULE: OnceLock<Module> = OnceLock::new();

/// The initialized module (None before mod_init succeeded).
pub fn module() -> Option<&'static Module> {
    MODULE.get()
}

/// Settles the state (the end of mod_init).
pub fn set(module: Module) -> Result<(), String> {
    MODULE.set(module).map_err(|_| "mod_init ran twice".to_string())
}
