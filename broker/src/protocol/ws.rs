//! The WebSocket layer (RFC 6455) the server needs: the handshake accept key and a decoder for
//! client frames. The write side is [`crate::protocol::Frame`]: frames are pre-encoded once
//! and shared, which is why this is not delegated to tungstenite (its sink copies every message
//! into a per-connection buffer and its default 128 KiB read buffer costs ~138 KB per idle
//! connection). Pure code: bytes in, events out; fuzzed by `fuzz/`.

use base64::Engine as _;
use bytes::{Buf, Bytes, BytesMut};
use sha1::{Digest, Sha1};

/// Is this a valid `Sec-WebSocket-Key`: base64 of 16 bytes (RFC 6455 §4.1)?
pub fn valid_key(key: &[u8]) -> bool {
    key.len() == 24 && base64::engine::general_purpose::STANDARD.decode(key).is_ok_and(|k| k.len() == 16)
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// A complete message or control frame from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum WsEvent {
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong,
    /// Close frame: the code (`None` when the frame has no body) and reason.
    Close(Option<u16>, String),
}

/// Protocol failures, each with the close code the server answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsError {
    /// Unmasked client frame, reserved bits, bad opcode, bad fragmentation, bad control frame.
    Protocol,
    /// Text message that is not UTF-8.
    InvalidUtf8,
    /// Message larger than the configured maximum.
    TooBig,
}

impl WsError {
    /// How the server closes the connection for it.
    pub fn close_reason(self) -> super::CloseReason {
        match self {
            WsError::Protocol => super::CloseReason::ProtocolError,
            WsError::InvalidUtf8 => super::CloseReason::InvalidUtf8,
            WsError::TooBig => super::CloseReason::TooBig,
        }
    }
}

/// Incremental decoder of client frames. Feed it bytes with [`Decoder::buffer`], then call
/// [`Decoder::next`] until it returns `Ok(None)`.
pub struct Decoder {
    buf: BytesMut,
    /// Fragments of a message in progress (opcode, data).
    partial: Option<(u8, BytesMut)>,
    max_message: usize,
}

impl Decoder {
    pub fn new(max_message: usize) -> Decoder {
        Decoder { buf: BytesMut::new(), partial: None, max_message }
    }

    /// The read buffer: append received bytes here.
    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Frees the buffers of an idle connection (nothing buffered, no message in progress), so an
    /// idle connection holds no read buffer at all.
    pub fn release_if_idle(&mut self) {
        // Even with no capacity left, an emptied buffer still shares the allocation its last
        // frame was split from: replacing it lets that go.
        if self.buf.is_empty() && self.partial.is_none() {
            self.buf = BytesMut::new();
        }
    }

    /// Bytes held by this decoder (for memory accounting in tests).
    pub fn capacity(&self) -> usize {
        self.buf.capacity() + self.partial.as_ref().map_or(0, |(_, b)| b.capacity())
    }

    /// Decodes the next complete event, if the buffer holds one.
    pub fn next(&mut self) -> Result<Option<WsEvent>, WsError> {
        loop {
            let b = &self.buf[..];
            if b.len() < 2 {
                return Ok(None);
            }
            let (fin, rsv, opcode) = (b[0] & 0x80 != 0, b[0] & 0x70, b[0] & 0x0f);
            let masked = b[1] & 0x80 != 0;
            if rsv != 0 || !masked {
                return Err(WsError::Protocol);
            }
            let (len, mut at) = match b[1] & 0x7f {
                126 => {
                    if b.len() < 4 {
                        return Ok(None);
                    }
                    (u16::from_be_bytes([b[2], b[3]]) as u64, 4)
                }
                127 => {
                    if b.len() < 10 {
                        return Ok(None);
                    }
                    let n = u64::from_be_bytes(b[2..10].try_into().expect("8 bytes"));
                    if n >> 63 != 0 {
                        return Err(WsError::Protocol);
                    }
                    (n, 10)
                }
                n => (n as u64, 2),
            };
            let is_control = opcode & 0x8 != 0;
            if is_control && (!fin || len > 125) {
                return Err(WsError::Protocol);
            }
            let so_far = self.partial.as_ref().map_or(0, |(_, d)| d.len()) as u64;
            if !is_control && len + so_far > self.max_message as u64 {
                return Err(WsError::TooBig);
            }
            if b.len() < at + 4 {
                return Ok(None);
            }
            let mask = [b[at], b[at + 1], b[at + 2], b[at + 3]];
            at += 4;
            let total = at + len as usize;
            if b.len() < total {
                // Reserve room for the rest of this frame at once (bounded by max_message).
                self.buf.reserve(total - self.buf.len());
                return Ok(None);
            }
            self.buf.advance(at);
            let mut data = self.buf.split_to(len as usize);
            unmask(&mut data, mask);
            match opcode {
                0x0 => {
                    let (op, acc) = self.partial.as_mut().ok_or(WsError::Protocol)?;
                    acc.extend_from_slice(&data);
                    if fin {
                        let op = *op;
                        let (_, acc) = self.partial.take().expect("partial");
                        return finish(op, acc.freeze()).map(Some);
                    }
                }
                0x1 | 0x2 => {
                    if self.partial.is_some() {
                        return Err(WsError::Protocol);
                    }
                    if fin {
                        return finish(opcode, data.freeze()).map(Some);
                    }
                    self.partial = Some((opcode, data));
                }
                0x8 => {
                    let data = data.freeze();
                    return match data.len() {
                        0 => Ok(Some(WsEvent::Close(None, String::new()))),
                        1 => Err(WsError::Protocol),
                        _ => {
                            let code = u16::from_be_bytes([data[0], data[1]]);
                            let reason =
                                std::str::from_utf8(&data[2..]).map_err(|_| WsError::InvalidUtf8)?.to_owned();
                            Ok(Some(WsEvent::Close(Some(code), reason)))
                        }
                    };
                }
                0x9 => return Ok(Some(WsEvent::Ping(data.freeze()))),
                0xA => return Ok(Some(WsEvent::Pong)),
                _ => return Err(WsError::Protocol),
            }
        }
    }
}

fn finish(opcode: u8, data: Bytes) -> Result<WsEvent, WsError> {
    if opcode == 0x1 {
        std::str::from_utf8(&data).map_err(|_| WsError::InvalidUtf8)?;
        Ok(WsEvent::Text(data))
    } else {
        Ok(WsEvent::Binary(data))
    }
}

fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let m = u32::from_ne_bytes(mask);
    let mut chunks = data.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ m;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i];
    }
}

/// Encodes a masked client frame (tests and the fuzz corpus use it).
pub fn client_frame(opcode: u8, fin: bool, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: [u8; 4] = [1, 2, 3, 4];

    fn decode_all(bytes: &[u8], max: usize) -> Vec<Result<WsEvent, WsError>> {
        let mut d = Decoder::new(max);
        d.buffer().extend_from_slice(bytes);
        let mut out = vec![];
        loop {
            match d.next() {
                Ok(Some(e)) => out.push(Ok(e)),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e));
                    break;
                }
            }
        }
        out
    }

    #[test]
    fn keys() {
        assert!(valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!valid_key(b"short"));
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25jZQ!!"));
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25jZSBz")); // 18 bytes
    }

    #[test]
    fn accept_key_rfc_example() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn text_binary_and_fragments() {
        let mut bytes = client_frame(1, true, b"hello", M);
        bytes.extend(client_frame(2, false, b"ab", M));
        bytes.extend(client_frame(9, true, b"p", M)); // control frame between fragments
        bytes.extend(client_frame(0, true, b"cd", M));
        let ev = decode_all(&bytes, 100);
        assert_eq!(ev[0], Ok(WsEvent::Text(Bytes::from_static(b"hello"))));
        assert_eq!(ev[1], Ok(WsEvent::Ping(Bytes::from_static(b"p"))));
        assert_eq!(ev[2], Ok(WsEvent::Binary(Bytes::from_static(b"abcd"))));
    }

    #[test]
    fn byte_by_byte_feeding() {
        let bytes = client_frame(1, true, &vec![b'x'; 300], M);
        let mut d = Decoder::new(1000);
        for (i, b) in bytes.iter().enumerate() {
            d.buffer().extend_from_slice(&[*b]);
            let r = d.next().unwrap();
            if i + 1 < bytes.len() {
                assert!(r.is_none());
            } else {
                assert_eq!(r, Some(WsEvent::Text(Bytes::from(vec![b'x'; 300]))));
            }
        }
    }

    #[test]
    fn errors() {
        // Unmasked frame.
        assert_eq!(decode_all(&[0x81, 0x00], 10), vec![Err(WsError::Protocol)]);
        // Reserved bit.
        assert_eq!(decode_all(&client_frame(0x41, true, b"", M), 10), vec![Err(WsError::Protocol)]);
        // Too big, detected from the header before the payload arrives.
        assert_eq!(decode_all(&client_frame(1, true, &[b'a'; 11], M)[..6], 10), vec![Err(WsError::TooBig)]);
        // Too big across fragments.
        let mut b = client_frame(1, false, &[b'a'; 6], M);
        b.extend(client_frame(0, true, &[b'a'; 6], M));
        assert_eq!(decode_all(&b, 10), vec![Err(WsError::TooBig)]);
        // Invalid UTF-8.
        assert_eq!(decode_all(&client_frame(1, true, &[0xff], M), 10), vec![Err(WsError::InvalidUtf8)]);
        // Continuation without start; new message inside a fragmented one.
        assert_eq!(decode_all(&client_frame(0, true, b"a", M), 10), vec![Err(WsError::Protocol)]);
        let mut b = client_frame(1, false, b"a", M);
        b.extend(client_frame(1, true, b"b", M));
        assert_eq!(decode_all(&b, 10), vec![Err(WsError::Protocol)]);
        // Fragmented control frame; unknown opcode.
        assert_eq!(decode_all(&client_frame(9, false, b"", M), 10), vec![Err(WsError::Protocol)]);
        assert_eq!(decode_all(&client_frame(3, true, b"", M), 10), vec![Err(WsError::Protocol)]);
    }

    #[test]
    fn close_frames() {
        let mut body = 1000u16.to_be_bytes().to_vec();
        body.extend_from_slice(b"bye");
        assert_eq!(decode_all(&client_frame(8, true, &body, M), 10), vec![Ok(WsEvent::Close(Some(1000), "bye".into()))]);
        assert_eq!(decode_all(&client_frame(8, true, b"", M), 10), vec![Ok(WsEvent::Close(None, String::new()))]);
        assert_eq!(decode_all(&client_frame(8, true, b"x", M), 10), vec![Err(WsError::Protocol)]);
    }

    #[test]
    fn idle_release() {
        let mut d = Decoder::new(100);
        d.buffer().extend_from_slice(&client_frame(1, true, b"hi", M));
        assert!(d.next().unwrap().is_some());
        d.release_if_idle();
        assert_eq!(d.capacity(), 0);
    }
}
