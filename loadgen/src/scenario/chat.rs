//! The chat scenario: many small rooms; every member posts at random (Poisson) intervals and
//! receives the room's messages. Reported like fanout (deliveries, losses, latency).

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

pub const ENTRY: Entry = Entry::of::<ChatArgs>(
    "chat",
    "Many small rooms; every member posts at random (Poisson) intervals and receives the room's messages",
);

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct ChatArgs {
    #[command(flatten)]
    pub common: Common,
    /// Rooms (count).
    #[arg(long, default_value_t = 100)]
    pub rooms: usize,
    /// Members per room (count); each member is one connection joined to its room.
    #[arg(long, short = 'k', default_value_t = 10)]
    pub room_size: usize,
    /// Mean interval between a member's posts, milliseconds (exponentially distributed).
    #[arg(long, default_value_t = 5000.0)]
    pub post_interval_ms: f64,
    /// Approximate payload size, bytes.
    #[arg(long, default_value_t = 200)]
    pub payload_bytes: usize,
    /// Event name of the posts.
    #[arg(long, default_value = "new_msg")]
    pub event: String,
}

/// Roles of the chat scenario: member i of room i / K posts to its room (stream i).
pub fn chat_roles(rooms: usize, size: usize, post_interval: Duration) -> Vec<Role> {
    (0..rooms * size)
        .map(|i| {
            let r = (i / size.max(1)) as u32;
            Role { idx: i, topics: vec![(r, true)], streams: vec![(r, i as u32)], sched: Sched::Poisson(post_interval) }
        })
        .collect()
}

impl Scenario for ChatArgs {
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
        "chat:"
    }
    fn total_connections(&self) -> usize {
        self.rooms * self.room_size
    }
    fn workload(&self, ctx: &Ctx) -> Arc<dyn Workload> {
        let post_interval = Duration::from_secs_f64(self.post_interval_ms.max(0.001) / 1000.0);
        let roles = chat_roles(self.rooms, self.room_size, post_interval);
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
    use super::*;

    #[test]
    fn every_member_posts_to_its_room() {
        let roles = chat_roles(3, 4, Duration::from_millis(100));
        assert_eq!(roles.len(), 12);
        assert_eq!(roles[5].topics, vec![(1, true)]);
        assert_eq!(roles[5].streams, vec![(1, 5)]);
        assert!(matches!(roles[11].sched, Sched::Poisson(d) if d == Duration::from_millis(100)));
    }
}
