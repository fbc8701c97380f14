//! An S3 round journals its bootstrap intervals (`round_scored.intervals`):
//! the Stats pane shows the interval and verdict of a round recorded in an
//! earlier session, and never calls an unclear change an improvement.

use straddle::classify::bootstrap::compare;
use straddle::classify::{Comparison, Verdict};
use straddle::domain::{EventKind, RoundScored, Scores};
use straddle::tui::{Msg, fixture, s3_view, update};

fn scores(f1: f64, n_test: usize) -> Scores {
    Scores {
        accuracy: f1,
        macro_f1: f1,
        n_train: 12,
        n_test,
        ..Scores::default()
    }
}

/// A clear gain: 200 held-out examples, the new model right on 40 more.
fn clear_gain() -> Comparison {
    let truth: Vec<usize> = (0..200).map(|i| i % 2).collect();
    let old: Vec<usize> = (0..200)
        .map(|i| if i < 80 { 1 - truth[i] } else { truth[i] })
        .collect();
    let new: Vec<usize> = (0..200)
        .map(|i| if i < 40 { 1 - truth[i] } else { truth[i] })
        .collect();
    compare(2, &truth, &old, &new, 1000, 7)
}

/// Two held-out examples: nothing can be told.
fn unclear() -> Comparison {
    compare(2, &[0, 1], &[0, 0], &[0, 1], 1000, 0)
}

#[test]
fn intervals_round_trip_through_the_journal_and_old_rounds_still_read() {
    let c = clear_gain();
    assert_eq!(c.verdict(), Verdict::Better);
    let ev = RoundScored {
        round: 3,
        baseline: scores(0.6, 200),
        augmented: scores(0.8, 200),
        errors: vec![],
        intervals: Some(Box::new(c.to_journal())),
    };
    let json = serde_json::to_string(&EventKind::RoundScored(ev.clone())).unwrap();
    assert!(json.contains("\"macro_f1_diff\""), "{json}");
    let back: RoundScored = serde_json::from_value(
        serde_json::from_str::<serde_json::Value>(&json).unwrap()["data"].clone(),
    )
    .unwrap();
    assert_eq!(back, ev);
    let again = Comparison::from_journal(back.intervals.as_ref().unwrap(), 200);
    assert_eq!(again, c, "the same comparison after the round trip");
    // A round written before intervals were journaled.
    let old: RoundScored = serde_json::from_str(
        r#"{"round":1,"baseline":{"accuracy":0.5,"macro_f1":0.5},"augmented":{"accuracy":0.6,"macro_f1":0.6}}"#,
    )
    .unwrap();
    assert_eq!(old.intervals, None);
    let json = serde_json::to_string(&old).unwrap();
    assert!(!json.contains("intervals"), "{json}");
}

/// A restart: the app opens a journal with two scored rounds and shows
/// their verdicts from the journal alone.
#[test]
fn the_stats_pane_shows_journaled_intervals_after_a_restart() {
    let kinds = vec![
        EventKind::RoundScored(RoundScored {
            round: 1,
            baseline: scores(0.5, 2),
            augmented: scores(1.0, 2),
            errors: vec![],
            intervals: Some(Box::new(unclear().to_journal())),
        }),
        EventKind::RoundScored(RoundScored {
            round: 2,
            baseline: scores(0.6, 200),
            augmented: scores(0.8, 200),
            errors: vec![],
            intervals: Some(Box::new(clear_gain().to_journal())),
        }),
    ];
    let mut journal = fixture::events(6);
    let last = journal.last().unwrap().id;
    journal.extend(fixture::stamp(kinds, last));
    let st = fixture::state_with(&journal);
    assert!(
        st.s3.comparisons.is_empty(),
        "nothing scored in this session"
    );
    let lines: Vec<String> = s3_view::stats_lines(&st, 34, 6)
        .iter()
        .map(|l| l.to_string())
        .collect();
    // Round 1 doubled its macro-F1 on two examples: unclear, not a gain.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("r1 ") && l.ends_with(" ~")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("r2 ") && l.ends_with(" ↑")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("r2 ΔF1 +0.") && l.ends_with("] better")),
        "{lines:?}"
    );
}

/// The TUI's round journals the comparison it reports, and a round whose
/// interval includes 0 is not called an improvement.
#[test]
fn a_finished_round_journals_its_comparison() {
    let mut st = fixture::state(6);
    let c = unclear();
    let r = straddle::app::training::RoundResult {
        scored: RoundScored {
            round: 1,
            baseline: scores(0.5, 2),
            augmented: scores(1.0, 2),
            errors: vec![],
            intervals: None,
        },
        comparison: c.clone(),
        model: "ngram".into(),
        note: None,
        mistakes: vec![],
        signals: Default::default(),
    };
    st.s3.round_running = true;
    let fx = update(&mut st, Msg::RoundDone(Ok(Box::new(r))));
    let notice = st.notice.clone().unwrap();
    assert!(!notice.contains("improvement"), "{notice}");
    let journaled = fx.iter().find_map(|e| match e {
        straddle::tui::Effect::Append(k) => k.iter().find_map(|k| match k {
            EventKind::RoundScored(r) => r.intervals.clone(),
            _ => None,
        }),
        _ => None,
    });
    assert_eq!(journaled.map(|b| *b), Some(c.to_journal()));
    fixture::ack(&mut st, fx);
    let round = st.project.rounds.last().unwrap();
    assert_eq!(
        Comparison::from_journal(round.intervals.as_ref().unwrap(), 2).verdict(),
        Verdict::Unclear
    );
}
