//! Parsers on real replies: every file in tests/fixtures/smollm2 holds a
//! request straddle's templates rendered and the raw reply SmolLM2-135M
//! gave (recorded with scripts/record-smollm2-fixtures.py).

use std::path::PathBuf;

use std::collections::BTreeMap;

use straddle::augment::parse::{ParseContext, Parsed, normalize, parse_generation, word_range};
use straddle::augment::relabel::{RelabelReply, TokenLogprob, match_label, verdict_from};
use straddle::domain::VerdictMethod;

const CLASSES: [&str; 6] = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"];

struct Fixture {
    name: String,
    kind: String,
    prompt: String,
    reply: String,
    truncated: bool,
    logprobs: Option<Vec<TokenLogprob>>,
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
        .map(|p| {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            let logprobs = v["logprobs"]["content"].as_array().map(|toks| {
                toks.iter()
                    .map(|t| TokenLogprob {
                        token: t["token"].as_str().unwrap().into(),
                        logprob: t["logprob"].as_f64().unwrap(),
                        top: t["top_logprobs"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|x| {
                                (
                                    x["token"].as_str().unwrap().into(),
                                    x["logprob"].as_f64().unwrap(),
                                )
                            })
                            .collect(),
                    })
                    .collect()
            });
            Fixture {
                name: p.file_name().unwrap().to_string_lossy().into(),
                kind: v["kind"].as_str().unwrap().into(),
                prompt: v["request"]["messages"][0]["content"]
                    .as_str()
                    .unwrap()
                    .into(),
                reply: v["reply"].as_str().unwrap().into(),
                truncated: v["finish_reason"] == "length",
                logprobs,
            }
        })
        .collect()
}

fn shown_examples(prompt: &str) -> Vec<String> {
    prompt
        .lines()
        .filter_map(|l| l.strip_prefix("   - "))
        .map(str::to_string)
        .collect()
}

/// The context the generator gives the parser, read back from a
/// recorded prompt: class descriptions ("N. NAME: texts which are about
/// D"), the task (first line), the number asked for ("Write N new") and
/// the shown examples' length range.
fn context(prompt: &str, truncated: bool) -> ParseContext {
    let shown = shown_examples(prompt);
    let asked = prompt
        .split("Write ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    ParseContext {
        class_names: class_names(),
        class_descriptions: prompt
            .lines()
            .filter_map(|l| {
                l.split_once(": texts which are about ")
                    .map(|x| x.1.to_string())
            })
            .collect(),
        task: prompt.lines().next().unwrap_or("").to_string(),
        prompt: prompt.to_string(),
        seed_words: word_range(shown.iter().map(String::as_str)),
        shown_examples: shown,
        truncated,
        max_words: 60,
        asked,
    }
}

/// The kept items and the dropped pieces with reasons, as a report.
fn report_of(name: &str, p: &Parsed, totals: &mut BTreeMap<String, usize>) -> String {
    let mut report = format!("== {} ({})\n", name, p.format);
    for it in &p.items {
        report.push_str(&format!("  + {it}\n"));
    }
    for d in &p.dropped {
        *totals.entry(d.reason.to_string()).or_default() += 1;
        report.push_str(&format!("  - [{}] {}\n", d.reason, d.text));
    }
    report
}

fn class_names() -> Vec<String> {
    CLASSES.iter().map(|s| s.to_string()).collect()
}

#[test]
fn corpus_is_there() {
    let f = fixtures();
    assert!(f.len() >= 30, "{} fixtures", f.len());
    assert!(f.iter().any(|x| x.kind == "mix"));
    assert!(f.iter().any(|x| x.kind == "plain"));
    assert!(f.iter().any(|x| x.kind == "relabel"));
}

#[test]
fn generation_replies() {
    let mut report = String::new();
    let (mut kept, mut failed) = (0, 0);
    let mut totals = BTreeMap::new();
    for f in fixtures().iter().filter(|f| f.kind != "relabel") {
        let ctx = context(&f.prompt, f.truncated);
        assert!(
            ctx.asked > 0 && !ctx.class_descriptions.is_empty(),
            "{}",
            f.name
        );
        let p = parse_generation(&f.reply, &ctx);
        assert!(p.items.len() <= ctx.asked, "{}: more than asked", f.name);
        report.push_str(&report_of(&f.name, &p, &mut totals));
        for it in &p.items {
            // Invariants on every kept item.
            let t = it.trim_start();
            assert!(
                !t.starts_with(|c: char| c.is_ascii_digit() && t.contains(". "))
                    || !t[..3.min(t.len())].contains('.'),
                "{}: marker left in {it:?}",
                f.name
            );
            assert!(
                !t.starts_with("- ") && !t.starts_with('"'),
                "{}: {it:?}",
                f.name
            );
            assert!(
                !normalize(it).contains("each text must belong"),
                "{}: echo {it:?}",
                f.name
            );
            assert!(it.split_whitespace().count() >= 2);
        }
        if p.items.is_empty() {
            failed += 1;
        } else {
            kept += p.items.len();
        }
    }
    // SmolLM2-135M is tiny: many replies are prose. Both outcomes occur.
    assert!(kept > 10 && failed > 0, "kept {kept} failed {failed}");
    report.push_str(&format!("== kept {kept}; dropped per reason: {totals:?}\n"));
    insta::assert_snapshot!(report);
}

/// The failure modes seen on sets outside the project (issue 11), in one
/// made-up reply modelled on them: asked for 5, it holds 17 lines.
#[test]
fn headings_placeholders_and_descriptions() {
    let prompt = "Questions people ask a search engine.\nYou write new example texts for a text-classification dataset.\n\nThe classes are:\n1. ABBR: texts which are about an abbreviation or what it stands for\n   Examples of ABBR:\n   - What does NASA stand for?\n   - What is the abbreviation for ounce?\n2. HUM: texts which are about a person or group of people\n   Examples of HUM:\n   - Who wrote Hamlet?\n   - Who invented the telephone?\n\nWrite 5 new, diverse, short texts like the examples above.\nEach text must belong 80% to HUM and 20% to ABBR: mostly HUM, with a clear touch of ABBR.\nAnswer with a numbered list, one text per line, and nothing else.";
    let reply = "Sentence 1\nWho founded the NAACP?\nSentence 2\nWho runs the FBI today?\nSentence 3\n\nExample 5\nMovie plot summary 1\nABBR (Abbreviation)\n<text>\ntexts which are about a person or group of people\nWrite 5 new, diverse, short texts like the examples above.\nWhich senator chairs NATO's assembly?\nWho first said OK?\nWho heads UNESCO?\nWho coined the word laser?\nWho named the BBC?";
    let ctx = context(prompt, false);
    assert_eq!(ctx.asked, 5);
    let p = parse_generation(reply, &ctx);
    let mut totals = BTreeMap::new();
    let report = report_of("issue 11 reply", &p, &mut totals);
    assert_eq!(p.items.len(), 5, "{report}");
    assert!(
        p.items
            .iter()
            .all(|i| i.starts_with("Who") || i.starts_with("Which"))
    );
    for r in [
        "heading",
        "placeholder",
        "class_name",
        "class_description",
        "restates_task",
        "extra",
    ] {
        assert!(totals.contains_key(r), "no {r}: {report}");
    }
    insta::assert_snapshot!(report);
}

#[test]
fn relabel_replies() {
    let classes = class_names();
    let mut report = String::new();
    for f in fixtures().iter().filter(|f| f.kind == "relabel") {
        let choices = vec![f.reply.clone()];
        let v = verdict_from(
            &RelabelReply {
                choices: &choices,
                logprobs: f.logprobs.as_deref(),
                ..Default::default()
            },
            &classes,
        );
        // The JSON-constrained replies always parse to a class.
        if f.prompt.contains("Answer with JSON") {
            assert!(v.label.is_some(), "{}: {:?}", f.name, f.reply);
            assert_eq!(v.method, VerdictMethod::Logprobs, "{}", f.name);
        }
        if let Some(l) = &v.label {
            assert!(classes.iter().any(|c| c == l));
            let total: f64 = v.confidence.values().sum();
            assert!((total - 1.0).abs() < 1e-9, "{}: {:?}", f.name, v.confidence);
            assert_eq!(match_label(&f.reply, &classes).as_deref(), Some(l.as_str()));
        } else {
            assert_eq!(v.raw.as_deref(), Some(f.reply.as_str()));
        }
        let conf: Vec<String> = v
            .confidence
            .iter()
            .map(|(c, p)| format!("{c}={p:.3}"))
            .collect();
        report.push_str(&format!(
            "{}: {:?} {:?} [{}] <- {:?}\n",
            f.name,
            v.label,
            v.method,
            conf.join(" "),
            f.reply.chars().take(60).collect::<String>()
        ));
    }
    insta::assert_snapshot!(report);
}
