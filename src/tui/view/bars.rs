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
            None => spans.push(Span::styled(
                format!(
                    " class:X status:pending|accepted|rejected agree:yes|no|none ({}) actor:auto|person words · {}",
                    crate::tui::chosen::display(crate::tui::chosen::judge(st)),
                    st.keymap.hint_line(crate::tui::keymap::KeyMode::Filter)
                ),
                t.muted(),
            )),
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
