//! The presence scenario's per-worker state: which rooms this worker holds, the truth about
//! their members (as far as the load generator asked), and the convergence events: a member's
//! leave or rejoin is converged once every synced observer of its room saw it.

use super::model::Transition;
use crate::engine::Ctx;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;

/// One worker's share of the presence scenario: its rooms, the truth about their members, the
/// observers' pending convergence events, and the churn channels. Shared by the member tasks
/// (`member.rs`) and the workload (`mod.rs`).
pub struct PresenceSc {
    pub prefix: String,
    pub key_param: String,
    pub room_size: usize,
    pub observers: usize,
    pub churn_rate: f64,
    pub rejoin_delay: Duration,
    pub seed: u64,
    /// global ids of this worker's rooms
    pub rooms: Vec<u32>,
    pub(super) tracks: Vec<Mutex<RoomTrack>>,
    pub(super) senders: Mutex<Vec<Vec<mpsc::Sender<u64>>>>,
    pub(super) checks_expected: AtomicU64,
    pub(super) checks_done: AtomicU64,
}

/// One room: the truth and its pending convergence events.
#[derive(Default)]
pub(super) struct RoomTrack {
    /// truth: member joined (as far as the load generator asked)
    pub(super) present: Vec<bool>,
    /// member is leaving / rejoining
    pub(super) busy: Vec<bool>,
    /// observer's view is synced (presence_state received for its current join)
    pub(super) established: Vec<bool>,
    /// members in each observer's view (phoenix.js model), after its last frame
    pub(super) view_len: Vec<usize>,
    pub(super) events: HashMap<(u32, bool), Ev>,
}

/// A convergence event (a member's leave or join): which observers have yet to see it.
pub(super) struct Ev {
    t0_unix: u64,
    pending: Vec<bool>,
    pub(super) remaining: u32,
}

/// The presence key of member `m` of room `room`.
pub fn member_key(room: u32, m: usize) -> String {
    format!("u{room}-{m}")
}

fn parse_key(key: &str) -> Option<(u32, usize)> {
    let (r, m) = key.strip_prefix('u')?.split_once('-')?;
    Some((r.parse().ok()?, m.parse().ok()?))
}

impl RoomTrack {
    /// Start the convergence event of member `m`'s leave (`join` false) or join. Returns the
    /// counter to bump when the event is not measured: no synced observer, or the same
    /// transition of the same member still pending (the older event is replaced and never
    /// measured: `presence_superseded`, reported as a problem).
    pub(super) fn start_event(&mut self, m: usize, join: bool, t0_unix: u64) -> Option<&'static str> {
        let pending: Vec<bool> = self.established.iter().enumerate().map(|(o, e)| *e && o != m).collect();
        let remaining = pending.iter().filter(|x| **x).count() as u32;
        if remaining == 0 {
            return Some("convergence_no_observers");
        }
        if self.events.insert((m as u32, join), Ev { t0_unix, pending, remaining }).is_some() {
            return Some("presence_superseded");
        }
        None
    }

    /// Observer `o` saw these transitions; returns (completed events' latency, event t0).
    pub(super) fn on_transitions(&mut self, room: u32, o: usize, ts: &[Transition], now_unix: u64) -> Vec<(u64, u64)> {
        let mut done = vec![];
        for (key, present) in ts {
            let Some((r, m)) = parse_key(key) else { continue };
            if r != room {
                continue;
            }
            let k = (m as u32, *present);
            let complete = match self.events.get_mut(&k) {
                Some(ev) if ev.pending.get(o).copied().unwrap_or(false) => {
                    ev.pending[o] = false;
                    ev.remaining -= 1;
                    ev.remaining == 0
                }
                _ => false,
            };
            if complete {
                let ev = self.events.remove(&k).unwrap();
                done.push((now_unix.saturating_sub(ev.t0_unix), ev.t0_unix));
            }
        }
        done
    }

    /// Every synced observer's view holds exactly the members present (the ramp's presence
    /// traffic has been delivered).
    pub(super) fn views_complete(&self) -> bool {
        let present = self.present.iter().filter(|p| **p).count();
        self.established.iter().zip(&self.view_len).all(|(e, n)| !*e || *n == present)
    }

    /// Observer `o` stops observing (left or disconnected).
    pub(super) fn drop_observer(&mut self, o: usize) {
        if o < self.established.len() {
            self.established[o] = false;
        }
        self.events.retain(|_, ev| {
            if ev.pending.get(o).copied().unwrap_or(false) {
                ev.pending[o] = false;
                ev.remaining -= 1;
            }
            ev.remaining > 0
        });
    }
}

impl PresenceSc {
    pub fn new(
        prefix: String,
        key_param: String,
        rooms_total: usize,
        room_size: usize,
        observers: usize,
        churn_rate: f64,
        rejoin_delay: Duration,
        seed: u64,
        worker: u32,
        workers: u32,
    ) -> Self {
        let rooms: Vec<u32> = (0..rooms_total as u32).filter(|r| r % workers == worker).collect();
        // at least one member per room can churn
        let observers = observers.min(room_size.saturating_sub(1)).max(if room_size > 1 { 1 } else { 0 });
        let tracks = rooms
            .iter()
            .map(|_| {
                Mutex::new(RoomTrack {
                    present: vec![false; room_size],
                    busy: vec![false; room_size],
                    established: vec![false; observers],
                    view_len: vec![0; observers],
                    events: HashMap::new(),
                })
            })
            .collect();
        PresenceSc {
            prefix,
            key_param,
            room_size,
            observers,
            churn_rate,
            rejoin_delay,
            seed,
            rooms,
            tracks,
            senders: Mutex::new(vec![]),
            checks_expected: AtomicU64::new(0),
            checks_done: AtomicU64::new(0),
        }
    }

    pub(super) fn track(&self, pos: usize) -> std::sync::MutexGuard<'_, RoomTrack> {
        self.tracks[pos].lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn record_done(&self, ctx: &Ctx, done: Vec<(u64, u64)>, go_unix: u64) {
        if done.is_empty() {
            return;
        }
        let mut r = ctx.rec();
        for (lat, t0) in done {
            r.hist("convergence").record(lat);
            r.add("convergence_events", 1);
            if go_unix > 0 {
                r.timeline_record((t0.saturating_sub(go_unix) / 1_000_000) as usize, lat);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_converges_once_every_synced_observer_saw_it() {
        let mut t = RoomTrack { present: vec![true; 3], busy: vec![false; 3], established: vec![true, true], view_len: vec![0, 0], events: HashMap::new() };
        assert_eq!(t.start_event(2, false, 100), None);
        let ts = vec![(member_key(7, 2), false)];
        assert!(t.on_transitions(7, 0, &ts, 150).is_empty());
        assert!(t.on_transitions(8, 1, &ts, 160).is_empty(), "another room's key");
        assert_eq!(t.on_transitions(7, 1, &ts, 180), vec![(80, 100)]);
        assert!(t.events.is_empty());
        // an observer that stops observing no longer holds events back
        assert_eq!(t.start_event(2, true, 200), None);
        t.drop_observer(0);
        assert_eq!(t.on_transitions(7, 1, &[(member_key(7, 2), true)], 260), vec![(60, 200)]);
        assert_eq!(t.start_event(2, true, 300), None);
        assert_eq!(t.start_event(2, true, 310), Some("presence_superseded"));
        t.established = vec![false, false];
        assert_eq!(t.start_event(2, false, 400), Some("convergence_no_observers"));
    }
}
