//! Every judge the project can use, measured side by side on the real
//! held-out examples, and the one that decides.
//!
//! * `relabel`: the LLM relabeler (`straddle judge` asks it; its answers on
//!   the held-out sample are journalled with its report).
//! * `small`: calibrated logistic regression on sentence embeddings,
//!   trained on the seeds + accepted examples (out of fold where it judges
//!   an example it was trained on).
//! * `knn`: a similarity-weighted vote of the nearest seeds + accepted
//!   examples in embedding space (never counting the example itself).
//! * `ensemble`: the others' probabilities, each weighted by how far its
//!   measured accuracy is above chance (on the held-out set, leave one
//!   out, so an example never weighs the judges that judge it).
//!
//! Every judge is scored on the same held-out examples (the relabeler's
//! class-balanced sample when it was measured, else all of them), with
//! accuracy, macro-F1, per-class recall and chance beside it. [`choose`]
//! picks the one to use: the one pinned in `[judge] use`, else among the
//! judges clearly better than chance and the majority class, the simplest
//! (knn, small, relabel, ensemble) unless a more complex one is clearly
//! (paired bootstrap) more accurate. When no judge is trusted, bulk rules
//! refuse and only a person can decide.
//!
//! Front ends: `straddle judge` ([`measure`] + record), the bulk rules of
//! `review`/`generate`/`loop` ([`opinions`] of the chosen judge), `export`
//! and the TUI read [`Choice`] from the state ([`choose_recorded`]). Other
//! features that need "the chosen judge" (the denoiser's class check) call
//! [`choose_recorded`] and [`opinions`].

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use crate::classify::judge::{RELABEL_JUDGE, judge_report};
use crate::classify::{
    CrossFit, Dense, LabelledSet, LinearConfig, TextEncoder, argmax, fit_calibrated,
};
use crate::domain::{
    HeldoutAnswer, JudgeReport, JudgeScored, JudgeUse, ProjectState, SampleId, SampleState,
};

pub const SMALL: &str = "small";
pub const KNN: &str = "knn";
pub const ENSEMBLE: &str = "ensemble";
pub const RELABEL: &str = RELABEL_JUDGE;

/// Judges from the simplest to the most complex: a more complex judge is
/// chosen only when it is clearly better.
pub const ORDER: [&str; 4] = [KNN, SMALL, RELABEL, ENSEMBLE];

/// Neighbours a kNN vote looks at.
pub const KNN_K: usize = 10;
/// Temperature of the kNN vote's similarity weights (cosine units).
pub const KNN_TEMPERATURE: f64 = 0.05;

/// What a judge says about one example.
#[derive(Debug, Clone, PartialEq)]
pub struct Opinion {
    pub judge: String,
    /// `None`: no usable answer.
    pub label: Option<String>,
    /// Confidence of `label`.
    pub confidence: f64,
}

/// What a judge says about one example, borrowed from [`Opinions`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpinionRef<'a> {
    pub judge: &'a str,
    /// `None`: no usable answer.
    pub label: Option<&'a str>,
    /// Confidence of `label`.
    pub confidence: f64,
}

impl OpinionRef<'_> {
    /// The owned [`Opinion`].
    pub fn to_opinion(&self) -> Opinion {
        Opinion {
            judge: self.judge.into(),
            label: self.label.map(Into::into),
            confidence: self.confidence,
        }
    }
}

/// Every judge's opinions of the generated samples, kept as a table: the
/// sample ids once (sorted), and per judge a label index and a confidence
/// per sample, the labels named once. On a 200,000-sample project four
/// judges take ~11 MB (a map of [`Opinion`]s per judge took ~80 MB).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Opinions {
    /// Sample ids, ascending, unique.
    ids: Vec<SampleId>,
    /// Per judge, by name.
    judges: Vec<JudgeColumn>,
}

/// One judge's column of [`Opinions`].
#[derive(Debug, Clone, PartialEq)]
struct JudgeColumn {
    name: String,
    /// Labels its opinions name, interned.
    labels: Vec<String>,
    /// Per sample (as `Opinions::ids`): an index into `labels`,
    /// [`NO_OPINION`] or [`NO_LABEL`].
    label: Vec<u32>,
    confidence: Vec<f64>,
}

/// [`JudgeColumn::label`]: the judge gave no opinion about the sample.
const NO_OPINION: u32 = u32::MAX;
/// [`JudgeColumn::label`]: an opinion with no usable answer.
const NO_LABEL: u32 = u32::MAX - 1;

impl JudgeColumn {
    fn new(name: &str, classes: &[String]) -> JudgeColumn {
        JudgeColumn {
            name: name.into(),
            labels: classes.to_vec(),
            label: Vec::new(),
            confidence: Vec::new(),
        }
    }

    /// Append an opinion (`None`: none) for the next sample.
    fn push(&mut self, o: Option<(Option<&str>, f64)>) {
        let (l, c) = match o {
            None => (NO_OPINION, 0.0),
            Some((None, c)) => (NO_LABEL, c),
            Some((Some(l), c)) => (self.intern(l), c),
        };
        self.label.push(l);
        self.confidence.push(c);
    }

    /// Append an opinion naming class `class` (an index into the classes
    /// the column was made with).
    fn push_class(&mut self, class: usize, confidence: f64) {
        self.label.push(class as u32);
        self.confidence.push(confidence);
    }

    fn intern(&mut self, l: &str) -> u32 {
        match self.labels.iter().position(|n| n == l) {
            Some(i) => i as u32,
            None => {
                self.labels.push(l.to_string());
                (self.labels.len() - 1) as u32
            }
        }
    }

    fn at(&self, row: usize) -> Option<OpinionRef<'_>> {
        let label = match self.label[row] {
            NO_OPINION => return None,
            NO_LABEL => None,
            i => Some(self.labels[i as usize].as_str()),
        };
        Some(OpinionRef {
            judge: &self.name,
            label,
            confidence: self.confidence[row],
        })
    }
}

/// One judge's opinions (from [`Opinions::judge`]).
#[derive(Debug, Clone, Copy)]
pub struct JudgeOpinions<'a> {
    ids: &'a [SampleId],
    column: &'a JudgeColumn,
}

impl<'a> JudgeOpinions<'a> {
    /// Its opinion of sample `id`.
    pub fn get(&self, id: SampleId) -> Option<OpinionRef<'a>> {
        let row = self.ids.binary_search(&id).ok()?;
        self.column.at(row)
    }

    /// Its opinions in sample id order.
    pub fn iter(&self) -> impl Iterator<Item = (SampleId, OpinionRef<'a>)> + 'a {
        let column = self.column;
        self.ids
            .iter()
            .enumerate()
            .filter_map(move |(row, &id)| column.at(row).map(|o| (id, o)))
    }

    /// How many samples it gave an opinion about.
    pub fn len(&self) -> usize {
        self.column
            .label
            .iter()
            .filter(|&&l| l != NO_OPINION)
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Opinions {
    /// The opinions of judge `name` (`None`: it was not asked).
    pub fn judge(&self, name: &str) -> Option<JudgeOpinions<'_>> {
        let column = self.judges.iter().find(|c| c.name == name)?;
        Some(JudgeOpinions {
            ids: &self.ids,
            column,
        })
    }

    /// What judge `name` says about sample `id`.
    pub fn get(&self, name: &str, id: SampleId) -> Option<OpinionRef<'_>> {
        self.judge(name)?.get(id)
    }

    /// The judges asked, by name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.judges.iter().map(|c| c.name.as_str())
    }

    /// Samples on which the judges that gave an opinion disagree.
    pub fn disagreements(&self) -> std::collections::BTreeSet<SampleId> {
        let mut out = std::collections::BTreeSet::new();
        for (row, &id) in self.ids.iter().enumerate() {
            let mut first: Option<&str> = None;
            for c in &self.judges {
                if let Some(Some(l)) = c.at(row).map(|o| o.label) {
                    match first {
                        None => first = Some(l),
                        Some(f) if f != l => {
                            out.insert(id);
                            break;
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        out
    }

    /// Put the rows in id order (built in another order, or with an id
    /// twice: the last row of an id counts, as a map's insert would).
    fn sort(&mut self) {
        if self.ids.windows(2).all(|w| w[0] < w[1]) {
            return;
        }
        let mut order: Vec<usize> = (0..self.ids.len()).collect();
        order.sort_by_key(|&r| self.ids[r]);
        // Keep the last row of each id (a stable sort keeps rows in order).
        let mut keep: Vec<usize> = Vec::with_capacity(order.len());
        for r in order {
            match keep.last_mut() {
                Some(last) if self.ids[*last] == self.ids[r] => *last = r,
                _ => keep.push(r),
            }
        }
        self.ids = keep.iter().map(|&r| self.ids[r]).collect();
        for c in &mut self.judges {
            c.label = keep.iter().map(|&r| c.label[r]).collect();
            c.confidence = keep.iter().map(|&r| c.confidence[r]).collect();
        }
    }
}

impl From<BTreeMap<String, BTreeMap<SampleId, Opinion>>> for Opinions {
    fn from(maps: BTreeMap<String, BTreeMap<SampleId, Opinion>>) -> Opinions {
        Opinions::from_maps(maps)
    }
}

impl Opinions {
    /// The table of a map of opinions per judge (each judge's opinions by
    /// sample id; the judge named by the key).
    pub fn from_maps(maps: BTreeMap<String, BTreeMap<SampleId, Opinion>>) -> Opinions {
        let ids: std::collections::BTreeSet<SampleId> =
            maps.values().flat_map(|m| m.keys().copied()).collect();
        let ids: Vec<SampleId> = ids.into_iter().collect();
        let judges = maps
            .iter()
            .map(|(name, m)| {
                let mut c = JudgeColumn::new(name, &[]);
                for id in &ids {
                    c.push(m.get(id).map(|o| (o.label.as_deref(), o.confidence)));
                }
                c
            })
            .collect();
        Opinions { ids, judges }
    }
}

/// One judge's line in the comparison: its report (with answers) or why
/// it could not be measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub judge: String,
    pub scored: Option<JudgeScored>,
    /// Why it is missing or stale ("needs an embedder", "not measured
    /// since the relabel settings changed: run `straddle judge`").
    pub note: Option<String>,
}

/// The embedding judges trained on one labelled set.
pub struct EmbeddingJudges {
    classes: Vec<String>,
    x: Dense,
    labels: Vec<usize>,
    /// `(id, row)` of every training row, sorted ([`Self::row_of`]).
    by_id: Vec<(SampleId, usize)>,
    fit: CrossFit,
}

fn by_id(ids: &[SampleId]) -> Vec<(SampleId, usize)> {
    let mut v: Vec<(SampleId, usize)> = ids.iter().copied().zip(0..).collect();
    v.sort_unstable();
    v
}

impl EmbeddingJudges {
    /// Train on `train` (seeds + accepted) with `encoder`'s vectors.
    pub fn train(
        classes: &[String],
        train: &LabelledSet,
        encoder: &dyn TextEncoder,
        cfg: &LinearConfig,
    ) -> anyhow::Result<EmbeddingJudges> {
        let x = crate::classify::small::encode_checked(encoder, &train.texts)?;
        let fit = fit_calibrated(classes, &x, &train.labels, cfg);
        Ok(EmbeddingJudges {
            classes: classes.to_vec(),
            x,
            labels: train.labels.clone(),
            by_id: by_id(&train.ids),
            fit,
        })
    }

    /// Train on vectors already at hand (rows of `x`, the embedder's
    /// L2-normalised vectors of samples `ids` with class indices
    /// `labels`): the denoiser's class check, which has the vectors of the
    /// seeds and accepted examples and no encoder.
    pub fn from_vectors(
        classes: &[String],
        ids: Vec<SampleId>,
        labels: Vec<usize>,
        x: Dense,
        cfg: &LinearConfig,
    ) -> EmbeddingJudges {
        let fit = fit_calibrated(classes, &x, &labels, cfg);
        EmbeddingJudges {
            classes: classes.to_vec(),
            x,
            labels,
            by_id: by_id(&ids),
            fit,
        }
    }

    /// The small classifier's probabilities for `q`; for a training row
    /// (`own`), its out-of-fold probabilities when folds could be made.
    pub fn small(&self, q: &[f32], own: Option<usize>) -> Vec<f64> {
        if let Some(z) = own
            .and_then(|i| self.fit.oof_logits.get(i))
            .filter(|z| !z.is_empty())
        {
            return crate::classify::linear::softmax_t(z, self.fit.model.temperature());
        }
        self.fit.model.predict_proba(q)
    }

    /// The kNN vote for `q`, never counting training row `own`.
    pub fn knn(&self, q: &[f32], own: Option<usize>) -> Vec<f64> {
        let mut top = TopK::default();
        for r in 0..self.x.len() {
            if Some(r) != own {
                top.offer(crate::classify::dense::dot(q, self.x.row(r)), r);
            }
        }
        self.vote(top.best())
    }

    /// [`Self::knn`] for every row of `q` (`own[i]`: the training row of
    /// query `i`, never counted): the training rows are compared in blocks
    /// that stay in cache while every query of `q` is compared with them.
    pub fn knn_many(&self, q: &Dense, own: &[Option<usize>]) -> Vec<Vec<f64>> {
        /// Training rows per block (384 floats each: ~200 KB).
        const BLOCK: usize = 128;
        let mut tops = vec![TopK::default(); q.len()];
        let n = self.x.len();
        for start in (0..n).step_by(BLOCK) {
            let rows = start..(start + BLOCK).min(n);
            self.knn_block(q, own, rows, &mut tops);
        }
        tops.iter().map(|t| self.vote(t.best())).collect()
    }

    /// Offer training rows `rows` to every query of `q`: with AVX where
    /// the CPU has it (the same additions and products in the same order,
    /// 8 lanes in one register instead of two: the same bits, in about
    /// half the time of the SSE2 build).
    fn knn_block(
        &self,
        q: &Dense,
        own: &[Option<usize>],
        rows: std::ops::Range<usize>,
        tops: &mut [TopK],
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU has AVX.
            return unsafe { self.knn_block_avx(q, own, rows, tops) };
        }
        self.knn_block_plain(q, own, rows, tops);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx")]
    fn knn_block_avx(
        &self,
        q: &Dense,
        own: &[Option<usize>],
        rows: std::ops::Range<usize>,
        tops: &mut [TopK],
    ) {
        self.knn_block_plain(q, own, rows, tops);
    }

    #[inline(always)]
    fn knn_block_plain(
        &self,
        q: &Dense,
        own: &[Option<usize>],
        rows: std::ops::Range<usize>,
        tops: &mut [TopK],
    ) {
        for (i, top) in tops.iter_mut().enumerate() {
            let qi = q.row(i);
            let own = own.get(i).copied().flatten();
            for r in rows.clone() {
                if Some(r) != own {
                    top.offer(crate::classify::dense::dot(qi, self.x.row(r)), r);
                }
            }
        }
    }

    /// The vote of the nearest rows `near` (most similar first).
    fn vote(&self, near: &[(f32, usize)]) -> Vec<f64> {
        let k = self.classes.len();
        let mut p = vec![0.0; k];
        let Some(top) = near.first().map(|s| f64::from(s.0)) else {
            return vec![1.0 / k.max(1) as f64; k];
        };
        for &(s, r) in near {
            p[self.labels[r]] += ((f64::from(s) - top) / KNN_TEMPERATURE).exp();
        }
        let sum: f64 = p.iter().sum();
        p.iter_mut().for_each(|v| *v /= sum.max(1e-12));
        p
    }

    /// The training row of sample `id`, if it is one.
    pub fn row_of(&self, id: SampleId) -> Option<usize> {
        if id == 0 {
            return None;
        }
        // The first row of `id` (in `by_id`, sorted by id then row).
        let i = self.by_id.partition_point(|&(j, _)| j < id);
        self.by_id
            .get(i)
            .filter(|&&(j, _)| j == id)
            .map(|&(_, r)| r)
    }
}

/// The [`KNN_K`] most similar rows seen so far, most similar first (ties:
/// the lower row first), without keeping every similarity: what sorting
/// all of them by (similarity descending, row ascending) and keeping the
/// first [`KNN_K`] gives, when rows are offered in ascending order.
#[derive(Clone, Copy)]
struct TopK {
    near: [(f32, usize); KNN_K],
    len: usize,
}

impl Default for TopK {
    fn default() -> TopK {
        TopK {
            near: [(0.0, 0); KNN_K],
            len: 0,
        }
    }
}

impl TopK {
    /// Offer row `r` of similarity `s` (rows in ascending order: a row as
    /// similar as one kept comes after it).
    #[inline]
    fn offer(&mut self, s: f32, r: usize) {
        if self.len == KNN_K {
            // As similar as the last kept or less: the last is first in
            // the order (its row is lower).
            if s.total_cmp(&self.near[KNN_K - 1].0).is_le() {
                return;
            }
        } else {
            self.len += 1;
        }
        // Shift the less similar ones down (the last one, when full, drops).
        let mut i = self.len - 1;
        while i > 0 && s.total_cmp(&self.near[i - 1].0).is_gt() {
            self.near[i] = self.near[i - 1];
            i -= 1;
        }
        self.near[i] = (s, r);
    }

    fn best(&self) -> &[(f32, usize)] {
        &self.near[..self.len]
    }
}

/// A fingerprint of what the embedding judges were measured with: the
/// encoder, the classifier settings, the training data and the held-out
/// examples (and for the ensemble, the relabeler's).
pub fn data_fingerprint(
    encoder: &str,
    cfg: &LinearConfig,
    train: &LabelledSet,
    heldout: &[SampleId],
    relabel: Option<&str>,
) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (encoder, cfg.seed, KNN_K).hash(&mut h);
    format!("{cfg:?}").hash(&mut h);
    train.ids.hash(&mut h);
    train.texts.hash(&mut h);
    train.labels.hash(&mut h);
    heldout.hash(&mut h);
    relabel.hash(&mut h);
    format!("{encoder}:{:016x}", h.finish())
}

fn round3(p: &[f64]) -> Vec<f32> {
    p.iter()
        .map(|v| ((v * 1000.0).round() / 1000.0) as f32)
        .collect()
}

/// A report plus per-example answers from probabilities.
fn scored_from_probs(
    judge: &str,
    classes: &[String],
    ids: &[SampleId],
    truth: &[usize],
    probs: &[Vec<f64>],
    fingerprint: String,
) -> JudgeScored {
    let answers: Vec<Option<usize>> = probs
        .iter()
        .map(|p| (!p.is_empty()).then(|| argmax(p)))
        .collect();
    let report = judge_report(judge, classes, truth, &answers);
    JudgeScored {
        report,
        fingerprint,
        answers: ids
            .iter()
            .zip(truth)
            .zip(answers.iter().zip(probs))
            .map(|((&sample, &truth), (&answer, p))| HeldoutAnswer {
                sample,
                truth,
                answer,
                probs: round3(p),
            })
            .collect(),
    }
}

/// The probabilities a recorded answer stands for (one-hot when the judge
/// gave only a label; empty without an answer).
fn answer_probs(a: &HeldoutAnswer, k: usize) -> Vec<f64> {
    if a.probs.len() == k {
        return a.probs.iter().map(|&v| f64::from(v)).collect();
    }
    match a.answer {
        Some(i) if i < k => (0..k).map(|j| if j == i { 1.0 } else { 0.0 }).collect(),
        _ => Vec::new(),
    }
}

/// Weight of a judge of accuracy `acc` in the ensemble: how far it is
/// above chance (a judge at chance adds nothing).
pub fn ensemble_weight(acc: f64, chance: f64) -> f64 {
    (acc - chance).max(0.0)
}

/// Combine members' probabilities with weights (members without an answer
/// for the example are left out); when no member has weight (every judge
/// at chance), with equal weights; empty when no member answered.
pub fn combine(members: &[(&[f64], f64)], k: usize) -> Vec<f64> {
    let p = combine_weighted(members, k);
    if !p.is_empty() {
        return p;
    }
    let equal: Vec<(&[f64], f64)> = members.iter().map(|(p, _)| (*p, 1.0)).collect();
    combine_weighted(&equal, k)
}

fn combine_weighted(members: &[(&[f64], f64)], k: usize) -> Vec<f64> {
    let mut p = vec![0.0; k];
    let mut total = 0.0;
    for (probs, w) in members {
        if probs.len() != k || *w <= 0.0 {
            continue;
        }
        let s: f64 = probs.iter().sum();
        if s <= 0.0 {
            continue;
        }
        for (a, b) in p.iter_mut().zip(probs.iter()) {
            *a += w * b / s;
        }
        total += w;
    }
    if total <= 0.0 {
        return Vec::new();
    }
    p.iter_mut().for_each(|v| *v /= total);
    p
}

/// The ensemble on held-out examples from its members' answers (same
/// examples, same order): each example's weights come from the members'
/// accuracy on the *other* held-out examples (leave one out).
pub fn ensemble_heldout(
    classes: &[String],
    members: &[&JudgeScored],
    fingerprint: String,
) -> Option<JudgeScored> {
    let first = members.first()?;
    let n = first.answers.len();
    if members.len() < 2
        || n < 2
        || members.iter().any(|m| {
            m.answers.len() != n
                || m.answers
                    .iter()
                    .zip(&first.answers)
                    .any(|(a, b)| a.sample != b.sample)
        })
    {
        return None;
    }
    let k = classes.len();
    let chance = 1.0 / k.max(1) as f64;
    let correct: Vec<Vec<bool>> = members
        .iter()
        .map(|m| {
            m.answers
                .iter()
                .map(|a| a.answer == Some(a.truth))
                .collect()
        })
        .collect();
    let totals: Vec<usize> = correct
        .iter()
        .map(|c| c.iter().filter(|&&x| x).count())
        .collect();
    let mut probs = Vec::with_capacity(n);
    #[allow(clippy::needless_range_loop)] // i indexes every member's answers
    for i in 0..n {
        let ps: Vec<Vec<f64>> = members
            .iter()
            .map(|m| answer_probs(&m.answers[i], k))
            .collect();
        let ws: Vec<f64> = (0..members.len())
            .map(|j| {
                let c = totals[j] - usize::from(correct[j][i]);
                ensemble_weight(c as f64 / (n - 1) as f64, chance)
            })
            .collect();
        let parts: Vec<(&[f64], f64)> = ps.iter().map(|p| p.as_slice()).zip(ws).collect();
        probs.push(combine(&parts, k));
    }
    let ids: Vec<SampleId> = first.answers.iter().map(|a| a.sample).collect();
    let truth: Vec<usize> = first.answers.iter().map(|a| a.truth).collect();
    Some(scored_from_probs(
        ENSEMBLE,
        classes,
        &ids,
        &truth,
        &probs,
        fingerprint,
    ))
}

/// The held-out examples every judge is scored on: the relabeler's sample
/// when its answers are recorded for the current settings, else all.
fn scoring_set(all: &LabelledSet, relabel: Option<&JudgeScored>) -> LabelledSet {
    let Some(r) = relabel.filter(|r| !r.answers.is_empty()) else {
        return all.clone();
    };
    let mut out = LabelledSet::default();
    for a in &r.answers {
        if let Some(i) = all.ids.iter().position(|&id| id == a.sample) {
            out.ids.push(all.ids[i]);
            out.texts.push(all.texts[i].clone());
            out.labels.push(all.labels[i]);
        }
    }
    if out.len() == r.answers.len() {
        out
    } else {
        all.clone()
    }
}

pub use crate::classify::data::MAX_TRAIN;
use crate::classify::data::at_most;

/// What the judges read of a project, copied out of its state: the
/// recorded reports, the held-out examples, the training set (seeds +
/// accepted, final texts and effective labels) and, for opinions, every
/// generated sample's text and relabel verdict. The TUI's judges' measure
/// takes this (on a 200,000-sample project: its texts, ~40 MB) instead of
/// a copy of the state; the command line builds it from the state it
/// opened, so both run the same code.
#[derive(Debug, Clone, Default)]
pub struct JudgeInput {
    pub classes: Vec<String>,
    /// The latest `judge_scored` of each judge.
    pub judges: BTreeMap<String, JudgeScored>,
    pub heldout: LabelledSet,
    pub train: LabelledSet,
    /// Generated samples in id order (empty when built without them).
    pub generated: Generated,
}

/// The generated samples as the judges see them (texts and relabel
/// verdicts), in columns: the texts one after the other in one buffer,
/// the verdicts' labels interned and their nonzero class probabilities
/// in two vectors (on a 200,000-sample project a `String` and a boxed
/// slice per sample cost ~15 MB more; every class's probability, ~2.4 MB
/// more with 6 classes).
#[derive(Debug, Clone, Default)]
pub struct Generated {
    ids: Vec<SampleId>,
    texts: Texts,
    /// The relabel verdict's label: an index into `labels`,
    /// [`NO_OPINION`] (no verdict) or [`NO_LABEL`] (unparsable).
    label: Vec<u32>,
    labels: Vec<String>,
    /// The verdict's confidence in its label.
    confidence: Vec<f64>,
    /// Where sample `i`'s nonzero probabilities end in `prob_class` and
    /// `prob_value` (they start where sample `i - 1`'s end); none: no
    /// probabilities (no verdict, or no label).
    probs_end: Vec<u32>,
    /// The class of each nonzero probability and the probability.
    prob_class: Vec<u32>,
    prob_value: Vec<f64>,
    classes: usize,
}

/// The generated samples' texts as [`Generated`] keeps them: the state's
/// own shared texts (`Arc<str>`, 16 B a sample), not a copy (a copy was
/// ~21 MB on the 200,000-sample project).
#[derive(Debug, Clone, Default)]
struct Texts(Vec<std::sync::Arc<str>>);

impl Texts {
    /// Room for `n` more texts.
    fn reserve_exact(&mut self, n: usize) {
        self.0.reserve_exact(n);
    }

    fn push(&mut self, text: &std::sync::Arc<str>) {
        self.0.push(text.clone());
    }

    /// Text `i`.
    fn get(&self, i: usize) -> &str {
        &self.0[i]
    }
}

/// One generated sample of [`Generated`].
#[derive(Debug, Clone, Copy)]
pub struct GeneratedRow<'a> {
    pub id: SampleId,
    pub text: &'a str,
    /// The relabel verdict, if any: its label (`None`: unparsable) and
    /// confidence.
    pub relabel: Option<(Option<&'a str>, f64)>,
    /// The verdict's nonzero probabilities: their classes and values
    /// ([`GeneratedRow::probs_into`] gives one per class, none without a
    /// label).
    prob_class: &'a [u32],
    prob_value: &'a [f64],
    classes: usize,
}

impl GeneratedRow<'_> {
    /// The relabel verdict's probability per class into `out` (cleared;
    /// left empty without a label).
    pub fn probs_into(&self, out: &mut Vec<f64>) {
        out.clear();
        if !matches!(self.relabel, Some((Some(_), _))) {
            return;
        }
        out.resize(self.classes, 0.0);
        for (&c, &v) in self.prob_class.iter().zip(self.prob_value) {
            out[c as usize] = v;
        }
    }
}

impl Generated {
    fn new(classes: &[String]) -> Generated {
        Generated {
            labels: classes.to_vec(),
            classes: classes.len(),
            ..Generated::default()
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Sample `i` (in id order).
    pub fn row(&self, i: usize) -> GeneratedRow<'_> {
        let relabel = match self.label[i] {
            NO_OPINION => None,
            NO_LABEL => Some((None, self.confidence[i])),
            l => Some((Some(self.labels[l as usize].as_str()), self.confidence[i])),
        };
        let start = if i == 0 {
            0
        } else {
            self.probs_end[i - 1] as usize
        };
        let end = self.probs_end[i] as usize;
        GeneratedRow {
            id: self.ids[i],
            text: self.texts.get(i),
            relabel,
            prob_class: &self.prob_class[start..end],
            prob_value: &self.prob_value[start..end],
            classes: self.classes,
        }
    }

    /// Room for every generated sample of `state`, made once: grown a
    /// push at a time, the columns are copied as they double and the
    /// copies' pages stay with the allocator (the peak is the measure's).
    fn reserve(&mut self, state: &ProjectState, classes: usize) {
        let (mut n, mut probs) = (0, 0);
        for s in state.generated() {
            n += 1;
            if let Some(v) = s.verdict().filter(|v| v.label.is_some()) {
                // At most one per class (the fallback when none is
                // positive: one).
                probs += v.confidence.len().clamp(1, classes.max(1));
            }
        }
        self.ids.reserve_exact(n);
        self.texts.reserve_exact(n);
        self.label.reserve_exact(n);
        self.confidence.reserve_exact(n);
        self.probs_end.reserve_exact(n);
        self.prob_class.reserve_exact(probs);
        self.prob_value.reserve_exact(probs);
    }

    /// Append a sample with its text and relabel verdict.
    fn push(
        &mut self,
        id: SampleId,
        text: &std::sync::Arc<str>,
        v: Option<&crate::domain::Verdict>,
        classes: &[String],
    ) {
        self.ids.push(id);
        self.texts.push(text);
        let probs_end = |g: &Generated| {
            u32::try_from(g.prob_value.len()).expect("fewer than 2^32 probabilities")
        };
        let Some(v) = v else {
            self.label.push(NO_OPINION);
            self.confidence.push(0.0);
            self.probs_end.push(probs_end(self));
            return;
        };
        let label = match v.label.as_deref() {
            None => NO_LABEL,
            Some(l) => match self.labels.iter().position(|n| n == l) {
                Some(i) => i as u32,
                None => {
                    self.labels.push(l.to_string());
                    (self.labels.len() - 1) as u32
                }
            },
        };
        self.label.push(label);
        self.confidence.push(v.top_confidence());
        if v.label.is_some() {
            // Every class's probability (0 where the verdict names none),
            // or one-hot on its label when none is positive; kept where
            // not (+)0.
            let dense: Vec<f64> = classes
                .iter()
                .map(|c| v.confidence.get(c).copied().unwrap_or(0.0))
                .collect();
            let dense = if dense.iter().sum::<f64>() <= 0.0 {
                classes
                    .iter()
                    .map(|c| f64::from(u8::from(v.label.as_deref() == Some(c))))
                    .collect()
            } else {
                dense
            };
            for (c, p) in dense.into_iter().enumerate() {
                if p.to_bits() != 0 {
                    self.prob_class.push(c as u32);
                    self.prob_value.push(p);
                }
            }
        }
        self.probs_end.push(probs_end(self));
    }
}

impl JudgeInput {
    /// The judges' input from `state` (`with_generated`: with the
    /// generated samples, which only opinions read).
    pub fn from_state(
        state: &ProjectState,
        classes: &[String],
        with_generated: bool,
    ) -> JudgeInput {
        JudgeInput {
            classes: classes.to_vec(),
            judges: state.judges.clone(),
            heldout: crate::classify::heldout_set(state, classes),
            train: at_most(
                crate::classify::training_set(state, classes, true),
                MAX_TRAIN,
            ),
            generated: {
                let mut g = Generated::new(classes);
                if with_generated {
                    g.reserve(state, classes.len());
                    for s in state.generated() {
                        g.push(s.id, s.text_shared(), s.verdict(), classes);
                    }
                }
                g
            },
        }
    }
}

/// Measure every judge the project can use on its held-out examples.
/// `relabel_fingerprint`: the relabeler's current settings (its recorded
/// report counts only when it matches); `encoder`: the project's embedder
/// (`None`, or `Err` with why: the embedding judges are listed as
/// unavailable).
pub fn measure(
    state: &ProjectState,
    classes: &[String],
    relabel_fingerprint: &str,
    encoder: Result<&dyn TextEncoder, String>,
    cfg: &LinearConfig,
) -> anyhow::Result<Vec<Measured>> {
    let input = JudgeInput::from_state(state, classes, false);
    measure_trained(&input, relabel_fingerprint, encoder, cfg).map(|(m, _)| m)
}

/// [`measure`], and the embedding judges it trained (to give opinions
/// with, without encoding and fitting the training set again).
fn measure_trained(
    input: &JudgeInput,
    relabel_fingerprint: &str,
    encoder: Result<&dyn TextEncoder, String>,
    cfg: &LinearConfig,
) -> anyhow::Result<(Vec<Measured>, Option<EmbeddingJudges>)> {
    let classes = input.classes.as_slice();
    let relabel = input
        .judges
        .get(RELABEL)
        .filter(|j| j.fingerprint == relabel_fingerprint && j.report.labels.as_slice() == classes);
    let set = scoring_set(&input.heldout, relabel);
    let mut out = vec![Measured {
        judge: RELABEL.into(),
        scored: relabel.filter(|r| !r.answers.is_empty()).cloned(),
        note: match input.judges.get(RELABEL) {
            None => Some("not measured: run `straddle judge DIR`".into()),
            Some(_) if relabel.is_none() => Some(
                "measured with another model, template or relabel setting: run `straddle judge DIR` again"
                    .into(),
            ),
            Some(j) if j.answers.is_empty() => Some(
                "measured before its answers were recorded: run `straddle judge DIR` again".into(),
            ),
            Some(_) => None,
        },
    }];
    if set.is_empty() {
        for j in [SMALL, KNN, ENSEMBLE] {
            out.push(Measured {
                judge: j.into(),
                scored: None,
                note: Some("no held-out examples: import some with `--as validation`".into()),
            });
        }
        return Ok((out, None));
    }
    let train = &input.train;
    let mut trained = None;
    match encoder {
        Err(why) => {
            for j in [SMALL, KNN] {
                out.push(Measured {
                    judge: j.into(),
                    scored: None,
                    note: Some(why.clone()),
                });
            }
        }
        Ok(enc) => {
            let fp = data_fingerprint(&enc.name(), cfg, train, &set.ids, None);
            let judges = EmbeddingJudges::train(classes, train, enc, cfg)?;
            let q = crate::classify::small::encode_checked(enc, &set.texts)?;
            let small: Vec<Vec<f64>> = (0..q.len()).map(|i| judges.small(q.row(i), None)).collect();
            let knn = judges.knn_many(&q, &[]);
            for (name, probs) in [(SMALL, small), (KNN, knn)] {
                out.push(Measured {
                    judge: name.into(),
                    scored: Some(scored_from_probs(
                        name,
                        classes,
                        &set.ids,
                        &set.labels,
                        &probs,
                        fp.clone(),
                    )),
                    note: None,
                });
            }
            trained = Some(judges);
        }
    }
    let members: Vec<&JudgeScored> = out.iter().filter_map(|m| m.scored.as_ref()).collect();
    let fp = format!(
        "{}+{}",
        members
            .iter()
            .map(|m| m.fingerprint.as_str())
            .collect::<Vec<_>>()
            .join("+"),
        ENSEMBLE
    );
    let ens = ensemble_heldout(classes, &members, fp);
    out.push(Measured {
        judge: ENSEMBLE.into(),
        note: ens
            .is_none()
            .then(|| "needs at least two judges measured on the same examples".into()),
        scored: ens,
    });
    Ok((out, trained))
}

/// The judge that decides and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// The judge used, if any was measured.
    pub judge: Option<String>,
    /// Whether bulk rules may act on its verdicts (clearly better than
    /// chance and than the majority class on the held-out examples).
    pub trusted: bool,
    pub why: String,
}

impl Choice {
    /// The line the TUI and the CLI show when nobody can decide for the
    /// user.
    pub fn person_only(&self) -> Option<String> {
        (!self.trusted).then(|| {
            format!(
                "no judge beats chance on the held-out examples ({}): only a person can decide",
                self.why
            )
        })
    }
}

/// Per-example correctness as class indices for the paired bootstrap (an
/// unanswered example becomes a wrong answer).
fn preds(s: &JudgeScored, k: usize) -> Vec<usize> {
    s.answers
        .iter()
        .map(|a| a.answer.unwrap_or((a.truth + 1) % k.max(1)))
        .collect()
}

/// Pick the judge: the pinned one, else among the trusted judges the
/// simplest whose accuracy is not clearly (paired bootstrap, 95 %) below
/// the best's; with no trusted judge, the most accurate one (untrusted:
/// bulk rules refuse).
pub fn choose(measured: &[Measured], pin: JudgeUse) -> Choice {
    let get = |name: &str| {
        measured
            .iter()
            .find(|m| m.judge == name)
            .and_then(|m| m.scored.as_ref())
    };
    if pin != JudgeUse::Auto {
        let name = pin.as_str();
        return match get(name) {
            Some(s) => Choice {
                judge: Some(name.into()),
                trusted: s.report.trusted(),
                why: format!("pinned in straddle.toml ([judge] use = \"{name}\")"),
            },
            None => Choice {
                judge: None,
                trusted: false,
                why: format!(
                    "[judge] use = \"{name}\" but it was not measured: {}",
                    measured
                        .iter()
                        .find(|m| m.judge == name)
                        .and_then(|m| m.note.clone())
                        .unwrap_or_else(|| "run `straddle judge DIR`".into())
                ),
            },
        };
    }
    let all: Vec<(&str, &JudgeScored)> = ORDER
        .iter()
        .filter_map(|&n| get(n).map(|s| (n, s)))
        .collect();
    if all.is_empty() {
        return Choice {
            judge: None,
            trusted: false,
            why: "no judge was measured on held-out examples: run `straddle judge DIR`".into(),
        };
    }
    let trusted: Vec<(&str, &JudgeScored)> = all
        .iter()
        .copied()
        .filter(|(_, s)| s.report.trusted())
        .collect();
    let pool = if trusted.is_empty() { &all } else { &trusted };
    // The most accurate; the simpler on ties (pool is in ORDER).
    let best = pool
        .iter()
        .copied()
        .fold(None::<(&str, &JudgeScored)>, |b, c| match b {
            Some(b) if b.1.report.accuracy >= c.1.report.accuracy => Some(b),
            _ => Some(c),
        })
        .expect("a non-empty pool");
    if trusted.is_empty() {
        return Choice {
            judge: Some(best.0.into()),
            trusted: false,
            why: format!(
                "the most accurate, {} at {:.2}, is {}",
                best.0,
                best.1.report.accuracy,
                best.1.report.distrust().unwrap_or_default()
            ),
        };
    }
    let k = best.1.report.labels.len();
    for &(name, s) in pool.iter() {
        if name == best.0 {
            break;
        }
        let same = s.answers.len() == best.1.answers.len()
            && s.answers
                .iter()
                .zip(&best.1.answers)
                .all(|(a, b)| a.sample == b.sample);
        if !same {
            continue;
        }
        let truth: Vec<usize> = s.answers.iter().map(|a| a.truth).collect();
        let c = crate::classify::bootstrap::compare(
            k,
            &truth,
            &preds(s, k),
            &preds(best.1, k),
            crate::classify::bootstrap::RESAMPLES,
            0,
        );
        if c.accuracy_diff.low <= 0.0 {
            return Choice {
                judge: Some(name.into()),
                trusted: true,
                why: format!(
                    "{name} ({:.2}) is the simplest judge not clearly below the best ({} {:.2}; difference {:+.2} [{:+.2}, {:+.2}])",
                    s.report.accuracy,
                    best.0,
                    best.1.report.accuracy,
                    c.accuracy_diff.estimate,
                    c.accuracy_diff.low,
                    c.accuracy_diff.high
                ),
            };
        }
    }
    let simplest = pool.first().is_some_and(|p| p.0 == best.0);
    Choice {
        judge: Some(best.0.into()),
        trusted: true,
        why: if simplest {
            format!(
                "{} is the most accurate ({:.2}) and the simplest trusted judge",
                best.0, best.1.report.accuracy
            )
        } else {
            format!(
                "{} is the most accurate ({:.2}) and clearly better than every simpler trusted judge",
                best.0, best.1.report.accuracy
            )
        },
    }
}

/// The recorded reports as a comparison (each judge's latest
/// `judge_scored`; the relabeler's only when it matches
/// `relabel_fingerprint`).
pub fn recorded(state: &ProjectState, relabel_fingerprint: &str) -> Vec<Measured> {
    ORDER
        .iter()
        .map(|&name| {
            let j = state.judges.get(name);
            let stale = name == RELABEL && j.is_some_and(|j| j.fingerprint != relabel_fingerprint);
            Measured {
                judge: name.into(),
                scored: j.filter(|_| !stale).cloned(),
                note: if stale {
                    Some("measured with other settings: run `straddle judge DIR` again".into())
                } else if j.is_none() {
                    Some("not measured: run `straddle judge DIR`".into())
                } else {
                    None
                },
            }
        })
        .collect()
}

/// The choice from what the journal holds. When the embedding judges were
/// never measured, the relabeler's report alone decides (as before judges
/// were compared).
pub fn choose_recorded(state: &ProjectState, relabel_fingerprint: &str, pin: JudgeUse) -> Choice {
    choose(&recorded(state, relabel_fingerprint), pin)
}

/// The relabeler's current fingerprint for a project (model, relabel
/// template, relabel settings): a recorded report counts only when it
/// matches.
pub fn relabel_fingerprint(project: &crate::store::Project) -> anyhow::Result<String> {
    snapshot_fingerprint(project.config(), &project.prompts_dir())
}

/// What the review shows: the choice from the recorded reports and every
/// measured judge's opinion of each generated sample.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewJudges {
    pub choice: Choice,
    pub opinions: Opinions,
}

impl ReviewJudges {
    /// Samples on which the judges that gave an opinion disagree.
    pub fn disagreements(&self) -> std::collections::BTreeSet<SampleId> {
        self.opinions.disagreements()
    }
}

/// [`relabel_fingerprint`] from a config and a prompts folder.
fn snapshot_fingerprint(
    config: &crate::domain::ProjectConfig,
    prompts_dir: &std::path::Path,
) -> anyhow::Result<String> {
    // What a generator for this project reports, without building one
    // (its dedup index alone would sign every text of the project).
    let templates = crate::augment::Templates::load(prompts_dir)?;
    Ok(crate::augment::generator::relabel_fingerprint(
        &config.backend.model,
        &templates,
        &config.relabel,
    ))
}

/// The reports of [`measure`] that differ from the recorded ones (the
/// embedding judges and the ensemble; the relabeler is recorded by
/// `straddle judge` itself): what to append as `judge_scored`.
pub fn to_record(state: &ProjectState, measured: &[Measured]) -> Vec<JudgeScored> {
    to_record_from(&state.judges, measured)
}

/// [`to_record`] against the recorded reports `recorded`.
fn to_record_from(
    recorded: &BTreeMap<String, JudgeScored>,
    measured: &[Measured],
) -> Vec<JudgeScored> {
    measured
        .iter()
        .filter(|m| m.judge != RELABEL)
        .filter_map(|m| m.scored.clone())
        .filter(|s| recorded.get(&s.report.judge) != Some(s))
        .collect()
}

/// The judges measured again on a snapshot (the TUI's job when it opens
/// and when the judges' data changed): [`measure`] without an LLM request
/// (the relabeler counts with its recorded answers), the choice, every
/// judge's opinion of the generated samples, and the reports to record.
pub fn measure_for_review(
    input: &JudgeInput,
    config: &crate::domain::ProjectConfig,
    prompts_dir: &std::path::Path,
    encoder: Result<&dyn TextEncoder, String>,
    cfg: &LinearConfig,
) -> anyhow::Result<(ReviewJudges, Vec<JudgeScored>)> {
    let fp = snapshot_fingerprint(config, prompts_dir)?;
    let classes: Vec<String> = config.classes.iter().map(|c| c.name.clone()).collect();
    let enc = encoder.as_ref().ok().copied();
    if classes != input.classes {
        anyhow::bail!("the judges' input was taken with other classes");
    }
    let (measured, trained) = measure_trained(input, &fp, encoder, cfg)?;
    let choice = choose(&measured, config.judge.use_);
    let names: Vec<&str> = if enc.is_some() {
        ORDER.to_vec()
    } else {
        vec![RELABEL]
    };
    let trained = match (trained, enc) {
        (Some(j), Some(e)) => Some((j, e)),
        (None, Some(e)) if names.len() > 1 => {
            Some((EmbeddingJudges::train(&classes, &input.train, e, cfg)?, e))
        }
        _ => None,
    };
    let opinions = opinions_with(
        input,
        &names,
        &measured,
        trained.as_ref().map(|(j, e)| (j, *e)),
    )?;
    let record = to_record_from(&input.judges, &measured);
    Ok((ReviewJudges { choice, opinions }, record))
}

/// The relabel verdict of a sample as an opinion.
pub fn relabel_opinion(s: &SampleState) -> Option<Opinion> {
    let v = s.verdict()?;
    Some(Opinion {
        judge: RELABEL.into(),
        label: v.label.as_deref().map(Into::into),
        confidence: v.top_confidence(),
    })
}

/// Append the opinion probabilities `p` stand for (argmax and its
/// probability; empty: no usable answer) to `column`.
fn push_probs(column: &mut JudgeColumn, classes: &[String], p: &[f64]) {
    if p.is_empty() {
        return column.push(Some((None, 0.0)));
    }
    let i = argmax(p);
    if i < classes.len() {
        column.push_class(i, p[i]);
    } else {
        column.push(Some((None, p[i])));
    }
}

/// What each judge says about each generated sample: `judges` names which
/// (any of [`ORDER`]); `reports` the recorded held-out reports (ensemble
/// weights). The embedding judges are trained on seeds + accepted; an
/// accepted sample is judged out of fold (small) or without itself (knn).
/// Samples without an opinion of a judge have none in its column.
pub fn opinions(
    state: &ProjectState,
    classes: &[String],
    judges: &[&str],
    reports: &[Measured],
    encoder: Option<&dyn TextEncoder>,
    cfg: &LinearConfig,
) -> anyhow::Result<Opinions> {
    let needs_emb = judges.iter().any(|j| *j != RELABEL);
    let input = JudgeInput::from_state(state, classes, true);
    let trained = match encoder {
        Some(enc) if needs_emb => Some((
            EmbeddingJudges::train(classes, &input.train, enc, cfg)?,
            enc,
        )),
        _ => None,
    };
    opinions_with(
        &input,
        judges,
        reports,
        trained.as_ref().map(|(j, e)| (j, *e)),
    )
}

/// Generated texts encoded at a time for the embedding judges' opinions:
/// the vectors of a chunk are dropped before the next is encoded (on a
/// 200,000-sample project all of them at once would be ~300 MB).
const OPINION_CHUNK: usize = 2048;

/// [`opinions`] with the embedding judges already trained (and the
/// encoder of their vectors); `None`: no embedding judge opinions.
fn opinions_with(
    input: &JudgeInput,
    judges: &[&str],
    reports: &[Measured],
    trained: Option<(&EmbeddingJudges, &dyn TextEncoder)>,
) -> anyhow::Result<Opinions> {
    let classes = input.classes.as_slice();
    let needs_emb = judges.iter().any(|j| *j != RELABEL);
    let k = classes.len();
    let weight = |name: &str| {
        reports
            .iter()
            .find(|m| m.judge == name)
            .and_then(|m| m.scored.as_ref())
            .map_or(0.0, |r| ensemble_weight(r.report.accuracy, r.report.chance))
    };
    // One column per judge named, by name.
    let mut names: Vec<&str> = judges.to_vec();
    names.sort_unstable();
    names.dedup();
    let mut out = Opinions {
        ids: Vec::with_capacity(input.generated.len()),
        judges: names.iter().map(|j| JudgeColumn::new(j, classes)).collect(),
    };
    for c in &mut out.judges {
        c.label.reserve_exact(input.generated.len());
        c.confidence.reserve_exact(input.generated.len());
    }
    let trained = trained.filter(|_| needs_emb);
    let generated = &input.generated;
    let mut relabel_probs = Vec::with_capacity(k);
    for start in (0..generated.len()).step_by(OPINION_CHUNK) {
        let chunk: Vec<GeneratedRow<'_>> = (start..(start + OPINION_CHUNK).min(generated.len()))
            .map(|i| generated.row(i))
            .collect();
        // The chunk's vectors, dropped before the next chunk's.
        let q = match trained {
            Some((_, enc)) => {
                let texts: Vec<String> = chunk.iter().map(|s| s.text.to_string()).collect();
                Some(crate::classify::small::encode_checked(enc, &texts)?)
            }
            None => None,
        };
        // The kNN votes of the chunk at once (its queries share each block
        // of training rows).
        let (owns, mut knn) = match (trained, &q) {
            (Some((ej, _)), Some(q)) => {
                let owns: Vec<Option<usize>> = chunk.iter().map(|s| ej.row_of(s.id)).collect();
                let knn = if names.contains(&KNN) || names.contains(&ENSEMBLE) {
                    ej.knn_many(q, &owns).into_iter().map(Some).collect()
                } else {
                    Vec::new()
                };
                (owns, knn)
            }
            _ => (Vec::new(), Vec::new()),
        };
        for (i, s) in chunk.iter().enumerate() {
            let (sp, kp) = match (trained, &q) {
                (Some((ej, _)), Some(q)) => (
                    Some(ej.small(q.row(i), owns[i])),
                    knn.get_mut(i).and_then(Option::take),
                ),
                _ => (None, None),
            };
            out.ids.push(s.id);
            for (&j, column) in names.iter().zip(&mut out.judges) {
                match j {
                    RELABEL => column.push(s.relabel),
                    SMALL | KNN => match if j == SMALL { &sp } else { &kp } {
                        Some(p) => push_probs(column, classes, p),
                        None => column.push(None),
                    },
                    ENSEMBLE => {
                        s.probs_into(&mut relabel_probs);
                        let mut parts: Vec<(&[f64], f64)> =
                            vec![(relabel_probs.as_slice(), weight(RELABEL))];
                        if let Some(p) = &sp {
                            parts.push((p.as_slice(), weight(SMALL)));
                        }
                        if let Some(p) = &kp {
                            parts.push((p.as_slice(), weight(KNN)));
                        }
                        let p = combine(&parts, k);
                        if p.is_empty() {
                            column.push(None);
                        } else {
                            push_probs(column, classes, &p);
                        }
                    }
                    _ => column.push(None),
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Render the comparison for the terminal: one line per judge, per-class
/// recall, and the choice.
pub fn render(measured: &[Measured], choice: &Choice) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let labels: Vec<String> = measured
        .iter()
        .find_map(|m| m.scored.as_ref().map(|s| s.report.labels.clone()))
        .unwrap_or_default();
    let _ = writeln!(
        o,
        "{:<9} {:>5} {:>8} {:>9} {:>7}  verdict",
        "judge", "n", "accuracy", "macro-F1", "chance"
    );
    for m in measured {
        let mark = if choice.judge.as_deref() == Some(m.judge.as_str()) {
            "*"
        } else {
            " "
        };
        match &m.scored {
            Some(s) => {
                let r = &s.report;
                let _ = writeln!(
                    o,
                    "{mark}{:<8} {:>5} {:>8.3} {:>9.3} {:>7.3}  {}",
                    m.judge,
                    r.n,
                    r.accuracy,
                    r.macro_f1,
                    r.chance,
                    match r.distrust() {
                        None => "trusted (clearly better than chance and the majority class)"
                            .to_string(),
                        Some(why) => why,
                    }
                );
            }
            None => {
                let _ = writeln!(
                    o,
                    "{mark}{:<8} {:>5} {:>8} {:>9} {:>7}  {}",
                    m.judge,
                    "–",
                    "–",
                    "–",
                    "–",
                    m.note.as_deref().unwrap_or("")
                );
            }
        }
    }
    if !labels.is_empty() {
        let _ = writeln!(o, "\nrecall per class:");
        let w = labels
            .iter()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(5)
            .clamp(5, 24);
        let _ = write!(o, "  {:<w$}", "class");
        let shown: Vec<&Measured> = measured.iter().filter(|m| m.scored.is_some()).collect();
        for m in &shown {
            let _ = write!(o, " {:>8}", m.judge);
        }
        let _ = writeln!(o);
        for (c, l) in labels.iter().enumerate() {
            let name: String = l.chars().take(w).collect();
            let _ = write!(o, "  {name:<w$}");
            for m in &shown {
                let r = &m.scored.as_ref().expect("filtered").report;
                let _ = write!(o, " {:>8}", fmt_recall(recall(r, c)));
            }
            let _ = writeln!(o);
        }
    }
    let _ = writeln!(
        o,
        "\nchosen: {} — {}",
        choice.judge.as_deref().unwrap_or("none"),
        choice.why
    );
    if let Some(p) = choice.person_only() {
        let _ = writeln!(o, "bulk rules refuse: {p}");
    }
    o
}

fn fmt_recall(r: Option<f64>) -> String {
    r.map_or("–".into(), |v| format!("{v:.2}"))
}

/// Recall of class `c` in a report (`None` when the class is absent from
/// the held-out sample).
pub fn recall(r: &JudgeReport, c: usize) -> Option<f64> {
    let row = r.confusion.get(c)?;
    let n: u32 = row.iter().sum();
    (n > 0).then(|| f64::from(row[c]) / f64::from(n))
}

/// The comparison as JSON: every judge's report, recall per class and
/// trust, and the choice.
pub fn to_json(measured: &[Measured], choice: &Choice) -> serde_json::Value {
    use serde_json::json;
    let judges: Vec<serde_json::Value> = measured
        .iter()
        .map(|m| match &m.scored {
            Some(s) => {
                let r = &s.report;
                let recall: BTreeMap<&str, Option<f64>> = r
                    .labels
                    .iter()
                    .enumerate()
                    .map(|(c, l)| (l.as_str(), recall(r, c)))
                    .collect();
                json!({
                    "judge": m.judge,
                    "n": r.n,
                    "accuracy": r.accuracy,
                    "macro_f1": r.macro_f1,
                    "chance": r.chance,
                    "majority": r.majority,
                    "recall": recall,
                    "better_than_chance": r.better_than_chance(),
                    "trusted": r.trusted(),
                    "p_vs_chance": r.p_vs_chance,
                    "fingerprint": s.fingerprint,
                })
            }
            None => json!({"judge": m.judge, "available": false, "note": m.note}),
        })
        .collect();
    json!({
        "judges": judges,
        "chosen": {"judge": choice.judge, "trusted": choice.trusted, "why": choice.why},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(judge: &str, truth: &[usize], answers: &[Option<usize>], k: usize) -> JudgeScored {
        let classes: Vec<String> = (0..k).map(|i| format!("C{i}")).collect();
        let probs: Vec<Vec<f64>> = answers
            .iter()
            .map(|a| match a {
                Some(i) => (0..k)
                    .map(|j| if j == *i { 0.9 } else { 0.1 / (k - 1) as f64 })
                    .collect(),
                None => vec![],
            })
            .collect();
        let ids: Vec<SampleId> = (1..=truth.len() as u64).collect();
        scored_from_probs(judge, &classes, &ids, truth, &probs, "f".into())
    }

    fn measured(list: Vec<JudgeScored>) -> Vec<Measured> {
        list.into_iter()
            .map(|s| Measured {
                judge: s.report.judge.clone(),
                scored: Some(s),
                note: None,
            })
            .collect()
    }

    #[test]
    fn a_judge_at_chance_loses_to_one_that_is_right() {
        let truth: Vec<usize> = (0..80).map(|i| i % 4).collect();
        let right: Vec<_> = truth.iter().map(|&t| Some(t)).collect();
        let constant = vec![Some(1); 80];
        let m = measured(vec![
            scored(RELABEL, &truth, &constant, 4),
            scored(SMALL, &truth, &right, 4),
        ]);
        let c = choose(&m, JudgeUse::Auto);
        assert_eq!(c.judge.as_deref(), Some(SMALL), "{c:?}");
        assert!(c.trusted);
        // Pinned, the relabeler is used but not trusted.
        let c = choose(&m, JudgeUse::Relabel);
        assert_eq!(c.judge.as_deref(), Some(RELABEL));
        assert!(!c.trusted);
        assert!(c.person_only().unwrap().contains("only a person"));
    }

    #[test]
    fn the_simpler_judge_wins_unless_the_other_is_clearly_better() {
        let truth: Vec<usize> = (0..100).map(|i| i % 4).collect();
        // knn right on 80, small right on 82: no clear difference.
        let knn: Vec<_> = truth
            .iter()
            .enumerate()
            .map(|(i, &t)| Some(if i < 80 { t } else { (t + 1) % 4 }))
            .collect();
        let small: Vec<_> = truth
            .iter()
            .enumerate()
            .map(|(i, &t)| Some(if i < 82 { t } else { (t + 1) % 4 }))
            .collect();
        let m = measured(vec![
            scored(KNN, &truth, &knn, 4),
            scored(SMALL, &truth, &small, 4),
        ]);
        assert_eq!(choose(&m, JudgeUse::Auto).judge.as_deref(), Some(KNN));
        // small right everywhere, knn on 60: small is clearly better.
        let knn: Vec<_> = truth
            .iter()
            .enumerate()
            .map(|(i, &t)| Some(if i < 60 { t } else { (t + 1) % 4 }))
            .collect();
        let all: Vec<_> = truth.iter().map(|&t| Some(t)).collect();
        let m = measured(vec![
            scored(KNN, &truth, &knn, 4),
            scored(SMALL, &truth, &all, 4),
        ]);
        assert_eq!(choose(&m, JudgeUse::Auto).judge.as_deref(), Some(SMALL));
    }

    #[test]
    fn no_trusted_judge_means_a_person_decides() {
        let truth: Vec<usize> = (0..40).map(|i| i % 4).collect();
        let m = measured(vec![
            scored(RELABEL, &truth, &vec![Some(0); 40], 4),
            scored(KNN, &truth, &vec![Some(2); 40], 4),
        ]);
        let c = choose(&m, JudgeUse::Auto);
        assert!(!c.trusted);
        assert!(c.person_only().is_some());
        assert!(choose(&[], JudgeUse::Auto).judge.is_none());
    }

    #[test]
    fn the_ensemble_follows_the_judge_that_is_right() {
        let truth: Vec<usize> = (0..60).map(|i| i % 3).collect();
        let right: Vec<_> = truth.iter().map(|&t| Some(t)).collect();
        let noise: Vec<_> = (0..60).map(|i| Some((i * 7 / 3) % 3)).collect();
        let a = scored(RELABEL, &truth, &noise, 3);
        let b = scored(SMALL, &truth, &right, 3);
        let classes: Vec<String> = (0..3).map(|i| format!("C{i}")).collect();
        let e = ensemble_heldout(&classes, &[&a, &b], "e".into()).unwrap();
        assert!(
            e.report.accuracy >= b.report.accuracy - 1e-9,
            "{}",
            e.report.accuracy
        );
        assert_eq!(e.answers.len(), 60);
    }

    /// A large training set is cut to an evenly spaced sample of each
    /// class in its share; a small one is left alone.
    #[test]
    fn a_large_training_set_is_sampled_per_class() {
        let mut set = LabelledSet::default();
        for i in 0..1000u64 {
            set.ids.push(i + 1);
            set.texts.push(format!("text {i}"));
            // Class 0: 900 examples, class 1: 100.
            set.labels.push(usize::from(i % 10 == 0));
        }
        let small = at_most(set.clone(), 1000);
        assert_eq!(small, set);
        let cut = at_most(set.clone(), 100);
        assert_eq!(cut.len(), 100);
        assert_eq!(cut.labels.iter().filter(|&&l| l == 1).count(), 10);
        assert!(cut.ids.windows(2).all(|w| w[0] < w[1]));
        for (k, &id) in cut.ids.iter().enumerate() {
            let i = (id - 1) as usize;
            assert_eq!(cut.texts[k], set.texts[i]);
            assert_eq!(cut.labels[k], set.labels[i]);
        }
        assert_eq!(at_most(set.clone(), 100), cut, "the same sample every time");
    }

    /// The table answers what the maps it was made of say: each judge's
    /// opinions in id order, by id, and the samples the judges disagree
    /// on; rows built out of order are sorted, the last of an id kept.
    #[test]
    fn the_opinion_table_answers_as_the_maps_did() {
        let mut maps: BTreeMap<String, BTreeMap<SampleId, Opinion>> = BTreeMap::new();
        let labels = [None, Some("A"), Some("B"), Some("C")];
        for (j, judge) in ["knn", "relabel", "small"].iter().enumerate() {
            let m = maps.entry(judge.to_string()).or_default();
            for id in 1..60u64 {
                if (id + j as u64).is_multiple_of(7) {
                    continue;
                }
                let l = labels[((id * (j as u64 + 2)) % 4) as usize];
                m.insert(
                    id * 3,
                    Opinion {
                        judge: judge.to_string(),
                        label: l.map(Into::into),
                        confidence: id as f64 / 64.0,
                    },
                );
            }
        }
        maps.insert("ensemble".into(), BTreeMap::new());
        let t = Opinions::from_maps(maps.clone());
        assert_eq!(
            t.names().collect::<Vec<_>>(),
            maps.keys().map(String::as_str).collect::<Vec<_>>()
        );
        for (judge, m) in &maps {
            let col = t.judge(judge).expect("every judge has a column");
            assert_eq!(col.len(), m.len());
            let got: Vec<(SampleId, Opinion)> =
                col.iter().map(|(id, o)| (id, o.to_opinion())).collect();
            let want: Vec<(SampleId, Opinion)> = m.iter().map(|(id, o)| (*id, o.clone())).collect();
            assert_eq!(got, want);
            for id in 0..200 {
                assert_eq!(
                    t.get(judge, id).map(|o| o.to_opinion()),
                    m.get(&id).cloned()
                );
            }
        }
        assert!(t.judge("nobody").is_none());
        // Disagreements as the maps gave them.
        let mut by_id: BTreeMap<SampleId, std::collections::BTreeSet<&str>> = BTreeMap::new();
        for m in maps.values() {
            for (id, o) in m {
                if let Some(l) = &o.label {
                    by_id.entry(*id).or_default().insert(l);
                }
            }
        }
        let want: std::collections::BTreeSet<SampleId> = by_id
            .into_iter()
            .filter(|(_, l)| l.len() > 1)
            .map(|(id, _)| id)
            .collect();
        assert!(!want.is_empty());
        assert_eq!(t.disagreements(), want);
        // Rows out of order, one id twice: sorted, the last row kept.
        let mut u = Opinions {
            ids: vec![5, 2, 5, 1],
            judges: vec![JudgeColumn::new("knn", &["A".into(), "B".into()])],
        };
        for (c, conf) in [(0, 0.1), (1, 0.2), (1, 0.3), (0, 0.4)] {
            u.judges[0].push_class(c, conf);
        }
        u.sort();
        let got: Vec<(SampleId, Option<&str>, f64)> = u
            .judge("knn")
            .unwrap()
            .iter()
            .map(|(id, o)| (id, o.label, o.confidence))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, Some("A"), 0.4),
                (2, Some("B"), 0.2),
                (5, Some("B"), 0.3)
            ]
        );
    }

    /// The kNN vote as it was: every similarity collected and sorted
    /// (similarity descending, row ascending), the first [`KNN_K`] kept.
    fn knn_full_sort(ej: &EmbeddingJudges, q: &[f32], own: Option<usize>) -> Vec<f64> {
        let k = ej.classes.len();
        let mut sims: Vec<(f32, usize)> = (0..ej.x.len())
            .filter(|&r| Some(r) != own)
            .map(|r| (crate::classify::dense::dot(q, ej.x.row(r)), r))
            .collect();
        sims.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        sims.truncate(KNN_K);
        let mut p = vec![0.0; k];
        let Some(top) = sims.first().map(|s| f64::from(s.0)) else {
            return vec![1.0 / k.max(1) as f64; k];
        };
        for (s, r) in sims {
            p[ej.labels[r]] += ((f64::from(s) - top) / KNN_TEMPERATURE).exp();
        }
        let sum: f64 = p.iter().sum();
        p.iter_mut().for_each(|v| *v /= sum.max(1e-12));
        p
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(64))]
        /// The kNN vote keeps the best [`KNN_K`] without sorting every
        /// similarity, one query or a block at a time, and gives exactly
        /// (bit for bit, ties to the lower row) what the full sort gave.
        /// Small integer coordinates make ties common.
        #[test]
        fn knn_top_k_is_the_full_sort(
            dim in 1usize..5,
            train in proptest::collection::vec((proptest::collection::vec(-2i8..=2, 4), 0usize..3), 0..300),
            queries in proptest::collection::vec((proptest::collection::vec(-2i8..=2, 4), proptest::option::of(0usize..300)), 1..20),
        ) {
            let classes: Vec<String> = (0..3).map(|i| format!("C{i}")).collect();
            let mut x = Dense::new(dim);
            for (v, _) in &train {
                let row: Vec<f32> = v[..dim].iter().map(|&a| f32::from(a) * 0.5).collect();
                x.push(&row);
            }
            let labels: Vec<usize> = train.iter().map(|t| t.1).collect();
            let ids: Vec<SampleId> = (1..=train.len() as u64).collect();
            let cfg = LinearConfig { max_iter: 3, calibration_folds: 0, ..LinearConfig::default() };
            let ej = EmbeddingJudges::from_vectors(&classes, ids, labels, x, &cfg);
            let mut q = Dense::new(dim);
            let mut owns = Vec::new();
            for (v, own) in &queries {
                let row: Vec<f32> = v[..dim].iter().map(|&a| f32::from(a) * 0.5).collect();
                q.push(&row);
                owns.push(own.filter(|&o| o < train.len()));
            }
            let many = ej.knn_many(&q, &owns);
            for i in 0..q.len() {
                let want = knn_full_sort(&ej, q.row(i), owns[i]);
                let bits = |p: &[f64]| p.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                proptest::prop_assert_eq!(bits(&ej.knn(q.row(i), owns[i])), bits(&want));
                proptest::prop_assert_eq!(bits(&many[i]), bits(&want));
            }
        }
    }

    /// The generated samples' columns give back each text, relabel verdict
    /// and the verdict's probability per class as the dense copy did
    /// (0 for a class it does not name; one-hot on the label when none is
    /// positive; none without a label).
    #[test]
    fn generated_rows_give_the_verdicts_probabilities_per_class() {
        let classes: Vec<String> = ["A", "B", "C"].map(String::from).to_vec();
        let verdict = |v: serde_json::Value| -> Option<crate::domain::Verdict> {
            (!v.is_null()).then(|| serde_json::from_value(v).unwrap())
        };
        let verdicts = [
            serde_json::json!({"label": "B", "confidence": {"A": 0.05, "B": 0.9}, "method": "logprobs"}),
            serde_json::json!({"label": "C", "confidence": {"A": 0.0, "C": 0.0}, "method": "logprobs"}),
            serde_json::json!({"label": "C", "confidence": {"A": -0.0, "B": 0.25, "C": 0.75}, "method": "logprobs"}),
            serde_json::json!({"label": "Z", "confidence": {"Z": 1.0}, "method": "logprobs"}),
            serde_json::json!({"label": null, "confidence": {"A": 0.5}, "method": "logprobs"}),
            serde_json::Value::Null,
            serde_json::json!({"label": "A", "confidence": {}, "method": "logprobs"}),
        ];
        let verdicts: Vec<Option<crate::domain::Verdict>> =
            verdicts.into_iter().map(verdict).collect();
        let mut g = Generated::new(&classes);
        for (i, v) in verdicts.iter().enumerate() {
            g.push(
                i as u64 + 1,
                &std::sync::Arc::from(format!("text {i}")),
                v.as_ref(),
                &classes,
            );
        }
        assert_eq!(g.len(), verdicts.len());
        let mut got = Vec::new();
        for (i, v) in verdicts.iter().enumerate() {
            let row = g.row(i);
            assert_eq!(row.id, i as u64 + 1);
            assert_eq!(row.text, format!("text {i}"));
            assert_eq!(
                row.relabel,
                v.as_ref().map(|v| (v.label.as_deref(), v.top_confidence()))
            );
            // The dense copy as it was made.
            let want: Vec<f64> = match v.as_ref().filter(|v| v.label.is_some()) {
                None => Vec::new(),
                Some(v) => {
                    let p: Vec<f64> = classes
                        .iter()
                        .map(|c| v.confidence.get(c).copied().unwrap_or(0.0))
                        .collect();
                    if p.iter().sum::<f64>() <= 0.0 {
                        classes
                            .iter()
                            .map(|c| f64::from(u8::from(v.label.as_deref() == Some(c))))
                            .collect()
                    } else {
                        p
                    }
                }
            };
            row.probs_into(&mut got);
            let bits = |p: &[f64]| p.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "sample {i}");
        }
    }

    #[test]
    fn combine_weights_and_skips_missing_members() {
        let p = combine(&[(&[1.0, 0.0], 3.0), (&[0.0, 1.0], 1.0), (&[], 5.0)], 2);
        assert!((p[0] - 0.75).abs() < 1e-12 && (p[1] - 0.25).abs() < 1e-12);
        // No member with weight: equal weights.
        assert_eq!(combine(&[(&[1.0, 0.0], 0.0)], 2), vec![1.0, 0.0]);
        assert!(combine(&[(&[], 1.0)], 2).is_empty());
    }
}
