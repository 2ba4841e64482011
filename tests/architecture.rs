//! The rings, checked on the source (no Kamailio needed): `src/module` has
//! no `unsafe` and no import circle, `dmq` forbids `unsafe`, and every
//! `unsafe` block in `src/host` says why it holds.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

fn sources(dir: &str) -> BTreeMap<String, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), fs::read_to_string(&p).unwrap()))
        .collect()
}

/// Lines without their `//` comments.
fn code(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(|l| l.split("//").next().unwrap_or(""))
}

#[test]
fn the_module_ring_has_no_unsafe_code() {
    let module = sources("src/module");
    assert!(module["mod"].contains("#![deny(unsafe_code)]"), "src/module/mod.rs must deny unsafe_code");
    for (file, text) in &module {
        for (n, line) in code(text).enumerate() {
            for word in ["unsafe ", "unsafe{", "raw::", "allow(unsafe_code)", "transmute"] {
                assert!(!line.contains(word), "src/module/{file}.rs:{}: {word:?} belongs in src/host", n + 1);
            }
        }
    }
}

/// Issue 23: a Kamailio release difference never reaches the module or the
/// pure ring; `src/host` decides it (build.rs's `cfg(kamailio_…)`).
#[test]
fn release_differences_stay_in_host() {
    for dir in ["src/module", "dmq/src"] {
        for (file, text) in &sources(dir) {
            for (n, line) in code(text).enumerate() {
                assert!(!line.contains("kamailio_6") && !line.contains("kamailio_5"), "{dir}/{file}.rs:{}: a release cfg belongs in src/host", n + 1);
            }
        }
    }
}

#[test]
fn the_pure_ring_forbids_unsafe_code() {
    assert!(sources("dmq/src")["lib"].contains("#![forbid(unsafe_code)]"));
}

#[test]
fn module_files_import_each_other_one_way() {
    let module = sources("src/module");
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, text) in &module {
        let deps = edges.entry(file.clone()).or_default();
        // `use super::a;`, `use super::{a, b::C};` and inline `super::a::f()`.
        for line in code(text) {
            for (i, part) in line.split("super::").enumerate().skip(1) {
                let grouped = part.starts_with('{') && line.split("super::").nth(i - 1).is_some_and(|p| p.trim_end().ends_with("use"));
                let names = if grouped { part.trim_start_matches('{').split('}').next().unwrap_or("") } else { part };
                for name in names.split(',').take(if grouped { usize::MAX } else { 1 }) {
                    let name: String = name.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    if module.contains_key(&name) {
                        deps.insert(name);
                    }
                }
            }
        }
    }
    // Depth-first search for a cycle.
    fn visit(n: &str, edges: &BTreeMap<String, BTreeSet<String>>, path: &mut Vec<String>, done: &mut BTreeSet<String>) {
        if done.contains(n) {
            return;
        }
        if let Some(i) = path.iter().position(|p| p == n) {
            panic!("import circle in src/module: {} -> {n}", path[i..].join(" -> "));
        }
        path.push(n.to_string());
        for d in edges.get(n).into_iter().flatten() {
            visit(d, edges, path, done);
        }
        path.pop();
        done.insert(n.to_string());
    }
    let mut done = BTreeSet::new();
    for n in edges.keys() {
        visit(n, &edges, &mut Vec::new(), &mut done);
    }
    assert!(edges["state"].is_empty(), "state is the leaf every file may read");
}

#[test]
fn every_unsafe_block_in_host_says_why() {
    for (file, text) in sources("src/host") {
        if file == "raw" {
            continue; // bindgen's output
        }
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if !(code.contains("unsafe {") || code.contains("unsafe impl")) {
                continue;
            }
            // The SAFETY comment is on the line, or on the comment lines
            // just above (a multi-line comment, or one above a `let`).
            let above = lines[..n].iter().rev().take_while(|l| {
                let t = l.trim_start();
                t.starts_with("//") || t.starts_with("#[") || t.starts_with("let ")
            });
            let explained = line.contains("SAFETY:") || above.clone().any(|l| l.contains("SAFETY:"));
            assert!(explained, "src/host/{file}.rs:{}: unsafe without a SAFETY comment", n + 1);
        }
    }
}
