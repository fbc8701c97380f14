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
