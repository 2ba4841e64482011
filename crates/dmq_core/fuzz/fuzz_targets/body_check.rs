//! Any bytes as a peer message body, for each known consumer and for a
//! JSON peer: the check must return, never panic or overflow the stack,
//! and whatever it accepts as JSON a strict parser must accept too.
#![no_main]

use dmq_core::body_check::check;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for peer in ["usrloc", "htable", "dialog", "presence", "other"] {
        let verdict = check(peer, "application/json", data);
        if verdict.is_ok() {
            // Raw non-UTF-8 bytes inside strings pass the check (srjson
            // takes them); serde_json only judges UTF-8 input.
            if let Ok(text) = std::str::from_utf8(data) {
                serde_json::from_str::<serde_json::de::IgnoredAny>(text).expect("accepted, so strict JSON");
            }
        }
    }
});
