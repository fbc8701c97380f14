//! Views: draw the state. They borrow it, do no I/O and touch only what is
//! on screen (the review list renders its visible rows, nothing else), so a
//! frame costs the same with 100 or 100,000 samples.
//!
//! One file per pane (`seeds`, `streams`, `review`, `controls`, `stats`),
//! `bars` for the title/message/status lines, `dialogs` for the popups
//! (help, bulk confirmation, export form); this file holds the layout that
//! mouse handling shares and the helpers the panes share.

mod bars;
mod controls;
mod dialogs;
pub mod map;
mod review;
mod seeds;
mod stats;
mod streams;

pub use review::{DOUBT_CODES, doubt_cell, doubt_codes, doubt_legend, doubt_words, row_hint};

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Margin, Position, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Span;
use ratatui::widgets::{Block, BorderType, Borders};
use unicode_width::UnicodeWidthChar;

use super::state::{Control, Mode, Pane, State};
use super::theme::Theme;
use std::time::Instant;

/// Where everything is on screen; shared by the views and mouse handling.
#[derive(Debug, Clone, Default)]
pub struct ScreenLayout {
    pub title: Rect,
    /// Tab labels with their x-range (compact / zoomed mode only).
    pub tabs: Vec<(Pane, u16, u16)>,
    pub panes: Vec<(Pane, Rect)>,
    /// The error / notice bar above the status line (empty without one).
    pub message: Rect,
    pub status: Rect,
}

impl ScreenLayout {
    pub fn pane(&self, p: Pane) -> Option<Rect> {
        self.panes.iter().find(|(q, _)| *q == p).map(|(_, r)| *r)
    }
    pub fn tab_at(&self, pos: Position) -> Option<Pane> {
        if pos.y != self.title.y || self.tabs.is_empty() {
            return None;
        }
        self.tabs
            .iter()
            .find(|(_, a, b)| pos.x >= *a && pos.x < *b)
            .map(|(p, _, _)| *p)
    }
}

/// Compute the layout for a screen of `area`.
pub fn screen_layout(st: &State, area: Rect) -> ScreenLayout {
    let msg_h = st
        .message()
        .map(|(m, _)| {
            let w = unicode_width::UnicodeWidthStr::width(m) + 1;
            w.div_ceil(area.width.max(1) as usize).clamp(1, 3) as u16
        })
        .unwrap_or(0);
    let [title, body, message, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(msg_h),
        Constraint::Length(1),
    ])
    .areas(area);
    let mut out = ScreenLayout {
        title,
        message,
        status,
        ..ScreenLayout::default()
    };
    if st.zoom || st.compact() {
        let mut x = title.x;
        for p in Pane::ALL.into_iter().filter(|p| st.pane_shown(*p)) {
            let w = p.title().len() as u16 + 2;
            out.tabs.push((p, x, x.saturating_add(w)));
            x = x.saturating_add(w + 1);
        }
        out.panes.push((st.focus, body));
        return out;
    }
    let [left, center, right] = Layout::horizontal([
        Constraint::Length(30),
        Constraint::Fill(1),
        Constraint::Length(36),
    ])
    .areas(body);
    let [seeds, controls] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(Control::ALL.len() as u16 + 2),
    ])
    .areas(left);
    // Room for the S3 sparkline and the last rounds once there are any.
    let s3_h = if st.project.rounds.is_empty() { 1 } else { 4 };
    let stats_h = st.classes.len() as u16 + 8 + s3_h;
    let [streams, stats] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(stats_h)]).areas(right);
    // The map, when shown, takes the lower part of the centre column.
    let (center, map) = if st.map.shown {
        let [review, map] =
            Layout::vertical([Constraint::Percentage(55), Constraint::Fill(1)]).areas(center);
        (review, Some(map))
    } else {
        (center, None)
    };
    out.panes = vec![
        (Pane::Seeds, seeds),
        (Pane::Controls, controls),
        (Pane::Review, center),
        (Pane::Streams, streams),
        (Pane::Stats, stats),
    ];
    if let Some(m) = map {
        out.panes.push((Pane::Map, m));
    }
    out
}

/// Inside of a bordered pane.
pub fn inner(r: Rect) -> Rect {
    r.inner(Margin::new(1, 1))
}

/// Review pane parts: (list rows, detail, header row).
pub fn review_parts(r: Rect) -> (Rect, Rect, Rect) {
    let i = inner(r);
    let detail_h = (i.height * 2 / 5).max(7).min(i.height.saturating_sub(2));
    let [header, list, detail] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(detail_h),
    ])
    .areas(i);
    (list, detail, header)
}

/// Seeds pane parts: (class rows, seed examples, header row).
pub fn seeds_parts(r: Rect, n_classes: usize) -> (Rect, Rect, Rect) {
    let i = inner(r);
    let [header, list, rest] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(n_classes as u16),
        Constraint::Fill(1),
    ])
    .areas(i);
    (list, rest, header)
}

/// Draw the whole screen.
pub fn render(f: &mut Frame, st: &State) {
    render_at(f, st, Instant::now());
}

/// Draw the whole screen with countdowns (retry in N s) taken at `now`.
pub fn render_at(f: &mut Frame, st: &State, now: Instant) {
    let area = f.area();
    let t = &st.theme;
    f.render_widget(Block::default().style(t.base()), area);
    let layout = screen_layout(st, area);
    bars::title_bar(f, st, &layout);
    for (p, r) in &layout.panes {
        let focused = *p == st.focus;
        match p {
            Pane::Review => review::review(f, st, *r, focused),
            Pane::Map => map::map(f, st, *r, focused),
            Pane::Seeds => seeds::seeds(f, st, *r, focused),
            Pane::Streams => streams::streams(f, st, *r, focused, now),
            Pane::Controls => controls::controls(f, st, *r, focused),
            Pane::Stats => stats::stats(f, st, *r, focused),
        }
    }
    bars::message_bar(f, st, layout.message);
    bars::status_line(f, st, layout.status, now);
    match &st.mode {
        Mode::Help => dialogs::help(f, st, area),
        Mode::Confirm { kind, ids } => dialogs::confirm(f, st, area, *kind, ids.len()),
        Mode::Export(form) => dialogs::export_dialog(f, st, area, form),
        Mode::Normal | Mode::Edit { .. } | Mode::Filter { .. } => {}
    }
}

fn pane_block<'a>(t: &Theme, title: String, focused: bool) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_type(if focused {
            BorderType::Thick
        } else {
            BorderType::Rounded
        })
        .border_style(t.border(focused))
        .title(Span::styled(
            title,
            Style::default().fg(t.title).add_modifier(if focused {
                Modifier::BOLD
            } else {
                Modifier::empty()
            }),
        ))
}

/// Cut `s` to `width` display columns, newlines shown as spaces.
/// The first `n` characters of `s` (all of it when shorter), without
/// looking further: what a pane of `n` cells can show of a long text.
pub fn prefix_chars(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or(s, |(i, _)| &s[..i])
}

pub fn clip(s: &str, width: usize) -> String {
    let mut out = String::new();
    let mut w = 0;
    for c in s.chars() {
        let c = if c == '\n' || c == '\r' || c == '\t' {
            ' '
        } else {
            c
        };
        let cw = c.width().unwrap_or(0);
        if w + cw > width {
            if width > 0 && w < width && !out.is_empty() {
                out.pop();
                out.push('…');
            }
            break;
        }
        w += cw;
        out.push(c);
    }
    out
}

fn pad(s: &str, width: usize) -> String {
    let c = clip(s, width);
    let w: usize = c.chars().map(|c| c.width().unwrap_or(0)).sum();
    c + &" ".repeat(width.saturating_sub(w))
}
/// The editor, when the sample being edited is a seed (`seed`) or not.
fn editor_for(st: &State, seed: bool) -> Option<&ratatui_textarea::TextArea<'static>> {
    let Mode::Edit { sample, area } = &st.mode else {
        return None;
    };
    let is_seed = st
        .project
        .sample(*sample)
        .is_some_and(|s| s.origin == crate::domain::Origin::Seed);
    (is_seed == seed).then_some(area.as_ref())
}

fn render_editor(f: &mut Frame, st: &State, area: &ratatui_textarea::TextArea<'static>, r: Rect) {
    let block = Block::default()
        .borders(Borders::TOP)
        .border_style(Style::default().fg(st.theme.accent))
        .title(format!(
            " edit · {} ",
            st.keymap.hint_line(super::keymap::KeyMode::Edit)
        ));
    let inner = block.inner(r);
    f.render_widget(block, r);
    f.render_widget(area, inner);
}
