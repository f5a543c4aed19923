//! The standalone broker: `broker [--config FILE] [--listen ADDR] …`.
//!
//! With no configuration it listens on 127.0.0.1:4000, lets any topic be joined, relays client
//! events to the topic, tracks presence on `room:*` and serves a demo chat page at `/`.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;

use broker::config::{CheckOriginSetting, Config};
use clap::{CommandFactory as _, Parser, ValueEnum};

#[cfg(not(feature = "dhat-heap"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `--features dhat-heap`: every allocation is recorded with its call stack; SIGUSR1 writes
/// `dhat-heap.json` (what is live at that moment, per call stack, as "t-end") and exits
/// (`scripts/memory-profile.sh`).
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static GLOBAL: dhat::Alloc = dhat::Alloc;

#[cfg(feature = "dhat-heap")]
static PROFILER: std::sync::Mutex<Option<dhat::Profiler>> = std::sync::Mutex::new(None);

#[cfg(feature = "dhat-heap")]
fn start_heap_profile() {
    *PROFILER.lock().expect("profiler") = Some(dhat::Profiler::new_heap());
    std::thread::spawn(|| {
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        let mut sig = 0;
        unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::sigwait(&set, &mut sig);
        }
        eprintln!("broker: SIGUSR1: writing dhat-heap.json");
        drop(PROFILER.lock().expect("profiler").take());
        std::process::exit(0);
    });
}

/// A Phoenix Channels + Presence compatible broker.
///
/// Precedence: built-in defaults < --config file < BROKER_* environment < flags. Every key is
/// BROKER_<KEY> (BROKER_AUTH_TOKEN=true) or BROKER_<SECTION>__<KEY> with a double underscore
/// (BROKER_LIMITS__MAX_FRAME_SIZE=2000000, BROKER_PRESENCE__TOPICS='["room:*","lobby"]'); values
/// are TOML values, or text. An unknown BROKER_ variable is an error.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// TOML configuration file (see broker.example.toml).
    #[arg(long, env = "BROKER_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (port 0 = any free port; the bound address is printed).
    #[arg(long, env = "BROKER_LISTEN")]
    listen: Option<String>,
    /// Serve /metrics and /health only on this separate address (port 0 = any; printed as
    /// "admin listening on ADDR", the second stdout line).
    #[arg(long, env = "BROKER_ADMIN_LISTEN")]
    admin_listen: Option<String>,
    /// The HTTP API key (turns the API on at /api; see the README).
    #[arg(long, env = "BROKER_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Socket mount path (WebSocket at PATH/websocket, LongPoll at PATH/longpoll).
    #[arg(long, env = "BROKER_SOCKET_PATH")]
    socket_path: Option<String>,
    /// Origin check: true, false, conn, or a comma-separated origin list.
    #[arg(long, env = "BROKER_CHECK_ORIGIN")]
    check_origin: Option<String>,
    /// Endpoint URL host compared by --check-origin true.
    #[arg(long, env = "BROKER_URL_HOST")]
    url_host: Option<String>,
    /// Topic patterns clients may join (comma-separated, e.g. "room:*,lobby").
    #[arg(long, env = "BROKER_TOPICS")]
    topics: Option<String>,
    /// Topic patterns with presence (comma-separated; empty string = none).
    #[arg(long, env = "BROKER_PRESENCE_TOPICS")]
    presence_topics: Option<String>,
    /// presence_diff coalescing window in milliseconds (0 = one diff per change, like Phoenix).
    #[arg(long, env = "BROKER_PRESENCE_WINDOW_MS")]
    presence_window_ms: Option<u64>,
    /// Refuse WebSocket connections beyond this many with 503 (0 = derive from the fd limit).
    #[arg(long, env = "BROKER_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Pubsub/presence shards (0 = one per core).
    #[arg(long, env = "BROKER_SHARDS")]
    shards: Option<usize>,
    /// Idle timeout in milliseconds (no frame received).
    #[arg(long, env = "BROKER_IDLE_TIMEOUT_MS")]
    idle_timeout_ms: Option<u64>,
    /// Join a cluster over this Redis (redis://host:port): broadcasts and presence span every
    /// node with the same Redis and `cluster.channel_prefix`.
    #[arg(long, env = "BROKER_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// This node's name, unique in a cluster (default there: "<hostname>/<listen address>").
    #[arg(long, env = "BROKER_NODE_NAME")]
    node_name: Option<String>,
    /// Do not serve the demo page at /.
    #[arg(long)]
    no_demo: bool,
    /// Disable the LongPoll transport.
    #[arg(long)]
    no_longpoll: bool,
    /// Log lines on stderr: text (coloured only on a terminal) or json (one object a line).
    /// RUST_LOG filters them (default: info).
    #[arg(long, env = "BROKER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Print the effective configuration as TOML (secrets redacted) and exit.
    #[arg(long)]
    print_config: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The variables that are flags' own (`env = "BROKER_…"` above): clap reads them, the
/// configuration overlay skips them.
fn flag_env() -> Vec<String> {
    Args::command().get_arguments().filter_map(|a| a.get_env()).filter_map(|e| e.to_str()).map(str::to_owned).collect()
}

/// The `BROKER_*` environment; a value that is not Unicode is an error.
fn broker_env() -> Result<Vec<(String, String)>, String> {
    let mut vars = Vec::new();
    for (k, v) in std::env::vars_os() {
        let Some(k) = k.to_str() else { continue };
        if !k.starts_with(broker::config::ENV_PREFIX) {
            continue;
        }
        let v = v.into_string().map_err(|_| format!("{k}: the value is not valid UTF-8"))?;
        vars.push((k.to_owned(), v));
    }
    Ok(vars)
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect()
}

fn build_config(args: &Args) -> Result<Config, String> {
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            Some((path.display().to_string(), text))
        }
        None => None,
    };
    let flag_env = flag_env();
    let flag_env: Vec<&str> = flag_env.iter().map(String::as_str).collect();
    let mut c = Config::load(file.as_ref().map(|(n, t)| (n.as_str(), t.as_str())), broker_env()?, &flag_env)?;
    if let Some(v) = &args.listen {
        c.listen = v.clone();
    }
    if let Some(v) = &args.admin_listen {
        c.admin_listen = Some(v.clone());
    }
    if let Some(v) = &args.redis_url {
        c.cluster.redis_url = Some(v.clone());
    }
    if let Some(v) = &args.node_name {
        c.node_name = v.clone();
    }
    if let Some(v) = &args.api_key {
        c.api.key = Some(v.clone());
    }
    if let Some(v) = &args.socket_path {
        c.socket_path = v.clone();
    }
    if let Some(v) = &args.check_origin {
        c.check_origin = match v.as_str() {
            "true" => CheckOriginSetting::Bool(true),
            "false" => CheckOriginSetting::Bool(false),
            "conn" => CheckOriginSetting::Mode("conn".into()),
            list => CheckOriginSetting::List(split_list(list)),
        };
    }
    if let Some(v) = &args.url_host {
        c.url_host = Some(v.clone());
    }
    if let Some(v) = &args.topics {
        c.channels.topics = split_list(v);
    }
    if let Some(v) = &args.presence_topics {
        c.presence.topics = split_list(v);
    }
    if let Some(v) = args.presence_window_ms {
        c.presence.diff_window_ms = v;
    }
    if let Some(v) = args.max_connections {
        c.limits.max_connections = v;
    }
    if let Some(v) = args.shards {
        c.limits.shards = v;
    }
    if let Some(v) = args.idle_timeout_ms {
        c.limits.idle_timeout_ms = v;
    }
    if args.no_demo {
        c.demo_page = false;
    }
    if args.no_longpoll {
        c.longpoll = false;
    }
    c.validate()?;
    Ok(c)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: draining connections");
}

/// Logs go to stderr (stdout carries the `listening on` lines): text, in colour only on a
/// terminal, or JSON lines. RUST_LOG filters (default: info).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().flatten_event(true).with_ansi(false).init(),
    }
}

fn main() {
    #[cfg(feature = "dhat-heap")]
    {
        // Blocked in every thread (they inherit the mask), taken by the profile thread only.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        start_heap_profile();
    }
    let args = Args::parse();
    init_logging(args.log_format);
    let config = match build_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("broker: configuration error: {e}");
            std::process::exit(2);
        }
    };
    if args.print_config {
        match config.redacted().to_toml() {
            Ok(text) => print!("{text}"),
            Err(e) => {
                eprintln!("broker: {e}");
                std::process::exit(2);
            }
        }
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let demo_page = config.demo_page;
    runtime.block_on(async move {
        let (router, handler) = match broker::standalone::build(&config) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("broker: configuration error: {e}");
                std::process::exit(2);
            }
        };
        let server = match broker::Builder::new(config).router(router).socket_handler(handler).bind().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("broker: cannot start: {e}");
                std::process::exit(1);
            }
        };
        // The first stdout line is machine-readable: tests and scripts read the port from it.
        println!("listening on {}", server.local_addr());
        if let Some(admin) = server.admin_addr() {
            println!("admin listening on {admin}");
        }
        let _ = std::io::stdout().flush();
        match server.admin_addr() {
            Some(admin) => tracing::info!(listen = %server.local_addr(), admin = %admin, "broker started"),
            None => tracing::info!(listen = %server.local_addr(), "broker started"),
        }
        if demo_page {
            tracing::info!("demo page: http://{}/", server.local_addr());
        }
        server.run_until(shutdown_signal()).await;
    });
}
