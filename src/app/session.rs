//! The generation session: one I/O-free state machine that `straddle
//! generate`, `relabel`, `loop` and the terminal UI (including its S3
//! round) all drive.
//!
//! ```text
//!  commands ─────────┐                       ┌──▶ jobs to submit (engine)
//!  engine events ────┼──▶ Session (pure) ────┼──▶ events to append (batches, acked in order)
//!  journal acks ─────┘                       └──▶ engine controls, notes, status()
//! ```
//!
//! A front end owns the I/O: it sends [`Output::submit`] to the engine
//! (tagged with the [`RequestId`]), appends [`Output::append`] to the
//! journal, applies the acknowledged events to its one fold of the journal
//! and hands them back with [`Session::on_appended`]. The session reads
//! that fold (`&ProjectState`) and never keeps its own.
//!
//! The rules that live here and nowhere else:
//!
//! * **What counts toward the target**: new examples that are not
//!   duplicates ([`Counting`] says whether the count starts at zero for
//!   this run or is the project's accepted + pending non-duplicates). A
//!   target is a goal, not a wall: reaching it ends the run with a note;
//!   raising the settings' target carries on toward the new one, and a
//!   start when it is already reached generates past it until paused or
//!   stopped ([`SessionStatus::past_target`]). With `exact`, no request
//!   asks for more than the target still misses, so `--count N` yields
//!   exactly N.
//! * **The request window**: generate requests are planned only when one
//!   of the window's slots is free, one at a time, never queued ahead; a
//!   request holds its slot while it is in the engine and frees it when
//!   its reply (or final failure) arrives, so the next request goes out
//!   while the reply waits for its commit: the journal's fsync is not on
//!   the request path. What the reply brings is counted only once it is in
//!   the journal (until then it is in flight for the target and the class
//!   schedule), and at most one window of replies waits for the journal
//!   (a slow disk holds new requests back). A window of one keeps the
//!   strict order (reply, journal, its relabels, next request), so a
//!   re-run plans the same requests and hits the cache. The window is the *effective*
//!   concurrency (with command-line overrides), or the engine's adaptive
//!   limit when that is lower ([`EngineEvent::Limit`], shown in
//!   [`SessionStatus::limit`]).
//! * **The fruitless-request guard**: a run that has made about four
//!   times the requests its target needs stops and says so
//!   ([`StopReason::Fruitless`]).
//! * **Which strategies run**: the configured strategy when it plans from
//!   the settings; an S3 round hands its held-out errors to the
//!   `extrapolate` strategy ([`Command::Extrapolate`]), whose requests are
//!   planned in the same window.
//! * **Failures**: counted per kind in a [`FailureTally`]
//!   ([`Report::failures`]), which also keeps the circuit breaker's streak
//!   (every retried attempt, every final failure, every answer); a failure
//!   no retry fixes (connection, key, URL/model) blocks the session,
//!   cancels what is in flight and names the fix; so does a tripped
//!   breaker ([`StopReason::Breaker`]) when no such failure came first.
//!   A front end turns the tally into the no-progress exit
//!   ([`FailureTally::no_progress`]).
//!
//! Replies are turned into events as they arrive, each reply one batch of
//! [`Output::appends`]: several may wait for their acknowledgements at once
//! (a front end commits them together), and the `sample_added` ids of a
//! batch follow those of the batches still unacknowledged.
//!
//! * **The class mix**: the intended class of every request is scheduled
//!   by deficit against what was *yielded* (accepted + pending
//!   non-duplicates by the label that would be exported) plus the
//!   requests in flight at what they can yield ([`Session::schedule`]),
//!   built afresh for each plan, so short replies and rejects are made up
//!   by the next requests.
//!
//! Where the next pieces plug in: a class scheduler is asked once per free
//! slot (`Generator::plan_generate_n` in `fill`, never a queue of plans);
//! a strategy joins through `augment::strategy`; failure kinds and stop
//! reasons are in [`Report::failures`] and [`StopReason`]; other job
//! kinds (embeddings) travel as the engine jobs of [`Output::submit`]; a
//! batch file carries those jobs (tagged with their
//! [`RequestId`]) and brings replies back as `EngineEvent::Finished` with
//! the same tag.

use std::collections::{HashMap, VecDeque};

mod denoise;
pub use denoise::{DENOISE_ACTOR, DenoiseReport, EmbedJob, is_noise_rejected, sample_attributes};

use crate::augment::generator::{is_dup_rejected, schedule_from};
use crate::augment::sampling::ClassSchedule;
use crate::augment::strategy::extrapolate::ErrorRound;
use crate::augment::{Generator, PlannedRequest, ReadReply, Reply, RequestKind, rules};
use crate::domain::{
    BackendConfig, Class, Event, EventKind, GenerationSettings, Mistake, Origin, ProjectState,
    SampleId, Status,
};
use crate::engine::{EngineEvent, FailReason, FailureTally, Job, LimitReason};

/// Most appends handed out before the first of them is acknowledged.
const MAX_UNACKED: usize = 256;
/// What counts toward a project-wide target: accepted + pending generated
/// examples (duplicates are rejected by dedup, and a person's rejects do
/// not count either).
fn project_count(state: &ProjectState) -> usize {
    state
        .generated()
        .filter(|s| s.status() != crate::domain::Status::Rejected)
        .count()
}

/// The session's number for a request; the engine job's tag.
pub type RequestId = u64;

/// Where the count toward the target starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    /// At zero: `--count N` asks for N new examples (the CLI).
    ThisRun,
    /// The project's accepted + pending non-duplicate generated examples
    /// (a person's rejects do not count): the target is a size for the
    /// whole dataset (the terminal UI's Controls pane).
    Project,
}

/// How a session runs.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Relabel every new generated example as it arrives.
    pub relabel: bool,
    /// Accept examples whose relabel agrees with at least this confidence.
    pub auto_accept: Option<f64>,
    /// The effective concurrency (the backend's, with overrides).
    pub concurrency: usize,
    pub counting: Counting,
    /// The backend, to name the fix when it cannot be used.
    pub backend: BackendConfig,
}

/// What a front end asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Generate until `target` examples count (see [`Counting`]); `None`:
    /// the settings' `target_count`. Also relabels what waits for it.
    /// `round` tags the examples with an S3 round; `exact` asks no request
    /// for more examples than the target still needs (else always
    /// `per_request`, so a re-run hits the cache).
    Start {
        target: Option<usize>,
        round: Option<u32>,
        exact: bool,
    },
    Pause,
    Resume,
    /// Cancel everything in flight and plan nothing more until a start.
    Stop,
    /// Use these settings from the next request on.
    Settings(GenerationSettings),
    /// Use these classes (weights) from the next request on.
    Classes(Vec<Class>),
    SetConcurrency(usize),
    /// Relabel these samples now.
    Relabel(Vec<SampleId>),
    /// Relabel every generated example without a verdict.
    RelabelPending,
    /// Relabel a sample once its edit is acknowledged.
    RelabelAfterEdit(SampleId),
    /// S3: extrapolate these held-out errors into `count` new examples.
    Extrapolate {
        round: u32,
        mistakes: Vec<Mistake>,
        count: usize,
    },
}

/// Engine controls a front end carries out.
#[derive(Debug, Clone, PartialEq)]
pub enum Control {
    Pause,
    Resume,
    CancelAll,
    SetConcurrency(usize),
}

/// Something to tell the person.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    Info(String),
    Error(String),
    /// A request failed for good (after the engine's retries); a failure
    /// that blocks the session shows as [`Phase::Blocked`] instead.
    RequestFailed {
        request: RequestId,
        kind: FailReason,
        message: String,
    },
    /// A reply held nothing usable (`empty_reply`, `unparsable`).
    NothingUsable {
        request: RequestId,
        reason: String,
    },
}

/// What the front end must do after an input.
#[derive(Debug, Default)]
pub struct Output {
    /// Jobs for the engine, tagged with their request id.
    pub submit: Vec<Job>,
    /// Batches of events to append, in order; answer each with
    /// [`Session::on_appended`] (`ours`), in the same order. A front end
    /// may write several with one fsync (group commit).
    pub appends: Vec<Vec<EventKind>>,
    pub control: Vec<Control>,
    pub notes: Vec<Note>,
    /// Texts to embed for the denoiser (an effect); answer with
    /// [`Session::on_embedded`].
    pub embed: Vec<EmbedJob>,
}

impl Output {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.submit.is_empty()
            && self.appends.is_empty()
            && self.control.is_empty()
            && self.notes.is_empty()
            && self.embed.is_empty()
    }
}

/// Whether the session generates.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    Idle,
    Running,
    Paused,
    /// The backend cannot be used; the message names the fix.
    Blocked(String),
}

/// Why generation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    TargetReached {
        target: usize,
    },
    /// Too many requests for too few new examples.
    Fruitless {
        requests: usize,
    },
    /// A failure no retry fixes.
    Backend {
        kind: FailReason,
        message: String,
    },
    /// The circuit breaker tripped: too many failed attempts of one kind
    /// in a row (see `engine::failures`); the message names the fix.
    Breaker {
        kind: FailReason,
        message: String,
    },
    /// A request could not be planned (e.g. every weight is 0).
    Plan(String),
    /// Stopped by the person (the TUI's `G`, Ctrl-C).
    Stopped,
}

impl StopReason {
    /// A failure that a further request will not fix.
    pub fn is_fatal(&self) -> bool {
        matches!(self, StopReason::Backend { .. } | StopReason::Plan(_))
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::TargetReached { target } => {
                write!(f, "target of {target} examples reached")
            }
            StopReason::Fruitless { requests } => write!(
                f,
                "{requests} requests made, too few new examples (the model repeats itself or \
                 replies with nothing usable; see `straddle stats`)"
            ),
            StopReason::Backend { message, .. } | StopReason::Breaker { message, .. } => {
                f.write_str(message)
            }
            StopReason::Plan(m) => write!(f, "cannot plan a request: {m}"),
            StopReason::Stopped => f.write_str("stopped"),
        }
    }
}

/// Counts of this session.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// New non-duplicate examples.
    pub examples: usize,
    pub duplicates: usize,
    /// Generate requests recorded as `generation_failed`, and relabel
    /// requests that failed.
    pub failed_requests: usize,
    pub relabelled: usize,
    pub unparsable_verdicts: usize,
    pub agreeing: usize,
    pub auto_accepted: usize,
    /// Generate requests planned (settings and extrapolation).
    pub generate_requests: usize,
    /// Failures by kind: the engine's reasons (`timeout`, `server_error`…)
    /// and the reply's (`empty_reply`, `unparsable`); cancelled requests
    /// are not failures. It also holds the circuit breaker.
    pub failures: FailureTally,
    /// The denoiser's work (its rejections are not in `examples`; its
    /// near-copies are in `duplicates`).
    pub denoise: DenoiseReport,
}

impl Report {
    /// The most frequent failure kind and its count.
    pub fn dominant_failure(&self) -> Option<(&str, usize)> {
        self.failures.dominant_kind().map(|(k, n)| (k, n as usize))
    }
}

/// What the front end shows.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionStatus {
    pub phase: Phase,
    /// Examples counting toward the target, and the target.
    pub have: usize,
    pub target: usize,
    /// Requests in the engine.
    pub in_flight: usize,
    /// Generate requests whose replies are not in the journal yet.
    pub generate_open: usize,
    /// Why generation last ended, if it did.
    pub stop: Option<StopReason>,
    /// The engine's adaptive limit on requests in flight and why it last
    /// changed (`None` when the limit is fixed).
    pub limit: Option<(usize, LimitReason)>,
    /// Started with the target already reached: generating past it until
    /// paused or stopped.
    pub past_target: bool,
}

type Failure = (FailReason, String, Option<String>);

/// Work waiting for the one append slot.
#[derive(Debug)]
enum Pending {
    /// A reply (maybe read ahead, see [`Session::on_engine_read`]) or a failure.
    Reply(
        RequestId,
        Box<PlannedRequest>,
        Result<(Reply, Option<Box<ReadReply>>), Failure>,
    ),
    AutoAccept(Box<EventKind>),
    /// The denoiser's judgements, and the examples to relabel after them.
    Denoise(Vec<EventKind>, Vec<SampleId>),
}

/// What the append in flight holds.
#[derive(Debug, Clone, PartialEq)]
enum Appending {
    /// A generate request's reply (`n`: the most it can yield): it is
    /// open, and in flight for the target and the class schedule, until
    /// the ack.
    Generate {
        n: usize,
        target: String,
        minor: Option<String>,
    },
    Relabel,
    AutoAccept,
    /// The denoiser's judgements, and the examples to relabel after them.
    Denoise(Vec<SampleId>),
}

/// See the module docs.
pub struct Session {
    generator: Generator,
    cfg: SessionConfig,
    phase: Phase,
    stop: Option<StopReason>,
    requests: HashMap<RequestId, PlannedRequest>,
    next_id: RequestId,
    pending: VecDeque<Pending>,
    /// Our appends not acknowledged yet, in order, with the sample ids
    /// each takes.
    appending: VecDeque<(Appending, u64)>,
    /// Generate requests not in the journal yet, and the examples they
    /// asked for.
    generate_open: usize,
    /// Of those, the ones whose reply (or final failure) has arrived and
    /// waits for its append: their window slot is free again.
    generate_arrived: usize,
    expected: usize,
    target: usize,
    have: usize,
    /// Generate requests this run may make before the guard stops it.
    budget: usize,
    errors: Option<ErrorRound>,
    after_edit: Vec<SampleId>,
    /// Stopped by the person: no new request until a start (or S3 round).
    halted: bool,
    round: Option<u32>,
    exact: bool,
    /// A pause interrupted a running generation (resume runs it again).
    resume_running: bool,
    report: Report,
    /// The engine's adaptive limit, once reported.
    limit: Option<(usize, LimitReason)>,
    /// Bumped whenever what shapes a request changes (weights, α,
    /// temperature, strategy, …; not the target): requests planned under
    /// an older version show as such.
    settings_version: u64,
    /// The settings version each request in flight was planned under.
    planned_under: HashMap<RequestId, u64>,
    /// Generate requests not in the journal yet (in the engine, a reply
    /// waiting, or being appended) per class and pair, at what they asked
    /// for: the in-flight part of [`Session::schedule`].
    inflight: ClassSchedule,
    /// The part of the schedule read from the state, and the state it was
    /// read from (last event id, samples).
    yielded: Option<((u64, usize), ClassSchedule)>,
    /// The target is the settings' `target_count` (a start without one):
    /// a changed setting moves it.
    target_from_settings: bool,
    /// Generating past a target already reached (see [`Counting`]).
    past_target: bool,
    /// Judging new examples by embeddings (`session/denoise.rs`).
    denoise: denoise::Denoising,
}

impl Session {
    pub fn new(generator: Generator, cfg: SessionConfig) -> Session {
        Session {
            generator,
            cfg,
            phase: Phase::Idle,
            stop: None,
            requests: HashMap::new(),
            next_id: 1,
            pending: VecDeque::new(),
            appending: VecDeque::new(),
            generate_open: 0,
            generate_arrived: 0,
            expected: 0,
            target: 0,
            have: 0,
            budget: 0,
            errors: None,
            after_edit: Vec::new(),
            halted: false,
            round: None,
            exact: false,
            resume_running: false,
            report: Report::default(),
            limit: None,
            settings_version: 0,
            planned_under: HashMap::new(),
            target_from_settings: false,
            past_target: false,
            inflight: ClassSchedule::default(),
            yielded: None,
            denoise: Default::default(),
        }
    }

    pub fn generator(&self) -> &Generator {
        &self.generator
    }

    pub fn report(&self) -> &Report {
        &self.report
    }

    pub fn status(&self) -> SessionStatus {
        SessionStatus {
            phase: self.phase.clone(),
            have: self.have,
            target: self.target,
            in_flight: self.requests.len(),
            generate_open: self.generate_open,
            stop: self.stop.clone(),
            limit: self.limit,
            past_target: self.past_target,
        }
    }

    /// The request behind an engine job's tag (for labelling streams).
    pub fn request(&self, id: RequestId) -> Option<&PlannedRequest> {
        self.requests.get(&id)
    }

    /// The version of the settings (weights, α, temperature, strategy…):
    /// bumped by every change that shapes the next request.
    pub fn settings_version(&self) -> u64 {
        self.settings_version
    }

    /// The settings version request `id` was planned under (`None` once it
    /// is no longer in flight).
    pub fn planned_under(&self, id: RequestId) -> Option<u64> {
        self.planned_under.get(&id).copied()
    }

    /// Request `id` is in flight and was planned under older settings.
    pub fn planned_under_old_settings(&self, id: RequestId) -> bool {
        self.planned_under(id)
            .is_some_and(|v| v < self.settings_version)
    }

    /// Take new settings; bump the version if they change a request. A
    /// new target moves a target taken from the settings: a run that
    /// ended at the old one carries on toward a higher one.
    fn take_settings(&mut self, s: GenerationSettings, state: &ProjectState) {
        if self.target_from_settings && s.target_count != self.target {
            self.target = s.target_count;
            if self.cfg.counting == Counting::Project {
                self.have = project_count(state);
            }
            self.past_target = false;
            let ended_at_target = self.phase == Phase::Idle
                && matches!(self.stop, Some(StopReason::TargetReached { .. }));
            if ended_at_target && self.have < self.target {
                self.stop = None;
                self.halted = false;
                self.report.generate_requests = 0;
                self.phase = Phase::Running;
            }
        }
        let shape = |g: &GenerationSettings| GenerationSettings {
            target_count: 0,
            dedup_threshold: 0.0,
            ..g.clone()
        };
        if shape(&s) != shape(self.generator.settings()) {
            self.settings_version += 1;
        }
        self.generator.set_settings(s, state);
        if self.phase == Phase::Running {
            self.set_budget();
        }
    }

    /// Take new classes; bump the version if a weight or class changed.
    fn take_classes(&mut self, classes: Vec<Class>) {
        if classes != self.generator.plan_context().classes {
            self.settings_version += 1;
            self.yielded = None;
        }
        self.generator.set_classes(classes);
    }

    /// Requests in the engine, replies waiting or an append unacknowledged.
    pub fn busy(&self) -> bool {
        !self.requests.is_empty()
            || !self.pending.is_empty()
            || !self.appending.is_empty()
            || self.denoise_open()
    }

    fn concurrency(&self) -> usize {
        self.cfg.concurrency.max(1)
    }

    /// Generate requests that may be in the engine at once: the
    /// concurrency, or the engine's adaptive limit when lower.
    fn window(&self) -> usize {
        let c = self.concurrency();
        self.limit.map_or(c, |(l, _)| c.min(l.max(1)))
    }

    /// A generate request may go out: a window slot is free (replies that
    /// arrived and wait for the journal hold none) and no more than one
    /// window of replies waits for the journal. A window of one keeps the
    /// strict order instead — a reply, its journal entry and its relabel
    /// requests, then the next request — so a re-run plans the same
    /// requests and is served from the cache (with more in flight the
    /// order follows the network anyway).
    fn slot_free(&self) -> bool {
        let w = self.window();
        if w == 1 {
            return self.generate_open == 0;
        }
        self.generate_open.saturating_sub(self.generate_arrived) < w && self.generate_open < 2 * w
    }

    /// Handle a command.
    pub fn command(&mut self, state: &ProjectState, cmd: Command) -> Output {
        let mut out = Output::default();
        match cmd {
            Command::Start {
                target,
                round,
                exact,
            } => {
                self.target = target.unwrap_or(self.generator.settings().target_count);
                self.target_from_settings = target.is_none();
                self.round = round;
                self.exact = exact;
                self.have = match self.cfg.counting {
                    Counting::ThisRun => 0,
                    Counting::Project => project_count(state),
                };
                // Started at a target already reached: go on past it.
                self.past_target =
                    self.have >= self.target && self.cfg.counting == Counting::Project;
                if self.past_target {
                    out.notes.push(Note::Info(format!(
                        "target of {} examples already reached: generating past it until paused",
                        self.target
                    )));
                }
                self.report.generate_requests = 0;
                self.report.failures.rearm();
                self.set_budget();
                self.stop = None;
                self.halted = false;
                self.phase = Phase::Running;
                out.control.push(Control::Resume);
                if self.cfg.relabel {
                    self.relabel_pending(state, &mut out);
                }
            }
            Command::Pause => {
                if matches!(self.phase, Phase::Running | Phase::Idle) {
                    self.resume_running = self.phase == Phase::Running;
                    self.phase = Phase::Paused;
                }
                out.control.push(Control::Pause);
            }
            Command::Resume => {
                match self.phase {
                    Phase::Paused if self.resume_running => self.phase = Phase::Running,
                    Phase::Paused | Phase::Blocked(_) => self.phase = Phase::Idle,
                    Phase::Running | Phase::Idle => {}
                }
                out.control.push(Control::Resume);
            }
            Command::Stop => {
                self.phase = Phase::Idle;
                self.stop = Some(StopReason::Stopped);
                self.halted = true;
                self.errors = None;
                out.control.push(Control::CancelAll);
                out.control.push(Control::Resume);
            }
            Command::Settings(s) => self.take_settings(s, state),
            Command::Classes(c) => self.take_classes(c),
            Command::SetConcurrency(n) => {
                self.cfg.concurrency = n.max(1);
                out.control
                    .push(Control::SetConcurrency(self.concurrency()));
            }
            Command::Relabel(ids) => {
                for id in ids {
                    self.submit_relabel(state, id, &mut out);
                }
            }
            Command::RelabelPending => self.relabel_pending(state, &mut out),
            Command::RelabelAfterEdit(id) => {
                if self.cfg.relabel {
                    self.after_edit.push(id);
                }
            }
            Command::Extrapolate {
                round,
                mistakes,
                count,
            } => {
                let names: Vec<String> = self
                    .generator
                    .plan_context()
                    .classes
                    .iter()
                    .map(|c| c.name.clone())
                    .collect();
                let per = self.generator.settings().per_request;
                let r = ErrorRound::new(&mistakes, &names, round, count, per);
                let paused = if self.phase == Phase::Paused {
                    " (generation is paused: press g to resume)"
                } else {
                    ""
                };
                out.notes.push(Note::Info(format!(
                    "S3 round {round}: {} extrapolation request(s) from {} held-out error(s){paused}",
                    r.remaining(),
                    mistakes.len()
                )));
                self.errors = (r.remaining() > 0).then_some(r);
                self.halted = false;
                if matches!(self.phase, Phase::Blocked(_)) {
                    self.phase = Phase::Idle;
                }
            }
        }
        self.step(state, &mut out);
        out
    }

    /// Handle an engine event (`tag` = the request id).
    pub fn on_engine(&mut self, state: &ProjectState, ev: EngineEvent) -> Output {
        self.on_engine_read(state, ev, None)
    }

    /// [`Session::on_engine`] for a finished reply already read by the
    /// generator's [`ReplyReader`](crate::augment::ReplyReader) (a batch
    /// ingest reads replies ahead on another thread): the same events as
    /// without the read.
    pub fn on_engine_read(
        &mut self,
        state: &ProjectState,
        ev: EngineEvent,
        read: Option<ReadReply>,
    ) -> Output {
        let mut out = Output::default();
        match ev {
            EngineEvent::Finished { tag, response, .. } => {
                self.planned_under.remove(&tag);
                if let Some(p) = self.requests.remove(&tag) {
                    self.report.failures.success();
                    self.arrived(&p);
                    self.pending.push_back(Pending::Reply(
                        tag,
                        Box::new(p),
                        Ok((response, read.map(Box::new))),
                    ));
                }
            }
            EngineEvent::Failed {
                tag,
                reason,
                message,
                raw,
                ..
            } => {
                self.planned_under.remove(&tag);
                if let Some(p) = self.requests.remove(&tag) {
                    self.failed(tag, p, reason, message, raw, &mut out);
                }
            }
            EngineEvent::Backoff { tag, reason, .. } => {
                if !self.requests.contains_key(&tag) {
                    return out;
                }
                if self.report.failures.attempt_failed(reason) {
                    self.trip(&mut out);
                }
            }
            EngineEvent::Limit { limit, reason } => self.limit = Some((limit, reason)),
            EngineEvent::Started { .. } | EngineEvent::Delta { .. } => return out,
        }
        self.step(state, &mut out);
        out
    }

    fn failed(
        &mut self,
        tag: RequestId,
        p: PlannedRequest,
        reason: FailReason,
        message: String,
        raw: Option<String>,
        out: &mut Output,
    ) {
        if reason == FailReason::Cancelled {
            self.settle(&p);
            return;
        }
        let tripped = self.report.failures.failure(reason);
        if let RequestKind::Relabel { .. } = p.kind {
            self.report.failed_requests += 1;
        }
        tracing::warn!("request failed: {}: {message}", reason.as_str());
        // A failure no retry fixes wins over the breaker: its fix is the
        // more precise one.
        if matches!(
            reason,
            FailReason::Connect | FailReason::Auth | FailReason::NotFound
        ) {
            self.settle(&p);
            if !matches!(self.phase, Phase::Blocked(_)) {
                self.phase = Phase::Blocked(self.fix_message(reason, &message));
                self.stop = Some(StopReason::Backend {
                    kind: reason,
                    message,
                });
                out.control.push(Control::CancelAll);
            }
            return;
        }
        out.notes.push(Note::RequestFailed {
            request: tag,
            kind: reason,
            message: message.clone(),
        });
        self.arrived(&p);
        self.pending.push_back(Pending::Reply(
            tag,
            Box::new(p),
            Err((reason, message, raw)),
        ));
        if tripped {
            self.trip(out);
        }
    }

    /// The circuit breaker tripped: block (as a failure no retry fixes
    /// does) with its message, and cancel what is in flight; a start
    /// rearms it. Replies already in hand are still recorded.
    fn trip(&mut self, out: &mut Output) {
        if matches!(self.phase, Phase::Blocked(_)) {
            return;
        }
        let Some((kind, _)) = self.report.failures.tripped() else {
            return;
        };
        let message = self
            .report
            .failures
            .breaker_message(&self.cfg.backend, "straddle.toml")
            .unwrap_or_default();
        out.notes.push(Note::Error(message.clone()));
        self.phase = Phase::Blocked(format!(
            "{message}; press g to retry. Review, edit and export still work."
        ));
        self.stop = Some(StopReason::Breaker { kind, message });
        out.control.push(Control::CancelAll);
    }

    /// The store wrote `events` (`ours`: the batch this session asked
    /// for; else someone else's, e.g. a key's). `state` already holds them.
    pub fn on_appended(&mut self, state: &ProjectState, events: &[Event], ours: bool) -> Output {
        let mut out = Output::default();
        self.fold_yielded(state, events);
        for e in events {
            match &e.kind {
                EventKind::SettingsChanged(s) if !ours => {
                    self.take_settings(s.generation.clone(), state);
                }
                EventKind::WeightChanged(w) if !ours => {
                    let mut classes = self.generator.plan_context().classes.to_vec();
                    if let Some(c) = classes.iter_mut().find(|c| c.name == w.class) {
                        c.weight = w.weight;
                    }
                    self.take_classes(classes);
                }
                EventKind::AttributeWeightChanged(w) if !ours => {
                    self.generator
                        .set_attribute_weight(&w.attribute, &w.value, w.weight);
                }
                EventKind::RationalesAdded(_) => self.generator.set_rationales(state),
                _ => {}
            }
        }
        if ours && let Some((what, _)) = self.appending.pop_front() {
            self.recorded(state, what, events, &mut out);
        }
        if !self.after_edit.is_empty() {
            let edited: Vec<SampleId> = events
                .iter()
                .filter_map(|e| match &e.kind {
                    EventKind::Edited(ed) => Some(ed.sample),
                    _ => None,
                })
                .collect();
            let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.after_edit)
                .into_iter()
                .partition(|id| edited.contains(id));
            self.after_edit = later;
            for id in now {
                self.submit_relabel(state, id, &mut out);
            }
        }
        self.step(state, &mut out);
        out
    }

    /// Keep the schedule's part read from the state (`yielded`) in step
    /// with an append, so the next plan need not recount every sample (a
    /// recount per group commit made a run quadratic in its samples): new
    /// generated samples not rejected count for their class and pair;
    /// anything else that can move a count (a decision on an older sample,
    /// a verdict, an edit) makes the next plan recount.
    fn fold_yielded(&mut self, state: &ProjectState, events: &[Event]) {
        let (Some(first), Some(end)) = (events.first(), events.last()) else {
            return;
        };
        let Some(((last, len), base)) = self.yielded.as_mut() else {
            return;
        };
        if end.id <= *last {
            return; // a recount already saw it
        }
        let folded = first.id == *last + 1
            && events.iter().all(|e| match &e.kind {
                EventKind::SampleAdded(_)
                | EventKind::GenerationFailed(_)
                | EventKind::UsageRecorded(_) => true,
                // A dedup rejection of a sample added with it: the
                // sample's status below already says so.
                EventKind::Decided(d) => events
                    .iter()
                    .any(|x| matches!(&x.kind, EventKind::SampleAdded(a) if a.id == d.sample)),
                _ => false,
            });
        if !folded {
            self.yielded = None;
            return;
        }
        for e in events {
            let EventKind::SampleAdded(a) = &e.kind else {
                continue;
            };
            *len += 1;
            if a.origin != Origin::Generated {
                continue;
            }
            let Some(s) = state.sample(a.id) else {
                continue;
            };
            if s.status() == Status::Rejected {
                continue;
            }
            if s.effective_label(state.take_relabel) != s.label {
                self.yielded = None;
                return;
            }
            base.add(&s.label, s.provenance.minor.as_deref(), 1.0);
        }
        *last = end.id;
    }

    /// Our append is in the journal: count it, queue what follows.
    fn recorded(
        &mut self,
        state: &ProjectState,
        what: Appending,
        events: &[Event],
        out: &mut Output,
    ) {
        match what {
            Appending::Generate { n, target, minor } => {
                self.generate_open = self.generate_open.saturating_sub(1);
                self.generate_arrived = self.generate_arrived.saturating_sub(1);
                self.expected = self.expected.saturating_sub(n);
                self.inflight.add(&target, minor.as_deref(), -(n as f64));
                let mut kept = Vec::new();
                for e in events {
                    match &e.kind {
                        EventKind::SampleAdded(a) if a.origin == Origin::Generated => {
                            match state.sample(a.id) {
                                Some(s) if !is_dup_rejected(s) => kept.push(a.id),
                                _ => self.report.duplicates += 1,
                            }
                        }
                        EventKind::GenerationFailed(f) => {
                            self.report.failed_requests += 1;
                            if matches!(f.reason.as_str(), "empty_reply" | "unparsable") {
                                self.report.failures.unusable(&f.reason);
                            }
                        }
                        _ => {}
                    }
                }
                self.report.examples += kept.len();
                self.have += kept.len();
                let kept = self.denoise_recorded(state, kept, out);
                if self.past_target && !kept.is_empty() {
                    self.set_budget();
                }
                if self.cfg.relabel && self.may_send() {
                    for id in kept {
                        self.submit_relabel(state, id, out);
                    }
                }
            }
            Appending::Relabel => {
                for e in events {
                    if let EventKind::VerdictRecorded(v) = &e.kind {
                        self.report.relabelled += 1;
                        let s = state.sample(v.sample);
                        match s.and_then(|s| s.agrees()) {
                            None => self.report.unparsable_verdicts += 1,
                            Some(true) => self.report.agreeing += 1,
                            Some(false) => {}
                        }
                        if let Some(s) = s
                            && let Some(k) = rules::auto_accept(s, self.cfg.auto_accept)
                        {
                            self.pending.push_front(Pending::AutoAccept(Box::new(k)));
                        }
                    }
                }
            }
            Appending::AutoAccept => self.report.auto_accepted += 1,
            Appending::Denoise(keep) => {
                self.denoise.relabel_after = keep;
                let (noise, copies) = Self::rejections(events);
                self.have = self.have.saturating_sub(noise + copies);
                self.report.examples = self.report.examples.saturating_sub(noise + copies);
                self.report.duplicates += copies;
                self.denoise_appended(state, out);
            }
        }
    }

    /// Requests may be submitted (not after a stop or while blocked; a
    /// paused engine holds them until it resumes).
    fn may_send(&self) -> bool {
        !self.halted && !matches!(self.phase, Phase::Blocked(_))
    }

    /// New generate requests may be planned (also not while paused).
    fn may_plan(&self) -> bool {
        self.may_send() && self.phase != Phase::Paused
    }

    fn set_budget(&mut self) {
        let per = self.generator.settings().per_request.max(1);
        // Past the target, the guard counts from the last new example:
        // four windows of requests in a row that yield nothing stop it.
        let left = if self.past_target {
            per * self.window()
        } else {
            self.target.saturating_sub(self.have + self.expected)
        };
        self.budget = self.report.generate_requests + left.div_ceil(per) * 4 + 4;
    }

    /// Append the next reply, then fill free slots.
    fn step(&mut self, state: &ProjectState, out: &mut Output) {
        self.next_append(state, out);
        self.fill(state, out);
    }

    /// Sample ids taken by our appends not yet in the state.
    fn reserved_ids(&self) -> u64 {
        self.appending.iter().map(|(_, n)| n).sum()
    }

    fn next_append(&mut self, state: &ProjectState, out: &mut Output) {
        while self.appending.len() < MAX_UNACKED {
            let Some(p) = self.pending.pop_front() else {
                return;
            };
            let (events, what) = match p {
                Pending::AutoAccept(k) => (vec![*k], Appending::AutoAccept),
                Pending::Denoise(events, keep) => {
                    if events.is_empty() {
                        self.denoise.relabel_after = keep;
                        self.denoise_appended(state, out);
                        continue;
                    }
                    (events, Appending::Denoise(keep))
                }
                Pending::Reply(id, planned, result) => {
                    let what = match &planned.kind {
                        RequestKind::Generate { target } => Appending::Generate {
                            n: planned.n,
                            target: target.clone(),
                            minor: planned.provenance.minor.as_deref().map(Into::into),
                        },
                        RequestKind::Relabel { .. } => Appending::Relabel,
                    };
                    let events = match result {
                        Ok((reply, read)) => {
                            let first = state.next_sample_id() + self.reserved_ids();
                            let events = self.generator.on_reply_read(
                                first,
                                &planned,
                                &reply,
                                read.map(|r| *r),
                            );
                            for e in &events {
                                if let EventKind::GenerationFailed(f) = e {
                                    out.notes.push(Note::NothingUsable {
                                        request: id,
                                        reason: f.reason.clone(),
                                    });
                                }
                            }
                            events
                        }
                        Err((reason, message, raw)) => self.generator.on_failure(
                            &planned,
                            reason.as_str(),
                            &message,
                            raw.as_deref(),
                        ),
                    };
                    if events.is_empty() {
                        self.settle(&planned);
                        if let RequestKind::Generate { .. } = planned.kind {
                            self.generate_arrived = self.generate_arrived.saturating_sub(1);
                        }
                        continue;
                    }
                    // The denoiser's echo check compares this reply's
                    // examples with its prompt's instructions (one entry
                    // per generate append, taken at its ack).
                    if let RequestKind::Generate { .. } = planned.kind {
                        self.denoise_before_append(&planned);
                    }
                    (events, what)
                }
            };
            let ids = events
                .iter()
                .filter(|e| matches!(e, EventKind::SampleAdded(_)))
                .count() as u64;
            // The reply is parsed: it can yield no more than it added, so
            // the target and the class schedule count only that while it
            // waits for the journal (the next request, planned before the
            // ack, asks for the rest).
            let what = match what {
                Appending::Generate { n, target, minor } if (ids as usize) < n => {
                    let short = n - ids as usize;
                    self.expected = self.expected.saturating_sub(short);
                    self.inflight
                        .add(&target, minor.as_deref(), -(short as f64));
                    Appending::Generate {
                        n: ids as usize,
                        target,
                        minor,
                    }
                }
                w => w,
            };
            self.appending.push_back((what, ids));
            out.appends.push(events);
        }
    }

    /// A generate request's reply (or final failure) arrived: its window
    /// slot is free; it stays open until its append is acknowledged.
    fn arrived(&mut self, p: &PlannedRequest) {
        if let RequestKind::Generate { .. } = p.kind {
            self.generate_arrived += 1;
        }
    }

    /// A generate request ends without events: its slot is free.
    fn settle(&mut self, p: &PlannedRequest) {
        if let RequestKind::Generate { target } = &p.kind {
            self.generate_open = self.generate_open.saturating_sub(1);
            self.expected = self.expected.saturating_sub(p.n);
            self.inflight
                .add(target, p.provenance.minor.as_deref(), -(p.n as f64));
        }
    }

    /// Plan requests into free slots: S3 errors first, then the target.
    fn fill(&mut self, state: &ProjectState, out: &mut Output) {
        if !self.may_plan() {
            return;
        }
        while self.slot_free() {
            let Some(round) = self.errors.as_mut() else {
                break;
            };
            match self.generator.plan_error(round) {
                Some(Ok(p)) => self.submit(p, out),
                Some(Err(e)) => {
                    out.notes.push(Note::Error(format!(
                        "S3 round: cannot plan extrapolation: {e:#}"
                    )));
                    self.errors = None;
                }
                None => self.errors = None,
            }
        }
        if self.errors.as_ref().is_some_and(|r| r.remaining() == 0) {
            self.errors = None;
        }
        if self.phase != Phase::Running {
            return;
        }
        if self.cfg.counting == Counting::Project {
            // A person's rejects and undos move it too.
            self.have = project_count(state);
        }
        let per = self.generator.settings().per_request.max(1);
        while self.slot_free() && (self.past_target || self.have + self.expected < self.target) {
            if self.report.generate_requests >= self.budget {
                self.end(
                    StopReason::Fruitless {
                        requests: self.report.generate_requests,
                    },
                    out,
                );
                return;
            }
            let n = if self.exact && !self.past_target {
                per.min(self.target - self.have - self.expected)
            } else {
                per
            };
            let schedule = self.schedule_for_plan(state);
            self.generator.set_schedule(schedule);
            match self.generator.plan_generate_n(n) {
                Ok(mut p) => {
                    p.provenance.round = self.round;
                    self.submit(p, out)
                }
                Err(e) => {
                    let m = format!("{e:#}");
                    out.notes
                        .push(Note::Error(format!("cannot plan a request: {m}")));
                    self.end(StopReason::Plan(m), out);
                    return;
                }
            }
        }
        if !self.past_target
            && self.have >= self.target
            && self.generate_open == 0
            && !self.denoise_open()
        {
            let target = self.target;
            out.notes
                .push(Note::Info(format!("target of {target} examples reached")));
            self.end(StopReason::TargetReached { target }, out);
        }
    }

    /// What the class schedule plans against: accepted + pending
    /// non-duplicate examples per class (by the label that would be
    /// exported) in `state`, plus every generate request not in the
    /// journal yet (in the engine, its reply waiting, or being appended)
    /// at the most it can yield: what it asked for (the parser keeps no
    /// more). When a reply yields less, its class falls behind and goes
    /// next. (Counting in-flight requests at an estimated yield rate
    /// instead was tried: a full reply then overshoots the estimate and
    /// the counts leave the one-request bound; the property test below
    /// found it.)
    pub fn schedule(&self, state: &ProjectState) -> ClassSchedule {
        let mut s = schedule_from(state, self.generator.plan_context().classes);
        s.merge(&self.inflight);
        s
    }

    /// [`Session::schedule`] for the next plan, with the part read from
    /// `state` computed once per state (a batch plans thousands of
    /// requests against one state; the in-flight part is kept as requests
    /// come and go).
    fn schedule_for_plan(&mut self, state: &ProjectState) -> ClassSchedule {
        let key = (state.last_event_id, state.samples.len());
        let base = match &self.yielded {
            Some((k, b)) if *k == key => b.clone(),
            _ => {
                let b = schedule_from(state, self.generator.plan_context().classes);
                self.yielded = Some((key, b.clone()));
                b
            }
        };
        let mut s = base;
        s.merge(&self.inflight);
        s
    }

    fn end(&mut self, why: StopReason, out: &mut Output) {
        if let StopReason::Fruitless { .. } = why {
            out.notes.push(Note::Error(why.to_string()));
        }
        self.phase = Phase::Idle;
        self.stop = Some(why);
    }

    fn submit(&mut self, p: PlannedRequest, out: &mut Output) {
        let id = self.next_id;
        self.next_id += 1;
        if let RequestKind::Generate { target } = &p.kind {
            self.generate_open += 1;
            self.expected += p.n;
            self.report.generate_requests += 1;
            self.inflight
                .add(target, p.provenance.minor.as_deref(), p.n as f64);
        }
        out.submit.push(p.job(id));
        self.planned_under.insert(id, self.settings_version);
        self.requests.insert(id, p);
    }

    /// Take a request another carrier sends (a batch file, `app::batch`):
    /// it is in flight under the returned id until its reply (or failure)
    /// comes back through [`Session::on_engine`] like a live one. Nothing
    /// is planned for it and it does not count against the budget.
    pub fn carry(&mut self, p: PlannedRequest) -> RequestId {
        let id = self.next_id;
        self.next_id += 1;
        if let RequestKind::Generate { target } = &p.kind {
            self.generate_open += 1;
            self.expected += p.n;
            self.inflight
                .add(target, p.provenance.minor.as_deref(), p.n as f64);
        }
        self.requests.insert(id, p);
        id
    }

    fn relabel_pending(&mut self, state: &ProjectState, out: &mut Output) {
        let waiting: Vec<SampleId> = Generator::needs_relabel(state)
            .into_iter()
            .filter(|id| {
                !self
                    .requests
                    .values()
                    .any(|p| p.kind == RequestKind::Relabel { sample: *id })
            })
            .collect();
        for id in waiting {
            self.submit_relabel(state, id, out);
        }
    }

    fn submit_relabel(&mut self, state: &ProjectState, id: SampleId, out: &mut Output) {
        if !self.may_send() {
            return;
        }
        let nearest = self.nearest_classes(state, id);
        match self
            .generator
            .plan_relabel_among(state, id, nearest.as_deref())
        {
            Ok(p) => self.submit(p, out),
            Err(e) => out
                .notes
                .push(Note::Error(format!("relabel of #{id}: {e:#}"))),
        }
    }

    fn fix_message(&self, reason: FailReason, message: &str) -> String {
        let b = &self.cfg.backend;
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
}

#[cfg(test)]
mod tests {
    //! The session driven by scripted engine events and acknowledgements,
    //! with no engine, journal or terminal. The drift cases of issue 9
    //! (what counts, the fruitless guard, the request window, which
    //! strategies plan) each have a test here that the two orchestrators
    //! this session replaced would fail.
    use super::*;
    use crate::augment::Templates;
    use crate::domain::testing::{apply, state_with};
    use crate::domain::{ProjectConfig, Strategy, TaskConfig};
    use crate::llm::ChatResponse;
    use std::time::Duration;

    fn config() -> ProjectConfig {
        let class = |n: &str, d: &str| Class {
            name: n.into(),
            description: d.into(),
            weight: 1.0,
        };
        ProjectConfig {
            task: TaskConfig {
                name: "trec".into(),
                description: "Questions.".into(),
            },
            classes: vec![class("HUM", "a person"), class("LOC", "a place")],
            backend: Default::default(),
            generation: GenerationSettings {
                per_request: 2,
                ..Default::default()
            },
            relabel: Default::default(),
            embeddings: Default::default(),
            attributes: Default::default(),
            denoise: crate::domain::DenoiseConfig::off(),
            judge: Default::default(),
            strategy: Default::default(),
        }
    }

    struct Rig {
        s: Session,
        st: ProjectState,
        /// Jobs submitted and not answered yet, in order.
        open: VecDeque<Job>,
        words: usize,
        /// Embed jobs not answered yet (denoising).
        embeds: VecDeque<EmbedJob>,
    }

    /// A rig on a session over `st` with a generator for `cfg` and
    /// `settings`.
    fn rig_from(
        cfg: &ProjectConfig,
        settings: GenerationSettings,
        st: ProjectState,
        sc: SessionConfig,
    ) -> Rig {
        let g = Generator::new(
            cfg,
            cfg.classes.clone(),
            settings,
            Templates::builtin(),
            &st,
        );
        Rig {
            s: Session::new(g, sc),
            st,
            open: VecDeque::new(),
            words: 0,
            embeds: VecDeque::new(),
        }
    }

    fn rig(counting: Counting, concurrency: usize, relabel: bool) -> Rig {
        rig_with(counting, concurrency, relabel, config().generation)
    }

    fn rig_with(
        counting: Counting,
        concurrency: usize,
        relabel: bool,
        settings: GenerationSettings,
    ) -> Rig {
        let cfg = config();
        let st = state_with(
            &[
                ("Who wrote Hamlet?", "HUM", Origin::Seed),
                ("Where is Lima?", "LOC", Origin::Seed),
            ],
            vec![],
        );
        rig_from(
            &cfg,
            settings,
            st,
            SessionConfig {
                relabel,
                auto_accept: Some(0.5),
                concurrency,
                counting,
                backend: cfg.backend.clone(),
            },
        )
    }

    fn response(text: &str) -> ChatResponse {
        ChatResponse {
            text: text.into(),
            choices: vec![text.into()],
            finish_reason: Some("stop".into()),
            usage: Default::default(),
            logprobs: None,
            cached: false,
            model: "m".into(),
            request_id: "r".into(),
        }
    }

    impl Rig {
        /// Carry out an output as a front end would: remember the jobs,
        /// append (acknowledging at once) until nothing is left to append.
        fn run(&mut self, mut out: Output) -> Vec<Control> {
            let mut controls = Vec::new();
            loop {
                self.open.extend(out.submit.drain(..));
                self.embeds.extend(out.embed.drain(..));
                controls.append(&mut out.control);
                if out.appends.is_empty() {
                    return controls;
                }
                let batches = std::mem::take(&mut out.appends);
                for kinds in batches {
                    let events = apply(&mut self.st, kinds);
                    let mut more = self.s.on_appended(&self.st, &events, true);
                    self.open.extend(more.submit.drain(..));
                    self.embeds.extend(more.embed.drain(..));
                    controls.append(&mut more.control);
                    out.appends.append(&mut more.appends);
                }
            }
        }

        fn command(&mut self, c: Command) -> Vec<Control> {
            let out = self.s.command(&self.st, c);
            self.run(out)
        }

        fn start(&mut self, target: usize) {
            self.command(Command::Start {
                target: Some(target),
                round: None,
                exact: false,
            });
        }

        fn answer(&mut self, job: Job, text: &str) {
            let ev = EngineEvent::Finished {
                id: job.tag,
                tag: job.tag,
                response: response(text),
                latency: Duration::ZERO,
            };
            let out = self.s.on_engine(&self.st, ev);
            self.run(out);
        }

        fn fail(&mut self, job: Job, reason: FailReason) -> Vec<Control> {
            let ev = EngineEvent::Failed {
                id: job.tag,
                tag: job.tag,
                reason,
                message: "boom".into(),
                raw: None,
            };
            let out = self.s.on_engine(&self.st, ev);
            self.run(out)
        }

        /// Answer the oldest open job: a generate request with `n` new
        /// questions, a relabel with its sample's label.
        fn answer_next(&mut self, n: usize) -> bool {
            let Some(job) = self.open.pop_front() else {
                return false;
            };
            let relabel = match self.s.request(job.tag).map(|p| &p.kind) {
                Some(RequestKind::Relabel { sample }) => {
                    self.st.sample(*sample).map(|s| s.label.clone())
                }
                _ => None,
            };
            let text = if let Some(label) = relabel {
                format!("{{\"label\": \"{label}\"}}")
            } else {
                (0..n)
                    .map(|i| {
                        self.words += 1;
                        format!(
                            "{}. Who built tower number {} in city {}?",
                            i + 1,
                            self.words,
                            self.words * 7
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            self.answer(job, &text);
            true
        }

        fn generate_jobs(&self) -> usize {
            self.open
                .iter()
                .filter(|j| j.request.response_format.is_none())
                .count()
        }

        fn kept(&self) -> usize {
            self.st.generated().filter(|s| !is_dup_rejected(s)).count()
        }
    }

    /// A rig with three classes of the given weights, `per_request` 2.
    fn rig3(weights: [f64; 3], concurrency: usize) -> Rig {
        let mut cfg = config();
        cfg.classes.push(Class {
            name: "NUM".into(),
            description: "a number".into(),
            weight: 1.0,
        });
        for (c, w) in cfg.classes.iter_mut().zip(weights) {
            c.weight = w;
        }
        let st = state_with(
            &[
                ("Who wrote Hamlet?", "HUM", Origin::Seed),
                ("Where is Lima?", "LOC", Origin::Seed),
                ("How many moons has Mars?", "NUM", Origin::Seed),
            ],
            vec![],
        );
        rig_from(
            &cfg,
            cfg.generation.clone(),
            st,
            SessionConfig {
                relabel: false,
                auto_accept: None,
                concurrency,
                counting: Counting::ThisRun,
                backend: cfg.backend.clone(),
            },
        )
    }

    /// `k` new questions no other reply repeats (distinct words, so the
    /// near-duplicate check keeps them).
    fn fresh_items(words: &mut usize, k: usize) -> String {
        const A: [&str; 10] = [
            "red", "tall", "old", "quiet", "famous", "broken", "golden", "hidden", "narrow", "busy",
        ];
        const B: [&str; 10] = [
            "bridge", "tower", "harbour", "library", "castle", "market", "temple", "garden",
            "station", "palace",
        ];
        const C: [&str; 10] = [
            "designed", "painted", "repaired", "founded", "guarded", "sold", "mapped", "cleaned",
            "opened", "closed",
        ];
        (0..k)
            .map(|i| {
                *words += 1;
                let w = *words;
                format!(
                    "{}. Who {} the {} {} of {} {} in {}?",
                    i + 1,
                    C[w % 10],
                    A[(w / 10) % 10],
                    B[(w / 100) % 10],
                    A[(w / 1000) % 10],
                    B[(w / 7) % 10],
                    1000 + w
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Accepted + pending non-duplicate examples per class, by the label
    /// that would be exported, straight from the journal's fold.
    fn yielded(st: &ProjectState) -> [f64; 3] {
        let names = ["HUM", "LOC", "NUM"].map(String::from);
        let c = st.class_counts(&names);
        names.map(|n| c.get(&n).map_or(0.0, |c| (c.accepted + c.pending) as f64))
    }

    /// The yielded counts the plans use, folded in from the appends since
    /// the last recount, equal a recount (when they are for this state).
    fn prop_assert_cached(
        s: &Session,
        st: &ProjectState,
        recount: &ClassSchedule,
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        if let Some(((last, len), base)) = &s.yielded
            && (*last, *len) == (st.last_event_id, st.samples.len())
        {
            let mut cached = base.clone();
            cached.merge(&s.inflight);
            proptest::prop_assert_eq!(&cached, recount);
        }
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Issue 11, exact class mix: the schedule counts what was
        /// yielded. Any weights; a first phase of anything (replies with
        /// fewer items than asked or only duplicates, in any order, keys
        /// accepting, rejecting or relabelling pending examples); then
        /// full replies and no decisions: the yielded counts (read from
        /// the journal) come back within one request (n = 2) of the
        /// weights and the scheduled ones stay there. Planned counts (the
        /// old schedule) never learn of short replies or rejects, so they
        /// stay off.
        #[test]
        fn the_class_mix_counts_what_was_yielded(
            ws in proptest::collection::vec(
                proptest::prop_oneof![proptest::strategy::Just(0.0), 0.2f64..5.0], 3),
            ops in proptest::collection::vec((0u8..6, 0usize..1000), 0..150),
        ) {
            let weights = [ws[0], ws[1], ws[2]];
            proptest::prop_assume!(weights.iter().any(|w| *w > 0.0));
            let mut r = rig3(weights, 3);
            r.start(100_000);
            let key = |kind, label: Option<&str>| crate::domain::Decision {
                kind,
                label: label.map(Into::into),
                reason: None,
                by: crate::domain::Actor::Key("k".into()),
            };
            for (op, x) in ops {
                match op {
                    // A reply with 0..=2 new items, to any open request.
                    0..=2 => {
                        let i = x % r.open.len().max(1);
                        let Some(job) = r.open.remove(i) else { continue };
                        let text = fresh_items(&mut r.words, usize::from(op));
                        r.answer(job, &text);
                    }
                    // Repeats of the seeds: duplicates only.
                    3 => {
                        let Some(job) = r.open.pop_front() else { continue };
                        r.answer(job, "1. Who wrote Hamlet?\n2. Where is Lima?");
                    }
                    // A key on a pending example: reject, accept, or accept
                    // as another class.
                    _ => {
                        let pending: Vec<SampleId> = r.st.generated()
                            .filter(|s| s.status() == crate::domain::Status::Pending)
                            .map(|s| s.id)
                            .collect();
                        if pending.is_empty() {
                            continue;
                        }
                        let id = pending[x % pending.len()];
                        let d = if op == 4 {
                            key(crate::domain::DecisionKind::Reject, None)
                        } else {
                            let label = ["HUM", "LOC", "NUM"][x % 3];
                            key(crate::domain::DecisionKind::Accept, Some(label))
                        };
                        let ev = apply(&mut r.st, vec![EventKind::decided(id, d)]);
                        let out = r.s.on_appended(&r.st, &ev, false);
                        r.run(out);
                    }
                }
            }
            // The schedule is what was yielded plus what is in flight.
            let sched = r.s.schedule(&r.st);
            // The plans' copy, kept in step with the appends, agrees.
            prop_assert_cached(&r.s, &r.st, &sched)?;
            let y = yielded(&r.st);
            let open = r.open.len() as f64;
            let names = ["HUM", "LOC", "NUM"];
            for (i, name) in names.iter().enumerate() {
                let asked: usize = r
                    .open
                    .iter()
                    .filter_map(|j| r.s.request(j.tag))
                    .filter(|p| p.kind == RequestKind::Generate { target: name.to_string() })
                    .map(|p| p.n)
                    .sum();
                proptest::prop_assert_eq!(sched.count(name) - y[i], asked as f64);
            }
            proptest::prop_assert!(open <= 3.0);
            // Phase 2: full replies, one request at a time, no decisions.
            r.command(Command::SetConcurrency(1));
            let total_w: f64 = weights.iter().sum();
            let off = |c: [f64; 3]| {
                let t: f64 = (0..3).filter(|&i| weights[i] > 0.0).map(|i| c[i]).sum();
                (0..3)
                    .map(|i| if weights[i] > 0.0 { (c[i] - weights[i] / total_w * t).abs() } else { 0.0 })
                    .fold(0.0, f64::max)
            };
            let mut within = None;
            for step in 0..400 {
                let Some(job) = r.open.pop_front() else { break };
                let text = fresh_items(&mut r.words, 2);
                r.answer(job, &text);
                if r.open.len() != 1 {
                    continue; // older requests still draining
                }
                let sched = r.s.schedule(&r.st);
                prop_assert_cached(&r.s, &r.st, &sched)?;
                let m = off(names.map(|n| sched.count(n)));
                match within {
                    None if m <= 2.0 + 1e-6 => within = Some(step),
                    Some(since) => proptest::prop_assert!(m <= 2.0 + 1e-6,
                        "scheduled counts {:?} left the bound at step {} (within since {})",
                        names.map(|n| sched.count(n)), step, since),
                    None => {}
                }
            }
            proptest::prop_assert!(within.is_some(), "scheduled counts never within one request");
            // Drain: what the journal holds is within one request too.
            r.command(Command::Stop);
            while let Some(job) = r.open.pop_front() {
                r.fail(job, FailReason::Cancelled);
            }
            let y = yielded(&r.st);
            proptest::prop_assert!(off(y) <= 2.0 + 1e-6,
                "yielded counts {:?} off the weights {:?} by {}", y, weights, off(y));
        }
    }

    /// Drift 1: the TUI counted every generated sample, duplicates
    /// included, toward the target. Only new non-duplicates count.
    #[test]
    fn duplicates_do_not_count_toward_the_target() {
        let mut r = rig(Counting::Project, 1, false);
        r.start(4);
        assert_eq!(r.generate_jobs(), 1);
        // Two texts, both repeats of the seeds: nothing counts.
        let job = r.open.pop_front().unwrap();
        r.answer(job, "1. Who wrote Hamlet?\n2. Where is Lima?");
        assert_eq!(
            r.st.generated().count(),
            2,
            "recorded, rejected as duplicates"
        );
        assert_eq!(r.kept(), 0);
        assert_eq!(r.s.report().duplicates, 2);
        assert_eq!(r.s.status().have, 0);
        assert_eq!(r.s.status().phase, Phase::Running);
        assert_eq!(r.generate_jobs(), 1, "another request goes out");
        while r.answer_next(2) {}
        assert_eq!(r.kept(), 4);
        assert_eq!(r.s.status().have, 4);
        assert_eq!(
            r.s.status().stop,
            Some(StopReason::TargetReached { target: 4 })
        );
        assert_eq!(r.s.status().phase, Phase::Idle);
    }

    /// Issue 12 item 9: `--count 20` gave 23 examples. With `exact`, no
    /// request asks for more than the target still misses, so the run
    /// yields exactly N, also when replies come back short.
    #[test]
    fn count_n_yields_exactly_n() {
        let mut r = rig(Counting::ThisRun, 3, false);
        let settings = GenerationSettings {
            per_request: 3,
            ..r.s.generator().settings().clone()
        };
        r.command(Command::Settings(settings));
        r.command(Command::Start {
            target: Some(10),
            round: None,
            exact: true,
        });
        let asked = |r: &Rig| -> Vec<usize> {
            r.open
                .iter()
                .map(|j| r.s.request(j.tag).unwrap().n)
                .collect()
        };
        assert_eq!(asked(&r), [3, 3, 3]);
        // A short reply (2 of 3): the next request asks for what is missing.
        r.answer_next(2);
        assert_eq!(asked(&r), [3, 3, 2], "10 - 2 kept - 6 in flight");
        while let Some(job) = r.open.pop_front() {
            let n = r.s.request(job.tag).unwrap().n;
            let text = fresh_items(&mut r.words, n);
            r.answer(job, &text);
        }
        assert_eq!(r.kept(), 10);
        assert_eq!(r.s.report().examples, 10);
        assert_eq!(
            r.s.status().stop,
            Some(StopReason::TargetReached { target: 10 })
        );
    }

    /// Issue 12 item 7: the target counted every generated example
    /// (rejected ones too), so `+` stopped again at once, and `g` at the
    /// target did nothing. Now it counts accepted + pending
    /// non-duplicates; raising the settings' target carries on toward the
    /// new one; a start at a reached target generates past it until
    /// paused.
    #[test]
    fn a_target_is_a_goal_not_a_wall() {
        let mut r = rig(Counting::Project, 2, false);
        r.command(Command::Start {
            target: None,
            round: None,
            exact: true,
        });
        assert_eq!(r.s.status().target, 200);
        let mut g = r.s.generator().settings().clone();
        g.target_count = 4;
        r.command(Command::Settings(g.clone()));
        assert_eq!(r.s.status().target, 4, "a target from the settings moves");
        while r.answer_next(2) {}
        assert_eq!(
            r.s.status().stop,
            Some(StopReason::TargetReached { target: 4 })
        );
        assert_eq!(r.s.status().phase, Phase::Idle);
        // A person rejects two: they no longer count.
        let ids: Vec<SampleId> = r.st.generated().map(|s| s.id).take(2).collect();
        let reject = crate::domain::Decision {
            kind: crate::domain::DecisionKind::Reject,
            label: None,
            reason: None,
            by: crate::domain::Actor::Key("x".into()),
        };
        let ev = apply(
            &mut r.st,
            ids.iter()
                .map(|id| EventKind::decided(*id, reject.clone()))
                .collect(),
        );
        let out = r.s.on_appended(&r.st, &ev, false);
        r.run(out);
        assert!(
            r.open.is_empty(),
            "ended at the target: no request by itself"
        );
        // `+` on the target (journaled settings): on toward the new one,
        // counting 2 of 4 + 10.
        g.target_count = 14;
        let ev = apply(
            &mut r.st,
            vec![EventKind::SettingsChanged(crate::domain::SettingsChanged {
                generation: g,
            })],
        );
        let out = r.s.on_appended(&r.st, &ev, false);
        r.run(out);
        assert_eq!(r.s.status().phase, Phase::Running);
        assert_eq!(r.s.status().have, 2);
        while r.answer_next(2) {}
        assert_eq!(r.s.status().have, 14);
        assert_eq!(
            r.s.status().stop,
            Some(StopReason::TargetReached { target: 14 })
        );
        assert_eq!(r.st.generated().count(), 16, "14 counting + 2 rejected");
        // `g` at a reached target: past it, until paused.
        r.command(Command::Start {
            target: None,
            round: None,
            exact: true,
        });
        assert!(r.s.status().past_target);
        assert_eq!(r.s.status().phase, Phase::Running);
        for _ in 0..5 {
            assert!(r.answer_next(2));
        }
        assert!(r.s.status().have > 14);
        assert_eq!(r.s.status().phase, Phase::Running, "no wall at the target");
        r.command(Command::Pause);
        while r.answer_next(2) {}
        assert_eq!(r.s.status().phase, Phase::Paused);
        assert!(r.open.is_empty());
    }

    /// Past the target the fruitless guard still stops a model that
    /// yields nothing: four windows of requests in a row.
    #[test]
    fn past_the_target_the_guard_still_stops_fruitless_runs() {
        let mut r = rig(Counting::Project, 2, false);
        r.start(2);
        while r.answer_next(2) {}
        r.command(Command::Start {
            target: Some(2),
            round: None,
            exact: true,
        });
        assert!(r.s.status().past_target);
        let mut answered = 0;
        while let Some(job) = r.open.pop_front() {
            r.answer(job, "");
            answered += 1;
            assert!(answered < 100, "the guard never fired");
        }
        assert_eq!(answered, 12, "2·2 examples' worth of requests ·4 + 4");
        assert!(matches!(
            r.s.status().stop,
            Some(StopReason::Fruitless { .. })
        ));
    }

    /// Counting::Project starts from what the project already holds;
    /// ThisRun from zero.
    #[test]
    fn project_counting_starts_from_the_existing_examples() {
        let mut r = rig(Counting::Project, 4, false);
        r.start(4);
        while r.answer_next(2) {}
        assert_eq!(r.kept(), 4);
        r.start(6);
        assert_eq!(r.s.status().have, 4);
        assert_eq!(r.generate_jobs(), 1, "one request for the two missing");
        let mut r = rig(Counting::ThisRun, 4, false);
        r.start(4);
        while r.answer_next(2) {}
        r.start(4);
        assert_eq!(r.s.status().have, 0);
        assert_eq!(r.generate_jobs(), 2);
    }

    /// Drift 2: the TUI kept sending requests while the model returned
    /// nothing usable. The guard stops after about four times the
    /// requests the target needs, and says why.
    #[test]
    fn fruitless_requests_stop_the_session() {
        let mut r = rig(Counting::Project, 3, false);
        r.start(4);
        let mut answered = 0;
        while let Some(job) = r.open.pop_front() {
            r.answer(job, "");
            answered += 1;
            assert!(answered < 100, "the guard never fired");
        }
        // 4 examples at 2 per request: 2 requests needed, 2·4+4 allowed.
        assert_eq!(answered, 12);
        assert_eq!(r.s.report().generate_requests, 12);
        assert_eq!(
            r.s.status().stop,
            Some(StopReason::Fruitless { requests: 12 })
        );
        assert_eq!(r.s.status().phase, Phase::Idle);
        assert_eq!(r.s.report().failures.get("empty_reply"), Some(&12));
        assert_eq!(r.s.report().dominant_failure(), Some(("empty_reply", 12)));
        assert_eq!(r.st.failures.len(), 12, "each is journaled");
    }

    /// Drift 4: `--concurrency 64` did not reach the request window (the
    /// CLI read `max_concurrency` from straddle.toml). The window is the
    /// session's concurrency, and a request is planned only when a slot
    /// frees, never queued ahead.
    #[test]
    fn the_window_is_the_effective_concurrency_and_plans_lazily() {
        let mut r = rig(Counting::ThisRun, 64, false);
        r.start(10_000);
        assert_eq!(r.generate_jobs(), 64);
        assert_eq!(r.s.report().generate_requests, 64);
        // One answer frees one slot: exactly one more request.
        r.answer_next(2);
        assert_eq!(r.generate_jobs(), 64);
        assert_eq!(r.s.report().generate_requests, 65);
        // Raising the concurrency opens more slots at once.
        let controls = r.command(Command::SetConcurrency(80));
        assert_eq!(controls, [Control::SetConcurrency(80)]);
        assert_eq!(r.generate_jobs(), 80);
    }

    /// Issue 15: a reply frees its window slot when it arrives, so the
    /// next request goes out while the reply waits for its commit (the
    /// fsync is off the request path); what it brings is counted, and the
    /// target reached, only once it is acknowledged. At most one window
    /// of replies waits for the journal.
    #[test]
    fn a_reply_frees_its_slot_on_arrival_and_counts_only_after_its_commit() {
        let mut r = rig(Counting::ThisRun, 4, false);
        r.command(Command::Start {
            target: Some(5),
            round: None,
            exact: true,
        });
        let finished = |job: &Job, text: &str| EngineEvent::Finished {
            id: job.tag,
            tag: job.tag,
            response: response(text),
            latency: Duration::ZERO,
        };
        // Per request 2 (the config's), target 5: 2 + 2 + 1 asked for by
        // the first three; the fourth slot stays empty (exact).
        let jobs: Vec<Job> = r.open.drain(..).collect();
        assert_eq!(jobs.len(), 3, "exact: no request past the target");
        let out = r.s.on_engine(
            &r.st,
            finished(
                &jobs[0],
                "1. Who carved stone number nine?\n2. Who owns boat seven?",
            ),
        );
        assert_eq!(out.appends.len(), 1, "the reply is handed out to append");
        assert!(
            out.submit.is_empty(),
            "the target still counts the reply in flight: nothing more to ask for"
        );
        assert_eq!(r.s.report().examples, 0, "not counted before the commit");
        assert_eq!(
            r.s.status().generate_open,
            3,
            "open until it is in the journal"
        );

        // A window of 2: each arrival lets the next request out before
        // the reply's commit, until one window (2) of replies waits.
        let mut r = rig(Counting::ThisRun, 2, false);
        r.start(100);
        let mut appends = Vec::new();
        for (k, open_after) in [(1, 3), (1, 4), (0, 4)] {
            let job = r.open.pop_front().unwrap();
            let text = fresh_items(&mut r.words, 2);
            let mut out = r.s.on_engine(&r.st, finished(&job, &text));
            assert_eq!(out.submit.len(), k, "new requests at this arrival");
            assert_eq!(out.appends.len(), 1);
            r.open.extend(out.submit.drain(..));
            appends.append(&mut out.appends);
            assert_eq!(
                r.s.report().examples,
                0,
                "nothing counted before its commit"
            );
            assert_eq!(r.s.status().generate_open, open_after);
        }
        // The acknowledgements count them and free the rest.
        let mut submitted = 0;
        for kinds in appends {
            let events = apply(&mut r.st, kinds);
            let more = r.s.on_appended(&r.st, &events, true);
            submitted += more.submit.len();
        }
        assert_eq!(r.s.report().examples, 6, "counted at the acknowledgement");
        assert_eq!(submitted, 1, "two in the engine again");
        assert_eq!(r.s.status().generate_open, 2);

        // A window of one keeps the strict order (a re-run hits the
        // cache): the next request waits for the reply's commit.
        let mut r = rig(Counting::ThisRun, 1, false);
        r.start(100);
        let job = r.open.pop_front().unwrap();
        let text = fresh_items(&mut r.words, 2);
        let out = r.s.on_engine(&r.st, finished(&job, &text));
        assert!(out.submit.is_empty(), "nothing before the ack");
        r.run(out);
        assert_eq!(r.generate_jobs(), 1, "one after it");
    }

    /// The engine's adaptive limit narrows the window below the
    /// concurrency (and never widens it past it): a lower limit plans
    /// nothing until enough requests end; a higher one fills at once.
    #[test]
    fn the_window_follows_the_engines_adaptive_limit() {
        let mut r = rig(Counting::ThisRun, 8, false);
        let limit = |n| EngineEvent::Limit {
            limit: n,
            reason: LimitReason::Start,
        };
        let out = r.s.on_engine(&r.st, limit(1));
        r.run(out);
        r.start(10_000);
        assert_eq!(r.generate_jobs(), 1);
        assert_eq!(r.s.status().limit, Some((1, LimitReason::Start)));
        let out = r.s.on_engine(&r.st, limit(4));
        r.run(out);
        assert_eq!(r.generate_jobs(), 4);
        let out = r.s.on_engine(&r.st, limit(2));
        r.run(out);
        assert_eq!(r.generate_jobs(), 4, "open requests are not cancelled");
        r.answer_next(2);
        r.answer_next(2);
        assert_eq!(r.generate_jobs(), 2, "no new request until below the limit");
        r.answer_next(2);
        assert_eq!(r.generate_jobs(), 2, "one ends, one more");
        let out = r.s.on_engine(&r.st, limit(64));
        r.run(out);
        assert_eq!(r.generate_jobs(), 8, "the concurrency still caps it");
    }

    /// Drift 3: the TUI's Controls pane cycled to `extrapolate`, which the
    /// generator then refused. A strategy that needs held-out errors is not
    /// planned from the settings: starting with it stops with a clear
    /// reason; an S3 round runs it.
    #[test]
    fn extrapolate_runs_from_an_s3_round_not_from_the_settings() {
        let settings = GenerationSettings {
            per_request: 2,
            strategy: Strategy::Extrapolate,
            ..Default::default()
        };
        let mut r = rig_with(Counting::ThisRun, 2, false, settings);
        let out = r.s.command(
            &r.st,
            Command::Start {
                target: Some(4),
                round: None,
                exact: false,
            },
        );
        assert!(out.submit.is_empty());
        assert!(
            matches!(&out.notes[..], [Note::Error(m)] if m.contains("S3 round")),
            "{:?}",
            out.notes
        );
        assert!(matches!(r.s.status().stop, Some(StopReason::Plan(_))));
        assert!(r.s.status().stop.unwrap().is_fatal());

        let mistakes = vec![Mistake {
            id: 0,
            text: "Where was Ada Lovelace born?".into(),
            truth: "LOC".into(),
            predicted: "HUM".into(),
            confidence: 0.9,
        }];
        // 5 examples at 2 per request: 3 requests, 2 slots: planned as
        // slots free.
        r.command(Command::Extrapolate {
            round: 1,
            mistakes,
            count: 5,
        });
        assert_eq!(r.generate_jobs(), 2);
        r.answer_next(2);
        assert_eq!(r.generate_jobs(), 2);
        r.answer_next(2);
        r.answer_next(1);
        assert!(r.open.is_empty());
        assert!(!r.s.busy());
        let made: Vec<_> = r.st.generated().collect();
        assert_eq!(made.len(), 5);
        assert!(made.iter().all(|s| s.label == "LOC"
            && s.provenance.strategy.as_deref() == Some("extrapolate")
            && s.provenance.round == Some(1)));
    }

    #[test]
    fn replies_are_appended_as_they_come_then_relabelled_and_auto_accepted() {
        let mut r = rig(Counting::ThisRun, 2, true);
        r.start(4);
        let (a, b) = (r.open.pop_front().unwrap(), r.open.pop_front().unwrap());
        // Both replies arrive before any ack: both are appended at once,
        // the second's ids after the first's (a front end may commit them
        // with one fsync); each is counted only on its own ack.
        let fin = |job: &Job, text: &str| EngineEvent::Finished {
            id: job.tag,
            tag: job.tag,
            response: response(text),
            latency: Duration::ZERO,
        };
        let o1 = r.s.on_engine(
            &r.st,
            fin(&a, "1. Who built the first car?\n2. Who sailed first?"),
        );
        let o2 = r.s.on_engine(
            &r.st,
            fin(&b, "1. Who won the first race?\n2. Who flew first?"),
        );
        assert_eq!(o1.appends.len(), 1);
        assert_eq!(o2.appends.len(), 1, "does not wait for the first ack");
        let first_ids = |kinds: &[EventKind]| -> Vec<u64> {
            kinds
                .iter()
                .filter_map(|k| match k {
                    EventKind::SampleAdded(s) => Some(s.id),
                    _ => None,
                })
                .collect()
        };
        let (ids1, ids2) = (first_ids(&o1.appends[0]), first_ids(&o2.appends[0]));
        assert_eq!(ids1.len(), 2);
        assert_eq!(ids2, vec![ids1[1] + 1, ids1[1] + 2]);
        assert_eq!(r.s.report().examples, 0, "nothing counted before its ack");
        let events = apply(&mut r.st, o1.appends.into_iter().next().unwrap());
        let o3 = r.s.on_appended(&r.st, &events, true);
        assert_eq!(r.s.report().examples, 2);
        // The first reply's two examples go to relabel.
        assert_eq!(o3.submit.len(), 2);
        assert!(
            o3.submit
                .iter()
                .all(|j| j.request.response_format.is_some())
        );
        assert!(o3.appends.is_empty());
        let ev2 = apply(&mut r.st, o2.appends.into_iter().next().unwrap());
        assert!(matches!(&ev2[0].kind, EventKind::SampleAdded(s) if s.id == ids2[0]));
        let o4 = r.s.on_appended(&r.st, &ev2, true);
        assert_eq!(r.s.report().examples, 4);
        r.run(o3);
        r.run(o4);
        // A key's append in between is someone else's: no count moves.
        let other = apply(
            &mut r.st,
            vec![EventKind::decided(
                3,
                crate::domain::Decision {
                    kind: crate::domain::DecisionKind::Reject,
                    label: None,
                    reason: None,
                    by: crate::domain::Actor::Key("x".into()),
                },
            )],
        );
        let out = r.s.on_appended(&r.st, &other, false);
        assert!(out.appends.is_empty() && out.submit.is_empty());
        while r.answer_next(2) {}
        let rep = r.s.report();
        assert_eq!(rep.examples, 4);
        assert_eq!(rep.relabelled, 4);
        assert_eq!(rep.agreeing, 4);
        assert_eq!(
            rep.auto_accepted, 3,
            "sample 3 was decided before its verdict"
        );
        assert!(!r.s.busy());
    }

    #[test]
    fn a_failure_no_retry_fixes_blocks_and_names_the_fix() {
        let mut r = rig(Counting::Project, 3, false);
        r.start(10);
        let job = r.open.pop_front().unwrap();
        let controls = r.fail(job, FailReason::Auth);
        assert_eq!(controls, [Control::CancelAll]);
        let Phase::Blocked(m) = r.s.status().phase else {
            panic!("{:?}", r.s.status())
        };
        assert!(m.contains("api_key_env"), "{m}");
        assert!(r.s.status().stop.unwrap().is_fatal());
        // The cancelled ones end without events or new plans.
        while let Some(job) = r.open.pop_front() {
            r.fail(job, FailReason::Cancelled);
        }
        assert!(!r.s.busy());
        assert_eq!(r.s.report().failures.get("auth"), Some(&1));
        assert!(r.st.failures.is_empty());
        // g again: a fresh start.
        r.start(10);
        assert_eq!(r.s.status().phase, Phase::Running);
        assert_eq!(r.generate_jobs(), 3);
    }

    /// Issue 10: a server that keeps timing out trips the breaker after
    /// `BREAKER_AFTER` failed attempts in a row (retries included); the
    /// session blocks with the breaker's fix, cancels what is in flight,
    /// and a fresh start rearms it. An answer in between resets the streak.
    #[test]
    fn the_circuit_breaker_blocks_after_a_streak_of_failed_attempts() {
        use crate::engine::failures::BREAKER_AFTER;
        let mut r = rig(Counting::ThisRun, 2, false);
        r.start(100);
        let backoff = |tag: u64| EngineEvent::Backoff {
            id: tag,
            tag,
            reason: FailReason::Timeout,
            status: None,
            attempt: 1,
            max_retries: 50,
            wait: Duration::ZERO,
        };
        let tag = r.open[0].tag;
        for _ in 0..BREAKER_AFTER - 1 {
            let out = r.s.on_engine(&r.st, backoff(tag));
            assert!(out.control.is_empty());
        }
        // An answer ends the streak.
        r.answer_next(2);
        assert_eq!(r.s.report().failures.tripped(), None);
        let tag = r.open[0].tag;
        let mut controls = Vec::new();
        for _ in 0..BREAKER_AFTER - 1 {
            let out = r.s.on_engine(&r.st, backoff(tag));
            controls.extend(r.run(out));
        }
        assert!(controls.is_empty());
        assert_eq!(r.s.status().phase, Phase::Running);
        // The last attempt fails for good: the streak is long enough.
        let job = r.open.pop_front().unwrap();
        let controls = r.fail(job, FailReason::Timeout);
        assert_eq!(controls, [Control::CancelAll]);
        let Phase::Blocked(m) = r.s.status().phase else {
            panic!("{:?}", r.s.status())
        };
        assert!(
            m.contains("circuit breaker") && m.contains("timeout_s"),
            "{m}"
        );
        let stop = r.s.status().stop.unwrap();
        assert!(matches!(
            stop,
            StopReason::Breaker {
                kind: FailReason::Timeout,
                ..
            }
        ));
        assert!(!stop.is_fatal());
        assert_eq!(r.s.report().failures.get("timeout"), Some(&1));
        assert_eq!(r.st.failures.len(), 1, "the failed request is journaled");
        // The cancelled ones end; nothing new is planned while blocked.
        while let Some(job) = r.open.pop_front() {
            r.fail(job, FailReason::Cancelled);
        }
        assert!(!r.s.busy());
        assert!(r.open.is_empty());
        // g again: rearmed, generating.
        r.start(100);
        assert_eq!(r.s.status().phase, Phase::Running);
        assert_eq!(r.s.report().failures.tripped(), None);
        assert_eq!(r.generate_jobs(), 2);
    }

    /// A failure no retry fixes wins over a breaker that trips with it.
    #[test]
    fn a_fatal_failure_wins_over_the_breaker() {
        use crate::engine::failures::BREAKER_AFTER;
        let mut r = rig(Counting::ThisRun, 1, false);
        r.start(100);
        let tag = r.open[0].tag;
        for _ in 0..BREAKER_AFTER - 1 {
            let out = r.s.on_engine(
                &r.st,
                EngineEvent::Backoff {
                    id: tag,
                    tag,
                    reason: FailReason::Connect,
                    status: None,
                    attempt: 1,
                    max_retries: 50,
                    wait: Duration::ZERO,
                },
            );
            r.run(out);
        }
        let job = r.open.pop_front().unwrap();
        r.fail(job, FailReason::Connect);
        assert!(r.s.report().failures.tripped().is_some());
        assert!(matches!(
            r.s.status().stop,
            Some(StopReason::Backend {
                kind: FailReason::Connect,
                ..
            })
        ));
    }

    #[test]
    fn pause_holds_planning_and_stop_cancels() {
        let mut r = rig(Counting::ThisRun, 2, false);
        r.start(10);
        assert_eq!(r.command(Command::Pause), [Control::Pause]);
        r.answer_next(2);
        assert_eq!(r.generate_jobs(), 1, "nothing planned while paused");
        assert_eq!(r.command(Command::Resume), [Control::Resume]);
        assert_eq!(r.generate_jobs(), 2);
        assert_eq!(
            r.command(Command::Stop),
            [Control::CancelAll, Control::Resume]
        );
        r.answer_next(2);
        assert_eq!(
            r.generate_jobs(),
            1,
            "the answered one is kept, none planned"
        );
        assert_eq!(r.s.status().stop, Some(StopReason::Stopped));
        assert!(!r.s.status().stop.unwrap().is_fatal());
        // A pause of an idle session resumes to idle, not to generating.
        let mut r = rig(Counting::ThisRun, 2, false);
        r.command(Command::Pause);
        r.command(Command::Resume);
        assert_eq!(r.s.status().phase, Phase::Idle);
        assert!(r.open.is_empty());
    }

    #[test]
    fn settings_and_weights_are_taken_from_acknowledged_events() {
        let mut r = rig(Counting::ThisRun, 1, false);
        let mut g = r.s.generator().settings().clone();
        g.strategy = Strategy::Plain;
        let ev = apply(
            &mut r.st,
            vec![
                EventKind::SettingsChanged(crate::domain::SettingsChanged { generation: g }),
                EventKind::WeightChanged(crate::domain::WeightChanged {
                    class: "HUM".into(),
                    weight: 0.0,
                }),
            ],
        );
        r.s.on_appended(&r.st, &ev, false);
        r.start(6);
        for _ in 0..3 {
            let job = r.open.pop_front().unwrap();
            let p = r.s.request(job.tag).unwrap();
            assert_eq!(p.provenance.strategy.as_deref(), Some("plain"));
            assert_eq!(
                p.kind,
                RequestKind::Generate {
                    target: "LOC".into()
                }
            );
            r.open.push_front(job);
            r.answer_next(2);
        }
    }

    /// Issue 11/12, steering: a change of weights or α applies to the
    /// very next plan, and the requests already in flight are known to
    /// have been planned under the older settings (the Streams pane marks
    /// them); a target change is not a change of what a request asks.
    #[test]
    fn requests_planned_under_older_settings_are_known() {
        let mut r = rig(Counting::ThisRun, 2, false);
        r.start(100);
        let (a, b) = (r.open[0].tag, r.open[1].tag);
        assert_eq!(r.s.settings_version(), 0);
        assert!(!r.s.planned_under_old_settings(a));
        // A new target only: same version.
        let mut g = r.s.generator().settings().clone();
        g.target_count = 999;
        r.command(Command::Settings(g.clone()));
        assert_eq!(r.s.settings_version(), 0);
        // α range from the Controls pane (journaled, someone else's append).
        g.alpha_range = (0.7, 0.9);
        let ev = apply(
            &mut r.st,
            vec![EventKind::SettingsChanged(crate::domain::SettingsChanged {
                generation: g,
            })],
        );
        let out = r.s.on_appended(&r.st, &ev, false);
        r.run(out);
        assert_eq!(r.s.settings_version(), 1);
        assert!(r.s.planned_under_old_settings(a) && r.s.planned_under_old_settings(b));
        // The next request is planned under the new ones, with the new α.
        r.answer_next(2);
        let c = r.open.back().unwrap().tag;
        assert_eq!(r.s.planned_under(c), Some(1));
        assert!(!r.s.planned_under_old_settings(c));
        let alpha = r.s.request(c).unwrap().provenance.alpha.unwrap();
        assert!((0.7..=0.9).contains(&alpha), "{alpha}");
        assert_eq!(r.s.planned_under(a), None, "answered: no longer in flight");
        // A weight: version 2; the unchanged weight again: no bump.
        let weight = |w| {
            vec![EventKind::WeightChanged(crate::domain::WeightChanged {
                class: "HUM".into(),
                weight: w,
            })]
        };
        let ev = apply(&mut r.st, weight(3.0));
        r.s.on_appended(&r.st, &ev, false);
        assert_eq!(r.s.settings_version(), 2);
        let ev = apply(&mut r.st, weight(3.0));
        r.s.on_appended(&r.st, &ev, false);
        assert_eq!(r.s.settings_version(), 2);
        assert!(r.s.planned_under_old_settings(b) && r.s.planned_under_old_settings(c));
    }

    #[test]
    fn attribute_weights_apply_to_the_very_next_request() {
        let mut cfg = config();
        cfg.attributes = crate::domain::testing::attribute_dims(&[(
            "tone",
            &[("angry", "upset"), ("formal", "polite")],
        )]);
        let settings = GenerationSettings {
            strategy: Strategy::Attributes,
            ..cfg.generation.clone()
        };
        let st = state_with(&[("Who wrote Hamlet?", "HUM", Origin::Seed)], vec![]);
        let mut r = rig_from(
            &cfg,
            settings,
            st,
            SessionConfig {
                relabel: false,
                auto_accept: None,
                concurrency: 1,
                counting: Counting::ThisRun,
                backend: cfg.backend.clone(),
            },
        );
        let tone_of = |r: &Rig| {
            let job = r.open.front().unwrap();
            r.s.request(job.tag).unwrap().provenance.attributes["tone"].clone()
        };
        let weight = |r: &mut Rig, value: &str, w: f64| {
            let ev = apply(
                &mut r.st,
                vec![EventKind::AttributeWeightChanged(
                    crate::domain::AttributeWeightChanged {
                        attribute: "tone".into(),
                        value: value.into(),
                        weight: w,
                    },
                )],
            );
            r.s.on_appended(&r.st, &ev, false);
        };
        weight(&mut r, "angry", 0.0);
        r.start(30);
        for _ in 0..4 {
            assert_eq!(tone_of(&r), "formal");
            r.answer_next(2);
        }
        // Turned around: the next request planned is angry.
        weight(&mut r, "formal", 0.0);
        weight(&mut r, "angry", 1.0);
        r.answer_next(2);
        for _ in 0..3 {
            assert_eq!(tone_of(&r), "angry");
            r.answer_next(2);
        }
    }

    #[test]
    fn an_edit_is_relabelled_once_acknowledged() {
        let mut r = rig(Counting::ThisRun, 1, true);
        r.start(2);
        r.answer_next(2);
        while r.open.pop_front().is_some() {}
        let mut r2 = r;
        r2.command(Command::RelabelAfterEdit(3));
        assert!(r2.open.is_empty(), "not before the edit is in the journal");
        let ev = apply(
            &mut r2.st,
            vec![EventKind::Edited(crate::domain::Edited {
                sample: 3,
                text: "Who built the tallest tower?".into(),
            })],
        );
        let out = r2.s.on_appended(&r2.st, &ev, false);
        assert_eq!(out.submit.len(), 1);
        assert!(
            r2.s.request(out.submit[0].tag)
                .is_some_and(|p| p.kind == RequestKind::Relabel { sample: 3 })
        );
    }

    // ---- Denoising (session/denoise.rs) ----

    /// A stand-in sentence embedder for the denoising tests: a strong
    /// topic dimension for questions about people ("who"), places
    /// ("where") and the prompt's own instruction words, plus one hashed
    /// dimension per word; L2-normalised.
    fn toy_vector(text: &str) -> Vec<f32> {
        let mut v = vec![0f32; 64];
        for w in text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            let w = w.to_lowercase();
            match w.as_str() {
                "who" => v[0] += 3.0,
                "where" => v[1] += 3.0,
                "write" | "texts" | "text" | "answer" | "belong" | "list" | "examples" => {
                    v[2] += 3.0
                }
                _ => {}
            }
            let h = w
                .bytes()
                .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
            v[3 + (h % 61) as usize] += 1.0;
        }
        crate::embed::l2_normalize(&mut v);
        v
    }

    fn denoise_rig(mode: crate::domain::DenoiseMode, relabel: bool) -> Rig {
        let settings = GenerationSettings {
            per_request: 4,
            ..config().generation
        };
        let mut r = rig_with(Counting::ThisRun, 1, relabel, settings);
        r.s.set_denoise(
            crate::domain::DenoiseConfig {
                mode,
                near_duplicate: 0.95,
                ..Default::default()
            },
            "toy",
        );
        r
    }

    impl Rig {
        /// Embed every waiting job with [`toy_vector`], as a front end's
        /// effect would, and carry out what follows.
        fn embed_all(&mut self) {
            while let Some(job) = self.embeds.pop_front() {
                let vecs = job.texts.iter().map(|t| toy_vector(t)).collect();
                let out = self.s.on_embedded(&self.st, job.id, Ok(vecs));
                self.run(out);
            }
        }

        fn noise_of(&self, id: SampleId) -> Option<&crate::domain::NoiseScored> {
            self.st.sample(id).and_then(|s| s.noise.as_deref())
        }
    }

    const NOISY_REPLY: &str = "1. Who built the tower?\n2. Is this list of examples a good answer?\n3. The weather is nice today\n4. Hamlet: who wrote it?";

    /// The denoiser's class check asks the chosen judge (issue 17): with
    /// a trusted kNN report recorded, an example the kNN vote puts in
    /// another class is noise, named after the judge; with an untrusted
    /// report it is kept. (The seed-distance rule is off here.)
    #[test]
    fn the_denoisers_class_check_follows_the_chosen_judge() {
        let run = |trusted: bool| {
            let labels = vec!["HUM".to_string(), "LOC".to_string()];
            let truth: Vec<usize> = (0..20).map(|i| i % 2).collect();
            let answers: Vec<Option<usize>> = truth
                .iter()
                .map(|&t| Some(if trusted { t } else { 0 }))
                .collect();
            let report = crate::classify::judge::judge_report("knn", &labels, &truth, &answers);
            assert_eq!(report.trusted(), trusted);
            let st = state_with(
                &[
                    ("Who wrote Hamlet?", "HUM", Origin::Seed),
                    ("Where is Lima?", "LOC", Origin::Seed),
                ],
                vec![EventKind::JudgeScored(crate::domain::JudgeScored {
                    report,
                    fingerprint: "vectors".into(),
                    answers: vec![],
                })],
            );
            let cfg = config();
            let mut r = rig_from(
                &cfg,
                config().generation,
                st,
                SessionConfig {
                    relabel: false,
                    auto_accept: None,
                    concurrency: 1,
                    counting: Counting::ThisRun,
                    backend: cfg.backend.clone(),
                },
            );
            r.s.set_denoise(
                crate::domain::DenoiseConfig {
                    mode: crate::domain::DenoiseMode::Reject,
                    near_duplicate: 0.99,
                    threshold: 1.0,
                    ..Default::default()
                },
                "toy",
            );
            r.start(2);
            let job = r.open.pop_front().unwrap();
            r.answer(
                job,
                "1. Who painted the Mona Lisa?\n2. Where is the river Nile?",
            );
            r.embed_all();
            r
        };
        let r = run(true);
        assert_eq!(r.st.sample(4).unwrap().label, "HUM");
        assert_eq!(r.noise_of(3).unwrap().reason, None);
        let why = r.noise_of(4).unwrap().reason.clone().unwrap_or_default();
        assert!(why.starts_with("the knn judge says LOC ("), "{why}");
        assert!(why.ends_with("not HUM"), "{why}");
        let d = r.st.sample(4).unwrap().decision().unwrap();
        assert_eq!(d.by, crate::domain::Actor::Auto(DENOISE_ACTOR.into()));
        // An untrusted judge decides nothing.
        let r = run(false);
        assert_eq!(r.noise_of(4).unwrap().reason, None);
        assert_eq!(
            r.st.sample(4).unwrap().status(),
            crate::domain::Status::Pending
        );
    }

    #[test]
    fn noisy_examples_are_rejected_with_reasons_and_journaled() {
        let mut r = denoise_rig(crate::domain::DenoiseMode::Reject, true);
        r.start(4);
        let job = r.open.pop_front().unwrap();
        r.answer(job, NOISY_REPLY);
        // Recorded first; judged once the vectors are in.
        assert_eq!(
            r.st.generated().map(|s| s.text()).collect::<Vec<_>>(),
            [
                "Who built the tower?",
                "Is this list of examples a good answer?",
                "The weather is nice today",
                "Hamlet: who wrote it?"
            ],
            "{:?}",
            r.st.failures
        );
        assert!(r.st.generated().all(|s| s.decision().is_none()));
        assert_eq!(r.embeds.len(), 1, "one embed job for the reply");
        assert!(r.s.busy(), "waits for the judgement");
        assert!(
            r.open.iter().all(|j| j.request.response_format.is_none()),
            "no relabel before the judgement"
        );
        let texts = &r.embeds[0].texts;
        assert_eq!(texts[0], "Who built the tower?");
        assert!(
            texts.iter().any(|t| t == "Who wrote Hamlet?"),
            "seeds ride along"
        );
        r.embed_all();
        let reason = |id| {
            r.st.sample(id)
                .and_then(|s| s.decision())
                .filter(|d| d.by == crate::domain::Actor::Auto(DENOISE_ACTOR.into()))
                .and_then(|d| d.reason.clone())
        };
        // #3 the real question is kept; #4 the instruction echo, #5 the
        // off-topic line and #6 the near-copy of seed #1 are rejected.
        assert_eq!(reason(3), None);
        assert_eq!(
            r.st.sample(3).unwrap().status(),
            crate::domain::Status::Pending
        );
        assert!(r.noise_of(3).is_some_and(|n| n.reason.is_none()));
        let echo = reason(4).unwrap();
        assert!(echo.starts_with("repeats the instructions ("), "{echo}");
        let far = reason(5).unwrap();
        assert!(far.starts_with("far from every HUM seed ("), "{far}");
        let copy = r.st.sample(6).unwrap().decision().unwrap().clone();
        assert_eq!(copy.by, crate::domain::Actor::Auto("dedup".into()));
        assert!(
            copy.reason
                .as_deref()
                .unwrap()
                .starts_with("near-copy of #1 (cos 0.9"),
            "{copy:?}"
        );
        assert!(is_dup_rejected(r.st.sample(6).unwrap()));
        // Journaled as noise_scored + decided, undoable.
        assert_eq!(
            r.noise_of(4).unwrap().reason.as_deref(),
            Some(echo.as_str())
        );
        assert_eq!(r.noise_of(4).unwrap().model, "toy");
        // Automatic: `u` (the person's undo) skips it; a person overturns
        // it from the `actor:auto` review filter.
        assert!(!r.st.undo_stack.iter().any(|(_, s)| *s == 5));
        let rep = r.s.report();
        assert_eq!(rep.denoise.judged, 4);
        assert_eq!(rep.denoise.rejected, 2);
        assert_eq!(rep.denoise.near_copies, 1);
        assert_eq!(rep.examples, 1);
        assert_eq!(rep.duplicates, 1);
        assert_eq!(r.s.status().have, 1, "rejected ones do not count");
        // Only the kept example is relabelled; more requests go out.
        let relabels: Vec<_> = r
            .open
            .iter()
            .filter_map(|j| match r.s.request(j.tag).map(|p| &p.kind) {
                Some(RequestKind::Relabel { sample }) => Some(*sample),
                _ => None,
            })
            .collect();
        assert_eq!(relabels, [3]);
        assert!(r.generate_jobs() >= 1, "the target is not reached yet");
        assert_eq!(r.s.status().phase, Phase::Running);
    }

    #[test]
    fn flag_mode_only_flags_and_off_does_nothing() {
        let mut r = denoise_rig(crate::domain::DenoiseMode::Flag, false);
        r.start(4);
        let job = r.open.pop_front().unwrap();
        r.answer(job, NOISY_REPLY);
        r.embed_all();
        assert!(
            r.st.generated().all(|s| s.decision().is_none()),
            "nothing decided"
        );
        assert!(r.noise_of(3).unwrap().reason.is_none());
        for id in [4, 5, 6] {
            assert!(r.noise_of(id).unwrap().reason.is_some(), "#{id} flagged");
        }
        assert_eq!(r.s.report().denoise.flagged, 3);
        assert_eq!(r.s.status().have, 4);
        assert_eq!(
            r.s.status().stop,
            Some(StopReason::TargetReached { target: 4 })
        );
        let doubt = crate::augment::doubt(
            r.st.sample(5).unwrap(),
            &crate::augment::DoubtContext::from_state(&r.st),
        );
        assert!(doubt.reasons.contains(&"noisy"), "{doubt:?}");

        let mut off = denoise_rig(crate::domain::DenoiseMode::Off, false);
        off.start(4);
        let job = off.open.pop_front().unwrap();
        off.answer(job, NOISY_REPLY);
        assert!(off.embeds.is_empty());
        assert!(
            off.st
                .generated()
                .all(|s| s.noise.is_none() && s.decision().is_none())
        );
        assert_eq!(off.s.status().have, 4);
    }

    #[test]
    fn the_target_waits_for_the_last_judgement_and_a_failed_embedding_turns_judging_off() {
        let mut r = denoise_rig(crate::domain::DenoiseMode::Reject, true);
        r.start(2);
        let job = r.open.pop_front().unwrap();
        r.answer(job, "1. Who built the tower?\n2. The weather is nice today");
        assert_eq!(r.s.status().stop, None, "not reached before the judgement");
        r.embed_all();
        assert_eq!(r.s.status().have, 1);
        assert_eq!(r.generate_jobs(), 1, "a new request for the rejected one");
        let job = r
            .open
            .iter()
            .position(|j| j.request.response_format.is_none())
            .map(|i| r.open.remove(i).unwrap())
            .unwrap();
        r.answer(
            job,
            "1. Who painted the ceiling?\n2. Who ran the fastest mile?",
        );
        let e = r.embeds.pop_front().unwrap();
        let out =
            r.s.on_embedded(&r.st, e.id, Err("no embedding model".into()));
        assert!(
            out.notes
                .iter()
                .any(|n| matches!(n, Note::Error(m) if m.contains("denoising is off")))
        );
        r.run(out);
        assert!(!r.s.denoising());
        assert!(
            r.st.generated()
                .filter(|s| s.id > 4)
                .all(|s| s.noise.is_none())
        );
        while r.answer_next(2) {}
        assert_eq!(r.s.status().have, 3);
        assert!(!r.s.busy());
    }

    /// With more classes than `relabel.all_max_classes`, a judged
    /// example's relabel prompt offers the 5 classes nearest to it by
    /// embedding (its intended class among them), not the picked ones.
    #[test]
    fn relabel_offers_the_nearest_classes_by_embedding() {
        let names = ["A", "B", "C", "D", "E", "F", "G"];
        let words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta"];
        let mut cfg = config();
        cfg.classes = crate::domain::testing::classes(&names, |c| format!("class {c}"));
        cfg.relabel.all_max_classes = 3;
        cfg.generation.per_request = 1;
        cfg.generation.classes_per_prompt = 2;
        let seeds: Vec<(String, String)> = names
            .iter()
            .zip(words)
            .map(|(n, w)| (format!("{w} {w} {w} one"), n.to_string()))
            .collect();
        let seed_refs: Vec<(&str, &str, Origin)> = seeds
            .iter()
            .map(|(t, n)| (t.as_str(), n.as_str(), Origin::Seed))
            .collect();
        let st = state_with(&seed_refs, vec![]);
        let mut r = rig_from(
            &cfg,
            cfg.generation.clone(),
            st,
            SessionConfig {
                relabel: true,
                auto_accept: None,
                concurrency: 1,
                counting: Counting::ThisRun,
                backend: cfg.backend.clone(),
            },
        );
        r.s.set_denoise(
            crate::domain::DenoiseConfig {
                mode: crate::domain::DenoiseMode::Flag,
                ..Default::default()
            },
            "toy",
        );
        r.start(1);
        let job = r.open.pop_front().unwrap();
        let intended = match &r.s.request(job.tag).unwrap().kind {
            RequestKind::Generate { target } => target.clone(),
            k => panic!("{k:?}"),
        };
        // A text about epsilon, zeta and eta, then alpha: those are its
        // nearest classes, and its intended class comes along.
        r.answer(job, "1. epsilon epsilon zeta zeta eta alpha two");
        r.embed_all();
        let relabel = r
            .open
            .iter()
            .find_map(|j| r.s.request(j.tag).filter(|p| p.labels.len() > 1))
            .expect("a relabel request");
        let mut want = vec![intended.clone()];
        for c in ["E", "F", "G", "A", "B", "C", "D"] {
            if want.len() < 5 && c != intended {
                want.push(c.to_string());
            }
        }
        want.sort();
        let mut got = relabel.labels.clone();
        got.sort();
        assert_eq!(got, want, "intended {intended}");
    }
}
