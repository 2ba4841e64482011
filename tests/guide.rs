//! The admin guide (doc/dmq_rs.md) documents exactly what the
//! module registers — every parameter, script function, RPC command,
//! statistic, event route, KEMI function and API — and nothing it does not.
//! The registered names come from their declarations (common::registered:
//! the parameters and statistics from dmq_core, the rest from src/);
//! the guide's from its sections: `### N.M. \`name…\`` headings, and for
//! the statistics the rows of the table (`| \`name\` | …`). The parameters'
//! types and defaults and the statistics' kinds are checked too, and one
//! node started with every declared parameter shows the running module
//! takes each of them.

mod common;

use std::collections::BTreeSet;

use common::registered::registered;
use common::{Node, NodeConfig};
use dmq_core::parameters::{Kind, Parameter, PARAMETERS, UNSET};
use dmq_core::statistics::{DETAILS, STATISTICS, WORKER_FIELDS};

/// The guide's sections ("## 4. Parameters" → "Parameters") with their text.
fn sections(guide: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in guide.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            let title = title.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.' || c == ' ');
            out.push((title.to_string(), String::new()));
        } else if let Some((_, text)) = out.last_mut() {
            *text += line;
            *text += "\n";
        }
    }
    out
}

fn section<'a>(all: &'a [(String, String)], title: &str) -> &'a str {
    all.iter().find(|(t, _)| t == title).map(|(_, text)| text.as_str()).unwrap_or_else(|| panic!("doc/dmq_rs.md has no section {title:?}"))
}

/// The identifiers of a section's `### N.M. \`name(args)\`` headings,
/// without `prefix` and what follows the name (`(`, `]`).
fn headings(text: &str, prefix: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("### "))
        .filter_map(|h| h.split('`').nth(1))
        .map(|name| name.trim_start_matches(prefix).split(['(', ']']).next().unwrap_or("").to_string())
        .collect()
}

/// The first cell of each table row: `| \`name\` | …`.
fn table_names(text: &str) -> BTreeSet<String> {
    text.lines().filter_map(|l| l.strip_prefix("| `")).filter_map(|l| l.split('`').next()).map(str::to_string).collect()
}

fn same(kind: &str, registered: &BTreeSet<String>, documented: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    for missing in registered.difference(documented) {
        problems.push(format!("{kind} {missing:?} is registered but not in doc/dmq_rs.md"));
    }
    for stale in documented.difference(registered) {
        problems.push(format!("{kind} {stale:?} is in doc/dmq_rs.md but the module does not register it"));
    }
    problems
}

#[test]
fn the_guide_documents_everything_the_module_registers_and_nothing_else() {
    let guide = guide();
    let all = sections(&guide);
    let r = registered();
    let statistics: BTreeSet<String> = r.statistics.iter().cloned().collect();
    assert_eq!(statistics.len(), r.statistics.len(), "a statistic is declared twice: {:?}", r.statistics);
    let mut problems = Vec::new();
    problems.extend(same("parameter", &r.params, &headings(section(&all, "Parameters"), "")));
    problems.extend(same("function", &r.functions, &headings(section(&all, "Functions"), "")));
    problems.extend(same("RPC command", &r.rpcs, &headings(section(&all, "RPC Commands"), "")));
    problems.extend(same("statistic", &statistics, &table_names(section(&all, "Statistics"))));
    problems.extend(same("event route", &r.event_routes, &headings(section(&all, "Event Routes"), "event_route[")));
    problems.extend(same("KEMI function", &r.kemi, &headings(section(&all, "KEMI Functions"), "KSR.dmq.")));
    problems.extend(same("API", &r.apis, &headings(section(&all, "API"), "")));
    assert!(problems.is_empty(), "the guide and the module disagree:\n  {}", problems.join("\n  "));
}

fn guide() -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("doc/dmq_rs.md")).unwrap()
}

/// The heading `### N.M. \`name\`…` of `name` and the text under it, up to
/// the next heading.
fn entry<'a>(section: &'a str, name: &str) -> Option<(&'a str, &'a str)> {
    let mut lines = section.split_inclusive('\n');
    let heading = lines.find(|l| l.starts_with("### ") && l.split('`').nth(1) == Some(name))?;
    let body = &section[section.find(heading)? + heading.len()..];
    let end = body.find("\n### ").unwrap_or(body.len());
    Some((heading.trim_end(), &body[..end]))
}

#[test]
fn the_guide_gives_each_parameter_its_declared_type_and_default() {
    let all = sections(&guide());
    let text = section(&all, "Parameters");
    let mut problems = Vec::new();
    for p in PARAMETERS {
        let Some((heading, body)) = entry(text, p.name) else {
            problems.push(format!("{}: no heading", p.name));
            continue;
        };
        if !heading.ends_with(&format!("` ({})", p.kind.word())) {
            problems.push(format!("{}: the heading {heading:?} does not say ({})", p.name, p.kind.word()));
        }
        // UNSET thresholds: the guide gives what "not set" comes to.
        let default = match p.kind {
            Kind::Int { default } if default != UNSET => Some(default.to_string()),
            Kind::Str { default: Some(d) } => Some(format!("`{d}`")),
            _ => None,
        };
        if let Some(default) = default {
            if !body.contains(&format!("Default value: {default}.")) {
                problems.push(format!("{}: the guide does not say \"Default value: {default}.\"", p.name));
            }
        }
    }
    assert!(problems.is_empty(), "the guide and dmq_core::parameters disagree:\n  {}", problems.join("\n  "));
}

#[test]
fn the_guide_gives_each_statistic_its_declared_kind_and_lists_the_rpc_details() {
    let guide = guide();
    let all = sections(&guide);
    let table = section(&all, "Statistics");
    let mut problems = Vec::new();
    for s in STATISTICS {
        let row = format!("| `{}` | {} |", s.name, s.kind.word());
        if !table.lines().any(|l| l.starts_with(&row)) {
            problems.push(format!("the statistics table has no row starting {row:?}"));
        }
    }
    // dmq.stats: the statistics (by reference to section 7), its details
    // (a table, exactly) and the per-worker fields, each by name.
    let (_, rpc) = entry(section(&all, "RPC Commands"), "dmq.stats").expect("a dmq.stats entry");
    let details: BTreeSet<String> = DETAILS.iter().map(|d| d.name.to_string()).collect();
    problems.extend(same("dmq.stats detail", &details, &table_names(rpc)));
    for name in WORKER_FIELDS {
        if !rpc.contains(&format!("`{name}`")) {
            problems.push(format!("the dmq.stats entry does not name the worker field `{name}`"));
        }
    }
    assert!(problems.is_empty(), "the guide and dmq_core::statistics disagree:\n  {}", problems.join("\n  "));
}

/// A value for `modparam("dmq", name, …)` that a lone node accepts: the
/// default where there is one, else one chosen for the parameter (a new
/// string parameter needs its line here).
fn sample(p: &Parameter) -> Option<String> {
    match (p.name, p.kind) {
        ("server_address", _) => None, // the node's own, set by NodeConfig
        ("server_socket", _) => Some("\"udp:{ADDR}\"".into()),
        ("notification_address", _) => Some("\"sip:{ADDR}\"".into()),
        ("trusted_network", _) => Some("\"127.0.0.0/8\"".into()),
        ("shared_secret", _) => Some("\"the guide test's secret, long enough\"".into()),
        ("event_callback", _) => Some("\"\"".into()),
        // Test only: set, it would inject a panic (tests/panics.rs).
        ("test_panic", _) => None,
        (_, Kind::Int { default }) => Some(if default == UNSET { 1 } else { default }.to_string()),
        (_, Kind::Str { default: Some(d) }) => Some(format!("\"{d}\"")),
        (name, kind) => panic!("no sample value for the parameter {name} ({kind:?}): add one to tests/guide.rs"),
    }
}

/// Kamailio refuses to start on a `modparam` the module does not export
/// (or exports with another type): a node that starts with every declared
/// parameter set shows the running module takes each of them.
#[test]
fn the_running_module_takes_every_declared_parameter() {
    let mut config = NodeConfig::default();
    for p in PARAMETERS {
        if let Some(value) = sample(p) {
            config = config.param(p.name, &value);
        }
    }
    let node = Node::start("guide-params", &config);
    let nodes = node.rpc(&["dmq.list_nodes"]);
    assert!(nodes.contains(&node.addr.port().to_string()), "{nodes}");
}

#[test]
fn the_guide_has_the_sections_of_a_kamailio_module_readme() {
    let guide = guide();
    let titles: Vec<String> = sections(&guide).into_iter().map(|(t, _)| t).collect();
    for want in [
        "Overview",
        "Dependencies",
        "Parameters",
        "Functions",
        "RPC Commands",
        "Statistics",
        "Event Routes",
        "KEMI Functions",
        "Differences from the stock module",
        "Upgrade notes",
    ] {
        assert!(titles.iter().any(|t| t == want), "doc/dmq_rs.md lacks the section {want:?}: {titles:?}");
    }
}

/// The Grafana dashboard (contrib/grafana) plots only metrics that exist:
/// xhttp_prom's `kamailio_dmq_<statistic>` (and the `kamailio_dmq_refused_*`
/// family by regex, for the refused-by-reason figures).
#[test]
fn the_dashboard_uses_only_registered_statistics() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/grafana/dmq_rs-dashboard.json");
    let dashboard = std::fs::read_to_string(path).unwrap();
    let r = registered();
    let mut used = BTreeSet::new();
    for part in dashboard.split("kamailio_dmq_").skip(1) {
        let name: String = part.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if name.is_empty() || name == "refused_" {
            continue; // "kamailio_dmq_*" in prose, the regex family
        }
        used.insert(name);
    }
    let unknown: Vec<&String> = used.iter().filter(|n| !r.statistics.contains(n)).collect();
    assert!(unknown.is_empty(), "the dashboard plots metrics the module does not have: {unknown:?}");
    for panel in ["Nodes up", "Replication rate", "Retransmissions", "Queue depth", "Refused messages"] {
        assert!(dashboard.contains(panel), "the dashboard has no {panel:?} panel");
    }
}
