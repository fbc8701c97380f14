//! A local OpenAI-compatible LLM server for tests, benches and the TUI e2e
//! test: `/v1/chat/completions` (streaming SSE and JSON), `/v1/models`,
//! `/v1/embeddings`, and the Batch API (`/v1/files` upload and content,
//! `/v1/batches` create, retrieve, list, cancel; see [`BatchMode`]), on
//! 127.0.0.1 with an ephemeral port.
//!
//! ```ignore
//! mod support;
//! use support::{Reply, Script, TestServer};
//!
//! let server = TestServer::start(
//!     Script::queue([Reply::rate_limited("1"), Reply::text("hello")])
//!         .token_delay(Duration::from_millis(2)),
//! );
//! let backend = server.backend();           // BackendConfig pointing at it
//! // … run the code under test …
//! assert_eq!(server.requests(), 2);
//! assert!(server.max_in_flight() <= 4);
//! ```
//!
//! Two modes play servers with a single slot: [`Script::one_at_a_time`]
//! serves one chat request at a time and queues the others (a default
//! llama.cpp / llama-cpp-python server), and [`Script::interrupting`]
//! also ends the stream it is serving, empty, when another request
//! arrives (llama-cpp-python without `--interrupt_requests False`).
//!
//! Replies come from a [`Script`]: a queue (then a default), or a function
//! of the request. Each [`Reply`] is a normal answer (streamed when the
//! request says `stream: true`), or one of the failure modes an engine has
//! to survive: a status (429 with `Retry-After`, 500, 401…), a hang, a
//! malformed body, a truncated stream, an `error` object mid-stream, raw
//! bytes. SSE bytes can be cut at arbitrary boundaries (also inside UTF-8
//! characters) with a pause between pieces so the client sees them apart.
//!
//! The server runs on its own thread and runtime, so `start` works from
//! sync and async code alike; dropping the [`TestServer`] stops it.
//! `cargo run --example test_llm_server -- --port N --script FILE` runs it
//! standalone with a JSON [`ScriptFile`].
//!
//! Beside the server, the shared helpers of the integration tests:
//! [`cli`] runs the real binary (and edits a project's `straddle.toml`),
//! [`tmux`] drives it in a terminal, [`project`] builds projects in process.
#![allow(dead_code)]

pub mod batch_fixture;
pub mod cli;
pub mod local_llm;
pub mod project;
pub mod tmux;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

/// One scripted answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reply {
    /// A normal completion; streamed as word-sized tokens.
    Text { text: String },
    /// A normal completion streamed in exactly these pieces.
    Tokens { tokens: Vec<String> },
    /// `n` choices (index order).
    Choices { choices: Vec<String> },
    /// A completion with per-token logprobs (sent when the request asks).
    Logprobs { tokens: Vec<LpToken> },
    /// Any status with a body and headers (e.g. 429 + `Retry-After`).
    Status {
        code: u16,
        #[serde(default)]
        body: String,
        #[serde(default)]
        headers: Vec<(String, String)>,
    },
    /// Accept the request and never answer.
    Hang,
    /// Stream `text`, then stall forever without finishing.
    HangMidStream { text: String },
    /// 200 with this body (JSON mode) or this `data:` payload (SSE mode).
    Malformed { raw: String },
    /// Stream `text`, then close without `finish_reason` or `[DONE]`.
    Truncated { text: String },
    /// Stream `before`, then an `error` object with `message`.
    StreamError { before: String, message: String },
    /// Exactly these bytes with this status and content type.
    Raw {
        status: u16,
        content_type: String,
        body: String,
    },
    /// Echo the request's `Authorization` header back, as a server
    /// refusing a key does ("Incorrect API key provided: Bearer sk-…", and
    /// the bare key after `key=`): with `code` 200 in the completion text,
    /// else in an OpenAI-style error body with that status.
    EchoKey { code: u16 },
    /// A normal completion `bytes` long, streamed in 64 KiB tokens.
    Huge { bytes: usize },
    /// Stream `text`, then reset the connection mid-reply (no
    /// `finish_reason`, no `[DONE]`; in JSON mode: half a body, then reset).
    ResetMidStream { text: String },
}

/// A token with its logprob and alternatives.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LpToken {
    pub token: String,
    pub logprob: f64,
    #[serde(default)]
    pub top: Vec<(String, f64)>,
}

impl Reply {
    pub fn text(s: impl Into<String>) -> Reply {
        Reply::Text { text: s.into() }
    }
    pub fn status(code: u16, body: impl Into<String>) -> Reply {
        Reply::Status {
            code,
            body: body.into(),
            headers: vec![],
        }
    }
    /// 429 with `Retry-After: value` (seconds or an HTTP-date).
    pub fn rate_limited(retry_after: impl Into<String>) -> Reply {
        Reply::Status {
            code: 429,
            body: r#"{"error":{"message":"Rate limit reached","type":"rate_limit_error"}}"#.into(),
            headers: vec![("retry-after".into(), retry_after.into())],
        }
    }
    pub fn server_error() -> Reply {
        Reply::status(
            500,
            r#"{"error":{"message":"internal error","type":"server_error"}}"#,
        )
    }
    pub fn malformed(raw: impl Into<String>) -> Reply {
        Reply::Malformed { raw: raw.into() }
    }
    pub fn truncated(text: impl Into<String>) -> Reply {
        Reply::Truncated { text: text.into() }
    }
    pub fn stream_error(before: impl Into<String>, message: impl Into<String>) -> Reply {
        Reply::StreamError {
            before: before.into(),
            message: message.into(),
        }
    }
}

/// What the reply function sees of a chat request.
#[derive(Debug, Clone)]
pub struct Request {
    /// 0-based order among chat requests.
    pub index: usize,
    pub body: Value,
}

impl Request {
    pub fn stream(&self) -> bool {
        self.body["stream"].as_bool().unwrap_or(false)
    }
    /// Content of the last message.
    pub fn last_message(&self) -> &str {
        self.body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_str())
            .unwrap_or("")
    }
}

type ReplyFn = dyn Fn(&Request) -> Reply + Send + Sync;

/// How the server cuts an SSE byte stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Split {
    /// One piece per SSE event (the usual server behaviour).
    Events,
    /// Pieces of `n` bytes regardless of events or UTF-8 characters.
    Every(usize),
    /// Random piece sizes in 1..=max (seeded).
    Random { max: usize, seed: u64 },
}

/// The server's behaviour.
#[derive(Clone)]
pub struct Script {
    replies: Arc<ReplyFn>,
    /// Delay before the response starts.
    pub latency: Duration,
    /// Delay between streamed tokens.
    pub token_delay: Duration,
    pub split: Split,
    /// Delay between the pieces of a split stream.
    pub piece_delay: Duration,
    /// Send usage (non-streaming, or streaming with include_usage).
    pub usage: bool,
    /// Require `Authorization: Bearer <key>` (else 401).
    pub api_key: Option<String>,
    /// Listed at `/v1/models`; other models get a 404.
    pub models: Vec<String>,
    /// Accept `logprobs` (else 400 naming it).
    pub logprobs: bool,
    /// Accept `response_format` (else 400 naming it).
    pub json_schema: bool,
    /// When set, accept `response_format` only with one of these `type`s
    /// (e.g. `["text", "json_object"]`, like llama-cpp-python); others are
    /// refused with status `response_format_refusal` and a validation
    /// error naming `response_format`.
    pub response_format_types: Option<Vec<String>>,
    /// Status of that refusal (llama-cpp-python: 500; OpenAI-style: 400).
    pub response_format_refusal: u16,
    /// Accept `stream_options` (else 400 naming it).
    pub stream_options: bool,
    /// Hold each chat request until this many are in flight at once (then
    /// answer every one without delay), or until the wait runs out: a
    /// client that keeps N requests in flight is seen doing so however
    /// fast the server answers. See [`Script::hold_until_in_flight`].
    pub hold: Option<(usize, Duration)>,
    /// Serve one chat request at a time; the others wait their turn
    /// (the `latency` is each one's service time).
    pub one_at_a_time: bool,
    /// With `one_at_a_time`: while another request waits for the slot, a
    /// streaming one in its service time (`latency`) ends at once with
    /// `data: [DONE]` and no text or `finish_reason`, as llama-cpp-python
    /// does unless started with `--interrupt_requests False` (a waiting
    /// request holds its outer lock, which the stream being served checks).
    pub interrupting: bool,
    /// `/v1/embeddings` vectors from this function instead of the default
    /// character-trigram vectors (see [`Script::embeddings`]).
    pub embed: Option<Arc<EmbedFn>>,
    /// Replies `/v1/embeddings` sends first, one per request, before the
    /// normal answers (see [`Script::embedding_replies`]).
    pub embed_replies: Arc<Mutex<VecDeque<Reply>>>,
}

/// A scripted embedding: text → vector.
pub type EmbedFn = dyn Fn(&str) -> Vec<f64> + Send + Sync;

/// The model the test server lists by default.
pub const MODEL: &str = "test-model";

impl Script {
    /// Replies from `f(request)`.
    pub fn with_fn(f: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Script {
        Script {
            replies: Arc::new(f),
            latency: Duration::ZERO,
            token_delay: Duration::ZERO,
            split: Split::Events,
            piece_delay: Duration::ZERO,
            usage: true,
            api_key: None,
            models: vec![MODEL.to_string()],
            logprobs: true,
            json_schema: true,
            response_format_types: None,
            response_format_refusal: 400,
            stream_options: true,
            hold: None,
            one_at_a_time: false,
            interrupting: false,
            embed: None,
            embed_replies: Arc::default(),
        }
    }
    /// `/v1/embeddings` answers `f(text)` for each input (e.g. an
    /// embedding that knows the classes, to make an embedding judge right).
    pub fn embeddings(mut self, f: impl Fn(&str) -> Vec<f64> + Send + Sync + 'static) -> Script {
        self.embed = Some(Arc::new(f));
        self
    }
    /// `/v1/embeddings` answers its first requests with these replies in
    /// order (a [`Reply::Status`] as that status, [`Reply::Malformed`] as a
    /// 200 with exactly that body, [`Reply::Raw`] as is; anything else as
    /// a normal answer), then normally.
    pub fn embedding_replies(self, replies: impl IntoIterator<Item = Reply>) -> Script {
        self.embed_replies.lock().unwrap().extend(replies);
        self
    }
    /// The same reply to every request.
    pub fn always(reply: Reply) -> Script {
        Script::with_fn(move |_| reply.clone())
    }
    /// `text` to every request.
    pub fn text(text: impl Into<String>) -> Script {
        Script::always(Reply::text(text))
    }
    /// These replies in order, then the last one forever (a plain "ok"
    /// when the list is empty).
    pub fn queue(replies: impl IntoIterator<Item = Reply>) -> Script {
        let q: VecDeque<Reply> = replies.into_iter().collect();
        let last = q.back().cloned().unwrap_or_else(|| Reply::text("ok"));
        let q = Mutex::new(q);
        Script::with_fn(move |_| {
            q.lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| last.clone())
        })
    }
    /// These replies in a loop.
    pub fn cycle(replies: Vec<Reply>) -> Script {
        assert!(!replies.is_empty(), "cycle needs at least one reply");
        Script::with_fn(move |r| replies[r.index % replies.len()].clone())
    }
    pub fn latency(mut self, d: Duration) -> Script {
        self.latency = d;
        self
    }
    pub fn token_delay(mut self, d: Duration) -> Script {
        self.token_delay = d;
        self
    }
    /// Cut SSE bytes every `n` bytes, pausing `pause` between pieces.
    pub fn split_every(mut self, n: usize, pause: Duration) -> Script {
        self.split = Split::Every(n.max(1));
        self.piece_delay = pause;
        self
    }
    /// Cut SSE bytes at random sizes in 1..=max, pausing between pieces.
    pub fn split_random(mut self, max: usize, seed: u64, pause: Duration) -> Script {
        self.split = Split::Random {
            max: max.max(1),
            seed,
        };
        self.piece_delay = pause;
        self
    }
    pub fn no_usage(mut self) -> Script {
        self.usage = false;
        self
    }
    pub fn api_key(mut self, key: impl Into<String>) -> Script {
        self.api_key = Some(key.into());
        self
    }
    pub fn models(mut self, models: &[&str]) -> Script {
        self.models = models.iter().map(|m| m.to_string()).collect();
        self
    }
    pub fn no_logprobs(mut self) -> Script {
        self.logprobs = false;
        self
    }
    pub fn no_json_schema(mut self) -> Script {
        self.json_schema = false;
        self
    }
    /// Accept `response_format` only with these `type`s; refuse the others
    /// with `status` (see [`Script::response_format_types`]).
    pub fn only_response_formats(mut self, types: &[&str], status: u16) -> Script {
        self.response_format_types = Some(types.iter().map(|t| t.to_string()).collect());
        self.response_format_refusal = status;
        self
    }
    /// Like llama.cpp's server via llama-cpp-python: `response_format`
    /// takes `text` or `json_object` (with an optional `schema`); the
    /// OpenAI `json_schema` form gets a 500.
    pub fn llama_cpp_response_format(self) -> Script {
        self.only_response_formats(&["text", "json_object"], 500)
    }
    pub fn no_stream_options(mut self) -> Script {
        self.stream_options = false;
        self
    }
    /// Hold requests until `n` are in flight together (once reached, the
    /// gate stays open), at most `max_wait` each. Assert with
    /// [`TestServer::max_in_flight`].
    pub fn hold_until_in_flight(mut self, n: usize, max_wait: Duration) -> Script {
        self.hold = Some((n, max_wait));
        self
    }
    /// One chat request at a time, the others queued (see the field).
    pub fn one_at_a_time(mut self) -> Script {
        self.one_at_a_time = true;
        self
    }
    /// One at a time, and a new arrival ends the stream being served
    /// (see [`Script::interrupting`](Script#structfield.interrupting)).
    pub fn interrupting(mut self) -> Script {
        self.one_at_a_time = true;
        self.interrupting = true;
        self
    }
}

/// A JSON script for the standalone server
/// (`examples/test_llm_server.rs --script FILE`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ScriptFile {
    /// Replies in order; with `cycle` they repeat, else the last repeats.
    pub replies: Vec<Reply>,
    pub cycle: bool,
    pub latency_ms: u64,
    pub token_delay_ms: u64,
    pub split_every: Option<usize>,
    pub usage: bool,
    pub api_key: Option<String>,
    pub models: Vec<String>,
    pub logprobs: bool,
    pub json_schema: bool,
    /// See [`Script::response_format_types`].
    pub response_format_types: Option<Vec<String>>,
    pub response_format_refusal: Option<u16>,
    /// See [`Script::one_at_a_time`].
    pub one_at_a_time: bool,
    /// See [`Script::interrupting`].
    pub interrupting: bool,
}

impl Default for ScriptFile {
    fn default() -> Self {
        ScriptFile {
            replies: vec![],
            cycle: true,
            latency_ms: 0,
            token_delay_ms: 0,
            split_every: None,
            usage: true,
            api_key: None,
            models: vec![MODEL.to_string()],
            logprobs: true,
            json_schema: true,
            response_format_types: None,
            response_format_refusal: None,
            one_at_a_time: false,
            interrupting: false,
        }
    }
}

impl ScriptFile {
    pub fn into_script(self) -> Script {
        let mut s = if self.replies.is_empty() {
            Script::text("ok")
        } else if self.cycle {
            Script::cycle(self.replies)
        } else {
            Script::queue(self.replies)
        };
        s = s
            .latency(Duration::from_millis(self.latency_ms))
            .token_delay(Duration::from_millis(self.token_delay_ms));
        if let Some(n) = self.split_every {
            s = s.split_every(n, Duration::from_millis(1));
        }
        s.usage = self.usage;
        s.api_key = self.api_key;
        s.models = self.models;
        s.logprobs = self.logprobs;
        s.json_schema = self.json_schema;
        s.response_format_types = self.response_format_types;
        if let Some(code) = self.response_format_refusal {
            s.response_format_refusal = code;
        }
        if self.one_at_a_time {
            s = s.one_at_a_time();
        }
        if self.interrupting {
            s = s.interrupting();
        }
        s
    }
}

/// How the emulated Batch API finishes a batch. Every batch is answered
/// line by line with the script when it is created; it reports
/// `validating`, then `in_progress` on the first retrieve, then its final
/// status on the second.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum BatchMode {
    /// `completed`: answered lines in the output file, scripted failures
    /// (status replies) in the error file.
    #[default]
    Complete,
    /// `expired` after answering the first `done` lines; the rest are
    /// `batch_expired` lines of the error file.
    Expire { done: usize },
}

/// A Batch API step the server can hold (see [`TestServer::hold_batch_step`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BatchStep {
    /// `POST /v1/files`, after the file is stored.
    Upload,
    /// `POST /v1/batches`, after the batch is created.
    Create,
    /// `GET /v1/files/{id}/content`, before the bytes are sent.
    Content,
}

/// The hold on one step: requests that reached it wait for the release.
#[derive(Default)]
struct Hold {
    step: Option<BatchStep>,
    arrived: usize,
}

/// One emulated batch.
struct EmuBatch {
    obj: Value,
    retrieves: usize,
    final_status: &'static str,
    output: Option<String>,
    errors: Option<String>,
}

#[derive(Default)]
struct BatchApi {
    mode: BatchMode,
    files: std::collections::HashMap<String, Vec<u8>>,
    batches: Vec<EmuBatch>,
    /// Bodies of every batch input line, in order.
    bodies: Vec<Value>,
    creates: usize,
    /// Answered lines a cancelled batch had finished before the cancel
    /// (kept in its output file; see [`TestServer::set_cancel_keeps`]).
    cancel_keeps: usize,
    /// Speak Together AI's dialect (see [`TestServer::speak_together`]).
    together: bool,
}

impl BatchApi {
    /// A batch object as this dialect shows it (Together: status in
    /// upper case).
    fn shown(&self, obj: &Value) -> Value {
        let mut o = obj.clone();
        if let Some(st) = o["status"].as_str().filter(|_| self.together) {
            o["status"] = json!(st.to_ascii_uppercase());
        }
        o
    }
}

/// Counters and captured requests.
#[derive(Default)]
struct Counters {
    chat: AtomicUsize,
    models: AtomicUsize,
    embeddings: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    bodies: Mutex<Vec<Value>>,
    /// Client addresses seen (one per TCP connection).
    peers: Mutex<std::collections::HashSet<SocketAddr>>,
}

struct ServerState {
    script: Script,
    counters: Counters,
    keep_bodies: bool,
    /// Woken whenever a request comes in (for [`Script::hold`]).
    arrived: tokio::sync::Notify,
    /// The hold's count was reached.
    gate_open: std::sync::atomic::AtomicBool,
    /// The single slot of `one_at_a_time`.
    slot: Arc<tokio::sync::Semaphore>,
    /// Chat requests waiting for the slot (for `interrupting`), and a
    /// wake-up when one starts waiting.
    waiting: AtomicUsize,
    arrival: tokio::sync::Notify,
    /// Streams ended by a new arrival.
    interrupted: AtomicUsize,
    batch: Mutex<BatchApi>,
    hold: Mutex<Hold>,
    /// Signalled when a request reaches the held step.
    held: std::sync::Condvar,
    /// Woken when the hold is released.
    release: tokio::sync::Notify,
}

/// Holds one in-flight slot (and the `one_at_a_time` slot, if taken);
/// released on drop or explicitly.
struct InFlight(
    Option<Arc<ServerState>>,
    Option<tokio::sync::OwnedSemaphorePermit>,
);

impl InFlight {
    fn new(s: &Arc<ServerState>) -> InFlight {
        let now = s.counters.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        s.counters.max_in_flight.fetch_max(now, Ordering::SeqCst);
        s.arrived.notify_waiters();
        InFlight(Some(s.clone()), None)
    }
    fn release(&mut self) {
        self.1.take();
        if let Some(s) = self.0.take() {
            s.counters.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.release();
    }
}

/// Wait until `n` requests are in flight (or were, once), or `max_wait`;
/// either opens the gate for good, so a client that never gets there is
/// held once, not on every request.
async fn hold(s: &ServerState, n: usize, max_wait: Duration) {
    let deadline = tokio::time::Instant::now() + max_wait;
    loop {
        let arrived = s.arrived.notified();
        tokio::pin!(arrived);
        arrived.as_mut().enable();
        if s.gate_open.load(Ordering::SeqCst) || s.counters.in_flight.load(Ordering::SeqCst) >= n {
            s.gate_open.store(true, Ordering::SeqCst);
            s.arrived.notify_waiters();
            return;
        }
        tokio::select! {
            _ = &mut arrived => {}
            _ = tokio::time::sleep_until(deadline) => {
                s.gate_open.store(true, Ordering::SeqCst);
                return;
            }
        }
    }
}

/// A running test server. Dropping it stops the server.
pub struct TestServer {
    addr: SocketAddr,
    state: Arc<ServerState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// Start on an ephemeral port of 127.0.0.1.
    pub fn start(script: Script) -> TestServer {
        TestServer::start_on(0, script, true)
    }

    /// Start on `port` (0 = ephemeral); `keep_bodies` records every chat
    /// request body for [`bodies`](Self::bodies) (off for benches).
    pub fn start_on(port: u16, script: Script, keep_bodies: bool) -> TestServer {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind 127.0.0.1");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(ServerState {
            script,
            counters: Counters::default(),
            keep_bodies,
            arrived: tokio::sync::Notify::new(),
            gate_open: std::sync::atomic::AtomicBool::new(false),
            slot: Arc::new(tokio::sync::Semaphore::new(1)),
            waiting: AtomicUsize::new(0),
            arrival: tokio::sync::Notify::new(),
            interrupted: AtomicUsize::new(0),
            batch: Mutex::new(BatchApi::default()),
            hold: Mutex::new(Hold::default()),
            held: std::sync::Condvar::new(),
            release: tokio::sync::Notify::new(),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = router(state.clone());
        let thread = std::thread::Builder::new()
            .name("test-llm-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("server runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    tokio::select! {
                        r = axum::serve(
                            listener,
                            app.into_make_service_with_connect_info::<SocketAddr>(),
                        ) => { r.expect("serve"); }
                        _ = stopped => {}
                    }
                });
                rt.shutdown_background();
            })
            .expect("server thread");
        TestServer {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// `http://127.0.0.1:PORT/v1`
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
    /// A backend config for this server: its URL, the first listed model,
    /// a 10 s timeout, no API key.
    pub fn backend(&self) -> straddle::domain::BackendConfig {
        straddle::domain::BackendConfig {
            base_url: self.base_url(),
            model: self
                .state
                .script
                .models
                .first()
                .cloned()
                .unwrap_or_else(|| MODEL.into()),
            timeout_s: 10.0,
            ..Default::default()
        }
    }
    /// Chat-completion requests received (any outcome).
    pub fn requests(&self) -> usize {
        self.state.counters.chat.load(Ordering::SeqCst)
    }
    pub fn model_requests(&self) -> usize {
        self.state.counters.models.load(Ordering::SeqCst)
    }
    pub fn embedding_requests(&self) -> usize {
        self.state.counters.embeddings.load(Ordering::SeqCst)
    }
    /// Chat requests being answered right now.
    pub fn in_flight(&self) -> usize {
        self.state.counters.in_flight.load(Ordering::SeqCst)
    }
    /// The most chat requests ever answered at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.counters.max_in_flight.load(Ordering::SeqCst)
    }
    /// Streams an `interrupting` server ended because another request
    /// arrived.
    pub fn interrupted(&self) -> usize {
        self.state.counters_interrupted()
    }
    /// TCP connections that sent chat requests (keep-alive reuses one).
    pub fn connections(&self) -> usize {
        self.state.counters.peers.lock().unwrap().len()
    }
    /// Bodies of the chat requests received, in arrival order.
    pub fn bodies(&self) -> Vec<Value> {
        self.state.counters.bodies.lock().unwrap().clone()
    }
    /// How batches created from now on finish.
    pub fn set_batch_mode(&self, mode: BatchMode) {
        self.state.batch.lock().unwrap().mode = mode;
    }
    /// Hold every request that reaches `step` (after its work is done for
    /// `Upload` and `Create`, before the reply for `Content`) until
    /// [`release_batch_step`](Self::release_batch_step): the client is then
    /// provably in the middle of that request (see [`Self::wait_held`]).
    pub fn hold_batch_step(&self, step: BatchStep) {
        *self.state.hold.lock().unwrap() = Hold {
            step: Some(step),
            arrived: 0,
        };
    }
    /// Wait until a request reached the held step (`false` after `max`).
    pub fn wait_held(&self, max: Duration) -> bool {
        let h = self.state.hold.lock().unwrap();
        let (h, _) = self
            .state
            .held
            .wait_timeout_while(h, max, |h| h.arrived == 0)
            .unwrap();
        h.arrived > 0
    }
    /// Let held requests go on (and hold nothing from now on).
    pub fn release_batch_step(&self) {
        self.state.hold.lock().unwrap().step = None;
        self.state.release.notify_waiters();
    }
    /// A batch cancelled from now on keeps its first `n` answered lines
    /// in its output file (what it finished before the cancel, as the
    /// OpenAI and Azure Batch APIs return completed work); the rest
    /// become `batch_cancelled` lines. Default 0.
    pub fn set_cancel_keeps(&self, n: usize) {
        self.state.batch.lock().unwrap().cancel_keeps = n;
    }
    /// Speak Together AI's Batch API from now on, as its documentation
    /// describes it: uploads only at `POST /v1/files/upload` with
    /// `purpose=batch-api`, `file_name` and `file`; input lines of just
    /// `custom_id` and `body`; create answers `{"job": batch}`; statuses
    /// in upper case; the list is a bare array. `POST /v1/files` answers
    /// 404.
    pub fn speak_together(&self) {
        self.state.batch.lock().unwrap().together = true;
    }
    /// Batches created at `/v1/batches`.
    pub fn batches_created(&self) -> usize {
        self.state.batch.lock().unwrap().creates
    }
    /// Files uploaded or made (input, output, error).
    pub fn files(&self) -> usize {
        self.state.batch.lock().unwrap().files.len()
    }
    /// Bodies of the batch input lines answered, in order.
    pub fn batch_bodies(&self) -> Vec<Value> {
        self.state.batch.lock().unwrap().bodies.clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/files", post(upload_file))
        .route("/v1/files/upload", post(upload_file_together))
        .route("/v1/files/{id}/content", get(file_content))
        .route("/v1/batches", post(create_batch).get(list_batches))
        .route("/v1/batches/{id}", get(retrieve_batch))
        .route("/v1/batches/{id}/cancel", post(cancel_batch))
        .with_state(state)
}

fn error_json(code: StatusCode, message: &str, kind: &str) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "code": Value::Null}});
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `Some(401)` when the script wants a key and the request lacks it.
fn unauthorized(s: &ServerState, headers: &HeaderMap) -> Option<Response> {
    let key = s.script.api_key.as_ref()?;
    let got = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    (got != Some(key.as_str())).then(|| {
        error_json(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided",
            "invalid_request_error",
        )
    })
}

async fn models(State(s): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    s.counters.models.fetch_add(1, Ordering::SeqCst);
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    let data: Vec<Value> = s
        .script
        .models
        .iter()
        .map(|m| json!({"id": m, "object": "model", "owned_by": "test"}))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

async fn embeddings(
    State(s): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.counters.embeddings.fetch_add(1, Ordering::SeqCst);
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    let scripted = s.script.embed_replies.lock().unwrap().pop_front();
    match scripted {
        Some(Reply::Status {
            code,
            body,
            headers,
        }) => {
            let mut r = (
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response();
            for (k, v) in headers {
                r.headers_mut().insert(
                    header::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                    HeaderValue::from_str(&v).expect("header value"),
                );
            }
            return r;
        }
        Some(Reply::Malformed { raw }) => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                raw,
            )
                .into_response();
        }
        Some(Reply::Raw {
            status,
            content_type,
            body,
        }) => {
            return (
                StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                [(header::CONTENT_TYPE, content_type)],
                body,
            )
                .into_response();
        }
        _ => {}
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return error_json(
            StatusCode::BAD_REQUEST,
            "body is not JSON",
            "invalid_request_error",
        );
    };
    let inputs: Vec<String> = match &req["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().unwrap_or("").to_owned())
            .collect(),
        _ => vec![],
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let v = match &s.script.embed {
                Some(f) => f(t),
                None => embed(t),
            };
            json!({"object": "embedding", "index": i, "embedding": v})
        })
        .collect();
    axum::Json(
        json!({"object": "list", "data": data, "model": req["model"],
        "usage": {"prompt_tokens": 1, "total_tokens": 1}}),
    )
    .into_response()
}

/// A deterministic 8-dimensional unit vector from character trigrams.
fn embed(text: &str) -> Vec<f64> {
    let mut v = [0.0f64; 8];
    let chars: Vec<char> = text.to_lowercase().chars().collect();
    for w in chars.windows(3) {
        let h = w
            .iter()
            .fold(17u64, |h, c| h.wrapping_mul(31).wrapping_add(*c as u64));
        v[(h % 8) as usize] += 1.0;
    }
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-9);
    v.iter().map(|x| x / norm).collect()
}

async fn chat(
    State(s): State<Arc<ServerState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let index = s.counters.chat.fetch_add(1, Ordering::SeqCst);
    s.counters.peers.lock().unwrap().insert(peer);
    let mut guard = InFlight::new(&s);
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error_json(
            StatusCode::BAD_REQUEST,
            "body is not JSON",
            "invalid_request_error",
        );
    };
    if s.keep_bodies {
        s.counters.bodies.lock().unwrap().push(body.clone());
    }
    if let Some(r) = refuse(&s.script, &body) {
        return r;
    }
    if let Some((n, max_wait)) = s.script.hold {
        hold(&s, n, max_wait).await;
    }
    let req = Request { index, body };
    let reply = match (s.script.replies)(&req) {
        Reply::EchoKey { code } => echo_key(&headers, code),
        Reply::Huge { bytes } => Reply::Tokens {
            tokens: huge_tokens(bytes),
        },
        Reply::ResetMidStream { text } => return reset_mid_stream(&req, &text),
        r => r,
    };
    if s.script.one_at_a_time {
        s.waiting.fetch_add(1, Ordering::SeqCst);
        s.arrival.notify_waiters();
        /// Not waiting any more, also when the client gives up.
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let waiting = Waiting(&s.waiting);
        guard.1 = Some(s.slot.clone().acquire_owned().await.expect("slot"));
        drop(waiting);
        if s.script.interrupting && req.stream() && serve_until_arrival(&s).await {
            s.interrupted.fetch_add(1, Ordering::SeqCst);
            let mut r = Response::new(Body::from("data: [DONE]\n\n"));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            return r;
        }
    }
    // An interrupting server's stream spent its service time above.
    let served = s.script.interrupting && req.stream();
    if !s.script.latency.is_zero() && !served {
        tokio::time::sleep(s.script.latency).await;
    }
    let stream = req.stream();
    let plan = match plan(&s.script, &req, reply) {
        Plan::Response(r) => return r,
        Plan::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        Plan::Events(p) => p,
    };
    if !stream {
        guard.release();
        return json_response(&plan.whole);
    }
    sse_response(&s.script, plan, guard)
}

impl ServerState {
    fn counters_interrupted(&self) -> usize {
        self.interrupted.load(Ordering::SeqCst)
    }
}

/// The service time (`latency`) of the request holding the slot; `true`
/// when another request waits meanwhile (the stream is to end empty).
async fn serve_until_arrival(s: &ServerState) -> bool {
    let done = tokio::time::sleep(s.script.latency);
    tokio::pin!(done);
    loop {
        let arrived = s.arrival.notified();
        tokio::pin!(arrived);
        arrived.as_mut().enable();
        if s.waiting.load(Ordering::SeqCst) > 0 {
            return true;
        }
        tokio::select! {
            _ = &mut done => return false,
            _ = &mut arrived => {}
        }
    }
}

/// 404 for unknown models, 400 (or the scripted status) for refused
/// optional fields.
fn refuse(script: &Script, body: &Value) -> Option<Response> {
    let model = body["model"].as_str().unwrap_or("");
    if !script.models.iter().any(|m| m == model) {
        return Some(error_json(
            StatusCode::NOT_FOUND,
            &format!("The model `{model}` does not exist"),
            "invalid_request_error",
        ));
    }
    let refused = |field: &str, msg: &str| {
        body.get(field)
            .is_some()
            .then(|| error_json(StatusCode::BAD_REQUEST, msg, "invalid_request_error"))
    };
    if !script.logprobs
        && let Some(r) = refused("logprobs", "logprobs is not supported by this server")
    {
        return Some(r);
    }
    if !script.json_schema
        && let Some(r) = refused("response_format", "response_format is not supported")
    {
        return Some(r);
    }
    if let Some(r) = refuse_response_format_type(script, body) {
        return Some(r);
    }
    if !script.stream_options
        && let Some(r) = refused(
            "stream_options",
            "Unrecognized request argument: stream_options",
        )
    {
        return Some(r);
    }
    None
}

/// A `response_format` whose `type` the script does not take, refused
/// the way llama-cpp-python does (a pydantic validation error).
fn refuse_response_format_type(script: &Script, body: &Value) -> Option<Response> {
    let types = script.response_format_types.as_ref()?;
    let kind = body.get("response_format")?["type"].as_str().unwrap_or("");
    if types.iter().any(|t| t == kind) {
        return None;
    }
    let expected = types
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(" or ");
    let msg = format!(
        "1 validation error:\n  {{'type': 'literal_error', 'loc': ('body', 'response_format', \
         'type'), 'msg': \"Input should be {expected}\", 'input': '{kind}'}}"
    );
    let code = StatusCode::from_u16(script.response_format_refusal)
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = if code.is_server_error() {
        "internal_server_error"
    } else {
        "invalid_request_error"
    };
    Some(error_json(code, &msg, kind))
}

/// What to send for one reply.
enum Plan {
    /// A complete response (status replies, raw bodies, malformed JSON).
    Response(Response),
    Hang,
    Events(EventPlan),
}

/// A streamed reply as SSE frames, plus the whole-body form.
struct EventPlan {
    frames: Vec<String>,
    /// Stall after the frames instead of ending.
    hang_after: bool,
    whole: Value,
}

fn plan(script: &Script, req: &Request, reply: Reply) -> Plan {
    let model = req.body["model"].as_str().unwrap_or(MODEL).to_owned();
    let id = format!("chatcmpl-{}", req.index);
    let want_lp = req.body["logprobs"].as_bool().unwrap_or(false);
    let include_usage = req.body["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);
    let chunk = |choices: Value, usage: Value| -> String {
        let c = json!({"id": id, "object": "chat.completion.chunk", "created": 0,
            "model": model, "choices": choices, "usage": usage});
        format!("data: {c}\n\n")
    };
    let prompt_tokens = req.body["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|m| m["content"].as_str().unwrap_or("").len() / 4 + 1)
                .sum::<usize>()
        })
        .unwrap_or(0);
    let (choices, lp): (Vec<Vec<String>>, Option<Vec<LpToken>>) = match reply {
        Reply::Text { text } => (vec![word_tokens(&text)], None),
        Reply::Tokens { tokens } => (vec![tokens], None),
        Reply::Choices { choices } => (choices.iter().map(|c| word_tokens(c)).collect(), None),
        Reply::Logprobs { tokens } => (
            vec![tokens.iter().map(|t| t.token.clone()).collect()],
            Some(tokens),
        ),
        Reply::Status {
            code,
            body,
            headers,
        } => {
            let mut r = (
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                body,
            )
                .into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            for (k, v) in headers {
                r.headers_mut().insert(
                    header::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                    HeaderValue::from_str(&v).expect("header value"),
                );
            }
            return Plan::Response(r);
        }
        Reply::Hang => return Plan::Hang,
        Reply::EchoKey { .. } | Reply::Huge { .. } | Reply::ResetMidStream { .. } => {
            unreachable!("mapped in `chat`")
        }
        Reply::Raw {
            status,
            content_type,
            body,
        } => {
            return Plan::Response(
                (
                    StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                    [(header::CONTENT_TYPE, content_type)],
                    body,
                )
                    .into_response(),
            );
        }
        Reply::Malformed { raw } => {
            return Plan::Events(EventPlan {
                frames: vec![format!("data: {raw}\n\n"), "data: [DONE]\n\n".into()],
                hang_after: false,
                whole: Value::String(raw),
            });
        }
        Reply::Truncated { text } => {
            let mut frames = vec![];
            for t in word_tokens(&text) {
                frames.push(chunk(
                    json!([{"index": 0, "delta": {"content": t}, "finish_reason": null}]),
                    Value::Null,
                ));
            }
            return Plan::Events(EventPlan {
                frames,
                hang_after: false,
                whole: Value::String(format!(
                    "{{\"id\":\"{id}\",\"choices\":[{{\"index\":0,\"message\":{{\"content\":"
                )),
            });
        }
        Reply::HangMidStream { text } => {
            let frames = word_tokens(&text)
                .into_iter()
                .map(|t| {
                    chunk(
                        json!([{"index": 0, "delta": {"content": t}, "finish_reason": null}]),
                        Value::Null,
                    )
                })
                .collect();
            return Plan::Events(EventPlan {
                frames,
                hang_after: true,
                whole: Value::Null,
            });
        }
        Reply::StreamError { before, message } => {
            let mut frames: Vec<String> = word_tokens(&before)
                .into_iter()
                .map(|t| {
                    chunk(
                        json!([{"index": 0, "delta": {"content": t}, "finish_reason": null}]),
                        Value::Null,
                    )
                })
                .collect();
            let err = json!({"error": {"message": message, "type": "server_error"}});
            frames.push(format!("data: {err}\n\n"));
            return Plan::Events(EventPlan {
                frames,
                hang_after: false,
                whole: err,
            });
        }
    };
    let completion_tokens: usize = choices.iter().map(Vec::len).sum();
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens});
    let lp_json = |t: &LpToken| {
        json!({"token": t.token, "logprob": t.logprob,
            "top_logprobs": t.top.iter().map(|(tok, lp)| json!({"token": tok, "logprob": lp})).collect::<Vec<_>>()})
    };
    // SSE frames.
    let mut frames = vec![": keep-alive\n\n".to_string()];
    frames.push(chunk(
        json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]),
        Value::Null,
    ));
    // Token frames are formatted directly (the common case, kept cheap so
    // the server is not what a benchmark measures).
    let prefix = format!(
        r#"data: {{"id":"{id}","object":"chat.completion.chunk","created":0,"model":{},"choices":["#,
        Value::String(model.clone())
    );
    for (ci, toks) in choices.iter().enumerate() {
        for (ti, t) in toks.iter().enumerate() {
            let lp_field = match &lp {
                Some(lp) if want_lp && ci == 0 => {
                    format!(r#","logprobs":{{"content":[{}]}}"#, lp_json(&lp[ti]))
                }
                _ => String::new(),
            };
            frames.push(format!(
                r#"{prefix}{{"index":{ci},"delta":{{"content":{}}},"finish_reason":null{lp_field}}}]}}"#,
                Value::String(t.clone())
            ) + "\n\n");
        }
    }
    let finals: Vec<Value> = (0..choices.len())
        .map(|ci| json!({"index": ci, "delta": {}, "finish_reason": "stop"}))
        .collect();
    frames.push(chunk(Value::Array(finals), Value::Null));
    if include_usage && script.usage {
        frames.push(chunk(json!([]), usage.clone()));
    }
    frames.push("data: [DONE]\n\n".into());
    if req.stream() {
        return Plan::Events(EventPlan {
            frames,
            hang_after: false,
            whole: Value::Null,
        });
    }
    // Whole body.
    let whole_choices: Vec<Value> = choices
        .iter()
        .enumerate()
        .map(|(ci, toks)| {
            let mut c = json!({"index": ci, "message": {"role": "assistant", "content": toks.concat()},
                "finish_reason": "stop"});
            if want_lp && ci == 0 && let Some(lp) = &lp {
                c["logprobs"] = json!({"content": lp.iter().map(lp_json).collect::<Vec<_>>()});
            }
            c
        })
        .collect();
    let mut whole = json!({"id": id, "object": "chat.completion", "created": 0, "model": model,
        "choices": whole_choices});
    if script.usage {
        whole["usage"] = usage;
    }
    Plan::Events(EventPlan {
        frames,
        hang_after: false,
        whole,
    })
}

/// Split text into word-sized tokens that concatenate back to it.
pub fn word_tokens(text: &str) -> Vec<String> {
    let mut out = vec![];
    let mut cur = String::new();
    for c in text.chars() {
        if c.is_whitespace() && !cur.is_empty() && !cur.ends_with(char::is_whitespace) {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn json_response(whole: &Value) -> Response {
    let body = match whole {
        Value::String(raw) => raw.clone(),
        v => v.to_string(),
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Cut `frames` into byte pieces per the script's split.
fn pieces(split: Split, frames: &[String], salt: u64) -> Vec<Bytes> {
    match split {
        Split::Events => frames.iter().map(|f| Bytes::from(f.clone())).collect(),
        Split::Every(n) => {
            let all: Vec<u8> = frames.concat().into_bytes();
            all.chunks(n).map(Bytes::copy_from_slice).collect()
        }
        Split::Random { max, seed } => {
            let all: Vec<u8> = frames.concat().into_bytes();
            let mut state = seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut out = vec![];
            let mut i = 0;
            while i < all.len() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let n = 1 + (state % max as u64) as usize;
                let end = (i + n).min(all.len());
                out.push(Bytes::copy_from_slice(&all[i..end]));
                i = end;
            }
            out
        }
    }
}

fn sse_response(script: &Script, plan: EventPlan, guard: InFlight) -> Response {
    let paced = !script.token_delay.is_zero() || !script.piece_delay.is_zero() || plan.hang_after;
    let body = if !paced && script.split == Split::Events {
        // Fast path: one body, no per-frame scheduling.
        let mut guard = guard;
        guard.release();
        Body::from(plan.frames.concat())
    } else {
        let items: Vec<(Bytes, Duration)> = if script.split == Split::Events {
            plan.frames
                .iter()
                .map(|f| (Bytes::from(f.clone()), script.token_delay))
                .collect()
        } else {
            pieces(script.split, &plan.frames, guard_salt(&plan.frames))
                .into_iter()
                .map(|b| (b, script.piece_delay))
                .collect()
        };
        let hang = plan.hang_after;
        let stream = futures_util::stream::unfold(
            (VecDeque::from(items), Some(guard), true),
            move |(mut items, mut guard, first)| async move {
                let (bytes, delay) = match items.pop_front() {
                    Some(x) => x,
                    None if hang => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        return None;
                    }
                    None => return None,
                };
                if !first && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if items.is_empty() && !hang {
                    // The last piece: the client cannot have it before now.
                    guard.take();
                }
                Some((Ok::<_, Infallible>(bytes), (items, guard, false)))
            },
        );
        Body::from_stream(stream)
    };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn guard_salt(frames: &[String]) -> u64 {
    frames.iter().map(|f| f.len() as u64).sum()
}

/// The reply of [`Reply::EchoKey`].
fn echo_key(headers: &HeaderMap, code: u16) -> Reply {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("(none)");
    let bare = auth.strip_prefix("Bearer ").unwrap_or(auth);
    let msg = format!("Incorrect API key provided: {auth} (key={bare})");
    if code == 200 {
        Reply::text(format!("1. {msg}\n2. Your key is {bare}"))
    } else {
        Reply::status(
            code,
            json!({"error": {"message": msg, "type": "invalid_request_error"}}).to_string(),
        )
    }
}

/// `bytes` of text in 64 KiB tokens (ASCII words, so every cut is a
/// character boundary).
fn huge_tokens(bytes: usize) -> Vec<String> {
    let piece: String = "lorem ipsum ".repeat(64 << 10 >> 4);
    let piece = &piece[..(64 << 10).min(piece.len())];
    let mut out = vec![];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(piece.len());
        out.push(piece[..n].to_string());
        left -= n;
    }
    out
}

/// The response of [`Reply::ResetMidStream`]: some bytes, then a body
/// error, on which hyper aborts the connection.
fn reset_mid_stream(req: &Request, text: &str) -> Response {
    let (ctype, first): (&str, Vec<Bytes>) = if req.stream() {
        let frames = word_tokens(text)
            .into_iter()
            .map(|t| {
                let c = json!({"id": format!("chatcmpl-{}", req.index),
                    "object": "chat.completion.chunk", "created": 0, "model": MODEL,
                    "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": null}]});
                Bytes::from(format!("data: {c}\n\n"))
            })
            .collect();
        ("text/event-stream", frames)
    } else {
        let whole = json!({"id": "x", "object": "chat.completion", "choices": [{"index": 0,
            "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})
        .to_string();
        let half = whole.len() / 2;
        (
            "application/json",
            vec![Bytes::from(whole[..half].to_string())],
        )
    };
    // The bytes go out first (with the headers), then the stream fails a
    // moment later and hyper aborts the connection: a reset mid-reply.
    let mut items: VecDeque<Bytes> = first.into();
    let stream = futures_util::stream::unfold((), move |()| {
        let next = items.pop_front();
        async move {
            match next {
                Some(b) => Some((Ok(b), ())),
                None => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Some((
                        Err(std::io::Error::new(
                            std::io::ErrorKind::ConnectionReset,
                            "reset by test server",
                        )),
                        (),
                    ))
                }
            }
        }
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

/// Hold here while [`TestServer::hold_batch_step`] holds `step`.
async fn gate(s: &ServerState, step: BatchStep) {
    loop {
        let released = s.release.notified();
        tokio::pin!(released);
        released.as_mut().enable();
        {
            let mut h = s.hold.lock().unwrap();
            if h.step != Some(step) {
                return;
            }
            h.arrived += 1;
            s.held.notify_all();
        }
        released.await;
    }
}

/// `POST /v1/files` (multipart: `purpose`, `file`).
async fn upload_file(
    State(s): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    let (boundary, text) = match multipart(&headers, &body) {
        Ok(form) => form,
        Err(r) => return *r,
    };
    if s.batch.lock().unwrap().together {
        return error_json(StatusCode::NOT_FOUND, "not found", "invalid_request_error");
    }
    let purpose_ok = form_field(&text, &boundary, "purpose").as_deref() == Some("batch");
    let Some(file) = form_field(&text, &boundary, "file").filter(|_| purpose_ok) else {
        return error_json(
            StatusCode::BAD_REQUEST,
            "need purpose=batch and a file",
            "invalid_request_error",
        );
    };
    store_upload(&s, file).await
}

/// The boundary and text of a multipart form request, or the 400 for a
/// request that is not one.
fn multipart(headers: &HeaderMap, body: &Bytes) -> Result<(String, String), Box<Response>> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(boundary) = ct.split("boundary=").nth(1) else {
        return Err(Box::new(error_json(
            StatusCode::BAD_REQUEST,
            "not multipart",
            "invalid_request_error",
        )));
    };
    Ok((
        boundary.to_string(),
        String::from_utf8_lossy(body).into_owned(),
    ))
}

/// One field of a multipart form body (a file field's content too).
fn form_field(text: &str, boundary: &str, name: &str) -> Option<String> {
    text.split(&format!("--{boundary}"))
        .find(|p| {
            p.contains(&format!("name=\"{name}\"\r\n")) || p.contains(&format!("name=\"{name}\";"))
        })
        .and_then(|p| p.split_once("\r\n\r\n"))
        .map(|(_, c)| c.strip_suffix("\r\n").unwrap_or(c).to_string())
}

/// `POST /v1/files/upload`, Together's upload (multipart: `purpose=batch-api`,
/// `file_name`, `file`); 404 unless the server speaks Together's dialect.
async fn upload_file_together(
    State(s): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    if !s.batch.lock().unwrap().together {
        return error_json(StatusCode::NOT_FOUND, "not found", "invalid_request_error");
    }
    let (boundary, text) = match multipart(&headers, &body) {
        Ok(form) => form,
        Err(r) => return *r,
    };
    let ok = form_field(&text, &boundary, "purpose").as_deref() == Some("batch-api")
        && form_field(&text, &boundary, "file_name").is_some_and(|n| !n.is_empty());
    let Some(file) = form_field(&text, &boundary, "file").filter(|_| ok) else {
        return error_json(
            StatusCode::BAD_REQUEST,
            "need purpose=batch-api, file_name and a file",
            "invalid_request_error",
        );
    };
    store_upload(&s, file).await
}

async fn store_upload(s: &Arc<ServerState>, file: String) -> Response {
    let (id, bytes) = {
        let mut b = s.batch.lock().unwrap();
        let id = format!("file-{}", b.files.len() + 1);
        let bytes = file.len();
        b.files.insert(id.clone(), file.into_bytes());
        (id, bytes)
    };
    gate(s, BatchStep::Upload).await;
    axum::Json(
        json!({"id": id, "object": "file", "bytes": bytes, "purpose": "batch",
        "filename": "input.jsonl"}),
    )
    .into_response()
}

async fn file_content(
    State(s): State<Arc<ServerState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    gate(&s, BatchStep::Content).await;
    match s.batch.lock().unwrap().files.get(&id) {
        Some(f) => f.clone().into_response(),
        None => error_json(
            StatusCode::NOT_FOUND,
            "no such file",
            "invalid_request_error",
        ),
    }
}

/// Answer one batch line with the script.
fn batch_line(s: &ServerState, index: usize, line: &Value, expired: bool) -> (bool, String) {
    let custom_id = line["custom_id"].clone();
    let id = format!("batch_req_{index}");
    let err = |code: &str, msg: &str| {
        json!({"id": id, "custom_id": custom_id, "response": null,
            "error": {"code": code, "message": msg}})
        .to_string()
    };
    if expired {
        return (
            false,
            err("batch_expired", "not answered within the completion window"),
        );
    }
    let req = Request {
        index,
        body: line["body"].clone(),
    };
    let reply = (s.script.replies)(&req);
    let respond = |status: u16, body: Value| {
        json!({"id": id, "custom_id": custom_id, "error": null,
            "response": {"status_code": status, "request_id": format!("req_{index}"), "body": body}})
        .to_string()
    };
    match reply {
        Reply::Status { code, body, .. } => {
            let body = serde_json::from_str(&body).unwrap_or(json!({"error": {"message": body}}));
            (false, respond(code, body))
        }
        Reply::Hang | Reply::HangMidStream { .. } => (
            false,
            err("batch_expired", "not answered within the completion window"),
        ),
        reply => match plan(&s.script, &req, reply) {
            Plan::Events(p) => {
                let body = match p.whole {
                    Value::String(raw) => serde_json::from_str(&raw).unwrap_or(Value::String(raw)),
                    v => v,
                };
                (true, respond(200, body))
            }
            _ => (
                false,
                respond(500, json!({"error": {"message": "server error"}})),
            ),
        },
    }
}

/// `POST /v1/batches`: answers every line now; see [`BatchMode`].
async fn create_batch(
    State(s): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return error_json(
            StatusCode::BAD_REQUEST,
            "body is not JSON",
            "invalid_request_error",
        );
    };
    let file_id = req["input_file_id"].as_str().unwrap_or("").to_string();
    let (input, mode, first, together) = {
        let b = s.batch.lock().unwrap();
        let Some(f) = b.files.get(&file_id) else {
            return error_json(
                StatusCode::NOT_FOUND,
                "no such file",
                "invalid_request_error",
            );
        };
        (f.clone(), b.mode, b.bodies.len(), b.together)
    };
    if req["endpoint"] != "/v1/chat/completions" || req["completion_window"] != "24h" {
        return error_json(
            StatusCode::BAD_REQUEST,
            "bad endpoint or window",
            "invalid_request_error",
        );
    }
    let (mut out, mut errs, mut bodies) = (String::new(), String::new(), Vec::new());
    let (mut ok, mut failed) = (0, 0);
    for (i, l) in String::from_utf8_lossy(&input).lines().enumerate() {
        let Ok(line) = serde_json::from_str::<Value>(l) else {
            return error_json(
                StatusCode::BAD_REQUEST,
                "input line is not JSON",
                "invalid_request_error",
            );
        };
        let shape_ok = if together {
            line["custom_id"].is_string() && line["body"].is_object()
        } else {
            line["method"] == "POST" && line["url"] == "/v1/chat/completions"
        };
        if !shape_ok {
            return error_json(
                StatusCode::BAD_REQUEST,
                "bad method or url",
                "invalid_request_error",
            );
        }
        let expired = matches!(mode, BatchMode::Expire { done } if i >= done);
        if !expired {
            bodies.push(line["body"].clone());
        }
        let (good, text) = batch_line(&s, first + i, &line, expired);
        let dst = if good { &mut out } else { &mut errs };
        dst.push_str(&text);
        dst.push('\n');
        if good { ok += 1 } else { failed += 1 }
    }
    let shown = {
        let mut b = s.batch.lock().unwrap();
        b.creates += 1;
        b.bodies.extend(bodies);
        let id = format!("batch_{}", b.batches.len() + 1);
        let obj = json!({"id": id, "object": "batch", "endpoint": "/v1/chat/completions",
        "input_file_id": file_id, "completion_window": "24h", "status": "validating",
        "output_file_id": null, "error_file_id": null, "metadata": req["metadata"],
        "request_counts": {"total": ok + failed, "completed": 0, "failed": 0}});
        let final_status = if matches!(mode, BatchMode::Expire { .. }) {
            "expired"
        } else {
            "completed"
        };
        b.batches.push(EmuBatch {
            obj: obj.clone(),
            retrieves: 0,
            final_status,
            output: (!out.is_empty()).then_some(out),
            errors: (!errs.is_empty()).then_some(errs),
        });
        b.batches.last_mut().unwrap().obj["request_counts"] =
            json!({"total": ok + failed, "completed": ok, "failed": failed});
        let mut shown = b.shown(&obj);
        shown["request_counts"]["total"] = json!(ok + failed);
        if b.together {
            shown = json!({"job": shown});
        }
        shown
    };
    gate(&s, BatchStep::Create).await;
    axum::Json(shown).into_response()
}

/// Move a batch one step on: validating → in_progress → final.
fn advance(b: &mut BatchApi, i: usize) -> Value {
    let n = b.batches.len();
    let e = &mut b.batches[i];
    e.retrieves += 1;
    if e.obj["status"] == "validating" {
        e.obj["status"] = json!("in_progress");
    } else if e.obj["status"] == "in_progress" || e.obj["status"] == "cancelling" {
        e.obj["status"] = json!(e.final_status);
        let mut files = Vec::new();
        if let Some(o) = e.output.take() {
            let id = format!("file-out-{}", i + 1);
            e.obj["output_file_id"] = json!(id);
            files.push((id, o));
        }
        if let Some(x) = e.errors.take() {
            let id = format!("file-err-{}", i + 1);
            e.obj["error_file_id"] = json!(id);
            files.push((id, x));
        }
        let _ = n;
        let obj = e.obj.clone();
        for (id, f) in files {
            b.files.insert(id, f.into_bytes());
        }
        return obj;
    }
    e.obj.clone()
}

fn find_batch(b: &BatchApi, id: &str) -> Option<usize> {
    b.batches.iter().position(|e| e.obj["id"] == id)
}

async fn retrieve_batch(
    State(s): State<Arc<ServerState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let mut b = s.batch.lock().unwrap();
    match find_batch(&b, &id) {
        Some(i) => {
            let obj = advance(&mut b, i);
            axum::Json(b.shown(&obj)).into_response()
        }
        None => error_json(
            StatusCode::NOT_FOUND,
            "no such batch",
            "invalid_request_error",
        ),
    }
}

async fn list_batches(State(s): State<Arc<ServerState>>) -> Response {
    let b = s.batch.lock().unwrap();
    let data: Vec<Value> = b.batches.iter().rev().map(|e| b.shown(&e.obj)).collect();
    if b.together {
        return axum::Json(data).into_response();
    }
    axum::Json(json!({"object": "list", "data": data, "has_more": false})).into_response()
}

/// Cancel: the first [`TestServer::set_cancel_keeps`] answered lines stay
/// in the output file; every other line becomes a `batch_cancelled` error.
async fn cancel_batch(
    State(s): State<Arc<ServerState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let mut b = s.batch.lock().unwrap();
    let Some(i) = find_batch(&b, &id) else {
        return error_json(
            StatusCode::NOT_FOUND,
            "no such batch",
            "invalid_request_error",
        );
    };
    let keeps = b.cancel_keeps;
    let e = &mut b.batches[i];
    if e.obj["status"] == "validating" || e.obj["status"] == "in_progress" {
        e.obj["status"] = json!("cancelling");
        e.final_status = "cancelled";
        let answered: Vec<String> = e
            .output
            .take()
            .map(|f| f.lines().map(str::to_string).collect())
            .unwrap_or_default();
        let kept: String = answered
            .iter()
            .take(keeps)
            .map(|l| format!("{l}\n"))
            .collect();
        let rest = answered.iter().skip(keeps).cloned();
        let failed: Vec<String> = e
            .errors
            .take()
            .map(|f| f.lines().map(str::to_string).collect())
            .unwrap_or_default();
        let lines: String = rest
            .chain(failed)
            .map(|l| {
                let v: Value = serde_json::from_str(&l).unwrap();
                json!({"id": v["id"], "custom_id": v["custom_id"], "response": null,
                    "error": {"code": "batch_cancelled", "message": "cancelled"}})
                .to_string()
                    + "\n"
            })
            .collect();
        let n_kept = answered.len().min(keeps);
        e.obj["request_counts"]["completed"] = json!(n_kept);
        e.obj["request_counts"]["failed"] = json!(0);
        e.output = (!kept.is_empty()).then_some(kept);
        e.errors = (!lines.is_empty()).then_some(lines);
    }
    axum::Json(b.shown(&b.batches[i].obj)).into_response()
}
