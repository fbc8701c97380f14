//! `straddle review`: bulk rules, recorded as rule decisions. Rules that
//! trust the relabeler's verdicts (`--accept-agreeing`,
//! `--reject-disagreeing`, a filter on `agree:yes|no`, and with
//! `take_relabel` a class filter or an accept that takes the relabeler's
//! labels) refuse when the relabeler is not clearly better than chance
//! (or than the majority answer) on the held-out examples
//! (`straddle judge`), unless `--force`. A rule that would decide nothing
//! is never refused.

use crate::app::judges;
use crate::augment::filter::{Agree, Filter};
use crate::augment::rules;
use crate::classify::judge::relabel_gate;
use crate::domain::{DecisionKind, EventKind, Status};
use crate::store::Project;

fn check_conf(flag: &str, v: Option<f64>) -> anyhow::Result<()> {
    if let Some(v) = v
        && !(0.0..=1.0).contains(&v)
    {
        return Err(crate::error::user(format!(
            "{flag} must be between 0 and 1, got {v}"
        )));
    }
    Ok(())
}

/// Whether a rule may trust the relabeler of `project` (see
/// [`relabel_gate`]): a note to print, or a user error unless `force`.
pub fn judge_gate(project: &Project, force: bool) -> anyhow::Result<Option<String>> {
    let fingerprint = judges::relabel_fingerprint(project)?;
    match relabel_gate(project.state(), &fingerprint) {
        Ok(note) => Ok(note),
        Err(why) if force => Ok(Some(format!(
            "note: --force: trusting the relabeler although {}",
            why.split(':').next().unwrap_or(&why)
        ))),
        Err(why) => Err(crate::error::user(why)),
    }
}

/// The judge bulk rules act on (`app::judges`): the relabeler (its
/// verdicts are in the journal) or another judge with its opinions of the
/// generated samples.
pub enum RuleJudge {
    Relabel,
    Other {
        name: String,
        opinions: judges::Opinions,
    },
}

impl RuleJudge {
    /// What the judge says about `s`, for [`rules::decide_by`]; `None` for
    /// the relabeler (its verdict is on the sample).
    pub fn says(&self, s: &crate::domain::SampleState) -> Option<rules::JudgeSays<'_>> {
        match self {
            RuleJudge::Relabel => None,
            RuleJudge::Other { name, opinions } => {
                opinions.get(name, s.id).map(|o| rules::JudgeSays {
                    judge: name,
                    label: o.label,
                    confidence: o.confidence,
                })
            }
        }
    }

    /// The rule decision for one sample with this judge.
    pub fn decide(
        &self,
        s: &crate::domain::SampleState,
        accept_min: Option<f64>,
        reject_min: Option<f64>,
    ) -> Option<EventKind> {
        match self {
            RuleJudge::Relabel => rules::decide(s, accept_min, reject_min),
            RuleJudge::Other { .. } => rules::decide_by(s, self.says(s), accept_min, reject_min),
        }
    }
}

/// Which judge a bulk rule follows, after the gate: the chosen judge
/// (`[judge] use`, else the best measured by `straddle judge`, whose
/// embedding judges are re-measured here without the LLM when the data
/// changed). When it is not trusted (no judge clearly beats chance),
/// a user error unless `force`. Projects whose embedding judges were never
/// measured keep the relabeler and its gate.
pub fn rule_judge(
    project: &mut Project,
    force: bool,
) -> anyhow::Result<(RuleJudge, Option<String>)> {
    let (j, gate) = rule_judge_gated(project, force)?;
    Ok((j, gate.map_err(crate::error::user)?))
}

/// [`rule_judge`] with the gate's refusal returned rather than raised, for
/// rules that consult the judge only for some samples.
pub fn rule_judge_gated(
    project: &mut Project,
    force: bool,
) -> anyhow::Result<(RuleJudge, Result<Option<String>, String>)> {
    use crate::domain::JudgeUse;
    let pin = project.config().judge.use_;
    let compared = [judges::SMALL, judges::KNN]
        .iter()
        .any(|j| project.state().judges.contains_key(*j));
    let relabel_gate = |project: &Project| -> anyhow::Result<Result<Option<String>, String>> {
        match judge_gate(project, force) {
            Ok(n) => Ok(Ok(n)),
            Err(e) if crate::error::exit_code(&e) == 2 => Ok(Err(e.to_string())),
            Err(e) => Err(e),
        }
    };
    if pin == JudgeUse::Relabel || (pin == JudgeUse::Auto && !compared) {
        return Ok((RuleJudge::Relabel, relabel_gate(project)?));
    }
    let (measured, choice) = super::judge::compare_judges(project)?;
    let name = match choice.judge.as_deref() {
        Some(judges::RELABEL) => {
            return Ok((RuleJudge::Relabel, relabel_gate(project)?));
        }
        Some(n) => n.to_string(),
        None if force => {
            return Ok((
                RuleJudge::Relabel,
                Ok(Some(format!(
                    "note: --force: {}; using the relabeler",
                    choice.why
                ))),
            ));
        }
        None => {
            return Ok((
                RuleJudge::Relabel,
                Err(format!(
                    "{}, or pass --force to apply the rule on the relabeler's verdicts anyway",
                    choice.why
                )),
            ));
        }
    };
    let gate = match choice.person_only() {
        None => Ok(Some(format!(
            "note: the rule follows the {name} judge ({})",
            choice.why
        ))),
        Some(p) if force => Ok(Some(format!(
            "note: --force: trusting the {name} judge although {p}"
        ))),
        Some(p) => Err(format!(
            "{p}. Review by hand (`straddle tui DIR`), or pass --force to apply the rule anyway"
        )),
    };
    let chosen = crate::app::small_model::choose(
        project,
        crate::app::small_model::ModelChoice::Embedding,
        false,
    )?;
    let (_, linear) = crate::app::small_model::configs(project);
    let enc = chosen
        .encoder
        .as_ref()
        .map(|e| e as &dyn crate::classify::TextEncoder);
    let opinions = judges::opinions(
        project.state(),
        &project.class_names(),
        &[name.as_str()],
        &measured,
        enc,
        &linear,
    )?;
    Ok((RuleJudge::Other { name, opinions }, gate))
}

/// `--auto-accept MIN` on the chosen judge when it is not the relabeler
/// (the session auto-accepts on relabel verdicts as they arrive; another
/// judge is trained on the data, so it decides after the run): accept the
/// pending generated samples it agrees with. Returns how many and the
/// judge's name.
pub fn auto_accept_after(
    project: &mut Project,
    min: f64,
    force: bool,
) -> anyhow::Result<Option<(usize, String)>> {
    let (judge, _) = rule_judge(project, force)?;
    let RuleJudge::Other { name, .. } = &judge else {
        return Ok(None);
    };
    let events: Vec<EventKind> = project
        .state()
        .generated()
        .filter_map(|s| judge.decide(s, Some(min), None))
        .collect();
    let n = events.len();
    let name = name.clone();
    project.append(events)?;
    Ok(Some((n, name)))
}

/// The events a review command line asks for, after the judge gate.
/// `Err` is a user error to print.
pub fn review_events(
    project: &mut Project,
    args: &super::ReviewArgs,
) -> anyhow::Result<(Vec<EventKind>, Option<String>)> {
    check_conf("--accept-agreeing", args.accept_agreeing)?;
    check_conf("--reject-disagreeing", args.reject_disagreeing)?;
    let bulk = match (args.accept_all, args.reject_all) {
        (true, true) => {
            return Err(crate::error::user(
                "give --accept-all or --reject-all, not both",
            ));
        }
        (true, false) => Some(DecisionKind::Accept),
        (false, true) => Some(DecisionKind::Reject),
        _ => None,
    };
    if args.filter.is_some() && bulk.is_none() {
        return Err(crate::error::user(
            "--filter selects what --accept-all or --reject-all decides: give one of them",
        ));
    }
    if args.accept_agreeing.is_none() && args.reject_disagreeing.is_none() && bulk.is_none() {
        return Err(crate::error::user(
            "nothing to do: give --accept-agreeing MIN_CONF and/or --reject-disagreeing MIN_CONF, \
             or --accept-all/--reject-all [--filter 'class:X status:Y agree:yes|no|none'] \
             (review by hand in the terminal UI: `straddle tui DIR`)",
        ));
    }
    let filter = Filter::parse(args.filter.as_deref().unwrap_or(""), &project.classes())
        .map_err(|e| crate::error::user(format!("--filter: {e}")))?;
    // The agreement rules and an accept that takes the judge's labels
    // follow the chosen judge.
    let agreement = args.accept_agreeing.is_some() || args.reject_disagreeing.is_some();
    let takes_labels = project.state().take_relabel && bulk == Some(DecisionKind::Accept);
    let any_pending = project
        .state()
        .generated()
        .any(|s| s.status() == Status::Pending);
    let (judge, gate) = if (agreement && any_pending) || takes_labels {
        rule_judge_gated(project, args.force)?
    } else {
        (RuleJudge::Relabel, Ok(None))
    };
    let st = project.state();
    let mut events: Vec<EventKind> = st
        .generated()
        .filter(|s| s.status() == Status::Pending)
        .filter_map(|s| judge.decide(s, args.accept_agreeing, args.reject_disagreeing))
        .collect();
    let mut bulk_takes_labels = false;
    if let Some(kind) = bulk {
        let taken: std::collections::HashSet<u64> = events
            .iter()
            .filter_map(|e| match e {
                EventKind::Decided(d) => Some(d.sample),
                _ => None,
            })
            .collect();
        let mut all = rules::decide_all(st, &filter, kind);
        // With `take_relabel`, accepting an example the judge disagrees
        // with exports the judge's label: the relabeler's through the
        // sample's verdict, another judge's as the decision's label.
        if st.take_relabel && kind == DecisionKind::Accept {
            for e in &mut all {
                let EventKind::Decided(d) = e else { continue };
                let Some(s) = st.sample(d.sample) else {
                    continue;
                };
                match &judge {
                    RuleJudge::Relabel => bulk_takes_labels |= s.agrees() == Some(false),
                    RuleJudge::Other { .. } => {
                        if let Some(l) = judge.says(s).and_then(|j| j.label) {
                            d.decision.label = Some(l.into());
                            bulk_takes_labels |= l != s.label;
                        }
                    }
                }
            }
        }
        events.extend(
            all.into_iter()
                .filter(|e| !matches!(e, EventKind::Decided(d) if taken.contains(&d.sample))),
        );
    }
    // Rules that act on the relabeler's verdicts: a filter on agreement,
    // a class filter when the class is the relabeler's (`take_relabel`).
    let trusts_relabel = matches!(filter.agree, Some(Agree::Yes | Agree::No))
        || (st.take_relabel && filter.class.is_some());
    // Rules that act on the chosen judge: the agreement rules, an accept
    // that takes its labels.
    let trusts_chosen = agreement || bulk_takes_labels;
    let mut notes = Vec::new();
    // No judge to trust: an agreement rule refuses even when it would
    // decide nothing now (only a person can decide).
    if agreement
        && any_pending
        && let Err(why) = &gate
    {
        return Err(crate::error::user(why.clone()));
    }
    if !events.is_empty() {
        if trusts_chosen {
            match gate {
                Ok(Some(n)) => notes.push(n),
                Ok(None) => {}
                Err(why) => return Err(crate::error::user(why)),
            }
        }
        if trusts_relabel
            && !(trusts_chosen && matches!(judge, RuleJudge::Relabel))
            && let Some(n) = judge_gate(project, args.force)?
        {
            notes.push(n);
        }
    }
    Ok((events, (!notes.is_empty()).then(|| notes.join("\n"))))
}

pub fn run(args: super::ReviewArgs) -> anyhow::Result<()> {
    let mut project = Project::open(&args.dir)?;
    project.warn_about_journal();
    let (events, note) = review_events(&mut project, &args)?;
    if let Some(n) = note {
        crate::errln!("{n}");
    }
    let n = events.len();
    project.append(events)?;
    let st = project.state();
    let (mut acc, mut rej, mut pending) = (0, 0, 0);
    for s in st.generated() {
        match s.status() {
            Status::Accepted => acc += 1,
            Status::Rejected => rej += 1,
            Status::Pending => pending += 1,
        }
    }
    crate::outln!(
        "review: {n} decided by rule; generated examples now {acc} accepted, {rej} rejected, {pending} pending"
    );
    Ok(())
}
