//! Token buckets: one home for the rates the broker enforces (client messages and joins per
//! connection, LongPoll session creations per address). Time is tokio's, so tests can pause it.

use tokio::time::Instant;

/// A rate: `per_s` tokens a second, at most `burst` saved up; `per_s == 0` is unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub per_s: u32,
    pub burst: u32,
}

/// The state of one bucket (the rate is passed in, so a bucket is 24 bytes).
#[derive(Clone, Copy, Debug)]
pub struct TokenBucket {
    tokens: f32,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn full(rate: Rate) -> TokenBucket {
        TokenBucket { tokens: rate.burst.max(1) as f32, at: Instant::now() }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let burst = rate.burst.max(1) as f32;
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f32() * rate.per_s as f32).min(burst);
        self.at = now;
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, rate: Rate) -> bool {
        if rate.per_s == 0 {
            return true;
        }
        self.refill(rate, Instant::now());
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Would the bucket be full now (nothing to remember about its owner)?
    pub fn is_full(&self, rate: Rate) -> bool {
        let mut b = *self;
        b.refill(rate, Instant::now());
        b.tokens >= rate.burst.max(1) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn burst_then_refill() {
        let rate = Rate { per_s: 2, burst: 3 };
        let mut b = TokenBucket::full(rate);
        assert!(b.take(rate) && b.take(rate) && b.take(rate));
        assert!(!b.take(rate));
        assert!(!b.is_full(rate));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(b.take(rate), "one token after half a second at 2/s");
        assert!(!b.take(rate));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(b.is_full(rate));
        let unlimited = Rate { per_s: 0, burst: 0 };
        assert!((0..10_000).all(|_| b.take(unlimited)));
    }
}
