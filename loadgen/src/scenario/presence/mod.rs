//! The presence scenario: rooms of K members with Presence (presence key = a connect param);
//! members leave and rejoin at a churn rate. presence_diff frames/s, convergence of observers'
//! phoenix.js-model views to the truth, presence_state size and time for a joiner.
//!
//! - `model`: the phoenix.js Presence model (syncState / syncDiff);
//! - `rooms`: one worker's rooms, the truth and the convergence events;
//! - `member`: a member's connection loop;
//! - here: the flags, the workload (member tasks, churn driver, drain, final check) and the
//!   report part.

mod member;
pub mod model;
mod rooms;

use super::{Entry, Scenario};
use crate::engine::{Ctx, Phase, Workload};
use crate::flags::Common;
use crate::report::{Summary, Q_FULL, Q_SHORT};
use crate::result::WorkerResult;
use crate::rng::Rng;
use clap::Args;
use rooms::PresenceSc;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub const ENTRY: Entry = Entry::of::<PresenceArgs>(
    "presence",
    "Rooms of K members with Presence; members leave and rejoin at a churn rate. presence_diff frames/s, convergence of members' views (phoenix.js syncDiff model), presence_state size and time for a joiner",
);

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct PresenceArgs {
    #[command(flatten)]
    pub common: Common,
    /// Rooms (count).
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Members per room (count); one connection per member, presence key = connect param
    /// `user_id`.
    #[arg(long, short = 'k', default_value_t = 100)]
    pub room_size: usize,
    /// Churn rate, leave+rejoin operations per second (all rooms together).
    #[arg(long, default_value_t = 10.0)]
    pub churn_rate: f64,
    /// Time between a churning member's leave and its rejoin, milliseconds.
    #[arg(long, default_value_t = 200)]
    pub rejoin_delay_ms: u64,
    /// Members per room that keep a full phoenix.js Presence model and measure convergence
    /// (count; the others only count frames, to keep loadgen memory bounded).
    #[arg(long, default_value_t = 20)]
    pub observers: usize,
    /// Connect param name carrying the presence key.
    #[arg(long, default_value = "user_id")]
    pub key_param: String,
}

impl Scenario for PresenceArgs {
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
        "room:"
    }
    fn total_connections(&self) -> usize {
        self.rooms * self.room_size
    }
    fn workload(&self, ctx: &Ctx) -> Arc<dyn Workload> {
        Arc::new(PresenceSc::new(
            self.topic_prefix(),
            self.key_param.clone(),
            self.rooms,
            self.room_size,
            self.observers,
            self.churn_rate,
            Duration::from_millis(self.rejoin_delay_ms),
            self.common.seed,
            ctx.worker,
            ctx.workers,
        ))
    }
    fn timeline_metric(&self) -> &'static str {
        "convergence"
    }
    fn summarize(&self, r: &WorkerResult, out: &mut Summary) {
        let c = |n: &str| r.counter(n);
        let (m, problems) = (&mut out.metrics, &mut out.problems);
        let diffs = c("presence_diff_frames_measured");
        out.server_cpu_per = Some(("server_cpu_us_per_diff_frame", diffs));
        m.put("churn_ops", c("churn_ops") as f64, "count", "info");
        m.put("presence_diff_frames_per_s", diffs as f64 / out.measured_s.max(1e-9), "1/s", "info");
        m.lat("convergence", r.hists.get("convergence"), Q_FULL);
        m.put("convergence_unresolved", c("convergence_unresolved") as f64, "count", "lower");
        // a change replaced by the same change of the same member before every observer saw it:
        // its convergence was never measured
        m.put("presence_superseded", c("presence_superseded") as f64, "count", "lower");
        m.put("final_view_mismatches", c("final_view_mismatches") as f64, "count", "lower");
        m.lat("presence_state", r.hists.get("presence_state"), Q_SHORT);
        m.lat("ramp_presence_state", r.hists.get("ramp_presence_state"), Q_SHORT);
        // from all joined to every observer's view holding the whole room (the ramp's
        // presence_state and presence_diff backlog delivered); the measured phase starts after
        m.lat("ramp_settle", r.hists.get("settle"), Q_SHORT);
        if c("unsettled_at_go") > 0 {
            problems.push("the ramp's presence traffic had not arrived at the observers by the settle deadline: the measured phase started in its backlog".into());
        }
        if let Some(h) = r.hists.get("presence_state_bytes").or(r.hists.get("ramp_presence_state_bytes")) {
            m.put("presence_state_bytes_p50", h.q(0.5) as f64, "bytes", "info");
            m.put("presence_state_bytes_max", h.q(1.0) as f64, "bytes", "info");
        }
        if c("convergence_unresolved") > 0 {
            problems.push(format!("{} presence changes never converged", c("convergence_unresolved")));
        }
        if c("presence_superseded") > 0 {
            problems.push(format!(
                "{} presence changes superseded by the same change before every observer saw them",
                c("presence_superseded")
            ));
        }
        if c("final_view_mismatches") > 0 {
            problems.push(format!("{} observer views differ from the truth at the end", c("final_view_mismatches")));
        }
        if c("churn_ops") > 0 && r.hists.get("convergence").map(|h| h.is_empty()).unwrap_or(true) {
            problems.push("churn happened but no convergence was measured".into());
        }
    }
}

impl Workload for PresenceSc {
    fn spawn(self: Arc<Self>, ctx: &Arc<Ctx>, tasks: &mut tokio::task::JoinSet<()>) -> usize {
        let mut senders = vec![];
        let mut slot = 0;
        // interleave rooms in the ramp so that every room fills at the same pace
        let mut rxs: Vec<Vec<Option<mpsc::Receiver<u64>>>> = vec![];
        for _ in 0..self.rooms.len() {
            let mut tx_row = vec![];
            let mut rx_row = vec![];
            for _ in 0..self.room_size {
                let (tx, rx) = mpsc::channel(2);
                tx_row.push(tx);
                rx_row.push(Some(rx));
            }
            senders.push(tx_row);
            rxs.push(rx_row);
        }
        *self.senders.lock().unwrap() = senders;
        for m in 0..self.room_size {
            for pos in 0..self.rooms.len() {
                let rx = rxs[pos][m].take().unwrap();
                tasks.spawn(self.clone().run_member(ctx.clone(), pos, m, slot, rx));
                slot += 1;
            }
        }
        self.checks_expected.store(slot as u64, Relaxed);
        slot
    }

    fn on_go(self: Arc<Self>, ctx: &Arc<Ctx>, tasks: &mut tokio::task::JoinSet<()>) {
        let Phase::Go { at, unix_us } = *ctx.phase.borrow() else { return };
        let rate = self.churn_rate / ctx.workers as f64;
        if rate <= 0.0 || self.rooms.is_empty() || self.room_size <= self.observers {
            return;
        }
        let ctx = ctx.clone();
        let sc = self.clone();
        tasks.spawn(async move {
            let interval = Duration::from_secs_f64(1.0 / rate);
            let end = at + Duration::from_secs_f64(ctx.common.duration);
            let mut rng = Rng(sc.seed ^ 0xC0FFEE ^ ctx.worker as u64);
            let mut n: u32 = 0;
            loop {
                let intended = at + interval * n;
                if intended >= end {
                    break;
                }
                n += 1;
                tokio::time::sleep_until(intended.into()).await;
                let intended_unix = unix_us + (intended - at).as_micros() as u64;
                let pos = rng.below(sc.rooms.len());
                let m = sc.observers + rng.below(sc.room_size - sc.observers);
                let ok = {
                    let mut t = sc.track(pos);
                    // not while its last change is still on its way to an observer: a second
                    // change of the same kind would replace that one's measurement
                    let settled = !t.events.contains_key(&(m as u32, false)) && !t.events.contains_key(&(m as u32, true));
                    if t.present[m] && !t.busy[m] && settled {
                        t.busy[m] = true;
                        true
                    } else {
                        false
                    }
                };
                let sent = ok && sc.senders.lock().unwrap()[pos][m].try_send(intended_unix).is_ok();
                if ok && !sent {
                    sc.track(pos).busy[m] = false;
                }
                ctx.rec().add(if sent { "churn_ops" } else { "churn_skipped_busy" }, 1);
            }
        });
    }

    fn settled(&self, _ctx: &Ctx) -> bool {
        (0..self.tracks.len()).all(|p| self.track(p).views_complete())
    }

    fn drained(&self, _ctx: &Ctx) -> bool {
        (0..self.tracks.len()).all(|p| {
            let t = self.track(p);
            t.events.is_empty() && !t.busy.iter().any(|b| *b)
        })
    }

    fn wants_check(&self) -> bool {
        true
    }
    fn check_done(&self) -> bool {
        self.checks_done.load(Relaxed) >= self.checks_expected.load(Relaxed)
    }

    fn finish(&self, ctx: &Ctx) {
        let mut unresolved = 0u64;
        let mut pending_obs = 0u64;
        for p in 0..self.tracks.len() {
            let t = self.track(p);
            unresolved += t.events.len() as u64;
            pending_obs += t.events.values().map(|e| e.remaining as u64).sum::<u64>();
        }
        let mut r = ctx.rec();
        r.add("convergence_unresolved", unresolved);
        r.add("convergence_unresolved_observer_views", pending_obs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{build, RunInfo, ServerSamples};
    use clap::FromArgMatches;
    use serde_json::json;

    fn args(flags: &[&str]) -> PresenceArgs {
        let mut m = ENTRY.command().no_binary_name(true).try_get_matches_from(flags).unwrap();
        PresenceArgs::from_arg_matches_mut(&mut m).unwrap()
    }

    #[test]
    fn report_part_flags_unconverged_churn() {
        let a = args(&["--rooms", "2", "-k", "5"]);
        assert_eq!(a.total_connections(), 10);
        assert_eq!(a.topic_prefix(), "room:");
        assert_eq!(a.params()["common"]["topic_prefix_effective"], "room:");
        let mut r = WorkerResult::default();
        r.add("churn_ops", 4);
        r.add("presence_diff_frames_measured", 30);
        r.add("convergence_unresolved", 1);
        let info = RunInfo {
            scenario: a.name(),
            timeline_metric: a.timeline_metric(),
            params: a.params(),
            env: json!({}),
            t0_unix: 0,
            started_at_unix: 0,
            server: ServerSamples::default(),
            server_pid: None,
            duration_s: 3.0,
        };
        let b = build(info, &r, |r, s| a.summarize(r, s));
        assert_eq!(b.report["metrics"]["presence_diff_frames_per_s"]["value"], 10.0);
        assert_eq!(b.report["timeline_metric"], "convergence");
        assert_eq!(
            b.problems,
            vec!["1 presence changes never converged", "churn happened but no convergence was measured"]
        );
    }

    #[test]
    fn superseded_events_are_counted_and_reported() {
        use rooms::RoomTrack;
        let a = args(&["--rooms", "1", "-k", "3", "--observers", "2"]);
        let mut t = RoomTrack { present: vec![true; 3], busy: vec![false; 3], established: vec![true, true], view_len: vec![0, 0], events: Default::default() };
        let mut r = WorkerResult::default();
        r.add("churn_ops", 2);
        assert_eq!(t.start_event(2, false, 100), None);
        // the same transition again before every observer saw the first one
        let note = t.start_event(2, false, 500).expect("superseded");
        r.add(note, 1);
        r.hist("convergence").record(1000);
        let info = RunInfo {
            scenario: a.name(),
            timeline_metric: a.timeline_metric(),
            params: a.params(),
            env: json!({}),
            t0_unix: 0,
            started_at_unix: 0,
            server: ServerSamples::default(),
            server_pid: None,
            duration_s: 1.0,
        };
        let b = build(info, &r, |r, s| a.summarize(r, s));
        assert_eq!(b.report["metrics"]["presence_superseded"]["value"], 1.0, "{}", b.report["metrics"]);
        assert_eq!(b.report["metrics"]["presence_superseded"]["better"], "lower");
        assert!(b.problems.iter().any(|p| p.contains("superseded")), "{:?}", b.problems);
    }
}
