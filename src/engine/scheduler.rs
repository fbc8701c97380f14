//! The scheduler task: one loop owning the queue, the in-flight set and
//! the limits; one spawned task per attempt doing the HTTP.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::embed::EmbedWork;
use super::limits::{AdaptiveLimit, LimitReason, TokenBucket, backoff};
use super::{Command, EngineEvent, EngineOptions, Job, JobId, Sampling, Shared};
use crate::domain::BackendConfig;
use crate::llm::{ChatResponse, FailReason, LlmClient, LlmError, RateLimitInfo, ResponseCache};

/// A job waiting to be sent (first time or again).
struct Pending {
    id: JobId,
    job: Job,
    attempt: u32,
    not_before: Option<Instant>,
    /// Built at first dispatch (sampling defaults applied), kept for retries.
    prepared: Option<Prepared>,
    /// An embed job (then `job` is an empty placeholder).
    embed: Option<EmbedWork>,
}

#[derive(Clone)]
struct Prepared {
    body: Arc<Map<String, Value>>,
    key: Arc<str>,
    token_estimate: f64,
}

struct Running {
    tag: u64,
    started: Instant,
    job: Job,
    attempt: u32,
    prepared: Prepared,
    cancel: CancellationToken,
    cancelled: bool,
    embed: Option<EmbedWork>,
}

/// What an attempt task reports back.
struct Done {
    id: JobId,
    result: Result<(ChatResponse, RateLimitInfo), LlmError>,
    latency: Duration,
    /// Time to the first text (streams), the queueing signal.
    first_text: Option<Duration>,
    /// An embed job's vectors.
    vectors: Option<Vec<Vec<f32>>>,
}

pub(crate) struct Scheduler {
    client: LlmClient,
    cache: Option<ResponseCache>,
    options: EngineOptions,
    max_retries: u32,
    events: mpsc::UnboundedSender<EngineEvent>,
    shared: Arc<Shared>,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    queue: VecDeque<Pending>,
    running: HashMap<JobId, Running>,
    paused: bool,
    limit: AdaptiveLimit,
    /// The limit and reason last sent as [`EngineEvent::Limit`].
    reported: (usize, LimitReason),
    hold_until: Option<Instant>,
    rpm: Option<TokenBucket>,
    tpm: Option<TokenBucket>,
    sampling: Sampling,
}

impl Scheduler {
    pub(crate) fn new(
        client: LlmClient,
        cache: Option<ResponseCache>,
        backend: &BackendConfig,
        options: EngineOptions,
        events: mpsc::UnboundedSender<EngineEvent>,
        shared: Arc<Shared>,
    ) -> Scheduler {
        let now = Instant::now();
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Scheduler {
            client,
            cache,
            options,
            max_retries: backend.max_retries,
            events,
            shared,
            done_tx,
            done_rx,
            queue: VecDeque::new(),
            running: HashMap::new(),
            paused: false,
            limit: AdaptiveLimit::with_mode(backend.max_concurrency, backend.adaptive),
            reported: (0, LimitReason::Fixed),
            hold_until: None,
            rpm: backend
                .requests_per_minute
                .map(|n| TokenBucket::per_minute(n, now)),
            tpm: backend
                .tokens_per_minute
                .map(|n| TokenBucket::per_minute(n, now)),
            sampling: Sampling::default(),
        }
    }

    pub(crate) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut handles_open = true;
        loop {
            self.report_limit();
            let wake = self.dispatch();
            self.publish();
            if !handles_open && self.queue.is_empty() && self.running.is_empty() {
                break;
            }
            if self.events.is_closed() {
                self.cancel_all();
                break;
            }
            let sleep = async {
                match wake {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = commands.recv(), if handles_open => match cmd {
                    Some(c) => {
                        self.command(c);
                        while let Ok(c) = commands.try_recv() {
                            self.command(c);
                        }
                    }
                    None => handles_open = false,
                },
                Some(done) = self.done_rx.recv() => {
                    self.complete(done);
                    while let Ok(done) = self.done_rx.try_recv() {
                        self.complete(done);
                    }
                },
                _ = sleep => {},
                _ = self.events.closed() => {},
            }
        }
    }

    fn publish(&self) {
        let s = &self.shared;
        s.queued.store(self.queue.len(), Ordering::Relaxed);
        s.in_flight.store(self.running.len(), Ordering::Relaxed);
        s.paused.store(self.paused, Ordering::Relaxed);
        s.concurrency.store(self.limit.cap(), Ordering::Relaxed);
        s.effective.store(self.limit.current(), Ordering::Relaxed);
    }

    /// Tell the caller when the adaptive limit (or its reason) changed.
    fn report_limit(&mut self) {
        if !self.limit.adaptive() {
            return;
        }
        let now = (self.limit.current(), self.limit.reason());
        if now != self.reported {
            tracing::debug!("adaptive limit {} ({})", now.0, now.1);
            self.reported = now;
            self.shared
                .limit_reason
                .lock()
                .expect("limit reason")
                .clone_from(&now.1);
            let _ = self.events.send(EngineEvent::Limit {
                limit: now.0,
                reason: now.1,
            });
        }
    }

    fn emit(&self, ev: EngineEvent) {
        if ev.is_terminal() {
            // A caller that saw a job end must see it gone from the counts.
            self.publish();
        }
        let _ = self.events.send(ev);
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Submit(id, job) => self.queue.push_back(Pending {
                id,
                job,
                attempt: 0,
                not_before: None,
                prepared: None,
                embed: None,
            }),
            Command::SubmitEmbed(id, work) => self.queue.push_back(Pending {
                id,
                job: Job::new(crate::llm::ChatRequest::default(), 0),
                attempt: 0,
                not_before: None,
                prepared: None,
                embed: Some(work),
            }),
            Command::Cancel(id) => self.cancel(id),
            Command::CancelAll => self.cancel_all(),
            Command::Pause => self.paused = true,
            Command::Resume => self.paused = false,
            Command::SetConcurrency(n) => self.limit.set_cap(n),
            Command::SetSampling(s) => self.sampling = s,
        }
    }

    fn cancel(&mut self, id: JobId) {
        if let Some(pos) = self.queue.iter().position(|p| p.id == id) {
            let p = self.queue.remove(pos).expect("position is valid");
            self.cancel_pending(p);
        } else if let Some(r) = self.running.get_mut(&id) {
            r.cancelled = true;
            r.cancel.cancel();
        }
    }

    fn cancel_all(&mut self) {
        for p in std::mem::take(&mut self.queue) {
            self.cancel_pending(p);
        }
        for r in self.running.values_mut() {
            r.cancelled = true;
            r.cancel.cancel();
        }
    }

    /// End a queued job as cancelled: an event for chat, the answer for
    /// an embed job.
    fn cancel_pending(&self, p: Pending) {
        match p.embed {
            Some(work) => {
                let _ = work
                    .reply
                    .send(Err(LlmError::new(FailReason::Cancelled, "cancelled")));
            }
            None => self.fail_cancelled(p.id, p.job.tag),
        }
    }

    fn fail_cancelled(&self, id: JobId, tag: u64) {
        self.emit(EngineEvent::Failed {
            id,
            tag,
            reason: FailReason::Cancelled,
            message: "cancelled".into(),
            raw: None,
        });
    }

    /// Start every job the limits allow; returns when to look again.
    fn dispatch(&mut self) -> Option<Instant> {
        if self.paused || self.queue.is_empty() {
            return None;
        }
        let now = Instant::now();
        if let Some(h) = self.hold_until {
            if h > now {
                return Some(h);
            }
            self.hold_until = None;
        }
        while self.running.len() < self.limit.current() {
            let Some(idx) = self
                .queue
                .iter()
                .position(|p| p.not_before.is_none_or(|t| t <= now))
            else {
                return self.queue.iter().filter_map(|p| p.not_before).min();
            };
            let prepared = self.prepare(idx);
            if let Some(hit) = self.cache_lookup(&prepared, idx) {
                let p = self.queue.remove(idx).expect("index is valid");
                self.shared.stats.lock().expect("stats").cache_hit(now);
                self.emit(EngineEvent::Finished {
                    id: p.id,
                    tag: p.job.tag,
                    response: hit,
                    latency: Duration::ZERO,
                });
                continue;
            }
            if let Some(wait) = self.budget_wait(prepared.token_estimate, now) {
                return Some(now + wait);
            }
            let p = self.queue.remove(idx).expect("index is valid");
            self.spawn_attempt(p, prepared, now);
        }
        None
    }

    /// The body and cache key of a queued job, built once.
    fn prepare(&mut self, idx: usize) -> Prepared {
        let p = &mut self.queue[idx];
        if let Some(prep) = &p.prepared {
            return prep.clone();
        }
        if let Some(work) = &p.embed {
            // The attempt sends the inputs itself, and the caller looks the
            // cache up per text: no body, no key; only the token estimate.
            let chars: usize = work.inputs.iter().map(|t| t.chars().count()).sum();
            let prep = Prepared {
                body: Arc::new(Map::new()),
                key: "".into(),
                token_estimate: f64::from(crate::llm::estimate_tokens_from_chars(chars)),
            };
            p.prepared = Some(prep.clone());
            return prep;
        }
        self.sampling.apply(&mut p.job.request);
        let body = self.client.body(&p.job.request);
        let key = match &self.cache {
            Some(_) => ResponseCache::key(self.client.host(), self.client.model(), &body),
            None => String::new(),
        };
        let token_estimate = f64::from(p.job.request.estimate_prompt_tokens())
            + f64::from(p.job.request.max_tokens.unwrap_or(256));
        let prep = Prepared {
            body: Arc::new(body),
            key: key.into(),
            token_estimate,
        };
        p.prepared = Some(prep.clone());
        prep
    }

    fn cache_lookup(&self, prep: &Prepared, idx: usize) -> Option<ChatResponse> {
        // Only a job's first attempt can be answered from the cache: a retry
        // was a miss a moment ago.
        if self.queue[idx].attempt > 0 || prep.key.is_empty() {
            return None;
        }
        self.cache.as_ref()?.get(&prep.key)
    }

    /// `None` when the request and token buckets allow one more request
    /// now (and takes from them), else how long to wait.
    fn budget_wait(&mut self, tokens: f64, now: Instant) -> Option<Duration> {
        let w_req = self
            .rpm
            .as_mut()
            .map_or(Duration::ZERO, |b| b.wait_for(1.0, now));
        let w_tok = self
            .tpm
            .as_mut()
            .map_or(Duration::ZERO, |b| b.wait_for(tokens, now));
        let wait = w_req.max(w_tok);
        if !wait.is_zero() {
            return Some(wait);
        }
        if let Some(b) = &mut self.rpm {
            b.take(1.0);
        }
        if let Some(b) = &mut self.tpm {
            b.take(tokens);
        }
        None
    }

    fn spawn_attempt(&mut self, p: Pending, prepared: Prepared, now: Instant) {
        let cancel = CancellationToken::new();
        let tag = p.job.tag;
        self.shared.stats.lock().expect("stats").started(now);
        if p.embed.is_none() {
            self.emit(EngineEvent::Started {
                id: p.id,
                tag,
                attempt: p.attempt,
            });
        }
        let task = Attempt {
            inputs: p.embed.as_ref().map(|w| w.inputs.clone()),
            id: p.id,
            tag,
            client: self.client.clone(),
            cache: self.cache.clone(),
            body: prepared.body.clone(),
            key: prepared.key.clone(),
            deltas: self.options.deltas,
            events: self.events.clone(),
            done: self.done_tx.clone(),
            cancel: cancel.clone(),
        };
        tokio::spawn(task.run());
        self.running.insert(
            p.id,
            Running {
                tag,
                started: now,
                job: p.job,
                attempt: p.attempt,
                prepared,
                cancel,
                cancelled: false,
                embed: p.embed,
            },
        );
    }

    fn complete(&mut self, done: Done) {
        let Some(r) = self.running.remove(&done.id) else {
            return;
        };
        let now = Instant::now();
        let result = match done.result {
            Ok((response, _)) if ended_empty(&response) => Err(LlmError::new(
                FailReason::Truncated,
                "the stream ended empty, without a finish_reason (a server that drops the \
                 request it serves when another arrives?)",
            )),
            r => r,
        };
        match result {
            Ok((response, limits)) => {
                let u = response.usage;
                self.shared
                    .stats
                    .lock()
                    .expect("stats")
                    .success(u, done.latency, now);
                if let Some(b) = &mut self.tpm {
                    let actual = f64::from(u.prompt_tokens + u.completion_tokens);
                    b.adjust(r.prepared.token_estimate - actual);
                }
                if let Some(h) = limits.hold() {
                    self.hold(now + h);
                }
                if !response.cached && response.finish_reason.is_none() {
                    // Ended without saying why: cut short (llama-cpp-python
                    // ends the stream it serves when a new request arrives).
                    self.limit.on_loss(r.started, now, true);
                } else {
                    let signal = done.first_text.unwrap_or(done.latency);
                    self.limit
                        .on_success(r.started, signal, self.running.len() + 1, now);
                }
                // Before the reply: a session refills its window from it.
                self.report_limit();
                if let Some(work) = r.embed {
                    let vectors = done.vectors.unwrap_or_default();
                    let _ = work.reply.send(Ok((vectors, u.prompt_tokens)));
                    return;
                }
                self.emit(EngineEvent::Finished {
                    id: done.id,
                    tag: r.tag,
                    response,
                    latency: done.latency,
                });
            }
            Err(e) => self.attempt_failed(done.id, r, e, now),
        }
    }

    fn attempt_failed(&mut self, id: JobId, mut r: Running, e: LlmError, now: Instant) {
        if r.cancelled || e.reason == FailReason::Cancelled {
            match r.embed {
                Some(work) => {
                    let _ = work.reply.send(Err(e));
                }
                None => self.fail_cancelled(id, r.tag),
            }
            return;
        }
        self.shared
            .stats
            .lock()
            .expect("stats")
            .failure(e.reason, now);
        match e.reason {
            FailReason::RateLimited => self.limit.on_rate_limited(r.started, now),
            FailReason::Timeout | FailReason::ServerError | FailReason::Connect => {
                self.limit.on_loss(r.started, now, false)
            }
            FailReason::Truncated => self.limit.on_loss(r.started, now, true),
            _ => {}
        }
        self.report_limit();
        let retry = e.reason.is_retryable() && r.attempt < self.max_retries;
        if !retry {
            let attempts = r.attempt + 1;
            let message = if attempts > 1 {
                format!("{} (gave up after {attempts} attempts)", e.message)
            } else {
                e.message
            };
            if let Some(work) = r.embed {
                let _ = work.reply.send(Err(LlmError { message, ..e }));
                return;
            }
            self.emit(EngineEvent::Failed {
                id,
                tag: r.tag,
                reason: e.reason,
                message,
                raw: e.raw,
            });
            return;
        }
        let delay = e.retry_after.unwrap_or_else(|| {
            backoff(
                r.attempt,
                self.options.backoff_base,
                self.options.backoff_max,
            )
        });
        if e.reason == FailReason::RateLimited {
            self.hold(now + delay);
        }
        let not_before = now + delay;
        let ready = self.hold_until.map_or(not_before, |h| h.max(not_before));
        let embed = r.embed.take();
        if embed.is_some() {
            tracing::warn!(
                "embeddings request failed ({}: {}); retry {} of {} in {:?}",
                e.reason,
                e.message,
                r.attempt + 1,
                self.max_retries,
                ready - now
            );
        } else {
            self.emit(EngineEvent::Backoff {
                id,
                tag: r.tag,
                reason: e.reason,
                status: e.status,
                attempt: r.attempt + 1,
                max_retries: self.max_retries,
                wait: ready - now,
            });
        }
        tracing::debug!(
            "job {id}: attempt {} failed ({}), retrying in {delay:?}",
            r.attempt,
            e.reason
        );
        self.queue.push_front(Pending {
            id,
            job: r.job,
            attempt: r.attempt + 1,
            not_before: Some(not_before),
            prepared: Some(r.prepared),
            embed,
        });
    }

    /// Hold all dispatching until `t` (the later of this and any hold).
    fn hold(&mut self, t: Instant) {
        self.hold_until = Some(self.hold_until.map_or(t, |h| h.max(t)));
    }
}

/// A network reply with no text and no `finish_reason`: a stream the
/// server ended before answering (llama-cpp-python does so to the request
/// it serves when another arrives). Retried, never cached.
fn ended_empty(r: &ChatResponse) -> bool {
    !r.cached && r.finish_reason.is_none() && r.text.is_empty()
}

/// One HTTP attempt, run as its own task.
struct Attempt {
    /// An embed job's texts (then `body` is empty).
    inputs: Option<Arc<[String]>>,
    id: JobId,
    tag: u64,
    client: LlmClient,
    cache: Option<ResponseCache>,
    body: Arc<Map<String, Value>>,
    key: Arc<str>,
    deltas: bool,
    events: mpsc::UnboundedSender<EngineEvent>,
    done: mpsc::UnboundedSender<Done>,
    cancel: CancellationToken,
}

impl Attempt {
    async fn run(self) {
        if let Some(inputs) = self.inputs.clone() {
            return self.run_embed(inputs).await;
        }
        let start = Instant::now();
        let (id, tag) = (self.id, self.tag);
        let (events, deltas) = (&self.events, self.deltas);
        let mut first_text = None;
        let mut on_delta = |text: &str| {
            if first_text.is_none() {
                first_text = Some(start.elapsed());
            }
            if deltas {
                let _ = events.send(EngineEvent::Delta {
                    id,
                    tag,
                    text: text.to_owned(),
                });
            }
        };
        let result = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(LlmError::new(FailReason::Cancelled, "cancelled")),
            r = self.client.send(&self.body, &mut on_delta) => r,
        };
        if let (Ok((resp, _)), Some(cache)) = (&result, &self.cache)
            && !ended_empty(resp)
            && let Err(e) = cache.put(&self.key, resp)
        {
            tracing::warn!("cannot write cache entry in {}: {e}", cache.dir().display());
        }
        let _ = self.done.send(Done {
            id,
            result,
            latency: start.elapsed(),
            first_text,
            vectors: None,
        });
    }

    /// An embed job's attempt: one `/embeddings` request, its answer as a
    /// bodyless [`ChatResponse`] carrying the prompt tokens (what the
    /// scheduler's accounting reads) plus the vectors.
    async fn run_embed(self, inputs: Arc<[String]>) {
        let start = Instant::now();
        let result = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(LlmError::new(FailReason::Cancelled, "cancelled")),
            r = self.client.embeddings(&inputs) => r,
        };
        let (result, vectors) = match result {
            Ok((vectors, tokens, limits)) => {
                let response = ChatResponse {
                    text: String::new(),
                    choices: Vec::new(),
                    finish_reason: Some("embeddings".into()),
                    usage: crate::llm::TokenUsage {
                        prompt_tokens: tokens,
                        completion_tokens: 0,
                        estimated: false,
                    },
                    logprobs: None,
                    cached: false,
                    model: self.client.model().to_owned(),
                    request_id: String::new(),
                };
                (Ok((response, limits)), Some(vectors))
            }
            Err(e) => (Err(e), None),
        };
        let _ = self.done.send(Done {
            id: self.id,
            result,
            latency: start.elapsed(),
            first_text: None,
            vectors,
        });
    }
}
