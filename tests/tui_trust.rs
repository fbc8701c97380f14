//! A review a person can trust: what the screen shows is what a key
//! records, and every number on it is counted one way (issue 12). The
//! store is played by `fixture::ack`; screens are drawn with `TestBackend`.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use straddle::domain::{
    Actor, Decision, DecisionKind, EventKind, NewSample, Origin, Provenance, SampleAdded, SampleId,
    Status, Verdict, VerdictMethod, VerdictRecorded,
};
use straddle::tui::fixture::{self, ack};
use straddle::tui::state::{Control, Pane};
use straddle::tui::{Effect, Msg, State, update, view};

fn key(c: char) -> Msg {
    let m = if c.is_ascii_uppercase() {
        KeyModifiers::SHIFT
    } else {
        KeyModifiers::NONE
    };
    Msg::Key(KeyEvent::new(KeyCode::Char(c), m))
}

fn press(st: &mut State, m: Msg) -> Vec<Effect> {
    let fx = update(st, m);
    ack(st, fx)
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

fn verdict(label: &str, conf: &[(&str, f64)]) -> Verdict {
    Verdict {
        label: Some(label.into()),
        confidence: conf.iter().map(|(c, p)| (c.to_string(), *p)).collect(),
        method: VerdictMethod::Logprobs,
        votes: None,
        raw: None,
        model: Some("m".into()),
        request_id: None,
    }
}

/// Seeds of every fixture class, then one generated example per
/// (intended, relabel verdict) pair; `None` = not relabelled yet.
fn project(rows: &[(&str, Option<Verdict>)]) -> (State, Vec<SampleId>) {
    let mut kinds = Vec::new();
    let mut id = 0;
    for c in fixture::classes() {
        id += 1;
        kinds.push(EventKind::SampleAdded(SampleAdded::new(
            id,
            NewSample {
                text: format!("seed of {}", c.name),
                label: c.name.clone(),
                origin: Origin::Seed,
                provenance: Provenance::default(),
            },
        )));
    }
    let mut ids = Vec::new();
    for (i, (label, v)) in rows.iter().enumerate() {
        id += 1;
        ids.push(id);
        kinds.push(EventKind::SampleAdded(SampleAdded::new(
            id,
            NewSample {
                text: format!("generated question {i} about something?"),
                label: label.to_string(),
                origin: Origin::Generated,
                provenance: Provenance::default(),
            },
        )));
        if let Some(v) = v {
            kinds.push(EventKind::VerdictRecorded(VerdictRecorded {
                sample: id,
                verdict: v.clone(),
            }));
        }
    }
    let mut st = fixture::state_with(&fixture::stamp(kinds, 0));
    // Wide enough for the hint line on one line.
    st.size = (200, 40);
    (st, ids)
}

fn select(st: &mut State, id: SampleId) {
    st.review_sel = st.queue.position(id).expect("in the queue");
}

/// The review row of a sample: the line holding its text.
fn row_of(screen: &str, n: usize) -> String {
    let needle = format!("generated question {n} ");
    screen
        .lines()
        .find(|l| l.contains(&needle) && l.contains('┃'))
        .unwrap_or_else(|| panic!("no row {n}:\n{screen}"))
        .to_string()
}

fn recorded(fx: &[Effect]) -> Decision {
    match fx.first() {
        Some(Effect::Append(kinds)) => match kinds.first() {
            Some(EventKind::Decided(d)) => d.decision.clone(),
            other => panic!("not a decision: {other:?}"),
        },
        other => panic!("no append: {other:?}"),
    }
}

#[test]
fn the_screen_shows_the_label_a_records_and_where_it_comes_from() {
    let (mut st, ids) = project(&[
        ("DESC", Some(verdict("LOC", &[("LOC", 0.8), ("DESC", 0.2)]))),
        ("HUM", Some(verdict("HUM", &[("HUM", 0.9), ("LOC", 0.1)]))),
        ("NUM", None),
    ]);
    assert!(st.project.take_relabel, "the fixture takes relabels");
    // The row says LOC, marked as the relabel's; the detail and the hint
    // line say what `a` records.
    select(&mut st, ids[0]);
    let s = screen(&st);
    let row = row_of(&s, 0);
    assert!(row.contains("LOC↻"), "{row}");
    assert!(s.contains("a records LOC (relabel)"), "{s}");
    assert!(s.contains("a accept as LOC (relabel)"), "{s}");
    assert!(
        s.contains("1–6 accept as ABBR DESC ENTY HUM LOC NUM"),
        "{s}"
    );
    // `a` records exactly that label.
    let fx = update(&mut st, key('a'));
    let d = recorded(&fx);
    assert_eq!(
        (d.kind, d.label.as_deref()),
        (DecisionKind::Accept, Some("LOC"))
    );
    ack(&mut st, fx);
    assert_eq!(st.tally.per_class["LOC"].accepted, 1);
    assert_eq!(st.tally.per_class["DESC"].accepted, 0);

    // A row without a verdict shows (and `a` records) the intended label;
    // a verdict arriving afterwards does not change what was recorded.
    select(&mut st, ids[2]);
    let s = screen(&st);
    assert!(s.contains("a records NUM (intended)"), "{s}");
    press(&mut st, key('a'));
    let late = EventKind::VerdictRecorded(VerdictRecorded {
        sample: ids[2],
        verdict: verdict("ENTY", &[("ENTY", 0.9), ("NUM", 0.1)]),
    });
    ack(&mut st, vec![Effect::Append(vec![late])]);
    let s2 = st.project.sample(ids[2]).unwrap();
    assert_eq!(s2.effective_label(st.project.take_relabel), "NUM");
    assert_eq!(st.tally.per_class["NUM"].accepted, 1);
    assert_eq!(st.tally.per_class["ENTY"].accepted, 0);
}

#[test]
fn take_relabel_is_a_control_that_changes_what_a_records() {
    let (mut st, ids) = project(&[
        ("DESC", Some(verdict("LOC", &[("LOC", 0.8), ("DESC", 0.2)]))),
        ("DESC", Some(verdict("LOC", &[("LOC", 0.7), ("DESC", 0.3)]))),
    ]);
    assert_eq!(st.tally.per_class["LOC"].pending, 2);
    let s = screen(&st);
    assert!(s.contains("take relabel yes"), "{s}");
    // Controls: the row is there and `+` toggles it; the journal keeps it.
    st.focus = Pane::Controls;
    st.control_sel = Control::ALL
        .iter()
        .position(|c| *c == Control::TakeRelabel)
        .expect("a take_relabel control");
    let fx = update(&mut st, key('+'));
    assert!(
        matches!(&fx[..], [Effect::Append(k)] if matches!(k[..],
            [EventKind::RelabelPolicyChanged(p)] if !p.take_relabel)),
        "{fx:?}"
    );
    ack(&mut st, fx);
    assert!(!st.project.take_relabel);
    // Counts, rows and the control follow at once.
    assert_eq!(st.tally.per_class["LOC"].pending, 0);
    assert_eq!(st.tally.per_class["DESC"].pending, 2);
    st.focus = Pane::Review;
    select(&mut st, ids[0]);
    let s = screen(&st);
    assert!(s.contains("take relabel no *"), "{s}");
    assert!(row_of(&s, 0).contains("DESC "), "{}", row_of(&s, 0));
    assert!(s.contains("a records DESC (intended)"), "{s}");
    assert!(s.contains("t take_relabel on"), "{s}");
    let d = recorded(&update(&mut st, key('a')));
    assert_eq!(d.label.as_deref(), Some("DESC"));
    // The key `t` switches it back.
    press(&mut st, key('t'));
    assert!(st.project.take_relabel);
    assert_eq!(st.tally.per_class["LOC"].pending, 2);
    // A person's relabel shows as edited.
    select(&mut st, ids[0]);
    press(&mut st, key('4'));
    let s = screen(&st);
    assert!(row_of(&s, 0).contains("HUM✎"), "{s}");
    let sample = st.project.sample(ids[0]).unwrap();
    assert_eq!(sample.status(), Status::Accepted);
    assert!(matches!(sample.decision().unwrap().by, Actor::Key(_)));
}

/// The Seeds pane's numbers: class → (seed, acc, pnd).
fn seeds_pane(screen: &str) -> std::collections::BTreeMap<String, (u64, u64, u64)> {
    let mut out = std::collections::BTreeMap::new();
    for line in screen.lines() {
        let Some(cell) = line.split('│').nth(1) else {
            continue;
        };
        let w: Vec<&str> = cell.split_whitespace().collect();
        if let [n, class, _wt, seed, acc, pnd] = w[..]
            && n.parse::<u8>().is_ok()
            && let (Ok(s), Ok(a), Ok(p)) = (seed.parse(), acc.parse(), pnd.parse())
        {
            out.insert(class.to_string(), (s, a, p));
        }
    }
    out
}

/// The review rows' (status glyph, label column) pairs, label marks cut.
fn row_labels(screen: &str) -> Vec<(String, String)> {
    screen
        .lines()
        .filter_map(|l| l.split('┃').nth(1))
        .filter(|cell| {
            cell.contains("generated question")
                && matches!(cell.split_whitespace().next(), Some("·" | "✓" | "✗"))
        })
        .map(|cell| {
            let mut it = cell.split_whitespace();
            let glyph = it.next().unwrap().to_string();
            let label = it.next().unwrap().trim_end_matches(['↻', '✎']).to_string();
            (glyph, label)
        })
        .collect()
}

#[test]
fn seeds_counts_and_class_sort_use_the_label_rows_show() {
    let (mut st, _) = project(&[
        ("DESC", Some(verdict("LOC", &[("LOC", 0.8), ("DESC", 0.2)]))),
        ("DESC", Some(verdict("LOC", &[("LOC", 0.7), ("DESC", 0.3)]))),
        ("HUM", Some(verdict("HUM", &[("HUM", 0.9), ("LOC", 0.1)]))),
        ("NUM", None),
    ]);
    let s = screen(&st);
    let seeds = seeds_pane(&s);
    let rows = row_labels(&s);
    assert_eq!(rows.len(), 4, "{s}");
    for (class, (_, _, pnd)) in &seeds {
        let shown = rows.iter().filter(|(g, l)| g == "·" && l == class).count() as u64;
        assert_eq!(*pnd, shown, "{class}: pnd vs rows\n{s}");
    }
    assert_eq!(seeds["LOC"].2, 2);
    // Class sort: rows in class order of the label they show.
    press(&mut st, key('s'));
    press(&mut st, key('s'));
    assert_eq!(st.queue.sort().as_str(), "class");
    let order: Vec<String> = row_labels(&screen(&st)).into_iter().map(|r| r.1).collect();
    assert_eq!(order, ["HUM", "LOC", "LOC", "NUM"]);
}

#[test]
fn the_llm_column_agrees_with_the_confidence_line() {
    // The model answered ENTY although ABBR's first token scored higher.
    let (st, _) = project(&[(
        "ENTY",
        Some(verdict(
            "ENTY",
            &[("ABBR", 0.40), ("ENTY", 0.32), ("DESC", 0.28)],
        )),
    )]);
    let s = screen(&st);
    let row = row_of(&s, 0);
    assert!(row.contains("ENTY  32%"), "{row}");
    assert!(s.contains("llm ENTY 0.32"), "{s}");
    assert!(
        s.contains(
            "confidence: ENTY 0.32 (answer) · ABBR 0.40 · DESC 0.28 — ABBR scored above the answer"
        ),
        "{s}"
    );
}

#[test]
fn the_accept_rate_counts_a_persons_decisions_only() {
    let (mut st, ids) = project(&[
        ("HUM", Some(verdict("HUM", &[("HUM", 0.9), ("LOC", 0.1)]))),
        ("HUM", Some(verdict("HUM", &[("HUM", 0.9), ("LOC", 0.1)]))),
    ]);
    let dup = EventKind::decided(
        ids[1],
        Decision {
            kind: DecisionKind::Reject,
            label: None,
            reason: Some("duplicate".into()),
            by: Actor::Auto("dedup".into()),
        },
    );
    ack(&mut st, vec![Effect::Append(vec![dup])]);
    let s = screen(&st);
    assert!(s.contains("✓0 ✗1 (1 auto) · 1 pending"), "{s}");
    assert!(
        s.contains("accept rate –"),
        "no decision of the person's yet:\n{s}"
    );
    select(&mut st, ids[0]);
    press(&mut st, key('a'));
    let s = screen(&st);
    assert!(s.contains("accept rate 100%"), "{s}");
}

#[test]
fn the_why_column_shows_what_fits_and_the_detail_shows_every_reason() {
    use straddle::tui::view::{doubt_cell, doubt_words};
    let tags = [
        "low_conf",
        "small_margin",
        "near_other_seed",
        "edited",
        "likely_mislabel",
        "disagrees",
        "hard_to_learn",
    ];
    // Most telling first, then how many are left out.
    assert_eq!(doubt_cell(&tags, 4), "!L+5");
    assert_eq!(doubt_cell(&tags[..4], 4), "cmse");
    assert_eq!(doubt_cell(&tags[..2], 4), "cm");
    let words = doubt_words(&tags);
    for w in [
        "the judge disagrees",
        "classifier: likely mislabel",
        "low confidence",
        "small margin",
        "near another class's seed",
        "edited",
        "classifier: hard to learn",
    ] {
        assert!(words.contains(w), "{words}");
    }
    // On screen: a disagreeing, unsure verdict; the detail says it in words.
    let (st, _) = project(&[(
        "DESC",
        Some(verdict(
            "LOC",
            &[("LOC", 0.4), ("DESC", 0.35), ("HUM", 0.25)],
        )),
    )]);
    // The disagreement names the judge and what it says.
    let s = screen(&st);
    assert!(s.contains("llm says LOC (0.40) · "), "{s}");
    assert!(s.contains("low confidence"), "{s}");
}

#[test]
fn zero_weights_render_sensibly() {
    let (mut st, _) = project(&[("HUM", Some(verdict("HUM", &[("HUM", 0.9)])))]);
    st.size = (120, 40);
    let zero: Vec<EventKind> = fixture::classes()
        .into_iter()
        .map(|c| {
            EventKind::WeightChanged(straddle::domain::WeightChanged {
                class: c.name,
                weight: 0.0,
            })
        })
        .collect();
    ack(&mut st, vec![Effect::Append(zero)]);
    let s = screen(&st);
    let stats: Vec<&str> = s
        .lines()
        .filter_map(|l| l.rsplit('│').nth(1))
        .filter(|c| fixture::classes().iter().any(|k| c.starts_with(&k.name)))
        .collect();
    assert_eq!(stats.len(), 6, "{s}");
    for l in stats {
        assert!(!l.contains("/0"), "{l}");
        assert!(!l.contains('░'), "{l}");
        assert!(l.contains("weight 0"), "{l}");
    }
}

/// The judges as the runtime delivers them: `judge` chosen (trusted or
/// not) with its opinion `(sample, label, confidence)` of each row.
fn chosen(judge: &str, trusted: bool, says: &[(SampleId, &str, f64)]) -> Msg {
    use straddle::app::judges::{Choice, Opinion, ReviewJudges};
    let mut opinions = std::collections::BTreeMap::new();
    opinions.insert(
        judge.to_string(),
        says.iter()
            .map(|&(id, l, c)| {
                (
                    id,
                    Opinion {
                        judge: judge.into(),
                        label: Some(l.into()),
                        confidence: c,
                    },
                )
            })
            .collect(),
    );
    measured(ReviewJudges {
        choice: Choice {
            judge: Some(judge.into()),
            trusted,
            why: format!("{judge} in the test"),
        },
        opinions: straddle::app::judges::Opinions::from_maps(opinions),
    })
}

/// The judges' measure answering with `review` (nothing to record), as
/// the runtime delivers it.
fn measured(review: straddle::app::judges::ReviewJudges) -> Msg {
    Msg::JudgesMeasured(Ok(Box::new(straddle::tui::chosen::Measured {
        review,
        record: Vec::new(),
    })))
}

/// The review list's verdict column, the label `a` records and a bulk
/// accept all follow the chosen judge (here kNN), not the LLM relabel;
/// the column header names it. Before, the column showed the relabel
/// verdict while the detail used the chosen judge.
#[test]
fn the_verdict_column_and_a_follow_the_chosen_judge() {
    let (mut st, ids) = project(&[
        ("DESC", Some(verdict("LOC", &[("LOC", 0.8), ("DESC", 0.2)]))),
        ("HUM", Some(verdict("HUM", &[("HUM", 0.9), ("LOC", 0.1)]))),
    ]);
    assert!(st.project.take_relabel);
    select(&mut st, ids[0]);
    let before = screen(&st);
    assert!(row_of(&before, 0).contains("LOC↻"), "{before}");
    press(
        &mut st,
        chosen(
            "knn",
            true,
            &[(ids[0], "DESC", 0.91), (ids[1], "NUM", 0.66)],
        ),
    );
    let s = screen(&st);
    assert!(s.contains("knn ✓"), "the header names the judge:\n{s}");
    let r0 = row_of(&s, 0);
    // kNN agrees with the intended DESC: the row keeps DESC (no ↻) and the
    // verdict column says DESC 91 %, not the relabel's LOC 80 %.
    assert!(r0.contains("DESC") && !r0.contains("LOC"), "{r0}");
    assert!(r0.contains(" 91%"), "{r0}");
    let r1 = row_of(&s, 1);
    assert!(r1.contains("NUM↻") && r1.contains(" 66%"), "{r1}");
    assert!(s.contains("a accept as DESC (intended)"), "{s}");
    // `a` records the label the row shows.
    let d = recorded(&update(&mut st, key('a')));
    assert_eq!(d.label.as_deref(), Some("DESC"));
    select(&mut st, ids[1]);
    let s = screen(&st);
    assert!(s.contains("a accept as NUM (knn)"), "{s}");
    let d = recorded(&update(&mut st, key('a')));
    assert_eq!(d.label.as_deref(), Some("NUM"));
    // A bulk accept records the same labels.
    press(&mut st, key('A'));
    let fx = update(&mut st, key('y'));
    let mut labels: Vec<(SampleId, Option<String>)> = match &fx[..] {
        [Effect::Append(k)] => k
            .iter()
            .filter_map(|e| match e {
                EventKind::Decided(d) => {
                    Some((d.sample, d.decision.label.as_deref().map(String::from)))
                }
                _ => None,
            })
            .collect(),
        other => panic!("no bulk append: {other:?}"),
    };
    // (In queue order: kNN's disagreement puts the NUM row first.)
    labels.sort();
    assert_eq!(
        labels,
        vec![(ids[0], Some("DESC".into())), (ids[1], Some("NUM".into()))]
    );
}

/// When no judge beats chance the TUI says that only a person can decide,
/// the column header loses its ✓, and a bulk rule that would act on the
/// judge (an accept taking its labels, a filter on agreement) refuses.
#[test]
fn no_trusted_judge_means_only_a_person_decides() {
    let (mut st, ids) = project(&[
        (
            "DESC",
            Some(verdict("DESC", &[("DESC", 0.8), ("LOC", 0.2)])),
        ),
        ("HUM", Some(verdict("HUM", &[("HUM", 0.9), ("LOC", 0.1)]))),
    ]);
    press(
        &mut st,
        chosen(
            "small",
            false,
            &[(ids[0], "LOC", 0.5), (ids[1], "HUM", 0.6)],
        ),
    );
    select(&mut st, ids[0]);
    let s = screen(&st);
    assert!(s.contains("only a person can decide"), "{s}");
    assert!(!s.contains("small ✓"), "{s}");
    let fx = press(&mut st, key('A'));
    assert!(fx.is_empty(), "{fx:?}");
    assert!(matches!(st.mode, straddle::tui::state::Mode::Normal));
    let err = st.last_error.clone().unwrap_or_default();
    assert!(
        err.contains("refused") && err.contains("only a person can decide"),
        "{err}"
    );
    // Without take_relabel an accept records the intended labels: no
    // judge is trusted with anything, so the bulk accept is allowed.
    press(&mut st, key('t'));
    assert!(!st.project.take_relabel);
    press(&mut st, key('A'));
    assert!(
        matches!(st.mode, straddle::tui::state::Mode::Confirm { .. }),
        "{:?}",
        st.last_error
    );
    // A filter on agreement refuses even so.
    press(&mut st, key('n'));
    press(&mut st, key('/'));
    for c in "agree:yes".chars() {
        press(&mut st, key(c));
    }
    press(
        &mut st,
        Msg::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
    );
    st.last_error = None;
    press(&mut st, key('A'));
    assert!(matches!(st.mode, straddle::tui::state::Mode::Normal));
    assert!(
        st.last_error
            .as_deref()
            .is_some_and(|e| e.contains("rule on agreement")),
        "{:?}",
        st.last_error
    );
}

/// Type a `/` filter (in place of the current one) and apply it.
fn filter(st: &mut State, text: &str) {
    press(st, key('/'));
    for _ in 0..st.queue.filter().raw.chars().count() {
        press(
            st,
            Msg::Key(KeyEvent::new(KeyCode::Backspace, KeyModifiers::NONE)),
        );
    }
    for c in text.chars() {
        press(st, key(c));
    }
    press(
        st,
        Msg::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
    );
}

/// The queue's visible sample ids, sorted.
fn visible(st: &State) -> Vec<SampleId> {
    let mut v = st.queue.ids().to_vec();
    v.sort();
    v
}

/// Per class (accepted, pending) counted from scratch with the label the
/// review shows and `a` records (`chosen::accept_label`).
fn recount(st: &State) -> std::collections::BTreeMap<String, (u64, u64)> {
    let mut out = std::collections::BTreeMap::new();
    for s in st.project.generated() {
        let (label, _) = straddle::tui::chosen::accept_label(st, s);
        let e: &mut (u64, u64) = out.entry(label.to_string()).or_default();
        match s.status() {
            Status::Accepted => e.0 += 1,
            Status::Pending => e.1 += 1,
            Status::Rejected => {}
        }
    }
    out
}

/// The Seeds pane's counts (the tally) agree with [`recount`].
fn assert_counts_follow_rows(st: &State) {
    let want = recount(st);
    for (class, k) in &st.tally.per_class {
        let (a, p) = want.get(class).copied().unwrap_or_default();
        assert_eq!((k.accepted, k.pending), (a, p), "{class}");
    }
    for class in want.keys() {
        assert!(
            st.tally.per_class.contains_key(class),
            "{class} not counted"
        );
    }
}

/// The `agree:` filter, the `!` doubt code and the review's verdict column
/// read one judge: the relabeler until judges are measured (or when none
/// was chosen), then the chosen one (here kNN), whose answer the detail
/// names. Before, the filter and `!` kept reading the LLM while the column
/// showed kNN.
#[test]
fn the_agree_filter_and_the_doubt_code_follow_the_chosen_judge() {
    let (mut st, ids) = project(&[
        // LLM disagrees, kNN agrees.
        ("DESC", Some(verdict("LOC", &[("LOC", 0.8), ("DESC", 0.2)]))),
        // LLM agrees, kNN disagrees.
        ("HUM", Some(verdict("HUM", &[("HUM", 0.9), ("LOC", 0.1)]))),
        // Both agree.
        ("NUM", Some(verdict("NUM", &[("NUM", 0.9), ("LOC", 0.1)]))),
        // Not relabelled; kNN disagrees.
        ("ENTY", None),
    ]);
    let bang = |st: &State, id: SampleId| {
        let s = st.project.sample(id).unwrap();
        st.queue.doubt(s).1.contains(&"disagrees")
    };
    // The relabeler decides: its disagreement.
    filter(&mut st, "agree:no");
    assert_eq!(visible(&st), vec![ids[0]]);
    assert!(bang(&st, ids[0]) && !bang(&st, ids[1]));
    // The judges are measured: kNN is chosen.
    press(
        &mut st,
        chosen(
            "knn",
            true,
            &[
                (ids[0], "DESC", 0.91),
                (ids[1], "LOC", 0.93),
                (ids[2], "NUM", 0.8),
                (ids[3], "HUM", 0.7),
            ],
        ),
    );
    assert_eq!(visible(&st), vec![ids[1], ids[3]], "the filter follows kNN");
    for &id in &ids {
        let s = st.project.sample(id).unwrap();
        let column = straddle::tui::chosen::agrees(&st, s);
        assert_eq!(bang(&st, id), column == Some(false), "#{id}: ! vs column");
        assert_eq!(
            st.queue.ids().contains(&id),
            column == Some(false),
            "#{id}: filter vs column"
        );
    }
    // `!` puts kNN's disagreements first in the doubt order.
    filter(&mut st, "");
    let first: Vec<SampleId> = st.queue.ids()[..2].to_vec();
    assert!(
        first.contains(&ids[1]) && first.contains(&ids[3]),
        "{:?}",
        st.queue.ids()
    );
    // The samples that moved with the new answers sit where a full
    // rebuild puts them (`t` twice rebuilds the queue), in every order.
    let orders = |st: &mut State| {
        (0..3)
            .map(|_| {
                let ids = st.queue.ids().to_vec();
                press(st, key('s'));
                ids
            })
            .collect::<Vec<_>>()
    };
    let moved = orders(&mut st);
    press(&mut st, key('t'));
    press(&mut st, key('t'));
    assert_eq!(orders(&mut st), moved);
    // ... and the doubt order is the one the detail's doubt (computed
    // afresh, with kNN's disagreement) gives.
    assert_eq!(st.queue.sort().as_str(), "doubt");
    let doubts: Vec<f64> = st
        .queue
        .ids()
        .iter()
        .map(|id| st.queue.doubt(st.project.sample(*id).unwrap()).0)
        .collect();
    assert!(doubts.windows(2).all(|w| w[0] >= w[1] - 1e-9), "{doubts:?}");
    assert!(doubts[0] >= 1.0 && doubts[3] < 1.0, "{doubts:?}");
    // The detail says who disagrees and how sure it is.
    select(&mut st, ids[1]);
    let s = screen(&st);
    assert!(s.contains("knn says LOC (0.93)"), "{s}");
    assert!(!s.contains("LLM disagrees"), "{s}");
    // agree:yes and agree:none too.
    filter(&mut st, "agree:yes");
    assert_eq!(visible(&st), vec![ids[0], ids[2]]);
    // A sample the judge has not seen yet (it arrived after the measure)
    // has no answer: agree:none, no `!`, as the column's "…".
    let next = st.project.next_sample_id();
    ack(
        &mut st,
        vec![Effect::Append(vec![
            EventKind::SampleAdded(SampleAdded::new(
                next,
                NewSample {
                    text: "generated question 9 about something?".into(),
                    label: "ABBR".into(),
                    origin: Origin::Generated,
                    provenance: Provenance::default(),
                },
            )),
            EventKind::VerdictRecorded(VerdictRecorded {
                sample: next,
                verdict: verdict("LOC", &[("LOC", 0.9), ("ABBR", 0.1)]),
            }),
        ])],
    );
    assert!(!bang(&st, next), "the LLM's disagreement no longer counts");
    filter(&mut st, "agree:none");
    assert_eq!(visible(&st), vec![next]);
    // The filter's hint and the help's legend name the judge.
    press(&mut st, key('/'));
    let s = screen(&st);
    assert!(s.contains("agree:yes|no|none (knn)"), "{s}");
    press(
        &mut st,
        Msg::Key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE)),
    );
    let legend = straddle::tui::view::doubt_legend("knn");
    assert!(legend.contains("! the knn judge disagrees"), "{legend}");

    // Measured again, no judge could be chosen: back to the relabeler.
    press(
        &mut st,
        measured(straddle::app::judges::ReviewJudges {
            choice: straddle::app::judges::Choice {
                judge: None,
                trusted: false,
                why: "nothing measured".into(),
            },
            opinions: Default::default(),
        }),
    );
    filter(&mut st, "agree:no");
    assert_eq!(visible(&st), vec![ids[0], next]);
    assert!(bang(&st, ids[0]) && !bang(&st, ids[1]));
}

/// With `take_relabel` on and kNN chosen, the Seeds pane counts and the
/// `class:` filter use kNN's label (the one the row shows and `a`
/// records), not the relabel verdict's; they stay right as answers,
/// decisions and the policy change, and an accept decided by a rule
/// without a label counts where export puts it.
#[test]
fn seeds_counts_and_the_class_filter_follow_the_chosen_judge() {
    let (mut st, ids) = project(&[
        ("DESC", Some(verdict("LOC", &[("LOC", 0.8), ("DESC", 0.2)]))),
        ("DESC", Some(verdict("LOC", &[("LOC", 0.7), ("DESC", 0.3)]))),
        ("HUM", Some(verdict("HUM", &[("HUM", 0.9), ("LOC", 0.1)]))),
        ("NUM", None),
    ]);
    assert!(st.project.take_relabel);
    assert_eq!(st.tally.per_class["LOC"].pending, 2);
    assert_counts_follow_rows(&st);
    let knn = |a: &str, b: &str| {
        chosen(
            "knn",
            true,
            &[
                (ids[0], a, 0.9),
                (ids[1], "DESC", 0.8),
                (ids[2], b, 0.7),
                (ids[3], "ENTY", 0.6),
            ],
        )
    };
    press(&mut st, knn("NUM", "HUM"));
    assert_counts_follow_rows(&st);
    let pnd = |st: &State, c: &str| st.tally.per_class.get(c).map_or(0, |k| k.pending);
    assert_eq!(
        pnd(&st, "LOC"),
        0,
        "the relabel's LOC is not what a records"
    );
    assert_eq!(
        (pnd(&st, "NUM"), pnd(&st, "DESC"), pnd(&st, "ENTY")),
        (1, 1, 1)
    );
    // On screen: the Seeds pane's pending column is the rows' labels.
    let s = screen(&st);
    let seeds = seeds_pane(&s);
    let rows = row_labels(&s);
    for (class, (_, _, p)) in &seeds {
        let shown = rows.iter().filter(|(g, l)| g == "·" && l == class).count() as u64;
        assert_eq!(*p, shown, "{class}: pnd vs rows\n{s}");
    }
    // The class filter lists the rows showing that class.
    filter(&mut st, "class:NUM");
    assert_eq!(visible(&st), vec![ids[0]]);
    filter(&mut st, "class:LOC");
    assert!(visible(&st).is_empty());
    // A new measure changes one answer: that sample moves, in the counts
    // and in the filter.
    filter(&mut st, "class:ENTY");
    assert_eq!(visible(&st), vec![ids[3]]);
    press(&mut st, knn("ENTY", "HUM"));
    assert_counts_follow_rows(&st);
    assert_eq!(visible(&st), vec![ids[0], ids[3]]);
    assert_eq!(pnd(&st, "NUM"), 0);
    // `a` records the counted label; the count moves from pnd to acc.
    filter(&mut st, "");
    select(&mut st, ids[0]);
    press(&mut st, key('a'));
    assert_eq!(st.tally.per_class["ENTY"].accepted, 1);
    assert_counts_follow_rows(&st);
    // take_relabel off: intended labels everywhere; on again: kNN's.
    press(&mut st, key('t'));
    assert!(!st.project.take_relabel);
    assert_counts_follow_rows(&st);
    assert_eq!(pnd(&st, "ENTY"), 0);
    assert_eq!(pnd(&st, "NUM"), 1);
    press(&mut st, key('t'));
    assert_counts_follow_rows(&st);
    assert_eq!(pnd(&st, "ENTY"), 1);
    // An accept without a label (`straddle review --accept-all` while
    // the relabeler decided) counts under the label export writes.
    let rule = EventKind::decided(
        ids[1],
        Decision {
            kind: DecisionKind::Accept,
            label: None,
            reason: None,
            by: Actor::Rule("review".into()),
        },
    );
    ack(&mut st, vec![Effect::Append(vec![rule])]);
    let s = st.project.sample(ids[1]).unwrap();
    let export = s.effective_label(st.project.take_relabel);
    assert_eq!(export, "LOC");
    assert_eq!(straddle::tui::chosen::accept_label(&st, s).0, export);
    assert_eq!(st.tally.per_class["LOC"].accepted, 1);
    assert_counts_follow_rows(&st);
}
