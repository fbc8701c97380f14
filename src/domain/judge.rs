//! How well a judge — the LLM relabeler, the small classifier, the
//! denoiser — does on the project's real held-out examples, as recorded in
//! the journal (`judge_scored`). The numbers are computed in
//! `classify::judge`; this is the plain data and the trust decision that
//! bulk rules consult.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Significance level of "clearly better than": a one-sided exact
/// binomial test of the judge's correct answers against chance (1/k) and
/// against always answering the majority class of the sample.
pub const SIGNIFICANCE: f64 = 0.05;

/// One judge scored on a sample of held-out examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeReport {
    /// "relabel", "classifier", …
    pub judge: String,
    /// Class order of `confusion`.
    pub labels: Vec<String>,
    /// Examples judged.
    pub n: usize,
    pub correct: usize,
    /// Examples the judge gave no usable answer for (counted wrong).
    pub unanswered: usize,
    pub accuracy: f64,
    /// Macro-F1 over the classes present in the sample or the answers.
    pub macro_f1: f64,
    /// Rows: true class; columns: answered class, then a last column for
    /// no answer.
    pub confusion: Vec<Vec<u32>>,
    /// How often the judge gave each answer ("" = no answer).
    pub answers: BTreeMap<String, usize>,
    /// 1 / number of classes.
    pub chance: f64,
    /// Accuracy of always answering the sample's most common class.
    pub majority: f64,
    pub majority_label: String,
    /// One-sided p-values: P(at least `correct` right | level).
    pub p_vs_chance: f64,
    pub p_vs_majority: f64,
}

impl JudgeReport {
    pub fn better_than_chance(&self) -> bool {
        self.n > 0 && self.accuracy > self.chance && self.p_vs_chance < SIGNIFICANCE
    }

    pub fn better_than_majority(&self) -> bool {
        self.n > 0 && self.accuracy > self.majority && self.p_vs_majority < SIGNIFICANCE
    }

    /// Whether bulk rules may trust its verdicts: clearly better than both
    /// chance and a majority-class answer.
    pub fn trusted(&self) -> bool {
        self.better_than_chance() && self.better_than_majority()
    }

    /// "accuracy 0.22 on 60 held-out examples (chance 0.17, majority 0.20)".
    pub fn headline(&self) -> String {
        format!(
            "accuracy {:.2} (macro-F1 {:.2}) on {} held-out examples; chance {:.2}, majority class {:.2}",
            self.accuracy, self.macro_f1, self.n, self.chance, self.majority
        )
    }

    /// Why it is not trusted ("not clearly better than chance (p = 0.31)"),
    /// or `None` when it is.
    pub fn distrust(&self) -> Option<String> {
        if self.n == 0 {
            return Some("no held-out example was judged".into());
        }
        let mut why = Vec::new();
        if !self.better_than_chance() {
            why.push(format!(
                "not clearly better than chance (p = {:.2})",
                self.p_vs_chance
            ));
        }
        if !self.better_than_majority() {
            why.push(format!(
                "not clearly better than always answering {} (p = {:.2})",
                self.majority_label, self.p_vs_majority
            ));
        }
        (!why.is_empty()).then(|| why.join(" and "))
    }
}

/// The `judge_scored` event: a report and what was judged, so a report of
/// another model, template or setting is recognised as stale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeScored {
    pub report: JudgeReport,
    /// Model, template hash and settings of the judge
    /// (`Generator::relabel_fingerprint` for the relabeler; the embedder,
    /// classifier settings and data for the embedding judges).
    pub fingerprint: String,
    /// Each held-out example as the judge answered it, in the report's
    /// order (so judges can be compared pairwise and combined without
    /// asking the LLM again). Empty in journals written before judges were
    /// compared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<HeldoutAnswer>,
}

/// One held-out example as a judge answered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldoutAnswer {
    pub sample: super::SampleId,
    /// The true class (index into the report's labels).
    pub truth: usize,
    /// The judge's answer (index into the report's labels); `None`: no
    /// usable answer.
    pub answer: Option<usize>,
    /// The judge's probability per class (the report's label order),
    /// rounded to 3 decimals; empty when it gave none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probs: Vec<f32>,
}
