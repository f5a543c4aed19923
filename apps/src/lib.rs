//! What the seed apps share: flags (`--port`, `--host`, `--db`), the static files every page
//! loads (the unmodified phoenix.js ES module and a small stylesheet), and starting the server
//! on one port with the app's pages, its HTTP endpoints and its socket.
//!
//! Each app is one binary in `src/bin/` (`cargo run -p apps --bin pointing_party`). The first
//! stdout line is `listening on ADDR` (tests start the apps on `--port 0` and read it).

use std::io::Write as _;

use broker::mount::{self, Body, Response};
use broker::{Builder, Config};

/// phoenix.js 1.8.16 from the `phoenix` npm package, unmodified (MIT, see
/// `static/phoenix.LICENSE.md`).
pub const PHOENIX_MJS: &str = include_str!("../static/phoenix.mjs");
/// The stylesheet every page shares.
pub const APP_CSS: &str = include_str!("../static/app.css");

/// The command line every app takes.
#[derive(Clone, Debug)]
pub struct Opts {
    /// `--host` (default 127.0.0.1).
    pub host: String,
    /// `--port` (each app has its own default; 0 picks a free port).
    pub port: u16,
    /// `--db PATH` (apps that keep data; default in the current directory).
    pub db: Option<String>,
}

impl Opts {
    /// Parses `--port N`, `--host H`, `--db PATH` (and `--help`).
    pub fn parse(app: &str, default_port: u16) -> Opts {
        let mut o = Opts { host: "127.0.0.1".into(), port: default_port, db: None };
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            let mut value = |name: &str| args.next().unwrap_or_else(|| usage(app, default_port, &format!("{name} needs a value")));
            match a.as_str() {
                "--port" => o.port = value("--port").parse().unwrap_or_else(|_| usage(app, default_port, "--port must be a number")),
                "--host" => o.host = value("--host"),
                "--db" => o.db = Some(value("--db")),
                "-h" | "--help" => usage(app, default_port, ""),
                other => usage(app, default_port, &format!("unknown argument {other:?}")),
            }
        }
        o
    }

    /// The broker configuration for these options: listen on `host:port`, no demo page.
    pub fn config(&self) -> Config {
        let mut c = Config::default();
        c.listen = format!("{}:{}", self.host, self.port);
        c.demo_page = false;
        c
    }
}

fn usage(app: &str, port: u16, err: &str) -> ! {
    if !err.is_empty() {
        eprintln!("{app}: {err}");
    }
    eprintln!("usage: {app} [--port N (default {port}; 0 = any free port)] [--host H (default 127.0.0.1)] [--db PATH]");
    std::process::exit(if err.is_empty() { 0 } else { 2 })
}

/// The shared static files (`/phoenix.mjs`, `/app.css`), if `path` is one.
pub fn static_file(path: &str) -> Option<Response<Body>> {
    match path {
        "/phoenix.mjs" => Some(mount::javascript(PHOENIX_MJS)),
        "/app.css" => Some(mount::respond(mount::StatusCode::OK, "text/css; charset=utf-8", APP_CSS)),
        _ => None,
    }
}

/// Logs to stderr (`RUST_LOG`, default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,broker=warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Binds, prints `listening on ADDR` (the first stdout line) and serves until Ctrl-C or
/// SIGTERM.
pub async fn serve(app: &str, builder: Builder) {
    let server = match builder.bind().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{app}: cannot start: {e}");
            std::process::exit(1);
        }
    };
    println!("listening on {}", server.local_addr());
    let _ = std::io::stdout().flush();
    eprintln!("{app}: open http://{}/", server.local_addr());
    server.run_until(shutdown_signal()).await;
}

/// Serves an app whose users log in with a name: `/` is `page`, `POST /login` mints a
/// Phoenix.Token ([`login`]), the static files are served, and sockets must carry a valid token
/// ([`TokenSockets`]). The chat and the video annotations share this.
pub async fn serve_with_login(app: &str, opts: &Opts, router: broker::Router, page: &'static str) {
    let tokens = broker::token::PhoenixToken::new(&secret_key_base(), "user socket").expect("secret_key_base");
    let login_tokens = tokens.clone();
    let pages = mount::service(move |req| {
        let tokens = login_tokens.clone();
        async move {
            match (req.method().clone(), req.uri().path()) {
                (mount::Method::GET, "/") => mount::html(page),
                (mount::Method::POST, "/login") => login(req, &tokens).await,
                (mount::Method::GET, path) => static_file(path).unwrap_or_else(mount::not_found),
                _ => mount::not_found(),
            }
        }
    });
    let builder = Builder::new(opts.config()).router(router).socket_handler(TokenSockets(tokens)).http_service(pages);
    serve(app, builder).await;
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The text of a socket param, trimmed, if it is a non-empty string of at most `max` chars.
pub fn param_str(params: &serde_json::Value, key: &str, max: usize) -> Option<String> {
    let s = params.get(key)?.as_str()?.trim();
    (!s.is_empty() && s.chars().count() <= max).then(|| s.to_owned())
}

/// The development `secret_key_base` of the apps that sign Phoenix.Tokens, unless
/// `APPS_SECRET_KEY_BASE` is set (tokens then survive a restart of the app, as in Phoenix).
pub fn secret_key_base() -> String {
    std::env::var("APPS_SECRET_KEY_BASE").unwrap_or_else(|_| "apps-dev-secret-key-base-change-me-in-production".into())
}

/// `POST /login {"name": …}` → `{"token": Phoenix.Token of the name}`: the apps' stand-in for
/// a real login (the page then connects with `params: {token}`).
pub async fn login(req: broker::mount::Request<broker::mount::Incoming>, tokens: &broker::token::PhoenixToken) -> Response<Body> {
    #[derive(serde::Deserialize)]
    struct Login {
        name: String,
    }
    let login: Login = match mount::read_json(req, 4096).await {
        Ok(l) => l,
        Err(resp) => return resp,
    };
    let name = login.name.trim();
    if name.is_empty() || name.chars().count() > 32 {
        return mount::json(mount::StatusCode::BAD_REQUEST, &serde_json::json!({"error": "a name of 1 to 32 characters"}));
    }
    mount::json(mount::StatusCode::OK, &serde_json::json!({"token": tokens.sign_user(name), "name": name}))
}

/// A socket handler that admits sockets whose `token` param is a valid Phoenix.Token: the
/// verified user id becomes the `user_id` assign and the socket id `user_socket:<id>`.
pub struct TokenSockets(pub broker::token::PhoenixToken);

/// The assigns of a [`TokenSockets`] socket.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Verified {
    pub user_id: String,
}

#[broker::async_trait]
impl broker::SocketHandler for TokenSockets {
    async fn connect(&self, params: &serde_json::Value, _info: &broker::ConnectInfo) -> Result<serde_json::Map<String, serde_json::Value>, broker::ConnectError> {
        let token = params.get("token").and_then(serde_json::Value::as_str).ok_or(broker::ConnectError::Forbidden)?;
        let identity = self.0.verify(token).map_err(|_| broker::ConnectError::Forbidden)?;
        broker::assigns(&Verified { user_id: identity.user_id })
    }

    fn id(&self, assigns: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
        assigns.get("user_id").and_then(serde_json::Value::as_str).map(|u| format!("user_socket:{u}"))
    }
}
