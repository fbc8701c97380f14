//! The chosen judge in the TUI: one function ([`says`]) tells what the
//! judge that decides (`app::judges::choose`, computed off the UI task
//! and delivered as `Msg::Judges`) says about a sample. The review list's
//! verdict column, the label `a` records with `take_relabel`, the bulk
//! rules and their refusal all read it, so they cannot disagree.
//!
//! Until the judges were measured (and for a chosen relabeler) it is the
//! relabeler's verdict, trusted as its own `straddle judge` report says.

use crate::app::judges::RELABEL;
use crate::domain::{LabelSource, SampleState, Status};

use super::state::State;

/// What the chosen judge says about one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Says<'a> {
    pub judge: &'a str,
    /// `None`: an answer that names no class (`?`).
    pub label: Option<&'a str>,
    pub confidence: f64,
}

/// The name of the judge that decides: the chosen one once the judges
/// were measured, else the relabeler.
pub fn judge(st: &State) -> &str {
    st.judges
        .as_ref()
        .and_then(|j| j.choice.judge.as_deref())
        .unwrap_or(RELABEL)
}

/// Whether bulk rules may act on the chosen judge's verdicts, and if not
/// why (the line the TUI shows). Before the judges were measured, the
/// relabeler's own report decides (an unmeasured relabeler is not
/// refused, as before judges were compared).
pub fn distrust(st: &State) -> Option<String> {
    match &st.judges {
        Some(j) => j.choice.person_only(),
        None => st.relabel_distrust(),
    }
}

/// What the chosen judge says about `s` (`None`: nothing yet).
pub fn says<'a>(st: &'a State, s: &'a SampleState) -> Option<Says<'a>> {
    let name = judge(st);
    if name != RELABEL
        && let Some(j) = &st.judges
    {
        let o = j.opinions.get(name)?.get(&s.id)?;
        return Some(Says {
            judge: name,
            label: o.label.as_deref(),
            confidence: o.confidence,
        });
    }
    let v = s.verdict()?;
    Some(Says {
        judge: RELABEL,
        label: v.label.as_deref(),
        confidence: v.top_confidence(),
    })
}

/// Whether the chosen judge agrees with the intended label (`None`: no
/// verdict, or one naming no class).
pub fn agrees(st: &State, s: &SampleState) -> Option<bool> {
    says(st, s)
        .and_then(|j| j.label)
        .map(|l| l == s.label.as_str())
}

/// The label `a` records on `s` (the one recorded once decided) and where
/// it comes from: with `take_relabel`, the chosen judge's label where it
/// differs from the intended one (`LabelSource::Relabel`, shown ↻ and
/// named after the judge).
pub fn accept_label<'a>(st: &'a State, s: &'a SampleState) -> (&'a str, LabelSource) {
    let take = st.project.take_relabel;
    let name = judge(st);
    if name == RELABEL || s.origin != crate::domain::Origin::Generated {
        return s.label_and_source(take);
    }
    let theirs = says(st, s).and_then(|j| j.label);
    if let Some(l) = s.decision().and_then(|d| d.label.as_deref()) {
        let source = if l == s.label {
            LabelSource::Intended
        } else if Some(l) == theirs || Some(l) == s.verdict().and_then(|v| v.label.as_deref()) {
            LabelSource::Relabel
        } else {
            LabelSource::Edited
        };
        return (l, source);
    }
    if s.status() == Status::Pending
        && take
        && let Some(l) = theirs
        && l != s.label
    {
        return (l, LabelSource::Relabel);
    }
    (s.label.as_str(), LabelSource::Intended)
}

/// The column header of the verdict column: the judge's name, with ✓
/// when bulk rules may follow it.
pub fn header(st: &State) -> String {
    let name = judge(st);
    let name = if name == RELABEL { "llm" } else { name };
    if st.judges.is_some() && distrust(st).is_none() {
        format!("{name} ✓")
    } else {
        name.to_string()
    }
}
