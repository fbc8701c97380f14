//! Which small model a project uses, built from its settings: logistic
//! regression on the configured embedder's vectors by default, the hashed
//! n-gram model when no embedder is configured or installed (or when asked
//! for).
//!
//! Front ends call [`choose`] once and hand the result's
//! [`Chosen::model`] on; vectors come from the project's vector store when
//! known and from the embedder otherwise. Where it goes:
//!
//! * `eval`: `classify::evaluate_with` (wired in `cli/eval.rs`).
//! * An S3 round (`loop`, the TUI's `R`): `app::training::round`
//!   (`classify::score_round_with`); the round line carries the macro-F1
//!   difference with its bootstrap interval and the round is called an
//!   improvement only if `Comparison::is_improvement()`.
//! * Training signals (the TUI's `T`, and after rounds):
//!   `app::training::signals` (`classify::signals_with`), which with the
//!   embedding model also folds in the review doubt of
//!   `classify::doubt::project_doubt` (reasons `model_disagrees`,
//!   `low_model_confidence`, `neighbours_disagree`).
//!
//! The TUI builds its model in the job thread with [`choose_for`] from a
//! snapshot, read-only on the vector store.

use std::path::Path;
use std::sync::Arc;

use crate::classify::{Dense, LinearConfig, SmallModel, TextEncoder, TrainConfig};
use crate::domain::{GenerationSettings, ProjectConfig};
use crate::embed::{self, EmbedError, Embedder, VectorStore};
use crate::store::Project;

/// What the user asked for (`--model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ModelChoice {
    /// The embedding model when an embedder is configured and installed,
    /// else the n-gram model.
    #[default]
    Auto,
    /// The embedding model; an error when there is no embedder.
    Embedding,
    /// The hashed n-gram model.
    Ngram,
}

/// A project's embedder as a [`TextEncoder`]: vectors already in the
/// project's store are reused; new ones are computed and, unless the
/// encoder is read-only, appended to the store.
pub struct ProjectEncoder {
    /// `None` after [`release`](Self::release) until the next encode.
    embedder: std::sync::Mutex<Option<Arc<dyn Embedder>>>,
    /// How to load the embedder again after a release: the `[embeddings]`
    /// of an in-process model (an `api` one holds no weights and counts
    /// its usage, so it is kept).
    reload: Option<crate::domain::EmbeddingsConfig>,
    model_id: String,
    store: std::sync::Mutex<VectorStore>,
    read_only: bool,
    /// Read-only: vectors computed by this encoder (a round encodes the
    /// same texts several times; the store is not written).
    memo: std::sync::Mutex<std::collections::HashMap<String, Vec<f32>>>,
}

impl ProjectEncoder {
    /// An encoder over `embedder` with the store under `cache_dir`.
    /// `read_only` never writes the store (for commands that open the
    /// project read-only while another process holds it).
    pub fn new(embedder: Arc<dyn Embedder>, cache_dir: &Path, read_only: bool) -> ProjectEncoder {
        let store = VectorStore::open(cache_dir, embedder.model_id());
        ProjectEncoder {
            model_id: embedder.model_id().to_owned(),
            embedder: std::sync::Mutex::new(Some(embedder)),
            reload: None,
            store: std::sync::Mutex::new(store),
            read_only,
            memo: Default::default(),
        }
    }

    /// Let [`release`](Self::release) drop the embedder, to be loaded
    /// again from `cfg` (the config it was built from) when needed.
    pub fn reloadable(mut self, cfg: &crate::domain::EmbeddingsConfig) -> ProjectEncoder {
        if cfg.backend == crate::domain::EmbeddingBackend::Local {
            self.reload = Some(cfg.clone());
        }
        self
    }

    /// Let go of an in-process embedder's weights (~70 MB for MiniLM)
    /// while this encoder is idle; the next [`encode`](TextEncoder::encode)
    /// loads them again, or shares the copy another job of the process
    /// holds meanwhile (`embed::from_config`). Vectors already computed
    /// stay. Does nothing for an `api` embedder.
    pub fn release(&self) {
        if self.reload.is_some() {
            *self.embedder.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }

    /// Whether the embedder is loaded (not [`release`](Self::release)d).
    pub fn is_loaded(&self) -> bool {
        self.embedder
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// The embedder, loaded again if it was released.
    fn embedder(&self) -> anyhow::Result<Arc<dyn Embedder>> {
        let mut slot = self.embedder.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = slot.as_ref() {
            return Ok(e.clone());
        }
        let cfg = self
            .reload
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the embedder was released"))?;
        let e = embed::from_config(cfg)?
            .ok_or_else(|| anyhow::anyhow!("no embedder configured any more"))?;
        if e.model_id() != self.model_id {
            anyhow::bail!(
                "the embedder changed from {} to {}",
                self.model_id,
                e.model_id()
            );
        }
        *slot = Some(e.clone());
        Ok(e)
    }
}

/// Vectors a read-only [`ProjectEncoder`] keeps between calls (~1.5 KB
/// each with a 384-dimension model: ≤ ~30 MB). A small project's jobs
/// find all their texts here the next time; on a large one the vectors
/// past this many are computed again rather than kept for the whole
/// session (the app's memory would grow by every text's vector).
pub const MEMO_MAX: usize = 20_000;

/// Texts a read-only [`ProjectEncoder`] embeds at a time.
const ENCODE_CHUNK: usize = 4096;

impl TextEncoder for ProjectEncoder {
    fn encode(&self, texts: &[String]) -> anyhow::Result<Dense> {
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        if !self.read_only {
            let embedder = self.embedder()?;
            let rows = embed::block_on(store.embed(&*embedder, texts))?;
            return dense_of(texts.len(), rows.iter().map(|r| r.as_slice()));
        }
        let mut memo = self.memo.lock().unwrap_or_else(|e| e.into_inner());
        // A chunk at a time: the texts' matrix and one chunk's fresh
        // vectors are all there is at once.
        let mut flat: Vec<f32> = Vec::new();
        let mut dim = None;
        for chunk in texts.chunks(ENCODE_CHUNK) {
            let mut missing: Vec<&str> = chunk
                .iter()
                .map(|t| t.as_str())
                .filter(|t| store.get(t).is_none() && !memo.contains_key(*t))
                .collect();
            missing.sort_unstable();
            missing.dedup();
            let owned: Vec<String> = missing.iter().map(|t| t.to_string()).collect();
            // The weights only when a text needs them (they may have
            // been released).
            let fresh = if owned.is_empty() {
                Vec::new()
            } else {
                embed::embed_blocking(&*self.embedder()?, &owned)?
            };
            drop(owned);
            for t in chunk {
                let row = if let Some(v) = store.get(t) {
                    v
                } else if let Ok(i) = missing.binary_search(&t.as_str()) {
                    fresh.get(i).map_or(&[][..], |v| v.as_slice())
                } else {
                    memo.get(t).map_or(&[][..], |v| v.as_slice())
                };
                let d = *dim.get_or_insert(row.len());
                if row.len() != d {
                    anyhow::bail!(
                        "the embedder returned vectors of {} and {} dimensions",
                        d,
                        row.len()
                    );
                }
                if flat.is_empty() {
                    flat.reserve_exact(texts.len() * d);
                }
                flat.extend_from_slice(row);
            }
            let room = MEMO_MAX.saturating_sub(memo.len());
            let keep: Vec<(String, Vec<f32>)> = missing
                .iter()
                .map(|t| t.to_string())
                .zip(fresh)
                .take(room)
                .collect();
            memo.extend(keep);
        }
        let x = match dim {
            Some(d) if d > 0 => Dense::from_flat(d, flat),
            _ => Dense::new(0),
        };
        Ok(x)
    }

    fn name(&self) -> String {
        self.model_id.clone()
    }
}

/// `n` rows of equal length as one matrix.
fn dense_of<'a>(n: usize, rows: impl Iterator<Item = &'a [f32]>) -> anyhow::Result<Dense> {
    let mut rows = rows.peekable();
    let dim = rows.peek().map_or(0, |r| r.len());
    let mut x = Dense::new(dim);
    let mut flat = Vec::with_capacity(n * dim);
    for r in rows {
        if r.len() != dim {
            anyhow::bail!(
                "the embedder returned vectors of {} and {} dimensions",
                dim,
                r.len()
            );
        }
        flat.extend_from_slice(r);
    }
    if dim > 0 {
        x = Dense::from_flat(dim, flat);
    }
    Ok(x)
}

/// The small model a project gets.
pub struct Chosen {
    pub ngram: TrainConfig,
    pub linear: LinearConfig,
    pub encoder: Option<ProjectEncoder>,
    /// Why the n-gram model is used when the embedding one was not ruled
    /// out by the user (no embedder configured, weights missing…).
    pub note: Option<String>,
}

impl Chosen {
    /// What its `api` embedder used so far (requests, cached texts,
    /// tokens, cost; nothing for the local models), for the journal's
    /// `embeddings` usage.
    pub fn embeddings_usage(&self) -> crate::domain::Usage {
        self.encoder
            .as_ref()
            .and_then(|e| {
                let slot = e.embedder.lock().unwrap_or_else(|e| e.into_inner());
                slot.as_ref().map(|e| e.usage())
            })
            .unwrap_or_default()
    }

    /// Only the n-gram model (tests, and front ends that must not load
    /// an embedder).
    pub fn ngram(settings: &GenerationSettings, classes: usize) -> Chosen {
        let (ngram, linear) = configs_for(settings, classes);
        Chosen {
            ngram,
            linear,
            encoder: None,
            note: None,
        }
    }

    /// The model to train.
    pub fn model(&self) -> SmallModel<'_> {
        match &self.encoder {
            Some(e) => SmallModel::Embedding {
                encoder: e,
                cfg: &self.linear,
            },
            None => SmallModel::Ngram(&self.ngram),
        }
    }
}

/// The classifier settings of a project: sized for its classes and seeded
/// with the generation seed so scores are reproducible.
pub fn configs(project: &Project) -> (TrainConfig, LinearConfig) {
    configs_for(&project.generation_settings(), project.class_names().len())
}

/// [`configs`] from a snapshot's settings and class count.
pub fn configs_for(settings: &GenerationSettings, classes: usize) -> (TrainConfig, LinearConfig) {
    let seed = settings.seed;
    (
        TrainConfig::for_classes(classes, seed),
        LinearConfig {
            seed,
            ..LinearConfig::default()
        },
    )
}

/// Build the small model `choice` asks for on `project`. `read_only`: see
/// [`ProjectEncoder::new`].
pub fn choose(project: &Project, choice: ModelChoice, read_only: bool) -> anyhow::Result<Chosen> {
    choose_for(
        project.config(),
        &project.cache_dir(),
        &project.generation_settings(),
        project.class_names().len(),
        choice,
        read_only,
    )
}

/// [`choose`] from a snapshot (what a job off the UI task has): the
/// project's config, its cache folder, its settings and class count.
/// Loading the embedder reads its weights, so call it off the UI task.
pub fn choose_for(
    config: &ProjectConfig,
    cache_dir: &Path,
    settings: &GenerationSettings,
    classes: usize,
    choice: ModelChoice,
    read_only: bool,
) -> anyhow::Result<Chosen> {
    let (ngram, linear) = configs_for(settings, classes);
    let mut chosen = Chosen {
        ngram,
        linear,
        encoder: None,
        note: None,
    };
    if choice == ModelChoice::Ngram {
        return Ok(chosen);
    }
    // The response cache beside the vector store: an `api` embedder reuses
    // vectors any run asked for (read-only commands leave both alone).
    let cache = (!read_only).then(|| crate::llm::ResponseCache::new(cache_dir));
    match embed::from_config_with(&config.embeddings, cache) {
        Ok(Some(e)) => {
            chosen.encoder =
                Some(ProjectEncoder::new(e, cache_dir, read_only).reloadable(&config.embeddings));
        }
        Ok(None) if choice == ModelChoice::Auto => {
            chosen.note = Some(
                "no embedder configured ([embeddings] backend = \"none\"): using the n-gram model"
                    .into(),
            );
        }
        Ok(None) => {
            return Err(crate::error::user(
                "--model embedding needs an embedder: set [embeddings] backend in straddle.toml",
            ));
        }
        Err(e @ EmbedError::MissingWeights(_)) if choice == ModelChoice::Auto => {
            chosen.note = Some(format!("{e}; using the n-gram model meanwhile"));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Origin;
    use crate::domain::testing::state_with;

    /// A released encoder lets go of the weights and loads them again on
    /// the next encode, with the same vectors; meanwhile the process's
    /// other holders share one copy.
    #[test]
    #[ignore = "needs the local embedder weights; scripts/test.sh installs them"]
    fn a_released_encoder_reloads_and_shares_the_process_copy() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = crate::domain::testing::topics_config(&["sports", "food"]);
        let choose = || {
            choose_for(
                &cfg,
                tmp.path(),
                &GenerationSettings::default(),
                2,
                ModelChoice::Embedding,
                true,
            )
            .unwrap()
        };
        let (a, b) = (choose(), choose());
        let (ea, eb) = (a.encoder.as_ref().unwrap(), b.encoder.as_ref().unwrap());
        let loaded = |e: &ProjectEncoder| e.embedder.lock().unwrap().clone().unwrap();
        assert!(
            Arc::ptr_eq(&loaded(ea), &loaded(eb)),
            "one copy per process"
        );
        let texts = vec!["a bowl of tomato soup".to_string()];
        let before = ea.encode(&texts).unwrap();
        ea.release();
        assert!(!ea.is_loaded());
        assert_eq!(ea.name(), eb.name(), "the id is kept");
        // Reloaded while `b` holds the model: its copy, not a second one.
        let other = vec!["the striker scored a late goal".to_string()];
        let fresh = ea.encode(&other).unwrap();
        assert!(ea.is_loaded());
        assert!(Arc::ptr_eq(&loaded(ea), &loaded(eb)));
        assert_eq!(fresh.row(0), eb.encode(&other).unwrap().row(0));
        assert_eq!(ea.encode(&texts).unwrap().row(0), before.row(0));
        // Texts it has vectors for need no weights.
        ea.release();
        assert_eq!(ea.encode(&texts).unwrap().row(0), before.row(0));
        assert!(!ea.is_loaded(), "not loaded for known vectors");
    }

    /// The default settings choose the local embedder; a round on it
    /// names the embedding model and reports an interval.
    #[test]
    #[ignore = "needs the local embedder weights; scripts/test.sh installs them"]
    fn a_round_on_the_default_settings_uses_the_embedding_model() {
        let tmp = tempfile::tempdir().unwrap();
        let settings = GenerationSettings::default();
        let chosen = choose_for(
            &crate::domain::testing::topics_config(&["sports", "food"]),
            tmp.path(),
            &settings,
            2,
            ModelChoice::Auto,
            true,
        )
        .unwrap();
        assert!(chosen.encoder.is_some(), "{:?}", chosen.note);
        let st = state_with(
            &[
                ("the striker scored a late goal", "sports", Origin::Seed),
                ("a tennis match in the rain", "sports", Origin::Seed),
                ("a bowl of tomato soup", "food", Origin::Seed),
                ("fresh bread from the oven", "food", Origin::Seed),
                (
                    "the goalkeeper saved a penalty",
                    "sports",
                    Origin::Validation,
                ),
                ("pasta with garlic and oil", "food", Origin::Validation),
            ],
            vec![],
        );
        let names = vec!["sports".to_string(), "food".to_string()];
        let r = crate::app::training::round(&chosen.model(), &st, &names, 1).unwrap();
        assert_eq!(r.model, "embedding");
        assert!(r.line().starts_with("r1 macro-F1 "), "{}", r.line());
        assert!(!r.is_improvement(), "two held-out examples show nothing");
    }
}
