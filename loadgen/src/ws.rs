//! A lean WebSocket client (RFC 6455) for the load generator: one per connection, 19k of them
//! in one process, so what a connection keeps while idle is what matters.
//!
//! - The opening handshake is a hand-written HTTP/1.1 `GET` with `Sec-WebSocket-Key`; the
//!   answer must be `101` with the matching `Sec-WebSocket-Accept` ([`handshake`]).
//! - Reads go into a per-thread scratch buffer ([`SCRATCH_LEN`]), not a per-connection one.
//!   Every complete frame in a read is parsed there and each text message is handed to the
//!   caller as a `&str` borrowed from it: no allocation, no copy. A connection keeps only the
//!   bytes of a frame cut by the read boundary (`partial`) and of a fragmented message being
//!   assembled (`fragments`); both are empty (no allocation) while it is idle.
//! - Pings are answered with pongs, a close frame is echoed and ends the connection, and what
//!   the RFC forbids a server (masked frames, reserved bits or opcodes, control frames that are
//!   fragmented or longer than 125 bytes, continuation without a start, invalid UTF-8, frames
//!   or messages over [`MAX_MESSAGE`]) fails the connection with a [`ConnError`].
//! - Sends are masked client frames written straight from the caller's buffer (masked in
//!   place); only the part the socket did not take is kept until it drains.
//!
//! Failure kinds keep the names the report used with tungstenite: `ws_protocol` for protocol
//! violations (and for the end of the stream without a close frame, tungstenite's
//! `ResetWithoutClosingHandshake`), `ws_capacity` for size limits, `ws_other` for invalid
//! UTF-8, `http_<status>` for a refused upgrade, `closed_by_server` for a close frame.

use crate::error::ConnError;
use base64::Engine;
use sha1::{Digest, Sha1};
use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;

/// Largest frame or (reassembled) message accepted: what the tungstenite config allowed.
pub const MAX_MESSAGE: usize = 64 << 20;
/// Per-thread read buffer. The broker writes about 16 frames of ~150 bytes per `writev`; a
/// presence_state of a large room is bigger and takes the `partial` path.
pub const SCRATCH_LEN: usize = 64 << 10;
/// Largest HTTP response head accepted in the handshake.
const MAX_RESPONSE_HEAD: usize = 16 << 10;
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

thread_local! {
    /// The read buffer of the connections this thread is polling (taken while in use).
    static SCRATCH: Cell<Option<Box<[u8]>>> = const { Cell::new(None) };
    /// Masking keys and handshake nonces: xorshift64*, seeded per thread.
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
    let here = &t as *const u64 as u64; // differs per thread (stack address)
    (t ^ here.rotate_left(32)) | 1
}

fn random_u64() -> u64 {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        x.wrapping_mul(0x2545F4914F6CDD1D)
    })
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes in base64.
fn new_key() -> String {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&random_u64().to_le_bytes());
    b[8..].copy_from_slice(&random_u64().to_le_bytes());
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Where a connection is in the closing handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// we sent a close frame (nothing more is sent)
    CloseSent,
    /// the server sent a close frame, or the stream ended / failed: nothing more is read
    Closed,
}

/// One client WebSocket over a connected TCP stream.
pub struct WsStream {
    io: TcpStream,
    /// Bytes of a frame cut by the end of a read, carried to the next one (empty, and without
    /// an allocation, between whole frames).
    partial: Vec<u8>,
    /// The fragments of a text message so far (without an allocation when none is in progress).
    fragments: Vec<u8>,
    /// Opcode of the fragmented message in progress, [`OP_CONT`] when none.
    frag_op: u8,
    /// Frames (pongs, the close echo, the rest of a send) the socket did not take yet.
    out: Vec<u8>,
    state: State,
}

/// What a read produced besides the text messages handed to the caller.
#[derive(Debug, PartialEq, Eq)]
enum ReadEnd {
    /// nothing more to read right now
    Drained,
    /// the connection is over (close frame, end of stream, or a protocol error)
    Closed(ConnError),
}

/// A parsed frame header: (fin, opcode, header length, payload length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    fin: bool,
    op: u8,
    hlen: usize,
    len: usize,
}

/// Parse the frame header at the start of `b`: `Ok(None)` if incomplete.
fn parse_header(b: &[u8]) -> Result<Option<Header>, ConnError> {
    if b.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (b[0], b[1]);
    if b0 & 0x70 != 0 {
        return Err(ConnError::WsProtocol); // reserved bits: no extension was negotiated
    }
    if b1 & 0x80 != 0 {
        return Err(ConnError::WsProtocol); // a server must not mask its frames
    }
    let fin = b0 & 0x80 != 0;
    let op = b0 & 0x0F;
    let (hlen, len) = match b1 & 0x7F {
        126 => {
            if b.len() < 4 {
                return Ok(None);
            }
            (4, u16::from_be_bytes([b[2], b[3]]) as u64)
        }
        127 => {
            if b.len() < 10 {
                return Ok(None);
            }
            let v = u64::from_be_bytes(b[2..10].try_into().unwrap());
            if v >> 63 != 0 {
                return Err(ConnError::WsProtocol); // the most significant bit must be 0
            }
            (10, v)
        }
        n => (2, n as u64),
    };
    match op {
        OP_CONT | OP_TEXT | OP_BINARY => {}
        OP_CLOSE | OP_PING | OP_PONG => {
            if !fin || len > 125 {
                return Err(ConnError::WsProtocol);
            }
        }
        _ => return Err(ConnError::WsProtocol),
    }
    if len > MAX_MESSAGE as u64 {
        return Err(ConnError::WsCapacity);
    }
    Ok(Some(Header { fin, op, hlen, len: len as usize }))
}

/// XOR `data` with the masking key, starting at key offset 0.
fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    let k = u32::from_ne_bytes(key);
    let k8 = ((k as u64) << 32) | k as u64;
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes((&*c).try_into().unwrap()) ^ k8;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// The header of a masked client frame (FIN set) carrying `len` bytes: (bytes, length).
fn client_header(op: u8, len: usize, key: [u8; 4]) -> ([u8; 14], usize) {
    let mut h = [0u8; 14];
    h[0] = 0x80 | op;
    let n = if len < 126 {
        h[1] = 0x80 | len as u8;
        2
    } else if len <= u16::MAX as usize {
        h[1] = 0x80 | 126;
        h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        h[1] = 0x80 | 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    h[n..n + 4].copy_from_slice(&key);
    (h, n + 4)
}

/// A whole masked client frame (for control frames and tests).
fn client_frame(op: u8, payload: &[u8]) -> Vec<u8> {
    let key = random_u64().to_ne_bytes()[..4].try_into().unwrap();
    let (h, hl) = client_header(op, payload.len(), key);
    let mut out = Vec::with_capacity(hl + payload.len());
    out.extend_from_slice(&h[..hl]);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], key);
    out
}

fn io_err(e: &io::Error) -> ConnError {
    ConnError::from_io(e)
}

/// Build the upgrade request for `path_and_query` on `host` with `key`.
fn upgrade_request(host: &str, path_and_query: &str, key: &str) -> String {
    format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
    )
}

/// Headers accepted in the handshake answer.
const MAX_HEADERS: usize = 64;

/// Check an HTTP response head against the handshake rules (RFC 6455 §4.1): `Ok(Some(len))`
/// when it is complete and accepts the upgrade (len = bytes of the head), `Ok(None)` when more
/// bytes are needed.
fn check_response(buf: &[u8], accept: &str) -> Result<Option<usize>, ConnError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { return Ok(None) };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| ConnError::WsProtocol)?;
    let mut lines = head.split("\r\n");
    // status line: HTTP/1.x SP code SP reason
    let status = lines.next().unwrap_or("");
    let mut parts = status.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().filter(|c| c.len() == 3).and_then(|c| c.parse::<u16>().ok()).ok_or(ConnError::WsProtocol)?;
    if !version.starts_with("HTTP/1.") || version == "HTTP/1.0" {
        return Err(ConnError::WsProtocol);
    }
    if code != 101 {
        return Err(ConnError::Http(code));
    }
    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(8);
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(ConnError::WsProtocol)?;
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err(ConnError::WsProtocol);
        }
        if headers.len() == MAX_HEADERS {
            return Err(ConnError::WsCapacity);
        }
        headers.push((name, value.trim_matches([' ', '\t'])));
    }
    let header = |name: &str| headers.iter().find(|h| h.0.eq_ignore_ascii_case(name)).map(|h| h.1);
    let upgrade_ok = header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let connection_ok = header("connection").is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")));
    let accept_ok = header("sec-websocket-accept") == Some(accept);
    // neither an extension nor a subprotocol was asked for, so none may be chosen
    let unasked = header("sec-websocket-extensions").is_some() || header("sec-websocket-protocol").is_some();
    if !upgrade_ok || !connection_ok || !accept_ok || unasked {
        return Err(ConnError::WsProtocol);
    }
    Ok(Some(end + 4))
}

/// The opening handshake on a connected stream: `GET path_and_query` with `Host: host`.
pub async fn handshake(mut io: TcpStream, host: &str, path_and_query: &str) -> Result<WsStream, ConnError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let key = new_key();
    let accept = accept_key(&key);
    io.write_all(upgrade_request(host, path_and_query, &key).as_bytes()).await.map_err(|e| io_err(&e))?;
    let mut buf: Vec<u8> = Vec::with_capacity(512);
    loop {
        if buf.len() == buf.capacity() {
            if buf.len() >= MAX_RESPONSE_HEAD {
                return Err(ConnError::WsCapacity);
            }
            buf.reserve(buf.len());
        }
        let n = io.read_buf(&mut buf).await.map_err(|e| io_err(&e))?;
        if n == 0 {
            return Err(ConnError::WsProtocol); // the stream ended mid-handshake
        }
        if let Some(head) = check_response(&buf, &accept)? {
            // frames the server sent right after its answer
            let rest = if head < buf.len() { buf[head..].to_vec() } else { Vec::new() };
            return Ok(WsStream::new(io, rest));
        }
    }
}

impl WsStream {
    fn new(io: TcpStream, partial: Vec<u8>) -> Self {
        WsStream { io, partial, fragments: Vec::new(), frag_op: OP_CONT, out: Vec::new(), state: State::Open }
    }

    /// Wait for and handle incoming frames: every complete text message is handed to `on_text`
    /// (borrowed from the read buffer); pings are answered. Returns after a read that produced
    /// at least one text message, with their number. `Err` when the connection is over: the
    /// server's close frame ([`ConnError::ClosedByServer`]), an I/O error, or a protocol error.
    ///
    /// Cancel-safe: what was read is handled before the next await, and frames cut by a read
    /// boundary and unsent control frames are kept in `self`.
    pub async fn recv(&mut self, mut on_text: impl FnMut(&str)) -> Result<usize, ConnError> {
        self.recv_until(|t| {
            on_text(t);
            false
        })
        .await
    }

    /// [`WsStream::recv`], stopping after the message for which `on_text` returns true: the
    /// frames after it stay in the connection for the next call.
    pub async fn recv_until(&mut self, mut on_text: impl FnMut(&str) -> bool) -> Result<usize, ConnError> {
        loop {
            if self.state == State::Closed {
                return Err(ConnError::Closed);
            }
            if !self.out.is_empty() {
                self.flush().await?;
            }
            let mut n = 0usize;
            let mut count = |t: &str| {
                n += 1;
                on_text(t)
            };
            let end = if self.carried_ready() {
                self.handle_carried(&mut count)
            } else {
                std::future::poll_fn(|cx| self.poll_read_some(cx, &mut count)).await
            };
            match end {
                ReadEnd::Closed(k) => {
                    self.state = State::Closed;
                    // the close echo, if there is one, goes out now; the stream is over anyway
                    self.try_write_out();
                    return Err(k);
                }
                ReadEnd::Drained => {
                    self.try_write_out();
                    if n > 0 {
                        return Ok(n);
                    }
                }
            }
        }
    }

    /// Whether `partial` holds a complete frame (or a bad header) to handle without reading:
    /// frames that came with the handshake answer, or left by [`WsStream::recv_until`].
    fn carried_ready(&self) -> bool {
        match parse_header(&self.partial) {
            Ok(Some(h)) => self.partial.len() >= h.hlen + h.len,
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// Handle the complete frames in `partial`, keeping the rest there.
    fn handle_carried(&mut self, on_text: &mut dyn FnMut(&str) -> bool) -> ReadEnd {
        let mut buf = std::mem::take(&mut self.partial);
        let (used, end) = self.handle_frames(&buf, on_text);
        if end.is_none() && used < buf.len() {
            buf.drain(..used);
            self.partial = buf;
        }
        // else: nothing is kept (no allocation while idle)
        end.unwrap_or(ReadEnd::Drained)
    }

    /// One read (into the thread's scratch buffer, or into `partial` when the cut frame does
    /// not fit there), then every complete frame handled; Pending (nothing kept but `partial`)
    /// when there is nothing to read.
    ///
    /// The scratch read goes through `AsyncRead::poll_read`, which clears the socket's
    /// readiness after a short read: no second `recv` just to learn it would block.
    fn poll_read_some(&mut self, cx: &mut Context<'_>, on_text: &mut dyn FnMut(&str) -> bool) -> Poll<ReadEnd> {
        let carried = self.partial.len();
        let need = match parse_header(&self.partial) {
            Ok(Some(h)) => h.hlen + h.len,
            Ok(None) => 14,
            Err(k) => return Poll::Ready(ReadEnd::Closed(k)),
        };
        if carried > 0 && need > SCRATCH_LEN {
            // a frame larger than the scratch buffer: read it into `partial` itself
            self.partial.reserve(need.saturating_sub(carried).max(4096));
            loop {
                match self.io.poll_read_ready(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(ReadEnd::Closed(io_err(&e))),
                    Poll::Ready(Ok(())) => {}
                }
                return Poll::Ready(match self.io.try_read_buf(&mut self.partial) {
                    Ok(0) => self.eof(),
                    Ok(_) => self.handle_carried(on_text),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => ReadEnd::Closed(io_err(&e)),
                });
            }
        }
        let mut scratch = SCRATCH.with(|s| s.take()).unwrap_or_else(|| vec![0u8; SCRATCH_LEN].into_boxed_slice());
        scratch[..carried].copy_from_slice(&self.partial);
        let mut rb = ReadBuf::new(&mut scratch[carried..]);
        let end = match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
            Poll::Pending => None,
            Poll::Ready(Err(e)) => Some(ReadEnd::Closed(io_err(&e))),
            Poll::Ready(Ok(())) if rb.filled().is_empty() => Some(self.eof()),
            Poll::Ready(Ok(())) => {
                let total = carried + rb.filled().len();
                let (used, end) = self.handle_frames(&scratch[..total], on_text);
                if end.is_none() && used < total {
                    self.partial.clear();
                    self.partial.extend_from_slice(&scratch[used..total]);
                } else {
                    self.partial = Vec::new();
                }
                Some(end.unwrap_or(ReadEnd::Drained))
            }
        };
        SCRATCH.with(|s| s.set(Some(scratch)));
        match end {
            Some(e) => Poll::Ready(e),
            None => Poll::Pending,
        }
    }

    fn eof(&mut self) -> ReadEnd {
        // tungstenite called this ResetWithoutClosingHandshake (a protocol error)
        ReadEnd::Closed(ConnError::WsProtocol)
    }

    /// Handle the complete frames at the start of `buf`: (bytes used, Some(end) if the
    /// connection is over). Stops early (with complete frames left) when `on_text` asks to.
    fn handle_frames(&mut self, buf: &[u8], on_text: &mut dyn FnMut(&str) -> bool) -> (usize, Option<ReadEnd>) {
        let mut at = 0;
        loop {
            let h = match parse_header(&buf[at..]) {
                Ok(Some(h)) => h,
                Ok(None) => return (at, None),
                Err(k) => return (at, Some(ReadEnd::Closed(k))),
            };
            let end = at + h.hlen + h.len;
            if end > buf.len() {
                return (at, None);
            }
            let payload = &buf[at + h.hlen..end];
            at = end;
            let mut stop = false;
            if let Some(e) = self.on_frame(h, payload, &mut |t| stop = on_text(t)) {
                return (at, Some(e));
            }
            if stop {
                return (at, None);
            }
        }
    }

    /// One frame: Some(end) if it ends the connection.
    fn on_frame(&mut self, h: Header, payload: &[u8], on_text: &mut dyn FnMut(&str)) -> Option<ReadEnd> {
        match h.op {
            OP_TEXT | OP_BINARY => {
                if self.frag_op != OP_CONT {
                    return Some(ReadEnd::Closed(ConnError::WsProtocol)); // a new message inside a fragmented one
                }
                if !h.fin {
                    self.frag_op = h.op;
                    if h.op == OP_TEXT {
                        self.fragments.extend_from_slice(payload);
                    }
                    return None;
                }
                if h.op == OP_TEXT {
                    match std::str::from_utf8(payload) {
                        Ok(t) => on_text(t),
                        Err(_) => return Some(ReadEnd::Closed(ConnError::WsOther)),
                    }
                }
                None // binary messages are not used by the V2 JSON serializer: skipped
            }
            OP_CONT => {
                if self.frag_op == OP_CONT {
                    return Some(ReadEnd::Closed(ConnError::WsProtocol)); // nothing to continue
                }
                if self.frag_op == OP_TEXT {
                    if self.fragments.len() + payload.len() > MAX_MESSAGE {
                        return Some(ReadEnd::Closed(ConnError::WsCapacity));
                    }
                    self.fragments.extend_from_slice(payload);
                }
                if h.fin {
                    let op = std::mem::replace(&mut self.frag_op, OP_CONT);
                    let msg = std::mem::take(&mut self.fragments);
                    if op == OP_TEXT {
                        match std::str::from_utf8(&msg) {
                            Ok(t) => on_text(t),
                            Err(_) => return Some(ReadEnd::Closed(ConnError::WsOther)),
                        }
                    }
                }
                None
            }
            OP_PING => {
                if self.state == State::Open {
                    self.out.extend_from_slice(&client_frame(OP_PONG, payload));
                }
                None
            }
            OP_PONG => None,
            OP_CLOSE => {
                if payload.len() == 1 || (payload.len() > 2 && std::str::from_utf8(&payload[2..]).is_err()) {
                    return Some(ReadEnd::Closed(ConnError::WsProtocol));
                }
                if self.state == State::Open {
                    // echo the status code (RFC 6455 §5.5.1)
                    let echo = &payload[..payload.len().min(2)];
                    self.out.extend_from_slice(&client_frame(OP_CLOSE, echo));
                    self.state = State::CloseSent;
                }
                Some(ReadEnd::Closed(ConnError::ClosedByServer))
            }
            _ => Some(ReadEnd::Closed(ConnError::WsProtocol)),
        }
    }

    /// Write what the socket takes of `out` now, without waiting.
    fn try_write_out(&mut self) {
        while !self.out.is_empty() {
            match self.io.try_write(&self.out) {
                Ok(n) if n > 0 => {
                    self.out.drain(..n);
                }
                _ => return,
            }
        }
        self.out = Vec::new();
    }

    /// Write all of `out`.
    async fn flush(&mut self) -> Result<(), ConnError> {
        while !self.out.is_empty() {
            self.io.writable().await.map_err(|e| io_err(&e))?;
            match self.io.try_write(&self.out) {
                Ok(0) => return Err(ConnError::Io(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(io_err(&e)),
            }
        }
        self.out = Vec::new();
        Ok(())
    }

    /// Send a text message (one masked frame; the text is masked in place).
    pub async fn send_text(&mut self, text: String) -> Result<(), ConnError> {
        self.send_frame(OP_TEXT, text.into_bytes()).await
    }

    async fn send_frame(&mut self, op: u8, mut payload: Vec<u8>) -> Result<(), ConnError> {
        if self.state != State::Open {
            return Err(ConnError::Closed);
        }
        if !self.out.is_empty() {
            self.flush().await?;
        }
        let key: [u8; 4] = random_u64().to_ne_bytes()[..4].try_into().unwrap();
        let (h, hl) = client_header(op, payload.len(), key);
        apply_mask(&mut payload, key);
        // usually the socket takes it all at once; the rest waits in `out`
        let bufs = [io::IoSlice::new(&h[..hl]), io::IoSlice::new(&payload)];
        let written = match self.io.try_write_vectored(&bufs) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(io_err(&e)),
        };
        if written < hl + payload.len() {
            if written < hl {
                self.out.extend_from_slice(&h[written..hl]);
                self.out.extend_from_slice(&payload);
            } else {
                self.out.extend_from_slice(&payload[written - hl..]);
            }
            self.flush().await?;
        }
        Ok(())
    }

    /// Start the closing handshake (close code 1000) and end the connection; the server's
    /// answer is not waited for.
    pub async fn close(mut self) {
        if self.state == State::Open {
            self.state = State::CloseSent;
            self.out.extend_from_slice(&client_frame(OP_CLOSE, &1000u16.to_be_bytes()));
        }
        let _ = self.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// An unmasked server frame.
    fn server_frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(if fin { 0x80 } else { 0 }) | op];
        let n = payload.len();
        if n < 126 {
            out.push(n as u8);
        } else if n <= 0xFFFF {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
        out.extend_from_slice(payload);
        out
    }

    /// Unmask the client frames in `b`: (opcode, payload) each, and whether every one was masked.
    fn client_frames(mut b: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = vec![];
        while b.len() >= 2 {
            assert_eq!(b[1] & 0x80, 0x80, "client frames are masked");
            let (hl, len) = match b[1] & 0x7F {
                126 => (4, u16::from_be_bytes([b[2], b[3]]) as usize),
                127 => (10, u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize),
                n => (2, n as usize),
            };
            let key: [u8; 4] = b[hl..hl + 4].try_into().unwrap();
            let mut p = b[hl + 4..hl + 4 + len].to_vec();
            apply_mask(&mut p, key);
            out.push((b[0] & 0x0F, p));
            b = &b[hl + 4 + len..];
        }
        assert!(b.is_empty(), "trailing bytes");
        out
    }

    /// A server on port 0 that accepts the upgrade, then writes `chunks` (each a separate
    /// write, with a pause so they arrive as separate reads) and returns what the client sent.
    async fn serve(chunks: Vec<Vec<u8>>) -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let h = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut b).await.unwrap();
                req.extend_from_slice(&b[..n]);
            }
            let text = String::from_utf8(req).unwrap();
            let key = text.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap().trim().to_string();
            assert!(text.starts_with("GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\n"), "{text}");
            assert!(text.contains("\r\nHost: example:4000\r\n"), "{text}");
            let resp = format!(
                "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-accept: {}\r\n\r\n",
                accept_key(&key)
            );
            // the first chunk comes with the answer (frames right behind the handshake)
            let mut chunks = chunks.into_iter();
            let first = chunks.next().unwrap_or_default();
            s.write_all(&[resp.as_bytes(), &first].concat()).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            for c in chunks {
                s.write_all(&c).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            let mut got = Vec::new();
            let _ = tokio::time::timeout(std::time::Duration::from_millis(300), s.read_to_end(&mut got)).await;
            got
        });
        (addr, h)
    }

    async fn connect(addr: std::net::SocketAddr) -> WsStream {
        let io = TcpStream::connect(addr).await.unwrap();
        handshake(io, "example:4000", "/socket/websocket?vsn=2.0.0").await.unwrap()
    }

    /// Receive until the connection ends: (texts, the end).
    async fn drain(ws: &mut WsStream) -> (Vec<String>, ConnError) {
        let mut texts = vec![];
        loop {
            match tokio::time::timeout(std::time::Duration::from_secs(5), ws.recv(|t| texts.push(t.to_string()))).await {
                Ok(Ok(_)) => {}
                Ok(Err(k)) => return (texts, k),
                Err(_) => panic!("no end; got {texts:?}"),
            }
        }
    }

    #[test]
    fn accept_key_is_the_rfc_example() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn mask_roundtrips_at_every_length() {
        for n in 0..40 {
            let data: Vec<u8> = (0..n as u8).collect();
            let mut m = data.clone();
            apply_mask(&mut m, [1, 2, 3, 0x80]);
            let want: Vec<u8> = data.iter().enumerate().map(|(i, b)| b ^ [1, 2, 3, 0x80][i % 4]).collect();
            assert_eq!(m, want);
            apply_mask(&mut m, [1, 2, 3, 0x80]);
            assert_eq!(m, data);
        }
    }

    #[test]
    fn headers_that_break_the_rules_are_errors() {
        assert_eq!(parse_header(&[0x81]), Ok(None));
        assert_eq!(parse_header(&[0x81, 126, 0]), Ok(None));
        assert_eq!(parse_header(&[0x81, 5]).unwrap().unwrap(), Header { fin: true, op: 1, hlen: 2, len: 5 });
        assert_eq!(parse_header(&[0x81, 126, 1, 0]).unwrap().unwrap().len, 256);
        assert_eq!(parse_header(&[0x81, 0x85, 0, 0, 0, 0]), Err(ConnError::WsProtocol), "masked");
        assert_eq!(parse_header(&[0xC1, 5]), Err(ConnError::WsProtocol), "rsv1");
        assert_eq!(parse_header(&[0x83, 5]), Err(ConnError::WsProtocol), "reserved opcode");
        assert_eq!(parse_header(&[0x09, 0]), Err(ConnError::WsProtocol), "fragmented ping");
        assert_eq!(parse_header(&[0x89, 126, 0, 126]), Err(ConnError::WsProtocol), "ping over 125");
        let mut big = vec![0x81, 127];
        big.extend_from_slice(&((MAX_MESSAGE as u64) + 1).to_be_bytes());
        assert_eq!(parse_header(&big), Err(ConnError::WsCapacity), "oversized");
        let mut msb = vec![0x81, 127];
        msb.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(parse_header(&msb), Err(ConnError::WsProtocol), "length msb");
    }

    #[test]
    fn responses_that_refuse_the_upgrade_are_errors() {
        let acc = accept_key("k");
        let ok = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Accept: {acc}\r\n\r\n");
        assert_eq!(check_response(ok.as_bytes(), &acc), Ok(Some(ok.len())));
        assert_eq!(check_response(&ok.as_bytes()[..ok.len() - 2], &acc), Ok(None));
        assert_eq!(check_response(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n", &acc), Err(ConnError::Http(403)));
        let wrong = ok.replace(&acc, &accept_key("other"));
        assert_eq!(check_response(wrong.as_bytes(), &acc), Err(ConnError::WsProtocol));
        let no_upgrade = ok.replace("Upgrade: WebSocket\r\n", "");
        assert_eq!(check_response(no_upgrade.as_bytes(), &acc), Err(ConnError::WsProtocol));
        let ext = ok.replace("\r\n\r\n", "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n");
        assert_eq!(check_response(ext.as_bytes(), &acc), Err(ConnError::WsProtocol));
        assert_eq!(check_response(b"garbage\r\n\r\n", &acc), Err(ConnError::WsProtocol));
        let old = ok.replace("HTTP/1.1", "HTTP/1.0");
        assert_eq!(check_response(old.as_bytes(), &acc), Err(ConnError::WsProtocol));
        let many = ok.replace("\r\n\r\n", &format!("{}\r\n\r\n", "\r\nX-A: b".repeat(70)));
        assert_eq!(check_response(many.as_bytes(), &acc), Err(ConnError::WsCapacity));
    }

    #[tokio::test]
    async fn frames_cut_anywhere_are_reassembled() {
        // many frames, one of them larger than the scratch buffer, written in chunks that cut
        // headers and payloads at arbitrary places
        let big = "x".repeat(SCRATCH_LEN + 1000);
        let texts: Vec<String> = (0..50).map(|i| format!("[null,null,\"t\",\"e\",{{\"i\":{i}}}]")).chain([big, "é€".repeat(40), String::new()]).collect();
        let mut stream = vec![];
        for t in &texts {
            stream.extend(server_frame(true, OP_TEXT, t.as_bytes()));
        }
        stream.extend(server_frame(true, OP_CLOSE, &1000u16.to_be_bytes()));
        let cuts = [1usize, 2, 3, 7, 100, 1, 5000, 30000, 40000, 3, 1];
        let mut chunks = vec![];
        let mut rest = &stream[..];
        for c in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let n = (*c).min(rest.len());
            chunks.push(rest[..n].to_vec());
            rest = &rest[n..];
        }
        let (addr, server) = serve(chunks).await;
        let mut ws = connect(addr).await;
        let (got, end) = drain(&mut ws).await;
        assert_eq!(got, texts);
        assert_eq!(end, ConnError::ClosedByServer);
        assert!(ws.partial.capacity() == 0 && ws.fragments.capacity() == 0, "nothing kept after the last frame");
        drop(ws);
        // the close was echoed with the same code
        let sent = client_frames(&server.await.unwrap());
        assert_eq!(sent, vec![(OP_CLOSE, 1000u16.to_be_bytes().to_vec())]);
    }

    #[tokio::test]
    async fn fragmented_message_with_a_ping_in_between() {
        let mut s = server_frame(false, OP_TEXT, b"[null,");
        s.extend(server_frame(true, OP_PING, b"hb"));
        s.extend(server_frame(false, OP_CONT, b"null,\"t\","));
        s.extend(server_frame(true, OP_CONT, b"\"e\",{}]"));
        s.extend(server_frame(true, OP_BINARY, b"\x00\x01"));
        s.extend(server_frame(true, OP_PONG, b""));
        s.extend(server_frame(true, OP_TEXT, b"after"));
        s.extend(server_frame(true, OP_CLOSE, &[0x03, 0xE9, b'b', b'y', b'e']));
        let (addr, server) = serve(vec![s]).await;
        let mut ws = connect(addr).await;
        let (got, end) = drain(&mut ws).await;
        assert_eq!(got, vec!["[null,null,\"t\",\"e\",{}]".to_string(), "after".into()]);
        assert_eq!(end, ConnError::ClosedByServer);
        drop(ws);
        let sent = client_frames(&server.await.unwrap());
        assert_eq!(sent, vec![(OP_PONG, b"hb".to_vec()), (OP_CLOSE, vec![0x03, 0xE9])]);
    }

    async fn end_of(frames: Vec<u8>) -> (Vec<String>, ConnError) {
        let (addr, _server) = serve(vec![frames]).await;
        let mut ws = connect(addr).await;
        drain(&mut ws).await
    }

    #[tokio::test]
    async fn rule_breaking_servers_fail_the_connection() {
        let ok = server_frame(true, OP_TEXT, b"ok");
        // a masked frame
        let masked = [ok.clone(), vec![0x81, 0x82, 1, 2, 3, 4, b'a' ^ 1, b'b' ^ 2]].concat();
        assert_eq!(end_of(masked).await, (vec!["ok".to_string()], ConnError::WsProtocol));
        // an oversized length
        let mut big = vec![0x81, 127];
        big.extend_from_slice(&(1u64 << 40).to_be_bytes());
        assert_eq!(end_of([ok.clone(), big].concat()).await, (vec!["ok".to_string()], ConnError::WsCapacity));
        // continuation without a start
        assert_eq!(end_of(server_frame(true, OP_CONT, b"x")).await.1, ConnError::WsProtocol);
        // a new text message inside a fragmented one
        let interleaved = [server_frame(false, OP_TEXT, b"a"), server_frame(true, OP_TEXT, b"b")].concat();
        assert_eq!(end_of(interleaved).await.1, ConnError::WsProtocol);
        // invalid UTF-8 (tungstenite's Utf8 error was counted as ws_other)
        assert_eq!(end_of(server_frame(true, OP_TEXT, b"\xff\xfe")).await.1, ConnError::WsOther);
        // a one-byte close payload
        assert_eq!(end_of(server_frame(true, OP_CLOSE, b"\x03")).await.1, ConnError::WsProtocol);
        // the end of the stream without a close frame
        assert_eq!(end_of(ok.clone()).await, (vec!["ok".to_string()], ConnError::WsProtocol));
    }

    #[tokio::test]
    async fn sends_are_masked_text_frames() {
        let (addr, server) = serve(vec![]).await;
        let mut ws = connect(addr).await;
        let long = "y".repeat(70_000);
        ws.send_text("[null,\"1\",\"phoenix\",\"heartbeat\",{}]".into()).await.unwrap();
        ws.send_text("z".repeat(300)).await.unwrap();
        ws.send_text(long.clone()).await.unwrap();
        ws.close().await;
        let sent = client_frames(&server.await.unwrap());
        assert_eq!(sent.len(), 4);
        assert_eq!(sent[0], (OP_TEXT, b"[null,\"1\",\"phoenix\",\"heartbeat\",{}]".to_vec()));
        assert_eq!(sent[1], (OP_TEXT, "z".repeat(300).into_bytes()));
        assert_eq!(sent[2], (OP_TEXT, long.into_bytes()));
        assert_eq!(sent[3], (OP_CLOSE, 1000u16.to_be_bytes().to_vec()));
    }

    #[tokio::test]
    async fn refused_upgrade_is_the_http_status() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut b = [0u8; 1024];
            let _ = s.read(&mut b).await;
            s.write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n").await.unwrap();
        });
        let io = TcpStream::connect(addr).await.unwrap();
        assert_eq!(handshake(io, "h", "/").await.err(), Some(ConnError::Http(403)));
    }
}
