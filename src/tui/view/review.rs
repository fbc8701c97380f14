//! The Review pane: the queue, the selected sample's detail, doubt codes.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use crate::domain::{SampleState, Status};

use super::{clip, editor_for, pad, pane_block, render_editor, review_parts};
use crate::tui::state::State;
use crate::tui::theme::Theme;

pub(super) fn status_glyph(t: &Theme, s: Status) -> Span<'static> {
    match s {
        Status::Pending => Span::styled("·", Style::default().fg(t.pending)),
        Status::Accepted => Span::styled("✓", Style::default().fg(t.accept)),
        Status::Rejected => Span::styled("✗", Style::default().fg(t.reject)),
    }
}

pub(super) fn review(f: &mut Frame, st: &State, r: Rect, focused: bool) {
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
                st.keymap.hint(crate::tui::keymap::Action::ToggleGeneration)
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
    // An untrusted relabeler (`straddle judge`): its verdicts are greyed.
    let distrusted = st.relabel_distrust().is_some();
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
                    _ if distrusted => t.muted(),
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
pub(super) const DOUBT_W: usize = 3;

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
    ("model_disagrees", 'M', "model prefers another class"),
    ("low_model_confidence", 'u', "model unsure of the label"),
    ("neighbours_disagree", 'n', "nearest examples disagree"),
    ("judges_disagree", 'J', "the judges give different classes"),
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

pub(super) fn sample_detail(f: &mut Frame, st: &State, r: Rect) {
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

pub(super) fn detail_lines<'a>(st: &State, s: &SampleState) -> Vec<Line<'a>> {
    let t = &st.theme;
    let mut out = Vec::new();
    let (score, tags) = st.queue.doubt(s);
    let mut head = vec![
        status_glyph(t, s.status()),
        Span::raw(format!(" #{} {} ", s.id, s.status().as_str())),
        Span::styled("intended ", t.muted()),
        Span::raw(s.label.clone()),
    ];
    let distrust = st.relabel_distrust();
    if let Some(v) = s.verdict() {
        let style = match s.agrees() {
            _ if distrust.is_some() => t.muted(),
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
    if let Some(why) = distrust
        && s.verdict().is_some()
    {
        out.push(Line::styled(why, t.muted()));
    }
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
    if let Some(l) = crate::tui::s3_view::signal_line(st, s.id) {
        out.push(l);
    }
    out.extend(crate::tui::judges_view::detail_lines(st, s));
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
