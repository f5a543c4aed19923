//! A presence member's connection: the initial join, leave and rejoin on the churn driver's
//! command, and (for observers) a phoenix.js Presence view whose changes complete convergence
//! events. Members that are not observers only count `presence_diff` frames.

use super::model::{parse_diff, parse_presences, PresenceView};
use super::rooms::{member_key, PresenceSc};
use crate::engine::conn::ref_is;
use crate::engine::{establish, heartbeat_timer, instant_at_unix, now_unix_us, uri_component, Conn, Ctx, Phase};
use crate::error::ConnError;
use crate::frame;
use crate::engine::ctx::ConnRec;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

impl PresenceSc {
    pub(super) async fn run_member(self: Arc<Self>, ctx: Arc<Ctx>, pos: usize, m: usize, slot: usize, mut rx: mpsc::Receiver<u64>) {
        let room = self.rooms[pos];
        let idx = room as usize * self.room_size + m;
        let key = member_key(room, m);
        let topic = format!("{}{}", self.prefix, room);
        let observer = m < self.observers;
        // per-frame counters (into the thread's shard, merged into the worker's result)
        let mut lrec = ConnRec::new(ctx.clone());
        let intended = ctx.ramp_slot(slot);
        tokio::time::sleep_until(intended.into()).await;
        let query = format!("{}={}&", uri_component(&self.key_param), uri_component(&key));
        let Some(ws) = establish(&ctx, idx, intended, &query).await else {
            ctx.prog.failed.fetch_add(1, Relaxed);
            ctx.prog.settled.fetch_add(1, Relaxed);
            self.checks_done.fetch_add(1, Relaxed);
            return;
        };
        let mut conn = Conn::new(ws);
        let mut view = if observer { Some(PresenceView::new()) } else { None };
        let mut phase = *ctx.phase.borrow();
        let mut phase_rx = ctx.phase.subscribe();
        let mut go_unix = 0u64;
        let mut hb = heartbeat_timer(&ctx, idx);
        // membership state
        let mut join_ref: Option<u64>; // current channel join_ref (joined or joining)
        let mut joined = false;
        let mut ramp_pending = true; // initial join not settled yet
        let mut join_sent: Option<(Instant, bool)>; // (sent at, is ramp) until the reply
        let mut state_wait: Option<(Instant, bool)>; // until presence_state
        let mut join_deadline: Option<Instant>;
        let mut rejoin_at: Option<(Instant, u64)> = None;
        let mut closed_reason: Option<ConnError> = None;
        let join_timeout = Duration::from_millis(ctx.common.join_timeout_ms);

        // initial join
        {
            let r = conn.make_ref();
            join_ref = Some(r);
            self.track(pos).present[m] = true;
            let now = Instant::now();
            join_sent = Some((now, true));
            state_wait = Some((now, true));
            join_deadline = Some(now + join_timeout);
            if let Err(k) = conn.send(frame::join(&r.to_string(), &topic, "{}")).await {
                ctx.rec().error(&format!("join:send_{k}"));
                self.track(pos).present[m] = false;
                ctx.prog.failed.fetch_add(1, Relaxed);
                ctx.prog.settled.fetch_add(1, Relaxed);
                self.checks_done.fetch_add(1, Relaxed);
                return;
            }
        }
        let settle = |ok: bool, ramp_pending: &mut bool| {
            if *ramp_pending {
                *ramp_pending = false;
                if ok {
                    ctx.prog.established.fetch_add(1, Relaxed);
                    ctx.prog.open.fetch_add(1, Relaxed);
                } else {
                    ctx.prog.failed.fetch_add(1, Relaxed);
                    ctx.rec().add("connections_join_failed", 1);
                }
                ctx.prog.settled.fetch_add(1, Relaxed);
                ctx.rec().hist("connect_and_join").record(intended.elapsed().as_micros() as u64);
            }
        };

        loop {
            let jd = join_deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let ra = rejoin_at.map(|x| x.0).unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let hb_state = &mut conn.hb;
            tokio::select! {
                r = conn.ws.recv(|text: &str| {
                        let Ok(f) = frame::decode(text) else { lrec.error("frame:undecodable"); return };
                        if hb_state.on_reply(&ctx, &f) { return; }
                        if f.topic != topic.as_str() { lrec.add("frames_unknown_topic", 1); return; }
                        // isMember: drop frames stamped with an outdated join_ref
                        let stale = match (&f.join_ref, join_ref) {
                            (Some(fj), Some(c)) => !fj.is_empty() && !ref_is(fj, c),
                            (Some(fj), None) => !fj.is_empty(),
                            _ => false,
                        };
                        // the reply to the current join
                        let current_ref = match (f.ref_.as_deref(), join_ref) {
                            (Some(r), Some(j)) => ref_is(r, j),
                            (None, None) => true,
                            _ => false,
                        };
                        match f.event.as_ref() {
                            "phx_reply" if !stale && join_sent.is_some() && current_ref => {
                                let (at, ramp) = join_sent.take().unwrap();
                                join_deadline = None;
                                match frame::reply_status(f.payload).as_deref() {
                                    Some("ok") => {
                                        joined = true;
                                        ctx.rec().hist(if ramp { "join" } else { "rejoin" }).record(at.elapsed().as_micros() as u64);
                                        settle(true, &mut ramp_pending);
                                        if !ramp { self.track(pos).busy[m] = false; }
                                    }
                                    s => {
                                        ctx.rec().error(&format!("join:{}", s.unwrap_or("bad_reply")));
                                        let mut t = self.track(pos);
                                        t.present[m] = false;
                                        t.busy[m] = false;
                                        drop(t);
                                        join_ref = None;
                                        state_wait = None;
                                        settle(false, &mut ramp_pending);
                                    }
                                }
                            }
                            "presence_state" if !stale => {
                                if let Some((at, ramp)) = state_wait.take() {
                                    let mut r = ctx.rec();
                                    let pfx = if ramp { "ramp_" } else { "" };
                                    r.hist(&format!("{pfx}presence_state")).record(at.elapsed().as_micros() as u64);
                                    r.hist(&format!("{pfx}presence_state_bytes")).record(f.payload.get().len() as u64);
                                }
                                if let Some(v) = view.as_mut() {
                                    match parse_presences(f.payload.get()) {
                                        Ok(p) => {
                                            let ts = v.on_state(p);
                                            let now = now_unix_us();
                                            let done = {
                                                let mut t = self.track(pos);
                                                t.established[m] = true;
                                                t.view_len[m] = v.len();
                                                t.on_transitions(room, m, &ts, now)
                                            };
                                            self.record_done(&ctx, done, go_unix);
                                        }
                                        Err(_) => ctx.rec().error("presence:bad_state"),
                                    }
                                }
                            }
                            "presence_diff" => {
                                lrec.add("presence_diff_frames", 1);
                                lrec.add("presence_diff_bytes", f.payload.get().len() as u64);
                                if go_unix > 0 { lrec.add("presence_diff_frames_measured", 1); }
                                if let Some(v) = view.as_mut() {
                                    if !joined && join_ref.is_none() { return; }
                                    match parse_diff(f.payload.get()) {
                                        Ok(d) => {
                                            let ts = v.on_diff(d);
                                            let mut t = self.track(pos);
                                            t.view_len[m] = v.len();
                                            if !ts.is_empty() {
                                                let now = now_unix_us();
                                                let done = t.on_transitions(room, m, &ts, now);
                                                drop(t);
                                                self.record_done(&ctx, done, go_unix);
                                            }
                                        }
                                        Err(_) => ctx.rec().error("presence:bad_diff"),
                                    }
                                }
                            }
                            "phx_close" | "phx_error" if !stale => {
                                ctx.rec().error(&format!("channel:{}", f.event));
                            }
                            _ => {}
                        }
                }) => {
                    if let Err(k) = r { closed_reason = Some(k); break; }
                }
                _ = hb.tick() => {
                    if let Err(k) = conn.heartbeat(&ctx).await { closed_reason = Some(k); break; }
                }
                _ = tokio::time::sleep_until(jd.into()), if join_deadline.is_some() => {
                    ctx.rec().error("join:timeout");
                    join_deadline = None;
                    join_sent = None;
                    state_wait = None;
                    let mut t = self.track(pos);
                    t.present[m] = false;
                    t.busy[m] = false;
                    drop(t);
                    join_ref = None;
                    settle(false, &mut ramp_pending);
                }
                cmd = rx.recv() => {
                    let Some(intended_unix) = cmd else { continue };
                    let Some(j) = join_ref.filter(|_| joined) else {
                        self.track(pos).busy[m] = false;
                        ctx.rec().add("churn_skipped_not_joined", 1);
                        continue;
                    };
                    let r = conn.make_ref();
                    joined = false;
                    join_ref = None;
                    if let Some(v) = view.as_mut() { v.on_leave(); }
                    let note = {
                        let mut t = self.track(pos);
                        t.present[m] = false;
                        if observer { t.drop_observer(m); }
                        t.start_event(m, false, intended_unix)
                    };
                    {
                        let mut rc = ctx.rec();
                        rc.add("leaves", 1);
                        if let Some(n) = note { rc.add(n, 1); }
                    }
                    if let Err(k) = conn.send(frame::leave(&j.to_string(), &r.to_string(), &topic)).await { closed_reason = Some(k); break; }
                    let rejoin_unix = intended_unix + self.rejoin_delay.as_micros() as u64;
                    rejoin_at = Some((instant_at_unix(rejoin_unix), rejoin_unix));
                }
                _ = tokio::time::sleep_until(ra.into()), if rejoin_at.is_some() => {
                    let (_, rejoin_unix) = rejoin_at.take().unwrap();
                    let r = conn.make_ref();
                    join_ref = Some(r);
                    let now = Instant::now();
                    join_sent = Some((now, false));
                    state_wait = Some((now, false));
                    join_deadline = Some(now + join_timeout);
                    if let Some(v) = view.as_mut() { v.on_rejoin(); }
                    let note = {
                        let mut t = self.track(pos);
                        t.present[m] = true;
                        t.start_event(m, true, rejoin_unix)
                    };
                    {
                        let mut rc = ctx.rec();
                        rc.add("rejoins", 1);
                        if let Some(n) = note { rc.add(n, 1); }
                    }
                    if let Err(k) = conn.send(frame::join(&r.to_string(), &topic, "{}")).await { closed_reason = Some(k); break; }
                }
                ch = phase_rx.changed() => {
                    if ch.is_err() { break; }
                    phase = *phase_rx.borrow_and_update();
                    match phase {
                        Phase::Go { unix_us, .. } => go_unix = unix_us,
                        Phase::Check => {
                            if let Some(v) = view.as_ref() {
                                let t = self.track(pos);
                                if t.established.get(m).copied().unwrap_or(false) && v.synced() {
                                    let truth: Vec<usize> = (0..self.room_size).filter(|&x| t.present[x]).collect();
                                    let ok = v.len() == truth.len() && truth.iter().all(|&x| v.contains(&member_key(room, x)));
                                    drop(t);
                                    let mut rc = ctx.rec();
                                    rc.add("final_views_checked", 1);
                                    if !ok { rc.add("final_view_mismatches", 1); }
                                }
                            }
                            self.checks_done.fetch_add(1, Relaxed);
                        }
                        Phase::Close => break,
                        Phase::Ramp => {}
                    }
                }
            }
        }
        if let Some(k) = closed_reason {
            ctx.rec().error(&format!("disconnected:{k}"));
            settle(false, &mut ramp_pending);
            let mut t = self.track(pos);
            t.present[m] = false;
            if observer {
                t.drop_observer(m);
            }
            if phase != Phase::Close {
                self.checks_done.fetch_add(1, Relaxed);
            }
        } else if !ramp_pending {
            ctx.prog.open.fetch_sub(1, Relaxed);
        }
        conn.close().await;
    }
}
