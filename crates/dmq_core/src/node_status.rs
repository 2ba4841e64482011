//! A node's state ([`NodeStatus`]) and the words each Kamailio release has
//! for it ([`StatusWords`]): what a notification line's `;status=`
//! carries, what the node list keeps, what `dmq.list_nodes` shows. On its
//! own because the node list, the notification body, the peer events, the
//! statistics and the module's API all name it, and it is none of theirs.

/// A node's state, as carried in `;status=` and shown by `dmq.list_nodes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeStatus {
    Active,
    Timeout,
    Disabled,
    Pending,
    /// Upstream's state for nodes kept after failures (`remove_inactive=0`,
    /// or on the way out with `fail_count_enabled`).
    NotActive,
}

/// The status words of a Kamailio release. Every release reads `active` and
/// `disabled`; 5.6 and 6.0 also `timeout` and `pending`, 6.1 also
/// `not_active`, and each refuses a whole notification over a word it does
/// not know. dmq_rs reads all five on every release ([`NodeStatus::parse`]),
/// sends only the two every release reads ([`NodeStatus::wire_word`]), and
/// shows a release's own words ([`NodeStatus::word`]; the module's host
/// layer says which release it runs on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusWords {
    /// Kamailio 5.6 and 6.0: active, timeout, disabled, pending.
    Classic,
    /// Kamailio 6.1: active, not_active, disabled.
    NotActive,
}

impl StatusWords {
    /// Whether a release of this dialect accepts `word` in a notification.
    pub fn accepts(self, word: &str) -> bool {
        match self {
            StatusWords::Classic => matches!(word, "active" | "timeout" | "disabled" | "pending"),
            StatusWords::NotActive => matches!(word, "active" | "not_active" | "disabled"),
        }
    }
}

impl NodeStatus {
    /// The word of this crate's own encodings (the node list in shm).
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Active => "active",
            NodeStatus::Timeout => "timeout",
            NodeStatus::Disabled => "disabled",
            NodeStatus::Pending => "pending",
            NodeStatus::NotActive => "not_active",
        }
    }

    /// The word a release's own module would show for this state
    /// (`dmq.list_nodes`). 5.6/6.0 have no word for `NotActive` (a state
    /// only the newer parameters reach): upstream's is shown.
    pub fn word(self, words: StatusWords) -> &'static str {
        match (words, self) {
            (StatusWords::NotActive, NodeStatus::Timeout | NodeStatus::Pending) => "not_active",
            _ => self.as_str(),
        }
    }

    /// The word sent in a notification: `active`, or `disabled` for any
    /// state that is not up (bodies list only active nodes and the sender,
    /// and the leave notice says `disabled`), the two words every release
    /// reads.
    pub fn wire_word(self) -> &'static str {
        match self {
            NodeStatus::Active => "active",
            _ => "disabled",
        }
    }

    /// Any release's word (and `not-active`, which earlier dmq_rs builds wrote).
    pub fn parse(s: &str) -> Option<NodeStatus> {
        Some(match s {
            "active" => NodeStatus::Active,
            "timeout" => NodeStatus::Timeout,
            "disabled" => NodeStatus::Disabled,
            "pending" => NodeStatus::Pending,
            "not_active" | "not-active" | "notactive" => NodeStatus::NotActive,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_release_is_shown_its_own_words() {
        let all = [NodeStatus::Active, NodeStatus::Timeout, NodeStatus::Disabled, NodeStatus::Pending, NodeStatus::NotActive];
        for s in all {
            assert!(StatusWords::NotActive.accepts(s.word(StatusWords::NotActive)), "{s:?}");
        }
        for s in [NodeStatus::Active, NodeStatus::Timeout, NodeStatus::Disabled, NodeStatus::Pending] {
            assert!(StatusWords::Classic.accepts(s.word(StatusWords::Classic)), "{s:?}");
        }
        assert_eq!(NodeStatus::Pending.word(StatusWords::NotActive), "not_active");
        assert_eq!(NodeStatus::NotActive.word(StatusWords::Classic), "not_active");
    }
}
