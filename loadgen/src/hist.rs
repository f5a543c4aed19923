//! Latency histograms (microseconds), serialized as HdrHistogram V2 (deflate) in base64 so that
//! worker processes can send them to the coordinator, which merges them once.

use base64::Engine;
use hdrhistogram::errors::AdditionError;
use hdrhistogram::serialization::{DeserializeError, Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest trackable value: 1 hour in microseconds (values above are clamped and counted).
pub const MAX_US: u64 = 3_600_000_000;

#[derive(Clone, Debug)]
pub struct Hist(pub Histogram<u64>);

impl Default for Hist {
    fn default() -> Self {
        Hist(Histogram::new_with_bounds(1, MAX_US, 3).expect("histogram bounds"))
    }
}

impl Hist {
    pub fn record(&mut self, v: u64) {
        self.0.saturating_record(v.clamp(1, MAX_US));
    }
    pub fn merge(&mut self, other: &Hist) {
        // same bounds everywhere, so add cannot fail; saturate if it did
        let _ = self.0.add(&other.0);
    }
    pub fn len(&self) -> u64 {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn to_base64(&self) -> String {
        let mut buf = Vec::new();
        V2DeflateSerializer::new().serialize(&self.0, &mut buf).expect("serialize histogram");
        base64::engine::general_purpose::STANDARD.encode(buf)
    }
    pub fn from_base64(s: &str) -> Result<Hist, HistDecodeError> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(s).map_err(HistDecodeError::Base64)?;
        let h: Histogram<u64> = Deserializer::new().deserialize(&mut &bytes[..]).map_err(HistDecodeError::Hdr)?;
        let mut out = Hist::default();
        out.0.add(&h).map_err(HistDecodeError::Add)?;
        Ok(out)
    }
    /// Value at quantile q (0..=1), in µs; 0 if empty.
    pub fn q(&self, q: f64) -> u64 {
        if self.0.is_empty() {
            0
        } else {
            self.0.value_at_quantile(q)
        }
    }
    /// Summary with values in milliseconds.
    pub fn summary_ms(&self) -> serde_json::Value {
        let ms = |v: u64| (v as f64) / 1000.0;
        serde_json::json!({
            "count": self.0.len(),
            "min_ms": if self.is_empty() { 0.0 } else { ms(self.0.min()) },
            "mean_ms": if self.is_empty() { 0.0 } else { self.0.mean() / 1000.0 },
            "p50_ms": ms(self.q(0.5)),
            "p90_ms": ms(self.q(0.9)),
            "p99_ms": ms(self.q(0.99)),
            "p999_ms": ms(self.q(0.999)),
            "max_ms": if self.is_empty() { 0.0 } else { ms(self.0.max()) },
            "hdr_v2_deflate_base64": self.to_base64(),
        })
    }
    /// Summary of a histogram of plain values (bytes, counts), not times.
    pub fn summary_raw(&self) -> serde_json::Value {
        serde_json::json!({
            "count": self.0.len(),
            "min": if self.is_empty() { 0 } else { self.0.min() },
            "mean": if self.is_empty() { 0.0 } else { self.0.mean() },
            "p50": self.q(0.5),
            "p99": self.q(0.99),
            "max": if self.is_empty() { 0 } else { self.0.max() },
            "hdr_v2_deflate_base64": self.to_base64(),
        })
    }
}

/// A serialized histogram that does not decode.
#[derive(Debug)]
pub enum HistDecodeError {
    Base64(base64::DecodeError),
    Hdr(DeserializeError),
    /// values outside the bounds every `Hist` has
    Add(AdditionError),
}

impl std::fmt::Display for HistDecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HistDecodeError::Base64(e) => write!(f, "{e}"),
            HistDecodeError::Hdr(e) => write!(f, "{e:?}"),
            HistDecodeError::Add(e) => write!(f, "{e:?}"),
        }
    }
}

impl std::error::Error for HistDecodeError {}

impl Serialize for Hist {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for Hist {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Hist::from_base64(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let mut a = Hist::default();
        let mut b = Hist::default();
        let mut all = Hist::default();
        for v in 1..=1000u64 {
            a.record(v * 10);
            all.record(v * 10);
        }
        for v in 1..=500u64 {
            b.record(v * 1000);
            all.record(v * 1000);
        }
        // ship both through the wire format, then merge
        let a2 = Hist::from_base64(&a.to_base64()).unwrap();
        let b2 = Hist::from_base64(&b.to_base64()).unwrap();
        let mut m = Hist::default();
        m.merge(&a2);
        m.merge(&b2);
        assert_eq!(m.len(), 1500);
        assert_eq!(m.0.max(), all.0.max());
        for q in [0.5, 0.9, 0.99, 0.999] {
            assert_eq!(m.q(q), all.q(q));
        }
    }

    #[test]
    fn serde_json_roundtrip_and_clamp() {
        let mut h = Hist::default();
        h.record(0);
        h.record(MAX_US * 10);
        let s = serde_json::to_string(&h).unwrap();
        let h2: Hist = serde_json::from_str(&s).unwrap();
        assert_eq!(h2.len(), 2);
        assert!(h2.0.max() >= MAX_US - MAX_US / 500);
        assert!(matches!(Hist::from_base64("!"), Err(HistDecodeError::Base64(_))));
        assert!(matches!(Hist::from_base64("AAAA"), Err(HistDecodeError::Hdr(_))));
        let empty = Hist::default();
        assert_eq!(empty.q(0.99), 0);
        assert_eq!(empty.summary_ms()["count"], 0);
    }
}
