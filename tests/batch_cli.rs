//! `straddle batch` on the command line against the test server's Batch
//! API. A test binary of its own: spawning processes while other tests of
//! the same binary hold project locks could leak a lock descriptor into
//! the child between fork and exec.

mod support;

use std::path::Path;

use serde_json::Value;
use straddle::domain::{
    Class, GenerationSettings, NewSample, Origin, ProjectConfig, Provenance, RelabelSettings,
    TaskConfig,
};
use straddle::store::Project;
use support::{Reply, Script, TestServer};

const CLASSES: [&str; 3] = ["HUM", "LOC", "NUM"];

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Distinct questions per request body (a function of the body only);
/// a relabel gets its intended label back.
fn reply_for(body: &Value) -> Reply {
    let prompt = body["messages"][0]["content"].as_str().unwrap_or("");
    if prompt.lines().any(|l| l.starts_with("Text: ")) {
        return Reply::text("{\"label\": \"LOC\"}");
    }
    let mut key = body.clone();
    if let Some(m) = key.as_object_mut() {
        m.remove("stream");
        m.remove("stream_options");
    }
    let h = fnv(&key.to_string());
    let n: usize = prompt
        .lines()
        .find_map(|l| l.strip_prefix("Write "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|w| w.parse().ok())
        .unwrap_or(5);
    let mut out = String::new();
    for i in 0..n {
        out.push_str(&format!(
            "{}. Which river w{} crosses town w{} near hill w{}?\n",
            i + 1,
            h % 9973,
            (h >> 20) % 9973 + i as u64,
            (h >> 40) % 9973
        ));
    }
    Reply::text(out)
}

fn config(server: &TestServer) -> ProjectConfig {
    let mut backend = server.backend();
    backend.max_concurrency = 1;
    ProjectConfig {
        task: TaskConfig {
            name: "trec".into(),
            description: "Questions people ask a search engine.".into(),
        },
        classes: CLASSES
            .iter()
            .map(|c| Class {
                name: c.to_string(),
                description: format!("questions whose answer is {c}"),
                weight: 1.0,
            })
            .collect(),
        backend,
        generation: GenerationSettings {
            seed: 7,
            per_request: 5,
            ..Default::default()
        },
        relabel: RelabelSettings {
            use_logprobs: false,
            ..Default::default()
        },
        embeddings: Default::default(),
    }
}

fn project(server: &TestServer, dir: &Path) {
    let seeds = CLASSES
        .iter()
        .flat_map(|c| {
            (0..2).map(move |i| NewSample {
                text: format!("Which seed question {i} has an answer of kind {c}?"),
                label: c.to_string(),
                origin: Origin::Seed,
                provenance: Provenance::default(),
            })
        })
        .collect();
    Project::create(dir, config(server), seeds).unwrap();
}

fn generated(dir: &Path) -> Vec<straddle::domain::SampleState> {
    let p = Project::open_read_only(dir).unwrap();
    p.state().generated().cloned().collect()
}

fn straddle(args: &[&str]) -> (bool, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_straddle"))
        .args(args)
        .env(
            "STRADDLE_LOG_FILE",
            std::env::temp_dir().join("straddle-batch-test.log"),
        )
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

#[test]
fn the_command_line_runs_every_step() {
    let server = TestServer::start(Script::with_fn(|r| reply_for(&r.body)));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    project(&server, &dir);
    let d = dir.to_str().unwrap();
    let (ok, out) = straddle(&[
        "batch",
        "prepare",
        d,
        "--count",
        "10",
        "--strategy",
        "plain",
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("batch b1: 2 generate + 0 relabel requests"),
        "{out}"
    );
    let (ok, out) = straddle(&["batch", "submit", d]);
    assert!(
        ok && out.contains("submitted b1: batch_1 (validating)"),
        "{out}"
    );
    let (ok, out) = straddle(&["batch", "status", d]);
    assert!(ok && out.contains("b1: batch_1 in_progress"), "{out}");
    let (ok, out) = straddle(&["batch", "fetch", d]);
    assert!(ok, "{out}");
    assert!(
        out.contains("b1: 2 lines: 2 replies (10 examples added"),
        "{out}"
    );
    let samples = generated(&dir);
    assert_eq!(samples.len(), 10);
    assert!(
        samples
            .iter()
            .all(|s| s.provenance.strategy.as_deref() == Some("plain"))
    );
    let out_file = dir.join("batches/b1/output.jsonl");
    let (ok, out) = straddle(&["batch", "ingest", d, out_file.to_str().unwrap()]);
    assert!(ok && out.contains("2 already ingested"), "{out}");
    let (ok, out) = straddle(&["batch", "ingest", d, "/nonexistent.jsonl"]);
    assert!(
        !ok && out.contains("cannot read /nonexistent.jsonl"),
        "{out}"
    );
}
