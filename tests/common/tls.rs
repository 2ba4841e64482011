//! TLS material made at run time with openssl: a test CA and, per node, a
//! key and certificate for its IP, plus the tls module's config verifying
//! peers both ways (server and client side).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::{node_dir, run_bounded};

/// Runs openssl, bounded in time; panics with its output on failure.
pub fn openssl(dir: &Path, args: &[&str]) {
    let mut cmd = Command::new("openssl");
    cmd.args(args).current_dir(dir);
    let (status, _, err) = run_bounded(cmd, Duration::from_secs(30)).expect("openssl ran");
    assert!(status.success(), "openssl {args:?}: {err}");
}

/// A CA made at run time in `dir` (ca.key, ca.crt).
pub struct Ca {
    dir: PathBuf,
}

impl Ca {
    pub fn new(label: &str) -> Ca {
        let dir = node_dir(label);
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                &format!("/CN=dmq-rs test CA {label}"),
            ],
        );
        Ca { dir }
    }

    /// The CA every node of a test run that speaks DMQ over TLS trusts.
    pub fn shared() -> &'static Ca {
        static CA: OnceLock<Ca> = OnceLock::new();
        CA.get_or_init(|| Ca::new("test-ca"))
    }

    /// A key and a certificate for `ip`, signed by this CA, in `dir`
    /// (node.key, node.crt and the CA's ca.crt).
    pub fn issue_into(&self, dir: &Path, ip: IpAddr) {
        let key = dir.join("node.key");
        let csr = dir.join("node.csr");
        let crt = dir.join("node.crt");
        let ext = dir.join("ext.cnf");
        std::fs::write(&ext, format!("subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth,clientAuth\n")).unwrap();
        let p = |p: &Path| p.display().to_string();
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &p(&key),
                "-out",
                &p(&csr),
                "-subj",
                &format!("/CN={ip}"),
            ],
        );
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &p(&csr),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &p(&crt),
                "-days",
                "2",
                "-extfile",
                &p(&ext),
            ],
        );
        std::fs::copy(self.dir.join("ca.crt"), dir.join("ca.crt")).unwrap();
    }

    /// `issue_into` a fresh directory of its own.
    pub fn issue(&self, ip: IpAddr) -> PathBuf {
        let dir = node_dir(&format!("cert-{ip}"));
        self.issue_into(&dir, ip);
        dir
    }
}

/// The tls module's config for the key, certificate and CA in `certs`:
/// TLS 1.2 or newer, certificates required and verified on both sides.
pub fn write_tls_cfg(certs: &Path) -> PathBuf {
    let tls_cfg = certs.join("tls.cfg");
    let side = |name: &str| {
        format!(
            "[{name}:default]\nmethod = TLSv1.2+\nverify_certificate = yes\nrequire_certificate = yes\n\
             private_key = {dir}/node.key\ncertificate = {dir}/node.crt\nca_list = {dir}/ca.crt\n\n",
            dir = certs.display()
        )
    };
    std::fs::write(&tls_cfg, side("server") + &side("client")).unwrap();
    tls_cfg
}
