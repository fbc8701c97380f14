//! The app state and the messages and effects that drive it.
//!
//! `State` holds the TUI's own copy of the project fold (`ProjectState`),
//! updated only from events the store has acknowledged, plus everything the
//! views need, kept incrementally (review queue order, per-class tallies,
//! seed lists) so neither a key press nor a frame scans the whole project.

use crossterm::event::{KeyEvent, MouseEvent};
use ratatui_textarea::TextArea;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use crate::app::export::ExportRequest;
use crate::domain::{
    Class, ClassCounts, DecisionKind, Event, EventKind, GenerationSettings, Origin, ProjectState,
    SampleId, SampleState, Status, Usage,
};
use crate::engine::FailReason;

use super::config::UiConfig;
use super::keymap::Keymap;
use super::queue::ReviewQueue;
use super::theme::Theme;

/// The five panes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pane {
    Review,
    /// The map of the samples (shown with `m`).
    Map,
    Seeds,
    Streams,
    Controls,
    Stats,
}

impl Pane {
    /// Focus order (Tab).
    pub const ALL: [Pane; 6] = [
        Pane::Review,
        Pane::Map,
        Pane::Seeds,
        Pane::Controls,
        Pane::Streams,
        Pane::Stats,
    ];
    pub fn title(self) -> &'static str {
        match self {
            Pane::Review => "Review",
            Pane::Map => "Map",
            Pane::Seeds => "Seeds",
            Pane::Streams => "Streams",
            Pane::Controls => "Controls",
            Pane::Stats => "Stats",
        }
    }
}

/// What the generation engine is doing.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineStatus {
    Idle,
    Running,
    Paused,
    /// Waiting before a retry (rate limit, server error), with the reason.
    Backoff(Backoff),
    /// Generation cannot go on until something is fixed (the backend is
    /// unreachable, the key or model is refused, the circuit breaker
    /// tripped); the message says what and how.
    Blocked(String),
}

impl EngineStatus {
    /// The status line's word(s); a backoff's countdown is taken at `now`.
    pub fn label(&self, now: Instant) -> String {
        match self {
            EngineStatus::Idle => "idle".into(),
            EngineStatus::Running => "running".into(),
            EngineStatus::Paused => "paused".into(),
            EngineStatus::Backoff(b) => format!("backoff: {}", b.label(now)),
            EngineStatus::Blocked(_) => "blocked".into(),
        }
    }
}

/// A request the engine will send again after a wait.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    pub job: u64,
    /// Why the last attempt failed, for people: "rate limited",
    /// "server error 503" (see [`Backoff::reason_text`]).
    pub reason: String,
    /// The attempt that goes out next (1 = first retry).
    pub attempt: u32,
    pub max_retries: u32,
    /// When the retry may go out (the countdown is computed from it when
    /// drawing, so nothing ticks to keep it current).
    pub until: Instant,
}

impl Backoff {
    /// "rate limited, retry in 12 s (attempt 1/5)"; "retrying" once the
    /// deadline has passed.
    pub fn label(&self, now: Instant) -> String {
        format!(
            "{}, {} (attempt {}/{})",
            self.reason,
            retry_in(self.until, now),
            self.attempt,
            self.max_retries
        )
    }

    /// A failure reason in words, with the HTTP status where it helps.
    pub fn reason_text(reason: FailReason, status: Option<u16>) -> String {
        let words = match reason {
            FailReason::RateLimited => "rate limited",
            FailReason::ServerError => "server error",
            FailReason::Timeout => "timed out",
            FailReason::Connect => "cannot connect",
            FailReason::Malformed => "malformed reply",
            FailReason::Truncated => "reply cut off",
            FailReason::StreamError => "error in stream",
            FailReason::TooLarge => "reply too large",
            other => other.as_str(),
        };
        match status {
            Some(code) if reason == FailReason::ServerError => format!("{words} {code}"),
            _ => words.to_string(),
        }
    }
}

/// "retry in 12 s" (whole seconds, rounded up), or "retrying" when due.
pub fn retry_in(until: Instant, now: Instant) -> String {
    let left = until.saturating_duration_since(now);
    if left.is_zero() {
        return "retrying".into();
    }
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    format!("retry in {secs} s")
}

/// When a countdown shown at `now` next changes its whole-second value
/// (at most one second ahead), for the deadline that changes first;
/// `None` when no deadline is still ahead.
pub fn next_countdown_change(
    deadlines: impl IntoIterator<Item = Instant>,
    now: Instant,
) -> Option<Instant> {
    deadlines
        .into_iter()
        .filter(|d| *d > now)
        .map(|d| {
            let left = d - now;
            let frac = Duration::from_nanos(u64::from(left.subsec_nanos()));
            now + if frac.is_zero() {
                Duration::from_secs(1)
            } else {
                frac
            }
        })
        .min()
}

/// What a stream row is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Generate,
    Relabel,
}

/// State of one request.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamState {
    Running,
    Finished,
    Failed(String),
}

/// One request in the Streams pane.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRow {
    pub job: u64,
    pub kind: StreamKind,
    /// Class pair / class, e.g. "LOC×HUM".
    pub classes: String,
    pub alpha: Option<f64>,
    /// Tail of the tokens received so far.
    pub text: String,
    /// Characters received.
    pub chars: usize,
    pub state: StreamState,
    /// Set while the request waits to be sent again.
    pub retry_at: Option<Instant>,
    /// The session's settings version it was planned under (older than
    /// [`State::settings_version`]: planned under older settings).
    pub settings: u64,
}

/// Progress of requests, as the runtime reports it from engine events.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamMsg {
    Started {
        job: u64,
        kind: StreamKind,
        classes: String,
        alpha: Option<f64>,
        /// The session's settings version it was planned under.
        settings: u64,
    },
    /// The session's settings version changed (weights, α, temperature,
    /// strategy): rows planned under an older one are marked.
    SettingsVersion(u64),
    /// The text received so far (the whole of it, not an increment).
    Delta {
        job: u64,
        text: String,
    },
    Finished {
        job: u64,
    },
    Failed {
        job: u64,
        reason: String,
    },
}

/// Everything that can happen to the app.
#[derive(Debug, Clone)]
pub enum Msg {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Paste(String),
    Resize(u16, u16),
    /// The store wrote these events (ids and timestamps assigned).
    Appended(Vec<Event>),
    /// The store could not write; nothing was applied.
    AppendFailed(String),
    Stream(StreamMsg),
    Engine(EngineStatus),
    /// The engine's adaptive limit changed: "limit 3 (latency flat)".
    Limit(String),
    /// A request failed and will be retried after a wait: the status line
    /// shows why and counts down; its Streams row says "retry in N s".
    /// A later `Started` or `Finished` ends the backoff state.
    Backoff(Backoff),
    /// Time passed while a countdown is on screen: redraw.
    Tick,
    /// Live usage of this session's engine.
    Usage {
        usage: Usage,
        req_per_s: f64,
    },
    /// Export finished: a sentence naming the output path, or what went
    /// wrong.
    Exported(Result<String, String>),
    /// An error from the runtime to show in the status line.
    Error(String),
    /// An informational note for the status line.
    Notice(String),
    /// Generation reached the target (accepted + pending examples): say
    /// how to go on, and put the Controls selection on the target.
    TargetReached(usize),
    /// An S3 round job finished (scores, mistakes, signals) or failed.
    RoundDone(Result<Box<crate::app::training::RoundResult>, String>),
    /// Training-dynamics signals of the review pool, or what went wrong.
    Signals(Result<crate::classify::SignalMap, String>),
    /// A map vector job's answer.
    Map(super::map::MapReply),
    /// The app opened: start the jobs it needs (the judges' measure).
    Opened,
    /// The judges measured again (`Effect::MeasureJudges`), with the
    /// reports to record, or what went wrong.
    JudgesMeasured(Result<Box<super::chosen::Measured>, String>),
    /// The data gate the export dialog shows (`Effect::CheckGate`):
    /// `None` when there is nothing to compare.
    Gate(Result<Option<Box<crate::app::data_gate::DataGate>>, String>),
}

/// What `update` asks the runtime to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Append to the journal; the runtime answers with `Msg::Appended`
    /// and handles no further key before that.
    Append(Vec<EventKind>),
    /// Generation commands for the session; the engine status shown is
    /// the session's answer (`Msg::Engine`), never set by `update`.
    /// Settings and class weights need no effect of their own: `update`
    /// appends `settings_changed` / `weight_changed`, and both the view and
    /// the session take the new values from the acknowledged events.
    StartGeneration,
    PauseGeneration,
    ResumeGeneration,
    /// Stop and cancel everything in flight.
    StopGeneration,
    /// Not journaled (a property of this session, like the command line's
    /// `--concurrency`), so shown at once.
    SetConcurrency(usize),
    /// Ask the LLM to relabel a sample once its edit is acknowledged.
    Relabel(SampleId),
    Export(ExportRequest),
    /// Train, score and compute signals off the UI task for S3 round
    /// `round`; answered by `Msg::RoundDone`.
    RunRound {
        round: u32,
    },
    /// Compute training-dynamics signals off the UI task; answered by
    /// `Msg::Signals`.
    ComputeSignals,
    /// Extrapolate these held-out mistakes into `count` new examples
    /// through the generation session.
    Extrapolate {
        round: u32,
        mistakes: Vec<crate::domain::Mistake>,
        count: usize,
    },
    /// Compute sentence vectors (and a projection) for the map off the UI
    /// task; answered by `Msg::Map`.
    Map(super::map::MapJob),
    /// Measure the judges on a snapshot off the UI task (the runtime
    /// waits `chosen::DEBOUNCE` first); answered by `Msg::JudgesMeasured`.
    MeasureJudges,
    /// Run the data gate for the export dialog off the UI task; answered
    /// by `Msg::Gate`.
    CheckGate,
    Quit,
}

/// Modal input state.
#[derive(Debug, Clone, Default)]
pub enum Mode {
    #[default]
    Normal,
    Help,
    /// Editing a sample's text.
    Edit {
        sample: SampleId,
        area: Box<TextArea<'static>>,
    },
    /// Typing a filter.
    Filter {
        input: String,
        error: Option<String>,
    },
    /// Bulk decision waiting for y/n.
    Confirm {
        kind: DecisionKind,
        ids: Vec<SampleId>,
    },
    Export(ExportForm),
}

/// The export dialog (its fields: [`super::export_form::ExportField`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ExportForm {
    pub field: usize,
    pub req: ExportRequest,
    /// Refuse the export when the data gate says the accepted data makes
    /// the held-out score worse (`export --strict`).
    pub strict: bool,
    /// The data gate, run when the dialog opens.
    pub gate: super::export_form::GateState,
}

impl Mode {
    /// The keymap mode keys are looked up in.
    pub fn key_mode(&self) -> super::keymap::KeyMode {
        use super::keymap::KeyMode;
        match self {
            Mode::Normal => KeyMode::Normal,
            Mode::Help => KeyMode::Help,
            Mode::Edit { .. } => KeyMode::Edit,
            Mode::Filter { .. } => KeyMode::Filter,
            Mode::Confirm { .. } => KeyMode::Confirm,
            Mode::Export(_) => KeyMode::Export,
        }
    }
}

/// What straddle.toml says of the values the Controls pane steers: a
/// value set in the app (journaled, kept across restarts) that differs
/// is marked there.
#[derive(Debug, Clone, PartialEq)]
pub struct TomlSettings {
    pub generation: GenerationSettings,
    pub concurrency: usize,
}

/// One row of the Controls pane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Strategy,
    Alpha,
    Temperature,
    Concurrency,
    Target,
    PerRequest,
    /// `take_relabel`: whether `a` records the relabeler's label.
    TakeRelabel,
}

impl Control {
    pub const ALL: [Control; 7] = [
        Control::Strategy,
        Control::Alpha,
        Control::Temperature,
        Control::Concurrency,
        Control::Target,
        Control::PerRequest,
        Control::TakeRelabel,
    ];
    /// The value shown for this control in `g` (and `concurrency`,
    /// `take_relabel`).
    pub fn value(self, g: &GenerationSettings, concurrency: usize, take_relabel: bool) -> String {
        match self {
            Control::Strategy => g.strategy.as_str().to_string(),
            Control::Alpha => match g.alpha {
                Some(a) => format!("{a:.2}"),
                None => format!("{:.2}–{:.2}", g.alpha_range.0, g.alpha_range.1),
            },
            Control::Temperature => format!("{:.1}", g.temperature),
            Control::Concurrency => concurrency.to_string(),
            Control::Target => g.target_count.to_string(),
            Control::PerRequest => g.per_request.to_string(),
            Control::TakeRelabel => if take_relabel { "yes" } else { "no" }.to_string(),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Control::Strategy => "strategy",
            Control::Alpha => "α",
            Control::Temperature => "temperature",
            Control::Concurrency => "concurrency",
            Control::Target => "target",
            Control::PerRequest => "per request",
            Control::TakeRelabel => "take relabel",
        }
    }
}

/// Per-class counts and relabel agreement, kept incrementally.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub per_class: BTreeMap<String, ClassCounts>,
    pub generated: ClassCounts,
    /// Generated samples a person (a key or a bulk rule) accepted or
    /// rejected: the accept rate is theirs, not the pipeline's.
    pub person_accepted: u64,
    pub person_rejected: u64,
    /// Generated samples with a parsable verdict, and those agreeing.
    pub verdicts: u64,
    pub agreeing: u64,
}

impl Tally {
    /// Every sample of `project` counted, each of `classes` present, a
    /// generated one under the label `a` records (`judged`).
    fn of(project: &ProjectState, classes: &[Class], judged: &super::queue::JudgeView) -> Tally {
        let mut tally = Tally::default();
        for c in classes {
            tally.per_class.entry(c.name.clone()).or_default();
        }
        let take = project.take_relabel;
        for s in &project.samples {
            tally.add(s, judged.label(s, take), 1);
        }
        tally
    }

    /// Count `s` (`sign` 1) or take it out (-1); a generated sample counts
    /// under `label`, the one `a` records (`queue::JudgeView::label`).
    fn add(&mut self, s: &SampleState, label: &str, sign: i64) {
        let f = |x: &mut u64| *x = x.saturating_add_signed(sign);
        match s.origin {
            Origin::Seed => f(&mut self.per_class.entry(s.label.to_string()).or_default().seed),
            Origin::Validation | Origin::Test => {}
            Origin::Generated => {
                if !self.per_class.contains_key(label) {
                    self.per_class
                        .insert(label.to_string(), ClassCounts::default());
                }
                let c = self.per_class.get_mut(label).expect("just inserted");
                for c in [c, &mut self.generated] {
                    match s.status() {
                        Status::Pending => f(&mut c.pending),
                        Status::Accepted => f(&mut c.accepted),
                        Status::Rejected => f(&mut c.rejected),
                    }
                }
                if let Some(d) = s.decision().filter(|d| d.by.is_person()) {
                    match d.kind {
                        DecisionKind::Accept => f(&mut self.person_accepted),
                        DecisionKind::Reject => f(&mut self.person_rejected),
                    }
                }
                if let Some(a) = s.agrees() {
                    f(&mut self.verdicts);
                    if a {
                        f(&mut self.agreeing);
                    }
                }
            }
        }
    }
}

/// The whole app state.
#[derive(Debug, Clone)]
pub struct State {
    pub project: ProjectState,
    pub project_name: String,
    pub classes: Vec<Class>,
    pub settings: GenerationSettings,
    /// The config's attribute dimensions (`attributes` strategy); their
    /// live weights are in `project.attribute_weights`.
    pub attributes: BTreeMap<String, crate::domain::AttributeDim>,
    pub concurrency: usize,
    /// straddle.toml's values of the controls (the runtime sets them; a
    /// new state takes the settings it starts with).
    pub toml: TomlSettings,
    /// What this session's relabel requests depend on (model, template,
    /// relabel settings; `augment::relabel_fingerprint`): a judge report
    /// made for another one is stale. `None`: unknown (not checked).
    pub relabel_fingerprint: Option<String>,
    pub backend: String,
    pub model: String,
    pub keymap: Keymap,
    pub theme: Theme,
    /// Where diagnostics are logged (shown on the help screen).
    pub log_file: Option<PathBuf>,

    pub focus: Pane,
    pub zoom: bool,
    pub mode: Mode,
    pub size: (u16, u16),

    pub queue: ReviewQueue,
    /// Selected row of the review queue, and its sample.
    pub review_sel: usize,
    pub review_offset: usize,
    /// Sample to select once the next acknowledged events are applied
    /// (the target of an undo).
    pub pending_select: Option<SampleId>,
    /// While a key burst defers the review queue (`tui::burst`): the
    /// samples whose place in it is not updated yet.
    pub queue_behind: Option<Vec<SampleId>>,
    pub class_sel: usize,
    /// Selected seed example of the selected class (`None`: the class
    /// list has the cursor).
    pub seed_sel: Option<usize>,
    /// Selected Controls row: one of [`Control::ALL`], then the attribute
    /// values ([`State::attribute_rows`]).
    pub control_sel: usize,
    pub stream_offset: usize,
    pub help_offset: usize,

    pub tally: Tally,
    /// Pieces of generation replies the parser did not take, per reason,
    /// summed over the samples' and failures' provenance (as `stats`
    /// does), kept as events are applied.
    pub parse_rejected: BTreeMap<String, u64>,
    /// Every judge's opinion of the generated samples and the chosen
    /// judge (computed with the training signals; see `judges_view`).
    pub judges: Option<crate::app::judges::ReviewJudges>,
    /// The judges' measure job (at open and when their data changed).
    pub measuring: super::chosen::Measuring,
    /// Seed sample ids in journal order.
    pub seeds: Vec<SampleId>,

    pub engine: EngineStatus,
    /// The engine's adaptive limit and why, for the status line.
    pub limit: Option<String>,
    pub streams: VecDeque<StreamRow>,
    /// The generation session's settings version (see `StreamRow::settings`).
    pub settings_version: u64,
    /// Usage of this session's engine (the journal's usage is in `project`).
    pub live_usage: Usage,
    /// `generation_failed` events of this session, and the last reason.
    pub failed: u64,
    pub last_failure: Option<String>,
    /// The part of `live_usage` already journaled (`usage_recorded` events
    /// of this session), so it is not counted twice.
    pub journaled_usage: Usage,
    pub req_per_s: f64,

    pub notice: Option<String>,
    pub last_error: Option<String>,
    /// The notice was set after the error: show it (an undo's "undid
    /// accept of #88" must not hide behind an older error).
    pub notice_newer: bool,
    /// S3 round and signal jobs.
    pub s3: super::s3::S3Status,
    /// The map pane: projected points and the vector jobs.
    pub map: super::map::MapState,
    /// Set when something visible changed since the last frame.
    pub dirty: bool,
    pub quit: bool,
}

/// The `run` of the TUI's `usage_recorded` events.
pub const USAGE_RUN: &str = "tui";

/// How many finished streams to keep.
pub const MAX_STREAMS: usize = 64;
/// How much streamed text to keep per row.
pub const STREAM_TAIL: usize = 400;

/// What a `State` starts from.
#[derive(Debug, Clone)]
pub struct Init {
    pub project: ProjectState,
    pub project_name: String,
    pub classes: Vec<Class>,
    pub settings: GenerationSettings,
    pub concurrency: usize,
    pub backend: String,
    pub model: String,
    pub ui: UiConfig,
}

impl State {
    pub fn new(init: Init) -> State {
        let mut st = State {
            project: ProjectState::new(init.project.take_relabel),
            project_name: init.project_name,
            classes: init.classes,
            toml: TomlSettings {
                generation: init.settings.clone(),
                concurrency: init.concurrency.max(1),
            },
            settings: init.settings,
            attributes: BTreeMap::new(),
            relabel_fingerprint: None,
            concurrency: init.concurrency.max(1),
            backend: init.backend,
            model: init.model,
            keymap: init.ui.keymap,
            theme: init.ui.theme,
            log_file: init.ui.log_file,
            focus: Pane::Review,
            zoom: false,
            mode: Mode::Normal,
            size: (120, 40),
            queue: ReviewQueue::new(crate::augment::DoubtContext::new([])),
            review_sel: 0,
            review_offset: 0,
            pending_select: None,
            queue_behind: None,
            class_sel: 0,
            seed_sel: None,
            control_sel: 0,
            stream_offset: 0,
            help_offset: 0,
            tally: Tally::default(),
            parse_rejected: BTreeMap::new(),
            judges: None,
            measuring: Default::default(),
            seeds: Vec::new(),
            engine: EngineStatus::Idle,
            limit: None,
            streams: VecDeque::new(),
            settings_version: 0,
            live_usage: Usage::default(),
            journaled_usage: Usage::default(),
            failed: 0,
            last_failure: None,
            req_per_s: 0.0,
            notice: None,
            last_error: (!init.ui.warnings.is_empty()).then(|| init.ui.warnings.join("; ")),
            notice_newer: false,
            s3: Default::default(),
            map: Default::default(),
            dirty: true,
            quit: false,
        };
        st.project = init.project;
        // The seeds' shingles for doubt (a 10 MB seed takes a tenth of a
        // second) are indexed on another thread while this one counts.
        let State {
            project,
            classes,
            tally,
            seeds,
            map,
            parse_rejected,
            queue,
            ..
        } = &mut st;
        let project = &*project;
        let judged = queue.judged();
        let index = || crate::augment::DoubtContext::from_state(project);
        let mut count = || {
            *tally = Tally::of(project, classes, judged);
            *seeds = project
                .samples
                .iter()
                .filter(|s| s.origin == Origin::Seed)
                .map(|s| s.id)
                .collect();
            for s in &project.samples {
                map.note(s, classes, project.take_relabel, true);
            }
            *parse_rejected = crate::augment::parse::sum_rejections(
                project
                    .samples
                    .iter()
                    .map(|s| &*s.provenance)
                    .chain(project.failures.iter().map(|(_, f)| &f.provenance)),
            );
        };
        let ctx = if project.samples.len() < 4096 {
            count();
            index()
        } else {
            std::thread::scope(|s| {
                let ctx = s.spawn(index);
                count();
                ctx.join().expect("indexing the seeds panicked")
            })
        };
        st.queue.ctx = ctx;
        st.queue.rebuild(&st.project, &st.classes);
        st
    }

    /// Count every sample again and rebuild the queue's orders (at start,
    /// and when `take_relabel` changes every generated example's label).
    fn rebuild_counts(&mut self) {
        self.tally = Tally::of(&self.project, &self.classes, self.queue.judged());
        self.queue.rebuild(&self.project, &self.classes);
    }

    /// Follow the chosen judge's answers (`chosen::set_judges`): the
    /// samples whose answer changed are counted again and move in the
    /// queue, the selection staying on its sample.
    pub(super) fn set_judge_view(&mut self, view: super::queue::JudgeView) {
        self.catch_up_queue();
        if *self.queue.judged() == view {
            return;
        }
        let changed = self.queue.judged().changed(&view, &self.project);
        let take = self.project.take_relabel;
        for id in &changed {
            if let Some(s) = self.project.sample(*id) {
                self.tally.add(s, self.queue.judged().label(s, take), -1);
            }
        }
        let sel = self.queue.get(self.review_sel);
        self.queue
            .set_judged(view, &changed, &self.project, &self.classes);
        for id in &changed {
            if let Some(s) = self.project.sample(*id) {
                self.tally.add(s, self.queue.judged().label(s, take), 1);
            }
        }
        self.follow_selection(sel);
        self.dirty = true;
    }

    /// Add the parser's rejections journalled on `p` to [`Self::parse_rejected`].
    fn count_rejections(&mut self, p: &crate::domain::Provenance) {
        for (k, v) in crate::augment::parse::sum_rejections([p]) {
            *self.parse_rejected.entry(k).or_default() += v;
        }
    }

    /// Why the relabeler's verdicts are not to be trusted (its latest
    /// `straddle judge` report, the test the bulk rules and the Stats pane
    /// use), or `None` when it is trusted or was never measured.
    pub fn relabel_distrust(&self) -> Option<String> {
        let j = self
            .project
            .judges
            .get(crate::classify::judge::RELABEL_JUDGE)?;
        if self.relabel_judge_stale() {
            return Some(
                "relabel judge measured with another model, template or relabel setting: run `straddle judge DIR` again"
                    .into(),
            );
        }
        let r = &j.report;
        if r.trusted() {
            None
        } else if r.n == 0 {
            Some("relabel judge measured on no held-out example".into())
        } else if !r.better_than_chance() {
            Some(format!(
                "relabel judge not better than chance on held-out examples: {:.2} vs {:.2}",
                r.accuracy, r.chance
            ))
        } else {
            Some(format!(
                "relabel judge not better than the majority class on held-out examples: {:.2} vs {:.2}",
                r.accuracy, r.majority
            ))
        }
    }

    /// The relabeler's judge report was made for another model, template
    /// or relabel setting than the ones this session relabels with (its
    /// fingerprint differs), so it says nothing about these verdicts.
    pub fn relabel_judge_stale(&self) -> bool {
        match (
            self.project
                .judges
                .get(crate::classify::judge::RELABEL_JUDGE),
            &self.relabel_fingerprint,
        ) {
            (Some(j), Some(now)) => j.fingerprint != *now,
            _ => false,
        }
    }

    /// The selected sample of the review queue.
    pub fn selected_sample(&self) -> Option<&SampleState> {
        self.queue
            .get(self.review_sel)
            .and_then(|id| self.project.sample(id))
    }

    pub fn selected_class(&self) -> Option<&Class> {
        self.classes.get(self.class_sel)
    }

    /// Seed examples of the selected class.
    pub fn class_seeds(&self) -> Vec<&SampleState> {
        let Some(c) = self.selected_class() else {
            return Vec::new();
        };
        self.seeds
            .iter()
            .filter_map(|id| self.project.sample(*id))
            .filter(|s| s.label == c.name)
            .collect()
    }

    /// The sample `e` edits: the selected seed when the Seeds pane has a
    /// seed selected, else the selected review sample.
    pub fn edit_target(&self) -> Option<&SampleState> {
        if self.focus == Pane::Seeds {
            return self
                .seed_sel
                .and_then(|i| self.class_seeds().get(i).copied());
        }
        self.selected_sample()
    }

    /// Sample touched by an event, if any.
    fn touched(kind: &EventKind) -> Option<SampleId> {
        match kind {
            EventKind::SampleAdded(a) => Some(a.id),
            EventKind::VerdictRecorded(v) => Some(v.sample),
            EventKind::Decided(d) => Some(d.sample),
            EventKind::Edited(e) => Some(e.sample),
            EventKind::Undone(u) => Some(u.sample),
            EventKind::NoiseScored(n) => Some(n.sample),
            EventKind::GenerationFailed(_)
            | EventKind::SettingsChanged(_)
            | EventKind::WeightChanged(_)
            | EventKind::AttributeWeightChanged(_)
            | EventKind::ConcurrencyChanged(_)
            | EventKind::UsageRecorded(_)
            | EventKind::RoundScored(_)
            | EventKind::RationalesAdded(_)
            | EventKind::JudgeScored(_)
            | EventKind::BatchPlanned(_)
            | EventKind::BatchUpdated(_)
            | EventKind::RelabelPolicyChanged(_) => None,
        }
    }

    /// Apply acknowledged events: the fold, the tallies and the queue move
    /// together, one sample at a time.
    pub fn apply_events(&mut self, events: &[Event]) {
        let sel_id = self
            .pending_select
            .take()
            .or_else(|| self.queue.get(self.review_sel));
        let mut take = self.project.take_relabel;
        let mut seeds_changed = false;
        let mut policy_changed = false;
        for ev in events {
            let touched = Self::touched(&ev.kind);
            seeds_changed |= touched
                .and_then(|id| self.project.sample(id))
                .is_some_and(|s| s.origin == Origin::Seed)
                || matches!(&ev.kind, EventKind::SampleAdded(a) if a.origin == Origin::Seed);
            if let Some(id) = touched
                && let Some(s) = self.project.sample(id)
            {
                self.tally.add(s, self.queue.judged().label(s, take), -1);
                self.map.forget(s);
                if self.queue_behind.is_none() {
                    self.queue.remove(id);
                }
            }
            self.project.apply(ev);
            match &ev.kind {
                EventKind::WeightChanged(w) => {
                    if let Some(c) = self.classes.iter_mut().find(|c| c.name == w.class) {
                        c.weight = w.weight;
                    }
                }
                EventKind::SettingsChanged(s) => self.settings = s.generation.clone(),
                // Every generated example's label may change: tallies and
                // the queue are rebuilt once, after the batch.
                EventKind::RelabelPolicyChanged(p) => {
                    policy_changed |= p.take_relabel != take;
                    take = p.take_relabel;
                }
                EventKind::ConcurrencyChanged(c) => self.concurrency = c.concurrency.max(1),
                EventKind::SampleAdded(a) => {
                    if a.origin == Origin::Seed {
                        self.seeds.push(a.id);
                    }
                    self.count_rejections(&a.provenance);
                }
                // Only this session writes the journal while the app runs.
                EventKind::UsageRecorded(u) if u.run == USAGE_RUN => {
                    self.journaled_usage.add(&u.usage)
                }
                EventKind::GenerationFailed(g) => {
                    self.failed += 1;
                    self.last_failure = Some(g.reason.clone());
                    self.count_rejections(&g.provenance);
                }
                // Read from the fold (`self.project`) where they are shown.
                EventKind::UsageRecorded(_)
                | EventKind::AttributeWeightChanged(_)
                | EventKind::VerdictRecorded(_)
                | EventKind::Decided(_)
                | EventKind::Edited(_)
                | EventKind::Undone(_)
                | EventKind::NoiseScored(_)
                | EventKind::RoundScored(_)
                | EventKind::RationalesAdded(_)
                | EventKind::JudgeScored(_)
                | EventKind::BatchPlanned(_)
                | EventKind::BatchUpdated(_) => {}
            }
            if let Some(id) = touched
                && let Some(s) = self.project.sample(id)
            {
                self.tally.add(s, self.queue.judged().label(s, take), 1);
                let text = matches!(
                    ev.kind,
                    EventKind::SampleAdded(_) | EventKind::Edited(_) | EventKind::Undone(_)
                );
                self.map.note(s, &self.classes, take, text);
                match &mut self.queue_behind {
                    Some(behind) => behind.push(id),
                    None => self.queue.insert(s, &self.project, &self.classes),
                }
            }
        }
        if policy_changed {
            self.rebuild_counts();
        }
        if seeds_changed {
            // New seed texts for the seed-similarity doubt signal; scores
            // already cached are refreshed as their samples change.
            self.queue.ctx = crate::augment::DoubtContext::from_state(&self.project);
        }
        self.follow_selection(sel_id);
        self.dirty = true;
    }

    /// Keep the selection on the same sample after the queue moved (or on
    /// the same row when the sample left the queue).
    /// Defer the review queue's updates (a key burst of decisions: the
    /// selection moves by sample id, so a stale order is read the same).
    pub fn defer_queue(&mut self) {
        self.queue_behind.get_or_insert_with(Vec::new);
    }

    /// Put every sample the deferred events touched in its place, the
    /// selection staying on its sample.
    pub fn catch_up_queue(&mut self) {
        let Some(mut ids) = self.queue_behind.take() else {
            return;
        };
        if ids.is_empty() {
            return;
        }
        let sel = self.queue.get(self.review_sel);
        ids.sort_unstable();
        ids.dedup();
        self.queue.reinsert_many(&ids, &self.project, &self.classes);
        self.follow_selection(sel);
    }

    pub fn follow_selection(&mut self, sel_id: Option<SampleId>) {
        if let Some(i) = sel_id.and_then(|id| self.queue.position(id)) {
            self.review_sel = i;
        }
        self.review_sel = self.review_sel.min(self.queue.len().saturating_sub(1));
    }

    /// The attribute values the Controls pane lists after its controls:
    /// `(dimension, value)` in config order.
    pub fn attribute_rows(&self) -> Vec<(&str, &str)> {
        self.attributes
            .iter()
            .flat_map(|(d, a)| a.values.keys().map(move |v| (d.as_str(), v.as_str())))
            .collect()
    }

    /// Rows of the Controls pane: the controls, then the attribute values.
    pub fn control_rows(&self) -> usize {
        Control::ALL.len() + self.attribute_rows().len()
    }

    /// Per-class target share of `target_count`, by weight.
    pub fn target_for(&self, class: &str) -> f64 {
        let total: f64 = self.classes.iter().map(|c| c.weight.max(0.0)).sum();
        let w = self
            .classes
            .iter()
            .find(|c| c.name == class)
            .map(|c| c.weight.max(0.0))
            .unwrap_or(0.0);
        if total <= 0.0 {
            0.0
        } else {
            self.settings.target_count as f64 * w / total
        }
    }

    /// LLM usage of the project: the journal's plus this session's part
    /// not journaled yet.
    pub fn total_usage(&self) -> Usage {
        let mut u = self.project.usage.clone();
        u.add(&self.live_usage.since(&self.journaled_usage));
        u
    }

    /// "3 failed (empty_reply)": this session's generation failures.
    pub fn failures_label(&self) -> Option<String> {
        (self.failed > 0).then(|| match &self.last_failure {
            Some(r) => format!("{} failed ({r})", self.failed),
            None => format!("{} failed", self.failed),
        })
    }

    /// The controls whose value set in the app differs from straddle.toml.
    pub fn differs_from_toml(&self) -> Vec<Control> {
        Control::ALL
            .into_iter()
            .filter(|c| {
                c.value(&self.settings, self.concurrency, self.project.take_relabel)
                    != c.value(
                        &self.toml.generation,
                        self.toml.concurrency,
                        self.project.take_relabel_config,
                    )
            })
            .collect()
    }

    /// The message to show: the newer of the last error and the last
    /// notice (`true` = error).
    pub fn message(&self) -> Option<(&str, bool)> {
        match (&self.last_error, &self.notice) {
            (Some(_), Some(n)) if self.notice_newer => Some((n.as_str(), false)),
            (Some(e), _) => Some((e.as_str(), true)),
            (None, Some(n)) => Some((n.as_str(), false)),
            (None, None) => None,
        }
    }

    /// When the screen must be redrawn for a countdown (a backoff in the
    /// status line or a stream row) to stay right; `None` when none is
    /// running, so an idle app does not wake.
    pub fn next_tick(&self, now: Instant) -> Option<Instant> {
        let engine = match &self.engine {
            EngineStatus::Backoff(b) => Some(b.until),
            EngineStatus::Idle
            | EngineStatus::Running
            | EngineStatus::Paused
            | EngineStatus::Blocked(_) => None,
        };
        let rows = self.streams.iter().filter_map(|r| r.retry_at);
        next_countdown_change(engine.into_iter().chain(rows), now)
    }

    /// Whether a pane is on screen at all (the map only once shown).
    pub fn pane_shown(&self, p: Pane) -> bool {
        p != Pane::Map || self.map.shown
    }

    /// Whether the screen is too small for all panes at once.
    pub fn compact(&self) -> bool {
        self.size.0 < 100 || self.size.1 < 30
    }
}
