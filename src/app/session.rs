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
//!   of the `concurrency` slots is free (the *effective* concurrency, with
//!   command-line overrides), one at a time, never queued ahead; a request
//!   holds its slot until its reply is in the journal.
//! * **The fruitless-request guard**: a run that has made about four
//!   times the requests its target needs stops and says so
//!   ([`StopReason::Fruitless`]).
//! * **Which strategies run**: the configured strategy when it plans from
//!   the settings; an S3 round hands its held-out errors to the
//!   `extrapolate` strategy ([`Command::Extrapolate`]), whose requests are
//!   planned in the same window.
//! * **Failures**: counted per kind ([`Report::failures`]); a failure no
//!   retry fixes (connection, key, URL/model) blocks the session, cancels
//!   what is in flight and names the fix.
//!
//! Replies are turned into events one at a time, each appended and
//! acknowledged before the next, because `sample_added` ids are counted
//! from the state (see `augment::generator`).

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::augment::generator::is_dup_rejected;
use crate::augment::strategy::extrapolate::ErrorRound;
use crate::augment::{Generator, PlannedRequest, Reply, RequestKind, rules};
use crate::domain::{
    BackendConfig, Class, Event, EventKind, GenerationSettings, Mistake, Origin, ProjectState,
    SampleId,
};
use crate::engine::{EngineEvent, FailReason, Job};

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
    /// A request failed for good (after the engine's retries).
    RequestFailed {
        request: RequestId,
        kind: FailReason,
        message: String,
    },
    /// A reply held nothing usable (`empty_reply`, `unparsable`).
    NothingUsable { request: RequestId, reason: String },
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
    TargetReached { target: usize },
    /// Too many requests for too few new examples.
    Fruitless { requests: usize },
    /// A failure no retry fixes.
    Backend { kind: FailReason, message: String },
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
            StopReason::Backend { message, .. } => f.write_str(message),
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
    /// Generate requests recorded as `generation_failed`.
    pub failed_requests: usize,
    pub relabelled: usize,
    pub unparsable_verdicts: usize,
    pub agreeing: usize,
    pub auto_accepted: usize,
    /// Generate requests planned (settings and extrapolation).
    pub generate_requests: usize,
    /// Failures by kind: the engine's reasons (`timeout`, `server_error`…)
    /// and the reply's (`empty_reply`, `unparsable`); cancelled requests
    /// are not failures.
    pub failures: BTreeMap<String, usize>,
}

impl Report {
    /// The most frequent failure kind and its count.
    pub fn dominant_failure(&self) -> Option<(&str, usize)> {
        self.failures
            .iter()
            .max_by_key(|(k, n)| (**n, std::cmp::Reverse(k.as_str())))
            .map(|(k, n)| (k.as_str(), *n))
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
}

type Failure = (FailReason, String, Option<String>);

/// Work waiting for the one append slot.
#[derive(Debug)]
enum Pending {
    Reply(RequestId, PlannedRequest, Result<Reply, Failure>),
    AutoAccept(EventKind),
}

/// What the append in flight holds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Appending {
    /// A generate request's reply: it frees its slot on the ack.
    Generate { n: usize },
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
    report: Report,
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
            report: Report::default(),
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
                    Counting::Project => state
                        .generated()
                        .filter(|s| !is_dup_rejected(s))
                        .count(),
                };
                self.report.generate_requests = 0;
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
                    self.phase = Phase::Paused;
                }
                out.control.push(Control::Pause);
            }
            Command::Resume => {
                if matches!(self.phase, Phase::Paused | Phase::Blocked(_)) {
                    self.phase = if self.stop.is_none() {
                        Phase::Running
                    } else {
                        Phase::Idle
                    };
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
                out.control.push(Control::SetConcurrency(self.concurrency()));
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
                    self.pending.push_back(Pending::Reply(tag, p, Ok(response)));
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
            EngineEvent::Started { .. }
            | EngineEvent::Delta { .. }
            | EngineEvent::Backoff { .. } => return out,
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
        *self
            .report
            .failures
            .entry(reason.as_str().to_string())
            .or_default() += 1;
        tracing::warn!("request failed: {}: {message}", reason.as_str());
        out.notes.push(Note::RequestFailed {
            request: tag,
            kind: reason,
            message: message.clone(),
        });
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
        self.pending
            .push_back(Pending::Reply(tag, p, Err((reason, message, raw))));
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
    fn recorded(&mut self, state: &ProjectState, what: Appending, events: &[Event], out: &mut Output) {
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
                                *self.report.failures.entry(f.reason.clone()).or_default() += 1;
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
        self.fill(state, out);
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
    fn fill(&mut self, state: &ProjectState, out: &mut Output) {
        let _ = state;
        if !self.may_plan() {
            return;
        }
        while self.generate_open < self.concurrency() {
            let Some(round) = self.errors.as_mut() else {
                break;
            };
            match self.generator.plan_error(round) {
                Some(Ok(p)) => self.submit(p, out),
                Some(Err(e)) => {
                    out.notes
                        .push(Note::Error(format!("S3 round: cannot plan extrapolation: {e:#}")));
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
        while self.generate_open < self.concurrency() && self.have + self.expected < self.target {
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
                    out.notes.push(Note::Error(format!("cannot plan a request: {m}")));
                    self.end(StopReason::Plan(m), out);
                    return;
                }
            }
        }
        if self.have >= self.target && self.generate_open == 0 {
            let target = self.target;
            out.notes.push(Note::Info(format!(
                "target of {target} examples reached"
            )));
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
