//! Usage accounting shared between the scheduler and the handles.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::domain::Usage;
use crate::llm::{FailReason, TokenUsage};

/// Running totals of one engine.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    requests: u64,
    cached: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    failures: BTreeMap<String, u64>,
    latencies_ms: Vec<f32>,
    /// The latency percentiles (p50, p90, p99) as of `pcts_at` latencies:
    /// recomputed once the latencies have grown by a 64th since, so a
    /// status line or usage delta per group commit costs O(1) per request,
    /// not a sort of every latency so far.
    pcts: (f64, f64, f64),
    pcts_at: usize,
    first: Option<Instant>,
    last: Option<Instant>,
    price_in: Option<f64>,
    price_out: Option<f64>,
}

impl Stats {
    pub(crate) fn new(price_in: Option<f64>, price_out: Option<f64>) -> Stats {
        Stats {
            price_in,
            price_out,
            ..Stats::default()
        }
    }

    fn touch(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(self.last.map_or(now, |l| l.max(now)));
    }

    /// Mark the start of work (the first dispatch starts the wall clock).
    pub(crate) fn started(&mut self, now: Instant) {
        self.first.get_or_insert(now);
    }

    pub(crate) fn success(&mut self, usage: TokenUsage, latency: Duration, now: Instant) {
        self.touch(now);
        self.requests += 1;
        self.prompt_tokens += u64::from(usage.prompt_tokens);
        self.completion_tokens += u64::from(usage.completion_tokens);
        self.latencies_ms.push(latency.as_secs_f32() * 1000.0);
    }

    pub(crate) fn cache_hit(&mut self, now: Instant) {
        self.touch(now);
        self.cached += 1;
    }

    /// One failed attempt (retried or not).
    pub(crate) fn failure(&mut self, reason: FailReason, now: Instant) {
        self.touch(now);
        *self.failures.entry(reason.as_str().to_owned()).or_default() += 1;
    }

    pub(crate) fn usage(&mut self) -> Usage {
        let n = self.latencies_ms.len();
        if n > self.pcts_at && n - self.pcts_at >= (self.pcts_at / 64).max(1) {
            // Sorted in place: the part sorted last time is one run, so
            // this is a sort of the new tail and a merge.
            self.latencies_ms.sort_by(f32::total_cmp);
            let lat = &self.latencies_ms;
            let pct = |p: f64| -> f64 {
                let i = ((lat.len() - 1) as f64 * p).round() as usize;
                f64::from(lat[i])
            };
            self.pcts = (pct(0.5), pct(0.9), pct(0.99));
            self.pcts_at = n;
        }
        let cost = crate::domain::token_cost(
            self.price_in,
            self.price_out,
            self.prompt_tokens,
            self.completion_tokens,
        );
        Usage {
            requests: self.requests,
            cached: self.cached,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            failures: self.failures.clone(),
            cost,
            latency_p50_ms: self.pcts.0,
            latency_p90_ms: self.pcts.1,
            latency_p99_ms: self.pcts.2,
            wall_s: match (self.first, self.last) {
                (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64(),
                _ => 0.0,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_sums_costs_and_percentiles() {
        let t0 = Instant::now();
        let mut s = Stats::new(Some(2.0), Some(10.0));
        for ms in 1..=100u64 {
            s.success(
                TokenUsage {
                    prompt_tokens: 10_000,
                    completion_tokens: 1_000,
                    estimated: false,
                },
                Duration::from_millis(ms),
                t0 + Duration::from_millis(ms * 10),
            );
        }
        s.failure(FailReason::RateLimited, t0);
        s.cache_hit(t0);
        let u = s.usage();
        assert_eq!(u.requests, 100);
        assert_eq!(u.cached, 1);
        assert_eq!(u.prompt_tokens, 1_000_000);
        assert!((u.cost - (2.0 + 1.0)).abs() < 1e-9, "{}", u.cost);
        assert!(
            (u.latency_p50_ms - 51.0).abs() < 1.01,
            "{}",
            u.latency_p50_ms
        );
        assert!((u.latency_p99_ms - 99.0).abs() < 1.01);
        assert_eq!(u.failures["rate_limited"], 1);
        assert!((u.wall_s - 0.99).abs() < 1e-6, "{}", u.wall_s);
    }

    #[test]
    fn percentiles_follow_new_latencies_within_a_64th() {
        let t0 = Instant::now();
        let mut s = Stats::new(None, None);
        let lat = |s: &mut Stats, ms: u64| {
            s.success(TokenUsage::default(), Duration::from_millis(ms), t0)
        };
        for _ in 0..640 {
            lat(&mut s, 10);
        }
        assert_eq!(s.usage().latency_p50_ms, 10.0);
        // Fewer than a 64th more: the percentiles may lag…
        for _ in 0..9 {
            lat(&mut s, 1000);
        }
        let _ = s.usage();
        // …a 64th more and they are recomputed from every latency.
        for _ in 0..700 {
            lat(&mut s, 1000);
        }
        let u = s.usage();
        assert_eq!(u.latency_p50_ms, 1000.0);
        assert_eq!(u.latency_p99_ms, 1000.0);
        assert_eq!(u.requests, 1349);
    }
}
