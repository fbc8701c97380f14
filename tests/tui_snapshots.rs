//! Full-screen snapshots of the TUI with fixed data (ratatui `TestBackend`)
//! and a sweep over terminal sizes that must never panic.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use straddle::domain::Usage;
use straddle::tui::fixture;
use straddle::tui::state::{EngineStatus, StreamKind, StreamMsg};
use straddle::tui::{Msg, State, update, view};

/// The fixture with a running engine and three streams.
fn busy_state(w: u16, h: u16) -> State {
    let mut st = fixture::state(60);
    update(&mut st, Msg::Resize(w, h));
    update(&mut st, Msg::Engine(EngineStatus::Running));
    let streams = [
        (
            1,
            StreamKind::Generate,
            "LOC×HUM",
            Some(0.7),
            "Which city did Ada Lovelace live in when she wrote the notes?",
            true,
        ),
        (2, StreamKind::Relabel, "NUM", None, "NUM", true),
        (
            3,
            StreamKind::Generate,
            "NUM×ENTY",
            Some(0.6),
            "How many species of platyp",
            false,
        ),
    ];
    for (job, kind, classes, alpha, text, done) in streams {
        update(
            &mut st,
            Msg::Stream(StreamMsg::Started {
                job,
                kind,
                classes: classes.into(),
                alpha,
                settings: 0,
            }),
        );
        update(
            &mut st,
            Msg::Stream(StreamMsg::Delta {
                job,
                text: text.into(),
            }),
        );
        if done {
            update(&mut st, Msg::Stream(StreamMsg::Finished { job }));
        }
    }
    update(
        &mut st,
        Msg::Usage {
            usage: Usage {
                requests: 42,
                prompt_tokens: 31_000,
                completion_tokens: 5_200,
                cost: 0.0123,
                ..Usage::default()
            },
            req_per_s: 2.5,
        },
    );
    st
}

fn draw(st: &State, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| view::render(f, st)).unwrap();
    term
}

#[test]
fn full_screen_120x40() {
    let st = busy_state(120, 40);
    insta::assert_snapshot!(draw(&st, 120, 40).backend());
}

#[test]
fn compact_80x24_review_and_stats_tabs() {
    let mut st = busy_state(80, 24);
    insta::assert_snapshot!("compact_80x24_review", draw(&st, 80, 24).backend());
    st.focus = straddle::tui::state::Pane::Stats;
    update(
        &mut st,
        Msg::Engine(EngineStatus::Blocked(
            "LLM backend unavailable: connection refused — start the server (scripts/local-llm.sh start) or point backend.base_url / --base-url at a running one; press g to retry. Review, edit and export still work.".into(),
        )),
    );
    insta::assert_snapshot!("compact_80x24_stats", draw(&st, 80, 24).backend());
}

#[test]
fn help_is_generated_from_the_keymap() {
    let mut st = busy_state(120, 40);
    update(
        &mut st,
        Msg::Key(KeyEvent::new(KeyCode::Char('?'), KeyModifiers::NONE)),
    );
    let term = draw(&st, 120, 40);
    let text = format!("{}", term.backend());
    for (keys, help) in st.keymap.help_rows().iter().take(30) {
        assert!(text.contains(help), "help row '{keys} {help}' missing");
    }
    insta::assert_snapshot!(term.backend());
}

/// Scrolled through, the help screen shows every mode's part with every
/// row of it; the hint line of each mode is drawn where that mode shows it.
#[test]
fn help_and_hint_lines_show_every_mode() {
    use straddle::tui::keymap::KeyMode;
    let mut st = busy_state(120, 40);
    let press = |st: &mut State, c: KeyCode| {
        update(st, Msg::Key(KeyEvent::new(c, KeyModifiers::NONE)));
    };
    press(&mut st, KeyCode::Char('?'));
    let mut seen = String::new();
    for _ in 0..60 {
        seen.push_str(&format!("{}", draw(&st, 120, 40).backend()));
        press(&mut st, KeyCode::Down);
    }
    for (mode, rows) in st.keymap.help_sections() {
        if mode != KeyMode::Normal {
            assert!(seen.contains(mode.title()), "{mode:?} section missing");
        }
        for r in rows {
            assert!(
                seen.contains(&format!("{:<14}{}", r.label, r.help)),
                "{mode:?} {r:?}"
            );
        }
    }
    press(&mut st, KeyCode::Esc);
    let hint = |st: &State, mode: KeyMode| {
        let line = st.keymap.hint_line(mode);
        // The part that fits: the first two items.
        line.split(" · ").take(2).collect::<Vec<_>>().join(" · ")
    };
    for (open, mode) in [
        (KeyCode::Char('/'), KeyMode::Filter),
        (KeyCode::Char('E'), KeyMode::Export),
        (KeyCode::Char('A'), KeyMode::Confirm),
        (KeyCode::Char('e'), KeyMode::Edit),
    ] {
        press(&mut st, open);
        assert_eq!(st.mode.key_mode(), mode);
        let screen = format!("{}", draw(&st, 120, 40).backend());
        assert!(
            screen.contains(&hint(&st, mode)),
            "{mode:?}: {}",
            hint(&st, mode)
        );
        press(&mut st, KeyCode::Esc);
    }
}

/// Every mode at every size from 1×1 up: drawing never panics.
#[test]
fn never_panics_at_any_size() {
    let modes: Vec<Vec<Msg>> = vec![
        vec![],
        vec![Msg::Key(KeyEvent::new(
            KeyCode::Char('?'),
            KeyModifiers::NONE,
        ))],
        vec![Msg::Key(KeyEvent::new(
            KeyCode::Char('e'),
            KeyModifiers::NONE,
        ))],
        vec![Msg::Key(KeyEvent::new(
            KeyCode::Char('/'),
            KeyModifiers::NONE,
        ))],
        vec![Msg::Key(KeyEvent::new(
            KeyCode::Char('A'),
            KeyModifiers::SHIFT,
        ))],
        vec![Msg::Key(KeyEvent::new(
            KeyCode::Char('E'),
            KeyModifiers::SHIFT,
        ))],
        vec![Msg::Key(KeyEvent::new(
            KeyCode::Char('z'),
            KeyModifiers::NONE,
        ))],
    ];
    let sizes = (1..=130u16)
        .step_by(7)
        .flat_map(|w| (1..=45u16).step_by(4).map(move |h| (w, h)))
        .chain([(1, 1), (2, 1), (1, 2), (80, 24), (120, 40), (300, 100)]);
    for (w, h) in sizes {
        for msgs in &modes {
            let mut st = busy_state(w, h);
            for m in msgs {
                update(&mut st, m.clone());
            }
            // Keys at this size too (scroll math uses the layout).
            for c in [KeyCode::PageDown, KeyCode::End, KeyCode::Tab] {
                update(&mut st, Msg::Key(KeyEvent::new(c, KeyModifiers::NONE)));
            }
            draw(&st, w, h);
        }
    }
    // An empty project too.
    let mut st = fixture::state_with(&[]);
    for (w, h) in [(1, 1), (80, 24), (120, 40)] {
        update(&mut st, Msg::Resize(w, h));
        draw(&st, w, h);
    }
}

/// Record two S3 rounds (scores of all six classes, a confusion matrix).
fn add_two_rounds(st: &mut State) {
    use straddle::domain::{EventKind, RoundScored, Scores};
    let labels: Vec<String> = fixture::classes().into_iter().map(|c| c.name).collect();
    let scores = |f1: f64, right: u32| Scores {
        accuracy: f1,
        macro_f1: f1,
        labels: labels.clone(),
        confusion: (0..labels.len())
            .map(|i| {
                (0..labels.len())
                    .map(|j| {
                        if i == j {
                            right
                        } else {
                            u32::from((i + j) % 4 == 1)
                        }
                    })
                    .collect()
            })
            .collect(),
        n_train: 24,
        n_test: 60,
        ..Scores::default()
    };
    let rounds = [(1, 0.412, 0.533, 6), (2, 0.412, 0.618, 8)];
    let kinds = rounds
        .iter()
        .map(|&(round, base, aug, right)| {
            EventKind::RoundScored(RoundScored {
                round,
                baseline: scores(base, 5),
                augmented: scores(aug, right),
                errors: (1..=(10 - right as u64)).collect(),
                intervals: None,
            })
        })
        .collect();
    let events = fixture::stamp(kinds, st.project.last_event_id);
    update(st, Msg::Appended(events));
}

/// A recorded judge report: the Stats pane says how the relabeler did
/// on the held-out examples, and whether bulk rules trust it.
#[test]
fn stats_pane_shows_the_relabel_judge() {
    use straddle::classify::judge::judge_report;
    use straddle::domain::{EventKind, JudgeScored};
    let mut st = busy_state(120, 40);
    let labels: Vec<String> = fixture::classes().into_iter().map(|c| c.name).collect();
    let truth: Vec<usize> = (0..60).map(|i| i % labels.len()).collect();
    let always_first = vec![Some(0); 60];
    let report = judge_report("relabel", &labels, &truth, &always_first);
    let events = fixture::stamp(
        vec![EventKind::JudgeScored(JudgeScored {
            report,
            fingerprint: "test".into(),
            answers: vec![],
        })],
        st.project.last_event_id,
    );
    update(&mut st, Msg::Appended(events));
    let screen = format!("{:?}", draw(&st, 120, 40).backend());
    let level = 1.0 / labels.len() as f64;
    let want = format!("judge {level:.2} (chance {level:.2}) ✗");
    assert!(screen.contains(&want), "{want} not in\n{screen}");
}

/// Open batches (`straddle batch`) head the Streams pane; an ingested one
/// is gone.
#[test]
fn streams_pane_shows_open_batches() {
    use straddle::domain::{BatchPlanned, BatchUpdated, EventKind};
    let mut st = busy_state(120, 40);
    let planned = |b: &str| {
        EventKind::BatchPlanned(BatchPlanned {
            batch: b.into(),
            custom_ids: vec![format!("{b}-g0"), format!("{b}-g1")],
            input_sha256: "x".into(),
            plan_sha256: "y".into(),
            stream: 1,
            next_request: 2,
        })
    };
    let events = fixture::stamp(
        vec![
            planned("b1"),
            planned("b2"),
            EventKind::BatchUpdated(BatchUpdated {
                batch: "b1".into(),
                remote_id: Some("batch_9".into()),
                status: Some("in_progress".into()),
                ..Default::default()
            }),
            EventKind::BatchUpdated(BatchUpdated {
                batch: "b2".into(),
                status: Some("ingested".into()),
                ..Default::default()
            }),
        ],
        st.project.last_event_id,
    );
    update(&mut st, Msg::Appended(events));
    let screen = format!("{:?}", draw(&st, 120, 40).backend());
    assert!(
        screen.contains("⧗ batch b1 in_progress · 2 req"),
        "{screen}"
    );
    assert!(!screen.contains("batch b2"), "{screen}");
}

/// Two recorded S3 rounds: the Stats pane shows the per-round scores (and
/// the latest confusion matrix once zoomed).
#[test]
fn stats_pane_with_two_rounds() {
    let mut st = busy_state(120, 40);
    add_two_rounds(&mut st);
    insta::assert_snapshot!("stats_two_rounds_120x40", draw(&st, 120, 40).backend());
    st.focus = straddle::tui::state::Pane::Stats;
    st.zoom = true;
    insta::assert_snapshot!("stats_two_rounds_zoomed", draw(&st, 120, 40).backend());
    // Every size with rounds, Stats focused, zoomed or not: no panic.
    for w in (1..=130u16).step_by(9) {
        for h in (1..=45u16).step_by(4) {
            let mut st = busy_state(w, h);
            add_two_rounds(&mut st);
            st.focus = straddle::tui::state::Pane::Stats;
            draw(&st, w, h);
            st.zoom = true;
            draw(&st, w, h);
        }
    }
}

/// An untrusted relabel judge greys the review's llm column and the
/// detail's relabel line, and the detail says why.
#[test]
fn review_greys_verdicts_of_an_untrusted_judge() {
    use straddle::classify::judge::judge_report;
    use straddle::domain::{EventKind, JudgeScored};
    let mut st = busy_state(120, 40);
    // The llm column's cell of the second list row (the first is selected).
    let llm_cell = |st: &State| {
        let term = draw(st, 120, 40);
        let buf = term.backend().buffer().clone();
        let rows: Vec<String> = (0..40)
            .map(|y| (0..120).map(|x| buf[(x, y)].symbol().to_string()).collect())
            .collect();
        let y = rows.iter().position(|l| l.contains(" llm ")).unwrap();
        let x = rows[y].chars().collect::<Vec<_>>();
        let x = (0..x.len())
            .find(|&i| x[i..].starts_with(&['l', 'l', 'm']))
            .unwrap();
        (buf[(x as u16, y as u16 + 2)].fg, rows.join("\n"))
    };
    let (before, _) = llm_cell(&st);
    assert_ne!(
        before, st.theme.muted,
        "a trusted or unmeasured judge keeps its colours"
    );
    assert_eq!(st.relabel_distrust(), None);
    let labels: Vec<String> = fixture::classes().into_iter().map(|c| c.name).collect();
    let truth: Vec<usize> = (0..60).map(|i| i % labels.len()).collect();
    let report = judge_report("relabel", &labels, &truth, &vec![Some(0); 60]);
    let events = fixture::stamp(
        vec![EventKind::JudgeScored(JudgeScored {
            report,
            fingerprint: "test".into(),
            answers: vec![],
        })],
        st.project.last_event_id,
    );
    update(&mut st, Msg::Appended(events));
    let level = 1.0 / labels.len() as f64;
    assert_eq!(
        st.relabel_distrust().unwrap(),
        format!(
            "relabel judge not better than chance on held-out examples: {level:.2} vs {level:.2}"
        )
    );
    let (after, screen) = llm_cell(&st);
    assert_eq!(after, st.theme.muted);
    assert!(
        screen.contains("relabel judge not better than chance"),
        "{screen}"
    );
}

/// Attribute values: their weights in Controls, coverage in Stats.
#[test]
fn controls_and_stats_show_attribute_values() {
    use straddle::domain::{AttributeWeightChanged, EventKind};
    let mut st = busy_state(120, 40);
    st.attributes = straddle::domain::testing::attribute_dims(&[(
        "tone",
        &[("casual", "relaxed"), ("formal", "polite")],
    )]);
    let events = fixture::stamp(
        vec![EventKind::AttributeWeightChanged(AttributeWeightChanged {
            attribute: "tone".into(),
            value: "formal".into(),
            weight: 1.5,
        })],
        st.project.last_event_id,
    );
    update(&mut st, Msg::Appended(events));
    // Below the controls, out of a small pane's view: counted.
    let screen = format!("{:?}", draw(&st, 120, 40).backend());
    for want in ["↓ 3 more", "tone: casual 0(0) · formal 0(0)"] {
        assert!(screen.contains(want), "{want} not in\n{screen}");
    }
    // Selected: scrolled into view.
    st.focus = straddle::tui::state::Pane::Controls;
    st.control_sel = straddle::tui::state::Control::ALL.len() + 1;
    let screen = format!("{:?}", draw(&st, 120, 40).backend());
    for want in ["tone=casual  w 1.00 · 0✓ 0…", "tone=formal  w 1.50 · 0✓ 0…"] {
        assert!(screen.contains(want), "{want} not in\n{screen}");
    }
}

/// The review with a measured, trusted kNN judge chosen: the verdict
/// column shows its labels and confidences under "knn ✓", and the detail
/// lists every judge side by side.
#[test]
fn review_with_the_knn_judge_chosen() {
    use straddle::app::judges::{Choice, Opinion, ReviewJudges};
    let mut st = busy_state(120, 40);
    let names: Vec<String> = fixture::classes().into_iter().map(|c| c.name).collect();
    let mut opinions = std::collections::BTreeMap::new();
    for (judge, shift) in [("knn", 0usize), ("relabel", 1)] {
        let m = st
            .project
            .generated()
            .map(|s| {
                let i = names.iter().position(|n| *n == s.label).unwrap_or(0);
                // kNN agrees with every other intended label.
                let l = if s.id % 2 == 0 { i } else { i + 1 + shift };
                (
                    s.id,
                    Opinion {
                        judge: judge.into(),
                        label: Some(names[l % names.len()].clone()),
                        confidence: 0.5 + (s.id % 5) as f64 / 10.0,
                    },
                )
            })
            .collect();
        opinions.insert(judge.to_string(), m);
    }
    update(
        &mut st,
        Msg::JudgesMeasured(Ok(Box::new(straddle::tui::chosen::Measured {
            review: ReviewJudges {
                choice: Choice {
                    judge: Some("knn".into()),
                    trusted: true,
                    why: "knn is the most accurate".into(),
                },
                opinions: straddle::app::judges::Opinions::from_maps(opinions),
            },
            record: Vec::new(),
        }))),
    );
    insta::assert_snapshot!(draw(&st, 120, 40).backend());
}
