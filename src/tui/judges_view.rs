//! The review detail's judges section: every judge's label and confidence
//! for the selected sample side by side (the chosen one marked), and, when
//! no judge beats chance on the held-out examples, that only a person can
//! decide. Kept apart from `view/review.rs` (one call there).

use ratatui::style::Style;
use ratatui::text::{Line, Span};

use crate::domain::SampleState;
use crate::tui::state::State;

/// Lines for sample `s`: "measuring judges…" until the judges were
/// measured (the app measures them when it opens and when their data
/// changed), or why they could not be.
pub fn detail_lines<'a>(st: &State, s: &SampleState) -> Vec<Line<'a>> {
    let t = &st.theme;
    let Some(j) = &st.judges else {
        return match (&st.measuring.error, st.measuring.running) {
            (_, true) => vec![Line::styled("judges: measuring judges…", t.muted())],
            (Some(e), false) => vec![Line::styled(
                format!("judges could not be measured: {e}"),
                Style::default().fg(t.warn),
            )],
            (None, false) => Vec::new(),
        };
    };
    let chosen = j.choice.judge.as_deref();
    let mut spans = vec![Span::styled("judges:", t.muted())];
    for name in crate::app::judges::ORDER {
        let Some(o) = j.opinions.get(name, s.id) else {
            continue;
        };
        let agrees = o.label == Some(s.label.as_str());
        let style = if !j.choice.trusted {
            t.muted()
        } else if agrees {
            Style::default().fg(t.accept)
        } else {
            Style::default().fg(t.reject)
        };
        let mark = if chosen == Some(name) { "*" } else { "" };
        spans.push(Span::raw(format!(" {mark}{name} ")));
        spans.push(Span::styled(
            format!("{} {:.2}", o.label.unwrap_or("–"), o.confidence),
            style,
        ));
    }
    if st.measuring.running {
        spans.push(Span::styled(" · measuring again…", t.muted()));
    }
    let mut out = Vec::new();
    if spans.len() > 1 {
        out.push(Line::from(spans));
    }
    if j.choice.judge.is_none() {
        // Nothing measured: say how to measure (bulk rules keep the
        // relabeler's own gate).
        out.push(Line::styled(format!("judges: {}", j.choice.why), t.muted()));
    } else if let Some(p) = j.choice.person_only() {
        out.push(Line::styled(p, Style::default().fg(t.warn)));
    }
    out
}
