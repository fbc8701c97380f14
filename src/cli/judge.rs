//! `straddle judge`: measure the LLM relabeler on the project's real
//! held-out validation examples — the very request it sends for generated
//! examples (same builder, same cache), on a bounded, class-balanced
//! sample — and record the report (`judge_scored`), which bulk rules
//! consult before they trust the relabeler's verdicts.

use crate::augment::{Generator, RequestKind, Templates};
use crate::classify::judge::{self, RELABEL_JUDGE};
use crate::domain::{EventKind, JudgeReport, JudgeScored, Origin, UsageRecorded};
use crate::engine::{Engine, EngineEvent, Job};
use crate::store::Project;

/// What `straddle judge` found, for printing.
pub struct JudgeRun {
    pub report: JudgeReport,
    /// Requests that failed for good (their examples count as unanswered).
    pub failed: usize,
    pub requests: u64,
    pub cached: u64,
}

/// Relabel a sample of at most `sample` validation examples through the
/// engine and score the answers. Appends `judge_scored` and the run's
/// usage to the journal.
pub async fn judge_relabel(
    mut project: Project,
    backend: crate::domain::BackendConfig,
    sample: usize,
    no_cache: bool,
) -> anyhow::Result<JudgeRun> {
    let mut config = project.config().clone();
    config.backend.model = backend.model.clone();
    let templates = Templates::load(&project.prompts_dir())?;
    let mut generator = Generator::new(
        &config,
        project.classes(),
        project.generation_settings(),
        templates,
        project.state(),
    );
    let labels = project.class_names();
    let st = project.state();
    let heldout: Vec<(u64, usize)> = st
        .samples
        .iter()
        .filter(|s| s.origin == Origin::Validation)
        .filter_map(|s| labels.iter().position(|l| *l == s.label).map(|i| (s.id, i)))
        .collect();
    if heldout.is_empty() {
        return Err(crate::error::user(
            "no validation examples to judge on: import real labelled examples with \
             `straddle import DIR FILE --as validation`",
        ));
    }
    let truth_all: Vec<usize> = heldout.iter().map(|h| h.1).collect();
    let picked = judge::sample_indices(&truth_all, sample.max(1), config.generation.seed);
    let planned = picked
        .iter()
        .map(|&i| generator.plan_relabel(st, heldout[i].0))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cache = crate::llm::ResponseCache::new(project.cache_dir());
    let cache = if no_cache { cache.disabled() } else { cache };
    let (engine, mut events) = Engine::start(&backend, Some(cache))?;
    for (tag, p) in planned.iter().enumerate() {
        engine.submit(Job::new(p.request.clone(), tag as u64));
    }
    let mut answers: Vec<Option<usize>> = vec![None; planned.len()];
    let (mut done, mut failed) = (0, 0);
    while done < planned.len() {
        let Some(ev) = events.recv().await else { break };
        match ev {
            EngineEvent::Finished { tag, response, .. } => {
                done += 1;
                let p = &planned[tag as usize];
                let evs = generator.on_reply(project.state(), p, &response);
                answers[tag as usize] = evs.iter().find_map(|e| match e {
                    EventKind::VerdictRecorded(v) => v
                        .verdict
                        .label
                        .as_ref()
                        .and_then(|l| labels.iter().position(|x| x == l)),
                    _ => None,
                });
                debug_assert!(matches!(p.kind, RequestKind::Relabel { .. }));
            }
            EngineEvent::Failed { .. } => {
                done += 1;
                failed += 1;
            }
            _ => {}
        }
    }
    let truth: Vec<usize> = picked.iter().map(|&i| truth_all[i]).collect();
    let report = judge::judge_report(RELABEL_JUDGE, &labels, &truth, &answers);
    let usage = engine.usage();
    let (requests, cached) = (usage.requests, usage.cached);
    project.append(vec![
        EventKind::JudgeScored(JudgeScored {
            report: report.clone(),
            fingerprint: generator.relabel_fingerprint(),
        }),
        EventKind::UsageRecorded(UsageRecorded {
            run: "judge".into(),
            usage,
        }),
    ])?;
    Ok(JudgeRun {
        report,
        failed,
        requests,
        cached,
    })
}

pub fn run(args: super::JudgeArgs) -> anyhow::Result<()> {
    let project = Project::open(&args.dir)?;
    let mut backend = project.config().backend.clone();
    args.backend.apply(&mut backend);
    let rt = tokio::runtime::Runtime::new()?;
    let r = rt.block_on(judge_relabel(
        project,
        backend,
        args.sample,
        args.backend.no_cache,
    ))?;
    let text = if args.json {
        let mut v = serde_json::to_value(&r.report)?;
        if let Some(m) = v.as_object_mut() {
            m.insert(
                "better_than_chance".into(),
                r.report.better_than_chance().into(),
            );
            m.insert(
                "better_than_majority".into(),
                r.report.better_than_majority().into(),
            );
            m.insert("trusted".into(), r.report.trusted().into());
            m.insert("failed_requests".into(), r.failed.into());
        }
        format!("{}\n", serde_json::to_string_pretty(&v)?)
    } else {
        format!(
            "{}{} requests sent, {} answered from the cache, {} failed\n",
            judge::render(&r.report),
            r.requests,
            r.cached,
            r.failed
        )
    };
    super::stats::print_stdout(&text)
}
