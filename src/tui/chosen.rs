//! The chosen judge in the TUI: one function ([`says`]) tells what the
//! judge that decides (`app::judges::choose`, computed off the UI task
//! and delivered as `Msg::JudgesMeasured`) says about a sample. The review list's
//! verdict column, the label `a` records with `take_relabel`, the bulk
//! rules and their refusal all read it, and the queue's `agree:`/`class:`
//! filters, `!` doubt code and the Seeds pane's counts read its answers
//! through the queue's `JudgeView` ([`view`], [`set_judges`]), so they
//! cannot disagree.
//!
//! Until the judges were measured (and for a chosen relabeler) it is the
//! relabeler's verdict, trusted as its own `straddle judge` report says.

use crate::app::judges::RELABEL;
use crate::domain::{LabelSource, SampleState};

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
/// why (the line the TUI shows). Until a judge was measured, the
/// relabeler's own report decides (an unmeasured relabeler is not
/// refused, as before judges were compared).
pub fn distrust(st: &State) -> Option<String> {
    match &st.judges {
        Some(j) if j.choice.judge.is_some() => j.choice.person_only(),
        _ => st.relabel_distrust(),
    }
}

/// What the chosen judge says about `s` (`None`: nothing yet).
pub fn says<'a>(st: &'a State, s: &'a SampleState) -> Option<Says<'a>> {
    let name = judge(st);
    if name != RELABEL
        && let Some(j) = &st.judges
    {
        let o = j.opinions.get(name, s.id)?;
        return Some(Says {
            judge: name,
            label: o.label,
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
    label_by(
        s,
        st.project.take_relabel,
        judge(st),
        says(st, s).and_then(|j| j.label),
    )
}

/// [`accept_label`]'s rule for a judge named `judge` whose label for `s`
/// is `theirs` (`None`: no answer, or one naming no class). The review
/// queue's class filter and sort and the Seeds pane's counts apply it
/// through the queue's [`JudgeView`](super::queue::JudgeView), so they
/// count the label a row shows.
pub fn label_by<'a>(
    s: &'a SampleState,
    take: bool,
    judge: &str,
    theirs: Option<&'a str>,
) -> (&'a str, LabelSource) {
    if judge == RELABEL || s.origin != crate::domain::Origin::Generated {
        return s.label_and_source(take);
    }
    match s.decision() {
        Some(d) => match d.label.as_deref() {
            Some(l) => {
                let source = if l == s.label {
                    LabelSource::Intended
                } else if Some(l) == theirs
                    || Some(l) == s.verdict().and_then(|v| v.label.as_deref())
                {
                    LabelSource::Relabel
                } else {
                    LabelSource::Edited
                };
                (l, source)
            }
            // Decided without a label (a rule of `straddle review` that
            // followed the relabeler): what export writes.
            None => s.label_and_source(take),
        },
        None => match theirs {
            Some(l) if take && l != s.label => (l, LabelSource::Relabel),
            _ => (s.label.as_str(), LabelSource::Intended),
        },
    }
}

/// The chosen judge's answers as the review queue keeps them (its `agree:`
/// and `class:` filters, class sort, `!` doubt code, and the Seeds pane's
/// counts read them): built from [`says`], so they are the column's.
pub fn view(st: &State) -> super::queue::JudgeView {
    let name = judge(st);
    let mut v = super::queue::JudgeView::new(name);
    // What `says` reads for each generated sample, walked once in id order.
    if name != RELABEL
        && let Some(m) = st.judges.as_ref().and_then(|j| j.opinions.judge(name))
    {
        v.set_all(m.iter().map(|(id, o)| (id, o.label)));
    }
    // Where the judges disagree among themselves (whichever decides):
    // the training signals' `JUDGES_DISAGREE`, read from the current
    // opinions, never a copy taken when the signals were computed.
    if let Some(j) = &st.judges {
        v.set_split(j.opinions.disagreements());
    }
    v
}

/// Put measured judges in force: the queue (filters, doubt, order) and the
/// Seeds pane's counts follow the new chosen judge's answers; only samples
/// whose answer changed move.
pub fn set_judges(st: &mut State, j: crate::app::judges::ReviewJudges) {
    st.judges = Some(j);
    let v = view(st);
    st.set_judge_view(v);
}

/// A judge's name as the review shows it: the relabeler is "llm".
pub fn display(judge: &str) -> &str {
    if judge == RELABEL { "llm" } else { judge }
}

/// The column header of the verdict column: the judge's name, with ✓
/// when bulk rules may follow it.
pub fn header(st: &State) -> String {
    let name = display(judge(st));
    if st.judges.as_ref().is_some_and(|j| j.choice.judge.is_some()) && distrust(st).is_none() {
        format!("{name} ✓")
    } else {
        name.to_string()
    }
}

/// How long the runtime waits after a measure is asked for before it
/// takes the snapshot: keys and replies in that time share one measure.
pub const DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(800);

/// The judges measured again off the UI task.
#[derive(Debug, Clone)]
pub struct Measured {
    pub review: crate::app::judges::ReviewJudges,
    /// Reports that changed, to record as `judge_scored` (as `straddle
    /// judge` does), so `straddle review` and the next open agree.
    pub record: Vec<crate::domain::JudgeScored>,
}

/// The measure job: at most one runs, and at most one more is queued
/// however many changes arrive meanwhile (never one per key).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measuring {
    pub running: bool,
    /// The data changed while a measure ran: measure again after it.
    pub again: bool,
    /// Why the last measure failed.
    pub error: Option<String>,
}

/// Ask for a measure (coalesced with one already asked for).
pub fn request(st: &mut State, fx: &mut Vec<super::Effect>) {
    if st.measuring.running {
        st.measuring.again = true;
    } else {
        st.measuring.running = true;
        fx.push(super::Effect::MeasureJudges);
        st.dirty = true;
    }
}

/// Whether an event changes what the judges are measured on or what they
/// judge: the seeds, accepted and held-out examples, the texts, the
/// generated samples and the relabel verdicts (the ensemble's input).
/// Their own `judge_scored` records do not.
fn stales(k: &crate::domain::EventKind) -> bool {
    use crate::domain::EventKind as K;
    matches!(
        k,
        K::SampleAdded(_)
            | K::Decided(_)
            | K::Undone(_)
            | K::Edited(_)
            | K::VerdictRecorded(_)
            | K::RelabelPolicyChanged(_)
    )
}

/// After acknowledged events: measure again when the judges' data changed.
pub fn after_append(st: &mut State, events: &[crate::domain::Event], fx: &mut Vec<super::Effect>) {
    if events.iter().any(|e| stales(&e.kind)) {
        request(st, fx);
    }
}

/// A measure's answer: the judges (and their new reports to record), then
/// the measure queued meanwhile.
pub fn on_measured(st: &mut State, r: Result<Box<Measured>, String>, fx: &mut Vec<super::Effect>) {
    st.measuring.running = false;
    match r {
        Ok(m) => {
            let Measured { review, record } = *m;
            set_judges(st, review);
            st.measuring.error = None;
            if !record.is_empty() {
                fx.push(super::Effect::Append(
                    record
                        .into_iter()
                        .map(crate::domain::EventKind::JudgeScored)
                        .collect(),
                ));
            }
        }
        Err(e) => st.measuring.error = Some(e),
    }
    if std::mem::take(&mut st.measuring.again) {
        request(st, fx);
    }
    st.dirty = true;
}
