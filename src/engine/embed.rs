//! Embeddings as an engine job kind: a batch of texts POSTed to
//! `/embeddings` goes through the same scheduler as chat requests — the
//! same concurrency limit (adaptive or fixed), request and token buckets,
//! 429 holds (`Retry-After`, `x-ratelimit-*`), retries with backoff, usage
//! and cost accounting — and the same [`ResponseCache`] packs, one record
//! per text keyed by (host, model, text), so a re-run or an overlapping
//! batch asks the server only for texts it has not embedded before.
//!
//! An embed job answers its caller directly (the future of
//! [`EngineHandle::embed`]), not through the event stream: a chat
//! session's receiver never sees it. Its retries are logged, and the
//! adaptive limit's changes are reported as for chat.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::{Command, EngineHandle};
use crate::llm::{FailReason, LlmError, ResponseCache};

/// What an embed job answers: the vectors of its inputs in order and the
/// prompt tokens of the request.
pub(crate) type EmbedReply = Result<(Vec<Vec<f32>>, u32), LlmError>;

/// One `/embeddings` request for the scheduler (distinct texts, at most
/// a batch).
pub(crate) struct EmbedWork {
    pub(crate) inputs: Arc<[String]>,
    pub(crate) reply: oneshot::Sender<EmbedReply>,
}

impl EngineHandle {
    /// The raw vectors (as the server sends them, not normalised) of
    /// `texts`, in order. Texts in the response cache are answered from it
    /// (counted as cache hits); the others, each distinct text once, go out
    /// in requests of at most `batch_size` texts, queued like chat jobs and
    /// retried like them. Every answered batch is cached before the next
    /// error can end the call, so a failed call loses nothing it paid for.
    ///
    /// `dim`, when known (the size of earlier answers), is what every
    /// vector must have: a cached one of another size is asked for again,
    /// and an answer of another size fails as [`FailReason::Malformed`]
    /// without being cached. Otherwise fails with the last attempt's error
    /// (`gave up after N attempts` when retried).
    pub async fn embed(
        &self,
        texts: &[String],
        batch_size: usize,
        dim: Option<usize>,
    ) -> Result<Vec<Vec<f32>>, LlmError> {
        let client = &self.shared.client;
        let cache = self.shared.cache.as_ref().filter(|c| c.is_enabled());
        let key = |t: &str| ResponseCache::embedding_key(client.host(), client.model(), t);
        let mut found: HashMap<&str, Vec<f32>> = HashMap::new();
        let mut missing: Vec<String> = Vec::new();
        let mut seen = HashSet::new();
        for t in texts {
            if !seen.insert(t.as_str()) {
                continue;
            }
            let hit = cache
                .and_then(|c| c.get_vector(&key(t)))
                .filter(|v| dim.is_none_or(|d| v.len() == d));
            match hit {
                Some(v) => {
                    self.shared
                        .stats
                        .lock()
                        .expect("stats")
                        .cache_hit(Instant::now());
                    found.insert(t.as_str(), v);
                }
                None => missing.push(t.clone()),
            }
        }
        let mut pending = Vec::new();
        for chunk in missing.chunks(batch_size.max(1)) {
            let id = self
                .next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (reply, rx) = oneshot::channel();
            self.send(Command::SubmitEmbed(
                id,
                EmbedWork {
                    inputs: chunk.into(),
                    reply,
                },
            ));
            pending.push((chunk, rx));
        }
        let mut dim = dim.or_else(|| found.values().next().map(Vec::len));
        let mut first_error = None;
        for (chunk, rx) in pending {
            let answer = rx.await.unwrap_or_else(|_| {
                Err(LlmError::new(
                    FailReason::Cancelled,
                    "the embeddings engine stopped before answering",
                ))
            });
            let vectors = match answer {
                Ok((vectors, _tokens)) => vectors,
                Err(e) => {
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            let got = vectors.first().map_or(0, Vec::len);
            if let Some(d) = dim.filter(|d| *d != got) {
                first_error.get_or_insert(LlmError::new(
                    FailReason::Malformed,
                    format!(
                        "/embeddings answered {got}-dimensional vectors after {d}-dimensional ones \
                         (did the server's model change? the cached vectors are kept)"
                    ),
                ));
                continue;
            }
            dim = Some(got);
            for (t, v) in chunk.iter().zip(vectors) {
                if let Some(c) = cache
                    && let Err(e) = c.put_vector(&key(t), &v)
                {
                    tracing::warn!("cannot write cache entry in {}: {e}", c.dir().display());
                }
                found.insert(t.as_str(), v);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        Ok(texts.iter().map(|t| found[t.as_str()].clone()).collect())
    }
}
