//! `[limits]`: every limit, with its reason, and the part of them sockets and channels apply.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Every limit, with its reason.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest client message in bytes; larger closes the socket with 1009. Phoenix's effective
    /// default (websock_adapter) is 10 000 000 (spec §2.6).
    pub max_frame_size: usize,
    /// Close a socket that sent nothing for this long (inbound-only rule, spec §2.6):
    /// phoenix.js heartbeats every 30 s, so 60 s tolerates one lost heartbeat.
    pub idle_timeout_ms: u64,
    /// `max_channels_per_transport` (spec §2.9).
    pub max_channels: usize,
    /// Outbox bound in frames per connection. At one frame per broadcast, a client may fall
    /// this many broadcasts behind before it is closed as a slow consumer (1008). 4096 covers a
    /// 4 s stall of a topic at 1k msg/s; each queued frame costs 32 bytes of queue plus a
    /// shared (not copied) frame.
    pub outbox_max_frames: usize,
    /// Outbox bound in bytes, counting frames until they are written (frames are shared, so
    /// this bounds what one slow client pins): 16 MiB. It must hold the largest frame the
    /// server can be asked to send, or that frame could never be delivered: at least
    /// `max_frame_size` (a relayed client message) and `presence_max_state_bytes` (a
    /// `presence_state`), plus [`Limits::envelope_bytes`]. A message larger than this is
    /// refused at its sender with an error reply, never fanned out into disconnects.
    pub outbox_max_bytes: usize,
    /// Process-wide budget of queued outbound bytes (all outboxes together; a frame shared by
    /// many queues counts in each): 1 GiB. Per-connection bounds times many connections could
    /// otherwise add up past memory. Past the budget the slowest consumers (those whose
    /// writer has made no progress for longest, at least `outbound_stall_ms`) are closed
    /// first, with 1008, until the total is back under 90 % of it.
    pub outbound_budget_bytes: usize,
    /// A consumer counts as stalled (a candidate for the budget) once its writer has made no
    /// progress for this long while bytes were queued: fast readers of a large legitimate
    /// broadcast are never closed.
    pub outbound_stall_ms: u64,
    /// Connect params (query string) nest at most this deep (`a[b][c]=1` is 3); deeper → 400.
    /// Plug-style nesting in real apps is 2-3 levels.
    pub max_param_depth: usize,
    /// Longest topic a client may join, in bytes (the topic is kept per channel, per
    /// subscription and per presence). Real topics are tens of bytes.
    pub max_topic_bytes: usize,
    /// Longest event name in a client message, in bytes.
    pub max_event_bytes: usize,
    /// Longest `ref` / `join_ref` in a client message, in bytes (phoenix.js sends counters).
    pub max_ref_bytes: usize,
    /// Client messages per second per connection (heartbeats, joins and leaves aside), as a
    /// token bucket of `messages_burst`; beyond it a message gets the error reply
    /// `rate limited`. 0 = unlimited. phoenix.js apps send a few per second.
    pub messages_per_s: u32,
    pub messages_burst: u32,
    /// Joins per second per connection, as a token bucket of `joins_burst`; 0 = unlimited.
    pub joins_per_s: u32,
    pub joins_burst: u32,
    /// Longest presence key (e.g. a user id) in bytes.
    pub presence_max_key_bytes: usize,
    /// Largest presence meta (as JSON) in bytes.
    pub presence_max_meta_bytes: usize,
    /// Largest presence state of one topic (the `presence_state` JSON) in bytes: 8 MiB holds
    /// ~40,000 members with 200-byte metas. A track that would pass it gets an error.
    pub presence_max_state_bytes: usize,
    /// Bytes read from a socket at a time. The read buffer exists only while bytes are being
    /// decoded; an idle connection holds none (tungstenite's default 128 KiB per connection
    /// costs ~138 KB per idle socket).
    pub read_chunk: usize,
    /// Refuse new WebSocket connections (HTTP 503) beyond this many; 0 = the soft fd limit
    /// (raised to the hard limit at start) minus `fd_reserve`.
    pub max_connections: usize,
    /// File descriptors kept free for listening, logging and LongPoll requests when
    /// `max_connections` is derived from the fd limit.
    pub fd_reserve: usize,
    /// listen(2) backlog: connect storms of thousands per second must not see SYN drops
    /// (the kernel caps it at net.core.somaxconn).
    pub listen_backlog: u32,
    /// Pubsub and presence shards; 0 = one per core (see `pubsub` for why).
    pub shards: usize,
    /// Commands queued per pubsub shard before publishers wait (backpressure instead of
    /// unbounded memory): 65,536 covers a burst of broadcasts and subscriptions while a shard
    /// fans out to tens of thousands of subscribers.
    pub pubsub_queue: usize,
    /// Commands queued per presence shard before callers wait: 16,384.
    pub presence_queue: usize,
    /// A channel's mailbox: client messages and intercepted broadcasts a channel may fall
    /// behind by. Client messages beyond it make the connection's reader wait (backpressure);
    /// intercepted broadcasts beyond it close the connection as a slow consumer. 1024.
    pub channel_mailbox: usize,
    /// Frames per `writev` (at most 1024, Linux's IOV_MAX): a write costs ~8 µs here whatever
    /// its size, so batching is the difference between ~150k and millions of frames/s. 512.
    pub iov_batch: usize,
    /// LongPoll `window_ms`: longest hold of a GET, and per-line dispatch limit of a POST.
    pub longpoll_window_ms: u64,
    /// LongPoll body limit in bytes (Phoenix's HTTP body read limit is ~8 MB): larger → 400.
    pub longpoll_max_body: usize,
    /// LongPoll outbox bound in frames (frames wait here between polls).
    pub longpoll_max_frames: usize,
    /// Live LongPoll sessions at most; 0 = the same number as `max_connections`. Sessions hold
    /// no file descriptor, so they have their own pool: a flood of sessions never takes
    /// capacity from WebSocket connections (and vice versa). Beyond it: 503.
    pub longpoll_max_sessions: usize,
    /// New LongPoll sessions per second per client address (a token bucket of
    /// `longpoll_session_burst`): one keep-alive connection cannot mint thousands of sessions.
    /// phoenix.js creates one per page load and per reconnect. 0 = unlimited. Beyond: 429.
    pub longpoll_sessions_per_ip_per_s: u32,
    pub longpoll_session_burst: u32,
    /// A replaced channel gets this long to stop on a duplicate join, then it is aborted.
    pub duplicate_join_grace_ms: u64,
    /// On SIGINT/SIGTERM: how long connections get to close (1012) before exit.
    pub shutdown_grace_ms: u64,
    /// Reading an HTTP request head may take at most this long (slowloris protection).
    pub http_header_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_frame_size: 10_000_000,
            idle_timeout_ms: 60_000,
            max_channels: 100,
            outbox_max_frames: 4096,
            outbox_max_bytes: 16 << 20,
            outbound_budget_bytes: 1 << 30,
            outbound_stall_ms: 1_000,
            max_param_depth: 32,
            max_topic_bytes: 1024,
            max_event_bytes: 1024,
            max_ref_bytes: 256,
            messages_per_s: 1000,
            messages_burst: 2000,
            joins_per_s: 200,
            joins_burst: 500,
            presence_max_key_bytes: 1024,
            presence_max_meta_bytes: 16 * 1024,
            presence_max_state_bytes: 8 << 20,
            read_chunk: 4096,
            max_connections: 0,
            fd_reserve: 100,
            listen_backlog: 4096,
            shards: 0,
            pubsub_queue: 65_536,
            presence_queue: 16_384,
            channel_mailbox: 1024,
            iov_batch: 512,
            longpoll_window_ms: 10_000,
            longpoll_max_body: 8_000_000,
            longpoll_max_frames: 4096,
            longpoll_max_sessions: 0,
            longpoll_sessions_per_ip_per_s: 10,
            longpoll_session_burst: 100,
            duplicate_join_grace_ms: 5_000,
            shutdown_grace_ms: 10_000,
            http_header_timeout_ms: 10_000,
        }
    }
}

impl Limits {
    /// Bytes a frame adds around a payload: the WebSocket header, the topic, the event, two
    /// refs and the JSON punctuation.
    pub fn envelope_bytes(&self) -> usize {
        self.max_topic_bytes + self.max_event_bytes + 2 * self.max_ref_bytes + 256
    }

    /// The limits must be positive and consistent: an outbox must be able to hold any frame
    /// the server may have to send (see `outbox_max_bytes`).
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("max_frame_size", self.max_frame_size),
            ("outbox_max_frames", self.outbox_max_frames),
            ("outbox_max_bytes", self.outbox_max_bytes),
            ("outbound_budget_bytes", self.outbound_budget_bytes),
            ("max_param_depth", self.max_param_depth),
            ("max_topic_bytes", self.max_topic_bytes),
            ("max_event_bytes", self.max_event_bytes),
            ("max_ref_bytes", self.max_ref_bytes),
            ("presence_max_key_bytes", self.presence_max_key_bytes),
            ("presence_max_meta_bytes", self.presence_max_meta_bytes),
            ("presence_max_state_bytes", self.presence_max_state_bytes),
            ("longpoll_max_frames", self.longpoll_max_frames),
            ("pubsub_queue", self.pubsub_queue),
            ("presence_queue", self.presence_queue),
            ("channel_mailbox", self.channel_mailbox),
            ("iov_batch", self.iov_batch),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("limits.{name} must be positive"));
        }
        let need = self.max_frame_size.max(self.presence_max_state_bytes) + self.envelope_bytes();
        if self.outbox_max_bytes < need {
            return Err(format!(
                "limits.outbox_max_bytes ({}) must be at least max(max_frame_size, presence_max_state_bytes) + {} bytes of envelope = {need}: a frame larger than an outbox could never be delivered",
                self.outbox_max_bytes,
                self.envelope_bytes()
            ));
        }
        if self.iov_batch > 1024 {
            return Err("limits.iov_batch must be at most 1024 (IOV_MAX)".into());
        }
        if self.outbound_budget_bytes < self.outbox_max_bytes {
            return Err("limits.outbound_budget_bytes must be at least limits.outbox_max_bytes".into());
        }
        Ok(())
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
    pub fn longpoll_window(&self) -> Duration {
        Duration::from_millis(self.longpoll_window_ms)
    }
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 {
            self.shards
        } else {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        }
    }
}

/// The limits sockets and channels apply, taken from [`Limits`] (whose fields carry the
/// reasons).
#[derive(Clone, Debug)]
pub struct SocketLimits {
    /// `max_channels_per_transport` (spec §2.9).
    pub max_channels: usize,
    /// Grace for a replaced channel to stop on a duplicate join before it is aborted (§4.7).
    pub duplicate_join_grace: Duration,
    /// Longest topic a client may join.
    pub max_topic_bytes: usize,
    /// Longest event in a client message.
    pub max_event_bytes: usize,
    /// Longest `ref` / `join_ref` in a client message.
    pub max_ref_bytes: usize,
    /// Largest frame an outbox accepts: a broadcast or push larger than this is refused at its
    /// sender.
    pub max_outbound_frame: usize,
    /// A channel's mailbox bound.
    pub mailbox: usize,
    /// Per-connection rates (see [`Limits::messages_per_s`]).
    pub messages_per_s: u32,
    pub messages_burst: u32,
    pub joins_per_s: u32,
    pub joins_burst: u32,
}

impl SocketLimits {
    pub fn messages_rate(&self) -> crate::rate::Rate {
        crate::rate::Rate { per_s: self.messages_per_s, burst: self.messages_burst }
    }

    pub fn joins_rate(&self) -> crate::rate::Rate {
        crate::rate::Rate { per_s: self.joins_per_s, burst: self.joins_burst }
    }

    pub fn from_config(l: &Limits) -> SocketLimits {
        SocketLimits {
            max_channels: l.max_channels,
            duplicate_join_grace: Duration::from_millis(l.duplicate_join_grace_ms),
            max_topic_bytes: l.max_topic_bytes,
            max_event_bytes: l.max_event_bytes,
            max_ref_bytes: l.max_ref_bytes,
            max_outbound_frame: l.outbox_max_bytes,
            mailbox: l.channel_mailbox,
            messages_per_s: l.messages_per_s,
            messages_burst: l.messages_burst,
            joins_per_s: l.joins_per_s,
            joins_burst: l.joins_burst,
        }
    }
}

impl Default for SocketLimits {
    fn default() -> SocketLimits {
        SocketLimits::from_config(&Limits::default())
    }
}
