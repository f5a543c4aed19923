//! The standalone binary's configuration and logging, run for real: `BROKER_*` environment
//! variables (nested keys too) over the `--config` file, flags over both, `--print-config` as
//! TOML that reads back equal, errors that name the key and where it came from, and JSON /
//! colourless logs on stderr.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use broker::config::{Config, REDACTED};
use broker::standalone::identity::{AuthConfig, JwtAlgorithm};

const BIN: &str = env!("CARGO_BIN_EXE_broker");
const DEADLINE: Duration = Duration::from_secs(30);

/// The binary with a clean environment: no inherited `BROKER_*` (nor RUST_LOG), then `env`.
fn broker(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| k.starts_with("BROKER_") || k == "RUST_LOG") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args).envs(env.iter().copied()).stdin(Stdio::null());
    cmd
}

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the binary to its end (killed past the deadline).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = broker(args, env).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn broker");
    let out = reader(child.stdout.take().unwrap());
    let err = reader(child.stderr.take().unwrap());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("broker {args:?} did not exit within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = out.recv_timeout(DEADLINE).expect("stdout");
    let stderr = err.recv_timeout(DEADLINE).expect("stderr");
    Output { code: status.code(), stdout, stderr }
}

fn reader(mut r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    rx
}

/// `--print-config` with these flags and variables, read back.
fn print_config(args: &[&str], env: &[(&str, &str)]) -> (Config, String) {
    let mut all = vec!["--print-config"];
    all.extend_from_slice(args);
    let out = run(&all, env);
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    let config = Config::from_toml(&out.stdout).unwrap_or_else(|e| panic!("--print-config is not valid TOML: {e}\n{}", out.stdout));
    (config, out.stdout)
}

/// A config file in the target's temporary directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("config_cli-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn env_sets_a_nested_limit() {
    let (c, _) = print_config(&[], &[("BROKER_LIMITS__MAX_FRAME_SIZE", "2000000")]);
    assert_eq!(c.limits.max_frame_size, 2_000_000);
    let mut want = Config::default();
    want.limits.max_frame_size = 2_000_000;
    want.demo_page = true; // the binary serves the demo page unless told not to
    assert_eq!(c, want);
}

#[test]
fn env_sets_auth_token() {
    let (c, _) = print_config(&[], &[("BROKER_AUTH_TOKEN", "true")]);
    assert!(c.auth_token);
}

#[test]
fn env_sets_a_list() {
    let (c, _) = print_config(&[], &[("BROKER_PRESENCE__TOPICS", r#"["room:*","lobby"]"#)]);
    assert_eq!(c.presence.topics, ["room:*", "lobby"]);
}

#[test]
fn env_sets_the_auth_table() {
    let secret = "0123456789abcdef0123456789abcdef";
    let (c, text) = print_config(
        &[],
        &[("BROKER_AUTH__KIND", "jwt"), ("BROKER_AUTH__ALGORITHM", "hs256"), ("BROKER_AUTH__SECRET", secret)],
    );
    assert!(!text.contains(secret), "{text}");
    let Some(AuthConfig::Jwt { algorithm: JwtAlgorithm::Hs256, secret: Some(s), .. }) = &c.auth else { panic!("{c:?}") };
    assert_eq!(s, REDACTED);
}

#[test]
fn a_flag_overrides_the_env() {
    // The nested variable, then the flag's own variable, then the flag.
    let (c, _) = print_config(&[], &[("BROKER_LIMITS__SHARDS", "2")]);
    assert_eq!(c.limits.shards, 2);
    let (c, _) = print_config(&[], &[("BROKER_LIMITS__SHARDS", "2"), ("BROKER_SHARDS", "3")]);
    assert_eq!(c.limits.shards, 3);
    let (c, _) = print_config(&["--shards", "4"], &[("BROKER_LIMITS__SHARDS", "2"), ("BROKER_SHARDS", "3")]);
    assert_eq!(c.limits.shards, 4);
    let (c, _) = print_config(&["--listen", "127.0.0.1:5000"], &[("BROKER_LISTEN", "127.0.0.1:6000")]);
    assert_eq!(c.listen, "127.0.0.1:5000");
}

#[test]
fn the_env_overrides_the_file() {
    let file = TempFile::new("env-over-file.toml", "node_name = \"from-file\"\n[limits]\nmax_channels = 5\nmax_topic_bytes = 100\n");
    let (c, _) = print_config(&["--config", file.path()], &[("BROKER_LIMITS__MAX_CHANNELS", "7"), ("BROKER_NODE_NAME", "from-env")]);
    assert_eq!((c.node_name.as_str(), c.limits.max_channels, c.limits.max_topic_bytes), ("from-env", 7, 100));
    // BROKER_CONFIG names the file too.
    let (c, _) = print_config(&[], &[("BROKER_CONFIG", file.path())]);
    assert_eq!((c.node_name.as_str(), c.limits.max_channels), ("from-file", 5));
}

#[test]
fn an_unknown_env_key_is_an_error_naming_it() {
    let out = run(&["--print-config"], &[("BROKER_X", "1")]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains(r#"unknown configuration key "x" (from BROKER_X)"#), "{}", out.stderr);
    assert!(out.stdout.is_empty());
    let out = run(&["--print-config"], &[("BROKER_LIMITS__MAX_FRAME", "1")]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains(r#"unknown configuration key "limits.max_frame" (from BROKER_LIMITS__MAX_FRAME)"#), "{}", out.stderr);
    // Not configuration: the path of the binary that scripts export.
    let out = run(&["--print-config"], &[("BROKER_BIN", BIN)]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

#[test]
fn a_wrong_type_is_an_error_naming_the_key() {
    let file = TempFile::new("wrong-type.toml", "[limits]\nmax_frame_size = \"big\"\n");
    let out = run(&["--print-config", "--config", file.path()], &[]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains(&format!("{}: limits.max_frame_size: invalid type", file.path())), "{}", out.stderr);
    let out = run(&["--print-config"], &[("BROKER_LIMITS__MAX_FRAME_SIZE", "big")]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("limits.max_frame_size: invalid type"), "{}", out.stderr);
    assert!(out.stderr.contains("(from BROKER_LIMITS__MAX_FRAME_SIZE)"), "{}", out.stderr);
}

#[test]
fn print_config_reads_back_equal_to_the_effective_config() {
    let text = r#"
        listen = "127.0.0.1:0"
        check_origin = ["https://example.com", "//*.example.com"]
        url_host = "example.com"
        subprotocols = ["v2"]
        admin_listen = "127.0.0.1:0"

        [auth]
        kind = "phoenix_token"
        secret_key_base = "ssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss"
        salt = "user socket"
        key_digest = "sha512"

        [webhooks]
        secret = "webhook-secret"

        [api]
        key = "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"

        [[channels.policies]]
        topics = ["private:*"]
        join = "claims"
        events = "broadcast_from"

        [[channels.policies]]
        topics = ["game:*"]
        join = "webhook"
        join_url = "http://127.0.0.1:1/join"
        allowed_events = ["move"]
    "#;
    let file = TempFile::new("round-trip.toml", text);
    let (mut printed, out) = print_config(
        &["--config", file.path(), "--presence-window-ms", "0"],
        &[("BROKER_LIMITS__MAX_CHANNELS", "9"), ("BROKER_PRESENCE__META_PARAMS", r#"["name"]"#)],
    );
    for secret in ["ssssssss", "webhook-secret", "kkkkkkkk"] {
        assert!(!out.contains(secret), "{secret} printed:\n{out}");
    }
    assert_eq!(out.matches(&format!("\"{REDACTED}\"")).count(), 3, "{out}");
    // Un-redacted, it is the effective configuration.
    let mut effective = Config::from_toml(text).unwrap();
    effective.limits.max_channels = 9;
    effective.presence.meta_params = vec!["name".into()];
    effective.presence.diff_window_ms = 0;
    effective.demo_page = true; // the binary's default (a library's Config::default() has none)
    assert_eq!(printed.redacted(), printed);
    if let Some(AuthConfig::PhoenixToken { secret_key_base, .. }) = &mut printed.auth {
        *secret_key_base = "s".repeat(64);
    }
    printed.webhooks.secret = Some("webhook-secret".into());
    printed.api.key = Some("k".repeat(32));
    assert_eq!(printed, effective);

    // Without secrets, exactly the effective configuration.
    let (printed, _) = print_config(&["--no-longpoll", "--topics", "room:*,lobby"], &[("BROKER_AUTH_TOKEN", "true")]);
    let mut effective = Config { longpoll: false, auth_token: true, demo_page: true, ..Config::default() };
    effective.channels.topics = vec!["room:*".into(), "lobby".into()];
    assert_eq!(printed, effective);
}

/// A running broker: its first stdout line, its stderr lines as they come; killed on drop.
struct Running {
    child: Child,
    first_line: String,
    stderr: mpsc::Receiver<String>,
}

impl Running {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut child = broker(args, env).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn broker");
        let (tx, first) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next().and_then(Result::ok).unwrap_or_default());
            for _ in lines {}
        });
        let (tx, stderr) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut running = Running { child, first_line: String::new(), stderr };
        running.first_line = first.recv_timeout(DEADLINE).expect("the broker printed no first line in time");
        assert!(running.first_line.starts_with("listening on 127.0.0.1:"), "first line: {:?}", running.first_line);
        running
    }

    /// The next stderr line.
    fn log_line(&self) -> String {
        self.stderr.recv_timeout(DEADLINE).expect("a log line on stderr in time")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn log_format_json_writes_json_lines() {
    for (args, env) in [
        (&["--listen", "127.0.0.1:0", "--no-demo", "--log-format", "json"][..], &[][..]),
        (&["--listen", "127.0.0.1:0", "--no-demo"][..], &[("BROKER_LOG_FORMAT", "json")][..]),
    ] {
        let broker = Running::start(args, env);
        let line = broker.log_line();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        assert_eq!(v["level"], "INFO", "{line}");
        assert!(v["timestamp"].is_string() && v["message"].is_string(), "{line}");
        assert!(!line.contains('\x1b'), "{line:?}");
    }
}

#[test]
fn no_colour_codes_when_stderr_is_not_a_terminal() {
    let broker = Running::start(&["--listen", "127.0.0.1:0", "--no-demo"], &[("RUST_LOG", "info")]);
    let line = broker.log_line();
    assert!(line.contains("INFO") && line.contains("broker started"), "{line:?}");
    assert!(!line.contains('\x1b'), "ANSI escape in {line:?}");
}

#[test]
fn a_bad_log_format_is_refused() {
    let out = run(&["--print-config", "--log-format", "xml"], &[]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("--log-format"), "{}", out.stderr);
}
