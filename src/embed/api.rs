//! Embeddings from an OpenAI-compatible `/v1/embeddings` server, run as
//! jobs of the project's [`engine`](crate::engine) (see
//! [`EngineHandle::embed`]): batched by `[embeddings] batch_size`, under
//! the engine's concurrency limit and rate-limit buckets, retried on 429
//! (after the server's `Retry-After`), 5xx, timeouts, dropped connections
//! and malformed replies with the engine's backoff, counted in its usage
//! and cost, and cached per text in the project's response cache (the
//! same `cache/pack-*.pack` files as chat) when one is given.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::mpsc::UnboundedReceiver;

use super::{EmbedError, Embedder, l2_normalize};
use crate::domain::{BackendConfig, EmbeddingsConfig, Usage};
use crate::engine::{Engine, EngineEvent, EngineHandle, EngineOptions};
use crate::llm::{LlmClient, ResponseCache};

/// An OpenAI-compatible embeddings endpoint behind an engine.
pub struct ApiEmbedder {
    backend: BackendConfig,
    client: LlmClient,
    cache: Option<ResponseCache>,
    options: EngineOptions,
    id: String,
    batch_size: usize,
    /// 0 until the first answer.
    dim: AtomicUsize,
    /// The engine, started on first use on the caller's runtime (and again
    /// if that runtime went away), with its event receiver kept open.
    engine: Mutex<Option<(EngineHandle, UnboundedReceiver<EngineEvent>)>>,
    /// Usage of engines that ended.
    retired: Mutex<Usage>,
}

impl std::fmt::Debug for ApiEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiEmbedder")
            .field("id", &self.id)
            .field("client", &self.client)
            .finish()
    }
}

impl ApiEmbedder {
    /// A client for `[embeddings] base_url`, `model`, `api_key_env` (the
    /// key is read from that environment variable now and never stored),
    /// without a response cache (see [`with_cache`](Self::with_cache)).
    pub fn new(cfg: &EmbeddingsConfig) -> Result<ApiEmbedder, EmbedError> {
        let backend = cfg.backend();
        let client = LlmClient::new(&backend)?;
        Ok(ApiEmbedder {
            id: format!("api:{}/{}", client.host(), cfg.model),
            client,
            backend,
            cache: None,
            options: EngineOptions {
                deltas: false,
                ..EngineOptions::default()
            },
            batch_size: cfg.batch_size.max(1),
            dim: AtomicUsize::new(0),
            engine: Mutex::new(None),
            retired: Mutex::new(Usage::default()),
        })
    }

    /// Look vectors up in `cache` and store new ones there, one entry per
    /// (server, model, text). A disabled cache (`--no-cache`) reads and
    /// writes nothing.
    pub fn with_cache(mut self, cache: ResponseCache) -> ApiEmbedder {
        self.cache = Some(cache);
        self
    }

    /// Shorter retry delays (tests).
    pub fn with_backoff_base(mut self, base: Duration) -> ApiEmbedder {
        self.options.backoff_base = base;
        self
    }

    pub fn client(&self) -> &LlmClient {
        &self.client
    }

    /// HTTP requests answered so far (each retry's failures are counted
    /// in [`usage`](Embedder::usage)'s `failures`).
    pub fn requests(&self) -> u64 {
        self.usage().requests
    }

    /// Prompt tokens the server reported (or estimated) so far.
    pub fn prompt_tokens(&self) -> u64 {
        self.usage().prompt_tokens
    }

    /// The running engine, started now if there is none (needs a tokio
    /// runtime, which every `embed` future runs on).
    fn engine(&self) -> Result<EngineHandle, EmbedError> {
        let mut guard = self.engine.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((handle, events)) = guard.as_mut() {
            while let Ok(ev) = events.try_recv() {
                if let EngineEvent::Limit { limit, reason } = ev {
                    tracing::debug!("embeddings: {limit} requests in flight ({reason})");
                }
            }
            if handle.is_running() {
                return Ok(handle.clone());
            }
            let ended = handle.usage();
            self.retired
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .add(&ended);
        }
        let (handle, events) =
            Engine::start_with(&self.backend, self.cache.clone(), self.options.clone())
                .map_err(|e| EmbedError::Model(e.to_string()))?;
        *guard = Some((handle.clone(), events));
        Ok(handle)
    }

    fn check_dim(&self, got: usize) -> Result<(), EmbedError> {
        match self
            .dim
            .compare_exchange(0, got, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => Ok(()),
            Err(expected) if expected == got => Ok(()),
            Err(expected) => Err(EmbedError::DimMismatch { expected, got }),
        }
    }
}

impl Embedder for ApiEmbedder {
    fn model_id(&self) -> &str {
        &self.id
    }

    fn usage(&self) -> Usage {
        let mut u = self
            .retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some((handle, _)) = self
            .engine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            u.add(&handle.usage());
        }
        u
    }

    fn dim(&self) -> Option<usize> {
        match self.dim.load(Ordering::Relaxed) {
            0 => None,
            d => Some(d),
        }
    }

    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move {
            if texts.is_empty() {
                return Ok(Vec::new());
            }
            let engine = self.engine()?;
            let mut out = engine
                .embed(texts, self.batch_size, self.dim())
                .await
                .map_err(|e| EmbedError::Api(self.named(e)))?;
            for v in &mut out {
                self.check_dim(v.len())?;
                l2_normalize(v);
            }
            Ok(out)
        })
    }
}

impl ApiEmbedder {
    /// The engine's error, saying which server and model it was.
    fn named(&self, mut e: crate::llm::LlmError) -> crate::llm::LlmError {
        let url = &self.backend.base_url;
        if !e.message.contains(url.as_str()) {
            e.message = format!(
                "{} (model {} at {url}; [embeddings] in straddle.toml)",
                e.message, self.backend.model
            );
        }
        e
    }
}
