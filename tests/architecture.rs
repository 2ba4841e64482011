//! The layers, checked on the sources and manifests (no Kamailio needed):
//! the top level and the crate graph (ARCHITECTURE.md), `dmq_rs` without
//! `unsafe`, `dmq_rs`'s shared state looked up only where C calls in, no
//! import circle in any crate, `dmq_core` forbidding `unsafe`,
//! `kamailio-sys` and `kamailio` knowing nothing of DMQ, release
//! differences only where the bindings are, `extern "C"` declarations only
//! in `kamailio-sys`, and every `unsafe` block saying why it holds.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// The `.rs` files of a directory of the workspace, by file stem.
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

/// The crates of the workspace: name, manifest directory, source directory.
const CRATES: [(&str, &str, &str); 5] = [
    ("kamailio-sys", "crates/kamailio-sys", "crates/kamailio-sys/src"),
    ("kamailio", "crates/kamailio", "crates/kamailio/src"),
    ("dmq_core", "crates/dmq_core", "crates/dmq_core/src"),
    ("dmq_abi", "crates/dmq_abi", "crates/dmq_abi/src"),
    ("dmq_rs", ".", "src"),
];

/// A manifest's `[dependencies]` (not build- or dev-dependencies).
fn dependencies(manifest_dir: &str) -> BTreeSet<String> {
    let text = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(manifest_dir).join("Cargo.toml")).unwrap();
    let mut in_deps = false;
    let mut deps = BTreeSet::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
        } else if in_deps {
            if let Some((name, _)) = line.split_once('=') {
                deps.insert(name.trim().to_string());
            }
        }
    }
    deps
}

#[test]
fn the_crates_depend_on_each_other_as_the_layers_say() {
    let want: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("kamailio-sys", &[][..]),
        ("kamailio", &["kamailio-sys", "libc", "log"][..]),
        ("dmq_core", &["hmac", "sha2"][..]),
        ("dmq_abi", &["dmq_core", "kamailio", "kamailio-sys", "libc", "log"][..]),
        ("dmq_rs", &["dmq_abi", "dmq_core", "kamailio", "log"][..]),
    ]);
    for (name, dir, _) in CRATES {
        let got = dependencies(dir);
        let want: BTreeSet<String> = want[name].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            got, want,
            "{name}'s [dependencies] (ARCHITECTURE.md: dmq_rs never names kamailio-sys; kamailio and dmq_core never name each other)"
        );
    }
}

#[test]
fn dmq_rs_has_no_unsafe_code() {
    let module = sources("src");
    assert!(module["lib"].contains("#![deny(unsafe_code)]"), "src/lib.rs must deny unsafe_code");
    for (file, text) in &module {
        for (n, line) in code(text).enumerate() {
            for word in ["unsafe ", "unsafe{", "raw::", "kamailio_sys", "allow(unsafe_code)", "transmute", "extern \"C\""] {
                assert!(!line.contains(word), "src/{file}.rs:{}: {word:?} belongs in crates/kamailio or crates/dmq_abi", n + 1);
            }
        }
    }
}

/// The functions of `src/` that may look up the shared state
/// (`shared::shared()`, None before mod_init succeeded): the entry points,
/// where C calls into the module, and the bodies that a script function
/// and its KEMI twin share. Each decides there what it does before mod_init
/// (return, fault, log); every function below them is handed the state
/// (`m: &Shared`, or the part it needs) by its caller, so what a function
/// depends on is in its signature.
const ENTRY_POINTS: &[(&str, &[&str])] = &[
    // The bind_dmq API (`DmqApi`): consumers call it, even from their
    // own mod_init, which may run before ours.
    ("c_api", &["bcast_message", "send_message", "find_node", "server_socket"]),
    // dmq_process_custom, dmq_handle_custom and their KEMI functions.
    ("custom", &["custom"]),
    // child_init and destroy (mod_init has the state `shared::set` made).
    ("lifecycle", &["child_init", "destroy"]),
    // The DMQ DNS process's tick.
    ("lookups", &["tick"]),
    // The core's reply hook, the retransmission timer, tm's reply handler.
    ("messaging", &["on_reply", "timer_tick", "on_tm_reply"]),
    // tm's reply handler for notifications.
    ("notifications", &["on_reply"]),
    // The core's ping timer.
    ("pings", &["ping_timer"]),
    // `kamcmd dmq.*`.
    ("rpc_commands", &["list_nodes", "remove", "add", "change_status", "stats", "sync_status", "resync"]),
    // What each script function shares with its KEMI twin (`handle`:
    // dmq_handle_message, dmq_process_message, KSR.dmq.handle_message, …).
    ("script", &["handle", "send", "from_any_node", "replicate", "synced"]),
    // What Kamailio's statistics call (`fn() -> u64`).
    ("statistics", &["read_now"]),
];

/// Where `src/` calls `shared()` (not in comments, not its definition): each
/// call with its file and the function it is in.
fn shared_lookups() -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (file, text) in sources("src") {
        let mut function = String::new();
        for (n, line) in code(&text).enumerate() {
            let word = |i: usize| !line[..i].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_');
            // `fn name`: the function the lines below are in.
            if let Some((i, _)) = line.match_indices("fn ").find(|(i, _)| word(*i)) {
                let name: String = line[i + 3..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    function = name;
                }
            }
            let calls = line.match_indices("shared()").filter(|(i, _)| word(*i) && !line[..*i].ends_with("fn "));
            assert!(!line.contains("shared as "), "src/{file}.rs:{}: shared() under another name escapes the check", n + 1);
            for _ in calls {
                assert!(!function.is_empty(), "src/{file}.rs:{}: shared() outside a function", n + 1);
                found.insert((file.clone(), function.clone()));
            }
        }
    }
    found
}

/// `shared()` only at the entry points ([`ENTRY_POINTS`], the list kept
/// exact both ways): a function inside takes the state from its caller.
#[test]
fn the_shared_state_is_looked_up_only_at_entry_points() {
    let allowed: BTreeSet<(String, String)> =
        ENTRY_POINTS.iter().flat_map(|(file, fns)| fns.iter().map(move |f| (file.to_string(), f.to_string()))).collect();
    let found = shared_lookups();
    let named = |pairs: BTreeSet<&(String, String)>| pairs.into_iter().map(|(file, f)| format!("src/{file}.rs: {f}")).collect::<Vec<_>>();
    let inside = named(found.difference(&allowed).collect());
    assert!(inside.is_empty(), "shared() called inside the module (take the state, m: &Shared or its part, from the caller): {inside:?}");
    let stale = named(allowed.difference(&found).collect());
    assert!(stale.is_empty(), "no longer calling shared() (take them out of ENTRY_POINTS): {stale:?}");
}

#[test]
fn the_pure_crate_forbids_unsafe_code() {
    assert!(sources("crates/dmq_core/src")["lib"].contains("#![forbid(unsafe_code)]"));
}

/// The top level the design card names, each entry there, and every
/// library crate under `crates/` in a directory named as the crate.
#[test]
fn the_top_level_is_the_cards() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for entry in ["Cargo.toml", "build.rs", "src", "kamailio-headers", "Makefile", "cfg-examples", "tests", "crates"] {
        assert!(root.join(entry).exists(), "{entry} is missing at the top level");
    }
    for (name, dir, _) in CRATES.iter().filter(|(name, _, _)| *name != "dmq_rs") {
        assert_eq!(*dir, format!("crates/{name}"), "the library crate {name} lives in crates/{name}");
    }
}

/// The Kamailio crates are for any Rust module: no DMQ in their code, in
/// the build script or in the C shim (comments may name DMQ as an
/// example; the module's name and DMQ's headers come from the module).
#[test]
fn the_kamailio_crates_know_nothing_of_dmq() {
    let mut files: Vec<(String, String)> = Vec::new();
    for dir in ["crates/kamailio/src", "crates/kamailio-sys/src"] {
        files.extend(sources(dir).into_iter().map(|(f, t)| (format!("{dir}/{f}.rs"), t)));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["crates/kamailio-sys/build.rs", "kamailio-headers/shim.c", "kamailio-headers/shim.h", "kamailio-headers/wrapper.h"] {
        files.push((file.to_string(), fs::read_to_string(root.join(file)).unwrap()));
    }
    for (file, text) in files {
        for (n, line) in code(&text).enumerate() {
            let line = line.split("/*").next().unwrap_or("");
            if line.trim_start().starts_with('*') {
                continue; // a C comment's inner line
            }
            assert!(!line.to_ascii_lowercase().contains("dmq"), "{file}:{}: DMQ belongs above this crate: {line:?}", n + 1);
        }
    }
}

/// A Kamailio release difference never reaches the module or the pure
/// crate: the bindings carry layouts, and `kamailio-sys`/`dmq_abi` decide
/// the rest (`cfg(kamailio_6_1)`).
#[test]
fn release_differences_stay_beside_the_bindings() {
    for dir in ["src", "crates/dmq_core/src", "crates/kamailio/src"] {
        for (file, text) in &sources(dir) {
            for (n, line) in code(text).enumerate() {
                assert!(
                    !line.contains("kamailio_6") && !line.contains("kamailio_5"),
                    "{dir}/{file}.rs:{}: a release cfg belongs in kamailio-sys or dmq_abi",
                    n + 1
                );
            }
        }
    }
}

/// The only `extern "C"` declarations are the bindings' (kamailio-sys,
/// generated); elsewhere `extern "C"` only defines functions C calls.
#[test]
fn only_kamailio_sys_declares_c_functions() {
    for (_, _, dir) in CRATES.iter().filter(|(name, _, _)| *name != "kamailio-sys") {
        for (file, text) in &sources(dir) {
            for (n, line) in code(text).enumerate() {
                let declares = line.contains("extern \"C\" {") || line.trim_start().starts_with("extern {");
                assert!(!declares, "{dir}/{file}.rs:{}: C declarations belong in kamailio-sys", n + 1);
            }
        }
    }
}

/// In every crate, files import each other one way: a circle means two
/// files that are one concern, or a concern in the wrong file.
#[test]
fn files_import_each_other_one_way_in_every_crate() {
    for (_, _, dir) in CRATES {
        no_import_circle(dir);
    }
    assert!(import_edges("src")["shared"].is_empty(), "shared is the leaf every file of dmq_rs may read");
}

/// Which files of a crate's source directory each file imports.
fn import_edges(dir: &str) -> BTreeMap<String, BTreeSet<String>> {
    let module = sources(dir);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, text) in module.iter().filter(|(f, _)| *f != "lib") {
        let deps = edges.entry(file.clone()).or_default();
        // `use crate::a;`, `use crate::{a, b::C};` and inline `crate::a::f()`.
        for line in code(text) {
            for (i, part) in line.split("crate::").enumerate().skip(1) {
                let grouped = part.starts_with('{') && line.split("crate::").nth(i - 1).is_some_and(|p| p.trim_end().ends_with("use"));
                let names = if grouped { part.trim_start_matches('{').split('}').next().unwrap_or("") } else { part };
                for name in names.split(',').take(if grouped { usize::MAX } else { 1 }) {
                    let name: String = name.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    if module.contains_key(&name) && name != *file {
                        deps.insert(name);
                    }
                }
            }
        }
    }
    edges
}

fn no_import_circle(dir: &str) {
    let edges = import_edges(dir);
    // Depth-first search for a cycle.
    fn visit(dir: &str, n: &str, edges: &BTreeMap<String, BTreeSet<String>>, path: &mut Vec<String>, done: &mut BTreeSet<String>) {
        if done.contains(n) {
            return;
        }
        if let Some(i) = path.iter().position(|p| p == n) {
            panic!("import circle in {dir}/: {} -> {n}", path[i..].join(" -> "));
        }
        path.push(n.to_string());
        for d in edges.get(n).into_iter().flatten() {
            visit(dir, d, edges, path, done);
        }
        path.pop();
        done.insert(n.to_string());
    }
    let mut done = BTreeSet::new();
    for n in edges.keys() {
        visit(dir, n, &edges, &mut Vec::new(), &mut done);
    }
}

#[test]
fn every_unsafe_block_says_why() {
    for dir in ["crates/kamailio/src", "crates/dmq_abi/src"] {
        for (file, text) in sources(dir) {
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
                assert!(explained, "{dir}/{file}.rs:{}: unsafe without a SAFETY comment", n + 1);
            }
        }
    }
}

/// ARCHITECTURE.md's map of `src/` is the import graph: every file of the
/// module has its line, and each line names exactly what its file imports
/// (`name → a, b   what it holds`, or `a, b  leaf`/`leaves`).
#[test]
fn the_architecture_map_of_src_is_the_import_graph() {
    let text = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md")).unwrap();
    let start = text.find("Inside `dmq_rs` (`src/`)").expect("ARCHITECTURE.md maps src/");
    let block = text[start..].split("```").nth(1).expect("the map is a code block");
    let mut listed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in block.lines().filter(|l| !l.starts_with(' ') && !l.trim().is_empty()) {
        let words = |s: &str| s.split(',').map(|w| w.trim().to_string()).filter(|w| !w.is_empty()).collect::<Vec<_>>();
        if let Some((name, rest)) = line.split_once('→') {
            // The names end where the description begins (3+ spaces).
            let deps = rest.trim_start().split("   ").next().unwrap_or("");
            listed.insert(name.trim().to_string(), words(deps).into_iter().collect());
        } else {
            let names = line.split("  ").next().unwrap_or("");
            for name in words(names) {
                listed.insert(name, BTreeSet::new());
            }
        }
    }
    let mut actual = import_edges("src");
    actual.remove("lib");
    assert_eq!(listed.keys().collect::<Vec<_>>(), actual.keys().collect::<Vec<_>>(), "ARCHITECTURE.md lists the files of src/");
    for (file, deps) in &actual {
        assert_eq!(&listed[file], deps, "ARCHITECTURE.md: what src/{file}.rs imports");
    }
}
