//! S3 in `update`: run one round from a key (train → score → record
//! `round_scored` → extrapolate the held-out errors through the generation
//! session) and fold training-dynamics signals into the review queue's
//! doubt scores.
//!
//! The jobs (`app::training`) run on a blocking thread the runtime spawns
//! for [`Effect::RunRound`] / [`Effect::ComputeSignals`] with a snapshot of
//! the state, answering with `Msg::RoundDone` / `Msg::Signals`; the
//! Stats pane's S3 lines are drawn by `s3_view`.

pub use crate::app::training::{RoundResult, no_heldout_message};
use crate::classify::{self, SignalMap, s3};
use crate::domain::{EventKind, GenerationSettings};

use super::state::{Effect, State};

/// Recompute signals (once computed) when this many generated examples
/// were added since the last computation.
pub const SIGNALS_EVERY: u64 = 50;
/// At most this many extrapolation requests per round from the TUI.
pub const MAX_ROUND_REQUESTS: usize = 20;

/// S3 bookkeeping of the app.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct S3Status {
    /// A round job is running.
    pub round_running: bool,
    /// A signals job is running.
    pub signals_running: bool,
    /// Generated examples in the project when signals were last asked
    /// for (`None`: never, so they are not kept fresh automatically).
    pub signals_at: Option<u64>,
    /// Rounds scored in this session with their bootstrap comparison
    /// (the journal keeps only the scores): the Stats pane shows the
    /// interval and verdict of these.
    pub comparisons: std::collections::BTreeMap<u32, crate::classify::Comparison>,
}

fn generated_total(st: &State) -> u64 {
    let g = &st.tally.generated;
    g.pending + g.accepted + g.rejected
}

/// The round key: start a round job unless one runs or there is nothing
/// to score on.
pub fn run_round(st: &mut State, fx: &mut Vec<Effect>) {
    if st.s3.round_running {
        st.notice = Some("an S3 round is already running".into());
        return;
    }
    if !st.project.samples.iter().any(|s| s.origin.is_heldout()) {
        st.last_error = Some(no_heldout_message());
        return;
    }
    let round = s3::next_round(&st.project);
    st.s3.round_running = true;
    st.s3.signals_running = true;
    st.s3.signals_at = Some(generated_total(st));
    st.notice = Some(format!("S3 round {round}: training and scoring …"));
    fx.push(Effect::RunRound { round });
}

/// The signals key: recompute the training-dynamics signals.
pub fn compute_signals(st: &mut State, fx: &mut Vec<Effect>) {
    if st.s3.signals_running {
        st.notice = Some("training signals are already being computed".into());
        return;
    }
    request_signals(st, fx);
    st.notice = Some("computing training signals …".into());
}

fn request_signals(st: &mut State, fx: &mut Vec<Effect>) {
    st.s3.signals_running = true;
    st.s3.signals_at = Some(generated_total(st));
    fx.push(Effect::ComputeSignals);
}

/// After events were applied: once signals exist, refresh them when the
/// pool grew by [`SIGNALS_EVERY`] examples.
pub fn after_append(st: &mut State, fx: &mut Vec<Effect>) {
    if let Some(at) = st.s3.signals_at
        && !st.s3.signals_running
        && generated_total(st) >= at + SIGNALS_EVERY
    {
        request_signals(st, fx);
    }
}

/// A round job finished: record the scores, fold in the signals, and ask
/// the pipeline to extrapolate the errors.
pub fn on_round_done(st: &mut State, r: Result<Box<RoundResult>, String>, fx: &mut Vec<Effect>) {
    st.s3.round_running = false;
    st.s3.signals_running = false;
    let mut r = match r {
        Ok(r) => *r,
        Err(e) => {
            st.last_error = Some(format!("S3 round failed: {e}"));
            return;
        }
    };
    // The journal keeps the intervals, so the verdict survives a restart.
    r.scored.intervals = Some(Box::new(r.comparison.to_journal()));
    let signals = std::mem::take(&mut r.signals);
    st.queue.set_signals(signals, &st.project, &st.classes);
    let sources = s3::extrapolation_sources(&st.project, &r.mistakes);
    let sc = &r.scored;
    // Called an improvement only when the interval lies above 0.
    let mut note = format!(
        "S3 {} ({} model{}), {} of {} held-out wrong",
        r.line(),
        r.model,
        if r.is_improvement() {
            ": an improvement"
        } else {
            ""
        },
        sc.errors.len(),
        sc.augmented.n_test
    );
    if let Some(why) = &r.note {
        note.push_str(&format!("; {why}"));
    }
    st.s3.comparisons.insert(sc.round, r.comparison.clone());
    if sources.is_empty() {
        note.push_str("; nothing to extrapolate");
    } else {
        note.push_str(&format!("; extrapolating {} errors", sources.len()));
    }
    st.notice = Some(note);
    let round = sc.round;
    fx.push(Effect::Append(vec![EventKind::RoundScored(r.scored)]));
    if !sources.is_empty() {
        let count = round_count(&st.settings, sources.len());
        fx.push(Effect::Extrapolate {
            round,
            mistakes: sources,
            count,
        });
    }
}

/// New signals: the queue re-sorts the samples whose signals changed.
pub fn on_signals(st: &mut State, r: Result<SignalMap, String>) {
    st.s3.signals_running = false;
    match r {
        Ok(map) => {
            let sel = st.queue.get(st.review_sel);
            let flagged = map
                .values()
                .filter(|s| s.reasons.contains(classify::LIKELY_MISLABEL))
                .count();
            st.queue.set_signals(map, &st.project, &st.classes);
            st.follow_selection(sel);
            st.notice = Some(format!(
                "training signals updated: {flagged} likely mislabel(s)"
            ));
        }
        Err(e) => st.last_error = Some(format!("training signals failed: {e}")),
    }
}

/// Examples asked for by one round: `per_request` per error, at most
/// [`MAX_ROUND_REQUESTS`] requests.
pub fn round_count(settings: &GenerationSettings, errors: usize) -> usize {
    settings.per_request.max(1) * errors.min(MAX_ROUND_REQUESTS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Signals;
    use crate::domain::SampleId;

    #[test]
    fn round_count_is_per_request_per_error_capped() {
        let s = GenerationSettings {
            per_request: 5,
            ..GenerationSettings::default()
        };
        assert_eq!(round_count(&s, 3), 15);
        assert_eq!(round_count(&s, 1000), 5 * MAX_ROUND_REQUESTS);
    }

    /// Calm signals (no reason of their own, confident out of fold).
    fn calm() -> Signals {
        Signals {
            confidence: 0.9,
            variability: 0.01,
            oof_confidence: 0.9,
            oof_label: 0,
            reasons: Default::default(),
            model_doubt: None,
        }
    }

    /// The judges as a measure delivers them: kNN chosen, and each
    /// judge's label per sample.
    fn judges(says: &[(&str, SampleId, &str)]) -> crate::tui::Msg {
        use crate::app::judges::{Choice, Opinion, Opinions, ReviewJudges};
        let mut maps: std::collections::BTreeMap<String, std::collections::BTreeMap<_, _>> =
            Default::default();
        for &(judge, id, label) in says {
            maps.entry(judge.to_string()).or_default().insert(
                id,
                Opinion {
                    judge: judge.into(),
                    label: Some(label.into()),
                    confidence: 0.9,
                },
            );
        }
        crate::tui::Msg::JudgesMeasured(Ok(Box::new(crate::tui::chosen::Measured {
            review: ReviewJudges {
                choice: Choice {
                    judge: Some("knn".into()),
                    trusted: true,
                    why: "in the test".into(),
                },
                opinions: Opinions::from_maps(maps),
            },
            record: Vec::new(),
        })))
    }

    fn tags(st: &State, id: SampleId) -> Vec<&'static str> {
        st.queue.doubt(st.project.sample(id).unwrap()).1
    }

    /// Signals arriving in `update`: the samples on which the judges'
    /// current opinions disagree carry `judges_disagree` (and rise by its
    /// weight), the others do not; before any measure answered nobody
    /// does, and a later measure moves the reason with the opinions.
    #[test]
    fn signals_carry_the_judges_disagreement_of_the_current_opinions() {
        use crate::classify::signals::{JUDGES_DISAGREE, reason_weight};
        use crate::tui::{Msg, update};
        let mut st = crate::tui::fixture::state(30);
        // Generated ids follow the 12 seeds; a and b get signals, c not.
        let (a, b, c) = (20, 21, 22);
        let score = |st: &mut State, id: SampleId| {
            let s = st.project.sample(id).unwrap().clone();
            st.queue.score(&s)
        };
        let before = [score(&mut st, a), score(&mut st, b)];
        let map: SignalMap = [(a, calm()), (b, calm())].into();
        update(&mut st, Msg::Signals(Ok(map)));
        assert!(!st.s3.signals_running);
        // No measure yet: no judges' reason.
        for id in [a, b, c] {
            assert!(!tags(&st, id).contains(&JUDGES_DISAGREE), "{id}");
        }
        assert_eq!([score(&mut st, a), score(&mut st, b)], before);

        // kNN and the small model disagree on a and on c, agree on b.
        update(
            &mut st,
            judges(&[
                ("knn", a, "LOC"),
                ("small", a, "HUM"),
                ("knn", b, "HUM"),
                ("small", b, "HUM"),
                ("knn", c, "LOC"),
                ("small", c, "NUM"),
            ]),
        );
        assert!(
            tags(&st, a).contains(&JUDGES_DISAGREE),
            "{:?}",
            tags(&st, a)
        );
        assert!(!tags(&st, b).contains(&JUDGES_DISAGREE));
        // c has no signals: the reason is one of the training signals'.
        assert!(!tags(&st, c).contains(&JUDGES_DISAGREE));
        let w = reason_weight(JUDGES_DISAGREE);
        let sa = st.project.sample(a).unwrap().clone();
        let read = st.queue.doubt(&sa).0;
        assert!(
            (score(&mut st, a) - read).abs() < 1e-9,
            "the order's score is the shown one"
        );
        // a's chosen-judge part changed too (kNN says LOC): compare
        // without it.
        let chosen = st.queue.judged().disagreement(&sa);
        assert!((score(&mut st, a) - chosen - before[0] - w).abs() < 1e-9);
        // The doubt order (pending samples first) holds a where its score
        // puts it.
        let order: Vec<SampleId> = st
            .queue
            .ids()
            .iter()
            .copied()
            .filter(|&id| st.project.sample(id).unwrap().status() == crate::domain::Status::Pending)
            .collect();
        let scores: Vec<f64> = order
            .iter()
            .map(|&id| {
                let s = st.project.sample(id).unwrap().clone();
                st.queue.score(&s)
            })
            .collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1] - 1e-9), "{scores:?}");

        // Measured again: now they disagree on b, agree on a.
        update(
            &mut st,
            judges(&[
                ("knn", a, "HUM"),
                ("small", a, "HUM"),
                ("knn", b, "LOC"),
                ("small", b, "HUM"),
            ]),
        );
        assert!(!tags(&st, a).contains(&JUDGES_DISAGREE));
        assert!(tags(&st, b).contains(&JUDGES_DISAGREE));

        // New signals keep following the opinions in force.
        let map: SignalMap = [(a, calm()), (b, calm()), (c, calm())].into();
        update(&mut st, Msg::Signals(Ok(map)));
        assert!(!tags(&st, a).contains(&JUDGES_DISAGREE));
        assert!(tags(&st, b).contains(&JUDGES_DISAGREE));
        assert!(
            !tags(&st, c).contains(&JUDGES_DISAGREE),
            "c: one judge only now"
        );
    }
}
