//! Messages as the protocol defines them (spec §1, §3): what a client sends
//! ([`Message`]: topic, event, payload, ref, join_ref) and the pieces the server encodes. Pure.

use bytes::{BufMut, Bytes, BytesMut};


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

    pub(crate) fn write_json(opt: &Option<Ref>, out: &mut BytesMut) {
        match opt {
            None => out.put_slice(b"null"),
            Some(Ref::Str(s)) => write_json_str(s, out),
            Some(Ref::Json(raw)) => out.put_slice(raw.as_bytes()),
        }
    }

    /// The text binary frames carry (they have no types: refs are strings there).
    pub(crate) fn binary_text(opt: &Option<Ref>) -> &str {
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

    /// Decodes the JSON payload into a typed value (serde), e.g. in `handle_in`:
    /// `let msg: NewMsg = payload.decode()?;`. A binary payload is an error.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        match self {
            Payload::Json(b) => serde_json::from_slice(b),
            Payload::Binary(_) => Err(<serde_json::Error as serde::de::Error>::custom("binary payload, not JSON")),
        }
    }

    /// Encodes a typed value as a JSON payload (serde); the same as [`Payload::json`].
    pub fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Payload {
        Payload::json(value)
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
    pub(crate) fn write_json(&self, out: &mut BytesMut) {
        match self {
            TopicRef::Str(s) => write_json_str(s, out),
            TopicRef::Invalid(raw) => out.put_slice(raw.as_bytes()),
        }
    }

    pub(crate) fn binary_text(&self) -> &str {
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

/// Writes `s` as a JSON string literal.
pub fn write_json_str(s: &str, out: &mut BytesMut) {
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
