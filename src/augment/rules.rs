//! Bulk review rules, recorded as rule decisions
//! (`Actor::Rule("accept-agreeing>=0.9")`).

use crate::domain::{Actor, Decision, DecisionKind, EventKind, ProjectState, SampleState, Status};

/// The rule's text as recorded, e.g. `accept-agreeing>=0.9`.
pub fn accept_rule_name(min_conf: f64) -> String {
    format!("accept-agreeing>={min_conf}")
}

/// The rule's text as recorded, e.g. `reject-disagreeing>=0.9`.
pub fn reject_rule_name(min_conf: f64) -> String {
    format!("reject-disagreeing>={min_conf}")
}

fn pending_generated(state: &ProjectState) -> impl Iterator<Item = &SampleState> {
    state.generated().filter(|s| s.status() == Status::Pending)
}

/// Whether the accept rule takes this sample: pending, generated, and the
/// relabel agrees with the intended label with confidence ≥ `min_conf`.
pub fn accepts(s: &SampleState, min_conf: f64) -> bool {
    s.agrees() == Some(true) && s.verdict().is_some_and(|v| v.top_confidence() >= min_conf)
}

/// Whether the reject rule takes this sample: the relabel disagrees with
/// confidence ≥ `min_conf`.
pub fn rejects(s: &SampleState, min_conf: f64) -> bool {
    s.agrees() == Some(false) && s.verdict().is_some_and(|v| v.top_confidence() >= min_conf)
}

/// The rule decision for one sample, if a rule takes it (pending
/// generated samples only; accept is tried first), on the relabeler's
/// verdict.
pub fn decide(
    s: &SampleState,
    accept_min: Option<f64>,
    reject_min: Option<f64>,
) -> Option<EventKind> {
    if s.origin != crate::domain::Origin::Generated || s.status() != Status::Pending {
        return None;
    }
    let (kind, rule, reason) = if let Some(m) = accept_min.filter(|m| accepts(s, *m)) {
        (DecisionKind::Accept, accept_rule_name(m), "relabel_agrees")
    } else {
        let m = reject_min.filter(|m| rejects(s, *m))?;
        (
            DecisionKind::Reject,
            reject_rule_name(m),
            "relabel_disagrees",
        )
    };
    Some(EventKind::decided(
        s.id,
        Decision {
            kind,
            label: None,
            reason: Some(reason.into()),
            by: Actor::Rule(rule.into()),
        },
    ))
}

/// The accept rule run by the pipeline itself (`loop`'s auto-accept):
/// [`decide`]'s decision recorded as `Actor::Auto(rule)`, so it is not the
/// person's to undo and shows under the review filter `actor:auto`.
pub fn auto_accept(s: &SampleState, min_conf: Option<f64>) -> Option<EventKind> {
    match decide(s, min_conf, None)? {
        EventKind::Decided(mut d) => {
            if let Actor::Rule(r) = d.decision.by {
                d.decision.by = Actor::Auto(r);
            }
            Some(EventKind::Decided(d))
        }
        other => Some(other),
    }
}

/// What another judge than the relabeler (`app::judges`) says about a
/// sample: its name, its label and its confidence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JudgeSays<'a> {
    pub judge: &'a str,
    pub label: Option<&'a str>,
    pub confidence: f64,
}

/// [`decide`] on another judge's opinion: accept when it agrees with the
/// intended label with confidence ≥ `accept_min`, reject when it
/// disagrees with confidence ≥ `reject_min`. Recorded as
/// `accept-agreeing[JUDGE]>=M` with reason `JUDGE_agrees`; an accept
/// carries the label the judge agreed with, so the relabeler's verdict
/// (`take_relabel`) does not override it.
pub fn decide_by(
    s: &SampleState,
    says: Option<JudgeSays<'_>>,
    accept_min: Option<f64>,
    reject_min: Option<f64>,
) -> Option<EventKind> {
    if s.origin != crate::domain::Origin::Generated || s.status() != Status::Pending {
        return None;
    }
    let j = says?;
    let agrees = j.label? == s.label;
    let (kind, rule, reason) = match (agrees, accept_min, reject_min) {
        (true, Some(m), _) if j.confidence >= m => (
            DecisionKind::Accept,
            format!("accept-agreeing[{}]>={m}", j.judge),
            format!("{}_agrees", j.judge),
        ),
        (false, _, Some(m)) if j.confidence >= m => (
            DecisionKind::Reject,
            format!("reject-disagreeing[{}]>={m}", j.judge),
            format!("{}_disagrees", j.judge),
        ),
        _ => return None,
    };
    // An accepted example keeps the label this judge agreed with, not
    // the relabeler's verdict (which `take_relabel` would export).
    let label = (kind == DecisionKind::Accept).then(|| s.label.clone());
    Some(EventKind::decided(
        s.id,
        Decision {
            kind,
            label,
            reason: Some(reason.into()),
            by: Actor::Rule(rule.into()),
        },
    ))
}

/// `decided` events for the pending generated samples a rule takes.
pub fn apply_rules(
    state: &ProjectState,
    accept_min: Option<f64>,
    reject_min: Option<f64>,
) -> Vec<EventKind> {
    pending_generated(state)
        .filter_map(|s| decide(s, accept_min, reject_min))
        .collect()
}

/// The rule's text as recorded, e.g. `accept-all[class:HUM agree:yes]`.
pub fn all_rule_name(kind: DecisionKind, filter: &super::filter::Filter) -> String {
    let verb = match kind {
        DecisionKind::Accept => "accept-all",
        DecisionKind::Reject => "reject-all",
    };
    format!("{verb}[{}]", filter.raw)
}

/// `decided` events that accept (or reject) every generated sample the
/// filter passes — pending ones only unless the filter names a status —
/// that is not already decided that way. Recorded as
/// `Actor::Rule(all_rule_name(..))` with reason `bulk`.
pub fn decide_all(
    state: &ProjectState,
    filter: &super::filter::Filter,
    kind: DecisionKind,
) -> Vec<EventKind> {
    let rule = all_rule_name(kind, filter);
    state
        .generated()
        .filter(|s| filter.status.is_some() || s.status() == Status::Pending)
        .filter(|s| filter.matches(s, state.take_relabel))
        .filter(|s| s.decision().is_none_or(|d| d.kind != kind))
        .map(|s| {
            EventKind::decided(
                s.id,
                Decision {
                    kind,
                    label: None,
                    reason: Some("bulk".into()),
                    by: Actor::Rule(rule.as_str().into()),
                },
            )
        })
        .collect()
}
