//! The listener: binding (backlog, fd limit), the accept loop (EMFILE backoff), HTTP/1.1
//! connections, and graceful shutdown (drain with 1012).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

use crate::channel::ChannelEnv;
use crate::config::{Config, SocketLimits};
use crate::metrics::METRICS;
use crate::presence::{Fetch, Presence, PresenceLimits, PresenceOptions};
use crate::protocol::Payload;
use crate::pubsub::{Broadcast, PubSub};
use crate::socket::{AllowAll, Endpoint, Router, SocketHandler};
use crate::transport::ServerState;

/// Builds a server: configuration, channel routes and the socket handler (Phoenix's
/// `Endpoint` with `socket "/socket", UserSocket` and the `UserSocket`'s `channel` routes), and
/// optionally the app's own HTTP routes on the same port ([`Builder::http_service`]).
///
/// ```no_run
/// use broker::{async_trait, Builder, Channel, ChannelContext, Config, Join, Payload, Reply, Router};
///
/// struct Room;
/// #[async_trait]
/// impl Channel for Room {
///     async fn join(&mut self, _t: &str, _p: Payload, _ctx: &mut ChannelContext) -> Join { Join::ok() }
///     async fn handle_in(&mut self, _e: &str, _p: Payload, _ctx: &mut ChannelContext) -> Reply { Reply::NoReply }
/// }
///
/// # async fn run() -> std::io::Result<()> {
/// let mut config = Config::default();
/// config.listen = "127.0.0.1:4000".into();
/// let builder = Builder::new(config).router(Router::new().channel("room:*", |_topic| Room));
/// let endpoint = builder.handle(); // Endpoint.broadcast from anywhere, once bound
/// let server = builder.bind().await?;
/// println!("listening on {}", server.local_addr());
/// endpoint.broadcast_json("room:lobby", "hello", &serde_json::json!({})).await.ok();
/// server.run_until(std::future::pending()).await;
/// # Ok(()) }
/// ```
pub struct Builder {
    config: Config,
    router: Router,
    handler: Arc<dyn SocketHandler>,
    presence_fetch: Option<Fetch>,
    /// The app's own HTTP routes ([`Builder::http_service`]).
    app: Option<crate::mount::AppService>,
    /// Filled at `bind`: handles given out before it (to channel factories, to the app's own
    /// HTTP handlers) start working then.
    handle: BrokerHandle,
}

impl Builder {
    pub fn new(config: Config) -> Builder {
        Builder { config, router: Router::new(), handler: Arc::new(AllowAll), presence_fetch: None, app: None, handle: BrokerHandle::unbound() }
    }

    /// Phoenix's `Endpoint` for broadcasting from outside any channel, available before
    /// [`Builder::bind`] (e.g. to hand to the app's HTTP handlers or channel factories while the
    /// router is built). Until the server is bound its calls answer
    /// [`crate::channel::PushFailed::NotStarted`]; afterwards it is the server's
    /// [`Server::handle`].
    pub fn handle(&self) -> BrokerHandle {
        self.handle.clone()
    }

    /// Phoenix's `fetch/2`: decorates every presence entry (`{"metas": […]}`) of `key` on
    /// `topic` in `list`, `presence_state` and both sides of every `presence_diff`.
    pub fn presence_fetch(mut self, fetch: impl Fn(&str, &str, &mut serde_json::Map<String, Value>) + Send + Sync + 'static) -> Builder {
        self.presence_fetch = Some(Arc::new(fetch));
        self
    }

    /// Mounts the app's own HTTP service on the same port (see [`crate::mount`]): every request
    /// outside the broker's own paths ([`crate::mount::is_broker_path`]) goes to it, so the app
    /// serves its pages, its HTTP endpoints and its sockets together. It replaces the demo page.
    pub fn http_service(mut self, app: crate::mount::AppService) -> Builder {
        self.app = Some(app);
        self
    }

    pub fn router(mut self, router: Router) -> Builder {
        self.router = router;
        self
    }

    pub fn socket_handler(mut self, handler: impl SocketHandler) -> Builder {
        self.handler = Arc::new(handler);
        self
    }

    /// Binds the listener and starts the pubsub and presence shards. Must run inside a tokio
    /// runtime.
    pub async fn bind(self) -> std::io::Result<Server> {
        self.config.validate().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let soft_limit = raise_fd_limit();
        let addr: SocketAddr = self
            .config
            .listen
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("listen {:?}: {e}", self.config.listen)))?;
        let listener = bind_listener(addr, self.config.limits.listen_backlog)?;
        let local_addr = listener.local_addr()?;
        let admin = match &self.config.admin_listen {
            Some(a) => {
                let addr: SocketAddr = a
                    .parse()
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("admin_listen {a:?}: {e}")))?;
                Some(bind_listener(addr, 128)?)
            }
            None => None,
        };
        crate::outbox::start_budget(crate::outbox::BudgetConfig {
            limit_bytes: self.config.limits.outbound_budget_bytes,
            min_stall: Duration::from_millis(self.config.limits.outbound_stall_ms),
        });
        let shards = self.config.limits.shard_count();
        let limits = &self.config.limits;
        // A cluster node: Redis must answer before anything starts.
        let cluster = match &self.config.cluster.redis_url {
            Some(_) => {
                let node = cluster_node_name(&self.config.node_name, local_addr);
                let c = crate::cluster::Cluster::connect(&self.config.cluster, &node)
                    .await
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::ConnectionRefused, e))?;
                tracing::info!(node = %node, "cluster: joined over Redis");
                Some(c)
            }
            None => None,
        };
        let node_name = cluster.as_ref().map_or_else(|| self.config.node_name.clone(), |c| c.node().to_string());
        let bus = cluster.clone().map(|c| Arc::new(c) as Arc<dyn crate::pubsub::Bus>);
        let replication = cluster.clone().map(|c| crate::presence::ReplicationOptions {
            bus: Arc::new(c),
            heartbeat: Duration::from_millis(self.config.cluster.heartbeat_ms),
            timeouts: self.config.cluster.timeouts(),
            queue: limits.presence_queue,
        });
        let pubsub = PubSub::start_with_bus(shards, limits.pubsub_queue, bus);
        let presence = Presence::start_with(
            pubsub.clone(),
            PresenceOptions {
                shards,
                diff_window_ms: self.config.presence.diff_window_ms,
                coalesce_min_members: self.config.presence.coalesce_min_members,
                fetch: self.presence_fetch,
                node: node_name,
                limits: PresenceLimits {
                    max_key_bytes: limits.presence_max_key_bytes,
                    max_meta_bytes: limits.presence_max_meta_bytes,
                    max_state_bytes: limits.presence_max_state_bytes,
                    queue: limits.presence_queue,
                },
                replication,
            },
        );
        if let Some(c) = &cluster {
            c.attach(pubsub.clone(), presence.clone());
        }
        let limits = &self.config.limits;
        let max_connections = if limits.max_connections > 0 {
            limits.max_connections
        } else {
            (soft_limit as usize).saturating_sub(limits.fd_reserve).max(1)
        };
        let max_sessions = if limits.longpoll_max_sessions > 0 { limits.longpoll_max_sessions } else { max_connections };
        let env = Arc::new(ChannelEnv { pubsub, presence, limits: SocketLimits::from_config(limits) });
        let endpoint = Arc::new(Endpoint { router: self.router, handler: self.handler, env });
        let check_origin = self.config.check_origin().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let tls = match &self.config.tls {
            Some(t) => Some(crate::transport::tls::acceptor(t).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?),
            None => None,
        };
        let mut state = ServerState::new(self.config, endpoint, check_origin, local_addr, max_connections, max_sessions);
        state.tls = tls;
        let state = Arc::new(state);
        let _ = self.handle.inner.set(HandleInner {
            pubsub: state.endpoint.env.pubsub.clone(),
            presence: state.endpoint.env.presence.clone(),
            max_frame: state.endpoint.env.limits.max_outbound_frame,
        });
        Ok(Server { listener, admin, state, handle: self.handle, app: self.app })
    }
}

/// A bound server. [`Server::handle`] gives a handle for broadcasting from outside channels.
pub struct Server {
    handle: BrokerHandle,
    listener: TcpListener,
    /// `admin_listen`: `/metrics` and `/health` only.
    admin: Option<TcpListener>,
    state: Arc<ServerState>,
    app: Option<crate::mount::AppService>,
}

/// Phoenix's `Endpoint`: broadcast from outside any channel. Cheap to clone; from
/// [`Builder::handle`] (before `bind`) or [`Server::handle`].
#[derive(Clone)]
pub struct BrokerHandle {
    inner: Arc<OnceLock<HandleInner>>,
}

struct HandleInner {
    pubsub: PubSub,
    presence: Presence,
    /// Largest frame an outbox accepts (`outbox_max_bytes`).
    max_frame: usize,
}

impl BrokerHandle {
    fn unbound() -> BrokerHandle {
        BrokerHandle { inner: Arc::new(OnceLock::new()) }
    }

    fn bound(&self) -> Result<&HandleInner, crate::channel::PushFailed> {
        self.inner.get().ok_or(crate::channel::PushFailed::NotStarted)
    }

    /// Bound, and a payload Phoenix can broadcast (a JSON object or binary, spec §3.5) whose
    /// frame fits an outbox (refused here, at the sender, never a disconnect of subscribers).
    fn checked(&self, topic: &str, event: &str, payload: &Payload) -> Result<&HandleInner, crate::channel::PushFailed> {
        let h = self.bound()?;
        if !payload.is_object_or_binary() {
            return Err(crate::channel::PushFailed::PayloadNotObject);
        }
        if crate::channel::broadcast_frame_bound(topic, event, payload) > h.max_frame {
            return Err(crate::channel::PushFailed::TooLarge);
        }
        Ok(h)
    }

    /// `Endpoint.broadcast(topic, event, payload)`: every subscriber of `topic`. The payload
    /// must be a JSON object or binary (spec §3.5).
    pub async fn broadcast(&self, topic: &str, event: &str, payload: Payload) -> Result<(), crate::channel::PushFailed> {
        let h = self.checked(topic, event, &payload)?;
        h.pubsub.broadcast(Broadcast::new(topic, event, payload), None, None).await;
        Ok(())
    }

    /// `Endpoint.local_broadcast(topic, event, payload)`: like [`BrokerHandle::broadcast`], but
    /// only to this node's subscribers (in a cluster, other nodes do not get it).
    pub async fn local_broadcast(&self, topic: &str, event: &str, payload: Payload) -> Result<(), crate::channel::PushFailed> {
        let h = self.checked(topic, event, &payload)?;
        h.pubsub.local_broadcast(Arc::new(Broadcast::new(topic, event, payload)), None, None).await;
        Ok(())
    }

    /// Closes every socket whose id is `socket_id` (a `"disconnect"` broadcast, spec §2.7).
    pub async fn disconnect(&self, socket_id: &str) -> Result<(), crate::channel::PushFailed> {
        let h = self.bound()?;
        h.pubsub.broadcast(Broadcast::new(socket_id, "disconnect", Payload::empty_object()), None, None).await;
        Ok(())
    }

    /// The pubsub, once the server is bound.
    pub fn pubsub(&self) -> Option<&PubSub> {
        self.inner.get().map(|h| &h.pubsub)
    }

    /// The presence service, once the server is bound.
    pub fn presence(&self) -> Option<&Presence> {
        self.inner.get().map(|h| &h.presence)
    }

    /// Broadcast helper for JSON values.
    pub async fn broadcast_json(&self, topic: &str, event: &str, payload: &Value) -> Result<(), crate::channel::PushFailed> {
        self.broadcast(topic, event, Payload::json(payload)).await
    }
}

impl Server {
    pub fn local_addr(&self) -> SocketAddr {
        self.state.local_addr
    }

    /// The admin address (`admin_listen`), if one is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn handle(&self) -> BrokerHandle {
        self.handle.clone()
    }

    /// Serves until `shutdown` resolves, then drains: every WebSocket is closed with 1012,
    /// LongPoll sessions stop, and the call returns once connections are gone (or after
    /// `shutdown_grace_ms`).
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        let Server { listener, admin, state, app, .. } = self;
        let admin_task = admin.map(|l| tokio::spawn(serve_admin(l, state.clone())));
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(5);
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((tcp, peer)) => {
                        backoff = Duration::from_millis(5);
                        tokio::spawn(serve_connection(state.clone(), tcp, peer, app.clone()));
                    }
                    Err(e) => {
                        METRICS.accept_errors.inc();
                        // EMFILE/ENFILE: out of descriptors. Back off (exponentially, ≤ 1 s)
                        // instead of spinning; connections waiting in the backlog are accepted
                        // once descriptors free up.
                        if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) {
                            tracing::warn!("accept: out of file descriptors; backing off {backoff:?}");
                        } else {
                            tracing::warn!("accept: {e}");
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                },
                _ = &mut shutdown => break,
            }
        }
        drop(listener);
        state.begin_shutdown();
        let grace = Duration::from_millis(state.config.limits.shutdown_grace_ms);
        let deadline = tokio::time::Instant::now() + grace;
        while (state.connections.open() > 0 || state.sessions.open() > 0)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Other nodes drop this node's presences now, not after the down period.
        if state.endpoint.env.pubsub.is_clustered() {
            state.endpoint.env.presence.goodbye().await;
            tokio::time::sleep(Duration::from_millis(50)).await; // let the publisher flush
        }
        // The admin address answers through the drain (`/readyz` says 503 meanwhile).
        if let Some(t) = admin_task {
            t.abort();
        }
    }
}

async fn serve_connection(state: Arc<ServerState>, tcp: TcpStream, peer: SocketAddr, app: Option<crate::mount::AppService>) {
    let _ = tcp.set_nodelay(true);
    let header_timeout = Duration::from_millis(state.config.limits.http_header_timeout_ms);
    match state.tls.clone() {
        None => serve_http(state, TokioIo::new(tcp), peer, header_timeout, app).await,
        Some(acceptor) => {
            // The handshake is bounded like the request head it precedes (slowloris).
            let Ok(Ok(tls)) = tokio::time::timeout(header_timeout, acceptor.accept(tcp)).await else { return };
            serve_http(state, TokioIo::new(tls), peer, header_timeout, app).await
        }
    }
}

async fn serve_http<I>(state: Arc<ServerState>, io: I, peer: SocketAddr, header_timeout: Duration, app: Option<crate::mount::AppService>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc_state = state.clone();
    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let state = svc_state.clone();
        let app = app.clone().filter(|_| !crate::mount::is_broker_path(&state.config, req.uri().path()));
        async move {
            match app {
                Some(app) => Ok::<_, std::convert::Infallible>(app(req).await),
                None => crate::transport::http::handle(state, req, peer).await,
            }
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true)
        .max_buf_size(64 * 1024)
        .serve_connection(io, svc)
        .with_upgrades();
    let _ = conn.await;
}

/// The admin address: `/metrics` and `/health`, nothing else.
async fn serve_admin(listener: TcpListener, state: Arc<ServerState>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let timeout = Duration::from_millis(state.config.limits.http_header_timeout_ms);
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| crate::transport::http::handle_admin(state.clone(), req));
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(timeout)
                .serve_connection(TokioIo::new(tcp), svc);
            let _ = conn.await;
        });
    }
}

/// Binds with an explicit listen backlog (≥ 4096: connect storms must not drop SYNs; the
/// kernel caps it at net.core.somaxconn).
/// A cluster node's name: `node_name` if set to something other than the default, else
/// `<hostname>/<listen address>` (unique per process on a host, and the same after a restart on
/// the same address, so the restarted node replaces its old incarnation at once).
fn cluster_node_name(configured: &str, local: SocketAddr) -> String {
    if configured != crate::config::Config::default().node_name {
        return configured.to_string();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "localhost".into());
    format!("{host}/{local}")
}

fn bind_listener(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let domain = if addr.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    TcpListener::from_std(socket.into())
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        lim.rlim_cur
    }
}
