//! What may speak DMQ to this node, and what may reach the consumers.
//!
//! Checked on every KDMQ request before anything acts on it:
//! - `shared_secret`: a valid, recent signature (else 403);
//! - notifications: a source inside `trusted_network`, when set (else 403),
//!   and only nodes inside it are listed from any node list;
//! - peer messages: a source that is a listed node (`members_only`, on by
//!   default; else 403), and a body of the shape its consumer reads (the
//!   stock consumers crash on others; else 400).
//!
//! Every refusal is counted (`dmq.stats`) and logged at most once a second
//! per reason and process, so a flood cannot fill the log.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use dmq_core::admission_order::{Check, Reply};
use dmq_core::auth::{self, AuthError};
use dmq_core::body_check::{self, BodyError};
use dmq_core::config::Config;
use dmq_core::node_uri::{NodeLine, NodeUri};

use kamailio::clock;
use kamailio::log::RateLimit;
use kamailio::sip_msg::SipMsg;

use crate::shared::{Refusals, Shared};

/// mod_init: the warnings about what is left open.
pub fn warn_about_openness(c: &Config) {
    if !c.trusted_networks.is_set() {
        log::warn!(
            "modparam(\"dmq\", \"trusted_network\") is not set: any host that reaches {} can join the cluster \
             and receive every replicated message (set it to the cluster's networks)",
            c.server_address
        );
    }
    if !c.members_only {
        log::warn!(
            "modparam(\"dmq\", \"members_only\", 0): peer messages are accepted from any address; anyone who reaches \
             {} can write registrations, dialogs and htable items",
            c.server_address
        );
    }
}

/// Why a KDMQ request is refused.
pub enum Refusal {
    NotMember,
    UntrustedNetwork,
    BadSignature(AuthError),
    BadJson(BodyError),
}

impl Refusal {
    /// The check that refuses (`dmq_core::admission_order`: where it
    /// stands among the others, and the reply it refuses with).
    pub fn check(&self) -> Check {
        match self {
            Refusal::NotMember => Check::Membership,
            Refusal::UntrustedNetwork => Check::NotificationSource,
            Refusal::BadSignature(_) => Check::Signature,
            Refusal::BadJson(_) => Check::Body,
        }
    }
}

/// `shared_secret`: the request must carry a valid signature made within
/// the replay window. Nothing to check when no secret is set.
pub fn check_signature(m: &Shared, msg: &SipMsg) -> Result<(), Refusal> {
    let Some(secret) = m.config.shared_secret.as_deref() else { return Ok(()) };
    let Some(ids) = msg.request_ids() else { return Err(Refusal::BadSignature(AuthError::Malformed)) };
    let body = msg.body_bytes().map_err(|_| Refusal::BadSignature(AuthError::Malformed))?;
    let parts = auth::SignedParts { ruri: ids.ruri, call_id: ids.call_id, cseq: ids.cseq_number, body };
    auth::verify(secret, &parts, msg.header(auth::HEADER), clock::unix_now()).map_err(Refusal::BadSignature)
}

/// `trusted_network`: a notification must come from inside.
pub fn check_notification_source(m: &Shared, msg: &SipMsg) -> Result<(), Refusal> {
    let trusted = &m.config.trusted_networks;
    match msg.source_ip() {
        Some(ip) if trusted.allows(ip) => Ok(()),
        _ => Err(Refusal::UntrustedNetwork),
    }
}

/// The consumer's shape (known consumers) or valid JSON (JSON content).
pub fn check_body(peer: &str, msg: &SipMsg) -> Result<(), Refusal> {
    let body = msg.body_bytes().unwrap_or_default();
    let content_type = if body_check::consumer_shape(peer).is_some() {
        &[][..]
    } else {
        msg.header("Content-Type").or_else(|| msg.header("c")).unwrap_or_default()
    };
    body_check::check(peer, &String::from_utf8_lossy(content_type), body).map_err(Refusal::BadJson)
}

fn count(m: &Shared, counter: impl Fn(&Refusals) -> &AtomicU64) {
    counter(m.refusals).fetch_add(1, Ordering::Relaxed);
}

/// Counts, logs and answers a refused request (403, or 400 for a body).
/// Returns whether the reply went out.
pub fn refuse(m: &Shared, msg: &SipMsg, channel: &str, refusal: Refusal) -> bool {
    static LOGS: [RateLimit; 4] = [RateLimit::per(1000), RateLimit::per(1000), RateLimit::per(1000), RateLimit::per(1000)];
    let (index, counter, stat): (usize, fn(&Refusals) -> &AtomicU64, &str) = match refusal {
        Refusal::NotMember => (0, |r| &r.not_member, "refused_not_member"),
        Refusal::UntrustedNetwork => (1, |r| &r.untrusted_network, "refused_untrusted_network"),
        Refusal::BadSignature(_) => (2, |r| &r.bad_signature, "refused_bad_signature"),
        Refusal::BadJson(_) => (3, |r| &r.bad_json, "refused_bad_json"),
    };
    count(m, counter);
    // Each of these checks refuses with a reply (`Check::refusal`).
    let Some(Reply { code, reason }) = refusal.check().refusal() else { return false };
    if LOGS[index].allow() {
        let source = msg.source().map(|s| s.to_string()).unwrap_or_else(|| "an unknown source".into());
        let why = match &refusal {
            Refusal::NotMember => "it is not a cluster node (members_only)".to_string(),
            Refusal::UntrustedNetwork => "it is outside trusted_network".to_string(),
            Refusal::BadSignature(e) => format!("it carries {e} (shared_secret)"),
            Refusal::BadJson(e) => format!("{e}; the consumer never saw it"),
        };
        log::warn!("KDMQ for {channel} from {source} refused with {code}: {why} (counted in dmq.stats {stat})");
    }
    msg.reply(&m.sl, i32::from(code), reason, None)
}

/// Counts a body refused before it reached a consumer without a request
/// to answer (`dmq_process_custom`, `dmq_handle_custom`): the same
/// `refused_bad_json` as a KDMQ from the wire.
pub fn count_bad_body(m: &Shared) {
    count(m, |r| &r.bad_json);
}

/// Whether a node named in a notification or a node list may be listed:
/// always the local node and the notification addresses; otherwise, when
/// `trusted_network` is set, only when its address (every address of a
/// name, from `ips_of`) is inside.
fn may_join(m: &Shared, uri: &NodeUri, ips_of: &impl Fn(&NodeUri) -> Vec<IpAddr>) -> bool {
    let trusted = &m.config.trusted_networks;
    if !trusted.is_set() || uri.same_node(&m.local_uri) || m.notification_uris.iter().any(|s| s.same_node(uri)) {
        return true;
    }
    match uri.host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        Ok(ip) => trusted.allows(ip),
        Err(_) => trusted.allows_all(&ips_of(uri)),
    }
}

/// Drops the nodes outside `trusted_network` from `lines` (counted, logged).
/// `ips_of` gives a named node's addresses (already looked up).
pub fn admit_lines(m: &Shared, lines: &mut Vec<NodeLine>, ips_of: impl Fn(&NodeUri) -> Vec<IpAddr>, from: impl Fn() -> String) {
    if !m.config.trusted_networks.is_set() {
        return;
    }
    static LOG: RateLimit = RateLimit::per(1000);
    lines.retain(|line| {
        let ok = may_join(m, &line.uri, &ips_of);
        if !ok {
            count(m, |r| &r.untrusted_network);
            if LOG.allow() {
                log::warn!("{} named node {}, outside trusted_network: not listed", from(), line.uri);
            }
        }
        ok
    });
}

/// Refusals by reason (`dmq.stats`).
pub struct RefusalStats {
    pub not_member: u64,
    pub untrusted_network: u64,
    pub bad_signature: u64,
    pub bad_json: u64,
}

pub fn stats(m: &Shared) -> RefusalStats {
    let get = |f: fn(&Refusals) -> &AtomicU64| f(m.refusals).load(Ordering::Relaxed);
    RefusalStats {
        not_member: get(|r| &r.not_member),
        untrusted_network: get(|r| &r.untrusted_network),
        bad_signature: get(|r| &r.bad_signature),
        bad_json: get(|r| &r.bad_json),
    }
}
