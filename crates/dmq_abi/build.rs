//! Binds the stock dmq module's ABI (`bind_dmq.h`: `dmq_api_t`, the node
//! and peer structs, the node-status bits) for the Kamailio release being
//! built for, with kamailio-sys's include directories and the core's
//! defines (`DEP_KAMAILIO_CLANG_ARGS`); the types those structs name
//! (`str`, `sip_uri`, `ip_addr`, `sip_msg`) are kamailio-sys's.
//!
//! And the cfg of that release, from kamailio-sys's `DEP_KAMAILIO_SERIES`:
//! `kamailio_6_1` for 6.1 and newer (the fifth `dmq_api_t` member, the
//! node-status words, `fail_count` in node handles).

use std::env;
use std::fs;
use std::path::PathBuf;

/// The dmq types and constants dmq_abi uses, by their C names (6.1 adds
/// `get_dmq_server_socket_t`; a name a release lacks is simply not bound).
const TYPES: &str = "dmq_node|dmq_node_t|dmq_peer|dmq_peer_t|peer_response|peer_reponse_t|peer_callback_t|init_callback_t|\
dmq_resp_cback|dmq_resp_cback_t|dmq_api|dmq_api_t|bind_dmq_f|register_dmq_peer_t|bcast_message_t|send_message_t|\
find_dmq_node_uri_t|get_dmq_server_socket_t";

fn main() {
    println!("cargo:rustc-check-cfg=cfg(kamailio_6_1)");
    println!("cargo:rerun-if-env-changed=DEP_KAMAILIO_SERIES");
    println!("cargo:rerun-if-env-changed=DEP_KAMAILIO_CLANG_ARGS");
    println!("cargo:rerun-if-changed=bind_dmq.h");
    let series = env::var("DEP_KAMAILIO_SERIES").expect("kamailio-sys tells the core's series");
    let mut parts = series.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    if (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (6, 1) {
        println!("cargo:rustc-cfg=kamailio_6_1");
    }

    let args_file = env::var("DEP_KAMAILIO_CLANG_ARGS").expect("kamailio-sys tells its clang arguments");
    println!("cargo:rerun-if-changed={args_file}");
    let args: Vec<String> = fs::read_to_string(&args_file).unwrap().lines().map(str::to_string).collect();
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    bindgen::Builder::default()
        .header("bind_dmq.h")
        .clang_args(&args)
        // Only dmq's own items: what they name comes from kamailio-sys.
        .allowlist_recursively(false)
        .allowlist_type(TYPES)
        .allowlist_var("DMQ_NODE_.*")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .expect("bindgen failed on bind_dmq.h")
        .write_to_file(out.join("dmq_bindings.rs"))
        .unwrap();
}
