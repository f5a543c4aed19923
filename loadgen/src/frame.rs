//! Phoenix V2 JSON serializer: `[join_ref, ref, topic, event, payload]` text frames (spec §3.2).

use serde_json::value::RawValue;
use std::borrow::Cow;

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
    pub payload: &'a RawValue,
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

fn ref_field<'a>(raw: &'a RawValue, name: &'static str) -> Result<Option<Cow<'a, str>>, DecodeError> {
    let s = raw.get();
    if s == "null" {
        return Ok(None);
    }
    if s.starts_with('"') {
        return str_field(raw, name).map(Some);
    }
    // lenient: numbers are echoed by Phoenix as numbers (spec §12.2)
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'-' || b == b'.') {
        return Ok(Some(Cow::Borrowed(s)));
    }
    Err(DecodeError::BadField(name))
}

fn str_field<'a>(raw: &'a RawValue, name: &'static str) -> Result<Cow<'a, str>, DecodeError> {
    let s = raw.get();
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
pub fn decode(text: &str) -> Result<InFrame<'_>, DecodeError> {
    let parts: Vec<&RawValue> = serde_json::from_str(text).map_err(|_| DecodeError::NotArray)?;
    if parts.len() < 5 {
        return Err(DecodeError::TooShort(parts.len()));
    }
    Ok(InFrame {
        join_ref: ref_field(parts[0], "join_ref")?,
        ref_: ref_field(parts[1], "ref")?,
        topic: str_field(parts[2], "topic")?,
        event: str_field(parts[3], "event")?,
        payload: parts[4],
    })
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
pub fn reply_status(payload: &RawValue) -> Option<String> {
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
        out.extend(std::iter::repeat('x').take(n));
        out.push('"');
    }
    out.push('}');
    out
}

pub fn parse_stamp(payload: &RawValue) -> Option<Stamp> {
    serde_json::from_str::<Stamp>(payload.get()).ok()
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
        let raw: Box<RawValue> = serde_json::from_str(&p).unwrap();
        assert_eq!(parse_stamp(&raw), Some(st));
        let p = stamp_payload(st, 200);
        assert!((195..=205).contains(&p.len()), "len {}", p.len());
        let raw: Box<RawValue> = serde_json::from_str(&p).unwrap();
        assert_eq!(parse_stamp(&raw), Some(st));
        // a frame relayed by the server decodes to the same stamp
        let frame = encode(None, None, "bench:0", "msg", &p);
        let f = decode(&frame).unwrap();
        assert_eq!(parse_stamp(f.payload), Some(st));
    }
}
