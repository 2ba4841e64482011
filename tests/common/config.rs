//! What a node's kamailio.cfg says: `NodeConfig` and its rendering.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::Release;

/// What DMQ between nodes travels over (SIP from test clients stays UDP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmqTransport {
    Udp,
    /// `listen=tcp:` on the node's address and port; DMQ URIs `;transport=tcp`.
    Tcp,
    /// `listen=tls:` likewise, with the tls module, a key and certificate
    /// from the run's test CA (`tls::Ca::shared`), verified both ways.
    Tls,
}

impl DmqTransport {
    /// The test name's word for it.
    pub fn name(self) -> &'static str {
        match self {
            DmqTransport::Udp => "udp",
            DmqTransport::Tcp => "tcp",
            DmqTransport::Tls => "tls",
        }
    }

    /// `;transport=…` for a DMQ URI (nothing for UDP).
    pub fn uri_param(self) -> String {
        match self {
            DmqTransport::Udp => String::new(),
            other => format!(";transport={}", other.name()),
        }
    }
}

/// What a node's config says beyond the common parts.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// "dmq_rs.so" or the stock "dmq.so"; empty: no dmq at all (no
    /// loadmodule line, no dmq modparams), see `NodeConfig::without_dmq`.
    pub dmq_module: String,
    /// Extra global lines (e.g. more loadmodule lines).
    pub globals: String,
    /// Lines after the dmq module and its parameters: modules that bind to
    /// dmq (the stock dmq.so must be initialized before them).
    pub consumers: String,
    /// `modparam("dmq", …)` lines; `{ADDR}` stands for this node's ip:port.
    pub dmq_params: Vec<(String, String)>,
    /// The request_route body.
    pub route: String,
    /// Other routes (event_route, route[x]) verbatim.
    pub extra_routes: String,
    pub load_tm: bool,
    pub load_sl: bool,
    pub debug: i32,
    /// Kamailio's shared memory (-m), in MB.
    pub shm_mb: u32,
    /// SIP worker processes (children=).
    pub children: u32,
    /// Name the node by this host name instead of its IP (listen= and
    /// `{ADDR}`); the name must be in `hosts`.
    pub host_name: Option<String>,
    /// An /etc/hosts of the node's own: Kamailio runs in a mount namespace
    /// where this file is bind-mounted over /etc/hosts (the machine's own
    /// file is never touched).
    pub hosts: Option<PathBuf>,
    /// A /etc/resolv.conf of the node's own (bind-mounted likewise), e.g.
    /// `dns::Dns::resolv_conf`: the node asks that DNS server only.
    pub resolv_conf: Option<PathBuf>,
    /// Extra core settings (e.g. `use_dns_cache=no`), at the top.
    pub core: String,
    /// The Kamailio the node runs (default: the suite's, `DMQ_RS_KAMAILIO`).
    pub release: Release,
    /// A network namespace to run the node in (`ip netns exec NAME …`; see
    /// `netns::TestNet`).
    pub netns: Option<String>,
    /// A command that runs kamailio (e.g. valgrind and its options; `{DIR}`
    /// stands for the node's directory). Only for the host's release.
    pub wrapper: Vec<String>,
    /// What DMQ travels over: `server_address` and `notification_address`
    /// get its `;transport=` and the node listens for it on its address.
    pub dmq_transport: DmqTransport,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            dmq_module: "dmq_rs.so".into(),
            globals: String::new(),
            consumers: String::new(),
            dmq_params: vec![("server_address".into(), "\"sip:{ADDR}\"".into())],
            route: "if (is_method(\"KDMQ\")) { dmq_handle_message(); exit; }\n\tsl_send_reply(\"404\", \"Not here\");".into(),
            extra_routes: String::new(),
            load_tm: true,
            load_sl: true,
            debug: 2,
            shm_mb: 64,
            children: 2,
            host_name: None,
            hosts: None,
            resolv_conf: None,
            core: String::new(),
            release: Release::suite(),
            netns: None,
            wrapper: Vec::new(),
            dmq_transport: DmqTransport::Udp,
        }
    }
}

impl NodeConfig {
    pub fn stock() -> Self {
        NodeConfig { dmq_module: "dmq.so".into(), ..Default::default() }
    }

    /// A node without dmq (the bench's no-replication baseline): no dmq
    /// module, no dmq parameters, a route that does not hand KDMQ to dmq.
    pub fn without_dmq() -> Self {
        NodeConfig {
            dmq_module: String::new(),
            dmq_params: Vec::new(),
            route: "sl_send_reply(\"404\", \"Not here\");".into(),
            ..Default::default()
        }
    }

    pub fn param(mut self, name: &str, value: &str) -> Self {
        self.dmq_params.push((name.into(), value.into()));
        self
    }

    /// The same config with DMQ over `transport`.
    pub fn over(mut self, transport: DmqTransport) -> Self {
        self.dmq_transport = transport;
        self
    }

    /// The same config on another Kamailio release.
    pub fn on(mut self, release: Release) -> Self {
        self.release = release;
        self
    }

    pub fn without_param(mut self, name: &str) -> Self {
        self.dmq_params.retain(|(n, _)| n != name);
        self
    }

    /// The full kamailio.cfg text for a node at `addr` with ctl at `ctl`.
    pub fn render(&self, addr: SocketAddr, ctl: &Path) -> String {
        let mut s = String::new();
        s += "#!KAMAILIO\n";
        s += &format!("debug={}\nlog_stderror=yes\nchildren={}\nauto_aliases=no\ndns=no\nrev_dns=no\n", self.debug, self.children);
        s += &self.core;
        let addr = match &self.host_name {
            Some(name) => format!("{name}:{}", addr.port()),
            None => addr.to_string(),
        };
        s += &format!("listen=udp:{addr}\n");
        match self.dmq_transport {
            DmqTransport::Udp => {}
            DmqTransport::Tcp => s += &format!("listen=tcp:{addr}\n"),
            DmqTransport::Tls => s += &format!("enable_tls=yes\nlisten=tls:{addr}\n"),
        }
        if self.dmq_transport != DmqTransport::Udp {
            // The core drops a TCP/TLS message larger than its read buffer
            // (16 KB by default) with its connection: dmq_usrloc's and
            // htable's sync batches are up to 60 000 bytes (see the guide).
            s += "tcp_rd_buf_size=65536\n";
        }
        if self.load_tm {
            s += "loadmodule \"tm.so\"\n";
        }
        if self.load_sl {
            s += "loadmodule \"sl.so\"\n";
        }
        s += "loadmodule \"ctl.so\"\nloadmodule \"pv.so\"\nloadmodule \"textops.so\"\nloadmodule \"xlog.so\"\n";
        s += &self.globals.replace("{ADDR}", &addr);
        if self.dmq_transport == DmqTransport::Tls {
            // Written next to the ctl socket by `Node::spawn`.
            let dir = ctl.parent().unwrap();
            s += &format!("loadmodule \"tls.so\"\nmodparam(\"tls\", \"config\", \"{}\")\n", dir.join("tls.cfg").display());
        }
        if !self.dmq_module.is_empty() {
            s += &format!("\nloadmodule \"{}\"\n", self.dmq_module);
        }
        s += &format!("modparam(\"ctl\", \"binrpc\", \"unix:{}\")\n", ctl.display());
        // Replies of a few MB (KB here): `ul.dump` of thousands of contacts
        // (`state::ul_state`). ctl builds every struct of a reply in a
        // buffer of the struct size (malloc'ed, touched as it fills): an
        // RPC array of thousands of AoRs needs more than the default 8 KB.
        s += "modparam(\"ctl\", \"binrpc_max_body_size\", 4096)\nmodparam(\"ctl\", \"binrpc_struct_max_body_size\", 4096)\n";
        // Without a dmq module there is nothing to take dmq parameters.
        for (name, value) in self.dmq_params.iter().filter(|_| !self.dmq_module.is_empty()) {
            let mut value = value.replace("{ADDR}", &addr);
            // A DMQ URI without a transport of its own gets the node's.
            let uri_param = ["server_address", "notification_address"].contains(&name.as_str()) && !value.contains("transport=");
            if uri_param && value.ends_with('"') {
                value.insert_str(value.len() - 1, &self.dmq_transport.uri_param());
            }
            s += &format!("modparam(\"dmq\", \"{}\", {})\n", name, value);
        }
        s += &self.consumers.replace("{ADDR}", &addr);
        // An empty route leaves routing to a KEMI engine (cfgengine).
        if !self.route.is_empty() {
            s += &format!("\nrequest_route {{\n\t{}\n}}\n", self.route);
        }
        s += &format!("{}\n", self.extra_routes);
        s
    }
}
