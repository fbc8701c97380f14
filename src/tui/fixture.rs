//! Fixed, deterministic project data for the TUI's tests, snapshots and
//! benchmarks (no I/O: events are built in memory and folded).

use crate::domain::{
    Class, Event, EventKind, GenerationSettings, NewSample, Origin, ProjectState, Provenance,
    SampleAdded, Verdict, VerdictMethod, VerdictRecorded,
};

use super::config::UiConfig;
use super::state::{Effect, Init, Msg, State};

/// The fixture's classes (TREC-6).
pub fn classes() -> Vec<Class> {
    [
        ("ABBR", "abbreviations and what they stand for"),
        ("DESC", "descriptions and definitions of concepts"),
        ("ENTY", "entities: animals, colors, products, …"),
        ("HUM", "people and groups of people"),
        ("LOC", "locations: cities, countries, mountains"),
        ("NUM", "numbers, dates, amounts, durations"),
    ]
    .into_iter()
    .map(|(n, d)| Class {
        name: n.into(),
        description: d.into(),
        weight: 1.0,
    })
    .collect()
}

const SUBJECTS: &[&str] = &[
    "the Eiffel Tower",
    "NASA",
    "the first moon landing",
    "photosynthesis",
    "Mount Everest",
    "the Magna Carta",
    "a platypus",
    "Ada Lovelace",
];

/// A journal with 2 seeds per class and `generated` generated samples:
/// every sample but each 7th has a verdict, each 3rd verdict disagrees,
/// and the first tenth are decided.
pub fn events(generated: usize) -> Vec<Event> {
    let classes = classes();
    let mut kinds = Vec::new();
    let mut id = 0u64;
    for c in &classes {
        for k in 0..2 {
            id += 1;
            kinds.push(EventKind::SampleAdded(SampleAdded::new(
                id,
                NewSample {
                    text: format!("Seed question {k} about {}?", c.name.to_lowercase()),
                    label: c.name.clone(),
                    origin: Origin::Seed,
                    provenance: Provenance::default(),
                },
            )));
        }
    }
    for i in 0..generated {
        id += 1;
        let a = &classes[i % classes.len()].name;
        let b = &classes[(i + 1) % classes.len()].name;
        let subject = SUBJECTS[i % SUBJECTS.len()];
        let alpha = 0.5 + (i % 5) as f64 * 0.1;
        kinds.push(EventKind::SampleAdded(SampleAdded::new(
            id,
            NewSample {
                text: format!("What about {subject}, question number {i}?"),
                label: a.clone(),
                origin: Origin::Generated,
                provenance: Provenance {
                    strategy: Some("mix".into()),
                    classes: vec![a.into(), b.into()],
                    minor: Some(b.into()),
                    alpha: Some(alpha),
                    model: Some("smollm2".into()),
                    ..Provenance::default()
                },
            },
        )));
        if i % 7 != 6 {
            let disagree = i % 3 == 2;
            let conf = 0.55 + (i % 9) as f64 * 0.05;
            let label = if disagree { b } else { a };
            let other = if disagree { a } else { b };
            kinds.push(EventKind::VerdictRecorded(VerdictRecorded {
                sample: id,
                verdict: Verdict {
                    label: Some(label.into()),
                    confidence: [(label.clone(), conf), (other.clone(), 1.0 - conf)].into(),
                    method: VerdictMethod::Logprobs,
                    votes: None,
                    raw: None,
                    model: Some("smollm2".into()),
                    request_id: None,
                },
            }));
        }
        if i < generated / 10 {
            kinds.push(EventKind::decided(
                id,
                crate::domain::Decision {
                    kind: if i % 4 == 0 {
                        crate::domain::DecisionKind::Reject
                    } else {
                        crate::domain::DecisionKind::Accept
                    },
                    label: None,
                    reason: None,
                    by: crate::domain::Actor::Key("a".into()),
                },
            ));
        }
    }
    stamp(kinds, 0)
}

/// Give kinds ids after `last_id` and fixed timestamps, like the store.
pub fn stamp(kinds: Vec<EventKind>, last_id: u64) -> Vec<Event> {
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| Event {
            v: crate::domain::SCHEMA_VERSION,
            id: last_id + i as u64 + 1,
            ts: 1_764_075_600_000 + last_id + i as u64,
            kind,
        })
        .collect()
}

/// A `State` over the fixture journal, at 120×40 with default config.
pub fn state(generated: usize) -> State {
    state_with(&events(generated))
}

/// A `State` over the given journal, at 120×40 with default config.
pub fn state_with(journal: &[Event]) -> State {
    let mut project = ProjectState::new(true);
    for e in journal {
        project.apply(e);
    }
    state_of(project, classes())
}

/// A `State` over a folded project (e.g. one opened from disk), at 120×40
/// with default config: what the terminal UI builds when it opens.
pub fn state_of(project: ProjectState, classes: Vec<crate::domain::Class>) -> State {
    let mut st = State::new(Init {
        project,
        project_name: "trec6".into(),
        classes,
        settings: GenerationSettings::default(),
        concurrency: 4,
        backend: "http://127.0.0.1:8765/v1".into(),
        model: "smollm2".into(),
        ui: UiConfig::default(),
    });
    st.size = (120, 40);
    st
}

/// Play the store: turn every `Append` effect into acknowledged events and
/// feed them back through `update`. Returns the other effects.
pub fn ack(st: &mut State, effects: Vec<Effect>) -> Vec<Effect> {
    let mut rest = Vec::new();
    for e in effects {
        match e {
            Effect::Append(kinds) => {
                let events = stamp(kinds, st.project.last_event_id);
                rest.extend(super::update(st, Msg::Appended(events)));
            }
            other => rest.push(other),
        }
    }
    rest
}

/// A made-up sentence vector for the map (no embedder in tests): the
/// class of `s` sets a centre on a circle, its id some jitter, so classes
/// form clusters.
pub fn map_vector(st: &State, s: &crate::domain::SampleState) -> Vec<f32> {
    let n = st.classes.len().max(1) as f32;
    let c = st
        .classes
        .iter()
        .position(|c| c.name == s.label)
        .unwrap_or(0) as f32;
    let angle = c * std::f32::consts::TAU / n;
    let j =
        |k: u64| ((s.id.wrapping_mul(2_654_435_761) ^ (k * 40_503)) % 1000) as f32 / 1000.0 - 0.5;
    vec![
        3.0 * angle.cos() + 1.6 * j(1),
        3.0 * angle.sin() + 1.6 * j(2),
        0.2 * j(3),
        0.05 * j(4),
    ]
}

/// Answer the map's vector jobs among `effects` as the runtime's worker
/// would, with [`map_vector`]s, and the jobs their answers ask for, until
/// none is left. Returns the other effects.
pub fn answer_map(st: &mut State, effects: Vec<Effect>) -> Vec<Effect> {
    let mut rest = Vec::new();
    let mut next = effects;
    while next.iter().any(|e| matches!(e, Effect::Map(_))) {
        let (jobs, other): (Vec<Effect>, Vec<Effect>) =
            next.into_iter().partition(|e| matches!(e, Effect::Map(_)));
        rest.extend(other);
        next = answer_map_once(st, jobs);
    }
    rest.extend(next);
    rest
}

/// [`answer_map`] for the jobs among `effects` only: returns the other
/// effects and what the answers ask for (the map's next job, if any).
pub fn answer_map_once(st: &mut State, effects: Vec<Effect>) -> Vec<Effect> {
    use super::map::{MapJob, MapReply};
    let mut rest = Vec::new();
    let mut queue: std::collections::VecDeque<Effect> = effects.into();
    // Texts to samples, for a fit's texts (they come without ids).
    let mut by_text: Option<std::collections::HashMap<String, crate::domain::SampleId>> = None;
    let mut vector = |st: &State, t: &str| {
        let by_text = by_text.get_or_insert_with(|| {
            st.project
                .samples
                .iter()
                .map(|s| (s.text().to_string(), s.id))
                .collect()
        });
        match by_text.get(t).and_then(|id| st.project.sample(*id)) {
            Some(s) => map_vector(st, s),
            None => vec![0.0; 4],
        }
    };
    while let Some(e) = queue.pop_front() {
        let Effect::Map(MapJob {
            generation,
            fit,
            projection,
            samples,
            ..
        }) = e
        else {
            rest.push(e);
            continue;
        };
        let projection = match fit {
            Some(fit) => {
                let rows: Vec<Vec<f32>> = fit.texts.iter().map(|t| vector(st, t)).collect();
                let refs: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
                let p = crate::embed::Projection::fit_sample(&refs, fit.of).expect("fit");
                let p = std::sync::Arc::new(p);
                rest.extend(super::update(
                    st,
                    Msg::Map(MapReply::Fitted {
                        generation,
                        projection: p.clone(),
                    }),
                ));
                p
            }
            None => projection.expect("a projection"),
        };
        let points = samples
            .iter()
            .map(|(id, v, t)| {
                let row = match st.project.sample(*id) {
                    Some(s) if s.text() == t => map_vector(st, s),
                    _ => vector(st, t),
                };
                (*id, *v, projection.project(&row))
            })
            .collect();
        rest.extend(super::update(
            st,
            Msg::Map(MapReply::Points {
                generation,
                points,
                done: true,
            }),
        ));
    }
    rest
}

/// Show the map (its key) and answer its jobs: every sample gets a point.
pub fn show_map(st: &mut State) -> Vec<Effect> {
    let key = st.keymap.specs_for(super::keymap::Action::ToggleMap)[0].event();
    let fx = super::update(st, Msg::Key(key));
    answer_map(st, fx)
}
