//! `straddle generate`, `relabel`, `review`, `prompt`.

use crate::augment::{Generator, Templates, rules};
use crate::domain::Status;
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

/// The project's backend with this run's command-line overrides.
pub(crate) fn backend_with_flags(
    mut b: crate::domain::BackendConfig,
    f: &super::BackendFlags,
) -> crate::domain::BackendConfig {
    if let Some(u) = &f.base_url {
        b.base_url = u.clone();
    }
    if let Some(m) = &f.model {
        b.model = m.clone();
    }
    if let Some(c) = f.concurrency {
        b.max_concurrency = c.max(1);
    }
    b
}

fn check_args(a: &super::GenerateArgs) -> anyhow::Result<()> {
    check_conf("--alpha", a.alpha)?;
    check_conf("--auto-accept", a.auto_accept)?;
    if a.count == 0 {
        return Err(crate::error::user("--count must be at least 1"));
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
    let project = Project::open(&args.dir)?;
    let backend = backend_with_flags(project.config().backend.clone(), &args.backend);
    let settings = settings_with_flags(project.generation_settings(), &args);
    let opts = run::RunOptions {
        count: args.count,
        relabel: !args.no_relabel && project.config().relabel.enabled,
        auto_accept: args.auto_accept,
        no_cache: args.backend.no_cache,
        progress: true,
    };
    let rt = tokio::runtime::Runtime::new()?;
    let config = project.config_path().display().to_string();
    let summary = rt.block_on(run::generate(project, backend.clone(), settings, opts))?;
    finish(summary, &backend, &config)
}

pub fn run_relabel(args: super::RelabelArgs) -> anyhow::Result<()> {
    let project = Project::open(&args.dir)?;
    let backend = backend_with_flags(project.config().backend.clone(), &args.backend);
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
    project.warn_about_journal();
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
    crate::outln!(
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
    crate::outln!("{}", planned.prompt());
    Ok(())
}
