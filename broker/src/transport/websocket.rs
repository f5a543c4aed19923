//! The WebSocket transport: the upgrade ([`upgrade`], spec §2.5), then one connection = two
//! tasks.
//!
//! * The **reader** owns the [`Socket`]: it reads bytes, decodes frames ([`crate::protocol::ws`]) and
//!   messages ([`crate::protocol::serializer`]), hands them to the socket, and watches the idle timeout,
//!   the socket's control messages (`disconnect`) and server shutdown (drain).
//! * The **writer** drains the [`Outbox`] and writes *everything queued* with vectored writes
//!   (one `writev` for up to `Limits::iov_batch` frames: a write costs ~8 µs here whatever its size, so
//!   batching is the difference between ~150k and millions of frames/s). It is never blocked by
//!   the reader, so slow app code cannot stall deliveries.
//!
//! Closing: whoever decides to close queues a close frame with [`Outbox::close_with`]; the
//! writer flushes what is queued (or drops it, for a slow consumer), writes the close frame and
//! shuts the write side down.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt as _;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::io::{AsyncRead, ReadHalf};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use base64::Engine as _;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::capacity::Permit;
use super::connect::{self, header_str, text, Body, Connected, Refused};
use super::state::ServerState;
use crate::channel::{ShutdownReason, StopReason};
use crate::config::Limits;
use crate::metrics::METRICS;
use crate::outbox::{Outbox, OutboxLimits, Status};
use crate::protocol::ws::{Decoder, WsEvent};
use crate::protocol::{decode_binary, decode_text, CloseReason, Frame, Opcode};
use crate::protocol::Transport;
use crate::socket::{Endpoint, Socket, SocketParams};

/// Linux IOV_MAX: the most slices one `writev` takes (`Limits::iov_batch` is at most this).
const IOV_MAX: usize = 1024;

/// Why the reader stopped.
enum Ending {
    /// We close, for this reason; channels stop with the given reason.
    Close(CloseReason, StopReason),
    /// The client closed (close frame or EOF) or the socket failed.
    Gone,
}

const TOKEN_PREFIX: &str = "base64url.bearer.phx.";

fn empty(status: StatusCode) -> Response<Body> {
    text(status, "")
}

/// Answers a request to `P/websocket`: the handshake (spec §2.5), then a connection task.
/// Every refusal is an HTTP status with a short text body (403 stays empty, as in Phoenix).
pub async fn upgrade(state: Arc<ServerState>, mut req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    if req.method() != Method::GET {
        return empty(StatusCode::BAD_REQUEST);
    }
    if let Err(r) = connect::check_origin(&state, &req) {
        return refused(r);
    }

    // Auth token side channel and subprotocol negotiation (spec §2.4).
    let mut offered: Option<Vec<String>> = header_str(&req, "sec-websocket-protocol")
        .map(|h| h.split(',').map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect());
    let mut auth_token = None;
    // The authToken side channel is read when `auth_token` is on, or when identity is verified
    // (a token is then required, wherever it comes from).
    if state.config.auth_token || state.config.identity_on() {
        if let Some(list) = &mut offered {
            let tokens: Vec<usize> = list.iter().enumerate().filter(|(_, p)| p.starts_with(TOKEN_PREFIX)).map(|(i, _)| i).collect();
            if let [i] = tokens[..] {
                let encoded = list.remove(i);
                let raw = encoded[TOKEN_PREFIX.len()..].trim_end_matches('=');
                match base64::engine::general_purpose::STANDARD_NO_PAD.decode(raw) {
                    Ok(bytes) => auth_token = Some(String::from_utf8_lossy(&bytes).into_owned()),
                    Err(_) => return text(StatusCode::BAD_REQUEST, "invalid auth token encoding"),
                }
            }
        }
    }
    // Subprotocols (spec §2.4): with an allowed list configured (auth token, identity or
    // `subprotocols`), one offered must be on it (403 otherwise); with none, the header is
    // ignored, except that an offered `phoenix` (phoenix.js sends it with an authToken) is
    // always answered: a browser fails a handshake whose offered subprotocols all go
    // unanswered, and a token the server does not use must not lock the client out.
    let mut chosen_protocol = None;
    let configured = state.config.auth_token || state.config.identity_on() || !state.config.subprotocols.is_empty();
    let allowed: Vec<&str> = std::iter::once("phoenix").chain(state.config.subprotocols.iter().map(String::as_str)).collect();
    if let Some(list) = &offered {
        let list: Vec<&String> = list.iter().filter(|p| !p.starts_with(TOKEN_PREFIX)).collect();
        match allowed.iter().find(|a| list.iter().any(|o| o == *a)) {
            Some(p) => chosen_protocol = Some(p.to_string()),
            None if list.is_empty() || !configured => {}
            None => return empty(StatusCode::FORBIDDEN),
        }
    }

    let c = match connect::connect(&state, &req, peer, Transport::WebSocket, auth_token).await {
        Ok(c) => c,
        Err(r) => return refused(r),
    };

    // Upgrade validation (after connect, as in Phoenix: gotcha 3).
    if req.version() != hyper::Version::HTTP_11 {
        return text(StatusCode::BAD_REQUEST, "websocket upgrade requires HTTP/1.1");
    }
    let has_token = |name: &str, token: &str| {
        header_str(&req, name).is_some_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token("connection", "upgrade") {
        return text(StatusCode::BAD_REQUEST, "'connection' header must contain 'upgrade'");
    }
    if !has_token("upgrade", "websocket") {
        return text(StatusCode::BAD_REQUEST, "'upgrade' header must contain 'websocket'");
    }
    if header_str(&req, "sec-websocket-version") != Some("13") {
        return text(StatusCode::BAD_REQUEST, "'sec-websocket-version' header must be '13'");
    }
    let Some(key) = req.headers().get("sec-websocket-key").map(|k| k.as_bytes().to_vec()) else {
        return text(StatusCode::BAD_REQUEST, "'sec-websocket-key' header is missing");
    };
    if !crate::protocol::ws::valid_key(&key) {
        return text(StatusCode::BAD_REQUEST, "'sec-websocket-key' header must be base64 of 16 bytes");
    }

    let on_upgrade = hyper::upgrade::on(&mut req);
    let conn_id = state.next_conn_id();
    let limits = state.config.limits.clone();
    let outbox = Outbox::registered(OutboxLimits { max_frames: limits.outbox_max_frames, max_bytes: limits.outbox_max_bytes });
    let endpoint = state.endpoint.clone();
    let shutdown = state.shutdown_rx();
    let Connected { serializer, params, assigns, permit, .. } = c;
    METRICS.connections_total.inc();
    let params = SocketParams { conn_id, serializer, transport: Transport::WebSocket, assigns, params, outbox };
    tokio::spawn(serve(on_upgrade, permit, endpoint, params, limits, shutdown));

    let mut resp = empty(StatusCode::SWITCHING_PROTOCOLS);
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert("sec-websocket-accept", HeaderValue::from_str(&crate::protocol::ws::accept_key(&key)).expect("base64 is a header value"));
    if let Some(p) = chosen_protocol {
        if let Ok(v) = HeaderValue::from_str(&p) {
            h.insert("sec-websocket-protocol", v);
        }
    }
    resp
}

/// Waits for hyper to hand over the upgraded stream, starts the socket, then spawns the
/// connection's reader ([`run`]) as a task of its own and ends: what an idle connection keeps
/// is the reader's future alone (awaited here, it would be stored beside this one's state,
/// ~3.4 KB in all instead of ~1.2 KB).
async fn serve(
    on_upgrade: hyper::upgrade::OnUpgrade,
    permit: Permit,
    endpoint: Arc<Endpoint>,
    params: SocketParams,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) {
    let Ok(upgraded) = on_upgrade.await else { return };
    // Plain TCP: the reader waits for readiness and holds no buffer while idle. TLS: the
    // stream is split and read with a buffer (rustls keeps its own anyway).
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            let (rd, wr) = parts.io.into_inner().into_split();
            // What the client sent past the request head, copied out of hyper's read buffer
            // (a view into it would keep the whole 8 KiB buffer for the connection's life).
            let leftover = Bytes::copy_from_slice(&parts.read_buf);
            drop(parts.read_buf);
            let socket = Socket::start(endpoint, params).await;
            tokio::spawn(run(rd, wr, leftover, socket, &limits, shutdown, Some(permit)));
        }
        Err(upgraded) => match upgraded.downcast::<TokioIo<tokio_rustls::server::TlsStream<TcpStream>>>() {
            Ok(parts) => {
                let (rd, wr) = tokio::io::split(parts.io.into_inner());
                let leftover = Bytes::copy_from_slice(&parts.read_buf);
                drop(parts.read_buf);
                let socket = Socket::start(endpoint, params).await;
                tokio::spawn(run(rd, wr, leftover, socket, &limits, shutdown, Some(permit)));
            }
            Err(_) => tracing::error!("upgraded connection is neither TCP nor TLS over TCP"),
        },
    }
}

/// A refused connect as WebSocket answers it: 403 empty, the app's status, 400 or 503.
fn refused(r: Refused) -> Response<Body> {
    match r {
        Refused::Forbidden => empty(StatusCode::FORBIDDEN),
        Refused::Status(code, body) => text(StatusCode::from_u16(code).unwrap_or(StatusCode::FORBIDDEN), &body),
        Refused::BadRequest(msg) => text(StatusCode::BAD_REQUEST, &msg),
        Refused::AtCapacity => text(StatusCode::SERVICE_UNAVAILABLE, &Refused::AtCapacity.to_string()),
    }
}

/// How the reader takes bytes from its half of the connection.
pub trait ReadChunk: AsyncRead + Unpin + Send + 'static {
    /// Reads what is there into `buf` (0 = end of stream), reserving `chunk` bytes when short.
    fn read_chunk<'a>(&'a mut self, buf: &'a mut BytesMut, chunk: usize) -> impl std::future::Future<Output = std::io::Result<usize>> + Send + 'a;
}

/// Plain TCP: a read with nothing buffered goes through the stack, so an idle connection
/// holds no read buffer. A `poll_fn` rather than an `async` wait for readiness: the reader's
/// future holds the wait for its whole idle life (224 bytes as `readable()` + a read, ~40 as
/// this).
impl ReadChunk for OwnedReadHalf {
    fn read_chunk<'a>(&'a mut self, buf: &'a mut BytesMut, chunk: usize) -> impl std::future::Future<Output = std::io::Result<usize>> + Send + 'a {
        std::future::poll_fn(move |cx| poll_read_chunk(std::pin::Pin::new(&mut *self), cx, buf, chunk))
    }
}

/// The most bytes read through the stack when nothing is buffered.
const STACK_READ: usize = 4096;

/// One read. With nothing buffered it reads through the stack and allocates only what
/// arrived: tokio reports a socket readable until a read would block, so after every message
/// the reader wakes once more to find nothing, and a buffer reserved for that read would stay
/// with the idle connection (4 KiB each). The stack array lives in this call only, never in
/// the reader's future. With a message partly buffered, it reads into the buffer.
fn poll_read_chunk(
    rd: std::pin::Pin<&mut OwnedReadHalf>,
    cx: &mut std::task::Context<'_>,
    buf: &mut BytesMut,
    chunk: usize,
) -> std::task::Poll<std::io::Result<usize>> {
    use std::task::Poll;
    use tokio::io::ReadBuf;
    let chunk = chunk.max(1);
    if buf.is_empty() {
        let mut scratch = [0u8; STACK_READ];
        let mut rb = ReadBuf::new(&mut scratch[..chunk.min(STACK_READ)]);
        return match rd.poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                buf.extend_from_slice(rb.filled());
                Poll::Ready(Ok(rb.filled().len()))
            }
            other => other.map_ok(|()| 0),
        };
    }
    // Into the buffer's spare room (at least `chunk`, at most 64 KiB: the room is zeroed first).
    let len = buf.len();
    let room = (buf.capacity() - len).clamp(chunk, chunk.max(64 * 1024));
    buf.resize(len + room, 0);
    let mut rb = ReadBuf::new(&mut buf[len..]);
    let r = rd.poll_read(cx, &mut rb).map_ok(|()| rb.filled().len());
    let n = match &r {
        Poll::Ready(Ok(n)) => *n,
        _ => 0,
    };
    buf.truncate(len + n);
    r
}

/// TLS (or any split stream): an ordinary buffered read.
impl<S: AsyncRead + AsyncWrite + Send + 'static> ReadChunk for ReadHalf<S> {
    async fn read_chunk(&mut self, buf: &mut BytesMut, chunk: usize) -> std::io::Result<usize> {
        if buf.capacity() - buf.len() < chunk / 2 {
            buf.reserve(chunk);
        }
        self.read_buf(buf).await
    }
}

/// What the reader needs of [`Limits`] (the whole struct would sit in every reader's future).
#[derive(Clone, Copy)]
struct ReaderLimits {
    read_chunk: usize,
    idle: Duration,
}

/// Runs a connection until it closes. `leftover` holds bytes read past the HTTP request;
/// `place` (the connection's place in the capacity pool) is given back when it ends.
pub fn run<R: ReadChunk, W: AsyncWrite + Unpin + Send + 'static>(
    rd: R,
    wr: W,
    leftover: Bytes,
    socket: Socket,
    limits: &Limits,
    shutdown: watch::Receiver<bool>,
    place: Option<Permit>,
) -> impl std::future::Future<Output = ()> + Send {
    let outbox = socket.info().outbox.clone();
    let writer = tokio::spawn(write_loop(wr, outbox, limits.iov_batch.min(IOV_MAX)));
    let mut decoder = Decoder::new(limits.max_frame_size);
    decoder.buffer().extend_from_slice(&leftover);
    let pending_input = !leftover.is_empty();
    drop(leftover);
    let rl = ReaderLimits { read_chunk: limits.read_chunk, idle: limits.idle_timeout() };
    read_loop(rd, decoder, pending_input, socket, writer, rl, shutdown, place)
}

#[allow(clippy::too_many_arguments)]
async fn read_loop<R: ReadChunk>(
    mut rd: R,
    mut decoder: Decoder,
    mut pending_input: bool,
    mut socket: Socket,
    mut writer: tokio::task::JoinHandle<()>,
    limits: ReaderLimits,
    mut shutdown: watch::Receiver<bool>,
    place: Option<Permit>,
) {
    let _place = place;
    let outbox = socket.info().outbox.clone();
    let serializer = socket.info().serializer;
    let idle = limits.idle;
    let mut deadline = Instant::now() + idle;
    let mut writer_ended = false;

    let ending = 'conn: loop {
        if pending_input {
            pending_input = false;
            loop {
                match decoder.next() {
                    Ok(None) => break,
                    Ok(Some(ev)) => {
                        deadline = Instant::now() + idle;
                        let decoded = match ev {
                            WsEvent::Text(b) => decode_text(serializer, &b),
                            WsEvent::Binary(b) => decode_binary(serializer, &b),
                            WsEvent::Ping(data) => {
                                let _ = outbox.push(Frame::from_body(Opcode::Pong, &data));
                                continue;
                            }
                            WsEvent::Pong => continue,
                            WsEvent::Close(code, _) => {
                                // Echo a valid code, 1000 for none, 1002 for an invalid one.
                                outbox.close_with(Frame::close_for(CloseReason::answer_to(code)), true);
                                break 'conn Ending::Gone;
                            }
                        };
                        match decoded {
                            // Boxed: handling a message (a join, a push to a channel) is a large
                            // future that an idle connection must not carry.
                            Ok(msg) => Box::pin(socket.handle(msg)).await,
                            Err(_) => {
                                METRICS.decode_errors.inc();
                                break 'conn Ending::Close(CloseReason::Crash, crashed());
                            }
                        }
                    }
                    Err(e) => break 'conn Ending::Close(e.close_reason(), crashed()),
                }
            }
            decoder.release_if_idle();
        }
        tokio::select! {
            r = rd.read_chunk(decoder.buffer(), limits.read_chunk) => {
                match r {
                    Ok(0) | Err(_) => break Ending::Gone,
                    Ok(_) => pending_input = true,
                }
            }
            ctl = socket.next_ctl() => {
                if let Some(ctl) = ctl {
                    if socket.handle_ctl(ctl) {
                        break Ending::Close(CloseReason::Disconnect, StopReason::Shutdown(ShutdownReason::Disconnected));
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                break Ending::Close(CloseReason::IdleTimeout, StopReason::Shutdown(ShutdownReason::Closed));
            }
            _ = shutdown.changed() => {
                break Ending::Close(CloseReason::Restart, StopReason::Shutdown(ShutdownReason::Draining));
            }
            _ = &mut writer => {
                // The writer gave up (slow consumer, write error). (Its task's handle: waiting
                // on it costs the reader nothing, where a wait on a `Notify` was 104 bytes.)
                writer_ended = true;
                break Ending::Gone;
            }
        }
    };
    drop(decoder);
    // Boxed, like message handling: the close is once per connection.
    Box::pin(finish(rd, socket, outbox, (!writer_ended).then_some(writer), ending)).await;
}

/// Closes the connection: the close frame (or none), the channels, then the writer's flush and
/// a linger.
async fn finish<R: ReadChunk>(mut rd: R, socket: Socket, outbox: Arc<Outbox>, writer: Option<tokio::task::JoinHandle<()>>, ending: Ending) {
    let reason = match ending {
        Ending::Close(close, reason) => {
            outbox.close_with(Frame::close_for(close), close.flushes());
            reason
        }
        Ending::Gone => {
            outbox.close();
            StopReason::Shutdown(ShutdownReason::Closed)
        }
    };
    socket.close(reason).await;
    // Give the writer a moment to flush the close frame, then linger: read and discard until
    // the client closes, so that unread input (say, the rest of an oversized message) does not
    // turn our close into a TCP reset that the client sees as 1006 instead of our code.
    if let Some(mut writer) = writer {
        if tokio::time::timeout(Duration::from_secs(2), &mut writer).await.is_err() {
            // A client that does not read would keep the writer (and the socket) forever.
            writer.abort();
            outbox.writer_done();
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let mut scratch = vec![0u8; 16 * 1024];
        loop {
            match rd.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

fn crashed() -> StopReason {
    StopReason::Error("socket crashed".into())
}

/// What the writer took from its outbox and has not written yet.
#[derive(Default)]
struct Taken {
    frames: VecDeque<Frame>,
    /// Bytes written since the last drain, given back to the outbox with the next drain (one
    /// lock per write cycle).
    written: usize,
    /// Bytes of `frames[0]` already written (a partial write).
    offset: usize,
}

async fn write_loop<W: AsyncWrite + Unpin>(mut wr: W, outbox: Arc<Outbox>, batch: usize) {
    let mut taken = Taken::default();
    loop {
        match outbox.drain_after(&mut taken.frames, std::mem::take(&mut taken.written)) {
            Status::Open => {
                // Usually the socket takes everything at once: written in this poll, with no
                // future kept. Otherwise the rest is written by a boxed future: held inline,
                // its state (the wait on the socket, the overflow watch, a timer) would sit in
                // every idle writer (592 bytes in all; 1 allocation per blocked write instead).
                let r = match write_all(&mut wr, &mut taken, &outbox, batch).now_or_never() {
                    Some(r) => r,
                    None => match Box::pin(write_blocked(&mut wr, &mut taken, &outbox, batch)).await {
                        Some(r) => r,
                        None => break,
                    },
                };
                if r.is_err() {
                    break;
                }
            }
            Status::SlowConsumer => {
                taken.frames.clear();
                let close = Frame::close_for(CloseReason::SlowConsumer);
                let _ = Box::pin(tokio::time::timeout(Duration::from_secs(1), wr.write_all(close.wire()))).await;
                break;
            }
            Status::Closed { flush, last } => {
                if !flush {
                    taken.frames.clear();
                    taken.offset = 0;
                }
                if let Some(last) = last {
                    taken.frames.push_back(last);
                }
                let flush = write_all(&mut wr, &mut taken, &outbox, batch);
                let _ = Box::pin(tokio::time::timeout(Duration::from_secs(2), flush)).await;
                break;
            }
        }
        // Everything went out: the writer sleeps without a queue. (The next drain swaps this
        // empty one into the outbox, so an idle connection holds no queue on either side; a
        // busy one allocates one per wake-up, next to a `writev` that costs ~1000x more.)
        if taken.frames.is_empty() && taken.frames.capacity() > 0 {
            taken.frames = VecDeque::new();
        }
        outbox.ready().await;
    }
    // What was taken and not written is released here (and the budget credited).
    taken.frames.clear();
    outbox.close();
    outbox.writer_done();
    let _ = wr.shutdown().await;
}

/// The rest of a write the socket did not take at once. A client that stops reading blocks
/// it; once the outbox overflows meanwhile, the write gets a last second to finish (then the
/// next drain sends 1008), after which `None`: the connection is dropped mid-frame (a client
/// that does not read never sees a close frame anyway).
async fn write_blocked<W: AsyncWrite + Unpin>(wr: &mut W, taken: &mut Taken, outbox: &Outbox, batch: usize) -> Option<std::io::Result<()>> {
    let write = write_all(wr, taken, outbox, batch);
    tokio::pin!(write);
    tokio::select! {
        r = &mut write => Some(r),
        _ = outbox.overflowed() => tokio::time::timeout(Duration::from_secs(1), &mut write).await.ok(),
    }
}

/// Writes every taken frame, up to `batch` per `writev`, handling partial writes (`offset`,
/// kept across a write cancelled or handed to [`write_blocked`]). The bytes written are given
/// back to the outbox after each `writev` that leaves frames behind (a long write to a slow
/// reader shows progress) and once everything went out; `written` holds them in between (and
/// what a cancelled write had written, for the next drain).
///
/// The `IoSlice` array lives on the stack of one `poll`, never in the future's state: held
/// across an `.await` it would cost 8 KiB per connection.
async fn write_all<W: AsyncWrite + Unpin>(wr: &mut W, taken: &mut Taken, outbox: &Outbox, batch: usize) -> std::io::Result<()> {
    let Taken { frames: queue, written, offset } = taken;
    while !queue.is_empty() {
        let n = std::future::poll_fn(|cx| {
            let mut slices: [IoSlice<'_>; IOV_MAX] = [IoSlice::new(&[]); IOV_MAX];
            let mut count = 0;
            for (i, f) in queue.iter().take(batch).enumerate() {
                let bytes = if i == 0 { &f.wire()[*offset..] } else { &f.wire()[..] };
                slices[i] = IoSlice::new(bytes);
                count += 1;
            }
            std::pin::Pin::new(&mut *wr).poll_write_vectored(cx, &slices[..count])
        })
        .await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        METRICS.bytes_out.add(n as u64);
        let frames_before = queue.len();
        let mut n = n;
        let mut released = 0;
        while n > 0 {
            let left = queue[0].wire().len() - *offset;
            if n >= left {
                n -= left;
                *offset = 0;
                released += queue.pop_front().map_or(0, |f| f.len());
            } else {
                *offset += n;
                n = 0;
            }
        }
        METRICS.messages_out.add((frames_before - queue.len()) as u64);
        *written += released;
        if !queue.is_empty() {
            outbox.release(std::mem::take(written));
        }
    }
    // Everything went out: give it back now, before the writer sleeps (an idle outbox must not
    // look like a stalled one to the outbound budget).
    outbox.release(std::mem::take(written));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    /// The per-connection tasks' futures are what an idle connection costs in memory: keep
    /// them small (a stray buffer held across an `.await` shows up here first).
    ///
    /// The sizes are pinned tightly (measured + at most 64 bytes), not under a loose ceiling.
    /// Measured with `cargo test -p broker connection_futures_stay_small -- --nocapture`
    /// (rustc 1.95, x86_64; the same sizes in the test profile and with `--release`). If a
    /// change makes it fail, growing the pin must be a deliberate edit of the constants below,
    /// with the reason in the commit (what the future now holds across an `.await` and why it
    /// must); a shrink should lower them.
    #[tokio::test]
    async fn connection_futures_stay_small() {
        // bytes: measured + 64 (the reader was 2,560 before its message handling and close
        // were boxed and the upgrade step became a task of its own; 1,208 before it read through
        // a `poll_fn` and watched the writer's task handle instead of a `Notify`; the writer was
        // 592 before its blocked writes were boxed)
        const READER_PIN: usize = 912 + 64;
        const WRITER_PIN: usize = 232 + 64;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (socket, outbox) = crate::testing::socket(crate::testing::endpoint(crate::socket::Router::new()), 1).await;
        let (_tx, rx) = watch::channel(false);
        let (srd, swr) = server.into_split();
        let reader = run(srd, swr, Bytes::new(), socket, &Limits::default(), rx, None);
        let (_, wr) = client.into_split();
        let writer = write_loop(wr, outbox, 512);
        let (r, w) = (std::mem::size_of_val(&reader), std::mem::size_of_val(&writer));
        println!("reader future: {r} bytes (pin {READER_PIN}), writer future: {w} bytes (pin {WRITER_PIN})");
        assert!(w <= WRITER_PIN, "writer future is {w} bytes, pinned at {WRITER_PIN}: a growth must be a deliberate edit of the pin, with a reason");
        assert!(r <= READER_PIN, "reader future is {r} bytes, pinned at {READER_PIN}: a growth must be a deliberate edit of the pin, with a reason");
    }
}
