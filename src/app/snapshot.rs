//! What a background job reads of the project state: a lean copy.
//!
//! The TUI's jobs (the judges' measure, the S3 round, training signals,
//! the data gate, export) run on blocking threads while the UI keeps
//! applying events, so each takes a snapshot. The samples' texts and
//! histories (edits, verdicts, decisions) are shared (`Arc`), so the copy
//! costs each sample's own fields (~128 B; on a 200,000-sample project
//! ~25 MB, where copying the verdicts too cost ~80 MB). [`lean`] leaves
//! out the provenance (one shared empty one), which no job but export
//! reads, and stays a [`ProjectState`] so the jobs run the one code path
//! the command line runs on the project it opened (the CLI owns its state
//! and copies nothing). [`Keep::Provenance`] keeps the provenance of the
//! rows an export writes (seeds and accepted examples).

use crate::domain::{Origin, ProjectState, Provenance, SampleState, Status};

/// What [`lean`] keeps beyond what every job reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Texts, labels, last verdict / decision, noise: the judges, the small
    /// model, the S3 round, signals and the data gate.
    Judging,
    /// And the provenance of the seeds and accepted examples (export).
    Provenance,
}

/// The lean copy of `state` a background job reads (see the module docs).
/// Results computed from it equal those computed from `state` for every
/// job named in [`Keep`].
pub fn lean(state: &ProjectState, keep: Keep) -> ProjectState {
    let mut out = ProjectState::new(state.take_relabel);
    out.take_relabel_config = state.take_relabel_config;
    out.events = state.events;
    out.last_event_id = state.last_event_id;
    out.generation = state.generation.clone();
    out.weights = state.weights.clone();
    out.attribute_weights = state.attribute_weights.clone();
    out.concurrency = state.concurrency;
    out.usage = state.usage.clone();
    out.rounds = state.rounds.clone();
    out.rationales = state.rationales.clone();
    out.judges = state.judges.clone();
    out.samples = state.samples.iter().map(|s| lean_sample(s, keep)).collect();
    out
}

fn lean_sample(s: &SampleState, keep: Keep) -> SampleState {
    let exported = s.origin == Origin::Seed || s.status() == Status::Accepted;
    let provenance = if keep == Keep::Provenance && exported {
        s.provenance.clone()
    } else {
        Provenance::shared_default()
    };
    // Texts and histories are shared with the state (`Arc`), not copied:
    // the copy costs the sample's own fields.
    SampleState {
        provenance,
        ..s.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{accept, state_with};
    use crate::domain::{
        Actor, Decision, DecisionKind, Edited, EventKind, Verdict, VerdictMethod, VerdictRecorded,
    };
    use std::sync::Arc;

    fn project() -> ProjectState {
        let verdict = |label: &str| {
            EventKind::VerdictRecorded(VerdictRecorded {
                sample: 3,
                verdict: Verdict {
                    label: Some(label.into()),
                    confidence: [(label, 0.9)].into(),
                    method: VerdictMethod::Single,
                    votes: None,
                    raw: Some("a long raw answer".into()),
                    model: None,
                    request_id: Some("req-2".into()),
                },
            })
        };
        let mut st = state_with(
            &[
                ("seed one", "sports", Origin::Seed),
                ("held out", "food", Origin::Validation),
                ("a generated text about sports", "sports", Origin::Generated),
                ("another generated text", "food", Origin::Generated),
            ],
            vec![
                verdict("food"),
                verdict("sports"),
                EventKind::Edited(Edited {
                    sample: 3,
                    text: "an edited text".into(),
                }),
                EventKind::decided(
                    3,
                    Decision {
                        kind: DecisionKind::Reject,
                        label: None,
                        reason: None,
                        by: Actor::Key("x".into()),
                    },
                ),
                accept(3),
            ],
        );
        for s in &mut st.samples {
            let p = std::sync::Arc::make_mut(&mut s.provenance);
            p.request_id = Some(format!("req-{}", s.id).into());
            p.source = Some(format!("file.jsonl:{}", s.id).into());
        }
        st
    }

    /// Everything a job reads answers as on the full state; the
    /// provenance is gone unless an export needs it; texts and histories are
    /// the state's own (shared).
    #[test]
    fn a_lean_copy_answers_every_job_question_as_the_full_state() {
        let full = project();
        let lean = lean(&full, Keep::Judging);
        let names: Vec<String> = vec!["sports".into(), "food".into()];
        assert_eq!(lean.samples.len(), full.samples.len());
        for (l, f) in lean.samples.iter().zip(&full.samples) {
            assert_eq!(l.id, f.id);
            assert_eq!(l.text(), f.text());
            assert_eq!(l.is_edited(), f.is_edited());
            assert_eq!(l.status(), f.status());
            assert_eq!(l.effective_label(true), f.effective_label(true));
            assert_eq!(l.effective_label(false), f.effective_label(false));
            assert_eq!(l.agrees(), f.agrees());
            assert_eq!(
                l.verdict().map(|v| (&v.label, &v.confidence)),
                f.verdict().map(|v| (&v.label, &v.confidence))
            );
            assert_eq!(*l.provenance, Provenance::default());
            // Shared with the state, not copied.
            assert!(l.verdicts.shares(&f.verdicts));
            assert!(l.decisions.shares(&f.decisions));
            assert!(l.edits.shares(&f.edits));
            assert!(Arc::ptr_eq(&l.original_text, &f.original_text));
        }
        assert_eq!(full.samples[2].verdicts.len(), 2);
        for with in [true, false] {
            assert_eq!(
                crate::classify::training_set(&lean, &names, with),
                crate::classify::training_set(&full, &names, with)
            );
        }
        assert_eq!(
            crate::classify::heldout_set(&lean, &names),
            crate::classify::heldout_set(&full, &names)
        );
        assert_eq!(lean.judges, full.judges);
        assert_eq!(lean.take_relabel, full.take_relabel);

        let export = super::lean(&full, Keep::Provenance);
        assert_eq!(export.samples[2].provenance, full.samples[2].provenance);
        assert_eq!(export.samples[0].provenance, full.samples[0].provenance);
        // The held-out and the pending example are never exported.
        assert_eq!(*export.samples[1].provenance, Provenance::default());
        assert_eq!(*export.samples[3].provenance, Provenance::default());
    }
}
