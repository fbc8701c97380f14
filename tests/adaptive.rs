//! Adaptive concurrency (issue 15) against single-slot test servers: the
//! engine finds that the server serves one request at a time instead of
//! queueing eight there (and timing them out), and stops a server that
//! drops the stream it serves when another request arrives from wasting
//! most of the work. Each adaptive run has a fixed-window control on the
//! same server that shows what the assertions would catch.
//!
//! Wall times are printed, not asserted; `cargo bench --bench engine --
//! adaptive` measures the 40 × 200 ms case.

mod support;

use std::time::{Duration, Instant};

use straddle::domain::BackendConfig;
use straddle::engine::{Engine, EngineEvent, EngineOptions, FailReason, Job, LimitReason};
use straddle::llm::{ChatRequest, Message};
use support::{Script, TestServer};
use tokio::sync::mpsc::UnboundedReceiver;

const DEADLINE: Duration = Duration::from_secs(60);
const SERVICE: Duration = Duration::from_millis(200);

fn options() -> EngineOptions {
    EngineOptions {
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(40),
        deltas: false,
    }
}

/// Every event until `n` jobs ended.
async fn run(
    backend: &BackendConfig,
    n: u64,
) -> (Vec<EngineEvent>, Duration, straddle::engine::EngineStats) {
    let (engine, mut events) = Engine::start_with(backend, None, options()).unwrap();
    let t0 = Instant::now();
    for i in 0..n {
        let req = ChatRequest::new(vec![Message::user(format!("request {i}"))]);
        engine.submit(Job::new(req, i));
    }
    let evs = collect(&mut events, n).await;
    (evs, t0.elapsed(), engine.stats())
}

async fn collect(events: &mut UnboundedReceiver<EngineEvent>, n: u64) -> Vec<EngineEvent> {
    let mut out = vec![];
    let mut ended = 0;
    tokio::time::timeout(DEADLINE, async {
        while ended < n {
            let ev = events.recv().await.expect("engine alive");
            ended += u64::from(ev.is_terminal());
            out.push(ev);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {ended} of {n} jobs ended in time"));
    out
}

fn count(evs: &[EngineEvent], f: impl Fn(&EngineEvent) -> bool) -> usize {
    evs.iter().filter(|e| f(e)).count()
}

fn finished_with_text(evs: &[EngineEvent]) -> usize {
    count(
        evs,
        |e| matches!(e, EngineEvent::Finished { response, .. } if !response.text.is_empty()),
    )
}

fn limits(evs: &[EngineEvent]) -> Vec<(usize, LimitReason)> {
    evs.iter()
        .filter_map(|e| match e {
            EngineEvent::Limit { limit, reason } => Some((*limit, *reason)),
            _ => None,
        })
        .collect()
}

/// A one-slot server with 200 ms per request and a 1 s timeout: eight
/// requests queued there would wait up to 1.6 s.
fn one_slot(adaptive: bool) -> (TestServer, BackendConfig) {
    let server = TestServer::start(
        Script::text("one two three")
            .latency(SERVICE)
            .one_at_a_time(),
    );
    let mut backend = server.backend();
    backend.max_concurrency = 8;
    backend.timeout_s = 1.0;
    backend.adaptive = adaptive;
    (server, backend)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_slot_server_gets_forty_requests_without_a_timeout_or_a_retry() {
    let (server, backend) = one_slot(true);
    let (evs, wall, stats) = run(&backend, 40).await;
    eprintln!(
        "adaptive, one slot, 40 × {SERVICE:?} at max 8: {wall:?} (ideal {:?}), limits {:?}",
        SERVICE * 40,
        limits(&evs)
    );
    assert_eq!(finished_with_text(&evs), 40);
    assert_eq!(
        stats.usage.failures.get("timeout"),
        None,
        "{:?}",
        stats.usage.failures
    );
    assert!(
        stats.usage.failures.is_empty(),
        "{:?}",
        stats.usage.failures
    );
    assert_eq!(
        count(&evs, |e| matches!(e, EngineEvent::Backoff { .. })),
        0,
        "no retries"
    );
    assert_eq!(server.requests(), 40, "every request sent once");
    // The limit started at one and never queued more than two at the
    // server (one served, one waiting: the slot never idles).
    let l = limits(&evs);
    assert_eq!(l.first(), Some(&(1, LimitReason::Start)));
    assert!(l.iter().all(|(n, _)| *n <= 3), "{l:?}");
    assert!(server.max_in_flight() <= 3, "{}", server.max_in_flight());
    assert!(
        l.iter().any(|(_, r)| *r == LimitReason::Queueing),
        "the queue was seen: {l:?}"
    );
    assert!(stats.adaptive && stats.effective_concurrency <= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_a_fixed_window_of_eight_times_out_on_the_one_slot_server() {
    let (server, mut backend) = one_slot(false);
    backend.max_retries = 0;
    let (evs, _, stats) = run(&backend, 16).await;
    let timeouts = stats.usage.failures.get("timeout").copied().unwrap_or(0);
    assert!(timeouts >= 4, "{:?}", stats.usage.failures);
    assert!(finished_with_text(&evs) < 16);
    assert_eq!(server.max_in_flight(), 8);
    assert!(limits(&evs).is_empty(), "no Limit events when fixed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_drops_the_stream_it_serves_costs_a_few_retries_not_most_requests() {
    let server = TestServer::start(
        Script::text("one two three")
            .latency(Duration::from_millis(50))
            .interrupting(),
    );
    let mut backend = server.backend();
    backend.max_concurrency = 8;
    let (evs, wall, stats) = run(&backend, 40).await;
    let cut = server.interrupted();
    eprintln!(
        "adaptive, dropping server, 40 × 50 ms at max 8: {wall:?}, {cut} streams cut, limits {:?}",
        limits(&evs)
    );
    assert_eq!(finished_with_text(&evs), 40, "every job ends with its text");
    assert!(cut >= 1, "the limit probed above one at least once");
    assert!(cut <= 4, "{cut} streams cut: {:?}", limits(&evs));
    // Each cut stream is one retry, counted as truncated, never cached.
    assert_eq!(
        count(&evs, |e| matches!(
            e,
            EngineEvent::Backoff {
                reason: FailReason::Truncated,
                ..
            }
        )),
        cut
    );
    assert_eq!(server.requests(), 40 + cut);
    assert!(
        limits(&evs)
            .iter()
            .any(|(_, r)| *r == LimitReason::StreamsCut)
    );
    assert_eq!(stats.effective_concurrency, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_a_fixed_window_of_eight_loses_most_streams_on_the_dropping_server() {
    let server = TestServer::start(
        Script::text("one two three")
            .latency(Duration::from_millis(50))
            .interrupting(),
    );
    let mut backend = server.backend();
    backend.max_concurrency = 8;
    backend.max_retries = 0;
    backend.adaptive = false;
    let (evs, _, _) = run(&backend, 16).await;
    let failed = count(&evs, |e| {
        matches!(
            e,
            EngineEvent::Failed {
                reason: FailReason::Truncated,
                ..
            }
        )
    });
    assert!(failed >= 8, "only {failed} of 16 cut");
    assert_eq!(server.interrupted(), failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_keeps_up_gets_the_full_window_quickly() {
    // 30 ms per request, any number at once: the latency stays flat, so
    // the limit doubles per window of replies up to the cap.
    let server = TestServer::start(Script::text("ok").latency(Duration::from_millis(30)));
    let mut backend = server.backend();
    backend.max_concurrency = 32;
    let (evs, _, stats) = run(&backend, 200).await;
    assert_eq!(finished_with_text(&evs), 200);
    let l = limits(&evs);
    assert_eq!(stats.effective_concurrency, 32, "{l:?}");
    assert_eq!(server.max_in_flight(), 32);
    // 1, 2, 4, 8, 16, 32: reached after 31 replies.
    let grew: Vec<usize> = l.iter().map(|(n, _)| *n).take(6).collect();
    assert_eq!(grew, [1, 2, 4, 8, 16, 32], "{l:?}");
}
