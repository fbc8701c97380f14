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
        // A class with weight 0 has no share of the target: no bar to
        // fill, and no "n/0".
        if c.weight <= 0.0 || target <= 0.0 {
            let nums = format!(" {} ✓", k.accepted);
            let bw = w.saturating_sub(nw + 1 + nums.chars().count());
            lines.push(Line::from(vec![
                Span::raw(pad(&c.name, nw)),
                Span::raw(" "),
                Span::styled(pad("weight 0 · not generated", bw), t.muted()),
                Span::raw(nums),
            ]));
            continue;
        }
        let nums = format!(" {}/{:.0}", k.accepted, target);
        let bw = w.saturating_sub(nw + 1 + nums.chars().count());
        let filled = ((k.accepted as f64 / target).min(1.0) * bw as f64).round() as usize;
        lines.push(Line::from(vec![
            Span::raw(pad(&c.name, nw)),
            Span::raw(" "),
            Span::styled("█".repeat(filled), Style::default().fg(t.bar)),
            Span::styled("░".repeat(bw - filled), Style::default().fg(t.target)),
            Span::raw(nums),
        ]));
    }
    let g = &st.tally.generated;
    let (pa, pr) = (st.tally.person_accepted, st.tally.person_rejected);
    let auto = (g.accepted + g.rejected).saturating_sub(pa + pr);
    let pct = |a: u64, b: u64| {
        if b == 0 {
            "–".to_string()
        } else {
            format!("{:.0}%", a as f64 * 100.0 / b as f64)
        }
    };
    let u = st.total_usage();
    lines.push(Line::from(""));
    let auto = if auto > 0 {
        format!(" ({auto} auto)")
    } else {
        String::new()
    };
    lines.push(Line::from(format!(
        "✓{} ✗{}{auto} · {} pending",
        g.accepted, g.rejected, g.pending
    )));
    // The person's accept rate: automatic decisions (duplicates, `loop`'s
    // rules) are not theirs.
    lines.push(Line::from(format!(
        "accept rate {} · llm agrees {}",
        pct(pa, pa + pr),
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
    // Coverage per attribute value: accepted (pending) of the generated.
    if !st.attributes.is_empty() {
        for (d, values) in st.project.attribute_coverage(&st.attributes) {
            let cells: Vec<String> = values
                .iter()
                .map(|(v, c)| format!("{v} {}({})", c.accepted, c.pending))
                .collect();
            lines.push(Line::styled(
                format!("{d}: {}", cells.join(" · ")),
                t.muted(),
            ));
        }
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
