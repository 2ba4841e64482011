//! Shared parameters: the slots the core writes while parsing
//! `modparam("dmq", …)` and the export table that names them, both made
//! from the one declaration in `dmq_core::parameters` (names, types,
//! defaults). A parameter given many times (`notification_address`,
//! `trusted_network`) is checked at once, like the stock module does, so a
//! typo stops Kamailio at the line that has it.

use std::ffi::CStr;
use std::sync::Mutex;

use dmq_core::config::RawParams;

use kamailio::cell::CoreCell;
use kamailio::param_export::{IntParam, ParamExport, StrParam};
use kamailio::param_fn;
use kamailio::sip_uri;
use kamailio::test_panic::{self, Site};

/// A parameter given any number of times: collected in the main process
/// while the config is parsed, read after fork as an inherited copy.
pub struct ListParam(Mutex<Vec<String>>);

impl ListParam {
    const fn new() -> ListParam {
        ListParam(Mutex::new(Vec::new()))
    }

    fn push(&self, value: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(value.to_string());
    }

    fn get(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The check of each value of a repeated parameter, before it is kept.
fn check_listed(param: &str, value: &str) -> Result<(), String> {
    match param {
        "notification_address" if sip_uri::parse(value).is_none() => Err(format!("{value:?} is not a valid SIP URI")),
        "trusted_network" => dmq_core::network::Network::parse(value).map(drop),
        _ => Ok(()),
    }
}

/// A parameter name as the C string Kamailio's table holds.
const fn c_name(with_nul: &'static str) -> &'static CStr {
    match CStr::from_bytes_with_nul(with_nul.as_bytes()) {
        Ok(name) => name,
        Err(_) => panic!("a parameter name with a NUL inside"),
    }
}

macro_rules! slot_type {
    (int) => {
        IntParam
    };
    (str) => {
        StrParam
    };
    (list) => {
        ListParam
    };
}

macro_rules! slot_new {
    (int, $default:expr) => {
        IntParam::new($default)
    };
    // A string's default applies in `validate`; the slot starts empty.
    (str, $default:expr) => {
        StrParam::new()
    };
    (list, $default:expr) => {
        ListParam::new()
    };
}

macro_rules! export {
    (int, $name:ident) => {
        ParamExport::int(c_name(concat!(stringify!($name), "\0")), &SLOTS.$name)
    };
    (str, $name:ident) => {
        ParamExport::str(c_name(concat!(stringify!($name), "\0")), &SLOTS.$name)
    };
    (list, $name:ident) => {
        param_fn!(c_name(concat!(stringify!($name), "\0")), listed::$name)
    };
}

/// The setter Kamailio calls for each value of a repeated parameter; the
/// other kinds need none.
macro_rules! listed_setter {
    (list, $name:ident) => {
        pub fn $name(value: &str) -> Result<(), String> {
            super::check_listed(stringify!($name), value)?;
            super::SLOTS.$name.push(value);
            Ok(())
        }
    };
    ($kind:ident, $name:ident) => {};
}

macro_rules! module_parameters {
    ($($name:ident: $kind:ident = $default:expr, $description:literal;)*) => {
        /// One slot per parameter, named as the script names it.
        pub struct Slots {
            $(pub $name: slot_type!($kind),)*
        }

        pub static SLOTS: Slots = Slots { $($name: slot_new!($kind, $default),)* };

        mod listed {
            $(listed_setter!($kind, $name);)*
        }

        const COUNT: usize = [$(stringify!($name)),*].len();

        /// `modparam("dmq", …)`: the table of exports.rs.
        pub static PARAMS: CoreCell<[ParamExport; COUNT + 1]> =
            CoreCell::new([$(export!($kind, $name),)* ParamExport::END]);

        /// The parameters as the script set them.
        pub fn raw_params() -> RawParams {
            RawParams { $($name: SLOTS.$name.get(),)* }
        }
    };
}

dmq_core::for_each_parameter!(module_parameters);

/// `test_panic` (for tests only, see the guide): arms the injected panic
/// it names (mod_init, before fork). The process names are the ones
/// workers.rs, messaging.rs and lookups.rs fork with.
pub fn arm_test_panic() -> Result<(), String> {
    let Some(spec) = SLOTS.test_panic.get() else { return Ok(()) };
    let sites = [
        ("worker", Site::Process(c"DMQ WORKER")),
        ("timer", Site::Process(c"DMQ RETRANSMIT TIMER")),
        ("dns", Site::Process(c"DMQ DNS")),
        ("sip", Site::ScriptFunction),
    ];
    test_panic::arm(&spec, &sites).map_err(|e| format!("modparam(\"dmq\", \"test_panic\"): {e}"))
}
