//! Module parameters: the checks `mod_init` runs on what the script set
//! (`parameters` declares them and the defaults they start from).

use std::fmt;

use crate::network::{Network, TrustedNetworks};
use crate::nodes::FailThresholds;
use crate::parameters::{DEFAULT_NOTIFICATION_CHANNEL, DEFAULT_PING_INTERVAL, UNSET};

/// A shared secret shorter than this is accepted with a warning.
pub const MIN_SECRET_LEN: usize = 16;

/// Kamailio 6.1's defaults: with `fail_count_enabled`, a node leaves
/// `active` after more than 0 failures, `not_active` after more than 1.
pub const DEFAULT_FAIL_COUNT_THRESHOLD_NOT_ACTIVE: i32 = 0;
pub const DEFAULT_FAIL_COUNT_THRESHOLD_DISABLED: i32 = 1;

pub use crate::parameters::RawParams;

/// Parameters after the checks: every value usable as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub server_address: String,
    /// `proto:host[:port]` of the socket DMQ sends from (given, or derived
    /// from `server_address`, filled in by the module once the URI is parsed).
    pub server_socket: Option<String>,
    pub notification_addresses: Vec<String>,
    pub notification_channel: String,
    pub multi_notify: bool,
    pub num_workers: u32,
    /// Microseconds between polls of the job queue; 0 = sleep until woken.
    pub worker_usleep: u32,
    pub ping_interval: u32,
    pub remove_inactive: bool,
    /// `Some`: `fail_count_enabled`, nodes change state by their count of
    /// consecutive failures (timeouts).
    pub fail_count_threshold: Option<FailThresholds>,
    /// Jobs that may wait for a worker; beyond it KDMQ gets 503.
    pub job_queue_limit: u32,
    /// Peer messages only from listed nodes (else 403).
    pub members_only: bool,
    /// Who may join; empty: anyone (as stock).
    pub trusted_networks: TrustedNetworks,
    /// Sign and require signatures on every KDMQ.
    pub shared_secret: Option<Vec<u8>>,
    /// `dmq_handle_message` runs a single-item update in the receiving
    /// process while no job waits or runs, instead of queueing it.
    pub updates_in_place: bool,
    /// Longest time between two lookups of a `notification_address` name.
    pub dns_interval: u32,
    /// Upstream master's peer events (see the module's peer_events.rs).
    pub init_with_single: bool,
    pub sl_send: bool,
    /// The KEMI function of the peer events, when one is named.
    pub event_callback: Option<String>,
    /// When a sync counts as done or timed out (`sync_runs`).
    pub sync_policy: crate::sync_runs::Policy,
}

/// Something wrong with a parameter; Display is the operator's error line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    pub param: &'static str,
    pub problem: String,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "modparam(\"dmq\", \"{}\"): {}", self.param, self.problem)
    }
}

impl std::error::Error for ParamError {}

fn err(param: &'static str, problem: impl Into<String>) -> ParamError {
    ParamError { param, problem: problem.into() }
}

/// A note for the log about a value that was adjusted rather than refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjustment {
    pub param: &'static str,
    pub note: String,
}

impl RawParams {
    /// The thresholds of `fail_count_enabled`: 6.1's two parameters, else
    /// the alias `fail_count_threshold`, else 6.1's defaults.
    fn fail_thresholds(&self, notes: &mut Vec<Adjustment>) -> Result<FailThresholds, ParamError> {
        let given = |v: i32| (v != UNSET).then_some(v);
        let (na, dis) = (given(self.fail_count_threshold_not_active), given(self.fail_count_threshold_disabled));
        if na.is_none() && dis.is_none() {
            if let Some(n) = given(self.fail_count_threshold) {
                if n < 1 {
                    return Err(err("fail_count_threshold", format!("must be at least 1 when fail_count_enabled is set, got {n}")));
                }
                return Ok(FailThresholds { not_active: n as u32 - 1, disabled: n as u32 });
            }
        } else if given(self.fail_count_threshold).is_some() {
            notes.push(Adjustment {
                param: "fail_count_threshold",
                note: "is an alias of fail_count_threshold_not_active/_disabled, which are set: it is ignored".into(),
            });
        }
        let check = |param: &'static str, v: Option<i32>, default: i32| match v.unwrap_or(default) {
            v if v < 0 => Err(err(param, format!("must be 0 or more, got {v}"))),
            v => Ok(v as u32),
        };
        Ok(FailThresholds {
            not_active: check("fail_count_threshold_not_active", na, DEFAULT_FAIL_COUNT_THRESHOLD_NOT_ACTIVE)?,
            disabled: check("fail_count_threshold_disabled", dis, DEFAULT_FAIL_COUNT_THRESHOLD_DISABLED)?,
        })
    }

    /// Checks the values that need no Kamailio to judge. URI syntax and the
    /// listening sockets are checked by the module with the core's parser.
    pub fn validate(&self) -> Result<(Config, Vec<Adjustment>), ParamError> {
        let mut notes = Vec::new();
        let server_address = match self.server_address.as_deref().map(str::trim) {
            None | Some("") => {
                return Err(err(
                    "server_address",
                    "is required: the SIP URI of a socket this Kamailio listens on, e.g. \"sip:10.0.0.1:5090\"",
                ))
            }
            Some(s) => s.to_string(),
        };
        if self.num_workers < 1 {
            return Err(err("num_workers", format!("must be at least 1, got {}", self.num_workers)));
        }
        if self.worker_usleep < 0 {
            return Err(err(
                "worker_usleep",
                format!("must be 0 (wait for work) or a positive number of microseconds, got {}", self.worker_usleep),
            ));
        }
        let ping_interval = if self.ping_interval < 1 {
            // The stock module raised anything below its minimum to 60; keep
            // doing that for values that cannot be an interval at all.
            notes.push(Adjustment {
                param: "ping_interval",
                note: format!("{} is not an interval in seconds, using {}", self.ping_interval, DEFAULT_PING_INTERVAL),
            });
            DEFAULT_PING_INTERVAL as u32
        } else {
            self.ping_interval as u32
        };
        let fail_count_threshold = if self.fail_count_enabled != 0 { Some(self.fail_thresholds(&mut notes)?) } else { None };
        if self.dns_interval < 1 {
            return Err(err("dns_interval", format!("must be at least 1 (seconds), got {}", self.dns_interval)));
        }
        if self.sync_settle_ms < 0 {
            return Err(err("sync_settle_ms", format!("must be 0 or more (ms), got {}", self.sync_settle_ms)));
        }
        if self.sync_timeout < 1 {
            return Err(err("sync_timeout", format!("must be at least 1 (seconds), got {}", self.sync_timeout)));
        }
        if self.job_queue_limit < 1 {
            return Err(err("job_queue_limit", format!("must be at least 1, got {}", self.job_queue_limit)));
        }
        let notification_channel = match self.notification_channel.as_deref() {
            None => DEFAULT_NOTIFICATION_CHANNEL.to_string(),
            Some(c) if is_valid_channel(c) => c.to_string(),
            Some(c) => return Err(err("notification_channel", format!("{c:?} is not usable as the user part of a SIP URI"))),
        };
        if self.multi_notify != 0 && self.notification_address.len() > 1 {
            notes.push(Adjustment {
                param: "multi_notify",
                note: "is meant for a single notification_address; each of the addresses is expanded".into(),
            });
        }
        let server_socket = self.server_socket.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
        let trusted_networks =
            self.trusted_network.iter().map(|n| Network::parse(n).map_err(|e| err("trusted_network", e))).collect::<Result<Vec<_>, _>>()?;
        let shared_secret = match self.shared_secret.as_deref() {
            None => None,
            Some("") => return Err(err("shared_secret", "is empty: give the cluster's secret, or leave the parameter out")),
            Some(s) => {
                if s.len() < MIN_SECRET_LEN {
                    notes.push(Adjustment {
                        param: "shared_secret",
                        note: format!("is shorter than {MIN_SECRET_LEN} characters: easy to guess offline from one captured KDMQ"),
                    });
                }
                Some(s.as_bytes().to_vec())
            }
        };
        let event_callback = crate::peer_events::check_callback_name(self.event_callback.as_deref().unwrap_or_default())
            .map_err(|e| err("event_callback", e))?;
        Ok((
            Config {
                server_address,
                server_socket,
                notification_addresses: self.notification_address.clone(),
                notification_channel,
                multi_notify: self.multi_notify != 0,
                num_workers: self.num_workers as u32,
                worker_usleep: self.worker_usleep as u32,
                ping_interval,
                remove_inactive: self.remove_inactive != 0,
                fail_count_threshold,
                job_queue_limit: self.job_queue_limit as u32,
                members_only: self.members_only != 0,
                trusted_networks: TrustedNetworks(trusted_networks),
                shared_secret,
                updates_in_place: self.updates_in_place != 0,
                dns_interval: self.dns_interval as u32,
                init_with_single: self.init_with_single != 0,
                sl_send: self.sl_send != 0,
                event_callback,
                sync_policy: crate::sync_runs::Policy {
                    settle_ms: self.sync_settle_ms as u64,
                    timeout_ms: self.sync_timeout as u64 * 1000,
                    alone_is_synced: self.sync_alone_ready != 0,
                },
            },
            notes,
        ))
    }
}

/// A channel names a peer in the R-URI user part: no empty names, no spaces,
/// no characters that would end the user part.
pub fn is_valid_channel(channel: &str) -> bool {
    !channel.is_empty() && channel.len() <= 64 && channel.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b))
}

/// The socket string Kamailio's `lookup_local_socket` takes, built from the
/// parts of `server_address` the way the stock module does: `proto:host[:port]`.
pub fn socket_string(proto: &str, host: &str, port: Option<&str>) -> String {
    match port {
        Some(port) if !port.is_empty() => format!("{proto}:{host}:{port}"),
        _ => format!("{proto}:{host}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_parameters() {
        let (c, notes) = base().validate().unwrap();
        assert!(c.members_only && !c.trusted_networks.is_set() && c.shared_secret.is_none() && notes.is_empty());
        let raw = RawParams {
            members_only: 0,
            trusted_network: vec!["10.0.0.0/24".into(), "fd00::1".into()],
            shared_secret: Some("short".into()),
            ..base()
        };
        let (c, notes) = raw.validate().unwrap();
        assert!(!c.members_only);
        assert!(c.trusted_networks.allows("10.0.0.7".parse().unwrap()) && !c.trusted_networks.allows("10.0.1.7".parse().unwrap()));
        assert_eq!(c.shared_secret.as_deref(), Some(b"short".as_slice()));
        assert_eq!(notes[0].param, "shared_secret");
        let e = RawParams { trusted_network: vec!["10.0.0.0/40".into()], ..base() }.validate().unwrap_err();
        assert_eq!(e.param, "trusted_network");
        let e = RawParams { shared_secret: Some(String::new()), ..base() }.validate().unwrap_err();
        assert_eq!(e.param, "shared_secret");
    }

    fn base() -> RawParams {
        RawParams { server_address: Some("sip:127.0.0.2:5090".into()), ..Default::default() }
    }

    #[test]
    fn defaults_match_the_stock_module() {
        let (c, notes) = base().validate().unwrap();
        assert_eq!(c.notification_channel, "notification_peer");
        assert_eq!(c.num_workers, 2);
        assert_eq!(c.ping_interval, 60);
        assert!(c.remove_inactive);
        assert_eq!(c.fail_count_threshold, None);
        assert!(!c.multi_notify);
        assert_eq!(c.dns_interval, 30);
        assert!(notes.is_empty());
        let e = RawParams { dns_interval: 0, ..base() }.validate().unwrap_err();
        assert_eq!(e.param, "dns_interval");
    }

    #[test]
    fn server_address_is_required() {
        let e = RawParams::default().validate().unwrap_err();
        assert_eq!(e.param, "server_address");
        let e = RawParams { server_address: Some("  ".into()), ..Default::default() }.validate().unwrap_err();
        assert_eq!(e.param, "server_address");
        assert!(e.to_string().starts_with("modparam(\"dmq\", \"server_address\")"));
    }

    #[test]
    fn num_workers_below_one_is_refused() {
        for n in [0, -1, i32::MIN] {
            let e = RawParams { num_workers: n, ..base() }.validate().unwrap_err();
            assert_eq!(e.param, "num_workers");
            assert!(e.to_string().contains(&n.to_string()));
        }
    }

    #[test]
    fn short_ping_intervals_are_kept_and_nonsense_falls_back() {
        let (c, _) = RawParams { ping_interval: 2, ..base() }.validate().unwrap();
        assert_eq!(c.ping_interval, 2);
        let (c, notes) = RawParams { ping_interval: 0, ..base() }.validate().unwrap();
        assert_eq!(c.ping_interval, 60);
        assert_eq!(notes[0].param, "ping_interval");
    }

    #[test]
    fn fail_count_threshold_only_matters_when_enabled() {
        let (c, _) = RawParams { fail_count_threshold: 0, ..base() }.validate().unwrap();
        assert_eq!(c.fail_count_threshold, None);
        let (c, _) = RawParams { fail_count_enabled: 1, fail_count_threshold: 5, ..base() }.validate().unwrap();
        assert_eq!(c.fail_count_threshold, Some(FailThresholds { not_active: 4, disabled: 5 }));
        let e = RawParams { fail_count_enabled: 1, fail_count_threshold: 0, ..base() }.validate().unwrap_err();
        assert_eq!(e.param, "fail_count_threshold");
    }

    #[test]
    fn fail_count_thresholds_of_6_1() {
        let enabled = RawParams { fail_count_enabled: 1, ..base() };
        let (c, _) = enabled.clone().validate().unwrap();
        assert_eq!(c.fail_count_threshold, Some(FailThresholds { not_active: 0, disabled: 1 }));
        let (c, notes) = RawParams { fail_count_threshold_not_active: 2, fail_count_threshold: 7, ..enabled.clone() }.validate().unwrap();
        assert_eq!(c.fail_count_threshold, Some(FailThresholds { not_active: 2, disabled: 1 }));
        assert_eq!(notes[0].param, "fail_count_threshold");
        let (c, _) = RawParams { fail_count_threshold_disabled: 4, ..enabled.clone() }.validate().unwrap();
        assert_eq!(c.fail_count_threshold, Some(FailThresholds { not_active: 0, disabled: 4 }));
        let e = RawParams { fail_count_threshold_disabled: -1, ..enabled }.validate().unwrap_err();
        assert_eq!(e.param, "fail_count_threshold_disabled");
    }

    #[test]
    fn negative_worker_usleep_is_refused() {
        let e = RawParams { worker_usleep: -5, ..base() }.validate().unwrap_err();
        assert_eq!(e.param, "worker_usleep");
    }

    #[test]
    fn channel_names() {
        assert!(is_valid_channel("notification_peer"));
        assert!(is_valid_channel("htable"));
        assert!(!is_valid_channel(""));
        assert!(!is_valid_channel("a b"));
        assert!(!is_valid_channel("a@b"));
        let e = RawParams { notification_channel: Some("bad name".into()), ..base() }.validate().unwrap_err();
        assert_eq!(e.param, "notification_channel");
    }

    #[test]
    fn socket_strings() {
        assert_eq!(socket_string("udp", "127.0.0.2", Some("5090")), "udp:127.0.0.2:5090");
        assert_eq!(socket_string("tcp", "10.0.0.1", None), "tcp:10.0.0.1");
        assert_eq!(socket_string("udp", "h", Some("")), "udp:h");
    }
}
