//! Serializers (spec §3): V1 JSON (object form), V2 JSON (array form) and V2 binary frames;
//! `vsn` negotiation (spec §2.2) and decoding of client frames. Encoding is in
//! [`super::frame`]. Pure code: bytes in, [`Message`] out.

use bytes::Bytes;
use serde_json::value::RawValue;

use super::message::{DecodeError, Message, Payload, Ref, TopicField};

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

#[cfg(test)]
mod tests {
    use super::super::frame::*;
    use super::super::message::*;
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

    #[test]
    fn typed_payloads() {
        #[derive(serde::Deserialize, serde::Serialize, PartialEq, Debug)]
        struct NewMsg {
            body: String,
        }
        let p = Payload::encode(&NewMsg { body: "hi".into() });
        assert_eq!(p.decode::<NewMsg>().unwrap(), NewMsg { body: "hi".into() });
        assert!(Payload::Json(Bytes::from_static(b"{}")).decode::<NewMsg>().is_err());
        assert!(Payload::Binary(Bytes::from_static(b"x")).decode::<NewMsg>().is_err());
    }
}
