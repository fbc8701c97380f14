//! The small model's doubt in the review order: out-of-fold disagreement
//! with the intended label, low calibrated confidence and disagreeing
//! nearest neighbours each raise an example in the queue on their own and
//! show as their own reason (code in the row, words in the detail).

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use straddle::classify::doubt::{
    LOW_MODEL_CONFIDENCE, MODEL_DISAGREES, ModelDoubt, NEIGHBOURS_DISAGREE,
};
use straddle::classify::{SignalMap, Signals};
use straddle::domain::{SampleId, Status};
use straddle::tui::view::doubt_codes;
use straddle::tui::{Msg, State, fixture, update, view};

fn signals(reason: &'static str, label: usize, other: usize) -> Signals {
    Signals {
        confidence: 0.8,
        variability: 0.05,
        // At 0.5 the out-of-fold term adds nothing: only the reason counts.
        oof_confidence: 0.5,
        oof_label: label as u32,
        reasons: [reason].into_iter().collect(),
        model_doubt: Some(ModelDoubt {
            label_probability: if reason == LOW_MODEL_CONFIDENCE {
                0.2
            } else {
                0.5
            },
            predicted: if reason == MODEL_DISAGREES {
                other
            } else {
                label
            } as u32,
            predicted_probability: 0.7,
            neighbour_agreement: Some(if reason == NEIGHBOURS_DISAGREE {
                0.2
            } else {
                1.0
            }),
            neighbour_label: Some(if reason == NEIGHBOURS_DISAGREE {
                other
            } else {
                label
            } as u32),
            neighbours: 5,
            reasons: [reason].into_iter().collect(),
        }),
    }
}

/// The least doubtful pending examples, last in the doubt order.
fn calm_pending(st: &State, n: usize) -> Vec<SampleId> {
    let ids = st.queue.ids().to_vec();
    ids.into_iter()
        .rev()
        .filter(|id| {
            st.project
                .sample(*id)
                .is_some_and(|s| s.status() == Status::Pending)
        })
        .take(n)
        .collect()
}

#[test]
fn each_model_reason_raises_its_example_and_shows_as_its_own_reason() {
    let mut st = fixture::state(60);
    let ids = calm_pending(&st, 3);
    let before: Vec<usize> = ids
        .iter()
        .map(|id| st.queue.position(*id).unwrap())
        .collect();
    let class = |st: &State, id: SampleId| {
        let l = &st.project.sample(id).unwrap().label;
        st.classes.iter().position(|c| &c.name == l).unwrap()
    };
    let reasons = [MODEL_DISAGREES, LOW_MODEL_CONFIDENCE, NEIGHBOURS_DISAGREE];
    let map: SignalMap = ids
        .iter()
        .zip(reasons)
        .map(|(id, r)| {
            let c = class(&st, *id);
            (*id, signals(r, c, (c + 1) % 6))
        })
        .collect();
    update(&mut st, Msg::Signals(Ok(map)));
    for ((id, reason), was) in ids.iter().zip(reasons).zip(&before) {
        let now = st.queue.position(*id).unwrap();
        assert!(now < *was, "{reason}: from {was} to {now}");
        let s = st.project.sample(*id).unwrap();
        let (_, tags) = st.queue.doubt(s);
        assert!(tags.contains(&reason), "{tags:?}");
        let code = doubt_codes(&[reason]);
        assert_ne!(code, "*", "{reason} has a code of its own");
        assert!(doubt_codes(&tags).contains(&code));
    }
    // The codes are distinct.
    let codes: Vec<String> = reasons.iter().map(|r| doubt_codes(&[r])).collect();
    assert!(codes[0] != codes[1] && codes[1] != codes[2] && codes[0] != codes[2]);
    // The detail spells out the model's view of the selected one.
    st.review_sel = st.queue.position(ids[2]).unwrap();
    let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
    term.draw(|f| view::render(f, &st)).unwrap();
    let screen = format!("{}", term.backend());
    assert!(screen.contains("nearest examples disagree"), "{screen}");
    let other = &st.classes[(class(&st, ids[2]) + 1) % 6].name;
    let text = straddle::tui::s3_view::signal_line(&st, ids[2])
        .unwrap()
        .to_string();
    assert!(
        text.contains(&format!("1/5 nearest agree (mostly {other})")),
        "{text}"
    );
}
