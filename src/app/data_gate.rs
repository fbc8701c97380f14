//! The data gate before export: does the accepted data help on the real
//! held-out examples? The small model is trained on the seeds alone and on
//! seeds + accepted examples and both are scored on the held-out examples
//! (`classify::evaluate_with`, with the paired bootstrap interval of the
//! difference). When the accepted data lowers the score beyond the
//! interval, export says so plainly, naming the classes that lost most,
//! and `export --strict` refuses.
//!
//! Past `classify::data::MAX_TRAIN` seeds + accepted examples the
//! augmented model trains on every seed and an evenly spaced sample of
//! each class of the accepted examples (`classify::capped_training_set`),
//! and the message says so: the gate's memory and time are bounded by the
//! cap, not by the accepted set.
//!
//! Pure given the small model: the CLI (`export`) and the TUI's export
//! dialog (in a job off the UI task) call [`check`].

use crate::classify::bootstrap::Verdict;
use crate::classify::{Evaluation, SmallModel};
use crate::domain::ProjectState;

/// What the gate found.
#[derive(Debug, Clone, PartialEq)]
pub struct DataGate {
    pub evaluation: Evaluation,
    /// The classes whose F1 fell, most first: (class, augmented − baseline).
    pub losers: Vec<(String, f64)>,
}

/// What the gate says, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateVerdict {
    /// The accepted data lowers the held-out score beyond the interval.
    Worse,
    /// The score rises beyond the interval.
    Better,
    /// No change the held-out examples can resolve.
    Unclear,
}

impl DataGate {
    /// Worse when accuracy or macro-F1 fell with the whole interval below
    /// 0; better when macro-F1 rose with the interval above 0.
    pub fn verdict(&self) -> GateVerdict {
        let c = &self.evaluation.comparison;
        if Verdict::of(&c.macro_f1_diff) == Verdict::Worse
            || Verdict::of(&c.accuracy_diff) == Verdict::Worse
        {
            GateVerdict::Worse
        } else if Verdict::of(&c.macro_f1_diff) == Verdict::Better {
            GateVerdict::Better
        } else {
            GateVerdict::Unclear
        }
    }

    /// Whether `export --strict` refuses.
    pub fn refuses(&self) -> bool {
        self.verdict() == GateVerdict::Worse
    }

    /// What `export --strict` (and the TUI's strict export) says when it
    /// refuses, or `None` when it exports.
    pub fn strict_refusal(&self) -> Option<String> {
        self.refuses().then(|| {
            format!(
                "{}\nexport --strict refuses (export without --strict, or with strict off in the TUI, to write it anyway)",
                self.message()
            )
        })
    }

    /// Plain sentences for the terminal and the export dialog.
    pub fn message(&self) -> String {
        let e = &self.evaluation;
        let c = &e.comparison;
        let added = e.augmented.n_train.saturating_sub(e.baseline.n_train);
        let accepted = match e.sampled_from {
            Some(total) => format!(
                "{added} accepted (an evenly spaced sample of {})",
                total.saturating_sub(e.baseline.n_train)
            ),
            None => format!("{added} accepted"),
        };
        let scores = format!(
            "seeds only: accuracy {:.3}, macro-F1 {:.3}; seeds + {}: accuracy {:.3}, \
             macro-F1 {:.3} (difference {:+.3} [{:+.3}, {:+.3}], {} held-out examples, {} model)",
            e.baseline.accuracy,
            e.baseline.macro_f1,
            accepted,
            e.augmented.accuracy,
            e.augmented.macro_f1,
            c.macro_f1_diff.estimate,
            c.macro_f1_diff.low,
            c.macro_f1_diff.high,
            c.n_test,
            e.model
        );
        match self.verdict() {
            GateVerdict::Worse => {
                let lost: Vec<String> = self
                    .losers
                    .iter()
                    .take(3)
                    .map(|(l, d)| format!("{l} {d:+.2}"))
                    .collect();
                format!(
                    "The accepted examples make the classifier WORSE on the held-out examples — {scores}. \
                     Classes that lost most (F1): {}. Review or reject the accepted examples of those classes.",
                    if lost.is_empty() {
                        "none in particular".into()
                    } else {
                        lost.join(", ")
                    }
                )
            }
            GateVerdict::Better => {
                format!("The accepted examples help on the held-out examples — {scores}.")
            }
            GateVerdict::Unclear => {
                let tail = c.too_small().map(|s| format!(" {s}")).unwrap_or_default();
                format!(
                    "The accepted examples make no clear difference on the held-out examples — {scores}.{tail}"
                )
            }
        }
    }
}

/// The gate as `straddle export` and the TUI's export dialog run it: the
/// project's small model (embedding, else n-gram with a note; vectors
/// from the vector store, new ones added best effort), then [`check`].
/// Returns the gate and the model note.
pub fn run(
    config: &crate::domain::ProjectConfig,
    cache_dir: &std::path::Path,
    settings: &crate::domain::GenerationSettings,
    state: &ProjectState,
) -> anyhow::Result<(Option<DataGate>, Option<String>)> {
    let names: Vec<String> = config.classes.iter().map(|c| c.name.clone()).collect();
    let chosen = crate::app::small_model::choose_for(
        config,
        cache_dir,
        settings,
        names.len(),
        crate::app::small_model::ModelChoice::Auto,
        true,
    )?;
    let gate = check(&chosen.model(), state, &names)?;
    Ok((gate, chosen.note.clone()))
}

/// Run the gate on a snapshot: `None` when there is nothing to compare
/// (no held-out examples, or no accepted generated example).
pub fn check(
    model: &SmallModel<'_>,
    state: &ProjectState,
    classes: &[String],
) -> anyhow::Result<Option<DataGate>> {
    let heldout = crate::classify::heldout_set(state, classes);
    let accepted = state.generated().any(|s| {
        s.status() == crate::domain::Status::Accepted
            && classes
                .iter()
                .any(|c| c == s.effective_label(state.take_relabel))
    });
    if heldout.is_empty() || !accepted {
        return Ok(None);
    }
    let evaluation = crate::classify::evaluate_project_with(model, state, classes, Some(heldout))?;
    let mut losers: Vec<(String, f64)> = classes
        .iter()
        .map(|c| {
            let b = evaluation
                .baseline
                .per_class_f1
                .get(c)
                .copied()
                .unwrap_or(0.0);
            let a = evaluation
                .augmented
                .per_class_f1
                .get(c)
                .copied()
                .unwrap_or(0.0);
            (c.clone(), a - b)
        })
        .filter(|(_, d)| *d < 0.0)
        .collect();
    losers.sort_by(|a, b| a.1.total_cmp(&b.1));
    Ok(Some(DataGate { evaluation, losers }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::TrainConfig;
    use crate::domain::testing::state_with;
    use crate::domain::{Actor, Decided, Decision, DecisionKind, EventKind, Origin};

    fn accept(sample: u64) -> EventKind {
        EventKind::Decided(Decided {
            sample,
            decision: Decision {
                kind: DecisionKind::Accept,
                label: None,
                reason: None,
                by: Actor::Rule("test".into()),
            },
        })
    }

    /// Accepted examples labelled the wrong way round make the held-out
    /// score worse, and the gate names the classes.
    #[test]
    fn mislabelled_accepted_data_is_called_worse() {
        let rows = crate::domain::testing::swapped_label_rows();
        let refs: Vec<(&str, &str, Origin)> =
            rows.iter().map(|(t, l, o)| (t.as_str(), *l, *o)).collect();
        let n_seeds = 6u64;
        let events: Vec<EventKind> = (n_seeds + 1..=n_seeds + 80).map(accept).collect();
        let st = state_with(&refs, events);
        let classes = vec!["sport".to_string(), "food".to_string()];
        let cfg = TrainConfig::for_classes(2, 0);
        let g = check(&SmallModel::Ngram(&cfg), &st, &classes)
            .unwrap()
            .unwrap();
        assert_eq!(g.verdict(), GateVerdict::Worse, "{}", g.message());
        assert!(g.refuses());
        let m = g.message();
        assert!(
            m.contains("WORSE") && m.contains("Classes that lost most"),
            "{m}"
        );
        assert!(!g.losers.is_empty());
    }

    #[test]
    fn nothing_accepted_means_nothing_to_gate() {
        let st = state_with(
            &[("a", "x", Origin::Seed), ("b", "y", Origin::Validation)],
            vec![],
        );
        let cfg = TrainConfig::for_classes(2, 0);
        let classes = vec!["x".to_string(), "y".to_string()];
        assert!(
            check(&SmallModel::Ngram(&cfg), &st, &classes)
                .unwrap()
                .is_none()
        );
    }
}
