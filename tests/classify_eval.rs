//! `straddle eval` on a real project folder: JSON schema, the human table,
//! `--test FILE`, the error without held-out data, and that held-out
//! examples never reach the training export.

mod support;

use std::path::Path;

use serde_json::Value;
use straddle::classify::toy;
use straddle::domain::{NewSample, Origin, ProjectConfig};
use straddle::store::Project;
use support::cli::straddle;
use support::project::{accept, classes, project_config, sample};

fn config(names: &[String]) -> ProjectConfig {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    project_config(
        "toy",
        "Made-up words.",
        classes(&names, |c| format!("texts of {c}")),
    )
}

/// A project with 2 seeds per class, `n_gen` accepted generated examples
/// and `n_held` validation examples of the toy task.
fn make_project(dir: &Path, n_gen: usize, n_held: usize) -> toy::ToyData {
    let train = toy::synthetic(n_gen + 60, 3, 15, 1);
    let held = toy::synthetic(n_held, 3, 15, 2);
    let c = &train.classes;
    let mut seeds = Vec::new();
    for (k, class) in c.iter().enumerate() {
        for i in (0..60).filter(|&i| train.labels[i] == k).take(2) {
            seeds.push(sample(&train.texts[i], class, Origin::Seed));
        }
    }
    let mut p = Project::create(dir, config(c), seeds).unwrap();
    let generated: Vec<NewSample> = (60..60 + n_gen)
        .map(|i| sample(&train.texts[i], &c[train.labels[i]], Origin::Generated))
        .collect();
    let ids = p.add_samples(generated).unwrap();
    let accept = ids.iter().map(|&id| accept(id)).collect();
    p.append(accept).unwrap();
    let held_samples: Vec<NewSample> = (0..n_held)
        .map(|i| sample(&held.texts[i], &c[held.labels[i]], Origin::Validation))
        .collect();
    p.add_samples(held_samples).unwrap();
    held
}

#[test]
fn eval_json_has_the_schema_and_augmented_beats_baseline() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    make_project(&dir, 300, 150);
    let out = straddle(&["eval", dir.to_str().unwrap(), "--json", "--model", "ngram"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in ["baseline", "augmented"] {
        for f in ["accuracy", "macro_f1"] {
            let x = j[k][f].as_f64().unwrap_or_else(|| panic!("{k}.{f} in {j}"));
            assert!((0.0..=1.0).contains(&x));
        }
        assert_eq!(j[k]["n_test"], 150);
    }
    assert_eq!(j["model"], "ngram");
    for k in ["baseline", "augmented"] {
        for f in ["accuracy", "macro_f1"] {
            let x = j[k][f].as_f64().unwrap();
            let ci = &j[k][format!("{f}_ci")];
            let (lo, hi) = (ci[0].as_f64().unwrap(), ci[1].as_f64().unwrap());
            assert!(
                lo <= x && x <= hi && hi - lo > 0.0,
                "{k}.{f} {x} in [{lo}, {hi}]"
            );
        }
    }
    // 300 more examples of a learnable task: a clear, paired gain.
    let d = &j["difference"];
    assert!(d["accuracy_ci"][0].as_f64().unwrap() > 0.0, "{d}");
    assert_eq!(d["verdict"], "better", "{d}");
    assert!(d["too_small"].is_null(), "{d}");
    assert_eq!(j["chance"]["uniform"].as_f64().unwrap(), 1.0 / 3.0);
    assert_eq!(j["baseline"]["n_train"], 6);
    assert_eq!(j["augmented"]["n_train"], 306);
    assert!(
        j["augmented"]["accuracy"].as_f64().unwrap()
            > j["baseline"]["accuracy"].as_f64().unwrap() + 0.1,
        "{j}"
    );
    let per_class = j["per_class"].as_object().unwrap();
    assert_eq!(per_class.len(), 3);
    for v in per_class.values() {
        assert!(v["baseline_f1"].is_f64() && v["augmented_f1"].is_f64());
        assert!(v["support"].as_u64().unwrap() > 0);
    }
    assert_eq!(
        j["confusion"]["labels"],
        serde_json::json!(["class0", "class1", "class2"])
    );
    let m = j["confusion"]["matrix"].as_array().unwrap();
    assert_eq!(m.len(), 3);
    let total: u64 = m
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|c| c.as_u64().unwrap())
        .sum();
    assert_eq!(total, 150);
    // Errors are held-out samples, counted by the matrix's off-diagonal.
    let diag: u64 = (0..3).map(|i| m[i][i].as_u64().unwrap()).sum();
    assert_eq!(j["errors"].as_array().unwrap().len() as u64, total - diag);

    // Same numbers twice (deterministic), and a readable table.
    let again = straddle(&["eval", dir.to_str().unwrap(), "--json", "--model", "ngram"]);
    assert_eq!(out.stdout, again.stdout);
    let human = straddle(&["eval", dir.to_str().unwrap(), "--model", "ngram"]);
    let text = String::from_utf8(human.stdout).unwrap();
    assert!(
        text.contains("baseline") && text.contains("augmented"),
        "{text}"
    );
    assert!(text.contains("Held-out: 150 examples"), "{text}");
    assert!(
        text.contains("difference") && text.contains("better"),
        "{text}"
    );
    assert!(text.contains("chance accuracy 0.333"), "{text}");
    assert!(text.contains("#1 class0"), "{text}");
}

#[test]
fn eval_reads_a_test_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    make_project(&dir, 100, 0);
    let file = tmp.path().join("test.csv");
    let mut w = csv::Writer::from_path(&file).unwrap();
    w.write_record(["text", "label"]).unwrap();
    let t = toy::synthetic(40, 3, 15, 9);
    for (text, &label) in t.texts.iter().zip(&t.labels) {
        w.write_record([text, &t.classes[label]]).unwrap();
    }
    w.flush().unwrap();
    let out = straddle(&[
        "eval",
        dir.to_str().unwrap(),
        "--test",
        file.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["augmented"]["n_test"], 40);
    // File examples have no sample id.
    assert!(j["errors"].as_array().unwrap().iter().all(|e| e["id"] == 0));

    // A label that is not a class is a clear user error.
    std::fs::write(&file, "text,label\nhello there,nope\n").unwrap();
    let out = straddle(&[
        "eval",
        dir.to_str().unwrap(),
        "--test",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn eval_without_heldout_data_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    make_project(&dir, 20, 0);
    let out = straddle(&["eval", dir.to_str().unwrap(), "--json", "--model", "ngram"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no held-out examples"), "{err}");
    assert!(err.contains("--as validation"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn heldout_examples_never_reach_the_export() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let held = make_project(&dir, 50, 30);
    let out_file = tmp.path().join("train.jsonl");
    let out = straddle(&[
        "export",
        dir.to_str().unwrap(),
        "--out",
        out_file.to_str().unwrap(),
        "--include-seeds",
        "--val-fraction",
        "0.2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rows = 0;
    for f in std::fs::read_dir(tmp.path()).unwrap() {
        let f = f.unwrap().path();
        if !f.is_file() {
            continue;
        }
        let body = std::fs::read_to_string(&f).unwrap();
        for line in body.lines() {
            rows += 1;
            let row: Value = serde_json::from_str(line).unwrap();
            let text = row["text"].as_str().unwrap();
            assert!(
                !held.texts.iter().any(|h| h == text),
                "held-out text exported: {text}"
            );
        }
    }
    assert_eq!(
        rows, 56,
        "50 accepted + 6 seeds across train and validation"
    );
}
