//! mod_init, child_init and destroy.

use dmq_core::config;
use dmq_core::node_uri;
use dmq_core::notification_addresses::{self, NotificationAddresses};

use kamailio::api::{self, BindError};
use kamailio::events::{self, EventRoute};
use kamailio::module_export::core_version;
use kamailio::process::Rank;
use kamailio::sip_uri;
use kamailio::socket::LocalSocket;

use crate::shared::{self, DmqSocket, NodeRoutes, Settled};
use crate::{admission, direct_send, leaving, lookups, messaging, notifications, peer_events, peers, pings, transports, workers};

fn bind_error(err: BindError) -> String {
    match err {
        BindError::NotLoaded(m) => format!("the {m} module is required: add loadmodule \"{m}.so\" to the config"),
        BindError::Refused(m) => format!("cannot bind to the {m} module's API"),
    }
}

/// mod_init: checks the parameters, binds tm and sl, makes every shm
/// structure and registers the processes and timers, before fork.
pub fn init() -> Result<(), String> {
    log::info!("dmq_rs {} (Rust DMQ module, commit {}) starting in {}", env!("CARGO_PKG_VERSION"), env!("DMQ_RS_COMMIT"), core_version());
    let (config, adjustments) = crate::params::raw_params().validate().map_err(|e| e.to_string())?;
    log::debug!("parameters: {config:?}");
    for a in adjustments {
        log::warn!("modparam(\"dmq\", \"{}\"): {}", a.param, a.note);
    }
    crate::params::arm_test_panic()?;
    let sl = api::bind_sl().map_err(bind_error)?;
    let tm = api::bind_tm().map_err(bind_error)?;

    let server_uri = sip_uri::parse(&config.server_address)
        .ok_or_else(|| format!("modparam(\"dmq\", \"server_address\"): {:?} is not a valid SIP URI", config.server_address))?;
    if server_uri.host.is_empty() {
        return Err(format!("modparam(\"dmq\", \"server_address\"): {:?} has no host", config.server_address));
    }
    let server_socket = match &config.server_socket {
        Some(s) => s.clone(),
        None => config::socket_string(transports::transport(server_uri.transport).as_str(), &server_uri.host, Some(&server_uri.port)),
    };
    let Some(server_sock) = LocalSocket::lookup(&server_socket) else {
        let param = if config.server_socket.is_some() { "server_socket" } else { "server_address" };
        return Err(format!(
            "modparam(\"dmq\", \"{param}\"): {server_socket} is not a socket this Kamailio listens on \
             (add listen={server_socket}, or fix the address)"
        ));
    };

    let (server_sent_by, server_transport) =
        server_sock.sent_by().ok_or_else(|| format!("cannot read the address of the DMQ socket {server_socket}"))?;
    let server_transport = server_transport.map(transports::transport);

    let local_uri = node_uri::parse_node_line(&config.server_address)
        .map_err(|e| format!("modparam(\"dmq\", \"server_address\"): {:?}: {e}", config.server_address))?
        .uri;
    // Addresses are notification addresses; a name is a source of them,
    // looked up (again and again) by the DMQ DNS process, never a node.
    let NotificationAddresses { seeds: notification_uris, names } =
        notification_addresses::split(&config.notification_addresses, &local_uri).map_err(|e| e.to_string())?;
    events::init().map_err(|e| e.to_string())?;
    let routes =
        NodeRoutes { node_active: EventRoute::lookup(c"dmq:node-active"), node_inactive: EventRoute::lookup(c"dmq:node-inactive") };
    let peer_events = peer_events::settings(config.init_with_single, config.sl_send, config.event_callback.clone());
    admission::warn_about_openness(&config);
    peers::init()?;
    log::info!(
        "dmq_rs: server {} on {}, channel {}, {} worker(s), ping every {}s, {} notification address(es)",
        config.server_address,
        server_socket,
        config.notification_channel,
        config.num_workers,
        config.ping_interval,
        config.notification_addresses.len()
    );
    let (ping_interval, multi_notify) = (config.ping_interval, config.multi_notify);
    let socket = DmqSocket { name: server_socket, local: server_sock, sent_by: server_sent_by, transport: server_transport };
    let settled = Settled { config, socket, tm, sl, local_uri, notification_uris, routes, peer_events };
    let shared = shared::set(shared::make(settled)?)?;
    // Registered with the core before fork, now that the shm they use is made.
    workers::register(&shared.workers);
    direct_send::init(&shared.direct);
    // Replies are seen first by messaging, which finishes what they complete.
    kamailio::replies::hook_replies(messaging::on_reply).map_err(|e| e.to_string())?;
    messaging::init()?;
    lookups::init(shared, names, multi_notify)?;
    pings::start(ping_interval)
}

/// child_init: the main process forks the DMQ workers and the
/// retransmission timer; the first SIP worker asks the seeds for the cluster.
pub fn child_init(rank: Rank) -> Result<(), String> {
    log::debug!("child_init rank {}", rank.number());
    direct_send::note_process_rank(rank);
    let Some(m) = shared::shared() else { return Ok(()) };
    if rank.is_main() {
        workers::start(m)?;
        messaging::start_timer()?;
        lookups::start()?;
    }
    if rank.is_sip_init() {
        notifications::notify_seeds(m);
    }
    Ok(())
}

/// destroy: tell the active nodes we are leaving.
pub fn destroy() {
    if let Some(m) = shared::shared() {
        leaving::announce_leave(m);
    }
}
