//! Which Kamailio a node runs, and where its binary and modules are.
//!
//! A node runs either the machine's Kamailio (`Release::Host`, Debian 12:
//! 5.6), Kamailio 6.0 from the Debian 13 root that `make deps` makes in
//! `.cache/debian13-root` (`Release::K60`) or Kamailio 6.1 from the Debian
//! testing root in `.cache/debian-testing-root` (`Release::K61`):
//! `chroot ROOT kamailio`, in a
//! private mount namespace where the repository (and the module's
//! directory) are bind-mounted at their own paths inside the root, so every
//! path in a config, the ctl socket and the logs are the same on both sides.
//! The root shares the machine's network. `DMQ_RS_KAMAILIO=6.0` (or 6.1)
//! makes that the default release of every node of a test run.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const KAMAILIO: &str = "/usr/sbin/kamailio";
pub const KAMCMD: &str = "/usr/sbin/kamcmd";

/// Which Kamailio a node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// The machine's own (/usr/sbin/kamailio; Debian 12: 5.6.3).
    Host,
    /// Kamailio 6.0 in the Debian 13 root (`make deps`).
    K60,
    /// Kamailio 6.1 in the Debian testing root (`make deps`).
    K61,
}

impl Release {
    /// The release of a test run: `DMQ_RS_KAMAILIO=6.0` or `6.1`, else the host's.
    pub fn suite() -> Release {
        match std::env::var("DMQ_RS_KAMAILIO").ok().as_deref() {
            None | Some("") | Some("host") => Release::Host,
            Some("6.0") => Release::K60,
            Some("6.1") => Release::K61,
            Some(other) => panic!("DMQ_RS_KAMAILIO={other}: known are 6.0, 6.1 and host"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Release::Host => "host",
            Release::K60 => "6.0",
            Release::K61 => "6.1",
        }
    }

    /// The version prefix `core.version` shows ("6.1.").
    pub fn version_prefix(self) -> &'static str {
        match self {
            Release::Host => "5.6.",
            Release::K60 => "6.0.",
            Release::K61 => "6.1.",
        }
    }

    /// The root the release runs in (None: the machine's own /).
    /// `DMQ_RS_ROOT_60` / `DMQ_RS_ROOT_61` override the roots' places.
    pub fn root(self) -> Option<PathBuf> {
        let (var, dir) = match self {
            Release::Host => return None,
            Release::K60 => ("DMQ_RS_ROOT_60", ".cache/debian13-root"),
            Release::K61 => ("DMQ_RS_ROOT_61", ".cache/debian-testing-root"),
        };
        let root = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(dir));
        assert!(root.join("usr/sbin/kamailio").exists(), "{} has no Kamailio {}: run `make deps`", root.display(), self.name());
        Some(root)
    }

    /// Whether this release can run here: its Kamailio (the machine's, or
    /// in its Debian root) and a dmq_rs build for it; else why not.
    pub fn available(self) -> Result<(), String> {
        let kamailio = match self {
            Release::Host => PathBuf::from(KAMAILIO),
            Release::K60 | Release::K61 => {
                let (var, dir) = if self == Release::K60 {
                    ("DMQ_RS_ROOT_60", ".cache/debian13-root")
                } else {
                    ("DMQ_RS_ROOT_61", ".cache/debian-testing-root")
                };
                let root = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(dir));
                root.join("usr/sbin/kamailio")
            }
        };
        if !kamailio.exists() {
            return Err(format!("no Kamailio {} here ({} is missing: run `make deps`)", self.name(), kamailio.display()));
        }
        let module = self.module_file();
        if !module.exists() {
            return Err(format!(
                "no dmq_rs build for Kamailio {}: {} is missing (run `make` / `make KAMAILIO=6.0|6.1`)",
                self.name(),
                module.display()
            ));
        }
        Ok(())
    }

    /// Where a path of the release's file system (e.g. its db_text schema)
    /// is seen from this machine.
    pub fn host_path(self, path: &str) -> PathBuf {
        match self.root() {
            Some(root) => root.join(path.trim_start_matches('/')),
            None => PathBuf::from(path),
        }
    }

    /// The dmq_rs build for this release: $DMQ_RS_MODULE for the suite's
    /// release; for the others $DMQ_RS_MODULE_60 (6.0), $DMQ_RS_MODULE_61
    /// (6.1) or $DMQ_RS_MODULE_HOST (host); else what `make` /
    /// `make KAMAILIO=6.0|6.1` build.
    pub fn module_path(self) -> PathBuf {
        let p = self.module_file();
        assert!(p.exists(), "{} is missing: run `make` / `make KAMAILIO=6.0|6.1` (or `make test`) first", p.display());
        p
    }

    /// Where [`module_path`](Self::module_path) looks (the file may be missing).
    fn module_file(self) -> PathBuf {
        let (var, default) = match self {
            Release::Host => ("DMQ_RS_MODULE_HOST", "build/dmq_rs.so"),
            Release::K60 => ("DMQ_RS_MODULE_60", "build/kamailio-6.0/dmq_rs.so"),
            Release::K61 => ("DMQ_RS_MODULE_61", "build/kamailio-6.1/dmq_rs.so"),
        };
        let var = if self == Release::suite() { "DMQ_RS_MODULE" } else { var };
        std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(default))
    }

    /// Kamailio's module directory (tm.so, the stock dmq.so) as the release
    /// sees it.
    pub fn stock_module_dir(self) -> PathBuf {
        for dir in ["/usr/lib/x86_64-linux-gnu/kamailio/modules", "/usr/lib/kamailio/modules", "/usr/local/lib64/kamailio/modules"] {
            if self.host_path(dir).join("tm.so").exists() {
                return PathBuf::from(dir);
            }
        }
        panic!("cannot find Kamailio's module directory of release {} (run `make deps`)", self.name());
    }

    /// The module search path for nodes: our build dir first, then the stock one.
    pub fn module_search_path(self) -> String {
        let module = self.module_path();
        // Kamailio loads "dmq_rs.so" by file name: make sure that name exists.
        // (its real path: for 6.0 that is the path bind-mounted into the root)
        let dir = module.parent().unwrap().canonicalize().unwrap();
        let named = dir.join("dmq_rs.so");
        assert!(named.exists(), "{} is missing", named.display());
        format!("{}:{}", dir.display(), self.stock_module_dir().display())
    }

    /// A command running this release's kamailio with `hosts` (if any) as
    /// its /etc/hosts (see `kamailio_command_with`).
    pub fn kamailio_command(self, hosts: Option<&Path>) -> Command {
        self.kamailio_command_with(hosts, None)
    }

    /// A command running this release's kamailio with `hosts` (if any) as
    /// its /etc/hosts and `resolv` (if any) as its /etc/resolv.conf. For 6.0: a private mount namespace (the mounts are
    /// the node's alone and go away with it) where the repository and the
    /// module's directory are bind-mounted at their own paths inside the
    /// root, then `chroot ROOT /usr/sbin/kamailio`. Every step execs the
    /// next, so the child's pid is kamailio's.
    pub fn kamailio_command_with(self, hosts: Option<&Path>, resolv: Option<&Path>) -> Command {
        let Some(root) = self.root() else {
            if hosts.is_none() && resolv.is_none() {
                return Command::new(KAMAILIO);
            }
            let mut script = String::from("set -e; ");
            for (file, over) in [(hosts, "/etc/hosts"), (resolv, "/etc/resolv.conf")] {
                if let Some(file) = file {
                    script += &format!("mount --bind {} {over}; ", sh_quote(&file.display().to_string()));
                }
            }
            script += "exec \"$@\"";
            let mut c = Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "sh", "-c", &script]).arg("sh").arg(KAMAILIO);
            return c;
        };
        // The repository as tests name it (configs, node dirs) and by its
        // real path (the module search path), and the module's directory.
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let real_repo = repo.canonicalize().unwrap();
        let mut binds = vec![repo.clone()];
        if real_repo != repo {
            binds.push(real_repo.clone());
        }
        let module_dir = self.module_path().parent().unwrap().canonicalize().unwrap();
        if !module_dir.starts_with(&real_repo) {
            binds.push(module_dir);
        }
        let mut script = String::from("set -e; root=\"$0\"; ");
        for dir in &binds {
            let q = sh_quote(&dir.display().to_string());
            script += &format!("mkdir -p \"$root\"{q}; mount --bind {q} \"$root\"{q}; ");
        }
        for (file, over) in [(hosts, "etc/hosts"), (resolv, "etc/resolv.conf")] {
            if let Some(file) = file {
                script += &format!("mount --bind {} \"$root/{over}\"; ", sh_quote(&file.display().to_string()));
            }
        }
        script += "exec chroot \"$root\" /usr/sbin/kamailio \"$@\"";
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "sh", "-c", &script]).arg(&root);
        c
    }
}

/// `s` as one single-quoted shell word.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The module under test for the suite's release (see `Release::module_path`).
pub fn module_path() -> PathBuf {
    Release::suite().module_path()
}

/// Kamailio's own module directory for the suite's release.
pub fn stock_module_dir() -> PathBuf {
    Release::suite().stock_module_dir()
}

/// The module search path for nodes of the suite's release.
pub fn module_search_path() -> String {
    Release::suite().module_search_path()
}
