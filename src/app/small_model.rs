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
//! snapshot; its jobs share the vector store (vectors one job computed are
//! read by the next, e.g. a re-measure of the judges embeds nothing new).

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
/// project's vector store are read from it (from disk, a chunk at a time),
/// new ones are computed and appended to it, so a text is embedded once
/// per model whichever job or process asks first. The store is safe to
/// share: writers append one at a time under a file lock, readers pick up
/// what others appended.
pub struct ProjectEncoder {
    /// `None` after [`release`](Self::release) until the next encode.
    embedder: std::sync::Mutex<Option<Arc<dyn Embedder>>>,
    /// How to load the embedder again after a release: the `[embeddings]`
    /// of an in-process model (an `api` one holds no weights and counts
    /// its usage, so it is kept).
    reload: Option<crate::domain::EmbeddingsConfig>,
    model_id: String,
    store: VectorStore,
    read_only: bool,
}

impl ProjectEncoder {
    /// An encoder over `embedder` with the store under `cache_dir`. A
    /// `read_only` encoder (commands that open the project read-only, the
    /// TUI's jobs) carries on when the store cannot be written (the
    /// vectors are returned all the same; the failure is logged); else
    /// that is an error.
    pub fn new(embedder: Arc<dyn Embedder>, cache_dir: &Path, read_only: bool) -> ProjectEncoder {
        let store = VectorStore::open(cache_dir, embedder.model_id());
        ProjectEncoder {
            model_id: embedder.model_id().to_owned(),
            embedder: std::sync::Mutex::new(Some(embedder)),
            reload: None,
            store,
            read_only,
        }
    }

    /// An encoder over the local model `cfg` names (its id `model_id`,
    /// see [`local_model_id`]) whose weights are not loaded yet: they load
    /// on the first text without a vector in the store, so a measure whose
    /// vectors are all stored never holds them (~45 MB for MiniLM).
    fn unloaded(
        cfg: &crate::domain::EmbeddingsConfig,
        model_id: String,
        cache_dir: &Path,
        read_only: bool,
    ) -> ProjectEncoder {
        ProjectEncoder {
            store: VectorStore::open(cache_dir, &model_id),
            model_id,
            embedder: std::sync::Mutex::new(None),
            reload: Some(cfg.clone()),
            read_only,
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

/// A [`ProjectEncoder`]'s embedder as the store sees it: loaded (again,
/// after a [`release`](ProjectEncoder::release)) only when the store has
/// texts without a vector, so known vectors need no weights.
struct Lazy<'a>(&'a ProjectEncoder);

impl Embedder for Lazy<'_> {
    fn model_id(&self) -> &str {
        &self.0.model_id
    }

    fn dim(&self) -> Option<usize> {
        let slot = self.0.embedder.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref().and_then(|e| e.dim())
    }

    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> futures_util::future::BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move {
            let e = self
                .0
                .embedder()
                .map_err(|e| EmbedError::Model(format!("{e:#}")))?;
            e.embed(texts).await
        })
    }
}

/// Texts a [`ProjectEncoder`] looks up and embeds at a time: one chunk's
/// fresh vectors (and the embedder's buffers for them) at once, however
/// many texts are asked for.
const ENCODE_CHUNK: usize = 2048;

impl TextEncoder for ProjectEncoder {
    fn encode(&self, texts: &[String]) -> anyhow::Result<Dense> {
        self.encode_any(texts)
    }

    /// The texts read in place: only those without a stored vector are
    /// copied (for the embedder).
    fn encode_strs(&self, texts: &[&str]) -> anyhow::Result<Dense> {
        self.encode_any(texts)
    }

    fn name(&self) -> String {
        self.model_id.clone()
    }

    fn release_weights(&self) {
        self.release();
    }
}

impl ProjectEncoder {
    fn encode_any<S: AsRef<str> + Sync>(&self, texts: &[S]) -> anyhow::Result<Dense> {
        let mut flat: Vec<f32> = Vec::new();
        let mut dim = None;
        for chunk in texts.chunks(ENCODE_CHUNK) {
            let rows = if self.read_only {
                embed::block_on(self.store.embed_rows_best_effort(&Lazy(self), chunk))?
            } else {
                embed::block_on(self.store.embed_rows(&Lazy(self), chunk))?
            };
            let d = *dim.get_or_insert(rows.dim);
            if rows.dim != d {
                anyhow::bail!(
                    "the embedder returned vectors of {} and {} dimensions",
                    d,
                    rows.dim
                );
            }
            if texts.len() <= ENCODE_CHUNK {
                flat = rows.data;
            } else {
                if flat.is_empty() {
                    flat.reserve_exact(texts.len() * d);
                }
                flat.extend_from_slice(&rows.data);
            }
        }
        let x = match dim {
            Some(d) if d > 0 => Dense::from_flat(d, flat),
            _ => Dense::new(0),
        };
        Ok(x)
    }
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
    // The local MiniLM model is loaded when a text needs it (the vectors
    // of a project opened again are all in its store).
    if let Some(id) = local_model_id(&config.embeddings) {
        match embed::LocalEmbedder::check_installed(&config.embeddings) {
            Ok(()) => {
                chosen.encoder = Some(ProjectEncoder::unloaded(
                    &config.embeddings,
                    id,
                    cache_dir,
                    read_only,
                ));
            }
            Err(e @ EmbedError::MissingWeights(_)) if choice == ModelChoice::Auto => {
                chosen.note = Some(format!("{e}; using the n-gram model meanwhile"));
            }
            Err(e) => return Err(e.into()),
        }
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

/// The id the local MiniLM model `cfg` names has once loaded
/// (`LocalEmbedder::load_with`: its folder's name, and the precision it
/// runs in on this CPU when not f32), without loading it; `None` for
/// another backend or local model.
fn local_model_id(cfg: &crate::domain::EmbeddingsConfig) -> Option<String> {
    use crate::domain::{EmbeddingBackend, LocalModel};
    if cfg.backend != EmbeddingBackend::Local || cfg.local_model != LocalModel::Minilm {
        return None;
    }
    let dir = embed::local_model_dir(cfg);
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bert".into());
    Some(match embed::Precision::resolve(cfg.precision) {
        embed::Precision::F32 => format!("local:{name}"),
        p => format!("local:{name}@{}", p.name()),
    })
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
        assert!(!ea.is_loaded(), "loaded only for a text without a vector");
        let texts = vec!["a bowl of tomato soup".to_string()];
        let before = ea.encode(&texts).unwrap();
        assert!(ea.is_loaded());
        // The id it was chosen under is the loaded model's.
        assert_eq!(ea.embedder().unwrap().model_id(), ea.name());
        eb.encode(&["a tennis match in the rain".to_string()])
            .unwrap();
        let loaded = |e: &ProjectEncoder| e.embedder.lock().unwrap().clone().unwrap();
        assert!(
            Arc::ptr_eq(&loaded(ea), &loaded(eb)),
            "one copy per process"
        );
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

    /// An embedder over hashed words that counts the texts it embeds.
    struct Counting {
        texts: std::sync::atomic::AtomicUsize,
    }

    impl Embedder for Counting {
        fn model_id(&self) -> &str {
            "test:hashed-words"
        }
        fn dim(&self) -> Option<usize> {
            Some(32)
        }
        fn embed<'a>(
            &'a self,
            texts: &'a [String],
        ) -> futures_util::future::BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
            use crate::classify::small::HashedBagEncoder;
            self.texts
                .fetch_add(texts.len(), std::sync::atomic::Ordering::SeqCst);
            let x = HashedBagEncoder { dim: 32 }.encode(texts).unwrap();
            let rows = (0..x.len()).map(|i| x.row(i).to_vec()).collect();
            Box::pin(async move { Ok(rows) })
        }
    }

    /// The TUI's judges' measure embeds each text once: a re-measure after
    /// an accept (and one by a new encoder, as after the app dropped its
    /// model, or in another process) reads every vector from the store.
    #[test]
    fn a_re_measure_of_the_judges_embeds_nothing_again() {
        use crate::app::judges::{JudgeInput, measure_for_review};
        let dir = tempfile::tempdir().unwrap();
        let config = crate::domain::testing::topics_config(&["sports", "food"]);
        let names = vec!["sports".to_string(), "food".to_string()];
        let mut rows: Vec<(String, &str, Origin)> = vec![
            (
                "the striker scored a late goal".into(),
                "sports",
                Origin::Seed,
            ),
            ("a bowl of tomato soup".into(), "food", Origin::Seed),
            (
                "the goalkeeper saved a penalty".into(),
                "sports",
                Origin::Validation,
            ),
            (
                "pasta with garlic and oil".into(),
                "food",
                Origin::Validation,
            ),
        ];
        for i in 0..3000 {
            let (t, l) = if i % 2 == 0 {
                (format!("match report {i}: a goal in extra time"), "sports")
            } else {
                (format!("recipe {i}: soup with fresh bread"), "food")
            };
            rows.push((t, l, Origin::Generated));
        }
        let refs: Vec<(&str, &str, Origin)> =
            rows.iter().map(|(t, l, o)| (t.as_str(), *l, *o)).collect();
        let st = state_with(&refs, vec![]);
        let counting = Arc::new(Counting {
            texts: Default::default(),
        });
        let embedded = || counting.texts.load(std::sync::atomic::Ordering::SeqCst);
        let enc = ProjectEncoder::new(counting.clone(), dir.path(), true);
        let linear = configs_for(&GenerationSettings::default(), 2).1;
        let prompts = dir.path().join("prompts");
        let measure = |st: &crate::domain::ProjectState, enc: &ProjectEncoder| {
            let input = JudgeInput::from_state(st, &names, true);
            measure_for_review(&input, &config, &prompts, Ok(enc), &linear).unwrap();
        };
        measure(&st, &enc);
        assert_eq!(embedded(), rows.len(), "each text once");
        // An accept changes the judges' data: measured again, nothing new
        // to embed (the accepted text's vector is stored).
        let st = state_with(&refs, vec![crate::domain::testing::accept(10)]);
        measure(&st, &enc);
        assert_eq!(embedded(), rows.len());
        drop(enc);
        let fresh = ProjectEncoder::new(counting.clone(), dir.path(), true);
        measure(&st, &fresh);
        assert_eq!(embedded(), rows.len());
        assert_eq!(fresh.store.len(), rows.len());
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
