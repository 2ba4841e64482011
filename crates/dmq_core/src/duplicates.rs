//! Copies of a peer message received more than once: a retransmission
//! (over UDP, until the first reply reaches the sender; after a lost
//! reply; a stream copy after silence) carries the same Call-ID, CSeq and
//! From as the first copy. Applying it again is harmless only while
//! nothing newer for its items was applied in between: a retransmission
//! that waits in one worker while the next update of the same item, sent
//! after the first copy's answer, runs in another would undo that update.
//! So a copy seen before is never handed to the consumer again: one still
//! queued or running is absorbed, one done is answered again with the
//! first copy's code.
//!
//! A small two-way set-associative table of the messages seen lately
//! (plain data, kept by the caller in shm under a lock): a set holds two
//! entries, and a new one replaces the older. An entry lives until
//! replaced: with `N` entries and `r` messages a second, about `N / r`
//! seconds, far beyond a retransmission's life at the rates a node takes
//! (32 768 entries: 8 s at 4 000 messages a second).

use crate::fnv::fnv;

/// What became of a message looked up in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First seen now: it is noted as under way.
    New,
    /// A copy is queued or running now.
    UnderWay,
    /// A copy was answered with this code.
    Answered(u16),
}

/// The key of a request: its Call-ID, CSeq number and From (with its tag).
pub fn key(call_id: &[u8], cseq_number: &[u8], from: &[u8]) -> u64 {
    let k = fnv(&[call_id, cseq_number, from]);
    if k == 0 {
        1
    } else {
        k
    }
}

/// The table: `keys[i] == 0` is empty; `codes[i]` 0 while under way;
/// `ages[i]` when the entry was made (a counter, `clock`).
pub struct SeenTable<'a> {
    pub keys: &'a mut [u64],
    pub codes: &'a mut [u16],
    pub ages: &'a mut [u64],
    pub clock: &'a mut u64,
}

impl SeenTable<'_> {
    fn set(&self, key: u64) -> usize {
        let sets = (self.keys.len() / 2).max(1);
        (key as usize % sets) * 2
    }

    fn find(&self, key: u64) -> Option<usize> {
        let s = self.set(key);
        (s..(s + 2).min(self.keys.len())).find(|&i| self.keys[i] == key)
    }

    /// Looks `key` up; a new one is noted as under way.
    pub fn arrived(&mut self, key: u64) -> Seen {
        if self.keys.is_empty() {
            return Seen::New;
        }
        if let Some(i) = self.find(key) {
            return match self.codes[i] {
                0 => Seen::UnderWay,
                code => Seen::Answered(code),
            };
        }
        let s = self.set(key);
        let i = if s + 1 < self.keys.len() && self.ages[s + 1] < self.ages[s] { s + 1 } else { s };
        *self.clock += 1;
        (self.keys[i], self.codes[i], self.ages[i]) = (key, 0, *self.clock);
        Seen::New
    }

    /// The message `key` was answered with `code` (a final code; 0 or
    /// below 200 leaves it under way).
    pub fn answered(&mut self, key: u64, code: u16) {
        if let Some(i) = self.find(key) {
            self.codes[i] = if code >= 200 { code } else { 0 };
        }
    }

    /// The message `key` was not handled after all (refused, the queue
    /// full): a later copy is a first one.
    pub fn forget(&mut self, key: u64) {
        if let Some(i) = self.find(key) {
            (self.keys[i], self.codes[i], self.ages[i]) = (0, 0, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct State {
        keys: Vec<u64>,
        codes: Vec<u16>,
        ages: Vec<u64>,
        clock: u64,
    }

    impl State {
        fn new(n: usize) -> State {
            State { keys: vec![0; n], codes: vec![0; n], ages: vec![0; n], clock: 0 }
        }
        fn table(&mut self) -> SeenTable<'_> {
            SeenTable { keys: &mut self.keys, codes: &mut self.codes, ages: &mut self.ages, clock: &mut self.clock }
        }
    }

    #[test]
    fn a_copy_under_way_is_absorbed_and_one_answered_is_answered_again() {
        let mut s = State::new(8);
        let k = key(b"call-1", b"1", b"<sip:a>;tag=x");
        assert_eq!(s.table().arrived(k), Seen::New);
        assert_eq!(s.table().arrived(k), Seen::UnderWay);
        s.table().answered(k, 100);
        assert_eq!(s.table().arrived(k), Seen::UnderWay, "a provisional answer is no final one");
        s.table().answered(k, 200);
        assert_eq!(s.table().arrived(k), Seen::Answered(200));
        assert_ne!(key(b"call-1", b"2", b"<sip:a>;tag=x"), k, "another CSeq is another message");
        assert_ne!(key(b"call-1", b"1", b"<sip:a>;tag=y"), k);
    }

    #[test]
    fn the_older_of_a_set_gives_way() {
        let mut s = State::new(2); // one set of two
        assert_eq!(s.table().arrived(10), Seen::New);
        assert_eq!(s.table().arrived(20), Seen::New);
        assert_eq!(s.table().arrived(30), Seen::New, "replaces 10, the older");
        assert_eq!(s.table().arrived(20), Seen::UnderWay);
        assert_eq!(s.table().arrived(10), Seen::New, "10 was forgotten: seen as new");
    }

    #[test]
    fn a_forgotten_message_is_new_again() {
        let mut s = State::new(8);
        assert_eq!(s.table().arrived(5), Seen::New);
        s.table().forget(5);
        assert_eq!(s.table().arrived(5), Seen::New);
        let mut empty = State::new(0);
        assert_eq!(empty.table().arrived(5), Seen::New, "no table: nothing is a duplicate");
    }
}
