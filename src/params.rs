//! Module parameters: slots the core writes while parsing `modparam("dmq", …)`
//! (the table that names them is in exports.rs). Names, types and defaults
//! are the stock module's (5.6), plus 6.1's `remove_inactive`,
//! `fail_count_enabled`, `fail_count_threshold_not_active` and
//! `fail_count_threshold_disabled` (with dmq_rs's earlier
//! `fail_count_threshold` as their alias), and dmq_rs's own.

use std::sync::Mutex;

use dmq_core::config::{self, RawParams};

use kamailio::export::{IntParam, StrParam};
use kamailio::sip_uri;

pub static SERVER_ADDRESS: StrParam = StrParam::new();
pub static SERVER_SOCKET: StrParam = StrParam::new();
pub static NOTIFICATION_CHANNEL: StrParam = StrParam::new();
pub static MULTI_NOTIFY: IntParam = IntParam::new(0);
pub static NUM_WORKERS: IntParam = IntParam::new(config::DEFAULT_NUM_WORKERS);
pub static WORKER_USLEEP: IntParam = IntParam::new(0);
pub static PING_INTERVAL: IntParam = IntParam::new(config::DEFAULT_PING_INTERVAL);
pub static REMOVE_INACTIVE: IntParam = IntParam::new(1);
pub static FAIL_COUNT_ENABLED: IntParam = IntParam::new(0);
pub static FAIL_COUNT_THRESHOLD: IntParam = IntParam::new(config::UNSET);
pub static FAIL_COUNT_THRESHOLD_NOT_ACTIVE: IntParam = IntParam::new(config::UNSET);
pub static FAIL_COUNT_THRESHOLD_DISABLED: IntParam = IntParam::new(config::UNSET);
pub static JOB_QUEUE_LIMIT: IntParam = IntParam::new(config::DEFAULT_JOB_QUEUE_LIMIT);
pub static MEMBERS_ONLY: IntParam = IntParam::new(1);
pub static SHARED_SECRET: StrParam = StrParam::new();
pub static UPDATES_IN_PLACE: IntParam = IntParam::new(1);
/// Upstream master's (see peer_events.rs).
pub static INIT_WITH_SINGLE: IntParam = IntParam::new(0);
pub static EVENT_CALLBACK: StrParam = StrParam::new();
pub static SL_SEND: IntParam = IntParam::new(0);
pub static DNS_INTERVAL: IntParam = IntParam::new(config::DEFAULT_DNS_INTERVAL);

/// `notification_address` may be given many times; collected in the main
/// process while the config is parsed, read after fork as an inherited copy.
static NOTIFICATION_ADDRESSES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// `modparam("dmq", "notification_address", "sip:…")`: checked at once, like
/// the stock module, so a typo stops Kamailio at the line that has it.
pub fn add_notification_address(uri: &str) -> Result<(), String> {
    if sip_uri::parse(uri).is_none() {
        return Err(format!("{uri:?} is not a valid SIP URI"));
    }
    NOTIFICATION_ADDRESSES.lock().unwrap_or_else(|e| e.into_inner()).push(uri.to_string());
    Ok(())
}

/// `trusted_network` may be given many times, like `notification_address`.
static TRUSTED_NETWORKS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// `modparam("dmq", "trusted_network", "10.0.0.0/24")`: checked at once.
pub fn add_trusted_network(network: &str) -> Result<(), String> {
    dmq_core::network::Network::parse(network)?;
    TRUSTED_NETWORKS.lock().unwrap_or_else(|e| e.into_inner()).push(network.to_string());
    Ok(())
}

/// The parameters as the script set them.
pub fn raw_params() -> RawParams {
    RawParams {
        server_address: SERVER_ADDRESS.get(),
        server_socket: SERVER_SOCKET.get(),
        notification_addresses: NOTIFICATION_ADDRESSES.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        notification_channel: NOTIFICATION_CHANNEL.get(),
        multi_notify: MULTI_NOTIFY.get(),
        num_workers: NUM_WORKERS.get(),
        worker_usleep: WORKER_USLEEP.get(),
        ping_interval: PING_INTERVAL.get(),
        remove_inactive: REMOVE_INACTIVE.get(),
        fail_count_enabled: FAIL_COUNT_ENABLED.get(),
        fail_count_threshold: FAIL_COUNT_THRESHOLD.get(),
        fail_count_threshold_not_active: FAIL_COUNT_THRESHOLD_NOT_ACTIVE.get(),
        fail_count_threshold_disabled: FAIL_COUNT_THRESHOLD_DISABLED.get(),
        job_queue_limit: JOB_QUEUE_LIMIT.get(),
        members_only: MEMBERS_ONLY.get(),
        trusted_networks: TRUSTED_NETWORKS.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        shared_secret: SHARED_SECRET.get(),
        updates_in_place: UPDATES_IN_PLACE.get(),
        dns_interval: DNS_INTERVAL.get(),
    }
}
