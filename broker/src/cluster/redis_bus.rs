//! The two tasks that talk to Redis: the publisher (one multiplexed connection, `PUBLISH`es
//! pipelined in batches) and the subscriber (one pub/sub connection, its subscriptions kept
//! equal to the topics with local subscribers, restored in batches after a reconnect).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink};
use tokio::sync::{mpsc, oneshot};

use super::{Cluster, SubCmd, SUBSCRIBE_BATCH};
use crate::metrics::METRICS;

/// Messages per pipelined round trip.
const PUBLISH_BATCH: usize = 256;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Publishes what [`super::Cluster`] queues. On a lost connection it counts what it could not
/// publish, reconnects with backoff, and logs the gap when Redis is back.
pub(super) async fn publisher(
    client: redis::Client,
    mut conn: MultiplexedConnection,
    mut rx: mpsc::Receiver<(Vec<u8>, Vec<u8>)>,
    ok: Arc<AtomicBool>,
    shown: String,
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while rx.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let n = batch.len() as u64;
        let mut pipe = redis::pipe();
        for (channel, payload) in batch.drain(..) {
            pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
        }
        match pipe.query_async::<()>(&mut conn).await {
            Ok(()) => METRICS.cluster_published.add(n),
            Err(e) => {
                METRICS.cluster_publish_dropped.add(n);
                ok.store(false, Ordering::Relaxed);
                METRICS.cluster_connected.set(0);
                METRICS.cluster_disconnects.inc();
                tracing::error!(redis = %shown, error = %e, "cluster: Redis lost (publisher); cross-node broadcasts are not sent until it is back, local traffic continues");
                let lost = Instant::now();
                let dropped_before = METRICS.cluster_publish_dropped.get();
                conn = reconnect(&client, &mut rx, &shown).await;
                ok.store(true, Ordering::Relaxed);
                METRICS.cluster_connected.set(1);
                tracing::warn!(
                    redis = %shown,
                    gap_ms = lost.elapsed().as_millis() as u64,
                    not_published = METRICS.cluster_publish_dropped.get() - dropped_before + n,
                    "cluster: Redis back (publisher)"
                );
            }
        }
    }
}

/// Reconnects with jittered exponential backoff; what is queued meanwhile is dropped (counted).
async fn reconnect(client: &redis::Client, rx: &mut mpsc::Receiver<(Vec<u8>, Vec<u8>)>, shown: &str) -> MultiplexedConnection {
    let mut backoff = Duration::from_millis(100);
    loop {
        while rx.try_recv().is_ok() {
            METRICS.cluster_publish_dropped.inc();
        }
        match tokio::time::timeout(Duration::from_secs(5), client.get_multiplexed_async_connection()).await {
            Ok(Ok(c)) => return c,
            Ok(Err(e)) => tracing::debug!(redis = %shown, error = %e, "cluster: reconnect failed"),
            Err(_) => tracing::debug!(redis = %shown, "cluster: reconnect timed out"),
        }
        tokio::time::sleep(jitter(backoff)).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + rand::random::<f64>())
}

/// Keeps the Redis subscriptions equal to the topics with local subscribers (plus this node's
/// presence channels) and hands every message to [`Cluster::incoming`].
pub(super) async fn subscriber(
    client: redis::Client,
    cluster: Cluster,
    mut rx: mpsc::UnboundedReceiver<SubCmd>,
    statics: Vec<Vec<u8>>,
    shown: String,
) {
    let mut state = Subscriptions::default();
    let mut backoff = Duration::from_millis(100);
    let mut lost_at: Option<Instant> = None;
    let mut cmds = Vec::with_capacity(1024);
    loop {
        let pubsub = match tokio::time::timeout(Duration::from_secs(5), client.get_async_pubsub()).await {
            Ok(Ok(p)) => p,
            failed => {
                if let Ok(Err(e)) = failed {
                    tracing::debug!(redis = %shown, error = %e, "cluster: subscriber connect failed");
                }
                // Down: joins do not wait for Redis.
                let sleep = tokio::time::sleep(jitter(backoff));
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        _ = &mut sleep => break,
                        n = rx.recv_many(&mut cmds, 1024) => {
                            if n == 0 { return; }
                            for c in cmds.drain(..) {
                                if let SubCmd::Wait { done, .. } = c { let _ = done.send(()); }
                            }
                        }
                    }
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        // Restore: this node's channels, then every wanted topic, SUBSCRIBE_BATCH per command.
        let topics = cluster.wanted_topics();
        let mut restored = bounded(sink.subscribe(statics.clone())).await.is_ok();
        for chunk in topics.chunks(SUBSCRIBE_BATCH) {
            if !restored {
                break;
            }
            let channels: Vec<Vec<u8>> = chunk.iter().map(|t| cluster.inner.channels.topic(t)).collect();
            restored = bounded(sink.subscribe(channels)).await.is_ok();
            if restored {
                for t in chunk {
                    state.subscribed.insert(t.clone());
                }
            }
        }
        if !restored {
            state.lost(&cluster);
            tokio::time::sleep(jitter(backoff)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        }
        backoff = Duration::from_millis(100);
        state.connected = true;
        METRICS.cluster_subscriptions.set((state.subscribed.len() + statics.len()) as i64);
        // Subscriptions made before a topic's count changed again are reconciled below.
        state.confirm_all(&cluster);
        if let Some(at) = lost_at.take() {
            tracing::warn!(redis = %shown, gap_ms = at.elapsed().as_millis() as u64, topics = topics.len(), "cluster: Redis back (subscriber); subscriptions restored");
        }
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(m) => {
                        let channel = m.get_channel_name().as_bytes().to_vec();
                        cluster.incoming(&channel, m.get_payload_bytes()).await;
                    }
                    None => break,
                },
                n = rx.recv_many(&mut cmds, 1024) => {
                    if n == 0 {
                        return;
                    }
                    if state.apply(&cluster, &mut sink, cmds.drain(..)).await.is_err() {
                        break;
                    }
                    METRICS.cluster_subscriptions.set((state.subscribed.len() + statics.len()) as i64);
                }
            }
        }
        METRICS.cluster_disconnects.inc();
        tracing::error!(redis = %shown, "cluster: Redis lost (subscriber); reconnecting, local traffic continues");
        lost_at = Some(Instant::now());
        state.lost(&cluster);
    }
}

/// A (un)subscribe Redis did not confirm within [`COMMAND_TIMEOUT`], or an error: the
/// connection is treated as lost (the subscriber reconnects), so a stalled Redis cannot make
/// the subscriber's command queue grow while it waits.
#[derive(Debug)]
pub(super) struct Stalled;

const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

async fn bounded(f: impl std::future::Future<Output = redis::RedisResult<()>>) -> Result<(), Stalled> {
    match tokio::time::timeout(COMMAND_TIMEOUT, f).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(Stalled),
    }
}

/// The subscriber's view: topics subscribed on the current connection, and joins waiting for
/// a subscription to be confirmed.
#[derive(Default)]
struct Subscriptions {
    connected: bool,
    subscribed: HashSet<Arc<str>>,
    waiters: HashMap<Arc<str>, Vec<oneshot::Sender<()>>>,
}

impl Subscriptions {
    /// Applies a batch of commands: one SUBSCRIBE and one UNSUBSCRIBE for the whole batch,
    /// each topic reconciled with its current count (a topic joined and left within the batch
    /// costs nothing).
    async fn apply(&mut self, cluster: &Cluster, sink: &mut PubSubSink, cmds: impl Iterator<Item = SubCmd>) -> Result<(), Stalled> {
        let mut touched: Vec<Arc<str>> = Vec::new();
        for c in cmds {
            match c {
                SubCmd::Changed(topic) => touched.push(topic),
                SubCmd::Wait { topic, done } => {
                    if self.subscribed.contains(&topic) || !self.connected {
                        let _ = done.send(());
                    } else {
                        self.waiters.entry(topic.clone()).or_default().push(done);
                        touched.push(topic);
                    }
                }
            }
        }
        touched.sort();
        touched.dedup();
        let (mut add, mut remove) = (Vec::new(), Vec::new());
        {
            let interest = cluster.inner.interest.lock();
            for t in touched {
                let wanted = interest.contains_key(&t);
                let have = self.subscribed.contains(&t);
                if wanted && !have {
                    add.push(t);
                } else if !wanted && have {
                    remove.push(t);
                } else if wanted {
                    // Already subscribed: confirm (a re-created interest has a fresh flag).
                    if let Some(i) = interest.get(&t) {
                        i.confirmed.store(true, Ordering::Release);
                    }
                    for w in self.waiters.remove(&t).unwrap_or_default() {
                        let _ = w.send(());
                    }
                } else {
                    for w in self.waiters.remove(&t).unwrap_or_default() {
                        let _ = w.send(());
                    }
                }
            }
        }
        for chunk in remove.chunks(SUBSCRIBE_BATCH) {
            let channels: Vec<Vec<u8>> = chunk.iter().map(|t| cluster.inner.channels.topic(t)).collect();
            bounded(sink.unsubscribe(channels)).await?;
            for t in chunk {
                self.subscribed.remove(t);
            }
        }
        for chunk in add.chunks(SUBSCRIBE_BATCH) {
            let channels: Vec<Vec<u8>> = chunk.iter().map(|t| cluster.inner.channels.topic(t)).collect();
            bounded(sink.subscribe(channels)).await?;
            let interest = cluster.inner.interest.lock();
            for t in chunk {
                self.subscribed.insert(t.clone());
                if let Some(i) = interest.get(t) {
                    i.confirmed.store(true, Ordering::Release);
                }
                for w in self.waiters.remove(t).unwrap_or_default() {
                    let _ = w.send(());
                }
            }
        }
        Ok(())
    }

    /// After a (re)connect restored `subscribed`: confirm those topics, subscribe the rest.
    fn confirm_all(&mut self, cluster: &Cluster) {
        let interest = cluster.inner.interest.lock();
        for t in &self.subscribed {
            if let Some(i) = interest.get(t) {
                i.confirmed.store(true, Ordering::Release);
            }
        }
        for (_, ws) in self.waiters.drain() {
            for w in ws {
                let _ = w.send(());
            }
        }
        // Topics wanted now but not restored (joined during the restore) get a command.
        for t in interest.keys() {
            if !self.subscribed.contains(t) {
                let _ = cluster.inner.subscriber.send(SubCmd::Changed(t.clone()));
            }
        }
    }

    /// The connection is gone: nothing is subscribed, nobody waits.
    fn lost(&mut self, cluster: &Cluster) {
        self.connected = false;
        self.subscribed.clear();
        METRICS.cluster_subscriptions.set(0);
        for i in cluster.inner.interest.lock().values() {
            i.confirmed.store(false, Ordering::Release);
        }
        for (_, ws) in self.waiters.drain() {
            for w in ws {
                let _ = w.send(());
            }
        }
    }
}
