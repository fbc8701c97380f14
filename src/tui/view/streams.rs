//! The Streams pane: open batches, and requests in flight with their
//! tokens arriving.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::Paragraph;

use super::{clip, inner, pane_block};
use crate::tui::state::{State, StreamKind, StreamState, retry_in};
use std::time::Instant;

pub(super) fn streams(f: &mut Frame, st: &State, r: Rect, focused: bool, now: Instant) {
    let t = &st.theme;
    let running = st
        .streams
        .iter()
        .filter(|s| s.state == StreamState::Running)
        .count();
    f.render_widget(
        pane_block(t, format!(" Streams · {running} in flight "), focused),
        r,
    );
    let i = inner(r);
    let w = i.width as usize;
    let mut lines = Vec::new();
    // Open batches (`straddle batch`), as last journalled: at most two lines.
    let open: Vec<_> = st
        .project
        .batches
        .values()
        .filter(|(_, u)| u.status.as_deref() != Some("ingested"))
        .collect();
    for (b, u) in open.iter().take(2) {
        let status = u.status.as_deref().unwrap_or("planned");
        let head = format!(
            "⧗ batch {} {} · {} req {}",
            b.batch,
            status,
            b.custom_ids.len(),
            u.remote_id.as_deref().unwrap_or("")
        );
        lines.push(Line::styled(clip(head.trim_end(), w), t.muted()));
    }
    if open.len() > 2 {
        lines.push(Line::styled(
            clip(&format!("⧗ … {} more batches", open.len() - 2), w),
            t.muted(),
        ));
    }
    // What the parser did not take from the replies, over the project.
    if !st.parse_rejected.is_empty() {
        let per: Vec<String> = st
            .parse_rejected
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        lines.push(Line::styled(
            clip(&format!("parser rejected: {}", per.join(" · ")), w),
            t.muted(),
        ));
    }
    for s in st.streams.iter().skip(st.stream_offset) {
        if lines.len() + 2 > i.height as usize {
            break;
        }
        let (glyph, style) = match &s.state {
            StreamState::Running if s.retry_at.is_some() => ("⟳", Style::default().fg(t.warn)),
            StreamState::Running => ("▶", Style::default().fg(t.pending)),
            StreamState::Finished => ("✓", Style::default().fg(t.accept)),
            StreamState::Failed(_) => ("✗", Style::default().fg(t.reject)),
        };
        let kind = match s.kind {
            StreamKind::Generate => "gen",
            StreamKind::Relabel => "relabel",
        };
        let alpha = s.alpha.map(|a| format!(" α{a:.2}")).unwrap_or_default();
        // Up front, so a narrow pane still shows it.
        let retry = s
            .retry_at
            .map(|at| format!(" {} ·", retry_in(at, now)))
            .unwrap_or_default();
        // Planned before the last change of weights, α, temperature or
        // strategy: it still asks what the older settings said.
        let old = if s.state == StreamState::Running && s.settings < st.settings_version {
            " old settings ·"
        } else {
            ""
        };
        let head = format!(
            "{glyph} #{}{retry}{old} {kind} {}{alpha} {}ch",
            s.job, s.classes, s.chars
        );
        lines.push(Line::styled(clip(&head, w), style));
        let body = match &s.state {
            StreamState::Failed(reason) => Line::styled(
                clip(&format!("  {reason}"), w),
                Style::default().fg(t.error),
            ),
            _ => {
                // Show the tail of the text that fits.
                let tail: String = {
                    let flat = s.text.replace('\n', " ");
                    let chars: Vec<char> = flat.chars().collect();
                    let keep = w.saturating_sub(2);
                    chars[chars.len().saturating_sub(keep)..].iter().collect()
                };
                Line::styled(clip(&format!("  {tail}"), w), t.muted())
            }
        };
        lines.push(body);
    }
    if st.streams.is_empty() && open.is_empty() {
        lines.push(Line::styled("no requests yet", t.muted()));
    }
    f.render_widget(Paragraph::new(lines), i);
}
