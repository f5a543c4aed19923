//! Typed errors shared across modules (errors local to one module live there:
//! `frame::DecodeError`, `hist::HistDecodeError`, `compare::PctError`).
//!
//! The `Display` texts are what loadgen prints. For [`ConnError`] they are also the failure
//! kinds counted in the report (`connect:econnrefused`, `disconnected:closed_by_server`, ...):
//! report keys that compared and committed results depend on, so they must not change.

use std::fmt;
use std::io;
use std::net::AddrParseError;
use std::num::ParseIntError;

/// Why opening, using or keeping a WebSocket connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnError {
    /// EMFILE or ENFILE: out of file descriptors
    Emfile,
    Eaddrnotavail,
    Eaddrinuse,
    Econnrefused,
    Econnreset,
    Etimedout,
    /// ENOBUFS or ENOMEM
    Enobufs,
    /// any other errno
    Errno(i32),
    /// an I/O error without an errno
    Io(io::ErrorKind),
    /// the WebSocket handshake was answered with this HTTP status
    Http(u16),
    /// the connection is closed (or already was) on our side
    Closed,
    /// the server closed the socket (close frame or end of stream)
    ClosedByServer,
    WsProtocol,
    WsCapacity,
    WsOther,
    /// TCP connect + handshake took longer than --connect-timeout-ms
    ConnectTimeout,
}

impl ConnError {
    /// Classify a connect / socket failure.
    pub fn from_io(e: &io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::EMFILE) | Some(libc::ENFILE) => ConnError::Emfile,
            Some(libc::EADDRNOTAVAIL) => ConnError::Eaddrnotavail,
            Some(libc::EADDRINUSE) => ConnError::Eaddrinuse,
            Some(libc::ECONNREFUSED) => ConnError::Econnrefused,
            Some(libc::ECONNRESET) => ConnError::Econnreset,
            Some(libc::ETIMEDOUT) => ConnError::Etimedout,
            Some(libc::ENOBUFS) | Some(libc::ENOMEM) => ConnError::Enobufs,
            Some(n) => ConnError::Errno(n),
            None => ConnError::Io(e.kind()),
        }
    }

    /// Resource exhaustion on the load generator's side: retried with backoff until the ramp
    /// deadline instead of counting against --retries.
    pub fn is_resource(&self) -> bool {
        matches!(self, ConnError::Emfile | ConnError::Eaddrnotavail | ConnError::Eaddrinuse | ConnError::Enobufs)
    }
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ConnError::Emfile => "emfile",
            ConnError::Eaddrnotavail => "eaddrnotavail",
            ConnError::Eaddrinuse => "eaddrinuse",
            ConnError::Econnrefused => "econnrefused",
            ConnError::Econnreset => "econnreset",
            ConnError::Etimedout => "etimedout",
            ConnError::Enobufs => "enobufs",
            ConnError::Errno(n) => return write!(f, "errno_{n}"),
            ConnError::Io(k) => return f.write_str(&format!("io_{k:?}").to_lowercase()),
            ConnError::Http(s) => return write!(f, "http_{s}"),
            ConnError::Closed => "closed",
            ConnError::ClosedByServer => "closed_by_server",
            ConnError::WsProtocol => "ws_protocol",
            ConnError::WsCapacity => "ws_capacity",
            ConnError::WsOther => "ws_other",
            ConnError::ConnectTimeout => "connect_timeout",
        };
        f.write_str(s)
    }
}

impl std::error::Error for ConnError {}

/// A bad `--source-ips` value.
#[derive(Debug)]
pub enum SourceIpError {
    Addr { part: String, source: AddrParseError },
    Count { part: String, source: ParseIntError },
    BadRange(String),
    BadCount(String),
    Empty,
}

impl fmt::Display for SourceIpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceIpError::Addr { part, source } => write!(f, "{part}: {source}"),
            SourceIpError::Count { part, source } => write!(f, "{part}: {source}"),
            SourceIpError::BadRange(part) => write!(f, "{part}: bad range"),
            SourceIpError::BadCount(part) => write!(f, "{part}: bad count"),
            SourceIpError::Empty => f.write_str("no source address"),
        }
    }
}

impl std::error::Error for SourceIpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SourceIpError::Addr { source, .. } => Some(source),
            SourceIpError::Count { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why a worker could not start (bad flags, unreachable target).
#[derive(Debug)]
pub enum SetupError {
    /// --url is not a ws:// URL
    UnsupportedUrl(String),
    Resolve { host: String, source: io::Error },
    NoIpv4 { host: String },
    SourceIps(SourceIpError),
    /// the internal --worker I/N is malformed
    BadWorker,
    /// a --param without "="
    BadParam(String),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::UnsupportedUrl(url) => write!(f, "{url}: only ws:// URLs are supported"),
            SetupError::Resolve { host, source } => write!(f, "resolve {host}: {source}"),
            SetupError::NoIpv4 { host } => write!(f, "resolve {host}: no IPv4 address"),
            SetupError::SourceIps(e) => e.fmt(f),
            SetupError::BadWorker => f.write_str("bad --worker"),
            SetupError::BadParam(p) => write!(f, "--param {p}: expected KEY=VALUE"),
        }
    }
}

impl std::error::Error for SetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SetupError::Resolve { source, .. } => Some(source),
            SetupError::SourceIps(e) => Some(e),
            _ => None,
        }
    }
}

impl From<SourceIpError> for SetupError {
    fn from(e: SourceIpError) -> Self {
        SetupError::SourceIps(e)
    }
}

/// Why the coordinator gave up on a run (exit code 2).
#[derive(Debug)]
pub enum RunError {
    Setup(SetupError),
    /// the in-process worker ended before it was ready
    WorkerEndedEarly,
    /// the in-process worker task panicked or was cancelled
    WorkerFailed(tokio::task::JoinError),
    CurrentExe(io::Error),
    Spawn { worker: u32, source: io::Error },
    BadResult { worker: usize, source: serde_json::Error },
    NoResult { worker: usize },
    Write { path: String, source: io::Error },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Setup(e) => e.fmt(f),
            RunError::WorkerEndedEarly => f.write_str("worker ended early"),
            RunError::WorkerFailed(e) => write!(f, "worker failed: {e}"),
            RunError::CurrentExe(e) => write!(f, "current_exe: {e}"),
            RunError::Spawn { worker, source } => write!(f, "spawn worker {worker}: {source}"),
            RunError::BadResult { worker, source } => write!(f, "bad result from worker {worker}: {source}"),
            RunError::NoResult { worker } => write!(f, "worker {worker} exited without a result"),
            RunError::Write { path, source } => write!(f, "write {path}: {source}"),
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunError::Setup(e) => Some(e),
            RunError::WorkerFailed(e) => Some(e),
            RunError::CurrentExe(e) | RunError::Spawn { source: e, .. } | RunError::Write { source: e, .. } => Some(e),
            RunError::BadResult { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<SetupError> for RunError {
    fn from(e: SetupError) -> Self {
        RunError::Setup(e)
    }
}

/// A report file that `compare` / `summarize` cannot use.
#[derive(Debug)]
pub enum ReportFileError {
    Read { path: String, source: io::Error },
    Json { path: String, source: serde_json::Error },
    /// `schema_version` is not 1 (shown as found, e.g. `null`)
    Schema { path: String, found: String },
}

impl fmt::Display for ReportFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReportFileError::Read { path, source } => write!(f, "{path}: {source}"),
            ReportFileError::Json { path, source } => write!(f, "{path}: {source}"),
            ReportFileError::Schema { path, found } => write!(f, "{path}: unsupported schema_version {found}"),
        }
    }
}

impl std::error::Error for ReportFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReportFileError::Read { source, .. } => Some(source),
            ReportFileError::Json { source, .. } => Some(source),
            ReportFileError::Schema { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_error_kinds_are_the_report_keys() {
        let io = |n| ConnError::from_io(&io::Error::from_raw_os_error(n));
        assert_eq!(io(libc::ECONNREFUSED).to_string(), "econnrefused");
        assert_eq!(io(libc::ENFILE), ConnError::Emfile);
        assert_eq!(io(libc::ENOMEM).to_string(), "enobufs");
        assert_eq!(io(libc::EPIPE).to_string(), format!("errno_{}", libc::EPIPE));
        let e = ConnError::from_io(&io::Error::new(io::ErrorKind::UnexpectedEof, "x"));
        assert_eq!(e.to_string(), "io_unexpectedeof");
        assert_eq!(ConnError::Http(403).to_string(), "http_403");
        assert_eq!(ConnError::ClosedByServer.to_string(), "closed_by_server");
        assert_eq!(ConnError::ConnectTimeout.to_string(), "connect_timeout");
        assert_eq!(ConnError::Closed.to_string(), "closed");
        assert!(io(libc::EADDRNOTAVAIL).is_resource());
        assert!(!io(libc::ECONNREFUSED).is_resource());
    }
}
