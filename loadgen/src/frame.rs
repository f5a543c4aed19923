//! Phoenix V2 JSON serializer: `[join_ref, ref, topic, event, payload]` text frames (spec §3.2).

use serde_json::value::RawValue;
use std::borrow::Cow;

/// A JSON value still as text (a slice of the frame): what `serde_json::value::RawValue` was,
/// without requiring serde to have validated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raw<'a>(pub &'a str);

impl<'a> Raw<'a> {
    pub fn get(&self) -> &'a str {
        self.0
    }
}

/// A decoded server → client frame. Borrowed from the frame text where possible.
#[derive(Debug)]
pub struct InFrame<'a> {
    /// `join_ref`: string (or number, lenient) or `None` for JSON null.
    pub join_ref: Option<Cow<'a, str>>,
    /// `ref`: string (or number, lenient) or `None` for JSON null.
    pub ref_: Option<Cow<'a, str>>,
    pub topic: Cow<'a, str>,
    pub event: Cow<'a, str>,
    /// The payload, still as JSON text (not parsed).
    pub payload: Raw<'a>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    NotArray,
    TooShort(usize),
    BadField(&'static str),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::NotArray => write!(f, "frame is not a JSON array"),
            DecodeError::TooShort(n) => write!(f, "frame has {n} elements, expected 5"),
            DecodeError::BadField(x) => write!(f, "frame field {x} has the wrong type"),
        }
    }
}

fn ref_field<'a>(s: &'a str, name: &'static str) -> Result<Option<Cow<'a, str>>, DecodeError> {
    if s == "null" {
        return Ok(None);
    }
    if s.starts_with('"') {
        return str_field(s, name).map(Some);
    }
    // lenient: numbers are echoed by Phoenix as numbers (spec §12.2)
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'-' || b == b'.') {
        return Ok(Some(Cow::Borrowed(s)));
    }
    Err(DecodeError::BadField(name))
}

fn str_field<'a>(s: &'a str, name: &'static str) -> Result<Cow<'a, str>, DecodeError> {
    if !s.starts_with('"') {
        return Err(DecodeError::BadField(name));
    }
    let inner = &s[1..s.len() - 1];
    if !inner.contains('\\') {
        return Ok(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(s).map(Cow::Owned).map_err(|_| DecodeError::BadField(name))
}

/// Decode a V2 text frame. Extra elements after the fifth are ignored.
///
/// The common shapes (`null`/string/digit refs, string topic and event, an object, array,
/// string or literal payload, exactly five elements) are split by a single byte scan without
/// building serde values ([`scan`]); anything else goes through serde, which also produces the
/// errors. The scan checks the frame's structure (brackets, strings) but not the grammar inside
/// the payload: the payload is parsed (and so validated) by whoever reads it.
pub fn decode(text: &str) -> Result<InFrame<'_>, DecodeError> {
    if let Some(f) = scan(text) {
        return Ok(f);
    }
    decode_serde(text)
}

/// Decode with serde_json (the reference behaviour; errors are classified here).
pub fn decode_serde(text: &str) -> Result<InFrame<'_>, DecodeError> {
    let parts: Vec<&RawValue> = serde_json::from_str(text).map_err(|_| DecodeError::NotArray)?;
    if parts.len() < 5 {
        return Err(DecodeError::TooShort(parts.len()));
    }
    Ok(InFrame {
        join_ref: ref_field(parts[0].get(), "join_ref")?,
        ref_: ref_field(parts[1].get(), "ref")?,
        topic: str_field(parts[2].get(), "topic")?,
        event: str_field(parts[3].get(), "event")?,
        payload: Raw(parts[4].get()),
    })
}

#[inline]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// End (exclusive) of the JSON string opening at `b[i] == '"'`, or None if unterminated or it
/// holds a raw control character.
#[inline]
fn skip_str(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'"' => return Some(j + 1),
            b'\\' => j += 2,
            c if c < 0x20 => return None,
            _ => j += 1,
        }
    }
    None
}

/// End (exclusive) of the object or array opening at `b[i]`: brackets matched by kind, strings
/// skipped. The grammar between brackets is not checked.
fn skip_nested(b: &[u8], i: usize) -> Option<usize> {
    // bit stack of open brackets: 1 = '{', 0 = '['
    let mut stack: u128 = 0;
    let mut depth = 0u32;
    let mut j = i;
    while j < b.len() {
        match b[j] {
            b'"' => {
                j = skip_str(b, j)?;
                continue;
            }
            c @ (b'{' | b'[') => {
                if depth == 128 {
                    return None;
                }
                stack = (stack << 1) | (c == b'{') as u128;
                depth += 1;
            }
            c @ (b'}' | b']') => {
                if depth == 0 || ((stack & 1) == 1) != (c == b'}') {
                    return None;
                }
                stack >>= 1;
                depth -= 1;
                if depth == 0 {
                    return Some(j + 1);
                }
            }
            _ => {}
        }
        j += 1;
    }
    None
}

/// One element of the frame array: (text, end). Scalars other than null/true/false and plain
/// digit strings are not accepted (serde decides about them).
fn scan_elem(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => skip_str(b, i),
        b'{' | b'[' => skip_nested(b, i),
        _ => {
            let mut j = i;
            while j < b.len() && b[j].is_ascii_alphanumeric() {
                j += 1;
            }
            let tok = &b[i..j];
            let digits = !tok.is_empty() && tok.iter().all(u8::is_ascii_digit) && (tok.len() == 1 || tok[0] != b'0');
            if tok == b"null" || tok == b"true" || tok == b"false" || digits {
                Some(j)
            } else {
                None
            }
        }
    }
}

/// The fast path of [`decode`]: None when the frame is not of the common shape (then serde
/// decides, including errors).
pub fn scan(text: &str) -> Option<InFrame<'_>> {
    let (head, b, i) = scan_head(text)?;
    let start = skip_ws(b, i);
    let end = scan_elem(b, start)?;
    let i = skip_ws(b, end);
    if b.get(i) != Some(&b']') || skip_ws(b, i + 1) != b.len() {
        return None;
    }
    let payload = &text[start..end];
    if payload.starts_with(|c: char| c.is_ascii_digit()) {
        return None; // a number payload: leave it to serde
    }
    Some(InFrame { payload: Raw(payload), ..head })
}

/// The first four elements of a frame of the common shape, with the frame's bytes and the
/// offset after the fourth comma (the payload is empty in the result).
#[inline]
fn scan_head(text: &str) -> Option<(InFrame<'_>, &[u8], usize)> {
    scan_head_broadcast(text).or_else(|| scan_head_any(text))
}

/// [`scan_head`] of a broadcast as servers write them, `[null,null,"topic","event",` (no
/// whitespace, no escapes): None for anything else.
#[inline]
fn scan_head_broadcast(text: &str) -> Option<(InFrame<'_>, &[u8], usize)> {
    let b = text.as_bytes();
    const PREFIX: &[u8] = b"[null,null,\"";
    if !b.starts_with(PREFIX) {
        return None;
    }
    let mut i = PREFIX.len();
    let plain_str_end = |from: usize| -> Option<usize> {
        let mut j = from;
        while j < b.len() {
            match b[j] {
                b'"' => return Some(j),
                b'\\' => return None,
                c if c < 0x20 => return None,
                _ => j += 1,
            }
        }
        None
    };
    let t_end = plain_str_end(i)?;
    let topic = &text[i..t_end];
    i = t_end + 1;
    if b.get(i..i + 2)? != b",\"" {
        return None;
    }
    i += 2;
    let e_end = plain_str_end(i)?;
    let event = &text[i..e_end];
    i = e_end + 1;
    if b.get(i) != Some(&b',') {
        return None;
    }
    let head = InFrame { join_ref: None, ref_: None, topic: Cow::Borrowed(topic), event: Cow::Borrowed(event), payload: Raw("") };
    Some((head, b, i + 1))
}

fn scan_head_any(text: &str) -> Option<(InFrame<'_>, &[u8], usize)> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'[') {
        return None;
    }
    i += 1;
    let mut el: [&str; 4] = [""; 4];
    for e in el.iter_mut() {
        i = skip_ws(b, i);
        let end = scan_elem(b, i)?;
        // element boundaries are ASCII bytes, so these are char boundaries
        *e = &text[i..end];
        i = skip_ws(b, end);
        if b.get(i) != Some(&b',') {
            return None;
        }
        i += 1;
    }
    let numeric_ok = |s: &str| s.starts_with('"') || s == "null" || s.bytes().all(|c| c.is_ascii_digit());
    if !numeric_ok(el[0]) || !numeric_ok(el[1]) || !el[2].starts_with('"') || !el[3].starts_with('"') {
        return None;
    }
    let head = InFrame {
        join_ref: ref_field(el[0], "join_ref").ok()?,
        ref_: ref_field(el[1], "ref").ok()?,
        topic: str_field(el[2], "topic").ok()?,
        event: str_field(el[3], "event").ok()?,
        payload: Raw(""),
    };
    Some((head, b, i))
}

/// A broadcast as loadgen's publishers send it: a frame whose payload is a [`stamp_payload`].
/// The head is scanned as in [`scan`]; the payload is not walked bracket by bracket but read
/// by [`parse_stamp_fast`], whose exact shape (a flat object, a pad string without quotes or
/// escapes) also proves where the payload ends. For every frame it accepts, the result is what
/// [`decode`] and [`parse_stamp`] give; None for anything else (then use those).
#[inline]
pub fn decode_stamped(text: &str) -> Option<(InFrame<'_>, Stamp)> {
    let (head, b, i) = scan_head(text)?;
    let start = skip_ws(b, i);
    // the frame ends with `]` and optional whitespace
    let end = skip_ws_back(b, start, b.len());
    if end <= start || b[end - 1] != b']' {
        return None;
    }
    let payload = &text[start..skip_ws_back(b, start, end - 1)];
    let stamp = parse_stamp_fast(payload.as_bytes())?;
    Some((InFrame { payload: Raw(payload), ..head }, stamp))
}

/// End of `b[start..end]` without its trailing whitespace.
#[inline]
fn skip_ws_back(b: &[u8], start: usize, mut end: usize) -> usize {
    while end > start && matches!(b[end - 1], b' ' | b'\t' | b'\n' | b'\r') {
        end -= 1;
    }
    end
}

fn push_json_str(out: &mut String, s: &str) {
    // serde_json never fails on a &str
    out.push_str(&serde_json::to_string(s).unwrap());
}

fn push_opt(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => push_json_str(out, s),
        None => out.push_str("null"),
    }
}

/// Encode a client → server frame. `payload_json` must already be valid JSON.
pub fn encode(join_ref: Option<&str>, ref_: Option<&str>, topic: &str, event: &str, payload_json: &str) -> String {
    let mut out = String::with_capacity(32 + topic.len() + event.len() + payload_json.len());
    out.push('[');
    push_opt(&mut out, join_ref);
    out.push(',');
    push_opt(&mut out, ref_);
    out.push(',');
    push_json_str(&mut out, topic);
    out.push(',');
    push_json_str(&mut out, event);
    out.push(',');
    out.push_str(payload_json);
    out.push(']');
    out
}

/// `[null, ref, "phoenix", "heartbeat", {}]`
pub fn heartbeat(ref_: &str) -> String {
    encode(None, Some(ref_), "phoenix", "heartbeat", "{}")
}

/// `[J, J, topic, "phx_join", params]`
pub fn join(join_ref: &str, topic: &str, params_json: &str) -> String {
    encode(Some(join_ref), Some(join_ref), topic, "phx_join", params_json)
}

/// `[J, R, topic, "phx_leave", {}]`
pub fn leave(join_ref: &str, ref_: &str, topic: &str) -> String {
    encode(Some(join_ref), Some(ref_), topic, "phx_leave", "{}")
}

/// The `status` of a `phx_reply` payload (`{"status": "...", "response": ...}`).
pub fn reply_status(payload: Raw<'_>) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Reply {
        status: String,
    }
    serde_json::from_str::<Reply>(payload.get()).ok().map(|r| r.status)
}

/// The load generator's broadcast payload: intended send time (unix µs), per-stream sequence
/// number and stream id. A stream is one publisher on one topic, so `s` is a per-topic sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct Stamp {
    /// intended send time, microseconds since the Unix epoch
    pub t: u64,
    /// sequence number within the stream, from 0
    pub s: u32,
    /// stream id (publisher × topic)
    pub p: u32,
}

/// Encode a stamp payload, padded with a `"pad"` string so the payload is about `size` bytes.
pub fn stamp_payload(st: Stamp, size: usize) -> String {
    let mut out = format!("{{\"t\":{},\"s\":{},\"p\":{}", st.t, st.s, st.p);
    if size > out.len() + 10 {
        let n = size - out.len() - 10;
        out.push_str(",\"pad\":\"");
        out.extend(std::iter::repeat_n('x', n));
        out.push('"');
    }
    out.push('}');
    out
}

/// Parse a stamp payload. The exact shape [`stamp_payload`] produces
/// (`{"t":N,"s":N,"p":N}` or with a trailing `,"pad":"xx.."`) is read by hand; anything else
/// goes through serde, so the result is the same as serde's for every input.
pub fn parse_stamp(payload: Raw<'_>) -> Option<Stamp> {
    parse_stamp_fast(payload.get().as_bytes()).or_else(|| serde_json::from_str::<Stamp>(payload.get()).ok())
}

/// A JSON unsigned integer (no sign, no leading zero, no fraction) at `b[i..]`, at most `max`.
#[inline]
fn read_uint(b: &[u8], i: usize, max: u64) -> Option<(u64, usize)> {
    // up to 19 digits cannot overflow a u64: no checked arithmetic per digit
    let mut j = i;
    let mut v: u64 = 0;
    while j < b.len() && j - i < 19 && b[j].is_ascii_digit() {
        v = v * 10 + (b[j] - b'0') as u64;
        j += 1;
    }
    if j < b.len() && b[j].is_ascii_digit() {
        return read_uint_checked(b, i, max);
    }
    let n = j - i;
    if n == 0 || (n > 1 && b[i] == b'0') || v > max {
        return None;
    }
    Some((v, j))
}

fn read_uint_checked(b: &[u8], i: usize, max: u64) -> Option<(u64, usize)> {
    let mut j = i;
    let mut v: u64 = 0;
    while j < b.len() && b[j].is_ascii_digit() {
        v = v.checked_mul(10)?.checked_add((b[j] - b'0') as u64)?;
        j += 1;
    }
    let n = j - i;
    if n == 0 || (n > 1 && b[i] == b'0') || v > max {
        return None;
    }
    Some((v, j))
}

/// No byte of `b` is a quote, a backslash or a control character: `b` between quotes is a JSON
/// string as it is. (No early exit: the loop vectorizes.)
#[inline]
fn plain_string_bytes(b: &[u8]) -> bool {
    b.iter().fold(true, |ok, &c| ok & (c >= 0x20) & (c != b'"') & (c != b'\\'))
}

fn parse_stamp_fast(b: &[u8]) -> Option<Stamp> {
    let b = b.strip_prefix(b"{\"t\":")?;
    let (t, i) = read_uint(b, 0, u64::MAX)?;
    let b = b[i..].strip_prefix(b",\"s\":")?;
    let (s, i) = read_uint(b, 0, u32::MAX as u64)?;
    let b = b[i..].strip_prefix(b",\"p\":")?;
    let (p, i) = read_uint(b, 0, u32::MAX as u64)?;
    let rest = &b[i..];
    let ok = rest == b"}"
        || rest
            .strip_prefix(b",\"pad\":\"")
            .and_then(|r| r.strip_suffix(b"\"}"))
            .is_some_and(plain_string_bytes);
    ok.then_some(Stamp { t, s: s as u32, p: p as u32 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_join_and_heartbeat() {
        assert_eq!(join("5", "room:1", r#"{"p":1}"#), r#"["5","5","room:1","phx_join",{"p":1}]"#);
        assert_eq!(heartbeat("9"), r#"[null,"9","phoenix","heartbeat",{}]"#);
        assert_eq!(leave("5", "12", "room:1"), r#"["5","12","room:1","phx_leave",{}]"#);
        assert_eq!(encode(Some("5"), Some("7"), "a\"b", "ev", "{}"), r#"["5","7","a\"b","ev",{}]"#);
    }

    #[test]
    fn decode_reply_push_broadcast() {
        let f = decode(r#"["5","5","room:1","phx_reply",{"status":"ok","response":{}}]"#).unwrap();
        assert_eq!(f.join_ref.as_deref(), Some("5"));
        assert_eq!(f.ref_.as_deref(), Some("5"));
        assert_eq!(f.topic, "room:1");
        assert_eq!(f.event, "phx_reply");
        assert_eq!(reply_status(f.payload).as_deref(), Some("ok"));

        let f = decode(r#"[null,null,"room:1","user_entered",{"user":null}]"#).unwrap();
        assert!(f.join_ref.is_none() && f.ref_.is_none());
        assert_eq!(f.payload.get(), r#"{"user":null}"#);

        // lenient: numeric refs, extra elements, escaped topic
        let f = decode(r#"[1,2,"a\u0041","ev",{},"extra"]"#).unwrap();
        assert_eq!(f.join_ref.as_deref(), Some("1"));
        assert_eq!(f.topic, "aA");
    }

    #[test]
    fn decode_errors() {
        assert_eq!(decode("{}").unwrap_err(), DecodeError::NotArray);
        assert_eq!(decode(r#"[null,null,"t"]"#).unwrap_err(), DecodeError::TooShort(3));
        assert_eq!(decode(r#"[null,null,1,"e",{}]"#).unwrap_err(), DecodeError::BadField("topic"));
    }

    #[test]
    fn stamp_roundtrip_and_padding() {
        let st = Stamp { t: 1_700_000_000_000_000, s: 42, p: 7 };
        let p = stamp_payload(st, 0);
        assert_eq!(parse_stamp(Raw(&p)), Some(st));
        assert_eq!(parse_stamp_fast(p.as_bytes()), Some(st));
        let p = stamp_payload(st, 200);
        assert!((195..=205).contains(&p.len()), "len {}", p.len());
        assert_eq!(parse_stamp(Raw(&p)), Some(st));
        assert_eq!(parse_stamp_fast(p.as_bytes()), Some(st));
        // a frame relayed by the server decodes to the same stamp
        let frame = encode(None, None, "bench:0", "msg", &p);
        let f = decode(&frame).unwrap();
        assert_eq!(parse_stamp(f.payload), Some(st));
    }

    /// Frames and payloads the hand-rolled paths must treat exactly like serde.
    const FRAMES: &[&str] = &[
        r#"["5","5","room:1","phx_reply",{"status":"ok","response":{}}]"#,
        r#"[null,null,"room:1","user_entered",{"user":null}]"#,
        r#" [ null , "7" , "bench:0" , "msg" , {"t":1,"s":2,"p":3} ] "#,
        r#"[1,2,"a\u0041","ev",{},"extra"]"#,
        r#"[1,2,"t","ev",{}]"#,
        r#"[01,2,"t","ev",{}]"#,
        r#"[-1,2,"t","ev",{}]"#,
        r#"[1.5,2,"t","ev",{}]"#,
        r#"[null,null,"t","e",[1,{"a":[2,"]}"]}]]"#,
        r#"[null,null,"t","e","str\"ing"]"#,
        r#"[null,null,"t","e",true]"#,
        r#"[null,null,"t","e",12]"#,
        r#"[null,null,"t","e",nul]"#,
        r#"[null,null,"t","e",{"a":1}"#,
        r#"[null,null,"t","e",{"a":1]]"#,
        r#"[null,null,"t","e",{"a":"\q"}]"#,
        r#"[null,null,"t\q","e",{}]"#,
        r#"[null,null,"t","e",{}] x"#,
        r#"[null,null,"t","e",{},]"#,
        r#"[null,null,"t","e"]"#,
        r#"[null,null,"t"]"#,
        r#"[null,null,1,"e",{}]"#,
        r#"[null,null,"t",null,{}]"#,
        r#"[true,null,"t","e",{}]"#,
        r#"{}"#,
        r#""#,
        r#"[null,null,"t","e",{"a":"x"}]"#,
        r#"["é","ü","tö","ë",{"ä":"ö"}]"#,
    ];

    fn same(a: &Result<InFrame<'_>, DecodeError>, b: &Result<InFrame<'_>, DecodeError>) -> bool {
        match (a, b) {
            (Ok(a), Ok(b)) => {
                a.join_ref == b.join_ref && a.ref_ == b.ref_ && a.topic == b.topic && a.event == b.event && a.payload == b.payload
            }
            (Err(a), Err(b)) => a == b,
            _ => false,
        }
    }

    #[test]
    fn scan_agrees_with_serde() {
        let mut scanned = 0;
        for f in FRAMES {
            let fast = decode(f);
            let slow = decode_serde(f);
            if scan(f).is_some() {
                scanned += 1;
            }
            // the only allowed difference: a payload serde rejects that the scan passes through
            let payload_grammar = slow.is_err() && fast.as_ref().is_ok_and(|x| serde_json::from_str::<&RawValue>(x.payload.get()).is_err());
            assert!(same(&fast, &slow) || payload_grammar, "{f}: {fast:?} vs {slow:?}");
        }
        assert!(scanned >= 10, "the fast path is used for the common shapes ({scanned})");
        // the frames loadgen receives go through the scan
        let st = Stamp { t: 1_700_000_000_000_000, s: 3, p: 1 };
        let frame = encode(None, None, "bench:0", "msg", &stamp_payload(st, 100));
        assert!(scan(&frame).is_some());
        assert!(scan(r#"[null,"12","phoenix","phx_reply",{"status":"ok","response":{}}]"#).is_some());
    }

    #[test]
    fn decode_stamped_agrees_with_decode() {
        let st = Stamp { t: 1_700_000_000_123_456, s: 9, p: 2 };
        let good = [
            encode(None, None, "bench:0", "msg", &stamp_payload(st, 0)),
            encode(None, None, "bench:0", "msg", &stamp_payload(st, 150)),
            encode(Some("1"), Some("5"), "room:7", "new_msg", &stamp_payload(st, 40)),
            format!(" [ null , null , \"t\" , \"e\" , {} ] \n", stamp_payload(st, 30)),
            format!("[null,null,\"a\\u0041\",\"e\",{}]", stamp_payload(st, 0)),
            r#"[null,null,"t","e",{"t":1,"s":2,"p":3,"pad":"x}]x"}]"#.to_string(),
        ];
        for f in &good {
            let (h, got) = decode_stamped(f).unwrap_or_else(|| panic!("not taken: {f}"));
            let d = decode(f).unwrap();
            assert!(same(&Ok(h), &Ok(decode(f).unwrap())), "{f}");
            assert_eq!(parse_stamp(d.payload), Some(got), "{f}");
        }
        // the broadcast head shortcut and the general scan give the same head
        assert_eq!(decode_stamped(&good[0]).unwrap().0.topic, "bench:0");
        assert_eq!(decode_stamped(&good[4]).unwrap().0.topic, "aA");
        let bad = [
            r#"[null,null,"t","e",{"t":1,"s":2,"p":3},"extra"]"#,
            r#"[null,null,"t","e",{"t":1,"s":2,"p":3,"pad":"a"},{"b":"c"}]"#,
            r#"[null,null,"t","e",{"t":1,"s":2,"p":3}"#,
            r#"[null,null,"t","e",{"t":1,"s":2,"p":3}] x"#,
            r#"[null,null,"t","e",{"t":1,"s":2}]"#,
            r#"[null,null,"t\q","e",{"t":1,"s":2,"p":3}]"#,
            r#"[null,null,"t","e",{"t":1,"s":2,"p":3,"pad":"a\"b"}]"#,
            r#"[null,null,"t","e",{"t":01,"s":2,"p":3}]"#,
            r#"[null,null,"t","e",{"t":18446744073709551616,"s":2,"p":3}]"#,
            r#"[null,null,"t","e"]"#,
            r#"[null,null,"t",{"t":1,"s":2,"p":3}]"#,
        ];
        for f in bad {
            assert!(decode_stamped(f).is_none(), "taken: {f}");
        }
        // wherever decode_stamped answers, decode + parse_stamp answer the same
        for f in FRAMES {
            if let Some((h, got)) = decode_stamped(f) {
                let d = decode(f).unwrap();
                assert!(same(&Ok(h), &Ok(d)), "{f}");
                assert_eq!(parse_stamp(decode(f).unwrap().payload), Some(got));
            }
        }
        // 19- and 20-digit numbers: the unchecked and the checked path
        assert_eq!(read_uint(b"9999999999999999999", 0, u64::MAX), Some((9_999_999_999_999_999_999, 19)));
        assert_eq!(read_uint(b"18446744073709551615,", 0, u64::MAX), Some((u64::MAX, 20)));
        assert_eq!(read_uint(b"18446744073709551616", 0, u64::MAX), None);
        assert_eq!(read_uint(b"4294967296", 0, u32::MAX as u64), None);
    }

    #[test]
    fn stamp_fast_path_agrees_with_serde() {
        let serde_stamp = |p: &str| serde_json::from_str::<Stamp>(p).ok();
        let cases = [
            r#"{"t":1,"s":2,"p":3}"#,
            r#"{"t":0,"s":0,"p":0}"#,
            r#"{"t":18446744073709551615,"s":4294967295,"p":4294967295}"#,
            r#"{"t":18446744073709551616,"s":1,"p":1}"#,
            r#"{"t":1,"s":4294967296,"p":1}"#,
            r#"{"t":01,"s":2,"p":3}"#,
            r#"{"t":1.0,"s":2,"p":3}"#,
            r#"{"t":-1,"s":2,"p":3}"#,
            r#"{"t":1,"s":2,"p":3,"pad":"xxxx"}"#,
            r#"{"t":1,"s":2,"p":3,"pad":"x\"x"}"#,
            r#"{"t":1,"s":2,"p":3,"t":4}"#,
            r#"{"t":1,"s":2,"p":3,"pad":"xx"} "#,
            r#"{"t":1,"s":2}"#,
            r#"{"s":2,"t":1,"p":3}"#,
            r#"{ "t":1,"s":2,"p":3}"#,
            r#"{"t":1,"s":2,"p":3,"other":[1,2]}"#,
            r#"[1,2,3]"#,
            r#"null"#,
        ];
        for c in cases {
            assert_eq!(parse_stamp(Raw(c)), serde_stamp(c), "{c}");
            if let Some(f) = parse_stamp_fast(c.as_bytes()) {
                assert_eq!(Some(f), serde_stamp(c), "fast path {c}");
            }
        }
        for (t, s, p, size) in [(5u64, 0u32, 0u32, 0usize), (1_700_000_000_123_456, 99, 7, 100), (u64::MAX, u32::MAX, 1, 300)] {
            let pl = stamp_payload(Stamp { t, s, p }, size);
            assert_eq!(parse_stamp_fast(pl.as_bytes()), serde_stamp(&pl));
            assert!(parse_stamp_fast(pl.as_bytes()).is_some());
        }
    }
}
