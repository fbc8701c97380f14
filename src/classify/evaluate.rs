//! Train on seeds alone (baseline) and on seeds + accepted examples
//! (augmented), score both on held-out real examples, and say how sure
//! the scores and their difference are (paired bootstrap, see
//! [`super::bootstrap`]).

use serde::Serialize;
use serde_json::{Value, json};

use super::bootstrap::{self, Comparison};
use super::data::{self, LabelledSet};
use super::model::{TrainConfig, argmax};
use super::scores::score;
use super::small::SmallModel;
use crate::domain::{ProjectState, Scores};

pub use crate::domain::Mistake;

/// Both models' scores, how sure they are, and the augmented model's
/// mistakes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// Which small model was trained ([`SmallModel::kind`]).
    pub model: String,
    pub baseline: Scores,
    pub augmented: Scores,
    /// Bootstrap intervals of both scores and of their paired difference
    /// (augmented − baseline).
    pub comparison: Comparison,
    pub mistakes: Vec<Mistake>,
    /// When the augmented model trained on a sample (a project past
    /// [`data::MAX_TRAIN`] seeds + accepted examples, see
    /// [`data::capped_training_set`]): how many examples it was drawn from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampled_from: Option<usize>,
}

/// Train one model and score it on `heldout`; returns its predictions too.
fn train_and_score(
    model: &SmallModel<'_>,
    classes: &[String],
    train: &LabelledSet,
    heldout: &LabelledSet,
) -> anyhow::Result<(Scores, Vec<Vec<f64>>)> {
    let proba = model.fit_predict(classes, train, &heldout.texts)?;
    let pred: Vec<usize> = proba.iter().map(|p| argmax(p)).collect();
    let mut s = score(classes, &heldout.labels, &pred);
    s.n_train = train.len();
    Ok((s, proba))
}

/// Score the baseline (trained on `seeds`) and the augmented model
/// (trained on `augmented`) on `heldout` with the n-gram model.
pub fn evaluate(
    classes: &[String],
    seeds: &LabelledSet,
    augmented: &LabelledSet,
    heldout: &LabelledSet,
    cfg: &TrainConfig,
) -> Evaluation {
    evaluate_with(&SmallModel::Ngram(cfg), classes, seeds, augmented, heldout)
        .expect("the n-gram model needs no encoder and cannot fail")
}

/// Score the baseline (trained on `seeds`) and the augmented model
/// (trained on `augmented`) on `heldout` with the given small model; fails
/// only when the model's encoder does.
pub fn evaluate_with(
    model: &SmallModel<'_>,
    classes: &[String],
    seeds: &LabelledSet,
    augmented: &LabelledSet,
    heldout: &LabelledSet,
) -> anyhow::Result<Evaluation> {
    let (baseline, base_proba) = train_and_score(model, classes, seeds, heldout)?;
    let (augmented, proba) = train_and_score(model, classes, augmented, heldout)?;
    let pred = |p: &[Vec<f64>]| p.iter().map(|q| argmax(q)).collect::<Vec<_>>();
    let comparison = bootstrap::compare(
        classes.len(),
        &heldout.labels,
        &pred(&base_proba),
        &pred(&proba),
        bootstrap::RESAMPLES,
        0,
    );
    let mistakes = proba
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let pred = argmax(p);
            let truth = heldout.labels[i];
            (pred != truth).then(|| Mistake {
                id: heldout.ids.get(i).copied().unwrap_or(0),
                text: heldout.texts[i].clone(),
                truth: classes[truth].clone(),
                predicted: classes[pred].clone(),
                confidence: p[pred],
            })
        })
        .collect();
    Ok(Evaluation {
        model: model.kind().to_string(),
        baseline,
        augmented,
        comparison,
        mistakes,
        sampled_from: None,
    })
}

/// A project's seeds and its seeds + accepted examples, the latter capped
/// at [`data::MAX_TRAIN`] ([`data::capped_training_set`]), and what the
/// cap sampled from (`None` below it).
fn project_sets(
    state: &ProjectState,
    classes: &[String],
) -> (LabelledSet, LabelledSet, Option<usize>) {
    let seeds = data::training_set(state, classes, false);
    let (augmented, total) = data::capped_training_set(state, classes, data::MAX_TRAIN);
    let sampled_from = (total > augmented.len()).then_some(total);
    (seeds, augmented, sampled_from)
}

/// [`evaluate`] on a project: seeds vs seeds + accepted generated examples
/// (at most [`data::MAX_TRAIN`] of them: every seed and an evenly spaced
/// sample of the accepted ones, see [`data::capped_training_set`]),
/// scored on `heldout` (default: the project's validation/test examples).
pub fn evaluate_project(
    state: &ProjectState,
    classes: &[String],
    heldout: Option<LabelledSet>,
    cfg: &TrainConfig,
) -> Evaluation {
    let heldout = heldout.unwrap_or_else(|| data::heldout_set(state, classes));
    let (seeds, augmented, sampled_from) = project_sets(state, classes);
    Evaluation {
        sampled_from,
        ..evaluate(classes, &seeds, &augmented, &heldout, cfg)
    }
}

/// [`evaluate_project`] with the given small model: what an S3 round
/// calls to score the project's data with the embedding model. The round
/// should call its change an improvement only when
/// [`Comparison::is_improvement`] says so.
pub fn evaluate_project_with(
    model: &SmallModel<'_>,
    state: &ProjectState,
    classes: &[String],
    heldout: Option<LabelledSet>,
) -> anyhow::Result<Evaluation> {
    let heldout = heldout.unwrap_or_else(|| data::heldout_set(state, classes));
    let (seeds, augmented, sampled_from) = project_sets(state, classes);
    Ok(Evaluation {
        sampled_from,
        ..evaluate_with(model, classes, &seeds, &augmented, &heldout)?
    })
}

/// An S3 round's scoring with the given small model: what
/// `s3::score_round` does with the n-gram model (train on seeds and on
/// seeds + accepted, score on the held-out examples, record the augmented
/// model's errors); `Ok(None)` without held-out examples. The round should
/// report [`Comparison::headline`] and call the change an improvement only
/// when [`Comparison::is_improvement`] holds.
pub fn score_round_with(
    model: &SmallModel<'_>,
    state: &ProjectState,
    classes: &[String],
    round: u32,
) -> anyhow::Result<Option<(crate::domain::RoundScored, Evaluation)>> {
    let heldout = data::heldout_set(state, classes);
    if heldout.is_empty() {
        return Ok(None);
    }
    let ev = evaluate_project_with(model, state, classes, Some(heldout))?;
    let scored = crate::domain::RoundScored {
        round,
        baseline: ev.baseline.clone(),
        augmented: ev.augmented.clone(),
        errors: ev.mistakes.iter().map(|m| m.id).collect(),
        intervals: Some(Box::new(ev.comparison.to_journal())),
    };
    Ok(Some((scored, ev)))
}

fn summary(s: &Scores, i: &bootstrap::ScoreIntervals) -> Value {
    json!({
        "accuracy": s.accuracy,
        "macro_f1": s.macro_f1,
        "accuracy_ci": [i.accuracy.low, i.accuracy.high],
        "macro_f1_ci": [i.macro_f1.low, i.macro_f1.high],
        "n_train": s.n_train,
        "n_test": s.n_test,
    })
}

impl Evaluation {
    /// The `eval --json` document:
    /// `{"model": "embedding"|"ngram",
    ///   "baseline": {accuracy, macro_f1, accuracy_ci: [lo, hi], macro_f1_ci,
    ///   n_train, n_test}, "augmented": {…, and `sampled_from` when it
    ///   trained on a sample of that many examples},
    ///   "difference": {accuracy, accuracy_ci, macro_f1, macro_f1_ci,
    ///   verdict: "better"|"worse"|"unclear", too_small: null|"…"},
    ///   "confidence_level": 0.95, "chance": {uniform, majority},
    ///   "per_class": {CLASS: {baseline_f1, augmented_f1, support}},
    ///   "confusion": {"labels": […], "matrix": [[…]]},
    ///   "errors": [{id, text, truth, predicted, confidence}]}`.
    /// Intervals are percentile bootstrap intervals over the held-out
    /// examples; the difference (augmented − baseline) is paired. The
    /// confusion matrix is the augmented model's (rows: truth, columns:
    /// prediction).
    pub fn to_json(&self) -> Value {
        let a = &self.augmented;
        let c = &self.comparison;
        let per_class: serde_json::Map<String, Value> = a
            .labels
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let support: u32 = a.confusion.get(i).map(|r| r.iter().sum()).unwrap_or(0);
                (
                    l.clone(),
                    json!({
                        "baseline_f1": self.baseline.per_class_f1.get(l).copied().unwrap_or(0.0),
                        "augmented_f1": a.per_class_f1.get(l).copied().unwrap_or(0.0),
                        "support": support,
                    }),
                )
            })
            .collect();
        let judge = |s: &Scores| {
            let r = super::judge::report_from_scores("classifier", s);
            json!({
                "chance": r.chance,
                "majority": r.majority,
                "p_vs_chance": r.p_vs_chance,
                "p_vs_majority": r.p_vs_majority,
                "trusted": r.trusted(),
            })
        };
        let verdict = match c.verdict() {
            bootstrap::Verdict::Better => "better",
            bootstrap::Verdict::Worse => "worse",
            bootstrap::Verdict::Unclear => "unclear",
        };
        let (uniform, majority) = self.chance();
        let mut augmented = summary(a, &c.new);
        if let Some(n) = self.sampled_from {
            augmented["sampled_from"] = json!(n);
        }
        json!({
            "model": self.model,
            "baseline": summary(&self.baseline, &c.old),
            "augmented": augmented,
            "difference": {
                "accuracy": c.accuracy_diff.estimate,
                "accuracy_ci": [c.accuracy_diff.low, c.accuracy_diff.high],
                "macro_f1": c.macro_f1_diff.estimate,
                "macro_f1_ci": [c.macro_f1_diff.low, c.macro_f1_diff.high],
                "verdict": verdict,
                "too_small": c.too_small(),
            },
            "confidence_level": c.level,
            "chance": {"uniform": uniform, "majority": majority},
            "judge": {"baseline": judge(&self.baseline), "augmented": judge(a)},
            "per_class": per_class,
            "confusion": {"labels": a.labels, "matrix": a.confusion},
            "errors": self.mistakes,
        })
    }

    /// Chance-level accuracy on the held-out set: guessing uniformly, and
    /// always answering its most common class.
    pub fn chance(&self) -> (f64, f64) {
        let a = &self.augmented;
        let k = a.labels.len().max(1);
        let most = a
            .confusion
            .iter()
            .map(|r| r.iter().sum::<u32>())
            .max()
            .unwrap_or(0);
        let majority = if a.n_test == 0 {
            0.0
        } else {
            f64::from(most) / a.n_test as f64
        };
        (1.0 / k as f64, majority)
    }

    /// A readable report: the two scores, F1 per class and the confusion
    /// matrix.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let (b, a) = (&self.baseline, &self.augmented);
        let c = &self.comparison;
        let mut out = String::new();
        let w = a.labels.iter().map(|l| l.len()).max().unwrap_or(5).max(10);
        let ci =
            |i: &bootstrap::Interval| format!("{:.3} [{:.3}, {:.3}]", i.estimate, i.low, i.high);
        let _ = writeln!(
            out,
            "{:<w$}  {:<21}  {:<21}  {:>7}",
            "model", "accuracy [95% CI]", "macro-F1 [95% CI]", "trained"
        );
        for (name, s, i) in [("baseline", b, &c.old), ("augmented", a, &c.new)] {
            let _ = writeln!(
                out,
                "{name:<w$}  {:<21}  {:<21}  {:>7}",
                ci(&i.accuracy),
                ci(&i.macro_f1),
                s.n_train
            );
        }
        let signed =
            |i: &bootstrap::Interval| format!("{:+.3} [{:+.3}, {:+.3}]", i.estimate, i.low, i.high);
        let _ = writeln!(
            out,
            "{:<w$}  {:<21}  {:<21}  {}",
            "difference",
            signed(&c.accuracy_diff),
            signed(&c.macro_f1_diff),
            c.verdict().as_str()
        );
        let (uniform, majority) = self.chance();
        let _ = writeln!(
            out,
            "(baseline: seeds only; augmented: seeds + accepted examples; difference: augmented − \
             baseline, paired)"
        );
        let _ = writeln!(
            out,
            "\nheld-out examples: {}; chance accuracy {uniform:.3} (uniform), {majority:.3} (majority class); \
             small model: {}",
            a.n_test, self.model
        );
        if let Some(msg) = c.too_small() {
            let _ = writeln!(out, "{msg}");
        }
        for (name, s) in [("baseline", b), ("augmented", a)] {
            let r = super::judge::report_from_scores("classifier", s);
            let _ = writeln!(out, "{name}: {}", super::judge::verdict_line(&r));
        }
        out.push('\n');
        let _ = writeln!(
            out,
            "{:<w$}  {:>8}  {:>8}  {:>7}",
            "class", "F1 base", "F1 aug", "support"
        );
        for (i, l) in a.labels.iter().enumerate() {
            let support: u32 = a.confusion[i].iter().sum();
            let _ = writeln!(
                out,
                "{l:<w$}  {:>8.3}  {:>8.3}  {support:>7}",
                b.per_class_f1.get(l).copied().unwrap_or(0.0),
                a.per_class_f1[l],
            );
        }
        let _ = writeln!(
            out,
            "\nconfusion (augmented; rows = truth, columns = predicted)"
        );
        let cw = a
            .confusion
            .iter()
            .flatten()
            .map(|c| c.to_string().len())
            .max()
            .unwrap_or(1)
            .max(3);
        let _ = write!(out, "{:<w$}", "");
        for i in 0..a.labels.len() {
            let _ = write!(out, " {:>cw$}", format!("#{}", i + 1));
        }
        out.push('\n');
        for (i, l) in a.labels.iter().enumerate() {
            let _ = write!(out, "{:<w$}", format!("#{} {l}", i + 1));
            for c in &a.confusion[i] {
                let _ = write!(out, " {c:>cw$}");
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::toy;

    fn set(d: &toy::ToyData) -> LabelledSet {
        LabelledSet {
            ids: (1..=d.texts.len() as u64).collect(),
            texts: d.texts.clone(),
            labels: d.labels.clone(),
            unknown: Vec::new(),
        }
    }

    #[test]
    fn more_data_scores_higher_and_json_has_the_schema() {
        let big = toy::synthetic(600, 3, 12, 1);
        let test = set(&toy::synthetic(300, 3, 12, 2));
        let mut seeds = set(&big);
        seeds.ids.truncate(6);
        seeds.texts.truncate(6);
        seeds.labels.truncate(6);
        let e = evaluate(
            &big.classes,
            &seeds,
            &set(&big),
            &test,
            &TrainConfig::default(),
        );
        assert!(e.augmented.accuracy > e.baseline.accuracy + 0.1, "{e:?}");
        assert_eq!(e.augmented.n_train, 600);
        assert_eq!(e.baseline.n_train, 6);
        let wrong = e.augmented.n_test - (e.augmented.accuracy * 300.0).round() as usize;
        assert_eq!(e.mistakes.len(), wrong);
        assert!(e.mistakes.iter().all(|m| m.truth != m.predicted));

        let j = e.to_json();
        for k in ["baseline", "augmented"] {
            assert!(
                j[k]["accuracy"].is_f64() && j[k]["macro_f1"].is_f64(),
                "{j}"
            );
        }
        assert_eq!(j["per_class"].as_object().unwrap().len(), 3);
        assert!(j["per_class"]["class0"]["augmented_f1"].is_f64());
        assert_eq!(j["confusion"]["labels"].as_array().unwrap().len(), 3);
        let total: u64 = j["confusion"]["matrix"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap())
            .map(|c| c.as_u64().unwrap())
            .sum();
        assert_eq!(total, 300);
        let table = e.render();
        assert!(
            table.contains("augmented")
                && table.contains("difference")
                && table.contains("#1 class0"),
            "{table}"
        );
        // The classifier is a judge too: measured against chance and the
        // majority class of the held-out set.
        let ja = &j["judge"]["augmented"];
        assert!((ja["chance"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(ja["trusted"], true, "{ja}");
        assert!(
            table.contains("augmented: clearly better than chance"),
            "{table}"
        );
    }

    /// The embedding path end to end with a toy encoder: evaluate_with and
    /// score_round_with train the linear model on the encoder's vectors and
    /// report it; a failing encoder is an error, not a panic.
    #[test]
    fn embedding_model_through_evaluate_and_a_round() {
        use crate::classify::data::tests::state_with;
        use crate::classify::small::HashedBagEncoder;
        use crate::classify::{LinearConfig, TextEncoder};
        use crate::domain::Origin;
        let enc = HashedBagEncoder { dim: 256 };
        let cfg = LinearConfig::default();
        let model = SmallModel::Embedding {
            encoder: &enc,
            cfg: &cfg,
        };
        let big = toy::synthetic(400, 3, 12, 1);
        let test = set(&toy::synthetic(200, 3, 12, 2));
        let mut seeds = set(&big);
        seeds.ids.truncate(6);
        seeds.texts.truncate(6);
        seeds.labels.truncate(6);
        let e = evaluate_with(&model, &big.classes, &seeds, &set(&big), &test).unwrap();
        assert_eq!(e.model, "embedding");
        assert!(e.augmented.accuracy > 0.55, "{:?}", e.augmented);
        assert!(e.comparison.is_improvement(), "{}", e.comparison.headline());

        let classes: Vec<String> = ["A", "B"].iter().map(|s| s.to_string()).collect();
        let st = state_with(
            &[
                ("apples and pears", "A", Origin::Seed),
                ("cars and trucks", "B", Origin::Seed),
                ("pears and apples", "A", Origin::Validation),
                ("trucks and cars", "B", Origin::Validation),
            ],
            vec![],
        );
        let (scored, ev) = score_round_with(&model, &st, &classes, 3).unwrap().unwrap();
        assert_eq!(scored.round, 3);
        assert_eq!(ev.augmented.n_test, 2);
        assert!(
            ev.comparison.too_small().is_some() || ev.comparison.accuracy_diff.half_width() <= 0.05
        );

        struct Broken;
        impl TextEncoder for Broken {
            fn encode(&self, _: &[String]) -> anyhow::Result<crate::classify::Dense> {
                anyhow::bail!("no model")
            }
            fn name(&self) -> String {
                "broken".into()
            }
        }
        let bad = SmallModel::Embedding {
            encoder: &Broken,
            cfg: &cfg,
        };
        let err = score_round_with(&bad, &st, &classes, 1).unwrap_err();
        assert!(err.to_string().contains("no model"));
    }
}
