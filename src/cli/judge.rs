//! `straddle judge`: measure the LLM relabeler on the project's real
//! held-out validation examples — the very request it sends for generated
//! examples (same builder, same cache), on a bounded, class-balanced
//! sample — and record the report (`judge_scored`), which bulk rules
//! consult before they trust the relabeler's verdicts. Then the embedding
//! judges (small classifier, kNN) and the ensemble are measured on the
//! same examples (`app::judges`), recorded the same way, and the judge
//! that decides is named.

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
    let mut probs: Vec<Vec<f32>> = vec![Vec::new(); planned.len()];
    let (mut done, mut failed) = (0, 0);
    while done < planned.len() {
        let Some(ev) = events.recv().await else { break };
        match ev {
            EngineEvent::Finished { tag, response, .. } => {
                done += 1;
                let p = &planned[tag as usize];
                let evs = generator.on_reply(project.state(), p, &response);
                let verdict = evs.iter().find_map(|e| match e {
                    EventKind::VerdictRecorded(v) => Some(&v.verdict),
                    _ => None,
                });
                answers[tag as usize] = verdict.and_then(|v| {
                    v.label
                        .as_ref()
                        .and_then(|l| labels.iter().position(|x| x == l))
                });
                if let Some(v) = verdict
                    && answers[tag as usize].is_some()
                {
                    probs[tag as usize] = labels
                        .iter()
                        .map(|l| {
                            let p = v.confidence.get(l).copied().unwrap_or(0.0);
                            ((p * 1000.0).round() / 1000.0) as f32
                        })
                        .collect();
                }
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
    let held: Vec<crate::domain::HeldoutAnswer> = picked
        .iter()
        .enumerate()
        .map(|(j, &i)| crate::domain::HeldoutAnswer {
            sample: heldout[i].0,
            truth: truth[j],
            answer: answers[j],
            probs: std::mem::take(&mut probs[j]),
        })
        .collect();
    project.append(vec![
        EventKind::JudgeScored(JudgeScored {
            report: report.clone(),
            fingerprint: generator.relabel_fingerprint(),
            answers: held,
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

/// Measure the embedding judges and the ensemble on the held-out
/// examples, record their reports, and return the comparison with the
/// choice. No LLM request: the relabeler counts with its recorded answers.
pub fn compare_judges(
    project: &mut Project,
) -> anyhow::Result<(
    Vec<crate::app::judges::Measured>,
    crate::app::judges::Choice,
)> {
    use crate::app::judges;
    let fp = judges::relabel_fingerprint(project)?;
    let chosen = crate::app::small_model::choose(
        project,
        crate::app::small_model::ModelChoice::Embedding,
        false,
    );
    let names = project.class_names();
    let (_, linear) = crate::app::small_model::configs(project);
    let measured = match &chosen {
        Ok(c) => match &c.encoder {
            Some(e) => judges::measure(project.state(), &names, &fp, Ok(e), &linear)?,
            None => judges::measure(
                project.state(),
                &names,
                &fp,
                Err("needs an embedder".into()),
                &linear,
            )?,
        },
        Err(e) => judges::measure(
            project.state(),
            &names,
            &fp,
            Err(format!("needs an embedder: {e}")),
            &linear,
        )?,
    };
    let mut events: Vec<EventKind> = judges::to_record(project.state(), &measured)
        .into_iter()
        .map(EventKind::JudgeScored)
        .collect();
    // An `api` embedder's requests for the held-out and training texts.
    if let Ok(c) = &chosen
        && let usage = c.embeddings_usage()
        && !usage.is_empty()
    {
        events.push(EventKind::UsageRecorded(UsageRecorded {
            run: crate::app::embedding::USAGE_RUN.into(),
            usage,
        }));
    }
    if !events.is_empty() {
        project.append(events)?;
    }
    let choice = judges::choose(&measured, project.config().judge.use_);
    Ok((measured, choice))
}

pub fn run(args: super::JudgeArgs) -> anyhow::Result<()> {
    let project = Project::open(&args.dir)?;
    let mut backend = project.config().backend.clone();
    args.backend.apply(&mut backend);
    let rt = tokio::runtime::Runtime::new()?;
    let r = if args.no_llm {
        drop(project);
        None
    } else {
        Some(rt.block_on(judge_relabel(
            project,
            backend,
            args.sample,
            args.backend.no_cache,
        ))?)
    };
    let mut project = Project::open(&args.dir)?;
    let (measured, choice) = compare_judges(&mut project)?;
    let text = if args.json {
        let mut v = match &r {
            Some(r) => {
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
                v
            }
            None => serde_json::json!({}),
        };
        let cmp = crate::app::judges::to_json(&measured, &choice);
        if let (Some(m), serde_json::Value::Object(c)) = (v.as_object_mut(), cmp) {
            m.extend(c);
        }
        format!("{}\n", serde_json::to_string_pretty(&v)?)
    } else {
        let head = match &r {
            Some(r) => format!(
                "{}{} requests sent, {} answered from the cache, {} failed\n\n",
                judge::render(&r.report),
                r.requests,
                r.cached,
                r.failed
            ),
            None => String::new(),
        };
        format!(
            "{head}Judges on the same held-out examples:\n{}",
            crate::app::judges::render(&measured, &choice)
        )
    };
    super::stats::print_stdout(&text)
}
