//! The denoiser on the recorded SmolLM2 replies (tests/fixtures/smollm2)
//! with the real all-MiniLM-L6-v2 weights: instruction echoes and
//! off-topic prose are rejected with a reason, real questions are kept.

use std::collections::BTreeMap;
use std::path::PathBuf;

use straddle::augment::parse::{ParseContext, parse_generation};
use straddle::embed::denoise::{
    AttributeCounts, DenoiseSettings, Judgement, instruction_sentences, judge,
};
use straddle::embed::{LocalEmbedder, default_model_dir};

const CLASSES: [&str; 6] = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"];

struct Fixture {
    name: String,
    prompt: String,
    reply: String,
    truncated: bool,
}

fn fixtures() -> Vec<Fixture> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|p| {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (v["kind"] != "relabel").then(|| Fixture {
                name: p.file_name().unwrap().to_string_lossy().into(),
                prompt: v["request"]["messages"][0]["content"]
                    .as_str()
                    .unwrap()
                    .into(),
                reply: v["reply"].as_str().unwrap().into(),
                truncated: v["finish_reason"] == "length",
            })
        })
        .collect()
}

/// `Examples of NAME:` followed by `   - text` lines: the seeds shown.
fn seeds_in(prompt: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut class = None;
    for line in prompt.lines() {
        if let Some(c) = line.trim().strip_prefix("Examples of ") {
            class = Some(c.trim_end_matches(':').to_string());
        } else if let (Some(c), Some(t)) = (&class, line.strip_prefix("   - ")) {
            out.push((c.clone(), t.to_string()));
        } else {
            class = None;
        }
    }
    out
}

/// The class the prompt asks for: "entirely to NUM", "belong 58% to HUM",
/// "belong to DESC".
fn intended(prompt: &str) -> String {
    for line in prompt.lines() {
        for marker in ["entirely to ", "belong to ", "% to "] {
            if let Some(i) = line.find(marker) {
                let rest = &line[i + marker.len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase())
                    .collect();
                if CLASSES.contains(&name.as_str()) {
                    return name;
                }
            }
        }
    }
    panic!("no intended class in {prompt}")
}

#[test]
#[ignore = "needs the local embedder weights; scripts/test.sh installs them"]
fn denoiser_on_recorded_replies() {
    let m = LocalEmbedder::load(&default_model_dir()).unwrap_or_else(|e| panic!("{e}"));
    let fx = fixtures();
    let mut seeds: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in &fx {
        for (c, t) in seeds_in(&f.prompt) {
            let v = seeds.entry(c).or_default();
            if !v.contains(&t) {
                v.push(t);
            }
        }
    }
    let seed_vecs: BTreeMap<&str, Vec<Vec<f32>>> = seeds
        .iter()
        .map(|(c, ts)| (c.as_str(), m.embed_sync(ts)))
        .collect();
    let all_seeds: Vec<&[f32]> = seed_vecs.values().flatten().map(Vec::as_slice).collect();
    let settings = DenoiseSettings::default();
    let counts = AttributeCounts::new();
    // Every candidate line of every reply: what the parser kept and what it
    // dropped (3+ words), with the prompt's class and instructions.
    struct Candidate {
        fixture: usize,
        class: String,
        text: String,
        parser: &'static str,
    }
    let mut candidates = Vec::new();
    let mut instructions = Vec::new();
    for (i, f) in fx.iter().enumerate() {
        let class = intended(&f.prompt);
        let shown: Vec<String> = seeds_in(&f.prompt).into_iter().map(|(_, t)| t).collect();
        let ctx = ParseContext {
            class_names: CLASSES.iter().map(|s| s.to_string()).collect(),
            prompt: f.prompt.clone(),
            shown_examples: shown.clone(),
            truncated: f.truncated,
            max_words: 60,
            // The strict parser's other gates are off here: this test is
            // about what the denoiser makes of every candidate line.
            class_descriptions: Vec::new(),
            task: String::new(),
            asked: 0,
            seed_words: None,
        };
        let parsed = parse_generation(&f.reply, &ctx);
        instructions.push(m.embed_sync(&instruction_sentences(&f.prompt, &shown)));
        let kept = parsed.items.iter().map(|t| (t.clone(), "kept"));
        let dropped = parsed
            .dropped
            .iter()
            .filter(|d| d.text.split_whitespace().count() >= 3)
            .map(|d| (d.text.trim().to_string(), d.reason.as_str()));
        for (text, parser) in kept.chain(dropped) {
            candidates.push(Candidate {
                fixture: i,
                class: class.clone(),
                text,
                parser,
            });
        }
    }
    let texts: Vec<&str> = candidates.iter().map(|c| c.text.as_str()).collect();
    let vecs = m.embed_sync(&texts);
    let mut report = String::new();
    let mut verdicts: Vec<(String, Judgement)> = Vec::new();
    for (c, v) in candidates.iter().zip(&vecs) {
        let j = judge(
            v,
            &c.class,
            seed_vecs[c.class.as_str()].iter().map(Vec::as_slice),
            all_seeds.iter().copied(),
            &[],
            &counts,
            instructions[c.fixture].iter().map(Vec::as_slice),
            &settings,
        );
        report.push_str(&format!(
            "{} {}: noise {:.2} seed {:.2} echo {:.2} [{}] {:?} {}\n",
            fx[c.fixture].name,
            c.class,
            j.noise,
            j.seed_similarity.unwrap_or(f32::NAN),
            j.echo_similarity,
            c.parser,
            j.reason,
            c.text.chars().take(80).collect::<String>()
        ));
        verdicts.push((c.text.clone(), j));
    }
    eprintln!("{report}");
    let verdict = |prefix: &str| -> &Judgement {
        &verdicts
            .iter()
            .find(|(t, _)| t.starts_with(prefix))
            .unwrap_or_else(|| panic!("no candidate {prefix:?}"))
            .1
    };
    // The replies that repeat the prompt's instructions.
    for echo in [
        "\"The ABBR: texts which are about an abbreviation or what it stands for\"",
        "Sure, here are five new texts that belong to DESC",
        "This is the third edited version of LOC, 3% from ENTY!",
        "This is the fourth edited version of LOC, 45% from ENTY",
        "The texts here are in ABBR. The first example",
        "In this article, we will write five short texts",
        "I'll create five different texts for you.",
    ] {
        let j = verdict(echo);
        let reason = j.reason.as_deref().unwrap_or("kept");
        assert!(
            reason.starts_with("repeats the instructions ("),
            "{echo}: {reason}"
        );
    }
    // Prose and off-topic lines far from the intended class's seeds.
    for (far, class) in [
        ("How to prepare for a marathon", "LOC"),
        ("How to avoid self-doubt", "LOC"),
        (
            "Sentiment: This is a good, honest and helpful editing",
            "DESC",
        ),
        (
            "I have rewritten the text according to the guidelines",
            "DESC",
        ),
        ("The sky was not blue - It's a common misconception", "LOC"),
        ("I will add one more text to the list.", "NUM"),
    ] {
        let j = verdict(far);
        let reason = j.reason.as_deref().unwrap_or("kept");
        let s = j.seed_similarity.unwrap();
        assert_eq!(
            reason,
            format!("far from every {class} seed ({s:.2})"),
            "{far}"
        );
    }
    // Real questions the model wrote: kept.
    for real in [
        "What do astronauts call their spacecraft?",
        "When was World War II ended, and how did they decide it?",
        "How to calculate the distance between a mountain and a bomb",
        "loca (where is Eiffel Tower located?)",
        "what do astronauts stand for (A) and it is an abbreviation",
        "What is the capital of Peru?",
        "How tall is Mount Everest?",
    ] {
        let j = verdict(real);
        assert!(!j.is_noise(), "{real}: {:?}", j.reason);
    }

    // Real questions of the demo's held-out set, judged against their own
    // class's seeds, with the instructions of a plain prompt.
    let validation = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/trec6/validation.csv"),
    )
    .unwrap();
    let rows: Vec<(String, String)> = validation
        .lines()
        .skip(1)
        .filter_map(|l| l.rsplit_once(','))
        .map(|(t, c)| (t.trim_matches('"').to_string(), c.to_string()))
        .collect();
    let plain = fx.iter().position(|f| f.name.contains("plain")).unwrap();
    let real = m.embed_sync(&rows.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>());
    let mut real_rejected = Vec::new();
    for ((t, c), v) in rows.iter().zip(&real) {
        let j = judge(
            v,
            c,
            seed_vecs[c.as_str()].iter().map(Vec::as_slice),
            all_seeds.iter().copied(),
            &[],
            &counts,
            instructions[plain].iter().map(Vec::as_slice),
            &settings,
        );
        if let Some(r) = j.reason {
            real_rejected.push(format!("{t} ({c}): {r}"));
        }
    }
    eprintln!(
        "held-out real questions rejected: {} of {}\n{}",
        real_rejected.len(),
        rows.len(),
        real_rejected.join("\n")
    );
    // Two seeds a class are few: a handful of real questions is far from
    // both; most must be kept.
    assert!(real_rejected.len() <= 6, "{real_rejected:?}");
}
