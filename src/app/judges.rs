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
    ids: Vec<SampleId>,
    fit: CrossFit,
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
            ids: train.ids.clone(),
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
            ids,
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
        let k = self.classes.len();
        let mut sims: Vec<(f32, usize)> = (0..self.x.len())
            .filter(|&r| Some(r) != own)
            .map(|r| (crate::classify::dense::dot(q, self.x.row(r)), r))
            .collect();
        sims.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        sims.truncate(KNN_K);
        let mut p = vec![0.0; k];
        let Some(top) = sims.first().map(|s| f64::from(s.0)) else {
            return vec![1.0 / k.max(1) as f64; k];
        };
        for (s, r) in sims {
            p[self.labels[r]] += ((f64::from(s) - top) / KNN_TEMPERATURE).exp();
        }
        let sum: f64 = p.iter().sum();
        p.iter_mut().for_each(|v| *v /= sum.max(1e-12));
        p
    }

    /// The training row of sample `id`, if it is one.
    pub fn row_of(&self, id: SampleId) -> Option<usize> {
        (id != 0).then(|| self.ids.iter().position(|&i| i == id))?
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
    pub generated: Vec<GeneratedRow>,
}

/// A generated sample as the judges see it.
#[derive(Debug, Clone)]
pub struct GeneratedRow {
    pub id: SampleId,
    pub text: String,
    /// The relabel verdict, if any.
    pub relabel: Option<RelabelRow>,
}

/// A relabel verdict as the judges use it.
#[derive(Debug, Clone)]
pub struct RelabelRow {
    /// `None`: unparsable.
    pub label: Option<crate::domain::Name>,
    /// Confidence of `label`.
    pub confidence: f64,
    /// Probability per class (empty without a label).
    pub probs: Box<[f64]>,
}

impl RelabelRow {
    fn of(v: &crate::domain::Verdict, classes: &[String]) -> RelabelRow {
        let probs: Vec<f64> = if v.label.is_some() {
            let p: Vec<f64> = classes
                .iter()
                .map(|c| v.confidence.get(c).copied().unwrap_or(0.0))
                .collect();
            if p.iter().sum::<f64>() > 0.0 {
                p
            } else {
                classes
                    .iter()
                    .map(|c| f64::from(u8::from(v.label.as_deref() == Some(c))))
                    .collect()
            }
        } else {
            Vec::new()
        };
        RelabelRow {
            label: v.label.clone(),
            confidence: v.top_confidence(),
            probs: probs.into(),
        }
    }

    fn opinion(&self) -> Opinion {
        Opinion {
            judge: RELABEL.into(),
            label: self.label.as_deref().map(Into::into),
            confidence: self.confidence,
        }
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
            generated: if with_generated {
                state
                    .generated()
                    .map(|s| GeneratedRow {
                        id: s.id,
                        text: s.text().to_string(),
                        relabel: s.verdict().map(|v| RelabelRow::of(v, classes)),
                    })
                    .collect()
            } else {
                Vec::new()
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
            let knn: Vec<Vec<f64>> = (0..q.len()).map(|i| judges.knn(q.row(i), None)).collect();
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
    pub opinions: BTreeMap<String, BTreeMap<SampleId, Opinion>>,
}

impl ReviewJudges {
    /// Samples on which the judges that gave an opinion disagree.
    pub fn disagreements(&self) -> std::collections::BTreeSet<SampleId> {
        let mut labels: BTreeMap<SampleId, std::collections::BTreeSet<&str>> = BTreeMap::new();
        for m in self.opinions.values() {
            for (id, o) in m {
                if let Some(l) = &o.label {
                    labels.entry(*id).or_default().insert(l);
                }
            }
        }
        labels
            .into_iter()
            .filter(|(_, l)| l.len() > 1)
            .map(|(id, _)| id)
            .collect()
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

/// [`ReviewJudges`] for a snapshot (a TUI job): the relabeler's verdicts
/// and, with an encoder, the embedding judges and the ensemble, weighted
/// by their recorded reports. No LLM request and nothing written.
pub fn review_judges(
    state: &ProjectState,
    config: &crate::domain::ProjectConfig,
    prompts_dir: &std::path::Path,
    encoder: Option<&dyn TextEncoder>,
    cfg: &LinearConfig,
) -> anyhow::Result<ReviewJudges> {
    let fp = snapshot_fingerprint(config, prompts_dir)?;
    let reports = recorded(state, &fp);
    let choice = choose(&reports, config.judge.use_);
    let classes: Vec<String> = config.classes.iter().map(|c| c.name.clone()).collect();
    let names: Vec<&str> = if encoder.is_some() {
        ORDER.to_vec()
    } else {
        vec![RELABEL]
    };
    let input = JudgeInput::from_state(state, &classes, true);
    let trained = match encoder {
        Some(e) if names.len() > 1 => {
            Some((EmbeddingJudges::train(&classes, &input.train, e, cfg)?, e))
        }
        _ => None,
    };
    let opinions = opinions_with(
        &input,
        &names,
        &reports,
        trained.as_ref().map(|(j, e)| (j, *e)),
    )?;
    Ok(ReviewJudges { choice, opinions })
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

fn opinion_from(judge: &str, classes: &[String], p: &[f64]) -> Opinion {
    if p.is_empty() {
        return Opinion {
            judge: judge.into(),
            label: None,
            confidence: 0.0,
        };
    }
    let i = argmax(p);
    Opinion {
        judge: judge.into(),
        label: classes.get(i).cloned(),
        confidence: p[i],
    }
}

/// What each judge says about each generated sample: `judges` names which
/// (any of [`ORDER`]); `reports` the recorded held-out reports (ensemble
/// weights). The embedding judges are trained on seeds + accepted; an
/// accepted sample is judged out of fold (small) or without itself (knn).
/// Samples without an opinion of a judge are missing from its map.
pub fn opinions(
    state: &ProjectState,
    classes: &[String],
    judges: &[&str],
    reports: &[Measured],
    encoder: Option<&dyn TextEncoder>,
    cfg: &LinearConfig,
) -> anyhow::Result<BTreeMap<String, BTreeMap<SampleId, Opinion>>> {
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
) -> anyhow::Result<BTreeMap<String, BTreeMap<SampleId, Opinion>>> {
    let mut out: BTreeMap<String, BTreeMap<SampleId, Opinion>> = BTreeMap::new();
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
    let mut maps: Vec<BTreeMap<SampleId, Opinion>> =
        judges.iter().map(|_| BTreeMap::new()).collect();
    let trained = trained.filter(|_| needs_emb);
    for chunk in input.generated.chunks(OPINION_CHUNK) {
        // The chunk's vectors, dropped before the next chunk's.
        let q = match trained {
            Some((_, enc)) => {
                let texts: Vec<String> = chunk.iter().map(|s| s.text.clone()).collect();
                Some(crate::classify::small::encode_checked(enc, &texts)?)
            }
            None => None,
        };
        for (i, s) in chunk.iter().enumerate() {
            let (sp, kp) = match (trained, &q) {
                (Some((ej, _)), Some(q)) => {
                    let own = ej.row_of(s.id);
                    (Some(ej.small(q.row(i), own)), Some(ej.knn(q.row(i), own)))
                }
                _ => (None, None),
            };
            for (&j, map) in judges.iter().zip(&mut maps) {
                let o = match j {
                    RELABEL => s.relabel.as_ref().map(RelabelRow::opinion),
                    SMALL => sp.as_ref().map(|p| opinion_from(j, classes, p)),
                    KNN => kp.as_ref().map(|p| opinion_from(j, classes, p)),
                    ENSEMBLE => {
                        let rp: &[f64] = s.relabel.as_ref().map_or(&[], |r| &r.probs);
                        let mut parts: Vec<(&[f64], f64)> = vec![(rp, weight(RELABEL))];
                        if let Some(p) = &sp {
                            parts.push((p.as_slice(), weight(SMALL)));
                        }
                        if let Some(p) = &kp {
                            parts.push((p.as_slice(), weight(KNN)));
                        }
                        let p = combine(&parts, k);
                        (!p.is_empty()).then(|| opinion_from(ENSEMBLE, classes, &p))
                    }
                    _ => None,
                };
                if let Some(o) = o {
                    map.insert(s.id, o);
                }
            }
        }
    }
    for (&j, map) in judges.iter().zip(maps) {
        out.entry(j.to_string()).or_default().extend(map);
    }
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

    #[test]
    fn combine_weights_and_skips_missing_members() {
        let p = combine(&[(&[1.0, 0.0], 3.0), (&[0.0, 1.0], 1.0), (&[], 5.0)], 2);
        assert!((p[0] - 0.75).abs() < 1e-12 && (p[1] - 0.25).abs() < 1e-12);
        // No member with weight: equal weights.
        assert_eq!(combine(&[(&[1.0, 0.0], 0.0)], 2), vec![1.0, 0.0]);
        assert!(combine(&[(&[], 1.0)], 2).is_empty());
    }
}
