//! Engine throughput and latency against the local test server.
//!
//! * `engine/stream_2000x60_c64`: 2,000 streamed requests of ~60 tokens at
//!   concurrency 64, server without latency; beside it the same load from
//!   a minimal reqwest+tokio client (`baseline`), measured in the same run.
//! * `engine/latency200ms_2000_c64`: the same with 200 ms server latency;
//!   the ideal wall time is 2000 / 64 × 0.2 s = 6.25 s.
//!
//! * `engine/adaptive_one_slot_40x200ms_c8`: adaptive concurrency (issue
//!   15) against a server that serves one request at a time, 200 ms each:
//!   40 requests at `max_concurrency = 8`; ideal 40 × 0.2 s = 8 s, target
//!   within 10% with no timeout and no retry (a 1 s timeout, which a
//!   window of 8 queued at the server would exceed). Its measured pass
//!   also runs the zero-latency load adaptively (the limit has to reach
//!   64 for the throughput to match the fixed window above, which the
//!   other groups use to measure the engine itself).
//!
//! Before the criterion groups, one measured pass of each prints requests/s
//! and the client's CPU time per request (from `/proc/self/task/*/schedstat`
//! of the client runtime's threads; the server runs on its own thread) and
//! checks them against the targets.
//!
//! `cargo bench --bench engine` (slow on 2 cores: sample counts are small).
//!
//! The allocator is mimalloc, as in the `straddle` binary (`src/main.rs`),
//! for the engine, the bare client and the server alike.

#[path = "../tests/support/mod.rs"]
mod support;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::StreamExt;
use serde_json::json;
use straddle::domain::BackendConfig;
use straddle::engine::{Engine, EngineEvent, EngineOptions, Job};
use straddle::llm::{ChatRequest, Message};
use support::{Script, TestServer};
use tokio::runtime::Runtime;

const N: usize = 2000;
const CONCURRENCY: usize = 64;
const CLIENT_THREAD: &str = "bench-client";

fn answer() -> String {
    (0..60)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn server(latency: Duration) -> TestServer {
    TestServer::start_on(0, Script::text(answer()).latency(latency), false)
}

fn backend(server: &TestServer) -> BackendConfig {
    BackendConfig {
        max_concurrency: CONCURRENCY,
        max_retries: 0,
        timeout_s: 60.0,
        adaptive: false,
        ..server.backend()
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(CLIENT_THREAD)
        .enable_all()
        .build()
        .unwrap()
}

fn request(i: usize) -> ChatRequest {
    ChatRequest::new(vec![
        Message::system("You write short example texts."),
        Message::user(format!("Write example number {i}.")),
    ])
}

/// All jobs through the engine; the consumer reads every event.
async fn engine_run(backend: &BackendConfig, n: usize) {
    engine_run_with(backend, n, true).await
}

async fn engine_run_with(backend: &BackendConfig, n: usize, deltas_on: bool) {
    let options = EngineOptions {
        deltas: deltas_on,
        ..EngineOptions::default()
    };
    let (engine, mut events) = Engine::start_with(backend, None, options).unwrap();
    for i in 0..n {
        engine.submit(Job::new(request(i), i as u64));
    }
    let mut done = 0;
    let mut deltas = 0usize;
    while done < n {
        match events.recv().await.expect("engine alive") {
            EngineEvent::Finished { response, .. } => {
                assert!(response.text.len() > 100);
                done += 1;
            }
            EngineEvent::Failed { message, .. } => panic!("request failed: {message}"),
            EngineEvent::Delta { text, .. } => deltas += text.len().min(1),
            EngineEvent::Started { .. }
            | EngineEvent::Backoff { .. }
            | EngineEvent::Limit { .. } => {}
        }
    }
    assert!(!deltas_on || deltas >= n);
}

/// The floor: reqwest + a semaphore, reading each SSE body to the end
/// without parsing it.
async fn baseline_run(backend: &BackendConfig, n: usize) {
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let url = format!("{}/chat/completions", backend.base_url);
    let sem = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let body = json!({"model": backend.model, "messages": request(i).messages,
            "stream": true, "stream_options": {"include_usage": true}});
        let (client, url) = (client.clone(), url.clone());
        set.spawn(async move {
            let resp = client.post(&url).json(&body).send().await.unwrap();
            let mut s = resp.bytes_stream();
            let mut bytes = 0;
            while let Some(c) = s.next().await {
                bytes += c.unwrap().len();
            }
            assert!(bytes > 1000);
            drop(permit);
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
}

/// CPU time of the client runtime's threads so far.
fn client_cpu() -> Duration {
    thread_cpu(CLIENT_THREAD)
}

/// CPU time of the threads whose name starts with `prefix`.
fn thread_cpu(prefix: &str) -> Duration {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.trim().starts_with(prefix) {
            continue;
        }
        let sched = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        ns += sched
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Duration::from_nanos(ns)
}

struct Pass {
    wall: Duration,
    cpu: Duration,
    server_cpu: Duration,
}

impl Pass {
    fn rps(&self) -> f64 {
        N as f64 / self.wall.as_secs_f64()
    }
    fn cpu_ms_per_req(&self) -> f64 {
        self.cpu.as_secs_f64() * 1000.0 / N as f64
    }
}

fn measure(
    rt: &Runtime,
    f: impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
) -> Pass {
    rt.block_on(f()); // warm up
    let (c0, s0, t0) = (client_cpu(), thread_cpu("test-llm-server"), Instant::now());
    rt.block_on(f());
    let wall = t0.elapsed();
    Pass {
        wall,
        cpu: client_cpu().saturating_sub(c0),
        server_cpu: thread_cpu("test-llm-server").saturating_sub(s0),
    }
}

/// One measured pass of each scenario, printed with the targets.
fn summary() {
    let rt = runtime();
    let srv = server(Duration::ZERO);
    let b = backend(&srv);
    let eng = measure(&rt, || {
        let b = b.clone();
        Box::pin(async move { engine_run(&b, N).await })
    });
    let quiet = measure(&rt, || {
        let b = b.clone();
        Box::pin(async move { engine_run_with(&b, N, false).await })
    });
    let base = measure(&rt, || {
        let b = b.clone();
        Box::pin(async move { baseline_run(&b, N).await })
    });
    println!(
        "\n== engine: {N} streamed requests of ~60 tokens, concurrency {CONCURRENCY}, no latency =="
    );
    for (name, p) in [
        ("engine", &eng),
        ("engine without deltas", &quiet),
        ("baseline reqwest+tokio", &base),
    ] {
        println!(
            "{name:>24}: {:7.0} req/s  wall {:6.3} s  client CPU {:.3} ms/request  server CPU {:.3} ms/request",
            p.rps(),
            p.wall.as_secs_f64(),
            p.cpu_ms_per_req(),
            p.server_cpu.as_secs_f64() * 1000.0 / N as f64
        );
    }
    println!("  server connections: {}", srv.connections());
    let absolute = eng.rps() >= 2000.0 && eng.cpu_ms_per_req() < 0.5;
    let relative = eng.rps() >= 0.8 * base.rps();
    println!(
        "  target ≥2000 req/s and <0.5 ms CPU/req: {}; within 20% of baseline throughput: {} ({:.0}%)",
        if absolute { "MET" } else { "missed" },
        if relative { "MET" } else { "missed" },
        100.0 * eng.rps() / base.rps()
    );
    drop(srv);

    let srv = server(Duration::from_millis(200));
    let b = backend(&srv);
    let t0 = Instant::now();
    rt.block_on(engine_run(&b, N));
    let wall = t0.elapsed().as_secs_f64();
    let ideal = N as f64 / CONCURRENCY as f64 * 0.2;
    println!(
        "== engine: {N} requests, 200 ms server latency, concurrency {CONCURRENCY} ==\n  wall {wall:.3} s, ideal {ideal:.3} s ({:+.1}%): {}\n",
        100.0 * (wall / ideal - 1.0),
        if wall <= ideal * 1.1 {
            "MET (within 10%)"
        } else {
            "missed"
        }
    );
}

fn throughput(c: &mut Criterion) {
    summary();
    let rt = runtime();
    let srv = server(Duration::ZERO);
    let b = backend(&srv);
    let mut g = c.benchmark_group("engine");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(N as u64));
    g.bench_function("stream_2000x60_c64", |bench| {
        bench.iter(|| rt.block_on(engine_run(&b, N)))
    });
    g.bench_function("baseline_2000x60_c64", |bench| {
        bench.iter(|| rt.block_on(baseline_run(&b, N)))
    });
    g.finish();
}

fn latency(c: &mut Criterion) {
    let rt = runtime();
    let srv = server(Duration::from_millis(200));
    let b = backend(&srv);
    let mut g = c.benchmark_group("engine");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(60))
        .throughput(Throughput::Elements(N as u64));
    g.bench_function("latency200ms_2000_c64", |bench| {
        bench.iter(|| rt.block_on(engine_run(&b, N)))
    });
    g.finish();
}

/// The one-slot server of the adaptive target and its backend.
fn one_slot() -> (TestServer, BackendConfig) {
    let srv = TestServer::start_on(
        0,
        Script::text(answer())
            .latency(Duration::from_millis(200))
            .one_at_a_time(),
        false,
    );
    let b = BackendConfig {
        max_concurrency: 8,
        max_retries: 4,
        timeout_s: 1.0,
        adaptive: true,
        ..srv.backend()
    };
    (srv, b)
}

/// Every job through an engine; returns its final stats.
async fn adaptive_run(backend: &BackendConfig, n: usize) -> straddle::engine::EngineStats {
    let options = EngineOptions {
        deltas: false,
        ..EngineOptions::default()
    };
    let (engine, mut events) = Engine::start_with(backend, None, options).unwrap();
    for i in 0..n {
        engine.submit(Job::new(request(i), i as u64));
    }
    let mut done = 0;
    while done < n {
        match events.recv().await.expect("engine alive") {
            EngineEvent::Finished { .. } => done += 1,
            EngineEvent::Failed { message, .. } => panic!("request failed: {message}"),
            _ => {}
        }
    }
    engine.stats()
}

fn adaptive(c: &mut Criterion) {
    let rt = runtime();
    let (srv, b) = one_slot();
    let t0 = Instant::now();
    let st = rt.block_on(adaptive_run(&b, 40));
    let wall = t0.elapsed().as_secs_f64();
    let retries = srv.requests() - 40;
    println!(
        "\n== adaptive: 40 requests, one-slot server, 200 ms each, max_concurrency 8, timeout 1 s ==\n  wall {wall:.3} s, ideal 8.000 s ({:+.1}%), timeouts {}, retries {retries}, most at the server {}, limit at the end {} ({}): {}",
        100.0 * (wall / 8.0 - 1.0),
        st.usage.failures.get("timeout").copied().unwrap_or(0),
        srv.max_in_flight(),
        st.effective_concurrency,
        st.limit_reason,
        if wall <= 8.8 && retries == 0 && st.usage.failures.is_empty() {
            "MET"
        } else {
            "missed"
        }
    );
    drop(srv);
    let srv = server(Duration::ZERO);
    let b0 = BackendConfig {
        adaptive: true,
        ..backend(&srv)
    };
    let t0 = Instant::now();
    let st = rt.block_on(adaptive_run(&b0, N));
    let wall = t0.elapsed().as_secs_f64();
    println!(
        "== adaptive: {N} requests, no latency, max_concurrency {CONCURRENCY} ==\n  {:.0} req/s, limit at the end {} ({}), most at the server {}\n",
        N as f64 / wall,
        st.effective_concurrency,
        st.limit_reason,
        srv.max_in_flight()
    );
    drop(srv);

    let (_srv, b) = one_slot();
    let mut g = c.benchmark_group("engine");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(85))
        .throughput(Throughput::Elements(40));
    g.bench_function("adaptive_one_slot_40x200ms_c8", |bench| {
        bench.iter(|| rt.block_on(adaptive_run(&b, 40)))
    });
    g.finish();
}

criterion_group!(benches, throughput, latency, adaptive);
criterion_main!(benches);
