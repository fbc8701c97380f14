//! The engine against the local test server: lifecycle guarantees, limits,
//! retries, cancellation, pause, live changes, cache, usage.
//!
//! Tests wait on engine events, never on sleeps; a generous deadline only
//! turns a hang into a failure.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::json;
use straddle::domain::BackendConfig;
use straddle::engine::{
    Engine, EngineEvent, EngineHandle, EngineOptions, FailReason, Job, Sampling,
};
use straddle::llm::{ChatRequest, Message, ResponseCache};
use support::{Reply, Script, TestServer};
use tokio::sync::mpsc::UnboundedReceiver;

const DEADLINE: Duration = Duration::from_secs(30);

fn fast() -> EngineOptions {
    EngineOptions {
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(40),
        deltas: true,
    }
}

fn job(prompt: &str, tag: u64) -> Job {
    Job::new(ChatRequest::new(vec![Message::user(prompt)]), tag)
}

fn start(
    backend: &BackendConfig,
    cache: Option<ResponseCache>,
) -> (EngineHandle, UnboundedReceiver<EngineEvent>) {
    Engine::start_with(backend, cache, fast()).unwrap()
}

/// Receive events until `n` jobs ended; checks each job's lifecycle.
async fn run_until(events: &mut UnboundedReceiver<EngineEvent>, n: usize) -> Vec<EngineEvent> {
    let mut out = vec![];
    let mut ended = 0;
    tokio::time::timeout(DEADLINE, async {
        while ended < n {
            let ev = events.recv().await.expect("engine alive");
            ended += usize::from(ev.is_terminal());
            out.push(ev);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {ended} of {n} jobs ended in time: {out:#?}"));
    check_lifecycles(&out);
    out
}

/// Per job: Started before any Delta, exactly one terminal event, nothing
/// after it; deltas within an attempt grow.
fn check_lifecycles(events: &[EngineEvent]) {
    let mut seen: HashMap<u64, (bool, bool, String)> = HashMap::new(); // started, ended, text
    for ev in events {
        if matches!(ev, EngineEvent::Limit { .. }) {
            continue; // about the engine, not a job
        }
        let e = seen.entry(ev.id()).or_default();
        assert!(!e.1, "event after the end of job {}: {ev:?}", ev.id());
        match ev {
            EngineEvent::Started { .. } => {
                e.0 = true;
                e.2.clear();
            }
            EngineEvent::Delta { text, .. } => {
                assert!(e.0, "delta before start");
                assert!(
                    text.starts_with(e.2.as_str()),
                    "delta does not extend the text"
                );
                e.2 = text.clone();
            }
            EngineEvent::Backoff { .. } => {}
            _ => e.1 = true,
        }
    }
}

fn terminals(events: &[EngineEvent]) -> BTreeMap<u64, &EngineEvent> {
    let mut m = BTreeMap::new();
    for ev in events.iter().filter(|e| e.is_terminal()) {
        assert!(
            m.insert(ev.tag(), ev).is_none(),
            "two ends for tag {}",
            ev.tag()
        );
    }
    m
}

fn finished_text(ev: &EngineEvent) -> &str {
    match ev {
        EngineEvent::Finished { response, .. } => &response.text,
        other => panic!("expected Finished, got {other:?}"),
    }
}

fn failed_reason(ev: &EngineEvent) -> FailReason {
    match ev {
        EngineEvent::Failed { reason, .. } => *reason,
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_ends_exactly_once_through_mixed_failures() {
    // Each prompt fails in its own way on the first attempts, then works;
    // "doomed" prompts always fail.
    let counts = Counts::default();
    let script = Script::with_fn(move |r| {
        let p = r.last_message().to_owned();
        let kind: u64 = p.trim_start_matches("job ").parse().unwrap_or(0);
        let seen = counts.with_count(&p);
        if p.starts_with("doomed") {
            return Reply::server_error();
        }
        if seen > 1 {
            return Reply::text(format!("answer to {p}"));
        }
        match kind % 6 {
            0 => Reply::server_error(),
            1 => Reply::rate_limited("0"),
            2 => Reply::malformed("{\"choices\":[{\"delta\":"),
            3 => Reply::truncated("cut short"),
            4 => Reply::stream_error("partial", "overloaded"),
            _ => Reply::text(format!("answer to {p}")),
        }
    })
    .token_delay(Duration::from_millis(1));
    let server = TestServer::start(script);
    let mut backend = server.backend();
    backend.max_concurrency = 6;
    backend.max_retries = 3;
    let (engine, mut events) = start(&backend, None);
    for i in 0..60u64 {
        engine.submit(job(&format!("job {i}"), i));
    }
    engine.submit(job("doomed", 1000));
    let evs = run_until(&mut events, 61).await;
    let ends = terminals(&evs);
    assert_eq!(ends.len(), 61);
    for i in 0..60u64 {
        assert_eq!(finished_text(ends[&i]), format!("answer to job {i}"));
    }
    match ends[&1000] {
        EngineEvent::Failed {
            reason, message, ..
        } => {
            assert_eq!(*reason, FailReason::ServerError);
            assert!(message.contains("4 attempts"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // retries respect the limit: 1 + max_retries attempts for the doomed job
    let doomed = server
        .bodies()
        .iter()
        .filter(|b| b["messages"][0]["content"] == json!("doomed"))
        .count();
    assert_eq!(doomed, 4);
    // 50 jobs failed once, 10 went straight through
    assert_eq!(server.requests(), 60 + 50 + 4);
    let u = engine.usage();
    assert_eq!(u.requests, 60);
    assert_eq!(u.failures.values().sum::<u64>(), 50 + 4);
    assert_eq!(u.failures["server_error"], 10 + 4);
    assert_eq!(u.failures["rate_limited"], 10);
    assert!(server.max_in_flight() <= 6);
}

/// Per-prompt request counter for scripted "fail first, then work" replies.
#[derive(Default)]
struct Counts(std::sync::Mutex<HashMap<String, usize>>);
impl Counts {
    fn with_count(&self, key: &str) -> usize {
        let mut m = self.0.lock().unwrap();
        let c = m.entry(key.to_owned()).or_default();
        *c += 1;
        *c
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_cap_is_never_exceeded_and_changes_live() {
    let server = TestServer::start(Script::text("ok").latency(Duration::from_millis(15)));
    let mut backend = server.backend();
    backend.max_concurrency = 3;
    let (engine, mut events) = start(&backend, None);
    for i in 0..30 {
        engine.submit(job(&format!("p{i}"), i));
    }
    run_until(&mut events, 30).await;
    assert_eq!(server.max_in_flight(), 3, "cap reached, never exceeded");

    engine.set_concurrency(7);
    for i in 30..100 {
        engine.submit(job(&format!("p{i}"), i));
    }
    run_until(&mut events, 70).await;
    assert!(
        server.max_in_flight() > 3 && server.max_in_flight() <= 7,
        "{}",
        server.max_in_flight()
    );
    assert_eq!(engine.stats().concurrency, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_retries_bounds_attempts_and_4xx_is_not_retried() {
    let server = TestServer::start(Script::always(Reply::server_error()));
    let mut backend = server.backend();
    backend.max_retries = 2;
    let (engine, mut events) = start(&backend, None);
    engine.submit(job("a", 1));
    let evs = run_until(&mut events, 1).await;
    assert_eq!(failed_reason(terminals(&evs)[&1]), FailReason::ServerError);
    assert_eq!(server.requests(), 3);
    let starts: Vec<u32> = evs
        .iter()
        .filter_map(|e| match e {
            EngineEvent::Started { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(starts, vec![0, 1, 2]);

    let server = TestServer::start(Script::always(Reply::status(
        400,
        r#"{"error":{"message":"context too long"}}"#,
    )));
    let (engine2, mut events) = start(&server.backend(), None);
    engine2.submit(job("a", 2));
    let evs = run_until(&mut events, 1).await;
    match terminals(&evs)[&2] {
        EngineEvent::Failed {
            reason,
            message,
            raw,
            ..
        } => {
            assert_eq!(*reason, FailReason::BadRequest);
            assert!(message.contains("context too long"));
            assert!(raw.as_deref().unwrap().contains("context too long"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.requests(), 1);
    drop(engine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_seconds_is_honoured_and_slows_everyone_down() {
    let server = TestServer::start(Script::queue([
        Reply::rate_limited("1"),
        Reply::text("late"),
    ]));
    let mut backend = server.backend();
    backend.max_concurrency = 8;
    backend.adaptive = false; // the fixed cap's 429 halving
    let (engine, mut events) = start(&backend, None);
    engine.submit(job("a", 1));
    let mut started = vec![];
    let evs = tokio::time::timeout(DEADLINE, async {
        let mut evs = vec![];
        loop {
            let ev = events.recv().await.unwrap();
            if matches!(ev, EngineEvent::Started { .. }) {
                started.push(Instant::now());
            }
            let end = ev.is_terminal();
            evs.push(ev);
            if end {
                return evs;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(finished_text(terminals(&evs)[&1]), "late");
    assert_eq!(started.len(), 2);
    let waited = started[1] - started[0];
    assert!(
        waited >= Duration::from_millis(950),
        "waited only {waited:?}"
    );
    let st = engine.stats();
    assert_eq!(st.effective_concurrency, 4, "halved after a 429");
    assert_eq!(st.usage.failures["rate_limited"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_429s_halves_the_limit_once() {
    // Eight requests in flight together are all refused (no retries, so
    // no successes grow the limit back afterwards).
    let server = TestServer::start(
        Script::always(Reply::rate_limited("0")).latency(Duration::from_millis(20)),
    );
    let mut backend = server.backend();
    backend.max_concurrency = 8;
    backend.max_retries = 0;
    backend.adaptive = false; // the fixed cap's 429 halving
    let (engine, mut events) = start(&backend, None);
    for i in 0..8 {
        engine.submit(job(&format!("p{i}"), i));
    }
    let evs = run_until(&mut events, 8).await;
    assert!(
        terminals(&evs)
            .values()
            .all(|e| failed_reason(e) == FailReason::RateLimited)
    );
    let st = engine.stats();
    assert_eq!(st.usage.failures["rate_limited"], 8);
    assert_eq!(
        st.effective_concurrency, 4,
        "one congestion event, one halving"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_http_date_and_ratelimit_headers_are_honoured() {
    for reply in [
        Reply::Status {
            code: 429,
            body: "{}".into(),
            headers: vec![(
                "retry-after".into(),
                httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(2)),
            )],
        },
        Reply::Status {
            code: 429,
            body: "{}".into(),
            headers: vec![
                ("x-ratelimit-remaining-requests".into(), "0".into()),
                ("x-ratelimit-reset-requests".into(), "1s".into()),
            ],
        },
    ] {
        let server = TestServer::start(Script::queue([reply, Reply::text("ok")]));
        let (_engine, mut events) = start(&server.backend(), None);
        let t0 = Instant::now();
        _engine.submit(job("a", 1));
        let evs = run_until(&mut events, 1).await;
        assert_eq!(finished_text(terminals(&evs)[&1]), "ok");
        // An HTTP-date has whole seconds: 2 s ahead is at least 1 s away.
        assert!(
            t0.elapsed() >= Duration::from_millis(950),
            "{:?}",
            t0.elapsed()
        );
        assert_eq!(server.requests(), 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_minute_bucket_spaces_requests() {
    let server = TestServer::start(Script::text("ok"));
    let mut backend = server.backend();
    backend.max_concurrency = 64;
    backend.requests_per_minute = Some(1200); // 20/s, about one second of burst
    let (engine, mut events) = start(&backend, None);
    let t0 = Instant::now();
    for i in 0..30 {
        engine.submit(job(&format!("p{i}"), i));
    }
    run_until(&mut events, 30).await;
    // 20 at once, then 10 more at 20/s: at least ~0.5 s.
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(450), "{took:?}");
    assert_eq!(server.requests(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_per_minute_bucket_spaces_requests() {
    // 50 tokens an answer: more than the estimate, so nothing is given back.
    let server = TestServer::start(Script::text("word ".repeat(50)));
    let mut backend = server.backend();
    backend.tokens_per_minute = Some(60 * 100); // 100 tokens/s
    let (engine, mut events) = start(&backend, None);
    let t0 = Instant::now();
    for i in 0..4 {
        let mut j = job(&format!("p{i}"), i);
        j.request.max_tokens = Some(40); // ~42 tokens estimated each
        engine.submit(j);
    }
    run_until(&mut events, 4).await;
    // 100 of burst covers two; the other two need ~0.9 s of refill.
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_hangs_and_dead_servers_fail_with_their_reason() {
    let server = TestServer::start(Script::cycle(vec![
        Reply::Hang,
        Reply::HangMidStream {
            text: "half of it".into(),
        },
    ]));
    let mut backend = server.backend();
    backend.timeout_s = 0.2;
    backend.max_retries = 1;
    let (engine, mut events) = start(&backend, None);
    engine.submit(job("a", 1));
    engine.submit(job("b", 2));
    let evs = run_until(&mut events, 2).await;
    for ev in terminals(&evs).values() {
        assert_eq!(failed_reason(ev), FailReason::Timeout);
    }
    assert_eq!(server.requests(), 4);
    assert_eq!(engine.usage().failures["timeout"], 4);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let backend = BackendConfig {
        base_url: format!("http://127.0.0.1:{port}/v1"),
        max_retries: 2,
        ..BackendConfig::default()
    };
    let (engine, mut events) = start(&backend, None);
    engine.submit(job("a", 9));
    let evs = run_until(&mut events, 1).await;
    match terminals(&evs)[&9] {
        EngineEvent::Failed {
            reason, message, ..
        } => {
            assert_eq!(*reason, FailReason::Connect);
            assert!(
                message.contains("cannot reach") && message.contains("3 attempts"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_one_and_cancel_all_end_jobs_promptly() {
    let server = TestServer::start(Script::always(Reply::Hang));
    let mut backend = server.backend();
    backend.max_concurrency = 2;
    backend.timeout_s = 600.0;
    backend.adaptive = false; // both slots at once: the fixed cap
    let (engine, mut events) = start(&backend, None);
    let ids: Vec<u64> = (0..6)
        .map(|i| engine.submit(job(&format!("p{i}"), i)))
        .collect();
    // wait until both slots are busy
    let mut evs = vec![];
    while evs
        .iter()
        .filter(|e| matches!(e, EngineEvent::Started { .. }))
        .count()
        < 2
    {
        evs.push(
            tokio::time::timeout(DEADLINE, events.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let t0 = Instant::now();
    engine.cancel(ids[0]);
    let ev = tokio::time::timeout(DEADLINE, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.id(), ids[0]);
    assert_eq!(failed_reason(&ev), FailReason::Cancelled);
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "cancel took {:?}",
        t0.elapsed()
    );
    evs.push(ev);
    // the freed slot is taken by the next job
    let ev = tokio::time::timeout(DEADLINE, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(ev, EngineEvent::Started { id, .. } if id == ids[2]),
        "{ev:?}"
    );
    evs.push(ev);
    engine.cancel_all();
    evs.extend(run_until(&mut events, 5).await);
    check_lifecycles(&evs);
    let ends = terminals(&evs);
    assert_eq!(ends.len(), 6);
    assert!(
        ends.values()
            .all(|e| failed_reason(e) == FailReason::Cancelled)
    );
    assert!(t0.elapsed() < Duration::from_secs(2));
    // jobs 3.. never started; job 2's request may not have reached the server
    assert!(server.requests() <= 3);
    assert!(
        !evs.iter()
            .any(|e| matches!(e, EngineEvent::Started { id, .. } if ids[3..].contains(id)))
    );
    assert_eq!(engine.stats().in_flight, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_keeps_the_queue_and_resume_runs_it() {
    let server = TestServer::start(Script::text("ok"));
    let mut backend = server.backend();
    backend.adaptive = false; // the first event is the marker's, not a Limit
    let (engine, mut events) = start(&backend, None);
    engine.pause();
    for i in 0..4 {
        engine.submit(job(&format!("p{i}"), i));
    }
    let marker = engine.submit(job("marker", 100));
    engine.cancel(marker);
    let first = tokio::time::timeout(DEADLINE, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        first.id(),
        marker,
        "nothing started while paused: {first:?}"
    );
    // one more round trip through the scheduler loop
    let marker2 = engine.submit(job("marker2", 101));
    engine.cancel(marker2);
    let second = tokio::time::timeout(DEADLINE, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        second.id(),
        marker2,
        "nothing started while paused: {second:?}"
    );
    assert_eq!(server.requests(), 0);
    let st = engine.stats();
    assert!(st.paused);
    assert_eq!(st.queued, 4);
    engine.resume();
    let evs = run_until(&mut events, 4).await;
    assert_eq!(terminals(&evs).len(), 4);
    assert_eq!(server.requests(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_defaults_apply_to_later_requests_without_overriding_jobs() {
    let server = TestServer::start(Script::text("ok"));
    let (engine, mut events) = start(&server.backend(), None);
    engine.submit(job("before", 0));
    run_until(&mut events, 1).await;
    engine.set_sampling(Sampling {
        temperature: Some(0.3),
        max_tokens: Some(64),
        ..Sampling::default()
    });
    engine.submit(job("after", 1));
    let mut own = job("own", 2);
    own.request.temperature = Some(0.9);
    engine.submit(own);
    run_until(&mut events, 2).await;
    let bodies = server.bodies();
    let by_prompt = |p: &str| {
        bodies
            .iter()
            .find(|b| b["messages"][0]["content"] == json!(p))
            .unwrap()
            .clone()
    };
    assert!(by_prompt("before").get("temperature").is_none());
    assert_eq!(by_prompt("after")["temperature"], json!(0.3));
    assert_eq!(by_prompt("after")["max_tokens"], json!(64));
    assert_eq!(by_prompt("own")["temperature"], json!(0.9));
    assert_eq!(by_prompt("own")["max_tokens"], json!(64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_makes_a_second_run_http_free_and_re_asks_only_changes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(Script::with_fn(|r| {
        Reply::text(format!("re: {}", r.last_message()))
    }));
    let backend = server.backend();
    let jobs = |temp: f64| -> Vec<Job> {
        (0..8)
            .map(|i| {
                let mut j = job(&format!("p{i}"), i);
                j.request.temperature = Some(if i == 7 { temp } else { 1.0 });
                j
            })
            .collect()
    };
    let run = |jobs: Vec<Job>, cache: ResponseCache| {
        let backend = backend.clone();
        async move {
            let (engine, mut events) = start(&backend, Some(cache));
            for j in jobs {
                engine.submit(j);
            }
            let evs = run_until(&mut events, 8).await;
            let cached = evs
                .iter()
                .filter(|e| matches!(e, EngineEvent::Finished { response, .. } if response.cached))
                .count();
            (engine.usage(), cached, evs)
        }
    };
    let (u1, c1, _) = run(jobs(1.0), ResponseCache::new(dir.path())).await;
    assert_eq!((u1.requests, u1.cached, c1), (8, 0, 0));
    assert_eq!(server.requests(), 8);

    let (u2, c2, evs) = run(jobs(1.0), ResponseCache::new(dir.path())).await;
    assert_eq!(server.requests(), 8, "second run made no HTTP request");
    assert_eq!((u2.requests, u2.cached, c2), (0, 8, 8));
    assert_eq!(finished_text(terminals(&evs)[&3]), "re: p3");

    // one changed parameter → one new request
    let (u3, c3, _) = run(jobs(0.2), ResponseCache::new(dir.path())).await;
    assert_eq!(server.requests(), 9);
    assert_eq!((u3.requests, c3), (1, 7));

    // the cache is one append-only pack, not a file per response
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");

    // a corrupt entry is a miss, not an error: damage the first record's
    // payload (past its 44-byte header)
    let mut bytes = std::fs::read(&files[0]).unwrap();
    bytes[50] ^= 0x55;
    std::fs::write(&files[0], &bytes).unwrap();
    let (_, c4, _) = run(jobs(1.0), ResponseCache::new(dir.path())).await;
    assert_eq!((server.requests(), c4), (10, 7));

    // --no-cache: every request goes out, and nothing is written
    let size = std::fs::metadata(&files[0]).unwrap().len();
    let (u5, c5, _) = run(jobs(1.0), ResponseCache::new(dir.path()).disabled()).await;
    assert_eq!((server.requests(), u5.requests, c5), (18, 8, 0));
    assert_eq!(std::fs::metadata(&files[0]).unwrap().len(), size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_counts_tokens_latency_and_cost() {
    let server =
        TestServer::start(Script::text("one two three four").latency(Duration::from_millis(5)));
    let mut backend = server.backend();
    backend.price_input_per_m = Some(1_000_000.0); // 1 per token, easy sums
    backend.price_output_per_m = Some(2_000_000.0);
    let (engine, mut events) = start(&backend, None);
    for i in 0..10 {
        engine.submit(job("abcdefgh", i));
    }
    let evs = run_until(&mut events, 10).await;
    let mut prompt = 0;
    let mut completion = 0;
    for ev in terminals(&evs).values() {
        match ev {
            EngineEvent::Finished {
                response, latency, ..
            } => {
                assert!(!response.usage.estimated);
                assert!(*latency >= Duration::from_millis(5));
                prompt += u64::from(response.usage.prompt_tokens);
                completion += u64::from(response.usage.completion_tokens);
            }
            other => panic!("{other:?}"),
        }
    }
    let st = engine.stats();
    let u = &st.usage;
    assert_eq!(u.requests, 10);
    assert_eq!((u.prompt_tokens, u.completion_tokens), (prompt, completion));
    assert_eq!(completion, 40);
    assert!((u.cost - (prompt as f64 + 2.0 * completion as f64)).abs() < 1e-6);
    assert!(u.latency_p50_ms >= 5.0 && u.latency_p99_ms >= u.latency_p50_ms);
    assert!(u.wall_s > 0.0 && st.requests_per_s > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_drains_the_queue() {
    let server = TestServer::start(Script::text("ok"));
    let (engine, mut events) = start(&server.backend(), None);
    for i in 0..5 {
        engine.submit(job(&format!("p{i}"), i));
    }
    drop(engine);
    let evs = run_until(&mut events, 5).await;
    assert_eq!(terminals(&evs).len(), 5);
    // then the engine ends and closes the channel
    assert!(
        tokio::time::timeout(DEADLINE, events.recv())
            .await
            .unwrap()
            .is_none()
    );
}

/// The `Backoff` events of a run, in order.
fn backoffs(events: &[EngineEvent]) -> Vec<(FailReason, Option<u16>, u32, u32, Duration)> {
    events
        .iter()
        .filter_map(|e| match e {
            EngineEvent::Backoff {
                reason,
                status,
                attempt,
                max_retries,
                wait,
                ..
            } => Some((*reason, *status, *attempt, *max_retries, *wait)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_announces_the_backoff_with_reason_and_retry_after_then_finishes() {
    let server = TestServer::start(Script::queue([
        Reply::rate_limited("1"),
        Reply::text("after the wait"),
    ]));
    let mut backend = server.backend();
    backend.max_retries = 5;
    backend.adaptive = false; // the event sequence of one job, no Limit events
    let (engine, mut events) = start(&backend, None);
    engine.submit(job("a", 9));
    let evs = run_until(&mut events, 1).await;
    assert_eq!(finished_text(terminals(&evs)[&9]), "after the wait");
    let b = backoffs(&evs);
    assert_eq!(b.len(), 1, "{evs:#?}");
    let (reason, status, attempt, max_retries, wait) = b[0];
    assert_eq!(reason, FailReason::RateLimited);
    assert_eq!(reason.as_str(), "rate_limited");
    assert_eq!(status, Some(429));
    assert_eq!((attempt, max_retries), (1, 5));
    // Retry-After: 1, not the test's 5 ms backoff.
    assert!(
        wait >= Duration::from_millis(990) && wait <= Duration::from_millis(1100),
        "{wait:?}"
    );
    // Order: first attempt, the announcement, then the retry and its end.
    let kinds: Vec<&str> = evs
        .iter()
        .filter(|e| !matches!(e, EngineEvent::Delta { .. }))
        .map(|e| match e {
            EngineEvent::Started { attempt: 0, .. } => "started0",
            EngineEvent::Started { attempt: 1, .. } => "started1",
            EngineEvent::Backoff { .. } => "backoff",
            EngineEvent::Finished { .. } => "finished",
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["started0", "backoff", "started1", "finished"]);
    assert!(evs.iter().all(|e| e.tag() == 9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_announce_each_retry_with_status_and_attempt() {
    let server = TestServer::start(Script::always(Reply::status(
        503,
        r#"{"error":{"message":"overloaded"}}"#,
    )));
    let mut backend = server.backend();
    backend.max_retries = 2;
    let (engine, mut events) = start(&backend, None);
    engine.submit(job("a", 1));
    let evs = run_until(&mut events, 1).await;
    assert_eq!(failed_reason(terminals(&evs)[&1]), FailReason::ServerError);
    let b = backoffs(&evs);
    let seen: Vec<_> = b.iter().map(|x| (x.0, x.1, x.2, x.3)).collect();
    assert_eq!(
        seen,
        [
            (FailReason::ServerError, Some(503), 1, 2),
            (FailReason::ServerError, Some(503), 2, 2),
        ]
    );
    // Exponential backoff from the 5 ms base, capped at 40 ms, with jitter.
    assert!(b.iter().all(|x| x.4 <= Duration::from_millis(40)), "{b:?}");
    // The last attempt is not announced: it ends the job instead.
    let last_backoff = evs
        .iter()
        .rposition(|e| matches!(e, EngineEvent::Backoff { .. }))
        .unwrap();
    let last_start = evs
        .iter()
        .rposition(|e| matches!(e, EngineEvent::Started { attempt: 2, .. }))
        .unwrap();
    assert!(last_backoff < last_start);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_jobs_share_the_rate_budget_and_usage_but_not_the_events() {
    let server = TestServer::start(Script::text("ok"));
    let mut backend = server.backend();
    backend.max_concurrency = 64;
    backend.requests_per_minute = Some(1200); // 20/s, about one second of burst
    let (engine, mut events) = start(&backend, None);
    let t0 = Instant::now();
    // 20 embedding requests (one text each) take the whole burst...
    let texts: Vec<String> = (0..20).map(|i| format!("text {i}")).collect();
    let vectors = tokio::time::timeout(DEADLINE, engine.embed(&texts, 1, None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(vectors.len(), 20);
    assert_eq!(server.embedding_requests(), 20);
    // ...so 10 chat jobs after them wait for the bucket to refill.
    let ids: Vec<u64> = (0..10)
        .map(|i| engine.submit(job(&format!("p{i}"), i)))
        .collect();
    let evs = run_until(&mut events, 10).await;
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(450), "{took:?}");
    // The chat receiver hears only of chat jobs.
    for ev in &evs {
        assert!(
            matches!(ev, EngineEvent::Limit { .. }) || ids.contains(&ev.id()),
            "{ev:?}"
        );
    }
    let u = engine.usage();
    assert_eq!(u.requests, 30, "{u:?}");
    assert_eq!(server.requests(), 10);
    // The test server counts 1 prompt token per embeddings request.
    let chat_prompt: u64 = evs
        .iter()
        .filter_map(|e| match e {
            EngineEvent::Finished { response, .. } => Some(u64::from(response.usage.prompt_tokens)),
            _ => None,
        })
        .sum();
    assert_eq!(u.prompt_tokens, chat_prompt + 20, "{u:?}");
}
