//! The DMQ bus: the node list in shm, node notifications in and out, pings.

use std::ffi::{c_uint, c_void};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use dmq_core::nodes::{FailurePolicy, NodeEvent, NodeList};
use dmq_core::protocol::{self, NodeUri};

use crate::host::shm::ShmStore;
use crate::host::sip_msg::SipMsg;
use crate::host::tm::{self, KdmqRequest};
use crate::raw;

use super::lifecycle::{module, Module};

/// Room for the serialized node list (about 300 nodes).
const NODE_STORE_CAPACITY: usize = 32 * 1024;
const CONTENT_TYPE: &str = "text/plain";

static NODE_STORE: OnceLock<ShmStore> = OnceLock::new();

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// mod_init: the shm node list, holding the local node.
pub fn init(local: NodeUri) -> Result<(), String> {
    let store = ShmStore::new(NODE_STORE_CAPACITY).ok_or("out of shm for the node list")?;
    let initial = NodeList::with_local(local).encode().into_bytes();
    store.with(|_| (Some(initial), ())).map_err(|_| "node list does not fit")?;
    NODE_STORE.set(store).map_err(|_| "node list initialized twice".to_string())
}

/// Runs `f` on the node list under its lock; changes are written back.
/// Never send from inside `f`: copy what to send, send after it returns.
pub fn with_nodes<R>(f: impl FnOnce(&mut NodeList) -> R) -> Option<R> {
    let store = NODE_STORE.get()?;
    let result = store.with(|bytes| {
        let text = std::str::from_utf8(bytes).unwrap_or_default();
        let mut list = NodeList::decode(text);
        let before = list.clone();
        let r = f(&mut list);
        let new = (list != before).then(|| list.encode().into_bytes());
        (new, r)
    });
    match result {
        Ok(r) => Some(r),
        Err(r) => {
            log::error!("node list is full ({NODE_STORE_CAPACITY} bytes); change dropped");
            Some(r)
        }
    }
}

/// Runs `f` on the node list under its lock, read-only (no copy, no write
/// back): for the SIP-worker paths such as `dmq_is_from_node` and RPC listing.
pub fn read_nodes<R>(f: impl FnOnce(&NodeList) -> R) -> Option<R> {
    let store = NODE_STORE.get()?;
    let result = store.with(|bytes| (None, f(&NodeList::decode(std::str::from_utf8(bytes).unwrap_or_default()))));
    Some(result.unwrap_or_else(|r| r))
}

fn policy(m: &Module) -> FailurePolicy {
    FailurePolicy {
        remove_inactive: m.config.remove_inactive,
        fail_count_threshold: m.config.fail_count_threshold,
    }
}

fn log_events(events: &[NodeEvent]) {
    for e in events {
        match e {
            NodeEvent::Active(uri) => log::info!("node {uri} is active"),
            NodeEvent::Inactive(uri) => log::info!("node {uri} is no longer active"),
        }
    }
}

/// Sends our notification body to `targets` (sent after the lock is released).
fn send_notification(m: &Module, targets: &[NodeUri], body: &str, max_forwards: i32) {
    let channel = &m.config.notification_channel;
    let from = m.local_uri.with_user(channel);
    for target in targets {
        let to = target.with_user(channel);
        let req = KdmqRequest {
            to: &to,
            from: &from,
            body: body.as_bytes(),
            content_type: CONTENT_TYPE,
            max_forwards,
            socket: &m.server_socket,
        };
        if let Err(e) = tm::send(&m.tm, &req, on_notification_reply, target.to_uri().as_bytes()) {
            log::error!("cannot notify {target}: {e}");
        }
    }
}

/// Reply to one of our notifications: 200 makes the node active and merges
/// the list it sent back; 408 (no answer) counts as a failure.
fn on_notification_reply(code: i32, reply: Option<&SipMsg>, context: &[u8]) {
    let Some(m) = module() else { return };
    let Ok(node) = protocol::parse_node_line(&String::from_utf8_lossy(context)).map(|l| l.uri) else { return };
    if code == 200 {
        let lines = match reply.map(|r| r.body()) {
            Some(Ok(body)) => match protocol::parse_body(&body) {
                Ok(lines) => lines,
                Err(e) => {
                    log::warn!("node {node} answered with a bad node list ({e}); ignored");
                    Vec::new()
                }
            },
            _ => Vec::new(),
        };
        let events = with_nodes(|list| {
            let mut events = list.mark_answered(&node, now());
            events.extend(list.merge(&lines, now()).events);
            events
        })
        .unwrap_or_default();
        log_events(&events);
    } else if code == 408 {
        let is_seed = m.notification_uris.iter().any(|s| s.same_node(&node));
        let events = with_nodes(|list| list.mark_failed(&node, is_seed, policy(m))).unwrap_or_default();
        log::warn!("node {node} did not answer a notification");
        log_events(&events);
    } else {
        log::debug!("node {node} answered a notification with {code}");
    }
}

/// A KDMQ on the notification channel: merge, answer 200 with our list, and
/// pass the news on while Max-Forwards allows.
pub fn handle_notification(m: &Module, msg: &SipMsg) -> bool {
    let body = match msg.body() {
        Ok(b) => b,
        Err(_) => {
            log::warn!("KDMQ notification without Content-Length from {:?}: refused", msg.source_ip());
            return msg.reply(&m.sl, 400, "Bad request", None);
        }
    };
    let lines = match protocol::parse_body(&body) {
        Ok(lines) => lines,
        Err(e) => {
            log::warn!("bad KDMQ notification body from {:?}: {e}; node list unchanged", msg.source_ip());
            return msg.reply(&m.sl, 400, "Bad request", None);
        }
    };
    let max_forwards = msg.max_forwards().unwrap_or(0);
    let (outcome, our_body, targets) = with_nodes(|list| {
        let outcome = list.merge(&lines, now());
        (outcome, list.notification_body(), list.targets(false))
    })
    .unwrap_or_default();
    log_events(&outcome.events);
    let ok = msg.reply(&m.sl, 200, "OK", Some((our_body.as_bytes(), CONTENT_TYPE)));
    if outcome.news > 0 && max_forwards - 1 > 0 {
        send_notification(m, &targets, &our_body, max_forwards - 1);
    }
    ok
}

/// Notification addresses are never deleted: put back any that went missing.
fn add_seeds(m: &Module, list: &mut NodeList) {
    for seed in &m.notification_uris {
        list.add(seed.clone());
    }
}

/// Startup (first SIP worker): learn the cluster from the notification addresses.
pub fn notify_seeds(m: &Module) {
    if m.notification_uris.is_empty() {
        return;
    }
    let body = with_nodes(|list| {
        add_seeds(m, list);
        list.notification_body()
    })
    .unwrap_or_default();
    send_notification(m, &m.notification_uris, &body, 2);
}

/// The ping timer: every `ping_interval`, notify all nodes, inactive included.
pub unsafe extern "C" fn ping_timer(_ticks: c_uint, _param: *mut c_void) {
    crate::host::panic_guard::guard("ping timer", (), || {
        let Some(m) = module() else { return };
        let (body, targets) = with_nodes(|list| {
            add_seeds(m, list);
            (list.notification_body(), list.targets(true))
        })
        .unwrap_or_default();
        send_notification(m, &targets, &body, 1);
    })
}

/// Starts the ping timer (mod_init).
pub fn start_ping_timer(interval: u32) -> Result<(), String> {
    // SAFETY: registers a static callback with the core's timer process.
    if unsafe { raw::register_timer(Some(ping_timer), std::ptr::null_mut(), interval) } < 0 {
        return Err("cannot register the ping timer".into());
    }
    Ok(())
}
