//! `straddle loop` end to end against the local test LLM server: two S3
//! rounds (mix, then extrapolation of the held-out errors), relabel, rule
//! review, `round_scored` events, provenance of extrapolated examples, and
//! held-out examples absent from the export.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use straddle::domain::{GenerationSettings, Origin, ProjectConfig, RelabelSettings, Status};
use straddle::store::Project;
use support::cli::straddle;
use support::project::{classes, project_config, sample};
use support::{Reply, Script, TestServer};

/// Each class owns a vocabulary; the fake LLM writes and classifies texts
/// by it.
const VOCAB: &[(&str, &[&str])] = &[
    (
        "sports",
        &[
            "goal", "match", "team", "coach", "league", "striker", "referee", "stadium", "season",
            "penalty", "tennis", "racket", "medal", "sprint", "keeper", "derby",
        ],
    ),
    (
        "food",
        &[
            "soup", "bread", "recipe", "oven", "spicy", "noodles", "cheese", "dessert", "salad",
            "garlic", "bakery", "sauce", "kitchen", "flavour", "pasta", "butter",
        ],
    ),
    (
        "weather",
        &[
            "rain", "storm", "sunny", "forecast", "cloudy", "snow", "wind", "humid", "thunder",
            "drizzle", "frost", "heatwave", "fog", "breeze", "hail", "chilly",
        ],
    ),
];
const FILLER: &[&str] = &[
    "the", "a", "today", "really", "was", "very", "my", "our", "and", "it", "this", "so",
];

fn vocab(class: &str) -> &'static [&'static str] {
    VOCAB.iter().find(|(c, _)| *c == class).unwrap().1
}

/// The class whose words occur most in `text` (first on ties).
fn keyword_label(text: &str) -> &'static str {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower.split(|c: char| !c.is_alphanumeric()).collect();
    VOCAB
        .iter()
        .max_by_key(|(c, v)| {
            let n = words.iter().filter(|w| v.contains(w)).count();
            (n, std::cmp::Reverse(VOCAB.iter().position(|x| x.0 == *c)))
        })
        .unwrap()
        .0
}

/// "Write 5 new" → 5.
fn asked_n(prompt: &str) -> usize {
    let at = prompt.find("Write ").expect("a generation prompt") + 6;
    prompt[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The class a generation prompt asks for.
fn target_of(prompt: &str) -> &'static str {
    let tail = &prompt[prompt.find("Write ").unwrap()..];
    for pat in ["belong to ", "entirely to ", "% to "] {
        if let Some(at) = tail.find(pat) {
            let rest = &tail[at + pat.len()..];
            for (c, _) in VOCAB {
                if rest.starts_with(c) {
                    return c;
                }
            }
        }
    }
    panic!("no target in prompt:\n{prompt}")
}

/// A text of `class` words with a unique counter so dedup keeps it.
fn text_of(class: &str, k: usize, extra: &[&str]) -> String {
    let v = vocab(class);
    let mut words: Vec<String> = [
        FILLER[k % FILLER.len()],
        v[k % v.len()],
        v[(k * 7 + 3) % v.len()],
        FILLER[(k * 5 + 1) % FILLER.len()],
        v[(k * 11 + 5) % v.len()],
    ]
    .iter()
    .chain(extra)
    .map(|w| w.to_string())
    .collect();
    words.push(format!("n{k}"));
    words.join(" ")
}

fn fake_llm(counter: Arc<AtomicUsize>) -> Script {
    Script::with_fn(move |req| {
        let prompt = req.last_message().to_string();
        if prompt.contains("Classify the text") {
            let text = prompt
                .lines()
                .find_map(|l| l.strip_prefix("Text: "))
                .expect("text line");
            return Reply::text(format!("{{\"label\": \"{}\"}}", keyword_label(text)));
        }
        if let Some(at) = prompt.find("would belong to ") {
            let class = prompt[at + 16..].split(':').next().unwrap();
            return Reply::text(format!(
                "Here are some reasons:\n1. It talks about {class} things.\n2. It uses {class} words.\n3. It uses {class} words."
            ));
        }
        let n = asked_n(&prompt);
        let target = target_of(&prompt);
        // An extrapolation prompt: reuse the odd words of the error.
        let odd: Vec<&str> = prompt
            .find("mistakes this")
            .and_then(|at| prompt[at..].lines().nth(1))
            .map(|l| {
                l.split_whitespace()
                    .filter(|w| w.starts_with("xq"))
                    .collect()
            })
            .unwrap_or_default();
        // Texts depend on the request (its sampling seed), not on the order
        // replies happen to be served in, so a run is the same every time.
        let base = req.body["seed"]
            .as_u64()
            .map(|s| (s % 1_000_003) as usize * 16);
        let items: Vec<String> = (1..=n)
            .map(|i| {
                let k = match base {
                    Some(b) => b + i,
                    None => counter.fetch_add(1, Ordering::SeqCst),
                };
                format!("{i}. {}", text_of(target, k, &odd))
            })
            .collect();
        Reply::text(items.join("\n"))
    })
}

fn make_project(dir: &Path, server: &TestServer, generation: GenerationSettings) -> Vec<String> {
    let names: Vec<&str> = VOCAB.iter().map(|(c, _)| *c).collect();
    let config = ProjectConfig {
        backend: server.backend(),
        generation,
        relabel: RelabelSettings {
            use_logprobs: false,
            votes: 1,
            ..RelabelSettings::default()
        },
        ..project_config(
            "topics",
            "Short posts people write.",
            classes(&names, |c| format!("{c} topics")),
        )
    };
    let mut seeds = Vec::new();
    for (c, v) in VOCAB {
        seeds.push(sample(
            &format!("the {} and the {}", v[0], v[1]),
            c,
            Origin::Seed,
        ));
        seeds.push(sample(
            &format!("my {} was {}", v[2], v[3]),
            c,
            Origin::Seed,
        ));
    }
    let mut p = Project::create(dir, config, seeds).unwrap();
    // Held-out: ordinary texts, plus texts of words nobody else uses,
    // which the first classifier cannot get all right.
    let mut held = Vec::new();
    for (i, (c, v)) in VOCAB.iter().enumerate() {
        for k in 0..4 {
            held.push(sample(
                &format!("this {} really {} {}", v[4 + k], v[8 + k], v[12 + k]),
                c,
                Origin::Validation,
            ));
        }
        held.push(sample(&format!("xq{i}a xq{i}b xqzz"), c, Origin::Test));
    }
    let texts = held.iter().map(|s| s.text.clone()).collect();
    p.add_samples(held).unwrap();
    texts
}

#[test]
fn two_rounds_score_extrapolate_and_keep_heldout_out_of_the_export() {
    let counter = Arc::new(AtomicUsize::new(0));
    let server = TestServer::start(fake_llm(counter));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let held_texts = make_project(&dir, &server, GenerationSettings::default());
    let d = dir.to_str().unwrap();

    let out = straddle(&[
        "loop",
        d,
        "--rounds",
        "2",
        "--per-round",
        "12",
        "--auto-accept",
        "0.9",
        // The relabeler is not measured here (`straddle judge`).
        "--force",
        // The n-gram model gets validation examples wrong on this toy
        // data, which the second round extrapolates (the embedding model
        // gets them right, leaving nothing to extrapolate).
        "--small-model",
        "ngram",
        "--base-url",
        &server.base_url(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    println!("{stdout}");
    // Each round reports its change with the bootstrap interval, and
    // calls it an improvement exactly when the interval is above 0.
    for r in ["r1", "r2"] {
        let line = stdout
            .lines()
            .find(|l| l.contains(&format!(": {r} macro-F1 ")))
            .unwrap_or_else(|| panic!("no {r} line in\n{stdout}"));
        assert!(line.contains(" → ") && line.contains(" ["), "{line}");
        assert_eq!(
            line.contains("better) — an improvement."),
            line.contains("better)"),
            "{line}"
        );
        assert_eq!(
            line.contains("not shown to be an improvement"),
            !line.contains("better)"),
            "{line}"
        );
    }
    assert!(
        stdout.contains("Round 1") && stdout.contains("Round 2"),
        "{stdout}"
    );

    let p = Project::open_read_only(&dir).unwrap();
    let st = p.state();
    // One round_scored per round, numbered 1 and 2, scored on all 15
    // held-out examples.
    assert_eq!(st.rounds.len(), 2);
    assert_eq!(
        st.rounds.iter().map(|r| r.round).collect::<Vec<_>>(),
        [1, 2]
    );
    for r in &st.rounds {
        assert_eq!(r.augmented.n_test, 15);
        assert_eq!(r.baseline.n_test, 15);
        assert_eq!(r.baseline.n_train, 6);
        let wrong = r.augmented.n_test
            - (0..3)
                .map(|i| r.augmented.confusion[i][i] as usize)
                .sum::<usize>();
        assert_eq!(r.errors.len(), wrong);
        for e in &r.errors {
            assert!(st.sample(*e).unwrap().origin.is_heldout());
        }
    }
    let r1 = &st.rounds[0];
    assert!(!r1.errors.is_empty(), "the odd held-out texts fool round 1");
    assert!(
        r1.augmented.n_train > 6,
        "accepted examples were trained on"
    );
    assert!(
        st.runs
            .iter()
            .any(|(run, u)| run == "loop" && u.requests > 0)
    );

    // Round 1: mix; round 2: extrapolated from round 1's errors, with the
    // error's true label.
    let by_round = |r: u32| -> Vec<_> {
        st.generated()
            .filter(|s| s.provenance.round == Some(r))
            .collect()
    };
    let first = by_round(1);
    assert_eq!(first.len(), 12);
    assert!(
        first
            .iter()
            .all(|s| s.provenance.strategy.as_deref() == Some("mix"))
    );
    let second = by_round(2);
    assert_eq!(second.len(), 12);
    let r1_errors: BTreeSet<u64> = r1.errors.iter().copied().collect();
    let mut sources = BTreeMap::new();
    for s in &second {
        let pv = &s.provenance;
        assert_eq!(pv.strategy.as_deref(), Some("extrapolate"));
        assert_eq!(pv.template.as_deref(), Some("extrapolate.j2"));
        let err = pv.error_of.expect("error_of");
        assert!(r1_errors.contains(&err), "{err} not a round-1 error");
        let held = st.sample(err).unwrap();
        assert_eq!(s.label, held.label, "intended label is the true label");
        assert_eq!(pv.minor.as_deref(), Some(pv.classes[1].as_str()));
        *sources.entry(err).or_insert(0) += 1;
    }
    // 12 examples at 5 per request: 3 requests, one per error; only
    // validation errors seed prompts (the test examples stay unseen).
    let validation_errors = r1_errors
        .iter()
        .filter(|e| st.sample(**e).unwrap().origin == Origin::Validation)
        .count();
    assert!(validation_errors > 0);
    assert_eq!(sources.len(), validation_errors.min(3));
    assert!(
        sources
            .keys()
            .all(|e| st.sample(*e).unwrap().origin == Origin::Validation)
    );

    // Every generated example was relabelled and decided by the rule.
    for s in st.generated() {
        assert!(s.verdict().is_some(), "sample {} has no verdict", s.id);
        assert_eq!(s.status(), Status::Accepted, "sample {}", s.id);
    }

    // The export never holds a held-out example.
    drop(p);
    let export = tmp.path().join("out.jsonl");
    let out = straddle(&[
        "export",
        d,
        "--out",
        export.to_str().unwrap(),
        "--include-seeds",
        "--val-fraction",
        "0",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body = std::fs::read_to_string(&export).unwrap();
    let rows: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 6 + 24);
    for row in &rows {
        let text = row["text"].as_str().unwrap();
        assert!(
            !held_texts.iter().any(|h| h == text),
            "held-out exported: {text}"
        );
    }
}

#[test]
fn rationales_are_asked_once_and_condition_the_first_round() {
    let server = TestServer::start(fake_llm(Arc::new(AtomicUsize::new(0))));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let settings = GenerationSettings {
        use_rationales: true,
        ..GenerationSettings::default()
    };
    make_project(&dir, &server, settings);
    let d = dir.to_str().unwrap();
    let args = ["loop", d, "--rounds", "1", "--per-round", "10"];
    let out = straddle(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = Project::open_read_only(&dir).unwrap();
    let st = p.state();
    assert_eq!(st.rationales.len(), 3);
    for (class, list) in &st.rationales {
        assert_eq!(
            list,
            &[
                format!("It talks about {class} things."),
                format!("It uses {class} words.")
            ]
        );
    }
    assert!(st.runs.iter().any(|(run, _)| run == "rationales"));
    let made: Vec<_> = st.generated().collect();
    assert_eq!(made.len(), 10);
    for s in &made {
        let r = s
            .provenance
            .rationale
            .as_ref()
            .expect("conditioned on a rationale");
        assert!(
            st.rationales[s.label.as_str()]
                .iter()
                .any(|x| x == r.as_str()),
            "{r} for {}",
            s.label
        );
    }
    let bodies = server.bodies();
    assert!(
        bodies.iter().any(|b| b
            .to_string()
            .contains("Each text should fit this reason for")),
        "the prompts carry the rationale"
    );
    // A second run does not ask again.
    drop(p);
    let before = server.requests();
    let out = straddle(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = Project::open_read_only(&dir).unwrap();
    assert_eq!(p.state().rationales["food"].len(), 2);
    assert!(server.requests() > before);
    assert_eq!(
        p.state()
            .runs
            .iter()
            .filter(|(r, _)| r == "rationales")
            .count(),
        1
    );
}

#[test]
fn loop_without_heldout_examples_fails_before_any_request() {
    let server = TestServer::start(Script::text("1. nothing"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let config = ProjectConfig {
        backend: server.backend(),
        ..project_config("t", "", classes(&["a", "b"], |_| String::new()))
    };
    Project::create(&dir, config, vec![sample("x y", "a", Origin::Seed)]).unwrap();
    let out = straddle(&["loop", dir.to_str().unwrap(), "--rounds", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no held-out examples"));
    assert_eq!(server.requests(), 0);
}

#[test]
fn a_round_that_cannot_reach_the_model_records_no_score() {
    let server = TestServer::start(fake_llm(Arc::new(AtomicUsize::new(0))).api_key("sesame"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    make_project(&dir, &server, GenerationSettings::default());
    let out = straddle(&["loop", dir.to_str().unwrap(), "--rounds", "2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("round 1 stopped"), "{err}");
    let p = Project::open_read_only(&dir).unwrap();
    assert!(p.state().rounds.is_empty());
    assert_eq!(p.state().generated().count(), 0);
}
