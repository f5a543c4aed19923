//! The fanout scenario: N subscribers over T topics, P publishers pushing at a fixed total
//! rate; the server relays every push to every subscriber of the topic. Per-delivery latency,
//! time until the last subscriber has each broadcast, deliveries/s, lost / duplicated /
//! out-of-order deliveries.

use super::pubsub::{summarize_deliveries, PubSub, Role, Sched};
use super::{Entry, Scenario};
use crate::engine::{Ctx, Workload};
use crate::flags::Common;
use crate::report::Summary;
use crate::result::WorkerResult;
use clap::Args;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

pub const ENTRY: Entry = Entry::of::<FanoutArgs>(
    "fanout",
    "N subscribers over T topics, P publishers pushing at a total rate; the server relays every push to every subscriber of the topic. Per-delivery latency, time until the last subscriber has each broadcast, deliveries/s, lost/duplicated/out-of-order deliveries",
);

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    /// Subscriber connections (count); subscriber i joins topic i mod T.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub subscribers: usize,
    /// Topics (count).
    #[arg(long, default_value_t = 1)]
    pub topics: usize,
    /// Publisher connections (count); each publishes to its share of the topics.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Publish rate, broadcasts per second (all publishers together).
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Approximate payload size, bytes.
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,
    /// Event name of the pushes.
    #[arg(long, default_value = "msg")]
    pub event: String,
}

/// Roles of the fanout scenario: subscribers 0..n (topic i mod T), publishers n..n+p.
pub fn fanout_roles(n: usize, topics: usize, publishers: usize, rate: f64) -> Vec<Role> {
    let t = topics.max(1);
    let mut roles: Vec<Role> =
        (0..n).map(|i| Role { idx: i, topics: vec![((i % t) as u32, true)], streams: vec![], sched: Sched::None }).collect();
    let p = publishers;
    for j in 0..p {
        let mine: Vec<u32> =
            if p <= t { (0..t).filter(|x| x % p == j).map(|x| x as u32).collect() } else { vec![(j % t) as u32] };
        let interval = if rate > 0.0 { Duration::from_secs_f64(p as f64 / rate) } else { Duration::from_secs(3600) };
        roles.push(Role {
            idx: n + j,
            topics: mine.iter().map(|&x| (x, false)).collect(),
            streams: mine.iter().map(|&x| (x, (j * t) as u32 + x)).collect(),
            sched: Sched::Fixed(interval),
        });
    }
    roles
}

impl Scenario for FanoutArgs {
    fn name(&self) -> &'static str {
        ENTRY.name
    }
    fn common(&self) -> &Common {
        &self.common
    }
    fn args_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
    fn default_topic_prefix(&self) -> &'static str {
        "bench:"
    }
    fn total_connections(&self) -> usize {
        self.subscribers + self.publishers
    }
    fn workload(&self, ctx: &Ctx) -> Arc<dyn Workload> {
        let roles = fanout_roles(self.subscribers, self.topics, self.publishers, self.rate);
        Arc::new(PubSub::delivering(self.topic_prefix(), self.event.clone(), self.payload_bytes, roles, ctx, self.common.seed))
    }
    fn timeline_metric(&self) -> &'static str {
        "delivery"
    }
    fn summarize(&self, r: &WorkerResult, out: &mut Summary) {
        summarize_deliveries(r, out);
    }
}

#[cfg(test)]
mod tests {
    use super::super::pubsub::local_roles;
    use super::*;

    #[test]
    fn roles_split_topics_between_publishers() {
        let roles = fanout_roles(6, 4, 2, 10.0);
        assert_eq!(roles.len(), 8);
        assert_eq!(roles[5].topics, vec![(1, true)]);
        // publisher 1 (connection 7) publishes to topics 1 and 3, streams 4+1 and 4+3
        assert_eq!(roles[7].idx, 7);
        assert_eq!(roles[7].streams, vec![(1, 5), (3, 7)]);
        assert!(matches!(roles[7].sched, Sched::Fixed(d) if d == Duration::from_millis(200)));
        // worker 1 of 2 keeps the odd connections
        let mine = local_roles(roles, 1, 2);
        assert_eq!(mine.iter().map(|r| r.idx).collect::<Vec<_>>(), vec![1, 3, 5, 7]);
    }
}
