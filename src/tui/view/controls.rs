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
            let v = c.value(&st.settings, st.concurrency);
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
    f.render_widget(Paragraph::new(lines), i);
}
