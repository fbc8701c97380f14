//! Popups over the panes: help, bulk confirmation, export form.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};

use super::{doubt_legend, pad, pane_block};
use crate::tui::export_form::ExportField;
use crate::tui::keymap::KeyMode;
use crate::tui::state::{ExportForm, State};
use crate::tui::theme::Theme;

pub(super) fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

pub(super) fn popup(
    f: &mut Frame,
    t: &Theme,
    area: Rect,
    title: &str,
    lines: Vec<Line>,
    w: u16,
    h: u16,
) {
    let r = centered(area, w, h.saturating_add(2));
    f.render_widget(Clear, r);
    let block = pane_block(t, format!(" {title} "), true).style(t.base());
    let inner = block.inner(r);
    f.render_widget(block, r);
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

/// The help screen: every mode's rows of the keymap, the normal mode's
/// first.
pub(super) fn help(f: &mut Frame, st: &State, area: Rect) {
    let t = &st.theme;
    let key = |k: &str, what: &str, style: Style| {
        Line::from(vec![
            Span::styled(pad(k, 14), style),
            Span::raw(what.to_string()),
        ])
    };
    let accent = Style::default().fg(t.accent);
    let sections = st.keymap.help_sections();
    let mut lines: Vec<Line> = Vec::new();
    let mut rest: Vec<Line> = Vec::new();
    for (mode, rows) in &sections {
        let out = if *mode == KeyMode::Normal {
            &mut lines
        } else {
            rest.push(Line::from(""));
            let entry: Vec<String> = mode
                .entered_by()
                .iter()
                .map(|a| st.keymap.hint(*a))
                .collect();
            rest.push(Line::styled(
                format!("{} (after {})", mode.title(), entry.join(" / ")),
                t.muted().add_modifier(Modifier::UNDERLINED),
            ));
            &mut rest
        };
        out.extend(rows.iter().map(|r| key(&r.label, r.help, accent)));
        if !mode.unbound_help().is_empty() {
            out.push(key("other keys", mode.unbound_help(), t.muted()));
        }
    }
    let legend = doubt_legend(crate::tui::chosen::display(crate::tui::chosen::judge(st)));
    // Popup inner width is 68: the legend wraps over a few lines.
    let legend_h = unicode_width::UnicodeWidthStr::width(legend.as_str()).div_ceil(60);
    lines.push(Line::styled(legend, t.muted()));
    if let Some(p) = &st.log_file {
        lines.push(Line::styled(
            format!("log: {} (STRADDLE_LOG=debug for more)", p.display()),
            t.muted(),
        ));
    }
    lines.extend(rest);
    let h = (lines.len() + legend_h.saturating_sub(1)) as u16;
    let lines: Vec<Line> = lines
        .into_iter()
        .skip(st.help_offset.min(h.saturating_sub(1) as usize))
        .collect();
    let title = format!("Keys ({})", st.keymap.hint_line(KeyMode::Help));
    popup(f, t, area, &title, lines, 70, h);
}

/// The export form: [`ExportField::ALL`] with their values.
pub(super) fn export_dialog(f: &mut Frame, st: &State, area: Rect, form: &ExportForm) {
    let t = &st.theme;
    let mut lines: Vec<Line> = ExportField::ALL
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let style = if i == form.field {
                t.selected()
            } else {
                Style::default()
            };
            let v = field.value(form);
            Line::styled(format!("{} {v}", pad(field.label(), 20)), style)
        })
        .collect();
    lines.push(Line::from(""));
    // The data gate before confirm: seeds only vs seeds + accepted on
    // the held-out examples (wrapped: the message is a few sentences).
    let gate_style = match &form.gate {
        crate::tui::export_form::GateState::Ready(Some(g)) if g.refuses() => {
            Style::default().fg(t.reject)
        }
        crate::tui::export_form::GateState::Ready(Some(g))
            if g.verdict() == crate::app::data_gate::GateVerdict::Better =>
        {
            Style::default().fg(t.accept)
        }
        _ => t.muted(),
    };
    let mut gate = form.gate.line();
    if let Some(why) = form.refusal() {
        gate = format!(
            "{gate} — Enter refuses: {}",
            why.lines().last().unwrap_or("")
        );
    }
    let inner_w = 72usize.min(area.width as usize).saturating_sub(2).max(1);
    for l in textwrap_lines(&gate, inner_w) {
        lines.push(Line::styled(l, gate_style));
    }
    lines.push(Line::from(""));
    lines.push(Line::styled(
        st.keymap.hint_line(KeyMode::Export),
        t.muted(),
    ));
    let h = lines.len() as u16;
    popup(f, t, area, "Export", lines, 72, h);
}

/// The bulk-decision confirmation.
pub(super) fn confirm(
    f: &mut Frame,
    st: &State,
    area: Rect,
    kind: crate::domain::DecisionKind,
    n: usize,
) {
    let t = &st.theme;
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
        Line::from(format!("{verb} {n} examples in {filter}?")),
        Line::from(""),
        Line::styled(st.keymap.hint_line(KeyMode::Confirm), t.muted()),
    ];
    popup(f, t, area, "Bulk decision", text, 60, 5);
}

/// `s` cut into lines of at most `w` columns at spaces (a word longer
/// than a line is cut).
fn textwrap_lines(s: &str, w: usize) -> Vec<String> {
    use unicode_width::UnicodeWidthStr;
    let mut out = Vec::new();
    let mut cur = String::new();
    for word in s.split_whitespace() {
        let need = if cur.is_empty() { 0 } else { 1 } + word.width();
        if !cur.is_empty() && cur.width() + need > w {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}
