//! The runtime: one tokio loop that selects over terminal input, store
//! acknowledgements and engine events, feeds them to `update`, runs the
//! effects and redraws only when something changed (at most ~30 fps; an
//! idle app sleeps in `select!` with no timer armed — the one timer besides
//! frames and usage polls is a once-a-second tick while a retry countdown
//! is on screen).
//!
//! Durability: the project's append side (`ProjectWriter`, no fold of its
//! own) is shared by a dedicated writer thread, which group-commits the
//! session's and usage appends, and the loop's key bursts
//! (`super::burst`): every terminal event already waiting is handled in
//! order, the decisions they record are staged and committed with one
//! write and one fsync, and only then is the frame drawn and the terminal
//! read again — so a decision is on disk before it is shown and before
//! any key read after that frame is handled. A key with other appends
//! ends its burst; while those are in flight the loop does not read the
//! terminal.
//!
//! One fold per process: `State::project`, updated from acknowledged
//! events only. Jobs (S3 round, training signals, export) get a snapshot
//! of it, never a re-read of the journal file.

use anyhow::Context as _;
use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture, Event,
    EventStream,
};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use futures_util::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use std::io::Stdout;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use crate::app::BackendFlags;
use crate::app::export::{ExportRequest, Source};
use crate::domain::{Event as JournalEvent, EventKind, ProjectConfig};
use crate::store::{Project, ProjectWriter};

use super::burst::{self, Burst, Step};
use super::config::UiConfig;
use super::driver::{Ask, Driver, DriverOut};
use super::state::{Effect, Init, Msg, State, TomlSettings};
use super::{update, view};

/// Shortest time between two frames.
const FRAME: Duration = Duration::from_millis(33);
/// How often live usage is polled while requests run.
const USAGE_EVERY: Duration = Duration::from_millis(500);

/// Who asked for an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A key press: the terminal is not read until it is acknowledged.
    Key,
    /// The generation session.
    Session,
    /// A `usage_recorded` event (outside the session's one-batch-at-a-time
    /// protocol).
    Usage,
}

struct StoreJob {
    kinds: Vec<EventKind>,
    origin: Origin,
}

struct StoreDone {
    origin: Origin,
    result: Result<Vec<JournalEvent>, String>,
}

/// Most appends committed together by the writer thread.
const GROUP_MAX: usize = 1024;

/// The journal's append side, shared by the writer thread and the loop's
/// key bursts. A burst holds it from its first staged decision to its
/// commit, so no other append can write (or fail to write) its decisions
/// in between.
type Shared = std::sync::Arc<std::sync::Mutex<ProjectWriter>>;

fn lock(w: &Shared) -> std::sync::MutexGuard<'_, ProjectWriter> {
    w.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The writer thread: owns the journal's append side, appends in order
/// (group commit), answers each job.
fn spawn_writer(
    project: Shared,
    done: mpsc::UnboundedSender<StoreDone>,
) -> (
    std::sync::mpsc::Sender<StoreJob>,
    std::thread::JoinHandle<()>,
) {
    let (tx, rx) = std::sync::mpsc::channel::<StoreJob>();
    let handle = std::thread::Builder::new()
        .name("straddle-journal".into())
        .spawn(move || {
            // Group commit: whatever queued while the last fsync ran is
            // written with one write and one fsync; each job is still its
            // own batch and is answered only once it is durable.
            while let Ok(first) = rx.recv() {
                let mut jobs = vec![first];
                while jobs.len() < GROUP_MAX
                    && let Ok(more) = rx.try_recv()
                {
                    jobs.push(more);
                }
                let origins: Vec<Origin> = jobs.iter().map(|j| j.origin).collect();
                let appended =
                    lock(&project).append_groups(jobs.into_iter().map(|j| j.kinds).collect());
                let results: Vec<Result<Vec<JournalEvent>, String>> = match appended {
                    Ok(groups) => groups.into_iter().map(Ok).collect(),
                    Err(e) => {
                        let msg = format!("{e:#}");
                        origins.iter().map(|_| Err(msg.clone())).collect()
                    }
                };
                for (origin, result) in origins.into_iter().zip(results) {
                    if done.send(StoreDone { origin, result }).is_err() {
                        return;
                    }
                }
            }
        })
        .expect("spawn the journal writer thread");
    (tx, handle)
}

/// Put the terminal back: raw mode off, main screen, mouse and paste off.
pub fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        DisableBracketedPaste,
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

/// Restores the terminal when dropped (normal exit and error paths).
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

fn setup_terminal() -> anyhow::Result<(Terminal<CrosstermBackend<Stdout>>, TerminalGuard)> {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        prev(info);
    }));
    enable_raw_mode().context("cannot switch the terminal to raw mode")?;
    let guard = TerminalGuard;
    execute!(
        std::io::stdout(),
        EnterAlternateScreen,
        EnableMouseCapture,
        EnableBracketedPaste
    )
    .context("cannot set up the terminal")?;
    let term = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    Ok((term, guard))
}

/// Open the project and run the app until the user quits.
pub fn run(dir: PathBuf, flags: BackendFlags, ui: UiConfig) -> anyhow::Result<()> {
    let project = Project::open(&dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = rt.block_on(run_async(project, flags, ui));
    // Every append is durable and the terminal restored by now. Dropping
    // the runtime would wait for its blocking jobs (a judges' measure or an
    // S3 fit on a big project runs for minutes): they write only through
    // the journal writer, which has ended, so they are left to the OS.
    rt.shutdown_background();
    result
}

async fn run_async(project: Project, flags: BackendFlags, ui: UiConfig) -> anyhow::Result<()> {
    let mut config = project.config().clone();
    let toml = TomlSettings {
        generation: config.generation.clone(),
        concurrency: config.backend.max_concurrency,
    };
    // Set in the app before (journaled): kept across restarts; a flag
    // given now wins.
    if let Some(n) = project.state().concurrency {
        config.backend.max_concurrency = n.max(1);
    }
    flags.apply(&mut config.backend);
    let project_embeddings = config.embeddings.clone();
    let project_cache = project.cache_dir();
    let dir = project.dir().to_path_buf();
    let report = project.load_report().clone();
    let classes = project.classes();
    let settings = project.generation_settings();
    let prompts_dir = project.prompts_dir();
    let driver = Driver::new(&config, project.cache_dir(), &prompts_dir, &flags);
    let (state, writer_side) = project.into_writer()?;
    let mut st = State::new(Init {
        project: state,
        project_name: config.task.name.clone(),
        classes,
        settings,
        concurrency: config.backend.max_concurrency,
        backend: config.backend.base_url.clone(),
        model: config.backend.model.clone(),
        ui,
    });
    st.attributes = config.attributes.clone();
    st.toml = toml;
    // The relabeler this session uses (command-line model included): a
    // judge report made for another one is not used.
    st.relabel_fingerprint = crate::augment::Templates::load(&prompts_dir).ok().map(|t| {
        crate::augment::generator::relabel_fingerprint(&config.backend.model, &t, &config.relabel)
    });
    let differ = st.differs_from_toml();
    if !differ.is_empty() {
        let names: Vec<&str> = differ.iter().map(|c| c.label()).collect();
        st.notice = Some(format!(
            "{} set in the app before (kept in the journal) differ from straddle.toml (* in Controls)",
            names.join(", ")
        ));
    }
    if st.last_error.is_none() && !report.skipped.is_empty() {
        st.last_error = Some(format!(
            "journal: {} unreadable line(s) skipped (first: line {})",
            report.skipped.len(),
            report.skipped[0].line
        ));
    }
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let journal: Shared = std::sync::Arc::new(std::sync::Mutex::new(writer_side));
    let (store_tx, writer) = spawn_writer(journal.clone(), done_tx);

    let (bg_tx, bg_rx) = mpsc::unbounded_channel();
    let (mut term, guard) = setup_terminal()?;
    let size = term.size()?;
    st.size = (size.width, size.height);
    let mut app = App {
        st,
        store_tx,
        journal,
        done_rx,
        key_acks: 0,
        session_acks: 0,
        usage_acks: 0,
        driver,
        config,
        dir,
        bg_tx,
        bg_rx,
        map_worker: std::sync::Arc::new(super::map::MapWorker::new(
            project_embeddings,
            project_cache,
        )),
        judges_due: None,
        judges_model: Default::default(),
        snapshot: std::sync::Weak::new(),
    };
    let result = app.run(&mut term).await;
    let App {
        store_tx,
        st,
        driver,
        ..
    } = app;
    drop(store_tx);
    let _ = writer.join();
    drop(term);
    drop(guard);
    // Every append is durable (the writer has answered all and ended) and
    // the terminal is back: the state of a big project (hundreds of MB in
    // many small allocations) would take a second or two to free piece by
    // piece right before the process ends and the OS takes it back at once.
    std::mem::forget(st);
    drop(driver);
    result
}

struct App {
    st: State,
    store_tx: std::sync::mpsc::Sender<StoreJob>,
    /// The journal's append side, for key bursts.
    journal: Shared,
    done_rx: mpsc::UnboundedReceiver<StoreDone>,
    /// Appends from keys not yet acknowledged.
    key_acks: usize,
    session_acks: usize,
    usage_acks: usize,
    driver: Driver,
    /// With the command line's backend overrides.
    config: ProjectConfig,
    dir: PathBuf,
    /// Results of background jobs (S3 rounds, signals) as messages.
    bg_tx: mpsc::UnboundedSender<Msg>,
    bg_rx: mpsc::UnboundedReceiver<Msg>,
    /// The map's vector jobs (embedder loaded once).
    map_worker: std::sync::Arc<super::map::MapWorker>,
    /// When to start the judges' measure asked for (`chosen::DEBOUNCE`
    /// after the ask; the snapshot is taken then).
    judges_due: Option<Instant>,
    /// The judges' small model, built by the first measure and kept for the
    /// next ones (the vectors it computed are in the project's vector file,
    /// not here); its embedder's weights are released between measures
    /// (`ProjectEncoder::release`).
    judges_model: JudgesModel,
    /// The lean snapshot the running jobs share (`app::snapshot`), while
    /// any holds it: jobs asked for at the same state read one copy.
    snapshot: std::sync::Weak<crate::domain::ProjectState>,
}

type JudgesModel =
    std::sync::Arc<std::sync::Mutex<Option<std::sync::Arc<crate::app::small_model::Chosen>>>>;

enum Input {
    Term(Option<std::io::Result<Event>>),
    Store(StoreDone),
    Engine(crate::engine::EngineEvent),
    /// Texts embedded for the denoiser.
    Embedded(crate::app::embedding::Embedded),
    Exported(Result<String, String>),
    /// A background job's answer.
    Background(Msg),
    Frame,
    Usage,
    /// A countdown on screen changed.
    Tick,
    /// The judges' measure is due.
    MeasureJudges,
}

impl From<super::driver::Incoming> for Input {
    fn from(i: super::driver::Incoming) -> Input {
        match i {
            super::driver::Incoming::Engine(e) => Input::Engine(e),
            super::driver::Incoming::Embedded(e) => Input::Embedded(e),
        }
    }
}

impl App {
    async fn run(&mut self, term: &mut Terminal<CrosstermBackend<Stdout>>) -> anyhow::Result<()> {
        let mut input = EventStream::new();
        let (export_tx, mut export_rx) = mpsc::unbounded_channel();
        let mut last_draw = Instant::now() - FRAME;
        let mut usage_timer = tokio::time::interval(USAGE_EVERY);
        usage_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut quitting = false;
        let mut was_busy = false;
        // Jobs the app starts with (the judges' measure).
        let fx = update(&mut self.st, Msg::Opened);
        self.run_effects_from(fx, Origin::Key, &export_tx);
        // A key (or the store's answer to one) is drawn at once: the frame
        // limit is for the engine's stream of events, not for the person.
        let mut urgent = false;
        loop {
            if self.st.dirty && (urgent || last_draw.elapsed() >= FRAME) {
                term.draw(|f| view::render(f, &self.st))?;
                self.st.dirty = false;
                last_draw = Instant::now();
            }
            if self.st.quit && !quitting {
                quitting = true;
                if let Some(k) = self.driver.shutdown() {
                    self.append(vec![k], Origin::Usage);
                }
            }
            if quitting && self.key_acks == 0 && self.session_acks == 0 && self.usage_acks == 0 {
                break;
            }
            let busy = self.driver.busy();
            if was_busy && !busy {
                // One last look at the usage once requests stop.
                self.handle(Input::Usage, &export_tx)?;
            }
            was_busy = busy;
            let frame_due = self.st.dirty.then(|| last_draw + FRAME);
            // Only while a retry countdown is on screen: once a second
            // at most, and never when idle.
            let tick = self.st.next_tick(Instant::now());
            let read_keys = self.key_acks == 0 && !quitting;
            let judges_due = self.judges_due.filter(|_| !quitting);
            let next = tokio::select! {
                Some(d) = self.done_rx.recv() => Input::Store(d),
                ev = input.next(), if read_keys => Input::Term(ev),
                Some(e) = self.driver.recv() => Input::from(e),
                Some(r) = export_rx.recv() => Input::Exported(r),
                Some(m) = self.bg_rx.recv() => Input::Background(m),
                _ = sleep_until(frame_due), if frame_due.is_some() => Input::Frame,
                _ = usage_timer.tick(), if busy => Input::Usage,
                _ = sleep_until(tick), if tick.is_some() => Input::Tick,
                _ = sleep_until(judges_due), if judges_due.is_some() => Input::MeasureJudges,
            };
            urgent = matches!(
                &next,
                Input::Term(_)
                    | Input::Store(StoreDone {
                        origin: Origin::Key,
                        ..
                    })
            );
            match next {
                Input::Term(Some(Ok(ev))) => {
                    // The loop task's own waker: a terminal poll that finds
                    // nothing waiting must leave a wake-up for this task.
                    let waker =
                        std::future::poll_fn(|cx| std::task::Poll::Ready(cx.waker().clone())).await;
                    self.key_burst(ev, &mut input, &waker, &export_tx)?
                }
                next => self.handle(next, &export_tx)?,
            }
            // Drain whatever else is queued before drawing.
            while let Ok(d) = self.done_rx.try_recv() {
                self.handle(Input::Store(d), &export_tx)?;
            }
            while let Some(e) = self.driver.try_recv() {
                self.handle(Input::from(e), &export_tx)?;
            }
        }
        Ok(())
    }

    fn handle(
        &mut self,
        input: Input,
        export_tx: &mpsc::UnboundedSender<Result<String, String>>,
    ) -> anyhow::Result<()> {
        match input {
            Input::Term(None) => self.st.quit = true,
            Input::Term(Some(Err(e))) => return Err(e).context("reading the terminal"),
            Input::Term(Some(Ok(ev))) => {
                if let Some(msg) = term_msg(ev) {
                    let fx = update(&mut self.st, msg);
                    self.run_effects_from(fx, Origin::Key, export_tx);
                }
            }
            Input::Store(done) => {
                let n = self.acks(done.origin);
                *n = n.saturating_sub(1);
                let (msg, events) = match done.result {
                    Ok(events) => (Msg::Appended(events.clone()), Some(events)),
                    Err(e) => (Msg::AppendFailed(e), None),
                };
                let fx = update(&mut self.st, msg);
                self.run_effects_from(fx, Origin::Key, export_tx);
                let ours = done.origin == Origin::Session;
                let out =
                    self.driver
                        .on_appended(&self.st, events.as_deref().unwrap_or_default(), ours);
                self.apply_driver(out, export_tx);
            }
            Input::Engine(ev) => {
                let out = self.driver.on_engine_event(&self.st, ev);
                self.apply_driver(out, export_tx);
            }
            Input::Embedded(e) => {
                let out = self.driver.on_embedded(&self.st, e);
                self.apply_driver(out, export_tx);
            }
            Input::Exported(r) => {
                update(&mut self.st, Msg::Exported(r));
            }
            Input::Background(m) => {
                let fx = update(&mut self.st, m);
                self.run_effects_from(fx, Origin::Key, export_tx);
                release_freed_pages();
            }
            Input::Usage => {
                let (usage, req_per_s) = self.driver.usage();
                update(&mut self.st, Msg::Usage { usage, req_per_s });
            }
            Input::Tick => {
                update(&mut self.st, Msg::Tick);
            }
            Input::MeasureJudges => {
                self.judges_due = None;
                self.spawn_measure_judges();
            }
            Input::Frame => {}
        }
        Ok(())
    }

    /// A key burst (`super::burst`): `first` and every terminal event
    /// already waiting behind it, each handled in the state the previous
    /// one left; their decisions committed with one write and one fsync
    /// before anything else runs, is drawn, or is read.
    fn key_burst(
        &mut self,
        first: Event,
        input: &mut EventStream,
        waker: &std::task::Waker,
        export_tx: &mpsc::UnboundedSender<Result<String, String>>,
    ) -> anyhow::Result<()> {
        let journal = self.journal.clone();
        let mut journal = lock(&journal);
        let mut burst = Burst::default();
        let start = Instant::now();
        let mut next = Some(first);
        // What ended the burst from the terminal's side (closed, an error).
        let mut after = None;
        while let Some(ev) = next.take() {
            if let Some(msg) = term_msg(ev)
                && burst.handle(&mut self.st, msg, &mut *journal) == Step::End
            {
                break;
            }
            if burst.keys() >= burst::MAX_KEYS || start.elapsed() >= burst::MAX_TIME {
                break;
            }
            // Only what is already waiting: never wait for more. Polled
            // with the loop task's waker, not a no-op one: crossterm's
            // stream starts one wake-up thread when nothing is waiting and
            // no other until that one has fired, so a no-op waker there
            // would leave the next key unread until something else woke
            // the loop (the app looked frozen).
            let mut cx = std::task::Context::from_waker(waker);
            match input.poll_next_unpin(&mut cx) {
                std::task::Poll::Ready(Some(Ok(ev))) => next = Some(ev),
                std::task::Poll::Ready(other) => after = Some(Input::Term(other)),
                std::task::Poll::Pending => {}
            }
        }
        let done = tokio::task::block_in_place(|| burst.finish(&mut self.st, &mut *journal));
        drop(journal);
        if done.events.len() > 1 {
            tracing::debug!(
                "{} keys: {} decisions in one commit",
                done.keys,
                done.events.len()
            );
        }
        if !done.events.is_empty() {
            let out = self.driver.on_appended(&self.st, &done.events, false);
            self.apply_driver(out, export_tx);
        }
        self.run_effects_from(done.effects, Origin::Key, export_tx);
        match after {
            Some(input) => self.handle(input, export_tx),
            None => Ok(()),
        }
    }

    fn apply_driver(
        &mut self,
        out: DriverOut,
        export_tx: &mpsc::UnboundedSender<Result<String, String>>,
    ) {
        for m in out.msgs {
            let fx = update(&mut self.st, m);
            self.run_effects_from(fx, Origin::Key, export_tx);
        }
        for kinds in out.appends {
            self.append(kinds, Origin::Session);
        }
        if let Some(k) = out.usage {
            self.append(vec![k], Origin::Usage);
        }
    }

    /// Unacknowledged appends from `origin`.
    fn acks(&mut self, origin: Origin) -> &mut usize {
        match origin {
            Origin::Key => &mut self.key_acks,
            Origin::Session => &mut self.session_acks,
            Origin::Usage => &mut self.usage_acks,
        }
    }

    fn append(&mut self, kinds: Vec<EventKind>, origin: Origin) {
        if kinds.is_empty() {
            return;
        }
        *self.acks(origin) += 1;
        if self.store_tx.send(StoreJob { kinds, origin }).is_err() {
            *self.acks(origin) -= 1;
            update(
                &mut self.st,
                Msg::AppendFailed("the journal writer stopped".into()),
            );
        }
    }

    fn run_effects_from(
        &mut self,
        fx: Vec<Effect>,
        origin: Origin,
        export_tx: &mpsc::UnboundedSender<Result<String, String>>,
    ) {
        for e in fx {
            let ask = match e {
                Effect::Append(kinds) => {
                    self.append(kinds, origin);
                    continue;
                }
                Effect::Export(req) => {
                    self.spawn_export(req, export_tx.clone());
                    continue;
                }
                Effect::Quit => {
                    self.st.quit = true;
                    continue;
                }
                Effect::RunRound { round } => {
                    self.spawn_round(round);
                    continue;
                }
                Effect::MeasureJudges => {
                    self.judges_due
                        .get_or_insert(Instant::now() + super::chosen::DEBOUNCE);
                    continue;
                }
                Effect::CheckGate => {
                    self.spawn_gate();
                    continue;
                }
                Effect::ComputeSignals => {
                    self.spawn_signals();
                    continue;
                }
                Effect::Map(job) => {
                    self.spawn_map(job);
                    continue;
                }
                Effect::StartGeneration => Ask::Start,
                Effect::PauseGeneration => Ask::Pause,
                Effect::ResumeGeneration => Ask::Resume,
                Effect::StopGeneration => Ask::Stop,
                Effect::SetConcurrency(n) => Ask::SetConcurrency(n),
                Effect::Relabel(id) => Ask::RelabelAfterEdit(id),
                Effect::Extrapolate {
                    round,
                    mistakes,
                    count,
                } => Ask::Extrapolate {
                    round,
                    mistakes,
                    count,
                },
            };
            let out = self.driver.ask(&self.st, ask);
            self.apply_driver(out, export_tx);
        }
    }
}

/// The message a terminal event becomes (`None`: not one the app uses).
fn term_msg(ev: Event) -> Option<Msg> {
    Some(match ev {
        Event::Key(k) => Msg::Key(k),
        Event::Mouse(m) => Msg::Mouse(m),
        Event::Paste(p) => Msg::Paste(p),
        Event::Resize(w, h) => Msg::Resize(w, h),
        _ => return None,
    })
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// Run a background job on one of tokio's blocking threads; once it has
/// answered and dropped what it captured, the pages that thread freed go
/// back to the system ([`release_freed_pages`]). Every job goes through
/// here.
fn spawn_job(job: impl FnOnce() + Send + 'static) {
    tokio::task::spawn_blocking(move || {
        job();
        release_freed_pages();
    });
}

/// Give back to the system the pages the calling thread's heap no longer
/// uses (`mi_collect(true)`). A purge delay of 0 (`src/main.rs`) is not
/// enough: mimalloc returns a page only once its owner has taken back the
/// blocks other threads freed in it (a job drops the snapshot the UI
/// thread built, the UI thread drops the results a job built), and a
/// thread at rest takes back nothing. Called by each job's thread when it
/// ends and by the UI thread after each job's answer: on the 200k project
/// RSS at rest after the judges' measure went from 236 to 214 MB, after
/// the map from 293 to 285 MB (`scripts/rss-session.sh`). A no-op when
/// mimalloc is not the allocator (its heap is then empty).
fn release_freed_pages() {
    // SAFETY: a collection of the calling thread's mimalloc heap.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

impl App {
    /// Export a snapshot of the state on a blocking thread with the
    /// shared export code; nothing is printed (the screen stays intact).
    fn spawn_export(&self, req: ExportRequest, tx: mpsc::UnboundedSender<Result<String, String>>) {
        let (dir, config) = (self.dir.clone(), self.config.clone());
        let state =
            crate::app::snapshot::lean(&self.st.project, crate::app::snapshot::Keep::Provenance);
        spawn_job(move || {
            let mut req = req;
            if !req.out.is_absolute() {
                req.out = dir.join(&req.out);
            }
            let src = Source {
                dir: &dir,
                config: &config,
                state: &state,
            };
            let r = match crate::app::export::export_from(&src, &req) {
                Ok(report) => {
                    tracing::info!("tui export: {}", report.summary());
                    Ok(report.summary())
                }
                Err(e) => {
                    tracing::warn!("tui export failed: {e:#}");
                    Err(format!("{e:#}"))
                }
            };
            let _ = tx.send(r);
        });
    }

    /// Train, score and compute signals on a blocking thread, on a
    /// snapshot of the state (every acknowledged event), with the small
    /// model the project's settings choose (the embedder loads there).
    fn spawn_round(&mut self, round: u32) {
        let job = self.model_job();
        let tx = self.bg_tx.clone();
        spawn_job(move || {
            let r = job.chosen().and_then(|(chosen, note)| {
                let mut r =
                    crate::app::training::round(&chosen.model(), &job.state, &job.names, round)?;
                r.note = note;
                Ok(Box::new(r))
            });
            let _ = tx.send(Msg::RoundDone(r));
        });
    }

    /// Sentence vectors and projected points for the map on a blocking
    /// thread; each chunk comes back as a `Msg::Map`.
    /// The judges' encoder names the model's vector file, so a map whose
    /// vectors are all stored loads no weights.
    fn spawn_map(&self, job: super::map::MapJob) {
        use crate::classify::TextEncoder;
        let worker = self.map_worker.clone();
        let tx = self.bg_tx.clone();
        let model_id = (self.judges_model.lock().ok()).and_then(|m| {
            m.as_ref()
                .and_then(|c| c.encoder.as_ref().map(|e| e.name()))
        });
        spawn_job(move || {
            worker.run(job, model_id.as_deref(), &|r| {
                let _ = tx.send(Msg::Map(r));
            });
        });
    }

    /// Training signals of the review pool on a blocking thread, with the
    /// chosen small model.
    fn spawn_signals(&mut self) {
        // Not a snapshot of the state: the review pool (its texts shared).
        let job = self.model_job_without_state();
        let pool = crate::classify::pool::SharedPool::of(&self.st.project, &job.names);
        let tx = self.bg_tx.clone();
        spawn_job(move || {
            // The judges' disagreement (`JUDGES_DISAGREE`) is not computed
            // here: the queue reads it from the opinions the judges'
            // measure put in the state (`queue::JudgeView`).
            let r = job.chosen().and_then(|(chosen, _)| {
                crate::app::training::pool_signals(&chosen.model(), &pool, &job.names)
            });
            let _ = tx.send(Msg::Signals(r));
        });
    }

    /// The data gate for the export dialog (`app::data_gate::run`, the
    /// one `straddle export` runs) on a blocking thread; `Msg::Gate`.
    fn spawn_gate(&mut self) {
        let job = self.model_job();
        let tx = self.bg_tx.clone();
        spawn_job(move || {
            let r =
                crate::app::data_gate::run(&job.config, &job.cache_dir, &job.settings, &job.state)
                    .map(|(g, _)| g.map(Box::new))
                    .map_err(|e| format!("{e:#}"));
            let _ = tx.send(Msg::Gate(r));
        });
    }

    /// Measure the judges on a snapshot on a blocking thread
    /// (`app::judges::measure_for_review`, no LLM request);
    /// `Msg::JudgesMeasured`.
    fn spawn_measure_judges(&mut self) {
        // Not the state: what the judges read of it (`JudgeInput`).
        let classes: Vec<String> = self.config.classes.iter().map(|c| c.name.clone()).collect();
        let input = crate::app::judges::JudgeInput::from_state(&self.st.project, &classes, true);
        let job = self.model_job_without_state();
        let tx = self.bg_tx.clone();
        let prompts = self.dir.join("prompts");
        let model = self.judges_model.clone();
        spawn_job(move || {
            let kept = model.lock().ok().and_then(|m| m.clone());
            let r = match kept {
                Some(c) => Ok(c),
                None => crate::app::small_model::choose_for(
                    &job.config,
                    &job.cache_dir,
                    &job.settings,
                    job.names.len(),
                    crate::app::small_model::ModelChoice::Embedding,
                    true,
                )
                .map(std::sync::Arc::new)
                .inspect(|c| {
                    if let Ok(mut m) = model.lock() {
                        *m = Some(c.clone());
                    }
                }),
            };
            let enc: Result<&dyn crate::classify::TextEncoder, String> = match &r {
                Ok(c) => c
                    .encoder
                    .as_ref()
                    .map(|e| e as &dyn crate::classify::TextEncoder)
                    .ok_or_else(|| "needs an embedder".to_string()),
                Err(e) => Err(format!("needs an embedder: {e:#}")),
            };
            let linear = crate::app::small_model::configs_for(&job.settings, job.names.len()).1;
            let m =
                crate::app::judges::measure_for_review(&input, &job.config, &prompts, enc, &linear)
                    .map(|(review, record)| Box::new(super::chosen::Measured { review, record }))
                    .map_err(|e| format!("{e:#}"));
            // Idle until the next measure: the weights go (the next one
            // loads them again in ~0.1 s, or shares the copy a running job
            // holds); the vectors computed stay.
            if let Ok(Some(e)) = r.as_ref().map(|c| c.encoder.as_ref()) {
                e.release();
            }
            let _ = tx.send(Msg::JudgesMeasured(m));
        });
    }

    /// [`Self::model_job`] for a job that reads no state (the state is
    /// left empty).
    fn model_job_without_state(&self) -> ModelJob {
        ModelJob {
            config: self.config.clone(),
            cache_dir: self.dir.join("cache"),
            state: Default::default(),
            settings: self.st.settings.clone(),
            names: self.st.classes.iter().map(|c| c.name.clone()).collect(),
        }
    }

    /// What a small-model job needs: a snapshot of the state and settings.
    /// The state is the lean copy (`app::snapshot`), shared with the jobs
    /// still running on the same state.
    fn model_job(&mut self) -> ModelJob {
        let st = &self.st.project;
        let state = match self.snapshot.upgrade() {
            Some(s)
                if s.events == st.events
                    && s.last_event_id == st.last_event_id
                    && s.take_relabel == st.take_relabel =>
            {
                s
            }
            _ => {
                let s = std::sync::Arc::new(crate::app::snapshot::lean(
                    st,
                    crate::app::snapshot::Keep::Judging,
                ));
                self.snapshot = std::sync::Arc::downgrade(&s);
                s
            }
        };
        ModelJob {
            config: self.config.clone(),
            cache_dir: self.dir.join("cache"),
            state,
            settings: self.st.settings.clone(),
            names: self.st.classes.iter().map(|c| c.name.clone()).collect(),
        }
    }
}

/// A small-model job's snapshot.
struct ModelJob {
    config: ProjectConfig,
    cache_dir: PathBuf,
    state: std::sync::Arc<crate::domain::ProjectState>,
    settings: crate::domain::GenerationSettings,
    names: Vec<String>,
}

impl ModelJob {
    /// The project's small model (embedding by default, the n-gram model
    /// with a note when no embedder is configured or installed). Its
    /// vectors come from the project's vector store, shared with the app's
    /// other jobs; new ones are added to it (best effort).
    fn chosen(&self) -> Result<(crate::app::small_model::Chosen, Option<String>), String> {
        let chosen = crate::app::small_model::choose_for(
            &self.config,
            &self.cache_dir,
            &self.settings,
            self.names.len(),
            crate::app::small_model::ModelChoice::Auto,
            true,
        )
        .map_err(|e| format!("{e:#}"))?;
        let note = chosen.note.clone();
        Ok((chosen, note))
    }
}

#[cfg(test)]
mod tests {
    use libmimalloc_sys as mi;

    /// The process's resident memory, in MB (mimalloc's own figure is an
    /// estimate from committed memory, which a purge does not lower).
    fn rss_mb() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
            .unwrap();
        kb / 1024
    }

    /// Why every job's answer is followed by [`super::release_freed_pages`]:
    /// small blocks one thread allocated and another freed (a snapshot the
    /// UI thread built and a job dropped) stay resident until their owner
    /// collects, however long it stays idle; once it does, they go.
    #[test]
    fn blocks_freed_by_another_thread_go_back_once_their_owner_collects() {
        const N: usize = 1_000_000;
        let (blocks_tx, blocks_rx) = std::sync::mpsc::channel::<Vec<usize>>();
        let (freed_tx, freed_rx) = std::sync::mpsc::channel::<()>();
        let (collected_tx, collected_rx) = std::sync::mpsc::channel::<()>();
        let start = rss_mb();
        let owner = std::thread::spawn(move || {
            // SAFETY: plain allocations, each freed once below.
            let blocks = (0..N).map(|_| unsafe { mi::mi_malloc(48) } as usize);
            blocks_tx.send(blocks.collect()).unwrap();
            freed_rx.recv().unwrap();
            super::release_freed_pages();
            collected_tx.send(()).unwrap();
            // Stay alive: an exiting thread hands its pages back anyway.
            freed_rx.recv().ok();
        });
        let blocks = blocks_rx.recv().unwrap();
        drop(blocks_rx);
        let allocated = rss_mb();
        for b in blocks {
            // SAFETY: allocated by `mi_malloc` above, freed once.
            unsafe { mi::mi_free(b as *mut std::ffi::c_void) };
        }
        let freed = rss_mb();
        freed_tx.send(()).unwrap();
        collected_rx.recv().unwrap();
        let collected = rss_mb();
        drop(freed_tx);
        owner.join().unwrap();
        let grown = allocated.saturating_sub(start);
        let figures =
            format!("{start} -> {allocated} -> freed {freed} -> collected {collected} MB");
        assert!(grown >= 40, "{figures}");
        assert!(freed + grown / 2 >= allocated, "freed at once: {figures}");
        assert!(collected + grown / 2 <= freed, "not given back: {figures}");
    }
}
