//! Test-only builders of project states from plain events (used by the
//! unit tests of every layer above `domain`).

use super::{Event, EventKind, NewSample, Origin, ProjectState, Provenance, SampleAdded};

/// A state from (text, label, origin) samples, then events.
pub(crate) fn state_with(samples: &[(&str, &str, Origin)], more: Vec<EventKind>) -> ProjectState {
    let mut st = ProjectState::new(true);
    let mut kinds: Vec<EventKind> = samples
        .iter()
        .enumerate()
        .map(|(i, (text, label, origin))| {
            EventKind::SampleAdded(SampleAdded::new(
                i as u64 + 1,
                NewSample {
                    text: text.to_string(),
                    label: label.to_string(),
                    origin: *origin,
                    provenance: Provenance::default(),
                },
            ))
        })
        .collect();
    kinds.extend(more);
    apply(&mut st, kinds);
    st
}

/// Apply events with the next ids, as the store would.
pub(crate) fn apply(st: &mut ProjectState, kinds: Vec<EventKind>) -> Vec<Event> {
    kinds
        .into_iter()
        .map(|kind| {
            let id = st.last_event_id + 1;
            let e = Event {
                v: 1,
                id,
                ts: id,
                kind,
            };
            st.apply(&e);
            e
        })
        .collect()
}
