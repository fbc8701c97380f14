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
//! An in-process model's weights (~44 MB for MiniLM in bf16) are let go
//! once the worker has had no job for [`IDLE`]: a session that stopped
//! generating does not keep them; the next job loads them again (~0.1 s
//! from the page cache, or shares the copy another job of the process
//! holds, `embed::from_config`). The vector store's index stays.

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
    /// `None` once released while idle (an in-process model only).
    embedder: Option<Arc<dyn Embedder>>,
    /// `None` for an `api` backend under `--no-cache`.
    store: Option<VectorStore>,
    /// Jobs run so far: a release planned after job `n` goes ahead only
    /// when no job ran since.
    jobs: u64,
}

/// How long the worker waits, without a job, before it lets an in-process
/// model's weights go. Generation sends a job a batch, seconds apart, so
/// the weights stay while it runs.
pub const IDLE: std::time::Duration = std::time::Duration::from_secs(10);

/// Let go of the weights if no job ran since job `after` (and none is
/// running: a job holds the lock). Only an in-process model: an `api`
/// client is small and carries its usage counters.
fn release_idle(loaded: &Mutex<Option<Loaded>>, cfg: &EmbeddingsConfig, after: u64) -> bool {
    if cfg.backend != EmbeddingBackend::Local {
        return false;
    }
    let Ok(mut guard) = loaded.try_lock() else {
        return false;
    };
    match guard.as_mut() {
        Some(l) if l.jobs == after && l.embedder.is_some() => {
            l.embedder = None;
            true
        }
        _ => false,
    }
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
            let (result, usage, n) = embed(&loaded, &cfg, &cache, &job.texts, &handle);
            // Idle from now on unless another job comes within IDLE.
            handle.spawn(async move {
                tokio::time::sleep(IDLE).await;
                if release_idle(&loaded, &cfg, n) {
                    tracing::debug!("embedder released after {IDLE:?} without a job");
                }
            });
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

/// Embed `texts` through the (lazily loaded) model and its vector store;
/// also the number of jobs run so far, this one included.
fn embed(
    loaded: &Mutex<Option<Loaded>>,
    cfg: &EmbeddingsConfig,
    cache: &ResponseCache,
    texts: &[String],
    handle: &tokio::runtime::Handle,
) -> (Result<Vec<Vec<f32>>, String>, Usage, u64) {
    let mut guard = loaded.lock().unwrap_or_else(|p| p.into_inner());
    let released = guard.as_ref().is_none_or(|l| l.embedder.is_none());
    if released {
        let embedder = match crate::embed::from_config_with(cfg, Some(cache.clone())) {
            Ok(Some(e)) => e,
            Ok(None) => {
                return (
                    Err("[embeddings] backend is \"none\"".into()),
                    Usage::default(),
                    guard.as_ref().map_or(0, |l| l.jobs),
                );
            }
            Err(e) => {
                return (
                    Err(e.to_string()),
                    Usage::default(),
                    guard.as_ref().map_or(0, |l| l.jobs),
                );
            }
        };
        match guard.as_mut() {
            // Released while idle: the store (and its index) stayed.
            Some(l) => l.embedder = Some(embedder),
            None => {
                let skip_store = cfg.backend == EmbeddingBackend::Api && !cache.is_enabled();
                let store =
                    (!skip_store).then(|| VectorStore::open(cache.dir(), embedder.model_id()));
                *guard = Some(Loaded {
                    embedder: Some(embedder),
                    store,
                    jobs: 0,
                });
            }
        }
    }
    let l = guard.as_mut().expect("loaded above");
    let embedder = l.embedder.clone().expect("loaded above");
    let before = embedder.usage();
    let result = match &mut l.store {
        Some(store) => handle.block_on(store.embed(embedder.as_ref(), texts)),
        None => handle.block_on(embedder.embed(texts)),
    }
    .map_err(|e| e.to_string());
    let usage = embedder.usage().since(&before);
    l.jobs += 1;
    (result, usage, l.jobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    impl Embedder for Fixed {
        fn model_id(&self) -> &str {
            "test:fixed"
        }
        fn dim(&self) -> Option<usize> {
            Some(2)
        }
        fn embed<'a>(
            &'a self,
            texts: &'a [String],
        ) -> futures_util::future::BoxFuture<'a, Result<Vec<Vec<f32>>, crate::embed::EmbedError>>
        {
            let v = texts.iter().map(|_| vec![1.0, 0.0]).collect();
            Box::pin(async move { Ok(v) })
        }
    }

    fn loaded(jobs: u64) -> Mutex<Option<Loaded>> {
        Mutex::new(Some(Loaded {
            embedder: Some(Arc::new(Fixed)),
            store: None,
            jobs,
        }))
    }

    fn is_loaded(l: &Mutex<Option<Loaded>>) -> bool {
        l.lock().unwrap().as_ref().unwrap().embedder.is_some()
    }

    fn local() -> EmbeddingsConfig {
        EmbeddingsConfig {
            backend: EmbeddingBackend::Local,
            ..EmbeddingsConfig::default()
        }
    }

    #[test]
    fn an_idle_local_model_is_released_and_its_store_kept() {
        let l = loaded(3);
        assert!(release_idle(&l, &local(), 3));
        assert!(!is_loaded(&l));
        // Nothing left to release.
        assert!(!release_idle(&l, &local(), 3));
    }

    #[test]
    fn a_job_since_the_plan_keeps_the_model() {
        // Planned after job 2; job 3 ran since.
        let l = loaded(3);
        assert!(!release_idle(&l, &local(), 2));
        assert!(is_loaded(&l));
    }

    #[test]
    fn a_running_job_keeps_the_model() {
        let l = loaded(3);
        let held = l.lock().unwrap();
        assert!(!release_idle(&l, &local(), 3));
        drop(held);
        assert!(is_loaded(&l));
    }

    #[test]
    fn an_api_client_is_kept() {
        let l = loaded(3);
        let api = EmbeddingsConfig {
            backend: EmbeddingBackend::Api,
            ..EmbeddingsConfig::default()
        };
        assert!(!release_idle(&l, &api, 3));
        assert!(is_loaded(&l));
    }
}
