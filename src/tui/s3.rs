//! S3 in the TUI: run one round from a key (train → score → record
//! `round_scored` → extrapolate the held-out errors through the running
//! generation pipeline), fold training-dynamics signals into the review
//! queue's doubt scores, and draw the per-round scores and the latest
//! confusion matrix in the Stats pane.
//!
//! The pure parts (`on_*`, the line builders) run inside `update` and the
//! views; training and scoring run on a blocking thread the runtime
//! spawns for [`Effect::RunRound`] / [`Effect::ComputeSignals`]
//! ([`spawn_round`], [`spawn_signals`]), answering with
//! [`Msg::RoundDone`] / [`Msg::Signals`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ratatui::style::Style;
use ratatui::text::{Line, Span};
use tokio::sync::mpsc::UnboundedSender;

use crate::classify::{self, Mistake, SignalConfig, Signals, s3};
use crate::domain::{EventKind, GenerationSettings, RoundScored, SampleId};

use super::state::{Effect, Msg, State};

/// Recompute signals (once computed) when this many generated examples
/// were added since the last computation.
pub const SIGNALS_EVERY: u64 = 50;
/// At most this many extrapolation requests per round from the TUI.
pub const MAX_ROUND_REQUESTS: usize = 20;

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
}

/// The message for a project without held-out examples, with the fix.
pub fn no_heldout_message() -> String {
    "no held-out examples to score on: import real labelled examples with \
     `straddle import DIR FILE --as validation` (or --as test), then press R again"
        .into()
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
    let r = match r {
        Ok(r) => *r,
        Err(e) => {
            st.last_error = Some(format!("S3 round failed: {e}"));
            return;
        }
    };
    st.queue.set_signals(r.signals, &st.project, &st.classes);
    let sources = s3::extrapolation_sources(&st.project, &r.mistakes);
    let sc = &r.scored;
    let mut note = format!(
        "S3 round {}: macro-F1 {:.3} (seeds only {:.3}), {} of {} held-out wrong",
        sc.round,
        sc.augmented.macro_f1,
        sc.baseline.macro_f1,
        sc.errors.len(),
        sc.augmented.n_test
    );
    if sources.is_empty() {
        note.push_str("; nothing to extrapolate");
    } else {
        note.push_str(&format!("; extrapolating {} errors", sources.len()));
    }
    st.notice = Some(note);
    let round = sc.round;
    fx.push(Effect::Append(vec![EventKind::RoundScored(r.scored)]));
    if !sources.is_empty() {
        fx.push(Effect::Extrapolate {
            round,
            mistakes: sources,
        });
    }
}

/// New signals: the queue re-sorts the samples whose signals changed.
pub fn on_signals(st: &mut State, r: Result<HashMap<SampleId, Signals>, String>) {
    st.s3.signals_running = false;
    match r {
        Ok(map) => {
            let sel = st.queue.get(st.review_sel);
            let flagged = map
                .values()
                .filter(|s| s.reasons.contains(&classify::LIKELY_MISLABEL))
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

/// The classifier's view of a sample for the review detail: confidence
/// in its label across epochs (± variability) and out of fold, and the
/// class the out-of-fold model prefers.
pub fn signal_line(st: &State, id: SampleId) -> Option<Line<'static>> {
    let sig = st.queue.signals_of(id)?;
    Some(Line::styled(
        format!(
            "classifier: label conf {:.2} ± {:.2} · out-of-fold {:.2} (prefers {})",
            sig.confidence, sig.variability, sig.oof_confidence, sig.oof_label
        ),
        st.theme.muted(),
    ))
}

// ---- runtime side (blocking threads) ------------------------------------

/// Train, score and compute signals on a blocking thread, reading the
/// project read-only from disk (which holds every acknowledged event).
pub(crate) fn spawn_round(dir: PathBuf, round: u32, tx: UnboundedSender<Msg>) {
    tokio::task::spawn_blocking(move || {
        let r = round_blocking(&dir, round)
            .map(Box::new)
            .map_err(|e| format!("{e:#}"));
        let _ = tx.send(Msg::RoundDone(r));
    });
}

fn round_blocking(dir: &Path, round: u32) -> anyhow::Result<RoundResult> {
    let project = crate::store::Project::open_read_only(dir)?;
    let names = project.class_names();
    let cfg = crate::cli::eval::train_config(&project, names.len());
    let (scored, ev) = s3::score_round(project.state(), &names, &cfg, round)
        .ok_or_else(|| anyhow::anyhow!(no_heldout_message()))?;
    let signals = signals_of(&project, &names);
    Ok(RoundResult {
        scored,
        mistakes: ev.mistakes,
        signals,
    })
}

fn signals_of(project: &crate::store::Project, names: &[String]) -> HashMap<SampleId, Signals> {
    let cfg = SignalConfig {
        train: crate::cli::eval::train_config(project, names.len()),
        ..SignalConfig::default()
    };
    classify::signals(project.state(), names, &cfg)
}

/// Compute signals on a blocking thread.
pub(crate) fn spawn_signals(dir: PathBuf, tx: UnboundedSender<Msg>) {
    tokio::task::spawn_blocking(move || {
        let r = crate::store::Project::open_read_only(&dir)
            .map(|p| signals_of(&p, &p.class_names()))
            .map_err(|e| format!("{e:#}"));
        let _ = tx.send(Msg::Signals(r));
    });
}

// ---- Stats pane ------------------------------------------------------------

const SPARK: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A text sparkline scaled from the smallest to the largest value (all
/// equal: a flat middle line), so small gains between rounds show.
pub fn sparkline(values: &[f64]) -> String {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = hi - lo;
    values
        .iter()
        .map(|v| {
            if span < 1e-9 {
                SPARK[3]
            } else {
                SPARK[(((v - lo) / span) * 7.0).round() as usize]
            }
        })
        .collect()
}

/// The S3 part of the Stats pane within `rows` lines of `width`: a
/// sparkline of the augmented macro-F1 per round, one row per round
/// (latest last: baseline → augmented, errors) and, when it fits, the
/// latest confusion matrix (rows: truth, columns: prediction).
pub fn stats_lines(st: &State, width: usize, rows: usize) -> Vec<Line<'static>> {
    let t = &st.theme;
    let rounds = &st.project.rounds;
    let mut out = Vec::new();
    if rows == 0 {
        return out;
    }
    let busy = if st.s3.round_running {
        " (running…)"
    } else {
        ""
    };
    if rounds.is_empty() {
        out.push(Line::styled(
            format!("S3: no round yet · R runs one{busy}"),
            t.muted(),
        ));
        return out;
    }
    let f1s: Vec<f64> = rounds.iter().map(|r| r.augmented.macro_f1).collect();
    let spark_w = width.saturating_sub(26).max(1);
    let shown = &f1s[f1s.len().saturating_sub(spark_w)..];
    let lo = shown.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = shown.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    out.push(Line::from(vec![
        Span::raw("S3 macro-F1 "),
        Span::styled(sparkline(shown), Style::default().fg(t.bar)),
        Span::styled(format!(" {lo:.2}–{hi:.2}"), t.muted()),
        Span::raw(busy),
    ]));
    let matrix = confusion_lines(st, width);
    // Round rows first (at least the latest), the matrix only if it fits
    // whole below them.
    let left = rows.saturating_sub(out.len());
    let fit_matrix = !matrix.is_empty() && left > matrix.len();
    let round_rows = if fit_matrix {
        (left - matrix.len()).min(rounds.len())
    } else {
        left.min(rounds.len())
    };
    for r in &rounds[rounds.len() - round_rows..] {
        let d = r.augmented.macro_f1 - r.baseline.macro_f1;
        out.push(Line::from(format!(
            "r{:<2} {:.3} → {:.3} {:+.3} {}✗",
            r.round,
            r.baseline.macro_f1,
            r.augmented.macro_f1,
            d,
            r.errors.len()
        )));
    }
    if fit_matrix && out.len() + matrix.len() <= rows {
        out.extend(matrix);
    } else if !matrix.is_empty() && out.len() < rows {
        let hint = if st.zoom || st.compact() {
            "confusion matrix: needs a taller terminal"
        } else {
            "z: zoom for the confusion matrix"
        };
        out.push(Line::styled(hint, t.muted()));
    }
    out
}

/// The latest round's confusion matrix (augmented model), or nothing when
/// it does not fit `width`.
fn confusion_lines(st: &State, width: usize) -> Vec<Line<'static>> {
    let Some(r) = st.project.rounds.last() else {
        return Vec::new();
    };
    let s = &r.augmented;
    if s.labels.is_empty() || s.confusion.len() != s.labels.len() {
        return Vec::new();
    }
    let max = s.confusion.iter().flatten().copied().max().unwrap_or(0);
    let cell = max.to_string().len().max(2) + 1;
    let lw = 5;
    if lw + cell * s.labels.len() > width {
        return Vec::new();
    }
    let short = |l: &str, n: usize| -> String { l.chars().take(n).collect() };
    let mut out = Vec::with_capacity(s.labels.len() + 1);
    let mut head = format!("{:<lw$}", "t\\p");
    for l in &s.labels {
        head.push_str(&format!("{:>cell$}", short(l, cell - 1)));
    }
    out.push(Line::styled(head, st.theme.muted()));
    for (i, (l, row)) in s.labels.iter().zip(&s.confusion).enumerate() {
        let mut spans = vec![Span::raw(format!("{:<lw$}", short(l, lw - 1)))];
        for (j, n) in row.iter().enumerate() {
            let text = format!("{n:>cell$}");
            spans.push(if i == j {
                Span::styled(text, Style::default().fg(st.theme.bar))
            } else if *n > 0 {
                Span::styled(text, Style::default().fg(st.theme.error))
            } else {
                Span::styled(text, st.theme.muted())
            });
        }
        out.push(Line::from(spans));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparkline_spans_min_to_max() {
        assert_eq!(sparkline(&[0.4, 0.5, 0.6]), "▁▅█");
        assert_eq!(sparkline(&[0.5, 0.5]), "▄▄");
        assert_eq!(sparkline(&[]), "");
    }

    #[test]
    fn round_count_is_per_request_per_error_capped() {
        let s = GenerationSettings {
            per_request: 5,
            ..GenerationSettings::default()
        };
        assert_eq!(round_count(&s, 3), 15);
        assert_eq!(round_count(&s, 1000), 5 * MAX_ROUND_REQUESTS);
    }

    fn sample(text: &str, label: &str, origin: crate::domain::Origin) -> crate::domain::NewSample {
        crate::domain::NewSample {
            text: text.into(),
            label: label.into(),
            origin,
            provenance: Default::default(),
        }
    }

    /// The round job reads the project from disk, trains, scores on the
    /// held-out examples and computes signals for the review pool, on a
    /// blocking thread, answering with `Msg::RoundDone`.
    #[test]
    fn the_round_job_scores_a_real_project_off_the_calling_task() {
        use crate::domain::{Class, Origin, ProjectConfig, TaskConfig};
        let dir = tempfile::tempdir().unwrap();
        let config = ProjectConfig {
            task: TaskConfig {
                name: "topics".into(),
                description: "Short posts.".into(),
            },
            classes: ["sports", "food"]
                .iter()
                .map(|c| Class {
                    name: c.to_string(),
                    description: format!("{c} talk"),
                    weight: 1.0,
                })
                .collect(),
            backend: Default::default(),
            generation: GenerationSettings::default(),
            relabel: Default::default(),
            embeddings: Default::default(),
        };
        let mut seeds = Vec::new();
        for i in 0..6 {
            seeds.push(sample(
                &format!("goal match team score {i}"),
                "sports",
                Origin::Seed,
            ));
            seeds.push(sample(
                &format!("soup bread dinner taste {i}"),
                "food",
                Origin::Seed,
            ));
        }
        seeds.push(sample(
            "the team scored a goal",
            "sports",
            Origin::Validation,
        ));
        seeds.push(sample(
            "bread and soup for dinner",
            "food",
            Origin::Validation,
        ));
        let project = crate::store::Project::create(dir.path(), config, seeds).unwrap();
        drop(project);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let msg = rt.block_on(async {
            spawn_round(dir.path().to_path_buf(), 1, tx);
            rx.recv().await.unwrap()
        });
        let Msg::RoundDone(Ok(r)) = msg else {
            panic!("{msg:?}")
        };
        assert_eq!(r.scored.round, 1);
        assert_eq!(r.scored.augmented.n_test, 2);
        assert_eq!(r.scored.augmented.n_train, 12);
        assert_eq!(r.scored.augmented.labels, ["sports", "food"]);
        assert_eq!(r.signals.len(), 12, "one per seed");
        assert_eq!(
            r.scored.errors,
            r.mistakes.iter().map(|m| m.id).collect::<Vec<_>>()
        );

        // Without held-out examples the job says how to add them.
        let empty = tempfile::tempdir().unwrap();
        let cfg = crate::store::Project::open(dir.path())
            .unwrap()
            .config()
            .clone();
        drop(crate::store::Project::create(
            empty.path(),
            cfg,
            vec![sample("goal", "sports", Origin::Seed)],
        ));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let msg = rt.block_on(async {
            spawn_round(empty.path().to_path_buf(), 1, tx);
            rx.recv().await.unwrap()
        });
        let Msg::RoundDone(Err(e)) = msg else {
            panic!("{msg:?}")
        };
        assert!(e.contains("--as validation"), "{e}");
    }
}
