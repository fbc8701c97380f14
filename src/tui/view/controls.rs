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
    f.render_widget(pane_block(t, " Controls ".into(), focused), r);
    let i = inner(r);
    let g = &st.settings;
    let lines: Vec<Line> = Control::ALL
        .iter()
        .enumerate()
        .map(|(n, c)| {
            let v = match c {
                Control::Strategy => g.strategy.as_str().to_string(),
                Control::Alpha => match g.alpha {
                    Some(a) => format!("{a:.2}"),
                    None => format!("{:.2}–{:.2}", g.alpha_range.0, g.alpha_range.1),
                },
                Control::Temperature => format!("{:.1}", g.temperature),
                Control::Concurrency => st.concurrency.to_string(),
                Control::Target => g.target_count.to_string(),
                Control::PerRequest => g.per_request.to_string(),
                Control::TakeRelabel => {
                    let yn = |b: bool| if b { "yes" } else { "no" };
                    let p = &st.project;
                    if p.take_relabel == p.take_relabel_config {
                        yn(p.take_relabel).to_string()
                    } else {
                        format!(
                            "{} (toml {})",
                            yn(p.take_relabel),
                            yn(p.take_relabel_config)
                        )
                    }
                }
            };
            let text = format!("{} {v}", pad(c.label(), 12));
            let style = if focused && n == st.control_sel {
                t.selected()
            } else {
                Style::default()
            };
            Line::styled(pad(&text, i.width as usize), style)
        })
        .collect();
    f.render_widget(Paragraph::new(lines), i);
}
