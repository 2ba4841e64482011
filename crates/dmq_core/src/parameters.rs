//! Every `modparam("dmq", …)`, declared once: its name, its type, its
//! default and a line of description. From this one list come
//! [`PARAMETERS`] (read by the guide test), [`RawParams`] (what the script
//! set, checked by `RawParams::validate` in `config`) and, in the module,
//! the slots Kamailio writes and the export table that names them (the
//! module expands [`for_each_parameter!`](crate::for_each_parameter) with its own macro). The
//! defaults it names are declared here too, so `config` (which checks
//! `RawParams`) reads this file and never the other way round.
//!
//! Names, types and defaults are the stock module's (5.6), plus 6.1's
//! `remove_inactive`, `fail_count_enabled`, `fail_count_threshold_not_active`
//! and `fail_count_threshold_disabled` (with dmq_rs's earlier
//! `fail_count_threshold` as their alias), upstream master's
//! `init_with_single`, `event_callback` and `sl_send`, and dmq_rs's own.

/// Default number of DMQ worker processes.
pub const DEFAULT_NUM_WORKERS: i32 = 2;
/// Default seconds between pings of the other nodes.
pub const DEFAULT_PING_INTERVAL: i32 = 60;
/// Default channel of the node notifications (the R-URI user of KDMQ pings).
pub const DEFAULT_NOTIFICATION_CHANNEL: &str = "notification_peer";
/// An integer parameter the script did not set (its slot's initial value;
/// no config can write it).
pub const UNSET: i32 = i32::MIN;
/// Default cap on KDMQ messages waiting for a worker. A replicated contact
/// is about 1 KiB of shm while it waits, so this bounds the queue to ~10 MB
/// of the default 64 MB shm; at ~20k messages/s per worker it absorbs a
/// burst of half a second at full speed.
pub const DEFAULT_JOB_QUEUE_LIMIT: i32 = 10_000;
/// Default longest time, in seconds, between two lookups of a name in
/// `notification_address` (a shorter TTL in the answer wins).
pub const DEFAULT_DNS_INTERVAL: i32 = 30;

/// Hands the declaration to `$callback!`, one entry per parameter in the
/// order Kamailio lists them: `name: kind = default, "description";`
/// where kind is `int` (an `i32`, the default an `i32`), `str` (given once;
/// the default an `Option<&str>`, `None` when not set) or `list` (a string
/// given any number of times; the default `None`). Each name is the one
/// the script writes and the field of [`RawParams`].
#[macro_export]
macro_rules! for_each_parameter {
    ($callback:ident) => {
        $callback! {
            num_workers: int = $crate::parameters::DEFAULT_NUM_WORKERS, "DMQ worker processes that run received peer messages";
            ping_interval: int = $crate::parameters::DEFAULT_PING_INTERVAL, "seconds between pings of the other nodes";
            server_address: str = None, "SIP URI of this node's DMQ socket (required)";
            server_socket: str = None, "the socket DMQ sends from, proto:host or proto:host:port (derived from server_address when not set)";
            notification_address: list = None, "SIP URI of a node (or a name listing nodes) to join the cluster through; may be given many times";
            notification_channel: str = Some($crate::parameters::DEFAULT_NOTIFICATION_CHANNEL), "the R-URI user of node notifications";
            multi_notify: int = 0, "1: a notification_address name stands for every address it lists";
            worker_usleep: int = 0, "microseconds between polls of the job queue (0: a worker sleeps until woken)";
            remove_inactive: int = 1, "1: a node that stops answering is removed; 0: it is kept as not_active";
            fail_count_enabled: int = 0, "1: nodes change state by their count of consecutive failures";
            fail_count_threshold_not_active: int = $crate::parameters::UNSET, "failures beyond which an active node goes not_active (0 when not set)";
            fail_count_threshold_disabled: int = $crate::parameters::UNSET, "failures beyond which a not_active node goes disabled (1 when not set)";
            fail_count_threshold: int = $crate::parameters::UNSET, "alias: N sets fail_count_threshold_not_active N-1 and fail_count_threshold_disabled N";
            job_queue_limit: int = $crate::parameters::DEFAULT_JOB_QUEUE_LIMIT, "received peer messages that may wait for a worker; beyond it they get 503";
            members_only: int = 1, "1: peer messages only from listed nodes (else 403)";
            trusted_network: list = None, "a network (address/prefix) nodes may join from; may be given many times";
            shared_secret: str = None, "the cluster's secret: every KDMQ is signed and checked";
            updates_in_place: int = 1, "1: a single-item update runs in the process that received it while no job waits";
            init_with_single: int = 0, "1: the peer events treat this node alone as a cluster from the start";
            event_callback: str = None, "a KEMI function called on peer events instead of the event routes";
            sl_send: int = 0, "1: dmq_handle_message answers with sl instead of tm";
            dns_interval: int = $crate::parameters::DEFAULT_DNS_INTERVAL, "longest seconds between two lookups of a notification_address name";
            sync_settle_ms: int = 5000, "ms without a message of the consumer from a stock donor, after its 200, before its sync counts as done";
            sync_timeout: int = 120, "seconds after which a sync that is not done counts as timed out (the node stays not synced)";
            sync_alone_ready: int = 1, "1: a node with no other node to ask (the first of a cluster) is synced at once";
            test_panic: str = None, "test only: injects a panic (worker, timer, dns or sip; -locked; :trigger file) to test the panic guard";
        }
    };
}

/// A parameter's type and default, as the script sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An integer; the default is [`UNSET`] when "not set"
    /// means something of its own.
    Int { default: i32 },
    /// A string given once.
    Str { default: Option<&'static str> },
    /// A string that may be given many times.
    List,
}

impl Kind {
    /// The type word of the guide's heading: `int` or `str`.
    pub fn word(self) -> &'static str {
        match self {
            Kind::Int { .. } => "int",
            Kind::Str { .. } | Kind::List => "str",
        }
    }
}

/// One parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parameter {
    pub name: &'static str,
    pub kind: Kind,
    pub description: &'static str,
}

macro_rules! kind {
    (int, $default:expr) => {
        Kind::Int { default: $default }
    };
    (str, $default:expr) => {
        Kind::Str { default: $default }
    };
    (list, $default:expr) => {
        Kind::List
    };
}

macro_rules! raw_type {
    (int) => { i32 };
    (str) => { Option<String> };
    (list) => { Vec<String> };
}

macro_rules! raw_default {
    (int, $default:expr) => {
        $default
    };
    // A string not given is None: `validate` applies the default.
    (str, $default:expr) => {
        None
    };
    (list, $default:expr) => {
        Vec::new()
    };
}

macro_rules! declare {
    ($($name:ident: $kind:ident = $default:expr, $description:literal;)*) => {
        /// Every parameter, in the order of the module's export table.
        pub const PARAMETERS: &[Parameter] = &[
            $(Parameter { name: stringify!($name), kind: kind!($kind, $default), description: $description },)*
        ];

        /// The parameters as the script set them (integers as Kamailio
        /// stores them, strings not given as `None`, repeated ones in order).
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct RawParams {
            $(
                #[doc = $description]
                pub $name: raw_type!($kind),
            )*
        }

        impl Default for RawParams {
            /// What the module holds before the script sets anything.
            fn default() -> Self {
                RawParams { $($name: raw_default!($kind, $default),)* }
            }
        }
    };
}

for_each_parameter!(declare);

/// The declaration of `name`.
pub fn find(name: &str) -> Option<&'static Parameter> {
    PARAMETERS.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_described() {
        for (i, p) in PARAMETERS.iter().enumerate() {
            assert!(PARAMETERS[..i].iter().all(|q| q.name != p.name), "{} declared twice", p.name);
            assert!(!p.description.is_empty() && !p.description.contains('\n'), "{}: one line of description", p.name);
        }
        assert_eq!(find("fail_count_threshold").map(|p| p.kind), Some(Kind::Int { default: UNSET }));
    }

    #[test]
    fn the_defaults_pass_the_config_checks() {
        let raw = RawParams { server_address: Some("sip:127.0.0.2:5090".into()), ..Default::default() };
        let (config, notes) = raw.validate().unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        // A declared string default is what validate makes of "not given".
        for p in PARAMETERS {
            if let Kind::Str { default: Some(d) } = p.kind {
                assert_eq!(p.name, "notification_channel");
                assert_eq!(config.notification_channel, d);
            }
        }
        // With fail_count_enabled the unset thresholds take 6.1's defaults.
        let (config, notes) = RawParams { fail_count_enabled: 1, ..raw }.validate().unwrap();
        assert!(notes.is_empty() && config.fail_count_threshold.is_some(), "{notes:?}");
    }

    #[test]
    fn the_integer_defaults_are_those_of_raw_params() {
        let raw = RawParams::default();
        let by_name = |name: &str| match find(name).map(|p| p.kind) {
            Some(Kind::Int { default }) => default,
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(by_name("num_workers"), raw.num_workers);
        assert_eq!(by_name("ping_interval"), raw.ping_interval);
        assert_eq!(by_name("job_queue_limit"), raw.job_queue_limit);
        assert_eq!(by_name("dns_interval"), raw.dns_interval);
        assert_eq!(by_name("remove_inactive"), 1);
        assert_eq!(by_name("members_only"), 1);
    }
}
