//! Any body merged into a node list, then the shm encoding round trip: the
//! local node stays exactly once and decode(encode(list)) == list.
#![no_main]

use dmq_core::node_uri::parse_node_line;
use dmq_core::nodes::NodeList;
use dmq_core::notification::parse_body;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let local = parse_node_line("sip:127.0.0.2:5090").unwrap().uri;
    let mut list = NodeList::with_local(local);
    if let Ok(lines) = parse_body(data) {
        list.merge(&lines, 1);
    }
    assert_eq!(list.nodes.iter().filter(|n| n.local).count(), 1);
    assert_eq!(NodeList::decode(&list.encode()), list);
});
