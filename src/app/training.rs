//! Jobs on the small classifier shared by the front ends: the training
//! settings of a project, one S3 round (train → score → mistakes →
//! signals) and the review pool's training signals. Each works on a
//! snapshot of the project state handed over by the caller (the TUI's own
//! fold, the CLI's open project), never by re-reading the journal.

use crate::classify::doubt::ModelDoubtConfig;
use crate::classify::{
    self, Comparison, Mistake, SignalConfig, SignalMap, SmallModel, TrainConfig, Verdict,
};
use crate::domain::{GenerationSettings, ProjectState, RoundScored};

/// The classifier settings of a project: the defaults sized for its
/// classes, seeded with the generation seed so scores are reproducible.
pub fn train_config(settings: &GenerationSettings, classes: usize) -> TrainConfig {
    TrainConfig::for_classes(classes, settings.seed)
}

/// What a finished round job brings back.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundResult {
    pub scored: RoundScored,
    /// Bootstrap intervals of both scores and of their paired difference:
    /// the round is an improvement only if [`Comparison::is_improvement`].
    pub comparison: Comparison,
    /// Which small model scored it ([`SmallModel::kind`]).
    pub model: String,
    /// Why the n-gram model stood in for the embedding one, if it did
    /// (set by the caller from `small_model::Chosen::note`).
    pub note: Option<String>,
    /// The augmented model's held-out mistakes.
    pub mistakes: Vec<Mistake>,
    /// Training-dynamics signals of the review pool, computed on the same
    /// data with the same model.
    pub signals: SignalMap,
}

impl RoundResult {
    /// Whether the round may be called an improvement: only when the
    /// interval of the macro-F1 difference lies above 0.
    pub fn is_improvement(&self) -> bool {
        self.comparison.is_improvement()
    }

    /// The round's line: see [`round_line`].
    pub fn line(&self) -> String {
        round_line(&self.scored, &self.comparison)
    }
}

/// The verdict of a comparison in one word: `better`, `worse` or
/// `unclear` (the interval includes 0).
pub fn verdict_word(c: &Comparison) -> &'static str {
    match c.verdict() {
        Verdict::Better => "better",
        Verdict::Worse => "worse",
        Verdict::Unclear => "unclear",
    }
}

/// One labelled line for a scored round, e.g.
/// `r1 macro-F1 0.619 → 0.570 (−0.049 [−0.120, +0.020], unclear)`: seeds
/// only → seeds + accepted, the paired difference with its bootstrap
/// interval and the verdict (an improvement only when the interval is
/// above 0).
pub fn round_line(scored: &RoundScored, c: &Comparison) -> String {
    let d = &c.macro_f1_diff;
    format!(
        "r{} macro-F1 {:.3} → {:.3} ({} [{}, {}], {})",
        scored.round,
        scored.baseline.macro_f1,
        scored.augmented.macro_f1,
        signed(d.estimate),
        signed(d.low),
        signed(d.high),
        verdict_word(c)
    )
}

/// `+0.031` / `−0.049` (a real minus sign).
fn signed(v: f64) -> String {
    let s = format!("{v:+.3}");
    s.replacen('-', "\u{2212}", 1)
}

/// The message for a project without held-out examples, with the fix.
pub fn no_heldout_message() -> String {
    "no held-out examples to score on: import real labelled examples with \
     `straddle import DIR FILE --as validation` (or --as test), then press R again"
        .into()
}

/// Train `model`, score on the held-out examples and compute signals:
/// one S3 round of `state` (the snapshot the caller took).
pub fn round(
    model: &SmallModel<'_>,
    state: &ProjectState,
    names: &[String],
    round: u32,
) -> Result<RoundResult, String> {
    let (scored, ev) = classify::score_round_with(model, state, names, round)
        .map_err(|e| format!("{e:#}"))?
        .ok_or_else(no_heldout_message)?;
    Ok(RoundResult {
        scored,
        comparison: ev.comparison,
        model: ev.model,
        note: None,
        mistakes: ev.mistakes,
        signals: signals(model, state, names)?,
    })
}

/// Training-dynamics signals of the review pool of `state`, computed with
/// `model`. With the embedding model they also carry its doubt
/// (`classify::doubt::project_doubt`): out-of-fold disagreement with the
/// intended label, low calibrated confidence and disagreeing nearest
/// neighbours, as reasons the review order weighs and shows. The pool is
/// encoded once for both, and the model trains on at most
/// `classify::MAX_TRAIN` of its examples (see `classify::pool`).
pub fn signals(
    model: &SmallModel<'_>,
    state: &ProjectState,
    names: &[String],
) -> Result<SignalMap, String> {
    classify::signals_and_doubt(
        model,
        state,
        names,
        &SignalConfig::default(),
        Some(&ModelDoubtConfig::default()),
    )
    .map_err(|e| format!("{e:#}"))
}

/// [`signals`] on the review pool taken from the state
/// (`classify::pool::SharedPool::of`): the TUI's `T` job holds that (its
/// texts shared with the state) instead of a snapshot of every sample.
/// The same results.
pub fn pool_signals(
    model: &SmallModel<'_>,
    pool: &classify::pool::SharedPool,
    names: &[String],
) -> Result<SignalMap, String> {
    classify::shared_signals_and_doubt(
        model,
        pool,
        names,
        &SignalConfig::default(),
        Some(&ModelDoubtConfig::default()),
    )
    .map_err(|e| format!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::small_model::Chosen;
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
        let chosen = Chosen::ngram(&GenerationSettings::default(), names.len());
        let model = chosen.model();
        let r = round(&model, &st, &names, 1).unwrap();
        assert_eq!(r.model, "ngram");
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
        let e = round(&model, &seeds_only, &names, 1).unwrap_err();
        assert!(e.contains("--as validation"), "{e}");
    }

    /// Two held-out examples cannot show a change: the round's interval
    /// includes 0, so it is reported as unclear and never as an
    /// improvement, even when the augmented model scores higher.
    #[test]
    fn a_round_whose_interval_includes_zero_is_unclear_not_an_improvement() {
        let mut rows: Vec<(String, &str, Origin)> = vec![
            ("goal match".into(), "sports", Origin::Seed),
            ("soup bread".into(), "food", Origin::Seed),
            (
                "the referee blew the whistle".into(),
                "sports",
                Origin::Validation,
            ),
            ("a bowl of hot stew".into(), "food", Origin::Validation),
        ];
        for i in 0..4 {
            rows.push((
                format!("referee whistle player {i}"),
                "sports",
                Origin::Generated,
            ));
            rows.push((format!("bowl stew hot {i}"), "food", Origin::Generated));
        }
        let rows: Vec<(&str, &str, Origin)> =
            rows.iter().map(|(t, l, o)| (t.as_str(), *l, *o)).collect();
        let accepted = (5..=12).map(crate::domain::testing::accept).collect();
        let st = state_with(&rows, accepted);
        let names = vec!["sports".to_string(), "food".to_string()];
        let chosen = Chosen::ngram(&GenerationSettings::default(), names.len());
        let r = round(&chosen.model(), &st, &names, 1).unwrap();
        let d = r.comparison.macro_f1_diff;
        assert!(d.low <= 0.0 && d.high >= 0.0, "{d:?}");
        assert!(!r.is_improvement());
        let line = r.line();
        assert!(line.starts_with("r1 macro-F1 "), "{line}");
        assert!(line.ends_with(", unclear)"), "{line}");
        assert!(line.contains(" → ") && line.contains('['), "{line}");
    }

    /// With an embedding model (a toy encoder here) the signals carry the
    /// model's doubt: a generated example whose label was flipped gets
    /// the out-of-fold and neighbour reasons and rises in doubt.
    #[test]
    fn signals_on_the_embedding_model_carry_its_doubt_reasons() {
        use crate::classify::doubt::{MODEL_DISAGREES, NEIGHBOURS_DISAGREE};
        use crate::classify::small::HashedBagEncoder;
        let mut rows: Vec<(String, &str, Origin)> = Vec::new();
        for i in 0..6 {
            rows.push((format!("apples pears plums {i}"), "fruit", Origin::Seed));
            rows.push((format!("trucks engines wheels {i}"), "cars", Origin::Seed));
        }
        // Fruit, labelled cars.
        rows.push(("apples pears plums ripe".into(), "cars", Origin::Generated));
        rows.push(("trucks wheels fast".into(), "cars", Origin::Generated));
        let rows: Vec<(&str, &str, Origin)> =
            rows.iter().map(|(t, l, o)| (t.as_str(), *l, *o)).collect();
        let st = state_with(&rows, vec![crate::domain::testing::accept(14)]);
        let names = vec!["fruit".to_string(), "cars".to_string()];
        let encoder = HashedBagEncoder { dim: 64 };
        let linear = crate::classify::LinearConfig::default();
        let model = SmallModel::Embedding {
            encoder: &encoder,
            cfg: &linear,
        };
        let sig = signals(&model, &st, &names).unwrap();
        assert_eq!(sig.len(), 14);
        let flipped = &sig[&13];
        assert!(flipped.reasons.contains(MODEL_DISAGREES), "{flipped:?}");
        assert!(flipped.reasons.contains(NEIGHBOURS_DISAGREE), "{flipped:?}");
        // The model's view behind the reasons travels with them (the
        // review detail spells it out).
        let d = flipped.model_doubt.as_ref().expect("embedding model doubt");
        assert_eq!(d.predicted, 0, "prefers fruit");
        assert!(d.label_probability < 0.5, "{d:?}");
        let fine = &sig[&14];
        assert!(!fine.reasons.contains(MODEL_DISAGREES), "{fine:?}");
        assert!(flipped.doubt() > fine.doubt());
    }
}
