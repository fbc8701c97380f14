//! A large, realistic, reproducible project for scale measurements
//! (issue 15): by default 200,000 generated samples and about 600,000
//! events (≈ 160 MB of journal), written through [`Project`] so the bytes
//! are exactly what straddle writes.
//!
//! What is in it (deterministic for a given [`ScaleSpec`]):
//! * 6 TREC classes, 2 seeds per class and one seed whose text is
//!   `big_seed_bytes` long (10 MB of paragraphs by default);
//! * `samples` generated questions of 1–4 sentences (≈ 60–350 characters)
//!   with a mix provenance (classes, minor, α, template hash, model,
//!   request id), the 4 samples of a request sharing theirs;
//! * a relabel verdict for each sample (logprobs of the top 3 classes),
//!   about a quarter disagreeing with the intended class;
//! * a denoiser score for every 4th, with a reason on the noisy ones;
//! * decisions for about 72%: accepted by key, rejected by key or by
//!   `auto:dedup`, and relabelled (accepted with another label);
//! * some edits, undone decisions, generation failures and a usage record
//!   every 500 samples.
//!
//! `examples/scale_project.rs` writes one from the command line;
//! `scripts/scale.sh` measures the real binary on it.

use std::path::Path;

use crate::domain::{
    Actor, Class, Decision, DecisionKind, Edited, EventKind, GenerationFailed, NewSample,
    NoiseScored, Origin, ProjectConfig, Provenance, Undone, Usage, UsageRecorded, Verdict,
    VerdictMethod, VerdictRecorded,
};

use super::Project;

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct ScaleSpec {
    /// Generated samples.
    pub samples: usize,
    /// Length of the one huge seed text (0 for none).
    pub big_seed_bytes: usize,
    /// Seed of the deterministic generator.
    pub seed: u64,
}

impl Default for ScaleSpec {
    fn default() -> Self {
        ScaleSpec {
            samples: 200_000,
            big_seed_bytes: 10 << 20,
            seed: 15,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleSummary {
    pub samples: u64,
    pub events: u64,
    pub journal_bytes: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub pending: u64,
}

pub const CLASSES: [(&str, &str); 6] = [
    ("ABBR", "abbreviations and what they stand for"),
    ("DESC", "descriptions and definitions of concepts"),
    (
        "ENTY",
        "entities: animals, colors, products, foods, instruments",
    ),
    ("HUM", "people and groups of people"),
    ("LOC", "locations: cities, countries, mountains, rivers"),
    ("NUM", "numbers, dates, amounts, durations, distances"),
];

/// The config of a scale project (TREC-6).
pub fn config() -> ProjectConfig {
    let classes = CLASSES
        .iter()
        .map(|(n, d)| Class {
            name: (*n).into(),
            description: (*d).into(),
            weight: 1.0,
        })
        .collect();
    crate::domain::testing::project_config(
        "trec-scale",
        "Classify open-domain questions by the type of answer they expect.",
        classes,
    )
}

/// SplitMix64: small, fast and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const OPENERS: &[&str] = &[
    "What is",
    "Who was",
    "Where is",
    "How many",
    "When did",
    "Which",
    "Why does",
    "What does",
    "How far is",
    "Name the",
    "In what year did",
    "What do you call",
];
const SUBJECTS: &[&str] = &[
    "the Eiffel Tower",
    "NASA",
    "the first moon landing",
    "photosynthesis",
    "Mount Everest",
    "the Magna Carta",
    "a platypus",
    "Ada Lovelace",
    "the Danube",
    "the Treaty of Westphalia",
    "a quasar",
    "the Brandenburg Gate",
    "UNESCO",
    "the Rosetta Stone",
    "a hummingbird",
    "the speed of sound",
    "Lake Titicaca",
    "the printing press",
    "Marie Curie",
    "the Great Barrier Reef",
    "the Silk Road",
    "a sonnet",
    "the Krebs cycle",
    "Kilimanjaro",
];
const VERBS: &[&str] = &[
    "stand for",
    "get its name",
    "become famous",
    "measure in metres",
    "lie on the map",
    "mean to historians",
    "change after 1900",
    "cost to build",
    "look like from above",
    "belong to",
];
const TAILS: &[&str] = &[
    "according to most encyclopedias",
    "if you count from the start of the project",
    "and who decided it",
    "in the eyes of the people living nearby",
    "compared with its closest rival",
    "as a schoolbook would put it",
    "in plain words",
    "today",
    "before the war",
    "for a visitor arriving by train",
];
const FOLLOWUPS: &[&str] = &[
    "I read about it in an old travel guide and never found a clear answer.",
    "My teacher said one thing and the museum label said another.",
    "It came up in a quiz last night and nobody at the table knew.",
    "I am writing a short essay and want to get the basic fact right.",
    "A friend insists the number is much larger than I think.",
    "The documentary skipped over it entirely.",
    "Please keep the answer short, just the name or the figure.",
    "There seem to be several spellings and I am not sure which is official.",
];

/// One realistic question of 1–4 sentences.
fn question(rng: &mut Rng, i: usize) -> String {
    let mut s = format!(
        "{} {} {} {}? ",
        rng.pick(OPENERS),
        rng.pick(SUBJECTS),
        rng.pick(VERBS),
        rng.pick(TAILS)
    );
    // 0–3 follow-up sentences, most questions having none.
    let followups = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 3][rng.below(20)];
    for _ in 0..followups {
        s.push_str(rng.pick(FOLLOWUPS));
        s.push(' ');
    }
    if i.is_multiple_of(5) {
        s.push_str(&format!("(case {i}) "));
    }
    s.pop();
    s
}

/// `bytes` of prose in paragraphs (the huge seed text).
fn big_text(rng: &mut Rng, bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 600);
    let mut n = 0;
    while s.len() < bytes {
        s.push_str(&question(rng, n));
        n += 1;
        s.push_str(if n % 6 == 0 { "\n\n" } else { " " });
    }
    let mut end = bytes.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s
}

/// Write a scale project into `dir` (which must not exist or be empty).
pub fn write(dir: &Path, spec: ScaleSpec) -> anyhow::Result<ScaleSummary> {
    let mut rng = Rng(spec.seed);
    let names: Vec<&str> = CLASSES.iter().map(|(n, _)| *n).collect();
    let mut seeds = Vec::new();
    for (c, _) in CLASSES {
        for k in 0..2 {
            seeds.push(NewSample {
                text: format!("Seed question {k} for {c}: {}", question(&mut rng, k)),
                label: c.into(),
                origin: Origin::Seed,
                provenance: Provenance {
                    source: Some(format!("seeds.csv:{}", seeds.len() + 2).into()),
                    ..Provenance::default()
                },
            });
        }
    }
    if spec.big_seed_bytes > 0 {
        seeds.push(NewSample {
            text: big_text(&mut rng, spec.big_seed_bytes),
            label: "DESC".into(),
            origin: Origin::Seed,
            provenance: Provenance {
                source: Some("long-document.txt".into()),
                ..Provenance::default()
            },
        });
    }
    let mut p = Project::create(dir, config(), seeds)?;
    let mut next_key_decision = None;
    let (mut accepted, mut rejected) = (0u64, 0u64);
    const CHUNK: usize = 2_000;
    let mut done = 0usize;
    // One mix request yields 4 samples (the usage records count 125
    // requests per 500 samples) of the same class pair and α, written with
    // one provenance, as `Generator::generated` writes a reply's samples.
    let (mut a, mut b) = (0, 1);
    while done < spec.samples {
        let n = CHUNK.min(spec.samples - done);
        let mut batch = Vec::with_capacity(n);
        let mut intended = Vec::with_capacity(n);
        for k in 0..n {
            let i = done + k;
            if i.is_multiple_of(4) {
                a = rng.below(6);
                b = (a + 1 + rng.below(5)) % 6;
            }
            intended.push((a, b));
            batch.push(NewSample {
                text: question(&mut rng, i),
                label: names[a].into(),
                origin: Origin::Generated,
                provenance: Provenance {
                    strategy: Some("mix".into()),
                    classes: vec![names[a].into(), names[b].into()],
                    minor: Some(names[b].into()),
                    alpha: Some([0.5, 0.6, 0.7, 0.8, 0.9][i / 4 % 5]),
                    template_hash: Some("3f9a61c0d2b84e17".into()),
                    model: Some("gpt-4o-mini".into()),
                    request_id: Some(format!("r{}-{}", i / 4000, i / 4).into()),
                    ..Provenance::default()
                },
            });
        }
        let ids = p.add_samples(batch)?;
        let mut kinds = Vec::with_capacity(3 * n);
        for (k, (&id, &(a, b))) in ids.iter().zip(&intended).enumerate() {
            let i = done + k;
            // Relabel verdict: about a quarter pick the minor class.
            let disagree = rng.below(4) == 0;
            let top = if disagree { b } else { a };
            let conf = 0.5 + 0.49 * rng.unit();
            // The top three classes' log-probabilities, as relabel keeps them.
            let third = (top + 1 + rng.below(5)) % 6;
            let second = if top == a { b } else { a };
            let second = if second == third {
                (third + 1) % 6
            } else {
                second
            };
            let rest = (1.0 - conf) / 2.0;
            let round = |v: f64| (v * 1e4).round() / 1e4;
            let confidence = [
                (names[top].to_string(), round(conf)),
                (names[second].to_string(), round(rest * 1.2)),
                (names[third].to_string(), round(rest * 0.8)),
            ]
            .into();
            kinds.push(EventKind::VerdictRecorded(VerdictRecorded {
                sample: id,
                verdict: Verdict {
                    label: Some(names[top].into()),
                    confidence,
                    method: VerdictMethod::Logprobs,
                    votes: None,
                    raw: None,
                    model: Some("gpt-4o-mini".into()),
                    request_id: None,
                },
            }));
            if i % 4 == 1 {
                let noise = (rng.unit() * 1e3).round() / 1e3;
                kinds.push(EventKind::NoiseScored(NoiseScored {
                    sample: id,
                    noise,
                    seed_similarity: Some(((1.0 - noise) * 1e3).round() / 1e3),
                    echo: 0.1,
                    reason: (noise > 0.8).then(|| {
                        format!("far from every {} seed ({:.2})", names[a], 1.0 - noise).into()
                    }),
                    model: "all-MiniLM-L6-v2".into(),
                }));
            }
            // Decisions: 72% decided, the rest pending.
            let roll = rng.below(100);
            let decision = match roll {
                0..50 => Some(Decision {
                    kind: DecisionKind::Accept,
                    label: None,
                    reason: None,
                    by: Actor::Key("a".into()),
                }),
                50..58 => Some(Decision {
                    kind: DecisionKind::Accept,
                    label: Some(names[b].into()),
                    reason: None,
                    by: Actor::Key(format!("{}", b + 1).into()),
                }),
                58..68 => Some(Decision {
                    kind: DecisionKind::Reject,
                    label: None,
                    reason: None,
                    by: Actor::Key("x".into()),
                }),
                68..72 => Some(Decision {
                    kind: DecisionKind::Reject,
                    label: None,
                    reason: Some("near_duplicate".into()),
                    by: Actor::Auto("dedup".into()),
                }),
                _ => None,
            };
            if let Some(d) = decision {
                if d.kind == DecisionKind::Accept {
                    accepted += 1;
                } else {
                    rejected += 1;
                }
                kinds.push(EventKind::decided(id, d));
            }
            if i % 97 == 3 {
                kinds.push(EventKind::Edited(Edited {
                    sample: id,
                    text: format!("{} (edited)", question(&mut rng, i)),
                }));
            }
            if i % 500 == 499 {
                kinds.push(EventKind::UsageRecorded(UsageRecorded {
                    run: format!("generate-{}", i / 20_000),
                    usage: Usage {
                        requests: 125,
                        prompt_tokens: 125 * 610,
                        completion_tokens: 125 * 180,
                        cost: 0.0245,
                        latency_p50_ms: 812.0,
                        latency_p90_ms: 1430.0,
                        latency_p99_ms: 2210.0,
                        wall_s: 9.5,
                        ..Usage::default()
                    },
                }));
            }
            if i % 1000 == 999 {
                kinds.push(EventKind::GenerationFailed(GenerationFailed {
                    reason: "unparsable reply: no numbered list".into(),
                    raw: "Sure! Here are some questions you might like:".into(),
                    provenance: Provenance {
                        strategy: Some("mix".into()),
                        model: Some("gpt-4o-mini".into()),
                        ..Provenance::default()
                    },
                }));
            }
        }
        let events = p.append(kinds)?;
        // Undo every 400th key decision of this chunk (as `u` would).
        let mut undo = Vec::new();
        for e in &events {
            if let EventKind::Decided(d) = &e.kind
                && d.decision.by.is_person()
            {
                let n = next_key_decision.get_or_insert(0u64);
                *n += 1;
                if *n % 400 == 0 {
                    if d.decision.kind == DecisionKind::Accept {
                        accepted -= 1;
                    } else {
                        rejected -= 1;
                    }
                    undo.push(EventKind::Undone(Undone {
                        event: e.id,
                        sample: d.sample,
                    }));
                }
            }
        }
        if !undo.is_empty() {
            p.append(undo)?;
        }
        done += n;
    }
    let samples = p.state().samples.len() as u64;
    let generated = spec.samples as u64;
    Ok(ScaleSummary {
        samples,
        events: p.state().events,
        journal_bytes: std::fs::metadata(p.journal_path())?.len(),
        accepted,
        rejected,
        pending: generated - accepted - rejected,
    })
}
