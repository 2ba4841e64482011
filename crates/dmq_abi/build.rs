//! The cfg of the Kamailio release built for, from kamailio-sys's
//! `DEP_KAMAILIO_SERIES`: `kamailio_6_1` for 6.1 and newer (the fifth
//! `dmq_api_t` member, the node-status words, `fail_count` in node handles).

fn main() {
    println!("cargo:rustc-check-cfg=cfg(kamailio_6_1)");
    println!("cargo:rerun-if-env-changed=DEP_KAMAILIO_SERIES");
    let series = std::env::var("DEP_KAMAILIO_SERIES").expect("kamailio-sys tells the core's series");
    let mut parts = series.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    if (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (6, 1) {
        println!("cargo:rustc-cfg=kamailio_6_1");
    }
}
