//! `straddle review`: bulk rules, recorded as rule decisions. Rules that
//! trust the relabeler's verdicts (`--accept-agreeing`,
//! `--reject-disagreeing`, a filter on `agree:yes|no`, and with
//! `take_relabel` a class filter or an accept that takes the relabeler's
//! labels) refuse when the relabeler is not clearly better than chance
//! (or than the majority answer) on the held-out examples
//! (`straddle judge`), unless `--force`. A rule that would decide nothing
//! is never refused.

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
    let g = super::generate::generator_for(project)?;
    match relabel_gate(project.state(), &g.relabel_fingerprint()) {
        Ok(note) => Ok(note),
        Err(why) if force => Ok(Some(format!(
            "note: --force: trusting the relabeler although {}",
            why.split(':').next().unwrap_or(&why)
        ))),
        Err(why) => Err(crate::error::user(why)),
    }
}

/// The events a review command line asks for, after the judge gate.
/// Pure given the project state: `Err` is a user error to print.
pub fn review_events(
    project: &Project,
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
    let st = project.state();
    let mut events = rules::apply_rules(st, args.accept_agreeing, args.reject_disagreeing);
    let mut bulk_takes_relabel = false;
    if let Some(kind) = bulk {
        let taken: std::collections::HashSet<u64> = events
            .iter()
            .filter_map(|e| match e {
                EventKind::Decided(d) => Some(d.sample),
                _ => None,
            })
            .collect();
        let all = rules::decide_all(st, &filter, kind);
        // With `take_relabel`, accepting an example the relabeler
        // disagrees with exports the relabeler's label.
        bulk_takes_relabel = st.take_relabel
            && kind == DecisionKind::Accept
            && all.iter().any(|e| {
                matches!(e, EventKind::Decided(d)
                    if st.sample(d.sample).is_some_and(|s| s.agrees() == Some(false)))
            });
        events.extend(
            all.into_iter()
                .filter(|e| !matches!(e, EventKind::Decided(d) if taken.contains(&d.sample))),
        );
    }
    // Rules that act on the relabeler's verdicts: the agreement rules, a
    // filter on agreement, a class filter when the class is the
    // relabeler's (`take_relabel`), an accept that takes its labels.
    let trusts_judge = args.accept_agreeing.is_some()
        || args.reject_disagreeing.is_some()
        || matches!(filter.agree, Some(Agree::Yes | Agree::No))
        || (st.take_relabel && filter.class.is_some())
        || bulk_takes_relabel;
    let note = if trusts_judge && !events.is_empty() {
        judge_gate(project, args.force)?
    } else {
        None
    };
    Ok((events, note))
}

pub fn run(args: super::ReviewArgs) -> anyhow::Result<()> {
    let mut project = Project::open(&args.dir)?;
    project.warn_about_journal();
    let (events, note) = review_events(&project, &args)?;
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
