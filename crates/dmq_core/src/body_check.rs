//! Checks a peer message's JSON body before a consumer sees it.
//!
//! The stock consumers parse the body with srjson and then trust its shape:
//! htable and dmq_usrloc read the first member of the top-level object
//! without checking there is one (`{}` crashes them), every consumer calls
//! `strlen` on `valuestring` for the members it takes as strings (a number
//! or null there crashes it), dialog walks `vars` as an object of strings,
//! presence reads `presentity` as an object. So a well-formed JSON body from
//! anyone who reaches the port can take the whole Kamailio down.
//!
//! [`check`] validates the body (strict JSON, bounded nesting) and, for the
//! peers of the known consumers, the shape they read. It walks the bytes
//! once and allocates nothing unless it refuses.

use std::fmt;

/// Deeper nesting is refused: srjson parses recursively, and no consumer
/// sends more than three levels.
pub const MAX_DEPTH: usize = 32;

/// What a consumer reads from an object.
pub struct Shape {
    /// Members it reads as strings (`strlen(valuestring)`).
    pub strings: &'static [&'static str],
    /// Members holding objects, and what it reads from them.
    pub nested: &'static [(&'static str, Nested)],
    /// Values of the top-level `action` that change one item (a contact,
    /// a cell, a dialog): see [`is_single_update`].
    pub updates: &'static [i64],
}

pub enum Nested {
    /// An object whose every member is a string (dialog's `vars`).
    StringMap,
    /// An object read with this shape (presence's `presentity`).
    Object(&'static Shape),
    /// An object or array whose every item is a non-empty object read with
    /// this shape (dmq_usrloc's `multi` batch, htable's sync `cells`).
    EachObject(&'static Shape),
}

const USRLOC_CONTACT: Shape = Shape {
    // (`sockname`: replicate_socket_info 2, 6.0 and 6.1)
    strings: &["aor", "ruid", "c", "received", "sock", "sockname", "path", "callid", "user_agent", "instance"],
    nested: &[],
    updates: &[],
};
// dmq_usrloc: DMQ_UPDATE 1, DMQ_RM 2 (DMQ_SYNC 3 sends the whole table).
const USRLOC: Shape =
    Shape { strings: USRLOC_CONTACT.strings, nested: &[("multi", Nested::EachObject(&USRLOC_CONTACT))], updates: &[1, 2] };

const HTABLE_CELL: Shape = Shape { strings: &["htname", "cname", "strval"], nested: &[], updates: &[] };
// htable: SET_CELL 2, SET_CELL_EXPIRE 3, DEL_CELL 4 (SYNC 1 sends every
// table; RM_CELL_RE/SW 5/6 walk a whole table).
const HTABLE: Shape = Shape { strings: HTABLE_CELL.strings, nested: &[("cells", Nested::EachObject(&HTABLE_CELL))], updates: &[2, 3, 4] };

const DIALOG: Shape = Shape {
    strings: &[
        "callid",
        "profiles",
        "tag1",
        "tag2",
        "cseq1",
        "cseq2",
        "route_set1",
        "route_set2",
        "contact1",
        "contact2",
        "from_uri",
        "to_uri",
        "req_uri",
    ],
    nested: &[("vars", Nested::StringMap)],
    // dialog: DLG_DMQ_UPDATE 1, DLG_DMQ_STATE 2, DLG_DMQ_RM 3 (SYNC 4).
    updates: &[1, 2, 3],
};

const PRESENTITY: Shape = Shape { strings: &["domain", "user", "etag", "sender", "event"], nested: &[], updates: &[] };
// presence 6.1 replicates subscriptions too (`enable_subs_dmq`): every
// member it reads as a string (the numbers it reads leniently).
const SUBSCRIPTION: Shape = Shape {
    strings: &[
        "pres_uri",
        "contact",
        "local_contact",
        "watcher_domain",
        "watcher_user",
        "from_domain",
        "from_user",
        "to_domain",
        "to_user",
        "from_tag",
        "to_tag",
        "user_agent",
        "callid",
        "reason",
        "socket_info",
        "record_route",
        "event_id",
        "event",
    ],
    nested: &[],
    updates: &[],
};
// presence: its updates may reach its database; always left to a worker.
const PRESENCE: Shape = Shape {
    strings: &["cur_etag", "sphere", "ruid", "body"],
    nested: &[("presentity", Nested::Object(&PRESENTITY)), ("subscription", Nested::Object(&SUBSCRIPTION))],
    updates: &[],
};

/// The shape the stock consumer registered as `peer` reads, if it is one.
pub fn consumer_shape(peer: &str) -> Option<&'static Shape> {
    match peer {
        "usrloc" => Some(&USRLOC),
        "htable" => Some(&HTABLE),
        "dialog" => Some(&DIALOG),
        "presence" => Some(&PRESENCE),
        _ => None,
    }
}

/// Why a body was refused; Display is the log line's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Not JSON at all (or nested too deep): what was expected, where.
    Syntax { expected: &'static str, at: usize },
    /// The consumer needs a non-empty object at the top.
    NotAnObject,
    /// A member the consumer reads as a string holds something else.
    NotAString(String),
    /// A member the consumer reads as an object (of objects) does not hold one.
    NotObjects(String),
    /// A key with escapes where the consumer matches keys by name.
    EscapedKey,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Syntax { expected, at } => write!(f, "not valid JSON: {expected} expected at byte {at}"),
            BodyError::NotAnObject => f.write_str("the body is not a non-empty JSON object"),
            BodyError::NotAString(k) => write!(f, "member {k:?} is not a string"),
            BodyError::NotObjects(k) => write!(f, "member {k:?} does not hold the objects its consumer reads"),
            BodyError::EscapedKey => f.write_str("a member name has escapes"),
        }
    }
}

/// Checks `body` for `peer`: the consumer's shape for a known consumer,
/// valid JSON for any other peer whose content type names JSON, nothing
/// otherwise.
pub fn check(peer: &str, content_type: &str, body: &[u8]) -> Result<(), BodyError> {
    match consumer_shape(peer) {
        Some(shape) => check_shape(body, shape),
        None if is_json(content_type) => {
            let mut p = Parser { b: body, i: 0 };
            p.value(0)?;
            p.end()
        }
        None => Ok(()),
    }
}

/// Whether `body` (one that passed [`check`]) asks `peer`'s stock consumer
/// to change one item (a contact, a cell, a dialog: a top-level `action`
/// among the shape's updates, no batch member): work about the size of the
/// request itself. Not so: a sync request (the consumer then sends its
/// whole state), a batch, anything for another peer.
pub fn is_single_update(peer: &str, body: &[u8]) -> bool {
    let Some(shape) = consumer_shape(peer) else { return false };
    let mut p = Parser { b: body, i: 0 };
    let (mut update, mut batch) = (false, false);
    let read = p.members(0, |p, key, _, d| {
        p.ws();
        let start = p.i;
        p.value(d)?;
        if key == b"action" {
            let action = std::str::from_utf8(&p.b[start..p.i]).ok().and_then(|v| v.parse::<i64>().ok());
            update = action.is_some_and(|a| shape.updates.contains(&a));
        } else if shape.nested.iter().any(|(k, n)| matches!(n, Nested::EachObject(_)) && k.as_bytes() == key) {
            batch = true;
        }
        Ok(())
    });
    read.is_ok() && update && !batch
}

fn is_json(content_type: &str) -> bool {
    content_type.as_bytes().windows(4).any(|w| w.eq_ignore_ascii_case(b"json"))
}

/// A non-empty top-level object read with `shape`.
pub fn check_shape(body: &[u8], shape: &Shape) -> Result<(), BodyError> {
    let mut p = Parser { b: body, i: 0 };
    p.ws();
    if p.peek() != Some(b'{') {
        // Tell "not JSON" from "JSON of the wrong shape".
        p.value(0)?;
        p.end()?;
        return Err(BodyError::NotAnObject);
    }
    if p.object(0, shape)? == 0 {
        return Err(BodyError::NotAnObject);
    }
    p.end()
}

#[derive(PartialEq, Eq, Clone, Copy)]
pub(crate) enum Kind {
    Object { members: usize },
    Array,
    String,
    Other,
}

pub(crate) struct Parser<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) i: usize,
}

impl<'a> Parser<'a> {
    pub(crate) fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    pub(crate) fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }

    fn fail<T>(&self, expected: &'static str) -> Result<T, BodyError> {
        Err(BodyError::Syntax { expected, at: self.i })
    }

    fn eat(&mut self, c: u8, expected: &'static str) -> Result<(), BodyError> {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            self.fail(expected)
        }
    }

    pub(crate) fn end(&mut self) -> Result<(), BodyError> {
        self.ws();
        if self.i == self.b.len() {
            Ok(())
        } else {
            self.fail("the end of the body")
        }
    }

    /// Any value, checked and skipped.
    pub(crate) fn value(&mut self, depth: usize) -> Result<Kind, BodyError> {
        if depth > MAX_DEPTH {
            return self.fail("less nesting");
        }
        self.ws();
        match self.peek() {
            Some(b'{') => {
                const ANY: Shape = Shape { strings: &[], nested: &[], updates: &[] };
                Ok(Kind::Object { members: self.object(depth, &ANY)? })
            }
            Some(b'[') => {
                self.items(depth, |p, d| p.value(d).map(drop))?;
                Ok(Kind::Array)
            }
            Some(b'"') => self.string().map(|_| Kind::String),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => self.fail("a value"),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<Kind, BodyError> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(Kind::Other)
        } else {
            self.fail("true, false or null")
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<Kind, BodyError> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return self.fail("a digit"),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return self.fail("a digit");
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return self.fail("a digit");
            }
        }
        Ok(Kind::Other)
    }

    /// A string; returns its raw bytes (escapes as written) and whether it
    /// has any escape.
    pub(crate) fn string(&mut self) -> Result<(&'a [u8], bool), BodyError> {
        self.eat(b'"', "a string")?;
        let start = self.i;
        let mut escaped = false;
        loop {
            match self.peek() {
                None => return self.fail("the end of a string"),
                Some(b'"') => {
                    let raw = &self.b[start..self.i];
                    self.i += 1;
                    return Ok((raw, escaped));
                }
                Some(b'\\') => {
                    escaped = true;
                    self.i += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                        Some(b'u') => {
                            let hex = self.b.get(self.i + 1..self.i + 5);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return self.fail("four hex digits");
                            }
                            self.i += 5;
                        }
                        _ => return self.fail("an escape"),
                    }
                }
                // Raw bytes pass as srjson takes them (it does not check UTF-8).
                Some(_) => self.i += 1,
            }
        }
    }

    /// `[ item, … ]`, each item read by `item`.
    pub(crate) fn items(&mut self, depth: usize, mut item: impl FnMut(&mut Self, usize) -> Result<(), BodyError>) -> Result<(), BodyError> {
        self.eat(b'[', "an array")?;
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            item(self, depth + 1)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return self.fail("',' or ']'"),
            }
        }
    }

    /// `{ "key": value, … }` read with `shape`; returns the member count.
    fn object(&mut self, depth: usize, shape: &Shape) -> Result<usize, BodyError> {
        self.members(depth, |p, key, escaped, d| {
            let rule = shape.nested.iter().find(|(k, _)| k.as_bytes() == key);
            let is_string = shape.strings.iter().any(|k| k.as_bytes() == key);
            // A shape matches names byte for byte; srjson would decode them.
            if escaped && !(shape.strings.is_empty() && shape.nested.is_empty()) {
                return Err(BodyError::EscapedKey);
            }
            match rule {
                Some((name, nested)) => p.nested(d, name, nested),
                None => match p.value(d)? {
                    Kind::String => Ok(()),
                    _ if is_string => Err(BodyError::NotAString(String::from_utf8_lossy(key).into_owned())),
                    _ => Ok(()),
                },
            }
        })
    }

    pub(crate) fn members(
        &mut self,
        depth: usize,
        mut member: impl FnMut(&mut Self, &'a [u8], bool, usize) -> Result<(), BodyError>,
    ) -> Result<usize, BodyError> {
        if depth > MAX_DEPTH {
            return self.fail("less nesting");
        }
        self.eat(b'{', "an object")?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(0);
        }
        let mut count = 0;
        loop {
            self.ws();
            let (key, escaped) = self.string()?;
            self.eat(b':', "':'")?;
            member(self, key, escaped, depth + 1)?;
            count += 1;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(count);
                }
                _ => return self.fail("',' or '}'"),
            }
        }
    }

    fn nested(&mut self, depth: usize, name: &str, nested: &Nested) -> Result<(), BodyError> {
        let wrong = || BodyError::NotObjects(name.to_string());
        self.ws();
        match (nested, self.peek()) {
            (Nested::StringMap, Some(b'{')) => self
                .members(depth, |p, _, _, d| match p.value(d)? {
                    Kind::String => Ok(()),
                    _ => Err(wrong()),
                })
                .map(drop),
            (Nested::Object(shape), Some(b'{')) => self.object(depth, shape).map(drop),
            (Nested::EachObject(shape), Some(b'{')) => self.members(depth, |p, _, _, d| p.item_object(d, shape, name)).map(drop),
            (Nested::EachObject(shape), Some(b'[')) => self.items(depth, |p, d| p.item_object(d, shape, name)),
            _ => {
                self.value(depth)?;
                Err(wrong())
            }
        }
    }

    fn item_object(&mut self, depth: usize, shape: &Shape, name: &str) -> Result<(), BodyError> {
        self.ws();
        if self.peek() != Some(b'{') || self.object(depth, shape)? == 0 {
            return Err(BodyError::NotObjects(name.to_string()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(peer: &str, body: &str) {
        assert_eq!(check(peer, "application/json", body.as_bytes()), Ok(()), "{peer}: {body}");
    }

    fn refused(peer: &str, body: &str) -> BodyError {
        check(peer, "application/json", body.as_bytes()).expect_err(body)
    }

    #[test]
    fn single_updates_are_told_from_syncs_and_batches() {
        let contact = r#"{"action":1,"aor":"alice","ruid":"u","c":"sip:alice@h","expires":1}"#;
        assert!(is_single_update("usrloc", contact.as_bytes()));
        assert!(is_single_update("usrloc", br#"{ "aor":"a", "action" : 2 }"#));
        assert!(!is_single_update("usrloc", br#"{"action":3}"#), "a sync request makes the consumer send everything");
        assert!(!is_single_update("usrloc", br#"{"multi":{"0":{"action":1,"aor":"a"}}}"#), "a batch never joins a batch");
        assert!(!is_single_update("usrloc", br#"{"action":1,"multi":{"1":{"action":1,"aor":"a"}}}"#));
        assert!(!is_single_update("usrloc", br#"{"aor":"a"}"#));
        assert!(!is_single_update("usrloc", br#"{"action":1.5}"#));
        assert!(!is_single_update("usrloc", br#"{"action":"1"}"#));
        assert!(is_single_update("htable", br#"{"action":2,"htname":"t","cname":"q","type":0,"intval":7,"mode":0}"#));
        assert!(!is_single_update("htable", br#"{"action":1}"#));
        assert!(!is_single_update("htable", br#"{"action":5,"htname":"t","cname":"^a"}"#));
        assert!(!is_single_update("htable", br#"{"cells":[{"htname":"t","cname":"k"}]}"#));
        assert!(is_single_update("dialog", br#"{"action":2,"h_entry":1,"h_id":2,"state":4}"#));
        assert!(!is_single_update("dialog", br#"{"action":4}"#));
        assert!(!is_single_update("presence", br#"{"action":1,"presentity":{"user":"u"}}"#));
        assert!(!is_single_update("my_channel", br#"{"action":1}"#));
        assert!(!is_single_update("usrloc", b"{\"action\":1"));
    }

    #[test]
    fn what_the_stock_consumers_send_passes() {
        ok(
            "usrloc",
            r#"{"action":1,"aor":"alice","ruid":"uloc-1","c":"sip:alice@10.0.0.9:5060","received":"","path":"","callid":"c1","user_agent":"sipp","instance":"","expires":1700000000,"cseq":1,"flags":0,"cflags":0,"q":-1,"last_modified":1699990000,"methods":4294967295,"reg_id":0,"server_id":0}"#,
        );
        ok("usrloc", r#"{"multi":{"1":{"action":1,"aor":"a","c":"sip:a@h"},"2":{"action":2,"aor":"b"}}}"#);
        ok("usrloc", r#"{"action":3}"#);
        ok("htable", r#"{"action":1,"htname":"t","cname":"k","type":2,"strval":"v\u00e9\"","mode":0}"#);
        ok("htable", r#"{"cells":[{"htname":"t","cname":"k","type":0,"intval":-5,"expire":0}]}"#);
        ok("htable", r#"{"cells":[]}"#);
        ok(
            "dialog",
            r#"{"action":1,"h_entry":3,"h_id":7,"init_ts":1,"callid":"x","from_uri":"sip:a@b","to_uri":"sip:c@d","req_uri":"sip:c@d","tag1":"t","cseq1":"1","route_set1":"","contact1":"sip:a@h","vars":{"v1":"x"},"profiles":"[]"}"#,
        );
        ok(
            "presence",
            r#"{"action":1,"presentity":{"domain":"d","user":"u","etag":"e","event":"presence","expires":3600,"recv":0,"sender":""},"t_new":1,"body":"<x/>"}"#,
        );
        // Whitespace around tokens, exponents, raw non-UTF-8 bytes in strings.
        assert_eq!(check("htable", "", b" {\"action\" : 1e3 , \"strval\":\"\xff\xfe\"}\r\n"), Ok(()));
    }

    #[test]
    fn the_crashing_bodies_are_refused() {
        for peer in ["usrloc", "htable", "dialog", "presence"] {
            assert_eq!(refused(peer, "{}"), BodyError::NotAnObject);
            assert_eq!(refused(peer, "[1]"), BodyError::NotAnObject);
            assert_eq!(refused(peer, " 7 "), BodyError::NotAnObject);
            assert!(matches!(refused(peer, ""), BodyError::Syntax { .. }));
        }
        assert_eq!(refused("usrloc", r#"{"action":1,"aor":null}"#), BodyError::NotAString("aor".into()));
        assert_eq!(refused("usrloc", r#"{"action":1,"c":5}"#), BodyError::NotAString("c".into()));
        assert_eq!(refused("usrloc", r#"{"multi":{"1":{"aor":1}}}"#), BodyError::NotAString("aor".into()));
        assert_eq!(refused("usrloc", r#"{"multi":{"1":{}}}"#), BodyError::NotObjects("multi".into()));
        assert_eq!(refused("usrloc", r#"{"multi":[[1]]}"#), BodyError::NotObjects("multi".into()));
        assert_eq!(refused("usrloc", r#"{"multi":"x"}"#), BodyError::NotObjects("multi".into()));
        assert_eq!(refused("htable", r#"{"action":1,"htname":1}"#), BodyError::NotAString("htname".into()));
        assert_eq!(refused("htable", r#"{"cells":[[1]]}"#), BodyError::NotObjects("cells".into()));
        assert_eq!(refused("htable", r#"{"cells":[{"strval":false}]}"#), BodyError::NotAString("strval".into()));
        assert_eq!(refused("dialog", r#"{"callid":1}"#), BodyError::NotAString("callid".into()));
        assert_eq!(refused("dialog", r#"{"action":1,"vars":["x"]}"#), BodyError::NotObjects("vars".into()));
        assert_eq!(refused("dialog", r#"{"action":1,"vars":{"k":2}}"#), BodyError::NotObjects("vars".into()));
        assert_eq!(refused("presence", r#"{"action":1,"presentity":[1]}"#), BodyError::NotObjects("presentity".into()));
        assert_eq!(refused("presence", r#"{"action":1,"presentity":{"user":1}}"#), BodyError::NotAString("user".into()));
        assert_eq!(refused("presence", r#"{"body":null}"#), BodyError::NotAString("body".into()));
        // srjson decodes escaped names: "a\u006fr" is "aor" to the consumer.
        assert_eq!(refused("usrloc", r#"{"a\u006fr":1}"#), BodyError::EscapedKey);
    }

    #[test]
    fn malformed_json_is_refused() {
        for bad in [
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "[1,]",
            "{\"a\":tru}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":-}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\u12\"}",
            "{\"a\":\"open}",
            "{\"a\":1} x",
            "{'a':1}",
            "{\"a\":1e}",
        ] {
            assert!(matches!(refused("htable", bad), BodyError::Syntax { .. }), "{bad}");
            assert!(matches!(refused("other", bad), BodyError::Syntax { .. }), "{bad}");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(refused("other", &deep), BodyError::Syntax { expected: "less nesting", .. }));
        let deep_obj = format!("{{\"a\":{}1{}}}", "{\"b\":".repeat(MAX_DEPTH + 2), "}".repeat(MAX_DEPTH + 2));
        assert!(matches!(refused("htable", &deep_obj), BodyError::Syntax { .. }));
        let fine = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        ok("other", &fine);
    }

    #[test]
    fn other_peers_get_the_generic_check() {
        ok("mypeer", "[1, {\"x\": null}]");
        ok("mypeer", "\"just a string\"");
        assert_eq!(check("mypeer", "text/plain", b"not json at all"), Ok(()));
        assert!(check("mypeer", "Application/JSON; charset=utf-8", b"{").is_err());
    }

    /// Mutations of real bodies (flips, cuts, insertions): the check never
    /// panics, and what it accepts a strict parser accepts too.
    #[test]
    fn mutated_bodies_never_panic_and_only_json_passes() {
        let seeds: [&[u8]; 4] = [
            br#"{"multi":{"1":{"action":1,"aor":"a","c":"sip:a@h","expires":-1.5e3}}}"#,
            br#"{"cells":[{"htname":"t","cname":"k","type":2,"strval":"v\u00e9"}]}"#,
            br#"{"action":1,"callid":"x","vars":{"k":"v"},"profiles":"[]"}"#,
            br#"{"action":1,"presentity":{"user":"u"},"body":"<x/>","t_new":true,"n":null}"#,
        ];
        let tokens: &[&[u8]] = &[b"{", b"}", b"[", b"]", b"\"", b":", b",", b"\\", b"1", b"-", b"e", b"null", b" "];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..60_000 {
            let mut body = seeds[round % seeds.len()].to_vec();
            for _ in 0..1 + next() % 3 {
                let at = (next() as usize) % (body.len() + 1);
                match next() % 4 {
                    0 if at < body.len() => body[at] = next() as u8,
                    1 => body.truncate(at),
                    2 => {
                        let t = tokens[(next() as usize) % tokens.len()];
                        body.splice(at..at, t.iter().copied());
                    }
                    _ if at < body.len() => {
                        body.remove(at);
                    }
                    _ => {}
                }
            }
            for peer in ["usrloc", "htable", "dialog", "presence", "other"] {
                // Raw control bytes in strings pass, as srjson takes them.
                if check(peer, "application/json", &body).is_ok() && !body.iter().any(|b| *b < 0x20) {
                    if let Ok(text) = std::str::from_utf8(&body) {
                        assert!(serde_json::from_str::<serde_json::Value>(text).is_ok(), "{peer} accepted {text}");
                    }
                }
            }
        }
    }

    #[test]
    fn presence_6_1_subscriptions_pass_and_their_strings_are_checked() {
        // PRES_DMQ_UPDATE_SUBSCRIPTION (3) as presence 6.1 builds it, and its sync request (4).
        ok(
            "presence",
            r#"{"action":3,"subscription":{"pres_uri":"sip:alice@dmq.test","contact":"sip:bob@10.0.0.9:5060","local_contact":"sip:127.0.0.2:5060","watcher_domain":"dmq.test","watcher_user":"bob","from_domain":"dmq.test","from_user":"bob","to_domain":"dmq.test","to_user":"alice","from_tag":"f1","to_tag":"t1","user_agent":"","callid":"c1","reason":"","socket_info":"udp:127.0.0.2:5060","record_route":"","event_id":"","event":"presence","local_cseq":1,"remote_cseq":1,"expires":1700000600,"flags":0,"status":1,"version":0,"updated":0,"updated_winfo":0}}"#,
        );
        ok("presence", r#"{"action":4}"#);
        assert_eq!(refused("presence", r#"{"action":3,"subscription":{"callid":7}}"#), BodyError::NotAString("callid".into()));
        assert_eq!(refused("presence", r#"{"action":3,"subscription":[1]}"#), BodyError::NotObjects("subscription".into()));
    }

    #[test]
    fn a_contact_s_socket_name_must_be_a_string() {
        ok("usrloc", r#"{"action":1,"aor":"a","ruid":"u","c":"sip:a@h","sockname":"s1","expires":1}"#);
        assert_eq!(refused("usrloc", r#"{"action":1,"aor":"a","sockname":7}"#), BodyError::NotAString("sockname".into()));
    }
}
