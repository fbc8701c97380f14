//! Counting failed requests, a circuit breaker, and the words for what
//! went wrong and how to fix it.
//!
//! [`FailureTally`] is plain data with no I/O: a front end (the CLI run,
//! the TUI, the generation session) feeds it every finished request
//! ([`FailureTally::success`]), every failed attempt that will be retried
//! ([`FailureTally::attempt_failed`]) and every request that failed for
//! good ([`FailureTally::failure`]), and asks it
//!
//! * whether to stop: after [`BREAKER_AFTER`] consecutive failed attempts
//!   of the same kind (four times as many for `rate_limited`, which a busy
//!   but working server answers now and then) the breaker trips, so a
//!   hanging server cannot hold a run for an hour of timeouts and retries;
//! * what to tell the user when a run made no progress because requests
//!   failed ([`FailureTally::no_progress`]): the dominant cause and its fix.
//!
//! The fix for each cause ([`fix_for`]) is the one `straddle doctor` gives.

use std::collections::BTreeMap;

use crate::domain::BackendConfig;
use crate::llm::FailReason;

/// Consecutive failed attempts of one kind that stop a run.
pub const BREAKER_AFTER: u32 = 6;

/// Failed requests by cause, the current streak, and the breaker.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FailureTally {
    /// Requests that failed for good, by reason (cancellations excluded).
    by_reason: BTreeMap<FailReason, u64>,
    /// Requests that got an answer.
    successes: u64,
    /// The kind and length of the current run of failed attempts.
    streak: Option<(FailReason, u32)>,
    /// Set once the breaker tripped: the reason and the streak length.
    tripped: Option<(FailReason, u32)>,
    /// Replies that came back but held nothing usable, by kind
    /// (`empty_reply`, `unparsable`): the request itself succeeded, so
    /// they are in neither the streak nor [`FailureTally::no_progress`].
    unusable: BTreeMap<String, u64>,
}

impl FailureTally {
    pub fn new() -> FailureTally {
        FailureTally::default()
    }

    /// A request got an answer: the streak ends.
    pub fn success(&mut self) {
        self.successes += 1;
        self.streak = None;
    }

    /// An attempt failed and will be retried. Returns `true` when this
    /// trips the breaker (once).
    pub fn attempt_failed(&mut self, reason: FailReason) -> bool {
        if reason == FailReason::Cancelled {
            return false;
        }
        let n = match self.streak {
            Some((r, n)) if r == reason => n + 1,
            _ => 1,
        };
        self.streak = Some((reason, n));
        if self.tripped.is_none() && n >= limit(reason) {
            self.tripped = Some((reason, n));
            return true;
        }
        false
    }

    /// A request failed for good (after its retries). Returns `true` when
    /// this trips the breaker.
    pub fn failure(&mut self, reason: FailReason) -> bool {
        if reason == FailReason::Cancelled {
            return false;
        }
        *self.by_reason.entry(reason).or_default() += 1;
        self.attempt_failed(reason)
    }

    /// A reply held nothing usable (`empty_reply`, `unparsable`).
    pub fn unusable(&mut self, kind: &str) {
        *self.unusable.entry(kind.to_string()).or_default() += 1;
    }

    /// A new start: the streak and the breaker are reset (the counts stay).
    pub fn rearm(&mut self) {
        self.streak = None;
        self.tripped = None;
    }

    /// Every kind counted, failed requests (by [`FailReason::as_str`]) and
    /// unusable replies alike.
    pub fn kinds(&self) -> BTreeMap<&str, u64> {
        let mut m: BTreeMap<&str, u64> = self
            .unusable
            .iter()
            .map(|(k, &n)| (k.as_str(), n))
            .collect();
        for (r, &n) in &self.by_reason {
            *m.entry(r.as_str()).or_default() += n;
        }
        m
    }

    /// The count of one kind (see [`FailureTally::kinds`]).
    pub fn get(&self, kind: &str) -> Option<&u64> {
        self.by_reason
            .iter()
            .find(|(r, _)| r.as_str() == kind)
            .map(|(_, n)| n)
            .or_else(|| self.unusable.get(kind))
    }

    /// The most frequent kind of any sort and its count (ties: the first
    /// name).
    pub fn dominant_kind(&self) -> Option<(&str, u64)> {
        self.kinds()
            .into_iter()
            .max_by_key(|&(k, n)| (n, std::cmp::Reverse(k)))
    }

    /// Requests that failed for good.
    pub fn total(&self) -> u64 {
        self.by_reason.values().sum()
    }

    /// Requests that got an answer.
    pub fn successes(&self) -> u64 {
        self.successes
    }

    /// Failed requests by reason.
    pub fn by_reason(&self) -> &BTreeMap<FailReason, u64> {
        &self.by_reason
    }

    /// The most frequent reason and its count (ties: the first in
    /// [`FailReason`] order).
    pub fn dominant(&self) -> Option<(FailReason, u64)> {
        self.by_reason.iter().fold(
            None,
            |best: Option<(FailReason, u64)>, (&r, &n)| match best {
                Some((_, m)) if m >= n => best,
                _ => Some((r, n)),
            },
        )
    }

    /// The reason and streak that tripped the breaker, if it did.
    pub fn tripped(&self) -> Option<(FailReason, u32)> {
        self.tripped
    }

    /// What the breaker says when it trips.
    pub fn breaker_message(&self, backend: &BackendConfig, config: &str) -> Option<String> {
        let (reason, n) = self.tripped?;
        Some(format!(
            "circuit breaker: {n} requests in a row failed with {reason}, so the run stopped \
             instead of retrying on; fix: {}",
            fix_for(reason, backend, config)
        ))
    }

    /// One line like "no progress: all 12 requests failed (10
    /// rate_limited, 2 timeout); fix: …" when the run made no progress
    /// and requests failed, else `None`. `progress` is whether anything
    /// was added or relabelled.
    pub fn no_progress(
        &self,
        progress: bool,
        backend: &BackendConfig,
        config: &str,
    ) -> Option<String> {
        if progress || self.total() == 0 {
            return None;
        }
        let (reason, _) = self.dominant()?;
        Some(format!(
            "no progress: {} of {} requests failed ({}); most with {reason}: fix: {}",
            self.total(),
            self.total() + self.successes,
            self.breakdown(),
            fix_for(reason, backend, config)
        ))
    }

    /// "10 rate_limited, 2 timeout", most frequent first.
    pub fn breakdown(&self) -> String {
        let mut v: Vec<(FailReason, u64)> = self.by_reason.iter().map(|(&r, &n)| (r, n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The breaker's limit for one reason.
fn limit(reason: FailReason) -> u32 {
    match reason {
        FailReason::RateLimited => BREAKER_AFTER * 4,
        _ => BREAKER_AFTER,
    }
}

/// How to fix a failure of this kind (shared with `straddle doctor`).
/// `config` names the config file in the advice.
pub fn fix_for(reason: FailReason, backend: &BackendConfig, config: &str) -> String {
    match reason {
        FailReason::Connect => format!(
            "start the server (the bundled local model: scripts/local-llm.sh start), or point \
             base_url under [backend] in {config} (or --base-url) at a running OpenAI-compatible \
             server, e.g. http://127.0.0.1:8765/v1"
        ),
        FailReason::Auth => match &backend.api_key_env {
            Some(var) => format!(
                "export {var}=<your API key> (a valid key for {})",
                backend.base_url
            ),
            None => format!(
                "put the key in an environment variable (export OPENAI_API_KEY=…) and set \
                 api_key_env = \"OPENAI_API_KEY\" under [backend] in {config}"
            ),
        },
        FailReason::Timeout => format!(
            "the server did not answer within timeout_s = {} s: check it is not overloaded, \
             or raise timeout_s under [backend] in {config}",
            backend.timeout_s
        ),
        FailReason::NotFound => {
            format!("check base_url under [backend] in {config}: it should end in /v1")
        }
        FailReason::RateLimited => {
            "the server is rate limiting: wait, or lower requests_per_minute / max_concurrency"
                .to_string()
        }
        FailReason::ServerError => "the server failed internally: look at its log".to_string(),
        FailReason::TooLarge => format!(
            "the server sent far more than max_tokens allows: check base_url under [backend] \
             in {config} points at an OpenAI-compatible server that honours max_tokens"
        ),
        FailReason::Truncated => format!(
            "replies were cut off mid-stream: check the server (and any proxy in between) \
             is stable, or set stream = false under [backend] in {config}"
        ),
        FailReason::BadRequest => format!(
            "the server refused the request as written: check model and extra_body under \
             [backend] in {config}, and run `straddle doctor`"
        ),
        _ => "the server does not speak the OpenAI chat-completions protocol as expected; \
              check base_url"
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend() -> BackendConfig {
        BackendConfig::default()
    }

    #[test]
    fn breaker_trips_after_n_consecutive_of_one_kind_only() {
        let mut t = FailureTally::new();
        for _ in 0..BREAKER_AFTER - 1 {
            assert!(!t.attempt_failed(FailReason::Timeout));
        }
        // A different kind restarts the streak.
        assert!(!t.failure(FailReason::ServerError));
        for _ in 0..BREAKER_AFTER - 1 {
            assert!(!t.attempt_failed(FailReason::Timeout));
        }
        // A success restarts it too.
        t.success();
        for _ in 0..BREAKER_AFTER - 1 {
            assert!(!t.attempt_failed(FailReason::Timeout));
        }
        assert!(t.failure(FailReason::Timeout));
        assert_eq!(t.tripped(), Some((FailReason::Timeout, BREAKER_AFTER)));
        // Trips once.
        assert!(!t.failure(FailReason::Timeout));
        let msg = t.breaker_message(&backend(), "straddle.toml").unwrap();
        assert!(
            msg.contains("timeout") && msg.contains("timeout_s"),
            "{msg}"
        );
    }

    #[test]
    fn rate_limits_get_a_longer_streak_and_cancellations_none() {
        let mut t = FailureTally::new();
        for _ in 0..BREAKER_AFTER * 4 - 1 {
            assert!(!t.attempt_failed(FailReason::RateLimited));
            assert!(!t.failure(FailReason::Cancelled));
        }
        assert!(t.attempt_failed(FailReason::RateLimited));
        assert_eq!(t.total(), 0);
    }

    #[test]
    fn no_progress_names_the_dominant_cause_and_its_fix() {
        let mut t = FailureTally::new();
        assert_eq!(t.no_progress(false, &backend(), "c.toml"), None);
        t.failure(FailReason::Timeout);
        t.failure(FailReason::ServerError);
        t.failure(FailReason::ServerError);
        assert_eq!(t.dominant(), Some((FailReason::ServerError, 2)));
        assert_eq!(t.breakdown(), "2 server_error, 1 timeout");
        let msg = t.no_progress(false, &backend(), "c.toml").unwrap();
        assert!(
            msg.starts_with("no progress: 3 of 3 requests failed"),
            "{msg}"
        );
        assert!(msg.contains("look at its log"), "{msg}");
        assert_eq!(t.no_progress(true, &backend(), "c.toml"), None);
    }
}
