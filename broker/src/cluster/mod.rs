//! Many nodes as one endpoint, over Redis pub/sub (spec §8, §8.12; what `phoenix_pubsub_redis`
//! users know, without its every-node-gets-everything channel).
//!
//! ## Broadcasts
//! A broadcast is dispatched on its own node at once and published **once** on the Redis
//! channel of its topic (`{prefix}:b:{topic}`). A node is subscribed to a topic's channel only
//! while it has local subscribers of that topic (`Interest`: a count per topic, the Redis
//! `SUBSCRIBE` on 0→1 and `UNSUBSCRIBE` on 1→0), so Redis sends each broadcast only to the nodes
//! that have someone to deliver it to: with N nodes a broadcast costs 1 `PUBLISH` and at most
//! N deliveries, and a node's subscriptions are bounded by its distinct joined topics (at most
//! connections × `limits.max_channels_per_socket`). The first join of a topic on a node waits
//! for the `SUBSCRIBE` to be confirmed (bounded by `subscribe_timeout_ms`), so everything
//! published after a join reply reaches the joiner, whichever node publishes it. Each node
//! receives its own publish back from Redis and drops it by the process id in the message.
//!
//! ## Presence
//! Presence shards replicate their tracker CRDT over `{prefix}:p` (every node) and
//! `{prefix}:n:{node}` (transfers to one node): see [`crate::presence::replication`].
//!
//! ## Faults
//! Redis unreachable at start: [`Cluster::connect`] fails with the URL and the reason (the
//! server does not start). Lost while running: local traffic is untouched; broadcasts that could
//! not be published are counted (`cluster_publish_dropped_total`, the gap) and logged with the
//! outage's length when Redis is back; the subscriber reconnects with backoff and restores every
//! subscription in batches of [`SUBSCRIBE_BATCH`] channels (one command each, not one per
//! topic); presence replicas mark silent nodes down after `down_period_ms` and repair by
//! transfer when heartbeats resume.

mod redis_bus;
pub mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::METRICS;
use crate::presence::{Presence, Replication, ReplicationBus};
use crate::pubsub::{Broadcast, Bus, PubSub};
use wire::Channels;

/// Channels per `SUBSCRIBE` when restoring subscriptions after a reconnect.
pub const SUBSCRIBE_BATCH: usize = 1000;

/// `[cluster]`: run as one node of several behind one Redis.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://host:port/db` (or `rediss://`, `redis://:password@host`). Unset: a single node.
    pub redis_url: Option<String>,
    /// Prefix of every Redis channel: clusters sharing one Redis use different prefixes.
    pub channel_prefix: String,
    /// Presence heartbeat period (liveness and repair; deltas do not wait for it).
    pub heartbeat_ms: u64,
    /// A node silent this long is down: its presences leave every list (they come back if it
    /// does).
    pub down_period_ms: u64,
    /// A node silent this long is forgotten (Phoenix's `permdown_period`).
    pub permdown_period_ms: u64,
    /// Broadcasts queued for Redis; beyond, they are not published to other nodes (counted).
    pub publish_queue: usize,
    /// Longest a first join of a topic on this node waits for Redis to confirm the subscription.
    pub subscribe_timeout_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis_url: None,
            channel_prefix: "phx".into(),
            heartbeat_ms: 1000,
            down_period_ms: 3000,
            permdown_period_ms: 1_200_000,
            publish_queue: 65_536,
            subscribe_timeout_ms: 2000,
        }
    }
}

impl ClusterConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.redis_url.is_none() {
            return Ok(());
        }
        if self.heartbeat_ms == 0 || self.down_period_ms < 2 * self.heartbeat_ms {
            return Err("cluster.down_period_ms must be at least twice cluster.heartbeat_ms (> 0)".into());
        }
        if self.permdown_period_ms < self.down_period_ms {
            return Err("cluster.permdown_period_ms must not be shorter than cluster.down_period_ms".into());
        }
        if self.channel_prefix.is_empty() || self.publish_queue == 0 {
            return Err("cluster.channel_prefix and cluster.publish_queue must not be empty".into());
        }
        Ok(())
    }

    /// The replication settings for presence.
    pub fn timeouts(&self) -> tracker::Timeouts {
        tracker::Timeouts { down_period_ms: self.down_period_ms, permdown_period_ms: self.permdown_period_ms }
    }
}

/// This node's link to the others. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    node: String,
    /// Random per process: a node drops its own broadcasts when Redis echoes them.
    origin: u64,
    channels: Channels,
    publish: mpsc::Sender<(Vec<u8>, Vec<u8>)>,
    subscriber: mpsc::UnboundedSender<SubCmd>,
    interest: Mutex<HashMap<Arc<str>, Interest>>,
    /// Where incoming messages go (set right after the pubsub and presence shards start).
    targets: OnceLock<(PubSub, Presence)>,
    connected: Arc<AtomicBool>,
    subscribe_timeout: Duration,
}

/// A topic's local subscriptions on this node, and whether Redis confirmed the subscription.
struct Interest {
    count: usize,
    confirmed: Arc<AtomicBool>,
}

/// Commands to the subscriber task (sent under the interest lock, so per topic they arrive in
/// the order the counts changed). The queue is unbounded but its growth is: one `Changed` per
/// 0↔1 transition of a topic's count and one `Wait` per join that finds its topic unconfirmed,
/// and the subscriber drains it at once (batched), or within 5 s of a stalled Redis command,
/// after which it reconnects (`redis_bus::bounded`), or at once while Redis is down.
enum SubCmd {
    /// The topic's count went 0→1 or 1→0: reconcile its subscription with the count.
    Changed(Arc<str>),
    /// Tell me when the topic's subscription is confirmed (or the bus is down).
    Wait { topic: Arc<str>, done: oneshot::Sender<()> },
}

impl Cluster {
    /// Connects to Redis (failing with a clear message if it cannot) and starts the publisher
    /// and subscriber tasks. Messages are routed once [`Cluster::attach`] is called.
    pub async fn connect(config: &ClusterConfig, node: &str) -> Result<Cluster, String> {
        let url = config.redis_url.as_deref().ok_or("cluster.redis_url is not set")?;
        let shown = redact_url(url);
        let client = redis::Client::open(url).map_err(|e| format!("cluster.redis_url {shown:?}: {e}"))?;
        let conn = tokio::time::timeout(Duration::from_secs(5), client.get_multiplexed_async_connection())
            .await
            .map_err(|_| format!("cannot reach Redis at {shown}: no answer within 5 s"))?
            .map_err(|e| format!("cannot reach Redis at {shown}: {e}"))?;
        let channels = Channels::new(&config.channel_prefix);
        let (publish, publish_rx) = mpsc::channel(config.publish_queue);
        let (subscriber, subscriber_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            node: node.to_string(),
            origin: rand::random(),
            channels: channels.clone(),
            publish,
            subscriber,
            interest: Mutex::new(HashMap::new()),
            targets: OnceLock::new(),
            connected: Arc::new(AtomicBool::new(true)),
            subscribe_timeout: Duration::from_millis(config.subscribe_timeout_ms),
        });
        METRICS.cluster_connected.set(1);
        tokio::spawn(redis_bus::publisher(client.clone(), conn, publish_rx, inner.connected.clone(), shown.clone()));
        let cluster = Cluster { inner };
        let statics = vec![channels.presence.clone().into_bytes(), channels.node(node).into_bytes()];
        tokio::spawn(redis_bus::subscriber(client, cluster.clone(), subscriber_rx, statics, shown));
        Ok(cluster)
    }

    /// Routes incoming broadcasts to `pubsub` and presence messages to `presence`.
    pub fn attach(&self, pubsub: PubSub, presence: Presence) {
        let _ = self.inner.targets.set((pubsub, presence));
    }

    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// A message arrived on `channel`. Broadcasts are dispatched in arrival order; dispatch
    /// waits only while a pubsub shard's queue is full (then Redis buffers for us, up to its
    /// pub/sub output limit, beyond which it disconnects us and we resubscribe).
    async fn incoming(&self, channel: &[u8], payload: &[u8]) {
        let Some((pubsub, presence)) = self.inner.targets.get() else { return };
        if let Some(topic) = self.inner.channels.topic_of(channel) {
            match wire::decode_broadcast(topic, payload) {
                Ok((origin, _)) if origin == self.inner.origin => {}
                Ok((_, msg)) => {
                    METRICS.cluster_received.inc();
                    pubsub.local_broadcast(Arc::new(msg), None, None).await;
                }
                Err(e) => tracing::warn!(reason = e.0, "cluster: malformed broadcast ignored"),
            }
        } else {
            match wire::decode_replication(payload) {
                Ok(msg) => presence.deliver(msg),
                Err(e) => tracing::warn!(reason = e.0, "cluster: malformed presence message ignored"),
            }
        }
    }

    /// Topics this node is subscribed to on Redis (to restore after a reconnect).
    fn wanted_topics(&self) -> Vec<Arc<str>> {
        self.inner.interest.lock().keys().cloned().collect()
    }
}

#[async_trait::async_trait]
impl Bus for Cluster {
    fn publish(&self, msg: &Broadcast) {
        let channel = self.inner.channels.topic(&msg.topic);
        let bytes = wire::encode_broadcast(self.inner.origin, msg);
        if !self.inner.connected.load(Ordering::Relaxed) || self.inner.publish.try_send((channel, bytes)).is_err() {
            METRICS.cluster_publish_dropped.inc();
        }
    }

    async fn retain(&self, topic: &Arc<str>) {
        let confirmed = {
            let mut interest = self.inner.interest.lock();
            match interest.get_mut(topic) {
                Some(i) => {
                    i.count += 1;
                    i.confirmed.clone()
                }
                None => {
                    let confirmed = Arc::new(AtomicBool::new(false));
                    interest.insert(topic.clone(), Interest { count: 1, confirmed: confirmed.clone() });
                    let _ = self.inner.subscriber.send(SubCmd::Changed(topic.clone()));
                    confirmed
                }
            }
        };
        if confirmed.load(Ordering::Acquire) {
            return;
        }
        let (done, wait) = oneshot::channel();
        if self.inner.subscriber.send(SubCmd::Wait { topic: topic.clone(), done }).is_ok() {
            let _ = tokio::time::timeout(self.inner.subscribe_timeout, wait).await;
        }
    }

    fn release(&self, topic: &Arc<str>) {
        let mut interest = self.inner.interest.lock();
        if let Some(i) = interest.get_mut(topic) {
            i.count -= 1;
            if i.count == 0 {
                interest.remove(topic);
                let _ = self.inner.subscriber.send(SubCmd::Changed(topic.clone()));
            }
        }
    }
}

impl ReplicationBus for Cluster {
    fn send(&self, to: Option<&str>, msg: &Replication) {
        let channel = match to {
            None => self.inner.channels.presence.clone(),
            Some(node) => self.inner.channels.node(node),
        };
        if self.inner.publish.try_send((channel.into_bytes(), wire::encode_replication(msg))).is_err() {
            METRICS.cluster_presence_dropped.inc();
        }
    }
}

/// The URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://<redacted>@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(redact_url("redis://:hunter2@10.0.0.1:6379/0"), "redis://<redacted>@10.0.0.1:6379/0");
        assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn config_checks_periods() {
        let mut c = ClusterConfig { redis_url: Some("redis://127.0.0.1".into()), ..Default::default() };
        assert!(c.validate().is_ok());
        c.down_period_ms = c.heartbeat_ms;
        assert!(c.validate().is_err());
    }
}
