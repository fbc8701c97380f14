//! The headless driver of the generation session (`app::session`): it
//! carries the session's jobs to the engine, its events to the journal
//! (appended before the next input is handled) and the acknowledgements
//! back, and draws a progress bar. Ctrl-C stops the session, cancels what
//! is in flight and records the run's usage; everything answered so far
//! is on disk. The rules (what counts, when to stop) are the session's.

use std::fmt;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::generator_for;
use crate::app::embedding::{EmbedWorker, Embedded};
use crate::app::session::{
    Command, Control, Counting, Note, Output, Session, SessionConfig, StopReason,
};
use crate::domain::{BackendConfig, EventKind, GenerationSettings, Mistake, UsageRecorded};
use crate::engine::{Engine, EngineEvent, EngineHandle, EngineOptions};
use crate::llm::ResponseCache;
use crate::store::Project;

/// The next embed answer; never resolves without a worker.
async fn recv_embedded(w: &mut Option<EmbedWorker>) -> Option<Embedded> {
    match w {
        Some(w) => w.recv().await,
        None => std::future::pending().await,
    }
}

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
    /// It stopped because no request could be planned (a user error).
    pub plan_error: bool,
    /// Failures by kind and the circuit breaker (see
    /// `app::session::Report::failures`).
    pub failures: crate::engine::FailureTally,
    /// What the denoiser judged, rejected and flagged.
    pub denoise: crate::app::session::DenoiseReport,
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
            let d = &self.denoise;
            if d.judged > 0 {
                write!(
                    f,
                    "; denoiser: {} judged, {} rejected as noise, {} near-copies, {} flagged",
                    d.judged, d.rejected, d.near_copies, d.flagged
                )?;
            }
        }
        if self.cost > 0.0 {
            write!(f, ", cost {:.4}", self.cost)?;
        }
        if self.interrupted {
            write!(f, " — interrupted, everything so far is saved")?;
        }
        if let Some(why) = &self.stopped {
            write!(f, " — stopped: {why}")?;
            if let Some((kind, n)) = self.failures.dominant_kind() {
                write!(f, " (most failures: {kind}, {n}×)")?;
            }
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

struct Driver {
    /// The run's name for its `usage_recorded` events.
    run: &'static str,
    project: Project,
    session: Session,
    engine: EngineHandle,
    events: tokio::sync::mpsc::UnboundedReceiver<EngineEvent>,
    relabel: bool,
    interrupted: bool,
    bar: ProgressBar,
    /// Usage already in the journal (recorded as deltas with each append,
    /// so a killed run's requests still count).
    usage_recorded: crate::domain::Usage,
    /// Appends waiting for the next group commit, in order.
    pending: Vec<Vec<EventKind>>,
    /// Embeds the session's texts for the denoiser (`None`: off).
    embed: Option<EmbedWorker>,
    /// The embeddings' usage not yet journalled (rides with the next append).
    embed_usage: crate::domain::Usage,
}

/// Most appends in one group commit.
const GROUP_MAX: usize = 512;
/// How long a pending append waits for others to share its fsync.
const COMMIT_WINDOW: Duration = Duration::from_millis(2);

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
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg} · ETA {left}")
            .expect("valid template")
            .with_key(
                "left",
                |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = w.write_str(&eta_text(s.pos(), s.len(), s.elapsed()));
                },
            )
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// The time left at the average pace so far: "–" before anything is
/// done (no pace to go by), "0s" once `pos` reaches `len`.
pub fn eta_text(pos: u64, len: Option<u64>, elapsed: Duration) -> String {
    let Some(len) = len else {
        return "–".into();
    };
    if pos >= len {
        return "0s".into();
    }
    if pos == 0 {
        return "–".into();
    }
    let left = elapsed.as_secs_f64() / pos as f64 * (len - pos) as f64;
    let s = left.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
    }
}

impl Driver {
    /// `backend` is the effective one (flags included): the engine and
    /// the session's request window are sized from it.
    fn new(
        run: &'static str,
        project: Project,
        backend: &BackendConfig,
        settings: Option<GenerationSettings>,
        opts: &RunOptions,
        bar_len: u64,
    ) -> anyhow::Result<Driver> {
        let mut generator = generator_for(&project)?;
        if let Some(s) = settings {
            generator.set_settings(s, project.state());
        }
        let cache = ResponseCache::new(project.cache_dir());
        let cache = if opts.no_cache {
            cache.disabled()
        } else {
            cache
        };
        // Nobody watches the text arrive here: no `Delta` events.
        let options = EngineOptions {
            deltas: false,
            ..EngineOptions::default()
        };
        let (engine, events) = Engine::start_with(backend, Some(cache.clone()), options)?;
        let mut session = Session::new(
            generator,
            SessionConfig {
                relabel: opts.relabel,
                auto_accept: opts.auto_accept,
                concurrency: backend.max_concurrency,
                counting: Counting::ThisRun,
                backend: backend.clone(),
            },
        );
        let embed = match EmbedWorker::for_project(project.config(), &cache) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!("denoising is off: {e}");
                None
            }
        };
        if let Some(w) = &embed {
            crate::app::embedding::arm_denoiser(&mut session, project.config(), w.label());
        }
        Ok(Driver {
            embed,
            embed_usage: Default::default(),
            run,
            project,
            session,
            engine,
            events,
            relabel: opts.relabel,
            interrupted: false,
            bar: progress_bar(bar_len, opts.progress),
            usage_recorded: Default::default(),
            pending: Vec::new(),
        })
    }

    fn command(&mut self, cmd: Command) -> anyhow::Result<()> {
        let out = self.session.command(self.project.state(), cmd);
        self.apply(out)
    }

    /// Carry out the session's output and commit what it appends.
    fn apply(&mut self, out: Output) -> anyhow::Result<()> {
        self.absorb(out);
        self.commit()
    }

    /// Carry out the session's output except its append, which waits for
    /// the next [`commit`](Self::commit) (group commit: replies that
    /// arrive together become durable with one write and one fsync).
    fn absorb(&mut self, mut out: Output) {
        for job in out.submit.drain(..) {
            self.engine.submit(job);
        }
        for c in out.control.drain(..) {
            match c {
                Control::Pause => self.engine.pause(),
                Control::Resume => self.engine.resume(),
                Control::CancelAll => self.engine.cancel_all(),
                Control::SetConcurrency(n) => self.engine.set_concurrency(n),
            }
        }
        if let Some(w) = &self.embed {
            for job in out.embed.drain(..) {
                w.submit(job);
            }
        }
        for n in out.notes.drain(..) {
            match n {
                Note::Info(m) => tracing::info!("{m}"),
                Note::Error(m) => tracing::warn!("{m}"),
                Note::RequestFailed { .. } => {}
                Note::NothingUsable { request, reason } => {
                    tracing::debug!("request {request}: {reason}")
                }
            }
        }
        // The usage since the last append rides along with the last batch
        // (same write, same fsync); the session skips it in the
        // acknowledgement.
        if let Some(kinds) = out.appends.last_mut() {
            let now = self.engine.usage();
            let delta = now.since(&self.usage_recorded);
            if !delta.is_empty() {
                kinds.push(EventKind::UsageRecorded(UsageRecorded {
                    run: self.run.into(),
                    usage: delta,
                }));
            }
            if !self.embed_usage.is_empty() {
                kinds.push(EventKind::UsageRecorded(UsageRecorded {
                    run: crate::app::embedding::USAGE_RUN.into(),
                    usage: std::mem::take(&mut self.embed_usage),
                }));
            }
            self.usage_recorded = now;
        }
        self.pending.append(&mut out.appends);
    }

    /// Make every pending append durable (one write, one fsync), then
    /// acknowledge each to the session in order — nothing is counted or
    /// shown as kept before its commit — and commit what the
    /// acknowledgements append in turn.
    fn commit(&mut self) -> anyhow::Result<()> {
        while !self.pending.is_empty() {
            let groups = std::mem::take(&mut self.pending);
            for events in self.project.append_groups(groups)? {
                let out = self
                    .session
                    .on_appended(self.project.state(), &events, true);
                self.absorb(out);
            }
        }
        self.progress();
        Ok(())
    }

    fn progress(&mut self) {
        let r = self.session.report();
        let pos = if self.relabel {
            r.relabelled as u64
        } else {
            r.examples as u64
        };
        // A request may bring more than was missing: the bar grows rather
        // than reading "14/10".
        if self.bar.length().is_some_and(|l| pos > l) {
            self.bar.set_length(pos);
        }
        self.bar.set_position(pos);
        let u = self.engine.usage();
        let mut msg = format!(
            "accepted {} · tokens {} · req {}",
            r.auto_accepted,
            u.prompt_tokens + u.completion_tokens,
            u.requests
        );
        if u.cost > 0.0 {
            msg.push_str(&format!(" · cost {:.4}", u.cost));
        }
        if let Some((limit, why)) = self.session.status().limit {
            msg.push_str(&format!(" · limit {limit} ({why})"));
        }
        self.bar.set_message(msg);
    }

    /// Handle engine events until the session is done; Ctrl-C stops.
    async fn drive(&mut self) -> anyhow::Result<()> {
        let mut ctrl_c = Box::pin(tokio::signal::ctrl_c());
        while self.session.busy() {
            tokio::select! {
                ev = self.events.recv() => match ev {
                    Some(ev) => {
                        let out = self.session.on_engine(self.project.state(), ev);
                        self.absorb(out);
                        // What arrives within the commit window of the
                        // first pending append joins the same commit.
                        let deadline = tokio::time::Instant::now() + COMMIT_WINDOW;
                        while !self.pending.is_empty() && self.pending.len() < GROUP_MAX {
                            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                                Ok(Some(ev)) => {
                                    let out = self.session.on_engine(self.project.state(), ev);
                                    self.absorb(out);
                                }
                                _ => break,
                            }
                        }
                        self.commit()?;
                    }
                    None => break,
                },
                Some(done) = recv_embedded(&mut self.embed) => {
                    self.embed_usage.add(&done.usage);
                    let out = self.session.on_embedded(self.project.state(), done.id, done.result);
                    self.apply(out)?;
                },
                _ = &mut ctrl_c, if !self.interrupted => {
                    self.interrupted = true;
                    self.bar.println("stopping: cancelling requests in flight (everything answered so far is saved)");
                    self.command(Command::Stop)?;
                }
            }
        }
        Ok(())
    }

    /// Record the run's usage and return the summary.
    fn finish(self) -> anyhow::Result<RunSummary> {
        Ok(self.finish_keep()?.0)
    }

    /// [`finish`](Self::finish), handing the project (and its fold) back.
    fn finish_keep(mut self) -> anyhow::Result<(RunSummary, Project)> {
        let run = self.run;
        self.bar.finish_and_clear();
        let r = self.session.report().clone();
        let usage = self.engine.usage();
        let stop = self.session.status().stop;
        let summary = RunSummary {
            run,
            requests: usage.requests,
            cached: usage.cached,
            examples: r.examples,
            duplicates: r.duplicates,
            failed_requests: r.failed_requests,
            relabelled: r.relabelled,
            unparsable_verdicts: r.unparsable_verdicts,
            agreeing: r.agreeing,
            auto_accepted: r.auto_accepted,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            cost: usage.cost,
            interrupted: self.interrupted,
            fatal: stop.as_ref().is_some_and(StopReason::is_fatal),
            plan_error: matches!(stop, Some(StopReason::Plan(_))),
            stopped: match stop {
                Some(StopReason::TargetReached { .. } | StopReason::Stopped) | None => None,
                Some(why) => Some(why.to_string()),
            },
            failures: r.failures,
            denoise: r.denoise,
        };
        // The rest not yet recorded with an append (always one event, so a
        // run is on record even when it used nothing).
        let mut last = vec![EventKind::UsageRecorded(UsageRecorded {
            run: run.into(),
            usage: usage.since(&self.usage_recorded),
        })];
        if !self.embed_usage.is_empty() {
            last.push(EventKind::UsageRecorded(UsageRecorded {
                run: crate::app::embedding::USAGE_RUN.into(),
                usage: std::mem::take(&mut self.embed_usage),
            }));
        }
        self.project.append(last)?;
        Ok((summary, self.project))
    }
}

/// Generate `opts.count` new examples (relabelling each as it arrives).
pub async fn generate(
    project: Project,
    backend: BackendConfig,
    settings: GenerationSettings,
    opts: RunOptions,
) -> anyhow::Result<RunSummary> {
    let len = opts.count as u64;
    let count = opts.count;
    let mut d = Driver::new("generate", project, &backend, Some(settings), &opts, len)?;
    // `--count N` yields exactly N: the last request asks only for what
    // is missing.
    let res = match d.command(Command::Start {
        target: Some(count),
        round: None,
        exact: true,
    }) {
        Ok(()) => d.drive().await,
        Err(e) => Err(e),
    };
    let summary = d.finish()?;
    res?;
    Ok(summary)
}

/// What one S3 round of `straddle loop` generates.
#[derive(Debug, Clone)]
pub enum RoundWork {
    /// Extrapolate these held-out errors.
    Errors(Vec<Mistake>),
    /// Nothing to extrapolate yet: generate with these settings.
    Generate(GenerationSettings),
}

/// One S3 round of generation: `count` examples from `work`, parsed,
/// deduplicated, relabelled and auto-accepted exactly as in [`generate`].
/// Usage is recorded under `loop`. The project comes back with every
/// event of the round in its state.
pub async fn round(
    project: Project,
    backend: BackendConfig,
    round: u32,
    work: RoundWork,
    count: usize,
    opts: RunOptions,
) -> anyhow::Result<(RunSummary, Project)> {
    let (settings, cmd) = match work {
        RoundWork::Errors(mistakes) => (
            None,
            Command::Extrapolate {
                round,
                mistakes,
                count,
            },
        ),
        RoundWork::Generate(s) => (
            Some(s),
            Command::Start {
                target: Some(count),
                round: Some(round),
                exact: true,
            },
        ),
    };
    let mut d = Driver::new("loop", project, &backend, settings, &opts, count as u64)?;
    let res = match d.command(cmd) {
        Ok(()) => d.drive().await,
        Err(e) => Err(e),
    };
    let done = d.finish_keep()?;
    res?;
    Ok(done)
}

/// Relabel every generated example without a verdict.
pub async fn relabel(
    project: Project,
    backend: BackendConfig,
    no_cache: bool,
    progress: bool,
) -> anyhow::Result<RunSummary> {
    let waiting = crate::augment::Generator::needs_relabel(project.state()).len();
    let opts = RunOptions {
        count: 0,
        relabel: true,
        auto_accept: None,
        no_cache,
        progress,
    };
    let mut d = Driver::new("relabel", project, &backend, None, &opts, waiting as u64)?;
    let res = match d.command(Command::RelabelPending) {
        Ok(()) => d.drive().await,
        Err(e) => Err(e),
    };
    let summary = d.finish()?;
    res?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::eta_text;
    use std::time::Duration;

    #[test]
    fn eta_is_the_pace_so_far_and_never_a_guess_at_zero() {
        let s = Duration::from_secs;
        assert_eq!(eta_text(0, Some(10), s(30)), "–");
        assert_eq!(eta_text(5, Some(10), s(10)), "10s");
        assert_eq!(eta_text(2, Some(10), s(30)), "2m 00s");
        assert_eq!(eta_text(1, Some(100), s(60)), "1h 39m");
        assert_eq!(eta_text(10, Some(10), s(30)), "0s");
        assert_eq!(eta_text(14, Some(10), s(30)), "0s");
        assert_eq!(eta_text(3, None, s(30)), "–");
    }
}
