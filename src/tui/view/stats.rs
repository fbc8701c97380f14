//! The Stats pane: per-class bars, rates, usage and the S3 rounds.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{clip, inner, pad, pane_block};
use crate::tui::state::State;

pub(super) fn stats(f: &mut Frame, st: &State, r: Rect, focused: bool) {
    let t = &st.theme;
    f.render_widget(pane_block(t, " Stats ".into(), focused), r);
    let i = inner(r);
    let w = i.width as usize;
    let nw = 8.min(w / 3);
    let mut lines = Vec::new();
    for c in &st.classes {
        let k = st.tally.per_class.get(&c.name).copied().unwrap_or_default();
        let target = st.target_for(&c.name);
        let nums = format!(" {}/{:.0}", k.accepted, target);
        let bw = w.saturating_sub(nw + 1 + nums.chars().count());
        let filled = if target > 0.0 {
            ((k.accepted as f64 / target).min(1.0) * bw as f64).round() as usize
        } else {
            0
        };
        lines.push(Line::from(vec![
            Span::raw(pad(&c.name, nw)),
            Span::raw(" "),
            Span::styled("█".repeat(filled), Style::default().fg(t.bar)),
            Span::styled("░".repeat(bw - filled), Style::default().fg(t.target)),
            Span::raw(nums),
        ]));
    }
    let g = &st.tally.generated;
    let decided = g.accepted + g.rejected;
    let pct = |a: u64, b: u64| {
        if b == 0 {
            "–".to_string()
        } else {
            format!("{:.0}%", a as f64 * 100.0 / b as f64)
        }
    };
    let u = st.total_usage();
    lines.push(Line::from(""));
    lines.push(Line::from(format!(
        "✓{} ✗{} · {} pending",
        g.accepted, g.rejected, g.pending
    )));
    lines.push(Line::from(format!(
        "accept rate {} · llm agrees {}",
        pct(g.accepted, decided),
        pct(st.tally.agreeing, st.tally.verdicts)
    )));
    lines.push(Line::from(format!(
        "tokens {} in + {} out",
        u.prompt_tokens, u.completion_tokens
    )));
    lines.push(Line::from(format!(
        "${:.4} · {} req · {:.1} req/s",
        u.cost, u.requests, st.req_per_s
    )));
    if let Some(f) = st.failures_label() {
        lines.push(Line::styled(
            format!("generation: {f}"),
            Style::default().fg(t.error),
        ));
    }
    // What `straddle judge` found: bulk rules refuse an untrusted judge.
    if let Some(j) = st.project.judges.get("relabel") {
        let r = &j.report;
        let (mark, style) = if st.relabel_judge_stale() {
            ("stale", Style::default().fg(t.warn))
        } else if r.trusted() {
            ("✓", t.muted())
        } else {
            ("✗", Style::default().fg(t.warn))
        };
        lines.push(Line::styled(
            format!("judge {:.2} (chance {:.2}) {mark}", r.accuracy, r.chance),
            style,
        ));
    }
    let rows = (i.height as usize).saturating_sub(lines.len());
    lines.extend(crate::tui::s3_view::stats_lines(st, w, rows));
    let lines: Vec<Line> = lines
        .into_iter()
        .map(|l| {
            if l.width() > w {
                Line::from(clip(&l.to_string(), w))
            } else {
                l
            }
        })
        .collect();
    f.render_widget(Paragraph::new(lines), i);
}
