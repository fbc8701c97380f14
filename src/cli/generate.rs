//! `straddle generate`, `relabel`, `prompt` (`review` is in `review.rs`).

use crate::augment::{Generator, Templates};
use crate::store::Project;

pub mod run;

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

fn check_args(a: &super::GenerateArgs) -> anyhow::Result<()> {
    check_conf("--alpha", a.alpha)?;
    check_conf("--auto-accept", a.auto_accept)?;
    if a.count == 0 {
        return Err(crate::error::user("--count must be at least 1"));
    }
    if let Some(s) = a.strategy
        && crate::augment::strategy::get(s).input() != crate::augment::strategy::Input::Settings
    {
        return Err(crate::error::user(format!(
            "the {} strategy is planned by an S3 round (`straddle loop`, or R in the terminal UI), \
             not by generate (use {})",
            s.as_str(),
            crate::augment::strategy::from_settings()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        )));
    }
    for (flag, v) in [("--classes", a.classes), ("--per-request", a.per_request)] {
        if v == Some(0) {
            return Err(crate::error::user(format!("{flag} must be at least 1")));
        }
    }
    Ok(())
}

/// This run's generation settings: the project's, overlaid by the flags.
fn settings_with_flags(
    mut s: crate::domain::GenerationSettings,
    a: &super::GenerateArgs,
) -> crate::domain::GenerationSettings {
    if let Some(x) = a.strategy {
        s.strategy = x;
    }
    if let Some(x) = a.alpha {
        s.alpha = Some(x);
    }
    if let Some(r) = a.alpha_range {
        s.alpha_range = r;
        s.alpha = None;
    }
    if let Some(x) = a.classes {
        s.classes_per_prompt = x;
    }
    if let Some(x) = a.shots {
        s.shots = x;
    }
    if let Some(x) = a.per_request {
        s.per_request = x;
    }
    s.target_count = a.count;
    s
}

pub fn run_generate(args: super::GenerateArgs) -> anyhow::Result<()> {
    check_args(&args)?;
    let mut project = Project::open(&args.dir)?;
    // Auto-accept follows the chosen judge: the relabeler's verdicts as
    // they arrive, another judge's after the run.
    let mut after = false;
    if args.auto_accept.is_some() {
        let (judge, note) = super::review::rule_judge(&mut project, args.force)?;
        if let Some(note) = note {
            crate::errln!("{note}");
        }
        after = matches!(judge, super::review::RuleJudge::Other { .. });
    }
    let backend = args.backend.effective(&project.config().backend);
    let settings = settings_with_flags(project.generation_settings(), &args);
    let opts = run::RunOptions {
        count: args.count,
        relabel: !args.no_relabel && project.config().relabel.enabled,
        auto_accept: args.auto_accept.filter(|_| !after),
        no_cache: args.backend.no_cache,
        progress: true,
    };
    let rt = tokio::runtime::Runtime::new()?;
    let config = project.config_path().display().to_string();
    let summary = rt.block_on(run::generate(project, backend.clone(), settings, opts))?;
    if let (true, Some(min)) = (after, args.auto_accept) {
        let mut project = Project::open(&args.dir)?;
        if let Some((n, judge)) = super::review::auto_accept_after(&mut project, min, args.force)? {
            crate::outln!(
                "auto-accepted {n} examples the {judge} judge agrees with (confidence ≥ {min})"
            );
        }
    }
    finish(summary, &backend, &config)
}

pub fn run_relabel(args: super::RelabelArgs) -> anyhow::Result<()> {
    let project = Project::open(&args.dir)?;
    let backend = args.backend.effective(&project.config().backend);
    let config = project.config_path().display().to_string();
    let rt = tokio::runtime::Runtime::new()?;
    let summary = rt.block_on(run::relabel(
        project,
        backend.clone(),
        args.backend.no_cache,
        true,
    ))?;
    finish(summary, &backend, &config)
}

/// Print the summary; a run stopped by a failure no retry fixes, by the
/// circuit breaker, or one that made no progress because requests failed
/// is an error.
fn finish(
    summary: run::RunSummary,
    backend: &crate::domain::BackendConfig,
    config: &str,
) -> anyhow::Result<()> {
    crate::outln!("{summary}");
    match (&summary.stopped, summary.fatal) {
        (Some(why), true) if summary.plan_error => Err(crate::error::user(why.clone())),
        (Some(why), true) => Err(crate::error::user(format!(
            "{why} (check [backend] in straddle.toml, or run `straddle doctor DIR`)"
        ))),
        _ => no_progress_error(&summary, backend, config),
    }
}

/// An error when the run's requests failed: the breaker tripped, or
/// nothing was added or relabelled while requests failed.
pub(crate) fn no_progress_error(
    summary: &run::RunSummary,
    backend: &crate::domain::BackendConfig,
    config: &str,
) -> anyhow::Result<()> {
    let t = &summary.failures;
    if let (Some(why), Some(_)) = (&summary.stopped, t.tripped()) {
        return Err(anyhow::anyhow!("{why}"));
    }
    let progress = summary.examples > 0 || summary.relabelled > 0;
    match t.no_progress(progress, backend, config) {
        Some(msg) => Err(anyhow::anyhow!("{msg}")),
        None => Ok(()),
    }
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
    crate::outln!("{}", planned.prompt());
    Ok(())
}
