//! mod_init, child_init and destroy.

use std::ffi::c_int;
use std::sync::OnceLock;

use dmq_core::config::{self, Config};
use dmq_core::discovery;
use dmq_core::protocol::{self, NodeUri};

use crate::host::api::{self, BindError};
use crate::host::dns;
use crate::host::events::{self, EventRoute};
use crate::host::panic_guard::guard;
use crate::host::sip_uri;
use crate::host::socket::LocalSocket;
use crate::raw;

/// Everything mod_init settles. Set once in the main process before fork, so
/// every process has its own identical, immutable copy.
pub struct Module {
    pub config: Config,
    /// The socket DMQ sends from ("udp:127.0.0.2:5090").
    pub server_socket: String,
    /// The same, as the core's socket (resolved once).
    pub server_sock: LocalSocket,
    /// What the Via of a request sent from that socket names (`host:port`).
    pub server_sent_by: String,
    /// Whether that socket is UDP (peer messages skip tm only then).
    pub server_is_udp: bool,
    pub tm: raw::tm_binds,
    pub sl: raw::sl_api_t,
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

// SAFETY: tm_binds/sl_api_t hold function pointers into loaded modules; they
// are written once in mod_init and then only read, one thread per process.
unsafe impl Send for Module {}
// SAFETY: as above.
unsafe impl Sync for Module {}

static MODULE: OnceLock<Module> = OnceLock::new();

/// The initialized module (None before mod_init succeeded).
pub fn module() -> Option<&'static Module> {
    MODULE.get()
}

pub unsafe extern "C" fn mod_init() -> c_int {
    guard("mod_init", -1, || match init() {
        Ok(()) => 0,
        Err(line) => {
            log::error!("{line}");
            -1
        }
    })
}

fn bind_error(err: BindError) -> String {
    match err {
        BindError::NotLoaded(m) => format!("the {m} module is required: add loadmodule \"{m}.so\" to the config"),
        BindError::Refused(m) => format!("cannot bind to the {m} module's API"),
    }
}

fn init() -> Result<(), String> {
    crate::host::log::init();
    log::info!(
        "dmq_rs {} (Rust DMQ module) starting in {}",
        env!("CARGO_PKG_VERSION"),
        String::from_utf8_lossy(&raw::core_version::MODULE_VERSION[..raw::core_version::MODULE_VERSION.len() - 1])
    );
    let (config, adjustments) = super::params::raw_params().validate().map_err(|e| e.to_string())?;
    log::debug!("parameters: {config:?}");
    for a in adjustments {
        log::warn!("modparam(\"dmq\", \"{}\"): {}", a.param, a.note);
    }
    let sl = api::bind_sl().map_err(bind_error)?;
    let tm = api::bind_tm().map_err(bind_error)?;

    let server_uri = sip_uri::parse(&config.server_address).ok_or_else(|| {
        format!("modparam(\"dmq\", \"server_address\"): {:?} is not a valid SIP URI", config.server_address)
    })?;
    if server_uri.host.is_empty() {
        return Err(format!("modparam(\"dmq\", \"server_address\"): {:?} has no host", config.server_address));
    }
    let server_socket = match &config.server_socket {
        Some(s) => s.clone(),
        None => config::socket_string(
            server_uri.transport.as_str(),
            &server_uri.host,
            Some(&server_uri.port),
        ),
    };
    let Some(server_sock) = LocalSocket::lookup(&server_socket) else {
        let param = if config.server_socket.is_some() { "server_socket" } else { "server_address" };
        return Err(format!(
            "modparam(\"dmq\", \"{param}\"): {server_socket} is not a socket this Kamailio listens on \
             (add listen={server_socket}, or fix the address)"
        ));
    };

    let (server_sent_by, server_is_udp) =
        server_sock.sent_by().ok_or_else(|| format!("cannot read the address of the DMQ socket {server_socket}"))?;

    let local_uri = protocol::parse_node_line(&config.server_address)
        .map_err(|e| format!("modparam(\"dmq\", \"server_address\"): {:?}: {e}", config.server_address))?
        .uri;
    let mut notification_uris = Vec::new();
    for a in &config.notification_addresses {
        let uri = protocol::parse_node_line(a)
            .map_err(|e| format!("modparam(\"dmq\", \"notification_address\"): {a:?}: {e}"))?
            .uri;
        let expanded = if config.multi_notify {
            let nodes = discovery::expand(&uri, &dns::srv, &dns::addresses);
            log::info!("multi_notify: {a} stands for {} node(s): {nodes:?}", nodes.len());
            if nodes.is_empty() { vec![uri] } else { nodes }
        } else {
            vec![uri]
        };
        for uri in expanded {
            if !uri.same_node(&local_uri) && !notification_uris.iter().any(|n: &NodeUri| n.same_node(&uri)) {
                notification_uris.push(uri);
            }
        }
    }
    events::init()?;
    let routes = NodeRoutes {
        node_active: EventRoute::lookup(c"dmq:node-active"),
        node_inactive: EventRoute::lookup(c"dmq:node-inactive"),
    };
    super::cluster::init(local_uri.clone())?;
    super::peers::init()?;
    super::workers::init(config.num_workers, config.job_queue_limit, config.worker_usleep)?;
    super::in_flight::init()?;
    super::messaging::init()?;
    super::cluster::start_ping_timer(config.ping_interval)?;
    super::rpc_commands::register()?;

    log::info!(
        "dmq_rs: server {} on {}, channel {}, {} worker(s), ping every {}s, {} notification address(es)",
        config.server_address,
        server_socket,
        config.notification_channel,
        config.num_workers,
        config.ping_interval,
        config.notification_addresses.len()
    );
    let module =
        Module { config, server_socket, server_sock, server_sent_by, server_is_udp, tm, sl, local_uri, notification_uris, routes };
    MODULE.set(module).map_err(|_| "mod_init ran twice".to_string())?;
    Ok(())
}

pub unsafe extern "C" fn child_init(rank: c_int) -> c_int {
    guard("child_init", -1, || {
        log::debug!("child_init rank {rank}");
        super::in_flight::note_process_rank(rank);
        if rank == raw::PROC_MAIN as c_int {
            if let Some(m) = module() {
                if let Err(e) = super::workers::start(m).and_then(|()| super::in_flight::start_timer()) {
                    log::error!("{e}");
                    return -1;
                }
            }
        }
        if rank == raw::PROC_SIPINIT as c_int {
            if let Some(m) = module() {
                super::cluster::notify_seeds(m);
            }
        }
        0
    })
}

pub unsafe extern "C" fn destroy() {
    guard("destroy", (), || {
        if let Some(m) = module() {
            super::cluster::announce_leave(m);
        }
    })
}
