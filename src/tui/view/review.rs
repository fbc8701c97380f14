//! The Review pane: the queue, the selected sample's detail, doubt codes.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use ratatui::layout::{Constraint, Layout};

use crate::domain::{LabelSource, SampleState, Status};
use crate::tui::keymap::Action;

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
    // The label column shows the label `a` records (or recorded) with a
    // mark for where it comes from: ↻ the relabel, ✎ chosen by a person.
    // The verdict column is the chosen judge's; its header names it.
    let judge = crate::tui::chosen::header(st);
    let vw = lw.max(unicode_width::UnicodeWidthStr::width(judge.as_str()));
    let fixed = 2 + lw + 2 + vw + 1 + 4 + 1 + DOUBT_W + 1;
    f.render_widget(
        Paragraph::new(Line::styled(
            clip(
                &format!(
                    "  {} {} conf {} text",
                    pad(if lw >= 5 { "label" } else { "lbl" }, lw + 1),
                    pad(&judge, vw),
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
    // The verdict column is the chosen judge's (`tui::chosen`); an
    // untrusted one's verdicts are greyed.
    let distrusted = crate::tui::chosen::distrust(st).is_some();
    let offset = st.review_offset.min(n.saturating_sub(1));
    let mut lines = Vec::with_capacity(list.height as usize);
    for row in 0..list.height as usize {
        let i = offset + row;
        let Some(s) = st.queue.get(i).and_then(|id| st.project.sample(id)) else {
            break;
        };
        let (vl, vc, vstyle) = match crate::tui::chosen::says(st, s) {
            None => ("…".to_string(), "    ".to_string(), t.muted()),
            Some(v) => {
                let style = match crate::tui::chosen::agrees(st, s) {
                    _ if distrusted => t.muted(),
                    Some(true) => Style::default().fg(t.accept),
                    Some(false) => Style::default().fg(t.reject),
                    None => Style::default().fg(t.warn),
                };
                (
                    v.label.unwrap_or("?").to_string(),
                    format!("{:>3}%", (v.confidence * 100.0).round() as i64),
                    style,
                )
            }
        };
        let (_, tags) = st.queue.doubt(s);
        let text_w = (list.width as usize).saturating_sub(fixed);
        let (label, source) = crate::tui::chosen::accept_label(st, s);
        let mut spans = vec![
            status_glyph(t, s.status()),
            Span::raw(" "),
            Span::styled(
                pad(&format!("{}{}", clip(label, lw), source.mark()), lw + 1),
                label_style(t, source),
            ),
            Span::raw(" "),
            Span::styled(pad(&vl, vw), vstyle),
            Span::raw(" "),
            Span::styled(vc, vstyle),
            Span::raw(" "),
            Span::styled(
                pad(&doubt_cell(&tags, DOUBT_W), DOUBT_W),
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
pub(super) const DOUBT_W: usize = 4;

/// One-character codes of the doubt reasons in the review list (the
/// detail below the list and the help screen spell them out). Reasons the
/// llm column already shows (no verdict `…`, unparsable `?`, a red label
/// for a disagreement) get a code too, so the column alone tells why.
pub const DOUBT_CODES: &[(&str, char, &str)] = &[
    // Most telling first: a row shows codes in this order.
    // The chosen judge's disagreement (`tui::chosen`; the relabeler's
    // until judges are measured): the detail and help name the judge.
    ("disagrees", '!', "the judge disagrees"),
    ("likely_mislabel", 'L', "classifier: likely mislabel"),
    ("noisy", 'N', "denoiser: off-topic or echoes the prompt"),
    ("duplicate", 'D', "duplicate"),
    ("near_dup", 'd', "near-duplicate"),
    ("unparsable", '?', "verdict unreadable"),
    ("no_verdict", '.', "not relabelled yet"),
    ("model_disagrees", 'M', "model prefers another class"),
    ("neighbours_disagree", 'n', "nearest examples disagree"),
    ("ambiguous", '~', "classifier: ambiguous"),
    ("low_conf", 'c', "low confidence"),
    ("small_margin", 'm', "small margin"),
    ("vote_split", 'v', "votes split"),
    ("near_other_seed", 's', "near another class's seed"),
    ("hard_to_learn", 'h', "classifier: hard to learn"),
    ("low_model_confidence", 'u', "model unsure of the label"),
    ("judges_disagree", 'J', "the judges give different classes"),
    ("edited", 'e', "edited"),
    ("auto", 'a', "auto-decided"),
];

/// The legend of [`DOUBT_CODES`], for the help screen; `judge` is the
/// judge whose disagreement `!` shows ("knn", "llm").
pub fn doubt_legend(judge: &str) -> String {
    let items: Vec<String> = DOUBT_CODES
        .iter()
        .map(|(tag, c, what)| match *tag {
            "disagrees" => format!("{c} the {judge} judge disagrees"),
            _ => format!("{c} {what}"),
        })
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

/// Where a reason ranks in [`DOUBT_CODES`] (unknown ones last).
fn rank(tag: &str) -> usize {
    DOUBT_CODES
        .iter()
        .position(|(name, _, _)| *name == tag)
        .unwrap_or(DOUBT_CODES.len())
}

/// The `why` cell: as many codes as fit in `width`, most telling first,
/// and `+N` for the reasons left out ("!L+3").
pub fn doubt_cell(tags: &[&str], width: usize) -> String {
    let mut tags = tags.to_vec();
    tags.sort_by_key(|t| rank(t));
    if tags.len() <= width {
        return doubt_codes(&tags);
    }
    let mut keep = width.saturating_sub(2);
    while keep > 0 && keep + 1 + (tags.len() - keep).to_string().len() > width {
        keep -= 1;
    }
    format!("{}+{}", doubt_codes(&tags[..keep]), tags.len() - keep)
}

/// Every reason in words, most telling first ("the judge disagrees · low
/// confidence").
pub fn doubt_words(tags: &[&str]) -> String {
    words_with(tags, None)
}

/// [`doubt_words`] with `disagrees` said as `disagrees` ("knn says LOC
/// (0.93)") when given.
fn words_with(tags: &[&str], disagrees: Option<&str>) -> String {
    let mut tags = tags.to_vec();
    tags.sort_by_key(|t| rank(t));
    let words: Vec<&str> = tags
        .iter()
        .map(|t| match (*t, disagrees) {
            ("disagrees", Some(d)) => d,
            _ => DOUBT_CODES
                .iter()
                .find(|(name, _, _)| name == t)
                .map_or(*t, |(_, _, w)| *w),
        })
        .collect();
    words.join(" · ")
}

/// The chosen judge's disagreement with `s`'s intended label in words:
/// "knn says LOC (0.93)" (`None` when it does not disagree).
fn disagreement(st: &State, s: &SampleState) -> Option<String> {
    let j = crate::tui::chosen::says(st, s)?;
    let l = j.label.filter(|l| *l != s.label)?;
    Some(format!(
        "{} says {l} ({:.2})",
        crate::tui::chosen::display(j.judge),
        j.confidence
    ))
}

/// The label column's style: a label that is not the intended one stands out.
fn label_style(t: &Theme, source: LabelSource) -> Style {
    match source {
        LabelSource::Intended => Style::default(),
        LabelSource::Relabel | LabelSource::Edited => Style::default().fg(t.accent),
    }
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
    // The keys' hint for this row stays on the detail's last line(s).
    let hint = row_hint(st, s);
    let hint_h = (unicode_width::UnicodeWidthStr::width(hint.as_str()) as u16)
        .div_ceil(inner.width.max(1))
        .clamp(1, 2)
        .min(inner.height.saturating_sub(1));
    let [body, foot] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(hint_h)]).areas(inner);
    // Only what fits is laid out: a huge text costs what is on screen.
    let cells = body.width as usize * body.height as usize;
    let mut lines = vec![Line::from(super::prefix_chars(s.text(), cells).to_string())];
    lines.push(Line::from(""));
    lines.extend(detail_lines(st, s));
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), body);
    f.render_widget(
        Paragraph::new(Line::styled(hint, t.muted())).wrap(Wrap { trim: true }),
        foot,
    );
}

/// What the deciding keys do with this row: "a accept as LOC ↻ relabel ·
/// x reject · 1–6 accept as 1 ABBR 2 DESC … · t take_relabel off".
pub fn row_hint(st: &State, s: &SampleState) -> String {
    let km = &st.keymap;
    let (label, source) = crate::tui::chosen::accept_label(st, s);
    let mut parts = vec![format!(
        "{} accept as {label} ({})",
        km.hint(Action::Accept),
        source_name(st, s, label, source)
    )];
    parts.push(format!("{} reject", km.hint(Action::Reject)));
    let n = st.classes.len().min(9);
    let keys: Vec<String> = (1..=n as u8).map(|i| km.hint(Action::Relabel(i))).collect();
    let names: Vec<&str> = st.classes.iter().take(n).map(|c| c.name.as_str()).collect();
    if keys
        .iter()
        .enumerate()
        .all(|(i, k)| *k == (i + 1).to_string())
        && n > 1
    {
        parts.push(format!("1–{n} accept as {}", names.join(" ")));
    } else if n > 0 {
        let pairs: Vec<String> = keys
            .iter()
            .zip(&names)
            .map(|(k, c)| format!("{k} {c}"))
            .collect();
        parts.push(format!("accept as {}", pairs.join(" ")));
    }
    parts.push(format!(
        "{} take_relabel {}",
        km.hint(Action::ToggleTakeRelabel),
        if st.project.take_relabel { "off" } else { "on" }
    ));
    parts.join(" · ")
}

/// Where `s`'s label comes from, in words: "relabel" names the chosen
/// judge when it is another one ("knn") and gave that label.
fn source_name<'a>(st: &'a State, s: &SampleState, label: &str, source: LabelSource) -> &'a str {
    match source {
        LabelSource::Relabel
            if crate::tui::chosen::says(st, s).and_then(|j| j.label) == Some(label) =>
        {
            crate::tui::chosen::judge(st)
        }
        _ => source.as_str(),
    }
}

pub(super) fn detail_lines<'a>(st: &State, s: &SampleState) -> Vec<Line<'a>> {
    let t = &st.theme;
    let mut out = Vec::new();
    let (score, tags) = st.queue.doubt(s);
    let (label, source) = crate::tui::chosen::accept_label(st, s);
    let records = if s.status() == Status::Pending {
        format!("{} records ", st.keymap.hint(Action::Accept))
    } else {
        "label ".to_string()
    };
    let mut head = vec![
        status_glyph(t, s.status()),
        Span::raw(format!(" #{} {} · ", s.id, s.status().as_str())),
        Span::styled(records, t.muted()),
        Span::styled(
            format!("{label} ({})", source_name(st, s, label, source)),
            label_style(t, source).add_modifier(Modifier::BOLD),
        ),
        Span::styled(" · intended ", t.muted()),
        Span::raw(s.label.to_string()),
    ];
    let distrust = st.relabel_distrust();
    if let Some(v) = s.verdict() {
        let style = match s.agrees() {
            _ if distrust.is_some() => t.muted(),
            Some(true) => Style::default().fg(t.accept),
            _ => Style::default().fg(t.reject),
        };
        head.push(Span::styled(" · llm ", t.muted()));
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
        // The answer first (the label the llm column shows), then every
        // other class by confidence; a class scored above the answer is
        // said so rather than silently listed first.
        let answer = v.label.as_deref();
        let mut conf: Vec<_> = v
            .confidence
            .iter()
            .filter(|(k, _)| Some(*k) != answer)
            .collect();
        conf.sort_by(|a, b| b.1.total_cmp(a.1));
        let mut txt: Vec<String> = answer
            .map(|a| format!("{a} {:.2} (answer)", v.top_confidence()))
            .into_iter()
            .collect();
        txt.extend(conf.iter().map(|(k, c)| format!("{k} {c:.2}")));
        let mut line = format!("confidence: {}", txt.join(" · "));
        if let Some((k, c)) = conf.first()
            && **c > v.top_confidence()
        {
            line.push_str(&format!(" — {k} scored above the answer"));
        }
        out.push(Line::styled(line, t.muted()));
    }
    let tags = if tags.is_empty() {
        "none".to_string()
    } else {
        words_with(&tags, disagreement(st, s).as_deref())
    };
    out.push(Line::styled(
        format!("doubt {score:.2}: {tags}"),
        Style::default().fg(t.warn),
    ));
    if let Some(n) = &s.noise {
        let what = match &n.reason {
            Some(r) => format!("denoiser: {r} · noise {:.2}", n.noise),
            None => format!("denoiser: kept · noise {:.2}", n.noise),
        };
        let style = if n.reason.is_some() {
            Style::default().fg(t.warn)
        } else {
            t.muted()
        };
        out.push(Line::styled(what, style));
    }
    if let Some(l) = crate::tui::s3_view::signal_line(st, s.id) {
        out.push(l);
    }
    out.extend(crate::tui::judges_view::detail_lines(st, s));
    let p = &s.provenance;
    let mut prov = Vec::new();
    if let Some(x) = &p.strategy {
        prov.push(x.to_string());
    }
    if let Some(a) = p.alpha {
        prov.push(format!("α={a:.2}"));
    }
    if let Some(m) = &p.minor {
        prov.push(format!("minor={m}"));
    }
    if let Some(m) = &p.model {
        prov.push(m.to_string());
    }
    if let Some(d) = s.decision() {
        prov.push(format!(
            "by {}",
            match &d.by {
                crate::domain::Actor::Key(k) => format!("key {k}"),
                crate::domain::Actor::Rule(r) => r.to_string(),
                crate::domain::Actor::Auto(a) => a.to_string(),
            }
        ));
    }
    if !prov.is_empty() {
        out.push(Line::styled(prov.join(" · "), t.muted()));
    }
    out
}
