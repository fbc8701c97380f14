//! The Controls pane: generation settings that can change while running.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::Paragraph;

use super::{inner, pad, pane_block};
use crate::tui::state::{Control, State};

pub(super) fn controls(f: &mut Frame, st: &State, r: Rect, focused: bool) {
    let t = &st.theme;
    // Values set in the app (journaled, kept across restarts) that differ
    // from straddle.toml carry a `*`, explained in the title.
    let differ = st.differs_from_toml();
    let title = if differ.is_empty() {
        " Controls ".to_string()
    } else {
        " Controls (* ≠ toml) ".to_string()
    };
    f.render_widget(pane_block(t, title, focused), r);
    let i = inner(r);
    let lines: Vec<Line> = Control::ALL
        .iter()
        .enumerate()
        .map(|(n, c)| {
            let v = c.value(&st.settings, st.concurrency, st.project.take_relabel);
            let mark = if differ.contains(c) { " *" } else { "" };
            let text = format!("{} {v}{mark}", pad(c.label(), 12));
            let style = if focused && n == st.control_sel {
                t.selected()
            } else if differ.contains(c) {
                Style::default().fg(t.warn)
            } else {
                Style::default()
            };
            Line::styled(pad(&text, i.width as usize), style)
        })
        .collect();
    let mut lines = lines;
    // Attribute values: weight (steered with + / -) and examples so far.
    let coverage = if st.attributes.is_empty() {
        Default::default()
    } else {
        st.project.attribute_coverage(&st.attributes)
    };
    for (n, (d, v)) in st.attribute_rows().into_iter().enumerate() {
        let c = coverage
            .get(d)
            .and_then(|m| m.get(v))
            .copied()
            .unwrap_or_default();
        let text = format!(
            "{} w {:.2} · {}✓ {}…",
            pad(&format!("{d}={v}"), 12),
            st.project.attribute_weight(d, v),
            c.accepted,
            c.pending
        );
        let style = if focused && Control::ALL.len() + n == st.control_sel {
            t.selected()
        } else {
            t.muted()
        };
        lines.push(Line::styled(pad(&text, i.width as usize), style));
    }
    // More rows than fit (attribute values): scroll to keep the selected
    // row in view, and say how many are below.
    let h = i.height as usize;
    if h > 0 && lines.len() > h {
        let offset = (st.control_sel + 1).saturating_sub(h);
        let hidden = lines.len() - offset - h;
        let mut shown: Vec<Line> = lines.into_iter().skip(offset).take(h).collect();
        if hidden > 0 && st.control_sel != offset + h - 1 {
            shown[h - 1] = Line::styled(
                pad(&format!("↓ {} more", hidden + 1), i.width as usize),
                t.muted(),
            );
        }
        lines = shown;
    }
    f.render_widget(Paragraph::new(lines), i);
}
