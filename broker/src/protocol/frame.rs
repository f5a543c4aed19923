//! Server → client frames (spec §3): a [`Frame`] is a complete, ready-to-write WebSocket frame
//! (header included) in one shared [`Bytes`]; cloning it is a reference-count increment. That
//! is what makes fan-out cheap: a broadcast is encoded once per serializer and the same `Frame`
//! is queued for every subscriber.
//!
//! JSON objects the server builds itself (reply envelopes) are written with their keys sorted,
//! as Phoenix's encoder does (spec §12.1). Client payloads are relayed byte for byte.

use bytes::{BufMut, Bytes, BytesMut};

use super::message::{write_json_str, Payload, Ref, TopicRef};
use super::serializer::Serializer;

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

    /// The same frame over other storage for its bytes (`f` must return the same bytes, e.g.
    /// wrapped with [`Bytes::from_owner`] to learn when the last copy is dropped).
    pub fn map_bytes(self, f: impl FnOnce(Bytes) -> Bytes) -> Frame {
        let bytes = f(self.bytes);
        Frame { bytes, ..self }
    }

    /// A frame with an arbitrary body (control frames).
    pub fn from_body(opcode: Opcode, body: &[u8]) -> Frame {
        let mut buf = Frame::buffer(body.len());
        buf.put_slice(body);
        Frame::finish(buf, opcode)
    }

    /// A close frame with a status code and a reason (reason cut to fit 123 bytes).
    /// The close frame for a [`super::CloseReason`].
    pub fn close_for(reason: super::CloseReason) -> Frame {
        Frame::close(reason.code(), reason.text())
    }

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


