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
            set.push(classes, s.id, s.text(), s.effective_label(state.take_relabel));
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
