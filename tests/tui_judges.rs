//! The judges and the data gate in the TUI (issue 17): the judges are
//! measured when the app opens and again, coalesced, when their data
//! changes; the export dialog shows the data gate before Enter and a
//! strict export refuses when the gate does. Pure `update` tests; the
//! store is played by `fixture::ack`, screens drawn with `TestBackend`.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use straddle::app::data_gate::{self, DataGate};
use straddle::app::judges::{Choice, Opinion, ReviewJudges};
use straddle::classify::{SmallModel, TrainConfig};
use straddle::domain::testing::{accept, state_with};
use straddle::domain::{EventKind, JudgeScored, Origin};
use straddle::tui::chosen::Measured;
use straddle::tui::export_form::GateState;
use straddle::tui::fixture::{self, ack};
use straddle::tui::state::Mode;
use straddle::tui::{Effect, Msg, State, update, view};

fn key(c: char) -> Msg {
    let m = if c.is_ascii_uppercase() {
        KeyModifiers::SHIFT
    } else {
        KeyModifiers::NONE
    };
    Msg::Key(KeyEvent::new(KeyCode::Char(c), m))
}

fn code(c: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

fn screen(st: &State) -> String {
    let mut term = Terminal::new(TestBackend::new(st.size.0, st.size.1)).unwrap();
    term.draw(|f| view::render(f, st)).unwrap();
    let buf = term.backend().buffer();
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn count(fx: &[Effect], what: &Effect) -> usize {
    fx.iter().filter(|e| *e == what).count()
}

/// The kNN judge chosen and trusted, with an opinion of every generated
/// sample, and one report to record.
fn measured(st: &State) -> Measured {
    let names: Vec<String> = st.classes.iter().map(|c| c.name.clone()).collect();
    let ops = st
        .project
        .generated()
        .map(|s| {
            (
                s.id,
                Opinion {
                    judge: "knn".into(),
                    label: Some(names[(s.id as usize) % names.len()].clone()),
                    confidence: 0.75,
                },
            )
        })
        .collect();
    let report = straddle::classify::judge::judge_report(
        "knn",
        &names,
        &[0, 1, 2, 3],
        &[Some(0), Some(1), Some(2), Some(3)],
    );
    Measured {
        review: ReviewJudges {
            choice: Choice {
                judge: Some("knn".into()),
                trusted: true,
                why: "test".into(),
            },
            opinions: straddle::app::judges::Opinions::from_maps(
                [("knn".to_string(), ops)].into_iter().collect(),
            ),
        },
        record: vec![JudgeScored {
            report,
            fingerprint: "test".into(),
            answers: vec![],
        }],
    }
}

/// Opening asks for one measure and says so; keys while it runs queue one
/// more (never one per key); the answer replaces the llm column with the
/// chosen judge, records its report, and that record does not ask again.
#[test]
fn judges_are_measured_at_open_and_again_once_when_their_data_changes() {
    let mut st = fixture::state(30);
    let fx = update(&mut st, Msg::Opened);
    assert_eq!(fx, vec![Effect::MeasureJudges]);
    let s = screen(&st);
    assert!(s.contains("measuring judges…"), "{s}");
    assert!(s.contains(" llm "), "{s}");
    // Five accepts while the measure runs: no new job now.
    let mut asked = 0;
    for _ in 0..5 {
        let fx = update(&mut st, key('a'));
        asked += count(&ack(&mut st, fx), &Effect::MeasureJudges);
    }
    assert_eq!(asked, 0, "a measure per key");
    assert!(st.measuring.again);
    // The answer: the judges show, the report is recorded, and the one
    // queued measure starts.
    let m = measured(&st);
    let fx = update(&mut st, Msg::JudgesMeasured(Ok(Box::new(m))));
    assert_eq!(count(&fx, &Effect::MeasureJudges), 1, "{fx:?}");
    assert!(
        fx.iter().any(|e| matches!(e, Effect::Append(k)
            if matches!(&k[..], [EventKind::JudgeScored(j)] if j.report.judge == "knn"))),
        "{fx:?}"
    );
    let rest = ack(&mut st, fx);
    assert_eq!(
        count(&rest, &Effect::MeasureJudges),
        1,
        "the recorded report does not ask again: {rest:?}"
    );
    assert!(st.project.judges.contains_key("knn"));
    let s = screen(&st);
    assert!(s.contains("knn ✓"), "{s}");
    assert!(s.contains("measuring again…"), "{s}");
    // The second answer with nothing changed meanwhile: done.
    let m = measured(&st);
    let fx = update(&mut st, Msg::JudgesMeasured(Ok(Box::new(m))));
    assert_eq!(count(&fx, &Effect::MeasureJudges), 0, "{fx:?}");
    assert!(!st.measuring.running);
    // A failed measure says why.
    let fx = update(&mut st, key('a'));
    assert_eq!(count(&ack(&mut st, fx), &Effect::MeasureJudges), 1);
    st.judges = None;
    update(
        &mut st,
        Msg::JudgesMeasured(Err("no held-out examples".into())),
    );
    let s = screen(&st);
    assert!(
        s.contains("judges could not be measured: no held-out examples"),
        "{s}"
    );
}

/// A gate that says the accepted data makes the held-out score worse: the
/// `data_gate` unit test's project (accepted examples with swapped labels).
fn worse_gate() -> DataGate {
    let rows = straddle::domain::testing::swapped_label_rows();
    let refs: Vec<(&str, &str, Origin)> =
        rows.iter().map(|(t, l, o)| (t.as_str(), *l, *o)).collect();
    let st = state_with(&refs, (7..=86).map(accept).collect());
    let classes = vec!["sport".to_string(), "food".to_string()];
    let cfg = TrainConfig::for_classes(2, 0);
    data_gate::check(&SmallModel::Ngram(&cfg), &st, &classes)
        .unwrap()
        .unwrap()
}

/// The export dialog runs the data gate as it opens, shows "checking…"
/// then its verdict before Enter; with strict on, a gate that says worse
/// refuses (the dialog stays open and says why), as `export --strict`.
#[test]
fn the_export_dialog_shows_the_data_gate_before_confirm_and_strict_refuses() {
    let mut st = fixture::state(10);
    st.size = (120, 40);
    let fx = update(&mut st, key('E'));
    assert_eq!(fx, vec![Effect::CheckGate]);
    let s = screen(&st);
    assert!(s.contains("data gate: checking…"), "{s}");
    // Strict while the gate is still checking: Enter waits for it.
    for _ in 0..6 {
        update(&mut st, code(KeyCode::Down));
    }
    update(&mut st, key(' '));
    let Mode::Export(form) = &st.mode else {
        panic!("dialog closed")
    };
    assert!(form.strict);
    let fx = update(&mut st, code(KeyCode::Enter));
    assert!(fx.is_empty(), "{fx:?}");
    assert!(matches!(st.mode, Mode::Export(_)));
    assert!(
        st.last_error
            .as_deref()
            .is_some_and(|e| e.contains("still checking")),
        "{:?}",
        st.last_error
    );
    // The gate's answer: worse, naming the classes.
    let g = worse_gate();
    assert!(g.refuses());
    update(&mut st, Msg::Gate(Ok(Some(Box::new(g.clone())))));
    let s = screen(&st);
    assert!(s.contains("WORSE"), "{s}");
    assert!(s.contains("lost most (F1): sport"), "{s}");
    assert!(s.contains("Enter refuses"), "{s}");
    let fx = update(&mut st, code(KeyCode::Enter));
    assert!(fx.is_empty(), "strict export ran: {fx:?}");
    assert!(matches!(st.mode, Mode::Export(_)));
    assert!(
        st.last_error
            .as_deref()
            .is_some_and(|e| e.contains("export refused") && e.contains("WORSE")),
        "{:?}",
        st.last_error
    );
    // Strict off: the same gate is shown and Enter exports anyway.
    update(&mut st, key(' '));
    let fx = update(&mut st, code(KeyCode::Enter));
    assert!(matches!(&fx[..], [Effect::Export(_)]), "{fx:?}");
    // A gate answer after the dialog closed changes nothing.
    update(&mut st, Msg::Gate(Ok(None)));
    assert!(matches!(st.mode, Mode::Normal));
    // A gate with nothing to compare lets a strict export through.
    update(&mut st, key('E'));
    update(&mut st, Msg::Gate(Ok(None)));
    let Mode::Export(form) = &mut st.mode else {
        panic!()
    };
    form.strict = true;
    assert_eq!(form.gate, GateState::Ready(None));
    assert!(screen(&st).contains("nothing to compare"));
    let fx = update(&mut st, code(KeyCode::Enter));
    assert!(matches!(&fx[..], [Effect::Export(_)]), "{fx:?}");
}
