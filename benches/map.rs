//! The map pane with 100,000 points must render in under 5 ms: one frame
//! of the zoomed map (every point walked, braille cloud plus the mark
//! layers) into a 120×40 test terminal, the selection moving each time.
//! Also the normal layout with the map beside the review pane, and the
//! class-pair zoom.

use criterion::{Criterion, criterion_group, criterion_main};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::hint::black_box;
use straddle::tui::fixture;
use straddle::tui::state::Pane;
use straddle::tui::{Msg, update, view};

const N: usize = 100_000;

fn key(c: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

fn map(c: &mut Criterion) {
    let mut st = fixture::state(N);
    fixture::show_map(&mut st);
    assert_eq!(st.map.len(), N + 12, "every sample has a point");
    assert_eq!(st.focus, Pane::Map);
    let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let mut down = true;
    let mut frame = |name: &str, c: &mut Criterion, st: &mut straddle::tui::State| {
        c.bench_function(name, |b| {
            b.iter(|| {
                update(st, key(if down { KeyCode::Down } else { KeyCode::Up }));
                down = !down;
                term.draw(|f| view::render(f, black_box(st))).unwrap();
            })
        });
    };
    st.zoom = true;
    frame("map_zoomed_frame_120x40_100k", c, &mut st);
    st.zoom = false;
    frame("map_beside_review_frame_120x40_100k", c, &mut st);
    st.zoom = true;
    update(&mut st, key(KeyCode::Char('b')));
    assert!(st.map.pair.is_some());
    frame("map_pair_zoom_frame_120x40_100k", c, &mut st);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = map
}
criterion_main!(benches);
