//! The map pane: a snapshot with a fixed point set, a projection that
//! stays put as samples arrive, a highlight that follows the selection,
//! class-pair zoom and the message without an embedder.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::sync::Arc;
use straddle::domain::{EventKind, NewSample, Origin, Provenance, SampleAdded};
use straddle::tui::keymap::Action;
use straddle::tui::map::{MapReply, Mark};
use straddle::tui::state::{Effect, Pane};
use straddle::tui::{Msg, State, fixture, update, view};

fn key(st: &mut State, a: Action) -> Vec<Effect> {
    let k = st.keymap.specs_for(a)[0].event();
    update(st, Msg::Key(k))
}

fn press(st: &mut State, c: KeyCode) {
    update(st, Msg::Key(KeyEvent::new(c, KeyModifiers::NONE)));
}

fn draw(st: &State, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| view::render(f, st)).unwrap();
    term
}

/// The fixture (12 seeds, 24 generated: some accepted, some rejected)
/// with the map shown and every sample projected.
fn mapped() -> State {
    let mut st = fixture::state(24);
    update(&mut st, Msg::Resize(100, 30));
    let rest = fixture::show_map(&mut st);
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(st.focus, Pane::Map);
    assert_eq!(st.map.len(), 36, "every seed and generated sample");
    assert_eq!(st.map.waiting(), 0);
    st
}

/// Where the selection mark is drawn, if it is.
fn selection_cell(term: &Terminal<TestBackend>) -> Option<(u16, u16)> {
    let buf = term.backend().buffer();
    let area = buf.area;
    (area.top()..area.bottom())
        .flat_map(|y| (area.left()..area.right()).map(move |x| (x, y)))
        .find(|&(x, y)| {
            buf[(x, y)].symbol() == "◉"
                && buf[(x, y)].bg != ratatui::style::Color::Reset
                && y < area.bottom() - 6
        })
}

#[test]
fn snapshot_of_the_map_pane() {
    let mut st = mapped();
    st.zoom = true;
    insta::assert_snapshot!("map_zoomed_100x30", draw(&st, 100, 30).backend());
    st.zoom = false;
    update(&mut st, Msg::Resize(120, 40));
    insta::assert_snapshot!("map_beside_review_120x40", draw(&st, 120, 40).backend());
}

#[test]
fn the_projection_stays_put_when_one_sample_is_added() {
    let mut st = mapped();
    let before = st.map.projection.clone().unwrap();
    let points = |st: &State| {
        let mut v: Vec<_> = Mark::ALL
            .iter()
            .flat_map(|m| st.map.points(*m).to_vec())
            .collect();
        v.sort_by_key(|p| p.id);
        v
    };
    let old = points(&st);
    let id = st.project.samples.len() as u64 + 1;
    let kinds = vec![EventKind::SampleAdded(SampleAdded::new(
        id,
        NewSample {
            text: "Where is the tallest waterfall?".into(),
            label: "LOC".into(),
            origin: Origin::Generated,
            provenance: Provenance::default(),
        },
    ))];
    let fx = without_judges(fixture::ack(&mut st, vec![Effect::Append(kinds)]));
    // One job for the one new sample, with the projection in use.
    let [Effect::Map(job)] = fx.as_slice() else {
        panic!("{fx:?}")
    };
    assert!(job.fit.is_none(), "no refit for one sample");
    assert!(Arc::ptr_eq(job.projection.as_ref().unwrap(), &before));
    assert_eq!(job.samples.len(), 1);
    assert_eq!(job.samples[0].0, id);
    fixture::answer_map(&mut st, fx);
    assert!(Arc::ptr_eq(st.map.projection.as_ref().unwrap(), &before));
    let new = points(&st);
    assert_eq!(new.len(), old.len() + 1);
    assert_eq!(
        new.iter()
            .filter(|p| p.id != id)
            .copied()
            .collect::<Vec<_>>(),
        old,
        "no point already drawn moved"
    );
    assert_eq!(st.map.refits, 0);
}

#[test]
fn doubling_the_fit_set_refits_and_says_so_and_m_refits_on_request() {
    let mut st = mapped();
    let fit = st.map.fit_count();
    // Accept enough pending examples to double seeds + accepted.
    let pending: Vec<u64> = st
        .project
        .generated()
        .filter(|s| s.status() == straddle::domain::Status::Pending)
        .map(|s| s.id)
        .take(fit)
        .collect();
    let mut fx = Vec::new();
    for id in pending {
        fx = fixture::ack(
            &mut st,
            vec![Effect::Append(vec![EventKind::decided(
                id,
                straddle::domain::Decision {
                    kind: straddle::domain::DecisionKind::Accept,
                    label: None,
                    reason: None,
                    by: straddle::domain::Actor::Key("a".into()),
                },
            )])],
        );
        fx = without_judges(fx);
        if !fx.is_empty() {
            break;
        }
    }
    let [Effect::Map(job)] = fx.as_slice() else {
        panic!("{fx:?}")
    };
    assert!(job.fit.is_some(), "the fit set doubled: refit");
    assert!(
        st.notice.as_deref().unwrap().contains("refitting"),
        "{:?}",
        st.notice
    );
    fixture::answer_map(&mut st, fx);
    assert_eq!(st.map.refits, 1);
    assert_eq!(st.map.len(), 36);
    let fx = key(&mut st, Action::MapRefit);
    assert!(matches!(fx.as_slice(), [Effect::Map(j)] if j.fit.is_some()));
}

/// Every point of a state, by sample.
fn all_points(st: &State) -> Vec<straddle::tui::map::MapPoint> {
    let mut v: Vec<_> = Mark::ALL
        .iter()
        .flat_map(|m| st.map.points(*m).to_vec())
        .collect();
    v.sort_by_key(|p| p.id);
    v
}

/// Show the map and answer its jobs one by one, checking each is small.
fn show_map_a_job_at_a_time(st: &mut State) -> usize {
    let mut fx = key(st, Action::ToggleMap);
    let mut jobs = 0;
    while let [Effect::Map(job)] = fx.as_slice() {
        jobs += 1;
        assert!(job.samples.len() <= straddle::tui::map::JOB);
        if let Some(fit) = &job.fit {
            assert!(fit.texts.len() <= straddle::embed::MAX_FIT);
        }
        let more = job.more;
        fx = fixture::answer_map_once(st, fx);
        assert_eq!(more, st.map.waiting() > 0, "more jobs follow");
    }
    assert!(fx.is_empty(), "{fx:?}");
    jobs
}

/// Over the fit cap (5,000 seeds + accepted): the refit job carries only
/// the fit set's sample and the first samples; the others follow a job at
/// a time. The projection is the one fitted on every seed + accepted
/// vector (what the map computed when it embedded them all), and the same
/// data gives the same points.
#[test]
fn a_large_map_is_fitted_on_a_sample_and_projected_a_job_at_a_time() {
    let n = 70_000;
    let mut st = fixture::state(n);
    let fit_set: Vec<Vec<f32>> = st
        .project
        .samples
        .iter()
        .filter(|s| {
            s.origin == Origin::Seed
                || s.origin == Origin::Generated && s.status() == straddle::domain::Status::Accepted
        })
        .map(|s| fixture::map_vector(&st, s))
        .collect();
    assert!(fit_set.len() > straddle::embed::MAX_FIT);
    let jobs = show_map_a_job_at_a_time(&mut st);
    assert_eq!(jobs, (n + 12).div_ceil(straddle::tui::map::JOB));
    assert_eq!(st.map.len(), n + 12);
    assert_eq!(st.map.waiting(), 0);
    let refs: Vec<&[f32]> = fit_set.iter().map(Vec::as_slice).collect();
    let whole = straddle::embed::Projection::fit(&refs).unwrap();
    assert_eq!(**st.map.projection.as_ref().unwrap(), whole);
    assert_eq!(whole.fitted_on, fit_set.len());
    for p in all_points(&st) {
        let s = st.project.sample(p.id).unwrap();
        assert_eq!([p.x, p.y], whole.project(&fixture::map_vector(&st, s)));
    }
    // Refitting on the same data draws the same picture.
    let before = all_points(&st);
    let mut fx = key(&mut st, Action::MapRefit);
    while !fx.is_empty() {
        fx = fixture::answer_map_once(&mut st, fx);
    }
    assert_eq!(st.map.refits, 1);
    assert_eq!(all_points(&st), before, "deterministic");
}

#[test]
fn the_highlight_follows_the_selection() {
    let mut st = mapped();
    st.zoom = true;
    let first = st.selected_sample().unwrap().id;
    let term = draw(&st, 100, 30);
    let at_first = selection_cell(&term).expect("selection drawn");
    let screen = format!("{}", term.backend());
    assert!(screen.contains(&format!("◉ #{first} ")), "{screen}");
    // Down in the map moves the review selection; the mark moves with it.
    let mut moved = None;
    for _ in 0..10 {
        press(&mut st, KeyCode::Down);
        let term = draw(&st, 100, 30);
        let id = st.selected_sample().unwrap().id;
        assert_ne!(id, first);
        let screen = format!("{}", term.backend());
        assert!(screen.contains(&format!("◉ #{id} ")), "{screen}");
        let cell = selection_cell(&term).expect("selection drawn");
        if cell != at_first {
            moved = Some(cell);
            break;
        }
    }
    assert!(moved.is_some(), "the mark never moved");
}

#[test]
fn b_zooms_to_the_selected_examples_mix_pair_then_the_next() {
    let mut st = mapped();
    let s = st.selected_sample().unwrap();
    let (label, minor) = (
        s.label.to_string(),
        s.provenance.minor.clone().unwrap().to_string(),
    );
    key(&mut st, Action::MapPair);
    let (a, b) = st.map.pair.unwrap();
    let names = [
        st.classes[a as usize].name.clone(),
        st.classes[b as usize].name.clone(),
    ];
    assert!(
        names.contains(&label) && names.contains(&minor),
        "{names:?}"
    );
    st.zoom = true;
    let screen = format!("{}", draw(&st, 100, 30).backend());
    assert!(screen.contains(&format!("Map · {} × {}", names[0], names[1])));
    let pairs = straddle::tui::map::class_pairs(&st);
    assert_eq!(pairs.len(), 15);
    // Every press moves on; after the last pair, the whole map again.
    let mut seen = 1;
    while st.map.pair.is_some() {
        key(&mut st, Action::MapPair);
        seen += 1;
        assert!(seen < 20);
    }
    assert!(st.notice.as_deref().unwrap().contains("all classes"));
}

#[test]
fn without_an_embedder_the_pane_says_how_to_install_one() {
    let mut st = fixture::state(6);
    let fx = key(&mut st, Action::ToggleMap);
    assert!(matches!(fx.as_slice(), [Effect::Map(j)] if j.fit.is_some()));
    let cfg = straddle::domain::EmbeddingsConfig::default();
    let msg = straddle::tui::map::no_embedder_message(&cfg);
    update(&mut st, Msg::Map(MapReply::Unavailable(msg)));
    st.zoom = true;
    let screen = format!("{}", draw(&st, 100, 24).backend());
    assert!(screen.contains("No embedder installed"), "{screen}");
    assert!(screen.contains("`scripts/embedder.sh"), "{screen}");
    // Nothing more is asked for until the map is shown again.
    let fx = fixture::ack(&mut st, vec![]);
    assert!(fx.is_empty());
    key(&mut st, Action::ToggleMap);
    assert!(!st.map.shown);
    assert_eq!(st.focus, Pane::Review);
    let fx = key(&mut st, Action::ToggleMap);
    assert!(matches!(fx.as_slice(), [Effect::Map(_)]), "retried");
}

#[test]
fn tab_skips_the_hidden_map() {
    let mut st = fixture::state(6);
    for _ in 0..12 {
        press(&mut st, KeyCode::Tab);
        assert_ne!(st.focus, Pane::Map);
    }
}

/// The effects but the judges' measure (asked for whenever their data
/// changes; `tests/tui_judges.rs`).
fn without_judges(fx: Vec<Effect>) -> Vec<Effect> {
    fx.into_iter()
        .filter(|e| *e != Effect::MeasureJudges)
        .collect()
}
