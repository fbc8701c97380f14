//! Judge the judge: `straddle judge` replays the relabel request on the
//! demo project's real held-out validation questions against the test
//! server, and the bulk rules that trust the relabeler refuse when it is
//! no better than chance — allowed when it answers perfectly.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

use straddle::domain::{Actor, DecisionKind, EventKind};
use straddle::store::Project;
use support::{Reply, Script, TestServer};

fn straddle(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_straddle"))
        .env("STRADDLE_DENOISE", "off")
        .args(args)
        .output()
        .expect("run straddle")
}

fn ok(args: &[&str]) -> String {
    let out = straddle(args);
    assert!(
        out.status.success(),
        "straddle {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The demo's held-out questions and their true classes.
fn truth() -> HashMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/trec6/validation.csv");
    csv::Reader::from_path(path)
        .unwrap()
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_string(), r[1].to_string())
        })
        .collect()
}

/// Generation: a numbered list of fresh questions. Relabel: `answer(text)`.
fn script(answer: impl Fn(&str) -> String + Send + Sync + 'static) -> Script {
    Script::with_fn(move |r| {
        let p = r.last_message();
        if let Some(text) = p.lines().find_map(|l| l.strip_prefix("Text: ")) {
            return Reply::text(format!("{{\"label\": \"{}\"}}", answer(text)));
        }
        let i = r.index;
        Reply::text(format!(
            "1. Who painted picture number {i} in the gallery?\n\
             2. Where is the lake called number {i} on the map?\n\
             3. What does the abbreviation number {i} stand for?"
        ))
    })
}

/// A demo project (60 real validation questions) with 6 generated,
/// relabelled examples.
fn project(dir: &Path, server: &TestServer) {
    let d = dir.to_str().unwrap();
    ok(&[
        "init",
        d,
        "--example",
        "trec6",
        "--base-url",
        &server.base_url(),
        "--model",
        &server.backend().model,
    ]);
    // The relabeler alone: no embedding judges (tests/judges.rs compares
    // judges on the test server's embeddings).
    let toml = dir.join("straddle.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let text = text.replacen("backend = \"local\"", "backend = \"none\"", 1);
    std::fs::write(&toml, text).unwrap();
    ok(&["generate", d, "--count", "6", "--per-request", "3"]);
}

fn judge_json(d: &str, sample: &str) -> serde_json::Value {
    serde_json::from_str(&ok(&["judge", d, "--json", "--sample", sample])).unwrap()
}

fn decisions(dir: &Path) -> Vec<(DecisionKind, Actor)> {
    let p = Project::open_read_only(dir).unwrap();
    p.state()
        .generated()
        .filter_map(|s| s.decision().map(|d| (d.kind, d.by.clone())))
        .collect()
}

#[test]
fn a_judge_at_chance_makes_the_bulk_rules_refuse() {
    // Always the same class, as SmolLM2 did on one of the outside sets.
    let server = TestServer::start(script(|_| "DESC".into()));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let d = dir.to_str().unwrap();
    project(&dir, &server);

    // Before it is measured, a rule that trusts it refuses too.
    let out = straddle(&["review", d, "--accept-agreeing", "0.5"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("straddle judge"));

    let before = server.requests();
    let r = judge_json(d, "30");
    // 30 questions, 5 per class; one request each.
    assert_eq!(server.requests() - before, 30);
    assert_eq!(r["n"], 30);
    assert_eq!(r["correct"], 5);
    assert_eq!(r["answers"], serde_json::json!({"DESC": 30}));
    assert!((r["chance"].as_f64().unwrap() - 1.0 / 6.0).abs() < 1e-12);
    assert!((r["accuracy"].as_f64().unwrap() - 1.0 / 6.0).abs() < 1e-12);
    assert_eq!(r["better_than_chance"], false);
    assert_eq!(r["trusted"], false);
    let desc = r["labels"]
        .as_array()
        .unwrap()
        .iter()
        .position(|l| l == "DESC")
        .unwrap();
    for row in r["confusion"].as_array().unwrap() {
        let row: Vec<u64> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        assert_eq!(row[desc], 5, "every answer in the DESC column");
    }

    // Every rule that trusts the relabeler refuses, and says why.
    for args in [
        vec!["review", d, "--accept-agreeing", "0.5"],
        vec!["review", d, "--reject-disagreeing", "0.5"],
        vec!["review", d, "--accept-all", "--filter", "agree:yes"],
    ] {
        let out = straddle(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not clearly better than chance"), "{err}");
        assert!(err.contains("--force"), "{err}");
    }
    // Auto-accept while generating trusts it as well.
    let out = straddle(&["generate", d, "--count", "3", "--auto-accept", "0.5"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not clearly better than chance"));
    assert!(decisions(&dir).is_empty(), "nothing was decided");
    let stats: serde_json::Value = serde_json::from_str(&ok(&["stats", d, "--json"])).unwrap();
    assert_eq!(stats["judges"]["relabel"]["trusted"], false);
    assert_eq!(stats["judges"]["relabel"]["n"], 30);

    // `doctor` shows the verdict.
    let doc = String::from_utf8_lossy(&straddle(&["doctor", d]).stdout).into_owned();
    assert!(doc.contains("relabel judge: accuracy 0.17"), "{doc}");
    assert!(doc.contains("refuse without --force"), "{doc}");

    // With take_relabel (the default) the class is the relabeler's: a
    // class filter trusts it too; accepting examples it disagrees with
    // would export its labels.
    for args in [
        vec!["review", d, "--reject-all", "--filter", "class:DESC"],
        vec!["review", d, "--accept-all"],
    ] {
        let out = straddle(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    // A rule that does not trust it runs; recorded like the others.
    let out = ok(&[
        "review",
        d,
        "--reject-all",
        "--filter",
        "status:pending painted",
    ]);
    let decided = decisions(&dir);
    assert_eq!(decided.len(), 2, "{out}");
    for (kind, by) in &decided {
        assert_eq!(*kind, DecisionKind::Reject);
        assert_eq!(
            *by,
            Actor::Rule("reject-all[status:pending painted]".into())
        );
    }
    // Forced, the accept rule runs anyway.
    let out = ok(&["review", d, "--accept-all", "--force"]);
    assert!(out.contains("4 decided by rule"), "{out}");
    assert_eq!(decisions(&dir).len(), 6);
}

#[test]
fn a_judge_that_answers_perfectly_is_trusted() {
    let truth = truth();
    let server = TestServer::start(script(move |t| {
        truth.get(t).cloned().unwrap_or_else(|| "HUM".into())
    }));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let d = dir.to_str().unwrap();
    project(&dir, &server);

    let r = judge_json(d, "1000");
    assert_eq!(r["n"], 60, "the sample is bounded by what there is");
    assert_eq!(r["accuracy"], 1.0);
    assert_eq!(r["macro_f1"], 1.0);
    assert_eq!(r["unanswered"], 0);
    assert_eq!(r["trusted"], true);
    assert!(r["p_vs_majority"].as_f64().unwrap() < 1e-9);
    let text = ok(&["judge", d, "--sample", "1000"]);
    assert!(text.contains("bulk rules may trust its verdicts"), "{text}");
    // The second run is answered from the cache.
    assert!(
        text.contains("0 requests sent, 60 answered from the cache"),
        "{text}"
    );

    ok(&["review", d, "--accept-agreeing", "0.5"]);
    let p = Project::open_read_only(&dir).unwrap();
    let st = p.state();
    assert_eq!(st.judges["relabel"].report.n, 60);
    let journal_has_judge = std::fs::read_to_string(dir.join("journal.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"type\":\"judge_scored\""))
        .count();
    assert_eq!(journal_has_judge, 2);
    assert!(
        st.generated()
            .filter(|s| s.agrees() == Some(true))
            .all(|s| s.decision().is_some_and(|d| d.kind == DecisionKind::Accept))
    );
    // Validation examples are never relabelled in the journal.
    let p2 = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    let verdicts = p2
        .lines()
        .filter_map(|l| straddle::domain::Event::from_json_line(l).ok())
        .filter(|e| matches!(e.kind, EventKind::VerdictRecorded(_)))
        .count();
    assert_eq!(verdicts, st.generated().count());
}
