//! Training-dynamics signals for review.
//!
//! * **Dataset cartography** (Swayamdipta et al., 2020): train once on all
//!   examples and record, at the end of every epoch, the probability the
//!   model gives each example's own label. Its mean is the *confidence*, its
//!   standard deviation the *variability*. Low confidence marks examples
//!   that are hard to learn (often mislabelled); high variability marks
//!   ambiguous ones.
//! * **Out-of-fold self-confidence** (confident learning, Northcutt et al.,
//!   2021 / cleanlab): split the examples into stratified folds, train on
//!   all folds but one and score the held-out fold, so no example is ever
//!   scored by a model that saw it. An example whose *confident label*
//!   (the most probable class among those whose out-of-fold probability
//!   reaches that class's average self-confidence) differs from its own
//!   label is a likely mislabel.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::Serialize;

pub use super::doubt::Reasons;
use super::features::Encoded;
use super::linear::{LinearConfig, fit_calibrated};
use super::model::{Classifier, EpochProbs, TrainConfig, argmax};
use crate::domain::{ProjectState, SampleId};

/// Reason tag: the out-of-fold model confidently prefers another class.
pub const LIKELY_MISLABEL: &str = "likely_mislabel";
/// Reason tag: the confidence in the label swings across epochs, or the
/// out-of-fold model is torn between two classes.
pub const AMBIGUOUS: &str = "ambiguous";
/// Reason tag: the model never becomes confident in the label.
pub const HARD_TO_LEARN: &str = "hard_to_learn";
/// Reason tag: the project's judges (relabel, small, kNN, ensemble; see
/// `app::judges`) give it different classes.
pub const JUDGES_DISAGREE: &str = "judges_disagree";

/// Settings of [`signals_for`].
#[derive(Debug, Clone, PartialEq)]
pub struct SignalConfig {
    pub train: TrainConfig,
    /// Cross-validation folds (at least 2).
    pub folds: usize,
    /// Variability at or above this is "ambiguous".
    pub ambiguous_variability: f64,
    /// Out-of-fold margin between the two most probable classes below this
    /// is "ambiguous".
    pub ambiguous_margin: f64,
    /// Mean confidence below this is "hard to learn".
    pub hard_confidence: f64,
}

impl Default for SignalConfig {
    fn default() -> Self {
        SignalConfig {
            train: TrainConfig::default(),
            folds: 5,
            ambiguous_variability: 0.2,
            ambiguous_margin: 0.1,
            hard_confidence: 0.3,
        }
    }
}

/// Signals of one example: plain numbers, no heap of their own (the
/// review pool's signals are kept for every example of a 200,000-sample
/// project).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Signals {
    /// Mean over epochs of the probability of the example's label
    /// (trained on all examples, this one included).
    pub confidence: f64,
    /// Standard deviation of that probability across epochs.
    pub variability: f64,
    /// Probability of its label from a model that never saw it.
    pub oof_confidence: f64,
    /// The out-of-fold model's most probable class (an index into the
    /// classes the signals were computed for).
    pub oof_label: u32,
    /// Doubt reasons: [`LIKELY_MISLABEL`], [`AMBIGUOUS`], [`HARD_TO_LEARN`],
    /// and with the embedding model those of [`super::doubt`].
    /// ([`JUDGES_DISAGREE`] is the judges' and is added where they are
    /// known: see [`Signals::doubt_with`].)
    pub reasons: Reasons,
    /// The embedding model's doubt behind those reasons (its calibrated
    /// out-of-fold probabilities and the nearest trusted examples), when
    /// the embedding model computed the signals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_doubt: Option<super::doubt::ModelDoubt>,
}

/// What a reason tag adds to a doubt score in [`Signals::doubt`].
pub fn reason_weight(r: &str) -> f64 {
    match r {
        LIKELY_MISLABEL => 1.0,
        HARD_TO_LEARN => 0.4,
        AMBIGUOUS => 0.3,
        JUDGES_DISAGREE => 0.6,
        // The embedding model's doubt (`super::doubt`), folded in
        // by the training job.
        super::doubt::MODEL_DISAGREES => 1.0,
        super::doubt::NEIGHBOURS_DISAGREE => 0.5,
        super::doubt::LOW_MODEL_CONFIDENCE => 0.3,
        _ => 0.0,
    }
}

impl Signals {
    /// A doubt contribution for the review queue (higher = look first):
    /// 1.0 for a likely mislabel, 0.4 for hard to learn, 0.3 for ambiguous,
    /// plus how far the out-of-fold confidence is below 0.5.
    pub fn doubt(&self) -> f64 {
        self.doubt_with(Reasons::default())
    }

    /// [`Self::doubt`] with the reasons `extra` too (the judges'
    /// [`JUDGES_DISAGREE`], known where the signals are read).
    pub fn doubt_with(&self, extra: Reasons) -> f64 {
        let d: f64 = self.reasons.union(extra).iter().map(reason_weight).sum();
        d + (0.5 - self.oof_confidence).max(0.0)
    }

    /// Fold these signals into an augment doubt score (adds [`Self::doubt`]
    /// and the reason tags), so likely mislabels and ambiguous examples
    /// rise in the review queue.
    pub fn add_to(&self, d: &mut crate::augment::Doubt) {
        self.add_to_with(d, Reasons::default());
    }

    /// [`Self::add_to`] with the reasons `extra` too.
    pub fn add_to_with(&self, d: &mut crate::augment::Doubt, extra: Reasons) {
        d.score += self.doubt_with(extra);
        for r in self.reasons.union(extra).iter() {
            if !d.reasons.contains(&r) {
                d.reasons.push(r);
            }
        }
    }
}

/// Signals by sample id, sorted by id: two plain arrays (a sample's
/// signals found by binary search), not a hash map of 200,000 entries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SignalMap {
    ids: Vec<SampleId>,
    signals: Vec<Signals>,
}

impl SignalMap {
    /// The signals of `ids` (one each, in any order; an id twice keeps
    /// the last).
    ///
    /// # Panics
    /// When the lengths differ.
    pub fn new(ids: Vec<SampleId>, signals: Vec<Signals>) -> SignalMap {
        assert_eq!(ids.len(), signals.len(), "one signal per id");
        let mut m = SignalMap { ids, signals };
        if !m.ids.windows(2).all(|w| w[0] < w[1]) {
            let mut pairs: Vec<(SampleId, Signals)> = std::mem::take(&mut m.ids)
                .into_iter()
                .zip(std::mem::take(&mut m.signals))
                .collect();
            // Stable: of equal ids the last stays last, and is kept.
            pairs.sort_by_key(|p| p.0);
            let mut kept: Vec<(SampleId, Signals)> = Vec::with_capacity(pairs.len());
            for p in pairs {
                match kept.last_mut() {
                    Some(last) if last.0 == p.0 => *last = p,
                    _ => kept.push(p),
                }
            }
            (m.ids, m.signals) = kept.into_iter().unzip();
        }
        m.signals.shrink_to_fit();
        m
    }

    pub fn get(&self, id: SampleId) -> Option<&Signals> {
        self.ids.binary_search(&id).ok().map(|i| &self.signals[i])
    }

    pub fn contains_key(&self, id: SampleId) -> bool {
        self.ids.binary_search(&id).is_ok()
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Ids, ascending.
    pub fn keys(&self) -> impl Iterator<Item = SampleId> + '_ {
        self.ids.iter().copied()
    }

    pub fn values(&self) -> impl Iterator<Item = &Signals> {
        self.signals.iter()
    }

    /// `(id, signals)` by ascending id.
    pub fn iter(&self) -> impl Iterator<Item = (SampleId, &Signals)> {
        self.ids.iter().copied().zip(&self.signals)
    }
}

impl FromIterator<(SampleId, Signals)> for SignalMap {
    fn from_iter<I: IntoIterator<Item = (SampleId, Signals)>>(it: I) -> SignalMap {
        let (ids, signals) = it.into_iter().unzip();
        SignalMap::new(ids, signals)
    }
}

impl<const N: usize> From<[(SampleId, Signals); N]> for SignalMap {
    fn from(pairs: [(SampleId, Signals); N]) -> SignalMap {
        pairs.into_iter().collect()
    }
}

impl std::ops::Index<&SampleId> for SignalMap {
    type Output = Signals;
    fn index(&self, id: &SampleId) -> &Signals {
        self.get(*id).expect("no signals for that sample")
    }
}

/// Cross-validated probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct OutOfFold {
    /// Fold of each example.
    pub fold: Vec<usize>,
    /// Probabilities per example from the model of its fold.
    pub proba: Vec<Vec<f64>>,
    /// Rows each fold's model was trained on.
    pub train_rows: Vec<Vec<usize>>,
}

/// Stratified fold assignment: each class's examples are shuffled (seeded)
/// and dealt round-robin, continuing where the previous class stopped so
/// fold sizes stay even.
pub fn assign_folds(labels: &[usize], k: usize, folds: usize, seed: u64) -> Vec<usize> {
    let folds = folds.max(1);
    let mut rng = StdRng::seed_from_u64(seed ^ 0xf01d);
    let mut out = vec![0; labels.len()];
    let mut next = 0;
    for c in 0..k {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        members.shuffle(&mut rng);
        for i in members {
            out[i] = next % folds;
            next += 1;
        }
    }
    out
}

/// K-fold cross-validated probabilities: each fold is scored by a model
/// trained on the other folds only.
pub fn out_of_fold(
    classes: &[String],
    enc: &Encoded,
    labels: &[usize],
    folds: usize,
    cfg: &TrainConfig,
) -> OutOfFold {
    super::pool::out_of_fold_models(classes, enc, labels, folds, cfg, false).0
}

/// Mean and population standard deviation.
fn mean_std(xs: &[f32]) -> (f64, f64) {
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = xs
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, var.sqrt())
}

/// Per-class threshold: the average out-of-fold probability of class `c`
/// over the examples labelled `c` (`None` for a class without examples).
fn class_thresholds(k: usize, labels: &[usize], proba: &[Vec<f64>]) -> Vec<Option<f64>> {
    let mut sum = vec![0.0; k];
    let mut n = vec![0usize; k];
    for (&l, p) in labels.iter().zip(proba) {
        sum[l] += p[l];
        n[l] += 1;
    }
    (0..k)
        .map(|c| (n[c] > 0).then(|| sum[c] / n[c] as f64))
        .collect()
}

/// The confident label: the most probable class among those whose
/// probability reaches the class threshold.
fn confident_label(p: &[f64], thresholds: &[Option<f64>]) -> Option<usize> {
    (0..p.len())
        .filter(|&c| thresholds[c].is_some_and(|t| p[c] >= t))
        .max_by(|&a, &b| p[a].total_cmp(&p[b]).then(b.cmp(&a)))
}

fn top_two_margin(p: &[f64]) -> f64 {
    let mut v = p.to_vec();
    v.sort_by(|a, b| b.total_cmp(a));
    match v.as_slice() {
        [] => 0.0,
        [a] => *a,
        [a, b, ..] => a - b,
    }
}

/// Signals for a labelled set of texts, in input order.
pub fn signals_for<S: AsRef<str>>(
    classes: &[String],
    texts: &[S],
    labels: &[usize],
    cfg: &SignalConfig,
) -> Vec<Signals> {
    let enc = Encoded::new(&cfg.train.features, texts);
    let rows: Vec<usize> = (0..labels.len()).collect();
    let mut dynamics: EpochProbs = Vec::new();
    Classifier::fit(
        classes,
        &enc,
        labels,
        &rows,
        &cfg.train,
        Some(&mut dynamics),
    );
    let oof = out_of_fold(classes, &enc, labels, cfg.folds, &cfg.train);
    signals_from(classes, labels, &dynamics, &oof.proba, cfg.folds, None, cfg)
}

/// Signals for a labelled set of sentence vectors with the embedding model
/// ([`super::linear`]), in input order. The out-of-fold probabilities are
/// calibrated ([`fit_calibrated`]); "confidence" and "variability" are
/// the mean and spread of the label's probability over the models that
/// trained on the row (the fold models that kept it and the final one) —
/// the full-batch fit has no epochs to follow. Without folds (some class
/// with a single example) the final model's own probabilities stand in
/// and no row is called a likely mislabel.
pub fn signals_for_vectors(
    classes: &[String],
    x: &super::Dense,
    labels: &[usize],
    cfg: &SignalConfig,
    linear: &LinearConfig,
) -> Vec<Signals> {
    let lcfg = LinearConfig {
        calibration_folds: cfg.folds,
        ..linear.clone()
    };
    let fit = fit_calibrated(classes, x, labels, &lcfg);
    let folds = if fit.oof_logits.is_empty() {
        0
    } else {
        fit.fold.iter().max().map_or(0, |f| f + 1)
    };
    let proba = fit
        .oof_proba()
        .unwrap_or_else(|| fit.model.predict_proba_batch(x));
    // No folds: require more support than any class has, so no mislabels.
    let min_support = if folds == 0 { usize::MAX } else { folds };
    signals_from(
        classes,
        labels,
        &fit.in_sample,
        &proba,
        min_support,
        Some(CALIBRATED_MISLABEL),
        cfg,
    )
}

/// With calibrated out-of-fold probabilities, another class this probable
/// is a confident label even when it falls short of that class's average
/// self-confidence (which nears 1 for well-separated classes).
pub(crate) const CALIBRATED_MISLABEL: f64 = 0.5;

/// Signals from training dynamics (`dynamics[row]`: the label's
/// probability at each checkpoint) and out-of-fold probabilities. A row is
/// a likely mislabel only when its class has at least `min_support`
/// examples. `calibrated`: the probabilities are calibrated and a class at
/// least this probable counts as confident (see [`CALIBRATED_MISLABEL`]).
fn signals_from(
    classes: &[String],
    labels: &[usize],
    dynamics: &[Vec<f32>],
    oof: &[Vec<f64>],
    min_support: usize,
    calibrated: Option<f64>,
    cfg: &SignalConfig,
) -> Vec<Signals> {
    let rule = Rule::new(classes, labels, oof, min_support, calibrated, cfg);
    (0..labels.len())
        .map(|i| rule.signals(labels[i], &dynamics[i], &oof[i]))
        .collect()
}

/// What [`signals_from`] learns from the training rows (the per-class
/// thresholds and support) to judge any row, trained on or not.
pub(crate) struct Rule<'a> {
    thresholds: Vec<Option<f64>>,
    support: Vec<usize>,
    min_support: usize,
    calibrated: Option<f64>,
    cfg: &'a SignalConfig,
}

impl<'a> Rule<'a> {
    pub(crate) fn new(
        classes: &[String],
        labels: &[usize],
        oof: &[Vec<f64>],
        min_support: usize,
        calibrated: Option<f64>,
        cfg: &'a SignalConfig,
    ) -> Rule<'a> {
        let k = classes.len();
        let mut support = vec![0usize; k];
        for &l in labels {
            support[l] += 1;
        }
        Rule {
            thresholds: class_thresholds(k, labels, oof),
            support,
            min_support,
            calibrated,
            cfg,
        }
    }

    /// The signals of a row labelled `y`, with the label's probability at
    /// each checkpoint (`dynamics`) and out-of-fold probabilities `p`.
    pub(crate) fn signals(&self, y: usize, dynamics: &[f32], p: &[f64]) -> Signals {
        let cfg = self.cfg;
        let (confidence, variability) = mean_std(dynamics);
        let mut reasons = Reasons::default();
        // With fewer examples of its class than folds, the other folds
        // may not have seen the class at all: no mislabel verdict then.
        let below_own = self.thresholds[y].is_some_and(|t| p[y] < t);
        let top = argmax(p);
        let confident_other = confident_label(p, &self.thresholds).is_some_and(|c| c != y)
            || self.calibrated.is_some_and(|m| top != y && p[top] >= m);
        if self.support[y] >= self.min_support && below_own && confident_other {
            reasons.push(LIKELY_MISLABEL);
        }
        if variability >= cfg.ambiguous_variability || top_two_margin(p) < cfg.ambiguous_margin {
            reasons.push(AMBIGUOUS);
        }
        if confidence < cfg.hard_confidence {
            reasons.push(HARD_TO_LEARN);
        }
        Signals {
            confidence,
            variability,
            oof_confidence: p[y],
            oof_label: top as u32,
            reasons,
            model_doubt: None,
        }
    }
}

/// Signals for the project's training pool: seeds plus generated examples
/// that are not rejected, each with its effective label (per the state's
/// relabel policy). Held-out examples and labels outside `classes` are
/// left out. The model trains on at most [`super::MAX_TRAIN`] of them (an
/// evenly spaced sample of each class past that) and every example gets
/// its signals, out of fold: see [`super::pool`].
pub fn signals(state: &ProjectState, classes: &[String], cfg: &SignalConfig) -> SignalMap {
    let pool = super::pool::Pool::of(state, classes);
    let out = super::pool::ngram_signals(classes, &pool, cfg, super::MAX_TRAIN);
    SignalMap::new(pool.ids.into_owned(), out)
}

/// [`signals`] with the given small model (the embedding model computes
/// them on the encoder's vectors as [`signals_for_vectors`] does, on at
/// most [`super::MAX_TRAIN`] examples, encoding the others a chunk at a
/// time: see [`super::pool`]); fails only when the encoder does.
pub fn signals_with(
    model: &super::SmallModel<'_>,
    state: &ProjectState,
    classes: &[String],
    cfg: &SignalConfig,
) -> anyhow::Result<SignalMap> {
    signals_and_doubt(model, state, classes, cfg, None)
}

/// [`signals_with`], and with the embedding model and `doubt` also its
/// doubt ([`super::doubt::project_doubt`]) from the same encoding of the
/// pool: each example's doubt reasons are added to its signals' and the
/// doubt travels in [`Signals::model_doubt`].
pub fn signals_and_doubt(
    model: &super::SmallModel<'_>,
    state: &ProjectState,
    classes: &[String],
    cfg: &SignalConfig,
    doubt: Option<&super::doubt::ModelDoubtConfig>,
) -> anyhow::Result<SignalMap> {
    pool_signals_and_doubt(
        model,
        super::pool::Pool::of(state, classes),
        classes,
        cfg,
        doubt,
    )
}

/// [`signals_and_doubt`] on a review pool taken from the state
/// ([`super::pool::SharedPool::of`]): what a background job holds instead
/// of a snapshot of the whole state. The same results.
pub fn shared_signals_and_doubt(
    model: &super::SmallModel<'_>,
    pool: &super::pool::SharedPool,
    classes: &[String],
    cfg: &SignalConfig,
    doubt: Option<&super::doubt::ModelDoubtConfig>,
) -> anyhow::Result<SignalMap> {
    pool_signals_and_doubt(model, pool.view(), classes, cfg, doubt)
}

fn pool_signals_and_doubt(
    model: &super::SmallModel<'_>,
    pool: super::pool::Pool<'_>,
    classes: &[String],
    cfg: &SignalConfig,
    doubt: Option<&super::doubt::ModelDoubtConfig>,
) -> anyhow::Result<SignalMap> {
    let out: Vec<Signals> = match model {
        super::SmallModel::Ngram(train) => {
            let cfg = SignalConfig {
                train: (*train).clone(),
                ..cfg.clone()
            };
            super::pool::ngram_signals(classes, &pool, &cfg, super::MAX_TRAIN)
        }
        super::SmallModel::Embedding {
            encoder,
            cfg: linear,
        } => super::pool::vector_signals_capped(classes, &pool, *encoder, linear, cfg, doubt)?,
    };
    Ok(SignalMap::new(pool.ids.into_owned(), out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::toy;

    #[test]
    fn folds_are_stratified_and_even() {
        let labels = [0, 0, 0, 0, 1, 1, 1, 1, 1, 2];
        let f = assign_folds(&labels, 3, 3, 7);
        let mut sizes = [0; 3];
        for &x in &f {
            sizes[x] += 1;
        }
        assert_eq!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap(), 1);
        for c in 0..2 {
            let folds_of_c: std::collections::BTreeSet<_> =
                (0..10).filter(|&i| labels[i] == c).map(|i| f[i]).collect();
            assert_eq!(folds_of_c.len(), 3, "class {c} spread over all folds");
        }
        assert_eq!(f, assign_folds(&labels, 3, 3, 7));
    }

    #[test]
    fn out_of_fold_never_trains_on_the_scored_row() {
        let d = toy::synthetic(200, 4, 12, 3);
        let cfg = TrainConfig::default();
        let enc = Encoded::new(&cfg.features, &d.texts);
        let oof = out_of_fold(&d.classes, &enc, &d.labels, 5, &cfg);
        assert_eq!(oof.train_rows.len(), 5);
        for i in 0..d.labels.len() {
            let f = oof.fold[i];
            assert!(!oof.train_rows[f].contains(&i), "row {i} in its own fold");
            // Every other row of another fold is used.
            assert_eq!(
                oof.train_rows[f].len(),
                oof.fold.iter().filter(|&&g| g != f).count()
            );
            assert!((oof.proba[i].iter().sum::<f64>() - 1.0).abs() < 1e-9);
        }
    }

    /// A memorisable example: its label is carried only by a word no other
    /// example has, in a text that otherwise reads like another class. A
    /// model that saw it is confident; one that did not is not.
    #[test]
    fn out_of_fold_confidence_does_not_see_the_example() {
        let classes: Vec<String> = ["sport", "food"].iter().map(|s| s.to_string()).collect();
        let mut texts = Vec::new();
        let mut labels = Vec::new();
        for i in 0..20 {
            texts.push(format!("the team won the match game {i}"));
            labels.push(0);
            texts.push(format!("a tasty soup with bread dish {i}"));
            labels.push(1);
        }
        texts.push("the team won the match zzqxv".into());
        labels.push(1);
        let sig = signals_for(&classes, &texts, &labels, &SignalConfig::default());
        let odd = sig.last().unwrap();
        assert!(odd.confidence > 0.5, "in-sample memorises: {odd:?}");
        assert!(odd.oof_confidence < 0.2, "out-of-fold does not: {odd:?}");
        assert_eq!(classes[odd.oof_label as usize], "sport");
        assert!(odd.reasons.contains(LIKELY_MISLABEL), "{odd:?}");
        let clean = &sig[0];
        assert!(!clean.reasons.contains(LIKELY_MISLABEL), "{clean:?}");
    }

    /// The embedding model's signals: a row whose vector sits in another
    /// class's cluster is a likely mislabel, judged out of fold; clean rows
    /// are not; with a single example in a class nobody is called one.
    #[test]
    fn vector_signals_flag_a_row_in_the_wrong_cluster() {
        let (x, mut y) = toy::blobs(120, 3, 32, 0.5, 8);
        let classes: Vec<String> = (0..3).map(|i| format!("c{i}")).collect();
        let flipped = 7;
        y[flipped] = (y[flipped] + 1) % 3;
        let cfg = SignalConfig::default();
        let sig = signals_for_vectors(&classes, &x, &y, &cfg, &LinearConfig::default());
        assert_eq!(sig.len(), 120);
        assert!(
            sig[flipped].reasons.contains(LIKELY_MISLABEL),
            "{:?}",
            sig[flipped]
        );
        assert!(sig[flipped].oof_confidence < 0.2, "{:?}", sig[flipped]);
        let flagged = sig
            .iter()
            .filter(|s| s.reasons.contains(LIKELY_MISLABEL))
            .count();
        assert!(flagged <= 4, "{flagged} of 120 flagged");
        for s in &sig {
            assert!((0.0..=1.0).contains(&s.oof_confidence) && (0.0..=1.0).contains(&s.confidence));
        }
        let tiny = x.select(&[0, 1, 2, 3, 4]);
        let ty = [0, 0, 1, 1, 2];
        let sig = signals_for_vectors(&classes, &tiny, &ty, &cfg, &LinearConfig::default());
        assert!(sig.iter().all(|s| !s.reasons.contains(LIKELY_MISLABEL)));
    }
}

#[cfg(test)]
mod map_tests {
    use super::*;

    fn sig(c: f64) -> Signals {
        Signals {
            confidence: c,
            variability: 0.0,
            oof_confidence: c,
            oof_label: 0,
            reasons: Reasons::default(),
            model_doubt: None,
        }
    }

    /// Ids in any order: found by id, listed ascending, an id given twice
    /// keeps its last signals.
    #[test]
    fn a_signal_map_finds_each_id_and_keeps_the_last_of_a_repeat() {
        let m = SignalMap::new(
            vec![9, 2, 5, 2],
            vec![sig(0.9), sig(0.2), sig(0.5), sig(0.3)],
        );
        assert_eq!(m.keys().collect::<Vec<_>>(), [2, 5, 9]);
        assert_eq!(m.get(2).unwrap().confidence, 0.3);
        assert_eq!(m[&9].confidence, 0.9);
        assert!(m.get(3).is_none() && !m.contains_key(1) && m.contains_key(5));
        let sorted: SignalMap = [(1, sig(0.1)), (4, sig(0.4))].into();
        assert_eq!(
            sorted
                .iter()
                .map(|(id, s)| (id, s.confidence))
                .collect::<Vec<_>>(),
            [(1, 0.1), (4, 0.4)]
        );
    }
}

#[cfg(test)]
mod project_tests {
    use super::*;
    use crate::classify::data::tests::decide;
    use crate::domain::testing::state_with;
    use crate::domain::{DecisionKind, Origin};

    #[test]
    fn project_signals_cover_the_review_pool_only() {
        let classes: Vec<String> = ["A", "B"].iter().map(|s| s.to_string()).collect();
        let st = state_with(
            &[
                ("apples and pears", "A", Origin::Seed),
                ("cars and trucks", "B", Origin::Seed),
                ("pears are sweet", "A", Origin::Generated),
                ("trucks are loud", "B", Origin::Generated),
                ("apples are red", "B", Origin::Generated),
                ("red trucks", "A", Origin::Validation),
            ],
            vec![
                decide(4, DecisionKind::Accept),
                decide(5, DecisionKind::Reject),
            ],
        );
        let sig = signals(&st, &classes, &SignalConfig::default());
        let ids: Vec<_> = sig.keys().collect();
        assert_eq!(ids, [1, 2, 3, 4]);
        for s in sig.values() {
            assert!((0.0..=1.0).contains(&s.oof_confidence));
            assert!(s.doubt() >= 0.0);
        }
        let flagged = Signals {
            confidence: 0.1,
            variability: 0.05,
            oof_confidence: 0.1,
            oof_label: 1,
            reasons: [LIKELY_MISLABEL, HARD_TO_LEARN].into_iter().collect(),
            model_doubt: None,
        };
        let mut d = crate::augment::Doubt {
            score: 1.0,
            reasons: vec!["disagrees"],
        };
        flagged.add_to(&mut d);
        assert!((d.score - (1.0 + 1.0 + 0.4 + 0.4)).abs() < 1e-12);
        assert_eq!(d.reasons, ["disagrees", LIKELY_MISLABEL, HARD_TO_LEARN]);
    }
}
