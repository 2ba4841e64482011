//! The shm layer against the malloc-backed stand-in (`crate::test_shm`):
//! threads play Kamailio's processes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::Duration;

use super::*;
use crate::test_shm::{is_live, live_blocks, lock_held, serial};

crate::shm_data! {
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Tag { n: u32, due: u64 }
}

crate::shm_zeroed! {
    struct Pair { first: u64, second: u64 }
}

crate::shm_zeroed! {
    struct Queue { list: ShmFifo<Tag> }
}

// Every test takes `serial()`: the block counts and the recycler are the
// whole test process's.

/// Larger than the recycler's largest class: such blocks go straight to
/// the allocator and back, so a leak or a double free shows in the count.
const BIG: usize = 5000;

fn recycler() {
    static INIT: Once = Once::new();
    INIT.call_once(|| recycled::init().unwrap());
}

fn addr<H: ShmData + Copy>(b: &ShmBlock<H>) -> *const u8 {
    b.0.as_ptr() as *const u8
}

#[test]
fn a_mutex_holds_its_value_and_keeps_threads_apart() {
    let _serial = serial();
    let m = ShmMutex::new(7u64).unwrap();
    assert_eq!(*m.lock(), 7);
    *m.lock() += 1;
    assert_eq!(*m.lock(), 8);

    let pair: &'static ShmMutex<Pair> = ShmMutex::new_zeroed().unwrap();
    {
        let p = pair.lock();
        assert_eq!((p.first, p.second), (0, 0));
    }
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..500 {
                    let mut p = pair.lock();
                    // Nobody sees the pair between the two writes.
                    assert_eq!(p.first, p.second);
                    p.first += 1;
                    std::hint::spin_loop();
                    p.second += 1;
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let p = pair.lock();
    assert_eq!((p.first, p.second), (2000, 2000));
}

#[test]
fn lock_within_gives_up_while_the_lock_stays_held() {
    let _serial = serial();
    let m: &'static ShmMutex<u64> = ShmMutex::new(0).unwrap();
    let held = m.lock();
    let other = std::thread::spawn(move || m.lock_within(Duration::from_millis(30)).is_none());
    assert!(other.join().unwrap(), "took a held lock");
    drop(held);
    assert!(std::thread::spawn(move || m.lock_within(Duration::from_millis(30)).is_some()).join().unwrap());
}

#[test]
fn a_block_holds_its_header_and_bytes_and_is_freed_once() {
    let _serial = serial();
    let before = live_blocks();
    let big = vec![7u8; BIG];
    let mut b = ShmBlock::new(Tag { n: 1, due: 2 }, &[b"ab", &big, b"cd"]).unwrap();
    assert_eq!(live_blocks(), before + 1);
    assert_eq!(*b.header(), Tag { n: 1, due: 2 });
    assert_eq!(b.bytes().len(), BIG + 4);
    assert_eq!(&b.bytes()[..3], b"ab\x07");
    assert_eq!(&b.bytes()[BIG + 1..], b"\x07cd");
    b.header_mut().n = 9;
    b.bytes_mut()[0] = b'X';
    assert_eq!((b.header().n, b.bytes()[0]), (9, b'X'));

    let z = ShmBlock::zeroed(Tag { n: 3, due: 0 }, BIG).unwrap();
    assert!(z.bytes().iter().all(|&x| x == 0));
    assert_eq!(z.bytes().len(), BIG);

    // Through C and back: the same block, still one owner.
    let at = addr(&b);
    let raw = b.into_raw();
    // SAFETY: from into_raw with the same header type, taken back once.
    let back = unsafe { ShmBlock::<Tag>::from_raw(raw) }.unwrap();
    assert_eq!((addr(&back), back.header().n), (at, 9));
    drop(back);
    drop(z);
    assert!(!is_live(at));
    assert_eq!(live_blocks(), before);
}

#[test]
fn a_fifo_keeps_order_and_hands_each_block_to_one_owner() {
    let _serial = serial();
    let before = live_blocks();
    let q: &'static ShmMutex<Queue> = ShmMutex::new_zeroed().unwrap();
    let after_queue = live_blocks();
    assert!(q.lock().list.is_empty());
    for n in 0..6 {
        let block = ShmBlock::new(Tag { n, due: u64::from(n % 2) }, &[&vec![n as u8; BIG]]).unwrap();
        q.lock().list.push_back(block);
    }
    assert_eq!(q.lock().list.len(), 6);
    assert_eq!(live_blocks(), after_queue + 6);
    // Another "process" takes the odd ones out; the rest keep their order.
    let taken = std::thread::spawn(move || q.lock().list.remove_where(|t| t.due == 1).iter().map(|b| b.header().n).collect::<Vec<_>>())
        .join()
        .unwrap();
    assert_eq!(taken, vec![1, 3, 5]);
    // Taken blocks were dropped in that thread: freed.
    assert_eq!(live_blocks(), after_queue + 3);
    let mut order = Vec::new();
    loop {
        let Some(b) = q.lock().list.pop_front() else { break };
        assert_eq!(b.bytes()[0], b.header().n as u8);
        order.push(b.header().n);
    }
    assert_eq!(order, vec![0, 2, 4]);
    {
        let mut queue = q.lock();
        assert!(queue.list.is_empty() && queue.list.pop_front().is_none());
    }
    // Empty again: a push after the list emptied works (head and tail reset).
    q.lock().list.push_back(ShmBlock::new(Tag { n: 42, due: 0 }, &[&vec![0; BIG]]).unwrap());
    assert_eq!(q.lock().list.pop_front().map(|b| b.header().n), Some(42));
    assert_eq!(live_blocks(), after_queue);
    assert_eq!(after_queue, before + 1);
}

#[test]
fn an_arc_is_freed_by_its_last_owner_in_whichever_thread() {
    let _serial = serial();
    let before = live_blocks();
    let a = ShmArc::new(Tag { n: 5, due: 6 }, &[b"hello", &vec![1; BIG]]).unwrap();
    let at = a.0.as_ptr() as *const u8;
    assert_eq!(live_blocks(), before + 1);
    let clones: Vec<ShmArc<Tag>> = (0..8).map(|_| a.clone()).collect();
    drop(a);
    let seen = AtomicU64::new(0);
    std::thread::scope(|s| {
        for c in clones {
            let seen = &seen;
            s.spawn(move || {
                assert_eq!((c.header().n, &c.bytes()[..5]), (5, &b"hello"[..]));
                seen.fetch_add(1, Ordering::Relaxed);
                drop(c);
            });
        }
    });
    assert_eq!(seen.load(Ordering::Relaxed), 8);
    assert!(!is_live(at), "the last owner did not free the block");
    assert_eq!(live_blocks(), before);

    // One left: still alive after the others went.
    let a = ShmArc::new(Tag { n: 1, due: 1 }, &[&vec![2; BIG]]).unwrap();
    let b = a.clone();
    let at = b.0.as_ptr() as *const u8;
    drop(a);
    assert!(is_live(at));
    assert_eq!(b.bytes()[BIG - 1], 2);
    drop(b);
    assert!(!is_live(at));
}

#[test]
fn the_recycler_keeps_blocks_per_class_and_frees_beyond_its_limit() {
    let _serial = serial();
    recycler();
    let (kept_before, bytes_before) = recycled::kept();
    let live_before = live_blocks();
    // A small block comes in its class's full size and goes back to the bin.
    let b = ShmBlock::new(Tag { n: 1, due: 0 }, &[b"x"]).unwrap();
    let first = addr(&b);
    drop(b);
    let (kept, bytes) = recycled::kept();
    assert!(kept >= 1 && bytes >= 512, "{kept} {bytes}");
    // Taken again: a kept block of that class, not a new allocation.
    let live_kept = live_blocks();
    let again = ShmBlock::new(Tag { n: 2, due: 0 }, &[b"y"]).unwrap();
    assert_eq!(live_blocks(), live_kept);
    assert_eq!(again.bytes(), b"y");
    assert!(is_live(addr(&again)));
    drop(again);
    let _ = first;

    // Many blocks of one class given back: at most 256 kept, the rest freed.
    let class = 2048;
    let many: Vec<ShmBlock<Tag>> = (0..300).map(|n| ShmBlock::zeroed(Tag { n, due: 0 }, class - 200).unwrap()).collect();
    let in_use = live_blocks();
    drop(many);
    let (kept_after, bytes_after) = recycled::kept();
    assert!(kept_after <= 4 * 256);
    let freed = in_use - live_blocks();
    assert!(freed >= 300 - 256, "freed {freed} of 300 given back");
    // What the bins hold is what was allocated and not freed.
    assert!(bytes_after >= bytes_before && kept_after >= kept_before);
    assert_eq!(live_blocks() - live_before, kept_after - kept_before);
}

#[test]
fn a_store_writes_whole_contents_with_a_new_generation_and_refuses_overflow() {
    let _serial = serial();
    let s = ShmStore::new(16).unwrap();
    assert_eq!(s.read(|g, b| (g, b.to_vec())), (0, vec![]));
    assert_eq!(s.with(|old| (Some([old, b"abc"].concat()), 1)), Ok(1));
    assert_eq!(s.with(|old| (Some([old, b"def"].concat()), 2)), Ok(2));
    assert_eq!(s.read(|g, b| (g, b.to_vec())), (2, b"abcdef".to_vec()));
    // Unchanged: no new generation.
    assert_eq!(s.with(|_| (None, 3)), Ok(3));
    assert_eq!(s.read(|g, _| g), 2);
    // Too large: refused, the old contents stay.
    assert_eq!(s.with(|_| (Some(vec![0; 17]), 4)), Err(4));
    assert_eq!(s.read(|g, b| (g, b.to_vec())), (2, b"abcdef".to_vec()));
    // A shorter write shrinks it.
    s.with(|_| (Some(b"z".to_vec()), ())).unwrap();
    assert_eq!(s.read(|g, b| (g, b.to_vec())), (3, b"z".to_vec()));
    // While held, a bounded reader gives up; after, it reads.
    let s: &'static ShmStore = Box::leak(Box::new(s));
    std::thread::scope(|scope| {
        s.with(|_| {
            let r = scope.spawn(|| s.read_within(Duration::from_millis(30), |g, _| g)).join().unwrap();
            assert_eq!(r, None);
            (None, ())
        })
        .unwrap();
    });
    assert_eq!(s.read_within(Duration::from_millis(30), |g, _| g), Some(3));
}

struct LocksWhenDropped(&'static ShmMutex<u64>);

impl Drop for LocksWhenDropped {
    fn drop(&mut self) {
        *self.0.lock() += 1;
    }
}

#[test]
fn a_lock_taken_while_unwinding_is_released_as_usual() {
    let _serial = serial();
    let m: &'static ShmMutex<u64> = ShmMutex::new(0).unwrap();
    let r = crate::panic_guard::catch(|| {
        let _d = LocksWhenDropped(m);
        panic!("unwinding through a destructor that locks");
    });
    assert!(r.is_err());
    // The destructor's critical section ran whole and released the lock.
    assert!(!lock_held(m.lock.as_ptr()));
    assert_eq!(*m.lock_within(Duration::from_millis(100)).expect("the lock was left held"), 1);
}

/// Run by the test below in a process of its own (KRS_PANIC_IN_LOCK=1):
/// a panic inside a critical section.
#[test]
#[ignore = "run by a_panic_inside_a_critical_section_aborts_the_process, in a child process"]
fn panic_inside_a_critical_section_child() {
    if std::env::var_os("KRS_PANIC_IN_LOCK").is_none() {
        return;
    }
    let m: &'static ShmMutex<Pair> = ShmMutex::new_zeroed().unwrap();
    let _ = crate::panic_guard::catch(|| {
        let mut p = m.lock();
        p.first += 1;
        panic!("half-way through the pair");
    });
    // Not reached: the guard aborted before releasing the lock.
    println!("CAUGHT: the panic unwound past a held lock");
}

#[test]
#[cfg_attr(miri, ignore = "Miri cannot run a child process")]
fn a_panic_inside_a_critical_section_aborts_the_process() {
    use std::os::unix::process::ExitStatusExt;
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "shm::tests::panic_inside_a_critical_section_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env("KRS_PANIC_IN_LOCK", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("CAUGHT"), "{stdout}");
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{:?}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
}
