//! The headless commands as a user runs them: `generate` (and Ctrl-C in
//! the middle of it), `relabel`, `review`, `prompt`, against the test server.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use straddle::domain::{Actor, DecisionKind};
use straddle::store::Project;
use support::cli::{command, init_example, run_ok, straddle};
use support::{Script, TestServer};

/// Numbered lists of fresh questions; relabels answer by the first word.
fn script() -> Script {
    Script::with_fn(|r| {
        let p = r.last_message();
        if let Some(text) = p.lines().find_map(|l| l.strip_prefix("Text: ")) {
            let label = if text.starts_with("Who") {
                "HUM"
            } else {
                "LOC"
            };
            return support::Reply::text(format!("{{\"label\": \"{label}\"}}"));
        }
        let i = r.index;
        support::Reply::text(format!(
            "1. Who painted picture number {i} in the gallery?\n\
             2. Where is the lake called number {i} on the map?\n\
             3. Who wrote song {i} for the band from the north?"
        ))
    })
}

fn init(dir: &Path, server: &TestServer) {
    init_example(
        dir,
        "trec6",
        &server.base_url(),
        Some(&server.backend().model),
    );
}

#[test]
fn generate_relabel_review_prompt() {
    let server = TestServer::start(script());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let d = dir.to_str().unwrap();
    init(&dir, &server);
    // The relabeler's path: pin it as the judge (tests/judges.rs covers
    // the embedding judges).
    let toml = dir.join("straddle.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, text.replace("use = \"auto\"", "use = \"relabel\"")).unwrap();

    let prompt = run_ok(&["prompt", d, "--strategy", "mix"]);
    assert!(prompt.contains("The classes are:"));
    assert!(prompt.contains("% to "), "{prompt}");
    let plain = run_ok(&["prompt", d, "--strategy", "plain"]);
    assert!(plain.contains("The class is:"));

    let out = run_ok(&[
        "generate",
        d,
        "--count",
        "6",
        "--per-request",
        "3",
        "--no-relabel",
        "--alpha",
        "0.7",
    ]);
    assert!(out.contains("6 examples added"), "{out}");
    let p = Project::open_read_only(&dir).unwrap();
    assert_eq!(p.state().generated().count(), 6);
    assert!(p.state().generated().all(|s| s.verdict().is_none()));
    assert!(
        p.state()
            .generated()
            .all(|s| s.provenance.alpha == Some(0.7))
    );
    drop(p);

    let out = run_ok(&["relabel", d]);
    assert!(out.contains("6 relabelled"), "{out}");
    let relabel_prompt = run_ok(&["prompt", d, "--relabel"]);
    assert!(relabel_prompt.contains("Text: "));

    // The rules trust the relabeler only once it is measured on the
    // held-out questions: "Who…" → HUM, else LOC gets HUM and LOC right,
    // clearly better than chance (1/6) and than the majority class.
    let judged = run_ok(&["judge", d]);
    assert!(
        judged.contains("bulk rules may trust its verdicts"),
        "{judged}"
    );
    let out = run_ok(&[
        "review",
        d,
        "--accept-agreeing",
        "0.9",
        "--reject-disagreeing",
        "0.9",
    ]);
    assert!(out.contains("6 decided by rule"), "{out}");
    let p = Project::open_read_only(&dir).unwrap();
    for s in p.state().generated() {
        let d = s.decision().expect("decided");
        let want = if s.agrees() == Some(true) {
            (DecisionKind::Accept, "accept-agreeing>=0.9")
        } else {
            (DecisionKind::Reject, "reject-disagreeing>=0.9")
        };
        assert_eq!(d.kind, want.0);
        assert_eq!(d.by, Actor::Rule(want.1.into()));
    }
    let runs: Vec<_> = p.state().runs.iter().map(|(r, _)| r.clone()).collect();
    assert_eq!(runs, vec!["generate", "relabel", "judge"]);
}

#[test]
fn unknown_model_stops_the_run_with_an_error() {
    let server = TestServer::start(script());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let d = dir.to_str().unwrap();
    init(&dir, &server);
    let out = straddle(&["generate", d, "--count", "30", "--model", "no-such-model"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-model"), "{err}");
    // Stopped at the first answer, and the usage of the run is recorded.
    assert!(server.requests() <= 16, "{}", server.requests());
    let p = Project::open_read_only(&dir).unwrap();
    assert_eq!(p.state().runs.len(), 1);
}

#[test]
fn bad_flags_are_user_errors() {
    let server = TestServer::start(script());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let d = dir.to_str().unwrap();
    init(&dir, &server);
    for args in [
        vec!["review", d],
        vec!["review", d, "--accept-agreeing", "1.5"],
        vec!["generate", d, "--count", "0"],
        vec!["generate", d, "--count", "5", "--alpha", "2"],
        vec!["generate", d, "--count", "5", "--strategy", "extrapolate"],
    ] {
        let out = straddle(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
    assert_eq!(server.requests(), 0);
}

#[test]
fn ctrl_c_stops_cleanly_with_everything_saved() {
    // Slow answers, so the run is still going when it is interrupted.
    let server = TestServer::start(script().latency(Duration::from_millis(400)));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let d = dir.to_str().unwrap();
    init(&dir, &server);
    let child = command(&["generate", d, "--count", "300", "--concurrency", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until some examples are on disk.
    let journal = dir.join("journal.jsonl");
    let start = Instant::now();
    while std::fs::read_to_string(&journal)
        .unwrap_or_default()
        .matches("\"origin\":\"generated\"")
        .count()
        < 3
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no examples arrived"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("interrupted, everything so far is saved"),
        "{stdout}"
    );

    let p = Project::open_read_only(&dir).unwrap();
    assert!(p.load_report().skipped.is_empty());
    let st = p.state();
    let n = st.generated().count();
    assert!((3..300).contains(&n), "{n}");
    // The run's usage is recorded, and nothing was recorded as failed
    // because of the cancel.
    assert_eq!(st.runs.len(), 1);
    assert!(st.failures.is_empty());
}
