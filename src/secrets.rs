//! Secret values and the one function that removes them from text.
//!
//! A secret is the value of the environment variable a config names in
//! `backend.api_key_env`, the value of any `Authorization` / `api-key` /
//! `x-api-key` header in `backend.headers`, and (registered by logging at
//! start-up) the value of any environment variable whose name ends in
//! `_KEY`, `_TOKEN`, `_SECRET` or `_PASSWORD`. They are registered here
//! the moment they are read ([`register`]); [`redact`] replaces every
//! registered value with `[redacted]`.
//!
//! [`redact`] is applied at each boundary where text leaves the process:
//! the journal ([`crate::store::Journal::append`]), the response cache
//! ([`crate::llm::ResponseCache::put`]), the log file
//! ([`crate::logging::LogWriter`]), everything the CLI prints
//! ([`crate::cli::out`]) and exports. So a server that echoes the key
//! ("Incorrect API key provided: Bearer sk-…") cannot get it onto disk or
//! the terminal, whatever path the text takes.
//!
//! Only exact registered values are replaced here (pattern-based scrubbing
//! of things that merely look like keys is for the log only, see
//! [`crate::logging::scrub`]): a generated example that happens to contain
//! "Bearer of bad news" must reach the journal unchanged.

use std::borrow::Cow;
use std::sync::RwLock;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Shortest value taken as a secret: shorter ones would redact ordinary
/// words (and are no real key).
pub const MIN_LEN: usize = 6;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remember `value` as a secret from now on (blank or short values are
/// ignored). Idempotent.
pub fn register(value: &str) {
    let v = value.trim();
    if v.len() < MIN_LEN {
        return;
    }
    let mut all = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if all.iter().any(|s| s == v) {
        return;
    }
    all.push(v.to_string());
    // Longest first, so a key containing another is replaced whole.
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    // A header value `Bearer KEY`: the bare key too.
    if let Some(rest) = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
    {
        let rest = rest.trim().to_string();
        drop(all);
        register(&rest);
    }
}

/// Register the secrets a backend config points at: the value of its
/// `api_key_env` variable and its credential headers.
pub fn register_backend(backend: &crate::domain::BackendConfig) {
    if let Some(var) = backend.api_key_env.as_deref()
        && let Ok(v) = std::env::var(var)
    {
        register(&v);
    }
    for (k, v) in &backend.headers {
        if is_credential_header(k) {
            register(v);
        }
    }
}

/// Whether a header carries a credential.
pub fn is_credential_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "authorization"
        || n == "proxy-authorization"
        || n.ends_with("api-key")
        || n.ends_with("api_key")
        || n.contains("token")
}

/// `text` with every registered secret replaced by `[redacted]`; borrowed
/// (no copy) when there is none in it.
pub fn redact(text: &str) -> Cow<'_, str> {
    let all = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    redact_with(text, &all)
}

/// [`redact`] with an explicit list of secrets (longest first).
pub fn redact_with<'a>(text: &'a str, secrets: &[String]) -> Cow<'a, str> {
    let mut out = Cow::Borrowed(text);
    for s in secrets {
        if s.len() >= MIN_LEN && out.contains(s.as_str()) {
            out = Cow::Owned(out.replace(s.as_str(), REDACTED));
        }
    }
    out
}

/// [`redact`] into an owned string.
pub fn redact_owned(text: String) -> String {
    match redact(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(s) => s,
    }
}

/// Text made safe to print: secrets redacted, controls escaped.
pub fn clean(s: &str) -> std::borrow::Cow<'_, str> {
    match redact(s) {
        std::borrow::Cow::Borrowed(b) => escape_controls(b),
        std::borrow::Cow::Owned(o) => std::borrow::Cow::Owned(escape_controls(&o).into_owned()),
    }
}

/// Whether `c` must not reach a terminal raw: C0/C1 controls (but `\n`
/// and `\t`), DEL, and the bidirectional overrides that reorder text.
fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Escape control characters (see [`is_unsafe`]) as `\u{…}` (`\r` as
/// `\r`): shared by the CLI's output sanitiser and CSV export.
pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_values_are_replaced_everywhere_and_short_ones_ignored() {
        register("unit-test-secret-4711");
        register("abc");
        let s = "key unit-test-secret-4711 and again unit-test-secret-4711 abc";
        assert_eq!(
            redact(s),
            "key [redacted] and again [redacted] abc".to_string()
        );
        assert!(matches!(redact("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn bearer_header_value_registers_the_bare_key() {
        register("Bearer unit-test-bearer-0815");
        assert_eq!(redact("got unit-test-bearer-0815"), "got [redacted]");
    }

    #[test]
    fn longest_secret_wins() {
        let secrets = vec!["secret-long-1234".to_string(), "secret".to_string()];
        assert_eq!(
            redact_with("x secret-long-1234 secret", &secrets),
            "x [redacted] [redacted]"
        );
    }
}
