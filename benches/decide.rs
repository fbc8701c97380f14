//! Decisions in the TUI when keys arrive faster than one fsync each: the
//! runtime's key bursts (`straddle::tui::burst`) on a 150,000-sample
//! project on disk — every key through the real `update` (fold, tallies,
//! queue), its decision staged in the real journal, each burst committed
//! with one write + `fdatasync`, then one 120×40 frame drawn, as the
//! runtime does. Target: ≥ 50,000 decisions/s sustained (criterion's
//! `elem/s`, one element per decision key).
//!
//! * `decisions_replay_100k`: 100,000 decision keys all waiting (a
//!   replayed macro, a paste): bursts end where the runtime's do, at
//!   `burst::MAX_KEYS` keys or `burst::MAX_TIME`.
//! * `decisions_typist_bursts_of_16_100k`: 100,000 keys in bursts of 16,
//!   each burst paying a whole fsync and frame: bound by the disk's flush
//!   time (16 per flush). The runtime's bursts are not fixed: keys that
//!   arrive during a flush are the next burst, so they grow until the
//!   flush is paid for — the replay figure is the sustained rate.
//! * `decisions_one_fsync_each_2k`: the app before bursts — each key's
//!   decision written and fsynced before the next key (2,000 keys).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::time::{Duration, Instant};
use straddle::domain::ProjectState;
use straddle::store::Journal;
use straddle::tui::burst::{self, Burst, Step};
use straddle::tui::{Effect, Msg, State, fixture, update, view};

/// Decision keys replayed.
const N: usize = 100_000;
/// Generated samples in the project: the fixture decides the first tenth,
/// so every key of the replay decides a pending example (once none is
/// left, each key would also scan the whole queue for the next one).
const SAMPLES: usize = 150_000;
/// Accept, reject, relabel-and-accept, in a fixed mix.
const KEYS: &[u8] = b"aaxa2aa3axa1aa";

fn key(i: usize) -> Msg {
    let c = KEYS[i % KEYS.len()] as char;
    Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

/// The fixture project written to a journal on disk (not tmpfs: under
/// the target folder), opened for appending, and the TUI state over it.
fn project(dir: &std::path::Path) -> (Journal, State) {
    let path = dir.join("journal.jsonl");
    let kinds = fixture::events(SAMPLES)
        .into_iter()
        .map(|e| e.kind)
        .collect();
    drop(Journal::create(&path, kinds).unwrap());
    let mut state = ProjectState::new(true);
    let (journal, _) = Journal::open(&path, &mut state).unwrap();
    (journal, fixture::state_of(state, fixture::classes()))
}

/// Replay `keys` decision keys in bursts of at most `size` keys (and at
/// most `burst::MAX_TIME`), each committed once and followed by a frame.
fn replay(
    st: &mut State,
    journal: &mut Journal,
    term: &mut Terminal<TestBackend>,
    keys: usize,
    size: usize,
) {
    let mut i = 0;
    while i < keys {
        let mut burst = Burst::default();
        let start = Instant::now();
        while i < keys && burst.keys() < size && start.elapsed() < burst::MAX_TIME {
            assert_eq!(burst.handle(st, key(i), journal), Step::More);
            i += 1;
        }
        let done = burst.finish(st, journal);
        assert!(done.error.is_none(), "{:?}", done.error);
        term.draw(|f| view::render(f, st)).unwrap();
    }
}

fn decisions(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (mut journal, base) = project(dir.path());
    let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let mut g = c.benchmark_group("decide");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    for (name, size) in [
        ("decisions_replay_100k", burst::MAX_KEYS),
        ("decisions_typist_bursts_of_16_100k", 16),
    ] {
        g.throughput(Throughput::Elements(N as u64));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut st = base.clone();
                    let syncs = journal.syncs();
                    let t = Instant::now();
                    replay(&mut st, &mut journal, &mut term, N, size);
                    total += t.elapsed();
                    let commits = journal.syncs() - syncs;
                    assert!(commits >= (N / size) as u64, "{commits} commits");
                    drop(st);
                }
                total
            })
        });
    }
    const ONE_BY_ONE: usize = 2_000;
    g.throughput(Throughput::Elements(ONE_BY_ONE as u64));
    g.bench_function("decisions_one_fsync_each_2k", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut st = base.clone();
                let t = Instant::now();
                for i in 0..ONE_BY_ONE {
                    for e in update(&mut st, key(i)) {
                        if let Effect::Append(kinds) = e {
                            let events = journal.append(kinds).unwrap();
                            update(&mut st, Msg::Appended(events));
                        }
                    }
                    term.draw(|f| view::render(f, &st)).unwrap();
                }
                total += t.elapsed();
                drop(st);
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);
