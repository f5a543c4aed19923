//! loadgen: an open-loop load generator for Phoenix Channels + Presence servers.
//!
//! It speaks only the wire protocol (V2 JSON serializer over WebSocket), so it works against any
//! Phoenix-compatible server. See `loadgen --help` and bench-results/README.md.
//!
//! Modules, from the bottom up (each uses only modules above it in this list):
//!
//! - leaves: [`error`], [`flags`], [`frame`], [`hist`], [`rng`], [`sysinfo`], [`result`],
//!   [`compare`], [`summarize`], [`scrape`] (the server's fan-out time from its `/metrics`);
//!   [`ws`], the WebSocket client (uses [`error`]);
//! - [`local`]: per-thread accumulation of what connections record per frame (used by
//!   [`engine`]'s context);
//! - [`engine`]: a worker's context, connection driver, run control and worker IPC;
//! - [`report`]: the JSON report (common part; a scenario adds its own);
//! - [`scenario`]: the `Scenario` trait, the scenarios and their registry;
//! - [`coord`]: runs any scenario (in process or as worker processes) and writes its report;
//! - [`ceiling`]: `loadgen ceiling`, a search for the highest load at an SLO over runs of a
//!   scenario (child processes; each step's report kept); its search logic is pure
//!   (`ceiling::search`);
//! - [`cli`]: the command line, whose scenario subcommands come from the registry.

pub mod ceiling;
pub mod cli;
pub mod compare;
pub mod coord;
pub mod engine;
pub mod error;
pub mod flags;
pub mod frame;
pub mod hist;
pub mod local;
pub mod report;
pub mod result;
pub mod rng;
pub mod scenario;
pub mod scrape;
pub mod summarize;
pub mod sysinfo;
pub mod ws;
