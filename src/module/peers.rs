//! DMQ peers: the modules (htable, dmq_usrloc, dialog, presence) and script
//! channels that exchange messages over the bus. Kept in shm with the stock
//! `dmq_peer_t` layout, because consumers hold on to the pointer that
//! `register_dmq_peer` returns and pass it back on every send.

use std::ffi::c_int;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

use crate::host::kstr;
use crate::host::lock::ShmLock;
use crate::raw;

/// The registry in shm: lock, list head and the "init callbacks ran" flag.
#[repr(C)]
struct Registry {
    lock: ShmLock,
    /// Changed only under `lock` (hence the cell: shared, yet mutable).
    head: std::cell::UnsafeCell<*mut raw::dmq_peer>,
    init_done: AtomicI32,
}

struct RegistryPtr(*mut Registry);
// SAFETY: points to shm shared by all processes; the list is only walked or
// changed under the registry's Kamailio lock, the flag is atomic.
unsafe impl Send for RegistryPtr {}
// SAFETY: as above.
unsafe impl Sync for RegistryPtr {}

static REGISTRY: OnceLock<Option<RegistryPtr>> = OnceLock::new();

/// The registry, created on first use. Consumers register from their own
/// mod_init, which may run before ours; either way this happens before
/// fork, so every process sees the same shm block.
fn registry() -> Option<&'static Registry> {
    let ptr = REGISTRY.get_or_init(|| {
        let lock = ShmLock::new();
        // SAFETY: plain shm allocation, zeroed (empty list, flag 0); shm is
        // up before any mod_init.
        let reg = unsafe { raw::dmq_rs_shm_mallocxz(std::mem::size_of::<Registry>()) } as *mut Registry;
        match lock {
            Some(lock) if !reg.is_null() => {
                // SAFETY: reg is a fresh block, not shared yet.
                unsafe { (*reg).lock = lock };
                Some(RegistryPtr(reg))
            }
            _ => {
                log::error!("out of shm for the DMQ peer list");
                None
            }
        }
    });
    // SAFETY: the block lives for the whole process tree.
    ptr.as_ref().map(|p| unsafe { &*p.0 })
}

/// Makes sure the registry exists before fork (mod_init).
pub fn init() -> Result<(), String> {
    registry().map(|_| ()).ok_or_else(|| "out of shm for the DMQ peer list".to_string())
}

impl Registry {
    /// Runs `f` with the lock held (released on unwind too).
    fn locked<R>(&self, f: impl FnOnce(&mut *mut raw::dmq_peer) -> R) -> R {
        let _guard = self.lock.lock();
        // SAFETY: we hold the lock, so we are the only one touching the list.
        f(unsafe { &mut *self.head.get() })
    }
}

/// A registered peer (a pointer into shm, valid until the process tree exits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer(*mut raw::dmq_peer);

impl Peer {
    /// # Safety
    /// `peer` must be a peer of the registry (from `register_dmq_peer`,
    /// `find` or a consumer handing back what it was given): those live in
    /// shm for the whole process tree with the stock layout.
    pub unsafe fn from_raw(peer: *mut raw::dmq_peer) -> Peer {
        Peer(peer)
    }

    pub fn as_raw(&self) -> *mut raw::dmq_peer {
        self.0
    }

    pub fn id(&self) -> String {
        // SAFETY: registered peers are never freed; peer_id points into their block.
        unsafe { kstr::to_string(&(*self.0).peer_id) }
    }

    pub fn callback(&self) -> raw::peer_callback_t {
        // SAFETY: as above; the callback is written once at registration.
        unsafe { (*self.0).callback }
    }
}

fn find_in(mut p: *mut raw::dmq_peer, id: &[u8]) -> Option<Peer> {
    while !p.is_null() {
        // SAFETY: p is a list element (caller holds the lock).
        unsafe {
            if kstr::bytes(&(*p).peer_id) == id {
                return Some(Peer(p));
            }
            p = (*p).next;
        }
    }
    None
}

/// The peer named `id`.
pub fn find(id: &[u8]) -> Option<Peer> {
    registry()?.locked(|head| find_in(*head, id))
}

/// Registers a copy of `peer` (stock semantics: a second peer with the same
/// id is refused with NULL).
pub fn register(peer: &raw::dmq_peer) -> Option<Peer> {
    let reg = registry()?;
    // SAFETY: the caller's strs are valid for this call.
    let (id, description) = unsafe { (kstr::bytes(&peer.peer_id).to_vec(), kstr::bytes(&peer.description).to_vec()) };
    if id.is_empty() {
        log::error!("cannot register a DMQ peer without a name");
        return None;
    }
    reg.locked(|head| {
        if find_in(*head, &id).is_some() {
            log::error!("DMQ peer {:?} is already registered", String::from_utf8_lossy(&id));
            return None;
        }
        let size = std::mem::size_of::<raw::dmq_peer>() + id.len() + description.len();
        // SAFETY: shm block sized for the struct and both strings.
        let block = unsafe { raw::dmq_rs_shm_mallocxz(size) } as *mut raw::dmq_peer;
        if block.is_null() {
            log::error!("out of shm registering DMQ peer {:?}", String::from_utf8_lossy(&id));
            return None;
        }
        // SAFETY: block has room for the struct followed by the two strings.
        unsafe {
            let strings = (block as *mut u8).add(std::mem::size_of::<raw::dmq_peer>());
            std::ptr::copy_nonoverlapping(id.as_ptr(), strings, id.len());
            std::ptr::copy_nonoverlapping(description.as_ptr(), strings.add(id.len()), description.len());
            block.write(raw::dmq_peer {
                peer_id: raw::str_ { s: strings as *mut _, len: id.len() as c_int },
                description: raw::str_ { s: strings.add(id.len()) as *mut _, len: description.len() as c_int },
                callback: peer.callback,
                init_callback: peer.init_callback,
                next: *head,
            });
        }
        *head = block;
        log::info!("DMQ peer {:?} registered", String::from_utf8_lossy(&id));
        Some(Peer(block))
    })
}

/// `register_dmq_peer` of the bind_dmq API.
pub unsafe extern "C" fn register_dmq_peer(peer: *mut raw::dmq_peer) -> *mut raw::dmq_peer {
    crate::host::panic_guard::guard("register_dmq_peer", std::ptr::null_mut(), || {
        if peer.is_null() {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller passes a valid dmq_peer_t for the call.
        register(unsafe { &*peer }).map(|p| p.0).unwrap_or(std::ptr::null_mut())
    })
}

/// The callback of peers created by the script functions: accept with 202,
/// as the stock module does (the script sees the message in its own route).
unsafe extern "C" fn script_peer_callback(
    _msg: *mut raw::sip_msg,
    resp: *mut raw::peer_reponse_t,
    _node: *mut raw::dmq_node_t,
) -> c_int {
    crate::host::panic_guard::guard("script peer", -1, || {
        if resp.is_null() {
            return -1;
        }
        static REASON: &[u8] = b"Accepted DMQ";
        // SAFETY: the worker passes its own zeroed response struct.
        unsafe {
            (*resp) = raw::peer_reponse_t::default();
            (*resp).resp_code = 202;
            (*resp).reason = kstr::borrowed(REASON);
        }
        0
    })
}

/// The peer for a script channel, registered on first use.
pub fn find_or_register_script_peer(id: &[u8]) -> Option<Peer> {
    if let Some(p) = find(id) {
        return Some(p);
    }
    log::info!("script DMQ peer {:?} is new: registering it", String::from_utf8_lossy(id));
    let template = raw::dmq_peer {
        peer_id: kstr::borrowed(id),
        description: kstr::borrowed(b"script"),
        callback: Some(script_peer_callback),
        init_callback: None,
        next: std::ptr::null_mut(),
    };
    // Another process may have registered it in between: then use theirs.
    register(&template).or_else(|| find(id))
}

/// The cluster answered us (or talked to us) for the first time since
/// startup: every peer's init callback runs once, here (this is what makes
/// dmq_usrloc and htable ask the cluster for a full sync).
pub fn cluster_reached() {
    let Some(reg) = registry() else { return };
    if reg.init_done.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return;
    }
    let callbacks: Vec<(String, unsafe extern "C" fn() -> c_int)> = reg.locked(|head| {
        let mut out = Vec::new();
        let mut p = *head;
        while !p.is_null() {
            // SAFETY: list element under the lock.
            unsafe {
                if let Some(cb) = (*p).init_callback {
                    out.push((kstr::to_string(&(*p).peer_id), cb));
                }
                p = (*p).next;
            }
        }
        out
    });
    for (id, cb) in callbacks {
        log::info!("running the init callback of DMQ peer {id:?}");
        // SAFETY: a callback the peer's module registered; called outside the lock.
        if unsafe { cb() } < 0 {
            log::warn!("init callback of DMQ peer {id:?} failed");
        }
    }
}
