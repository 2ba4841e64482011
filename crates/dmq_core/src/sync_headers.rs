//! The headers dmq_rs adds to the copies of a sync and to the 200 of a
//! sync request (stock nodes ignore them), and [`answer_id`], how an
//! answer's id is read back from one. Written by `kdmq`, read by
//! `header_scan` and the module's reply paths.

/// How long ago (ms) the sync a copy belongs to began, as the sender
/// counts when it sends it. Stock nodes ignore it.
pub const SYNC_AGE_HEADER: &str = "X-DMQ-Sync-Age";

/// On a sync copy sent in answer to the receiver's own sync request: the
/// answer's id (hex, random per answer), so that it counts toward that
/// answer's [`SYNC_SENT_HEADER`] only (not toward an answer of the same
/// node to an earlier request, or of its earlier self before a restart).
/// Also on the answer's 200, with the count. Stock nodes ignore it.
pub const SYNC_ANSWER_HEADER: &str = "X-DMQ-Sync-Answer";

/// On a dmq_rs node's 200 to a sync request: the items (contacts, cells,
/// dialogs, as `ordering::identify` names them) its sync copies to the
/// asking node carried, all sent before this reply. Stock nodes ignore it.
pub const SYNC_SENT_HEADER: &str = "X-DMQ-Sync-Sent";

/// An answer id as [`SYNC_ANSWER_HEADER`] carries it (hex, not 0).
pub fn answer_id(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok().and_then(|v| u64::from_str_radix(v.trim(), 16).ok()).filter(|&id| id != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_id_is_hex_and_never_0() {
        assert_eq!(answer_id(b"1f"), Some(0x1f));
        assert_eq!(answer_id(b"0"), None);
        assert_eq!(answer_id(b"zz"), None);
    }
}
