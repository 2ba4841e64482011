//! Replication checked by state: the whole of what a node holds (its
//! location table from `ul.dump`, an htable from `htable.dump`), dumped
//! over the node's ctl socket (`binrpc`: kamcmd cannot take replies this
//! large), compared key by key with the node that took the writes (the
//! entry node). A difference is named: a ghost is held by a peer and not
//! by the entry node, a missing key the other way round, a differing one
//! held by both with other values.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::binrpc::{self, RpcValue};
use super::{reply_field, Node};

/// How long one dump may take.
const DUMP_LIMIT: Duration = Duration::from_secs(20);

/// A contact in usrloc, keyed by (AoR, ruid): what dmq_usrloc replicates
/// and every node must hold alike.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UlContact {
    pub address: String,
    pub call_id: String,
    pub cseq: i64,
    /// When it expires (seconds since the epoch, from the remaining
    /// seconds `ul.dump` shows; ±1 s between two dumps), or the word
    /// `ul.dump` shows instead ("permanent", "expired", "deleted").
    pub expires: Expiry,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expiry {
    At(i64),
    Word(String),
}

/// (AoR, ruid).
pub type UlKey = (String, String);
pub type UlState = BTreeMap<UlKey, UlContact>;

/// Whether two nodes hold the same thing for one key.
pub trait SameState {
    fn same_state(&self, other: &Self) -> bool;
}

impl SameState for String {
    fn same_state(&self, other: &Self) -> bool {
        self == other
    }
}

impl SameState for UlContact {
    fn same_state(&self, other: &Self) -> bool {
        let expires = match (&self.expires, &other.expires) {
            // dmq_usrloc copies the absolute expiry: the two differ only
            // by when each dump read the clock.
            (Expiry::At(a), Expiry::At(b)) => (a - b).abs() <= 2,
            (a, b) => a == b,
        };
        self.address == other.address && self.call_id == other.call_id && self.cseq == other.cseq && expires
    }
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Every contact of every AoR in the node's usrloc domains (`ul.dump`).
pub fn ul_state(node: &Node) -> Result<UlState, String> {
    let reply = binrpc::call(&node.ctl, "ul.dump", &[], DUMP_LIMIT)?;
    let now = now_secs();
    let mut out = UlState::new();
    let mut infos = Vec::new();
    for top in &reply {
        top.find_all(&|v| v.get("AoR").is_some() && v.get("Contacts").is_some(), &mut infos);
    }
    for info in infos {
        let aor = info.get("AoR").map(RpcValue::text).unwrap_or_default();
        for contact in info.members("Contacts").flat_map(|c| c.members("Contact")) {
            let field = |name: &str| contact.get(name).map(RpcValue::text).unwrap_or_default();
            let expires = match contact.get("Expires") {
                Some(RpcValue::Int(left)) => Expiry::At(now + left),
                other => Expiry::Word(other.map(RpcValue::text).unwrap_or_default()),
            };
            let c = UlContact { address: field("Address"), call_id: field("Call-ID"), cseq: field("CSeq").parse().unwrap_or(-1), expires };
            let key = (aor.clone(), field("Ruid"));
            if let Some(before) = out.insert(key.clone(), c.clone()) {
                return Err(format!("{} holds {key:?} twice: {before:?} and {c:?}", node.addr));
            }
        }
    }
    Ok(out)
}

/// The AoRs of a usrloc state.
pub fn aors(state: &UlState) -> std::collections::BTreeSet<String> {
    state.keys().map(|(aor, _)| aor.clone()).collect()
}

/// Every item of htable `table` on the node (`htable.dump`): name → value.
/// A name the table holds twice (a stock htable race: two syncs inserting
/// at once) gets its values joined with " | ", which no single value equals.
pub fn htable_state(node: &Node, table: &str) -> Result<BTreeMap<String, String>, String> {
    let reply = binrpc::call(&node.ctl, "htable.dump", &[table], DUMP_LIMIT)?;
    let mut items = Vec::new();
    for top in &reply {
        top.find_all(&|v| v.get("name").is_some() && v.get("value").is_some(), &mut items);
    }
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for item in items {
        let name = item.get("name").map(RpcValue::text).unwrap_or_default();
        let value = item.get("value").map(RpcValue::text).unwrap_or_default();
        out.entry(name).and_modify(|v| *v = format!("{v} | {value}")).or_insert(value);
    }
    Ok(out)
}

/// [`htable_state`], with a name held twice with one value taken as held
/// once: stock htable's sync handler (5.6 and 6.0) inserts without its
/// slot lock, so two syncs arriving at once can store a key twice, a race
/// of the receiving htable, not a difference between nodes. A name held
/// with two different values stays joined.
pub fn htable_state_doubles_merged(node: &Node, table: &str) -> Result<BTreeMap<String, String>, String> {
    let mut state = htable_state(node, table)?;
    for value in state.values_mut() {
        let mut parts = value.split(" | ");
        let first = parts.next().unwrap_or_default().to_string();
        if parts.all(|p| p == first) {
            *value = first;
        }
    }
    Ok(state)
}

/// Every dialog on the node (`dlg.list`): Call-ID → state (dialog's
/// numbers: 3 early, 4 confirmed, 5 deleted). A Call-ID held twice gets its
/// states joined with " | ".
pub fn dlg_state(node: &Node) -> Result<BTreeMap<String, String>, String> {
    let reply = binrpc::call(&node.ctl, "dlg.list", &[], DUMP_LIMIT)?;
    let mut dialogs = Vec::new();
    for top in &reply {
        top.find_all(&|v| v.get("call-id").is_some() && v.get("state").is_some(), &mut dialogs);
    }
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for d in dialogs {
        let call_id = d.get("call-id").map(RpcValue::text).unwrap_or_default();
        let state = d.get("state").map(RpcValue::text).unwrap_or_default();
        out.entry(call_id).and_modify(|v| *v = format!("{v} | {state}")).or_insert(state);
    }
    Ok(out)
}

/// How a peer's state differs from the entry node's.
#[derive(Debug)]
pub struct StateDiff<K, V> {
    /// Held by the peer, not by the entry node.
    pub ghosts: Vec<(K, V)>,
    /// Held by the entry node, not by the peer.
    pub missing: Vec<(K, V)>,
    /// Held by both, with other values: (key, entry's, peer's).
    pub differing: Vec<(K, V, V)>,
}

impl<K: Debug, V: Debug> StateDiff<K, V> {
    pub fn is_empty(&self) -> bool {
        self.ghosts.is_empty() && self.missing.is_empty() && self.differing.is_empty()
    }

    /// "37 ghosts (first: …), 0 missing, 0 differing".
    pub fn summary(&self) -> String {
        let first = |v: Option<String>| v.map(|s| format!(" (first: {s})")).unwrap_or_default();
        format!(
            "{} ghosts{}, {} missing{}, {} differing{}",
            self.ghosts.len(),
            first(self.ghosts.first().map(|(k, v)| format!("{k:?} = {v:?}"))),
            self.missing.len(),
            first(self.missing.first().map(|(k, v)| format!("{k:?} = {v:?}"))),
            self.differing.len(),
            first(self.differing.first().map(|(k, a, b)| format!("{k:?}: entry {a:?}, peer {b:?}"))),
        )
    }
}

/// `peer` against `entry`, key by key.
pub fn diff<K: Ord + Clone, V: SameState + Clone>(entry: &BTreeMap<K, V>, peer: &BTreeMap<K, V>) -> StateDiff<K, V> {
    let mut d = StateDiff { ghosts: Vec::new(), missing: Vec::new(), differing: Vec::new() };
    for (k, v) in peer {
        match entry.get(k) {
            None => d.ghosts.push((k.clone(), v.clone())),
            Some(e) if !e.same_state(v) => d.differing.push((k.clone(), e.clone(), v.clone())),
            Some(_) => {}
        }
    }
    for (k, v) in entry {
        if !peer.contains_key(k) {
            d.missing.push((k.clone(), v.clone()));
        }
    }
    d
}

/// Whether a dmq_rs node has nothing left to do: no message waiting for
/// its reply or for a resend, no received one waiting for a worker, no
/// heal sync waiting. None for a node without `dmq.stats` (stock).
pub fn dmq_quiet(node: &Node) -> Option<bool> {
    let out = node.try_rpc(&["dmq.stats"]).ok()?;
    // A stock node answers an unknown command with a fault.
    reply_field::<u64>(&out, "messages_in_flight")?;
    let busy = BUSY.iter().any(|f| reply_field::<u64>(&out, f).unwrap_or(0) != 0);
    Some(!busy)
}

/// The busy figures of [`dmq_quiet`], named, for a failure message.
const BUSY: [&str; 4] = ["messages_in_flight", "jobs_queued", "heal_syncs_waiting", "tm_retries_waiting"];

/// Waits (bounded) until every dmq_rs node is quiet ([`dmq_quiet`]: no
/// message in flight or waiting for a resend, no job queued, no heal sync
/// waiting), twice in a row half a second apart. Stock nodes cannot tell
/// and are left out. Returns whether that happened within `limit`; says
/// which node is still busy every 5 s and at the end.
pub fn wait_quiet(nodes: &[&Node], limit: Duration) -> bool {
    let busy = |n: &Node| -> Option<String> {
        match n.try_rpc(&["dmq.stats"]) {
            Err(e) => Some(format!("{}: {e}", n.addr)),
            Ok(out) if reply_field::<u64>(&out, "messages_in_flight").is_none() => None,
            Ok(out) => BUSY
                .iter()
                .map(|f| (f, reply_field::<u64>(&out, f)))
                .filter(|(_, v)| *v != Some(0))
                .map(|(f, v)| format!("{} {f} {v:?}", n.addr))
                .reduce(|a, b| format!("{a}, {b}")),
        }
    };
    let start = Instant::now();
    let (mut streak, mut last_report) = (0, Instant::now());
    let mut why: Vec<String> = Vec::new();
    while start.elapsed() < limit {
        why = nodes.iter().filter_map(|n| busy(n)).collect();
        if !why.is_empty() && last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("not quiet yet: {why:?}");
            last_report = Instant::now();
        }
        streak = if why.is_empty() { streak + 1 } else { 0 };
        if streak >= 2 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("not quiet after {limit:?}: {why:?}");
    false
}

/// How long the states must stay equal (and the nodes quiet) before they
/// count as converged: a heal push or a late resend may still change them.
const STABLE: Duration = Duration::from_secs(2);
/// After this long without any change on any node, with every node quiet,
/// nothing more will come: the wait ends early.
const SETTLED: Duration = Duration::from_secs(6);
/// The same with a stock node, whose tm transactions cannot be seen (tm
/// gives up on a copy after 30 s; it resends it on its T1..T2 schedule).
const SETTLED_WITH_STOCK: Duration = Duration::from_secs(15);

/// One round of dumps: the entry node's state, each peer's diff against
/// it (or the error of its dump), whether every node is quiet (None: some
/// node cannot tell).
type Round<K, V> = (BTreeMap<K, V>, Vec<Result<StateDiff<K, V>, String>>, Option<bool>);

/// Polls (every 300 ms, at most `limit`) until every peer's dump equals
/// the entry node's, equal and quiet for `STABLE`; returns the entry
/// node's state. Panics with each peer's differences on timeout (or
/// earlier, when nothing changed anywhere for `SETTLED` with every node
/// quiet, or for `SETTLED_WITH_STOCK` in a cluster with stock nodes).
pub fn wait_converged<K, V>(
    entry: &Node,
    peers: &[&Node],
    limit: Duration,
    dump: impl Fn(&Node) -> Result<BTreeMap<K, V>, String>,
) -> BTreeMap<K, V>
where
    K: Ord + Clone + Debug,
    V: SameState + Clone + Debug,
{
    try_wait_converged(entry, peers, limit, dump).unwrap_or_else(|e| panic!("{e}"))
}

/// `wait_converged`, with the differences as an error instead of a panic.
/// The entry node's state and each peer's.
type States<K, V> = (BTreeMap<K, V>, Vec<BTreeMap<K, V>>);
/// One round: its comparison, and each peer's state.
type RoundAndStates<K, V> = (Round<K, V>, Vec<BTreeMap<K, V>>);

pub fn try_wait_converged<K, V>(
    entry: &Node,
    peers: &[&Node],
    limit: Duration,
    dump: impl Fn(&Node) -> Result<BTreeMap<K, V>, String>,
) -> Result<BTreeMap<K, V>, String>
where
    K: Ord + Clone + Debug,
    V: SameState + Clone + Debug,
{
    let start = Instant::now();
    let round = || -> Result<RoundAndStates<K, V>, String> {
        let quiet = std::iter::once(entry).chain(peers.iter().copied()).map(dmq_quiet).try_fold(true, |all, q| Some(all && q?));
        let e = dump(entry).map_err(|e| format!("entry node {}: {e}", entry.addr))?;
        let states: Vec<Result<BTreeMap<K, V>, String>> = peers.iter().map(|p| dump(p)).collect();
        let diffs = states.iter().map(|s| s.as_ref().map(|s| diff(&e, s)).map_err(|err| err.clone())).collect();
        let raw = states.into_iter().filter_map(Result::ok).collect();
        Ok(((e, diffs, quiet), raw))
    };
    let mut equal_since: Option<Instant> = None;
    let mut last_states: Option<States<K, V>> = None;
    let mut unchanged_since = Instant::now();
    loop {
        let (settled, why_not) = match round() {
            Ok(((e, diffs, quiet), raw)) => {
                let equal = diffs.iter().all(|d| d.as_ref().is_ok_and(|d| d.is_empty()));
                let same_as_before = last_states.as_ref().is_some_and(|(le, lp)| {
                    diff(le, &e).is_empty() && lp.len() == raw.len() && lp.iter().zip(&raw).all(|(a, b)| diff(a, b).is_empty())
                });
                if !same_as_before {
                    unchanged_since = Instant::now();
                    last_states = Some((e.clone(), raw));
                }
                if equal && quiet != Some(false) {
                    let since = *equal_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= STABLE {
                        return Ok(e);
                    }
                } else {
                    equal_since = None;
                }
                let settled = !equal
                    && match quiet {
                        Some(true) => unchanged_since.elapsed() >= SETTLED,
                        Some(false) => false,
                        None => unchanged_since.elapsed() >= SETTLED_WITH_STOCK,
                    };
                (settled, report(entry, peers, &e, &diffs))
            }
            Err(e) => (false, e),
        };
        if start.elapsed() >= limit || settled {
            return Err(format!(
                "not converged after {:.1} s ({}):\n{why_not}",
                start.elapsed().as_secs_f64(),
                if settled { "nothing changed for a while, no dmq_rs node busy" } else { "time limit" }
            ));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// One line per peer: "node 127.0.1.12: 37 ghosts (first: …), 0 missing, 0 differing".
fn report<K: Debug, V: Debug>(entry: &Node, peers: &[&Node], e: &BTreeMap<K, V>, diffs: &[Result<StateDiff<K, V>, String>]) -> String {
    let mut s = format!("entry node {}: {} keys\n", entry.addr, e.len());
    for (p, d) in peers.iter().zip(diffs) {
        match d {
            Ok(d) => s += &format!("node {}: {}\n", p.addr, d.summary()),
            Err(err) => s += &format!("node {}: no dump: {err}\n", p.addr),
        }
    }
    s
}

/// The diffs of each peer against the entry node now, one line each (for
/// the figures a test prints).
pub fn state_report<K, V>(entry: &Node, peers: &[&Node], dump: impl Fn(&Node) -> Result<BTreeMap<K, V>, String>) -> String
where
    K: Ord + Clone + Debug,
    V: SameState + Clone + Debug,
{
    match dump(entry) {
        Ok(e) => {
            let diffs: Vec<_> = peers.iter().map(|p| dump(p).map(|s| diff(&e, &s))).collect();
            report(entry, peers, &e, &diffs)
        }
        Err(err) => format!("entry node {}: no dump: {err}", entry.addr),
    }
}
