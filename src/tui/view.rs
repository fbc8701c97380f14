//! Views: draw the state. They borrow it, do no I/O and touch only what is
//! on screen (the review list renders its visible rows, nothing else), so a
//! frame costs the same with 100 or 100,000 samples.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Margin, Position, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph, Wrap};
use unicode_width::UnicodeWidthChar;

use crate::app::export::ExportFormat;
use crate::domain::{SampleState, Status};

use super::state::{Control, EngineStatus, Mode, Pane, State, StreamKind, StreamState, retry_in};
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
        for p in Pane::ALL {
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
    out.panes = vec![
        (Pane::Seeds, seeds),
        (Pane::Controls, controls),
        (Pane::Review, center),
        (Pane::Streams, streams),
        (Pane::Stats, stats),
    ];
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
    title_bar(f, st, &layout);
    for (p, r) in &layout.panes {
        let focused = *p == st.focus;
        match p {
            Pane::Review => review(f, st, *r, focused),
            Pane::Seeds => seeds(f, st, *r, focused),
            Pane::Streams => streams(f, st, *r, focused, now),
            Pane::Controls => controls(f, st, *r, focused),
            Pane::Stats => stats(f, st, *r, focused),
        }
    }
    message_bar(f, st, layout.message);
    status_line(f, st, layout.status, now);
    match &st.mode {
        Mode::Help => help(f, st, area),
        Mode::Confirm { kind, ids } => {
            let verb = match kind {
                crate::domain::DecisionKind::Accept => "Accept",
                crate::domain::DecisionKind::Reject => "Reject",
            };
            let filter = if st.queue.filter().raw.is_empty() {
                "all generated".to_string()
            } else {
                format!("filter '{}'", st.queue.filter().raw)
            };
            let text = vec![
                Line::from(format!("{verb} {} examples in {filter}?", ids.len())),
                Line::from(""),
                Line::styled("y = yes, any other key = no", t.muted()),
            ];
            popup(f, t, area, "Bulk decision", text, 60, 5);
        }
        Mode::Export(form) => export_dialog(f, st, area, form),
        _ => {}
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

fn title_bar(f: &mut Frame, st: &State, l: &ScreenLayout) {
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
                st.keymap.hint(super::keymap::Action::Help)
            ),
            t.muted(),
        ),
    ]);
    f.render_widget(Paragraph::new(line), l.title);
}

fn status_glyph(t: &Theme, s: Status) -> Span<'static> {
    match s {
        Status::Pending => Span::styled("·", Style::default().fg(t.pending)),
        Status::Accepted => Span::styled("✓", Style::default().fg(t.accept)),
        Status::Rejected => Span::styled("✗", Style::default().fg(t.reject)),
    }
}

fn review(f: &mut Frame, st: &State, r: Rect, focused: bool) {
    let t = &st.theme;
    let n = st.queue.len();
    let pos = if n == 0 { 0 } else { st.review_sel + 1 };
    f.render_widget(
        pane_block(
            t,
            format!(" Review {pos}/{n} · {} ", st.queue.sort().as_str()),
            focused,
        ),
        r,
    );
    let (list, detail, header) = review_parts(r);
    // Label columns are cut to a sixth of the width each, so the text keeps
    // most of it; the detail below shows the full labels and reasons.
    let lw = st
        .classes
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(5)
        .clamp(4, (list.width as usize / 6).clamp(4, 10));
    let fixed = 2 + lw + 1 + lw + 1 + 4 + 1 + DOUBT_W + 1;
    f.render_widget(
        Paragraph::new(Line::styled(
            clip(
                &format!(
                    "  {} {} conf {} text",
                    pad(if lw >= 5 { "label" } else { "lbl" }, lw),
                    pad("llm", lw),
                    pad("why", DOUBT_W)
                ),
                header.width as usize,
            ),
            t.muted().add_modifier(Modifier::UNDERLINED),
        )),
        header,
    );
    if n == 0 {
        let msg = if st.project.generated().next().is_none() {
            format!(
                "No generated examples yet. Press {} to start generation.",
                st.keymap.hint(super::keymap::Action::ToggleGeneration)
            )
        } else {
            "Nothing matches the filter.".to_string()
        };
        f.render_widget(
            Paragraph::new(msg)
                .style(t.muted())
                .wrap(Wrap { trim: true }),
            list,
        );
    }
    let offset = st.review_offset.min(n.saturating_sub(1));
    let mut lines = Vec::with_capacity(list.height as usize);
    for row in 0..list.height as usize {
        let i = offset + row;
        let Some(s) = st.queue.get(i).and_then(|id| st.project.sample(id)) else {
            break;
        };
        let (vl, vc, vstyle) = match s.verdict() {
            None => ("…".to_string(), "    ".to_string(), t.muted()),
            Some(v) => {
                let style = match s.agrees() {
                    Some(true) => Style::default().fg(t.accept),
                    Some(false) => Style::default().fg(t.reject),
                    None => Style::default().fg(t.warn),
                };
                (
                    v.label.clone().unwrap_or_else(|| "?".into()),
                    format!("{:>3}%", (v.top_confidence() * 100.0).round() as i64),
                    style,
                )
            }
        };
        let (_, tags) = st.queue.doubt(s);
        let text_w = (list.width as usize).saturating_sub(fixed);
        let mut spans = vec![
            status_glyph(t, s.status()),
            Span::raw(" "),
            Span::raw(pad(&s.label, lw)),
            Span::raw(" "),
            Span::styled(pad(&vl, lw), vstyle),
            Span::raw(" "),
            Span::styled(vc, vstyle),
            Span::raw(" "),
            Span::styled(
                pad(&doubt_codes(&tags), DOUBT_W),
                Style::default().fg(t.warn),
            ),
            Span::raw(" "),
            Span::raw(clip(s.text(), text_w)),
        ];
        if i == st.review_sel {
            for sp in &mut spans {
                sp.style = sp.style.patch(t.selected());
            }
            let used: usize = spans.iter().map(|s| s.width()).sum();
            spans.push(Span::styled(
                " ".repeat((list.width as usize).saturating_sub(used)),
                t.selected(),
            ));
        }
        lines.push(Line::from(spans));
    }
    f.render_widget(Paragraph::new(lines), list);
    if let Some(area) = editor_for(st, false) {
        render_editor(f, st, area, detail);
    } else {
        sample_detail(f, st, detail);
    }
}

/// Width of the review list's doubt column.
const DOUBT_W: usize = 3;

/// One-character codes of the doubt reasons in the review list (the
/// detail below the list and the help screen spell them out). Reasons the
/// llm column already shows (no verdict `…`, unparsable `?`, a red label
/// for a disagreement) get a code too, so the column alone tells why.
pub const DOUBT_CODES: &[(&str, char, &str)] = &[
    ("disagrees", '!', "LLM disagrees"),
    ("unparsable", '?', "verdict unreadable"),
    ("no_verdict", '.', "not relabelled yet"),
    ("low_conf", 'c', "low confidence"),
    ("small_margin", 'm', "small margin"),
    ("vote_split", 'v', "votes split"),
    ("near_other_seed", 's', "near another class's seed"),
    ("edited", 'e', "edited"),
    ("duplicate", 'D', "duplicate"),
    ("near_dup", 'd', "near-duplicate"),
    ("auto", 'a', "auto-decided"),
    ("likely_mislabel", 'L', "classifier: likely mislabel"),
    ("ambiguous", '~', "classifier: ambiguous"),
    ("hard_to_learn", 'h', "classifier: hard to learn"),
];

/// The legend of [`DOUBT_CODES`], for the help screen.
pub fn doubt_legend() -> String {
    let items: Vec<String> = DOUBT_CODES
        .iter()
        .map(|(_, c, what)| format!("{c} {what}"))
        .collect();
    format!("review \"why\" column: {}", items.join(" · "))
}

/// The codes of `tags`, in order ("!c" = disagrees, low confidence).
pub fn doubt_codes(tags: &[&str]) -> String {
    tags.iter()
        .map(|t| {
            DOUBT_CODES
                .iter()
                .find(|(name, _, _)| name == t)
                .map_or('*', |(_, c, _)| *c)
        })
        .collect()
}

fn sample_detail(f: &mut Frame, st: &State, r: Rect) {
    let t = &st.theme;
    let block = Block::default()
        .borders(Borders::TOP)
        .border_style(t.border(false));
    let inner = block.inner(r);
    f.render_widget(block, r);
    let Some(s) = st.selected_sample() else {
        return;
    };
    let mut lines = vec![Line::from(s.text().to_string())];
    lines.push(Line::from(""));
    lines.extend(detail_lines(st, s));
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

fn detail_lines<'a>(st: &State, s: &SampleState) -> Vec<Line<'a>> {
    let t = &st.theme;
    let mut out = Vec::new();
    let (score, tags) = st.queue.doubt(s);
    let mut head = vec![
        status_glyph(t, s.status()),
        Span::raw(format!(" #{} {} ", s.id, s.status().as_str())),
        Span::styled("intended ", t.muted()),
        Span::raw(s.label.clone()),
    ];
    if let Some(v) = s.verdict() {
        let style = match s.agrees() {
            Some(true) => Style::default().fg(t.accept),
            _ => Style::default().fg(t.reject),
        };
        head.push(Span::styled(" · relabel ", t.muted()));
        head.push(Span::styled(
            format!(
                "{} {:.2}",
                v.label.as_deref().unwrap_or("unparsable"),
                v.top_confidence()
            ),
            style,
        ));
    }
    out.push(Line::from(head));
    if let Some(v) = s.verdict()
        && !v.confidence.is_empty()
    {
        let mut conf: Vec<_> = v.confidence.iter().collect();
        conf.sort_by(|a, b| b.1.total_cmp(a.1));
        let txt: Vec<String> = conf
            .iter()
            .take(6)
            .map(|(k, c)| format!("{k} {c:.2}"))
            .collect();
        out.push(Line::styled(
            format!("confidence: {}", txt.join(" · ")),
            t.muted(),
        ));
    }
    let tags = if tags.is_empty() {
        "none".to_string()
    } else {
        tags.join(", ")
    };
    out.push(Line::styled(
        format!("doubt {score:.2}: {tags}"),
        Style::default().fg(t.warn),
    ));
    if let Some(l) = super::s3_view::signal_line(st, s.id) {
        out.push(l);
    }
    let p = &s.provenance;
    let mut prov = Vec::new();
    if let Some(x) = &p.strategy {
        prov.push(x.clone());
    }
    if let Some(a) = p.alpha {
        prov.push(format!("α={a:.2}"));
    }
    if let Some(m) = &p.minor {
        prov.push(format!("minor={m}"));
    }
    if let Some(m) = &p.model {
        prov.push(m.clone());
    }
    if let Some(d) = s.decision() {
        prov.push(format!(
            "by {}",
            match &d.by {
                crate::domain::Actor::Key(k) => format!("key {k}"),
                crate::domain::Actor::Rule(r) => r.clone(),
                crate::domain::Actor::Auto(a) => a.clone(),
            }
        ));
    }
    if !prov.is_empty() {
        out.push(Line::styled(prov.join(" · "), t.muted()));
    }
    out
}

fn seeds(f: &mut Frame, st: &State, r: Rect, focused: bool) {
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
    for (i, s) in st.class_seeds().into_iter().enumerate() {
        let style = if focused && st.seed_sel == Some(i) {
            t.selected()
        } else {
            Style::default()
        };
        lines.push(Line::styled(format!("• {}", s.text()), style));
    }
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), rest);
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
        .title(" edit · Ctrl-S save · Esc cancel ");
    let inner = block.inner(r);
    f.render_widget(block, r);
    f.render_widget(area, inner);
}

fn controls(f: &mut Frame, st: &State, r: Rect, focused: bool) {
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

fn streams(f: &mut Frame, st: &State, r: Rect, focused: bool, now: Instant) {
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
        let head = format!(
            "{glyph} #{}{retry} {kind} {}{alpha} {}ch",
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
    if lines.is_empty() {
        lines.push(Line::styled("no requests yet", t.muted()));
    }
    f.render_widget(Paragraph::new(lines), i);
}

fn stats(f: &mut Frame, st: &State, r: Rect, focused: bool) {
    let t = &st.theme;
    f.render_widget(pane_block(t, " Stats ".into(), focused), r);
    let i = inner(r);
    let w = i.width as usize;
    let nw = 8.min(w / 3);
    let mut lines = Vec::new();
    for c in &st.classes {
        let k = st.tally.per_class.get(&c.name).copied().unwrap_or_default();
        let target = st.target_for(&c.name);
        let nums = format!(" {}/{:.0}", k.accepted, target);
        let bw = w.saturating_sub(nw + 1 + nums.chars().count());
        let filled = if target > 0.0 {
            ((k.accepted as f64 / target).min(1.0) * bw as f64).round() as usize
        } else {
            0
        };
        lines.push(Line::from(vec![
            Span::raw(pad(&c.name, nw)),
            Span::raw(" "),
            Span::styled("█".repeat(filled), Style::default().fg(t.bar)),
            Span::styled("░".repeat(bw - filled), Style::default().fg(t.target)),
            Span::raw(nums),
        ]));
    }
    let g = &st.tally.generated;
    let decided = g.accepted + g.rejected;
    let pct = |a: u64, b: u64| {
        if b == 0 {
            "–".to_string()
        } else {
            format!("{:.0}%", a as f64 * 100.0 / b as f64)
        }
    };
    let u = st.total_usage();
    lines.push(Line::from(""));
    lines.push(Line::from(format!(
        "✓{} ✗{} · {} pending",
        g.accepted, g.rejected, g.pending
    )));
    lines.push(Line::from(format!(
        "accept rate {} · llm agrees {}",
        pct(g.accepted, decided),
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
        let (mark, style) = if r.trusted() {
            ("✓", t.muted())
        } else {
            ("✗", Style::default().fg(t.warn))
        };
        lines.push(Line::styled(
            format!("judge {:.2} (chance {:.2}) {mark}", r.accuracy, r.chance),
            style,
        ));
    }
    let rows = (i.height as usize).saturating_sub(lines.len());
    lines.extend(super::s3_view::stats_lines(st, w, rows));
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

fn status_line(f: &mut Frame, st: &State, r: Rect, now: Instant) {
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
                "  class:X status:pending|accepted|rejected agree:yes|no|none words · Enter apply · Esc cancel",
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
        EngineStatus::Unreachable(_) => Style::default().fg(t.error),
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
fn message_bar(f: &mut Frame, st: &State, r: Rect) {
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

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn popup(f: &mut Frame, t: &Theme, area: Rect, title: &str, lines: Vec<Line>, w: u16, h: u16) {
    let r = centered(area, w, h.saturating_add(2));
    f.render_widget(Clear, r);
    let block = pane_block(t, format!(" {title} "), true).style(t.base());
    let inner = block.inner(r);
    f.render_widget(block, r);
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

fn help(f: &mut Frame, st: &State, area: Rect) {
    let t = &st.theme;
    let key = |k: String, what: String, style: Style| {
        Line::from(vec![Span::styled(pad(&k, 14), style), Span::raw(what)])
    };
    let mut lines: Vec<Line> = st
        .keymap
        .help_rows()
        .iter()
        .map(|(k, h)| key(k.to_string(), h.to_string(), Style::default().fg(t.accent)))
        .collect();
    let legend = doubt_legend();
    // Popup inner width is 68: the legend wraps over a few lines.
    let legend_h = unicode_width::UnicodeWidthStr::width(legend.as_str()).div_ceil(60);
    lines.push(Line::styled(legend, t.muted()));
    if let Some(p) = &st.log_file {
        lines.push(Line::styled(
            format!("log: {} (STRADDLE_LOG=debug for more)", p.display()),
            t.muted(),
        ));
    }
    let h = (lines.len() + legend_h.saturating_sub(1)) as u16;
    let lines: Vec<Line> = lines
        .into_iter()
        .skip(st.help_offset.min(h.saturating_sub(1) as usize))
        .collect();
    popup(
        f,
        t,
        area,
        "Keys (↑↓ scroll, any other key closes)",
        lines,
        70,
        h,
    );
}

fn export_dialog(f: &mut Frame, st: &State, area: Rect, form: &super::state::ExportForm) {
    let t = &st.theme;
    let r = &form.req;
    let fmt = match r.format {
        ExportFormat::Jsonl => "jsonl",
        ExportFormat::Csv => "csv",
        ExportFormat::Hf => "hf",
    };
    let yes = |b: bool| if b { "yes" } else { "no" };
    let fields = [
        ("format", fmt.to_string()),
        ("out", r.out.display().to_string()),
        ("include seeds", yes(r.include_seeds).into()),
        ("validation share", format!("{:.2}", r.val_fraction)),
        ("split seed", r.seed.to_string()),
        ("provenance columns", yes(r.with_provenance).into()),
    ];
    let mut lines: Vec<Line> = fields
        .iter()
        .enumerate()
        .map(|(i, (k, v))| {
            let style = if i == form.field {
                t.selected()
            } else {
                Style::default()
            };
            Line::styled(format!("{} {v}", pad(k, 20)), style)
        })
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::styled(
        "↑↓ field · ←→ change · type the path · Enter export · Esc cancel",
        t.muted(),
    ));
    popup(f, t, area, "Export", lines, 72, 8);
}
