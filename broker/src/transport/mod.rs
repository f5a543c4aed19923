//! Transports: how sockets reach the server. HTTP routing ([`http`]), the one connect step both
//! transports share ([`connect`]: origin, `vsn`, params, the app's `connect`, a capacity
//! permit), the WebSocket upgrade and connection ([`websocket`]), LongPoll ([`longpoll`], its
//! sessions in [`sessions`]).
//!
//! Dependencies point one way: `http` → `websocket`, `longpoll` → `connect` → `state`,
//! `sessions` → the socket layer. Nothing below the transports depends on them.

pub mod capacity;
pub mod connect;
pub mod http;
pub mod longpoll;
pub mod sessions;
pub mod state;
pub mod tls;
pub mod websocket;

pub use capacity::{Capacity, Permit};
pub use state::ServerState;
