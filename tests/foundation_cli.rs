//! The foundation through the real binary: init from each seed format and
//! the examples, every bad-input case, import, export in each format, stats,
//! crash recovery and the project lock.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use straddle::domain::{
    Actor, Decision, DecisionKind, Edited, EventKind, NewSample, Origin, Provenance, Verdict,
    VerdictMethod, VerdictRecorded,
};
use straddle::store::Project;
use support::cli::{bad, ok};

/// A command-line argument of any path or string type.
type Arg<'a> = &'a dyn AsRef<std::ffi::OsStr>;

/// The binary with mixed path and string arguments.
fn straddle(args: &[Arg]) -> Output {
    support::cli::straddle(args)
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

fn stats(dir: &Path) -> Value {
    serde_json::from_str(&ok(&straddle(&[&"stats", &dir, &"--json"]))).unwrap()
}

/// Every file in a project folder with its bytes, for "nothing changed".
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() && p.file_name().unwrap() != "straddle.lock" {
            out.insert(p.clone(), std::fs::read(&p).unwrap());
        }
    }
    out
}

const CSV: &str =
    "text,label\n\"What is a caldera, exactly?\",DESC\nWho wrote Hamlet?,HUM\nWhere is Peru?,LOC\n";

#[test]
fn init_from_csv_tsv_and_jsonl() {
    let t = tempfile::tempdir().unwrap();
    let csv = write(t.path(), "s.csv", CSV);
    let tsv = write(
        t.path(),
        "s.tsv",
        "label\ttext\nDESC\tWhat is \"a caldera\"?\nHUM\tWho wrote Hamlet?\nLOC\tWhere is Peru?\n",
    );
    let jsonl = write(
        t.path(),
        "s.jsonl",
        "{\"question\":\"What is a caldera?\",\"coarse\":\"DESC\"}\n\n{\"question\":\"Who wrote Hamlet?\",\"coarse\":\"HUM\",\"x\":1}\n{\"question\":\"Where is Peru?\",\"coarse\":\"LOC\"}\n",
    );
    for (name, file, extra) in [
        ("c", &csv, vec![]),
        ("t", &tsv, vec![]),
        (
            "j",
            &jsonl,
            vec!["--text-col", "question", "--label-col", "coarse"],
        ),
    ] {
        let dir = t.path().join(name);
        let mut args: Vec<Arg> = vec![
            &"init",
            &dir,
            &"--seeds",
            file,
            &"--task",
            &"Trivia questions.",
        ];
        for e in &extra {
            args.push(e);
        }
        let out = ok(&straddle(&args));
        assert!(out.contains("3 classes, 3 seed examples"), "{out}");
        let s = stats(&dir);
        for c in ["DESC", "HUM", "LOC"] {
            assert_eq!(s["classes"][c]["seed"], 1, "{name}: {s}");
        }
        assert_eq!(s["totals"]["seed"], 3);
        assert_eq!(s["journal"]["events"], 3);
        let p = Project::open(&dir).unwrap();
        assert_eq!(p.config().task.description, "Trivia questions.");
        assert_eq!(p.class_names(), ["DESC", "HUM", "LOC"]);
        let first = p.state().sample(1).unwrap();
        assert!(first.text().starts_with("What is"), "{name}");
        assert_eq!(first.origin, Origin::Seed);
    }
    // Quoted CSV field with a comma survives.
    let p = Project::open(&t.path().join("c")).unwrap();
    assert_eq!(
        p.state().sample(1).unwrap().text(),
        "What is a caldera, exactly?"
    );
}

#[test]
fn init_with_descriptions_and_backend_flags() {
    let t = tempfile::tempdir().unwrap();
    let seeds = write(t.path(), "s.csv", CSV);
    let desc = write(
        t.path(),
        "d.csv",
        "label,description\nLOC,\"places: cities, countries\"\nDESC,definitions\nHUM,people\nNUM,numbers\n",
    );
    let dir = t.path().join("p");
    ok(&straddle(&[
        &"init",
        &dir,
        &"--seeds",
        &seeds,
        &"--descriptions",
        &desc,
        &"--base-url",
        &"http://127.0.0.1:9/v1",
        &"--model",
        &"tiny",
    ]));
    let p = Project::open(&dir).unwrap();
    let names: Vec<_> = p
        .classes()
        .into_iter()
        .map(|c| (c.name, c.description))
        .collect();
    assert_eq!(
        names[0],
        ("LOC".to_string(), "places: cities, countries".to_string())
    );
    assert_eq!(names.len(), 4, "a described class without seeds is kept");
    assert_eq!(p.config().backend.base_url, "http://127.0.0.1:9/v1");
    assert_eq!(p.config().backend.model, "tiny");
    let toml = std::fs::read_to_string(dir.join("straddle.toml")).unwrap();
    assert!(toml.contains("# Base URL"), "settings carry comments");
}

#[test]
fn init_examples_are_ready_demo_projects() {
    let t = tempfile::tempdir().unwrap();
    for (name, classes) in [("trec6", 6), ("intents", 7)] {
        let dir = t.path().join(name);
        ok(&straddle(&[&"init", &dir, &"--example", &name]));
        let s = stats(&dir);
        assert_eq!(s["classes"].as_object().unwrap().len(), classes);
        assert_eq!(s["heldout"]["validation"], 10 * classes);
        assert!(s["totals"]["seed"].as_u64().unwrap() >= 2 * classes as u64);
        for f in ["seeds.csv", "validation.csv", "descriptions.csv"] {
            assert!(dir.join("data").join(f).is_file(), "{name}/{f}");
        }
        let ignore = std::fs::read_to_string(dir.join(".gitignore")).unwrap();
        assert!(ignore.lines().any(|l| l == "straddle.lock"));
        let p = Project::open(&dir).unwrap();
        assert!(p.classes().iter().all(|c| !c.description.is_empty()));
    }
    bad(
        &straddle(&[&"init", &t.path().join("x"), &"--example", &"nope"]),
        &["unknown example 'nope'", "trec6", "intents"],
    );
    assert!(!t.path().join("x").exists());
}

#[test]
fn init_bad_inputs_exit_2_with_file_and_line_and_write_nothing() {
    let t = tempfile::tempdir().unwrap();
    let desc = write(t.path(), "d.csv", "DESC,definitions\nHUM,people\n");
    let unknown = write(
        t.path(),
        "u.csv",
        "text,label\nWhat is x?,DESC\nWho is y?,HUMAN\n",
    );
    let empty = write(t.path(), "e.csv", "text,label\nWhat is x?,DESC\n  ,HUM\n");
    let no_text = write(t.path(), "n.csv", "sentence,label\nWhat is x?,DESC\n");
    let mut latin1 = b"text,label\nWhat is x?,DESC\nCaf".to_vec();
    latin1.extend_from_slice(&[0xe9, b'?', b',', b'H', b'U', b'M', b'\n']);
    let latin1_path = t.path().join("l.csv");
    std::fs::write(&latin1_path, latin1).unwrap();
    let bad_json = write(
        t.path(),
        "b.jsonl",
        "{\"text\":\"ok\",\"label\":\"DESC\"}\n{\"text\": oops}\n",
    );
    let empty_jsonl = write(t.path(), "ej.jsonl", "{\"text\":\"\",\"label\":\"DESC\"}\n");
    let dir = t.path().join("p");
    let missing = t.path().join("missing.csv");
    let cases: Vec<(Vec<Arg>, Vec<String>)> = vec![
        (
            vec![&"--seeds", &unknown, &"--descriptions", &desc],
            vec!["u.csv:3".into(), "unknown label 'HUMAN'".into()],
        ),
        (
            vec![&"--seeds", &empty],
            vec!["e.csv:3".into(), "empty text".into()],
        ),
        (
            vec![&"--seeds", &no_text],
            vec!["n.csv".into(), "no 'text' column".into(), "sentence".into()],
        ),
        (
            vec![&"--seeds", &latin1_path],
            vec!["l.csv:3".into(), "not valid UTF-8".into()],
        ),
        (
            vec![&"--seeds", &bad_json],
            vec!["b.jsonl:2".into(), "not a JSON object".into()],
        ),
        (
            vec![&"--seeds", &empty_jsonl],
            vec!["ej.jsonl:1".into(), "empty text".into()],
        ),
        (vec![&"--seeds", &missing], vec!["missing.csv".into()]),
    ];
    for (extra, needles) in cases {
        let mut args: Vec<Arg> = vec![&"init", &dir];
        args.extend(extra);
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        bad(&straddle(&args), &needles);
        assert!(!dir.exists(), "failed init left {dir:?} behind");
    }
    let leftovers: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("straddle-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn init_refuses_an_existing_project_and_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let seeds = write(t.path(), "s.csv", CSV);
    let dir = t.path().join("p");
    ok(&straddle(&[&"init", &dir, &"--seeds", &seeds]));
    let before = snapshot(&dir);
    bad(
        &straddle(&[&"init", &dir, &"--example", &"trec6"]),
        &["already a straddle project"],
    );
    assert_eq!(snapshot(&dir), before);
    let other = t.path().join("full");
    std::fs::create_dir(&other).unwrap();
    write(&other, "keep.txt", "mine");
    bad(
        &straddle(&[&"init", &other, &"--seeds", &seeds]),
        &["not an empty folder"],
    );
    assert_eq!(
        std::fs::read_to_string(other.join("keep.txt")).unwrap(),
        "mine"
    );
    // An empty folder is fine.
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    ok(&straddle(&[&"init", &empty, &"--seeds", &seeds]));
}

#[test]
fn missing_project_is_a_user_error_for_every_command() {
    let t = tempfile::tempdir().unwrap();
    let nowhere = t.path().join("nowhere");
    let f = write(t.path(), "s.csv", CSV);
    let out = t.path().join("o.jsonl");
    bad(
        &straddle(&[&"stats", &nowhere]),
        &["no project at", "nowhere"],
    );
    bad(&straddle(&[&"import", &nowhere, &f]), &["no project at"]);
    bad(
        &straddle(&[&"export", &nowhere, &"--out", &out]),
        &["no project at"],
    );
    bad(
        &straddle(&[&"stats", &t.path()]),
        &["not a straddle project", "straddle.toml"],
    );
    assert!(!nowhere.exists());
}

#[test]
fn import_roles_labels_duplicates_and_failures() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("p");
    ok(&straddle(&[&"init", &dir, &"--example", &"intents"]));
    let val = write(
        t.path(),
        "v.tsv",
        "text\tlabel\nwhere is my money\tbalance\nfly me to Oslo\tbook_flight\n",
    );
    let out = ok(&straddle(&[&"import", &dir, &val, &"--as", &"test"]));
    assert!(out.contains("Imported 2 test examples"), "{out}");
    let out = ok(&straddle(&[&"import", &dir, &val, &"--as", &"test"]));
    assert!(
        out.contains("Imported 0") && out.contains("2 duplicates skipped"),
        "{out}"
    );
    let seeds = write(
        t.path(),
        "more.csv",
        "text,label\nmy card is gone,card_lost\n",
    );
    ok(&straddle(&[&"import", &dir, &seeds]));
    let s = stats(&dir);
    assert_eq!(s["heldout"]["test"], 2);
    assert_eq!(s["classes"]["card_lost"]["seed"], 4);

    let before = snapshot(&dir);
    let wrong = write(t.path(), "w.csv", "text,label\nok,balance\nhm,refund\n");
    bad(
        &straddle(&[&"import", &dir, &wrong, &"--as", &"validation"]),
        &["w.csv:3", "unknown label 'refund'", "balance"],
    );
    let empty = write(t.path(), "e.csv", "text,label\n\"\",balance\n");
    bad(
        &straddle(&[&"import", &dir, &empty]),
        &["e.csv:2", "empty text"],
    );
    assert_eq!(
        snapshot(&dir),
        before,
        "a failed import changed the project"
    );
}

/// A project with generated samples in every state, built through the
/// library (as the engine would).
fn project_with_decisions(dir: &Path) {
    ok(&straddle(&[&"init", &dir, &"--example", &"trec6"]));
    let mut p = Project::open(dir).unwrap();
    let classes = p.class_names();
    let make = |i: usize| NewSample {
        text: format!("generated question number {i}?"),
        label: classes[i % classes.len()].clone(),
        origin: Origin::Generated,
        provenance: Provenance {
            strategy: Some("mix".into()),
            classes: vec![(&classes[i % 6]).into(), (&classes[(i + 1) % 6]).into()],
            minor: Some((&classes[(i + 1) % 6]).into()),
            alpha: Some(0.75),
            template: Some("mix".into()),
            template_hash: Some("0123456789abcdef".into()),
            model: Some("tiny-model".into()),
            request_id: Some(format!("req-{i}").into()),
            ..Default::default()
        },
    };
    let ids = p.add_samples((0..60).map(make).collect()).unwrap();
    let mut kinds = Vec::new();
    for (i, &id) in ids.iter().enumerate() {
        let intended = classes[i % 6].clone();
        // Every 5th: the relabel disagrees and names the minor class.
        let verdict_label = if i % 5 == 0 {
            classes[(i + 1) % 6].clone()
        } else {
            intended
        };
        kinds.push(EventKind::VerdictRecorded(VerdictRecorded {
            sample: id,
            verdict: Verdict {
                label: Some(verdict_label.as_str().into()),
                confidence: [(verdict_label, 0.9)].into(),
                method: VerdictMethod::Logprobs,
                votes: None,
                raw: None,
                model: Some("tiny-model".into()),
                request_id: None,
            },
        }));
        let kind = if i % 4 == 3 {
            DecisionKind::Reject
        } else {
            DecisionKind::Accept
        };
        if i % 10 != 9 {
            kinds.push(EventKind::decided(
                id,
                Decision {
                    kind,
                    label: (i == 2).then(|| "NUM".into()),
                    reason: None,
                    by: if i % 2 == 0 {
                        Actor::Key("a".into())
                    } else {
                        Actor::Rule("accept-agreeing>=0.9".into())
                    },
                },
            ));
        }
    }
    kinds.push(EventKind::Edited(Edited {
        sample: ids[1],
        text: "an edited question?".into(),
    }));
    p.append(kinds).unwrap();
}

fn read_jsonl(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// What export must produce: (id → (text, label)) of accepted generated rows.
fn expected_rows(dir: &Path, with_seeds: bool) -> BTreeMap<u64, (String, String)> {
    let p = Project::open_read_only(dir).unwrap();
    let st = p.state();
    st.samples
        .iter()
        .filter(|s| {
            (s.origin == Origin::Generated && s.status() == straddle::domain::Status::Accepted)
                || (with_seeds && s.origin == Origin::Seed)
        })
        .map(|s| {
            (
                s.id,
                (s.text().to_string(), s.effective_label(true).to_string()),
            )
        })
        .collect()
}

#[test]
fn export_jsonl_is_stratified_deterministic_with_provenance() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("p");
    project_with_decisions(&dir);
    let out = t.path().join("out/data.jsonl");
    ok(&straddle(&[
        &"export",
        &dir,
        &"--out",
        &out,
        &"--val-fraction",
        &"0.25",
        &"--seed",
        &"7",
    ]));
    let train = read_jsonl(&out);
    let val = read_jsonl(&t.path().join("out/data.validation.jsonl"));
    let want = expected_rows(&dir, false);
    let mut got = BTreeMap::new();
    for r in train.iter().chain(&val) {
        let id = r["id"].as_u64().unwrap();
        got.insert(
            id,
            (
                r["text"].as_str().unwrap().to_string(),
                r["label"].as_str().unwrap().to_string(),
            ),
        );
        assert_eq!(r["origin"].as_str().unwrap() == "edited", id == 86, "{r}");
        assert_eq!(r["model"], "tiny-model");
        assert_eq!(r["strategy"], "mix");
        assert_eq!(r["alpha"], 0.75);
        assert_eq!(r["template_hash"], "0123456789abcdef");
        assert!(r["request_id"].as_str().unwrap().starts_with("req-"));
        assert_eq!(r["decision"], "accept");
        assert!(
            r["actor"].as_str().unwrap().starts_with("key:a")
                || r["actor"].as_str().unwrap().starts_with("rule:")
        );
        assert!(r["verdict_confidence"].as_f64().unwrap() > 0.0);
        assert_eq!(r["classes"].as_array().unwrap().len(), 2);
    }
    assert_eq!(
        got, want,
        "exactly the accepted generated rows, final text and label"
    );
    // Final labels: the decision's label beats the relabel; the relabel beats the intended.
    assert_eq!(got[&87].1, "NUM");
    assert_ne!(
        got[&85].1,
        Project::open_read_only(&dir)
            .unwrap()
            .state()
            .sample(85)
            .unwrap()
            .label
    );
    assert_eq!(got[&86].0, "an edited question?");
    // Stratified: every label with ≥ 4 rows has ~25% in validation.
    let mut per: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for r in &train {
        per.entry(r["label"].as_str().unwrap().into())
            .or_default()
            .0 += 1;
    }
    for r in &val {
        per.entry(r["label"].as_str().unwrap().into())
            .or_default()
            .1 += 1;
    }
    for (label, (tr, va)) in &per {
        let n = tr + va;
        let want_val = ((n as f64 * 0.25).round() as usize).min(n - 1);
        assert_eq!(*va, want_val, "{label}: {tr} train, {va} validation");
    }
    // Deterministic for a seed; a different seed gives a different split.
    let train_bytes = std::fs::read(&out).unwrap();
    ok(&straddle(&[
        &"export",
        &dir,
        &"--out",
        &out,
        &"--val-fraction",
        &"0.25",
        &"--seed",
        &"7",
    ]));
    assert_eq!(std::fs::read(&out).unwrap(), train_bytes);
    ok(&straddle(&[
        &"export",
        &dir,
        &"--out",
        &out,
        &"--val-fraction",
        &"0.25",
        &"--seed",
        &"8",
    ]));
    assert_ne!(std::fs::read(&out).unwrap(), train_bytes);
}

#[test]
fn export_never_includes_heldout_and_seeds_only_when_asked() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("p");
    project_with_decisions(&dir);
    let out = t.path().join("all.jsonl");
    ok(&straddle(&[
        &"export",
        &dir,
        &"--out",
        &out,
        &"--include-seeds",
        &"--val-fraction",
        &"0",
    ]));
    let rows = read_jsonl(&out);
    let origins: BTreeSet<&str> = rows.iter().map(|r| r["origin"].as_str().unwrap()).collect();
    assert_eq!(
        origins,
        ["edited", "generated", "seed"].into_iter().collect()
    );
    let ids: BTreeMap<u64, (String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["id"].as_u64().unwrap(),
                (
                    r["text"].as_str().unwrap().into(),
                    r["label"].as_str().unwrap().into(),
                ),
            )
        })
        .collect();
    assert_eq!(ids, expected_rows(&dir, true));
    assert!(!t.path().join("all.validation.jsonl").exists());
    // A project with nothing accepted and no seeds requested.
    let empty = t.path().join("e");
    ok(&straddle(&[&"init", &empty, &"--example", &"intents"]));
    bad(
        &straddle(&[&"export", &empty, &"--out", &out]),
        &["nothing to export", "--include-seeds"],
    );
    bad(
        &straddle(&[&"export", &dir, &"--out", &out, &"--val-fraction", &"1.5"]),
        &["--val-fraction"],
    );
}

#[test]
fn export_csv_plain_and_with_provenance() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("p");
    project_with_decisions(&dir);
    let out = t.path().join("d.csv");
    ok(&straddle(&[
        &"export",
        &dir,
        &"--format",
        &"csv",
        &"--out",
        &out,
    ]));
    let mut rdr = csv::Reader::from_path(&out).unwrap();
    assert_eq!(
        rdr.headers().unwrap().iter().collect::<Vec<_>>(),
        ["text", "label"]
    );
    let mut n = 0;
    for r in rdr.records() {
        assert_eq!(r.unwrap().len(), 2);
        n += 1;
    }
    let mut vr = csv::Reader::from_path(t.path().join("d.validation.csv")).unwrap();
    n += vr.records().count();
    assert_eq!(n, expected_rows(&dir, false).len());

    ok(&straddle(&[
        &"export",
        &dir,
        &"--format",
        &"csv",
        &"--out",
        &out,
        &"--with-provenance",
    ]));
    let mut rdr = csv::Reader::from_path(&out).unwrap();
    let h: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    for col in [
        "text",
        "label",
        "origin",
        "strategy",
        "alpha",
        "model",
        "request_id",
        "verdict_label",
        "decision",
        "actor",
    ] {
        assert!(h.contains(&col.to_string()), "{col} missing from {h:?}");
    }
    let model = h.iter().position(|c| c == "model").unwrap();
    let classes = h.iter().position(|c| c == "classes").unwrap();
    for r in rdr.records() {
        let r = r.unwrap();
        assert_eq!(&r[model], "tiny-model");
        assert_eq!(r[classes].split('|').count(), 2);
    }
}

#[test]
fn export_hf_folder_with_dataset_card() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("p");
    project_with_decisions(&dir);
    let out = t.path().join("hf");
    ok(&straddle(&[
        &"export",
        &dir,
        &"--format",
        &"hf",
        &"--out",
        &out,
        &"--val-fraction",
        &"0.2",
    ]));
    let train = read_jsonl(&out.join("train.jsonl"));
    let val = read_jsonl(&out.join("validation.jsonl"));
    assert_eq!(train.len() + val.len(), expected_rows(&dir, false).len());
    // One Arrow schema for both splits: the same keys in every row, and
    // every value of a key has the same JSON type (no nulls), even though
    // only one row is edited (has an `original_text`).
    let json_type = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let schema = |r: &Value| {
        r.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), json_type(v)))
            .collect::<Vec<_>>()
    };
    let s0 = schema(&train[0]);
    assert!(s0.iter().all(|(_, t)| *t != "null"), "{s0:?}");
    assert!(train.iter().chain(&val).all(|r| schema(r) == s0));
    let edited: Vec<&Value> = train
        .iter()
        .chain(&val)
        .filter(|r| r["origin"] == "edited")
        .collect();
    assert_eq!(edited.len(), 1);
    let prov: Value = serde_json::from_str(edited[0]["provenance"].as_str().unwrap()).unwrap();
    assert_eq!(prov["original_text"], "generated question number 1?");
    assert_eq!(prov["text"], edited[0]["text"]);
    assert_eq!(prov["alpha"], 0.75);
    assert_eq!(edited[0]["model"], "tiny-model");
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(card.starts_with("---\n"));
    assert!(card.contains("path: train.jsonl") && card.contains("path: validation.jsonl"));
    assert!(card.contains("tiny-model"), "model named");
    assert!(card.contains("strategies: `mix`"), "{card}");
    let p = Project::open_read_only(&dir).unwrap();
    let st = p.state();
    let accepted = st
        .generated()
        .filter(|s| s.status() == straddle::domain::Status::Accepted)
        .count();
    let rejected = st
        .generated()
        .filter(|s| s.status() == straddle::domain::Status::Rejected)
        .count();
    assert!(
        card.contains(&format!("accepted: {accepted}, rejected: {rejected}")),
        "{card}"
    );
    for c in p.class_names() {
        let tr = train.iter().filter(|r| r["label"] == c.as_str()).count();
        let va = val.iter().filter(|r| r["label"] == c.as_str()).count();
        assert!(
            card.contains(&format!("| {c} | ")) && card.contains(&format!(" | {tr} | {va} | ")),
            "{c}: {card}"
        );
    }
}

#[test]
fn stats_json_counts_usage_and_failures() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("p");
    project_with_decisions(&dir);
    {
        let mut p = Project::open(&dir).unwrap();
        let mut usage = straddle::domain::Usage {
            requests: 12,
            prompt_tokens: 1000,
            completion_tokens: 500,
            cost: 0.25,
            ..Default::default()
        };
        usage.failures.insert("timeout".into(), 2);
        p.append(vec![
            EventKind::UsageRecorded(straddle::domain::UsageRecorded {
                run: "generate".into(),
                usage,
            }),
            EventKind::GenerationFailed(straddle::domain::GenerationFailed {
                reason: "unparsable".into(),
                raw: "???".into(),
                provenance: Provenance::default(),
            }),
        ])
        .unwrap();
    }
    let s = stats(&dir);
    let p = Project::open_read_only(&dir).unwrap();
    let counts = p.state().class_counts(&p.class_names());
    let mut sum = [0u64; 4];
    for (c, n) in &counts {
        for (i, k) in ["seed", "accepted", "rejected", "pending"]
            .iter()
            .enumerate()
        {
            assert_eq!(
                s["classes"][c][k],
                serde_json::json!([n.seed, n.accepted, n.rejected, n.pending][i])
            );
            sum[i] += [n.seed, n.accepted, n.rejected, n.pending][i];
        }
    }
    assert_eq!(
        s["totals"],
        serde_json::json!({"seed": sum[0], "accepted": sum[1], "rejected": sum[2], "pending": sum[3]})
    );
    assert!(sum[1] > 0 && sum[2] > 0 && sum[3] > 0);
    assert_eq!(s["usage"]["requests"], 12);
    assert_eq!(s["usage"]["tokens"], 1500);
    assert_eq!(s["usage"]["cost"], 0.25);
    assert_eq!(s["usage"]["failures"]["timeout"], 2);
    assert_eq!(s["failures"], 1);
    assert_eq!(s["journal"]["events"], p.load_report().events);
    assert_eq!(s["journal"]["skipped_lines"], 0);
    let human = ok(&straddle(&[&"stats", &dir]));
    assert!(human.contains("class") && human.contains("accepted") && human.contains("total"));
    assert!(human.contains("12 requests"));
}

#[test]
fn crash_recovery_torn_and_garbled_lines() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("p");
    ok(&straddle(&[&"init", &dir, &"--example", &"trec6"]));
    let journal = dir.join("journal.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let n = lines.len();
    // Garble line 5 (a hand edit gone wrong) and tear the last line mid-way.
    let mut broken: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    broken[4] = broken[4].replacen("\"type\"", "\"tpye\"", 1);
    let last = broken.pop().unwrap();
    let mut content = broken.join("\n");
    content.push('\n');
    content.push_str(&last[..last.len() / 2]);
    std::fs::write(&journal, &content).unwrap();

    // Read-only stats reports both and changes nothing.
    let s = stats(&dir);
    assert_eq!(s["journal"]["events"], n - 2);
    assert_eq!(s["journal"]["skipped_lines"], 2);
    let skipped = s["journal"]["skipped"].as_array().unwrap();
    assert_eq!(skipped[0]["line"], 5);
    assert_eq!(skipped[1]["line"], n);
    assert!(skipped[1]["reason"].as_str().unwrap().contains("torn"));
    assert_eq!(std::fs::read_to_string(&journal).unwrap(), content);
    let human = ok(&straddle(&[&"stats", &dir]));
    assert!(human.contains(&format!("line {n}:")), "{human}");

    // A writing command repairs the tail and appends cleanly after it.
    let more = write(
        t.path(),
        "m.csv",
        "text,label\nWhat does UFO stand for?,ABBR\n",
    );
    let out = straddle(&[&"import", &dir, &more]);
    ok(&out);
    let warned = String::from_utf8_lossy(&out.stderr);
    assert!(warned.contains("journal.jsonl:5: skipped"), "{warned}");
    assert!(
        warned.contains(&format!("journal.jsonl:{n}: skipped: torn last line")),
        "{warned}"
    );
    let torn: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("journal.torn-")
        })
        .collect();
    assert_eq!(torn.len(), 1);
    assert_eq!(
        std::fs::read_to_string(&torn[0]).unwrap(),
        &last[..last.len() / 2]
    );
    let s = stats(&dir);
    assert_eq!(s["journal"]["events"], n - 1);
    assert_eq!(
        s["journal"]["skipped_lines"], 1,
        "only the garbled line remains"
    );
    let after = std::fs::read_to_string(&journal).unwrap();
    assert!(
        after.starts_with(&broken.join("\n")),
        "complete lines kept byte for byte"
    );
    assert!(after.ends_with("\n"));
    let p = Project::open_read_only(&dir).unwrap();
    assert!(
        p.state()
            .samples
            .iter()
            .any(|s| s.text() == "What does UFO stand for?")
    );
}

#[test]
fn second_process_gets_a_lock_error_naming_the_pid() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("p");
    ok(&straddle(&[&"init", &dir, &"--example", &"intents"]));
    let f = write(t.path(), "m.csv", "text,label\nblock my card,card_lost\n");
    let holder = Project::open(&dir).unwrap();
    let before = snapshot(&dir);
    bad(
        &straddle(&[&"import", &dir, &f]),
        &["in use", &format!("pid {}", std::process::id())],
    );
    assert_eq!(snapshot(&dir), before);
    // Readers still work while the project is held.
    assert_eq!(stats(&dir)["totals"]["seed"], 21);
    drop(holder);
    ok(&straddle(&[&"import", &dir, &f]));
}
