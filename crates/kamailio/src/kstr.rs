//! Kamailio's `str` (pointer + length, not NUL-terminated).

use crate::raw::str_;

/// The bytes of a Kamailio `str`; empty for a NULL or negative-length one.
///
/// # Safety
/// `s.s` must point to at least `s.len` readable bytes that outlive `'a`.
pub unsafe fn bytes<'a>(s: &str_) -> &'a [u8] {
    if s.s.is_null() || s.len <= 0 {
        return &[];
    }
    // SAFETY: non-null and length checked above; validity is the caller's promise.
    unsafe { std::slice::from_raw_parts(s.s as *const u8, s.len as usize) }
}

/// A Kamailio `str` as an owned String (invalid UTF-8 replaced).
///
/// # Safety
/// As for [`bytes`].
pub unsafe fn to_string(s: &str_) -> String {
    // SAFETY: forwarded to the caller.
    String::from_utf8_lossy(unsafe { bytes(s) }).into_owned()
}

/// A `str` viewing `data`. The core never writes through the `str`s we pass
/// it for lookups, but its signatures take `*mut char`.
pub fn borrowed(data: &[u8]) -> str_ {
    str_ { s: data.as_ptr() as *mut _, len: data.len() as i32 }
}

/// The bytes of the `str` behind a pointer from C; empty for NULL.
///
/// # Safety
/// `s` must be NULL or point to a valid `str` as for [`bytes`].
pub unsafe fn bytes_at<'a>(s: *const str_) -> &'a [u8] {
    if s.is_null() {
        return &[];
    }
    // SAFETY: non-null; validity is the caller's promise.
    unsafe { bytes(&*s) }
}
