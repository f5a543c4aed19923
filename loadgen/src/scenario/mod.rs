//! Load scenarios. A scenario is one module here implementing [`Scenario`], plus one line in
//! [`registry`]: that is all adding one takes (its flags, subcommand, connection behaviour and
//! report part live in its module).
//!
//! Dependencies point one way: scenario modules use the engine (connection driver, run
//! control), the result and the report's [`Summary`]; the engine and the report never name a
//! scenario. Only [`registry`] lists them, and only the command line (`crate::cli`) reads it.
//! The coordinator works on any `&dyn Scenario`.

pub mod chat;
pub mod connect;
pub mod fanout;
pub mod presence;
pub mod pubsub;
pub mod registry;

use crate::engine::{Ctx, Workload};
use crate::flags::Common;
use crate::report::Summary;
use crate::result::WorkerResult;
use std::sync::Arc;

/// What a scenario provides. Implemented by the scenario's parsed flags (a clap `Args` struct
/// that flattens [`Common`]).
pub trait Scenario: Send + Sync + std::fmt::Debug {
    /// Subcommand name; also the report's `scenario`.
    fn name(&self) -> &'static str;
    /// The flags every scenario has.
    fn common(&self) -> &Common;
    /// The scenario's flags as JSON (stored under `params` in the report, see [`Scenario::params`]).
    fn args_json(&self) -> serde_json::Value;
    /// Topic prefix when `--topic-prefix` is not given.
    fn default_topic_prefix(&self) -> &'static str;
    /// Connections over all worker processes.
    fn total_connections(&self) -> usize;
    /// Plan worker `ctx.worker` of `ctx.workers`: which connections it opens with which role,
    /// and how they behave in each phase. Connections are shared out by global index.
    fn workload(&self, ctx: &Ctx) -> Arc<dyn Workload>;
    /// The histogram the report's `timeline` shows per second (`timeline_metric`).
    fn timeline_metric(&self) -> &'static str;
    /// The scenario's metrics and problems from the merged result (after the common ones:
    /// connections, ramp, connect/join latency; before loadgen and server health).
    fn summarize(&self, r: &WorkerResult, out: &mut Summary);

    /// `--topic-prefix`, else the scenario's default.
    fn topic_prefix(&self) -> String {
        match &self.common().topic_prefix {
            Some(p) => p.clone(),
            None => self.default_topic_prefix().into(),
        }
    }

    /// The report's `params`: the flags without the internal ones, plus the effective prefix.
    fn params(&self) -> serde_json::Value {
        let mut v = self.args_json();
        if let Some(c) = v.get_mut("common").and_then(|c| c.as_object_mut()) {
            c.remove("worker");
            c.remove("t0_unix_us");
            c.insert("topic_prefix_effective".into(), serde_json::json!(self.topic_prefix()));
        }
        v
    }
}

/// A registry line: a scenario's subcommand and how to build the scenario from it.
#[derive(Clone, Copy)]
pub struct Entry {
    /// subcommand name (= [`Scenario::name`])
    pub name: &'static str,
    /// one-line help of the subcommand
    pub about: &'static str,
    /// adds the scenario's flags to its subcommand
    pub args: fn(clap::Command) -> clap::Command,
    /// builds the scenario from its subcommand's matches
    pub parse: fn(&mut clap::ArgMatches) -> Result<Box<dyn Scenario>, clap::Error>,
}

impl Entry {
    /// The entry of a scenario whose flags are the clap `Args` type `A`.
    pub const fn of<A: Scenario + clap::Args + 'static>(name: &'static str, about: &'static str) -> Entry {
        Entry { name, about, args: A::augment_args, parse: parse_boxed::<A> }
    }

    /// The subcommand (what `#[derive(Subcommand)]` would build for a variant `Name(A)`).
    pub fn command(&self) -> clap::Command {
        (self.args)(clap::Command::new(self.name)).about(self.about).long_about(None)
    }
}

fn parse_boxed<A: Scenario + clap::FromArgMatches + 'static>(m: &mut clap::ArgMatches) -> Result<Box<dyn Scenario>, clap::Error> {
    Ok(Box::new(A::from_arg_matches_mut(m)?))
}
