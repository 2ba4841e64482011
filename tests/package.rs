//! The Debian package (`make deb`) installs into a clean root,
//! Kamailio loads the module from its own module directory with a config
//! that says only `loadmodule "dmq_rs.so"`, and purging the package leaves
//! nothing behind. The root is the machine's own for 5.6, the Debian 13
//! root for 6.0 and the Debian testing root for 6.1, each only as the
//! read-only lower layer of an overlay in a private mount namespace
//! (tests/package/install-remove.sh): none is changed, and other tests
//! using them meanwhile see nothing.
//!
//! The package depends on the upstream version, not the Debian revision:
//! on 6.0 the overlay is first upgraded from Debian 13's security archive
//! (6.0.1-1+deb13u1 → a later +deb13uN), and the package built against the
//! root's revision installs and loads there.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// The package for the suite's release: $DMQ_RS_DEB, else the newest
/// build/deb/kamailio-dmq-rs_*~kamailio<version>_*.deb for it.
fn package(release: Release) -> PathBuf {
    if let Some(p) = std::env::var_os("DMQ_RS_DEB") {
        return PathBuf::from(p);
    }
    let marker = match release {
        Release::Host => "~kamailio5.",
        Release::K60 => "~kamailio6.0.",
        Release::K61 => "~kamailio6.1.",
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("build/deb");
    let mut debs: Vec<PathBuf> = fs::read_dir(&dir).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    debs.retain(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("kamailio-dmq-rs_") && n.contains(marker) && n.ends_with(".deb"))
    });
    debs.sort_by_key(|p| fs::metadata(p).and_then(|m| m.modified()).ok());
    debs.pop().unwrap_or_else(|| panic!("no kamailio-dmq-rs package for {} in {}: run `make deb`", release.name(), dir.display()))
}

#[test]
fn the_package_installs_loads_from_kamailios_module_directory_and_purges_clean() {
    let release = Release::suite();
    let deb = package(release);
    let root = release.root().unwrap_or_else(|| PathBuf::from("/"));
    let addr = allocate_address();
    let scratch = node_dir("package");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/package/install-remove.sh");
    let mnt = scratch.join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let log = scratch.join("install-remove.log");
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh"]).arg(&script).arg(&root).arg(&deb).arg(addr.to_string()).arg(&mnt);
    // 6.0: as an operator who applied Debian 13's security updates.
    let upgrade = release == Release::K60;
    if upgrade {
        cmd.arg("upgrade");
    }
    // Its own process group (the node it starts included), killed as a
    // whole when it is done or when the bound passes (Background's drop).
    let mut helper = Background::spawn(cmd, &log);
    let status = helper.wait_bounded(Duration::from_secs(180));
    drop(helper);
    let _ = fs::remove_dir(&mnt);
    let out = fs::read_to_string(&log).unwrap_or_default();
    eprintln!("{out}");
    let status = status.unwrap_or_else(|| panic!("install-remove.sh did not finish within 180 s:\n{out}"));
    assert!(status.success(), "install/remove of {} on {} failed ({status}):\n{out}", deb.display(), root.display());
    assert!(out.contains("dmq:nodes_active = 1"), "the node's statistics: {out}");
    // /proc/PID/maps names it as this machine sees it: inside the overlay root.
    assert!(out.contains("/mnt/root/usr/lib/") && out.contains("/kamailio/modules/dmq_rs.so"), "the module came from elsewhere: {out}");
    assert!(out.contains("nothing of kamailio-dmq-rs is left"), "{out}");
    if upgrade {
        let line = out.lines().find(|l| l.starts_with("kamailio upgraded: ")).unwrap_or_else(|| panic!("no upgrade:\n{out}"));
        let (before, after) = line.trim_start_matches("kamailio upgraded: ").split_once(" -> ").unwrap();
        eprintln!("installed over kamailio {after} (the root has {before})");
        assert_ne!(before, after, "the security archive had no newer kamailio: {line}");
        assert_eq!(before.split('-').next(), after.split('-').next(), "the upgrade changed the upstream version: {line}");
    }
}
