//! The async scheduler every LLM request goes through.
//!
//! ```text
//!  EngineHandle ──submit/cancel/pause/set_*──▶ scheduler task ──spawn──▶ one task per attempt
//!        ▲                                        │  (queue, caps,          │ (HTTP via LlmClient,
//!        └────── usage()/stats() (shared) ────────┤   buckets, retries)     │  deltas straight out)
//!                                                 ▼                         ▼
//!                   mpsc::UnboundedReceiver<EngineEvent>  (Started, Delta, Backoff, Finished, Failed, Limit)
//! ```
//!
//! # Using it
//!
//! ```no_run
//! # async fn demo(backend: straddle::domain::BackendConfig) -> anyhow::Result<()> {
//! use straddle::engine::{Engine, EngineEvent, Job};
//! use straddle::llm::{ChatRequest, Message, ResponseCache};
//! let (engine, mut events) = Engine::start(&backend, Some(ResponseCache::new("proj/cache")))?;
//! let id = engine.submit(Job::new(ChatRequest::new(vec![Message::user("hi")]), 42));
//! while let Some(ev) = events.recv().await {
//!     match ev {
//!         EngineEvent::Delta { text, .. } => { /* text so far */ }
//!         EngineEvent::Finished { tag, response, .. } => { assert_eq!(tag, 42); let _ = response.text; break }
//!         EngineEvent::Failed { reason, message, .. } => { eprintln!("{reason}: {message}"); break }
//!         EngineEvent::Backoff { reason, wait, .. } => eprintln!("{reason}, retry in {wait:?}"),
//!         EngineEvent::Started { .. } | EngineEvent::Limit { .. } => {}
//!     }
//! }
//! # let _ = id; Ok(()) }
//! ```
//!
//! # Guarantees
//!
//! * Every submitted job ends in exactly one [`EngineEvent::Finished`] or
//!   [`EngineEvent::Failed`]; its `Started`/`Delta` events come before it.
//!   A job cancelled after its answer already arrived still finishes.
//!   A retry is announced by a [`EngineEvent::Backoff`] (why, which
//!   attempt, how long until it goes out) before its `Started`.
//! * At most `concurrency` requests are in flight. With `adaptive = true`
//!   in `[backend]` (the default) fewer: the engine finds the server's
//!   real parallelism (see `limits::AdaptiveLimit`: it starts at one,
//!   grows while latency stays flat or throughput grows, shrinks when
//!   latency rises without throughput, when streams are cut short and on
//!   timeouts, 5xx and 429s) and reports each change of the limit as an
//!   [`EngineEvent::Limit`] with its [`LimitReason`]. Fixed
//!   (`adaptive = false`): the cap, halved on each 429 and grown back by
//!   one per window of successes, no `Limit` events.
//! * `requests_per_minute` / `tokens_per_minute` are token buckets with
//!   about one second of burst; tokens are estimated before a request
//!   (prompt characters / 4 + `max_tokens`) and corrected after.
//! * 429: every dispatch holds for the server's `Retry-After` (seconds,
//!   HTTP-date, `retry-after-ms`) or an exhausted `x-ratelimit-*` budget's
//!   reset time, else for the backoff. 5xx, connection errors, timeouts,
//!   truncated streams, error objects and malformed replies are retried
//!   with exponential backoff and jitter, up to `max_retries` times.
//!   401/403/404/other 4xx fail at once.
//! * Cache hits (see [`ResponseCache`]) finish without HTTP and without
//!   using rate-limit budget; network answers are stored.
//! * [`Sampling`] set with [`EngineHandle::set_sampling`] fills the unset
//!   fields of every request dispatched afterwards (job values win), and
//!   [`EngineHandle::set_concurrency`] applies to the next dispatch: live
//!   steering changes the next request, never one in flight.
//! * Pause stops dispatching and keeps the queue; requests in flight
//!   finish. Cancel ends queued jobs at once and aborts running ones (the
//!   connection is dropped).
//! * Dropping every handle lets the queue drain, then the task ends;
//!   dropping the receiver cancels everything.
//! * Embeddings are a second job kind ([`EngineHandle::embed`]): batches
//!   of texts to `/embeddings`, under the same limits, retries, usage and
//!   cache (one entry per text), answered to the caller instead of as
//!   events.

mod embed;
pub mod failures;
mod limits;
pub use limits::LimitReason;
mod scheduler;
mod stats;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::domain::{BackendConfig, Usage};
pub use crate::llm::FailReason;
use crate::llm::{Capabilities, ChatRequest, ChatResponse, LlmClient, ResponseCache};
pub use failures::FailureTally;

/// Id the engine assigns to a submitted job (unique per engine, from 1).
pub type JobId = u64;

/// A request to run, with an opaque `tag` the caller uses to map events
/// back to its own bookkeeping (a sample id, a prompt index, …).
#[derive(Debug, Clone)]
pub struct Job {
    pub request: ChatRequest,
    pub tag: u64,
}

impl Job {
    pub fn new(request: ChatRequest, tag: u64) -> Job {
        Job { request, tag }
    }
}

/// What the engine reports. Every event names the job and its tag.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    /// An attempt went out (`attempt` counts from 0; retries send it again,
    /// and the next `Delta` starts the text over). Not sent for cache hits.
    Started { id: JobId, tag: u64, attempt: u32 },
    /// The text of the first choice so far: one per network read, so one
    /// per token from a real server and one per burst from a fast one.
    Delta { id: JobId, tag: u64, text: String },
    /// The answer (`response.cached` when it came from the cache);
    /// `latency` of the successful attempt (zero for cache hits).
    Finished {
        id: JobId,
        tag: u64,
        response: ChatResponse,
        latency: Duration,
    },
    /// An attempt failed and the job waits before it is sent again.
    /// Sent once per retry, before that retry's `Started`.
    Backoff {
        id: JobId,
        tag: u64,
        /// Why the last attempt failed.
        reason: FailReason,
        /// Its HTTP status, if it got one (e.g. 503).
        status: Option<u16>,
        /// The attempt that will go out next (the `attempt` of the coming
        /// `Started`, so 1 for the first retry); at most `max_retries`.
        attempt: u32,
        /// The backend's `max_retries`.
        max_retries: u32,
        /// How long until the retry may go out: the server's
        /// `Retry-After` or the backoff delay, or longer while a
        /// rate-limit hold keeps every dispatch waiting.
        wait: Duration,
    },
    /// Given up: the reason of the last attempt, a message saying what
    /// happened (and how many attempts were made), the raw reply if any.
    Failed {
        id: JobId,
        tag: u64,
        reason: FailReason,
        message: String,
        raw: Option<String>,
    },
    /// The adaptive limit on requests in flight changed (or its reason
    /// did): not about a job (id and tag 0). Only with `adaptive = true`;
    /// the first one comes before the first dispatch, and a change a reply
    /// caused comes before that reply's `Finished`/`Failed`/`Backoff`.
    Limit { limit: usize, reason: LimitReason },
}

impl EngineEvent {
    pub fn id(&self) -> JobId {
        match self {
            EngineEvent::Started { id, .. }
            | EngineEvent::Delta { id, .. }
            | EngineEvent::Backoff { id, .. }
            | EngineEvent::Finished { id, .. }
            | EngineEvent::Failed { id, .. } => *id,
            EngineEvent::Limit { .. } => 0,
        }
    }
    pub fn tag(&self) -> u64 {
        match self {
            EngineEvent::Started { tag, .. }
            | EngineEvent::Delta { tag, .. }
            | EngineEvent::Backoff { tag, .. }
            | EngineEvent::Finished { tag, .. }
            | EngineEvent::Failed { tag, .. } => *tag,
            EngineEvent::Limit { .. } => 0,
        }
    }
    /// `Finished` or `Failed`: the last event of its job.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            EngineEvent::Finished { .. } | EngineEvent::Failed { .. }
        )
    }
}

/// Sampling defaults applied at dispatch to requests that leave a field
/// unset (steering from the controls pane).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sampling {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u32>,
    pub seed: Option<u64>,
    /// Extra body fields, added where the request's `extra` lacks them.
    pub extra: Map<String, Value>,
}

impl Sampling {
    fn apply(&self, req: &mut ChatRequest) {
        req.temperature = req.temperature.or(self.temperature);
        req.top_p = req.top_p.or(self.top_p);
        req.max_tokens = req.max_tokens.or(self.max_tokens);
        req.seed = req.seed.or(self.seed);
        for (k, v) in &self.extra {
            req.extra.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

/// Knobs that are not part of the project config (tests and benches
/// shorten the backoff).
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// First retry delay (doubles per attempt, with jitter).
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Send `Delta` events (turn off when nobody watches the text arrive).
    pub deltas: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            deltas: true,
        }
    }
}

/// A snapshot of the engine for status lines.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineStats {
    pub queued: usize,
    pub in_flight: usize,
    pub paused: bool,
    /// The user's cap.
    pub concurrency: usize,
    /// The limit in force: the cap after 429 slow-downs, or the adaptive
    /// limit.
    pub effective_concurrency: usize,
    /// Whether the limit adapts to the server.
    pub adaptive: bool,
    /// Why the limit last changed.
    pub limit_reason: LimitReason,
    pub usage: Usage,
    /// Network requests finished per second of wall time.
    pub requests_per_s: f64,
    pub capabilities: Capabilities,
}

/// Entry point: starts the scheduler task.
pub struct Engine;

impl Engine {
    /// Start an engine for `backend` on the current tokio runtime (panics
    /// outside one). `cache: None` disables caching. Fails only on a
    /// backend config the client cannot use (bad URL, bad header).
    pub fn start(
        backend: &BackendConfig,
        cache: Option<ResponseCache>,
    ) -> anyhow::Result<(EngineHandle, mpsc::UnboundedReceiver<EngineEvent>)> {
        Engine::start_with(backend, cache, EngineOptions::default())
    }

    pub fn start_with(
        backend: &BackendConfig,
        cache: Option<ResponseCache>,
        options: EngineOptions,
    ) -> anyhow::Result<(EngineHandle, mpsc::UnboundedReceiver<EngineEvent>)> {
        let client = LlmClient::new(backend).map_err(|e| crate::error::user(e.message))?;
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            stats: Mutex::new(stats::Stats::new(
                backend.price_input_per_m,
                backend.price_output_per_m,
            )),
            queued: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            paused: AtomicBool::new(false),
            concurrency: AtomicUsize::new(backend.max_concurrency.max(1)),
            effective: AtomicUsize::new(backend.max_concurrency.max(1)),
            adaptive: backend.adaptive,
            limit_reason: Mutex::new(if backend.adaptive {
                LimitReason::Start
            } else {
                LimitReason::Fixed
            }),
            client: client.clone(),
            cache: cache.clone(),
        });
        let sched =
            scheduler::Scheduler::new(client, cache, backend, options, ev_tx, shared.clone());
        tokio::spawn(sched.run(cmd_rx));
        Ok((
            EngineHandle {
                cmd: cmd_tx,
                shared,
                next_id: Arc::new(AtomicU64::new(1)),
            },
            ev_rx,
        ))
    }
}

/// State the scheduler publishes for the handles.
pub(crate) struct Shared {
    pub(crate) stats: Mutex<stats::Stats>,
    pub(crate) queued: AtomicUsize,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) paused: AtomicBool,
    pub(crate) concurrency: AtomicUsize,
    pub(crate) effective: AtomicUsize,
    pub(crate) adaptive: bool,
    pub(crate) limit_reason: Mutex<LimitReason>,
    pub(crate) client: LlmClient,
    /// For embed jobs, looked up and filled per text by the caller's task.
    pub(crate) cache: Option<ResponseCache>,
}

pub(crate) enum Command {
    Submit(JobId, Job),
    SubmitEmbed(JobId, embed::EmbedWork),
    Cancel(JobId),
    CancelAll,
    Pause,
    Resume,
    SetConcurrency(usize),
    SetSampling(Sampling),
}

/// Controls a running engine. Cheap to clone; all methods return at once.
#[derive(Clone)]
pub struct EngineHandle {
    cmd: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
    next_id: Arc<AtomicU64>,
}

impl EngineHandle {
    /// Queue a job; its events carry the returned id and the job's tag.
    pub fn submit(&self, job: Job) -> JobId {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.send(Command::Submit(id, job));
        id
    }
    /// End one job: `Failed { reason: Cancelled }` (unless it already ended).
    pub fn cancel(&self, id: JobId) {
        self.send(Command::Cancel(id));
    }
    /// Cancel every queued and running job.
    pub fn cancel_all(&self) {
        self.send(Command::CancelAll);
    }
    /// Stop dispatching; the queue is kept, requests in flight finish.
    pub fn pause(&self) {
        self.send(Command::Pause);
    }
    pub fn resume(&self) {
        self.send(Command::Resume);
    }
    /// New cap on requests in flight, from the next dispatch on.
    pub fn set_concurrency(&self, n: usize) {
        self.send(Command::SetConcurrency(n.max(1)));
    }
    /// New sampling defaults for requests dispatched from now on.
    pub fn set_sampling(&self, s: Sampling) {
        self.send(Command::SetSampling(s));
    }
    /// Usage so far: network requests answered, cache hits, tokens of the
    /// network answers, cost, latency percentiles of successful attempts,
    /// wall time from the first dispatch to the last result, and failures by
    /// reason counted per failed attempt (a 429 that was retried counts).
    /// Cancellations are not failures.
    pub fn usage(&self) -> Usage {
        self.shared.stats.lock().expect("stats lock").usage()
    }
    /// Queue, in-flight, caps, usage and throughput.
    pub fn stats(&self) -> EngineStats {
        let usage = self.usage();
        let requests_per_s = if usage.wall_s > 0.0 {
            usage.requests as f64 / usage.wall_s
        } else {
            0.0
        };
        EngineStats {
            queued: self.shared.queued.load(Ordering::Relaxed),
            in_flight: self.shared.in_flight.load(Ordering::Relaxed),
            paused: self.shared.paused.load(Ordering::Relaxed),
            concurrency: self.shared.concurrency.load(Ordering::Relaxed),
            effective_concurrency: self.shared.effective.load(Ordering::Relaxed),
            adaptive: self.shared.adaptive,
            limit_reason: *self.shared.limit_reason.lock().expect("limit reason"),
            usage,
            requests_per_s,
            capabilities: self.shared.client.capabilities(),
        }
    }
    /// False once the scheduler task has ended (its runtime shut down, or
    /// the event receiver was dropped).
    pub fn is_running(&self) -> bool {
        !self.cmd.is_closed()
    }
    /// What the server was found to support so far.
    pub fn capabilities(&self) -> Capabilities {
        self.shared.client.capabilities()
    }

    fn send(&self, c: Command) {
        // The scheduler only stops once the event receiver is gone; then
        // nobody is listening and dropping the command is right.
        let _ = self.cmd.send(c);
    }
}
