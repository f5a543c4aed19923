//! # broker: a Phoenix Channels + Presence server in Rust
//!
//! The unmodified `phoenix` npm client connects, joins, pushes and receives exactly as with a
//! Phoenix server (spec: `docs/PROTOCOL.md`). Fan-out is the product: a
//! broadcast is encoded once per serializer into one shared frame, and each subscriber costs a
//! refcount and a queue push.
//!
//! ## Map
//!
//! ```text
//!             ┌────────── server (accept, EMFILE backoff, drain) ──────────┐
//!  TCP ──────►│ http: /socket/websocket ─► handshake ─► transport (reader) │
//!             │       /socket/longpoll  ─► longpoll (session task)         │
//!             └──────────────────────────────┬─────────────────────────────┘
//!                                            ▼
//!                           socket: heartbeat, join, leave, routing
//!                                            │ spawns / feeds
//!                                            ▼
//!            channel task (app's Channel: join, handle_in, handle_out, …)
//!                   │ broadcast                    │ push / reply
//!                   ▼                              ▼
//!    pubsub shards (one task per core) ──frame──► outbox ──► transport (writer, writev)
//!                   ▲
//!    presence shards (tracker CRDT) ── presence_diff
//! ```
//!
//! **Join path.** [`http`] validates the upgrade (origin, auth token, subprotocols, `vsn`,
//! [`socket::SocketHandler::connect`]) and answers 101; [`transport`] reads frames
//! ([`ws::Decoder`]) and decodes messages ([`serializer`]); [`socket::Socket::handle`] answers
//! heartbeats itself and, for `phx_join`, routes the topic ([`socket::Router`]) and spawns a
//! channel task ([`channel`]). The task runs the app's `join`; on ok it subscribes to the topic
//! in its connection's [`pubsub`] shard *carrying the join reply*, so the reply is queued before
//! any broadcast can reach this subscriber; then `after_join` (track presence, push
//! `presence_state`).
//!
//! **Publish path.** [`channel::ChannelContext::broadcast`] (or
//! [`server::BrokerHandle::broadcast`] from outside) → [`pubsub::PubSub::broadcast`] sends one
//! `Arc<Broadcast>` to every shard → each shard walks its subscribers of the topic and pushes
//! the frame for the subscriber's serializer ([`pubsub::Broadcast::frame`], encoded once, on
//! first use) onto the subscriber's [`outbox::Outbox`] → the connection's writer
//! ([`transport`]) takes everything queued and writes it with one `writev`. Events a channel
//! intercepts go to its task (`handle_out`) instead. A channel does not wait for its broadcast's
//! fan-out: until its shard has processed it ([`pubsub::Ticket`]), the channel's own replies
//! and pushes are queued behind it in that shard, so its socket still sees the broadcast first
//! (spec §5.5). A multi-node bus plugs in at `PubSub::broadcast` (publish remotely, dispatch
//! locally).
//!
//! **Presence path.** [`presence::Presence`] shards topics over tasks that own a
//! [`tracker`] CRDT state each; a track/update/untrack yields a diff that is broadcast as
//! `presence_diff` through the same publish path (optionally coalesced per topic over a
//! window).
//!
//! **Limits** live in [`config::Limits`], each with its reason. Every queue is bounded:
//! outboxes (overflow → close 1008, counted), channel mailboxes, shard command queues
//! (backpressure on publishers).

pub mod channel;
pub mod config;
pub mod http;
pub mod longpoll;
pub mod metrics;
pub mod origin;
pub mod outbox;
pub mod params;
pub mod presence;
pub mod pubsub;
pub mod relay;
pub mod serializer;
pub mod server;
pub mod socket;
pub mod transport;
pub mod ws;

pub use channel::{Channel, ChannelContext, Continue, Info, Join, Reply, SocketRef, StopReason};
pub use config::Config;
pub use serializer::{Payload, Serializer};
pub use server::{BrokerHandle, Builder, Server};
pub use socket::{ConnectError, ConnectInfo, Router, SocketHandler};
pub use transport::close_code;

/// Close code for a client whose outbox overflowed.
pub const CLOSE_SLOW_CONSUMER: u16 = transport::close_code::SLOW_CONSUMER;
