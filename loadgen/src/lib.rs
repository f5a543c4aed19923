//! loadgen: an open-loop load generator for Phoenix Channels + Presence servers.
//!
//! It speaks only the wire protocol (V2 JSON serializer over WebSocket), so it works against any
//! Phoenix-compatible server. See `loadgen --help` and bench-results/README.md.

pub mod cli;
pub mod compare;
pub mod coord;
pub mod engine;
pub mod frame;
pub mod hist;
pub mod local;
pub mod presence;
pub mod presence_sc;
pub mod pubsub;
pub mod report;
pub mod result;
pub mod summarize;
pub mod sysinfo;
