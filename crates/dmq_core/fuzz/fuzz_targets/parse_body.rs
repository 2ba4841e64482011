//! Any bytes as a KDMQ notification body: the parser must return, never
//! panic, and whatever it accepts must survive a build/parse round trip.
#![no_main]

use dmq_core::notification::{build_body, parse_body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(lines) = parse_body(data) {
        let rebuilt = build_body(lines.iter().map(|l| (&l.uri, l.status.unwrap_or(dmq_core::node_status::NodeStatus::Pending))));
        let again = parse_body(rebuilt.as_bytes()).expect("a body we built must parse");
        assert_eq!(again.len(), lines.len());
        for (a, b) in again.iter().zip(&lines) {
            assert!(a.uri.same_node(&b.uri));
        }
    }
});
