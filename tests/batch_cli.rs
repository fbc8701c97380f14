//! `straddle batch` on the command line against the test server's Batch
//! API. A test binary of its own: spawning processes while other tests of
//! the same binary hold project locks could leak a lock descriptor into
//! the child between fork and exec.

mod support;

use std::path::Path;

use straddle::store::Project;
use support::{Script, TestServer};

use support::batch_fixture::{project, reply_for};

fn generated(dir: &Path) -> Vec<straddle::domain::SampleState> {
    let p = Project::open_read_only(dir).unwrap();
    p.state().generated().cloned().collect()
}

fn straddle(args: &[&str]) -> (bool, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_straddle"))
        .env("STRADDLE_DENOISE", "off")
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
