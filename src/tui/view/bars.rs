//! The one-line bars around the panes: title (or tabs), message, status.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};

use super::ScreenLayout;
use crate::tui::state::{EngineStatus, Mode, State};
use std::time::Instant;

pub(super) fn title_bar(f: &mut Frame, st: &State, l: &ScreenLayout) {
    let t = &st.theme;
    if !l.tabs.is_empty() {
        let mut spans = Vec::new();
        for (p, _, _) in &l.tabs {
            let style = if *p == st.focus {
                t.selected()
            } else {
                t.muted()
            };
            spans.push(Span::styled(format!(" {} ", p.title()), style));
            spans.push(Span::raw(" "));
        }
        f.render_widget(Paragraph::new(Line::from(spans)), l.title);
        return;
    }
    let filter = if st.queue.filter().raw.is_empty() {
        String::new()
    } else {
        format!(" · filter: {}", st.queue.filter().raw)
    };
    let line = Line::from(vec![
        Span::styled(" straddle ", t.selected()),
        Span::styled(
            format!(" {} ", st.project_name),
            Style::default().fg(t.title),
        ),
        Span::styled(
            format!(
                "· sort: {}{filter} · {} help",
                st.queue.sort().as_str(),
                st.keymap.hint(crate::tui::keymap::Action::Help)
            ),
            t.muted(),
        ),
    ]);
    f.render_widget(Paragraph::new(line), l.title);
}

/// The filter's syntax after what is typed: the longest form that fits in
/// `room` columns (`judge`, the one `agree:` follows, and `keys`, the
/// filter mode's key hints, are always there).
fn filter_hint(judge: &str, keys: &str, room: usize) -> String {
    let forms = [
        format!(
            " class:X status:pending|accepted|rejected agree:yes|no|none ({judge}) actor:auto|person words · {keys}"
        ),
        format!(" class:X status:S agree:yes|no|none ({judge}) actor:auto|person words · {keys}"),
        format!(" class:X status:S agree:yes|no|none ({judge}) actor:A words · {keys}"),
        format!(" agree:yes|no|none ({judge}) · {keys}"),
    ];
    let last = forms.len() - 1;
    forms
        .into_iter()
        .enumerate()
        .find(|(i, f)| *i == last || unicode_width::UnicodeWidthStr::width(f.as_str()) <= room)
        .map(|(_, f)| f)
        .unwrap_or_default()
}

pub(super) fn status_line(f: &mut Frame, st: &State, r: Rect, now: Instant) {
    let t = &st.theme;
    if let Mode::Filter { input, error } = &st.mode {
        let mut spans = vec![
            Span::styled("/", Style::default().fg(t.accent)),
            Span::raw(input.clone()),
            Span::styled("█", Style::default().fg(t.accent)),
        ];
        match error {
            Some(e) => spans.push(Span::styled(format!("  {e}"), Style::default().fg(t.error))),
            None => {
                let used: usize = spans.iter().map(Span::width).sum();
                spans.push(Span::styled(
                    filter_hint(
                        crate::tui::chosen::display(crate::tui::chosen::judge(st)),
                        &st.keymap.hint_line(crate::tui::keymap::KeyMode::Filter),
                        usize::from(r.width).saturating_sub(used),
                    ),
                    t.muted(),
                ));
            }
        }
        f.render_widget(Paragraph::new(Line::from(spans)), r);
        return;
    }
    let engine_style = match st.engine {
        EngineStatus::Running => Style::default().fg(t.accept),
        EngineStatus::Paused => Style::default().fg(t.pending),
        EngineStatus::Backoff(_) => Style::default().fg(t.warn),
        EngineStatus::Blocked(_) => Style::default().fg(t.error),
        EngineStatus::Idle => Style::default(),
    };
    let g = &st.tally.generated;
    let mut spans = vec![
        Span::raw(" "),
        Span::styled(
            st.engine.label(now),
            engine_style.add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(
            " │ {} gen · ✓{} ✗{} ·{}",
            g.accepted + g.rejected + g.pending,
            g.accepted,
            g.rejected,
            g.pending,
        )),
    ];
    if let Some(f) = st.failures_label() {
        spans.push(Span::raw(" · "));
        spans.push(Span::styled(f, Style::default().fg(t.error)));
    }
    if let Some(l) = &st.limit {
        spans.push(Span::raw(format!(" │ {l}")));
    }
    spans.push(Span::raw(format!(" │ {} {}", st.backend, st.model)));
    f.render_widget(Paragraph::new(Line::from(spans)).style(t.status_line()), r);
}

/// The last error (or notice) in full, wrapped above the status line.
pub(super) fn message_bar(f: &mut Frame, st: &State, r: Rect) {
    let Some((m, is_error)) = st.message() else {
        return;
    };
    let t = &st.theme;
    let style = if is_error {
        Style::default().fg(t.error).add_modifier(Modifier::BOLD)
    } else {
        Style::default().fg(t.accent)
    };
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(Line::styled(format!(" {m}"), style))
            .style(t.base())
            .wrap(Wrap { trim: false }),
        r,
    );
}

#[cfg(test)]
mod tests {
    use super::filter_hint;
    use unicode_width::UnicodeWidthStr;

    /// The filter's syntax fits the status line whatever the judge's name
    /// (`ensemble` overflowed 120 columns), and always names the judge.
    #[test]
    fn the_filter_hint_fits_and_names_the_judge() {
        let keys = crate::tui::keymap::Keymap::default()
            .hint_line(crate::tui::keymap::KeyMode::Filter)
            .to_string();
        let full = filter_hint("ensemble", &keys, usize::MAX);
        assert!(full.contains("status:pending|accepted|rejected"), "{full}");
        for room in [200, 120, 100, 80, 60, 40] {
            for judge in ["llm", "knn", "small", "ensemble"] {
                let h = filter_hint(judge, &keys, room);
                assert!(h.contains(&format!("({judge})")), "{room}: {h}");
                assert!(h.ends_with(&keys), "{room}: {h}");
                let shortest = format!(" agree:yes|no|none ({judge}) · {keys}");
                if room >= shortest.width() {
                    assert!(h.width() <= room, "{room}: {} > room: {h}", h.width());
                }
            }
        }
        assert!(filter_hint("ensemble", &keys, 118).width() < full.width());
    }
}
