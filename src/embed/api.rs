//! Embeddings from an OpenAI-compatible `/v1/embeddings` server through the
//! project's [`LlmClient`] (same headers, API key handling, status
//! classification and timeouts as chat), batched and retried with the
//! engine's conventions: 429, 5xx, timeouts and dropped connections are
//! retried up to `max_retries` times after the server's `Retry-After` or an
//! exponential backoff with jitter (0.5 s doubling, at most 30 s).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::{EmbedError, Embedder, l2_normalize};
use crate::domain::{BackendConfig, EmbeddingsConfig};
use crate::llm::{LlmClient, LlmError};

/// First retry delay; doubles per attempt (the engine's default).
const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// An OpenAI-compatible embeddings endpoint.
pub struct ApiEmbedder {
    client: LlmClient,
    id: String,
    batch_size: usize,
    max_retries: u32,
    backoff_base: Duration,
    /// 0 until the first answer.
    dim: AtomicUsize,
    requests: AtomicU64,
    prompt_tokens: AtomicU64,
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
    /// key is read from that environment variable now and never stored).
    pub fn new(cfg: &EmbeddingsConfig) -> Result<ApiEmbedder, EmbedError> {
        let backend = BackendConfig {
            base_url: cfg.base_url.clone(),
            model: cfg.model.clone(),
            api_key_env: cfg.api_key_env.clone(),
            timeout_s: cfg.timeout_s,
            max_retries: cfg.max_retries,
            stream: false,
            ..BackendConfig::default()
        };
        let client = LlmClient::new(&backend)?;
        Ok(ApiEmbedder {
            id: format!("api:{}/{}", client.host(), cfg.model),
            client,
            batch_size: cfg.batch_size.max(1),
            max_retries: cfg.max_retries,
            backoff_base: BACKOFF_BASE,
            dim: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
        })
    }

    /// Shorter retry delays (tests).
    pub fn with_backoff_base(mut self, base: Duration) -> ApiEmbedder {
        self.backoff_base = base;
        self
    }

    pub fn client(&self) -> &LlmClient {
        &self.client
    }

    /// HTTP requests sent so far (retries included).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Prompt tokens the server reported (or estimated) so far.
    pub fn prompt_tokens(&self) -> u64 {
        self.prompt_tokens.load(Ordering::Relaxed)
    }

    /// One batch, retried.
    async fn batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut attempt = 0u32;
        loop {
            self.requests.fetch_add(1, Ordering::Relaxed);
            match self.client.embeddings(texts).await {
                Ok((mut vecs, tokens)) => {
                    self.prompt_tokens
                        .fetch_add(u64::from(tokens), Ordering::Relaxed);
                    for v in &mut vecs {
                        self.check_dim(v.len())?;
                        l2_normalize(v);
                    }
                    return Ok(vecs);
                }
                Err(e) if e.reason.is_retryable() && attempt < self.max_retries => {
                    let wait = e
                        .retry_after
                        .unwrap_or_else(|| backoff(attempt, self.backoff_base, BACKOFF_MAX));
                    tracing::warn!(
                        "embeddings request failed ({e}); retry {} of {} in {wait:?}",
                        attempt + 1,
                        self.max_retries
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => return Err(give_up(e, attempt)),
            }
        }
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

fn give_up(mut e: LlmError, attempt: u32) -> EmbedError {
    if attempt > 0 {
        e.message = format!("{} (after {} attempts)", e.message, attempt + 1);
    }
    EmbedError::Api(e)
}

/// `base · 2^attempt`, capped at `max`, times a random factor in [0.5, 1)
/// (as the engine's scheduler does).
fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.as_secs_f64() * 2f64.powi(attempt.min(30) as i32);
    let jitter: f64 = rand::random_range(0.5..1.0);
    Duration::from_secs_f64(exp.min(max.as_secs_f64()) * jitter)
}

impl Embedder for ApiEmbedder {
    fn model_id(&self) -> &str {
        &self.id
    }

    fn usage(&self) -> (u64, u64) {
        (self.requests(), self.prompt_tokens())
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
            let mut out = Vec::with_capacity(texts.len());
            for chunk in texts.chunks(self.batch_size) {
                out.extend(self.batch(chunk).await?);
            }
            Ok(out)
        })
    }
}
