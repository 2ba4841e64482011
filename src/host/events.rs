//! Script event routes (`event_route[dmq:...]`), run in whichever process
//! noticed the event, on a faked request, as dispatcher does for its
//! `dispatcher:dst-*` routes.

use std::ffi::CStr;

use crate::host::raw;

/// An event route the script defines.
#[derive(Debug, Clone, Copy)]
pub struct EventRoute(i32);

impl EventRoute {
    /// The route named `name`, None when the script does not define it.
    pub fn lookup(name: &CStr) -> Option<EventRoute> {
        // SAFETY: a plain lookup in the core's route table (filled while the
        // config was parsed, before mod_init).
        let idx = unsafe { raw::dmq_rs_event_route_lookup(name.as_ptr()) };
        (idx >= 0).then_some(EventRoute(idx))
    }

    /// Runs the route with `$xavp(dmq_node=>uri)` and `$xavp(dmq_node=>status)`.
    /// Must not be called with a lock held: the route may call anything.
    pub fn run(self, uri: &str, status: &str) {
        // SAFETY: the core copies the xavp values; the strings outlive the call.
        let rc = unsafe {
            raw::dmq_rs_run_event_route(
                self.0,
                uri.as_ptr() as *const _,
                uri.len() as i32,
                status.as_ptr() as *const _,
                status.len() as i32,
            )
        };
        if rc < 0 {
            log::error!("cannot run the event route for node {uri}");
        }
    }
}

/// Prepares the faked request event routes run on (mod_init, before fork).
pub fn init() -> Result<(), String> {
    // SAFETY: initializes the core's static faked message; idempotent.
    if unsafe { raw::faked_msg_init() } < 0 {
        return Err("cannot initialize the faked message for event routes".into());
    }
    Ok(())
}
