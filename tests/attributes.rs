//! The `attributes` strategy (MSP) end to end through the binary and the
//! test server: attribute-tagged seeds imported from CSV, dimensions
//! declared in `straddle.toml`, `generate --strategy attributes`, then
//! provenance, `stats`, the CSV export and the dataset card.

mod support;

use std::collections::BTreeMap;

use straddle::store::Project;
use support::cli::{bad, run_ok, straddle};
use support::{Reply, Script, TestServer};

const SEEDS: &str = "text,label,attributes\n\
    Who wrote Hamlet?,HUM,tone=formal;length=short\n\
    who's the guy on the 5 dollar bill lol,HUM,tone=casual\n\
    Where is the Eiffel Tower?,LOC,tone=formal;length=short\n\
    where can i get decent pizza around here,LOC,\n";

const ATTRIBUTES: &str = r#"
[attributes.tone]
description = "how the question sounds"
values.formal = "polite, complete sentences"
values.casual = "relaxed, everyday wording"

[attributes.length]
classes = ["LOC"]
values.short = "a few words"
values.long = "two full sentences"
"#;

/// The attribute lines of a generation prompt (`- tone: formal — …`).
fn asked(prompt: &str) -> BTreeMap<String, String> {
    prompt
        .lines()
        .filter_map(|l| l.strip_prefix("- "))
        .filter_map(|l| l.split_once(" — "))
        .filter_map(|(dv, _)| dv.split_once(": "))
        .map(|(d, v)| (d.to_string(), v.to_string()))
        .collect()
}

/// Three questions per request that name the attributes they were asked
/// for, so the test can match texts to prompts.
fn script() -> Script {
    Script::with_fn(|r| {
        let p = r.last_message();
        let tags: Vec<String> = asked(p).iter().map(|(d, v)| format!("{d}={v}")).collect();
        let tags = tags.join(";");
        let i = r.index;
        Reply::text(format!(
            "1. Question {i}a [{tags}]?\n2. Question {i}b [{tags}]?\n3. Question {i}c [{tags}]?"
        ))
    })
}

#[test]
fn generate_with_attributes_records_them_and_shows_coverage() {
    let server = TestServer::start(script());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let d = dir.to_str().unwrap();
    let seeds = tmp.path().join("seeds.csv");
    std::fs::write(&seeds, SEEDS).unwrap();
    run_ok(&[
        "init",
        d,
        "--seeds",
        seeds.to_str().unwrap(),
        "--base-url",
        &server.base_url(),
        "--model",
        &server.backend().model,
    ]);
    // Without dimensions the strategy says what to declare.
    bad(
        &straddle(&["generate", d, "--strategy", "attributes", "--count", "3"]),
        &["[attributes.tone]"],
    );
    let cfg = dir.join("straddle.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(ATTRIBUTES);
    // A typo in a class name is an error at its line.
    let typo = text.replace("classes = [\"LOC\"]", "classes = [\"LCO\"]");
    std::fs::write(&cfg, &typo).unwrap();
    let line = typo.lines().position(|l| l.contains("LCO")).unwrap() + 1;
    bad(
        &straddle(&["stats", d]),
        &[
            &format!("straddle.toml:{line}: attributes.length.classes: unknown class 'LCO'"),
            "(classes: HUM, LOC)",
        ],
    );
    std::fs::write(&cfg, &text).unwrap();
    let prompt = run_ok(&["prompt", d, "--strategy", "attributes"]);
    assert!(
        prompt.contains("Every new text must express all of these attributes at once:"),
        "{prompt}"
    );
    let doctor = straddle(&["doctor", d]);
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        report.contains("length (2 values, only LOC), tone (2 values)"),
        "{report}"
    );

    let out = run_ok(&[
        "generate",
        d,
        "--strategy",
        "attributes",
        "--count",
        "12",
        "--per-request",
        "3",
        "--no-relabel",
    ]);
    assert!(out.contains("12 examples added"), "{out}");

    let p = Project::open_read_only(&dir).unwrap();
    let st = p.state();
    // Seeds keep their imported tags.
    let seed_tags: Vec<String> = st
        .samples
        .iter()
        .filter(|s| s.origin == straddle::domain::Origin::Seed)
        .map(|s| s.provenance.attributes_column())
        .collect();
    assert_eq!(
        seed_tags,
        [
            "length=short;tone=formal",
            "tone=casual",
            "length=short;tone=formal",
            ""
        ]
    );
    let mut tone = BTreeMap::<String, u32>::new();
    for s in st.generated() {
        let a = &s.provenance.attributes;
        assert_eq!(s.provenance.strategy.as_deref(), Some("attributes"));
        assert!(
            !a.is_empty(),
            "every example carries attributes: {}",
            s.text()
        );
        // What the journal says is what the prompt asked for.
        assert!(
            s.text()
                .contains(&format!("[{}]", s.provenance.attributes_column())),
            "{} vs {:?}",
            s.text(),
            a
        );
        if s.label == "HUM" {
            assert!(!a.contains_key("length"), "length is only for LOC");
        }
        if let Some(v) = a.get("tone") {
            *tone.entry(v.clone()).or_default() += 1;
        }
    }
    assert_eq!(st.generated().count(), 12);
    assert_eq!(tone.len(), 2, "both tones were asked for: {tone:?}");
    drop(p);

    // Coverage: stats (table and JSON).
    let table = run_ok(&["stats", d]);
    assert!(table.contains("attribute"), "{table}");
    assert!(table.contains("tone=casual"), "{table}");
    assert!(table.contains("length=long"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&run_ok(&["stats", d, "--json"])).unwrap();
    let cov = &json["attributes"]["tone"];
    let pending: u64 = ["formal", "casual"]
        .iter()
        .map(|v| cov[*v]["pending"].as_u64().unwrap())
        .sum();
    assert_eq!(pending as u32, tone.values().sum::<u32>());
    assert_eq!(cov["formal"]["seed"], 2);

    // Export: an attributes column, and coverage in the card.
    run_ok(&["review", d, "--accept-all"]);
    let csv = tmp.path().join("out.csv");
    run_ok(&[
        "export",
        d,
        "--format",
        "csv",
        "--out",
        csv.to_str().unwrap(),
        "--val-fraction",
        "0",
    ]);
    let exported = std::fs::read_to_string(&csv).unwrap();
    let mut rows = exported.lines();
    assert_eq!(rows.next(), Some("text,label,attributes"));
    for row in rows {
        let attrs = row.rsplit(',').next().unwrap();
        assert!(row.contains(&format!("[{attrs}]")), "{row}");
    }
    let hf = tmp.path().join("hf");
    run_ok(&["export", d, "--format", "hf", "--out", hf.to_str().unwrap()]);
    let card = std::fs::read_to_string(hf.join("README.md")).unwrap();
    assert!(card.contains("## Attributes"), "{card}");
    assert!(
        card.contains("| tone | casual | relaxed, everyday wording |"),
        "{card}"
    );
}
