//! The pure steps of an S3 round, shared by `straddle loop` and the TUI:
//! score the current data ([`score_round`]) and choose the errors the next
//! round extrapolates ([`extrapolation_sources`]). Planning the requests is
//! the `extrapolate` strategy's job (`augment::strategy::extrapolate`),
//! running them the generation session's.

use super::data;
use super::evaluate::{Evaluation, Mistake};
use super::model::TrainConfig;
use crate::domain::{Origin, ProjectState, RoundScored};

/// Train and score on the project's held-out examples
/// ([`super::evaluate_project`]: the augmented set capped at
/// [`data::MAX_TRAIN`]); `None` when there are none. The event records the augmented model's errors.
pub fn score_round(
    state: &ProjectState,
    classes: &[String],
    cfg: &TrainConfig,
    round: u32,
) -> Option<(RoundScored, Evaluation)> {
    let heldout = data::heldout_set(state, classes);
    if heldout.is_empty() {
        return None;
    }
    let ev = super::evaluate::evaluate_project(state, classes, Some(heldout), cfg);
    let scored = RoundScored {
        round,
        baseline: ev.baseline.clone(),
        augmented: ev.augmented.clone(),
        errors: ev.mistakes.iter().map(|m| m.id).collect(),
        intervals: Some(Box::new(ev.comparison.to_journal())),
    };
    Some((scored, ev))
}

/// The mistakes extrapolation may use. With both validation and test
/// examples in the project only validation errors seed prompts, so the
/// test examples stay unseen by the LLM and their score stays honest (as
/// in S3, where the errors come from a validation set); with only one kind,
/// its errors are used.
pub fn extrapolation_sources(state: &ProjectState, mistakes: &[Mistake]) -> Vec<Mistake> {
    let has = |o: Origin| state.samples.iter().any(|s| s.origin == o);
    let validation_only = has(Origin::Validation) && has(Origin::Test);
    mistakes
        .iter()
        .filter(|m| {
            !validation_only
                || state
                    .sample(m.id)
                    .is_some_and(|s| s.origin == Origin::Validation)
        })
        .cloned()
        .collect()
}

/// The number of the next round (one past the last recorded).
pub fn next_round(state: &ProjectState) -> u32 {
    state.rounds.iter().map(|r| r.round).max().unwrap_or(0) + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::data::tests::state_with;
    use crate::domain::{Class, Origin};

    fn classes() -> Vec<Class> {
        crate::domain::testing::classes(&["sports", "food", "weather"], |c| format!("{c} talk"))
    }

    fn mistake(id: u64, text: &str, truth: &str, predicted: &str, confidence: f64) -> Mistake {
        Mistake {
            id,
            text: text.into(),
            truth: truth.into(),
            predicted: predicted.into(),
            confidence,
        }
    }

    #[test]
    fn test_examples_seed_prompts_only_without_validation_examples() {
        let both = state_with(
            &[
                ("a", "sports", Origin::Validation),
                ("b", "food", Origin::Test),
            ],
            vec![],
        );
        let ms = [
            mistake(1, "a", "sports", "food", 0.6),
            mistake(2, "b", "food", "sports", 0.6),
        ];
        let ids = |v: Vec<Mistake>| v.into_iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(ids(extrapolation_sources(&both, &ms)), [1]);
        let test_only = state_with(
            &[("a", "sports", Origin::Test), ("b", "food", Origin::Test)],
            vec![],
        );
        assert_eq!(ids(extrapolation_sources(&test_only, &ms)), [1, 2]);
    }

    #[test]
    fn scoring_records_the_errors() {
        let st = state_with(
            &[
                ("goal goal match", "sports", Origin::Seed),
                ("soup bread soup", "food", Origin::Seed),
                ("match goal", "sports", Origin::Validation),
                ("zzz qqq", "food", Origin::Test),
            ],
            vec![],
        );
        let names: Vec<String> = classes().iter().map(|c| c.name.clone()).collect();
        let (scored, ev) = score_round(&st, &names, &TrainConfig::default(), 1).unwrap();
        assert_eq!(scored.round, 1);
        assert_eq!(scored.augmented.n_test, 2);
        assert_eq!(
            scored.errors,
            ev.mistakes.iter().map(|m| m.id).collect::<Vec<_>>()
        );
        assert!(!scored.errors.contains(&3), "the easy one is right");
        let empty = state_with(&[("goal", "sports", Origin::Seed)], vec![]);
        assert!(score_round(&empty, &names, &TrainConfig::default(), 1).is_none());
        assert_eq!(next_round(&st), 1);
    }
}
