//! The stock modules that bind to dmq on a node: a registrar with
//! dmq_usrloc, htable, the db_text schema presence needs; and what they hold.

use std::fs;
use std::path::PathBuf;

use super::{node_dir, Node, NodeConfig, Release};

/// A registrar on top of `c`: usrloc in memory, replicated by dmq_usrloc;
/// REGISTERs are saved, KDMQ handed to dmq. Without dmq (`c.dmq_module`
/// empty): the same registrar, alone (no dmq_usrloc, no KDMQ).
pub fn registrar(mut c: NodeConfig) -> NodeConfig {
    let dmq = !c.dmq_module.is_empty();
    c.consumers += "loadmodule \"kex.so\"\nloadmodule \"usrloc.so\"\nloadmodule \"registrar.so\"\n";
    if dmq {
        c.consumers += "loadmodule \"dmq_usrloc.so\"\n";
    }
    c.consumers += "modparam(\"usrloc\", \"db_mode\", 0)\n";
    if dmq {
        c.consumers += "modparam(\"dmq_usrloc\", \"enable\", 1)\n";
    }
    c.route = String::new();
    if dmq {
        c.route += "if (is_method(\"KDMQ\")) { dmq_handle_message(); exit; }\n\t";
    }
    c.route += "if (is_method(\"REGISTER\")) { if (!save(\"location\")) { sl_reply_error(); } exit; }\n\
                \tsl_send_reply(\"404\", \"Not here\");";
    c
}

/// Contacts in the node's location table (usrloc's own statistic: a dump
/// of thousands of AoRs does not fit kamcmd's reply buffer).
pub fn aor_count(node: &Node) -> usize {
    let Ok(out) = node.try_rpc(&["stats.get_statistics", "all"]) else { return 0 };
    out.lines().find_map(|l| l.trim().strip_prefix("usrloc:location_contacts = ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// htable on top of `c`, with the replicated table `t`.
pub fn with_htable(mut c: NodeConfig) -> NodeConfig {
    c.consumers += "loadmodule \"htable.so\"\nmodparam(\"htable\", \"enable_dmq\", 1)\n\
                    modparam(\"htable\", \"htable\", \"t=>size=8;dmqreplicate=1;\")\n";
    c
}

/// The value of `key` in `table` on `node` (None: not there).
pub fn htable_get(node: &Node, table: &str, key: &str) -> Option<String> {
    let out = node.try_rpc(&["htable.get", table, key]).ok()?;
    out.split("value:").nth(1).and_then(|v| v.lines().next()).map(|v| v.trim().to_string())
}

/// A fresh directory holding a copy of the db_text schema Kamailio installs
/// (presence needs its tables).
pub fn db_text_schema(label: &str) -> PathBuf {
    db_text_schema_on(label, Release::suite())
}

/// [`db_text_schema`] of `release`'s Kamailio.
pub fn db_text_schema_on(label: &str, release: Release) -> PathBuf {
    let dir = node_dir(label);
    for entry in fs::read_dir(release.host_path("/usr/share/kamailio/dbtext/kamailio")).expect("kamailio's db_text schema") {
        let entry = entry.unwrap();
        fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}

/// What htable itself sends for `sht_seti t <key> <value>`.
pub fn htable_set(key: &str, value: u32) -> String {
    format!(r#"{{"action":2,"htname":"t","cname":"{key}","type":0,"intval":{value},"mode":0}}"#)
}
