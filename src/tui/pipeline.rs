//! Generation wiring for the TUI: the engine (HTTP, concurrency, retries)
//! plus augment's pure `Generator` (plans requests, turns replies into
//! events). The runtime feeds it effects, engine events and store
//! acknowledgements; it answers with messages for `update` and events to
//! append.
//!
//! Replies are turned into events one at a time, each appended (and
//! acknowledged, so the state knows the new sample ids) before the next,
//! as the `Generator` requires. Every generated example is relabelled as
//! soon as it is in the journal; an edited one again after its edit.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::augment::{Generator, PlannedRequest, Reply, RequestKind, Templates};
use crate::cli::BackendFlags;
use crate::domain::{
    BackendConfig, Event, EventKind, Origin, ProjectConfig, SampleId, Status, Usage, UsageRecorded,
};
use crate::engine::{Engine, EngineEvent, EngineHandle, FailReason, Job, JobId};
use crate::llm::ResponseCache;
use crate::store::Project;

use super::state::{
    Backoff, Effect, EngineStatus, Msg, State, StreamKind, StreamMsg, USAGE_RUN, usage_is_empty,
    usage_since,
};

/// What the pipeline wants done after an input.
#[derive(Default)]
pub(crate) struct PipelineOut {
    pub msgs: Vec<Msg>,
    /// Events to append (origin: pipeline).
    pub append: Option<Vec<EventKind>>,
    /// A `usage_recorded` event to append (usage since the last one).
    pub usage: Option<EventKind>,
}

type Failure = (FailReason, String, Option<String>);

pub(crate) struct Pipeline {
    config: ProjectConfig,
    backend: BackendConfig,
    cache: ResponseCache,
    templates: Result<Templates, String>,
    engine: Option<(EngineHandle, UnboundedReceiver<EngineEvent>)>,
    generator: Option<Generator>,
    jobs: HashMap<JobId, PlannedRequest>,
    /// Generate requests whose examples are not in the state yet (in
    /// flight, queued as replies, or being appended).
    gen_outstanding: usize,
    /// The append in flight holds a generate reply's events.
    appending_generate: bool,
    running: bool,
    paused: bool,
    /// The backend failed in a way retrying will not fix (connect, auth).
    blocked: bool,
    replies: VecDeque<(JobId, PlannedRequest, Result<Reply, Failure>)>,
    appending: bool,
    /// Relabels asked for by edits, sent once the edit is acknowledged.
    deferred_relabels: Vec<SampleId>,
    concurrency: usize,
    /// The engine's usage as of the last `usage_recorded` event.
    recorded: Usage,
}

impl Pipeline {
    /// `config.backend` already carries the command line's overrides.
    pub fn new(config: &ProjectConfig, project: &Project, flags: &BackendFlags) -> Pipeline {
        Pipeline {
            backend: config.backend.clone(),
            config: config.clone(),
            cache: flags.cache(project.cache_dir()),
            templates: Templates::load(&project.prompts_dir()).map_err(|e| format!("{e:#}")),
            engine: None,
            generator: None,
            jobs: HashMap::new(),
            gen_outstanding: 0,
            appending_generate: false,
            running: false,
            paused: false,
            blocked: false,
            replies: VecDeque::new(),
            appending: false,
            deferred_relabels: Vec::new(),
            concurrency: config.backend.max_concurrency.max(1),
            recorded: Usage::default(),
        }
    }

    /// Requests are running or wanted (the runtime polls usage then).
    pub fn busy(&self) -> bool {
        self.engine.is_some() && (self.running || !self.jobs.is_empty())
    }

    /// The next engine event; never resolves without an engine.
    pub async fn recv(&mut self) -> Option<EngineEvent> {
        match &mut self.engine {
            Some((_, rx)) => match rx.recv().await {
                Some(e) => Some(e),
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }

    pub fn try_recv(&mut self) -> Option<EngineEvent> {
        self.engine.as_mut().and_then(|(_, rx)| rx.try_recv().ok())
    }

    /// Live usage and requests per second.
    pub fn usage(&self) -> (Usage, f64) {
        match &self.engine {
            Some((h, _)) => {
                let s = h.stats();
                (s.usage, s.requests_per_s)
            }
            None => (Usage::default(), 0.0),
        }
    }

    /// Cancel everything; the usage not journaled yet, as an event.
    pub fn shutdown(&mut self) -> Option<EventKind> {
        self.running = false;
        if let Some(h) = self.handle() {
            h.cancel_all();
        }
        self.usage_record()
    }

    /// A `usage_recorded` event with the usage since the last one, if any
    /// (so a crash loses at most the current burst).
    fn usage_record(&mut self) -> Option<EventKind> {
        let now = self.handle()?.usage();
        let delta = usage_since(&now, &self.recorded);
        if usage_is_empty(&delta) {
            return None;
        }
        self.recorded = now;
        Some(EventKind::UsageRecorded(UsageRecorded {
            run: USAGE_RUN.into(),
            usage: delta,
        }))
    }

    fn record_usage(&mut self, out: &mut PipelineOut) {
        if out.usage.is_none() {
            out.usage = self.usage_record();
        }
    }

    /// Nothing is running any more: say so and journal the usage.
    fn went_idle(&mut self, out: &mut PipelineOut) {
        out.msgs.push(Msg::Engine(EngineStatus::Idle));
        self.record_usage(out);
    }

    /// Make sure the engine and the generator exist.
    fn ensure(&mut self, st: &State, out: &mut PipelineOut) -> bool {
        if self.engine.is_none() {
            let cache = Some(self.cache.clone());
            let mut backend = self.backend.clone();
            backend.max_concurrency = self.concurrency;
            match Engine::start(&backend, cache) {
                Ok(e) => self.engine = Some(e),
                Err(e) => {
                    out.msgs.push(Msg::Engine(EngineStatus::Unreachable(format!(
                        "backend {}: {e:#} — fix [backend] in straddle.toml or pass --base-url",
                        self.backend.base_url
                    ))));
                    return false;
                }
            }
        }
        if self.generator.is_none() {
            let templates = match &self.templates {
                Ok(t) => t.clone(),
                Err(e) => {
                    out.msgs.push(Msg::Error(format!("prompt templates: {e}")));
                    return false;
                }
            };
            self.generator = Some(Generator::new(
                &self.config,
                st.classes.clone(),
                st.settings.clone(),
                templates,
                &st.project,
            ));
        }
        true
    }

    fn handle(&self) -> Option<&EngineHandle> {
        self.engine.as_ref().map(|(h, _)| h)
    }

    /// Run an effect that concerns generation.
    pub fn on_effect(&mut self, st: &State, e: Effect) -> PipelineOut {
        let mut out = PipelineOut::default();
        match e {
            Effect::StartGeneration => {
                if !self.ensure(st, &mut out) {
                    return out;
                }
                self.running = true;
                self.paused = false;
                self.blocked = false;
                if let Some(h) = self.handle() {
                    h.resume();
                }
                if self.config.relabel.enabled {
                    let pending: Vec<SampleId> = Generator::needs_relabel(&st.project)
                        .into_iter()
                        .filter(|id| !self.relabel_in_flight(*id))
                        .collect();
                    for id in pending {
                        self.submit_relabel(st, id, &mut out);
                    }
                }
                self.top_up(st, &mut out);
            }
            Effect::PauseGeneration => {
                self.paused = true;
                if let Some(h) = self.handle() {
                    h.pause();
                }
                self.record_usage(&mut out);
            }
            Effect::ResumeGeneration => {
                self.paused = false;
                self.blocked = false;
                if let Some(h) = self.handle() {
                    h.resume();
                }
                self.top_up(st, &mut out);
            }
            Effect::StopGeneration => {
                self.running = false;
                self.paused = false;
                if let Some(h) = self.handle() {
                    h.cancel_all();
                    h.resume();
                }
                self.record_usage(&mut out);
            }
            Effect::ApplySettings(g) => {
                if let Some(gen_) = &mut self.generator {
                    gen_.set_settings(g, &st.project);
                }
                self.top_up(st, &mut out);
            }
            Effect::ApplyWeights(classes) => {
                if let Some(gen_) = &mut self.generator {
                    gen_.set_classes(classes);
                }
            }
            Effect::SetConcurrency(n) => {
                self.concurrency = n.max(1);
                if let Some(h) = self.handle() {
                    h.set_concurrency(n);
                }
                self.top_up(st, &mut out);
            }
            Effect::Relabel(id) => {
                if self.config.relabel.enabled {
                    self.deferred_relabels.push(id);
                }
            }
            Effect::Extrapolate { round, mistakes } => {
                self.extrapolate(st, round, &mistakes, &mut out)
            }
            Effect::Append(_)
            | Effect::Export(_)
            | Effect::RunRound { .. }
            | Effect::ComputeSignals
            | Effect::Quit => {}
        }
        out
    }

    /// S3: plan extrapolation requests for held-out `mistakes` and send
    /// them; their replies stream, get relabelled, dedup'd and reviewed
    /// like every other generated example.
    fn extrapolate(
        &mut self,
        st: &State,
        round: u32,
        mistakes: &[crate::classify::Mistake],
        out: &mut PipelineOut,
    ) {
        if !self.ensure(st, out) {
            return;
        }
        let Some(g) = &self.generator else {
            return;
        };
        let count = super::s3::round_count(&st.settings, mistakes.len());
        match crate::classify::s3::plan_extrapolation(
            g,
            &self.config.task,
            &st.classes,
            mistakes,
            round,
            count,
        ) {
            Ok(planned) => {
                let n = planned.len();
                for p in planned {
                    self.submit(p);
                }
                let paused = if self.paused {
                    " (generation is paused: press g to resume)"
                } else {
                    if n > 0 {
                        out.msgs.push(Msg::Engine(EngineStatus::Running));
                    }
                    ""
                };
                out.msgs.push(Msg::Notice(format!(
                    "S3 round {round}: {n} extrapolation request(s) from {} held-out error(s){paused}",
                    mistakes.len()
                )));
            }
            Err(e) => out.msgs.push(Msg::Error(format!(
                "S3 round {round}: cannot plan extrapolation: {e:#}"
            ))),
        }
    }

    fn relabel_in_flight(&self, id: SampleId) -> bool {
        self.jobs
            .values()
            .any(|p| p.kind == RequestKind::Relabel { sample: id })
    }

    fn submit(&mut self, p: PlannedRequest) {
        let Some(h) = self.handle() else {
            return;
        };
        let tag = match p.kind {
            RequestKind::Relabel { sample } => sample,
            RequestKind::Generate { .. } => 0,
        };
        let id = h.submit(Job::new(p.request.clone(), tag));
        if is_generate(&p) {
            self.gen_outstanding += 1;
        }
        self.jobs.insert(id, p);
    }

    fn submit_relabel(&mut self, st: &State, id: SampleId, out: &mut PipelineOut) {
        let Some(g) = &self.generator else {
            return;
        };
        match g.plan_relabel(&st.project, id) {
            Ok(p) => self.submit(p),
            Err(e) => out
                .msgs
                .push(Msg::Error(format!("relabel of #{id}: {e:#}"))),
        }
    }

    /// Keep up to `concurrency` generate requests in flight until the
    /// target count is reached.
    fn top_up(&mut self, st: &State, out: &mut PipelineOut) {
        if !self.running {
            if self.engine.is_some()
                && !self.blocked
                && self.jobs.is_empty()
                && self.replies.is_empty()
                && !self.appending
            {
                self.went_idle(out);
            }
            return;
        }
        if self.paused || self.blocked || self.engine.is_none() {
            return;
        }
        let g = &st.tally.generated;
        let have = (g.pending + g.accepted + g.rejected) as usize;
        let target = st.settings.target_count;
        let per = st.settings.per_request.max(1);
        while self.gen_outstanding < self.concurrency && have + self.gen_outstanding * per < target
        {
            let planned = match self.generator.as_mut().map(|g| g.plan_generate()) {
                Some(Ok(p)) => p,
                Some(Err(e)) => {
                    self.running = false;
                    out.msgs
                        .push(Msg::Error(format!("cannot plan a request: {e:#}")));
                    self.went_idle(out);
                    return;
                }
                None => return,
            };
            self.submit(planned);
        }
        if have >= target && self.gen_outstanding == 0 {
            self.running = false;
            out.msgs
                .push(Msg::Notice(format!("target of {target} examples reached")));
            if self.jobs.is_empty() {
                self.went_idle(out);
            }
        }
    }

    /// An engine event: stream progress, and replies queued for turning
    /// into events.
    pub fn on_engine_event(&mut self, st: &State, ev: EngineEvent) -> PipelineOut {
        let mut out = PipelineOut::default();
        match ev {
            EngineEvent::Started { id, attempt, .. } => {
                let Some(p) = self.jobs.get(&id) else {
                    return out;
                };
                // A retry (attempt > 0) restarts the job's row.
                tracing::debug!("request #{id}: attempt {attempt} sent");
                out.msgs.push(Msg::Stream(StreamMsg::Started {
                    job: id,
                    kind: stream_kind(p),
                    classes: stream_label(st, p),
                    alpha: p.provenance.alpha,
                }));
            }
            EngineEvent::Backoff {
                id,
                reason,
                status,
                attempt,
                max_retries,
                wait,
                ..
            } => {
                if self.jobs.contains_key(&id) {
                    out.msgs.push(Msg::Backoff(Backoff {
                        job: id,
                        reason: Backoff::reason_text(reason, status),
                        attempt,
                        max_retries,
                        until: Instant::now() + wait,
                    }));
                }
            }
            EngineEvent::Delta { id, text, .. } => {
                out.msgs
                    .push(Msg::Stream(StreamMsg::Delta { job: id, text }));
            }
            EngineEvent::Finished { id, response, .. } => {
                out.msgs.push(Msg::Stream(StreamMsg::Finished { job: id }));
                if let Some(p) = self.take_job(id) {
                    if self.running && !self.paused {
                        out.msgs.push(Msg::Engine(EngineStatus::Running));
                    }
                    self.replies.push_back((id, p, Ok(response)));
                }
            }
            EngineEvent::Failed {
                id,
                reason,
                message,
                raw,
                ..
            } => {
                out.msgs.push(Msg::Stream(StreamMsg::Failed {
                    job: id,
                    reason: format!("{}: {message}", reason.as_str()),
                }));
                if let Some(p) = self.take_job(id) {
                    match reason {
                        FailReason::Cancelled => self.generate_done(&p),
                        FailReason::Connect | FailReason::Auth | FailReason::NotFound => {
                            self.generate_done(&p);
                            self.blocked = true;
                            if let Some(h) = self.handle() {
                                h.cancel_all();
                            }
                            out.msgs.push(Msg::Engine(EngineStatus::Unreachable(
                                self.fix_message(reason, &message),
                            )));
                        }
                        _ => {
                            out.msgs.push(Msg::Error(format!(
                                "request #{id} failed ({}): {message}",
                                reason.as_str()
                            )));
                            self.replies.push_back((id, p, Err((reason, message, raw))));
                        }
                    }
                }
            }
        }
        self.next_reply(st, &mut out);
        if out.append.is_none() {
            self.top_up(st, &mut out);
        }
        out
    }

    fn take_job(&mut self, id: JobId) -> Option<PlannedRequest> {
        self.jobs.remove(&id)
    }

    /// A generate request's examples are now in the state (or never will be).
    fn generate_done(&mut self, p: &PlannedRequest) {
        self.generate_done_kind(is_generate(p));
    }

    fn generate_done_kind(&mut self, generate: bool) {
        if generate {
            self.gen_outstanding = self.gen_outstanding.saturating_sub(1);
        }
    }

    fn fix_message(&self, reason: FailReason, message: &str) -> String {
        let b = &self.backend;
        let fix = match reason {
            FailReason::Auth => match &b.api_key_env {
                Some(v) => format!("set the API key in the environment variable {v}"),
                None => {
                    "set backend.api_key_env in straddle.toml to the variable holding your API key"
                        .into()
                }
            },
            FailReason::NotFound => format!(
                "check backend.base_url ({}) and backend.model ({}) in straddle.toml",
                b.base_url, b.model
            ),
            _ => format!(
                "start the server (scripts/local-llm.sh start) or point backend.base_url / --base-url at a running one ({})",
                b.base_url
            ),
        };
        format!(
            "LLM backend unavailable: {message} — {fix}; press g to retry. Review, edit and export still work."
        )
    }

    /// Turn the next queued reply into events, unless an append of ours is
    /// still unacknowledged.
    fn next_reply(&mut self, st: &State, out: &mut PipelineOut) {
        if self.appending || out.append.is_some() {
            return;
        }
        while let Some((job, p, r)) = self.replies.pop_front() {
            let Some(g) = self.generator.as_mut() else {
                return;
            };
            let events = match r {
                Ok(reply) => {
                    let events = g.on_reply(&st.project, &p, &reply);
                    // A reply that held no example: the stream says why.
                    for e in &events {
                        if let EventKind::GenerationFailed(f) = e {
                            out.msgs.push(Msg::Stream(StreamMsg::Failed {
                                job,
                                reason: f.reason.clone(),
                            }));
                        }
                    }
                    events
                }
                Err((reason, message, raw)) => {
                    g.on_failure(&p, reason.as_str(), &message, raw.as_deref())
                }
            };
            if !events.is_empty() {
                self.appending = true;
                self.appending_generate = is_generate(&p);
                out.append = Some(events);
                return;
            }
            self.generate_done_kind(is_generate(&p));
        }
    }

    /// The store acknowledged an append (ours, or a key's when `ours` is
    /// false). New generated samples go to relabel; edits deferred until
    /// now are relabelled.
    pub fn on_appended(&mut self, st: &State, events: Option<&[Event]>, ours: bool) -> PipelineOut {
        let mut out = PipelineOut::default();
        if ours {
            self.appending = false;
            if std::mem::take(&mut self.appending_generate) {
                self.generate_done_kind(true);
            }
        }
        if self.config.relabel.enabled && self.generator.is_some() {
            for ev in events.unwrap_or_default() {
                if let EventKind::SampleAdded(a) = &ev.kind
                    && a.origin == Origin::Generated
                    && st
                        .project
                        .sample(a.id)
                        .is_some_and(|s| s.status() == Status::Pending)
                {
                    self.submit_relabel(st, a.id, &mut out);
                }
            }
        }
        if !self.deferred_relabels.is_empty() && self.ensure(st, &mut out) {
            for id in std::mem::take(&mut self.deferred_relabels) {
                self.submit_relabel(st, id, &mut out);
            }
        }
        self.next_reply(st, &mut out);
        if out.append.is_none() {
            self.top_up(st, &mut out);
        }
        out
    }
}

fn is_generate(p: &PlannedRequest) -> bool {
    matches!(p.kind, RequestKind::Generate { .. })
}

fn stream_kind(p: &PlannedRequest) -> StreamKind {
    match p.kind {
        RequestKind::Generate { .. } => StreamKind::Generate,
        RequestKind::Relabel { .. } => StreamKind::Relabel,
    }
}

/// "A×B" for a mix request, "A" for plain, "#id A" for a relabel.
fn stream_label(st: &State, p: &PlannedRequest) -> String {
    match &p.kind {
        RequestKind::Generate { target } => match &p.provenance.minor {
            Some(m) => format!("{target}×{m}"),
            None => target.clone(),
        },
        RequestKind::Relabel { sample } => {
            let label = st
                .project
                .sample(*sample)
                .map(|s| s.label.as_str())
                .unwrap_or("?");
            format!("#{sample} {label}")
        }
    }
}
