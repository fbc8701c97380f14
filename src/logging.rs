//! Diagnostics go to a log file, never the terminal (the TUI owns it, and
//! the CLI's stdout/stderr carry results and user-facing errors).
//!
//! * File: `$STRADDLE_LOG_FILE` if set, else `straddle.log` in the user's
//!   state dir (`~/.local/state/straddle` on Linux; the local data dir on
//!   systems without one), via the `directories` crate.
//! * Level: `$STRADDLE_LOG` (default `info`). A bare level (`debug`) applies
//!   to straddle's own messages, dependencies log warnings only; anything
//!   with `=` or `,` is taken as a full `tracing` filter directive.
//! * Appends; a file over [`MAX_BYTES`] is moved to `straddle.log.1` (the
//!   previous one is dropped) when a process starts.
//! * Nothing that looks like a credential (`Authorization:` / `Bearer …`
//!   values, `sk-…` keys, the value of any environment variable whose name
//!   ends in `_KEY` / `_TOKEN`) is written: every line is scrubbed before it
//!   reaches the file.
//!
//! If the file cannot be opened the program runs without logging.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Size above which the log is rotated at start-up.
pub const MAX_BYTES: u64 = 10 * 1024 * 1024;

/// Where the log goes (whether or not it can be opened).
pub fn log_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STRADDLE_LOG_FILE").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let dirs = directories::ProjectDirs::from("", "", "straddle")?;
    let dir = dirs
        .state_dir()
        .unwrap_or_else(|| dirs.data_local_dir())
        .to_path_buf();
    Some(dir.join("straddle.log"))
}

/// The filter for a `STRADDLE_LOG` value.
pub fn filter(spec: Option<&str>) -> EnvFilter {
    let spec = spec
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("info");
    let directive = if spec.contains('=') || spec.contains(',') {
        spec.to_string()
    } else {
        format!("warn,straddle={spec}")
    };
    EnvFilter::try_new(&directive).unwrap_or_else(|_| EnvFilter::new("warn,straddle=info"))
}

/// Install the global subscriber writing to [`log_path`]. Returns the path
/// when logging is on. Call once, first thing in `main`.
pub fn init() -> Option<PathBuf> {
    let path = log_path()?;
    let file = open(&path).ok()?;
    let secrets = secrets_from_env();
    for s in &secrets {
        crate::secrets::register(s);
    }
    let writer = LogWriter::new(file, secrets);
    let spec = std::env::var("STRADDLE_LOG").ok();
    tracing_subscriber::fmt()
        .with_env_filter(filter(spec.as_deref()))
        .with_writer(writer)
        .with_ansi(false)
        .with_target(true)
        .try_init()
        .ok()?;
    tracing::info!(
        "straddle {} started (pid {})",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    );
    Some(path)
}

/// Open `path` for appending (creating folders), rotating a big file.
pub fn open(path: &Path) -> std::io::Result<File> {
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d)?;
    }
    if std::fs::metadata(path).is_ok_and(|m| m.len() > MAX_BYTES) {
        let mut old = path.as_os_str().to_owned();
        old.push(".1");
        let _ = std::fs::rename(path, PathBuf::from(old));
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// Values of environment variables that hold secrets (names ending in
/// `_KEY`, `_TOKEN`, `_SECRET`, `_PASSWORD`), at least 8 characters long.
fn secrets_from_env() -> Vec<String> {
    let mut v: Vec<String> = std::env::vars()
        .filter(|(k, val)| {
            let k = k.to_ascii_uppercase();
            ["_KEY", "_TOKEN", "_SECRET", "_PASSWORD"]
                .iter()
                .any(|s| k.ends_with(s))
                && val.trim().len() >= 8
        })
        .map(|(_, v)| v.trim().to_string())
        .collect();
    // Longest first, so a key containing another is replaced whole.
    v.sort_by_key(|s| std::cmp::Reverse(s.len()));
    v.dedup();
    v
}

/// Replace anything that looks like a credential in one log line.
pub fn scrub(line: &str, secrets: &[String]) -> String {
    // Registered secrets (the configured key, however the server echoes
    // it), then the ones given, then anything shaped like a credential.
    let out = crate::secrets::redact(line);
    let mut out = crate::secrets::redact_with(&out, secrets).into_owned();
    // `Bearer <token>` and `Authorization: <value>` (any case).
    for marker in ["bearer ", "authorization: ", "authorization=", "api-key: "] {
        out = redact_after(&out, marker);
    }
    // OpenAI-style keys: `sk-` followed by 8+ key characters.
    redact_sk(&out)
}

/// Redact the token following each (ASCII case-insensitive) `marker`.
fn redact_after(s: &str, marker: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    let mut from = 0;
    while let Some(i) = lower[from..].find(marker) {
        let start = from + i + marker.len();
        let end = s[start..]
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ',')
            .map_or(s.len(), |e| start + e);
        if end > start && &s[start..end] != "[redacted]" {
            out.push_str(&s[last..start]);
            out.push_str("[redacted]");
            last = end;
        }
        from = end.max(start);
    }
    out.push_str(&s[last..]);
    out
}

fn redact_sk(s: &str) -> String {
    let key_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("sk-") {
        let before_ok = rest[..i].chars().next_back().is_none_or(|c| !key_char(c));
        let tail = &rest[i + 3..];
        let n = tail.find(|c: char| !key_char(c)).unwrap_or(tail.len());
        out.push_str(&rest[..i]);
        if before_ok && n >= 8 {
            out.push_str("[redacted]");
        } else {
            out.push_str(&rest[i..i + 3 + n]);
        }
        rest = &tail[n..];
    }
    out.push_str(rest);
    out
}

/// Appends scrubbed lines to the log file. `tracing-subscriber` formats a
/// whole event before writing it, so each `write` holds complete lines.
#[derive(Clone)]
pub struct LogWriter {
    file: Arc<Mutex<File>>,
    secrets: Arc<Vec<String>>,
}

impl LogWriter {
    pub fn new(file: File, secrets: Vec<String>) -> LogWriter {
        LogWriter {
            file: Arc::new(Mutex::new(file)),
            secrets: Arc::new(secrets),
        }
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let clean = scrub(&text, &self.secrets);
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        f.write_all(clean.as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> LogWriter {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_credentials() {
        let secrets = vec!["hunter2-very-secret".to_string()];
        let line = "req failed: Authorization: Bearer abc.def-123 key=hunter2-very-secret \
                    body {\"error\":\"Incorrect API key provided: sk-proj-ABCDEFGH1234\"}";
        let s = scrub(line, &secrets);
        assert!(!s.contains("abc.def-123"), "{s}");
        assert!(!s.contains("hunter2"), "{s}");
        assert!(!s.contains("ABCDEFGH1234"), "{s}");
        assert!(s.contains("req failed"), "{s}");
        // Ordinary text is left alone.
        assert_eq!(
            scrub("task-sk-1 ok, sk-short", &[]),
            "task-sk-1 ok, sk-short"
        );
    }

    #[test]
    fn bare_level_is_for_straddle_only() {
        assert_eq!(filter(Some("debug")).to_string(), "straddle=debug,warn");
        assert_eq!(filter(None).to_string(), "straddle=info,warn");
        assert_eq!(filter(Some("h2=trace")).to_string(), "h2=trace");
    }

    #[test]
    fn writer_appends_scrubbed_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/straddle.log");
        let mut w = LogWriter::new(open(&path).unwrap(), vec![]);
        w.write_all(b"one Bearer tok123456\n").unwrap();
        let mut w = LogWriter::new(open(&path).unwrap(), vec![]);
        w.write_all(b"two\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "one Bearer [redacted]\ntwo\n");
    }
}
