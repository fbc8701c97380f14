//! Rate limiting pieces: token buckets, adaptive concurrency, backoff.

use std::time::{Duration, Instant};

/// A token bucket refilled continuously at `per_sec`, holding at most
/// `capacity`. A take larger than the capacity is allowed once the bucket is
/// full (the level goes negative), so one big request is never starved.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    capacity: f64,
    level: f64,
    per_sec: f64,
    last: Instant,
}

impl TokenBucket {
    /// A bucket for `per_minute` units a minute with about one second of
    /// burst (at least one unit), starting full.
    pub(crate) fn per_minute(per_minute: u32, now: Instant) -> TokenBucket {
        let per_sec = f64::from(per_minute.max(1)) / 60.0;
        let capacity = per_sec.max(1.0);
        TokenBucket {
            capacity,
            level: capacity,
            per_sec,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.level = (self.level + dt * self.per_sec).min(self.capacity);
        self.last = now;
    }

    /// How long until `n` could be taken (zero if now).
    pub(crate) fn wait_for(&mut self, n: f64, now: Instant) -> Duration {
        self.refill(now);
        let need = n.min(self.capacity);
        if self.level >= need {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((need - self.level) / self.per_sec)
        }
    }

    /// Take `n` (call after `wait_for` returned zero).
    pub(crate) fn take(&mut self, n: f64) {
        self.level -= n;
    }

    /// Give back (or, negative, take more) after the real cost is known.
    pub(crate) fn adjust(&mut self, n: f64) {
        self.level = (self.level + n).min(self.capacity);
    }
}

/// Additive-increase / multiplicative-decrease limit on requests in flight,
/// below the user's cap: halved on each 429, grown by one per "window" of
/// successes.
#[derive(Debug, Clone)]
pub(crate) struct AdaptiveLimit {
    cap: usize,
    limit: f64,
}

impl AdaptiveLimit {
    pub(crate) fn new(cap: usize) -> AdaptiveLimit {
        let cap = cap.max(1);
        AdaptiveLimit {
            cap,
            limit: cap as f64,
        }
    }
    pub(crate) fn cap(&self) -> usize {
        self.cap
    }
    /// The number of requests allowed in flight now.
    pub(crate) fn current(&self) -> usize {
        (self.limit.floor() as usize).clamp(1, self.cap)
    }
    /// The user changed the cap: take it as the new limit.
    pub(crate) fn set_cap(&mut self, cap: usize) {
        self.cap = cap.max(1);
        self.limit = self.cap as f64;
    }
    pub(crate) fn on_rate_limited(&mut self) {
        self.limit = (self.limit / 2.0).max(1.0);
    }
    pub(crate) fn on_success(&mut self) {
        if self.limit < self.cap as f64 {
            self.limit = (self.limit + 1.0 / self.limit).min(self.cap as f64);
        }
    }
}

/// Exponential backoff with jitter: `base · 2^attempt`, capped at `max`,
/// scaled by a random factor in [0.5, 1).
pub(crate) fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.as_secs_f64() * 2f64.powi(attempt.min(30) as i32);
    let capped = exp.min(max.as_secs_f64());
    let jitter: f64 = rand::random_range(0.5..1.0);
    Duration::from_secs_f64(capped * jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_limits_rate_and_lets_big_takes_through_when_full() {
        let t0 = Instant::now();
        let mut b = TokenBucket::per_minute(120, t0); // 2/s, capacity 2
        assert_eq!(b.wait_for(1.0, t0), Duration::ZERO);
        b.take(1.0);
        assert_eq!(b.wait_for(1.0, t0), Duration::ZERO);
        b.take(1.0);
        let w = b.wait_for(1.0, t0);
        assert!((w.as_secs_f64() - 0.5).abs() < 1e-6, "{w:?}");
        assert_eq!(
            b.wait_for(1.0, t0 + Duration::from_millis(500)),
            Duration::ZERO
        );
        // a take bigger than the capacity waits for a full bucket only
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(b.wait_for(50.0, t1), Duration::ZERO);
        b.take(50.0);
        assert!(b.wait_for(1.0, t1) > Duration::from_secs(20));
    }

    #[test]
    fn adaptive_limit_halves_and_recovers() {
        let mut l = AdaptiveLimit::new(8);
        assert_eq!(l.current(), 8);
        l.on_rate_limited();
        assert_eq!(l.current(), 4);
        l.on_rate_limited();
        l.on_rate_limited();
        l.on_rate_limited();
        assert_eq!(l.current(), 1);
        for _ in 0..200 {
            l.on_success();
        }
        assert_eq!(l.current(), 8);
        l.set_cap(3);
        assert_eq!(l.current(), 3);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        for _ in 0..50 {
            let d0 = backoff(0, base, max);
            assert!(d0 >= Duration::from_millis(50) && d0 < base);
            let d3 = backoff(3, base, max);
            assert!(d3 >= Duration::from_millis(400) && d3 < Duration::from_millis(800));
            assert!(backoff(20, base, max) < max);
        }
    }
}
