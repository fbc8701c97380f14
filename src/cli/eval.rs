//! `straddle eval` and `straddle loop`.
//!
//! `eval` trains the small classifier twice — on the seeds alone (the
//! baseline) and on the seeds plus the accepted generated examples — and
//! scores both on held-out real examples: the project's imported
//! validation/test examples, or a file given with `--test`. The small model
//! is logistic regression on sentence embeddings when an embedder is
//! configured (`--model` chooses), else the n-gram model. Scores come with
//! bootstrap intervals and the paired interval of their difference. The
//! project is opened read-only, so it works while the app holds the project.

use std::path::Path;

use super::generate::{self, run, run::RunOptions};
use crate::app::small_model;
use crate::app::training;
use crate::augment::rationales;
use crate::classify::{self, LabelledSet, s3};
use crate::domain::{BackendConfig, EventKind, RationalesAdded, Strategy, UsageRecorded};
use crate::engine::{Engine, EngineEvent, Job};
use crate::error;
use crate::store::Project;
use crate::store::seeds::{self, Columns};

pub fn run_eval(args: super::EvalArgs) -> anyhow::Result<()> {
    let project = Project::open_read_only(&args.dir)?;
    let classes = project.class_names();
    let (heldout, source) = match &args.test {
        Some(file) => (
            read_heldout_file(file, &classes, &project)?,
            file.display().to_string(),
        ),
        None => (
            classify::heldout_set(project.state(), &classes),
            "the project's validation/test examples".to_string(),
        ),
    };
    if heldout.is_empty() {
        return Err(no_heldout_error(&args.dir));
    }
    let chosen = small_model::choose(&project, args.model, true)?;
    if let Some(note) = &chosen.note {
        crate::errln!("note: {note}");
    }
    let model = chosen.model();
    let ev = classify::evaluate_with(
        &model,
        &classes,
        &classify::training_set(project.state(), &classes, false),
        &classify::training_set(project.state(), &classes, true),
        &heldout,
    )?;
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&ev.to_json())?);
    } else {
        crate::outln!(
            "Held-out: {} examples from {source}. Small model: {}.\n",
            heldout.len(),
            model.describe()
        );
        crate::out!("{}", ev.render());
        warn_unknown(&heldout);
    }
    Ok(())
}

/// The user error for a project without held-out examples.
pub fn no_heldout_error(dir: &Path) -> anyhow::Error {
    error::user(format!(
        "no held-out examples to score on in {}: import real labelled examples with \
         `straddle import {} FILE --as validation` (or --as test), or pass --test FILE",
        dir.display(),
        dir.display()
    ))
}

/// Read a held-out file (CSV/TSV/JSONL with `text` and `label`), checking
/// every label against the project's classes.
fn read_heldout_file(
    file: &Path,
    classes: &[String],
    project: &Project,
) -> anyhow::Result<LabelledSet> {
    let examples = seeds::read_examples(file, &Columns::default())?;
    let cfg_name = project.config_path().display().to_string();
    seeds::check_labels(file, &examples, classes, &cfg_name)?;
    let mut set = LabelledSet::default();
    for e in &examples {
        set.push(classes, 0, &e.text, &e.label);
    }
    Ok(set)
}

/// Held-out samples whose label is not a class are not scored; say so.
fn warn_unknown(heldout: &LabelledSet) {
    if heldout.unknown.is_empty() {
        return;
    }
    crate::errln!(
        "note: {} held-out example(s) have a label that is not a class and were not scored (e.g. sample {} labelled '{}')",
        heldout.unknown.len(),
        heldout.unknown[0].0,
        heldout.unknown[0].1
    );
}

/// `straddle loop`: S3 rounds. Each round generates `--per-round`
/// examples — the first round with the configured strategy (`mix`, or
/// `plain` when configured) unless the project already has generated
/// examples; later rounds (and a first round over existing examples) by
/// extrapolating the held-out examples the classifier gets wrong (only
/// validation ones when the project also has test examples) — then
/// relabels them and applies the `--auto-accept` rule as they arrive (the
/// same path as `straddle generate`), retrains from scratch, scores on the
/// held-out examples and records a `round_scored` event. Everything is
/// appended to the journal as it arrives.
pub fn run_loop(args: super::LoopArgs) -> anyhow::Result<()> {
    if let Some(m) = args.auto_accept
        && !(0.0..=1.0).contains(&m)
    {
        return Err(error::user(format!(
            "--auto-accept must be a confidence in [0, 1], got {m}"
        )));
    }
    if args.per_round == 0 {
        return Err(error::user("--per-round must be at least 1"));
    }
    let mut project = Project::open(&args.dir)?;
    if classify::heldout_set(project.state(), &project.class_names()).is_empty() {
        return Err(no_heldout_error(&args.dir));
    }
    // Auto-accept trusts the chosen judge: only when it is measured and
    // clearly better than chance (or forced).
    if args.auto_accept.is_some() {
        let (_, note) = super::review::rule_judge(&mut project, args.force)?;
        if let Some(note) = note {
            crate::errln!("{note}");
        }
    }
    drop(project);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(loop_rounds(&args))
}

async fn loop_rounds(args: &super::LoopArgs) -> anyhow::Result<()> {
    let mut project = Project::open(&args.dir)?;
    let backend = args.backend.effective(&project.config().backend);
    if project.generation_settings().use_rationales {
        ask_rationales(&mut project, &backend, &args.backend).await?;
    }
    if args.auto_accept.is_none() {
        crate::outln!(
            "Note: new examples stay pending until reviewed, and only accepted ones are trained \
             on; pass --auto-accept MIN_CONF to accept those the relabel agrees with."
        );
    }
    // Is the chosen judge another than the relabeler? Then it accepts
    // after each round's generation instead of as verdicts arrive (gated
    // in `run_loop`).
    let after = args.auto_accept.is_some()
        && matches!(
            super::review::rule_judge(&mut project, true)?.0,
            super::review::RuleJudge::Other { .. }
        );
    let names = project.class_names();
    // The process holds the project, so new vectors go to its store.
    let chosen = small_model::choose(&project, args.small_model, false)?;
    if let Some(note) = &chosen.note {
        crate::errln!("note: {note}");
    }
    let mut mistakes = if project.state().generated().next().is_some() {
        Some(
            classify::evaluate_project_with(&chosen.model(), project.state(), &names, None)?
                .mistakes,
        )
    } else {
        None
    };
    let mut embeddings_recorded = crate::domain::Usage::default();
    for _ in 0..args.rounds {
        let round = s3::next_round(project.state());
        let sources =
            s3::extrapolation_sources(project.state(), mistakes.as_deref().unwrap_or_default());
        let work = if sources.is_empty() {
            // The configured strategy (`mix` when it is one an S3 round
            // feeds, such as `extrapolate`).
            let mut settings = project.generation_settings();
            if crate::augment::strategy::get(settings.strategy).input()
                != crate::augment::strategy::Input::Settings
            {
                settings.strategy = Strategy::Mix;
            }
            crate::outln!(
                "Round {round}: {} examples, {}.",
                args.per_round,
                settings.strategy.as_str()
            );
            run::RoundWork::Generate(settings)
        } else {
            crate::outln!(
                "Round {round}: {} examples, extrapolating {} held-out errors.",
                args.per_round,
                sources.len().min(
                    args.per_round
                        .div_ceil(project.generation_settings().per_request.max(1))
                )
            );
            run::RoundWork::Errors(sources)
        };
        let opts = RunOptions {
            count: 0,
            relabel: project.config().relabel.enabled,
            auto_accept: args.auto_accept.filter(|_| !after),
            no_cache: args.backend.no_cache,
            progress: true,
        };
        let config = project.config_path().display().to_string();
        let (summary, p) =
            run::round(project, backend.clone(), round, work, args.per_round, opts).await?;
        project = p;
        // Another judge than the relabeler accepts after the round's
        // generation (the session only knows relabel verdicts).
        if let Some(min) = args.auto_accept
            && let Some((n, judge)) =
                super::review::auto_accept_after(&mut project, min, args.force)?
        {
            crate::outln!(
                "Round {round}: auto-accepted {n} examples the {judge} judge agrees with (confidence ≥ {min})."
            );
        }
        crate::outln!("Round {round}: {summary}");
        if summary.interrupted {
            crate::outln!(
                "Interrupted in round {round}; everything so far is saved (no score recorded for it)."
            );
            return Ok(());
        }
        if let Some(why) = summary.stopped {
            return Err(anyhow::anyhow!(
                "round {round} stopped: {why}; everything so far is saved (no score recorded for it)"
            ));
        }
        super::generate::no_progress_error(&summary, &backend, &config)?;
        let model = chosen.model();
        let r = training::round(&model, project.state(), &names, round).map_err(|e| {
            if classify::heldout_set(project.state(), &names).is_empty() {
                no_heldout_error(&args.dir)
            } else {
                anyhow::anyhow!(e)
            }
        })?;
        let scored = &r.scored;
        crate::outln!(
            "Round {round}: accuracy {:.3} (seeds only {:.3}), macro-F1 {:.3} (seeds only {:.3}); \
             {} of {} held-out examples wrong; trained on {} ({}).",
            scored.augmented.accuracy,
            scored.baseline.accuracy,
            scored.augmented.macro_f1,
            scored.baseline.macro_f1,
            scored.errors.len(),
            scored.augmented.n_test,
            scored.augmented.n_train,
            model.describe(),
        );
        // An improvement only when the interval of the difference says so.
        let verdict = if r.is_improvement() {
            "an improvement"
        } else {
            "not shown to be an improvement"
        };
        crate::outln!("Round {round}: {} — {verdict}.", r.line());
        if let Some(why) = r.comparison.too_small() {
            crate::outln!("{why}");
        }
        let (scored, ev_mistakes) = (r.scored, r.mistakes);
        let mut events = vec![EventKind::RoundScored(scored)];
        // What an `api` embedder used for the round's classifier.
        let used = chosen.embeddings_usage();
        let delta = used.since(&embeddings_recorded);
        if !delta.is_empty() {
            events.push(EventKind::UsageRecorded(UsageRecorded {
                run: crate::app::embedding::USAGE_RUN.into(),
                usage: delta,
            }));
            embeddings_recorded = used;
        }
        project.append(events)?;
        mistakes = Some(ev_mistakes);
    }
    Ok(())
}

/// S3 seed synthesis: ask for rationales of every class that has none yet
/// and record them (`rationales_added`). A failed or unreadable reply is
/// reported and that class goes without.
async fn ask_rationales(
    project: &mut Project,
    backend: &BackendConfig,
    flags: &super::BackendFlags,
) -> anyhow::Result<()> {
    let names = project.class_names();
    let missing: Vec<String> = rationales::classes_without_rationales(project.state(), &names)
        .into_iter()
        .map(String::from)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let driver = generate::generator_for(project)?;
    let requests = rationales::plan(
        &driver,
        project.config(),
        &project.classes(),
        project.state(),
        &missing,
    )?;
    crate::outln!("Asking for rationales of {} classes.", requests.len());
    let (engine, mut events) = Engine::start(backend, Some(flags.cache(project.cache_dir())))?;
    for (i, (_, req)) in requests.iter().enumerate() {
        engine.submit(Job::new(req.clone(), i as u64));
    }
    let mut open = requests.len();
    while open > 0 {
        let Some(ev) = events.recv().await else {
            anyhow::bail!("the LLM engine stopped unexpectedly");
        };
        match ev {
            EngineEvent::Finished { tag, response, .. } => {
                open -= 1;
                let (class, req) = &requests[tag as usize];
                let prompt = &req.messages[0].content;
                let list = rationales::parse_rationales(&response.text, prompt, &names);
                if list.is_empty() {
                    crate::errln!("note: no rationales could be read for {class}; it goes without");
                    continue;
                }
                project.append(vec![EventKind::RationalesAdded(RationalesAdded {
                    class: class.clone(),
                    rationales: list,
                })])?;
            }
            EngineEvent::Failed {
                tag,
                reason,
                message,
                ..
            } => {
                open -= 1;
                crate::errln!(
                    "note: asking for rationales of {} failed ({}: {message}); it goes without",
                    requests[tag as usize].0,
                    reason.as_str()
                );
            }
            EngineEvent::Started { .. }
            | EngineEvent::Delta { .. }
            | EngineEvent::Backoff { .. }
            | EngineEvent::Limit { .. } => {}
        }
    }
    project.append(vec![EventKind::UsageRecorded(UsageRecorded {
        run: "rationales".into(),
        usage: engine.usage(),
    })])?;
    Ok(())
}
