//! Test setup written once: an endpoint with in-memory pubsub and presence, and sockets on
//! in-memory outboxes (no network), for unit tests of the socket and channel logic.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::channel::ChannelEnv;
use crate::config::SocketLimits;
use crate::outbox::{Outbox, OutboxLimits};
use crate::presence::Presence;
use crate::protocol::{Serializer, Transport};
use crate::pubsub::PubSub;
use crate::socket::{AllowAll, Endpoint, Router, Socket, SocketParams};

/// An endpoint on one pubsub and presence shard, with default limits.
pub fn endpoint(router: Router) -> Arc<Endpoint> {
    endpoint_with(router, SocketLimits::default())
}

/// An endpoint with these limits.
pub fn endpoint_with(router: Router, limits: SocketLimits) -> Arc<Endpoint> {
    let pubsub = PubSub::start(1);
    let env = Arc::new(ChannelEnv { presence: Presence::start(pubsub.clone(), 1, 0), pubsub, limits });
    Arc::new(Endpoint { router, handler: Arc::new(AllowAll), env })
}

/// A V2 WebSocket socket whose frames land in the returned outbox.
pub async fn socket(endpoint: Arc<Endpoint>, conn_id: u64) -> (Socket, Arc<Outbox>) {
    let outbox = Arc::new(Outbox::new(OutboxLimits { max_frames: 1000, max_bytes: 1 << 20 }));
    let socket = Socket::start(
        endpoint,
        SocketParams {
            conn_id,
            serializer: Serializer::V2,
            transport: Transport::WebSocket,
            assigns: Default::default(),
            params: crate::protocol::params::ConnectParams::from_value(serde_json::Value::Null),
            outbox: outbox.clone(),
        },
    )
    .await;
    (socket, outbox)
}

/// Everything queued on an outbox, as JSON values (V2 text frames).
pub fn drain(outbox: &Outbox) -> Vec<serde_json::Value> {
    let mut q = VecDeque::new();
    outbox.drain_into(&mut q);
    let n: usize = q.iter().map(|f| f.len()).sum();
    outbox.release(n);
    q.iter().map(|f| serde_json::from_slice(&f.body()).expect("a JSON frame")).collect()
}
