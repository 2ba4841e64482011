//! Per-key order of replicated updates: what a consumer changes (a
//! contact, a cell, a dialog, a presentity) reaches every node in the
//! order it was changed, whatever the path (in flight without tm, through
//! tm, batched, resent after a 503 or a timeout).
//!
//! The rule: to any one node, at most one message carrying a given key is
//! on its way (sent and not yet finally answered). An update for a key
//! that has one on its way waits ("parked") until the answer comes, in
//! the order the updates were made; a newer full replacement of the same
//! single key (a contact saved again, a cell set again, a delete) takes
//! the place of the one waiting instead of queueing behind it
//! ("coalesced": the node only ever needed the newest). A node answers a
//! KDMQ after its consumer applied it (stock: after the worker ran the
//! callback; dmq_rs: the same), so the next copy of a key is applied after
//! the one before it.
//!
//! [`identify`] reads a message's keys from its body (the consumers'
//! JSON); [`Lanes`] is the state, plain data the caller keeps in shm under
//! a lock it holds while calling in here. Each waiting message is the
//! caller's `M` (a shm block), opaque here.

use crate::body_check::{BodyError, Kind, Parser};
use crate::fnv::fnv;

/// A node as the lanes key it: its URI text (`NodeUri::to_uri`).
pub fn node_hash(uri: &str) -> u64 {
    fnv(&[uri.as_bytes()])
}

/// The table's keys for `items` to `node`.
fn lane_keys(node: u64, items: &[u64]) -> Vec<u64> {
    items.iter().map(|&k| lane_key(node, k)).collect()
}

/// The table's key for item `key` to `node`: never 0 (an empty entry).
pub fn lane_key(node: u64, key: u64) -> u64 {
    let k = (node.rotate_left(29) ^ key).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    if k == 0 {
        1
    } else {
        k
    }
}

/// What identifies one item of a stock consumer's body, and which of its
/// actions replace the item whole (a newer one makes an older, still
/// unsent one useless) or delete it.
struct Identity {
    /// Members of an item object whose values name the item.
    members: &'static [&'static str],
    /// A member holding an object whose members name the item (presence's
    /// `presentity` and `subscription`), and which of its members.
    nested: &'static [(&'static str, &'static [&'static str])],
    /// The member holding a batch of items (object of objects, or array).
    batch: Option<&'static str>,
    replaces: &'static [i64],
    deletes: &'static [i64],
}

fn identity(peer: &str) -> Option<&'static Identity> {
    // dmq_usrloc: DMQ_UPDATE 1 carries the whole contact, DMQ_RM 2.
    const USRLOC: Identity = Identity { members: &["aor", "ruid"], nested: &[], batch: Some("multi"), replaces: &[1, 2], deletes: &[2] };
    // htable: SET_CELL 2 carries the whole cell (SET_CELL_EXPIRE 3 only
    // its expiry), DEL_CELL 4.
    const HTABLE: Identity =
        Identity { members: &["htname", "cname"], nested: &[], batch: Some("cells"), replaces: &[2, 4], deletes: &[4] };
    // dialog: DLG_DMQ_RM 3 (UPDATE and STATE carry parts: never replaced).
    const DIALOG: Identity = Identity { members: &["h_entry", "h_id"], nested: &[], batch: None, replaces: &[3], deletes: &[3] };
    const PRESENCE: Identity = Identity {
        members: &[],
        nested: &[("presentity", &["user", "domain", "event", "etag"]), ("subscription", &["callid", "to_tag", "from_tag"])],
        batch: None,
        replaces: &[],
        deletes: &[],
    };
    match peer {
        "usrloc" => Some(&USRLOC),
        "htable" => Some(&HTABLE),
        "dialog" => Some(&DIALOG),
        "presence" => Some(&PRESENCE),
        _ => None,
    }
}

/// The keys a peer message carries, and what it does to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// One per item, in the body's order (an item named twice, twice).
    pub items: Vec<u64>,
    /// One item replaced whole or deleted: a newer such message for the
    /// same key makes an older one still waiting useless.
    pub replaces: bool,
    /// One item deleted.
    pub deletes: bool,
}

/// The keys of `body` sent to `peer`'s consumer; None when it carries no
/// item (a sync request: the consumer then sends its state, each item in
/// messages of their own, which are ordered). A stock consumer's items
/// are named by their members (dmq_usrloc: AoR and ruid; htable: table
/// and cell; dialog: its hash ids; presence: the presentity or the
/// subscription); any other peer's messages, or a body that does not
/// parse, have one key: the peer's, so they keep their order to a node.
pub fn identify(peer: &str, body: &[u8]) -> Option<Keys> {
    let whole_peer = || Some(Keys { items: vec![fnv(&[peer.as_bytes()])], replaces: false, deletes: false });
    let Some(id) = identity(peer) else { return whole_peer() };
    let mut keys = Keys { items: Vec::new(), replaces: false, deletes: false };
    let mut p = Parser { b: body, i: 0 };
    match item(&mut p, peer, id, 0, &mut keys.items, true) {
        Ok(action) if !keys.items.is_empty() => {
            if keys.items.len() == 1 {
                if let Some(action) = action {
                    keys.replaces = id.replaces.contains(&action);
                    keys.deletes = id.deletes.contains(&action);
                }
            }
            Some(keys)
        }
        Ok(_) => None,
        Err(_) => whole_peer(),
    }
}

/// Reads one item object: pushes its key (when it names one) and those of
/// its batch members (top level only); returns its `action`.
fn item(p: &mut Parser<'_>, peer: &str, id: &Identity, depth: usize, out: &mut Vec<u64>, top: bool) -> Result<Option<i64>, BodyError> {
    let mut values: Vec<&[u8]> = vec![b""; id.members.len() + id.nested.iter().map(|(_, m)| m.len()).sum::<usize>()];
    let mut named = false;
    let mut action = None;
    let mut batch: Vec<u64> = Vec::new();
    p.ws();
    if p.peek() != Some(b'{') {
        p.value(depth)?;
        return Ok(None);
    }
    p.members(depth, |p, key, _, d| {
        p.ws();
        if let Some(i) = id.members.iter().position(|m| m.as_bytes() == key) {
            let start = p.i;
            p.value(d)?;
            values[i] = &p.b[start..p.i];
            named = true;
            return Ok(());
        }
        let mut offset = id.members.len();
        for (name, members) in id.nested {
            if name.as_bytes() == key && p.peek() == Some(b'{') {
                p.members(d, |p, k, _, d2| {
                    p.ws();
                    let start = p.i;
                    p.value(d2)?;
                    if let Some(j) = members.iter().position(|m| m.as_bytes() == k) {
                        values[offset + j] = &p.b[start..p.i];
                        named = true;
                    }
                    Ok(())
                })?;
                return Ok(());
            }
            offset += members.len();
        }
        if top && id.batch.is_some_and(|b| b.as_bytes() == key) {
            return match p.peek() {
                Some(b'{') => p
                    .members(d, |p, _, _, d2| {
                        item(p, peer, id, d2, &mut batch, false)?;
                        Ok(())
                    })
                    .map(drop),
                Some(b'[') => p.items(d, |p, d2| item(p, peer, id, d2, &mut batch, false).map(drop)),
                _ => p.value(d).map(drop),
            };
        }
        let start = p.i;
        let kind = p.value(d)?;
        if key == b"action" && kind == Kind::Other {
            action = std::str::from_utf8(&p.b[start..p.i]).ok().and_then(|v| v.parse::<i64>().ok());
        }
        Ok(())
    })?;
    if named {
        let mut parts: Vec<&[u8]> = Vec::with_capacity(values.len() + 1);
        parts.push(peer.as_bytes());
        parts.extend(values.iter().copied());
        out.push(fnv(&parts));
    }
    out.extend(batch);
    Ok(action)
}

/// The batch member of `body` (`id.batch`): where its value starts and
/// ends, and each item's span (from its member name in an object of
/// objects), where the item object itself starts, and its key.
#[allow(clippy::type_complexity)]
fn batch_spans(peer: &str, id: &Identity, body: &[u8]) -> Option<(usize, usize, Vec<(usize, usize, usize, Option<u64>)>)> {
    let batch = id.batch?;
    let mut p = Parser { b: body, i: 0 };
    let mut span = None;
    let read = p.members(0, |p, key, _, d| {
        p.ws();
        if key != batch.as_bytes() {
            return p.value(d).map(drop);
        }
        let start = p.i;
        let mut items = Vec::new();
        let mut one = |p: &mut Parser<'_>, item_start: usize, d2: usize| -> Result<(), BodyError> {
            p.ws();
            let object_start = p.i;
            let mut key = Vec::new();
            item(p, peer, id, d2, &mut key, false)?;
            items.push((item_start, object_start, p.i, key.first().copied()));
            Ok(())
        };
        match p.peek() {
            Some(b'{') => {
                // Members "name": {item}; the span starts at the name.
                p.i += 1;
                loop {
                    p.ws();
                    if p.peek() == Some(b'}') {
                        p.i += 1;
                        break;
                    }
                    let item_start = p.i;
                    p.string()?;
                    p.ws();
                    if p.peek() != Some(b':') {
                        return Err(BodyError::Syntax { expected: "':'", at: p.i });
                    }
                    p.i += 1;
                    one(p, item_start, d + 1)?;
                    p.ws();
                    if p.peek() == Some(b',') {
                        p.i += 1;
                    }
                }
            }
            Some(b'[') => p.items(d, |p, d2| {
                p.ws();
                let item_start = p.i;
                one(p, item_start, d2)
            })?,
            _ => return p.value(d).map(drop),
        }
        span = Some((start, p.i, items));
        Ok(())
    });
    read.ok()?;
    span
}

/// The items of a batch body (dmq_usrloc's `multi`, htable's `cells`),
/// each as a body of its own; empty for a body that is no batch.
pub fn batch_items<'b>(peer: &str, body: &'b [u8]) -> Vec<&'b [u8]> {
    let Some(id) = identity(peer) else { return Vec::new() };
    batch_spans(peer, id, body).map(|(_, _, items)| items.into_iter().map(|(_, a, b, _)| &body[a..b]).collect()).unwrap_or_default()
}

/// What is left of a body once items are filtered out ([`retain_items`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retained {
    /// Every item stays (or the body names none): send it as it is.
    All,
    /// No item stays: send nothing.
    Nothing,
    /// Some stay: this body carries them (the batch rebuilt, the rest as it was).
    Some(Vec<u8>),
}

/// Keeps the items of `body` (to `peer`'s consumer) for which `keep`
/// holds (given the item's key, as [`identify`] names it). A single item:
/// all or nothing; a batch (dmq_usrloc's `multi`, htable's `cells`): the
/// batch member is rebuilt with the kept items, in their order.
pub fn retain_items(peer: &str, body: &[u8], keep: impl Fn(u64) -> bool) -> Retained {
    let Some(keys) = identify(peer, body) else { return Retained::All };
    // Another peer's messages are not told apart: all of them go.
    let Some(id) = identity(peer) else { return Retained::All };
    if keys.items.iter().all(|&k| keep(k)) {
        return Retained::All;
    }
    if !keys.items.iter().any(|&k| keep(k)) {
        return Retained::Nothing;
    }
    let Some((start, end, items)) = batch_spans(peer, id, body) else { return Retained::All };
    let open = body[start];
    let mut out = Vec::with_capacity(body.len());
    out.extend_from_slice(&body[..start]);
    out.push(open);
    let mut first = true;
    for (a, _, b, key) in items {
        if key.is_some_and(|k| !keep(k)) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(&body[a..b]);
    }
    out.push(if open == b'{' { b'}' } else { b']' });
    out.extend_from_slice(&body[end..]);
    Retained::Some(out)
}

/// Entries of the key table used at most, of its capacity: past it a key
/// is not tracked (its message goes unordered, counted).
const MAX_LOAD_NUM: usize = 3;
const MAX_LOAD_DEN: usize = 4;

/// What became of a message offered to [`Lanes::admit`].
#[derive(Debug, PartialEq, Eq)]
pub enum Admission<M> {
    /// None of its keys has a message on its way to the node: send it now
    /// (its keys are now on their way; [`Lanes::done`] when it is answered).
    Send,
    /// It waits behind an earlier message with one of its keys.
    Parked,
    /// It took the place of a waiting message for the same single key,
    /// returned here (to be dropped: the node never needs it).
    Coalesced(M),
    /// No room to track it (key table or waiting list full): send it now,
    /// without order.
    Untracked,
}

/// What is known of one waiting message, beside it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParkedMeta {
    pub node: u64,
    /// Its first key, and how many it has (coalescing takes one-key messages).
    pub first: u64,
    pub count: u32,
    /// It replaces its single key whole ([`Keys::replaces`]), and has no
    /// response callback (one that has must run: never coalesced).
    pub replaceable: bool,
}

/// The state: a table of keys on their way or waiting (open addressing,
/// linear probing, `keys[i] == 0` empty), and the waiting messages in the
/// order they came (`order[..queued]`, indices into `parked`). Every slice
/// of a group has the same length.
pub struct Lanes<'a, M> {
    pub keys: &'a mut [u64],
    /// Messages on their way carrying the entry's key.
    pub flight: &'a mut [u32],
    /// Messages waiting carrying it.
    pub waiting: &'a mut [u32],
    /// Entries in use.
    pub used: &'a mut u32,
    pub parked: &'a mut [Option<M>],
    pub meta: &'a mut [ParkedMeta],
    pub order: &'a mut [u32],
    pub queued: &'a mut u32,
}

impl<M> Lanes<'_, M> {
    fn find(&self, key: u64) -> Option<usize> {
        crate::probe::find(self.keys, key)
    }

    /// The entry of `key`, made if need be; None when the table is full.
    fn entry(&mut self, key: u64) -> Option<usize> {
        if let Some(i) = self.find(key) {
            return Some(i);
        }
        if (*self.used as usize + 1) * MAX_LOAD_DEN > self.keys.len() * MAX_LOAD_NUM {
            return None;
        }
        let i = crate::probe::free_entry(self.keys, key);
        (self.keys[i], self.flight[i], self.waiting[i]) = (key, 0, 0);
        *self.used += 1;
        Some(i)
    }

    /// Frees entry `i` when nothing uses it.
    fn tidy(&mut self, i: usize) {
        if self.flight[i] != 0 || self.waiting[i] != 0 {
            return;
        }
        *self.used -= 1;
        let (flight, waiting) = (&mut *self.flight, &mut *self.waiting);
        let hole = crate::probe::remove(self.keys, i, |from, to| {
            flight[to] = flight[from];
            waiting[to] = waiting[from];
        });
        (self.flight[hole], self.waiting[hole]) = (0, 0);
    }

    fn busy(&self, key: u64) -> bool {
        self.find(key).is_some_and(|i| self.flight[i] > 0 || self.waiting[i] > 0)
    }

    /// Adds `by` to the flight (or waiting) count of each key; all or none
    /// (false: the table is full).
    fn count(&mut self, keys: &[u64], waiting: bool) -> bool {
        for (done, &k) in keys.iter().enumerate() {
            let Some(i) = self.entry(k) else {
                for &undo in &keys[..done] {
                    self.uncount(undo, waiting);
                }
                return false;
            };
            if waiting {
                self.waiting[i] += 1;
            } else {
                self.flight[i] += 1;
            }
        }
        true
    }

    fn uncount(&mut self, key: u64, waiting: bool) {
        if let Some(i) = self.find(key) {
            let c = if waiting { &mut self.waiting[i] } else { &mut self.flight[i] };
            *c = c.saturating_sub(1);
            self.tidy(i);
        }
    }

    /// A message carrying `items` (its [`Keys`]) is to go to `node`.
    /// `replaceable`: it replaces its single key whole and has no callback.
    /// `make` stores it, only when it must wait (None: it could not be
    /// stored, it goes now untracked).
    pub fn admit(&mut self, node: u64, items: &[u64], replaceable: bool, make: impl FnOnce() -> Option<M>) -> Admission<M> {
        let keys = lane_keys(node, items);
        if !keys.iter().any(|&k| self.busy(k)) {
            return self.go_now(&keys);
        }
        if replaceable && keys.len() == 1 {
            // The newest waiting message with this key, if it is one we may replace.
            let last = (0..*self.queued as usize)
                .rev()
                .map(|pos| self.order[pos] as usize)
                .find(|&slot| self.meta[slot].node == node && self.parked_has(slot, keys[0]));
            if let Some(slot) = last.filter(|&slot| self.meta[slot].replaceable && self.meta[slot].count == 1) {
                let Some(message) = make() else { return Admission::Untracked };
                let Some(old) = self.parked[slot].replace(message) else { return Admission::Untracked };
                return Admission::Coalesced(old);
            }
        }
        let Some(slot) = self.parked.iter().position(Option::is_none) else { return Admission::Untracked };
        if *self.queued as usize >= self.order.len() || !self.count(&keys, true) {
            return Admission::Untracked;
        }
        let Some(message) = make() else {
            for &k in &keys {
                self.uncount(k, true);
            }
            return Admission::Untracked;
        };
        self.parked[slot] = Some(message);
        self.meta[slot] = ParkedMeta { node, first: keys[0], count: keys.len() as u32, replaceable: replaceable && keys.len() == 1 };
        self.order[*self.queued as usize] = slot as u32;
        *self.queued += 1;
        Admission::Parked
    }

    /// A sync's copy of `items` (a snapshot the sender read now) is to go
    /// to `node`: it goes at once, never behind a live update on its way,
    /// and the updates after it wait for it as for any other message
    /// (their keys count it on its way). Overtaking is safe: every live
    /// update made before the snapshot still arrives, in order, and the
    /// last of them carries what the snapshot read; an update made after
    /// it waits behind it (and a dmq_rs receiver refuses a copy older
    /// than a live update it applied, `freshness`). Waiting would hold a
    /// whole sync (htable sends up to 60 kB of items in one message)
    /// behind the slowest of its items' live copies, after a partition up
    /// to their 30 s timeout.
    pub fn admit_sync_copy(&mut self, node: u64, items: &[u64]) -> Admission<M> {
        self.go_now(&lane_keys(node, items))
    }

    /// A message with lane keys `keys` goes now: they count it on its way
    /// (no room: it goes untracked).
    fn go_now(&mut self, keys: &[u64]) -> Admission<M> {
        if self.count(keys, false) {
            Admission::Send
        } else {
            Admission::Untracked
        }
    }

    /// Whether the waiting message in `slot` carries lane key `key` (one-key
    /// messages are known from their meta; others are not coalesced with).
    fn parked_has(&self, slot: usize, key: u64) -> bool {
        self.meta[slot].first == key || self.meta[slot].count > 1
    }

    /// A message carrying `items` to `node` is done (finally answered, timed
    /// out, or never sent): its keys are free. Returns the waiting messages
    /// to `node` that may go now, in order (their keys now on their way);
    /// `items_of` gives a waiting message's items.
    pub fn done(&mut self, node: u64, items: &[u64], items_of: impl Fn(&M) -> Vec<u64>) -> Vec<M> {
        for &k in items {
            self.uncount(lane_key(node, k), false);
        }
        let mut go = Vec::new();
        if *self.queued == 0 {
            return go;
        }
        // In order; a message behind one that still waits with a key of
        // its own waits too.
        let mut blocked: Vec<u64> = Vec::new();
        let mut pos = 0;
        while pos < *self.queued as usize {
            let slot = self.order[pos] as usize;
            if self.meta[slot].node != node {
                pos += 1;
                continue;
            }
            let keys: Vec<u64> = match &self.parked[slot] {
                Some(m) => lane_keys(node, &items_of(m)),
                None => Vec::new(),
            };
            let free = keys.iter().all(|k| !blocked.contains(k) && self.find(*k).is_none_or(|i| self.flight[i] == 0));
            if !free {
                blocked.extend(keys);
                pos += 1;
                continue;
            }
            for &k in &keys {
                if let Some(i) = self.find(k) {
                    self.waiting[i] = self.waiting[i].saturating_sub(1);
                    self.flight[i] += 1;
                }
            }
            self.order.copy_within(pos + 1..*self.queued as usize, pos);
            *self.queued -= 1;
            self.meta[slot] = ParkedMeta::default();
            if let Some(m) = self.parked[slot].take() {
                go.push(m);
            }
        }
        go
    }

    /// Messages waiting now.
    pub fn waiting_count(&self) -> u32 {
        *self.queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(peer: &str, body: &str) -> Option<Keys> {
        identify(peer, body.as_bytes())
    }

    #[test]
    fn a_contact_is_its_aor_and_ruid() {
        let save = keys("usrloc", r#"{"action":1,"aor":"alice","ruid":"u1","c":"sip:a@h","expires":3600}"#).unwrap();
        let rm = keys("usrloc", r#"{"aor":"alice","action":2,"ruid":"u1"}"#).unwrap();
        assert_eq!(save.items, rm.items);
        assert!(save.replaces && !save.deletes);
        assert!(rm.replaces && rm.deletes);
        let other = keys("usrloc", r#"{"action":1,"aor":"alice","ruid":"u2"}"#).unwrap();
        assert_ne!(save.items, other.items);
        assert_eq!(keys("usrloc", r#"{"action":3}"#), None, "a sync request carries no item");
    }

    #[test]
    fn a_batch_carries_each_of_its_items() {
        let one = keys("usrloc", r#"{"action":1,"aor":"a","ruid":"1"}"#).unwrap().items[0];
        let two = keys("usrloc", r#"{"action":2,"aor":"b","ruid":"2"}"#).unwrap().items[0];
        let multi = keys("usrloc", r#"{"multi":{"0":{"action":1,"aor":"a","ruid":"1"},"1":{"action":2,"aor":"b","ruid":"2"}}}"#).unwrap();
        assert_eq!(multi.items, vec![one, two]);
        assert!(!multi.replaces);
        let cells = keys("htable", r#"{"action":1,"cells":[{"htname":"t","cname":"k"},{"htname":"t","cname":"j"}]}"#).unwrap();
        assert_eq!(cells.items[0], keys("htable", r#"{"action":2,"htname":"t","cname":"k","intval":1}"#).unwrap().items[0]);
        assert_eq!(cells.items.len(), 2);
    }

    #[test]
    fn each_consumer_names_its_items() {
        let set = keys("htable", r#"{"action":2,"htname":"t","cname":"k","type":0,"intval":1,"mode":0}"#).unwrap();
        let expire = keys("htable", r#"{"action":3,"htname":"t","cname":"k","expire":5}"#).unwrap();
        assert_eq!(set.items, expire.items);
        assert!(set.replaces && !expire.replaces);
        assert!(keys("htable", r#"{"action":4,"htname":"t","cname":"k"}"#).unwrap().deletes);
        assert_eq!(keys("htable", r#"{"action":1}"#), None);
        let d1 = keys("dialog", r#"{"action":1,"h_entry":3,"h_id":7,"callid":"x"}"#).unwrap();
        let d2 = keys("dialog", r#"{"action":2,"h_entry":3,"h_id":7,"state":4}"#).unwrap();
        assert_eq!(d1.items, d2.items);
        assert!(!d2.replaces);
        let p1 =
            keys("presence", r#"{"action":1,"presentity":{"domain":"d","user":"u","etag":"e","event":"presence"},"body":"x"}"#).unwrap();
        let p2 = keys("presence", r#"{"action":2,"presentity":{"user":"u","domain":"d","event":"presence","etag":"e"}}"#).unwrap();
        assert_eq!(p1.items, p2.items);
        // Other peers, and bodies that do not parse: the peer's own order.
        let a = keys("my_channel", "anything").unwrap();
        assert_eq!(a.items, keys("my_channel", "{}").unwrap().items);
        assert_eq!(keys("usrloc", "{\"aor\":").unwrap().items, a.items.iter().map(|_| fnv(&[b"usrloc"])).collect::<Vec<_>>());
    }

    /// The same with a lossy, duplicating network in between: a copy may
    /// be lost (its sender sees a timeout and frees its keys), delivered
    /// twice (a retransmission, arriving any time later), or delayed past
    /// newer copies of other items. The receiver tells copies apart
    /// (`duplicates`): no key ever goes back to an older value.
    #[test]
    fn lost_duplicated_and_delayed_copies_never_take_a_key_back() {
        use crate::duplicates::{Seen, SeenTable};
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rand = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for round in 0..100 {
            let mut s = State::new(256, 512);
            let (mut seen_keys, mut codes, mut ages, mut clock) = (vec![0u64; 4096], vec![0u16; 4096], vec![0u64; 4096], 0u64);
            let mut written = [0u32; 5];
            let mut applied = [0u32; 5];
            let mut values: std::collections::HashMap<u32, (u64, u32)> = Default::default();
            // Copies in the network: (message id, its items); a message
            // id stands for its Call-ID/CSeq/From (`duplicates::key`).
            let mut network: Vec<(u32, Vec<u64>)> = Vec::new();
            // Messages the sender waits on (sent, not yet done).
            let mut waiting: Vec<(u32, Vec<u64>)> = Vec::new();
            let mut next = 1;
            for _ in 0..400 {
                match rand(5) {
                    0 | 1 => {
                        let k = rand(5) as u64;
                        written[k as usize] += 1;
                        let id = next;
                        next += 1;
                        values.insert(id, (k, written[k as usize]));
                        match s.admit(3, id, &[k], true) {
                            Admission::Send => {
                                network.push((id, vec![k]));
                                waiting.push((id, vec![k]));
                            }
                            Admission::Coalesced((old, _)) => {
                                values.remove(&old);
                            }
                            Admission::Parked => {}
                            Admission::Untracked => panic!("room enough"),
                        }
                    }
                    2 if !network.is_empty() => {
                        // A copy arrives (any of them: delay, reordering).
                        let (id, _) = network.swap_remove(rand(network.len()));
                        let mut table = SeenTable { keys: &mut seen_keys, codes: &mut codes, ages: &mut ages, clock: &mut clock };
                        if table.arrived(u64::from(id)) == Seen::New {
                            let (k, v) = values[&id];
                            assert!(v > applied[k as usize], "round {round}: key {k} back to {v} from {}", applied[k as usize]);
                            applied[k as usize] = v;
                            table.answered(u64::from(id), 200);
                        }
                        // The answer reaches the sender (or a retransmission's does).
                        if let Some(pos) = waiting.iter().position(|(w, _)| *w == id) {
                            let (_, items) = waiting.swap_remove(pos);
                            for (id, items) in s.done(3, &items) {
                                network.push((id, items.clone()));
                                waiting.push((id, items));
                            }
                        }
                    }
                    3 if !network.is_empty() => {
                        // A retransmission: the same copy once more.
                        let copy = network[rand(network.len())].clone();
                        network.push(copy);
                    }
                    4 if !network.is_empty() => {
                        // A copy lost for good; if it was the last of its
                        // message, the sender times out and frees its keys.
                        let (id, _) = network.swap_remove(rand(network.len()));
                        if !network.iter().any(|(n, _)| *n == id) {
                            if let Some(pos) = waiting.iter().position(|(w, _)| *w == id) {
                                let (_, items) = waiting.swap_remove(pos);
                                for (id, items) in s.done(3, &items) {
                                    network.push((id, items.clone()));
                                    waiting.push((id, items));
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn a_sync_copy_overtakes_the_updates_on_their_way_and_the_next_waits_for_it() {
        let mut s = State::new(64, 16);
        assert_eq!(s.admit(1, 1, &[10], true), Admission::Send);
        assert_eq!(s.admit(1, 2, &[10], false), Admission::Parked, "an update waits behind the one on its way");
        assert_eq!(s.lanes().admit_sync_copy(1, &[10, 11]), Admission::Send, "the sync copy does not");
        assert_eq!(s.admit(1, 3, &[11], false), Admission::Parked, "an update after the copy waits for it");
        assert_eq!(s.done(1, &[10]), vec![], "the copy still carries key 10");
        assert_eq!(s.done(1, &[10, 11]), vec![(2, vec![10]), (3, vec![11])], "then both go, in order");
    }

    #[test]
    fn a_batch_keeps_only_the_items_asked_for() {
        let key = |aor: &str| keys("usrloc", &format!(r#"{{"action":1,"aor":"{aor}","ruid":"r"}}"#)).unwrap().items[0];
        let (a, b) = (key("a"), key("b"));
        let multi = r#"{"multi":{"0":{"action":1,"aor":"a","ruid":"r"}, "1":{"action":1,"aor":"b","ruid":"r"},"2":{"action":1,"aor":"c","ruid":"r"}}}"#;
        let kept = retain_items("usrloc", multi.as_bytes(), |k| k != b);
        let Retained::Some(body) = kept else { panic!("{kept:?}") };
        let body = String::from_utf8(body).unwrap();
        assert_eq!(body, r#"{"multi":{"0":{"action":1,"aor":"a","ruid":"r"},"2":{"action":1,"aor":"c","ruid":"r"}}}"#);
        assert_eq!(crate::body_check::check("usrloc", "application/json", body.as_bytes()), Ok(()));
        assert_eq!(retain_items("usrloc", multi.as_bytes(), |_| true), Retained::All);
        assert_eq!(retain_items("usrloc", multi.as_bytes(), |_| false), Retained::Nothing);
        let single = r#"{"action":1,"aor":"a","ruid":"r"}"#;
        assert_eq!(retain_items("usrloc", single.as_bytes(), |k| k == a), Retained::All);
        assert_eq!(retain_items("usrloc", single.as_bytes(), |k| k != a), Retained::Nothing);
        let cells = r#"{"action":1,"cells":[{"htname":"t","cname":"x"},{"htname":"t","cname":"y"}],"n":2}"#;
        let x = keys("htable", r#"{"action":2,"htname":"t","cname":"x"}"#).unwrap().items[0];
        let Retained::Some(body) = retain_items("htable", cells.as_bytes(), |k| k == x) else { panic!() };
        assert_eq!(String::from_utf8(body).unwrap(), r#"{"action":1,"cells":[{"htname":"t","cname":"x"}],"n":2}"#);
        assert_eq!(retain_items("usrloc", br#"{"action":3}"#, |_| false), Retained::All, "a sync request is no item");
        let items = batch_items("usrloc", multi.as_bytes());
        assert_eq!(items.len(), 3);
        assert_eq!(items[1], br#"{"action":1,"aor":"b","ruid":"r"}"#);
        assert!(batch_items("usrloc", single.as_bytes()).is_empty());
    }

    /// The state in plain vectors, with messages as (id, items).
    struct State {
        keys: Vec<u64>,
        flight: Vec<u32>,
        waiting: Vec<u32>,
        used: u32,
        parked: Vec<Option<(u32, Vec<u64>)>>,
        meta: Vec<ParkedMeta>,
        order: Vec<u32>,
        queued: u32,
    }

    impl State {
        fn new(table: usize, parked: usize) -> State {
            State {
                keys: vec![0; table],
                flight: vec![0; table],
                waiting: vec![0; table],
                used: 0,
                parked: vec![None; parked],
                meta: vec![ParkedMeta::default(); parked],
                order: vec![0; parked],
                queued: 0,
            }
        }

        fn lanes(&mut self) -> Lanes<'_, (u32, Vec<u64>)> {
            Lanes {
                keys: &mut self.keys,
                flight: &mut self.flight,
                waiting: &mut self.waiting,
                used: &mut self.used,
                parked: &mut self.parked,
                meta: &mut self.meta,
                order: &mut self.order,
                queued: &mut self.queued,
            }
        }

        fn admit(&mut self, node: u64, id: u32, items: &[u64], replaceable: bool) -> Admission<(u32, Vec<u64>)> {
            let owned = items.to_vec();
            self.lanes().admit(node, items, replaceable, || Some((id, owned)))
        }

        fn done(&mut self, node: u64, items: &[u64]) -> Vec<(u32, Vec<u64>)> {
            self.lanes().done(node, items, |m| m.1.clone())
        }
    }

    #[test]
    fn one_message_per_key_on_its_way_the_next_after_its_answer() {
        let mut s = State::new(64, 8);
        assert_eq!(s.admit(1, 1, &[10], true), Admission::Send);
        assert_eq!(s.admit(1, 2, &[11], true), Admission::Send, "another key goes at once");
        assert_eq!(s.admit(2, 3, &[10], true), Admission::Send, "so does the same key to another node");
        assert_eq!(s.admit(1, 4, &[10], false), Admission::Parked);
        assert_eq!(s.admit(1, 5, &[10], true), Admission::Parked, "the one waiting is not replaceable");
        assert_eq!(s.admit(1, 6, &[10], true), Admission::Coalesced((5, vec![10])));
        assert!(s.done(1, &[11]).is_empty());
        assert_eq!(s.done(1, &[10]), vec![(4, vec![10])], "one at a time");
        assert_eq!(s.done(1, &[10]), vec![(6, vec![10])]);
        assert!(s.done(1, &[10]).is_empty());
        assert!(s.done(2, &[10]).is_empty());
        assert_eq!(s.used, 0, "every entry freed");
        assert!(s.keys.iter().all(|&k| k == 0));
    }

    #[test]
    fn a_batch_waits_for_each_of_its_keys_and_holds_the_ones_behind_it() {
        let mut s = State::new(64, 8);
        assert_eq!(s.admit(1, 1, &[1], true), Admission::Send);
        assert_eq!(s.admit(1, 2, &[1, 2], false), Admission::Parked, "key 1 is on its way");
        assert_eq!(s.admit(1, 3, &[2], true), Admission::Parked, "key 2 waits in the batch before it");
        assert_eq!(s.admit(1, 4, &[3], true), Admission::Send);
        assert_eq!(s.done(1, &[1]), vec![(2, vec![1, 2])]);
        assert!(s.done(1, &[3]).is_empty());
        assert_eq!(s.done(1, &[1, 2]), vec![(3, vec![2])]);
        assert!(s.done(1, &[2]).is_empty());
        assert_eq!(s.used, 0);
    }

    #[test]
    fn no_room_means_untracked_never_reordered_silently() {
        let mut s = State::new(4, 1);
        assert_eq!(s.admit(1, 1, &[1], true), Admission::Send);
        assert_eq!(s.admit(1, 2, &[2], true), Admission::Send);
        assert_eq!(s.admit(1, 3, &[3], true), Admission::Send);
        assert_eq!(s.admit(1, 4, &[4], true), Admission::Untracked, "3 of 4 entries is the most");
        assert_eq!(s.admit(1, 5, &[1], false), Admission::Parked);
        assert_eq!(s.admit(1, 6, &[2], false), Admission::Untracked, "one message may wait");
        assert_eq!(s.used, 3);
        assert_eq!(s.done(1, &[1]), vec![(5, vec![1])]);
    }

    /// A node that applies what it receives, and a sender that writes keys
    /// in a random order of values, whose messages are answered in a random
    /// order (a lost reply, a 503, a timeout, tm: any order at all): the
    /// node applies every key's values in the order they were written.
    #[test]
    fn any_order_of_answers_keeps_each_keys_order() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rand = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for round in 0..200 {
            let mut s = State::new(256, 512);
            let mut written: Vec<u32> = vec![0; 6]; // last value written per key
            let mut applied: Vec<u32> = vec![0; 6];
            let mut on_way: Vec<(u32, Vec<u64>)> = Vec::new();
            let mut value_of: std::collections::HashMap<u32, Vec<(u64, u32)>> = Default::default();
            let mut next_id = 1;
            for _ in 0..300 {
                if rand(3) > 0 || on_way.is_empty() {
                    // A write of one key, or a batch of two.
                    let mut items = vec![rand(6) as u64];
                    if rand(4) == 0 {
                        let other = rand(6) as u64;
                        if other != items[0] {
                            items.push(other);
                        }
                    }
                    let values: Vec<(u64, u32)> = items
                        .iter()
                        .map(|&k| {
                            written[k as usize] += 1;
                            (k, written[k as usize])
                        })
                        .collect();
                    let id = next_id;
                    next_id += 1;
                    value_of.insert(id, values);
                    match s.admit(7, id, &items, items.len() == 1) {
                        Admission::Send => on_way.push((id, items)),
                        Admission::Parked => {}
                        Admission::Coalesced((old, _)) => {
                            value_of.remove(&old);
                        }
                        Admission::Untracked => panic!("round {round}: room enough"),
                    }
                } else {
                    // Some message on its way arrives and is answered.
                    let (id, items) = on_way.swap_remove(rand(on_way.len()));
                    for (k, v) in &value_of[&id] {
                        assert!(*v > applied[*k as usize], "round {round}: key {k} value {v} after {}", applied[*k as usize]);
                        applied[*k as usize] = *v;
                    }
                    on_way.extend(s.done(7, &items));
                }
            }
            while !on_way.is_empty() {
                let (id, items) = on_way.swap_remove(rand(on_way.len()));
                for (k, v) in &value_of[&id] {
                    assert!(*v > applied[*k as usize], "round {round}: key {k}");
                    applied[*k as usize] = *v;
                }
                on_way.extend(s.done(7, &items));
            }
            assert_eq!(applied, written, "round {round}: every key ends at its last value");
            assert_eq!((s.used, s.queued), (0, 0));
        }
    }
}
