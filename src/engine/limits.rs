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

/// Why the limit on requests in flight last changed (shown in status
/// lines as `limit N (why)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitReason {
    /// Adaptive concurrency is off: the user's cap (halved on 429s).
    Fixed,
    /// The first value: adaptive concurrency starts low.
    Start,
    /// Latency stayed flat over a window of replies: one more (doubling
    /// until the first sign of congestion).
    LatencyFlat,
    /// Latency rose but throughput rose with it: one more.
    ThroughputGrowing,
    /// Latency rose without throughput: requests wait in the server's
    /// queue, so fewer go out.
    Queueing,
    /// A stream ended before its answer did (empty, cut, no
    /// `finish_reason`): the server drops requests when more arrive.
    StreamsCut,
    /// Timeouts, 5xx or dropped connections: the server is overloaded.
    Failures,
    /// HTTP 429.
    RateLimited,
    /// The user changed the cap.
    Cap,
}

impl LimitReason {
    /// Short words for a status line.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitReason::Fixed => "fixed",
            LimitReason::Start => "starting low",
            LimitReason::LatencyFlat => "latency flat",
            LimitReason::ThroughputGrowing => "throughput growing",
            LimitReason::Queueing => "server queueing",
            LimitReason::StreamsCut => "streams cut",
            LimitReason::Failures => "failures",
            LimitReason::RateLimited => "rate limited",
            LimitReason::Cap => "cap changed",
        }
    }
}

impl std::fmt::Display for LimitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Latency that counts as "flat": up to `TOLERANCE` times the no-load
/// latency plus `SLACK` (client-side scheduling noise of a busy process
/// is a few ms; an LLM reply takes hundreds).
const TOLERANCE: f64 = 1.5;
const SLACK_S: f64 = 0.05;
/// The share of the ideal throughput gain a larger limit has to bring
/// when latency rose (doubling the limit: 1.5 × the throughput).
const RATE_GAIN: f64 = 0.5;
/// ... and never less than this (noise in a window's mean latency).
const MIN_GAIN: f64 = 0.1;
/// How fast the best throughput seen is forgotten, per window.
const BEST_DECAY: f64 = 0.97;
/// Windows held at one limit before probing one more.
const PROBE_AFTER: u32 = 4;
/// Successes needed before probing again at a level where streams were
/// cut (doubling with each cut at the same level).
const PROBE_WAIT: u32 = 8;
/// Where adaptive concurrency starts.
const START: usize = 1;

/// The limit on requests in flight, below the user's cap.
///
/// Fixed (`adaptive = false`): the cap, halved on each 429 and grown back
/// by one per window of successes.
///
/// Adaptive: a latency/throughput-gradient limit in the spirit of TCP
/// Vegas, BBR and Netflix's concurrency-limits Gradient2, with AIMD on
/// losses. It decides once per *window*: as many replies as the limit, to
/// requests sent at the current limit (replies to requests sent under an
/// earlier limit, or while fewer than half the limit were in flight — the
/// caller, not the server, held the pace — are skipped).
/// * The latency of a reply is its time to the first streamed text
///   (queueing shows there; output length does not), else the whole reply.
/// * It starts at one request. *Slow start*: the limit doubles after each
///   window that stays flat (no reply above `1.5 ×` the lowest latency
///   seen plus 50 ms) or whose throughput followed the doubling.
/// * Throughput is Little's law over the window: requests in flight /
///   mean latency. A window after a raise that is not flat keeps the raise
///   (and raises again) only if throughput rose by half the ideal gain (at
///   least 10 %) over the window before and 10 % over the best throughput
///   seen (slowly forgotten); else the limit goes back to where it was and
///   slow start ends. That is "latency rose without throughput": a
///   one-slot server settles at one or two requests in flight. A window
///   after a decrease grows back only if the decrease cost 20 % of the
///   throughput. At an unchanged limit, replies 1.5 × slower shrink it by
///   that gradient; otherwise it holds, and probes one more after four
///   windows.
/// * A stream cut short (empty, no `finish_reason`, truncated), a timeout,
///   a 5xx or a dropped connection halves it (once per congestion event:
///   failures of requests sent before the last decrease do not count
///   again), and the level where it happened is probed again only after
///   8, 16, 32… successes, so a server that drops a stream when another
///   request arrives costs a few wasted requests, not half of them.
/// * A 429 halves it too (the caller also holds dispatching).
/// * Decreases go down by one at least and by half at most, never below 1;
///   nothing goes above the cap.
///
/// Noise: with reply times spread over 300–900 ms on a 64-slot server it
/// still reaches 64 (the means of large windows are steady); on a one-slot
/// server with 100–300 ms it stays at four or below (unit tests below
/// simulate both).
#[derive(Debug, Clone)]
pub(crate) struct AdaptiveLimit {
    adaptive: bool,
    cap: usize,
    limit: f64,
    reason: LimitReason,
    slow_start: bool,
    /// Lowest latency seen (seconds): the no-load latency.
    rtt_min: f64,
    win_n: u32,
    win_lat: f64,
    win_max: f64,
    win_in_flight: f64,
    /// Windows held at the same limit since the last change.
    held: u32,
    /// The best throughput seen (slowly forgotten), the bar a larger
    /// limit has to clear.
    best_rate: f64,
    prev_mean: f64,
    prev_rate: f64,
    prev_limit: usize,
    /// When the limit was last decreased: failures of requests sent
    /// before then belong to the same congestion event.
    last_decrease: Option<Instant>,
    /// When the limit last changed: a window only counts replies to
    /// requests sent at the current limit.
    changed_at: Option<Instant>,
    /// Level where streams were last cut (0: none) and the successes
    /// needed / counted since before probing it again.
    ceiling: usize,
    probe_wait: u32,
    probe_credit: u32,
}

impl AdaptiveLimit {
    pub(crate) fn with_mode(cap: usize, adaptive: bool) -> AdaptiveLimit {
        let cap = cap.max(1);
        let (limit, reason) = if adaptive {
            (START.min(cap) as f64, LimitReason::Start)
        } else {
            (cap as f64, LimitReason::Fixed)
        };
        AdaptiveLimit {
            adaptive,
            cap,
            limit,
            reason,
            slow_start: true,
            rtt_min: f64::INFINITY,
            win_n: 0,
            win_lat: 0.0,
            win_max: 0.0,
            win_in_flight: 0.0,
            held: 0,
            best_rate: 0.0,
            prev_mean: 0.0,
            prev_rate: 0.0,
            prev_limit: 0,
            last_decrease: None,
            changed_at: None,
            ceiling: 0,
            probe_wait: PROBE_WAIT,
            probe_credit: 0,
        }
    }
    pub(crate) fn adaptive(&self) -> bool {
        self.adaptive
    }
    pub(crate) fn cap(&self) -> usize {
        self.cap
    }
    pub(crate) fn reason(&self) -> LimitReason {
        self.reason
    }
    /// The number of requests allowed in flight now.
    pub(crate) fn current(&self) -> usize {
        (self.limit.floor() as usize).clamp(1, self.cap)
    }
    /// The user changed the cap: fixed, it is the new limit; adaptive, the
    /// limit stays where it is (below the new cap).
    pub(crate) fn set_cap(&mut self, cap: usize) {
        self.cap = cap.max(1);
        if self.adaptive {
            self.limit = self.limit.min(self.cap as f64);
        } else {
            self.limit = self.cap as f64;
        }
        self.reason = LimitReason::Cap;
        self.reset_window();
    }

    fn reset_window(&mut self) {
        self.win_n = 0;
        self.win_lat = 0.0;
        self.win_max = 0.0;
        self.win_in_flight = 0.0;
    }

    /// A 429 for a request sent at `sent`.
    pub(crate) fn on_rate_limited(&mut self, sent: Instant, now: Instant) {
        self.decrease(sent, now, LimitReason::RateLimited, false);
    }

    /// A stream cut short (`cut`) or a timeout / 5xx / dropped connection
    /// for a request sent at `sent`. Ignored when fixed.
    pub(crate) fn on_loss(&mut self, sent: Instant, now: Instant, cut: bool) {
        if self.adaptive {
            let why = if cut {
                LimitReason::StreamsCut
            } else {
                LimitReason::Failures
            };
            self.decrease(sent, now, why, true);
        }
    }

    fn decrease(&mut self, sent: Instant, now: Instant, why: LimitReason, ceiling: bool) {
        if self.last_decrease.is_some_and(|t| sent < t) {
            return;
        }
        let at = self.current();
        if ceiling {
            self.probe_wait = if self.ceiling == at {
                self.probe_wait.saturating_mul(2)
            } else {
                PROBE_WAIT
            };
            self.ceiling = at;
            self.probe_credit = 0;
        }
        self.limit = (self.limit / 2.0).max(1.0);
        self.slow_start = false;
        self.reason = why;
        self.last_decrease = Some(now);
        self.changed_at = Some(now);
        self.reset_window();
    }

    /// A reply arrived for a request sent at `sent`: `latency` is its
    /// queueing signal (time to first text), `in_flight` the requests in
    /// flight when it ended (itself included).
    pub(crate) fn on_success(
        &mut self,
        sent: Instant,
        latency: Duration,
        in_flight: usize,
        now: Instant,
    ) {
        if !self.adaptive {
            if self.limit < self.cap as f64 {
                self.limit = (self.limit + 1.0 / self.limit).min(self.cap as f64);
            }
            return;
        }
        self.probe_credit = self.probe_credit.saturating_add(1);
        let lat = latency.as_secs_f64();
        self.rtt_min = self.rtt_min.min(lat);
        let current = self.current();
        if in_flight * 2 < current || self.changed_at.is_some_and(|t| sent < t) {
            // The caller, not the server, held the pace; or the request
            // went out under another limit.
            return;
        }
        self.win_n += 1;
        self.win_in_flight += in_flight as f64;
        self.win_lat += lat;
        self.win_max = self.win_max.max(lat);
        if (self.win_n as usize) < current {
            return;
        }
        let n = f64::from(self.win_n);
        let mean = self.win_lat / n;
        let max = self.win_max;
        // Little's law: replies per second = requests in flight / latency.
        let rate = self.win_in_flight / n / mean.max(1e-6);
        self.reset_window();
        let flat = self.rtt_min * TOLERANCE + SLACK_S;
        let (prev_limit, prev_rate, prev_mean) = (self.prev_limit, self.prev_rate, self.prev_mean);
        let best_rate = self.best_rate;
        self.best_rate = (self.best_rate * BEST_DECAY).max(rate);
        self.prev_rate = rate;
        self.prev_limit = current;
        self.prev_mean = mean;
        let step = if max <= flat {
            Step::Grow(LimitReason::LatencyFlat)
        } else if prev_limit == 0 {
            Step::Shrink(self.limit * flat / mean.max(flat))
        } else if current > prev_limit {
            // Grown: throughput has to follow (half the ideal gain at least).
            let ideal = current as f64 / prev_limit as f64;
            let bar = (prev_rate * (1.0 + (RATE_GAIN * (ideal - 1.0)).max(MIN_GAIN)))
                .max(best_rate * (1.0 + MIN_GAIN));
            if rate >= bar {
                Step::Grow(LimitReason::ThroughputGrowing)
            } else {
                Step::Shrink(prev_limit as f64)
            }
        } else if current < prev_limit {
            // Shrunk: grow back only if that cost throughput.
            if rate < prev_rate * (1.0 - 2.0 * MIN_GAIN) {
                Step::Grow(LimitReason::ThroughputGrowing)
            } else {
                Step::Hold
            }
        } else if mean > prev_mean * TOLERANCE {
            // Same limit, slower replies: the server got busier.
            Step::Shrink(self.limit * prev_mean / mean)
        } else if self.held >= PROBE_AFTER {
            // Same limit, same latency for a while: probe one more.
            Step::Grow(LimitReason::ThroughputGrowing)
        } else {
            Step::Hold
        };
        if matches!(step, Step::Hold) {
            self.held += 1;
        } else {
            self.held = 0;
        }
        let grow = match step {
            Step::Hold => return,
            Step::Grow(why) => Some(why),
            Step::Shrink(_) => None,
        };
        let why = grow.unwrap_or(LimitReason::Queueing);
        if grow.is_some() {
            let mut next = if self.slow_start {
                self.limit * 2.0
            } else {
                self.limit + 1.0
            };
            if self.ceiling > 0 {
                if current >= self.ceiling {
                    // A window at the old ceiling went well: forget it.
                    self.ceiling = 0;
                    self.probe_wait = PROBE_WAIT;
                } else if self.probe_credit < self.probe_wait {
                    next = next.min((self.ceiling - 1) as f64);
                } else {
                    next = next.min(self.ceiling as f64);
                }
            }
            let next = next.min(self.cap as f64);
            if next.floor() > self.limit.floor() {
                self.reason = why;
                self.changed_at = Some(now);
            }
            self.limit = next.max(self.limit);
        } else {
            self.slow_start = false;
            let Step::Shrink(target) = step else {
                unreachable!("only a shrink gets here")
            };
            let next = target.min(self.limit - 1.0).max(self.limit / 2.0).max(1.0);
            if next.floor() < self.limit.floor() {
                self.reason = why;
                self.changed_at = Some(now);
            }
            self.limit = next;
        }
    }
}

/// What a window of replies decides.
enum Step {
    Grow(LimitReason),
    Hold,
    /// To this limit (by one at least, by half at most).
    Shrink(f64),
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
        let mut l = AdaptiveLimit::with_mode(8, false);
        assert_eq!(l.current(), 8);
        let t = Instant::now();
        let ms = Duration::from_millis;
        l.on_rate_limited(t, t);
        assert_eq!(l.current(), 4);
        l.on_rate_limited(t + ms(1), t + ms(1));
        l.on_rate_limited(t + ms(2), t + ms(2));
        l.on_rate_limited(t + ms(3), t + ms(3));
        assert_eq!(l.current(), 1);
        let t = Instant::now();
        for _ in 0..200 {
            l.on_success(t, Duration::from_millis(10), 8, t);
        }
        assert_eq!(l.current(), 8);
        l.set_cap(3);
        assert_eq!(l.current(), 3);
    }

    /// A simulated server with `slots` parallel slots (FIFO queue, fixed
    /// `service` time each) driven through the limit: `n` requests, all
    /// wanted at once. Returns (wall, highest limit, longest latency).
    fn simulate(
        slots: usize,
        cap: usize,
        n: usize,
        service: Duration,
    ) -> (Duration, usize, Duration) {
        let (wall, top, longest, _) = simulate_noisy(slots, cap, n, service, 0);
        (wall, top, longest)
    }

    /// [`simulate`] with service times spread over `service + [0,
    /// spread_ms)` (seeded); also returns the mean limit over the replies.
    fn simulate_noisy(
        slots: usize,
        cap: usize,
        n: usize,
        service: Duration,
        spread_ms: u64,
    ) -> (Duration, usize, Duration, f64) {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut sum = 0usize;
        let t0 = Instant::now();
        let mut l = AdaptiveLimit::with_mode(cap, true);
        let mut free = vec![t0; slots]; // when each slot is next free
        let mut running: Vec<(Instant, Instant)> = vec![]; // (sent, done)
        let (mut sent, mut now) = (0, t0);
        let (mut top, mut longest) = (l.current(), Duration::ZERO);
        for _ in 0..10 * n {
            while running.len() < l.current() && sent < n {
                let slot = (0..slots).min_by_key(|&i| free[i]).unwrap();
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let jitter = Duration::from_millis(x % spread_ms.max(1));
                let done = free[slot].max(now) + service + jitter;
                free[slot] = done;
                running.push((now, done));
                sent += 1;
            }
            let Some(i) = (0..running.len()).min_by_key(|&i| running[i].1) else {
                break;
            };
            let in_flight = running.len();
            let (s, d) = running.swap_remove(i);
            now = d;
            longest = longest.max(d - s);
            l.on_success(s, d - s, in_flight, d);
            top = top.max(l.current());
            sum += l.current();
            assert!((1..=cap).contains(&l.current()));
        }
        assert_eq!(sent, n);
        assert!(running.is_empty());
        (now - t0, top, longest, sum as f64 / n as f64)
    }

    #[test]
    fn noisy_latency_on_a_parallel_server_does_not_hold_the_limit_down() {
        // 64 slots, replies in 300..900 ms: the lowest latency is far
        // below the typical one, yet throughput follows each doubling.
        let ms = Duration::from_millis;
        let (wall, top, _, mean) = simulate_noisy(64, 64, 4000, ms(300), 600);
        assert_eq!(top, 64);
        assert!(mean >= 56.0, "mean limit {mean}");
        let ideal = 4000.0 / 64.0 * 0.6;
        assert!(wall.as_secs_f64() <= ideal * 1.2, "{wall:?} vs {ideal} s");
    }

    #[test]
    fn noisy_latency_on_a_one_slot_server_still_keeps_the_queue_short() {
        let ms = Duration::from_millis;
        // 100..300 ms per reply: a lucky first window can double the
        // limit once; after that at most two wait behind the one served.
        let (wall, top, longest, _) = simulate_noisy(1, 8, 200, ms(100), 200);
        assert!(
            top <= 4,
            "limit reached {top}, longest {longest:?}, wall {wall:?}"
        );
        assert!(longest <= ms(1200), "{longest:?}");
        assert!(wall <= ms(200 * 300), "{wall:?}");
    }

    #[test]
    fn a_one_slot_server_gets_one_or_two_and_stays_busy() {
        let ms = Duration::from_millis;
        let (wall, top, longest) = simulate(1, 8, 40, ms(200));
        assert!(top <= 2, "limit reached {top}");
        assert!(longest <= ms(400), "{longest:?}");
        assert!(wall <= ms(40 * 200 + 1), "{wall:?}");
    }

    #[test]
    fn a_server_that_keeps_up_gets_the_cap_after_log2_windows() {
        let ms = Duration::from_millis;
        // 64 slots: latency never rises; 1+2+…+32 = 63 replies to reach 64.
        let (_, top, longest) = simulate(64, 64, 200, ms(100));
        assert_eq!(top, 64);
        assert_eq!(longest, ms(100));
    }

    proptest::proptest! {
        /// Whatever the server's parallelism, the limit stays within
        /// [1, cap], requests never wait more than a few service times
        /// (queueing below the 50 ms slack is not seen),
        /// and the wall time stays near the ideal `n / min(slots, cap)`.
        #[test]
        fn the_limit_finds_the_servers_slots(slots in 1usize..12, cap in 1usize..24, service_ms in 50u64..2000) {
            let service = Duration::from_millis(service_ms);
            let n = 40 * slots.min(cap);
            let (wall, top, longest) = simulate(slots, cap, n, service);
            let ideal = service * (n / slots.min(cap)) as u32;
            proptest::prop_assert!(top <= cap);
            // At most one overshoot past "flat" (1.5 × service + 50 ms):
            // twice that, plus the reply's own service time.
            let bound = service * 4 + Duration::from_millis(100);
            proptest::prop_assert!(longest <= bound, "longest {:?}", longest);
            proptest::prop_assert!(wall.as_secs_f64() <= ideal.as_secs_f64() * 1.3,
                "wall {:?} ideal {:?} top {}", wall, ideal, top);
        }

        /// Any mix of replies, losses, 429s and cap changes keeps the
        /// limit in [1, cap]; a loss or a 429 of a request sent after the
        /// last decrease never raises it; fixed mode is the cap until a 429.
        #[test]
        fn the_limit_stays_in_bounds(
            adaptive in proptest::bool::ANY,
            cap in 1usize..64,
            ops in proptest::collection::vec((0u8..5, 0u64..3000, 0usize..80), 1..300),
        ) {
            let t0 = Instant::now();
            let mut l = AdaptiveLimit::with_mode(cap, adaptive);
            let mut cap = cap;
            let mut now = t0;
            for (op, ms, k) in ops {
                now += Duration::from_millis(ms % 50 + 1);
                let sent = now - Duration::from_millis(ms).min(now - t0);
                let before = l.current();
                match op {
                    0 | 1 => l.on_success(sent, Duration::from_millis(ms), k, now),
                    2 => {
                        l.on_loss(now, now, k % 2 == 0);
                        proptest::prop_assert!(l.current() <= before);
                        if adaptive {
                            proptest::prop_assert!(l.current() < before || before == 1);
                        }
                    }
                    3 => {
                        l.on_rate_limited(now, now);
                        proptest::prop_assert!(l.current() < before || before == 1);
                    }
                    _ => {
                        cap = k.max(1);
                        l.set_cap(cap);
                        if !adaptive {
                            proptest::prop_assert_eq!(l.current(), cap);
                        }
                    }
                }
                proptest::prop_assert!((1..=cap).contains(&l.current()));
            }
        }
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
