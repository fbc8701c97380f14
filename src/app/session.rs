//! The generation session: one I/O-free state machine that `straddle
//! generate`, `relabel`, `loop` and the terminal UI (including its S3
//! round) all drive.
//!
//! ```text
//!  commands ─────────┐                       ┌──▶ jobs to submit (engine)
//!  engine events ────┼──▶ Session (pure) ────┼──▶ events to append (one batch at a time)
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
//!   this run or at the project's total).
//! * **The request window**: generate requests are planned only when one
//!   of the window's slots is free, one at a time, never queued ahead; a
//!   request holds its slot until its reply is in the journal. The window
//!   is the *effective* concurrency (with command-line overrides), or the
//!   engine's adaptive limit when that is lower
//!   ([`EngineEvent::Limit`], shown in [`SessionStatus::limit`]).
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
//! Replies are turned into events one at a time, each appended and
//! acknowledged before the next, because `sample_added` ids are counted
//! from the state (see `augment::generator`).
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

use crate::augment::generator::is_dup_rejected;
use crate::augment::strategy::extrapolate::ErrorRound;
use crate::augment::{Generator, PlannedRequest, Reply, RequestKind, rules};
use crate::domain::{
    BackendConfig, Class, Event, EventKind, GenerationSettings, Mistake, Origin, ProjectState,
    SampleId,
};
use crate::engine::{EngineEvent, FailReason, FailureTally, Job, LimitReason};

/// The session's number for a request; the engine job's tag.
pub type RequestId = u64;

/// Where the count toward the target starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    /// At zero: `--count N` asks for N new examples (the CLI).
    ThisRun,
    /// At the project's non-duplicate generated examples: the target is
    /// a size for the whole dataset (the terminal UI's Controls pane).
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
    /// Events to append; answer with [`Session::on_appended`] (`ours`).
    pub append: Option<Vec<EventKind>>,
    pub control: Vec<Control>,
    pub notes: Vec<Note>,
}

impl Output {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.submit.is_empty()
            && self.append.is_none()
            && self.control.is_empty()
            && self.notes.is_empty()
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
}

type Failure = (FailReason, String, Option<String>);

/// Work waiting for the one append slot.
#[derive(Debug)]
enum Pending {
    Reply(RequestId, Box<PlannedRequest>, Result<Reply, Failure>),
    AutoAccept(EventKind),
}

/// What the append in flight holds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Appending {
    /// A generate request's reply: it frees its slot on the ack.
    Generate {
        n: usize,
    },
    Relabel,
    AutoAccept,
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
    appending: Option<Appending>,
    /// Generate requests not in the journal yet, and the examples they
    /// asked for.
    generate_open: usize,
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
            appending: None,
            generate_open: 0,
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
        }
    }

    /// The request behind an engine job's tag (for labelling streams).
    pub fn request(&self, id: RequestId) -> Option<&PlannedRequest> {
        self.requests.get(&id)
    }

    /// Requests in the engine, replies waiting or an append unacknowledged.
    pub fn busy(&self) -> bool {
        !self.requests.is_empty() || !self.pending.is_empty() || self.appending.is_some()
    }

    fn concurrency(&self) -> usize {
        self.cfg.concurrency.max(1)
    }

    /// Generate requests that may be open at once: the concurrency, or
    /// the engine's adaptive limit when lower.
    fn window(&self) -> usize {
        let c = self.concurrency();
        self.limit.map_or(c, |(l, _)| c.min(l.max(1)))
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
                self.round = round;
                self.exact = exact;
                self.have = match self.cfg.counting {
                    Counting::ThisRun => 0,
                    Counting::Project => state.generated().filter(|s| !is_dup_rejected(s)).count(),
                };
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
            Command::Settings(s) => {
                self.generator.set_settings(s, state);
                if self.phase == Phase::Running {
                    self.set_budget();
                }
            }
            Command::Classes(c) => self.generator.set_classes(c),
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
        let mut out = Output::default();
        match ev {
            EngineEvent::Finished { tag, response, .. } => {
                if let Some(p) = self.requests.remove(&tag) {
                    self.report.failures.success();
                    self.pending
                        .push_back(Pending::Reply(tag, Box::new(p), Ok(response)));
                }
            }
            EngineEvent::Failed {
                tag,
                reason,
                message,
                raw,
                ..
            } => {
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
        for e in events {
            match &e.kind {
                EventKind::SettingsChanged(s) if !ours => {
                    self.generator.set_settings(s.generation.clone(), state);
                    if self.phase == Phase::Running {
                        self.set_budget();
                    }
                }
                EventKind::WeightChanged(w) if !ours => {
                    let mut classes = self.generator.plan_context().classes.to_vec();
                    if let Some(c) = classes.iter_mut().find(|c| c.name == w.class) {
                        c.weight = w.weight;
                    }
                    self.generator.set_classes(classes);
                }
                EventKind::RationalesAdded(_) => self.generator.set_rationales(state),
                _ => {}
            }
        }
        if ours && let Some(what) = self.appending.take() {
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

    /// Our append is in the journal: count it, queue what follows.
    fn recorded(
        &mut self,
        state: &ProjectState,
        what: Appending,
        events: &[Event],
        out: &mut Output,
    ) {
        match what {
            Appending::Generate { n } => {
                self.generate_open = self.generate_open.saturating_sub(1);
                self.expected = self.expected.saturating_sub(n);
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
                            && let Some(k) = rules::decide(s, self.cfg.auto_accept, None)
                        {
                            self.pending.push_front(Pending::AutoAccept(k));
                        }
                    }
                }
            }
            Appending::AutoAccept => self.report.auto_accepted += 1,
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
        let left = self.target.saturating_sub(self.have + self.expected);
        self.budget = self.report.generate_requests + left.div_ceil(per) * 4 + 4;
    }

    /// Append the next reply, then fill free slots.
    fn step(&mut self, state: &ProjectState, out: &mut Output) {
        self.next_append(state, out);
        self.fill(out);
    }

    fn next_append(&mut self, state: &ProjectState, out: &mut Output) {
        while self.appending.is_none() && out.append.is_none() {
            let Some(p) = self.pending.pop_front() else {
                return;
            };
            let (events, what) = match p {
                Pending::AutoAccept(k) => (vec![k], Appending::AutoAccept),
                Pending::Reply(id, planned, result) => {
                    let what = match planned.kind {
                        RequestKind::Generate { .. } => Appending::Generate { n: planned.n },
                        RequestKind::Relabel { .. } => Appending::Relabel,
                    };
                    let events = match result {
                        Ok(reply) => {
                            let events = self.generator.on_reply(state, &planned, &reply);
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
                        continue;
                    }
                    (events, what)
                }
            };
            self.appending = Some(what);
            out.append = Some(events);
        }
    }

    /// A generate request ends without events: its slot is free.
    fn settle(&mut self, p: &PlannedRequest) {
        if let RequestKind::Generate { .. } = p.kind {
            self.generate_open = self.generate_open.saturating_sub(1);
            self.expected = self.expected.saturating_sub(p.n);
        }
    }

    /// Plan requests into free slots: S3 errors first, then the target.
    fn fill(&mut self, out: &mut Output) {
        if !self.may_plan() {
            return;
        }
        while self.generate_open < self.window() {
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
        let per = self.generator.settings().per_request.max(1);
        while self.generate_open < self.window() && self.have + self.expected < self.target {
            if self.report.generate_requests >= self.budget {
                self.end(
                    StopReason::Fruitless {
                        requests: self.report.generate_requests,
                    },
                    out,
                );
                return;
            }
            let n = if self.exact {
                per.min(self.target - self.have - self.expected)
            } else {
                per
            };
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
        if self.have >= self.target && self.generate_open == 0 {
            let target = self.target;
            out.notes
                .push(Note::Info(format!("target of {target} examples reached")));
            self.end(StopReason::TargetReached { target }, out);
        }
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
        if let RequestKind::Generate { .. } = p.kind {
            self.generate_open += 1;
            self.expected += p.n;
            self.report.generate_requests += 1;
        }
        out.submit.push(p.job(id));
        self.requests.insert(id, p);
    }

    /// Take a request another carrier sends (a batch file, `app::batch`):
    /// it is in flight under the returned id until its reply (or failure)
    /// comes back through [`Session::on_engine`] like a live one. Nothing
    /// is planned for it and it does not count against the budget.
    pub fn carry(&mut self, p: PlannedRequest) -> RequestId {
        let id = self.next_id;
        self.next_id += 1;
        if let RequestKind::Generate { .. } = p.kind {
            self.generate_open += 1;
            self.expected += p.n;
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
        match self.generator.plan_relabel(state, id) {
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
            judge: Default::default(),
        }
    }

    struct Rig {
        s: Session,
        st: ProjectState,
        /// Jobs submitted and not answered yet, in order.
        open: VecDeque<Job>,
        words: usize,
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
        let g = Generator::new(
            &cfg,
            cfg.classes.clone(),
            settings,
            Templates::builtin(),
            &st,
        );
        let s = Session::new(
            g,
            SessionConfig {
                relabel,
                auto_accept: Some(0.5),
                concurrency,
                counting,
                backend: cfg.backend.clone(),
            },
        );
        Rig {
            s,
            st,
            open: VecDeque::new(),
            words: 0,
        }
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
                controls.append(&mut out.control);
                let Some(kinds) = out.append.take() else {
                    return controls;
                };
                let events = apply(&mut self.st, kinds);
                out = self.s.on_appended(&self.st, &events, true);
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
        // A slot is held until the reply is in the journal.
        let job = r.open.pop_front().unwrap();
        let out = r.s.on_engine(
            &r.st,
            EngineEvent::Finished {
                id: job.tag,
                tag: job.tag,
                response: response("1. Who carved stone number nine?\n2. Who owns boat seven?"),
                latency: Duration::ZERO,
            },
        );
        assert!(out.submit.is_empty(), "nothing planned before the ack");
        assert!(out.append.is_some());
        r.run(out);
        assert_eq!(r.generate_jobs(), 64);
        // Raising the concurrency opens more slots at once.
        let controls = r.command(Command::SetConcurrency(80));
        assert_eq!(controls, [Control::SetConcurrency(80)]);
        assert_eq!(r.generate_jobs(), 80);
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
    fn replies_are_appended_one_at_a_time_then_relabelled_and_auto_accepted() {
        let mut r = rig(Counting::ThisRun, 2, true);
        r.start(4);
        let (a, b) = (r.open.pop_front().unwrap(), r.open.pop_front().unwrap());
        // Both replies arrive before any ack: only the first is appended.
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
        assert!(o1.append.is_some());
        assert!(o2.append.is_none(), "waits for the first ack");
        let events = apply(&mut r.st, o1.append.unwrap());
        let o3 = r.s.on_appended(&r.st, &events, true);
        // The first reply's two examples go to relabel; the second reply
        // is appended now, with ids after the first's.
        assert_eq!(o3.submit.len(), 2);
        assert!(
            o3.submit
                .iter()
                .all(|j| j.request.response_format.is_some())
        );
        let kinds = o3.append.as_ref().unwrap();
        assert!(matches!(&kinds[0], EventKind::SampleAdded(s) if s.id == 5));
        r.run(o3);
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
        assert!(out.append.is_none() && out.submit.is_empty());
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
}
