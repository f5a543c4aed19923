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

/// The app's socket handler: Phoenix's `UserSocket` `connect/3` and `id/1`. The assigns it
/// returns are the socket's `assigns` (typed: build them with [`assigns`], read them with
/// [`crate::ChannelContext::assigns_as`]).
///
/// ```
/// use broker::{async_trait, ConnectError, ConnectInfo, SocketHandler};
/// use serde_json::{Map, Value};
///
/// #[derive(serde::Serialize)]
/// struct User { name: String }
///
/// struct UserSocket;
///
/// #[async_trait]
/// impl SocketHandler for UserSocket {
///     async fn connect(&self, params: &Value, _info: &ConnectInfo) -> Result<Map<String, Value>, ConnectError> {
///         match params.get("name").and_then(Value::as_str) {
///             Some(name) if !name.is_empty() => broker::assigns(&User { name: name.into() }),
///             _ => Err(ConnectError::Forbidden), // `:error`: 403
///         }
///     }
///     fn id(&self, assigns: &Map<String, Value>) -> Option<String> {
///         assigns.get("name")?.as_str().map(|n| format!("user_socket:{n}"))
///     }
/// }
/// ```
#[async_trait]
pub trait SocketHandler: Send + Sync + 'static {
    /// Accepts or refuses a socket; returns the socket assigns.
    async fn connect(&self, params: &Value, info: &ConnectInfo) -> Result<Map<String, Value>, ConnectError>;

    /// The socket id (`"user_socket:42"`); a `"disconnect"` broadcast to it closes the socket.
    fn id(&self, _assigns: &Map<String, Value>) -> Option<String> {
        None
    }
}

/// Typed socket assigns: `connect` returns the app's own struct (or map) as the assigns map,
/// which channels read back with [`crate::ChannelContext::assigns_as`]. A value that is not a
/// JSON object (a struct or map) refuses the socket with a 500.
///
/// ```
/// #[derive(serde::Serialize)]
/// struct User { name: String, role: String }
/// let assigns = broker::assigns(&User { name: "ann".into(), role: "trainer".into() }).unwrap();
/// assert_eq!(assigns["role"], "trainer");
/// ```
pub fn assigns<T: serde::Serialize + ?Sized>(value: &T) -> Result<Map<String, Value>, ConnectError> {
    match serde_json::to_value(value) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(ConnectError::Status(500, "socket assigns must be an object".into())),
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

