//! The effect behind the session's [`EmbedJob`]s: embeds their texts off
//! the UI and the session (on tokio's blocking pool), through the
//! project's vector store (`cache/embeddings/<model>.vec`, so a text is
//! embedded once per model), and hands the vectors back as [`Embedded`]
//! for [`Session::on_embedded`](super::Session::on_embedded). An `api`
//! backend's requests are engine jobs (rate limits, retries, usage and
//! cost, the response cache per text: see [`crate::embed::ApiEmbedder`]);
//! under `--no-cache` they skip the vector store as well, so nothing
//! cached is read or written. The CLI's
//! `generate`/`relabel`/`loop` and the TUI start one with
//! [`EmbedWorker::for_project`]; the rules are the session's.
//!
//! The model is loaded on the first job (about a second for MiniLM), not
//! when the worker starts, so the TUI's first frame never waits for it.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::session::EmbedJob;
use crate::domain::{DenoiseMode, EmbeddingBackend, EmbeddingsConfig, ProjectConfig, Usage};
use crate::embed::{Embedder, LocalEmbedder, VectorStore};
use crate::llm::ResponseCache;

/// An embed job's answer.
#[derive(Debug)]
pub struct Embedded {
    pub id: u64,
    pub result: Result<Vec<Vec<f32>>, String>,
    /// What the job used of an API backend (requests, cache hits, prompt
    /// tokens, failures, cost); empty for the local model. Journalled
    /// under [`USAGE_RUN`], so `straddle stats` shows it apart from chat.
    pub usage: Usage,
}

/// The run name of the embeddings' `usage_recorded` events.
pub const USAGE_RUN: &str = "embeddings";

struct Loaded {
    embedder: Arc<dyn Embedder>,
    /// `None` for an `api` backend under `--no-cache`.
    store: Option<VectorStore>,
}

/// Runs the session's embed jobs one after another, in the background.
pub struct EmbedWorker {
    cfg: EmbeddingsConfig,
    cache: ResponseCache,
    label: String,
    loaded: Arc<Mutex<Option<Loaded>>>,
    tx: UnboundedSender<Embedded>,
    rx: UnboundedReceiver<Embedded>,
}

impl std::fmt::Debug for EmbedWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbedWorker")
            .field("label", &self.label)
            .finish()
    }
}

impl EmbedWorker {
    /// The worker for `config`'s `[denoise]`: `Ok(None)` when denoising is
    /// off (`mode = "off"` or `[embeddings] backend = "none"`), `Err` with
    /// the fix when the local model is not installed. `cache` is the
    /// project's response cache (disabled under `--no-cache`); the vector
    /// store lives beside it (`<cache>/embeddings/`).
    pub fn for_project(
        config: &ProjectConfig,
        cache: &ResponseCache,
    ) -> Result<Option<Self>, String> {
        if mode(config) == DenoiseMode::Off {
            return Ok(None);
        }
        let e = &config.embeddings;
        let label = match e.backend {
            EmbeddingBackend::None => return Ok(None),
            EmbeddingBackend::Local => {
                LocalEmbedder::check_installed(e).map_err(|e| e.to_string())?;
                let dir = crate::embed::local_model_dir(e);
                // As the model id says it (`local:all-MiniLM-L6-v2@bf16`).
                let precision = match e.local_model {
                    crate::domain::LocalModel::Minilm => {
                        crate::embed::Precision::resolve(e.precision)
                    }
                    crate::domain::LocalModel::Static => crate::embed::Precision::F32,
                };
                format!(
                    "local:{}{}",
                    dir.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    match precision {
                        crate::embed::Precision::F32 => String::new(),
                        p => format!("@{}", p.name()),
                    }
                )
            }
            EmbeddingBackend::Api => format!("api:{}", e.model),
        };
        let (tx, rx) = unbounded_channel();
        Ok(Some(EmbedWorker {
            cfg: e.clone(),
            cache: cache.clone(),
            label,
            loaded: Arc::new(Mutex::new(None)),
            tx,
            rx,
        }))
    }

    /// The model's name as recorded with each judgement.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Embed `job` in the background; its answer comes from [`recv`](Self::recv).
    /// Needs a tokio runtime.
    pub fn submit(&self, job: EmbedJob) {
        let loaded = self.loaded.clone();
        let cfg = self.cfg.clone();
        let cache = self.cache.clone();
        let tx = self.tx.clone();
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let (result, usage) = embed(&loaded, &cfg, &cache, &job.texts, &handle);
            let _ = tx.send(Embedded {
                id: job.id,
                result,
                usage,
            });
        });
    }

    /// The next answer.
    pub async fn recv(&mut self) -> Option<Embedded> {
        self.rx.recv().await
    }

    pub fn try_recv(&mut self) -> Option<Embedded> {
        self.rx.try_recv().ok()
    }
}

/// The environment variable that overrides `[denoise] mode` for one run
/// (`off`, `flag` or `reject`), e.g. in scripts and the test suite.
pub const MODE_ENV: &str = "STRADDLE_DENOISE";

/// `[denoise] mode`, or [`MODE_ENV`] when it is set to a mode.
pub fn mode(config: &ProjectConfig) -> DenoiseMode {
    match std::env::var(MODE_ENV).as_deref().map(str::trim) {
        Ok("off") => DenoiseMode::Off,
        Ok("flag") => DenoiseMode::Flag,
        Ok("reject") => DenoiseMode::Reject,
        _ => config.denoise.mode,
    }
}

/// Turn the session's denoiser on for the project: its `[denoise]`
/// settings (with [`mode`] applied), the embedder's label, and the judge
/// `[judge] use` pins for the class check. `generate`, the TUI and batch
/// ingest all arm it here.
pub fn arm_denoiser(
    session: &mut crate::app::session::Session,
    config: &ProjectConfig,
    model: &str,
) {
    session.set_denoise(settings(config), model);
    session.set_judge_use(config.judge.use_);
}

/// `[denoise]` with [`mode`] applied.
pub fn settings(config: &ProjectConfig) -> crate::domain::DenoiseConfig {
    crate::domain::DenoiseConfig {
        mode: mode(config),
        ..config.denoise.clone()
    }
}

/// Embed `texts` through the (lazily loaded) model and its vector store.
fn embed(
    loaded: &Mutex<Option<Loaded>>,
    cfg: &EmbeddingsConfig,
    cache: &ResponseCache,
    texts: &[String],
    handle: &tokio::runtime::Handle,
) -> (Result<Vec<Vec<f32>>, String>, Usage) {
    let mut guard = loaded.lock().unwrap_or_else(|p| p.into_inner());
    if guard.is_none() {
        let embedder = match crate::embed::from_config_with(cfg, Some(cache.clone())) {
            Ok(Some(e)) => e,
            Ok(None) => {
                return (
                    Err("[embeddings] backend is \"none\"".into()),
                    Usage::default(),
                );
            }
            Err(e) => return (Err(e.to_string()), Usage::default()),
        };
        let skip_store = cfg.backend == EmbeddingBackend::Api && !cache.is_enabled();
        let store = (!skip_store).then(|| VectorStore::open(cache.dir(), embedder.model_id()));
        *guard = Some(Loaded { embedder, store });
    }
    let l = guard.as_mut().expect("loaded above");
    let before = l.embedder.usage();
    let result = match &mut l.store {
        Some(store) => handle.block_on(store.embed(l.embedder.as_ref(), texts)),
        None => handle.block_on(l.embedder.embed(texts)),
    }
    .map_err(|e| e.to_string());
    let usage = l.embedder.usage().since(&before);
    (result, usage)
}
