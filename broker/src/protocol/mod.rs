//! The wire protocol, pure (no tokio, no I/O): messages ([`message`]), the three serializers
//! and `vsn` negotiation ([`serializer`]), server frames and their encoding ([`frame`]),
//! WebSocket framing ([`ws`]), connect params ([`params`]), close codes ([`close`]), topic
//! patterns ([`topic`]) and the origin check ([`origin`]).
//! [`Transport`] names the two transports (spec §2, §6).
//! Section numbers ("spec §N.M") refer to `docs/PROTOCOL.md`.

pub mod close;
pub mod frame;
pub mod message;
pub mod origin;
pub mod params;
pub mod serializer;
pub mod topic;
pub mod ws;

/// Which transport carries a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    LongPoll,
}

pub use close::CloseReason;
pub use topic::TopicPattern;
pub use frame::{encode_broadcast, encode_message, encode_reply, EncodeError, Frame, Opcode};
pub use message::{DecodeError, Message, Payload, Ref, TopicField, TopicRef};
pub use serializer::{decode_binary, decode_text, Serializer};
