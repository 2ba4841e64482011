//! A BINRPC client of the test's own for replies kamcmd cannot take:
//! kamcmd reads at most 128 KB of reply, while `ul.dump` of a few hundred
//! contacts (or `htable.dump` of a few thousand items) is larger. This one
//! speaks the ctl module's protocol (Kamailio's `modules/ctl/binrpc.h`)
//! over the node's ctl socket (a unix stream socket) and reads a reply of
//! any size, bounded in time.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// One value of a reply. Kamailio's ctl sends RPC arrays inside structs as
/// structs, so a struct's members may repeat a name (or have none: "").
#[derive(Clone, Debug, PartialEq)]
pub enum RpcValue {
    Int(i64),
    Str(String),
    Double(f64),
    Struct(Vec<(String, RpcValue)>),
    Array(Vec<RpcValue>),
}

impl RpcValue {
    /// The members of a struct named `name` (none for other values).
    pub fn members<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a RpcValue> + 'a {
        let members: &[(String, RpcValue)] = match self {
            RpcValue::Struct(m) => m,
            _ => &[],
        };
        members.iter().filter(move |(n, _)| n == name).map(|(_, v)| v)
    }

    /// The first member named `name`.
    pub fn get<'a>(&'a self, name: &'a str) -> Option<&'a RpcValue> {
        self.members(name).next()
    }

    /// The value as text (numbers printed as kamcmd prints them).
    pub fn text(&self) -> String {
        match self {
            RpcValue::Int(i) => i.to_string(),
            RpcValue::Str(s) => s.clone(),
            RpcValue::Double(d) => format!("{d}"),
            other => format!("{other:?}"),
        }
    }

    /// Every value in this tree (depth first, this one included) for which
    /// `f` holds.
    pub fn find_all<'a>(&'a self, f: &dyn Fn(&RpcValue) -> bool, out: &mut Vec<&'a RpcValue>) {
        if f(self) {
            out.push(self);
        }
        match self {
            RpcValue::Struct(m) => m.iter().for_each(|(_, v)| v.find_all(f, out)),
            RpcValue::Array(a) => a.iter().for_each(|v| v.find_all(f, out)),
            _ => {}
        }
    }
}

const MAGIC_VERS: u8 = 0xA1;
const REQ: u8 = 0;
const REPL: u8 = 1;
const FAULT: u8 = 3;
const T_INT: u8 = 0;
const T_STR: u8 = 1;
const T_DOUBLE: u8 = 2;
const T_STRUCT: u8 = 3;
const T_ARRAY: u8 = 4;
const T_AVP: u8 = 5;
const T_BYTES: u8 = 6;

/// `method` with string parameters against the ctl socket `ctl`; the
/// reply's top-level values, or the fault / error as text. Bounded: every
/// read and write waits at most `limit`.
pub fn call(ctl: &Path, method: &str, params: &[&str], limit: Duration) -> Result<Vec<RpcValue>, String> {
    let mut body = Vec::new();
    for s in std::iter::once(method).chain(params.iter().copied()) {
        put_str(&mut body, s.as_bytes());
    }
    let cookie: u32 = 0x7e57_0000 | (std::process::id() & 0xffff);
    let mut req = vec![MAGIC_VERS, (REQ << 4) | (3 << 2) | 3];
    req.extend_from_slice(&(body.len() as u32).to_be_bytes());
    req.extend_from_slice(&cookie.to_be_bytes());
    req.extend_from_slice(&body);
    let mut sock = UnixStream::connect(ctl).map_err(|e| format!("connect {}: {e}", ctl.display()))?;
    sock.set_read_timeout(Some(limit)).unwrap();
    sock.set_write_timeout(Some(limit)).unwrap();
    sock.write_all(&req).map_err(|e| format!("{method}: send: {e}"))?;
    let mut fixed = [0u8; 2];
    sock.read_exact(&mut fixed).map_err(|e| format!("{method}: reply header: {e}"))?;
    if fixed[0] != MAGIC_VERS {
        return Err(format!("{method}: not a BINRPC reply ({:#x})", fixed[0]));
    }
    let kind = fixed[1] >> 4;
    let len_len = ((fixed[1] >> 2) & 3) as usize + 1;
    let cookie_len = (fixed[1] & 3) as usize + 1;
    let mut rest = vec![0u8; len_len + cookie_len];
    sock.read_exact(&mut rest).map_err(|e| format!("{method}: reply header: {e}"))?;
    let total = rest[..len_len].iter().fold(0usize, |a, &b| (a << 8) | b as usize);
    let mut reply = vec![0u8; total];
    sock.read_exact(&mut reply).map_err(|e| format!("{method}: reply body ({total} bytes): {e}"))?;
    let mut p = Parser { buf: &reply, pos: 0 };
    let mut values = Vec::new();
    while p.pos < reply.len() {
        match p.record()? {
            Record::Value(v) => values.push(v),
            other => return Err(format!("{method}: unexpected {other:?} at the top of the reply")),
        }
    }
    match kind {
        REPL => Ok(values),
        FAULT => Err(format!("{method}: fault {}", values.iter().map(RpcValue::text).collect::<Vec<_>>().join(" "))),
        other => Err(format!("{method}: reply of type {other}")),
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    let l = s.len() + 1; // with its terminating 0
    if l < 8 {
        out.push(((l as u8) << 4) | T_STR);
    } else {
        let bytes = (l as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push((((4 - skip) as u8 | 8) << 4) | T_STR);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(s);
    out.push(0);
}

#[derive(Debug)]
enum Record {
    Value(RpcValue),
    Named(String, RpcValue),
    End,
}

struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or("BINRPC reply cut short")?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn number(&mut self, n: usize) -> Result<i64, String> {
        let bytes = self.take(n)?;
        let u = bytes.iter().fold(0u64, |a, &b| (a << 8) | b as u64);
        // Kamailio writes ints as 4 bytes and doubles as 8 when negative.
        Ok(match n {
            4 => u as u32 as i32 as i64,
            8 => u as i64,
            _ => u as i64,
        })
    }

    fn record(&mut self) -> Result<Record, String> {
        let head = self.take(1)?[0];
        let kind = head & 0xf;
        let mut len = (head >> 4) as usize;
        let mut end_tag = false;
        if kind != T_DOUBLE && len & 8 != 0 {
            end_tag = true;
            len = self.number(len & 7)? as usize;
        }
        Ok(match kind {
            T_STRUCT | T_ARRAY if end_tag => Record::End,
            T_STRUCT => {
                let mut members = Vec::new();
                loop {
                    match self.record()? {
                        Record::End => break,
                        Record::Named(n, v) => members.push((n, v)),
                        Record::Value(v) => members.push((String::new(), v)),
                    }
                }
                Record::Value(RpcValue::Struct(members))
            }
            T_ARRAY => {
                let mut items = Vec::new();
                loop {
                    match self.record()? {
                        Record::End => break,
                        Record::Named(_, v) | Record::Value(v) => items.push(v),
                    }
                }
                Record::Value(RpcValue::Array(items))
            }
            T_AVP => {
                let name = self.string(len)?;
                match self.record()? {
                    Record::Value(v) => Record::Named(name, v),
                    other => return Err(format!("BINRPC member {name} holds {other:?}")),
                }
            }
            T_INT => Record::Value(RpcValue::Int(self.number(len)?)),
            T_STR => Record::Value(RpcValue::Str(self.string(len)?)),
            T_BYTES => Record::Value(RpcValue::Str(String::from_utf8_lossy(self.take(len)?).into_owned())),
            T_DOUBLE => Record::Value(RpcValue::Double(self.number(len)? as f64 / 1000.0)),
            other => return Err(format!("BINRPC record of unknown type {other}")),
        })
    }

    /// A 0-terminated string of `len` bytes (the 0 included).
    fn string(&mut self, len: usize) -> Result<String, String> {
        let bytes = self.take(len)?;
        let text = bytes.strip_suffix(&[0]).unwrap_or(bytes);
        Ok(String::from_utf8_lossy(text).into_owned())
    }
}
