//! What one worker process measured, and how worker results merge (histograms are merged once,
//! by the coordinator).

use crate::hist::Hist;
use crate::sysinfo::ProcSample;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcInfo {
    pub worker: u32,
    pub pid: u32,
    /// connections established (and joined) at the end of the ramp
    pub connections: u64,
    pub health_start: ProcSample,
    pub health_end: ProcSample,
    /// loadgen CPU used from ramp start to the end, microseconds
    pub cpu_us: u64,
    /// loadgen CPU used during the ramp (start → all local connections settled), microseconds
    #[serde(default)]
    pub ramp_cpu_us: u64,
    /// loadgen CPU used during the measured phase (go → drained), microseconds; the same
    /// window as the server's `server_measure_cpu_s`
    #[serde(default)]
    pub measure_cpu_us: u64,
    pub peak_rss_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerResult {
    /// latency histograms in µs (and a few size histograms in bytes, named *_bytes)
    pub hists: BTreeMap<String, Hist>,
    /// counters, summed over workers
    pub counters: BTreeMap<String, u64>,
    /// failures by kind, summed over workers
    pub errors: BTreeMap<String, u64>,
    /// established connections per local source address
    pub by_source_ip: BTreeMap<String, u64>,
    /// per second of the measurement phase (by intended send time): the primary latency
    pub timeline: Vec<Hist>,
    /// joined subscribers per topic index
    pub subs_per_topic: BTreeMap<u32, u64>,
    /// per stream: (topic index, broadcasts sent)
    pub sent_per_stream: BTreeMap<u32, (u32, u64)>,
    /// per stream: unique deliveries received (losses are counted per stream, so that more
    /// than expected on one stream cannot hide losses on another)
    #[serde(default)]
    pub recv_per_stream: BTreeMap<u32, u64>,
    /// per broadcast (stream << 32 | seq): (max delivery latency µs, deliveries)
    pub msgs: HashMap<u64, (u64, u32)>,
    /// time markers, Unix µs; merged by max
    pub marks: BTreeMap<String, u64>,
    pub procs: Vec<ProcInfo>,
}

pub const TIMELINE_MAX_S: usize = 3600;

impl WorkerResult {
    pub fn hist(&mut self, name: &str) -> &mut Hist {
        if !self.hists.contains_key(name) {
            self.hists.insert(name.to_string(), Hist::default());
        }
        self.hists.get_mut(name).unwrap()
    }
    pub fn add(&mut self, name: &str, n: u64) {
        *self.counters.entry(name.to_string()).or_default() += n;
    }
    pub fn error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_string()).or_default() += 1;
    }
    pub fn mark_max(&mut self, name: &str, v: u64) {
        let e = self.marks.entry(name.to_string()).or_default();
        *e = (*e).max(v);
    }
    pub fn timeline_record(&mut self, sec: usize, v: u64) {
        if sec >= TIMELINE_MAX_S {
            return;
        }
        if self.timeline.len() <= sec {
            self.timeline.resize_with(sec + 1, Hist::default);
        }
        self.timeline[sec].record(v);
    }
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    pub fn merge(&mut self, o: WorkerResult) {
        for (k, h) in o.hists {
            self.hist(&k).merge(&h);
        }
        for (k, v) in o.counters {
            self.add(&k, v);
        }
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (k, v) in o.by_source_ip {
            *self.by_source_ip.entry(k).or_default() += v;
        }
        if self.timeline.len() < o.timeline.len() {
            self.timeline.resize_with(o.timeline.len(), Hist::default);
        }
        for (i, h) in o.timeline.iter().enumerate() {
            self.timeline[i].merge(h);
        }
        for (k, v) in o.subs_per_topic {
            *self.subs_per_topic.entry(k).or_default() += v;
        }
        for (k, (t, n)) in o.sent_per_stream {
            let e = self.sent_per_stream.entry(k).or_insert((t, 0));
            e.1 += n;
        }
        for (k, n) in o.recv_per_stream {
            *self.recv_per_stream.entry(k).or_default() += n;
        }
        for (k, (mx, n)) in o.msgs {
            let e = self.msgs.entry(k).or_insert((0, 0));
            e.0 = e.0.max(mx);
            e.1 += n;
        }
        for (k, v) in o.marks {
            self.mark_max(&k, v);
        }
        self.procs.extend(o.procs);
    }

    /// Deliveries the subscribers should have received: Σ over streams of
    /// sent × joined subscribers of the stream's topic.
    pub fn expected_deliveries(&self) -> u64 {
        self.sent_per_stream
            .values()
            .map(|(t, n)| n * self.subs_per_topic.get(t).copied().unwrap_or(0))
            .sum()
    }

    /// Per stream: (deliveries expected, unique deliveries received).
    pub fn per_stream(&self) -> BTreeMap<u32, (u64, u64)> {
        let mut out: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
        for (s, (t, n)) in &self.sent_per_stream {
            out.entry(*s).or_default().0 = n * self.subs_per_topic.get(t).copied().unwrap_or(0);
        }
        for (s, n) in &self.recv_per_stream {
            out.entry(*s).or_default().1 = *n;
        }
        out
    }

    /// Deliveries missing, summed per stream: Σ max(0, expected − received).
    pub fn lost_deliveries(&self) -> u64 {
        self.per_stream().values().map(|(e, r)| e.saturating_sub(*r)).sum()
    }

    /// Deliveries beyond what was expected, summed per stream: Σ max(0, received − expected).
    pub fn unexpected_deliveries(&self) -> u64 {
        self.per_stream().values().map(|(e, r)| r.saturating_sub(*e)).sum()
    }

    /// Unique deliveries (received minus duplicates).
    pub fn unique_deliveries(&self) -> u64 {
        self.counter("deliveries").saturating_sub(self.counter("duplicated"))
    }
}

/// Per-subscriber tracking of sequence numbers per stream: detects duplicates and
/// out-of-order deliveries; losses are computed globally (expected − unique).
/// A connection sees few streams: a vector sorted by stream id (no hashing per frame).
#[derive(Debug, Default)]
pub struct Tracks(Vec<(u32, Track)>);

#[derive(Debug, Default)]
struct Track {
    next: u32,
    missing: Vec<u32>,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Seen {
    InOrder,
    /// arrived after a later sequence number
    OutOfOrder,
    Duplicate,
    /// a gap too large to remember; later arrivals from it count as duplicates
    Overflow,
}

const MAX_MISSING: usize = 4096;

impl Tracks {
    pub fn observe(&mut self, stream: u32, seq: u32) -> Seen {
        let i = match self.0.binary_search_by_key(&stream, |e| e.0) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (stream, Track::default()));
                i
            }
        };
        let t = &mut self.0[i].1;
        if seq == t.next {
            t.next += 1;
            Seen::InOrder
        } else if seq > t.next {
            let gap = (seq - t.next) as usize;
            let overflow = t.missing.len() + gap > MAX_MISSING;
            if !overflow {
                t.missing.extend(t.next..seq);
            }
            t.next = seq + 1;
            if overflow { Seen::Overflow } else { Seen::InOrder }
        } else if let Some(i) = t.missing.iter().position(|&m| m == seq) {
            t.missing.swap_remove(i);
            Seen::OutOfOrder
        } else {
            Seen::Duplicate
        }
    }
    /// holes not (yet) filled
    pub fn holes(&self) -> u64 {
        self.0.iter().map(|(_, t)| t.missing.len() as u64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_classify() {
        let mut t = Tracks::default();
        assert_eq!(t.observe(1, 0), Seen::InOrder);
        assert_eq!(t.observe(1, 1), Seen::InOrder);
        assert_eq!(t.observe(1, 1), Seen::Duplicate);
        assert_eq!(t.observe(1, 4), Seen::InOrder); // 2, 3 missing
        assert_eq!(t.holes(), 2);
        assert_eq!(t.observe(1, 3), Seen::OutOfOrder);
        assert_eq!(t.observe(1, 3), Seen::Duplicate);
        assert_eq!(t.observe(2, 0), Seen::InOrder); // streams independent
        assert_eq!(t.holes(), 1);
    }

    #[test]
    fn merge_sums_and_maxes() {
        let mut a = WorkerResult::default();
        a.add("deliveries", 10);
        a.error("connect:econnrefused");
        a.hist("delivery").record(100);
        a.timeline_record(2, 50);
        a.subs_per_topic.insert(0, 3);
        a.sent_per_stream.insert(0, (0, 5));
        a.msgs.insert(7, (100, 3));
        a.recv_per_stream.insert(0, 10);
        a.mark_max("ramp_done", 5);
        let mut b = WorkerResult::default();
        b.add("deliveries", 5);
        b.add("duplicated", 1);
        b.error("connect:econnrefused");
        b.hist("delivery").record(300);
        b.timeline_record(0, 70);
        b.subs_per_topic.insert(0, 2);
        b.msgs.insert(7, (250, 2));
        b.recv_per_stream.insert(0, 4);
        b.mark_max("ramp_done", 9);
        a.merge(b);
        assert_eq!(a.counter("deliveries"), 15);
        assert_eq!(a.errors["connect:econnrefused"], 2);
        assert_eq!(a.hists["delivery"].len(), 2);
        assert_eq!(a.timeline.len(), 3);
        assert_eq!(a.timeline[0].len(), 1);
        assert_eq!(a.msgs[&7], (250, 5));
        assert_eq!(a.marks["ramp_done"], 9);
        assert_eq!(a.expected_deliveries(), 25);
        assert_eq!(a.unique_deliveries(), 14);
        assert_eq!(a.recv_per_stream[&0], 14);
        assert_eq!((a.lost_deliveries(), a.unexpected_deliveries()), (11, 0));
        // the JSON wire form round-trips
        let s = serde_json::to_string(&a).unwrap();
        let back: WorkerResult = serde_json::from_str(&s).unwrap();
        assert_eq!(back.msgs[&7], (250, 5));
        assert_eq!(back.hists["delivery"].len(), 2);
    }
}
