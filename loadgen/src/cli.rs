//! The command line: the scenario subcommands (from `scenario::registry`) plus `compare` and
//! `summarize`. The flags every scenario shares are in `crate::flags`; each scenario's own
//! flags are in its module. Every flag states its unit.

pub use crate::ceiling::CeilingArgs;
use crate::scenario::{registry, Scenario};
use clap::{ArgMatches, Args, Command, FromArgMatches, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "loadgen", version, about = "Open-loop load generator for Phoenix Channels + Presence servers (V2 JSON serializer over WebSocket)")]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// A subcommand.
#[derive(Debug)]
pub enum Cmd {
    /// A load scenario (one of `scenario::registry::SCENARIOS`).
    Run(Box<dyn Scenario>),
    /// Compare two JSON reports; exit 1 if a metric regressed by more than --max-regression.
    Compare(CompareArgs),
    /// Summarize repeated runs: median, min, max and spread of every metric, per label.
    Summarize(SummarizeArgs),
    /// Search the highest load sustained at an SLO (runs of a scenario).
    Ceiling(Box<CeilingArgs>),
}

const COMPARE_ABOUT: &str = "Compare two JSON reports; exit 1 if a metric regressed by more than --max-regression";
const CEILING_ABOUT: &str = "Search the highest load a server sustains at an SLO: runs fanout (varying --rate) or connect (--connect-rate or --connections) step by step, then reports the ceiling, the knee and what ran out first";
const SUMMARIZE_ABOUT: &str = "Summarize repeated runs: median, min, max and spread of every metric, per label";

// By hand what `#[derive(Subcommand)]` generates, with the scenario variants from the registry.
impl FromArgMatches for Cmd {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        Self::from_arg_matches_mut(&mut m.clone())
    }
    fn from_arg_matches_mut(m: &mut ArgMatches) -> Result<Self, clap::Error> {
        let Some((name, mut sub)) = m.remove_subcommand() else {
            return Err(clap::Error::raw(clap::error::ErrorKind::MissingSubcommand, "A subcommand is required but one was not provided."));
        };
        match name.as_str() {
            "compare" => Ok(Cmd::Compare(CompareArgs::from_arg_matches_mut(&mut sub)?)),
            "summarize" => Ok(Cmd::Summarize(SummarizeArgs::from_arg_matches_mut(&mut sub)?)),
            "ceiling" => Ok(Cmd::Ceiling(Box::new(CeilingArgs::from_arg_matches_mut(&mut sub)?))),
            other => match registry::find(other) {
                Some(e) => Ok(Cmd::Run((e.parse)(&mut sub)?)),
                None => Err(clap::Error::raw(
                    clap::error::ErrorKind::InvalidSubcommand,
                    format!("The subcommand '{other}' wasn't recognized"),
                )),
            },
        }
    }
    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl Subcommand for Cmd {
    fn augment_subcommands(mut cmd: Command) -> Command {
        for e in registry::SCENARIOS {
            cmd = cmd.subcommand(e.command());
        }
        cmd.subcommand(CompareArgs::augment_args(Command::new("compare")).about(COMPARE_ABOUT).long_about(None))
            .subcommand(SummarizeArgs::augment_args(Command::new("summarize")).about(SUMMARIZE_ABOUT).long_about(None))
            .subcommand(CeilingArgs::augment_args(Command::new("ceiling")).about(CEILING_ABOUT).long_about(None))
    }
    fn augment_subcommands_for_update(cmd: Command) -> Command {
        Self::augment_subcommands(cmd)
    }
    fn has_subcommand(name: &str) -> bool {
        name == "compare" || name == "summarize" || name == "ceiling" || registry::find(name).is_some()
    }
}

#[derive(Args, Debug, Clone)]
pub struct SummarizeArgs {
    /// Reports (JSON) to summarize; grouped by --label (else by scenario).
    #[arg(required = true)]
    pub reports: Vec<String>,
    /// Write the summary JSON here.
    #[arg(long)]
    pub out: Option<String>,
    /// Write a Markdown table of the main metrics here.
    #[arg(long)]
    pub markdown: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct CompareArgs {
    /// Baseline report (JSON).
    pub base: String,
    /// New report (JSON).
    pub new: String,
    /// Allowed worsening per metric, percent ("10%" or "10").
    #[arg(long, default_value = "10%")]
    pub max_regression: String,
    /// Ignore latency differences smaller than this, milliseconds (noise floor).
    #[arg(long, default_value_t = 0.0)]
    pub min_abs_ms: f64,
    /// Report but never gate on metrics whose name contains this (repeatable), e.g. "_max_ms".
    #[arg(long)]
    pub ignore: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let c = Cli::try_parse_from(["loadgen", "fanout", "-n", "5", "--rate", "2.5", "--worker", "0/2"]).unwrap();
        match c.cmd {
            Cmd::Run(sc) => {
                assert_eq!(sc.name(), "fanout");
                assert_eq!(sc.total_connections(), 6);
                assert_eq!(sc.common().worker.as_deref(), Some("0/2"));
                assert_eq!(sc.params()["rate"], 2.5);
            }
            _ => panic!(),
        }
        let c = Cli::try_parse_from(["loadgen", "compare", "a.json", "b.json", "--ignore", "_max_ms"]).unwrap();
        assert!(matches!(c.cmd, Cmd::Compare(a) if a.base == "a.json" && a.ignore == ["_max_ms"]));
        let c = Cli::try_parse_from([
            "loadgen", "ceiling", "--scenario", "fanout", "--start", "2", "--max", "64", "--out-dir", "/tmp/x", "--", "-n", "19000", "--procs", "2",
        ])
        .unwrap();
        assert!(matches!(c.cmd, Cmd::Ceiling(a) if a.scenario == "fanout" && a.scenario_args == ["-n", "19000", "--procs", "2"] && a.slo_p99_ms == 500.0));
        assert!(Cli::try_parse_from(["loadgen", "ceiling", "--scenario", "chat", "--start", "1", "--max", "2", "--out-dir", "x"]).is_err());
        assert!(Cli::try_parse_from(["loadgen", "bogus"]).is_err());
        assert!(Cli::try_parse_from(["loadgen"]).is_err());
    }
}
