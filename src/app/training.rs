//! Jobs on the small classifier shared by the front ends: the training
//! settings of a project, one S3 round (train → score → mistakes →
//! signals) and the review pool's training signals. Each works on a
//! snapshot of the project state handed over by the caller (the TUI's own
//! fold, the CLI's open project), never by re-reading the journal.

use std::collections::HashMap;

use crate::classify::{self, Mistake, SignalConfig, Signals, TrainConfig, s3};
use crate::domain::{GenerationSettings, ProjectState, RoundScored, SampleId};

/// The classifier settings of a project: the defaults sized for its
/// classes, seeded with the generation seed so scores are reproducible.
pub fn train_config(settings: &GenerationSettings, classes: usize) -> TrainConfig {
    TrainConfig::for_classes(classes, settings.seed)
}

/// What a finished round job brings back.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundResult {
    pub scored: RoundScored,
    /// The augmented model's held-out mistakes.
    pub mistakes: Vec<Mistake>,
    /// Training-dynamics signals of the review pool, computed on the same
    /// data.
    pub signals: HashMap<SampleId, Signals>,
}

/// The message for a project without held-out examples, with the fix.
pub fn no_heldout_message() -> String {
    "no held-out examples to score on: import real labelled examples with \
     `straddle import DIR FILE --as validation` (or --as test), then press R again"
        .into()
}

/// Train, score on the held-out examples and compute signals: one S3
/// round of `state` (the snapshot the caller took).
pub fn round(
    state: &ProjectState,
    names: &[String],
    settings: &GenerationSettings,
    round: u32,
) -> Result<RoundResult, String> {
    let cfg = train_config(settings, names.len());
    let (scored, ev) = s3::score_round(state, names, &cfg, round).ok_or_else(no_heldout_message)?;
    Ok(RoundResult {
        scored,
        mistakes: ev.mistakes,
        signals: signals(state, names, settings),
    })
}

/// Training-dynamics signals of the review pool of `state`.
pub fn signals(
    state: &ProjectState,
    names: &[String],
    settings: &GenerationSettings,
) -> HashMap<SampleId, Signals> {
    let cfg = SignalConfig {
        train: train_config(settings, names.len()),
        ..SignalConfig::default()
    };
    classify::signals(state, names, &cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Origin;
    use crate::domain::testing::state_with;

    /// A round on a snapshot: trains, scores on the held-out examples and
    /// computes signals for the review pool, with no project on disk.
    #[test]
    fn a_round_scores_a_snapshot_and_says_how_to_add_heldout_examples() {
        let mut rows: Vec<(String, &str, Origin)> = Vec::new();
        for i in 0..6 {
            rows.push((format!("goal match team score {i}"), "sports", Origin::Seed));
            rows.push((format!("soup bread dinner taste {i}"), "food", Origin::Seed));
        }
        rows.push((
            "the team scored a goal".into(),
            "sports",
            Origin::Validation,
        ));
        rows.push((
            "bread and soup for dinner".into(),
            "food",
            Origin::Validation,
        ));
        let rows: Vec<(&str, &str, Origin)> =
            rows.iter().map(|(t, l, o)| (t.as_str(), *l, *o)).collect();
        let st = state_with(&rows, vec![]);
        let names = vec!["sports".to_string(), "food".to_string()];
        let settings = GenerationSettings::default();
        let r = round(&st, &names, &settings, 1).unwrap();
        assert_eq!(r.scored.round, 1);
        assert_eq!(r.scored.augmented.n_test, 2);
        assert_eq!(r.scored.augmented.n_train, 12);
        assert_eq!(r.scored.augmented.labels, ["sports", "food"]);
        assert_eq!(r.signals.len(), 12, "one per seed");
        assert_eq!(
            r.scored.errors,
            r.mistakes.iter().map(|m| m.id).collect::<Vec<_>>()
        );
        let seeds_only = state_with(&rows[..12], vec![]);
        let e = round(&seeds_only, &names, &settings, 1).unwrap_err();
        assert!(e.contains("--as validation"), "{e}");
    }
}
