//! The TUI's driver of the generation session (`app::session`): it starts
//! the engine and the session when first needed, turns effects into
//! session commands, carries the session's jobs to the engine and its
//! events to the journal (through the runtime's writer), turns engine
//! events into Streams-pane messages, and journals the engine's usage in
//! bursts. Every rule (what counts toward the target, when to stop, which
//! strategies run, the request window) is the session's.
//!
//! Streams-pane rows are keyed by the session's request id (the engine
//! job's tag), which the session's notes name too.
//!
//! Engine status has one writer: [`Driver::status`], derived from the
//! session's phase, is sent as `Msg::Engine` whenever it changes; `update`
//! never sets it (a retry countdown is shown over it while requests wait).

use std::time::Instant;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::app::BackendFlags;
use crate::app::embedding::{EmbedWorker, Embedded};
use crate::app::session::{
    Command, Control, Counting, Note, Output, Phase, Session, SessionConfig, StopReason,
};
use crate::augment::{Generator, PlannedRequest, RequestKind, Templates};
use crate::domain::{
    BackendConfig, Event, EventKind, Mistake, ProjectConfig, ProjectState, Usage, UsageRecorded,
};
use crate::engine::{Engine, EngineEvent, EngineHandle};
use crate::llm::ResponseCache;

use super::state::{Backoff, EngineStatus, Msg, State, StreamKind, StreamMsg, USAGE_RUN};

/// What the runtime must do after an input.
#[derive(Default)]
pub(crate) struct DriverOut {
    pub msgs: Vec<Msg>,
    /// Batches to append for the session, in order (acknowledge each
    /// with `ours = true`, in the same order).
    pub appends: Vec<Vec<EventKind>>,
    /// A `usage_recorded` event (usage since the last one).
    pub usage: Option<EventKind>,
}

/// What the runtime hears from the driver's background work.
pub(crate) enum Incoming {
    Engine(EngineEvent),
    /// Texts embedded for the denoiser.
    Embedded(Embedded),
}

/// What the runtime asks of generation (from `update`'s effects).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ask {
    Start,
    Pause,
    Resume,
    Stop,
    SetConcurrency(usize),
    RelabelAfterEdit(crate::domain::SampleId),
    Extrapolate {
        round: u32,
        mistakes: Vec<Mistake>,
        count: usize,
    },
}

pub(crate) struct Driver {
    config: ProjectConfig,
    /// The effective backend (command-line overrides included).
    backend: BackendConfig,
    cache: ResponseCache,
    templates: Result<Templates, String>,
    concurrency: usize,
    engine: Option<(EngineHandle, UnboundedReceiver<EngineEvent>)>,
    session: Option<Session>,
    /// Why the engine could not start.
    unreachable: Option<String>,
    /// The status last sent to `update`.
    shown: EngineStatus,
    /// The engine's usage as of the last `usage_recorded` event.
    recorded: Usage,
    /// The session's settings version last sent to `update`.
    shown_version: u64,
    /// Embeds the session's texts for the denoiser (`None`: off).
    embed: Option<EmbedWorker>,
}

impl Driver {
    /// `config.backend` already carries the command line's overrides.
    pub fn new(
        config: &ProjectConfig,
        cache_dir: std::path::PathBuf,
        prompts_dir: &std::path::Path,
        flags: &BackendFlags,
    ) -> Driver {
        Driver {
            backend: config.backend.clone(),
            config: config.clone(),
            cache: flags.cache(cache_dir),
            embed: None,
            templates: Templates::load(prompts_dir).map_err(|e| format!("{e:#}")),
            concurrency: config.backend.max_concurrency.max(1),
            engine: None,
            session: None,
            unreachable: None,
            shown: EngineStatus::Idle,
            recorded: Usage::default(),
            shown_version: 0,
        }
    }

    /// Requests are running or wanted (the runtime polls usage then).
    pub fn busy(&self) -> bool {
        self.engine.is_some()
            && self
                .session
                .as_ref()
                .is_some_and(|s| s.busy() || s.status().phase == Phase::Running)
    }

    /// The next engine event or embedding answer; never resolves while
    /// there is neither an engine nor an embedder.
    pub async fn recv(&mut self) -> Option<Incoming> {
        let Driver { engine, embed, .. } = self;
        let engine = async {
            match engine {
                Some((_, rx)) => match rx.recv().await {
                    Some(e) => e,
                    None => std::future::pending().await,
                },
                None => std::future::pending().await,
            }
        };
        let embedded = async {
            match embed {
                Some(w) => match w.recv().await {
                    Some(e) => e,
                    None => std::future::pending().await,
                },
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            e = engine => Some(Incoming::Engine(e)),
            e = embedded => Some(Incoming::Embedded(e)),
        }
    }

    pub fn try_recv(&mut self) -> Option<Incoming> {
        if let Some(e) = self.engine.as_mut().and_then(|(_, rx)| rx.try_recv().ok()) {
            return Some(Incoming::Engine(e));
        }
        self.embed
            .as_mut()
            .and_then(EmbedWorker::try_recv)
            .map(Incoming::Embedded)
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
        if let Some((h, _)) = &self.engine {
            h.cancel_all();
        }
        self.usage_record()
    }

    fn usage_record(&mut self) -> Option<EventKind> {
        let now = self.engine.as_ref()?.0.usage();
        let delta = now.since(&self.recorded);
        if delta.is_empty() {
            return None;
        }
        self.recorded = now;
        Some(EventKind::UsageRecorded(UsageRecorded {
            run: USAGE_RUN.into(),
            usage: delta,
        }))
    }

    /// The status to show: the session's phase (idle while requests are
    /// still out counts as running).
    pub fn status(&self) -> EngineStatus {
        if let Some(m) = &self.unreachable {
            return EngineStatus::Blocked(m.clone());
        }
        let Some(s) = &self.session else {
            return EngineStatus::Idle;
        };
        match s.status().phase {
            Phase::Running => EngineStatus::Running,
            Phase::Paused => EngineStatus::Paused,
            Phase::Blocked(m) => EngineStatus::Blocked(m),
            Phase::Idle if s.busy() => EngineStatus::Running,
            Phase::Idle => EngineStatus::Idle,
        }
    }

    /// Make sure the engine and the session exist.
    fn ensure(&mut self, st: &State, out: &mut DriverOut) -> bool {
        if self.engine.is_none() {
            let mut backend = self.backend.clone();
            backend.max_concurrency = self.concurrency;
            match Engine::start(&backend, Some(self.cache.clone())) {
                Ok(e) => {
                    self.engine = Some(e);
                    self.unreachable = None;
                }
                Err(e) => {
                    self.unreachable = Some(format!(
                        "backend {}: {e:#} — fix [backend] in straddle.toml or pass --base-url",
                        self.backend.base_url
                    ));
                    return false;
                }
            }
        }
        if self.session.is_none() {
            let templates = match &self.templates {
                Ok(t) => t.clone(),
                Err(e) => {
                    out.msgs.push(Msg::Error(format!("prompt templates: {e}")));
                    return false;
                }
            };
            let generator = Generator::new(
                &self.config,
                st.classes.clone(),
                st.settings.clone(),
                templates,
                &st.project,
            );
            let mut session = Session::new(
                generator,
                SessionConfig {
                    relabel: self.config.relabel.enabled,
                    auto_accept: None,
                    concurrency: self.concurrency,
                    counting: Counting::Project,
                    backend: self.backend.clone(),
                },
            );
            match EmbedWorker::for_project(&self.config, &self.cache) {
                Ok(Some(w)) => {
                    crate::app::embedding::arm_denoiser(&mut session, &self.config, w.label());
                    self.embed = Some(w);
                }
                Ok(None) => {}
                Err(e) => out.msgs.push(Msg::Notice(format!("denoising is off: {e}"))),
            }
            self.session = Some(session);
        }
        true
    }

    /// Carry out an ask from `update`.
    pub fn ask(&mut self, st: &State, ask: Ask) -> DriverOut {
        let mut out = DriverOut::default();
        let cmd = match ask {
            Ask::SetConcurrency(n) => {
                self.concurrency = n.max(1);
                Command::SetConcurrency(n)
            }
            Ask::Pause => {
                self.record_usage(&mut out);
                Command::Pause
            }
            Ask::Stop => {
                self.record_usage(&mut out);
                Command::Stop
            }
            Ask::Resume => Command::Resume,
            Ask::Start => {
                self.unreachable = None;
                // No request asks for more than the target still misses.
                Command::Start {
                    target: None,
                    round: None,
                    exact: true,
                }
            }
            Ask::RelabelAfterEdit(id) => Command::RelabelAfterEdit(id),
            Ask::Extrapolate {
                round,
                mistakes,
                count,
            } => Command::Extrapolate {
                round,
                mistakes,
                count,
            },
        };
        let needs_engine = !matches!(
            cmd,
            Command::SetConcurrency(_) | Command::Pause | Command::Stop
        );
        if needs_engine && !self.ensure(st, &mut out) {
            self.show(&mut out);
            return out;
        }
        if let Some(o) = self.session.as_mut().map(|s| s.command(&st.project, cmd)) {
            self.carry(o, &mut out);
        }
        self.show(&mut out);
        out
    }

    /// An engine event: stream progress, then the session.
    pub fn on_engine_event(&mut self, st: &State, ev: EngineEvent) -> DriverOut {
        let mut out = DriverOut::default();
        let Some(s) = &self.session else {
            return out;
        };
        match &ev {
            EngineEvent::Started { tag, attempt, .. } => {
                let Some(p) = s.request(*tag) else {
                    return out;
                };
                tracing::debug!("request #{tag}: attempt {attempt} sent");
                out.msgs.push(Msg::Stream(StreamMsg::Started {
                    job: *tag,
                    kind: stream_kind(p),
                    classes: stream_label(&st.project, p),
                    alpha: p.provenance.alpha,
                    settings: s
                        .planned_under(*tag)
                        .unwrap_or_else(|| s.settings_version()),
                }));
            }
            EngineEvent::Backoff {
                tag,
                reason,
                status,
                attempt,
                max_retries,
                wait,
                ..
            } => {
                if s.request(*tag).is_some() {
                    out.msgs.push(Msg::Backoff(Backoff {
                        job: *tag,
                        reason: Backoff::reason_text(*reason, *status),
                        attempt: *attempt,
                        max_retries: *max_retries,
                        until: Instant::now() + *wait,
                    }));
                }
            }
            EngineEvent::Delta { tag, text, .. } => {
                out.msgs.push(Msg::Stream(StreamMsg::Delta {
                    job: *tag,
                    text: shown_delta(text),
                }));
            }
            EngineEvent::Finished { tag, .. } => {
                out.msgs
                    .push(Msg::Stream(StreamMsg::Finished { job: *tag }));
            }
            EngineEvent::Limit { limit, reason } => {
                out.msgs
                    .push(Msg::Limit(format!("limit {limit} ({reason})")));
            }
            EngineEvent::Failed {
                tag,
                reason,
                message,
                ..
            } => {
                out.msgs.push(Msg::Stream(StreamMsg::Failed {
                    job: *tag,
                    reason: reason.with_message(message),
                }));
            }
        }
        let o = match self.session.as_mut() {
            Some(s) => s.on_engine(&st.project, ev),
            None => return out,
        };
        self.carry(o, &mut out);
        self.show(&mut out);
        out
    }

    /// Texts embedded for the denoiser: the session judges them.
    pub fn on_embedded(&mut self, st: &State, e: Embedded) -> DriverOut {
        let mut out = DriverOut::default();
        if !e.usage.is_empty() {
            out.usage = Some(EventKind::UsageRecorded(UsageRecorded {
                run: crate::app::embedding::USAGE_RUN.into(),
                usage: e.usage.clone(),
            }));
        }
        if let Some(o) = self
            .session
            .as_mut()
            .map(|s| s.on_embedded(&st.project, e.id, e.result))
        {
            self.carry(o, &mut out);
        }
        self.show(&mut out);
        out
    }

    /// The store acknowledged an append (`ours`: the session's).
    pub fn on_appended(&mut self, st: &State, events: &[Event], ours: bool) -> DriverOut {
        let mut out = DriverOut::default();
        if let Some(o) = self
            .session
            .as_mut()
            .map(|s| s.on_appended(&st.project, events, ours))
        {
            self.carry(o, &mut out);
        }
        self.show(&mut out);
        out
    }

    /// Send the session's jobs and controls; pass its append and notes on.
    fn carry(&mut self, o: Output, out: &mut DriverOut) {
        if let Some((h, _)) = &self.engine {
            for c in o.control {
                match c {
                    Control::Pause => h.pause(),
                    Control::Resume => h.resume(),
                    Control::CancelAll => h.cancel_all(),
                    Control::SetConcurrency(n) => h.set_concurrency(n),
                }
            }
            for job in o.submit {
                h.submit(job);
            }
        }
        let reached = match self.session.as_ref().and_then(|s| s.status().stop) {
            Some(r @ StopReason::TargetReached { target }) => Some((r.to_string(), target)),
            _ => None,
        };
        if let Some(w) = &self.embed {
            for job in o.embed {
                w.submit(job);
            }
        }
        for n in o.notes {
            out.msgs.push(match n {
                // The goal is met: say how to go on.
                Note::Info(m) if reached.as_ref().is_some_and(|(r, _)| *r == m) => {
                    Msg::TargetReached(reached.as_ref().map_or(0, |(_, t)| *t))
                }
                Note::Info(m) => Msg::Notice(m),
                Note::Error(m) => Msg::Error(m),
                Note::RequestFailed {
                    request,
                    kind,
                    message,
                } => Msg::Error(format!(
                    "request #{request} failed ({}): {message}",
                    kind.as_str()
                )),
                Note::NothingUsable { request, reason } => Msg::Stream(StreamMsg::Failed {
                    job: request,
                    reason,
                }),
            });
        }
        out.appends.extend(o.appends);
    }

    /// Say when the status changed; journal the usage once idle.
    fn show(&mut self, out: &mut DriverOut) {
        if let Some(v) = self.session.as_ref().map(Session::settings_version)
            && v != self.shown_version
        {
            self.shown_version = v;
            out.msgs.push(Msg::Stream(StreamMsg::SettingsVersion(v)));
        }
        let now = self.status();
        if now != self.shown {
            if now == EngineStatus::Idle || matches!(now, EngineStatus::Blocked(_)) {
                self.record_usage(out);
            }
            self.shown = now.clone();
            out.msgs.push(Msg::Engine(now));
        }
    }

    fn record_usage(&mut self, out: &mut DriverOut) {
        if out.usage.is_none() {
            out.usage = self.usage_record();
        }
    }
}

fn stream_kind(p: &PlannedRequest) -> StreamKind {
    match p.kind {
        RequestKind::Generate { .. } => StreamKind::Generate,
        RequestKind::Relabel { .. } => StreamKind::Relabel,
    }
}

/// "A×B" for a mix request, "A" for plain, "#id A" for a relabel.
fn stream_label(st: &ProjectState, p: &PlannedRequest) -> String {
    match &p.kind {
        RequestKind::Generate { target } => match &p.provenance.minor {
            Some(m) => format!("{target}×{m}"),
            None => target.clone(),
        },
        RequestKind::Relabel { sample } => {
            let label = st.sample(*sample).map(|s| s.label.as_str()).unwrap_or("?");
            format!("#{sample} {label}")
        }
    }
}

/// A streamed reply as the Streams pane may show it: a secret the server
/// echoes (a refused key quoted back) is redacted on screen too. The text
/// is the whole reply so far, so a secret split across deltas is whole.
fn shown_delta(text: &str) -> String {
    crate::secrets::redact(text).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn streamed_text_shows_no_secret() {
        let key = "sk-driver-test-4f9c2a7e1b";
        crate::secrets::register(key);
        let shown = super::shown_delta(&format!("Incorrect API key provided: Bearer {key}."));
        assert!(!shown.contains(key), "{shown}");
        assert!(shown.starts_with("Incorrect API key provided: Bearer "));
        assert_eq!(super::shown_delta("1. Who wrote it?"), "1. Who wrote it?");
    }
}
