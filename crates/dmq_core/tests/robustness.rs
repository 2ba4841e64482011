//! The fuzz targets' properties (see crates/dmq_core/fuzz), run on a fixed pseudo-random
//! corpus so that every `make test` exercises them without nightly Rust:
//! random bytes and mutations of valid bodies never panic the parser, a
//! body we build always parses, the local node stays exactly once and the
//! shm encoding round-trips.

use dmq_core::node_status::NodeStatus;
use dmq_core::node_uri::parse_node_line;
use dmq_core::nodes::{FailurePolicy, NodeList};
use dmq_core::notification::{build_body, parse_body};

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SEEDS: &[&[u8]] = &[
    b"sip:127.0.0.2:5090;status=active\r\nsip:127.0.0.3:5090;status=pending\r\n",
    b"sip:[::1]:5060;transport=tcp;status=disabled\r\nsip:host.example;status=timeout",
    b"sip:notification_peer@10.0.0.1:5060;status=not-active\n",
    b"sips:a-b.c_d:1;transport=tls;status=active\r\n\r\n",
];

const ALPHABET: &[u8] = b"sip:;=@[]:.\r\n\0\xff0123456789abcdefstatusactivetransporttcpudp";

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(6) {
        match rng.below(4) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out.remove(i);
            }
            1 => {
                let i = rng.below(out.len() + 1);
                out.insert(i, ALPHABET[rng.below(ALPHABET.len())]);
            }
            2 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = rng.next() as u8;
            }
            _ => {
                let i = rng.below(out.len() + 1);
                let j = rng.below(out.len() + 1);
                let (lo, hi) = (i.min(j), i.max(j));
                let chunk = out[lo..hi].to_vec();
                out.splice(i..i, chunk);
            }
        }
    }
    out
}

fn check(data: &[u8]) {
    let local = parse_node_line("sip:127.0.0.2:5090").unwrap().uri;
    let mut list = NodeList::with_local(local.clone());
    if let Ok(lines) = parse_body(data) {
        let rebuilt = build_body(lines.iter().map(|l| (&l.uri, l.status.unwrap_or(NodeStatus::Pending))));
        let again = parse_body(rebuilt.as_bytes()).unwrap_or_else(|e| panic!("built body {rebuilt:?} does not parse: {e}"));
        assert_eq!(again.len(), lines.len());
        list.merge(&lines, 1);
        let policy = FailurePolicy { remove_inactive: true, fail_count_threshold: None };
        for l in &lines {
            list.mark_failed(&l.uri, false, policy);
        }
    }
    assert_eq!(list.nodes.iter().filter(|n| n.local).count(), 1);
    assert_eq!(NodeList::decode(&list.encode()), list, "encoding round trip of {data:?}");
}

#[test]
fn random_and_mutated_bodies_never_break_the_parser_or_the_node_list() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for seed in SEEDS {
        check(seed);
    }
    for _ in 0..50_000 {
        let data = if rng.below(4) == 0 {
            (0..rng.below(200)).map(|_| rng.next() as u8).collect()
        } else {
            let seed = SEEDS[rng.below(SEEDS.len())];
            mutate(&mut rng, seed)
        };
        check(&data);
    }
}
