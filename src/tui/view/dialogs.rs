//! Popups over the panes: help, bulk confirmation, export form.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};

use crate::cli::ExportFormat;

use super::{doubt_legend, pad, pane_block};
use crate::tui::state::State;
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

pub(super) fn help(f: &mut Frame, st: &State, area: Rect) {
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

pub(super) fn export_dialog(
    f: &mut Frame,
    st: &State,
    area: Rect,
    form: &crate::tui::state::ExportForm,
) {
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
        Line::styled("y = yes, any other key = no", t.muted()),
    ];
    popup(f, t, area, "Bulk decision", text, 60, 5);
}
