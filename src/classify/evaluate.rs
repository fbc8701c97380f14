//! Train on seeds alone (baseline) and on seeds + accepted examples
//! (augmented), score both on held-out real examples.

use serde::Serialize;
use serde_json::{Value, json};

use super::data::{self, LabelledSet};
use super::model::{Classifier, TrainConfig, argmax};
use super::scores::score;
use crate::domain::{ProjectState, Scores};

pub use crate::domain::Mistake;

/// Both models' scores and the augmented model's mistakes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub baseline: Scores,
    pub augmented: Scores,
    pub mistakes: Vec<Mistake>,
}

/// Train one model and score it on `heldout`; returns its predictions too.
fn train_and_score(
    classes: &[String],
    train: &LabelledSet,
    heldout: &LabelledSet,
    cfg: &TrainConfig,
) -> (Scores, Vec<Vec<f64>>) {
    let model = Classifier::train(classes, &train.texts, &train.labels, cfg);
    let proba = model.predict_proba_batch(&heldout.texts);
    let pred: Vec<usize> = proba.iter().map(|p| argmax(p)).collect();
    let mut s = score(classes, &heldout.labels, &pred);
    s.n_train = train.len();
    (s, proba)
}

/// Score the baseline (trained on `seeds`) and the augmented model
/// (trained on `augmented`) on `heldout`.
pub fn evaluate(
    classes: &[String],
    seeds: &LabelledSet,
    augmented: &LabelledSet,
    heldout: &LabelledSet,
    cfg: &TrainConfig,
) -> Evaluation {
    let (baseline, _) = train_and_score(classes, seeds, heldout, cfg);
    let (augmented, proba) = train_and_score(classes, augmented, heldout, cfg);
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
    Evaluation {
        baseline,
        augmented,
        mistakes,
    }
}

/// [`evaluate`] on a project: seeds vs seeds + accepted generated examples,
/// scored on `heldout` (default: the project's validation/test examples).
pub fn evaluate_project(
    state: &ProjectState,
    classes: &[String],
    heldout: Option<LabelledSet>,
    cfg: &TrainConfig,
) -> Evaluation {
    let heldout = heldout.unwrap_or_else(|| data::heldout_set(state, classes));
    let seeds = data::training_set(state, classes, false);
    let augmented = data::training_set(state, classes, true);
    evaluate(classes, &seeds, &augmented, &heldout, cfg)
}

fn summary(s: &Scores) -> Value {
    json!({
        "accuracy": s.accuracy,
        "macro_f1": s.macro_f1,
        "n_train": s.n_train,
        "n_test": s.n_test,
    })
}

impl Evaluation {
    /// The `eval --json` document:
    /// `{"baseline": {accuracy, macro_f1, n_train, n_test},
    ///   "augmented": {…}, "per_class": {CLASS: {baseline_f1, augmented_f1,
    ///   support}}, "confusion": {"labels": […], "matrix": [[…]]},
    ///   "errors": [{id, text, truth, predicted, confidence}]}`.
    /// The confusion matrix is the augmented model's (rows: truth, columns:
    /// prediction).
    pub fn to_json(&self) -> Value {
        let a = &self.augmented;
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
        json!({
            "baseline": summary(&self.baseline),
            "augmented": summary(a),
            "judge": {"baseline": judge(&self.baseline), "augmented": judge(a)},
            "per_class": per_class,
            "confusion": {"labels": a.labels, "matrix": a.confusion},
            "errors": self.mistakes,
        })
    }

    /// A readable report: the two scores, F1 per class and the confusion
    /// matrix.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let (b, a) = (&self.baseline, &self.augmented);
        let mut out = String::new();
        let w = a.labels.iter().map(|l| l.len()).max().unwrap_or(5).max(9);
        let _ = writeln!(
            out,
            "{:<w$}  {:>8}  {:>8}  {:>7}",
            "model", "accuracy", "macro-F1", "trained"
        );
        for (name, s) in [("baseline", b), ("augmented", a)] {
            let _ = writeln!(
                out,
                "{name:<w$}  {:>8.3}  {:>8.3}  {:>7}",
                s.accuracy, s.macro_f1, s.n_train
            );
        }
        let _ = writeln!(out, "\nheld-out examples: {}", a.n_test);
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
            table.contains("augmented") && table.contains("#1 class0"),
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
}
