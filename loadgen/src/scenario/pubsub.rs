//! The pub/sub connection loop shared by the connect, fanout and chat scenarios: each
//! connection joins its topics; publishers push stamped payloads on an open-loop schedule;
//! subscribers record every delivery (latency, duplicates, order). A scenario differs only by
//! the [`Role`]s it assigns and two [`PubSub`] switches. Also the delivery part of the report,
//! shared by fanout and chat.

use crate::engine::{establish, heartbeat_timer, join_topics, now_unix_us, phase_changed, Conn, Ctx, Heartbeat, Phase, Workload};
use crate::error::ConnError;
use crate::frame::{self, Stamp};
use crate::hist::Hist;
use crate::engine::ctx::ConnRec;
use crate::local::{Delivery, NO_SEC};
use crate::report::{Summary, Q_FULL, Q_SHORT};
use crate::result::{Seen, Tracks, WorkerResult};
use crate::rng::Rng;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// When a connection publishes.
#[derive(Debug, Clone, Copy)]
pub enum Sched {
    None,
    /// fixed interval between this connection's pushes
    Fixed(Duration),
    /// exponentially distributed intervals with this mean
    Poisson(Duration),
}

/// One connection's plan: what it joins and what it publishes (assigned by the scenario).
#[derive(Debug, Clone)]
pub struct Role {
    /// global connection index
    pub idx: usize,
    /// topics joined: (topic index, deliveries are recorded)
    pub topics: Vec<(u32, bool)>,
    /// published round-robin: (topic index, stream id)
    pub streams: Vec<(u32, u32)>,
    pub sched: Sched,
}

/// The workload of a pub/sub scenario in one worker: its connections' roles and how they behave.
pub struct PubSub {
    pub prefix: String,
    pub event: String,
    pub payload_bytes: usize,
    pub roles: Vec<Role>,
    /// true when every publisher is in this process (exact drain check possible)
    pub all_local: bool,
    pub seed: u64,
    /// the timeline is connect+join latency by ramp second (connect); else deliveries fill it
    pub join_timeline: bool,
    /// the drain waits for publishers and in-flight deliveries (fanout, chat); else it ends at once
    pub drain_waits: bool,
}

impl PubSub {
    /// The workload of a scenario that publishes and measures deliveries (fanout, chat): this
    /// worker's share of `roles`, the drain waiting for every publisher and delivery.
    pub fn delivering(prefix: String, event: String, payload_bytes: usize, roles: Vec<Role>, ctx: &Ctx, seed: u64) -> PubSub {
        PubSub {
            prefix,
            event,
            payload_bytes,
            roles: local_roles(roles, ctx.worker, ctx.workers),
            all_local: ctx.workers == 1,
            seed,
            join_timeline: false,
            drain_waits: true,
        }
    }
}

/// Keep the roles of worker `w` of `n` (by global index).
pub fn local_roles(roles: Vec<Role>, w: u32, n: u32) -> Vec<Role> {
    roles.into_iter().filter(|r| r.idx % n as usize == w as usize).collect()
}

const MAX_OUTSTANDING: usize = 10_000;

struct State {
    tracks: Tracks,
    /// pushes waiting for their reply: (ref, intended send time µs)
    outstanding: VecDeque<(u64, u64)>,
    /// (name, topic index, record deliveries, join_ref)
    topics: Vec<(String, u32, bool, Option<u64>)>,
    go_unix: u64,
    /// what this connection records per frame (into its thread's shard)
    rec: ConnRec,
}

impl PubSub {
    /// A stamped broadcast received at `now` (unix µs).
    fn record_delivery(&self, ctx: &Ctx, st: &mut State, stamp: Stamp, now: u64) {
        let lat = now.saturating_sub(stamp.t);
        let seen = st.tracks.observe(stamp.p, stamp.s);
        ctx.prog.deliveries.add(1);
        ctx.prog.last_delivery_us.store_max(now);
        ctx.prog.max_delivery_latency_us.store_max(lat);
        if seen == Seen::Duplicate {
            ctx.prog.duplicated.add(1);
        }
        let sec = if st.go_unix > 0 { (stamp.t.saturating_sub(st.go_unix) / 1_000_000).min(NO_SEC as u64 - 1) as u32 } else { NO_SEC };
        // one lock of the thread's shard for everything this delivery records
        st.rec.with(|l| {
            l.add("deliveries", 1);
            match seen {
                Seen::Duplicate => {
                    l.add("duplicated", 1);
                    return;
                }
                Seen::OutOfOrder => l.add("out_of_order", 1),
                Seen::Overflow => l.add("tracking_overflow", 1),
                Seen::InOrder => {}
            }
            l.delivery(Delivery { key: ((stamp.p as u64) << 32) | stamp.s as u64, lat, sec });
        });
    }

    /// One text frame. `now` caches the receive time (unix µs) for the frames of one read
    /// (0 until a delivery needs it): they arrived together.
    fn on_text(&self, ctx: &Ctx, hb: &mut Heartbeat, st: &mut State, text: &str, now: &mut u64) {
        // the common case first: a broadcast of ours, head and stamp read in one pass
        let (f, stamp) = match frame::decode_stamped(text) {
            Some((f, s)) => (f, Some(s)),
            None => match frame::decode(text) {
                Ok(f) => (f, None),
                Err(_) => {
                    st.rec.error("frame:undecodable");
                    return;
                }
            },
        };
        if hb.on_reply(ctx, &f) {
            return;
        }
        if f.event == self.event.as_str() {
            let Some(t) = st.topics.iter().find(|t| t.0 == f.topic) else {
                st.rec.add("frames_unknown_topic", 1);
                return;
            };
            if !t.2 {
                return; // a publisher's own broadcast
            }
            if t.3.is_none() {
                // the join of this topic failed: the connection is not counted as a subscriber
                // of it, so what arrives anyway is neither expected nor received (counting it
                // would net out losses elsewhere)
                st.rec.add("deliveries_join_failed", 1);
                return;
            }
            match stamp.or_else(|| frame::parse_stamp(f.payload)) {
                Some(s) => {
                    if *now == 0 {
                        *now = now_unix_us();
                    }
                    self.record_delivery(ctx, st, s, *now)
                }
                None => st.rec.add("frames_unstamped", 1),
            }
            return;
        }
        match f.event.as_ref() {
            "phx_reply" => {
                let r: Option<u64> = f.ref_.as_deref().and_then(|r| r.parse().ok());
                if let Some(pos) = r.and_then(|r| st.outstanding.iter().position(|o| o.0 == r)) {
                    let (_, intended) = st.outstanding.remove(pos).unwrap();
                    ctx.prog.pushes_settled.fetch_add(1, Relaxed);
                    let lat = now_unix_us().saturating_sub(intended);
                    match frame::reply_status(f.payload).as_deref() {
                        Some("ok") => {
                            st.rec.add("push_ok", 1);
                            st.rec.sample("push_reply", lat);
                        }
                        Some(s) => ctx.rec().error(&format!("push:{s}")),
                        None => st.rec.error("push:bad_reply"),
                    }
                } else {
                    st.rec.add("replies_unmatched", 1);
                }
            }
            "phx_error" => st.rec.error("channel:phx_error"),
            "phx_close" => st.rec.error("channel:phx_close"),
            _ => st.rec.add("frames_other", 1),
        }
    }

    async fn run_conn(self: Arc<Self>, ctx: Arc<Ctx>, role: Role, k: usize) {
        let intended = ctx.ramp_slot(k);
        tokio::time::sleep_until(intended.into()).await;
        let Some(ws) = establish(&ctx, role.idx, intended, "").await else {
            ctx.prog.failed.fetch_add(1, Relaxed);
            ctx.prog.settled.fetch_add(1, Relaxed);
            if !role.streams.is_empty() && !matches!(role.sched, Sched::None) {
                ctx.prog.publishers_done.fetch_add(1, Relaxed);
            }
            return;
        };
        let mut conn = Conn::new(ws);
        let names: Vec<String> = role.topics.iter().map(|(t, _)| format!("{}{}", self.prefix, t)).collect();
        let joined = join_topics(&ctx, &mut conn, &names, "{}", |_, _| {}).await;
        let all_ok = joined.iter().all(|j| j.is_some()) && !conn.closed;
        let mut st = State {
            tracks: Tracks::default(),
            outstanding: VecDeque::new(),
            topics: names.into_iter().zip(role.topics.iter()).zip(joined).map(|((n, (t, s)), j)| (n, *t, *s, j)).collect(),
            go_unix: 0,
            rec: ConnRec::new(ctx.clone()),
        };
        {
            let mut r = ctx.rec();
            r.hist("connect_and_join").record(intended.elapsed().as_micros() as u64);
            if self.join_timeline {
                let sec = intended.saturating_duration_since(ctx.t0).as_secs() as usize;
                r.timeline_record(sec, intended.elapsed().as_micros() as u64);
            }
            for t in &st.topics {
                if t.2 && t.3.is_some() {
                    *r.subs_per_topic.entry(t.1).or_default() += 1;
                }
            }
            if !all_ok {
                r.add("connections_join_failed", 1);
            }
        }
        if all_ok {
            ctx.prog.established.fetch_add(1, Relaxed);
        } else {
            ctx.prog.failed.fetch_add(1, Relaxed);
        }
        ctx.prog.settled.fetch_add(1, Relaxed);
        if conn.closed {
            if !role.streams.is_empty() && !matches!(role.sched, Sched::None) {
                ctx.prog.publishers_done.fetch_add(1, Relaxed);
            }
            return;
        }
        ctx.prog.open.fetch_add(1, Relaxed);

        let mut phase_rx = ctx.phase.subscribe();
        let mut hb = heartbeat_timer(&ctx, role.idx);
        let mut rng = Rng(self.seed ^ (role.idx as u64).wrapping_mul(0x2545F4914F6CDD1D));
        let mut next_pub: Option<Instant> = None;
        let mut go_at = Instant::now();
        let mut end_at = Instant::now();
        let mut rr = 0usize;
        let mut seqs = vec![0u32; role.streams.len()];
        let mut closed_reason: Option<ConnError> = None;
        // streams whose topic join failed are not published
        let streams: Vec<(u32, u32, String, Option<u64>)> = role
            .streams
            .iter()
            .filter_map(|(t, s)| {
                st.topics.iter().find(|x| x.1 == *t).map(|x| (*t, *s, x.0.clone(), x.3))
            })
            .filter(|x| x.3.is_some())
            .collect();
        let start_phase = *phase_rx.borrow_and_update();
        let mut phase = start_phase;
        let begin_go = |phase: Phase, st: &mut State, rng: &mut Rng, next_pub: &mut Option<Instant>, go_at: &mut Instant, end_at: &mut Instant| {
            if let Phase::Go { at, unix_us } = phase {
                st.go_unix = unix_us;
                *go_at = at;
                *end_at = at + Duration::from_secs_f64(ctx.common.duration);
                if !streams.is_empty() {
                    *next_pub = match role.sched {
                        Sched::None => None,
                        Sched::Fixed(iv) => {
                            // spread publishers over the first interval
                            let frac = ((role.idx as u64).wrapping_mul(2654435761) % 1000) as f64 / 1000.0;
                            Some(at + iv.mul_f64(frac))
                        }
                        Sched::Poisson(mean) => Some(at + rng.exp(mean)),
                    };
                }
            }
        };
        begin_go(phase, &mut st, &mut rng, &mut next_pub, &mut go_at, &mut end_at);
        let is_publisher = !role.streams.is_empty() && !matches!(role.sched, Sched::None);
        let mut done_counted = !is_publisher;
        // futures kept across iterations: no watch-waiter registration or timer per frame
        let mut phase_fut = std::pin::pin!(phase_changed(phase_rx));
        let mut pub_sleep = std::pin::pin!(tokio::time::sleep_until(tokio::time::Instant::now()));
        let mut armed: Option<Instant> = None;
        loop {
            let publishing = next_pub.map(|n| n < end_at).unwrap_or(false);
            if !done_counted && st.go_unix > 0 && !publishing {
                done_counted = true;
                ctx.prog.publishers_done.fetch_add(1, Relaxed);
            }
            if publishing && armed != next_pub {
                pub_sleep.as_mut().reset(next_pub.unwrap().into());
                armed = next_pub;
            }
            let mut now = 0u64;
            tokio::select! {
                r = conn.ws.recv(|t| self.on_text(&ctx, &mut conn.hb, &mut st, t, &mut now)) => {
                    if let Err(k) = r { closed_reason = Some(k); break; }
                }
                _ = hb.tick() => {
                    if let Err(k) = conn.heartbeat(&ctx).await { closed_reason = Some(k); break; }
                }
                (ch, mut rx) = &mut phase_fut => {
                    if ch.is_err() { break; }
                    phase = *rx.borrow_and_update();
                    phase_fut.set(phase_changed(rx));
                    match phase {
                        Phase::Close => break,
                        Phase::Go { .. } => begin_go(phase, &mut st, &mut rng, &mut next_pub, &mut go_at, &mut end_at),
                        Phase::Ramp | Phase::Check => {}
                    }
                }
                _ = &mut pub_sleep, if publishing => {
                    let intended = next_pub.unwrap();
                    let (topic, stream, ref name, jr) = streams[rr % streams.len()];
                    let slot = rr % streams.len();
                    rr += 1;
                    let seq = seqs[slot];
                    seqs[slot] += 1;
                    let t_us = st.go_unix + intended.saturating_duration_since(go_at).as_micros() as u64;
                    let payload = frame::stamp_payload(Stamp { t: t_us, s: seq, p: stream }, self.payload_bytes);
                    let r = conn.make_ref();
                    let text = frame::encode(jr.map(|j| j.to_string()).as_deref(), Some(&r.to_string()), name, &self.event, &payload);
                    {
                        let mut rec = ctx.rec();
                        rec.sent_per_stream.entry(stream).or_insert((topic, 0)).1 += 1;
                        rec.add("sent", 1);
                        rec.hist("send_lag").record(now_unix_us().saturating_sub(t_us));
                        if st.outstanding.len() >= MAX_OUTSTANDING {
                            st.outstanding.pop_front();
                            rec.add("push_untracked", 1);
                            ctx.prog.pushes_settled.fetch_add(1, Relaxed);
                        }
                    }
                    ctx.prog.sent.fetch_add(1, Relaxed);
                    st.outstanding.push_back((r, t_us));
                    if let Err(k) = conn.send(text).await { closed_reason = Some(k); break; }
                    next_pub = Some(match role.sched {
                        Sched::Fixed(iv) => intended + iv,
                        Sched::Poisson(mean) => intended + rng.exp(mean),
                        Sched::None => end_at,
                    });
                }
            }
        }
        ctx.prog.open.fetch_sub(1, Relaxed);
        // pushes still unanswered will not be (they are reported as push_unreplied)
        ctx.prog.pushes_settled.fetch_add(st.outstanding.len() as u64, Relaxed);
        if !done_counted {
            ctx.prog.publishers_done.fetch_add(1, Relaxed);
        }
        {
            let mut r = ctx.rec();
            if let Some(k) = closed_reason {
                r.error(&format!("disconnected:{k}"));
            }
            let holes = st.tracks.holes();
            if holes > 0 {
                r.add("holes_at_close", holes);
            }
            if !st.outstanding.is_empty() {
                r.add("push_unreplied", st.outstanding.len() as u64);
            }
        }
        conn.close().await;
    }
}

impl Workload for PubSub {
    fn spawn(self: Arc<Self>, ctx: &Arc<Ctx>, tasks: &mut tokio::task::JoinSet<()>) -> usize {
        let n = self.roles.len();
        for (k, role) in self.roles.iter().cloned().enumerate() {
            tasks.spawn(self.clone().run_conn(ctx.clone(), role, k));
        }
        n
    }

    fn drained(&self, ctx: &Ctx) -> bool {
        if !self.drain_waits {
            return true;
        }
        let publishers = self.roles.iter().filter(|r| !r.streams.is_empty() && !matches!(r.sched, Sched::None)).count() as u64;
        if ctx.prog.publishers_done.load(Relaxed) < publishers {
            return false;
        }
        // every push of this process answered (or given up on): replies still in flight at
        // the close would be reported as push_unreplied
        if ctx.prog.pushes_settled.load(Relaxed) < ctx.prog.sent.load(Relaxed) {
            return false;
        }
        if self.all_local {
            // deliveries are merged into the result in batches; the live counts are in `prog`
            let unique = ctx.prog.deliveries.get().saturating_sub(ctx.prog.duplicated.get());
            return unique >= ctx.rec().expected_deliveries();
        }
        // Other processes publish too, so this worker cannot know how many deliveries are still
        // coming: it stops after a quiet spell of twice the largest delivery latency it has
        // seen (at least 1 s; --drain still bounds it). A fixed 1 s cut off deliveries that
        // were merely late (200,000 subscribers over 11 nodes: latencies of several seconds).
        let last = ctx.prog.last_delivery_us.get_max();
        let quiet = (2 * ctx.prog.max_delivery_latency_us.get_max()).max(1_000_000);
        now_unix_us().saturating_sub(last) > quiet
    }
}

/// The report part of fanout and chat: deliveries against what was expected (sent × joined
/// subscribers), losses, duplicates, order, delivery and broadcast-complete latency.
///
/// Losses and surpluses are counted per stream (a surplus on one stream cannot hide a loss on
/// another), and a broadcast that reached no subscriber counts as incomplete (and undelivered).
pub fn summarize_deliveries(r: &WorkerResult, out: &mut Summary) {
    let c = |n: &str| r.counter(n);
    let (m, problems) = (&mut out.metrics, &mut out.problems);
    let expected = r.expected_deliveries();
    let unique = r.unique_deliveries();
    let lost = r.lost_deliveries();
    let unexpected = r.unexpected_deliveries();
    out.server_cpu_per = Some(("server_cpu_us_per_delivery", unique));
    m.put("sent", c("sent") as f64, "count", "info");
    m.put("expected_deliveries", expected as f64, "count", "info");
    m.put("deliveries", unique as f64, "count", "info");
    m.put("deliveries_per_s", unique as f64 / out.measured_s.max(1e-9), "1/s", "higher");
    m.put("lost", lost as f64, "count", "lower");
    m.put("unexpected_deliveries", unexpected as f64, "count", "lower");
    m.put("duplicated", c("duplicated") as f64, "count", "lower");
    m.put("out_of_order", c("out_of_order") as f64, "count", "lower");
    m.lat("delivery", r.hists.get("delivery"), Q_FULL);
    m.lat("push_reply", r.hists.get("push_reply"), Q_SHORT);
    // time until the last subscriber has each broadcast
    let subs_of = |stream: u32| r.sent_per_stream.get(&stream).and_then(|(t, _)| r.subs_per_topic.get(t)).copied().unwrap_or(0);
    let mut complete = Hist::default();
    let mut incomplete = 0u64;
    let mut seen: BTreeMap<u32, u64> = BTreeMap::new();
    for (key, (mx, n)) in &r.msgs {
        let stream = (key >> 32) as u32;
        *seen.entry(stream).or_default() += 1;
        let subs = subs_of(stream);
        if subs == 0 {
            continue; // nobody to complete (its deliveries are unexpected ones)
        }
        if *n as u64 >= subs {
            complete.record(*mx);
        } else {
            incomplete += 1;
        }
    }
    // broadcasts sent to subscribers that not one of them received: no entry in `msgs`
    // (an upper bound if the per-broadcast tracking overflowed, see counter msgs_untracked)
    let mut undelivered = 0u64;
    for (stream, (_, sent)) in &r.sent_per_stream {
        if subs_of(*stream) > 0 {
            undelivered += sent.saturating_sub(seen.get(stream).copied().unwrap_or(0));
        }
    }
    incomplete += undelivered;
    m.lat("broadcast_complete", Some(&complete), Q_SHORT);
    m.put("broadcasts_incomplete", incomplete as f64, "count", "lower");
    m.put("broadcasts_undelivered", undelivered as f64, "count", "lower");
    if expected == 0 {
        problems.push("no deliveries were expected (nothing published or nobody subscribed)".into());
    }
    if lost > 0 {
        problems.push(format!("{lost} deliveries lost of {expected} expected"));
    }
    if unexpected > 0 {
        problems.push(format!("{unexpected} deliveries more than expected"));
    }
    if undelivered > 0 {
        problems.push(format!("{undelivered} broadcasts reached no subscriber"));
    }
    if incomplete > 0 {
        problems.push(format!("{incomplete} broadcasts did not reach every subscriber"));
    }
    if c("duplicated") > 0 {
        problems.push(format!("{} duplicated deliveries", c("duplicated")));
    }
    if c("out_of_order") > 0 {
        problems.push(format!("{} out-of-order deliveries", c("out_of_order")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{build, RunInfo, ServerSamples};
    use serde_json::json;

    #[test]
    fn delivery_report_counts_loss() {
        let mut r = WorkerResult::default();
        r.add("connections_planned", 3);
        r.add("connections_established", 3);
        r.subs_per_topic.insert(0, 2);
        r.sent_per_stream.insert(0, (0, 5));
        r.add("deliveries", 9);
        r.recv_per_stream.insert(0, 9);
        r.add("sent", 5);
        for s in 0..5u64 {
            r.msgs.insert(s, (1000 + s, if s == 4 { 1 } else { 2 }));
            r.hist("delivery").record(1000);
            r.timeline_record(s as usize, 1000);
        }
        let info = RunInfo {
            scenario: "fanout",
            timeline_metric: "delivery",
            params: json!({}),
            env: json!({}),
            t0_unix: 0,
            started_at_unix: 0,
            server: ServerSamples::default(),
            server_pid: None,
            duration_s: 1.0,
        };
        let b = build(info, &r, summarize_deliveries);
        assert_eq!(b.report["metrics"]["lost"]["value"], 1.0);
        assert_eq!(b.report["metrics"]["broadcasts_incomplete"]["value"], 1.0);
        assert_eq!(b.report["metrics"]["deliveries_per_s"]["value"], 9.0);
        assert_eq!(b.report["schema_version"], 1);
        assert_eq!(b.problems, vec!["1 deliveries lost of 10 expected", "1 broadcasts did not reach every subscriber"]);
    }

    fn fanout_info() -> RunInfo<'static> {
        RunInfo {
            scenario: "fanout",
            timeline_metric: "delivery",
            params: json!({}),
            env: json!({}),
            t0_unix: 0,
            started_at_unix: 0,
            server: ServerSamples::default(),
            server_pid: None,
            duration_s: 1.0,
        }
    }

    /// `n` deliveries of broadcast `seq` of `stream`, recorded the way the connections do.
    fn deliver(r: &mut WorkerResult, stream: u32, seq: u32, n: u32) {
        for _ in 0..n {
            r.add("deliveries", 1);
            crate::local::record_deliveries(r, &[Delivery { key: ((stream as u64) << 32) | seq as u64, lat: 1000, sec: 0 }]);
        }
    }

    #[test]
    fn broadcast_that_reached_no_one_is_incomplete() {
        let mut r = WorkerResult::default();
        r.add("connections_planned", 3);
        r.add("connections_established", 3);
        r.subs_per_topic.insert(0, 2);
        r.sent_per_stream.insert(0, (0, 5));
        r.add("sent", 5);
        // broadcasts 0..4 reached both subscribers, broadcast 4 reached no one
        for seq in 0..4 {
            deliver(&mut r, 0, seq, 2);
        }
        let b = build(fanout_info(), &r, summarize_deliveries);
        assert_eq!(b.report["metrics"]["lost"]["value"], 2.0);
        assert_eq!(b.report["metrics"]["broadcasts_incomplete"]["value"], 1.0, "{}", b.report["metrics"]);
        assert_eq!(b.report["metrics"]["broadcasts_undelivered"]["value"], 1.0, "{}", b.report["metrics"]);
        assert!(b.problems.iter().any(|p| p.contains("1 broadcasts reached no subscriber")), "{:?}", b.problems);
    }

    #[test]
    fn excess_on_one_stream_does_not_mask_loss_on_another() {
        let mut r = WorkerResult::default();
        r.add("connections_planned", 6);
        r.add("connections_established", 6);
        // two topics of 2 subscribers, one stream each, 5 broadcasts each: 20 expected
        for t in 0..2 {
            r.subs_per_topic.insert(t, 2);
            r.sent_per_stream.insert(t, (t, 5));
        }
        r.add("sent", 10);
        // stream 0: every broadcast reached 3 receivers (one more than joined);
        // stream 1: every broadcast reached only 1 of 2: 5 lost, hidden by 5 extra on stream 0
        for seq in 0..5 {
            deliver(&mut r, 0, seq, 3);
            deliver(&mut r, 1, seq, 1);
        }
        assert_eq!(r.unique_deliveries(), r.expected_deliveries());
        let b = build(fanout_info(), &r, summarize_deliveries);
        assert_eq!(b.report["metrics"]["lost"]["value"], 5.0, "{}", b.report["metrics"]);
        assert_eq!(b.report["metrics"]["unexpected_deliveries"]["value"], 5.0, "{}", b.report["metrics"]);
        assert!(b.problems.contains(&"5 deliveries lost of 20 expected".to_string()), "{:?}", b.problems);
        assert!(b.problems.contains(&"5 deliveries more than expected".to_string()), "{:?}", b.problems);
    }
}
