//! `straddle generate`, `relabel`, `review`, `prompt`.

use crate::augment::{Generator, Templates, rules};
use crate::domain::Status;
use crate::store::Project;

/// A generator for an open project with its live settings and templates.
pub(crate) fn generator_for(project: &Project) -> anyhow::Result<Generator> {
    let templates = Templates::load(&project.prompts_dir())?;
    Ok(Generator::new(
        project.config(),
        project.classes(),
        project.generation_settings(),
        templates,
        project.state(),
    ))
}

pub fn run_generate(_args: super::GenerateArgs) -> anyhow::Result<()> {
    Err(crate::error::user(
        "`straddle generate` is not implemented yet",
    ))
}

pub fn run_relabel(_args: super::RelabelArgs) -> anyhow::Result<()> {
    Err(crate::error::user(
        "`straddle relabel` is not implemented yet",
    ))
}

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

pub fn run_review(args: super::ReviewArgs) -> anyhow::Result<()> {
    check_conf("--accept-agreeing", args.accept_agreeing)?;
    check_conf("--reject-disagreeing", args.reject_disagreeing)?;
    if args.accept_agreeing.is_none() && args.reject_disagreeing.is_none() {
        return Err(crate::error::user(
            "nothing to do: give --accept-agreeing MIN_CONF and/or --reject-disagreeing MIN_CONF \
             (review by hand in the terminal UI: `straddle tui DIR`)",
        ));
    }
    let mut project = Project::open(&args.dir)?;
    let events = rules::apply_rules(
        project.state(),
        args.accept_agreeing,
        args.reject_disagreeing,
    );
    let n = events.len();
    project.append(events)?;
    let st = project.state();
    let pending = st
        .generated()
        .filter(|s| s.status() == Status::Pending)
        .count();
    let (acc, rej) = st.generated().fold((0, 0), |(a, r), s| match s.status() {
        Status::Accepted => (a + 1, r),
        Status::Rejected => (a, r + 1),
        Status::Pending => (a, r),
    });
    println!(
        "review: {n} decided by rule; generated examples now {acc} accepted, {rej} rejected, {pending} pending"
    );
    Ok(())
}

pub fn run_prompt(args: super::PromptArgs) -> anyhow::Result<()> {
    let project = Project::open_read_only(&args.dir)?;
    let mut g = generator_for(&project)?;
    let planned = if args.relabel {
        let st = project.state();
        let id = st
            .generated()
            .map(|s| s.id)
            .next()
            .ok_or_else(|| crate::error::user("no generated example to relabel yet"))?;
        g.plan_relabel(st, id)?
    } else {
        let mut s = project.generation_settings();
        s.strategy = args.strategy;
        g.set_settings(s, project.state());
        g.peek_generate(g.settings().per_request)?
    };
    println!("{}", planned.prompt());
    Ok(())
}
