//! What every connection of one server shares: configuration, the endpoint, the two capacity
//! pools (WebSocket connections, LongPoll sessions), the session registry and the drain signal.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Config;
use crate::socket::Endpoint;
use crate::protocol::origin::CheckOrigin;
use super::capacity::Capacity;
use super::sessions::LongPoll;

/// Shared by every connection of a server.
pub struct ServerState {
    pub config: Arc<Config>,
    pub endpoint: Arc<Endpoint>,
    pub check_origin: CheckOrigin,
    pub local_addr: SocketAddr,
    /// WebSocket connections (each holds a file descriptor).
    pub connections: Arc<Capacity>,
    /// LongPoll sessions: their own pool (`Limits::longpoll_max_sessions`), so neither kind
    /// can take the other's places.
    pub sessions: Arc<Capacity>,
    pub longpoll: LongPoll,
    /// `[tls]`: every connection is TLS.
    pub tls: Option<super::tls::TlsAcceptor>,
    shutdown: watch::Sender<bool>,
    conn_ids: AtomicU64,
}

impl ServerState {
    pub fn new(config: Config, endpoint: Arc<Endpoint>, check_origin: CheckOrigin, local_addr: SocketAddr, max_connections: usize, max_sessions: usize) -> ServerState {
        let (shutdown, _) = watch::channel(false);
        ServerState {
            config: Arc::new(config),
            endpoint,
            check_origin,
            local_addr,
            connections: Arc::new(Capacity::new(max_connections, &crate::metrics::METRICS.connections)),
            sessions: Arc::new(Capacity::new(max_sessions, &crate::metrics::METRICS.longpoll_sessions)),
            longpoll: LongPoll::default(),
            tls: None,
            shutdown,
            conn_ids: AtomicU64::new(1),
        }
    }

    pub fn next_conn_id(&self) -> u64 {
        self.conn_ids.fetch_add(1, Ordering::Relaxed)
    }

    pub fn shutdown_rx(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Has the drain begun (shutdown)?
    pub fn draining(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Tells every connection and session to drain (WebSocket close 1012).
    pub fn begin_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

