//! The WebSocket transport: after the 101, one connection = two tasks.
//!
//! * The **reader** owns the [`Socket`]: it reads bytes, decodes frames ([`crate::ws`]) and
//!   messages ([`crate::serializer`]), hands them to the socket, and watches the idle timeout,
//!   the socket's control messages (`disconnect`) and server shutdown (drain).
//! * The **writer** drains the [`Outbox`] and writes *everything queued* with vectored writes
//!   (one `writev` for up to [`IOV_BATCH`] frames: a write costs ~8 µs here whatever its size, so
//!   batching is the difference between ~150k and millions of frames/s). It is never blocked by
//!   the reader, so slow app code cannot stall deliveries.
//!
//! Closing: whoever decides to close queues a close frame with [`Outbox::close_with`]; the
//! writer flushes what is queued (or drops it, for a slow consumer), writes the close frame and
//! shuts the write side down.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::channel::StopReason;
use crate::config::Limits;
use crate::metrics::METRICS;
use crate::outbox::{Outbox, Status};
use crate::serializer::{decode_binary, decode_text, Frame, Opcode};
use crate::socket::Socket;
use crate::ws::{Decoder, WsEvent};

/// Frames per `writev` (Linux IOV_MAX is 1024).
pub const IOV_BATCH: usize = 512;

/// Close codes the server sends (spec §2.6, gotcha 1: never 1000 when the client should come
/// back).
pub mod close_code {
    /// `"disconnect"` broadcast to the socket id; idle timeout.
    pub const GOING_AWAY: u16 = 1001;
    /// Outbox overflow: the client does not read fast enough.
    pub const SLOW_CONSUMER: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    /// Undecodable frame (Phoenix's socket crash).
    pub const INTERNAL_ERROR: u16 = 1011;
    /// Drain on shutdown.
    pub const RESTART: u16 = 1012;
}

/// Why the reader stopped.
enum Ending {
    /// We close: code, reason, the reason channels get, and whether queued frames are flushed.
    Close(u16, &'static str, StopReason),
    /// The client closed (close frame or EOF) or the socket failed.
    Gone,
}

/// Runs a connection until it closes. `leftover` holds bytes read past the HTTP request.
pub async fn run(stream: TcpStream, leftover: Bytes, mut socket: Socket, limits: Limits, mut shutdown: watch::Receiver<bool>) {
    let outbox = socket.info().outbox.clone();
    let serializer = socket.info().serializer;
    let (rd, wr) = stream.into_split();
    let writer = tokio::spawn(write_loop(wr, outbox.clone()));
    let mut decoder = Decoder::new(limits.max_frame_size);
    decoder.buffer().extend_from_slice(&leftover);
    let idle = limits.idle_timeout();
    let mut deadline = Instant::now() + idle;
    let mut pending_input = !leftover.is_empty();

    let ending = 'conn: loop {
        if pending_input {
            pending_input = false;
            loop {
                match decoder.next() {
                    Ok(None) => break,
                    Ok(Some(ev)) => {
                        deadline = Instant::now() + idle;
                        match ev {
                            WsEvent::Text(b) => match decode_text(serializer, &b) {
                                Ok(msg) => socket.handle(msg).await,
                                Err(_) => {
                                    METRICS.decode_errors.inc();
                                    break 'conn Ending::Close(close_code::INTERNAL_ERROR, "undecodable frame", crashed());
                                }
                            },
                            WsEvent::Binary(b) => match decode_binary(serializer, &b) {
                                Ok(msg) => socket.handle(msg).await,
                                Err(_) => {
                                    METRICS.decode_errors.inc();
                                    break 'conn Ending::Close(close_code::INTERNAL_ERROR, "undecodable frame", crashed());
                                }
                            },
                            WsEvent::Ping(data) => {
                                let _ = outbox.push(Frame::from_body(Opcode::Pong, &data));
                            }
                            WsEvent::Pong => {}
                            WsEvent::Close(code, _) => {
                                // No code: answer 1000; a valid one: echo it (spec §2.6); an
                                // invalid one (999, 1005, 5000, …): 1002, as RFC 6455 and
                                // Bandit do.
                                let answer = match code {
                                    None => 1000,
                                    Some(c) if crate::ws::valid_close_code(c) => c,
                                    Some(_) => 1002,
                                };
                                outbox.close_with(Frame::close(answer, ""), true);
                                break 'conn Ending::Gone;
                            }
                        }
                    }
                    Err(e) => {
                        let reason = if e.close_code() == close_code::TOO_BIG { "message too big" } else { "protocol error" };
                        break 'conn Ending::Close(e.close_code(), reason, crashed());
                    }
                }
            }
            decoder.release_if_idle();
        }
        tokio::select! {
            r = rd.readable() => {
                if r.is_err() {
                    break Ending::Gone;
                }
                let buf = decoder.buffer();
                if buf.capacity() - buf.len() < limits.read_chunk / 2 {
                    buf.reserve(limits.read_chunk);
                }
                match rd.try_read_buf(buf) {
                    Ok(0) => break Ending::Gone,
                    Ok(_) => pending_input = true,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => break Ending::Gone,
                }
            }
            ctl = socket.next_ctl() => {
                if let Some(ctl) = ctl {
                    if socket.handle_ctl(ctl) {
                        break Ending::Close(close_code::GOING_AWAY, "disconnect", StopReason::Shutdown("disconnected".into()));
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                break Ending::Close(close_code::GOING_AWAY, "idle timeout", StopReason::Shutdown("closed".into()));
            }
            _ = shutdown.changed() => {
                break Ending::Close(close_code::RESTART, "server restart", StopReason::Shutdown("draining".into()));
            }
            _ = outbox.ready_closed() => {
                // The writer gave up (slow consumer, write error).
                break Ending::Gone;
            }
        }
    };

    let reason = match ending {
        Ending::Close(code, text, reason) => {
            outbox.close_with(Frame::close(code, text), code != close_code::INTERNAL_ERROR);
            reason
        }
        Ending::Gone => {
            outbox.close();
            StopReason::Shutdown("closed".into())
        }
    };
    socket.close(reason).await;
    // Give the writer a moment to flush the close frame, then linger: read and discard until
    // the client closes, so that unread input (say, the rest of an oversized message) does not
    // turn our close into a TCP reset that the client sees as 1006 instead of our code.
    let mut writer = writer;
    if tokio::time::timeout(Duration::from_secs(2), &mut writer).await.is_err() {
        // A client that does not read would keep the writer (and the socket) forever.
        writer.abort();
        outbox.writer_done();
    }
    let mut rd = rd;
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

async fn write_loop(mut wr: OwnedWriteHalf, outbox: Arc<Outbox>) {
    let mut queue: VecDeque<Frame> = VecDeque::new();
    loop {
        match outbox.drain_into(&mut queue) {
            Status::Open => {
                // A client that stops reading blocks the write. Once its outbox overflows
                // meanwhile, the write gets a last second to finish (then the next drain sends
                // 1008); after that the connection is dropped mid-frame: a client that does
                // not read never sees a close frame anyway.
                let write = write_all(&mut wr, &mut queue, &outbox);
                tokio::pin!(write);
                let r = tokio::select! {
                    r = &mut write => r,
                    _ = outbox.overflowed() => match tokio::time::timeout(Duration::from_secs(1), &mut write).await {
                        Ok(r) => r,
                        Err(_) => break,
                    },
                };
                if r.is_err() {
                    break;
                }
            }
            Status::SlowConsumer => {
                queue.clear();
                let close = Frame::close(close_code::SLOW_CONSUMER, "slow consumer");
                let _ = tokio::time::timeout(Duration::from_secs(1), wr.write_all(close.wire())).await;
                break;
            }
            Status::Closed { flush, last } => {
                if !flush {
                    queue.clear();
                }
                if let Some(last) = last {
                    queue.push_back(last);
                }
                let _ = tokio::time::timeout(Duration::from_secs(2), write_all(&mut wr, &mut queue, &outbox)).await;
                break;
            }
        }
        if queue.capacity() > 4096 {
            queue = VecDeque::new();
        }
        outbox.ready().await;
    }
    // What was taken and not written is released here (and the budget credited).
    queue.clear();
    outbox.close();
    outbox.writer_done();
    let _ = wr.shutdown().await;
}

/// Writes every queued frame, up to [`IOV_BATCH`] per `writev`, handling partial writes, and
/// tells the outbox after each write how many of its bytes went out (progress).
///
/// The `IoSlice` array lives on the stack of one `poll`, never in the future's state: held
/// across an `.await` it would cost 8 KiB per connection.
async fn write_all(wr: &mut OwnedWriteHalf, queue: &mut VecDeque<Frame>, outbox: &Outbox) -> std::io::Result<()> {
    let mut offset = 0; // bytes of queue[0] already written
    while !queue.is_empty() {
        let n = std::future::poll_fn(|cx| {
            let mut slices: [IoSlice<'_>; IOV_BATCH] = [IoSlice::new(&[]); IOV_BATCH];
            let mut count = 0;
            for (i, f) in queue.iter().take(IOV_BATCH).enumerate() {
                let bytes = if i == 0 { &f.wire()[offset..] } else { &f.wire()[..] };
                slices[i] = IoSlice::new(bytes);
                count += 1;
            }
            std::pin::Pin::new(&mut *wr).poll_write_vectored(cx, &slices[..count])
        })
        .await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let mut n = n;
        let mut released = 0;
        while n > 0 {
            let left = queue[0].wire().len() - offset;
            if n >= left {
                n -= left;
                offset = 0;
                released += queue.pop_front().map_or(0, |f| f.len());
            } else {
                offset += n;
                n = 0;
            }
        }
        outbox.release(released);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::OutboxLimits;
    use crate::presence::Presence;
    use crate::pubsub::PubSub;
    use crate::serializer::Serializer;
    use crate::socket::{AllowAll, Endpoint, Router, SocketLimits, SocketParams, Transport};

    /// The per-connection tasks' futures are what an idle connection costs in memory: keep
    /// them small (a stray buffer held across an `.await` shows up here first).
    #[tokio::test]
    async fn connection_futures_stay_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let pubsub = PubSub::start(1);
        let endpoint = Arc::new(Endpoint {
            router: Router::new(),
            handler: Arc::new(AllowAll),
            presence: Presence::start(pubsub.clone(), 1, 0),
            pubsub,
            limits: SocketLimits::default(),
        });
        let outbox = Arc::new(Outbox::new(OutboxLimits { max_frames: 10, max_bytes: 1000 }));
        let socket = Socket::start(
            endpoint,
            SocketParams {
                conn_id: 1,
                serializer: Serializer::V2,
                transport: Transport::WebSocket,
                assigns: Default::default(),
                params: serde_json::Value::Null,
                outbox: outbox.clone(),
            },
        )
        .await;
        let (_tx, rx) = watch::channel(false);
        let reader = run(server, Bytes::new(), socket, Limits::default(), rx);
        let (_, wr) = client.into_split();
        let writer = write_loop(wr, outbox);
        let (r, w) = (std::mem::size_of_val(&reader), std::mem::size_of_val(&writer));
        println!("reader future: {r} bytes, writer future: {w} bytes");
        assert!(w < 1024, "writer future is {w} bytes");
        assert!(r < 4096, "reader future is {r} bytes");
    }
}
