//! Unit tests of the TUI's pure `update`: every action, with the store
//! played by `fixture::ack` (effects → acknowledged events → update).

use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use straddle::domain::{
    Actor, DecisionKind, EventKind, GenerationSettings, SampleId, Status, Undone,
};
use straddle::tui::fixture::{self, ack};
use straddle::tui::state::{Control, EngineStatus, Mode, Pane, StreamKind, StreamMsg, StreamState};
use straddle::tui::{Effect, Msg, State, update};

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

fn ctrl(c: char) -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

/// Press a key and let the fake store acknowledge what it appends.
fn press(st: &mut State, m: Msg) -> Vec<Effect> {
    let fx = update(st, m);
    ack(st, fx)
}

fn selected(st: &State) -> SampleId {
    st.selected_sample().expect("a selected sample").id
}

fn status(st: &State, id: SampleId) -> Status {
    st.project.sample(id).unwrap().status()
}

/// Select the first pending sample.
fn first_pending(st: &mut State) -> SampleId {
    let i = st
        .queue
        .ids()
        .iter()
        .position(|id| status(st, *id) == Status::Pending)
        .unwrap();
    st.review_sel = i;
    selected(st)
}

#[test]
fn accept_appends_a_decision_and_moves_on() {
    let mut st = fixture::state(40);
    let id = first_pending(&mut st);
    let fx = update(&mut st, key('a'));
    assert_eq!(fx.len(), 1);
    let Effect::Append(kinds) = &fx[0] else {
        panic!("{fx:?}")
    };
    let [EventKind::Decided(d)] = kinds.as_slice() else {
        panic!("{kinds:?}")
    };
    assert_eq!(d.sample, id);
    assert_eq!(d.decision.kind, DecisionKind::Accept);
    assert_eq!(d.decision.by, Actor::Key("a".into()));
    // The selection already moved on to the next pending sample.
    let next = selected(&st);
    assert_ne!(next, id);
    assert_eq!(status(&st, next), Status::Pending);
    let before = st.tally.generated;
    // Nothing but the judges' measure (their data changed).
    assert!(
        ack(&mut st, fx)
            .iter()
            .all(|e| matches!(e, Effect::MeasureJudges))
    );
    assert_eq!(status(&st, id), Status::Accepted);
    assert_eq!(st.tally.generated.accepted, before.accepted + 1);
    assert_eq!(st.tally.generated.pending, before.pending - 1);
    assert_eq!(selected(&st), next, "selection stays on the next sample");
}

#[test]
fn reject_appends_a_reject() {
    let mut st = fixture::state(40);
    let id = first_pending(&mut st);
    press(&mut st, key('x'));
    assert_eq!(status(&st, id), Status::Rejected);
    let d = st.project.sample(id).unwrap().decision().unwrap();
    assert_eq!(d.by, Actor::Key("x".into()));
}

#[test]
fn skip_moves_without_deciding() {
    let mut st = fixture::state(40);
    let id = first_pending(&mut st);
    let fx = update(&mut st, code(KeyCode::Char(' ')));
    assert!(fx.is_empty());
    assert_ne!(selected(&st), id);
    assert_eq!(status(&st, id), Status::Pending);
}

#[test]
fn undo_after_several_decisions_walks_back() {
    // A project with only undecided generated samples.
    let journal: Vec<_> = fixture::events(30)
        .into_iter()
        .filter(|e| !matches!(e.kind, EventKind::Decided(_)))
        .collect();
    let mut st = fixture::state_with(&journal);
    let a = selected(&st);
    press(&mut st, key('a'));
    let b = selected(&st);
    press(&mut st, key('x'));
    let c = selected(&st);
    press(&mut st, key('3'));
    assert_eq!(
        (status(&st, a), status(&st, b), status(&st, c)),
        (Status::Accepted, Status::Rejected, Status::Accepted)
    );
    assert_eq!(st.project.sample(c).unwrap().effective_label(true), "ENTY");

    // Undo three times: c, then b, then a — each an `undone` event.
    let fx = update(&mut st, key('u'));
    let Effect::Append(kinds) = &fx[0] else {
        panic!()
    };
    let [EventKind::Undone(Undone { sample, .. })] = kinds.as_slice() else {
        panic!("{kinds:?}")
    };
    assert_eq!(*sample, c);
    ack(&mut st, fx);
    assert_eq!(status(&st, c), Status::Pending);
    assert_eq!(selected(&st), c, "undo selects the sample it touched");
    press(&mut st, key('u'));
    assert_eq!(status(&st, b), Status::Pending);
    assert_eq!(status(&st, a), Status::Accepted);
    press(&mut st, key('u'));
    assert_eq!(status(&st, a), Status::Pending);
    assert_eq!(st.tally.generated.accepted + st.tally.generated.rejected, 0);
    // Nothing left: no effect, a notice.
    assert!(update(&mut st, key('u')).is_empty());
    assert_eq!(st.notice.as_deref(), Some("nothing of yours to undo"));
}

/// Decisions the pipeline makes on its own (as the session's dedup does).
fn auto_reject(st: &mut State, ids: &[SampleId], reason: &str) {
    let kinds = ids
        .iter()
        .map(|id| {
            EventKind::decided(
                *id,
                straddle::domain::Decision {
                    kind: DecisionKind::Reject,
                    label: None,
                    reason: Some(reason.into()),
                    by: Actor::Auto("dedup".into()),
                },
            )
        })
        .collect();
    ack(st, vec![Effect::Append(kinds)]);
}

fn undone_samples(fx: &[Effect]) -> Vec<SampleId> {
    let Some(Effect::Append(kinds)) = fx.first() else {
        panic!("no append: {fx:?}")
    };
    kinds
        .iter()
        .map(|k| match k {
            EventKind::Undone(u) => u.sample,
            other => panic!("not an undo: {other:?}"),
        })
        .collect()
}

#[test]
fn undo_is_about_the_person_never_the_pipeline() {
    let journal: Vec<_> = fixture::events(40)
        .into_iter()
        .filter(|e| !matches!(e.kind, EventKind::Decided(_)))
        .collect();
    let mut st = fixture::state_with(&journal);
    let a = selected(&st);
    press(&mut st, key('a'));
    // The pipeline rejects two duplicates after the person's accept.
    let pending: Vec<SampleId> = st
        .queue
        .ids()
        .iter()
        .copied()
        .filter(|id| *id != a && status(&st, *id) == Status::Pending)
        .take(2)
        .collect();
    auto_reject(&mut st, &pending, "duplicate");
    // `u` undoes the accept, not the duplicates, and says so.
    let fx = update(&mut st, key('u'));
    assert_eq!(undone_samples(&fx), vec![a]);
    assert_eq!(
        st.notice.as_deref(),
        Some(
            format!(
                "undid accept of #{a} as {}",
                st.project.sample(a).unwrap().effective_label(true)
            )
            .as_str()
        )
    );
    ack(&mut st, fx);
    assert_eq!(status(&st, a), Status::Pending);
    for id in &pending {
        assert_eq!(
            status(&st, *id),
            Status::Rejected,
            "the duplicate stays rejected"
        );
    }
    assert!(update(&mut st, key('u')).is_empty());
    assert_eq!(st.notice.as_deref(), Some("nothing of yours to undo"));

    // A bulk accept is one action: one `u` takes all of it back, even
    // with automatic decisions recorded after it.
    type_filter(&mut st, "class:hum status:pending");
    let bulk: Vec<SampleId> = st.queue.ids().to_vec();
    assert!(bulk.len() > 2);
    update(&mut st, key('A'));
    press(&mut st, key('y'));
    let later: Vec<SampleId> = st
        .project
        .generated()
        .filter(|s| s.status() == Status::Pending)
        .map(|s| s.id)
        .take(1)
        .collect();
    auto_reject(&mut st, &later, "near_duplicate");
    let fx = update(&mut st, key('u'));
    let mut undone = undone_samples(&fx);
    undone.sort();
    let mut want = bulk.clone();
    want.sort();
    assert_eq!(undone, want);
    assert!(
        st.notice.as_deref().is_some_and(
            |n| n.starts_with(&format!("undid bulk accept of {} examples", bulk.len()))
        ),
        "{:?}",
        st.notice
    );
    ack(&mut st, fx);
    assert!(bulk.iter().all(|id| status(&st, *id) == Status::Pending));

    // `/ actor:auto` lists what the pipeline decided; a person overturns
    // one there, and that decision is theirs to undo.
    type_filter(&mut st, "actor:auto");
    let mut autos: Vec<SampleId> = st.queue.ids().to_vec();
    autos.sort();
    let mut want: Vec<SampleId> = pending.iter().chain(&later).copied().collect();
    want.sort();
    assert_eq!(autos, want);
    let overturned = selected(&st);
    press(&mut st, key('a'));
    assert_eq!(status(&st, overturned), Status::Accepted);
    assert!(
        st.queue.position(overturned).is_none(),
        "no longer automatic"
    );
    let fx = update(&mut st, key('u'));
    assert_eq!(undone_samples(&fx), vec![overturned]);
    ack(&mut st, fx);
    assert_eq!(status(&st, overturned), Status::Rejected);
}

#[test]
fn relabel_key_accepts_with_the_class() {
    let mut st = fixture::state(40);
    let id = first_pending(&mut st);
    let hum_before = st.tally.per_class["HUM"].accepted;
    let fx = update(&mut st, key('4'));
    let Effect::Append(kinds) = &fx[0] else {
        panic!()
    };
    let EventKind::Decided(d) = &kinds[0] else {
        panic!()
    };
    assert_eq!(d.decision.label.as_deref(), Some("HUM"));
    assert_eq!(d.decision.kind, DecisionKind::Accept);
    ack(&mut st, fx);
    assert_eq!(st.project.sample(id).unwrap().effective_label(true), "HUM");
    assert_eq!(st.tally.per_class["HUM"].accepted, hum_before + 1);
    // A class number that does not exist does nothing.
    assert!(update(&mut st, key('9')).is_empty());
}

#[test]
fn edit_saves_and_asks_for_a_relabel() {
    let mut st = fixture::state(20);
    let id = selected(&st);
    let old = st.project.sample(id).unwrap().text().to_string();
    assert!(update(&mut st, key('e')).is_empty());
    assert!(matches!(st.mode, Mode::Edit { .. }));
    update(&mut st, code(KeyCode::End));
    for c in " Really".chars() {
        assert!(
            update(&mut st, key(c)).is_empty(),
            "typing goes to the editor"
        );
    }
    let fx = update(&mut st, ctrl('s'));
    assert!(matches!(st.mode, Mode::Normal));
    let text = format!("{old} Really");
    assert_eq!(
        fx,
        vec![
            Effect::Append(vec![EventKind::Edited(straddle::domain::Edited {
                sample: id,
                text: text.clone()
            })]),
            Effect::Relabel(id),
        ]
    );
    ack(&mut st, fx);
    assert_eq!(st.project.sample(id).unwrap().text(), text);
    // Esc cancels without effects.
    update(&mut st, key('e'));
    update(&mut st, key('z'));
    assert!(update(&mut st, code(KeyCode::Esc)).is_empty());
    assert!(matches!(st.mode, Mode::Normal));
    assert_eq!(st.project.sample(id).unwrap().text(), text);
    // Undo reverts the edit.
    press(&mut st, key('u'));
    assert_eq!(st.project.sample(id).unwrap().text(), old);
}

fn type_filter(st: &mut State, text: &str) {
    update(st, key('/'));
    while let Mode::Filter { input, .. } = &st.mode {
        if input.is_empty() {
            break;
        }
        update(st, code(KeyCode::Backspace));
    }
    for c in text.chars() {
        update(st, key(c));
    }
    update(st, code(KeyCode::Enter));
}

#[test]
fn bulk_accept_in_filter_after_confirmation() {
    let mut st = fixture::state(200);
    type_filter(&mut st, "class:hum status:pending");
    assert!(matches!(st.mode, Mode::Normal), "{:?}", st.mode);
    let n = st.queue.len();
    assert!(n > 5);
    for id in st.queue.ids() {
        let s = st.project.sample(*id).unwrap();
        assert_eq!(
            (s.effective_label(true), s.status()),
            ("HUM", Status::Pending)
        );
    }
    let others_before = st.tally.per_class["LOC"];
    // Confirmation shows the count; anything but y cancels.
    assert!(update(&mut st, key('A')).is_empty());
    assert!(matches!(&st.mode, Mode::Confirm { ids, .. } if ids.len() == n));
    assert!(update(&mut st, key('n')).is_empty());
    assert!(matches!(st.mode, Mode::Normal));
    update(&mut st, key('A'));
    let fx = update(&mut st, key('y'));
    let Effect::Append(kinds) = &fx[0] else {
        panic!()
    };
    assert_eq!(kinds.len(), n);
    assert!(kinds.iter().all(|k| matches!(k, EventKind::Decided(d)
        if d.decision.kind == DecisionKind::Accept && matches!(d.decision.by, Actor::Rule(_)))));
    ack(&mut st, fx);
    // The accepted samples left the `status:pending` filter.
    assert_eq!(st.queue.len(), 0);
    assert_eq!(st.tally.per_class["HUM"].pending, 0);
    assert_eq!(st.tally.per_class["LOC"], others_before);
    // A bad filter keeps the prompt open with a message.
    update(&mut st, key('/'));
    for c in " status:maybe".chars() {
        update(&mut st, key(c));
    }
    update(&mut st, code(KeyCode::Enter));
    assert!(matches!(&st.mode, Mode::Filter { error: Some(e), .. } if e.contains("maybe")));
}

#[test]
fn bulk_reject_with_text_filter() {
    let mut st = fixture::state(100);
    type_filter(&mut st, "everest");
    let ids: Vec<_> = st.queue.ids().to_vec();
    assert!(!ids.is_empty());
    update(&mut st, key('X'));
    let fx = update(&mut st, code(KeyCode::Enter));
    ack(&mut st, fx);
    for id in ids {
        assert_eq!(status(&st, id), Status::Rejected);
    }
}

#[test]
fn alpha_changes_reach_the_engine_and_the_journal() {
    let mut st = fixture::state(10);
    assert_eq!(st.settings.alpha_range, (0.5, 1.0));
    let fx = update(&mut st, key(']'));
    let want = GenerationSettings {
        alpha_range: (0.55, 1.0),
        ..GenerationSettings::default()
    };
    assert_eq!(
        fx,
        vec![Effect::Append(vec![EventKind::SettingsChanged(
            straddle::domain::SettingsChanged {
                generation: want.clone()
            }
        )])]
    );
    // Shown (and used by the session) once acknowledged.
    assert_eq!(st.settings.alpha_range, (0.5, 1.0));
    ack(&mut st, fx);
    assert_eq!(st.settings.alpha_range, (0.55, 1.0));
    assert_eq!(
        st.project.generation.as_ref().unwrap().alpha_range,
        (0.55, 1.0)
    );
    for _ in 0..2 {
        let fx = update(&mut st, key('['));
        ack(&mut st, fx);
    }
    assert_eq!(
        st.settings.alpha_range,
        (0.45, 1.0),
        "only the low end moves"
    );
}

/// Issue 12 item 3: values set in the app silently overrode
/// straddle.toml. They are journaled (so a restart keeps them: the
/// session and the Controls pane take them from the acknowledged event)
/// and the Controls pane marks each one that differs from straddle.toml.
#[test]
fn controls_mark_values_that_differ_from_straddle_toml() {
    let mut st = fixture::state(10);
    assert!(st.differs_from_toml().is_empty());
    let text = screen_text(&st);
    assert!(!text.contains("≠ toml"), "{text}");
    // α and the concurrency from the app.
    alpha_after(&mut st, ']');
    update(&mut st, code(KeyCode::Tab));
    update(&mut st, code(KeyCode::Tab));
    assert_eq!(st.focus, Pane::Controls);
    let conc = Control::ALL
        .iter()
        .position(|c| *c == Control::Concurrency)
        .unwrap();
    for _ in 0..conc {
        update(&mut st, code(KeyCode::Down));
    }
    let fx = update(&mut st, key('+'));
    ack(&mut st, fx);
    assert_eq!(st.project.concurrency, Some(5), "journaled");
    assert_eq!(
        st.differs_from_toml(),
        vec![Control::Alpha, Control::Concurrency]
    );
    let text = screen_text(&st);
    assert!(text.contains("Controls (* ≠ toml)"), "{text}");
    assert!(text.contains("0.55–1.00 *"), "{text}");
    assert!(text.contains("concurrency  5 *"), "{text}");
    assert!(text.contains("temperature  1.0 "), "{text}");
    assert!(!text.contains("temperature  1.0 *"), "{text}");
    // Back to the file's value: no longer marked.
    alpha_after(&mut st, '[');
    assert_eq!(st.differs_from_toml(), vec![Control::Concurrency]);
}

/// Issue 12 item 7: "target of 200 examples reached" and then `g` did
/// nothing and `+` was a class weight. Now the notice says how to go on,
/// `g` starts again (the session generates past a reached target) and the
/// Controls selection is on the target, so `+` there raises it.
#[test]
fn reaching_the_target_says_how_to_go_on_and_both_keys_work() {
    let mut st = fixture::state(10);
    update(&mut st, Msg::Engine(EngineStatus::Idle));
    update(&mut st, Msg::TargetReached(200));
    let notice = st.notice.clone().unwrap();
    assert!(
        notice.contains("target of 200 examples reached (accepted + pending)")
            && notice.contains("g continues past it")
            && notice.contains("+ on Controls › target raises it"),
        "{notice}"
    );
    assert!(screen_text(&st).contains("g continues past it"));
    assert_eq!(Control::ALL[st.control_sel], Control::Target);
    // g: generation starts again (past the target).
    assert_eq!(update(&mut st, key('g')), vec![Effect::StartGeneration]);
    // +: the target, with the selection already on it.
    update(&mut st, code(KeyCode::Tab));
    update(&mut st, code(KeyCode::Tab));
    assert_eq!(st.focus, Pane::Controls);
    let fx = update(&mut st, key('+'));
    assert!(
        matches!(&fx[..], [Effect::Append(k)] if matches!(&k[..],
            [EventKind::SettingsChanged(g)] if g.generation.target_count == 210)),
        "{fx:?}"
    );
}

/// Issue 11: the TUI trusted (or distrusted) the relabeler from a judge
/// report made for another model, template or relabel setting. A report
/// whose fingerprint is not this session's is stale: it says so, in the
/// review's reason and the Stats pane, and is not taken as trust.
#[test]
fn a_stale_judge_report_is_not_used() {
    use straddle::classify::judge::judge_report;
    use straddle::domain::JudgeScored;
    let mut st = fixture::state(10);
    let labels: Vec<String> = fixture::classes().into_iter().map(|c| c.name).collect();
    let truth: Vec<usize> = (0..60).map(|i| i % labels.len()).collect();
    let perfect: Vec<Option<usize>> = truth.iter().map(|t| Some(*t)).collect();
    let report = judge_report("relabel", &labels, &truth, &perfect);
    assert!(report.trusted());
    let events = fixture::stamp(
        vec![EventKind::JudgeScored(JudgeScored {
            report,
            fingerprint: "model=a template=1 relabel={}".into(),
            answers: vec![],
        })],
        st.project.last_event_id,
    );
    update(&mut st, Msg::Appended(events));
    // Unknown fingerprint (not checked), or the same: trusted.
    assert_eq!(st.relabel_distrust(), None);
    st.relabel_fingerprint = Some("model=a template=1 relabel={}".into());
    assert_eq!(st.relabel_distrust(), None);
    assert!(screen_text(&st).contains("(chance 0.17) ✓"));
    // Another model: stale, not trusted.
    st.relabel_fingerprint = Some("model=b template=1 relabel={}".into());
    assert!(st.relabel_judge_stale());
    let why = st
        .relabel_distrust()
        .expect("a stale report is not trusted");
    assert!(
        why.contains("another model, template or relabel setting"),
        "{why}"
    );
    assert!(screen_text(&st).contains("(chance 0.17) stale"));
}

/// The screen as text (120×40).
fn screen_text(st: &State) -> String {
    let mut term = ratatui::Terminal::new(ratatui::backend::TestBackend::new(120, 40)).unwrap();
    term.draw(|f| straddle::tui::view::render(f, st)).unwrap();
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

/// Press `c` and acknowledge what it journals; the α range after it.
fn alpha_after(st: &mut State, c: char) -> (f64, f64) {
    let fx = update(st, key(c));
    ack(st, fx);
    st.settings.alpha_range
}

/// Issue 12 item 3: `]` raised only the lower bound until the range
/// collapsed (0.50–1.00 → 1.00–1.00), `[` then lowered both (→ 0.50–0.50)
/// and no key widened it again. Now each end has its own keys, neither
/// collapses the range, and the other end moves only when it must.
#[test]
fn alpha_range_ends_move_separately_without_collapsing() {
    let mut st = fixture::state(10);
    assert_eq!(st.settings.alpha_range, (0.5, 1.0));
    // Low end up: the high end stays.
    assert_eq!(alpha_after(&mut st, ']'), (0.55, 1.0));
    // Low end down: the high end stays (the old `[` lowered both).
    assert_eq!(alpha_after(&mut st, '['), (0.5, 1.0));
    assert_eq!(alpha_after(&mut st, '['), (0.45, 1.0));
    // High end down, then up: the low end stays.
    assert_eq!(alpha_after(&mut st, '{'), (0.45, 0.95));
    assert_eq!(alpha_after(&mut st, '}'), (0.45, 1.0));
    // At the edge nothing changes and nothing is journaled.
    assert!(update(&mut st, key('}')).is_empty());
    // The low end raised up to the high end: it stops there with the
    // high end (1.00), and the next `[` opens it again by one step only.
    for _ in 0..20 {
        alpha_after(&mut st, ']');
    }
    assert_eq!(st.settings.alpha_range, (1.0, 1.0));
    assert_eq!(alpha_after(&mut st, '['), (0.95, 1.0));
    // The high end lowered into the low end pushes it down with it, one
    // step at a time, keeping low ≤ high.
    assert_eq!(alpha_after(&mut st, '{'), (0.95, 0.95));
    assert_eq!(alpha_after(&mut st, '{'), (0.9, 0.9));
    assert_eq!(alpha_after(&mut st, '}'), (0.9, 0.95));
    // The Controls pane shows both ends.
    let text = screen_text(&st);
    assert!(text.contains("0.90–0.95"), "{text}");
}

/// The α row of the Controls pane: `+` widens the range at both ends (the
/// way back from a narrow range), `-` narrows it to its middle at most; a
/// fixed α from straddle.toml becomes a range around it.
#[test]
fn alpha_range_widens_and_narrows_from_controls() {
    let mut st = fixture::state(10);
    update(&mut st, code(KeyCode::Tab));
    update(&mut st, code(KeyCode::Tab));
    assert_eq!(st.focus, Pane::Controls);
    let row = Control::ALL
        .iter()
        .position(|c| *c == Control::Alpha)
        .unwrap();
    for _ in 0..row {
        update(&mut st, code(KeyCode::Down));
    }
    assert_eq!(alpha_after(&mut st, '-'), (0.55, 0.95));
    for _ in 0..10 {
        alpha_after(&mut st, '-');
    }
    assert_eq!(
        st.settings.alpha_range,
        (0.75, 0.75),
        "narrowed to its middle"
    );
    assert_eq!(alpha_after(&mut st, '+'), (0.7, 0.8));
    for _ in 0..20 {
        alpha_after(&mut st, '+');
    }
    assert_eq!(
        st.settings.alpha_range,
        (0.0, 1.0),
        "widened to the whole range"
    );
    // A fixed α: the keys steer the range it becomes.
    let mut g = st.settings.clone();
    g.alpha = Some(0.7);
    ack(
        &mut st,
        vec![Effect::Append(vec![EventKind::SettingsChanged(
            straddle::domain::SettingsChanged { generation: g },
        )])],
    );
    assert_eq!(alpha_after(&mut st, '+'), (0.65, 0.75));
    assert_eq!(st.settings.alpha, None);
}

#[test]
fn weight_and_controls_reach_the_engine() {
    let mut st = fixture::state(10);
    update(&mut st, code(KeyCode::Tab));
    assert_eq!(st.focus, Pane::Seeds);
    update(&mut st, code(KeyCode::Down));
    let fx = update(&mut st, key('+'));
    assert_eq!(fx.len(), 1);
    assert!(matches!(&fx[0], Effect::Append(k) if matches!(&k[0],
        EventKind::WeightChanged(w) if w.class == "DESC" && w.weight == 1.25)));
    assert_eq!(st.classes[1].weight, 1.0, "shown once acknowledged");
    ack(&mut st, fx);
    assert_eq!(st.classes[1].weight, 1.25);
    assert_eq!(st.project.weights["DESC"], 1.25);
    // Target share follows the weight.
    assert!(st.target_for("DESC") > st.target_for("ABBR"));

    update(&mut st, code(KeyCode::Tab));
    assert_eq!(st.focus, Pane::Controls);
    let conc = Control::ALL
        .iter()
        .position(|c| *c == Control::Concurrency)
        .unwrap();
    for _ in 0..conc {
        update(&mut st, code(KeyCode::Down));
    }
    assert_eq!(
        update(&mut st, key('+')),
        vec![
            Effect::SetConcurrency(5),
            Effect::Append(vec![EventKind::ConcurrencyChanged(
                straddle::domain::ConcurrencyChanged { concurrency: 5 }
            )])
        ]
    );
    update(&mut st, code(KeyCode::Down));
    let fx = update(&mut st, key('-'));
    assert!(matches!(&fx[..], [Effect::Append(k)] if matches!(&k[..],
        [EventKind::SettingsChanged(g)] if g.generation.target_count == 190)));
    ack(&mut st, fx);
    assert_eq!(st.settings.target_count, 190);
    update(&mut st, code(KeyCode::Home));
    // The strategy control cycles through the strategies that plan from
    // the settings only: mix → plain → mix (never `extrapolate`, which an
    // S3 round runs and generation refused).
    let mut seen = Vec::new();
    for _ in 0..4 {
        let fx = update(&mut st, key('+'));
        ack(&mut st, fx);
        seen.push(st.settings.strategy);
    }
    use straddle::domain::Strategy::{Mix, Plain};
    assert_eq!(seen, [Plain, Mix, Plain, Mix]);
    let fx = update(&mut st, key('-'));
    ack(&mut st, fx);
    assert_eq!(st.settings.strategy, Plain);
}

#[test]
fn controls_steer_attribute_weights_and_offer_the_strategy() {
    use straddle::domain::Strategy::{Attributes, Mix, Plain};
    let mut st = fixture::state(10);
    st.attributes = straddle::domain::testing::attribute_dims(&[
        ("length", &[("long", ""), ("short", "")]),
        ("tone", &[("casual", ""), ("formal", "")]),
    ]);
    while st.focus != Pane::Controls {
        update(&mut st, code(KeyCode::Tab));
    }
    // With attribute dimensions the strategy control offers `attributes`.
    let mut seen = Vec::new();
    for _ in 0..3 {
        let fx = update(&mut st, key('+'));
        ack(&mut st, fx);
        seen.push(st.settings.strategy);
    }
    assert_eq!(seen, [Plain, Attributes, Mix]);
    // Below the controls: one row per value; + raises the selected one.
    for _ in 0..Control::ALL.len() + 2 {
        update(&mut st, code(KeyCode::Down));
    }
    let fx = update(&mut st, key('+'));
    assert!(
        matches!(&fx[..], [Effect::Append(k)] if matches!(&k[..],
            [EventKind::AttributeWeightChanged(w)]
                if w.attribute == "tone" && w.value == "casual" && w.weight == 1.25)),
        "{fx:?}"
    );
    assert_eq!(
        st.project.attribute_weight("tone", "casual"),
        1.0,
        "once acknowledged"
    );
    ack(&mut st, fx);
    assert_eq!(st.project.attribute_weight("tone", "casual"), 1.25);
    for _ in 0..6 {
        let fx = update(&mut st, key('-'));
        ack(&mut st, fx);
    }
    assert_eq!(
        st.project.attribute_weight("tone", "casual"),
        0.0,
        "floored at 0"
    );
    // The last row is the last value; Down stops there.
    for _ in 0..5 {
        update(&mut st, code(KeyCode::Down));
    }
    assert_eq!(st.control_sel, Control::ALL.len() + 3);
}

#[test]
fn generation_keys() {
    let mut st = fixture::state(5);
    // The status is the session's answer (`Msg::Engine`), never set by a key.
    assert_eq!(update(&mut st, key('g')), vec![Effect::StartGeneration]);
    assert_eq!(st.engine, EngineStatus::Idle);
    update(&mut st, Msg::Engine(EngineStatus::Running));
    assert_eq!(update(&mut st, key('g')), vec![Effect::PauseGeneration]);
    update(&mut st, Msg::Engine(EngineStatus::Paused));
    assert_eq!(update(&mut st, key('g')), vec![Effect::ResumeGeneration]);
    update(&mut st, Msg::Engine(EngineStatus::Running));
    assert_eq!(update(&mut st, key('G')), vec![Effect::StopGeneration]);
    update(&mut st, Msg::Engine(EngineStatus::Idle));
    assert_eq!(st.engine, EngineStatus::Idle);
    update(
        &mut st,
        Msg::Engine(EngineStatus::Blocked(
            "cannot reach http://x/v1: start the server".into(),
        )),
    );
    assert!(
        st.last_error
            .as_deref()
            .unwrap()
            .contains("start the server")
    );
    assert_eq!(update(&mut st, key('q')), vec![Effect::Quit]);
    assert!(st.quit);
}

#[test]
fn key_release_is_ignored() {
    let mut st = fixture::state(5);
    let mut k = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
    k.kind = KeyEventKind::Release;
    assert!(update(&mut st, Msg::Key(k)).is_empty());
    assert!(!st.quit);
}

#[test]
fn sort_cycles_and_keeps_the_selected_sample() {
    let mut st = fixture::state(60);
    update(&mut st, code(KeyCode::Down));
    update(&mut st, code(KeyCode::Down));
    let id = selected(&st);
    // Doubt first: the first row is at least as doubtful as the last.
    let d = |st: &State, i: usize| {
        straddle::tui::queue::doubt(
            st.project.sample(st.queue.get(i).unwrap()).unwrap(),
            &st.queue.ctx,
        )
        .0
    };
    assert!(d(&st, 0) >= d(&st, st.queue.len() - 1));
    update(&mut st, key('s'));
    assert_eq!(st.queue.sort().as_str(), "newest");
    assert_eq!(selected(&st), id);
    let first = st.queue.get(0).unwrap();
    assert!(st.queue.ids().iter().all(|x| *x <= first));
    update(&mut st, key('s'));
    assert_eq!(st.queue.sort().as_str(), "class");
    assert_eq!(selected(&st), id);
}

#[test]
fn arriving_samples_and_verdicts_slot_into_the_queue() {
    let mut st = fixture::state(20);
    let sel = selected(&st);
    let n = st.queue.len();
    let next = st.project.next_sample_id();
    let kinds = fixture::events(1)
        .into_iter()
        .skip(12)
        .map(|mut e| {
            match &mut e.kind {
                EventKind::SampleAdded(a) => a.id = next,
                EventKind::VerdictRecorded(v) => v.sample = next,
                _ => {}
            }
            e.kind
        })
        .collect();
    ack(&mut st, vec![Effect::Append(kinds)]);
    assert_eq!(st.queue.len(), n + 1);
    assert_eq!(selected(&st), sel, "selection follows its sample");
    assert!(st.queue.position(next).is_some());
}

#[test]
fn mouse_focuses_and_selects() {
    let mut st = fixture::state(30);
    let layout = straddle::tui::view::screen_layout(&st, ratatui::layout::Rect::new(0, 0, 120, 40));
    let seeds = layout.pane(Pane::Seeds).unwrap();
    let click = |x, y| {
        Msg::Mouse(MouseEvent {
            kind: MouseEventKind::Down(MouseButton::Left),
            column: x,
            row: y,
            modifiers: KeyModifiers::NONE,
        })
    };
    // Third class row: border + header + 2.
    update(&mut st, click(seeds.x + 3, seeds.y + 4));
    assert_eq!((st.focus, st.class_sel), (Pane::Seeds, 2));
    let review = layout.pane(Pane::Review).unwrap();
    let (list, _, _) = straddle::tui::view::review_parts(review);
    update(&mut st, click(list.x + 5, list.y + 3));
    assert_eq!((st.focus, st.review_sel), (Pane::Review, 3));
    update(
        &mut st,
        Msg::Mouse(MouseEvent {
            kind: MouseEventKind::ScrollDown,
            column: list.x + 5,
            row: list.y + 3,
            modifiers: KeyModifiers::NONE,
        }),
    );
    assert_eq!(st.review_sel, 6);
}

#[test]
fn streams_show_tokens_as_they_arrive() {
    let mut st = fixture::state(0);
    update(
        &mut st,
        Msg::Stream(StreamMsg::Started {
            job: 7,
            kind: StreamKind::Generate,
            classes: "LOC×HUM".into(),
            alpha: Some(0.7),
            settings: 0,
        }),
    );
    for t in ["Where ", "Where is ", "Where is Ada?"] {
        update(
            &mut st,
            Msg::Stream(StreamMsg::Delta {
                job: 7,
                text: t.into(),
            }),
        );
    }
    assert_eq!(st.streams[0].text, "Where is Ada?");
    assert_eq!(st.streams[0].chars, 13);
    update(
        &mut st,
        Msg::Stream(StreamMsg::Failed {
            job: 7,
            reason: "timeout".into(),
        }),
    );
    assert_eq!(st.streams[0].state, StreamState::Failed("timeout".into()));
}

#[test]
fn export_dialog_builds_the_request() {
    let mut st = fixture::state(5);
    update(&mut st, key('E'));
    assert!(matches!(st.mode, Mode::Export(_)));
    update(&mut st, code(KeyCode::Right)); // jsonl → csv
    update(&mut st, code(KeyCode::Down));
    update(&mut st, code(KeyCode::Down));
    update(&mut st, code(KeyCode::Right)); // include seeds
    let fx = update(&mut st, code(KeyCode::Enter));
    let [Effect::Export(req)] = fx.as_slice() else {
        panic!("{fx:?}")
    };
    assert_eq!(req.format, straddle::cli::ExportFormat::Csv);
    assert_eq!(req.out, std::path::PathBuf::from("exports/data.csv"));
    assert!(req.include_seeds);
    update(
        &mut st,
        Msg::Exported(Ok("Exported 3 train rows to /p/exports/data.csv.".into())),
    );
    assert!(
        st.notice
            .as_deref()
            .unwrap()
            .contains("/p/exports/data.csv")
    );
}

#[test]
fn failed_append_is_reported_and_changes_nothing() {
    let mut st = fixture::state(10);
    let id = first_pending(&mut st);
    update(&mut st, key('a'));
    update(&mut st, Msg::AppendFailed("disk full".into()));
    assert_eq!(status(&st, id), Status::Pending);
    assert!(st.last_error.as_deref().unwrap().contains("disk full"));
}

#[test]
fn seeds_are_editable_without_relabel() {
    let mut st = fixture::state(5);
    update(&mut st, code(KeyCode::Tab));
    assert_eq!(st.focus, Pane::Seeds);
    update(&mut st, code(KeyCode::Down)); // DESC
    update(&mut st, code(KeyCode::Right)); // into its seeds
    update(&mut st, code(KeyCode::Down)); // second seed
    let seed = st.class_seeds()[1].id;
    update(&mut st, key('e'));
    assert!(matches!(st.mode, Mode::Edit { sample, .. } if sample == seed));
    update(&mut st, code(KeyCode::End));
    update(&mut st, key('!'));
    let fx = update(&mut st, ctrl('s'));
    assert_eq!(fx.len(), 1, "a seed is not relabelled: {fx:?}");
    ack(&mut st, fx);
    assert!(st.project.sample(seed).unwrap().text().ends_with('!'));
    update(&mut st, code(KeyCode::Left));
    update(&mut st, code(KeyCode::Down));
    assert_eq!(st.class_sel, 2);
}

#[test]
fn cached_doubt_scores_match_augment() {
    let mut st = fixture::state(50);
    let ids: Vec<_> = st.project.generated().map(|s| s.id).collect();
    for id in ids {
        let s = st.project.sample(id).unwrap().clone();
        let want = straddle::augment::doubt(&s, &st.queue.ctx).score;
        assert_eq!(st.queue.score(&s), want);
    }
}

#[test]
fn deciding_the_last_row_wraps_to_the_first_pending() {
    let mut st = fixture::state(30);
    // The last pending row (decided samples sort below all pending ones).
    st.review_sel = st
        .queue
        .ids()
        .iter()
        .rposition(|id| status(&st, *id) == Status::Pending)
        .unwrap();
    let last = selected(&st);
    let fx = update(&mut st, key('a'));
    assert!(!fx.is_empty());
    let next = selected(&st);
    assert_ne!(next, last);
    assert_eq!(status(&st, next), Status::Pending);
    ack(&mut st, fx);
    // Pending come first under the doubt sort: the decided sample moved
    // below every pending one.
    let pending = st.tally.generated.pending as usize;
    assert!(
        st.queue.ids()[..pending]
            .iter()
            .all(|id| status(&st, *id) == Status::Pending)
    );
    assert!(st.queue.position(last).unwrap() >= pending);
    assert_eq!(
        selected(&st),
        next,
        "the selection stayed on the next sample"
    );
}

#[test]
fn esc_dismisses_the_message() {
    let mut st = fixture::state(3);
    update(&mut st, Msg::Error("boom".into()));
    assert_eq!(st.message(), Some(("boom", true)));
    update(&mut st, code(KeyCode::Esc));
    assert_eq!(st.message(), None);
}

#[test]
fn filtered_view_stays_consistent_across_arrivals_and_sorts() {
    let mut st = fixture::state(60);
    type_filter(&mut st, "class:LOC");
    let check = |st: &State| {
        let want: std::collections::BTreeSet<_> = st
            .project
            .generated()
            .filter(|s| s.effective_label(true) == "LOC")
            .map(|s| s.id)
            .collect();
        let got: std::collections::BTreeSet<_> = st.queue.ids().iter().copied().collect();
        assert_eq!(got, want);
        assert_eq!(got.len(), st.queue.len(), "no duplicates");
    };
    check(&st);
    // New samples: a LOC one shows up, a NUM one does not.
    let next = st.project.next_sample_id();
    let add = |id, label: &str| {
        EventKind::SampleAdded(straddle::domain::SampleAdded::new(
            id,
            straddle::domain::NewSample {
                text: format!("new {id}"),
                label: label.into(),
                origin: straddle::domain::Origin::Generated,
                provenance: Default::default(),
            },
        ))
    };
    ack(
        &mut st,
        vec![Effect::Append(vec![add(next, "LOC"), add(next + 1, "NUM")])],
    );
    assert!(st.queue.position(next).is_some());
    assert!(st.queue.position(next + 1).is_none());
    check(&st);
    for _ in 0..3 {
        update(&mut st, key('s'));
        check(&st);
    }
    // Relabelling a LOC sample to HUM takes it out of the view.
    let id = selected(&st);
    press(&mut st, key('4'));
    assert!(st.queue.position(id).is_none());
    check(&st);
}

#[test]
fn usage_journaled_mid_session_is_not_counted_twice() {
    use straddle::domain::{Usage, UsageRecorded};
    use straddle::tui::state::USAGE_RUN;
    let mut st = fixture::state(10);
    let journal_before = st.project.usage.requests;
    let reading = |requests: u64, tokens: u64| Usage {
        requests,
        prompt_tokens: tokens,
        failures: [("timeout".to_string(), requests / 2)].into(),
        ..Usage::default()
    };
    // The engine has done 4 requests; none journaled yet.
    update(
        &mut st,
        Msg::Usage {
            usage: reading(4, 400),
            req_per_s: 1.0,
        },
    );
    assert_eq!(st.total_usage().requests, journal_before + 4);
    // The pipeline journals the burst (the delta since its last record).
    let delta = reading(4, 400).since(&Usage::default());
    ack(
        &mut st,
        vec![Effect::Append(vec![EventKind::UsageRecorded(
            UsageRecorded {
                run: USAGE_RUN.into(),
                usage: delta,
            },
        )])],
    );
    assert_eq!(st.project.usage.requests, journal_before + 4);
    assert_eq!(st.total_usage().requests, journal_before + 4, "not twice");
    // More requests, then a second record of only the new part.
    update(
        &mut st,
        Msg::Usage {
            usage: reading(10, 1000),
            req_per_s: 1.0,
        },
    );
    assert_eq!(st.total_usage().requests, journal_before + 10);
    let delta = reading(10, 1000).since(&reading(4, 400));
    assert_eq!((delta.requests, delta.prompt_tokens), (6, 600));
    assert_eq!(delta.failures.get("timeout"), Some(&3));
    ack(
        &mut st,
        vec![Effect::Append(vec![EventKind::UsageRecorded(
            UsageRecorded {
                run: USAGE_RUN.into(),
                usage: delta,
            },
        )])],
    );
    let total = st.total_usage();
    assert_eq!(total.requests, journal_before + 10);
    assert_eq!(st.project.usage.requests, journal_before + 10);
    assert_eq!(total.prompt_tokens, st.project.usage.prompt_tokens);
}

#[test]
fn generation_failures_are_counted_and_shown() {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use straddle::domain::GenerationFailed;
    let mut st = fixture::state(10);
    assert_eq!(st.failures_label(), None);
    // A stream whose reply held no example.
    update(
        &mut st,
        Msg::Stream(StreamMsg::Started {
            job: 7,
            kind: StreamKind::Generate,
            classes: "LOC×HUM".into(),
            alpha: Some(0.7),
            settings: 0,
        }),
    );
    update(&mut st, Msg::Stream(StreamMsg::Finished { job: 7 }));
    update(
        &mut st,
        Msg::Stream(StreamMsg::Failed {
            job: 7,
            reason: "empty_reply".into(),
        }),
    );
    let row = st.streams.iter().find(|r| r.job == 7).unwrap();
    assert_eq!(row.state, StreamState::Failed("empty_reply".into()));
    let failed = |reason: &str| {
        EventKind::GenerationFailed(GenerationFailed {
            reason: reason.into(),
            raw: String::new(),
            provenance: Default::default(),
        })
    };
    ack(
        &mut st,
        vec![Effect::Append(vec![
            failed("timeout"),
            failed("unparsable"),
        ])],
    );
    ack(&mut st, vec![Effect::Append(vec![failed("empty_reply")])]);
    assert_eq!(st.failed, 3);
    assert_eq!(
        st.failures_label().as_deref(),
        Some("3 failed (empty_reply)")
    );
    // Status line, Stats pane and the stream's row all say so.
    let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
    term.draw(|f| straddle::tui::view::render(f, &st)).unwrap();
    let screen: Vec<String> = (0..40)
        .map(|y| {
            (0..120)
                .map(|x| term.backend().buffer()[(x, y)].symbol().to_string())
                .collect()
        })
        .collect();
    let status = &screen[39];
    assert!(status.contains("· 3 failed (empty_reply) │"), "{status}");
    assert!(
        screen
            .iter()
            .any(|l| l.contains("generation: 3 failed (empty_reply)")),
        "{}",
        screen.join("\n")
    );
    let head = screen
        .iter()
        .position(|l| l.contains("✗ #7 gen LOC×HUM"))
        .unwrap();
    assert!(
        screen[head + 1].contains("empty_reply"),
        "{}",
        screen[head + 1]
    );
}

#[test]
fn applied_filters_agree_with_filter_matches() {
    use straddle::tui::queue::Filter;
    let mut st = fixture::state(120);
    // Change some samples first: decisions, a relabel, an edit.
    first_pending(&mut st);
    press(&mut st, key('a'));
    press(&mut st, key('x'));
    press(&mut st, key('3'));
    let edited = first_pending(&mut st);
    press(&mut st, key('e'));
    press(&mut st, ctrl('a'));
    press(&mut st, ctrl('k'));
    for c in "Zebra CROSSING question".chars() {
        press(&mut st, key(c));
    }
    press(&mut st, ctrl('s'));
    assert_eq!(
        st.project.sample(edited).unwrap().text(),
        "Zebra CROSSING question"
    );
    let filters = [
        "status:accepted",
        "status:pending agree:no",
        "agree:none",
        "agree:yes class:hum",
        "class:ENTY",
        "eiffel",
        "zebra crossing",
        "question status:rejected",
        "class:LOC nothing-has-this",
    ];
    for text in filters {
        type_filter(&mut st, text);
        let f = Filter::parse(text, &st.classes).unwrap();
        let want: std::collections::BTreeSet<_> = st
            .project
            .generated()
            .filter(|s| f.matches(s, st.project.take_relabel))
            .map(|s| s.id)
            .collect();
        for _ in 0..3 {
            let got: std::collections::BTreeSet<_> = st.queue.ids().iter().copied().collect();
            assert_eq!(got, want, "filter '{text}'");
            assert_eq!(got.len(), st.queue.len(), "no duplicates");
            update(&mut st, key('s'));
        }
    }
    type_filter(&mut st, "zebra");
    assert_eq!(st.queue.ids(), &[edited]);
}

// ---- S3: rounds and training signals ------------------------------------

use straddle::classify::{LIKELY_MISLABEL, Mistake, Signals};
use straddle::domain::{NewSample, Origin, Provenance, RoundScored, SampleAdded, Scores};
use straddle::tui::queue::SortBy;
use straddle::tui::s3::RoundResult;

/// Add samples of `origin` through the fake store; returns their ids.
fn add_samples(st: &mut State, origin: Origin, texts: &[(&str, &str)]) -> Vec<SampleId> {
    let first = st.project.samples.iter().map(|s| s.id).max().unwrap_or(0) + 1;
    let kinds: Vec<EventKind> = texts
        .iter()
        .enumerate()
        .map(|(i, (text, label))| {
            EventKind::SampleAdded(SampleAdded::new(
                first + i as u64,
                NewSample {
                    text: text.to_string(),
                    label: label.to_string(),
                    origin,
                    provenance: Provenance::default(),
                },
            ))
        })
        .collect();
    let rest = ack(st, vec![Effect::Append(kinds)]);
    assert!(
        rest.iter().all(|e| matches!(e, Effect::MeasureJudges)),
        "{rest:?}"
    );
    (first..first + texts.len() as u64).collect()
}

fn mislabel(label: &str) -> Signals {
    Signals {
        confidence: 0.1,
        variability: 0.05,
        oof_confidence: 0.05,
        oof_label: fixture::classes()
            .iter()
            .position(|c| c.name == label)
            .unwrap() as u32,
        reasons: [LIKELY_MISLABEL].into_iter().collect(),
        model_doubt: None,
    }
}

fn scores(macro_f1: f64, labels: &[&str]) -> Scores {
    Scores {
        accuracy: macro_f1,
        macro_f1,
        labels: labels.iter().map(|l| l.to_string()).collect(),
        confusion: vec![vec![1; labels.len()]; labels.len()],
        n_train: 12,
        n_test: 2,
        ..Scores::default()
    }
}

/// The last pending sample in doubt order (the least doubtful).
fn least_doubtful_pending(st: &State) -> SampleId {
    *st.queue
        .ids()
        .iter()
        .rev()
        .find(|id| status(st, **id) == Status::Pending)
        .unwrap()
}

#[test]
fn round_key_without_heldout_examples_says_how_to_import_them() {
    let mut st = fixture::state(20);
    let fx = press(&mut st, key('R'));
    assert!(fx.is_empty(), "{fx:?}");
    let err = st.last_error.clone().unwrap();
    assert!(err.contains("--as validation"), "{err}");
    assert!(!st.s3.round_running);
}

#[test]
fn round_key_runs_one_round_off_the_ui_and_its_result_updates_state_and_queue() {
    let mut st = fixture::state(40);
    let val = add_samples(
        &mut st,
        Origin::Validation,
        &[("Who wrote Hamlet?", "HUM"), ("Where is Lima?", "LOC")],
    );
    let fx = press(&mut st, key('R'));
    assert_eq!(fx, vec![Effect::RunRound { round: 1 }]);
    assert!(st.s3.round_running);
    // A second press while it runs starts nothing.
    assert!(press(&mut st, key('R')).is_empty());

    assert_eq!(st.queue.sort(), SortBy::Doubt);
    let flagged = least_doubtful_pending(&st);
    let before = st.queue.position(flagged).unwrap();
    let mistake = Mistake {
        id: val[1],
        text: "Where is Lima?".into(),
        truth: "LOC".into(),
        predicted: "HUM".into(),
        confidence: 0.6,
    };
    let result = RoundResult {
        scored: RoundScored {
            round: 1,
            baseline: scores(0.25, &["HUM", "LOC"]),
            augmented: scores(0.5, &["HUM", "LOC"]),
            errors: vec![val[1]],
            intervals: None,
        },
        // Two held-out examples, one more right: the interval includes 0.
        comparison: straddle::classify::bootstrap::compare(2, &[0, 1], &[0, 0], &[0, 1], 1000, 0),
        model: "ngram".into(),
        note: Some("no embedder configured".into()),
        mistakes: vec![mistake.clone()],
        signals: [(flagged, mislabel("NUM"))].into_iter().collect(),
    };
    let fx = update(&mut st, Msg::RoundDone(Ok(Box::new(result))));
    assert!(!st.s3.round_running);
    // Reported with its interval as unclear, never as an improvement.
    let notice = st.notice.clone().unwrap();
    assert!(notice.contains("r1 macro-F1 0.250 → 0.500 ("), "{notice}");
    assert!(notice.contains("unclear)"), "{notice}");
    assert!(!notice.contains("improvement"), "{notice}");
    assert!(notice.contains("no embedder configured"), "{notice}");
    assert!(
        matches!(&fx[0], Effect::Append(k) if matches!(k.as_slice(), [EventKind::RoundScored(r)] if r.round == 1)),
        "{fx:?}"
    );
    assert_eq!(
        fx[1],
        Effect::Extrapolate {
            round: 1,
            mistakes: vec![mistake],
            count: st.settings.per_request,
        }
    );
    let rest = ack(&mut st, fx);
    assert_eq!(rest.len(), 1);
    assert_eq!(st.project.rounds.len(), 1);
    assert_eq!(st.project.rounds[0].augmented.macro_f1, 0.5);
    // The Stats pane's round lines carry the interval and the verdict.
    let stats: Vec<String> = straddle::tui::s3_view::stats_lines(&st, 34, 6)
        .iter()
        .map(|l| l.to_string())
        .collect();
    assert!(
        stats
            .iter()
            .any(|l| l.starts_with("r1 ΔF1 ") && l.ends_with("] unclear")),
        "{stats:?}"
    );
    // The likely mislabel rose in the review queue and carries the tag.
    let after = st.queue.position(flagged).unwrap();
    assert!(after < before, "moved from {before} to {after}");
    let s = st.project.sample(flagged).unwrap();
    assert!(st.queue.doubt(s).1.contains(&LIKELY_MISLABEL));
    let line = straddle::tui::s3_view::signal_line(&st, flagged)
        .unwrap()
        .to_string();
    assert!(line.contains("out-of-fold 0.05 (prefers NUM)"), "{line}");
    // The next round is numbered 2.
    assert_eq!(
        press(&mut st, key('R')),
        vec![Effect::RunRound { round: 2 }]
    );
}

#[test]
fn a_failed_round_reports_and_allows_another() {
    let mut st = fixture::state(10);
    add_samples(&mut st, Origin::Test, &[("Where is Lima?", "LOC")]);
    press(&mut st, key('R'));
    let fx = update(&mut st, Msg::RoundDone(Err("disk on fire".into())));
    assert!(fx.is_empty());
    assert!(st.last_error.as_deref().unwrap().contains("disk on fire"));
    assert_eq!(
        press(&mut st, key('R')),
        vec![Effect::RunRound { round: 1 }]
    );
}

#[test]
fn signals_re_sort_only_the_changed_samples_and_refresh_as_the_pool_grows() {
    let mut st = fixture::state(40);
    assert!(
        update(&mut st, Msg::Signals(Ok(Default::default()))).is_empty(),
        "signals without a request"
    );
    assert_eq!(press(&mut st, key('T')), vec![Effect::ComputeSignals]);
    let order: Vec<SampleId> = st.queue.ids().to_vec();
    let flagged = least_doubtful_pending(&st);
    update(
        &mut st,
        Msg::Signals(Ok([(flagged, mislabel("ABBR"))].into_iter().collect())),
    );
    let moved: Vec<SampleId> = st.queue.ids().to_vec();
    assert!(
        st.queue.position(flagged).unwrap() < order.iter().position(|x| *x == flagged).unwrap()
    );
    // Every other sample kept its relative order.
    let without = |v: &[SampleId]| {
        v.iter()
            .copied()
            .filter(|x| *x != flagged)
            .collect::<Vec<_>>()
    };
    assert_eq!(without(&order), without(&moved));
    // Signals gone: back where it was.
    press(&mut st, key('T'));
    update(&mut st, Msg::Signals(Ok(Default::default())));
    assert_eq!(st.queue.ids(), order.as_slice());

    // Once computed, signals are refreshed after 50 new examples, not before.
    let texts: Vec<(String, &str)> = (0..50)
        .map(|i| (format!("new question {i}?"), "NUM"))
        .collect();
    let refs: Vec<(&str, &str)> = texts.iter().map(|(t, l)| (t.as_str(), *l)).collect();
    add_samples(&mut st, Origin::Generated, &refs[..49]);
    let last = st.project.samples.iter().map(|s| s.id).max().unwrap() + 1;
    let kinds = vec![EventKind::SampleAdded(SampleAdded::new(
        last,
        NewSample {
            text: refs[49].0.into(),
            label: "NUM".into(),
            origin: Origin::Generated,
            provenance: Provenance::default(),
        },
    ))];
    assert_eq!(
        ack(&mut st, vec![Effect::Append(kinds)]),
        vec![Effect::ComputeSignals]
    );
    assert!(st.s3.signals_running);
}

mod backoff {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use std::time::{Duration, Instant};
    use straddle::engine::FailReason;
    use straddle::tui::state::Backoff;
    use straddle::tui::view;

    fn started(job: u64) -> Msg {
        Msg::Stream(StreamMsg::Started {
            job,
            kind: StreamKind::Generate,
            classes: "LOC×HUM".into(),
            alpha: Some(0.7),
            settings: 0,
        })
    }

    fn backoff(
        job: u64,
        reason: FailReason,
        status: Option<u16>,
        attempt: u32,
        until: Instant,
    ) -> Msg {
        Msg::Backoff(Backoff {
            job,
            reason: Backoff::reason_text(reason, status),
            attempt,
            max_retries: 5,
            until,
        })
    }

    /// The screen as text, drawn as of `now`.
    fn screen(st: &State, now: Instant) -> String {
        let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
        term.draw(|f| view::render_at(f, st, now)).unwrap();
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

    fn running_with_stream(job: u64) -> State {
        let mut st = fixture::state(5);
        update(&mut st, Msg::Engine(EngineStatus::Running));
        update(&mut st, started(job));
        st
    }

    /// Issue 11/12: a request planned before weights or α changed still
    /// asks what the older settings said; the Streams pane says so until
    /// it ends, and requests planned after the change are not marked.
    #[test]
    fn streams_mark_requests_planned_under_older_settings() {
        let mut st = running_with_stream(7);
        let now = Instant::now();
        let line = |st: &State, job: &str| {
            screen(st, now)
                .lines()
                .find(|l| l.contains(job))
                .unwrap_or_default()
                .to_string()
        };
        assert!(!line(&st, "#7 ").contains("old settings"));
        update(&mut st, Msg::Stream(StreamMsg::SettingsVersion(1)));
        assert_eq!(st.settings_version, 1);
        update(
            &mut st,
            Msg::Stream(StreamMsg::Started {
                job: 8,
                kind: StreamKind::Generate,
                classes: "NUM×HUM".into(),
                alpha: Some(0.9),
                settings: 1,
            }),
        );
        assert!(
            line(&st, "#7 ").contains("#7 old settings · gen LOC×HUM"),
            "{}",
            line(&st, "#7 ")
        );
        assert!(
            !line(&st, "#8 ").contains("old settings"),
            "{}",
            line(&st, "#8 ")
        );
        // Once it ends it is no longer marked.
        update(&mut st, Msg::Stream(StreamMsg::Finished { job: 7 }));
        assert!(!line(&st, "#7 ").contains("old settings"));
    }

    #[test]
    fn backoff_shows_the_reason_and_a_countdown_until_the_retry_starts() {
        let mut st = running_with_stream(7);
        let now = Instant::now();
        let until = now + Duration::from_secs(12);
        st.dirty = false;
        update(
            &mut st,
            backoff(7, FailReason::RateLimited, Some(429), 1, until),
        );
        assert!(st.dirty);
        assert_eq!(
            st.engine.label(now),
            "backoff: rate limited, retry in 12 s (attempt 1/5)"
        );
        // The countdown is computed when drawing, from the stored deadline.
        assert_eq!(
            st.engine.label(now + Duration::from_millis(10_500)),
            "backoff: rate limited, retry in 2 s (attempt 1/5)"
        );
        assert_eq!(
            st.engine.label(until),
            "backoff: rate limited, retrying (attempt 1/5)"
        );
        assert_eq!(st.streams[0].retry_at, Some(until));
        let text = screen(&st, now + Duration::from_secs(3));
        assert!(
            text.contains("backoff: rate limited, retry in 9 s (attempt 1/5)"),
            "{text}"
        );
        assert!(text.contains("⟳ #7 retry in 9 s · gen LOC×HUM"), "{text}");

        // Redraws only while a countdown runs, at most a second apart.
        assert_eq!(st.next_tick(now), Some(now + Duration::from_secs(1)));
        let mid = now + Duration::from_millis(2_700);
        assert_eq!(st.next_tick(mid), Some(mid + Duration::from_millis(300)));
        assert_eq!(st.next_tick(until), None);

        // The retry goes out: the backoff is over, the row starts over.
        update(&mut st, started(7));
        assert_eq!(st.engine, EngineStatus::Running);
        assert_eq!(st.streams.len(), 1);
        assert_eq!(st.streams[0].retry_at, None);
        assert_eq!(st.streams[0].state, StreamState::Running);
        assert_eq!(st.next_tick(now), None);
        assert!(!screen(&st, now).contains("backoff"));
    }

    #[test]
    fn a_finished_request_ends_a_server_error_backoff() {
        let mut st = running_with_stream(7);
        update(&mut st, started(8));
        let now = Instant::now();
        let until = now + Duration::from_millis(1_500);
        update(
            &mut st,
            backoff(7, FailReason::ServerError, Some(503), 3, until),
        );
        assert_eq!(
            st.engine.label(now),
            "backoff: server error 503, retry in 2 s (attempt 3/5)"
        );
        update(&mut st, Msg::Stream(StreamMsg::Finished { job: 8 }));
        assert_eq!(st.engine, EngineStatus::Running);
        // Job 7 itself still waits: its row keeps counting down.
        let row = st.streams.iter().find(|r| r.job == 7).unwrap();
        assert_eq!(row.retry_at, Some(until));
        update(&mut st, Msg::Stream(StreamMsg::Finished { job: 7 }));
        assert_eq!(st.next_tick(now), None);
    }

    #[test]
    fn a_backoff_while_paused_keeps_the_paused_status() {
        // The session answers each key with its status (`Msg::Engine`).
        let mut st = fixture::state(5);
        assert_eq!(update(&mut st, key('g')), vec![Effect::StartGeneration]);
        update(&mut st, Msg::Engine(EngineStatus::Running));
        update(&mut st, started(3));
        assert_eq!(update(&mut st, key('g')), vec![Effect::PauseGeneration]);
        update(&mut st, Msg::Engine(EngineStatus::Paused));
        let now = Instant::now();
        let until = now + Duration::from_secs(4);
        update(&mut st, backoff(3, FailReason::Timeout, None, 1, until));
        assert_eq!(st.engine, EngineStatus::Paused);
        assert_eq!(st.streams[0].retry_at, Some(until));
        // Pausing during a backoff: `g` pauses rather than resumes.
        assert_eq!(update(&mut st, key('g')), vec![Effect::ResumeGeneration]);
        update(&mut st, Msg::Engine(EngineStatus::Running));
        update(&mut st, backoff(3, FailReason::Timeout, None, 1, until));
        assert!(matches!(st.engine, EngineStatus::Backoff(_)));
        assert_eq!(update(&mut st, key('g')), vec![Effect::PauseGeneration]);
        update(&mut st, Msg::Engine(EngineStatus::Paused));
        assert_eq!(st.engine, EngineStatus::Paused);
    }

    #[test]
    fn reasons_read_as_words() {
        let t = Backoff::reason_text;
        assert_eq!(t(FailReason::RateLimited, Some(429)), "rate limited");
        assert_eq!(t(FailReason::ServerError, Some(502)), "server error 502");
        assert_eq!(t(FailReason::ServerError, None), "server error");
        assert_eq!(t(FailReason::Connect, None), "cannot connect");
        assert_eq!(t(FailReason::Truncated, None), "reply cut off");
    }
}

/// For every mode other than normal and every key its part of the help
/// screen shows — with the default keys and with keys moved around in the
/// config — pressing that key in that mode does what the row says.
#[test]
fn every_mode_runs_what_its_help_shows() {
    use straddle::tui::keymap::{Action, KeyMode, KeySpec, Keymap};
    let (remapped, errs) = Keymap::with_overrides(&[
        ("help".into(), vec!["h".into()]),
        ("help_keys.down".into(), vec!["n".into()]),
        ("filter_keys.apply".into(), vec!["ctrl-j".into()]),
        ("confirm_keys.yes".into(), vec!["o".into()]),
        ("edit_keys.save".into(), vec!["F2".into()]),
        ("export_keys.run".into(), vec!["r".into()]),
        (
            "export_keys.next".into(),
            vec!["ctrl-n".into(), "tab".into()],
        ),
    ]);
    assert!(errs.is_empty(), "{errs:?}");
    let ev = |k: KeySpec| Msg::Key(k.event());
    let mut checked = 0;
    for km in [Keymap::default(), remapped] {
        for (mode, rows) in km.help_sections() {
            if mode == KeyMode::Normal {
                continue; // every normal action has its own test above
            }
            for (spec, action) in rows.into_iter().flat_map(|r| r.keys) {
                let mut st = fixture::state(40);
                st.keymap = km.clone();
                let open = km.specs_for(mode.entered_by()[0])[0];
                update(&mut st, ev(open));
                assert_eq!(st.mode.key_mode(), mode, "{} opens {mode:?}", open.label());
                // Something to tell the actions of the mode apart.
                match mode {
                    KeyMode::Help => st.help_offset = 2,
                    KeyMode::Filter | KeyMode::Edit => {
                        update(&mut st, key('Q'));
                    }
                    KeyMode::Export => {
                        for _ in 0..3 {
                            update(&mut st, ev(km.specs_for(Action::FieldNext)[0]));
                        }
                    }
                    KeyMode::Confirm | KeyMode::Normal => {}
                }
                let fx = update(&mut st, ev(spec));
                let why = format!(
                    "{mode:?} {} → {action:?}: {:?} {fx:?}",
                    spec.label(),
                    st.mode
                );
                let normal = matches!(st.mode, Mode::Normal);
                let form = |st: &State| match &st.mode {
                    Mode::Export(f) => (f.field, f.req.val_fraction),
                    _ => panic!("{why}"),
                };
                match action {
                    Action::HelpUp => assert_eq!(st.help_offset, 1, "{why}"),
                    Action::HelpDown => assert_eq!(st.help_offset, 3, "{why}"),
                    Action::FilterApply => {
                        assert!(normal && st.queue.filter().raw == "Q", "{why}")
                    }
                    Action::HelpClose
                    | Action::FilterCancel
                    | Action::EditCancel
                    | Action::ExportCancel => {
                        assert!(
                            normal && fx.is_empty() && st.queue.filter().raw.is_empty(),
                            "{why}"
                        )
                    }
                    Action::ConfirmYes => assert!(
                        normal && matches!(&fx[..], [Effect::Append(k)] if k.len() > 1),
                        "{why}"
                    ),
                    Action::ConfirmNo => assert!(
                        normal
                            && fx.is_empty()
                            && st.notice.as_deref() == Some("bulk decision cancelled"),
                        "{why}"
                    ),
                    Action::EditSave => assert!(
                        normal
                            && matches!(&fx[0], Effect::Append(k) if matches!(&k[0], EventKind::Edited(e) if e.text.contains('Q'))),
                        "{why}"
                    ),
                    Action::FieldPrev => assert_eq!(form(&st), (2, 0.1), "{why}"),
                    Action::FieldNext => assert_eq!(form(&st), (4, 0.1), "{why}"),
                    Action::FieldDecrease => assert_eq!(form(&st), (3, 0.05), "{why}"),
                    Action::FieldIncrease => assert_eq!(form(&st), (3, 0.15), "{why}"),
                    Action::ExportRun => assert!(
                        normal && matches!(&fx[..], [Effect::Export(r)] if r.val_fraction == 0.1),
                        "{why}"
                    ),
                    other => panic!("{other:?} is not an action of {mode:?}"),
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 40, "{checked}");
}

/// The parser's rejections journalled on replies' first samples and on
/// failures are summed as events arrive, and the Streams pane shows them.
#[test]
fn parser_rejections_are_summed_as_events_arrive() {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use straddle::domain::{GenerationFailed, Provenance};
    let mut st = fixture::state(10);
    assert!(st.parse_rejected.is_empty());
    let prov = |pairs: &[(&str, u64)]| {
        let mut p = Provenance::default();
        let m: serde_json::Map<String, serde_json::Value> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
            .collect();
        p.extra.insert(
            straddle::augment::parse::REJECTED_KEY.into(),
            serde_json::Value::Object(m),
        );
        p
    };
    let next = st.project.next_sample_id();
    let mut added = fixture::events(1)
        .into_iter()
        .map(|e| e.kind)
        .find(|k| matches!(k, EventKind::SampleAdded(_)))
        .unwrap();
    if let EventKind::SampleAdded(a) = &mut added {
        a.id = next;
        a.provenance = prov(&[("heading", 4), ("too_short", 2)]);
    }
    let failed = EventKind::GenerationFailed(GenerationFailed {
        reason: "empty_reply".into(),
        raw: String::new(),
        provenance: prov(&[("outside_list", 9), ("too_short", 4)]),
    });
    let events = fixture::stamp(vec![added, failed], st.project.last_event_id);
    update(&mut st, Msg::Appended(events.clone()));
    let want: Vec<(String, u64)> = vec![
        ("heading".into(), 4),
        ("outside_list".into(), 9),
        ("too_short".into(), 6),
    ];
    assert_eq!(
        st.parse_rejected.clone().into_iter().collect::<Vec<_>>(),
        want
    );
    // The same as a fresh state folded from the whole journal.
    let mut journal = fixture::events(10);
    journal.extend(events);
    let again = fixture::state_with(&journal);
    assert_eq!(again.parse_rejected, st.parse_rejected);
    // The pane clips the line to its width.
    let mut term = Terminal::new(TestBackend::new(200, 40)).unwrap();
    update(&mut st, Msg::Resize(200, 40));
    term.draw(|f| straddle::tui::view::render(f, &st)).unwrap();
    let screen = format!("{:?}", term.backend());
    assert!(
        screen.contains("│parser rejected: heading 4 · outsi"),
        "{screen}"
    );
}

/// A notice newer than the last error shows (an undo's "undid accept of
/// #N" is not hidden by an older error); a newer error shows again.
#[test]
fn the_newer_of_error_and_notice_shows() {
    let mut st = fixture::state(10);
    update(&mut st, Msg::Error("too few new examples".into()));
    assert_eq!(st.message(), Some(("too few new examples", true)));
    update(&mut st, Msg::Notice("undid accept of #3".into()));
    assert_eq!(st.message(), Some(("undid accept of #3", false)));
    // A key that changes neither keeps the notice.
    press(&mut st, code(KeyCode::Down));
    assert_eq!(st.message(), Some(("undid accept of #3", false)));
    update(&mut st, Msg::Error("backend unreachable".into()));
    assert_eq!(st.message(), Some(("backend unreachable", true)));
}
