//! The Map pane: every seed and generated sample as a point of the 2-D
//! projection of its sentence vector, drawn with ratatui's `Canvas`.
//!
//! Pending examples are braille dots (the fine cloud); rejected `×`,
//! accepted `•` and seeds `◆` are drawn over them, one mark per cell, each
//! in its class's colour; the selected review item is `◉` on the selection
//! colour and moves with the selection. `b` zooms to one class pair. A
//! frame walks the cached points once per mark: nothing is projected or
//! sorted here.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::canvas::{Canvas, Painter, Shape};
use ratatui::widgets::{Paragraph, Wrap};

use super::{inner, pane_block};
use crate::tui::keymap::Action;
use crate::tui::map::{Bounds, MapPoint, Mark, NO_CLASS};
use crate::tui::state::State;

/// Class colours, in class order (repeating after twelve).
pub const CLASS_COLORS: [Color; 12] = [
    Color::Cyan,
    Color::Magenta,
    Color::Yellow,
    Color::Green,
    Color::LightBlue,
    Color::LightRed,
    Color::LightCyan,
    Color::LightMagenta,
    Color::LightYellow,
    Color::LightGreen,
    Color::Blue,
    Color::Red,
];

/// The colour of class `i`.
pub fn class_color(i: u16) -> Color {
    if i == NO_CLASS {
        Color::Gray
    } else {
        CLASS_COLORS[i as usize % CLASS_COLORS.len()]
    }
}

/// The glyph of each mark, as the legend shows it.
pub fn mark_glyph(m: Mark) -> char {
    match m {
        Mark::Seed => '◆',
        Mark::Pending => '⠂',
        Mark::Accepted => '•',
        Mark::Rejected => '×',
    }
}

/// Points of one mark, restricted to a class pair when zoomed.
struct Points<'a> {
    points: &'a [MapPoint],
    pair: Option<(u16, u16)>,
}

impl Shape for Points<'_> {
    fn draw(&self, painter: &mut Painter) {
        for p in self.points {
            if let Some((a, b)) = self.pair
                && p.class != a
                && p.class != b
            {
                continue;
            }
            if let Some((x, y)) = painter.get_point(f64::from(p.x), f64::from(p.y)) {
                painter.paint(x, y, class_color(p.class));
            }
        }
    }
}

/// Bounds with a margin, never empty.
fn padded(b: Bounds) -> Bounds {
    let [l, r, bo, t] = b;
    let pad = |lo: f64, hi: f64| {
        let span = (hi - lo).max(1e-3);
        (lo - span * 0.04, hi + span * 0.04)
    };
    let (l, r) = pad(l, r);
    let (bo, t) = pad(bo, t);
    [l, r, bo, t]
}

/// Canvas coordinates that put a label on the cell where the point at
/// `(x, y)` is drawn: braille dots (`braille`: 2×4 per cell) and character
/// marks (one per cell) round to their grids; labels floor.
fn label_at(b: Bounds, w: u16, h: u16, x: f64, y: f64, braille: bool) -> Option<(f64, f64)> {
    let [l, r, bo, t] = b;
    if w < 2 || h < 2 || x < l || x > r || y < bo || y > t {
        return None;
    }
    let (cx, cy) = if braille {
        let dx = ((x - l) * f64::from(2 * w - 1) / (r - l)).round();
        let dy = ((t - y) * f64::from(4 * h - 1) / (t - bo)).round();
        ((dx / 2.0).floor(), (dy / 4.0).floor())
    } else {
        (
            ((x - l) * f64::from(w - 1) / (r - l)).round(),
            ((t - y) * f64::from(h - 1) / (t - bo)).round(),
        )
    };
    let (rw, rh) = (f64::from(w - 1), f64::from(h - 1));
    let lx = (l + (cx + 0.5) * (r - l) / rw).min(r);
    let ly = (t - (cy + 0.5) * (t - bo) / rh).max(bo);
    Some((lx, ly))
}

pub(super) fn map(f: &mut Frame, st: &State, r: Rect, focused: bool) {
    let t = &st.theme;
    let m = &st.map;
    let title = match m.pair {
        Some((a, b)) => format!(
            " Map · {} × {} ",
            st.classes[a as usize].name, st.classes[b as usize].name
        ),
        None => format!(" Map · {} points ", m.len()),
    };
    f.render_widget(pane_block(t, title, focused), r);
    let area = inner(r);
    if area.is_empty() {
        return;
    }
    let say = |f: &mut Frame, lines: Vec<Line<'static>>| {
        f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), area);
    };
    if let Some(why) = &m.unavailable {
        return say(
            f,
            vec![
                Line::styled(why.clone(), Style::default().fg(t.warn)),
                Line::from(""),
                Line::styled("Review, generation and export work without it.", t.muted()),
            ],
        );
    }
    if let Some(e) = &m.error {
        return say(
            f,
            vec![
                Line::styled(format!("map failed: {e}"), Style::default().fg(t.error)),
                Line::styled(
                    format!("{} retries", st.keymap.hint(Action::MapRefit)),
                    t.muted(),
                ),
            ],
        );
    }
    let bounds = m.view_bounds();
    let Some(bounds) = bounds.filter(|_| !m.is_empty()) else {
        let msg = if m.job_running || m.waiting() > 0 && m.shown {
            format!(
                "computing sentence vectors for {} samples …",
                m.waiting().max(1)
            )
        } else if m.pair.is_some() {
            "no points of this class pair yet".to_string()
        } else {
            "no samples yet: seeds and generated examples appear here".to_string()
        };
        return say(f, vec![Line::styled(msg, t.muted())]);
    };
    let legend_h = if area.height >= 8 { 3 } else { 1 };
    let [canvas_area, legend] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(legend_h)]).areas(area);
    let b = padded(bounds);
    let sel = st.selected_sample().map(|s| (s.id, m.point(s.id)));
    let sel_label = sel.and_then(|(_, p)| p).and_then(|(mark, p)| {
        if let Some((a, c)) = m.pair
            && p.class != a
            && p.class != c
        {
            return None;
        }
        label_at(
            b,
            canvas_area.width,
            canvas_area.height,
            f64::from(p.x),
            f64::from(p.y),
            mark == Mark::Pending,
        )
    });
    let pair = m.pair;
    let selected = t.selected();
    let canvas = Canvas::default()
        .marker(Marker::Braille)
        .background_color(t.bg)
        .x_bounds([b[0], b[1]])
        .y_bounds([b[2], b[3]])
        .paint(|ctx| {
            ctx.draw(&Points {
                points: m.points(Mark::Pending),
                pair,
            });
            for mark in [Mark::Rejected, Mark::Accepted, Mark::Seed] {
                ctx.marker(Marker::Custom(mark_glyph(mark)));
                ctx.draw(&Points {
                    points: m.points(mark),
                    pair,
                });
            }
            if let Some((x, y)) = sel_label {
                ctx.print(x, y, Span::styled("◉", selected));
            }
        });
    f.render_widget(canvas, canvas_area);
    legend_lines(f, st, legend, sel);
}

/// Legend: class colours, marks, then the selection and the projection.
fn legend_lines(
    f: &mut Frame,
    st: &State,
    r: Rect,
    sel: Option<(crate::domain::SampleId, Option<(Mark, MapPoint)>)>,
) {
    let t = &st.theme;
    let m = &st.map;
    let mut classes: Vec<Span> = Vec::new();
    for (i, c) in st.classes.iter().enumerate() {
        let i = i as u16;
        if m.pair.is_some_and(|(a, b)| i != a && i != b) {
            continue;
        }
        classes.push(Span::styled("■", Style::default().fg(class_color(i))));
        classes.push(Span::raw(format!("{} ", c.name)));
    }
    let marks: Vec<Span> = [
        (Mark::Seed, "seed"),
        (Mark::Pending, "pending"),
        (Mark::Accepted, "accepted"),
        (Mark::Rejected, "rejected"),
    ]
    .into_iter()
    .map(|(mk, w)| Span::styled(format!("{} {w}  ", mark_glyph(mk)), t.muted()))
    .chain([
        Span::styled("◉", t.selected()),
        Span::styled(" selected", t.muted()),
    ])
    .collect();
    let sel_text = match sel {
        None => "nothing selected".to_string(),
        Some((id, None)) => format!("◉ #{id}: not on the map yet (waiting for its vector)"),
        Some((id, Some((mk, p)))) => {
            let class = st
                .classes
                .get(p.class as usize)
                .map_or("?", |c| c.name.as_str());
            let outside = m.pair.is_some_and(|(a, b)| p.class != a && p.class != b);
            format!(
                "◉ #{id} {class} {}{}",
                match mk {
                    Mark::Seed => "seed",
                    Mark::Pending => "pending",
                    Mark::Accepted => "accepted",
                    Mark::Rejected => "rejected",
                },
                if outside { " (outside this pair)" } else { "" }
            )
        }
    };
    let mut info = vec![sel_text];
    if let Some(p) = &m.projection {
        info.push(format!(
            "PCA on {} {} ({:.0}% of variance){}",
            p.fitted_on,
            if m.fit_on_all {
                "samples"
            } else {
                "seeds+accepted"
            },
            (p.explained[0] + p.explained[1]) * 100.0,
            if m.refits > 0 {
                format!(", refitted {}×", m.refits)
            } else {
                String::new()
            }
        ));
    }
    if m.waiting() > 0 {
        info.push(format!("{} waiting for vectors", m.waiting()));
    }
    info.push(format!(
        "{} pair · {} refit",
        st.keymap.hint(Action::MapPair),
        st.keymap.hint(Action::MapRefit)
    ));
    let mut lines = vec![Line::from(classes)];
    if r.height >= 3 {
        lines.push(Line::from(marks));
    }
    lines.push(Line::styled(info.join(" · "), t.muted()));
    let keep = lines.len().saturating_sub(r.height as usize);
    f.render_widget(Paragraph::new(lines.split_off(keep)), r);
}
