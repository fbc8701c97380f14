//! The headless generate / relabel loop: the pure [`Generator`] plans,
//! the engine runs the requests, the store records every event before the
//! next one is handled. Ctrl-C stops submitting, cancels what is in flight
//! and records the run's usage; everything answered so far is on disk.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::generator_for;
use crate::augment::generator::is_dup_rejected;
use crate::augment::{Generator, PlannedRequest, RequestKind, rules};
use crate::domain::{BackendConfig, EventKind, GenerationSettings, UsageRecorded};
use crate::engine::{Engine, EngineEvent, EngineHandle, FailReason, Job};
use crate::llm::ResponseCache;
use crate::store::Project;

/// What a generate run should do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Kept (non-duplicate) examples to add.
    pub count: usize,
    pub relabel: bool,
    /// Accept agreeing examples with confidence ≥ this as they arrive.
    pub auto_accept: Option<f64>,
    pub no_cache: bool,
    /// Draw a progress bar on stderr (hidden when not a terminal).
    pub progress: bool,
}

/// Counts of one run, printed at the end.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSummary {
    /// "generate" or "relabel".
    pub run: &'static str,
    pub requests: u64,
    pub cached: u64,
    pub examples: usize,
    pub duplicates: usize,
    pub failed_requests: usize,
    pub relabelled: usize,
    pub unparsable_verdicts: usize,
    pub agreeing: usize,
    pub auto_accepted: usize,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: f64,
    pub interrupted: bool,
    /// Why the run stopped early, if it did.
    pub stopped: Option<String>,
    /// It stopped on a failure no retry fixes (wrong key, URL or model).
    pub fatal: bool,
    /// Failed requests by cause, and the circuit breaker.
    pub failures: crate::engine::FailureTally,
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.run == "relabel" {
            write!(
                f,
                "{} relabelled ({} agree, {} unparsable), {} requests failed; {} requests \
                 ({} cached), {} prompt + {} completion tokens",
                self.relabelled,
                self.agreeing,
                self.unparsable_verdicts,
                self.failed_requests,
                self.requests,
                self.cached,
                self.prompt_tokens,
                self.completion_tokens,
            )?;
        } else {
            self.fmt_generate(f)?;
        }
        if self.cost > 0.0 {
            write!(f, ", cost {:.4}", self.cost)?;
        }
        if self.interrupted {
            write!(f, " — interrupted, everything so far is saved")?;
        }
        if let Some(why) = &self.stopped {
            write!(f, " — stopped: {why}")?;
        }
        Ok(())
    }
}

impl RunSummary {
    fn fmt_generate(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} examples added ({} duplicates rejected), {} requests failed; {} relabelled \
             ({} agree, {} unparsable), {} accepted by rule; {} requests ({} cached), \
             {} prompt + {} completion tokens",
            self.examples,
            self.duplicates,
            self.failed_requests,
            self.relabelled,
            self.agreeing,
            self.unparsable_verdicts,
            self.auto_accepted,
            self.requests,
            self.cached,
            self.prompt_tokens,
            self.completion_tokens,
        )
    }
}

/// Failures that no further request will fix.
fn is_fatal(r: FailReason) -> bool {
    matches!(
        r,
        FailReason::Auth | FailReason::NotFound | FailReason::Connect
    )
}

struct Run {
    project: Project,
    generator: Generator,
    engine: EngineHandle,
    inflight: HashMap<u64, PlannedRequest>,
    next_tag: u64,
    opts: RunOptions,
    summary: RunSummary,
    /// Examples asked for by generate requests in flight.
    expected: usize,
    generate_requests: usize,
    max_generate_requests: usize,
    stopping: bool,
    bar: ProgressBar,
    /// Usage already in the journal (recorded as deltas with each append,
    /// so a killed run's requests still count).
    usage_recorded: crate::domain::Usage,
}

fn progress_bar(len: u64, show: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(len),
        if show {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg} · ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

impl Run {
    fn new(
        project: Project,
        backend: &BackendConfig,
        settings: Option<GenerationSettings>,
        opts: RunOptions,
        bar_len: u64,
    ) -> anyhow::Result<(Run, tokio::sync::mpsc::UnboundedReceiver<EngineEvent>)> {
        let mut generator = generator_for(&project)?;
        if let Some(s) = settings {
            generator.set_settings(s, project.state());
        }
        let cache = ResponseCache::new(project.cache_dir());
        let cache = if opts.no_cache {
            cache.write_only()
        } else {
            cache
        };
        let (engine, events) = Engine::start(backend, Some(cache))?;
        let per = generator.settings().per_request.max(1);
        let max_generate_requests = opts.count.div_ceil(per) * 4 + 4;
        let bar = progress_bar(bar_len, opts.progress);
        Ok((
            Run {
                project,
                generator,
                engine,
                inflight: HashMap::new(),
                next_tag: 1,
                opts,
                summary: RunSummary::default(),
                expected: 0,
                generate_requests: 0,
                max_generate_requests,
                stopping: false,
                bar,
                usage_recorded: Default::default(),
            },
            events,
        ))
    }

    fn submit(&mut self, planned: PlannedRequest) {
        let tag = self.next_tag;
        self.next_tag += 1;
        self.engine.submit(Job::new(planned.request.clone(), tag));
        self.inflight.insert(tag, planned);
    }

    /// Keep enough generate requests queued to reach the count.
    fn fill(&mut self) -> anyhow::Result<()> {
        let window = self.project.config().backend.max_concurrency.max(1) * 2;
        while !self.stopping
            && self.summary.examples + self.expected < self.opts.count
            && self.generate_requests < self.max_generate_requests
            && self.inflight.len() < window
        {
            // Always the full `per_request`: the prompt stays the same for
            // the same request number, so a re-run is answered from the cache.
            let n = self.generator.settings().per_request.max(1);
            let planned = self.generator.plan_generate_n(n)?;
            self.expected += n;
            self.generate_requests += 1;
            self.submit(planned);
        }
        if !self.stopping
            && self.generate_requests >= self.max_generate_requests
            && self.summary.examples + self.expected < self.opts.count
            && self.summary.stopped.is_none()
        {
            self.summary.stopped = Some(format!(
                "{} requests made, too few new examples (the model repeats itself or replies \
                 with nothing usable; see `straddle stats`)",
                self.generate_requests
            ));
        }
        Ok(())
    }

    fn message(&mut self) {
        let u = self.engine.usage();
        let mut msg = format!(
            "accepted {} · tokens {} · req {}",
            self.summary.auto_accepted,
            u.prompt_tokens + u.completion_tokens,
            u.requests
        );
        if u.cost > 0.0 {
            msg.push_str(&format!(" · cost {:.4}", u.cost));
        }
        self.bar.set_message(msg);
    }

    fn append(&mut self, mut kinds: Vec<EventKind>) -> anyhow::Result<Vec<crate::domain::Event>> {
        if kinds.is_empty() {
            return Ok(Vec::new());
        }
        // The usage since the last append rides along (same write, same fsync).
        let now = self.engine.usage();
        let delta = now.since(&self.usage_recorded);
        if !delta.is_empty() {
            kinds.push(EventKind::UsageRecorded(UsageRecorded {
                run: self.summary.run.into(),
                usage: delta,
            }));
        }
        let events = self.project.append(kinds)?;
        self.usage_recorded = now;
        Ok(events)
    }

    fn on_event(&mut self, ev: EngineEvent) -> anyhow::Result<()> {
        match ev {
            EngineEvent::Finished { tag, response, .. } => {
                let Some(planned) = self.inflight.remove(&tag) else {
                    return Ok(());
                };
                self.summary.failures.success();
                let kinds = self
                    .generator
                    .on_reply(self.project.state(), &planned, &response);
                self.recorded(&planned, kinds)?;
            }
            EngineEvent::Failed {
                tag,
                reason,
                message,
                raw,
                ..
            } => {
                let Some(planned) = self.inflight.remove(&tag) else {
                    return Ok(());
                };
                if let RequestKind::Generate { .. } = planned.kind {
                    self.expected = self.expected.saturating_sub(planned.n);
                }
                if reason == FailReason::Cancelled {
                    return Ok(());
                }
                tracing::warn!("request failed: {}: {message}", reason.as_str());
                let kinds =
                    self.generator
                        .on_failure(&planned, reason.as_str(), &message, raw.as_deref());
                // Every failed request counts, relabels included.
                self.summary.failed_requests += 1;
                self.append(kinds)?;
                let tripped = self.summary.failures.failure(reason);
                if is_fatal(reason) && !self.stopping {
                    self.summary.stopped = Some(message);
                    self.summary.fatal = true;
                    self.stop();
                } else if tripped {
                    self.trip_breaker();
                }
            }
            EngineEvent::Backoff { reason, .. } => {
                if self.summary.failures.attempt_failed(reason) {
                    self.trip_breaker();
                }
                return Ok(());
            }
            EngineEvent::Started { .. } | EngineEvent::Delta { .. } => return Ok(()),
        }
        // A slot is free (generate or relabel): top up the generate requests.
        if self.opts.count > 0 {
            self.fill()?;
        }
        self.message();
        Ok(())
    }

    /// Append a reply's events, count them, and queue relabels.
    fn recorded(&mut self, planned: &PlannedRequest, kinds: Vec<EventKind>) -> anyhow::Result<()> {
        let events = self.append(kinds)?;
        let mut new_ids = Vec::new();
        for e in &events {
            match &e.kind {
                EventKind::SampleAdded(a) => new_ids.push(a.id),
                EventKind::GenerationFailed(_) => self.summary.failed_requests += 1,
                EventKind::VerdictRecorded(v) => {
                    self.summary.relabelled += 1;
                    let s = self.project.state().sample(v.sample);
                    match s.and_then(|s| s.agrees()) {
                        None => self.summary.unparsable_verdicts += 1,
                        Some(true) => self.summary.agreeing += 1,
                        Some(false) => {}
                    }
                    if let Some(s) = s
                        && let Some(k) = rules::decide(s, self.opts.auto_accept, None)
                    {
                        self.append(vec![k])?;
                        self.summary.auto_accepted += 1;
                    }
                    self.bar.inc(1);
                }
                _ => {}
            }
        }
        if let RequestKind::Generate { .. } = planned.kind {
            self.expected = self.expected.saturating_sub(planned.n);
            let st = self.project.state();
            let kept: Vec<u64> = new_ids
                .into_iter()
                .filter(|id| st.sample(*id).is_some_and(|s| !is_dup_rejected(s)))
                .collect();
            let added = events
                .iter()
                .filter(|e| matches!(e.kind, EventKind::SampleAdded(_)))
                .count();
            self.summary.duplicates += added - kept.len();
            self.summary.examples += kept.len();
            if !self.opts.relabel {
                self.bar.inc(kept.len() as u64);
            }
            if self.opts.relabel && !self.stopping {
                for id in kept {
                    let p = self.generator.plan_relabel(self.project.state(), id)?;
                    self.submit(p);
                }
            }
        }
        Ok(())
    }

    /// The circuit breaker tripped: say so and stop.
    fn trip_breaker(&mut self) {
        let config = self.project.config_path().display().to_string();
        let backend = &self.project.config().backend;
        if let Some(msg) = self.summary.failures.breaker_message(backend, &config)
            && !self.stopping
        {
            self.summary.stopped = Some(msg);
            self.stop();
        }
    }

    fn stop(&mut self) {
        self.stopping = true;
        self.engine.cancel_all();
    }

    /// Handle engine events until nothing is in flight; Ctrl-C stops.
    async fn drive(
        &mut self,
        events: &mut tokio::sync::mpsc::UnboundedReceiver<EngineEvent>,
    ) -> anyhow::Result<()> {
        let mut ctrl_c = Box::pin(tokio::signal::ctrl_c());
        while !self.inflight.is_empty() {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => self.on_event(ev)?,
                    None => break,
                },
                _ = &mut ctrl_c, if !self.stopping => {
                    self.summary.interrupted = true;
                    self.bar.println("stopping: cancelling requests in flight (everything answered so far is saved)");
                    self.stop();
                }
            }
        }
        Ok(())
    }

    /// Record the run's usage and return the summary.
    fn finish(mut self, run: &'static str) -> anyhow::Result<RunSummary> {
        self.bar.finish_and_clear();
        self.summary.run = run;
        let usage = self.engine.usage();
        self.summary.requests = usage.requests;
        self.summary.cached = usage.cached;
        self.summary.prompt_tokens = usage.prompt_tokens;
        self.summary.completion_tokens = usage.completion_tokens;
        self.summary.cost = usage.cost;
        // The rest not yet recorded with an append (always one event, so a
        // run is on record even when it used nothing).
        self.project
            .append(vec![EventKind::UsageRecorded(UsageRecorded {
                run: run.into(),
                usage: usage.since(&self.usage_recorded),
            })])?;
        Ok(self.summary)
    }
}

/// Generate `opts.count` examples (relabelling each as it arrives).
pub async fn generate(
    project: Project,
    backend: BackendConfig,
    settings: GenerationSettings,
    opts: RunOptions,
) -> anyhow::Result<RunSummary> {
    let len = opts.count as u64;
    let (mut run, mut events) = Run::new(project, &backend, Some(settings), opts, len)?;
    run.summary.run = "generate";
    run.fill()?;
    let res = run.drive(&mut events).await;
    let summary = run.finish("generate")?;
    res?;
    Ok(summary)
}

/// Run generate requests planned elsewhere (the S3 loop's rounds): each
/// reply is parsed, deduplicated, relabelled and auto-accepted exactly as
/// in [`generate`], but no further requests are planned. Usage is recorded
/// under `run_name`.
pub async fn run_planned(
    project: Project,
    backend: BackendConfig,
    planned: Vec<PlannedRequest>,
    opts: RunOptions,
    run_name: &'static str,
) -> anyhow::Result<RunSummary> {
    let len = planned.iter().map(|p| p.n).sum::<usize>() as u64;
    let opts = RunOptions { count: 0, ..opts };
    let (mut run, mut events) = Run::new(project, &backend, None, opts, len)?;
    run.summary.run = run_name;
    for p in planned {
        run.expected += p.n;
        run.submit(p);
    }
    let res = run.drive(&mut events).await;
    let summary = run.finish(run_name)?;
    res?;
    Ok(summary)
}

/// Relabel every generated example without a verdict.
pub async fn relabel(
    project: Project,
    backend: BackendConfig,
    no_cache: bool,
    progress: bool,
) -> anyhow::Result<RunSummary> {
    let ids = Generator::needs_relabel(project.state());
    let opts = RunOptions {
        count: 0,
        relabel: true,
        auto_accept: None,
        no_cache,
        progress,
    };
    let (mut run, mut events) = Run::new(project, &backend, None, opts, ids.len() as u64)?;
    run.summary.run = "relabel";
    for id in ids {
        let p = run.generator.plan_relabel(run.project.state(), id)?;
        run.submit(p);
    }
    let res = run.drive(&mut events).await;
    let summary = run.finish("relabel")?;
    res?;
    Ok(summary)
}
