//! The S3 parts of the views: the classifier's line in the review
//! detail, and the per-round scores and latest confusion matrix in the
//! Stats pane. (`update`'s side of S3 is `tui::s3`; the jobs are
//! `app::training`.)

use ratatui::style::Style;
use ratatui::text::{Line, Span};

use crate::domain::SampleId;

use super::state::State;

/// The classifier's view of a sample for the review detail: confidence
/// in its label across epochs (± variability) and out of fold, and the
/// class the out-of-fold model prefers.
pub fn signal_line(st: &State, id: SampleId) -> Option<Line<'static>> {
    let sig = st.queue.signals_of(id)?;
    let prefers = st
        .classes
        .get(sig.oof_label as usize)
        .map_or("?", |c| c.name.as_str());
    let mut text = format!(
        "classifier: label conf {:.2} ± {:.2} · out-of-fold {:.2} (prefers {prefers})",
        sig.confidence, sig.variability, sig.oof_confidence
    );
    if let Some(d) = &sig.model_doubt {
        text.push_str(" · ");
        text.push_str(&model_doubt_text(st, d));
    }
    Some(Line::styled(text, st.theme.muted()))
}

/// The embedding model's view in words: its calibrated probability of
/// the label, the class it prefers, and how many of the nearest trusted
/// examples carry the label — "embedding model: label 0.12, prefers LOC
/// 0.72 · 1/5 nearest agree (mostly LOC)".
pub fn model_doubt_text(st: &State, d: &crate::classify::doubt::ModelDoubt) -> String {
    let name = |i: u32| st.classes.get(i as usize).map_or("?", |c| c.name.as_str());
    let mut t = format!(
        "embedding model: label {:.2}, prefers {} {:.2}",
        d.label_probability,
        name(d.predicted),
        d.predicted_probability
    );
    if let Some(a) = d.neighbour_agreement {
        let k = d.neighbours as usize;
        t.push_str(&format!(
            " · {}/{k} nearest agree",
            (a * k as f64).round() as usize
        ));
        if let Some(l) = d.neighbour_label {
            t.push_str(&format!(" (mostly {})", name(l)));
        }
    }
    t
}

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
    // The latest round's interval line, from the journal (rounds recorded
    // before intervals were journaled: only if scored in this session).
    let latest = rounds
        .last()
        .and_then(|r| comparison_of(st, r).map(|c| interval_line(r.round, &c)));
    let mut left = rows.saturating_sub(out.len());
    if latest.is_some() && left >= 2 {
        left -= 1;
    }
    let fit_matrix = !matrix.is_empty() && left > matrix.len();
    let round_rows = if fit_matrix {
        (left - matrix.len()).min(rounds.len())
    } else {
        left.min(rounds.len())
    };
    for r in &rounds[rounds.len() - round_rows..] {
        let d = r.augmented.macro_f1 - r.baseline.macro_f1;
        // ↑ better / ↓ worse / ~ unclear, by the interval of the change.
        let verdict = comparison_of(st, r).map_or("", |c| match c.verdict() {
            crate::classify::Verdict::Better => " ↑",
            crate::classify::Verdict::Worse => " ↓",
            crate::classify::Verdict::Unclear => " ~",
        });
        out.push(Line::from(format!(
            "r{:<2} {:.3} → {:.3} {:+.3} {}✗{verdict}",
            r.round,
            r.baseline.macro_f1,
            r.augmented.macro_f1,
            d,
            r.errors.len()
        )));
    }
    if let Some(l) = latest
        && out.len() < rows
    {
        out.push(l);
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

/// The bootstrap comparison of a round: journaled with it, else the one
/// this session computed (rounds recorded before intervals were kept).
pub fn comparison_of(
    st: &State,
    r: &crate::domain::RoundScored,
) -> Option<crate::classify::Comparison> {
    match &r.intervals {
        Some(i) => Some(crate::classify::Comparison::from_journal(
            i,
            r.augmented.n_test,
        )),
        None => st.s3.comparisons.get(&r.round).cloned(),
    }
}

/// The labelled interval of a round's macro-F1 change and its verdict,
/// e.g. `r1 ΔF1 −0.049 [−0.12,+0.02] unclear`: a round is an improvement
/// only when the whole interval is above 0.
pub fn interval_line(round: u32, c: &crate::classify::Comparison) -> Line<'static> {
    let d = &c.macro_f1_diff;
    let sign = |v: f64, p: usize| format!("{v:+.p$}").replacen('-', "\u{2212}", 1);
    Line::from(format!(
        "r{round} ΔF1 {} [{},{}] {}",
        sign(d.estimate, 3),
        sign(d.low, 2),
        sign(d.high, 2),
        crate::app::training::verdict_word(c)
    ))
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
}
