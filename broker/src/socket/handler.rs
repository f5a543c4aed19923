//! The app's socket handler (Phoenix's `connect/3` and `id/1`) and what it sees of the request.

use std::net::SocketAddr;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::protocol::Transport;

/// What `connect` sees about the request (Phoenix's `connect_info`, spec §2.5).
#[derive(Clone, Debug)]
pub struct ConnectInfo {
    pub peer: Option<SocketAddr>,
    pub uri: String,
    pub user_agent: Option<String>,
    /// All `x-*` request headers.
    pub x_headers: Vec<(String, String)>,
    /// The `authToken` side channel (spec §2.4), when enabled.
    pub auth_token: Option<String>,
    pub transport: Transport,
}

/// Why `connect` refused a socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectError {
    /// `:error`: HTTP 403 (LongPoll `{"status":403}`).
    Forbidden,
    /// `{:error, reason}` with a custom HTTP status (e.g. 429) and body for WebSocket;
    /// LongPoll still answers `{"status":403}`.
    Status(u16, String),
}

/// The app's socket handler: `connect/3` and `id/1`.
#[async_trait]
pub trait SocketHandler: Send + Sync + 'static {
    /// Accepts or refuses a socket; returns the socket assigns.
    async fn connect(&self, params: &Value, info: &ConnectInfo) -> Result<Map<String, Value>, ConnectError>;

    /// The socket id (`"user_socket:42"`); a `"disconnect"` broadcast to it closes the socket.
    fn id(&self, _assigns: &Map<String, Value>) -> Option<String> {
        None
    }
}

/// Accepts every socket, with no id.
pub struct AllowAll;

#[async_trait]
impl SocketHandler for AllowAll {
    async fn connect(&self, _params: &Value, _info: &ConnectInfo) -> Result<Map<String, Value>, ConnectError> {
        Ok(Map::new())
    }
}

