//! Training signals ([`super::signals`]) and the embedding model's doubt
//! ([`super::doubt`]) for a project's whole review pool, with memory
//! bounded by a cap and a chunk, not by the pool.
//!
//! The models train on at most [`MAX_TRAIN`] examples of the pool: below
//! that, all of them (the results are those of [`super::signals_for`] /
//! [`super::signals_for_vectors`] on the whole pool); past it, an evenly
//! spaced sample of each class in its share ([`sample_rows`], the rule
//! the judges use). Only that sample's sentence vectors are held; the
//! other examples are encoded [`CHUNK`] at a time and each is scored as it
//! comes, so a pool of 170,000 costs the vectors of 10,000 (15 MB at 384
//! dimensions) instead of 260 MB.
//!
//! What an example gets, in the sample or not, stays honest:
//! * in the training sample: exactly what the uncapped signals give, on
//!   the sample (out-of-fold probabilities from the cross-fitted models,
//!   confidence and variability over the models that trained on it);
//! * outside it: its probabilities come from the model trained on the
//!   whole sample, which never saw it — so they are out of fold too — and
//!   its "confidence" and "variability" are the mean and spread of its
//!   label's probability over every model trained (the fold models and the
//!   final one), none of which saw it. The class thresholds and support
//!   behind "likely mislabel" are the sample's.
//! * neighbours (`neighbours_disagree`) are looked up among the trusted
//!   examples (seeds, accepted) of the training sample.

use super::data::{MAX_TRAIN, sample_rows};
use super::dense::Dense;
use super::doubt::{ModelDoubt, ModelDoubtConfig, NEIGHBOURS_DISAGREE, doubt_of, nearest_many};
use super::features::Encoded;
use super::linear::{CrossFit, LinearConfig, fit_calibrated, softmax_t_into};
use super::model::{Classifier, EpochProbs, TrainConfig};
use super::signals::{CALIBRATED_MISLABEL, OutOfFold, Rule, SignalConfig, Signals, assign_folds};
use super::small::{TextEncoder, encode_strs_checked};
use crate::domain::{Origin, ProjectState, SampleId, SampleState, Status};
use std::borrow::Cow;
use std::sync::Arc;

/// Examples encoded at a time outside the training sample.
pub const CHUNK: usize = 2048;

/// How many examples the models train on at most, and how many others
/// are encoded at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub max: usize,
    pub chunk: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max: MAX_TRAIN,
            chunk: CHUNK,
        }
    }
}

/// The review pool (`super::review_pool`: seeds and generated examples
/// that are not rejected, with a label among the classes) without copies
/// of its texts.
pub(crate) struct Pool<'a> {
    pub ids: Cow<'a, [SampleId]>,
    pub labels: Cow<'a, [usize]>,
    pub texts: Texts<'a>,
    /// Seeds and accepted examples: the neighbours' labels are trusted.
    pub trusted: Cow<'a, [bool]>,
}

/// A [`Pool`]'s texts: borrowed from the state, or the shared ones of a
/// [`SharedPool`] (read in place, no list of them made).
pub(crate) enum Texts<'a> {
    Borrowed(Vec<&'a str>),
    Shared(&'a [Arc<str>]),
}

#[cfg(test)]
impl Texts<'_> {
    pub fn len(&self) -> usize {
        match self {
            Texts::Borrowed(t) => t.len(),
            Texts::Shared(t) => t.len(),
        }
    }

    /// The texts in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).map(|i| &self[i])
    }
}

impl std::ops::Index<usize> for Texts<'_> {
    type Output = str;
    fn index(&self, i: usize) -> &str {
        match self {
            Texts::Borrowed(t) => t[i],
            Texts::Shared(t) => &t[i],
        }
    }
}

/// The review pool's rows of `state`: each kept sample with its label's
/// index and whether its label is trusted (the one rule of
/// [`Pool::of`] and [`SharedPool::of`]).
fn pool_rows<'s>(
    state: &'s ProjectState,
    classes: &[String],
) -> impl Iterator<Item = (&'s SampleState, usize, bool)> {
    state.samples.iter().filter_map(move |s| {
        let status = s.status();
        let keep = match s.origin {
            Origin::Seed => true,
            Origin::Generated => status != Status::Rejected,
            Origin::Validation | Origin::Test => false,
        };
        let label = s.effective_label(state.take_relabel);
        keep.then(|| classes.iter().position(|c| c == label))
            .flatten()
            .map(|l| {
                let trusted = s.origin == Origin::Seed || status == Status::Accepted;
                (s, l, trusted)
            })
    })
}

/// [`pool_rows`] as columns, each text as `text` takes it (borrowed for
/// [`Pool::of`], shared for [`SharedPool::of`]).
type Columns<T> = (Vec<SampleId>, Vec<usize>, Vec<T>, Vec<bool>);
fn pool_columns<'s, T>(
    state: &'s ProjectState,
    classes: &[String],
    text: impl Fn(&'s SampleState) -> T,
) -> Columns<T> {
    // Sized for every sample at once (the pool is most of them), not
    // grown by doubling: no column copied as it grows.
    let n = state.samples.len();
    let mut c: Columns<T> = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (s, l, trusted) in pool_rows(state, classes) {
        c.0.push(s.id);
        c.1.push(l);
        c.2.push(text(s));
        c.3.push(trusted);
    }
    c
}

impl<'a> Pool<'a> {
    pub(crate) fn of(state: &'a ProjectState, classes: &[String]) -> Pool<'a> {
        let (ids, labels, texts, trusted) = pool_columns(state, classes, SampleState::text);
        Pool {
            ids: ids.into(),
            labels: labels.into(),
            texts: Texts::Borrowed(texts),
            trusted: trusted.into(),
        }
    }

    fn len(&self) -> usize {
        self.ids.len()
    }
}

/// The review pool a background job takes away from the state: its
/// texts shared with the state (`Arc<str>`), nothing else of the samples
/// (a few bytes a row, where a snapshot of the state holds every
/// sample's verdict, decision and confidences).
pub struct SharedPool {
    ids: Vec<SampleId>,
    labels: Vec<usize>,
    texts: Vec<Arc<str>>,
    trusted: Vec<bool>,
}

impl SharedPool {
    /// The review pool of `state`, as [`Pool::of`] gives it.
    pub fn of(state: &ProjectState, classes: &[String]) -> SharedPool {
        let (ids, labels, texts, trusted) =
            pool_columns(state, classes, |s| s.text_shared().clone());
        SharedPool {
            ids,
            labels,
            texts,
            trusted,
        }
    }

    /// Examples in the pool.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The texts, in pool order.
    pub fn texts(&self) -> &[Arc<str>] {
        &self.texts
    }

    /// The pool as the jobs read it (borrowing every column: no copy).
    pub(crate) fn view(&self) -> Pool<'_> {
        Pool {
            ids: Cow::Borrowed(&self.ids),
            labels: Cow::Borrowed(&self.labels),
            texts: Texts::Shared(&self.texts),
            trusted: Cow::Borrowed(&self.trusted),
        }
    }
}

/// The training sample of a pool and the rows outside it.
fn split(labels: &[usize], max: usize) -> (Vec<usize>, Vec<usize>) {
    let inside = sample_rows(labels, max);
    let mut is_in = vec![false; labels.len()];
    for &r in &inside {
        is_in[r] = true;
    }
    let mut outside = Vec::with_capacity(labels.len() - inside.len());
    outside.extend((0..labels.len()).filter(|&r| !is_in[r]));
    (inside, outside)
}

/// Signals of the review pool with the n-gram model, in pool order,
/// trained on at most `max` examples (see the module).
pub(crate) fn ngram_signals(
    classes: &[String],
    pool: &Pool<'_>,
    cfg: &SignalConfig,
    max: usize,
) -> Vec<Signals> {
    let (inside, outside) = split(&pool.labels, max);
    let texts: Vec<&str> = inside.iter().map(|&r| &pool.texts[r]).collect();
    let labels: Vec<usize> = inside.iter().map(|&r| pool.labels[r]).collect();
    let enc = Encoded::new(&cfg.train.features, &texts);
    drop(texts);
    let rows: Vec<usize> = (0..labels.len()).collect();
    let mut dynamics: EpochProbs = Vec::new();
    let full = Classifier::fit(
        classes,
        &enc,
        &labels,
        &rows,
        &cfg.train,
        Some(&mut dynamics),
    );
    let keep_models = !outside.is_empty();
    let (oof, models) =
        out_of_fold_models(classes, &enc, &labels, cfg.folds, &cfg.train, keep_models);
    drop(enc);
    let rule = Rule::new(classes, &labels, &oof.proba, cfg.folds, None, cfg);
    let mut out: Vec<Option<Signals>> = vec![None; pool.len()];
    for (j, &r) in inside.iter().enumerate() {
        out[r] = Some(rule.signals(labels[j], &dynamics[j], &oof.proba[j]));
    }
    drop(dynamics);
    let mut dynamics = Vec::with_capacity(models.len() + 1);
    for &r in &outside {
        let y = pool.labels[r];
        let p = full.predict_proba(&pool.texts[r]);
        dynamics.clear();
        dynamics.extend(
            models
                .iter()
                .map(|m| m.predict_proba(&pool.texts[r])[y] as f32),
        );
        dynamics.push(p[y] as f32);
        out[r] = Some(rule.signals(y, &dynamics, &p));
    }
    out.into_iter()
        .map(|s| s.expect("every row scored"))
        .collect()
}

/// [`super::signals::out_of_fold`], also returning the fold models when
/// `keep` (to score rows outside the training set).
pub(crate) fn out_of_fold_models(
    classes: &[String],
    enc: &Encoded,
    labels: &[usize],
    folds: usize,
    cfg: &TrainConfig,
    keep: bool,
) -> (OutOfFold, Vec<Classifier>) {
    let folds = folds.max(2);
    let fold = assign_folds(labels, classes.len(), folds, cfg.seed);
    let mut proba = vec![Vec::new(); labels.len()];
    let mut train_rows = Vec::with_capacity(folds);
    let mut models = Vec::new();
    for f in 0..folds {
        let train: Vec<usize> = (0..labels.len()).filter(|&i| fold[i] != f).collect();
        let model = Classifier::fit(classes, enc, labels, &train, cfg, None);
        for i in (0..labels.len()).filter(|&i| fold[i] == f) {
            proba[i] = model.predict_proba_row(enc, i);
        }
        train_rows.push(train);
        if keep {
            models.push(model);
        }
    }
    (
        OutOfFold {
            fold,
            proba,
            train_rows,
        },
        models,
    )
}

/// What [`vector_pool`] computes for each example.
pub(crate) struct VectorRow {
    pub signals: Option<Signals>,
    pub doubt: Option<ModelDoubt>,
}

/// Signals (with `signals`) and doubt (with `doubt`) of the review pool
/// with the embedding model, in pool order, trained on at most `max`
/// examples and encoding `chunk` others at a time (see the module). The
/// pool is encoded once for both; fails only when the encoder does.
pub(crate) fn vector_pool(
    classes: &[String],
    pool: &Pool<'_>,
    encoder: &dyn TextEncoder,
    linear: &LinearConfig,
    signals: Option<&SignalConfig>,
    doubt: Option<&ModelDoubtConfig>,
    limits: Limits,
) -> anyhow::Result<Vec<VectorRow>> {
    let mut out: Vec<Option<VectorRow>> = (0..pool.len()).map(|_| None).collect();
    vector_pool_each(
        classes,
        pool,
        encoder,
        linear,
        signals,
        doubt,
        limits,
        &mut |r, row| out[r] = Some(row),
    )?;
    Ok(out
        .into_iter()
        .map(|row| row.expect("every row scored"))
        .collect())
}

/// [`vector_pool`], handing each row to `emit` with its pool index as it
/// is scored (each exactly once) instead of collecting them: a caller
/// keeps what it needs of them, in its own shape.
#[allow(clippy::too_many_arguments)]
pub(crate) fn vector_pool_each(
    classes: &[String],
    pool: &Pool<'_>,
    encoder: &dyn TextEncoder,
    linear: &LinearConfig,
    signals: Option<&SignalConfig>,
    doubt: Option<&ModelDoubtConfig>,
    limits: Limits,
    emit: &mut dyn FnMut(usize, VectorRow),
) -> anyhow::Result<()> {
    let Limits { max, chunk } = limits;
    if pool.len() == 0 {
        return Ok(());
    }
    let k = classes.len().max(1);
    let (inside, outside) = split(&pool.labels, max);
    let texts: Vec<&str> = inside.iter().map(|&r| &pool.texts[r]).collect();
    let x = encode_strs_checked(encoder, &texts)?;
    drop(texts);
    // Texts without a stored vector (a project's first job after new
    // seeds) loaded the embedder: its weights (~45 MB for MiniLM) go
    // before the models train, and after each chunk below that needed
    // them, instead of staying for the whole job.
    encoder.release_weights();
    let labels: Vec<usize> = inside.iter().map(|&r| pool.labels[r]).collect();
    // The signals' fit (their fold count), and the doubt's (the linear
    // settings as given): one fit when they agree.
    let sig_cfg = signals.map(|cfg| LinearConfig {
        calibration_folds: cfg.folds,
        ..linear.clone()
    });
    let sig_fit = sig_cfg
        .as_ref()
        .map(|lcfg| fit_calibrated(classes, &x, &labels, lcfg));
    let own_doubt_fit = match (doubt, &sig_cfg) {
        (Some(_), Some(l)) if l == linear => None,
        (Some(_), _) => Some(fit_calibrated(classes, &x, &labels, linear)),
        (None, _) => None,
    };
    let doubt_fit: Option<&CrossFit> = doubt.and(own_doubt_fit.as_ref().or(sig_fit.as_ref()));

    // The signals of the sample, as `signals_for_vectors` computes them.
    let sig_parts = match (signals, &sig_fit) {
        (Some(cfg), Some(fit)) => {
            let folds = if fit.oof_logits.is_empty() {
                0
            } else {
                fit.fold.iter().max().map_or(0, |f| f + 1)
            };
            let proba = fit
                .oof_proba()
                .unwrap_or_else(|| fit.model.predict_proba_batch(&x));
            let min_support = if folds == 0 { usize::MAX } else { folds };
            Some((cfg, fit, proba, min_support))
        }
        _ => None,
    };
    let rule = sig_parts.as_ref().map(|(cfg, _, proba, min_support)| {
        Rule::new(
            classes,
            &labels,
            proba,
            *min_support,
            Some(CALIBRATED_MISLABEL),
            cfg,
        )
    });
    // The doubt of the sample, as `project_doubt` computes it.
    let doubt_parts = match (doubt, doubt_fit) {
        (Some(dcfg), Some(fit)) => {
            let folded = fit.oof_proba();
            let has_folds = folded.is_some();
            let oof = folded.unwrap_or_else(|| vec![vec![1.0 / k as f64; k]; labels.len()]);
            let trusted: Vec<usize> = inside
                .iter()
                .enumerate()
                .filter(|(_, r)| pool.trusted[**r])
                .map(|(j, _)| j)
                .collect();
            Some((dcfg, fit, oof, trusted, has_folds))
        }
        _ => None,
    };
    let finish_doubt = |mut d: ModelDoubt, has_folds: bool| {
        if !has_folds {
            d.reasons = d
                .reasons
                .intersection([NEIGHBOURS_DISAGREE].into_iter().collect());
        }
        d
    };

    // The nearest trusted examples of the whole sample at once (a block
    // of them in cache for every query), as `nearest` finds them.
    let near_inside = doubt_parts
        .as_ref()
        .map(|(dcfg, _, _, trusted, _)| nearest_many(&x, &x, true, trusted, dcfg.neighbours));
    for (j, &r) in inside.iter().enumerate() {
        let signals = sig_parts
            .as_ref()
            .zip(rule.as_ref())
            .map(|((_, fit, proba, _), rule)| {
                rule.signals(labels[j], &fit.in_sample[j], &proba[j])
            });
        let doubt = doubt_parts.as_ref().zip(near_inside.as_ref()).map(
            |((dcfg, _, oof, _, has_folds), near)| {
                finish_doubt(
                    doubt_of(labels[j], &oof[j], near.of(j), &labels, k, dcfg),
                    *has_folds,
                )
            },
        );
        emit(r, VectorRow { signals, doubt });
    }
    drop(near_inside);
    // Past the sample, only its trusted examples are compared with: keep
    // their vectors (in order, so ties fall as before) and labels, not the
    // whole sample's.
    let (xt, trusted_labels, trusted_rows) = match &doubt_parts {
        Some((_, _, _, trusted, _)) => (
            x.select(trusted),
            trusted.iter().map(|&j| labels[j]).collect::<Vec<_>>(),
            (0..trusted.len()).collect::<Vec<_>>(),
        ),
        None => (Dense::new(x.dim()), Vec::new(), Vec::new()),
    };
    let (dim, trained) = (x.dim(), !x.is_empty());
    drop(x);

    // Everyone else, a chunk at a time: scored by models that never saw
    // them. One buffer for the logits and one for each model's
    // probabilities, whatever the rows.
    let mut z = vec![0f32; classes.len()];
    let mut dynamics: Vec<f32> = Vec::new();
    let mut p_sig = vec![0f64; classes.len()];
    let mut p_doubt = vec![0f64; k];
    // The doubt's model is the signals' (one fit for both): its
    // probabilities are those the signals computed.
    let same_fit = match (&sig_parts, &doubt_parts) {
        (Some((_, s, _, _)), Some((_, d, _, _, _))) => std::ptr::eq(*s, *d),
        _ => false,
    };
    let mut texts: Vec<&str> = Vec::new();
    for part in outside.chunks(chunk.max(1)) {
        texts.clear();
        texts.extend(part.iter().map(|&r| &pool.texts[r]));
        let c = encode_strs_checked(encoder, &texts)?;
        encoder.release_weights();
        if c.dim() != dim && trained {
            anyhow::bail!(
                "the encoder returned vectors of {dim} and {} dimensions",
                c.dim()
            );
        }
        let near = doubt_parts
            .as_ref()
            .map(|(dcfg, ..)| nearest_many(&c, &xt, false, &trusted_rows, dcfg.neighbours));
        for (j, &r) in part.iter().enumerate() {
            let (v, y) = (c.row(j), pool.labels[r]);
            let signals = sig_parts
                .as_ref()
                .zip(rule.as_ref())
                .map(|((_, fit, _, _), rule)| {
                    dynamics.clear();
                    for m in fit.fold_models.iter().chain([&fit.model]) {
                        m.logits_into(v, &mut z);
                        softmax_t_into(&z, 1.0, &mut p_sig);
                        dynamics.push(p_sig[y] as f32);
                    }
                    // `z` holds the final model's logits (last above).
                    softmax_t_into(&z, fit.model.temperature(), &mut p_sig);
                    rule.signals(y, &dynamics, &p_sig)
                });
            let doubt = doubt_parts.as_ref().zip(near.as_ref()).map(
                |((dcfg, fit, _, _, has_folds), near)| {
                    let p: &[f64] = if !*has_folds {
                        p_doubt.fill(1.0 / k as f64);
                        &p_doubt
                    } else if same_fit && signals.is_some() {
                        &p_sig
                    } else {
                        fit.model.predict_proba_into(v, &mut z, &mut p_doubt);
                        &p_doubt
                    };
                    finish_doubt(
                        doubt_of(y, p, near.of(j), &trusted_labels, k, dcfg),
                        *has_folds,
                    )
                },
            );
            emit(r, VectorRow { signals, doubt });
        }
    }
    Ok(())
}

/// The training signals of the review pool with the embedding model and,
/// with `doubt`, its doubt folded in (reasons added, the doubt kept in
/// [`Signals::model_doubt`]), in pool order, at the default cap and
/// chunk: [`vector_pool_each`] keeping one `Signals` per row and nothing
/// else.
pub(crate) fn vector_signals_capped(
    classes: &[String],
    pool: &Pool<'_>,
    encoder: &dyn TextEncoder,
    linear: &LinearConfig,
    signals: &SignalConfig,
    doubt: Option<&ModelDoubtConfig>,
) -> anyhow::Result<Vec<Signals>> {
    // Made at the first row: not held while the models train.
    let mut out: Vec<Option<Signals>> = Vec::new();
    vector_pool_each(
        classes,
        pool,
        encoder,
        linear,
        Some(signals),
        doubt,
        Limits::default(),
        &mut |r, row| {
            if out.is_empty() {
                out = vec![None; pool.len()];
            }
            let mut sig = row.signals.expect("signals asked for");
            if let Some(d) = row.doubt {
                sig.reasons = sig.reasons.union(d.reasons);
                sig.model_doubt = Some(d);
            }
            out[r] = Some(sig);
        },
    )?;
    Ok(out
        .into_iter()
        .map(|s| s.expect("every row scored"))
        .collect())
}

/// [`vector_pool`] at the default cap and chunk.
pub(crate) fn vector_pool_capped(
    classes: &[String],
    pool: &Pool<'_>,
    encoder: &dyn TextEncoder,
    linear: &LinearConfig,
    signals: Option<&SignalConfig>,
    doubt: Option<&ModelDoubtConfig>,
) -> anyhow::Result<Vec<VectorRow>> {
    vector_pool(
        classes,
        pool,
        encoder,
        linear,
        signals,
        doubt,
        Limits::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::small::HashedBagEncoder;
    use crate::classify::{Dense, signals_for, signals_for_vectors};
    use crate::domain::testing::{accept, state_with};
    use std::sync::Mutex;

    /// The hashed-bag encoder, recording the size of every call.
    struct Counting {
        inner: HashedBagEncoder,
        calls: Mutex<Vec<usize>>,
        /// At each `release_weights`, how many encodes came before it.
        released: Mutex<Vec<usize>>,
    }

    impl TextEncoder for Counting {
        fn encode(&self, texts: &[String]) -> anyhow::Result<Dense> {
            self.calls.lock().unwrap().push(texts.len());
            self.inner.encode(texts)
        }
        fn name(&self) -> String {
            "counting".into()
        }
        fn release_weights(&self) {
            let n = self.calls.lock().unwrap().len();
            self.released.lock().unwrap().push(n);
        }
    }

    /// [`vector_pool`] with the default settings (signals and doubt),
    /// trained on at most 40 examples, encoding `chunk` others at a time.
    fn capped(
        names: &[String],
        pool: &Pool<'_>,
        enc: &dyn TextEncoder,
        chunk: usize,
    ) -> Vec<VectorRow> {
        vector_pool(
            names,
            pool,
            enc,
            &LinearConfig::default(),
            Some(&SignalConfig::default()),
            Some(&ModelDoubtConfig::default()),
            Limits { max: 40, chunk },
        )
        .unwrap()
    }

    /// 4 seeds and 116 generated examples of two classes (every third
    /// generated one accepted); generated example `flipped` (an id)
    /// carries the other class's label.
    fn project(flipped: u64) -> (ProjectState, Vec<String>) {
        let mut rows: Vec<(String, &str, Origin)> = Vec::new();
        for i in 0..2 {
            rows.push((format!("apples pears plums {i}"), "fruit", Origin::Seed));
            rows.push((format!("trucks engines wheels {i}"), "cars", Origin::Seed));
        }
        for i in 0..58u64 {
            let fruit_id = 5 + 2 * i;
            let fruit_label = if fruit_id == flipped { "cars" } else { "fruit" };
            rows.push((
                format!("apples pears ripe plums {i}"),
                fruit_label,
                Origin::Generated,
            ));
            rows.push((
                format!("trucks wheels fast engines {i}"),
                "cars",
                Origin::Generated,
            ));
        }
        let refs: Vec<(&str, &str, Origin)> =
            rows.iter().map(|(t, l, o)| (t.as_str(), *l, *o)).collect();
        let accepted = (5..=120).filter(|id| id % 3 == 0).map(accept).collect();
        let names = vec!["fruit".to_string(), "cars".to_string()];
        (state_with(&refs, accepted), names)
    }

    /// Past the cap the embedding model encodes the training sample (at
    /// most the cap) and the others a chunk at a time, each once; every
    /// pool example gets its signals and doubt, and a mislabelled example
    /// outside the sample is still caught by the model that never saw it.
    #[test]
    fn above_the_cap_training_uses_the_sample_and_every_example_is_scored() {
        let flipped = 7;
        let (st, names) = project(flipped);
        let pool = Pool::of(&st, &names);
        assert_eq!(pool.len(), 120);
        let (inside, _) = split(&pool.labels, 40);
        let at = pool.ids.iter().position(|&id| id == flipped).unwrap();
        assert!(
            !inside.contains(&at),
            "the flipped example is outside the sample"
        );
        let enc = Counting {
            inner: HashedBagEncoder { dim: 64 },
            calls: Mutex::new(Vec::new()),
            released: Mutex::new(Vec::new()),
        };
        let (linear, cfg) = (LinearConfig::default(), SignalConfig::default());
        let rows = capped(&names, &pool, &enc, 16);
        let calls = enc.calls.lock().unwrap().clone();
        // Each class's share rounds up: at most one more per class.
        assert!(calls[0] <= 40 + 2, "trains on at most the cap: {calls:?}");
        assert!(calls[1..].iter().all(|&c| c <= 16), "{calls:?}");
        assert_eq!(calls.iter().sum::<usize>(), 120, "each encoded once");
        // What an encode loaded goes right after it: the training
        // sample's before the models train, each chunk's before the next.
        let released = enc.released.lock().unwrap().clone();
        assert_eq!(released, (1..=calls.len()).collect::<Vec<_>>());
        assert_eq!(rows.len(), 120);
        for row in &rows {
            let s = row.signals.as_ref().unwrap();
            assert!((0.0..=1.0).contains(&s.oof_confidence) && (0.0..=1.0).contains(&s.confidence));
            let d = row.doubt.as_ref().unwrap();
            assert!(d.neighbours > 0);
        }
        let odd = &rows[at];
        assert_eq!(
            names[odd.signals.as_ref().unwrap().oof_label as usize],
            "fruit"
        );
        assert!(
            odd.doubt
                .as_ref()
                .unwrap()
                .reasons
                .contains(super::super::doubt::MODEL_DISAGREES),
            "{:?}",
            odd.doubt
        );
        assert!(
            odd.signals
                .as_ref()
                .unwrap()
                .reasons
                .contains(super::super::signals::LIKELY_MISLABEL),
            "{:?}",
            odd.signals
        );
        let calm = rows
            .iter()
            .filter(|r| r.signals.as_ref().unwrap().reasons.is_empty())
            .count();
        assert!(calm > 100, "{calm} of 120 without doubt");

        // The examples in the sample keep the signals of a model trained
        // on the sample alone.
        let texts: Vec<String> = inside.iter().map(|&r| pool.texts[r].to_string()).collect();
        let labels: Vec<usize> = inside.iter().map(|&r| pool.labels[r]).collect();
        let x = enc.inner.encode(&texts).unwrap();
        let alone = signals_for_vectors(&names, &x, &labels, &cfg, &linear);
        for (j, &r) in inside.iter().enumerate() {
            assert_eq!(rows[r].signals.as_ref().unwrap(), &alone[j]);
        }
    }

    /// Below the cap nothing changes: the whole pool trains, as
    /// `signals_for_vectors` and `signals_for` on all of it.
    #[test]
    fn below_the_cap_the_results_are_the_uncapped_ones() {
        let (st, names) = project(7);
        let pool = Pool::of(&st, &names);
        let enc = HashedBagEncoder { dim: 64 };
        let (linear, cfg) = (LinearConfig::default(), SignalConfig::default());
        let rows = vector_pool(
            &names,
            &pool,
            &enc,
            &linear,
            Some(&cfg),
            None,
            Limits {
                max: 120,
                chunk: 16,
            },
        )
        .unwrap();
        let texts: Vec<String> = pool.texts.iter().map(|t| t.to_string()).collect();
        let x = enc.encode(&texts).unwrap();
        let whole = signals_for_vectors(&names, &x, &pool.labels, &cfg, &linear);
        let got: Vec<Signals> = rows.into_iter().map(|r| r.signals.unwrap()).collect();
        assert_eq!(got, whole);
        assert_eq!(
            ngram_signals(&names, &pool, &cfg, 120),
            signals_for(
                &names,
                &pool.texts.iter().collect::<Vec<_>>(),
                &pool.labels,
                &cfg
            )
        );
    }

    /// A job holding only the shared pool (no snapshot of the state) gets
    /// exactly the signals and doubt computed from the state, with both
    /// models; an edited example is read with its current text.
    #[test]
    fn the_shared_pool_gives_the_signals_of_the_state() {
        use crate::classify::{
            SmallModel, TrainConfig, shared_signals_and_doubt, signals_and_doubt,
        };
        let (mut st, names) = project(7);
        let at = st.samples.iter().position(|s| s.id == 9).unwrap();
        st.samples[at]
            .edits
            .push((0, Arc::from("trucks engines now, not apples")));
        let shared = SharedPool::of(&st, &names);
        let view = shared.view();
        let pool = Pool::of(&st, &names);
        assert_eq!(view.ids, pool.ids);
        assert_eq!(view.labels, pool.labels);
        assert!(view.texts.iter().eq(pool.texts.iter()));
        assert_eq!(view.trusted, pool.trusted);
        assert!(
            view.texts
                .iter()
                .any(|t| t == "trucks engines now, not apples")
        );
        let enc = HashedBagEncoder { dim: 64 };
        let (linear, train) = (LinearConfig::default(), TrainConfig::default());
        let (cfg, dcfg) = (SignalConfig::default(), ModelDoubtConfig::default());
        for model in [
            SmallModel::Ngram(&train),
            SmallModel::Embedding {
                encoder: &enc,
                cfg: &linear,
            },
        ] {
            let a = signals_and_doubt(&model, &st, &names, &cfg, Some(&dcfg)).unwrap();
            let b = shared_signals_and_doubt(&model, &shared, &names, &cfg, Some(&dcfg)).unwrap();
            assert_eq!(a.len(), 120);
            assert!(a.iter().eq(b.iter()), "{model:?}");
        }
    }

    /// Past the cap, an example outside the sample gets exactly what the
    /// model trained on the sample says of it, one example at a time: its
    /// label's probability from each fold model and the final one, the
    /// final model's calibrated probabilities, and the nearest trusted
    /// examples of the sample as `nearest_to` sorts them — whatever the
    /// chunk.
    #[test]
    fn outside_the_sample_each_example_is_scored_as_on_its_own() {
        use super::super::doubt::{nearest, nearest_to};
        use super::super::linear::softmax_t;
        let (st, names) = project(7);
        let pool = Pool::of(&st, &names);
        let enc = HashedBagEncoder { dim: 64 };
        let (linear, cfg, dcfg) = (
            LinearConfig::default(),
            SignalConfig::default(),
            ModelDoubtConfig::default(),
        );
        let run = |chunk| capped(&names, &pool, &enc, chunk);
        let rows = run(16);
        let (inside, outside) = split(&pool.labels, 40);
        let all: Vec<String> = pool.texts.iter().map(|t| t.to_string()).collect();
        let v = enc.encode(&all).unwrap();
        let x = Dense::from_rows(&inside.iter().map(|&r| v.row(r)).collect::<Vec<_>>());
        let labels: Vec<usize> = inside.iter().map(|&r| pool.labels[r]).collect();
        let lcfg = LinearConfig {
            calibration_folds: cfg.folds,
            ..linear.clone()
        };
        let fit = fit_calibrated(&names, &x, &labels, &lcfg);
        let trusted: Vec<usize> = (0..inside.len())
            .filter(|&j| pool.trusted[inside[j]])
            .collect();
        let oof = fit.oof_proba().unwrap();
        let folds = fit.fold.iter().max().unwrap() + 1;
        let rule = Rule::new(
            &names,
            &labels,
            &oof,
            folds,
            Some(CALIBRATED_MISLABEL),
            &cfg,
        );
        let k = names.len();
        for &r in &outside {
            let (q, y) = (v.row(r), pool.labels[r]);
            let p = fit.model.predict_proba(q);
            let dynamics: Vec<f32> = fit
                .fold_models
                .iter()
                .chain([&fit.model])
                .map(|m| softmax_t(&m.logits(q), 1.0)[y] as f32)
                .collect();
            let near = nearest_to(q, &x, None, &trusted, dcfg.neighbours);
            assert_eq!(
                rows[r].signals.as_ref().unwrap(),
                &rule.signals(y, &dynamics, &p),
                "row {r}"
            );
            assert_eq!(
                rows[r].doubt.as_ref().unwrap(),
                &doubt_of(y, &p, &near, &labels, k, &dcfg),
                "row {r}"
            );
        }
        for (j, &r) in inside.iter().enumerate() {
            let near = nearest(&x, j, &trusted, dcfg.neighbours);
            assert_eq!(
                rows[r].doubt.as_ref().unwrap(),
                &doubt_of(labels[j], &oof[j], &near, &labels, k, &dcfg),
                "row {r}"
            );
        }
        let signals = |rows: Vec<VectorRow>| {
            rows.into_iter()
                .map(|r| (r.signals, r.doubt))
                .collect::<Vec<_>>()
        };
        assert!(
            signals(run(7)) == signals(rows),
            "the same whatever the chunk"
        );
    }

    /// The n-gram model past the cap: the sample keeps its own signals,
    /// everyone else is scored by the models trained on the sample.
    #[test]
    fn ngram_signals_above_the_cap_cover_the_pool() {
        let (st, names) = project(7);
        let pool = Pool::of(&st, &names);
        let cfg = SignalConfig::default();
        let sig = ngram_signals(&names, &pool, &cfg, 40);
        assert_eq!(sig.len(), 120);
        let (inside, outside) = split(&pool.labels, 40);
        assert!(inside.len() <= 41 && inside.len() + outside.len() == 120);
        let texts: Vec<&str> = inside.iter().map(|&r| &pool.texts[r]).collect();
        let labels: Vec<usize> = inside.iter().map(|&r| pool.labels[r]).collect();
        let alone = signals_for(&names, &texts, &labels, &cfg);
        for (j, &r) in inside.iter().enumerate() {
            assert_eq!(sig[r], alone[j]);
        }
        for &r in &outside {
            assert!((0.0..=1.0).contains(&sig[r].oof_confidence));
        }
        let at = pool.ids.iter().position(|&id| id == 7).unwrap();
        assert_eq!(names[sig[at].oof_label as usize], "fruit", "{:?}", sig[at]);
    }
}
