//! The scenario-independent machinery of a worker process, split by job:
//!
//! - [`ctx`]: what the connection tasks and the run control share (flags, target, phase,
//!   progress counters, the result) and the clock helpers;
//! - [`conn`]: the connection driver (open with retries, heartbeats, joins);
//! - [`ports`]: which local port each connection binds;
//! - [`run`]: run control (phases, timing, stop) over a scenario's [`run::Workload`];
//! - [`ipc`]: how a worker and its coordinator talk (in process or as child processes).
//!
//! Dependencies point one way: `conn`, `run` and `ipc` use `ctx`; `run` uses `ipc`. The engine
//! never names a scenario: scenarios use it (see `crate::scenario`).

pub mod conn;
pub mod ctx;
pub mod ipc;
pub mod ports;
pub mod run;

pub use conn::{establish, heartbeat_timer, join_topics, phase_changed, Conn, Heartbeat};
pub use ctx::{instant_at_unix, now_unix_us, uri_component, Ctx, Phase, Progress};
pub use ipc::Control;
pub use run::{run_worker, Workload};
