//! The best measured judge decides: `straddle judge` measures the LLM
//! relabeler, the embedding judges (small classifier, kNN) and the
//! ensemble on the same real held-out examples; the bulk rules follow the
//! chosen one. Against the test server: its chat endpoint is the
//! relabeler (scripted right or at chance), its `/v1/embeddings` the
//! embedder (scripted to know the classes, or to know nothing) — no model
//! weights needed.

mod support;

use std::path::Path;

use straddle::app::judges;
use straddle::domain::{
    Actor, DecisionKind, EmbeddingBackend, EmbeddingsConfig, GenerationSettings, Origin,
    ProjectConfig, RelabelSettings,
};
use straddle::store::Project;
use support::cli::straddle;
use support::project::{classes, project_config, sample};
use support::{Reply, Script, TestServer};

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

/// The class whose words occur most in `text`.
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

/// An embedding that knows the classes: word counts per class.
fn knowing(text: &str) -> Vec<f64> {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower.split(|c: char| !c.is_alphanumeric()).collect();
    let mut v: Vec<f64> = VOCAB
        .iter()
        .map(|(_, voc)| words.iter().filter(|w| voc.contains(w)).count() as f64)
        .collect();
    v.push(0.2);
    v
}

/// An embedding that knows nothing: the same vector for every text.
fn blind(_: &str) -> Vec<f64> {
    vec![1.0, 0.0, 0.0, 0.0]
}

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

fn asked_n(prompt: &str) -> usize {
    let at = prompt.find("Write ").expect("a generation prompt") + 6;
    prompt[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Generation: every third text is written with another class's words
/// (so its intended label is wrong); relabel: `relabel(text)`.
fn script(relabel: fn(&str) -> String, embed: fn(&str) -> Vec<f64>) -> Script {
    Script::with_fn(move |req| {
        let prompt = req.last_message().to_string();
        if prompt.contains("Classify the text") {
            let text = prompt
                .lines()
                .find_map(|l| l.strip_prefix("Text: "))
                .expect("text line");
            return Reply::text(format!("{{\"label\": \"{}\"}}", relabel(text)));
        }
        let n = asked_n(&prompt);
        let target = target_of(&prompt);
        let base = (req.body["seed"].as_u64().unwrap_or(0) % 1_000_003) as usize * 16;
        let items: Vec<String> = (1..=n)
            .map(|i| {
                let k = base + i;
                let class = if k.is_multiple_of(3) {
                    let t = VOCAB.iter().position(|(c, _)| *c == target).unwrap();
                    VOCAB[(t + 1) % VOCAB.len()].0
                } else {
                    target
                };
                let v = VOCAB.iter().find(|(c, _)| *c == class).unwrap().1;
                format!(
                    "{i}. the {} and {} with {} n{k}",
                    v[k % 16],
                    v[(k * 7 + 3) % 16],
                    v[(k * 11 + 5) % 16]
                )
            })
            .collect();
        Reply::text(items.join("\n"))
    })
    .embeddings(embed)
}

/// 2 seeds per class, 20 validation examples per class, embeddings from
/// the test server; 18 generated examples, relabelled.
fn project(dir: &Path, server: &TestServer) {
    let names: Vec<&str> = VOCAB.iter().map(|(c, _)| *c).collect();
    let config = ProjectConfig {
        backend: server.backend(),
        generation: GenerationSettings::default(),
        relabel: RelabelSettings {
            use_logprobs: false,
            votes: 1,
            ..RelabelSettings::default()
        },
        embeddings: EmbeddingsConfig {
            backend: EmbeddingBackend::Api,
            base_url: server.base_url(),
            model: "test-embedder".into(),
            ..EmbeddingsConfig::default()
        },
        ..project_config(
            "topics",
            "Short posts people write.",
            classes(&names, |c| format!("{c} topics")),
        )
    };
    let mut samples = Vec::new();
    for (c, v) in VOCAB {
        samples.push(sample(
            &format!("the {} and the {}", v[0], v[1]),
            c,
            Origin::Seed,
        ));
        samples.push(sample(
            &format!("my {} was {}", v[2], v[3]),
            c,
            Origin::Seed,
        ));
    }
    for (c, v) in VOCAB {
        for k in 0..20 {
            samples.push(sample(
                &format!(
                    "this {} really {} v{k}",
                    v[(4 + k) % 16],
                    v[(9 + 3 * k) % 16]
                ),
                c,
                Origin::Validation,
            ));
        }
    }
    Project::create(dir, config, samples).unwrap();
    let d = dir.to_str().unwrap();
    let out = straddle(&["generate", d, "--count", "18", "--per-request", "3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn judge_json(d: &str) -> serde_json::Value {
    let out = straddle(&["judge", d, "--json", "--sample", "60"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn accuracy_of(j: &serde_json::Value, name: &str) -> f64 {
    j["judges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["judge"] == name)
        .and_then(|x| x["accuracy"].as_f64())
        .unwrap_or_else(|| panic!("{name} not measured: {j}"))
}

/// The ensemble is never below its best member by more than the paired
/// interval of the difference, on the held-out examples judged.
fn ensemble_holds_up(dir: &Path) {
    let p = Project::open_read_only(dir).unwrap();
    let st = p.state();
    let ens = &st.judges[judges::ENSEMBLE];
    let best = [judges::RELABEL, judges::SMALL, judges::KNN]
        .iter()
        .filter_map(|n| st.judges.get(*n))
        .filter(|j| !j.answers.is_empty())
        .max_by(|a, b| a.report.accuracy.total_cmp(&b.report.accuracy))
        .unwrap();
    assert_eq!(ens.answers.len(), best.answers.len());
    let k = ens.report.labels.len();
    let pred = |j: &straddle::domain::JudgeScored| -> Vec<usize> {
        j.answers
            .iter()
            .map(|a| a.answer.unwrap_or((a.truth + 1) % k))
            .collect()
    };
    let truth: Vec<usize> = ens.answers.iter().map(|a| a.truth).collect();
    let c = straddle::classify::bootstrap::compare(k, &truth, &pred(best), &pred(ens), 1000, 0);
    assert!(
        c.accuracy_diff.estimate >= -c.accuracy_diff.half_width(),
        "ensemble {:.3} vs best {} {:.3}: {:?}",
        ens.report.accuracy,
        best.report.judge,
        best.report.accuracy,
        c.accuracy_diff
    );
}

fn decisions(dir: &Path) -> Vec<(u64, DecisionKind, Actor, bool)> {
    let p = Project::open_read_only(dir).unwrap();
    p.state()
        .generated()
        .filter_map(|s| {
            s.decision().map(|d| {
                (
                    s.id,
                    d.kind,
                    d.by.clone(),
                    keyword_label(s.text()) == s.label,
                )
            })
        })
        .collect()
}

#[test]
fn a_relabeler_at_chance_loses_to_an_embedding_judge_that_is_right() {
    let server = TestServer::start(script(|_| "food".into(), knowing));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let d = dir.to_str().unwrap();
    project(&dir, &server);

    let j = judge_json(d);
    // Every embeddings request (the denoiser's in `generate`, the embedding
    // judges' in `judge`) is journalled as usage of the run `embeddings`.
    let journalled = |dir: &Path| -> u64 {
        let p = Project::open_read_only(dir).unwrap();
        p.state()
            .runs
            .iter()
            .filter(|(r, _)| r == "embeddings")
            .map(|(_, u)| u.requests)
            .sum()
    };
    let asked = server.embedding_requests();
    assert!(asked > 0);
    assert_eq!(journalled(&dir) as usize, asked);
    assert!((accuracy_of(&j, "relabel") - 1.0 / 3.0).abs() < 1e-9, "{j}");
    assert!(accuracy_of(&j, "small") > 0.9, "{j}");
    assert!(accuracy_of(&j, "knn") > 0.9, "{j}");
    let chosen = j["chosen"]["judge"].as_str().unwrap();
    assert!(chosen == "knn" || chosen == "small", "{j}");
    assert_eq!(j["chosen"]["trusted"], true);
    ensemble_holds_up(&dir);
    // The text report names the choice.
    let out = straddle(&["judge", d, "--no-llm"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("chosen: {chosen}")), "{text}");
    assert!(text.contains("recall per class"), "{text}");
    // Measured again: every vector is kept, nothing is asked.
    assert_eq!(server.embedding_requests(), asked);
    assert_eq!(journalled(&dir) as usize, asked);

    // The bulk rule follows the embedding judge: it accepts exactly the
    // generated examples written with their intended class's words (the
    // relabeler, always "food", would have taken only food ones).
    let out = straddle(&["review", d, "--accept-agreeing", "0.5"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("follows the {chosen} judge")),
        "{err}"
    );
    let decided = decisions(&dir);
    let p = Project::open_read_only(&dir).unwrap();
    let right = p
        .state()
        .generated()
        .filter(|s| keyword_label(s.text()) == s.label)
        .count();
    assert!(right > 0 && right < p.state().generated().count());
    assert_eq!(decided.len(), right, "{decided:?}");
    for (_, kind, by, matches) in &decided {
        assert_eq!(*kind, DecisionKind::Accept);
        assert!(
            matches,
            "accepted an example written with another class's words"
        );
        assert_eq!(
            *by,
            Actor::Rule(format!("accept-agreeing[{chosen}]>=0.5").into())
        );
    }
    // Accepted with the label the judge agreed with: the relabeler's
    // "food" (take_relabel) does not override it in the training data.
    let p = Project::open_read_only(&dir).unwrap();
    for s in p.state().generated().filter(|s| s.decision().is_some()) {
        assert_eq!(s.effective_label(true), s.label, "{}", s.text());
    }
}

#[test]
fn a_relabeler_that_is_right_beats_a_blind_embedding_judge() {
    let server = TestServer::start(script(|t| keyword_label(t).into(), blind));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let d = dir.to_str().unwrap();
    project(&dir, &server);

    let j = judge_json(d);
    assert_eq!(accuracy_of(&j, "relabel"), 1.0, "{j}");
    assert!(accuracy_of(&j, "knn") < 0.5, "{j}");
    assert_eq!(j["chosen"]["judge"], "relabel", "{j}");
    ensemble_holds_up(&dir);

    // The bulk rule follows the relabeler.
    let out = straddle(&["review", d, "--accept-agreeing", "0.5"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decided = decisions(&dir);
    assert!(!decided.is_empty());
    for (_, kind, by, matches) in &decided {
        assert_eq!(*kind, DecisionKind::Accept);
        assert!(matches);
        assert_eq!(*by, Actor::Rule("accept-agreeing>=0.5".into()));
    }
}

#[test]
fn when_no_judge_beats_chance_only_a_person_decides() {
    let server = TestServer::start(script(|_| "food".into(), blind));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let d = dir.to_str().unwrap();
    project(&dir, &server);
    let j = judge_json(d);
    assert_eq!(j["chosen"]["trusted"], false, "{j}");
    let out = straddle(&["review", d, "--accept-agreeing", "0.5"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{j}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only a person can decide"), "{err}");
    assert!(decisions(&dir).is_empty());
    // Pinning a judge in straddle.toml is obeyed (and still gated).
    let toml = dir.join("straddle.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, text.replace("use = \"auto\"", "use = \"knn\"")).unwrap();
    let j = judge_json(d);
    assert_eq!(j["chosen"]["judge"], "knn", "{j}");
}
