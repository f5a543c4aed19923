//! Serializers (spec §3): V1 JSON (object form), V2 JSON (array form) and V2 binary frames.
//!
//! Pure code: bytes in, [`Message`] out; message parts in, [`Frame`] out. A [`Frame`] is a
//! complete, ready-to-write WebSocket frame (header included) in one shared [`Bytes`]; cloning
//! it is a reference-count increment. That is what makes fan-out cheap: a broadcast is encoded
//! once per serializer and the same `Frame` is queued for every subscriber.
//!
//! JSON objects the server builds itself (reply envelopes) are written with their keys sorted,
//! as Phoenix's encoder does (spec §12.1). Client payloads are relayed byte for byte.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::value::RawValue;

/// Which wire format a socket negotiated through `vsn` (spec §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Serializer {
    /// `vsn` absent or `1.0.x`: JSON objects, text frames only.
    V1,
    /// `vsn` `2.0.x`: JSON arrays for text frames, and binary frames for binary payloads.
    V2,
}

impl Serializer {
    /// Negotiates the serializer from the `vsn` query parameter (spec §2.2): absent means V1,
    /// `~> 1.0.0` V1, `~> 2.0.0` V2; anything else (unparsable or another version) is refused.
    pub fn negotiate(vsn: Option<&str>) -> Option<Serializer> {
        let vsn = match vsn {
            None => return Some(Serializer::V1),
            Some(v) => v,
        };
        let v = parse_semver(vsn)?;
        // Phoenix matches `~> 1.0.0` (`>= 1.0.0 and < 1.1.0`) and `~> 2.0.0` with Elixir's
        // `Version.match?` (pre-releases allowed): `2.0.1-rc.1` is inside the range, but
        // `2.0.0-rc.1` sorts below `2.0.0` and is refused (403), like `2.1.0-dev`.
        if v.pre && v.patch == 0 {
            return None;
        }
        match (v.major, v.minor) {
            (1, 0) => Some(Serializer::V1),
            (2, 0) => Some(Serializer::V2),
            _ => None,
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Serializer::V1 => 0,
            Serializer::V2 => 1,
        }
    }
}

/// A parsed semantic version (what `vsn` negotiation needs of it).
struct Semver {
    major: u64,
    minor: u64,
    patch: u64,
    /// Has a pre-release part (`-rc.1`).
    pre: bool,
}

/// Parses `MAJOR.MINOR.PATCH[-pre][+build]` as Elixir's `Version.parse` does (SemVer 2.0):
/// no leading zeros in numbers or numeric pre-release identifiers, identifiers of
/// `[0-9A-Za-z-]`, none empty. `None` if it is not a full semantic version.
fn parse_semver(v: &str) -> Option<Semver> {
    let (rest, build) = match v.split_once('+') {
        Some((r, b)) => (r, Some(b)),
        None => (v, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let ident_ok = |id: &str| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if let Some(pre) = pre {
        for id in pre.split('.') {
            let numeric = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
            if !ident_ok(id) || (numeric && id.len() > 1 && id.starts_with('0')) {
                return None;
            }
        }
    }
    if let Some(build) = build {
        if !build.split('.').all(ident_ok) {
            return None;
        }
    }
    let mut parts = core.split('.');
    let mut num = || -> Option<u64> {
        let p = parts.next()?;
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || (p.len() > 1 && p.starts_with('0')) {
            return None;
        }
        p.parse().ok()
    };
    let (major, minor, patch) = (num()?, num()?, num()?);
    if parts.next().is_some() {
        return None;
    }
    Some(Semver { major, minor, patch, pre: pre.is_some() })
}

/// A `ref` or `join_ref` as the client sent it. phoenix.js sends strings; lenient decoding
/// (spec §12.2) echoes any other JSON value with its type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ref {
    /// A JSON string (unescaped).
    Str(String),
    /// Any other JSON value, kept as its JSON text (`1`, `true`, …).
    Json(String),
}

impl Ref {
    pub fn str(s: impl Into<String>) -> Ref {
        Ref::Str(s.into())
    }

    fn write_json(opt: &Option<Ref>, out: &mut BytesMut) {
        match opt {
            None => out.put_slice(b"null"),
            Some(Ref::Str(s)) => write_json_str(s, out),
            Some(Ref::Json(raw)) => out.put_slice(raw.as_bytes()),
        }
    }

    /// The text binary frames carry (they have no types: refs are strings there).
    fn binary_text(opt: &Option<Ref>) -> &str {
        match opt {
            None => "",
            Some(Ref::Str(s)) => s,
            Some(Ref::Json(raw)) => raw,
        }
    }
}

/// A message payload: JSON text (kept as bytes, never re-encoded) or opaque binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// Valid JSON text.
    Json(Bytes),
    /// Bytes from (or for) a binary frame.
    Binary(Bytes),
}

impl Payload {
    /// `{}`: the payload of control replies and closes.
    pub fn empty_object() -> Payload {
        Payload::Json(Bytes::from_static(b"{}"))
    }

    /// Encodes a JSON value (object keys come out sorted).
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Payload {
        Payload::Json(Bytes::from(serde_json::to_vec(value).expect("serializable value")))
    }

    /// Is this a JSON object (or binary)? V2 pushes and broadcasts require it (spec §3.5).
    pub fn is_object_or_binary(&self) -> bool {
        match self {
            Payload::Binary(_) => true,
            Payload::Json(b) => b.iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'{'),
        }
    }

    /// Parses the JSON payload into a value (`None` for binary or invalid JSON).
    pub fn to_value(&self) -> Option<serde_json::Value> {
        match self {
            Payload::Json(b) => serde_json::from_slice(b).ok(),
            Payload::Binary(_) => None,
        }
    }

    pub fn is_binary(&self) -> bool {
        matches!(self, Payload::Binary(_))
    }

    pub fn len(&self) -> usize {
        match self {
            Payload::Json(b) | Payload::Binary(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The topic field of an inbound message. phoenix.js always sends a string; a `null` or other
/// non-string topic gets an "unmatched topic" reply that echoes it (spec §12.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicField {
    Str(String),
    /// Raw JSON text of a non-string topic.
    Invalid(String),
}

/// A borrowed topic for encoding: a string, or the raw JSON of a non-string topic.
#[derive(Clone, Copy, Debug)]
pub enum TopicRef<'a> {
    Str(&'a str),
    Invalid(&'a str),
}

impl<'a> From<&'a TopicField> for TopicRef<'a> {
    fn from(t: &'a TopicField) -> TopicRef<'a> {
        match t {
            TopicField::Str(s) => TopicRef::Str(s),
            TopicField::Invalid(raw) => TopicRef::Invalid(raw),
        }
    }
}

impl<'a> From<&'a str> for TopicRef<'a> {
    fn from(t: &'a str) -> TopicRef<'a> {
        TopicRef::Str(t)
    }
}

impl TopicRef<'_> {
    fn write_json(&self, out: &mut BytesMut) {
        match self {
            TopicRef::Str(s) => write_json_str(s, out),
            TopicRef::Invalid(raw) => out.put_slice(raw.as_bytes()),
        }
    }

    fn binary_text(&self) -> &str {
        match self {
            TopicRef::Str(s) => s,
            TopicRef::Invalid(raw) => raw,
        }
    }
}

/// A client → server message (spec §1: `{topic, event, payload, ref, join_ref}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub join_ref: Option<Ref>,
    pub ref_: Option<Ref>,
    pub topic: TopicField,
    pub event: String,
    pub payload: Payload,
}

/// Why a client frame could not be decoded. Every variant is socket-fatal (close 1011,
/// spec §10 item 7), so the socket layer only needs to know that decoding failed; the variant
/// names the cause for logs and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    InvalidJson,
    NotAnArray,
    NotAnObject,
    TooFewElements,
    MissingKey(&'static str),
    EventNotString,
    BinaryOnV1,
    BinaryKind(u8),
    BinaryTruncated,
    BinaryNotUtf8,
}

/// Decodes a text frame.
pub fn decode_text(ser: Serializer, frame: &Bytes) -> Result<Message, DecodeError> {
    let text = std::str::from_utf8(frame).map_err(|_| DecodeError::InvalidJson)?;
    match ser {
        Serializer::V2 => decode_v2(frame, text),
        Serializer::V1 => decode_v1(frame, text),
    }
}

fn decode_v2(frame: &Bytes, text: &str) -> Result<Message, DecodeError> {
    let first = text.trim_start().as_bytes().first().copied();
    if first != Some(b'[') {
        // Validate it is JSON at all, to name the error precisely.
        return match serde_json::from_str::<&RawValue>(text) {
            Ok(_) => Err(DecodeError::NotAnArray),
            Err(_) => Err(DecodeError::InvalidJson),
        };
    }
    let items: Vec<&RawValue> = serde_json::from_str(text).map_err(|_| DecodeError::InvalidJson)?;
    if items.len() < 5 {
        return Err(DecodeError::TooFewElements);
    }
    Ok(Message {
        join_ref: decode_ref(items[0]),
        ref_: decode_ref(items[1]),
        topic: decode_topic(items[2]),
        event: decode_event(items[3])?,
        payload: Payload::Json(frame.slice_ref(items[4].get().as_bytes())),
    })
}

fn decode_v1(frame: &Bytes, text: &str) -> Result<Message, DecodeError> {
    let first = text.trim_start().as_bytes().first().copied();
    if first != Some(b'{') {
        return match serde_json::from_str::<&RawValue>(text) {
            Ok(_) => Err(DecodeError::NotAnObject),
            Err(_) => Err(DecodeError::InvalidJson),
        };
    }
    let obj: std::collections::HashMap<String, &RawValue> =
        serde_json::from_str(text).map_err(|_| DecodeError::InvalidJson)?;
    let get = |k: &'static str| obj.get(k).copied().ok_or(DecodeError::MissingKey(k));
    let topic = get("topic")?;
    let event = get("event")?;
    let payload = get("payload")?;
    let ref_ = get("ref")?;
    Ok(Message {
        join_ref: obj.get("join_ref").and_then(|r| decode_ref(r)),
        ref_: decode_ref(ref_),
        topic: decode_topic(topic),
        event: decode_event(event)?,
        payload: Payload::Json(frame.slice_ref(payload.get().as_bytes())),
    })
}

fn decode_ref(raw: &RawValue) -> Option<Ref> {
    let text = raw.get();
    if text == "null" {
        return None;
    }
    if text.starts_with('"') {
        if let Ok(s) = serde_json::from_str::<String>(text) {
            return Some(Ref::Str(s));
        }
    }
    Some(Ref::Json(text.to_owned()))
}

fn decode_topic(raw: &RawValue) -> TopicField {
    match serde_json::from_str::<String>(raw.get()) {
        Ok(s) => TopicField::Str(s),
        Err(_) => TopicField::Invalid(raw.get().to_owned()),
    }
}

fn decode_event(raw: &RawValue) -> Result<String, DecodeError> {
    serde_json::from_str::<String>(raw.get()).map_err(|_| DecodeError::EventNotString)
}

/// Decodes a binary frame (spec §3.4): only kind 0 (push) is accepted from clients.
pub fn decode_binary(ser: Serializer, frame: &Bytes) -> Result<Message, DecodeError> {
    if ser == Serializer::V1 {
        return Err(DecodeError::BinaryOnV1);
    }
    let kind = *frame.first().ok_or(DecodeError::BinaryTruncated)?;
    if kind != 0 {
        return Err(DecodeError::BinaryKind(kind));
    }
    if frame.len() < 5 {
        return Err(DecodeError::BinaryTruncated);
    }
    let lens = [frame[1] as usize, frame[2] as usize, frame[3] as usize, frame[4] as usize];
    let mut at = 5;
    let mut fields: [&str; 4] = [""; 4];
    for (i, len) in lens.iter().enumerate() {
        let end = at + len;
        let bytes = frame.get(at..end).ok_or(DecodeError::BinaryTruncated)?;
        fields[i] = std::str::from_utf8(bytes).map_err(|_| DecodeError::BinaryNotUtf8)?;
        at = end;
    }
    Ok(Message {
        // An empty join_ref decodes to "" (spec §12.2); the ref likewise.
        join_ref: Some(Ref::Str(fields[0].to_owned())),
        ref_: Some(Ref::Str(fields[1].to_owned())),
        topic: TopicField::Str(fields[2].to_owned()),
        event: fields[3].to_owned(),
        payload: Payload::Binary(frame.slice(at..)),
    })
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// WebSocket opcodes the server writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opcode {
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

/// One complete server → client WebSocket frame: header and payload in a single shared buffer.
///
/// `header_len` lets the LongPoll transport take the text without the WebSocket header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    bytes: Bytes,
    header_len: u8,
    opcode: Opcode,
}

/// Room left in front of an encoded body for the largest WebSocket header (2 + 8 bytes).
const HEADROOM: usize = 10;

impl Frame {
    /// Starts a buffer for a frame body of about `cap` bytes.
    fn buffer(cap: usize) -> BytesMut {
        let mut b = BytesMut::with_capacity(HEADROOM + cap);
        b.put_slice(&[0u8; HEADROOM]);
        b
    }

    /// Writes the WebSocket header in front of a body built with [`Frame::buffer`].
    fn finish(mut buf: BytesMut, opcode: Opcode) -> Frame {
        let body_len = buf.len() - HEADROOM;
        let mut header = [0u8; HEADROOM];
        header[0] = 0x80 | opcode as u8; // FIN + opcode; server frames are never masked.
        let header_len = if body_len < 126 {
            header[1] = body_len as u8;
            2
        } else if body_len <= u16::MAX as usize {
            header[1] = 126;
            header[2..4].copy_from_slice(&(body_len as u16).to_be_bytes());
            4
        } else {
            header[1] = 127;
            header[2..10].copy_from_slice(&(body_len as u64).to_be_bytes());
            10
        };
        let start = HEADROOM - header_len;
        buf[start..HEADROOM].copy_from_slice(&header[..header_len]);
        let _ = buf.split_to(start);
        Frame { bytes: buf.freeze(), header_len: header_len as u8, opcode }
    }

    /// A frame with an arbitrary body (control frames).
    pub fn from_body(opcode: Opcode, body: &[u8]) -> Frame {
        let mut buf = Frame::buffer(body.len());
        buf.put_slice(body);
        Frame::finish(buf, opcode)
    }

    /// A close frame with a status code and a reason (reason cut to fit 123 bytes).
    pub fn close(code: u16, reason: &str) -> Frame {
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let mut body = Vec::with_capacity(2 + end);
        body.extend_from_slice(&code.to_be_bytes());
        body.extend_from_slice(&reason.as_bytes()[..end]);
        Frame::from_body(Opcode::Close, &body)
    }

    /// The whole WebSocket frame, ready to write.
    pub fn wire(&self) -> &Bytes {
        &self.bytes
    }

    /// The frame's body (the serialized message, without the WebSocket header).
    pub fn body(&self) -> Bytes {
        self.bytes.slice(self.header_len as usize..)
    }

    pub fn opcode(&self) -> Opcode {
        self.opcode
    }

    /// Bytes counted against an outbox's byte limit.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Why a message could not be encoded (the caller decides: an error for the app, or a drop
/// that is counted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// V1 has no binary frames.
    BinaryOnV1,
    /// A binary frame header field is longer than 255 bytes (spec §3.4).
    HeaderFieldTooLong,
}

/// Encodes a message `[join_ref, ref, topic, event, payload]` (a push, `phx_close`,
/// `phx_error`, or a broadcast when both refs are `None`).
pub fn encode_message<'a>(
    ser: Serializer,
    join_ref: &Option<Ref>,
    ref_: &Option<Ref>,
    topic: impl Into<TopicRef<'a>>,
    event: &str,
    payload: &Payload,
) -> Result<Frame, EncodeError> {
    let topic: TopicRef<'a> = topic.into();
    match (ser, payload) {
        (Serializer::V1, Payload::Binary(_)) => Err(EncodeError::BinaryOnV1),
        (Serializer::V1, Payload::Json(p)) => {
            // Sorted keys: event, payload, ref, topic (spec §12.1). V1 never emits join_ref.
            let mut b = Frame::buffer(48 + event.len() + p.len() + topic.binary_text().len());
            b.put_slice(b"{\"event\":");
            write_json_str(event, &mut b);
            b.put_slice(b",\"payload\":");
            b.put_slice(p);
            b.put_slice(b",\"ref\":");
            Ref::write_json(ref_, &mut b);
            b.put_slice(b",\"topic\":");
            topic.write_json(&mut b);
            b.put_u8(b'}');
            Ok(Frame::finish(b, Opcode::Text))
        }
        (Serializer::V2, Payload::Json(p)) => {
            let mut b = Frame::buffer(32 + event.len() + p.len() + topic.binary_text().len());
            b.put_u8(b'[');
            Ref::write_json(join_ref, &mut b);
            b.put_u8(b',');
            Ref::write_json(ref_, &mut b);
            b.put_u8(b',');
            topic.write_json(&mut b);
            b.put_u8(b',');
            write_json_str(event, &mut b);
            b.put_u8(b',');
            b.put_slice(p);
            b.put_u8(b']');
            Ok(Frame::finish(b, Opcode::Text))
        }
        (Serializer::V2, Payload::Binary(p)) => {
            let topic = topic.binary_text();
            if join_ref.is_none() && ref_.is_none() {
                // Kind 2, broadcast: 0x02 | topic_len | event_len | topic | event | payload.
                let (tl, el) = (field_len(topic)?, field_len(event)?);
                let mut b = Frame::buffer(3 + topic.len() + event.len() + p.len());
                b.put_slice(&[2, tl, el]);
                b.put_slice(topic.as_bytes());
                b.put_slice(event.as_bytes());
                b.put_slice(p);
                Ok(Frame::finish(b, Opcode::Binary))
            } else {
                // Kind 0, push (server → client has no ref field).
                let jr = Ref::binary_text(join_ref);
                let (jl, tl, el) = (field_len(jr)?, field_len(topic)?, field_len(event)?);
                let mut b = Frame::buffer(4 + jr.len() + topic.len() + event.len() + p.len());
                b.put_slice(&[0, jl, tl, el]);
                b.put_slice(jr.as_bytes());
                b.put_slice(topic.as_bytes());
                b.put_slice(event.as_bytes());
                b.put_slice(p);
                Ok(Frame::finish(b, Opcode::Binary))
            }
        }
    }
}

/// Encodes a broadcast (fastlane): `[null, null, topic, event, payload]`.
pub fn encode_broadcast(ser: Serializer, topic: &str, event: &str, payload: &Payload) -> Result<Frame, EncodeError> {
    encode_message(ser, &None, &None, topic, event, payload)
}

/// Encodes a `phx_reply`: payload `{"response": response, "status": status}` (sorted keys), or a
/// kind-1 binary frame when the response is binary.
pub fn encode_reply<'a>(
    ser: Serializer,
    join_ref: &Option<Ref>,
    ref_: &Option<Ref>,
    topic: impl Into<TopicRef<'a>>,
    status: &str,
    response: &Payload,
) -> Result<Frame, EncodeError> {
    let topic: TopicRef<'a> = topic.into();
    match response {
        Payload::Json(r) => {
            let mut env = BytesMut::with_capacity(32 + r.len() + status.len());
            env.put_slice(b"{\"response\":");
            env.put_slice(r);
            env.put_slice(b",\"status\":");
            write_json_str(status, &mut env);
            env.put_u8(b'}');
            encode_message(ser, join_ref, ref_, topic, "phx_reply", &Payload::Json(env.freeze()))
        }
        Payload::Binary(_) if ser == Serializer::V1 => Err(EncodeError::BinaryOnV1),
        Payload::Binary(p) => {
            // Kind 1: 0x01 | join_ref_len | ref_len | topic_len | status_len | … | payload.
            let (jr, r, t) = (Ref::binary_text(join_ref), Ref::binary_text(ref_), topic.binary_text());
            let lens = [field_len(jr)?, field_len(r)?, field_len(t)?, field_len(status)?];
            let mut b = Frame::buffer(5 + jr.len() + r.len() + t.len() + status.len() + p.len());
            b.put_u8(1);
            b.put_slice(&lens);
            b.put_slice(jr.as_bytes());
            b.put_slice(r.as_bytes());
            b.put_slice(t.as_bytes());
            b.put_slice(status.as_bytes());
            b.put_slice(p);
            Ok(Frame::finish(b, Opcode::Binary))
        }
    }
}

fn field_len(s: &str) -> Result<u8, EncodeError> {
    u8::try_from(s.len()).map_err(|_| EncodeError::HeaderFieldTooLong)
}

/// Writes `s` as a JSON string literal.
pub(crate) fn write_json_str(s: &str, out: &mut BytesMut) {
    out.reserve(s.len() + 2);
    out.put_u8(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.put_slice(&bytes[start..i]);
                let hex = b"0123456789abcdef";
                out.put_slice(&[b'\\', b'u', b'0', b'0', hex[(c >> 4) as usize], hex[(c & 0xf) as usize]]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.put_slice(&bytes[start..i]);
        out.put_slice(esc);
        start = i + 1;
    }
    out.put_slice(&bytes[start..]);
    out.put_u8(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }
    fn s(x: &str) -> Option<Ref> {
        Some(Ref::str(x))
    }
    fn t(x: &str) -> TopicField {
        TopicField::Str(x.into())
    }
    fn body_str(f: &Frame) -> String {
        String::from_utf8(f.body().to_vec()).unwrap()
    }
    fn json(f: &Frame) -> serde_json::Value {
        serde_json::from_slice(&f.body()).unwrap()
    }

    #[test]
    fn vsn_negotiation() {
        assert_eq!(Serializer::negotiate(None), Some(Serializer::V1));
        assert_eq!(Serializer::negotiate(Some("1.0.0")), Some(Serializer::V1));
        assert_eq!(Serializer::negotiate(Some("2.0.0")), Some(Serializer::V2));
        assert_eq!(Serializer::negotiate(Some("2.0.7")), Some(Serializer::V2));
        // Pre-releases as Elixir's Version.match?("…", "~> 2.0.0") sees them.
        assert_eq!(Serializer::negotiate(Some("2.0.0-rc.1")), None);
        assert_eq!(Serializer::negotiate(Some("2.0.1-rc.1")), Some(Serializer::V2));
        assert_eq!(Serializer::negotiate(Some("1.0.3-dev")), Some(Serializer::V1));
        assert_eq!(Serializer::negotiate(Some("2.1.0-dev")), None);
        assert_eq!(Serializer::negotiate(Some("2.0.0+build.7")), Some(Serializer::V2));
        assert_eq!(Serializer::negotiate(Some("2.0.1-")), None);
        assert_eq!(Serializer::negotiate(Some("2.0.1-rc..1")), None);
        assert_eq!(Serializer::negotiate(Some("2.0.1-01")), None);
        assert_eq!(Serializer::negotiate(Some("2.0.0+")), None);
        assert_eq!(Serializer::negotiate(Some("2.1.0")), None);
        assert_eq!(Serializer::negotiate(Some("3.0.0")), None);
        assert_eq!(Serializer::negotiate(Some("2.0")), None);
        assert_eq!(Serializer::negotiate(Some("2")), None);
        assert_eq!(Serializer::negotiate(Some("")), None);
        assert_eq!(Serializer::negotiate(Some("02.0.0")), None);
        assert_eq!(Serializer::negotiate(Some("2.0.0.1")), None);
    }

    #[test]
    fn v2_decode_fields() {
        let m = decode_text(Serializer::V2, &b(r#"["5","7","room:1","ev",{"a":1}]"#)).unwrap();
        assert_eq!(m.join_ref, s("5"));
        assert_eq!(m.ref_, s("7"));
        assert_eq!(m.topic, t("room:1"));
        assert_eq!(m.event, "ev");
        assert_eq!(m.payload, Payload::Json(b(r#"{"a":1}"#)));
    }

    #[test]
    fn v2_decode_lenient_and_fatal() {
        // Extra elements ignored (checklist 65, 106).
        let m = decode_text(Serializer::V2, &b(r#"["1","1","room:1","phx_join",{},"extra"]"#)).unwrap();
        assert_eq!(m.event, "phx_join");
        // Numeric refs echo as numbers (106).
        let m = decode_text(Serializer::V2, &b(r#"[1,2,"room:1","phx_join",{}]"#)).unwrap();
        assert_eq!(m.join_ref, Some(Ref::Json("1".into())));
        assert_eq!(m.ref_, Some(Ref::Json("2".into())));
        // Null topic (107).
        let m = decode_text(Serializer::V2, &b(r#"[null,"1",null,"x",{}]"#)).unwrap();
        assert_eq!(m.topic, TopicField::Invalid("null".into()));
        // Fatal shapes (66, §12.2).
        assert_eq!(decode_text(Serializer::V2, &b(r#"["1","1","room:1","ev"]"#)), Err(DecodeError::TooFewElements));
        assert_eq!(decode_text(Serializer::V2, &b("nope")), Err(DecodeError::InvalidJson));
        assert_eq!(decode_text(Serializer::V2, &b("")), Err(DecodeError::InvalidJson));
        assert_eq!(decode_text(Serializer::V2, &b("42")), Err(DecodeError::NotAnArray));
        assert_eq!(decode_text(Serializer::V2, &b(r#"{"topic":"x"}"#)), Err(DecodeError::NotAnArray));
        assert_eq!(decode_text(Serializer::V2, &b(r#"[null,"1","t",5,{}]"#)), Err(DecodeError::EventNotString));
    }

    #[test]
    fn v1_decode() {
        let m = decode_text(
            Serializer::V1,
            &b(r#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"1"}"#),
        )
        .unwrap();
        assert_eq!(m.topic, t("phoenix"));
        assert_eq!(m.ref_, s("1"));
        assert_eq!(m.join_ref, None);
        let m = decode_text(Serializer::V1, &b(r#"{"topic":"a","event":"e","payload":{},"ref":null,"join_ref":"3"}"#))
            .unwrap();
        assert_eq!(m.ref_, None);
        assert_eq!(m.join_ref, s("3"));
        assert_eq!(
            decode_text(Serializer::V1, &b(r#"{"topic":"a","event":"e","payload":{}}"#)),
            Err(DecodeError::MissingKey("ref"))
        );
        assert_eq!(
            decode_text(Serializer::V1, &b(r#"{"event":"e","payload":{},"ref":"1"}"#)),
            Err(DecodeError::MissingKey("topic"))
        );
        assert_eq!(decode_text(Serializer::V1, &b(r#"["1","1","a","e",{}]"#)), Err(DecodeError::NotAnObject));
    }

    #[test]
    fn binary_decode_captured_fixture() {
        // spec §3.4: channel.push("bin", Uint8Array[1,2,3]) with join_ref "8", ref "10".
        let frame = Bytes::from_static(&[
            0x00, 0x01, 0x02, 0x06, 0x03, 0x38, 0x31, 0x30, 0x72, 0x6f, 0x6f, 0x6d, 0x3a, 0x31, 0x62, 0x69, 0x6e, 0x01,
            0x02, 0x03,
        ]);
        let m = decode_binary(Serializer::V2, &frame).unwrap();
        assert_eq!(m.join_ref, s("8"));
        assert_eq!(m.ref_, s("10"));
        assert_eq!(m.topic, t("room:1"));
        assert_eq!(m.event, "bin");
        assert_eq!(m.payload, Payload::Binary(Bytes::from_static(&[1, 2, 3])));
        // Empty join_ref decodes to "" (not null).
        let m = decode_binary(Serializer::V2, &Bytes::from_static(&[0, 0, 1, 1, 1, b'1', b't', b'e'])).unwrap();
        assert_eq!(m.join_ref, s(""));
    }

    #[test]
    fn binary_decode_errors() {
        let v2 = Serializer::V2;
        assert_eq!(decode_binary(v2, &Bytes::from_static(&[1, 0, 0, 0, 0])), Err(DecodeError::BinaryKind(1)));
        assert_eq!(decode_binary(v2, &Bytes::from_static(&[2, 0, 0])), Err(DecodeError::BinaryKind(2)));
        assert_eq!(decode_binary(v2, &Bytes::from_static(&[0, 1, 1])), Err(DecodeError::BinaryTruncated));
        assert_eq!(decode_binary(v2, &Bytes::from_static(&[0, 5, 0, 0, 0, b'a'])), Err(DecodeError::BinaryTruncated));
        assert_eq!(decode_binary(v2, &Bytes::new()), Err(DecodeError::BinaryTruncated));
        assert_eq!(decode_binary(v2, &Bytes::from_static(&[0, 1, 0, 0, 0, 0xff])), Err(DecodeError::BinaryNotUtf8));
        assert_eq!(decode_binary(Serializer::V1, &Bytes::from_static(&[0, 0, 0, 0, 0])), Err(DecodeError::BinaryOnV1));
    }

    #[test]
    fn v2_encode_shapes() {
        let f = encode_reply(Serializer::V2, &s("5"), &s("5"), &t("room:1"), "ok", &Payload::empty_object()).unwrap();
        assert_eq!(body_str(&f), r#"["5","5","room:1","phx_reply",{"response":{},"status":"ok"}]"#);
        assert_eq!(f.wire()[0], 0x81);
        assert_eq!(f.wire()[1] as usize, f.body().len());
        let f = encode_broadcast(Serializer::V2, "room:1", "new_msg", &Payload::Json(b(r#"{"body":"hi"}"#))).unwrap();
        assert_eq!(body_str(&f), r#"[null,null,"room:1","new_msg",{"body":"hi"}]"#);
        let f = encode_message(Serializer::V2, &s("1"), &s("1"), &t("room:1"), "phx_error", &Payload::json(&serde_json::json!({"reason":"channel_crash"}))).unwrap();
        assert_eq!(json(&f), serde_json::json!(["1", "1", "room:1", "phx_error", {"reason":"channel_crash"}]));
        // Numeric refs are echoed as numbers; odd topics are escaped.
        let f = encode_reply(Serializer::V2, &Some(Ref::Json("1".into())), &Some(Ref::Json("2".into())), &t("a\"b\n"), "ok", &Payload::empty_object()).unwrap();
        assert_eq!(json(&f), serde_json::json!([1, 2, "a\"b\n", "phx_reply", {"status":"ok","response":{}}]));
    }

    #[test]
    fn v1_encode_has_sorted_keys_and_no_join_ref() {
        let f = encode_reply(Serializer::V1, &s("3"), &s("1"), &t("phoenix"), "ok", &Payload::empty_object()).unwrap();
        assert_eq!(
            body_str(&f),
            r#"{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"1","topic":"phoenix"}"#
        );
        let f = encode_broadcast(Serializer::V1, "r", "e", &Payload::Json(b("[1]"))).unwrap();
        assert_eq!(body_str(&f), r#"{"event":"e","payload":[1],"ref":null,"topic":"r"}"#);
        assert_eq!(
            encode_broadcast(Serializer::V1, "r", "e", &Payload::Binary(Bytes::new())),
            Err(EncodeError::BinaryOnV1)
        );
    }

    #[test]
    fn binary_encode_kinds() {
        let p = Payload::Binary(Bytes::from_static(&[9, 8]));
        // Kind 1 reply (checklist 41).
        let f = encode_reply(Serializer::V2, &s("1"), &s("22"), &t("room:1"), "ok", &p).unwrap();
        assert_eq!(f.opcode(), Opcode::Binary);
        assert_eq!(&f.body()[..], &[&[1u8, 1, 2, 6, 2][..], b"1", b"22", b"room:1", b"ok", &[9, 8]].concat()[..]);
        // Kind 0 push, 4-byte header, no ref (42).
        let f = encode_message(Serializer::V2, &s("1"), &None, &t("room:1"), "ev", &p).unwrap();
        assert_eq!(&f.body()[..], &[&[0u8, 1, 6, 2][..], b"1", b"room:1", b"ev", &[9, 8]].concat()[..]);
        // Kind 2 broadcast (47).
        let f = encode_broadcast(Serializer::V2, "room:1", "ev", &p).unwrap();
        assert_eq!(&f.body()[..], &[&[2u8, 6, 2][..], b"room:1", b"ev", &[9, 8]].concat()[..]);
        // Header fields over 255 bytes are never produced (68).
        let long = "x".repeat(256);
        assert_eq!(encode_broadcast(Serializer::V2, &long, "ev", &p), Err(EncodeError::HeaderFieldTooLong));
        assert!(encode_broadcast(Serializer::V2, &"x".repeat(255), "ev", &p).is_ok());
    }

    #[test]
    fn websocket_header_lengths() {
        for len in [0usize, 125, 126, 65535, 65536, 70000] {
            let f = Frame::from_body(Opcode::Binary, &vec![7u8; len]);
            let w = f.wire();
            assert_eq!(w[0], 0x82);
            let (hl, n) = match w[1] {
                126 => (4, u16::from_be_bytes([w[2], w[3]]) as usize),
                127 => (10, u64::from_be_bytes(w[2..10].try_into().unwrap()) as usize),
                n => (2, n as usize),
            };
            assert_eq!(n, len);
            assert_eq!(w.len(), hl + len);
            assert_eq!(f.body().len(), len);
        }
        let c = Frame::close(1001, "going away");
        assert_eq!(&c.wire()[..4], &[0x88, 12, 0x03, 0xE9]);
    }

    #[test]
    fn object_payload_check() {
        assert!(Payload::Json(b(" {\"a\":1}")).is_object_or_binary());
        assert!(!Payload::Json(b("[1]")).is_object_or_binary());
        assert!(!Payload::Json(b("\"s\"")).is_object_or_binary());
        assert!(Payload::Binary(Bytes::new()).is_object_or_binary());
    }
}
