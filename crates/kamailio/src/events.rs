//! Script event routes (`event_route[module:event]`), run in whichever
//! process noticed the event, on a faked request, as dispatcher does for
//! its `dispatcher:dst-*` routes.

use std::ffi::{CStr, CString};
use std::fmt;

use crate::raw;

/// An event route the script defines.
#[derive(Debug, Clone, Copy)]
pub struct EventRoute(i32);

impl EventRoute {
    /// The route named `name`, None when the script does not define it.
    pub fn lookup(name: &CStr) -> Option<EventRoute> {
        // SAFETY: a plain lookup in the core's route table (filled while the
        // config was parsed, before mod_init).
        let idx = unsafe { raw::krs_event_route_lookup(name.as_ptr()) };
        (idx >= 0).then_some(EventRoute(idx))
    }

    /// Runs the route with an xavp of two string fields set for it:
    /// `$xavp(name=>k1)` = v1 and `$xavp(name=>k2)` = v2, removed again
    /// afterwards. Must not be called with a lock held: the route may call
    /// anything. False when the route could not run.
    #[must_use]
    pub fn run_with_xavp(self, name: &str, [(k1, v1), (k2, v2)]: [(&str, &str); 2]) -> bool {
        let len = |s: &str| s.len() as i32;
        // SAFETY: the core copies the xavp's names and values; the strings
        // outlive the call.
        let rc = unsafe {
            raw::krs_run_event_route(
                self.0,
                name.as_ptr() as *const _,
                len(name),
                k1.as_ptr() as *const _,
                len(k1),
                v1.as_ptr() as *const _,
                len(v1),
                k2.as_ptr() as *const _,
                len(k2),
                v2.as_ptr() as *const _,
                len(v2),
            )
        };
        rc >= 0
    }
}

/// The core could not prepare the faked request event routes run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventsInitError;

impl fmt::Display for EventsInitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cannot initialize the faked message for event routes")
    }
}

impl std::error::Error for EventsInitError {}

/// Prepares the faked request event routes run on (mod_init, before fork).
pub fn init() -> Result<(), EventsInitError> {
    // SAFETY: initializes the core's static faked message; idempotent.
    if unsafe { raw::faked_msg_init() } < 0 {
        return Err(EventsInitError);
    }
    Ok(())
}

/// Where a module's events go: the script's event routes of those names,
/// or one function of the KEMI engine (Lua, Python…) called with the
/// event's name (as a module's `event_callback` parameter names it).
#[derive(Debug, Clone)]
pub enum EventTarget {
    /// The route of the event's name, when the script defines it.
    Route(Option<EventRoute>),
    /// A KEMI function's name (e.g. what a module's `event_callback`
    /// parameter names).
    Kemi(String),
}

impl EventTarget {
    /// Runs the event on a faked request whose R-URI (`$ru`) is `uri`.
    /// Must not be called with a lock held: the route or function may call
    /// anything.
    pub fn run(&self, event: &str, uri: &str) {
        let (rt, cb): (i32, &str) = match self {
            EventTarget::Route(Some(route)) => (route.0, ""),
            EventTarget::Route(None) => return,
            EventTarget::Kemi(name) => (-1, name.as_str()),
        };
        // The engines read the function's name and the parameter as C
        // strings (app_lua pushes them with lua_pushstring): both get a
        // NUL after their length.
        let (Ok(cb), Ok(event_c)) = (CString::new(cb), CString::new(event)) else { return };
        // SAFETY: the strings outlive the call and are NUL-terminated after
        // their length; the core copies the URI into the faked request's
        // new_uri (pkg memory the shim frees again) and reads the function
        // and event names during the call.
        let rc = unsafe {
            raw::krs_run_event(
                rt,
                cb.as_ptr(),
                cb.as_bytes().len() as i32,
                event_c.as_ptr(),
                event_c.as_bytes().len() as i32,
                uri.as_ptr() as *const _,
                uri.len() as i32,
            )
        };
        if rc < 0 {
            match self {
                EventTarget::Kemi(name) => {
                    log::error!("cannot run the KEMI function {name}({event}) for {uri} (no KEMI engine, or the function failed)")
                }
                EventTarget::Route(_) => log::error!("cannot run event_route[{event}] for {uri}"),
            }
        }
    }
}
