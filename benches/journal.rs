//! Journal benchmarks (issue 2 targets: open a project of 100,000 samples
//! with 300,000 events in under 300 ms; append 10,000 decisions at over
//! 50,000 events/s with group commit).
//!
//! What is measured, honestly:
//!
//! * `open/100k_samples_300k_events` — `Project::open` (lock, config, read
//!   the whole journal, parse and fold every line) of a project with 100,000
//!   `sample_added`, 100,000 `verdict_recorded` and 100,000 `decided` events
//!   (about 60 MB). `open_read_only` is measured beside it.
//! * `append_10k_decisions/*` — 10,000 `decided` events, every one durable
//!   (written and fsynced) before its caller gets its ack:
//!   - `group_commit_10k_async_appenders`: 10,000 tokio tasks (one
//!     current-thread runtime), each submits one decision to one
//!     `GroupCommitWriter` and awaits its durable ack. All are in flight at
//!     once, so the writer flushes them in a few large groups; this is the
//!     engine's situation (many concurrent producers on an async runtime).
//!   - `group_commit_32_threads`: 32 threads each append one decision at a
//!     time through one `GroupCommitWriter`, which coalesces whatever is
//!     queued into one write + one fsync. This is the concurrent-appender
//!     case (many producers, one disk flush per group).
//!   - `batches_of_100`: one caller, `Project::append` with 100 decisions per
//!     call (100 write + fsync pairs), the case of a bulk rule.
//!   - `one_by_one` (200 decisions; criterion reports the rate): one fsync per event, the floor a single key-press path
//!     pays; here for comparison.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use straddle::domain::testing::{accept, classes, project_config};
use straddle::domain::{
    EventKind, NewSample, Origin, ProjectConfig, Provenance, Verdict, VerdictMethod,
    VerdictRecorded,
};
use straddle::store::{GroupCommitWriter, Journal, Project};

/// The same allocator as the `straddle` binary (see `src/main.rs`), so the
/// figures are what the app gets.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SAMPLES: u64 = 100_000;
const DECISIONS: u64 = 10_000;

fn config() -> ProjectConfig {
    let names: Vec<String> = (0..6).map(|i| format!("C{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    project_config(
        "bench",
        "bench",
        classes(&names, |n| format!("class {}", &n[1..])),
    )
}

fn sample(i: u64) -> NewSample {
    NewSample {
        text: format!(
            "Generated example number {i}: how far is it from the station to the old harbour?"
        ),
        label: format!("C{}", i % 6),
        origin: Origin::Generated,
        provenance: Provenance {
            strategy: Some("mix".into()),
            classes: vec![
                format!("C{}", i % 6).into(),
                format!("C{}", (i + 1) % 6).into(),
            ],
            minor: Some(format!("C{}", (i + 1) % 6).into()),
            alpha: Some(0.7),
            template: Some("mix".into()),
            template_hash: Some("0123456789abcdef".into()),
            model: Some("smollm2".into()),
            request_id: Some(format!("req-{i}").into()),
            ..Default::default()
        },
    }
}

/// A project with 100k samples and 300k events.
fn big_project(root: &Path) -> PathBuf {
    let dir = root.join("big");
    let mut p = Project::create(&dir, config(), vec![]).unwrap();
    let ids = p.add_samples((0..SAMPLES).map(sample).collect()).unwrap();
    let mut kinds = Vec::with_capacity(2 * SAMPLES as usize);
    for &id in &ids {
        let label = format!("C{}", id % 6);
        kinds.push(EventKind::VerdictRecorded(VerdictRecorded {
            sample: id,
            verdict: Verdict {
                label: Some(label.as_str().into()),
                confidence: [(label, 0.92)].into(),
                method: VerdictMethod::Logprobs,
                votes: None,
                raw: None,
                model: Some("smollm2".into()),
                request_id: None,
            },
        }));
    }
    kinds.extend(ids.iter().map(|&id| accept(id)));
    p.append(kinds).unwrap();
    assert_eq!(p.state().events, 3 * SAMPLES);
    dir
}

fn bench_open(c: &mut Criterion) {
    let root = tempfile::tempdir().unwrap();
    let dir = big_project(root.path());
    let mut g = c.benchmark_group("open");
    g.sample_size(10);
    g.throughput(Throughput::Elements(3 * SAMPLES));
    g.bench_function("100k_samples_300k_events", |b| {
        b.iter_with_large_drop(|| {
            let p = Project::open(&dir).unwrap();
            assert_eq!(p.load_report().events, 3 * SAMPLES);
            p
        })
    });
    g.bench_function("100k_samples_300k_events_read_only", |b| {
        b.iter_with_large_drop(|| Project::open_read_only(&dir).unwrap())
    });
    g.finish();
    // Issue 15's project (`straddle::store::scale`): 200,000 samples with
    // realistic texts and provenance, ~600,000 events, 163 MB, one 10 MB
    // seed. `straddle stats` is this read-only open plus a few counts.
    let scale_dir = root.path().join("p200k");
    let s = straddle::store::scale::write(&scale_dir, Default::default()).unwrap();
    let mut g = c.benchmark_group("open_scale");
    g.sample_size(10);
    g.throughput(Throughput::Elements(s.events));
    g.bench_function("200k_samples_600k_events_read_only", |b| {
        b.iter_with_large_drop(|| Project::open_read_only(&scale_dir).unwrap())
    });
    g.finish();
}

/// A fresh small project to append into.
fn small_project(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    drop(Project::create(&dir, config(), (0..100).map(sample).collect()).unwrap());
    dir
}

fn group_commit_run(dir: &Path, threads: u64) -> Duration {
    let mut state = straddle::domain::ProjectState::new(true);
    let (journal, _) = Journal::open(&dir.join("journal.jsonl"), &mut state).unwrap();
    let writer = GroupCommitWriter::spawn(journal, |_| {});
    let per = DECISIONS / threads;
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let h = writer.handle();
            s.spawn(move || {
                for i in 0..per {
                    h.append(vec![accept(1 + (t * per + i) % 100)]).unwrap();
                }
            });
        }
    });
    let took = start.elapsed();
    writer.finish();
    took
}

fn group_commit_async_run(dir: &Path) -> Duration {
    let mut state = straddle::domain::ProjectState::new(true);
    let (journal, _) = Journal::open(&dir.join("journal.jsonl"), &mut state).unwrap();
    let writer = GroupCommitWriter::spawn(journal, |_| {});
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let start = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..DECISIONS)
            .map(|i| {
                let h = writer.handle();
                tokio::spawn(async move { h.submit(vec![accept(1 + i % 100)]).await.unwrap() })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().len(), 1);
        }
    });
    let took = start.elapsed();
    writer.finish();
    took
}

fn bench_append(c: &mut Criterion) {
    let root = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("append_10k_decisions");
    g.sample_size(10);
    g.throughput(Throughput::Elements(DECISIONS));
    let dir = small_project(root.path(), "gc_async");
    g.bench_function("group_commit_10k_async_appenders", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| group_commit_async_run(&dir)).sum())
    });
    let dir = small_project(root.path(), "gc");
    g.bench_function("group_commit_32_threads", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| group_commit_run(&dir, 32)).sum())
    });
    let dir = small_project(root.path(), "batch");
    g.bench_function("batches_of_100", |b| {
        let mut p = Project::open(&dir).unwrap();
        b.iter(|| {
            for chunk in 0..DECISIONS / 100 {
                let kinds = (0..100).map(|i| accept(1 + (chunk + i) % 100)).collect();
                p.append(kinds).unwrap();
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("append_200_decisions");
    g.sample_size(10);
    g.throughput(Throughput::Elements(200));
    let dir = small_project(root.path(), "single");
    g.bench_function("one_by_one", |b| {
        let mut p = Project::open(&dir).unwrap();
        b.iter(|| {
            for i in 0..200 {
                p.append(vec![accept(1 + i % 100)]).unwrap();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench_open, bench_append);
criterion_main!(benches);
