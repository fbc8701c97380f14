//! TUI speed with a 100,000-sample project: one full frame (render + diff
//! into a 120×40 test terminal) must stay under 2 ms, handling a review key
//! under 1 ms.

use criterion::{Criterion, criterion_group, criterion_main};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::hint::black_box;
use straddle::tui::fixture;
use straddle::tui::{Msg, update, view};

const N: usize = 100_000;

fn key(c: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

fn frame(c: &mut Criterion) {
    let mut st = fixture::state(N);
    let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let mut down = true;
    c.bench_function("frame_120x40_100k", |b| {
        b.iter(|| {
            // Move the selection so every frame has something new to draw.
            update(&mut st, key(if down { KeyCode::Down } else { KeyCode::Up }));
            down = !down;
            term.draw(|f| view::render(f, black_box(&st))).unwrap();
        })
    });
}

fn keys(c: &mut Criterion) {
    let st = fixture::state(N);
    c.bench_function("key_down_100k", |b| {
        let mut st = st.clone();
        b.iter(|| update(&mut st, key(KeyCode::Down)))
    });
    // Accept then undo, each with the store's acknowledgement applied
    // (fold, tallies, queue) — everything but the fsync. Two keys per
    // iteration: halve the figure for one.
    c.bench_function("key_accept_undo_pair_with_ack_100k", |b| {
        let mut st = st.clone();
        b.iter(|| {
            let fx = update(&mut st, key(KeyCode::Char('a')));
            fixture::ack(&mut st, fx);
            let fx = update(&mut st, key(KeyCode::Char('u')));
            fixture::ack(&mut st, fx)
        })
    });
    c.bench_function("key_skip_100k", |b| {
        let mut st = st.clone();
        b.iter(|| update(&mut st, key(KeyCode::Char(' '))))
    });
}

/// Re-ordering keys: switching the sort is free (every order is kept);
/// applying a filter is one pass over compact per-sample facts (and the
/// texts, lower-cased then, for words) plus one pass per order.
fn reorder(c: &mut Criterion) {
    let mut st = fixture::state(N);
    c.bench_function("key_cycle_sort_100k", |b| {
        b.iter(|| update(&mut st, key(KeyCode::Char('s'))))
    });
    for ch in "/class:HUM".chars() {
        update(&mut st, key(KeyCode::Char(ch)));
    }
    update(&mut st, key(KeyCode::Enter));
    c.bench_function("key_cycle_sort_filtered_100k", |b| {
        b.iter(|| update(&mut st, key(KeyCode::Char('s'))))
    });
    // `/` opens the prompt with the current filter, Enter re-applies it.
    c.bench_function("keys_reapply_filter_100k", |b| {
        b.iter(|| {
            update(&mut st, key(KeyCode::Char('/')));
            update(&mut st, key(KeyCode::Enter))
        })
    });
    // The same with words: a substring search in every sample's text.
    update(&mut st, key(KeyCode::Char('/')));
    for ch in " eiffel".chars() {
        update(&mut st, key(KeyCode::Char(ch)));
    }
    update(&mut st, key(KeyCode::Enter));
    assert_eq!(st.queue.filter().raw, "class:HUM eiffel");
    c.bench_function("keys_reapply_text_filter_100k", |b| {
        b.iter(|| {
            update(&mut st, key(KeyCode::Char('/')));
            update(&mut st, key(KeyCode::Enter))
        })
    });
}

/// Issue 15's project of 200,000 samples / ~600,000 events / 163 MB with a
/// 10 MB seed (`straddle::store::scale`), read from disk: opening it as the
/// terminal UI does (replay + review queue, tallies, doubt, map notes) and
/// handling keys on it. `scripts/scale.sh` measures the same on the real
/// binary in tmux.
fn scale(c: &mut Criterion) {
    use straddle::store::{Project, scale};
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("p200k");
    scale::write(&dir, scale::ScaleSpec::default()).unwrap();
    let mut g = c.benchmark_group("scale_200k");
    g.sample_size(10);
    let open = || {
        let p = Project::open(&dir).unwrap();
        let classes = p.classes();
        let (state, writer) = p.into_writer().unwrap();
        drop(writer);
        fixture::state_of(state, classes)
    };
    g.bench_function("open_to_review_state", |b| b.iter_with_large_drop(open));
    let mut st = open();
    g.bench_function("key_down", |b| {
        b.iter(|| update(&mut st, key(KeyCode::Down)))
    });
    g.bench_function("key_accept_undo_pair_with_ack", |b| {
        b.iter(|| {
            let fx = update(&mut st, key(KeyCode::Char('a')));
            fixture::ack(&mut st, fx);
            let fx = update(&mut st, key(KeyCode::Char('u')));
            fixture::ack(&mut st, fx)
        })
    });
    // A frame with the 10 MB seed's class selected in the Seeds pane.
    let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
    st.class_sel = 1;
    assert!(st.class_seeds().iter().any(|s| s.text().len() > 1 << 20));
    g.bench_function("frame_120x40", |b| {
        b.iter(|| {
            term.draw(|f| view::render(f, black_box(&st))).unwrap();
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = frame, keys, reorder, scale
}
criterion_main!(benches);
