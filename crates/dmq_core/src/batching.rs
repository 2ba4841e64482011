//! Batching of dmq_usrloc's updates: the rules the module's
//! `usrloc_batches` applies to its state in shm.
//!
//! An update to a node that already has a batchable message waiting for
//! its reply waits in that node's batch instead (at most
//! [`BATCH_UPDATES`] of them, [`BATCH_BYTES`] of body); when the reply
//! comes, the batch goes as one `multi` message, the form dmq_usrloc itself
//! sends its sync batches in and every dmq_usrloc (stock or not) reads. A
//! node that answers fast gets each update alone; a busy one gets fewer,
//! fuller messages: every message costs its receiver a parse, a reply and
//! a q_malloc per header, whatever it carries.
//!
//! The state is plain data (the caller keeps it in shm under a lock it
//! holds while calling in here); each node's open batch is the caller's
//! `B` (a shm block), opaque here but for the closure that fills it.

use std::net::{IpAddr, SocketAddr};

/// The peer whose updates are batched, and the form they must have.
pub const BATCHED_PEER: &str = "usrloc";
pub const BATCHED_CONTENT_TYPE: &str = "application/json";
/// Nodes that may have a batch at once (more: their updates go alone).
pub const BATCH_NODES: usize = 64;
/// Updates in a batch at most.
pub const BATCH_UPDATES: u32 = 32;
/// Batchable messages that may wait for their replies per node: past it
/// a sender that may wait (a DMQ worker, e.g. running a sync) waits for
/// room in the node's batch instead of sending more alone. Without it a
/// sync sends thousands at once, more than the receiver's socket buffer
/// holds: the ones dropped come again after T1, and it handles those twice.
pub const NODE_WINDOW: u32 = 64;
/// A batch's body at most: a few Ethernet frames' worth, well below
/// dmq_usrloc's own sync batches (up to 60 000 bytes) and Kamailio 6.0's
/// `msg_recv_max_size` (32 767).
pub const BATCH_BYTES: usize = 7600;

/// Whether a peer message is a dmq_usrloc update that may wait in a
/// node's batch: one update (a batch of several is already a batch), in
/// the form dmq_usrloc sends, for the next hop only.
pub fn is_batchable(peer_id: &str, content_type: &str, max_forwards: i32, body: &[u8]) -> bool {
    peer_id == BATCHED_PEER
        && content_type == BATCHED_CONTENT_TYPE
        && max_forwards == 1
        && crate::body_check::is_single_update(peer_id, body)
}

/// A node's address as the state keys it: IPv4 as IPv6-mapped, and the port.
pub fn node_key(addr: SocketAddr) -> ([u8; 16], u16) {
    let ip = match addr.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    (ip, addr.port())
}

/// What becomes of an update offered to its node's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// It waits in the node's batch: nothing to send now.
    Batched,
    /// It goes now, counted among the node's messages waiting for a reply:
    /// its reply sends the node's batch, if any.
    SendFlushingOnReply,
    /// It goes now, on its own and not counted (no node entry free).
    SendAlone,
    /// The node's window is full and so is its batch: the sender waits and
    /// offers again, or goes past the window ([`NodeBatches::pass_window`]).
    WindowFull,
    /// The node needs a new batch: the caller makes one (outside its lock)
    /// and offers again with it as the spare. None made: send it alone.
    NeedsNewBatch,
}

/// What became of an update offered to a batch (`join`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    /// It is in the batch now.
    Joined,
    /// The batch has no room for it, or takes another response callback.
    NoRoom,
    /// The batch is empty and still cannot take it (too big for any batch).
    TooBig,
}

/// Adds `update` to the `multi` body being built in `bytes`, which holds
/// `*updates` updates in its first `*used` bytes, if the batch takes the
/// update's callback (`same_callback`) and has room for it (and for the
/// closing `}}`, [`finish`]). `{"multi":{"0":{…},"1":{…}}`: member names
/// as dmq_usrloc ignores them.
pub fn join(bytes: &mut [u8], updates: &mut u32, used: &mut u32, same_callback: bool, update: &[u8]) -> Join {
    let no_room = if *updates == 0 { Join::TooBig } else { Join::NoRoom };
    if !same_callback || *updates >= BATCH_UPDATES {
        return no_room;
    }
    let prefix = if *updates == 0 { "{\"multi\":{\"0\":".to_string() } else { format!(",\"{updates}\":") };
    let start = *used as usize;
    let end = start + prefix.len() + update.len();
    if end + 2 > BATCH_BYTES.min(bytes.len()) {
        return no_room;
    }
    bytes[start..start + prefix.len()].copy_from_slice(prefix.as_bytes());
    bytes[start + prefix.len()..end].copy_from_slice(update);
    *updates += 1;
    *used = end as u32;
    Join::Joined
}

/// The `multi` body of a batch whose first `used` bytes are filled.
pub fn finish(bytes: &[u8], used: u32) -> Vec<u8> {
    let filled = &bytes[..(used as usize).min(bytes.len())];
    let mut body = Vec::with_capacity(filled.len() + 2);
    body.extend_from_slice(filled);
    body.extend_from_slice(b"}}");
    body
}

/// A view of the batching state of up to [`BATCH_NODES`] nodes, one entry
/// per index in each slice (all of the same length).
pub struct NodeBatches<'a, B> {
    /// The entry belongs to a node.
    pub used: &'a mut [bool],
    /// The node's address ([`node_key`]).
    pub ips: &'a mut [[u8; 16]],
    pub ports: &'a mut [u16],
    /// Batchable messages to the node waiting for their reply: each sends
    /// the open batch, if any, when it completes.
    pub in_flight: &'a mut [u32],
    /// Updates waiting for one of those.
    pub open: &'a mut [Option<B>],
}

impl<B> NodeBatches<'_, B> {
    fn find(&self, to: SocketAddr) -> Option<usize> {
        let (ip, port) = node_key(to);
        (0..self.used.len()).find(|&i| self.used[i] && self.ips[i] == ip && self.ports[i] == port)
    }

    /// Offers an update to `to`: into its batch while a batchable message
    /// to `to` waits for its reply (`join` adds it to a batch), else sent
    /// now and counted as one. A node without a batch takes the `spare`
    /// one, if given (else the answer is [`Placement::NeedsNewBatch`]).
    pub fn offer(&mut self, to: SocketAddr, spare: &mut Option<B>, join: impl FnOnce(&mut B) -> Join) -> Placement {
        let i = match self.find(to) {
            Some(i) => i,
            None => {
                let Some(i) = self.used.iter().position(|used| !used) else { return Placement::SendAlone };
                (self.ips[i], self.ports[i]) = node_key(to);
                (self.used[i], self.in_flight[i]) = (true, 0);
                i
            }
        };
        if self.in_flight[i] == 0 {
            self.in_flight[i] = 1;
            return Placement::SendFlushingOnReply;
        }
        if self.open[i].is_none() {
            let Some(fresh) = spare.take() else { return Placement::NeedsNewBatch };
            self.open[i] = Some(fresh);
        }
        let joined = match self.open[i].as_mut() {
            Some(batch) => join(batch),
            None => Join::NoRoom,
        };
        match joined {
            Join::Joined => Placement::Batched,
            Join::TooBig => {
                // It goes alone; no empty batch stays.
                self.open[i] = None;
                self.in_flight[i] += 1;
                Placement::SendFlushingOnReply
            }
            Join::NoRoom if self.in_flight[i] >= NODE_WINDOW => Placement::WindowFull,
            Join::NoRoom => {
                // The batch is full: this one goes, and sends it when answered.
                self.in_flight[i] += 1;
                Placement::SendFlushingOnReply
            }
        }
    }

    /// A sender that may not wait any longer on a full window: it goes
    /// now, counted like the others when the node still has its entry.
    pub fn pass_window(&mut self, to: SocketAddr) -> Placement {
        match self.find(to) {
            Some(i) => {
                self.in_flight[i] += 1;
                Placement::SendFlushingOnReply
            }
            None => Placement::SendAlone,
        }
    }

    /// A batchable message to `to` is done (answered, timed out, or never
    /// sent): the node's open batch, if any, is returned to be sent now
    /// (and counted as waiting for its reply).
    pub fn message_done(&mut self, to: SocketAddr) -> Option<B> {
        let i = self.find(to)?;
        self.in_flight[i] = self.in_flight[i].saturating_sub(1);
        let open = self.open[i].take();
        if open.is_some() {
            self.in_flight[i] += 1;
        } else if self.in_flight[i] == 0 {
            self.used[i] = false;
        }
        open
    }

    /// A batch [`message_done`](Self::message_done) returned could not be
    /// sent. While other messages to the node wait for their replies (and
    /// it has no new batch), it waits for the next of them: replies free the
    /// slots it lacked. Otherwise it is handed back, to be sent another way.
    pub fn batch_not_sent(&mut self, to: SocketAddr, batch: B) -> Option<B> {
        let Some(i) = self.find(to) else { return Some(batch) };
        self.in_flight[i] = self.in_flight[i].saturating_sub(1);
        if self.open[i].is_some() {
            return Some(batch);
        }
        if self.in_flight[i] > 0 {
            self.open[i] = Some(batch);
            return None;
        }
        self.used[i] = false;
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch as the tests keep it: callback id, updates, bytes used, body.
    #[derive(Debug, PartialEq)]
    struct TestBatch {
        callback: u32,
        updates: u32,
        used: u32,
        bytes: Vec<u8>,
    }

    impl TestBatch {
        fn new(callback: u32) -> TestBatch {
            TestBatch { callback, updates: 0, used: 0, bytes: vec![0; BATCH_BYTES] }
        }

        fn join(&mut self, callback: u32, update: &[u8]) -> Join {
            join(&mut self.bytes, &mut self.updates, &mut self.used, self.callback == callback, update)
        }

        fn body(&self) -> Vec<u8> {
            finish(&self.bytes, self.used)
        }
    }

    struct State {
        used: Vec<bool>,
        ips: Vec<[u8; 16]>,
        ports: Vec<u16>,
        in_flight: Vec<u32>,
        open: Vec<Option<TestBatch>>,
    }

    impl State {
        fn new(nodes: usize) -> State {
            State {
                used: vec![false; nodes],
                ips: vec![[0; 16]; nodes],
                ports: vec![0; nodes],
                in_flight: vec![0; nodes],
                open: (0..nodes).map(|_| None).collect(),
            }
        }

        fn view(&mut self) -> NodeBatches<'_, TestBatch> {
            NodeBatches {
                used: &mut self.used,
                ips: &mut self.ips,
                ports: &mut self.ports,
                in_flight: &mut self.in_flight,
                open: &mut self.open,
            }
        }

        /// Offers as the module does: a new batch made when asked for.
        fn offer(&mut self, to: SocketAddr, callback: u32, update: &[u8]) -> Placement {
            let mut spare = None;
            loop {
                match self.view().offer(to, &mut spare, |b| b.join(callback, update)) {
                    Placement::NeedsNewBatch => spare = Some(TestBatch::new(callback)),
                    placed => return placed,
                }
            }
        }
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    const UPDATE: &[u8] = br#"{"action":1,"aor":"a"}"#;

    #[test]
    fn only_single_usrloc_json_updates_for_the_next_hop_are_batchable() {
        let update = br#"{"action":1,"aor":"alice","ruid":"r1","c":"sip:alice@10.0.0.9"}"#;
        assert!(is_batchable("usrloc", "application/json", 1, update));
        assert!(!is_batchable("htable", "application/json", 1, update));
        assert!(!is_batchable("usrloc", "text/plain", 1, update));
        assert!(!is_batchable("usrloc", "application/json", 2, update));
        assert!(!is_batchable("usrloc", "application/json", 1, br#"{"multi":{"0":{"action":1}}}"#));
    }

    #[test]
    fn ipv4_is_keyed_as_ipv6_mapped() {
        assert_eq!(node_key(addr("10.0.0.1:5060")), node_key(addr("[::ffff:10.0.0.1]:5060")));
        assert_ne!(node_key(addr("10.0.0.1:5060")), node_key(addr("10.0.0.1:5061")));
    }

    #[test]
    fn the_multi_body_names_updates_by_number() {
        let mut batch = TestBatch::new(7);
        assert_eq!(batch.join(7, b"{\"a\":1}"), Join::Joined);
        assert_eq!(batch.join(7, b"{\"b\":2}"), Join::Joined);
        assert_eq!(batch.join(7, b"{\"c\":3}"), Join::Joined);
        assert_eq!(batch.body(), br#"{"multi":{"0":{"a":1},"1":{"b":2},"2":{"c":3}}}"#.to_vec());
        assert_eq!(batch.updates, 3);
        let parsed: serde_json::Value = serde_json::from_slice(&batch.body()).unwrap();
        assert_eq!(parsed["multi"]["2"]["c"], 3);
    }

    #[test]
    fn a_batch_takes_only_its_first_updates_callback() {
        let mut batch = TestBatch::new(1);
        assert_eq!(batch.join(1, UPDATE), Join::Joined);
        assert_eq!(batch.join(2, UPDATE), Join::NoRoom);
    }

    #[test]
    fn a_batch_is_full_by_count() {
        let mut batch = TestBatch::new(1);
        for _ in 0..BATCH_UPDATES {
            assert_eq!(batch.join(1, UPDATE), Join::Joined);
        }
        assert_eq!(batch.join(1, UPDATE), Join::NoRoom);
        assert_eq!(batch.updates, BATCH_UPDATES);
    }

    #[test]
    fn a_batch_is_full_by_bytes_with_room_for_its_end() {
        let mut batch = TestBatch::new(1);
        let prefix = "{\"multi\":{\"0\":".len();
        // Exactly fills the body with the closing "}}".
        let update = vec![b'x'; BATCH_BYTES - prefix - 2];
        assert_eq!(batch.join(1, &update), Join::Joined);
        assert_eq!(batch.body().len(), BATCH_BYTES);
        assert_eq!(batch.join(1, b"{}"), Join::NoRoom);
        // One byte more fits no batch.
        let mut empty = TestBatch::new(1);
        assert_eq!(empty.join(1, &vec![b'x'; BATCH_BYTES - prefix - 1]), Join::TooBig);
        assert_eq!((empty.updates, empty.used), (0, 0));
    }

    #[test]
    fn the_first_update_goes_and_the_next_wait_for_its_reply() {
        let mut s = State::new(4);
        let to = addr("10.0.0.2:5060");
        assert_eq!(s.offer(to, 1, UPDATE), Placement::SendFlushingOnReply);
        assert_eq!(s.offer(to, 1, UPDATE), Placement::Batched);
        assert_eq!(s.offer(to, 1, UPDATE), Placement::Batched);
        // Another node has its own entry.
        assert_eq!(s.offer(addr("10.0.0.3:5060"), 1, UPDATE), Placement::SendFlushingOnReply);
        // The reply: the batch goes, counted as waiting.
        let batch = s.view().message_done(to).unwrap();
        assert_eq!(batch.updates, 2);
        assert_eq!(s.in_flight[0], 1);
        // Its reply: nothing left, the entry is free again.
        assert!(s.view().message_done(to).is_none());
        assert!(!s.used[0]);
        // Settling an unknown node does nothing.
        assert!(s.view().message_done(addr("10.9.9.9:1")).is_none());
    }

    #[test]
    fn a_full_batch_lets_more_go_up_to_the_window() {
        let mut s = State::new(1);
        let to = addr("10.0.0.2:5060");
        assert_eq!(s.offer(to, 1, UPDATE), Placement::SendFlushingOnReply);
        for _ in 0..BATCH_UPDATES {
            assert_eq!(s.offer(to, 1, UPDATE), Placement::Batched);
        }
        for waiting in 2..=NODE_WINDOW {
            assert_eq!(s.offer(to, 1, UPDATE), Placement::SendFlushingOnReply);
            assert_eq!(s.in_flight[0], waiting);
        }
        assert_eq!(s.offer(to, 1, UPDATE), Placement::WindowFull);
        assert_eq!(s.view().pass_window(to), Placement::SendFlushingOnReply);
        assert_eq!(s.in_flight[0], NODE_WINDOW + 1);
        assert_eq!(s.view().pass_window(addr("10.0.0.3:5060")), Placement::SendAlone);
    }

    #[test]
    fn another_callback_goes_without_waiting_in_the_batch() {
        let mut s = State::new(1);
        let to = addr("10.0.0.2:5060");
        s.offer(to, 1, UPDATE);
        assert_eq!(s.offer(to, 1, UPDATE), Placement::Batched);
        assert_eq!(s.offer(to, 2, UPDATE), Placement::SendFlushingOnReply);
        assert_eq!(s.in_flight[0], 2);
    }

    #[test]
    fn an_update_too_big_for_a_batch_goes_and_leaves_no_empty_batch() {
        let mut s = State::new(1);
        let to = addr("10.0.0.2:5060");
        s.offer(to, 1, UPDATE);
        assert_eq!(s.offer(to, 1, &vec![b'x'; BATCH_BYTES]), Placement::SendFlushingOnReply);
        assert!(s.open[0].is_none());
        assert_eq!(s.in_flight[0], 2);
    }

    #[test]
    fn no_free_entry_sends_alone() {
        let mut s = State::new(1);
        s.offer(addr("10.0.0.2:5060"), 1, UPDATE);
        assert_eq!(s.offer(addr("10.0.0.3:5060"), 1, UPDATE), Placement::SendAlone);
    }

    #[test]
    fn a_new_batch_is_asked_for_once_and_the_spare_taken() {
        let mut s = State::new(1);
        let to = addr("10.0.0.2:5060");
        let mut spare = None;
        assert_eq!(s.view().offer(to, &mut spare, |_| unreachable!()), Placement::SendFlushingOnReply);
        assert_eq!(s.view().offer(to, &mut spare, |_| unreachable!()), Placement::NeedsNewBatch);
        spare = Some(TestBatch::new(1));
        assert_eq!(s.view().offer(to, &mut spare, |b| b.join(1, UPDATE)), Placement::Batched);
        assert!(spare.is_none());
        // A batch open already: a spare made meanwhile stays the caller's.
        spare = Some(TestBatch::new(1));
        assert_eq!(s.view().offer(to, &mut spare, |b| b.join(1, UPDATE)), Placement::Batched);
        assert!(spare.is_some());
    }

    #[test]
    fn a_batch_not_sent_waits_for_the_next_reply_or_goes_back() {
        let mut s = State::new(1);
        let to = addr("10.0.0.2:5060");
        s.offer(to, 1, UPDATE);
        s.offer(to, 1, UPDATE);
        s.offer(to, 2, UPDATE); // a second message waiting, another callback
        let batch = s.view().message_done(to).unwrap();
        assert_eq!(s.in_flight[0], 2);
        // The other message still waits: the batch waits for its reply.
        assert!(s.view().batch_not_sent(to, batch).is_none());
        assert_eq!(s.in_flight[0], 1);
        let batch = s.view().message_done(to).unwrap();
        // Nothing else waits: handed back, the entry freed.
        let back = s.view().batch_not_sent(to, batch);
        assert_eq!(back.map(|b| b.updates), Some(1));
        assert!(!s.used[0]);
    }

    #[test]
    fn a_batch_not_sent_goes_back_when_a_new_one_opened_meanwhile() {
        let mut s = State::new(1);
        let to = addr("10.0.0.2:5060");
        s.offer(to, 1, UPDATE);
        s.offer(to, 1, UPDATE);
        let batch = s.view().message_done(to).unwrap();
        // Meanwhile another update joins a new batch (the first counts).
        assert_eq!(s.offer(to, 1, UPDATE), Placement::Batched);
        assert!(s.view().batch_not_sent(to, batch).is_some());
        // The new batch stays, with nothing waiting: the next update goes
        // now and sends it on its reply.
        assert!(s.used[0] && s.open[0].is_some());
        assert_eq!(s.in_flight[0], 0);
        assert_eq!(s.offer(to, 1, UPDATE), Placement::SendFlushingOnReply);
        assert_eq!(s.view().message_done(to).map(|b| b.updates), Some(1));
    }
}
