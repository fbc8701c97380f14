//! The Seeds pane: classes with weights and counts, the selected class's seeds.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Wrap};

use super::{clip, editor_for, pad, pane_block, render_editor, seeds_parts};
use crate::tui::state::State;

pub(super) fn seeds(f: &mut Frame, st: &State, r: Rect, focused: bool) {
    let t = &st.theme;
    f.render_widget(pane_block(t, " Seeds ".into(), focused), r);
    let (list, rest, header) = seeds_parts(r, st.classes.len());
    let w = list.width as usize;
    let nw = w.saturating_sub(20).max(4);
    f.render_widget(
        Paragraph::new(Line::styled(
            clip(&format!("  {}  wt seed  acc pnd", pad("class", nw)), w),
            t.muted().add_modifier(Modifier::UNDERLINED),
        )),
        header,
    );
    let lines: Vec<Line> = st
        .classes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let k = st.tally.per_class.get(&c.name).copied().unwrap_or_default();
            let num = if i < 9 {
                format!("{}", i + 1)
            } else {
                " ".into()
            };
            let text = format!(
                "{num} {} {:>3.1} {:>4} {:>4} {:>3}",
                pad(&c.name, nw),
                c.weight,
                k.seed,
                k.accepted,
                k.pending
            );
            let style = if i == st.class_sel {
                t.selected()
            } else {
                Style::default()
            };
            Line::styled(pad(&text, w), style)
        })
        .collect();
    f.render_widget(Paragraph::new(lines), list);
    let Some(c) = st.selected_class() else {
        return;
    };
    if let Some(area) = editor_for(st, true) {
        render_editor(f, st, area, rest);
        return;
    }
    let mut lines = vec![
        Line::from(""),
        Line::styled(c.description.clone(), Style::default().fg(t.accent)),
    ];
    // No seed can show more characters than the area has cells: a 10 MB
    // seed text costs what is on screen, not a wrap of all of it.
    let cells = rest.width as usize * rest.height as usize;
    for (i, s) in st.class_seeds().into_iter().enumerate() {
        let style = if focused && st.seed_sel == Some(i) {
            t.selected()
        } else {
            Style::default()
        };
        lines.push(Line::styled(
            format!("• {}", super::prefix_chars(s.text(), cells)),
            style,
        ));
    }
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), rest);
}
