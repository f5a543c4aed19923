//! Why a channel stops (spec §4.8, gotcha 25).

/// Why a channel stops. `Normal` and `Shutdown(_)` are graceful (`phx_close`, `terminate`
/// runs); `Error(_)` is not (`phx_error`, the client rejoins). Spec §4.8, gotcha 25.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    Normal,
    /// `{:shutdown, reason}`.
    Shutdown(ShutdownReason),
    /// A crash (the app's reason, or the socket's: "socket crashed").
    Error(String),
}

/// The reason of a graceful `{:shutdown, reason}` stop (Phoenix's atoms, see `Display`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShutdownReason {
    /// The client left (`phx_leave`).
    Left,
    /// The transport closed (client close, idle timeout, a slow consumer, a crash elsewhere).
    Closed,
    /// The same topic was joined again on this socket (spec §4.7).
    DuplicateJoin,
    /// A `"disconnect"` for the socket id (spec §2.7).
    Disconnected,
    /// Server shutdown (spec §2.8).
    Draining,
    /// A LongPoll session nobody polled (spec §6.6).
    Inactive,
    /// The app's own reason.
    App(String),
}

impl std::fmt::Display for ShutdownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ShutdownReason::Left => "left",
            ShutdownReason::Closed => "closed",
            ShutdownReason::DuplicateJoin => "duplicate_join",
            ShutdownReason::Disconnected => "disconnected",
            ShutdownReason::Draining => "draining",
            ShutdownReason::Inactive => "inactive",
            ShutdownReason::App(r) => r,
        })
    }
}

impl StopReason {
    pub fn is_graceful(&self) -> bool {
        !matches!(self, StopReason::Error(_))
    }
}

