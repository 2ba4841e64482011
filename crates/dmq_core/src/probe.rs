//! Open addressing with linear probing over a slice of u64 keys (0 marks
//! an empty entry), as the shm tables of `ordering` and `origin` keep
//! them: find, the free entry a new key takes, and backward-shift removal
//! (no tombstones: a table that churns for months never degrades).

/// The entry holding `key` (never 0), if any.
pub fn find(keys: &[u64], key: u64) -> Option<usize> {
    let n = keys.len();
    if n == 0 {
        return None;
    }
    let mut i = (key as usize) % n;
    for _ in 0..n {
        match keys[i] {
            0 => return None,
            k if k == key => return Some(i),
            _ => i = (i + 1) % n,
        }
    }
    None
}

/// The empty entry a new `key` takes (the caller keeps the table below
/// full, so there is one).
pub fn free_entry(keys: &[u64], key: u64) -> usize {
    let n = keys.len();
    let mut i = (key as usize) % n;
    while keys[i] != 0 {
        i = (i + 1) % n;
    }
    i
}

/// Empties entry `i`: the entries after it in its probe run move up so
/// none is cut off from its home; `moved(from, to)` moves the caller's
/// values beside each key. Returns the entry left empty at the end (its
/// values are the caller's to clear).
pub fn remove(keys: &mut [u64], mut i: usize, mut moved: impl FnMut(usize, usize)) -> usize {
    let n = keys.len();
    let mut j = i;
    loop {
        j = (j + 1) % n;
        if keys[j] == 0 {
            break;
        }
        let home = (keys[j] as usize) % n;
        // Entry j may fill the hole at i when its home is not in (i, j].
        let movable = if i <= j { home <= i || home > j } else { home <= i && home > j };
        if movable {
            keys[i] = keys[j];
            moved(j, i);
            i = j;
        }
    }
    keys[i] = 0;
    i
}
