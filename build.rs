//! The module crate's own build step (the Kamailio bindings and the C shim
//! are kamailio-sys's, DMQ's C ABI dmq_abi's): which build of dmq_rs this
//! is. Operators running a rolling upgrade read it in the startup line
//! ("dmq_rs 0.1.0 (Rust DMQ module, commit 1a2b3c4d5e6f) starting in …"),
//! so two nodes that say the same version but run different code can be
//! told apart. A build outside a git checkout says "unknown", unless
//! `DMQ_RS_COMMIT` names it (a source package's build).

use std::process::Command;

fn main() {
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    // A commit or a checkout of another branch moves HEAD or the ref it names.
    for watched in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        if root.join(watched).exists() {
            println!("cargo:rerun-if-changed={watched}");
        }
    }
    println!("cargo:rerun-if-env-changed=DMQ_RS_COMMIT");
    let commit = std::env::var("DMQ_RS_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| git(&root, &["rev-parse", "--short=12", "HEAD"]));
    println!("cargo:rustc-env=DMQ_RS_COMMIT={}", commit.unwrap_or_else(|| "unknown".into()));
}

/// What `git args` prints in `dir`, None when git or the checkout is missing.
fn git(dir: &std::path::Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}
