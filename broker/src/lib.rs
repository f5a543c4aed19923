//! # broker: a Phoenix Channels + Presence server in Rust
//!
//! The unmodified `phoenix` npm client connects, joins, pushes and receives exactly as with a
//! Phoenix server (spec: `docs/PROTOCOL.md`). Fan-out is the product: a
//! broadcast is encoded once per serializer into one shared frame, and each subscriber costs a
//! refcount and a queue push.
//!
//! ## Layers
//!
//! Dependencies point one way, top to bottom (`scripts/module-cycles.py` checks that no two
//! files import each other, directly or around a loop):
//!
//! | folder / file | job |
//! |---|---|
//! | [`server`] | `Builder`, `Server` (accept loop, EMFILE backoff, drain), `BrokerHandle` |
//! | [`transport`] | HTTP routing, the one connect step (origin, `vsn`, params, `connect`, a capacity permit), WebSocket upgrade + reader/writer (plain TCP or TLS), LongPoll, TLS |
//! | [`standalone`] | the binary for apps in any language: verified identity (Phoenix.Token, JWT), webhooks, per-topic policies, the relay channel, the HTTP API |
//! | [`socket`] | a connection's decisions: heartbeat, join, duplicate join, leave, routing; `SocketHandler`, `Router` |
//! | [`channel`] | the app-facing `Channel` API, `ChannelContext`, the channel server task |
//! | [`cluster`] | many nodes as one endpoint over Redis: a topic's broadcasts on its own channel (subscribed while the node has subscribers), presence replication messages |
//! | [`presence`] | presence shards over the [`tracker`] CRDT, snapshots for joiners; replication to other nodes |
//! | [`pubsub`] | topic → subscribers, sharded by connection; the fan-out |
//! | [`outbox`] | a connection's bounded queue; the process-wide outbound budget |
//! | [`protocol`] | pure wire protocol: messages, serializers, frames, WebSocket framing, params, close reasons, topics, origins |
//! | [`config`], [`metrics`], [`rate`] | every limit with its reason; Prometheus metrics; token buckets |
//! | [`mount`], [`token`], [`channel_test`] | for apps on the library: the app's own HTTP routes on the socket's port; Phoenix.Token sign/verify; Phoenix's `ChannelTest` without sockets |
//!
//! ## Map
//!
//! ```text
//!             ┌────────── server (accept, EMFILE backoff, drain) ─────────────┐
//!  TCP ──────►│ transport::http ─► websocket::upgrade ─► websocket (reader)   │
//!             │      │             └── connect (origin, vsn, params,        │
//!             │      └─► longpoll ───┘   app connect, capacity permit)      │
//!             └──────────────────────────────┬────────────────────────────────┘
//!                                            ▼
//!                       socket: heartbeat, join, duplicate join, leave, routing
//!                                            │ spawns / feeds
//!                                            ▼
//!            channel::server task (app's Channel: join, handle_in, handle_out, …)
//!                   │ broadcast                    │ push / reply
//!                   ▼                              ▼
//!    pubsub shards (one task per core) ──frame──► outbox ──► websocket (writer, writev)
//!          ▲        ▲  │ publish once                    └──► longpoll GET
//!          │        │  ▼
//!          │   cluster bus ◄──► Redis (a channel per topic; presence channels) ◄──► other nodes
//!          │        ▲ replication (deltas, heartbeats, transfers)
//!    presence shards (tracker CRDT) ── presence_diff
//! ```
//!
//! **Join path.** [`transport::websocket::upgrade`] (or [`transport::longpoll`]) runs the
//! connect step ([`transport::connect`]: origin, auth token, `vsn`, params, a place in the
//! capacity pool held for the connection's life, [`socket::SocketHandler::connect`]) and
//! answers 101; the reader ([`transport::websocket`]) decodes frames
//! ([`protocol::ws::Decoder`]) and messages ([`protocol::serializer`]);
//! [`socket::Socket::handle`] answers heartbeats itself and, for `phx_join`, routes the topic
//! ([`socket::Router`]) and spawns a channel task ([`channel::server`]); a duplicate join hands
//! the old incarnation to the new task, so the socket never waits. The task runs the app's
//! `join`; on ok it subscribes to the topic in its connection's [`pubsub`] shard *carrying the
//! join reply*, so the reply is queued before any broadcast can reach this subscriber; then
//! `after_join` (track presence, push `presence_state`).
//!
//! **Publish path.** [`channel::ChannelContext::broadcast`] (or
//! [`server::BrokerHandle::broadcast`] from outside) → [`pubsub::PubSub::broadcast`] sends one
//! `Arc<Broadcast>` to every shard → each shard walks its subscribers of the topic and pushes
//! the frame for the subscriber's serializer ([`pubsub::Broadcast::frame`], encoded once, on
//! first use) onto the subscriber's [`outbox::Outbox`] → the connection's writer takes
//! everything queued and writes it with one `writev`. The encoded frame's bytes hold the
//! broadcast's fan-out clock: when its last copy is dropped after the last write, the time since
//! the broadcast's receipt goes to `phx_broker_fanout_completion_seconds`. Events a channel intercepts go to its
//! task (`handle_out`) instead. A channel does not wait for its broadcast's fan-out: until its
//! shard has processed it ([`pubsub::Ticket`]), the channel's own replies and pushes are queued
//! behind it in that shard, so its socket still sees the broadcast first (spec §5.5). A message
//! larger than any outbox is refused here, at its sender. In a cluster, `PubSub::broadcast`
//! also hands the message to the [`pubsub::Bus`] ([`cluster`]): one `PUBLISH` on the topic's
//! Redis channel; every other node with subscribers of the topic receives it and dispatches it
//! with `PubSub::local_broadcast`. A topic's first join on a node subscribes the node to that
//! channel before the join reply.
//!
//! **Presence path.** [`presence::Presence`] shards topics over tasks that own a
//! [`tracker`] CRDT state each; a track/update/untrack yields a diff that is broadcast as
//! `presence_diff` through the same publish path (optionally coalesced per topic over a
//! window). Keys, metas and a topic's whole state are bounded. In a cluster each shard is a
//! tracker replica: its deltas go to the other nodes at once
//! ([`presence::replication`]), and each node emits `presence_diff`s from its own replica.
//!
//! **Limits** live in [`config::Limits`], each with its reason. Every queue is bounded:
//! outboxes (overflow → close 1008, counted), all outboxes together (the outbound budget
//! closes the consumers stalled longest), channel mailboxes, shard command queues
//! (backpressure on publishers).

pub mod channel;
pub mod channel_test;
pub mod cluster;
pub mod config;
pub mod metrics;
pub mod mount;
pub mod outbox;
pub mod presence;
pub mod protocol;
pub mod pubsub;
pub mod rate;
pub mod server;
pub mod socket;
pub mod standalone;
pub mod token;
pub mod transport;

#[cfg(test)]
pub(crate) mod testing;

// The types an app meets, at the crate root.
pub use channel::{Channel, ChannelContext, Continue, Info, InfoSender, Join, PushFailed, Reply, ShutdownReason, SocketRef, StopReason};
pub use config::Config;
pub use presence::{Presence, PresenceError};
pub use protocol::{CloseReason, Payload, Serializer, Transport};
pub use server::{BrokerHandle, Builder, Server};
pub use socket::{assigns, ConnectError, ConnectInfo, Router, SocketHandler};
/// Re-exported so an app implements [`Channel`] and [`SocketHandler`] without adding the crate
/// itself: `#[broker::async_trait]`.
pub use async_trait::async_trait;
