//! Issue 10, hardening: one test (at least) per item, each failing on the
//! code before it. Items are numbered as in the issue:
//! 1 secrets, 2 unbounded replies, 3 misread rows, 4 failure exits 0,
//! 5 terminal escapes / CSV formulas, 6 the lock, 7 config values,
//! 8 atomic multi-event appends, 9 the smaller ones, 10 import memory
//! (measured by hand, see the report; the streaming is tested here).
//! The `kill -9` crash test is in `tests/crash.rs`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use straddle::store::{JOURNAL_FILE, Project};
use support::{Reply, Script, TestServer};

/// The key the echo tests configure (under a custom variable name that
/// does not end in `_KEY`, which the old log scrubber missed).
const KEY: &str = "hk-live-Zq8v3LrT0pWm7x";
const KEY_VAR: &str = "STRADDLE_HARDENING_CREDENTIAL";

/// Accept every generated example of the project in `dir` with the `a`
/// key; returns how many.
fn accept_every_generated(dir: &Path) -> usize {
    let mut p = Project::open(dir).unwrap();
    let kinds: Vec<_> = p
        .state()
        .generated()
        .map(|s| straddle::domain::testing::accept(s.id))
        .collect();
    let n = kinds.len();
    p.append(kinds).unwrap();
    n
}

fn straddle_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_straddle"));
    c.env("STRADDLE_DENOISE", "off");
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run straddle")
}

fn straddle(args: &[&str]) -> Output {
    straddle_env(args, &[])
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ok_out(o: Output) -> Vec<u8> {
    assert!(o.status.success(), "{}", text(&o));
    o.stdout
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

/// `init DIR --example trec6` pointing at `server`.
fn init(dir: &Path, server: &TestServer) {
    ok(straddle(&[
        "init",
        dir.to_str().unwrap(),
        "--example",
        "trec6",
        "--base-url",
        &server.base_url(),
        "--model",
        &server.backend().model,
    ]));
}

/// Change the project's config (the project must not be open elsewhere).
fn edit_config(dir: &Path, f: impl FnOnce(&mut straddle::domain::ProjectConfig)) {
    let mut p = Project::open(dir).unwrap();
    let mut cfg = p.config().clone();
    f(&mut cfg);
    p.set_config(cfg).unwrap();
}

/// Every file under `dir`, recursively, as (path, bytes).
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn journal(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join(JOURNAL_FILE))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("type").is_some())
        .collect()
}

// ---------------------------------------------------------------- 1 secrets

/// A project whose server echoes the key: in generated text (200) for
/// the first requests, in 401 error bodies after. Returns the run's output.
fn echo_key_run(dir: &Path, log: &Path) -> Output {
    let server = TestServer::start(
        Script::with_fn(|r| {
            if r.index < 2 {
                Reply::EchoKey { code: 200 }
            } else {
                Reply::EchoKey { code: 500 }
            }
        })
        .api_key(KEY),
    );
    init(dir, &server);
    edit_config(dir, |c| {
        c.backend.api_key_env = Some(KEY_VAR.into());
        c.backend.max_retries = 0;
        c.backend.max_concurrency = 1;
    });
    let out = straddle_env(
        &[
            "generate",
            dir.to_str().unwrap(),
            "--count",
            "6",
            "--per-request",
            "2",
            "--no-relabel",
        ],
        &[
            (KEY_VAR, KEY),
            ("STRADDLE_LOG_FILE", log.to_str().unwrap()),
            ("STRADDLE_LOG", "debug"),
        ],
    );
    assert!(server.requests() >= 3, "{}", text(&out));
    out
}

#[test]
fn secrets_echoed_by_the_server_reach_neither_journal_nor_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let _ = echo_key_run(&dir, &tmp.path().join("log"));
    let j = std::fs::read(dir.join(JOURNAL_FILE)).unwrap();
    assert!(!contains(&j, KEY), "key in the journal");
    assert!(
        contains(&j, "[redacted]"),
        "the echo was recorded, redacted"
    );
    let cache: Vec<_> = files(&dir.join("cache"));
    assert!(!cache.is_empty(), "answers were cached");
    for (p, b) in files(&dir) {
        assert!(!contains(&b, KEY), "key in {}", p.display());
    }
}

#[test]
fn secrets_echoed_by_the_server_reach_neither_log_nor_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let log = tmp.path().join("log");
    let out = echo_key_run(&dir, &log);
    let all = text(&out);
    assert!(!all.contains(KEY), "key printed: {all}");
    let logged = std::fs::read(&log).unwrap();
    assert!(!logged.is_empty());
    assert!(!contains(&logged, KEY), "key in the log");
}

#[test]
fn secrets_do_not_reach_exports() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let _ = echo_key_run(&dir, &tmp.path().join("log"));
    // Accept everything (by rule needs verdicts; decide by hand instead).
    assert!(accept_every_generated(&dir) > 0);
    for fmt in ["jsonl", "csv"] {
        let out = tmp.path().join(format!("out.{fmt}"));
        ok(straddle_env(
            &[
                "export",
                dir.to_str().unwrap(),
                "--format",
                fmt,
                "--out",
                out.to_str().unwrap(),
            ],
            &[(KEY_VAR, KEY)],
        ));
        let b = std::fs::read(&out).unwrap();
        assert!(contains(&b, "Your key is"), "the echo row was exported");
        assert!(!contains(&b, KEY));
    }
}

#[test]
fn doctor_does_not_print_an_echoed_key() {
    let server = TestServer::start(Script::always(Reply::EchoKey { code: 401 }));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    init(&dir, &server);
    edit_config(&dir, |c| c.backend.api_key_env = Some(KEY_VAR.into()));
    let out = straddle_env(
        &["doctor", dir.to_str().unwrap()],
        &[(KEY_VAR, "wrong-key-123456")],
    );
    let all = text(&out);
    assert!(!out.status.success());
    assert!(all.contains("Incorrect API key provided"), "{all}");
    assert!(!all.contains("wrong-key-123456"), "{all}");
}

// ------------------------------------------------------ 2 unbounded replies

#[test]
fn a_huge_reply_fails_as_too_large_and_stores_at_most_4_kib() {
    let server = TestServer::start(Script::always(Reply::Huge { bytes: 10 << 20 }));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    init(&dir, &server);
    let before = std::fs::metadata(dir.join(JOURNAL_FILE)).unwrap().len();
    let out = straddle(&["generate", dir.to_str().unwrap(), "--count", "5"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("too_large"), "{}", text(&out));
    let grown = std::fs::metadata(dir.join(JOURNAL_FILE)).unwrap().len() - before;
    assert!(grown < 200 << 10, "journal grew by {grown} bytes");
    let cache: u64 = files(&dir.join("cache"))
        .iter()
        .map(|(_, b)| b.len() as u64)
        .sum::<u64>();
    assert_eq!(cache, 0, "nothing of a too-large reply is cached");
    let failed: Vec<Value> = journal(&dir)
        .into_iter()
        .filter(|e| e["type"] == "generation_failed")
        .collect();
    assert!(!failed.is_empty());
    for f in failed {
        assert_eq!(f["data"]["reason"], "too_large", "{f}");
        // The message, a newline and at most 4 KiB of the reply.
        assert!(f["data"]["raw"].as_str().unwrap_or("").len() <= 4096 + 512);
    }
}

#[test]
fn a_reset_mid_stream_is_truncated_not_malformed() {
    let server = TestServer::start(Script::always(Reply::ResetMidStream {
        text: "1. Who built the tower".into(),
    }));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    init(&dir, &server);
    edit_config(&dir, |c| c.backend.max_retries = 0);
    let out = straddle(&["generate", dir.to_str().unwrap(), "--count", "2"]);
    assert!(!out.status.success(), "{}", text(&out));
    let reasons: Vec<String> = journal(&dir)
        .into_iter()
        .filter(|e| e["type"] == "generation_failed")
        .map(|e| e["data"]["reason"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(!reasons.is_empty());
    assert!(reasons.iter().all(|r| r == "truncated"), "{reasons:?}");
}

// ------------------------------------------------------- 3 misread rows

#[test]
fn rows_with_the_wrong_field_count_are_refused_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            "a.csv",
            "text,label\nHello there,A\nHello, how are you,A\n",
            3,
            "expected 2 fields, found 3",
        ),
        (
            "b.csv",
            "text,label\nHi,A\nbye there,B,C\n",
            3,
            "expected 2 fields, found 3",
        ),
        (
            "c.tsv",
            "text\tlabel\nfine\tA\n\"quoted\ttab\"\tA\n",
            3,
            "expected 2 fields, found 3",
        ),
        (
            "d.csv",
            "text,label\nok,A\nlonely\n",
            3,
            "expected 2 fields, found 1",
        ),
        (
            "e.jsonl",
            "{\"text\":\"a\",\"label\":\"A\"}\n{\"text\":\"b\",\"label\":true}\n",
            2,
            "must be a string",
        ),
        (
            "f.jsonl",
            "{\"text\":3,\"label\":\"A\"}\n",
            1,
            "must be a string",
        ),
        (
            "g.csv",
            "text,label\nok,A\nbad,\"B\u{1b}]0;x\u{7}\"\n",
            3,
            "printable",
        ),
        (
            "h.csv",
            "text,label\nok,A\nbad,\"two\nlines\"\n",
            3,
            "single line",
        ),
    ];
    for (name, content, line, needle) in cases {
        let f = write(tmp.path(), name, content);
        let dir = tmp.path().join(format!("p-{name}"));
        let out = straddle(&[
            "init",
            dir.to_str().unwrap(),
            "--seeds",
            f.to_str().unwrap(),
        ]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(2), "{name}: {all}");
        assert!(all.contains(&format!("{name}:{line}: ")), "{name}: {all}");
        assert!(all.contains(needle), "{name}: {all}");
        assert!(!all.contains('\u{1b}'), "{name}: raw escape printed");
        assert!(!dir.exists(), "{name}: nothing is created");
    }
}

// ------------------------------------------------- 4 failure exits non-zero

#[test]
fn generate_and_relabel_exit_non_zero_when_every_request_fails() {
    let server = TestServer::start(Script::always(Reply::status(
        503,
        r#"{"error":{"message":"overloaded"}}"#,
    )));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    init(&dir, &server);
    edit_config(&dir, |c| c.backend.max_retries = 0);
    let d = dir.to_str().unwrap();
    let out = straddle(&["generate", d, "--count", "3"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("server_error") && all.contains("look at its log"),
        "{all}"
    );
    // The run's usage agrees with its failure events.
    let stats: Value = serde_json::from_slice(&ok_out(straddle(&["stats", d, "--json"]))).unwrap();
    let failed = stats["failures_by_reason"]["server_error"]
        .as_u64()
        .unwrap();
    assert!(failed > 0);
    assert_eq!(
        stats["usage"]["failures"]["server_error"].as_u64(),
        Some(failed),
        "{stats}"
    );

    // A generated example to relabel, then relabel against the 503s.
    {
        let mut p = Project::open(&dir).unwrap();
        p.add_samples(vec![straddle::domain::NewSample {
            text: "Who wrote the song?".into(),
            label: "HUM".into(),
            origin: straddle::domain::Origin::Generated,
            provenance: Default::default(),
        }])
        .unwrap();
    }
    let out = straddle(&["relabel", d]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("1 requests failed"), "{all}");
    assert!(all.contains("no progress"), "{all}");
}

#[test]
fn the_circuit_breaker_stops_a_hanging_server() {
    let server = TestServer::start(Script::always(Reply::Hang));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    init(&dir, &server);
    edit_config(&dir, |c| {
        c.backend.timeout_s = 0.2;
        c.backend.max_retries = 50;
    });
    let t0 = std::time::Instant::now();
    let out = straddle(&["generate", dir.to_str().unwrap(), "--count", "5"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("circuit breaker") && all.contains("timeout"),
        "{all}"
    );
    // 50 retries of 0.2 s each for every request would take far longer.
    assert!(t0.elapsed().as_secs() < 60, "{:?}", t0.elapsed());
    assert!(server.requests() < 40, "{} requests", server.requests());
}

// ------------------------------------------- 5 terminal escapes, CSV formulas

#[test]
fn cli_output_escapes_terminal_controls() {
    let server = TestServer::start(Script::always(Reply::text(
        "1. A question \u{1b}]0;pwned\u{7} here?\n2. =SUM(A1:A9) is how much money in total?",
    )));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    init(&dir, &server);
    let d = dir.to_str().unwrap();
    ok(straddle(&["generate", d, "--count", "2", "--no-relabel"]));
    let prompt = straddle(&["prompt", d, "--relabel"]);
    let all = text(&prompt);
    assert!(prompt.status.success(), "{all}");
    assert!(all.contains("pwned"), "the text is shown: {all}");
    assert!(!all.contains('\u{1b}') && !all.contains('\u{7}'), "{all}");
    assert!(all.contains("\\u{1b}]0;pwned\\u{7}"), "{all}");

    // CSV export: escapes controls, neutralises formulas.
    accept_every_generated(&dir);
    let out = tmp.path().join("o.csv");
    ok(straddle(&[
        "export",
        d,
        "--format",
        "csv",
        "--out",
        out.to_str().unwrap(),
    ]));
    let csv = std::fs::read_to_string(&out).unwrap();
    assert!(!csv.contains('\u{1b}'), "{csv}");
    assert!(csv.contains("'=SUM(A1:A9)"), "{csv}");
    assert!(!csv.lines().any(|l| l.starts_with('=')), "{csv}");
}

#[test]
fn csv_safe_follows_owasp() {
    use straddle::cli::export::csv_safe;
    for (cell, want) in [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("plain", "plain"),
        ("a\u{1b}b", "a\\u{1b}b"),
    ] {
        assert_eq!(csv_safe(cell), want);
    }
}

// ------------------------------------------------------------------ 6 lock

#[test]
fn a_second_writer_is_refused_even_when_the_lock_file_was_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let seeds = write(tmp.path(), "s.csv", "text,label\nHello,A\nBye,B\n");
    ok(straddle(&[
        "init",
        dir.to_str().unwrap(),
        "--seeds",
        seeds.to_str().unwrap(),
    ]));
    let held = Project::open(&dir).unwrap();
    std::fs::remove_file(dir.join(straddle::store::LOCK_FILE)).unwrap();
    let imp = write(tmp.path(), "i.csv", "text,label\nMore,A\n");
    let out = straddle(&["import", dir.to_str().unwrap(), imp.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("in use"), "{}", text(&out));
    drop(held);
    // A stale lock (the holder is gone) never blocks.
    ok(straddle(&[
        "import",
        dir.to_str().unwrap(),
        imp.to_str().unwrap(),
    ]));
}

// ------------------------------------------------------- 7 config values

#[test]
fn config_values_that_crash_or_poison_are_refused_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let seeds = write(tmp.path(), "s.csv", "text,label\nHello,A\nBye,B\n");
    ok(straddle(&[
        "init",
        dir.to_str().unwrap(),
        "--seeds",
        seeds.to_str().unwrap(),
    ]));
    let cfg_path = dir.join("straddle.toml");
    let original = std::fs::read_to_string(&cfg_path).unwrap();
    let set = |key: &str, value: &str| -> String {
        let mut found = false;
        let text: Vec<String> = original
            .lines()
            .map(|l| {
                let t = l.trim_start().trim_start_matches("# ");
                if !found && t.starts_with(&format!("{key} =")) {
                    found = true;
                    format!("{key} = {value}")
                } else {
                    l.to_string()
                }
            })
            .collect();
        assert!(found, "{key} not in the config");
        text.join("\n") + "\n"
    };
    for (key, value) in [
        ("timeout_s", "inf"),
        ("timeout_s", "1e300"),
        ("timeout_s", "0"),
        ("timeout_s", "-1"),
        ("price_input_per_m", "nan"),
        ("price_output_per_m", "-0.5"),
        ("temperature", "nan"),
        ("temperature", "-1"),
        ("max_retries", "4294967295"),
        ("max_tokens", "0"),
    ] {
        let text_cfg = set(key, value);
        std::fs::write(&cfg_path, &text_cfg).unwrap();
        let line = text_cfg
            .lines()
            .position(|l| l == format!("{key} = {value}"))
            .unwrap()
            + 1;
        let out = straddle(&["stats", dir.to_str().unwrap()]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(2), "{key} = {value}: {all}");
        assert!(
            all.contains(&format!("straddle.toml:{line}: ")) && all.contains(key),
            "{key} = {value}: {all}"
        );
    }
}

// ------------------------------------------- 8 atomic multi-event appends

#[test]
fn a_torn_batch_is_cut_and_reported_never_applied_in_part() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let seeds = write(tmp.path(), "s.csv", "text,label\nHello,A\nBye,B\n");
    ok(straddle(&[
        "init",
        dir.to_str().unwrap(),
        "--seeds",
        seeds.to_str().unwrap(),
    ]));
    let rows: String = (0..50).map(|i| format!("row number {i},A\n")).collect();
    let imp = write(tmp.path(), "i.csv", &format!("text,label\n{rows}"));
    ok(straddle(&[
        "import",
        dir.to_str().unwrap(),
        imp.to_str().unwrap(),
    ]));
    let jpath = dir.join(JOURNAL_FILE);
    let full = std::fs::read(&jpath).unwrap();
    let n_before = {
        let p = Project::open_read_only(&dir).unwrap();
        p.state().samples.len()
    };
    assert_eq!(n_before, 52);
    // Cut the import's batch at every line boundary and mid-line: only
    // the seeds may remain.
    let header = full
        .windows(10)
        .rposition(|w| w == b"{\"batch\":5")
        .expect("the import is one batch");
    let mut cuts: Vec<usize> = full[header..]
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| header + i + 1)
        .collect();
    cuts.pop(); // the complete file
    cuts.extend([header + 3, full.len() - 7]);
    for cut in cuts {
        std::fs::write(&jpath, &full[..cut]).unwrap();
        let ro = Project::open_read_only(&dir).unwrap();
        assert_eq!(
            ro.state().samples.len(),
            2,
            "cut at {cut}: partial batch applied"
        );
        drop(ro);
        // Open for writing in another process (no in-process lock races
        // with the forks of parallel tests): it reports and cuts the batch.
        let out = straddle(&["review", dir.to_str().unwrap(), "--accept-agreeing", "0.9"]);
        let all = text(&out);
        assert!(out.status.success(), "{all}");
        assert!(all.contains("torn"), "cut at {cut}: {all}");
        assert!(
            all.contains("journal.torn-"),
            "the bytes are kept aside: {all}"
        );
        assert_eq!(std::fs::read(&jpath).unwrap(), full[..header].to_vec());
    }
}

// ---------------------------------------------------------- 9 the smaller

#[test]
fn a_missing_journal_is_an_error_not_an_empty_project() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let seeds = write(tmp.path(), "s.csv", "text,label\nHello,A\nBye,B\n");
    ok(straddle(&[
        "init",
        dir.to_str().unwrap(),
        "--seeds",
        seeds.to_str().unwrap(),
    ]));
    std::fs::remove_file(dir.join(JOURNAL_FILE)).unwrap();
    for args in [vec!["stats"], vec!["import", "x.csv"]] {
        let mut a = vec![args[0], dir.to_str().unwrap()];
        a.extend(&args[1..]);
        let out = straddle(&a);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            text(&out).contains("journal.jsonl is missing"),
            "{}",
            text(&out)
        );
    }
    assert!(
        !dir.join(JOURNAL_FILE).exists(),
        "no empty journal is created"
    );
}

#[test]
fn init_reports_duplicate_and_conflicting_seeds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let seeds = write(
        tmp.path(),
        "s.csv",
        "text,label\nHello,A\nBye,B\nHello,A\nBye,A\n",
    );
    let out = straddle(&[
        "init",
        dir.to_str().unwrap(),
        "--seeds",
        seeds.to_str().unwrap(),
    ]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("s.csv:4: 1 exact duplicate"), "{all}");
    assert!(
        all.contains("s.csv:5: 1 text labelled differently"),
        "{all}"
    );
    let p = Project::open_read_only(&dir).unwrap();
    assert_eq!(p.state().samples.len(), 3);
}

#[test]
fn held_out_texts_that_are_seeds_are_not_imported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let seeds = write(tmp.path(), "s.csv", "text,label\nHello,A\nBye,B\n");
    ok(straddle(&[
        "init",
        dir.to_str().unwrap(),
        "--seeds",
        seeds.to_str().unwrap(),
    ]));
    let val = write(
        tmp.path(),
        "v.csv",
        "text,label\nNew one,A\nHello,A\nBye,A\n",
    );
    let out = straddle(&[
        "import",
        dir.to_str().unwrap(),
        val.to_str().unwrap(),
        "--as",
        "validation",
    ]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("2 rows of") && all.contains("leakage"),
        "{all}"
    );
    assert!(all.contains("v.csv:3"), "{all}");
    assert!(all.contains("Imported 1 validation example"), "{all}");
}

#[test]
fn killed_runs_still_count_their_usage() {
    // Usage rides with each append: the events of a run are followed by
    // its usage before the run ends.
    let server = TestServer::start(Script::text("1. Who is it?\n2. Where is it?"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    init(&dir, &server);
    ok(straddle(&[
        "generate",
        dir.to_str().unwrap(),
        "--count",
        "4",
        "--per-request",
        "1",
        "--no-relabel",
    ]));
    let events = journal(&dir);
    let last_sample = events
        .iter()
        .rposition(|e| e["type"] == "sample_added")
        .unwrap();
    let usage_with_samples: u64 = events[..last_sample]
        .iter()
        .filter(|e| e["type"] == "usage_recorded")
        .map(|e| e["data"]["usage"]["requests"].as_u64().unwrap_or(0))
        .sum();
    assert!(usage_with_samples >= 1, "usage recorded only at the end");
    let total: u64 = events
        .iter()
        .filter(|e| e["type"] == "usage_recorded")
        .map(|e| e["data"]["usage"]["requests"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        total as usize,
        server.requests(),
        "every request counted once"
    );
}

#[test]
fn export_to_an_existing_folder_is_a_user_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let seeds = write(tmp.path(), "s.csv", "text,label\nHello,A\nBye,B\n");
    ok(straddle(&[
        "init",
        dir.to_str().unwrap(),
        "--seeds",
        seeds.to_str().unwrap(),
    ]));
    let out = straddle(&[
        "export",
        dir.to_str().unwrap(),
        "--format",
        "jsonl",
        "--out",
        tmp.path().to_str().unwrap(),
        "--include-seeds",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    ok(straddle(&[
        "init",
        dir.to_str().unwrap(),
        "--example",
        "trec6",
    ]));
    let mut child = Command::new(env!("CARGO_BIN_EXE_straddle"))
        .env("STRADDLE_DENOISE", "off")
        .args(["eval", dir.to_str().unwrap(), "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader went away (`| head -0`)
    let out = child.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(101), "{}", text(&out));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

// ------------------------------------------------- 10 import streams rows

#[test]
fn import_streams_a_big_file_as_one_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let seeds = write(tmp.path(), "s.csv", "text,label\nHello,A\nBye,B\n");
    ok(straddle(&[
        "init",
        dir.to_str().unwrap(),
        "--seeds",
        seeds.to_str().unwrap(),
    ]));
    let rows: String = (0..20_000)
        .map(|i| {
            format!(
                "example text number {i} for the import,{}\n",
                ["A", "B"][i % 2]
            )
        })
        .collect();
    let imp = write(tmp.path(), "big.csv", &format!("text,label\n{rows}"));
    let out = ok(straddle(&[
        "import",
        dir.to_str().unwrap(),
        imp.to_str().unwrap(),
    ]));
    assert!(out.contains("Imported 20000 seed examples"), "{out}");
    let j = std::fs::read_to_string(dir.join(JOURNAL_FILE)).unwrap();
    assert_eq!(j.matches("{\"batch\":20000}").count(), 1);
    let p = Project::open_read_only(&dir).unwrap();
    assert_eq!(p.state().samples.len(), 20_002);
    let last = p.state().samples.last().unwrap();
    assert_eq!(last.id, 20_002);
    assert_eq!(
        &*last.original_text,
        "example text number 19999 for the import"
    );
}

#[test]
fn the_dataset_card_table_survives_pipes_and_newlines() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let seeds = write(tmp.path(), "s.csv", "text,label\nHello,A|B\nBye,C\n");
    let descs = write(
        tmp.path(),
        "d.csv",
        "label,description\nA|B,\"pipes | and\nnewlines\"\nC,plain\n",
    );
    ok(straddle(&[
        "init",
        dir.to_str().unwrap(),
        "--seeds",
        seeds.to_str().unwrap(),
        "--descriptions",
        descs.to_str().unwrap(),
    ]));
    let out = tmp.path().join("hf");
    ok(straddle(&[
        "export",
        dir.to_str().unwrap(),
        "--format",
        "hf",
        "--out",
        out.to_str().unwrap(),
        "--include-seeds",
    ]));
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    let table: Vec<&str> = card
        .lines()
        .skip_while(|l| !l.starts_with("| class |"))
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert_eq!(table.len(), 5, "header, rule, two classes, total:\n{card}");
    for row in &table {
        let cells = row.replace("\\|", "").matches('|').count();
        assert_eq!(cells, 8, "{row}");
    }
    assert!(card.contains("A\\|B"), "{card}");
}
