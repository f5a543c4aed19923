//! The connect scenario: ramp to N connections at a given rate, each joining T topics; connect
//! and join latency, failures by kind, time to all-connected; then hold them (heartbeating)
//! for --duration. Runs on the pub/sub connection loop with subscribe-only roles.

use super::pubsub::{local_roles, PubSub, Role, Sched};
use super::{Entry, Scenario};
use crate::engine::{Ctx, Workload};
use crate::flags::Common;
use crate::report::Summary;
use crate::result::WorkerResult;
use clap::Args;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub const ENTRY: Entry = Entry::of::<ConnectArgs>(
    "connect",
    "Ramp to N connections at a given rate, each joining T topics; connect/join latency, failures by kind, time to all-connected; then hold them (heartbeating) for --duration",
);

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub common: Common,
    /// Connections to open (count, all processes together).
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub connections: usize,
    /// Topics each connection joins (count).
    #[arg(long, default_value_t = 1)]
    pub joins_per_conn: usize,
    /// Distinct topics (count); connection i joins topics (i*J + j) mod T.
    #[arg(long, default_value_t = 1)]
    pub topics: usize,
}

/// Roles of the connect scenario.
pub fn connect_roles(n: usize, joins: usize, topics: usize) -> Vec<Role> {
    let topics = topics.max(1);
    (0..n)
        .map(|i| {
            let mut ts: Vec<(u32, bool)> = (0..joins).map(|j| (((i * joins + j) % topics) as u32, false)).collect();
            ts.sort();
            ts.dedup();
            Role { idx: i, topics: ts, streams: vec![], sched: Sched::None }
        })
        .collect()
}

impl Scenario for ConnectArgs {
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
        self.connections
    }
    fn workload(&self, ctx: &Ctx) -> Arc<dyn Workload> {
        let (w, n) = (ctx.worker, ctx.workers);
        Arc::new(PubSub {
            prefix: self.topic_prefix(),
            event: "msg".into(),
            payload_bytes: 0,
            roles: local_roles(connect_roles(self.connections, self.joins_per_conn, self.topics), w, n),
            all_local: n == 1,
            seed: self.common.seed,
            join_timeline: true,
            drain_waits: false,
        })
    }
    fn timeline_metric(&self) -> &'static str {
        "connect_and_join"
    }
    fn summarize(&self, _r: &WorkerResult, _out: &mut Summary) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_spread_joins_over_topics() {
        let roles = connect_roles(4, 3, 5);
        assert_eq!(roles[1].topics, vec![(0, false), (3, false), (4, false)]);
        assert!(roles.iter().all(|r| r.streams.is_empty() && matches!(r.sched, Sched::None)));
        // more joins than topics: each topic once
        assert_eq!(connect_roles(1, 4, 2)[0].topics, vec![(0, false), (1, false)]);
    }
}
