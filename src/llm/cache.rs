//! On-disk response cache: `DIR/ab/abcdef….json`, one finished
//! [`ChatResponse`] per file, keyed by the SHA-256 of (server host, model,
//! request body without the streaming fields).
//!
//! Writes go to a temporary file in the same folder and are renamed into
//! place, so a reader sees either nothing or a whole entry. An unreadable or
//! corrupt entry counts as a miss (and is overwritten by the next answer).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::ChatResponse;

/// A content-addressed cache of LLM responses in one folder.
#[derive(Debug, Clone)]
pub struct ResponseCache {
    dir: PathBuf,
    read: bool,
}

/// Format version baked into every key, so a change of what is stored
/// invalidates old entries instead of misreading them.
const KEY_VERSION: &str = "straddle-cache-v1";

impl ResponseCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> ResponseCache {
        ResponseCache {
            dir: dir.into(),
            read: true,
        }
    }

    /// The same cache, but lookups always miss (`--no-cache`): every
    /// request goes to the server, answers are still stored.
    pub fn write_only(mut self) -> ResponseCache {
        self.read = false;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key of a request: hex SHA-256 over host, model and the body
    /// with `stream` and `stream_options` removed (serde_json maps are
    /// sorted, so the serialisation is canonical).
    pub fn key(host: &str, model: &str, body: &Map<String, Value>) -> String {
        let mut h = Sha256::new();
        for part in [KEY_VERSION, host, model] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let mut body = body.clone();
        body.remove("stream");
        body.remove("stream_options");
        h.update(serde_json::to_vec(&body).unwrap_or_default());
        hex::encode(h.finalize())
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir
            .join(&key[..2.min(key.len())])
            .join(format!("{key}.json"))
    }

    /// The stored response for `key`, marked `cached`; `None` on a miss,
    /// a corrupt entry or a write-only cache.
    pub fn get(&self, key: &str) -> Option<ChatResponse> {
        if !self.read {
            return None;
        }
        let path = self.path(key);
        let bytes = std::fs::read(&path).ok()?;
        match serde_json::from_slice::<ChatResponse>(&bytes) {
            Ok(mut r) => {
                r.cached = true;
                Some(r)
            }
            Err(e) => {
                tracing::warn!("ignoring corrupt cache entry {}: {e}", path.display());
                None
            }
        }
    }

    /// Store `resp` under `key` atomically (temp file + rename).
    pub fn put(&self, key: &str, resp: &ChatResponse) -> std::io::Result<()> {
        let path = self.path(key);
        let folder = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(folder)?;
        let mut stored = resp.clone();
        stored.cached = false;
        let text = serde_json::to_string(&stored).map_err(std::io::Error::other)?;
        // No secret on disk, even when a server echoed the key in its reply.
        let bytes = crate::secrets::redact_owned(text).into_bytes();
        let tmp = folder.join(format!(
            ".{key}.{}.{}.tmp",
            std::process::id(),
            rand::random::<u32>()
        ));
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            std::fs::rename(&tmp, &path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::TokenUsage;
    use serde_json::json;

    fn resp(text: &str) -> ChatResponse {
        ChatResponse {
            text: text.into(),
            choices: vec![text.into()],
            finish_reason: Some("stop".into()),
            usage: TokenUsage::default(),
            logprobs: None,
            cached: false,
            model: "m".into(),
            request_id: "r".into(),
        }
    }

    fn body(temp: f64) -> Map<String, Value> {
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": temp})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn key_ignores_stream_but_not_parameters_or_host() {
        let mut streamed = body(1.0);
        streamed.insert("stream".into(), json!(true));
        streamed.insert("stream_options".into(), json!({"include_usage": true}));
        let k = ResponseCache::key("h", "m", &body(1.0));
        assert_eq!(k, ResponseCache::key("h", "m", &streamed));
        assert_ne!(k, ResponseCache::key("h", "m", &body(0.5)));
        assert_ne!(k, ResponseCache::key("h2", "m", &body(1.0)));
        assert_ne!(k, ResponseCache::key("h", "m2", &body(1.0)));
    }

    #[test]
    fn roundtrip_corrupt_entry_and_write_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResponseCache::new(dir.path());
        let k = ResponseCache::key("h", "m", &body(1.0));
        assert!(cache.get(&k).is_none());
        cache.put(&k, &resp("hello")).unwrap();
        let got = cache.get(&k).unwrap();
        assert!(got.cached);
        assert_eq!(got.text, "hello");
        assert!(cache.clone().write_only().get(&k).is_none());
        std::fs::write(cache.path(&k), b"{\"text\": \"trunc").unwrap();
        assert!(cache.get(&k).is_none());
        cache.put(&k, &resp("again")).unwrap();
        assert_eq!(cache.get(&k).unwrap().text, "again");
        let leftovers: Vec<_> = std::fs::read_dir(cache.path(&k).parent().unwrap())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .collect();
        assert!(leftovers.is_empty());
    }
}
