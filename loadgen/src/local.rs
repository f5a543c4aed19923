//! Accumulation of what is recorded per received frame, merged into the worker's shared
//! [`WorkerResult`] rarely: per runtime thread ([`Shards`], one uncontended lock each), every
//! [`BATCH`] buffered samples and at the end of the run. A connection keeps nothing of it (no
//! per-connection buffers: 19k connections would hold 19k of them), and the per-frame path
//! hashes no name and takes no shared lock.
//!
//! Every recorded quantity merges exactly (counter sums, histogram counts, per-broadcast max and
//! count), so the merged result equals recording every frame into the shared result directly.

use crate::result::WorkerResult;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Slots of per-thread state (shards here, striped counters in `engine::ctx`): a runtime thread
/// uses slot [`stripe`]`()`.
pub(crate) const STRIPES: usize = 16;

/// This thread's slot.
pub(crate) fn stripe() -> usize {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local!(static MINE: usize = (NEXT.fetch_add(1, Relaxed) as usize) % STRIPES);
    MINE.with(|m| *m)
}

/// Buffered samples per shard before they are merged (one lock of the result per BATCH).
pub const BATCH: usize = 1024;
/// "no timeline bucket" (delivery before the measurement phase)
pub const NO_SEC: u32 = u32::MAX;
/// Cap of tracked broadcasts (the `msgs` map) per worker.
pub const MAX_TRACKED_MSGS: usize = 4_000_000;

/// One recorded (non-duplicate) delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// stream << 32 | seq
    pub key: u64,
    /// latency, µs
    pub lat: u64,
    /// timeline second (by intended send time), or [`NO_SEC`]
    pub sec: u32,
}

/// What a connection accumulated since its last merge.
#[derive(Debug, Default)]
pub struct Local {
    counters: Vec<(&'static str, u64)>,
    errors: Vec<(&'static str, u64)>,
    deliveries: Vec<Delivery>,
    /// (histogram name, value)
    samples: Vec<(&'static str, u64)>,
}

fn bump(v: &mut Vec<(&'static str, u64)>, name: &'static str, n: u64) {
    match v.iter_mut().find(|e| e.0 == name) {
        Some(e) => e.1 += n,
        None => v.push((name, n)),
    }
}

impl Local {
    pub fn add(&mut self, name: &'static str, n: u64) {
        bump(&mut self.counters, name, n);
    }
    pub fn error(&mut self, kind: &'static str) {
        bump(&mut self.errors, kind, 1);
    }
    /// Whether the sample buffers are due for a merge.
    pub fn full(&self) -> bool {
        self.deliveries.len() >= BATCH || self.samples.len() >= BATCH
    }
    /// Buffer a delivery; true when the buffers should be merged.
    #[inline]
    pub fn delivery(&mut self, d: Delivery) -> bool {
        if self.deliveries.capacity() == 0 {
            self.deliveries.reserve_exact(BATCH);
        }
        self.deliveries.push(d);
        self.deliveries.len() >= BATCH
    }
    /// Buffer a histogram sample; true when the buffers should be merged.
    pub fn sample(&mut self, hist: &'static str, v: u64) -> bool {
        if self.samples.capacity() == 0 {
            self.samples.reserve_exact(BATCH);
        }
        self.samples.push((hist, v));
        self.samples.len() >= BATCH
    }
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty() && self.errors.is_empty() && self.deliveries.is_empty() && self.samples.is_empty()
    }
    /// Move everything into `r` (buffers keep their capacity).
    pub fn merge_into(&mut self, r: &mut WorkerResult) {
        for (k, v) in self.counters.drain(..) {
            r.add(k, v);
        }
        for (k, v) in self.errors.drain(..) {
            *r.errors.entry(k.to_string()).or_default() += v;
        }
        for (k, v) in self.samples.drain(..) {
            r.hist(k).record(v);
        }
        record_deliveries(r, &self.deliveries);
        self.deliveries.clear();
    }
}

/// Record deliveries into a result: the `delivery` histogram, the timeline, the per-stream
/// count, and per broadcast the max latency and delivery count (what `record_delivery` did per
/// frame).
pub fn record_deliveries(r: &mut WorkerResult, ds: &[Delivery]) {
    if ds.is_empty() {
        return;
    }
    {
        let h = r.hist("delivery");
        for d in ds {
            h.record(d.lat);
        }
    }
    for d in ds {
        if d.sec != NO_SEC {
            r.timeline_record(d.sec as usize, d.lat);
        }
    }
    // a batch is mostly runs of one broadcast (one fan-out read by many connections of a
    // thread): a run costs one map lookup
    let mut untracked = 0u64;
    let mut i = 0;
    while i < ds.len() {
        let key = ds[i].key;
        let mut j = i + 1;
        let mut mx = ds[i].lat;
        while j < ds.len() && ds[j].key == key {
            mx = mx.max(ds[j].lat);
            j += 1;
        }
        let n = (j - i) as u32;
        *r.recv_per_stream.entry((key >> 32) as u32).or_default() += n as u64;
        let tracked = r.msgs.len() < MAX_TRACKED_MSGS;
        match r.msgs.get_mut(&key) {
            Some(e) => {
                e.0 = e.0.max(mx);
                e.1 += n;
            }
            None if tracked => {
                r.msgs.insert(key, (mx, n));
            }
            None => untracked += n as u64,
        }
        i = j;
    }
    if untracked > 0 {
        r.add("msgs_untracked", untracked);
    }
}

/// One [`Local`] per runtime thread (by [`stripe`]): a connection task records into the shard
/// of the thread it runs on, under that shard's lock (taken by nobody else but the final
/// flush, so uncontended).
#[derive(Default)]
pub struct Shards([Shard; STRIPES]);

#[derive(Default)]
#[repr(align(128))]
struct Shard(Mutex<Local>);

impl Shards {
    /// Record into this thread's shard; when its buffers are full they are merged into `rec`
    /// (after the shard's lock is released: the two locks are never held together).
    #[inline]
    pub fn with<R>(&self, rec: &Mutex<WorkerResult>, f: impl FnOnce(&mut Local) -> R) -> R {
        let (r, mut taken) = {
            let mut l = self.0[stripe()].0.lock().unwrap_or_else(|e| e.into_inner());
            let r = f(&mut l);
            if !l.full() {
                return r;
            }
            (r, std::mem::take(&mut *l))
        };
        taken.merge_into(&mut rec.lock().unwrap_or_else(|e| e.into_inner()));
        r
    }

    /// Merge every shard into `rec` (at the end of a run, before the result is read).
    pub fn flush_into(&self, rec: &Mutex<WorkerResult>) {
        for s in &self.0 {
            let mut taken = std::mem::take(&mut *s.0.lock().unwrap_or_else(|e| e.into_inner()));
            if !taken.is_empty() {
                taken.merge_into(&mut rec.lock().unwrap_or_else(|e| e.into_inner()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Reference: what the per-frame code did, everything into one result under one lock.
    fn record_direct(r: &mut WorkerResult, d: Delivery) {
        r.add("deliveries", 1);
        *r.recv_per_stream.entry((d.key >> 32) as u32).or_default() += 1;
        r.hist("delivery").record(d.lat);
        if d.sec != NO_SEC {
            r.timeline_record(d.sec as usize, d.lat);
        }
        let tracked = r.msgs.len() < MAX_TRACKED_MSGS;
        match r.msgs.get_mut(&d.key) {
            Some(e) => {
                e.0 = e.0.max(d.lat);
                e.1 += 1;
            }
            None if tracked => {
                r.msgs.insert(d.key, (d.lat, 1));
            }
            None => r.add("msgs_untracked", 1),
        }
    }

    fn canon(r: &WorkerResult) -> String {
        // the JSON wire form, with the map in key order
        let mut v = serde_json::to_value(r).unwrap();
        let mut msgs: Vec<(u64, (u64, u32))> = r.msgs.iter().map(|(k, v)| (*k, *v)).collect();
        msgs.sort();
        v["msgs"] = serde_json::to_value(msgs).unwrap();
        v.to_string()
    }

    #[test]
    fn per_connection_merge_equals_recording_everything_in_one() {
        let mut rng = Rng(7);
        let conns = 37;
        let mut direct = WorkerResult::default();
        let mut locals: Vec<Local> = (0..conns).map(|_| Local::default()).collect();
        let mut batched = WorkerResult::default();
        for i in 0..20_000u64 {
            let c = rng.below(conns);
            let stream = rng.below(5) as u64;
            let seq = rng.below(300) as u64;
            let d = Delivery {
                key: (stream << 32) | seq,
                lat: 1 + rng.below(5_000_000) as u64,
                sec: if i % 11 == 0 { NO_SEC } else { rng.below(15) as u32 },
            };
            record_direct(&mut direct, d);
            if i % 97 == 0 {
                direct.add("out_of_order", 1);
                locals[c].add("out_of_order", 1);
            }
            if i % 1000 == 0 {
                direct.error("frame:undecodable");
                locals[c].error("frame:undecodable");
                direct.hist("push_reply").record(i + 1);
                if locals[c].sample("push_reply", i + 1) {
                    locals[c].merge_into(&mut batched);
                }
            }
            locals[c].add("deliveries", 1);
            if locals[c].delivery(d) {
                locals[c].merge_into(&mut batched);
            }
        }
        for l in &mut locals {
            l.merge_into(&mut batched);
            assert!(l.is_empty());
        }
        assert_eq!(batched.counter("deliveries"), 20_000);
        assert_eq!(canon(&batched), canon(&direct));
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(batched.hists["delivery"].q(q), direct.hists["delivery"].q(q));
        }

        // and through worker processes: partial results shipped as JSON, merged by the coordinator
        let mut a = WorkerResult::default();
        let mut b = WorkerResult::default();
        let mut rng = Rng(9);
        let mut one = WorkerResult::default();
        for _ in 0..5000 {
            let d = Delivery { key: rng.below(50) as u64, lat: 1 + rng.below(100_000) as u64, sec: rng.below(4) as u32 };
            record_direct(&mut one, d);
            let mut l = Local::default();
            l.add("deliveries", 1);
            l.delivery(d);
            l.merge_into(if rng.below(2) == 0 { &mut a } else { &mut b });
        }
        let mut merged: WorkerResult = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        merged.merge(serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap());
        assert_eq!(canon(&merged), canon(&one));
    }
}
