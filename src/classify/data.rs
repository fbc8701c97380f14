//! Which samples of a project the classifier trains and is scored on.

use crate::domain::{Origin, ProjectState, SampleId, SampleState, Status};

/// Texts with labels (indices into the class list) and the samples they
/// came from (`ids` is empty for examples read from a file).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelledSet {
    pub ids: Vec<SampleId>,
    pub texts: Vec<String>,
    pub labels: Vec<usize>,
    /// Examples left out because their label is not one of the classes:
    /// (sample id or 0, label).
    pub unknown: Vec<(SampleId, String)>,
}

impl LabelledSet {
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// Add one example; a label outside `classes` goes to `unknown`.
    pub fn push(&mut self, classes: &[String], id: SampleId, text: &str, label: &str) {
        match classes.iter().position(|c| c == label) {
            Some(l) => {
                self.ids.push(id);
                self.texts.push(text.to_string());
                self.labels.push(l);
            }
            None => self.unknown.push((id, label.to_string())),
        }
    }

    fn from_samples<'a>(
        state: &ProjectState,
        classes: &[String],
        samples: impl Iterator<Item = &'a SampleState>,
    ) -> LabelledSet {
        let mut set = LabelledSet::default();
        for s in samples {
            set.push(
                classes,
                s.id,
                s.text(),
                s.effective_label(state.take_relabel),
            );
        }
        set
    }
}

/// Training data: the seeds, plus (with `with_generated`) the accepted
/// generated examples, with their final text and effective label.
pub fn training_set(state: &ProjectState, classes: &[String], with_generated: bool) -> LabelledSet {
    LabelledSet::from_samples(
        state,
        classes,
        state.samples.iter().filter(|s| match s.origin {
            Origin::Seed => true,
            Origin::Generated => with_generated && s.status() == Status::Accepted,
            Origin::Validation | Origin::Test => false,
        }),
    )
}

/// [`training_set`] with the accepted generated examples, at most about
/// `max` of them in all: every seed, plus an evenly spaced sample of each
/// class of the accepted generated examples in its share ([`sample_rows`])
/// for the rest (in state order, the same every time). Also returns how
/// many examples the uncapped set has. Below the cap it is the uncapped
/// set; the texts of examples left out are never copied.
pub fn capped_training_set(
    state: &ProjectState,
    classes: &[String],
    max: usize,
) -> (LabelledSet, usize) {
    let known = |s: &SampleState| {
        classes
            .iter()
            .position(|c| c == s.effective_label(state.take_relabel))
    };
    let is_accepted =
        |s: &SampleState| s.origin == Origin::Generated && s.status() == Status::Accepted;
    let seeds = state
        .samples
        .iter()
        .filter(|s| s.origin == Origin::Seed && known(s).is_some())
        .count();
    // Positions in `state.samples` and labels of the accepted examples.
    let (pos, labels): (Vec<usize>, Vec<usize>) = state
        .samples
        .iter()
        .enumerate()
        .filter(|(_, s)| is_accepted(s))
        .filter_map(|(i, s)| known(s).map(|l| (i, l)))
        .unzip();
    let total = seeds + pos.len();
    if total <= max {
        return (training_set(state, classes, true), total);
    }
    let mut keep = vec![false; state.samples.len()];
    for r in sample_rows(&labels, max.saturating_sub(seeds)) {
        keep[pos[r]] = true;
    }
    let set = LabelledSet::from_samples(
        state,
        classes,
        state
            .samples
            .iter()
            .enumerate()
            .filter(|(i, s)| s.origin == Origin::Seed || keep[*i])
            .map(|(_, s)| s),
    );
    (set, total)
}

/// The examples review signals are computed for: seeds and generated
/// examples that are not rejected (pending ones included, since those are
/// the ones a reviewer still has to judge).
pub fn review_pool(state: &ProjectState, classes: &[String]) -> LabelledSet {
    LabelledSet::from_samples(
        state,
        classes,
        state.samples.iter().filter(|s| match s.origin {
            Origin::Seed => true,
            Origin::Generated => s.status() != Status::Rejected,
            Origin::Validation | Origin::Test => false,
        }),
    )
}

/// The project's real held-out examples (origin validation or test).
pub fn heldout_set(state: &ProjectState, classes: &[String]) -> LabelledSet {
    LabelledSet::from_samples(
        state,
        classes,
        state.samples.iter().filter(|s| s.origin.is_heldout()),
    )
}

/// Training examples the small models learn from at most: the judges'
/// measure (`app::judges`), the review signals and the model's doubt
/// ([`super::signals`], [`super::doubt`]), an S3 round's scoring and the
/// data gate before export ([`super::evaluate`]). Past this, an evenly
/// spaced sample of each class in its share ([`sample_rows`]): on a
/// 200,000-sample project with 116,000 accepted examples the whole set
/// is ~180 MB of sentence vectors and a fit over all of it; the models
/// are measured on the held-out examples as trained, so their scores say
/// what the cap costs.
pub const MAX_TRAIN: usize = 10_000;

/// The rows (indices into `labels`, ascending) of an evenly spaced sample
/// of each class in its share, about `max` in all (each class rounds up,
/// and keeps at least one row); every row when there are at most `max`.
/// The same every time.
pub fn sample_rows(labels: &[usize], max: usize) -> Vec<usize> {
    let n = labels.len();
    if n <= max {
        return (0..n).collect();
    }
    let mut by_class: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, &l) in labels.iter().enumerate() {
        by_class.entry(l).or_default().push(i);
    }
    let mut keep: Vec<usize> = Vec::with_capacity(max + by_class.len());
    for rows in by_class.values() {
        let quota = (rows.len() * max).div_ceil(n).clamp(1, rows.len());
        keep.extend((0..quota).map(|j| rows[j * rows.len() / quota]));
    }
    keep.sort_unstable();
    keep
}

/// `set` when it has at most `max` examples, else the examples of
/// [`sample_rows`] (ids in order; the same every time).
pub fn at_most(set: LabelledSet, max: usize) -> LabelledSet {
    if set.len() <= max {
        return set;
    }
    let keep = sample_rows(&set.labels, max);
    let mut out = LabelledSet {
        unknown: set.unknown,
        ..LabelledSet::default()
    };
    let mut texts: Vec<Option<String>> = set.texts.into_iter().map(Some).collect();
    for i in keep {
        if let Some(id) = set.ids.get(i) {
            out.ids.push(*id);
        }
        out.texts.push(texts[i].take().unwrap_or_default());
        out.labels.push(set.labels[i]);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    // Re-exported for the tests that still import it from here.
    pub(crate) use crate::domain::testing::state_with;
    use crate::domain::{
        Actor, Decided, Decision, DecisionKind, Edited, EventKind, Verdict, VerdictMethod,
        VerdictRecorded,
    };

    pub(crate) fn decide(sample: SampleId, kind: DecisionKind) -> EventKind {
        EventKind::Decided(Decided {
            sample,
            decision: Decision {
                kind,
                label: None,
                reason: None,
                by: Actor::Rule("test".into()),
            },
        })
    }

    #[test]
    fn sets_pick_the_right_samples_with_final_text_and_label() {
        let classes: Vec<String> = ["A", "B"].iter().map(|s| s.to_string()).collect();
        let st = state_with(
            &[
                ("seed a", "A", Origin::Seed),
                ("gen accepted", "A", Origin::Generated),
                ("gen pending", "B", Origin::Generated),
                ("gen rejected", "B", Origin::Generated),
                ("held val", "A", Origin::Validation),
                ("held test", "B", Origin::Test),
                ("seed odd", "Z", Origin::Seed),
                ("gen relabelled", "A", Origin::Generated),
            ],
            vec![
                decide(2, DecisionKind::Accept),
                decide(4, DecisionKind::Reject),
                EventKind::Edited(Edited {
                    sample: 2,
                    text: "gen edited".into(),
                }),
                EventKind::VerdictRecorded(VerdictRecorded {
                    sample: 8,
                    verdict: Verdict {
                        label: Some("B".into()),
                        confidence: Default::default(),
                        method: VerdictMethod::Single,
                        votes: None,
                        raw: None,
                        model: None,
                        request_id: None,
                    },
                }),
                decide(8, DecisionKind::Accept),
            ],
        );
        let seeds = training_set(&st, &classes, false);
        assert_eq!(seeds.ids, [1]);
        assert_eq!(seeds.unknown, [(7, "Z".to_string())]);
        let aug = training_set(&st, &classes, true);
        assert_eq!(aug.ids, [1, 2, 8]);
        assert_eq!(aug.texts[1], "gen edited");
        assert_eq!(aug.labels, [0, 0, 1], "relabel verdict taken");
        let pool = review_pool(&st, &classes);
        assert_eq!(pool.ids, [1, 2, 3, 8]);
        let held = heldout_set(&st, &classes);
        assert_eq!(held.ids, [5, 6]);
        assert_eq!(held.labels, [0, 1]);
    }

    /// Past the cap the augmented set keeps every seed and an evenly
    /// spaced sample of each class of the accepted examples in its share
    /// (pending and rejected ones never count); below it, the whole set.
    #[test]
    fn the_capped_training_set_keeps_the_seeds_and_samples_the_accepted() {
        let classes: Vec<String> = ["A", "B"].iter().map(|s| s.to_string()).collect();
        let mut rows: Vec<(String, &str, Origin)> = vec![
            ("seed a".into(), "A", Origin::Seed),
            ("seed b".into(), "B", Origin::Seed),
        ];
        // 90 accepted A, 10 accepted B, then a pending and a rejected one.
        for i in 0..100 {
            let label = if i % 10 == 0 { "B" } else { "A" };
            rows.push((format!("gen {i}"), label, Origin::Generated));
        }
        rows.push(("pending".into(), "A", Origin::Generated));
        rows.push(("rejected".into(), "B", Origin::Generated));
        let refs: Vec<(&str, &str, Origin)> =
            rows.iter().map(|(t, l, o)| (t.as_str(), *l, *o)).collect();
        let mut events: Vec<EventKind> = (3..=102).map(crate::domain::testing::accept).collect();
        events.push(decide(104, DecisionKind::Reject));
        let st = state_with(&refs, events);
        let (all, total) = capped_training_set(&st, &classes, 1000);
        assert_eq!(all, training_set(&st, &classes, true));
        assert_eq!(total, 102);
        let (cut, total) = capped_training_set(&st, &classes, 22);
        assert_eq!(total, 102);
        assert_eq!(cut.len(), 22, "2 seeds + 20 accepted");
        assert_eq!(&cut.ids[..2], [1, 2]);
        assert!(cut.ids.windows(2).all(|w| w[0] < w[1]));
        let b = cut.labels[2..].iter().filter(|&&l| l == 1).count();
        assert_eq!(b, 2, "B keeps its share");
        assert!(!cut.ids.contains(&103) && !cut.ids.contains(&104));
        assert_eq!(capped_training_set(&st, &classes, 22).0, cut);
    }

    #[test]
    fn sample_rows_is_every_row_below_the_cap_and_per_class_above() {
        let labels: Vec<usize> = (0..50).map(|i| usize::from(i % 5 == 0)).collect();
        assert_eq!(sample_rows(&labels, 50), (0..50).collect::<Vec<_>>());
        let rows = sample_rows(&labels, 10);
        assert_eq!(rows.len(), 10);
        assert_eq!(rows.iter().filter(|&&r| labels[r] == 1).count(), 2);
        assert!(rows.windows(2).all(|w| w[0] < w[1]));
    }
}
