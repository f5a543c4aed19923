//! Bounded pools of places: WebSocket connections and LongPoll sessions each have one, and a
//! connection or session holds its [`Permit`] for its whole life.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::metrics::Gauge;

/// A bounded pool of places (connections or sessions).
pub struct Capacity {
    open: AtomicUsize,
    max: usize,
    gauge: &'static Gauge,
}

impl Capacity {
    pub fn new(max: usize, gauge: &'static Gauge) -> Capacity {
        Capacity { open: AtomicUsize::new(0), max, gauge }
    }

    /// Takes a place, or `None` when all are taken. Reserve-then-check: two takers at the edge
    /// cannot both pass.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        self.gauge.inc();
        Some(Permit(self.clone()))
    }

    /// Places taken now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

/// A place in a [`Capacity`], held for a connection's or session's whole life and given back
/// when dropped, however it ends.
pub struct Permit(Arc<Capacity>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.gauge.dec();
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_bounded_and_given_back() {
        static G: Gauge = Gauge::new();
        let c = Arc::new(Capacity::new(2, &G));
        let a = c.try_acquire().unwrap();
        let _b = c.try_acquire().unwrap();
        assert!(c.try_acquire().is_none());
        assert_eq!((c.open(), G.get()), (2, 2));
        drop(a);
        assert!(c.try_acquire().is_some());
    }
}
