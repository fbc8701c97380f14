//! Sentence embeddings: texts → L2-normalised `f32` vectors.
//!
//! * [`Embedder`] is the one interface; [`from_config`] builds the backend
//!   chosen in `straddle.toml` `[embeddings]`:
//!   - [`LocalEmbedder`] (`backend = "local"`, the default): all-MiniLM-L6-v2
//!     in-process, from weights that `scripts/embedder.sh install` puts in
//!     `~/.cache/straddle/embedder/all-MiniLM-L6-v2` (nothing is downloaded
//!     at run time). Same vectors as sentence-transformers (mean pooling
//!     over the attention mask, then L2 norm; 384 dimensions).
//!   - [`ApiEmbedder`] (`backend = "api"`): any OpenAI-compatible
//!     `/v1/embeddings`, as jobs of the [`engine`](crate::engine): batched,
//!     rate-limited, retried, cached per text and counted in usage and
//!     cost like chat requests.
//! * [`VectorStore`] keeps the vectors in a compact side file under the
//!   project's `cache/`, keyed by (model, text) with the response cache's
//!   content addressing, so a vector is computed once per text and model and
//!   recomputed when either changes. Vectors never go into the journal.
//!   [`vectors_for`] gives the vector of every sample of a project state.
//!
//! Speed (benches/embed.rs, 2-core AVX-512 EPYC): in f32 the dense layers
//! run at the f32 kernel's peak (~21 MFLOP a token); `precision = "auto"`
//! runs them in bf16 (`vdpbf16ps`, twice the multiply-adds an
//! instruction) where the CPU has AVX512_BF16, about 1.7× faster overall,
//! with vectors within cosine 0.9999 of f32 (tests/embed_precision.rs).
//! Attention runs per sequence and head in an AVX-512 kernel of its own
//! (scores in 4×32 register tiles, a vector `exp`), residual and layer norm
//! in one pass. Texts are sorted by length, packed without padding and
//! split over both cores; the README has the figures.
//! `local_model = "static"` (a token table
//! distilled from MiniLM) embeds 10,000 texts in well under 0.1 s, but is 11
//! points worse on CLINC20 and at TF-IDF level on tweets (2-shot LR: 0.83
//! vs 0.94, 0.29 vs 0.38), so MiniLM is the default; vectors are cached per
//! text, so its cost is paid once per text.
//!
//! Everything here is below the application jobs: it uses `domain` and
//! `llm`, never a front end.

mod api;
pub mod bert;
pub mod denoise;
mod gemm;
mod local;
mod projection;
mod static_model;
mod store;
pub mod wordpiece;

pub use api::ApiEmbedder;
pub use local::{LocalEmbedder, default_model_dir, model_dir as local_model_dir};
pub use projection::{MAX_FIT, Projection, fit_step, refit_due};
pub use static_model::{STATIC_FILE, StaticEmbedder, StaticVariant, distill_table};
pub use store::{VectorStore, vectors_for};

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::domain::{EmbeddingBackend, EmbeddingsConfig, LocalModel, Usage};
use crate::llm::{LlmError, ResponseCache};

/// The script that installs the local embedder's weights.
pub const INSTALL_HINT: &str = "scripts/embedder.sh install";

/// Why texts could not be embedded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EmbedError {
    /// The local model's files are not there.
    #[error(
        "no embedding model in {dir}: run `{INSTALL_HINT}` (or set [embeddings] model_dir in straddle.toml to a folder holding config.json, model.safetensors and vocab.txt; or backend = \"api\" / \"none\")",
        dir = .0.display()
    )]
    MissingWeights(PathBuf),
    /// The model files are there but unusable.
    #[error("embedding model: {0}")]
    Model(String),
    /// The embeddings server failed (after the retries).
    #[error("embeddings server: {0}")]
    Api(#[from] LlmError),
    /// The server answered with vectors of another size than before.
    #[error("embedding size changed from {expected} to {got}")]
    DimMismatch { expected: usize, got: usize },
    /// The side file of vectors could not be written.
    #[error("vector store {path}: {message}")]
    Store { path: PathBuf, message: String },
}

/// Something that turns texts into L2-normalised vectors of one fixed size.
///
/// `embed` returns one vector per input, in input order. Local backends
/// compute inside the future, on the calling thread plus helper threads;
/// on a multi-threaded tokio runtime they do it through `block_in_place`,
/// so the runtime's other tasks move on (on a current-thread runtime they
/// hold it for the duration). Use [`embed_blocking`] from synchronous code.
pub trait Embedder: Send + Sync {
    /// Identifies the model for caching: vectors from different ids are
    /// never mixed (`local:all-MiniLM-L6-v2`, `api:host/model`).
    fn model_id(&self) -> &str;
    /// Vector size, once known (an API model's after its first answer).
    fn dim(&self) -> Option<usize>;
    /// What the backend used so far (requests, cache hits, prompt tokens,
    /// failures, cost): nothing for in-process models.
    fn usage(&self) -> Usage {
        Usage::default()
    }
    /// Embed `texts`.
    fn embed<'a>(&'a self, texts: &'a [String])
    -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>>;
}

/// The embedder `[embeddings]` asks for; `Ok(None)` for `backend = "none"`.
/// The local model is loaded now (about a second; `local_model = "static"`
/// distils its table on first use, under a minute), so a missing install
/// is reported here with the fix ([`EmbedError::MissingWeights`]).
pub fn from_config(cfg: &EmbeddingsConfig) -> Result<Option<Arc<dyn Embedder>>, EmbedError> {
    from_config_with(cfg, None)
}

/// [`from_config`] with the project's response cache: an `api` backend
/// looks each text's vector up there and stores new ones (the local
/// models ignore it; their vectors live in the [`VectorStore`]).
pub fn from_config_with(
    cfg: &EmbeddingsConfig,
    cache: Option<ResponseCache>,
) -> Result<Option<Arc<dyn Embedder>>, EmbedError> {
    Ok(match cfg.backend {
        EmbeddingBackend::None => None,
        EmbeddingBackend::Local => {
            match cfg.local_model {
                LocalModel::Minilm => Some(shared_local(cfg)?),
                LocalModel::Static => {
                    // The table is distilled once, in f32, whatever the
                    // precision setting: one file serves every machine.
                    let f32 = EmbeddingsConfig {
                        precision: crate::domain::EmbeddingPrecision::F32,
                        ..cfg.clone()
                    };
                    let model = LocalEmbedder::from_config(&f32)?;
                    Some(Arc::new(StaticEmbedder::load_or_distill(
                        model.dir(),
                        &model,
                        StaticVariant::CenteredZipf,
                    )?))
                }
            }
        }
        EmbeddingBackend::Api => {
            let api = ApiEmbedder::new(cfg)?;
            Some(Arc::new(match cache {
                Some(c) => api.with_cache(c),
                None => api,
            }))
        }
    })
}

/// The local model `cfg` names, shared with every part of the process
/// that holds it already (the TUI's judges, S3 round, signals, data gate
/// and map each ask for one; each copy is ~70-90 MB of weights), loaded
/// when nobody does.
fn shared_local(cfg: &EmbeddingsConfig) -> Result<Arc<dyn Embedder>, EmbedError> {
    type Loaded = Vec<(String, std::sync::Weak<LocalEmbedder>)>;
    static LOADED: std::sync::Mutex<Loaded> = std::sync::Mutex::new(Vec::new());
    let key = format!("{cfg:?}");
    // Held while loading: a second job asking meanwhile waits and shares.
    let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    loaded.retain(|(_, w)| w.strong_count() > 0);
    if let Some(e) = loaded
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, w)| w.upgrade())
    {
        return Ok(e);
    }
    let e = Arc::new(LocalEmbedder::from_config(cfg)?);
    loaded.push((key, Arc::downgrade(&e)));
    Ok(e)
}

/// Run `embedder.embed(texts)` to completion from synchronous code: on a
/// multi-threaded tokio runtime through `block_in_place`, elsewhere on a
/// small runtime of its own. (Not from inside a current-thread runtime.)
pub fn embed_blocking(
    embedder: &dyn Embedder,
    texts: &[String],
) -> Result<Vec<Vec<f32>>, EmbedError> {
    block_on(embedder.embed(texts))
}

pub(crate) fn block_on<T>(fut: impl std::future::Future<Output = T>) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => tokio::task::block_in_place(|| handle.block_on(fut)),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime for embedding")
            .block_on(fut),
    }
}

/// Run CPU-bound `f` from async code: through `block_in_place` on a
/// multi-threaded tokio runtime (the runtime moves its other tasks to
/// another worker meanwhile), directly anywhere else.
pub(crate) fn cpu_bound<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Cosine similarity of two L2-normalised vectors (their dot product).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub use bert::{Precision, l2_normalize};
