//! Classified request failures.

use std::time::Duration;

/// Why a request failed, coarse enough to decide what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailReason {
    /// Cancelled by the caller (never retried).
    Cancelled,
    /// HTTP 429.
    RateLimited,
    /// No complete answer within the per-request timeout.
    Timeout,
    /// The server could not be reached (refused, DNS, reset before a reply).
    Connect,
    /// HTTP 5xx.
    ServerError,
    /// HTTP 401/403: missing or wrong API key.
    Auth,
    /// HTTP 404: wrong base URL or unknown model.
    NotFound,
    /// Any other HTTP 4xx: the server refused the request as written.
    BadRequest,
    /// A reply that is not the JSON / SSE an OpenAI-compatible server sends.
    Malformed,
    /// The stream ended before the answer did (no `finish_reason`, no `[DONE]`).
    Truncated,
    /// The server sent an `error` object inside the stream or a 200 body.
    StreamError,
    /// The reply grew past the cap derived from `max_tokens` (see
    /// [`reply_cap`]); reading stopped there.
    TooLarge,
}

impl FailReason {
    /// Stable snake_case name (used as the key in `Usage::failures`).
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::Cancelled => "cancelled",
            FailReason::RateLimited => "rate_limited",
            FailReason::Timeout => "timeout",
            FailReason::Connect => "connect",
            FailReason::ServerError => "server_error",
            FailReason::Auth => "auth",
            FailReason::NotFound => "not_found",
            FailReason::BadRequest => "bad_request",
            FailReason::Malformed => "malformed",
            FailReason::Truncated => "truncated",
            FailReason::StreamError => "stream_error",
            FailReason::TooLarge => "too_large",
        }
    }

    /// Whether trying again may help (transient failures only).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            FailReason::RateLimited
                | FailReason::Timeout
                | FailReason::Connect
                | FailReason::ServerError
                | FailReason::Malformed
                | FailReason::Truncated
                | FailReason::StreamError
        )
    }
}

impl FailReason {
    /// "reason: message" for people, the reason said once: a message that
    /// already is (or starts with) the reason is shown alone ("cancelled",
    /// not "cancelled: cancelled").
    pub fn with_message(self, message: &str) -> String {
        let m = message.trim();
        let r = self.as_str();
        let said = |x: &str| x.to_lowercase().replace([' ', '-'], "_");
        if m.is_empty() {
            r.to_string()
        } else if said(m).starts_with(r) {
            m.to_string()
        } else {
            format!("{r}: {m}")
        }
    }
}

impl std::fmt::Display for FailReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Most bytes of a reply read for a request asking for `max_tokens`
/// tokens in `n` choices (4096 tokens when it does not say): 2 KiB per
/// token — a streamed token with five `top_logprobs` is about 600 bytes
/// of SSE — plus 64 KiB of headroom. A reply beyond it is no answer to the
/// request (a misconfigured server, a proxy's error page in a loop), and
/// reading it whole would let one reply fill the memory, the journal and
/// the cache; it fails as [`FailReason::TooLarge`] instead.
pub fn reply_cap(max_tokens: Option<u32>, n: Option<u32>) -> usize {
    let tokens = max_tokens.unwrap_or(4096).max(1) as usize;
    let n = n.unwrap_or(1).clamp(1, 128) as usize;
    (64 << 10) + tokens.saturating_mul(2048).saturating_mul(n)
}

/// A failed request: the reason, a human message, the HTTP status and the
/// raw reply (truncated) where there was one, and how long the server asked
/// us to wait.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", reason.with_message(message))]
pub struct LlmError {
    pub reason: FailReason,
    pub message: String,
    pub status: Option<u16>,
    /// The raw body or SSE data that could not be used (at most 4 KiB).
    pub raw: Option<String>,
    /// From `Retry-After` / `retry-after-ms` / `x-ratelimit-reset-*`.
    pub retry_after: Option<Duration>,
}

impl LlmError {
    pub fn new(reason: FailReason, message: impl Into<String>) -> LlmError {
        LlmError {
            reason,
            message: message.into(),
            status: None,
            raw: None,
            retry_after: None,
        }
    }

    pub fn with_raw(mut self, raw: impl Into<String>) -> LlmError {
        let mut raw: String = raw.into();
        if raw.len() > 4096 {
            let mut cut = 4096;
            while !raw.is_char_boundary(cut) {
                cut -= 1;
            }
            raw.truncate(cut);
        }
        self.raw = Some(raw);
        self
    }

    /// Classify a reqwest transport error.
    pub(crate) fn from_reqwest(err: &reqwest::Error) -> LlmError {
        let reason = if err.is_timeout() {
            FailReason::Timeout
        } else if err.is_decode() {
            FailReason::Malformed
        } else if err.is_body() {
            FailReason::Truncated
        } else {
            FailReason::Connect
        };
        let message = if reason == FailReason::Connect {
            root_cause(err)
        } else {
            error_chain(err)
        };
        LlmError::new(reason, message)
    }
}

/// The innermost cause ("Connection refused (os error 111)").
fn root_cause(err: &dyn std::error::Error) -> String {
    let mut last = err.to_string();
    let mut src = err.source();
    while let Some(e) = src {
        last = e.to_string();
        src = e.source();
    }
    last
}

/// `err: cause: cause…` on one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut src = err.source();
    while let Some(e) = src {
        let m = e.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = e.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_is_said_once() {
        assert_eq!(FailReason::Cancelled.with_message("cancelled"), "cancelled");
        assert_eq!(FailReason::Cancelled.with_message(""), "cancelled");
        assert_eq!(
            LlmError::new(FailReason::Cancelled, "cancelled").to_string(),
            "cancelled"
        );
        assert_eq!(
            FailReason::Timeout.with_message("no reply in 60 s"),
            "timeout: no reply in 60 s"
        );
        assert_eq!(
            FailReason::RateLimited.with_message("Rate limited: try later"),
            "Rate limited: try later"
        );
    }
}
