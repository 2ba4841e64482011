//! [`PeerMessage`]: a peer message to send, as one type whichever path it
//! takes, so that the module, the tm contexts (`tm_context`) and the
//! consumers' API read the same fields. Kept apart from `kdmq`, which
//! builds what goes on the wire from it, because most of its users never
//! build a request.

/// A peer message to send (a consumer's, or the script's): what every
/// path carries it as (without tm, in a usrloc batch, through tm, again
/// after a 503). `C` is the sender's response callback, opaque here (the
/// module's `ResponseCallback`; its bytes in a tm context).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerMessage<'a, C> {
    /// The peer (channel) it is for: the R-URI user.
    pub peer_id: &'a str,
    pub body: &'a [u8],
    pub content_type: &'a str,
    pub max_forwards: i32,
    pub callback: Option<C>,
    /// A copy of the sender's state made for a sync (a join, a heal sync
    /// or pull): when that sync began (the sender's monotonic ms). It goes
    /// out as [`SYNC_AGE_HEADER`], so a dmq_rs receiver refuses what is
    /// older than an update it already applied (`crate::freshness`).
    ///
    /// [`SYNC_AGE_HEADER`]: crate::sync_headers::SYNC_AGE_HEADER
    pub sync_since: Option<u64>,
    /// A copy of a sync this node runs in answer to a node's sync request
    /// (not a heal push): the answer's id, random per answer. It goes out
    /// with [`SYNC_ANSWER_HEADER`], and the asking dmq_rs node counts its
    /// items against the answer's [`SYNC_SENT_HEADER`] (`crate::sync_runs`).
    ///
    /// [`SYNC_ANSWER_HEADER`]: crate::sync_headers::SYNC_ANSWER_HEADER
    /// [`SYNC_SENT_HEADER`]: crate::sync_headers::SYNC_SENT_HEADER
    pub sync_answer: Option<u64>,
}

impl<'a, C> PeerMessage<'a, C> {
    /// A message on its own: Max-Forwards 1 (never relayed), no response
    /// callback, not a sync's copy (what the script, a heal push's
    /// request and a node's sync requests are; a sync copy sets
    /// `sync_since` and `sync_answer` after).
    pub fn plain(peer_id: &'a str, body: &'a [u8], content_type: &'a str) -> Self {
        PeerMessage { peer_id, body, content_type, max_forwards: 1, callback: None, sync_since: None, sync_answer: None }
    }
}
