//! What travels on Redis: the channel names and the two message kinds.
//!
//! * `{prefix}:b:{topic}`: broadcasts of one topic. Binary: `B1`, the publishing process's id
//!   (8 bytes, to drop its own echo), the `exclude_socket` id and the event (each a 2-byte
//!   length and bytes), the payload kind (0 JSON, 1 binary) and the payload bytes as given by
//!   the publisher (relayed byte for byte, as on one node).
//! * `{prefix}:p` (every node) and `{prefix}:n:{node}` (one node): presence replication
//!   ([`Replication`]), JSON after `P1`.

use bytes::Bytes;

use crate::presence::Replication;
use crate::protocol::Payload;
use crate::pubsub::Broadcast;

/// Redis channel names of one cluster (one prefix).
#[derive(Clone, Debug)]
pub struct Channels {
    broadcast: String,
    pub presence: String,
    direct: String,
}

impl Channels {
    pub fn new(prefix: &str) -> Channels {
        Channels { broadcast: format!("{prefix}:b:"), presence: format!("{prefix}:p"), direct: format!("{prefix}:n:") }
    }

    /// The channel of a topic's broadcasts.
    pub fn topic(&self, topic: &str) -> Vec<u8> {
        let mut c = Vec::with_capacity(self.broadcast.len() + topic.len());
        c.extend_from_slice(self.broadcast.as_bytes());
        c.extend_from_slice(topic.as_bytes());
        c
    }

    /// The topic of a broadcast channel, or `None` for another channel.
    pub fn topic_of<'a>(&self, channel: &'a [u8]) -> Option<&'a str> {
        std::str::from_utf8(channel.strip_prefix(self.broadcast.as_bytes())?).ok()
    }

    /// A node's own channel (transfers are answered to one node).
    pub fn node(&self, node: &str) -> String {
        format!("{}{node}", self.direct)
    }
}

/// Why a message from the bus was not understood.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// Encodes a broadcast for the bus.
pub fn encode_broadcast(origin: u64, msg: &Broadcast) -> Vec<u8> {
    let exclude = msg.exclude_socket.as_deref().unwrap_or("");
    let (kind, body) = match &msg.payload {
        Payload::Json(b) => (0u8, b),
        Payload::Binary(b) => (1u8, b),
    };
    let mut out = Vec::with_capacity(2 + 8 + 2 + exclude.len() + 2 + msg.event.len() + 1 + body.len());
    out.extend_from_slice(b"B1");
    out.extend_from_slice(&origin.to_be_bytes());
    put_str(&mut out, exclude);
    put_str(&mut out, &msg.event);
    out.push(kind);
    out.extend_from_slice(body);
    out
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Events and socket ids are bounded far below 64 KiB (limits.max_event_bytes, the socket
    // id's length); a longer one is cut rather than corrupting the frame.
    let n = s.len().min(u16::MAX as usize);
    out.extend_from_slice(&(n as u16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..n]);
}

/// A broadcast from the bus: its origin process and the message.
pub fn decode_broadcast(topic: &str, bytes: &[u8]) -> Result<(u64, Broadcast), Malformed> {
    let rest = bytes.strip_prefix(b"B1").ok_or(Malformed("not a broadcast"))?;
    if rest.len() < 8 {
        return Err(Malformed("short header"));
    }
    let origin = u64::from_be_bytes(rest[..8].try_into().expect("8 bytes"));
    let rest = &rest[8..];
    let (exclude, rest) = take_str(rest)?;
    let (event, rest) = take_str(rest)?;
    let (&kind, body) = rest.split_first().ok_or(Malformed("no payload kind"))?;
    let payload = match kind {
        0 => Payload::Json(Bytes::copy_from_slice(body)),
        1 => Payload::Binary(Bytes::copy_from_slice(body)),
        _ => return Err(Malformed("unknown payload kind")),
    };
    let mut b = Broadcast::new(topic, event, payload);
    if !exclude.is_empty() {
        b.exclude_socket = Some(exclude.into());
    }
    Ok((origin, b))
}

fn take_str(b: &[u8]) -> Result<(&str, &[u8]), Malformed> {
    if b.len() < 2 {
        return Err(Malformed("short string length"));
    }
    let n = u16::from_be_bytes([b[0], b[1]]) as usize;
    let b = &b[2..];
    if b.len() < n {
        return Err(Malformed("short string"));
    }
    let s = std::str::from_utf8(&b[..n]).map_err(|_| Malformed("string not UTF-8"))?;
    Ok((s, &b[n..]))
}

pub fn encode_replication(msg: &Replication) -> Vec<u8> {
    let mut out = b"P1".to_vec();
    serde_json::to_writer(&mut out, msg).expect("replication messages serialize");
    out
}

pub fn decode_replication(bytes: &[u8]) -> Result<Replication, Malformed> {
    let rest = bytes.strip_prefix(b"P1").ok_or(Malformed("not a presence message"))?;
    serde_json::from_slice(rest).map_err(|_| Malformed("presence message not understood"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracker::{Context, ReplicaRef};

    #[test]
    fn broadcasts_round_trip_byte_for_byte() {
        let mut b = Broadcast::new("room:1", "new_msg", Payload::Json(Bytes::from_static(br#"{"body": "hi"}"#)));
        b.exclude_socket = Some("user_socket:7".into());
        let wire = encode_broadcast(42, &b);
        let (origin, back) = decode_broadcast("room:1", &wire).unwrap();
        assert_eq!(origin, 42);
        assert_eq!(&*back.topic, "room:1");
        assert_eq!(back.event, "new_msg");
        assert_eq!(back.exclude_socket.as_deref(), Some("user_socket:7"));
        assert_eq!(back.payload, b.payload);

        let bin = Broadcast::new("t", "e", Payload::Binary(Bytes::from_static(&[0, 1, 255])));
        let (_, back) = decode_broadcast("t", &encode_broadcast(1, &bin)).unwrap();
        assert_eq!(back.payload, Payload::Binary(Bytes::from_static(&[0, 1, 255])));
        assert!(back.exclude_socket.is_none());
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for bad in [&b""[..], b"B1", b"B1\0\0\0\0\0\0\0\0\0\x09ab", b"B1\0\0\0\0\0\0\0\0\0\0\0\0\x07{}", b"XX"] {
            assert!(decode_broadcast("t", bad).is_err(), "{bad:?}");
        }
        assert!(decode_replication(b"P1{").is_err());
    }

    #[test]
    fn channel_names() {
        let c = Channels::new("phx");
        assert_eq!(c.topic("room:1"), b"phx:b:room:1");
        assert_eq!(c.topic_of(b"phx:b:room:1"), Some("room:1"));
        assert_eq!(c.topic_of(b"phx:p"), None);
        assert_eq!(c.node("a"), "phx:n:a");
    }

    #[test]
    fn replication_round_trips() {
        let m = Replication::TransferReq { shard: 1, shards: 2, from: ReplicaRef::new("a", 3), context: Context::new() };
        assert_eq!(decode_replication(&encode_replication(&m)).unwrap(), m);
    }
}
