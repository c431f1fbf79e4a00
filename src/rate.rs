//! Token buckets for what a connection may send: messages, or bytes.

use std::time::Instant;

/// A token bucket: `per_second` messages a second on average, bursts of twice that.
pub struct RateLimiter {
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    pub fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second.max(1));
        RateLimiter {
            per_second,
            tokens: per_second * 2.0,
            last: Instant::now(),
        }
    }

    pub fn allow(&mut self) -> bool {
        self.allow_n(1.0)
    }

    /// Takes `n` units (a frame's bytes), if there are that many.
    pub fn allow_n(&mut self, n: f64) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.per_second * 2.0);
        self.last = now;
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}
