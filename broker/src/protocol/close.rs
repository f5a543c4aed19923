//! Why the server closes a WebSocket: one enum owning the close code, the reason text and
//! whether frames already queued are still written first (spec §2.6; gotcha 1: never 1000 when
//! the client should come back).

/// A server-initiated close, or the server's answer to a client's close frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// A `"disconnect"` broadcast to the socket id (spec §2.7): 1001.
    Disconnect,
    /// Nothing received for `idle_timeout_ms` (inbound-only rule): 1001.
    IdleTimeout,
    /// The outbox overflowed (the client does not read fast enough), or the outbound budget
    /// closed it: 1008. What was queued is dropped.
    SlowConsumer,
    /// A message larger than `max_frame_size`: 1009.
    TooBig,
    /// A frame RFC 6455 forbids (unmasked, reserved bits, bad opcode or fragmentation): 1002.
    ProtocolError,
    /// A text message that is not UTF-8: 1007.
    InvalidUtf8,
    /// An undecodable message: Phoenix's socket crash, 1011. What was queued is dropped.
    Crash,
    /// Drain on shutdown (spec §2.8): 1012.
    Restart,
    /// The answer to a client's close frame: its code echoed if valid, 1000 if it had none,
    /// 1002 if it was invalid (RFC 6455 §7.4, as Bandit does).
    Answer(u16),
}

impl CloseReason {
    /// The answer to a client close frame carrying `code`.
    pub fn answer_to(code: Option<u16>) -> CloseReason {
        CloseReason::Answer(match code {
            None => 1000,
            Some(c) if valid_close_code(c) => c,
            Some(_) => 1002,
        })
    }

    pub fn code(self) -> u16 {
        match self {
            CloseReason::Disconnect | CloseReason::IdleTimeout => 1001,
            CloseReason::SlowConsumer => 1008,
            CloseReason::TooBig => 1009,
            CloseReason::ProtocolError => 1002,
            CloseReason::InvalidUtf8 => 1007,
            CloseReason::Crash => 1011,
            CloseReason::Restart => 1012,
            CloseReason::Answer(code) => code,
        }
    }

    /// The close frame's reason text.
    pub fn text(self) -> &'static str {
        match self {
            CloseReason::Disconnect => "disconnect",
            CloseReason::IdleTimeout => "idle timeout",
            CloseReason::SlowConsumer => "slow consumer",
            CloseReason::TooBig => "message too big",
            CloseReason::ProtocolError => "protocol error",
            CloseReason::InvalidUtf8 => "invalid utf-8",
            CloseReason::Crash => "undecodable frame",
            CloseReason::Restart => "server restart",
            CloseReason::Answer(_) => "",
        }
    }

    /// Whether frames queued before the close are still written (a crash or a slow consumer
    /// drops them; every other close flushes them first).
    pub fn flushes(self) -> bool {
        !matches!(self, CloseReason::Crash | CloseReason::SlowConsumer)
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.code(), self.text())
    }
}

/// RFC 6455 §7.4: close codes a peer may send in a close frame. 1004-1006 and 1015 are
/// reserved (never on the wire), below 1000 and 1016-2999 are unassigned, 5000+ are invalid.
pub fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_texts_and_flush_rules() {
        assert_eq!(CloseReason::Disconnect.code(), 1001);
        assert_eq!(CloseReason::Crash.code(), 1011);
        assert!(!CloseReason::Crash.flushes());
        assert!(!CloseReason::SlowConsumer.flushes());
        assert!(CloseReason::Restart.flushes());
        assert_eq!(CloseReason::answer_to(None).code(), 1000);
        assert_eq!(CloseReason::answer_to(Some(4000)).code(), 4000);
        assert_eq!(CloseReason::answer_to(Some(1005)).code(), 1002);
        for ok in [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert!(valid_close_code(ok), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert!(!valid_close_code(bad), "{bad}");
        }
    }
}
