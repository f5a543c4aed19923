//! The registry: every scenario, by name, in `loadgen --help` order. The command line builds
//! its scenario subcommands from this list and nothing else names the scenario modules.
//!
//! Adding a scenario: a module under `scenario/` that implements `Scenario` and exports an
//! `ENTRY`, plus one line here.

use super::{chat, connect, fanout, presence, Entry};

pub const SCENARIOS: &[Entry] = &[
    connect::ENTRY,
    fanout::ENTRY,
    presence::ENTRY,
    chat::ENTRY,
];

/// The scenario with this subcommand name.
pub fn find(name: &str) -> Option<&'static Entry> {
    SCENARIOS.iter().find(|e| e.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_match_the_scenarios() {
        for (i, e) in SCENARIOS.iter().enumerate() {
            assert!(SCENARIOS[..i].iter().all(|o| o.name != e.name), "{} twice", e.name);
            assert_eq!(find(e.name).map(|f| f.name), Some(e.name));
            // parsing the subcommand with defaults gives the scenario of that name
            let mut m = e.command().no_binary_name(true).try_get_matches_from(Vec::<&str>::new()).unwrap();
            let sc = (e.parse)(&mut m).unwrap();
            assert_eq!(sc.name(), e.name);
            assert!(sc.total_connections() > 0);
            assert!(sc.params()["common"]["topic_prefix_effective"].is_string());
        }
        assert!(find("compare").is_none());
    }
}
