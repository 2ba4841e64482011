//! State the module keeps in shared memory as text (the node list, the
//! heal table): every change to it is the same steps, decode, change,
//! tell whether it changed, encode, so they are written once ([`change`]).

/// A value stored as its text encoding.
pub trait TextState: Clone + PartialEq {
    /// The value a stored text holds (an empty or damaged text: what of it
    /// reads, at worst an empty value).
    fn decode(text: &str) -> Self;
    /// The text to store.
    fn encode(&self) -> String;
}

/// What a change did: `f`'s result, and the value before and after when
/// `f` changed it (then `after.encode()` is what to store).
pub struct Change<T, R> {
    pub result: R,
    pub changed: Option<(T, T)>,
}

/// Decodes `text`, runs `f` on the value and says whether it changed.
pub fn change<T: TextState, R>(text: &str, f: impl FnOnce(&mut T) -> R) -> Change<T, R> {
    let before = T::decode(text);
    let mut after = before.clone();
    let result = f(&mut after);
    let changed = (after != before).then_some((before, after));
    Change { result, changed }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, PartialEq, Debug)]
    struct Words(Vec<String>);

    impl TextState for Words {
        fn decode(text: &str) -> Self {
            Words(text.split_whitespace().map(str::to_string).collect())
        }
        fn encode(&self) -> String {
            self.0.join(" ")
        }
    }

    #[test]
    fn a_change_reports_before_and_after_only_when_the_value_changed() {
        let c = change::<Words, _>("a b", |w| {
            w.0.push("c".into());
            w.0.len()
        });
        assert_eq!(c.result, 3);
        let (before, after) = c.changed.expect("changed");
        assert_eq!((before.encode(), after.encode()), ("a b".to_string(), "a b c".to_string()));
        // A read, or a change undone, stores nothing.
        assert!(change::<Words, _>("a b", |w| w.0.len()).changed.is_none());
        let undone = change::<Words, _>("a b", |w| {
            w.0.push("c".into());
            w.0.pop();
        });
        assert!(undone.changed.is_none());
    }
}
