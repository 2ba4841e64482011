//! What the module registers with Kamailio, read from the one place it is
//! declared: the parameters and statistics from their declarations in
//! dmq_core (`parameters`, `statistics`), the rest from the module's source
//! (`src/exports.rs`, the event routes in `lifecycle.rs` and
//! `peer_events.rs`): the lists the guide test and the statistics tests
//! compare against.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

fn source(file: &str) -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Lines without their `//` comments.
fn code(text: &str) -> String {
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// The C string literal after each `marker` (whitespace before it skipped):
/// `marker c"name"` gives `name`.
fn literals_after(text: &str, marker: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in text.split(marker).skip(1) {
        let part = part.trim_start();
        if let Some(rest) = part.strip_prefix("c\"") {
            out.push(rest.split('"').next().unwrap_or("").to_string());
        }
    }
    out
}

/// Everything registered, by kind.
pub struct Registered {
    pub params: BTreeSet<String>,
    /// Script functions (names, once whatever the arities).
    pub functions: BTreeSet<String>,
    /// `find_export` APIs (`bind_dmq`).
    pub apis: BTreeSet<String>,
    /// KEMI functions, without the `dmq.` prefix.
    pub kemi: BTreeSet<String>,
    pub rpcs: BTreeSet<String>,
    pub statistics: Vec<String>,
    pub event_routes: BTreeSet<String>,
}

pub fn registered() -> Registered {
    let exports = code(&source("src/exports.rs"));
    let params = dmq_core::parameters::PARAMETERS.iter().map(|p| p.name.to_string()).collect();
    let functions = literals_after(&exports, "cmd!(").into_iter().collect();
    let apis = literals_after(&exports, "CmdExport::api(").into_iter().collect();
    let kemi = literals_after(&exports, "kemi!(c\"dmq\",").into_iter().collect();
    let rpcs = literals_after(&exports, "rpc!(").into_iter().collect();
    let statistics = dmq_core::statistics::STATISTICS.iter().map(|s| s.name.to_string()).collect();
    let event_routes =
        ["src/lifecycle.rs", "src/peer_events.rs"].iter().flat_map(|f| literals_after(&code(&source(f)), "EventRoute::lookup(")).collect();
    let r = Registered { params, functions, apis, kemi, rpcs, statistics, event_routes };
    // A parser that finds nothing would make every comparison pass.
    assert!(
        !r.params.is_empty() && !r.functions.is_empty() && !r.kemi.is_empty() && !r.rpcs.is_empty() && !r.statistics.is_empty(),
        "cannot read the registered names from src/"
    );
    r
}
