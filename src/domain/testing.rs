//! Builders shared by the tests, so each test says only what is particular
//! to it: a project config, samples, a decision, a folded state.
//!
//! Compiled for unit tests (`cfg(test)`) and, through the `test-fixtures`
//! feature, for the integration tests and benches (the crate's
//! dev-dependency on itself turns the feature on for them); never in a
//! release build. `tests/support` re-exports it beside the binary runner,
//! the tmux driver and the test LLM server; `tui::fixture` builds on it
//! for the TUI's fixed project. It lives in `domain` so that every layer's
//! tests may use it.

use super::{
    Actor, BackendConfig, Class, Decision, DecisionKind, DenoiseConfig, Event, EventKind,
    NewSample, Origin, ProjectConfig, ProjectState, Provenance, TaskConfig,
};

/// Classes named `names`, each described by `describe(name)`, weight 1.
pub fn classes(names: &[&str], describe: impl Fn(&str) -> String) -> Vec<Class> {
    names
        .iter()
        .map(|n| Class {
            name: n.to_string(),
            description: describe(n),
            weight: 1.0,
        })
        .collect()
}

/// A config for task `name` (`description`) with `classes` and every
/// other section at its default. Change a section with struct update:
/// `ProjectConfig { backend, ..project_config(…) }`.
pub fn project_config(name: &str, description: &str, classes: Vec<Class>) -> ProjectConfig {
    ProjectConfig {
        task: TaskConfig {
            name: name.into(),
            description: description.into(),
        },
        classes,
        backend: BackendConfig::default(),
        generation: Default::default(),
        relabel: Default::default(),
        embeddings: Default::default(),
        attributes: Default::default(),
        denoise: DenoiseConfig::off(),
        judge: Default::default(),
        strategy: Default::default(),
    }
}

/// The small "topics" task several tests share: short posts of the given
/// classes, each described as "{class} talk".
pub fn topics_config(names: &[&str]) -> ProjectConfig {
    project_config(
        "topics",
        "Short posts.",
        classes(names, |c| format!("{c} talk")),
    )
}

/// A new sample without provenance.
pub fn sample(text: &str, label: &str, origin: Origin) -> NewSample {
    NewSample {
        text: text.into(),
        label: label.into(),
        origin,
        provenance: Provenance::default(),
    }
}

/// A seed example.
pub fn seed(text: &str, label: &str) -> NewSample {
    sample(text, label, Origin::Seed)
}

/// `sample` accepted with the `a` key.
pub fn accept(sample: u64) -> EventKind {
    EventKind::decided(
        sample,
        Decision {
            kind: DecisionKind::Accept,
            label: None,
            reason: None,
            by: Actor::Key("a".into()),
        },
    )
}

/// A state folded from (text, label, origin) samples (ids 1, 2, …), then
/// `more` events.
pub fn state_with(samples: &[(&str, &str, Origin)], more: Vec<EventKind>) -> ProjectState {
    let mut st = ProjectState::new(true);
    let mut kinds: Vec<EventKind> = samples
        .iter()
        .enumerate()
        .map(|(i, (text, label, origin))| {
            EventKind::SampleAdded(super::SampleAdded::new(
                i as u64 + 1,
                sample(text, label, *origin),
            ))
        })
        .collect();
    kinds.extend(more);
    apply(&mut st, kinds);
    st
}

/// Apply events with the next ids, as the store would.
pub fn apply(st: &mut ProjectState, kinds: Vec<EventKind>) -> Vec<Event> {
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

/// Attribute dimensions for every class: `(name, [(value, description)])`.
pub fn attribute_dims(
    dims: &[(&str, &[(&str, &str)])],
) -> std::collections::BTreeMap<String, super::AttributeDim> {
    dims.iter()
        .map(|(d, values)| {
            (
                d.to_string(),
                super::AttributeDim {
                    description: String::new(),
                    values: values
                        .iter()
                        .map(|(v, desc)| (v.to_string(), desc.to_string()))
                        .collect(),
                    classes: Vec::new(),
                },
            )
        })
        .collect()
}

/// A seed tagged with attributes (`tone=formal;length=short`).
pub fn tagged_seed(text: &str, label: &str, attributes: &str) -> NewSample {
    let mut s = seed(text, label);
    s.provenance.attributes = super::parse_attributes(attributes).expect("valid attributes");
    s
}

/// A two-class project (sport / food) whose 80 generated examples carry
/// the other class's label: 3 seeds per class, the generated rows (ids 7
/// to 86), then 60 validation rows per class. Rows for [`state_with`];
/// accepting the generated ones makes the held-out score worse.
pub fn swapped_label_rows() -> Vec<(String, &'static str, Origin)> {
    let sport = ["goal", "match", "team", "score", "league", "coach"];
    let food = ["soup", "bread", "pasta", "cheese", "salad", "sauce"];
    let mut rows: Vec<(String, &'static str, Origin)> = Vec::new();
    for i in 0..3 {
        rows.push((
            format!("the {} and the {}", sport[i], sport[i + 1]),
            "sport",
            Origin::Seed,
        ));
        rows.push((
            format!("the {} and the {}", food[i], food[i + 1]),
            "food",
            Origin::Seed,
        ));
    }
    for i in 0..40 {
        rows.push((
            format!("a {} a {} {i}", sport[i % 6], sport[(i + 2) % 6]),
            "food",
            Origin::Generated,
        ));
        rows.push((
            format!("a {} a {} {i}", food[i % 6], food[(i + 2) % 6]),
            "sport",
            Origin::Generated,
        ));
    }
    for i in 0..60 {
        rows.push((
            format!("one {} with {}", sport[i % 6], sport[(i + 1) % 6]),
            "sport",
            Origin::Validation,
        ));
        rows.push((
            format!("one {} with {}", food[i % 6], food[(i + 1) % 6]),
            "food",
            Origin::Validation,
        ));
    }
    rows
}
