//! End to end: the real `straddle` binary in tmux against the local test
//! LLM server. Open a project, start generation, wait until the review
//! queue is full and relabelled, accept two, reject one, undo one, quit;
//! then `straddle stats --json` must show exactly those decisions.
//!
//! Waiting is always on a condition seen on screen (polled with a bounded
//! deadline), never a sleep standing in for synchronisation.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use support::cli::{bin, edit_config, free_port, init_example, ok, section, straddle};
use support::tmux::Tmux;
use support::{Reply, Script, TestServer};

/// Replies: a numbered list of distinct questions for generation prompts,
/// a JSON label for relabel prompts.
fn script() -> Script {
    let counter = AtomicUsize::new(0);
    const WORDS: &[&str] = &[
        "amber", "harbor", "violin", "glacier", "orchard", "lantern", "meteor", "canyon",
        "saffron", "tundra", "quartz", "falcon", "marble", "prairie", "cobalt", "willow",
    ];
    Script::with_fn(move |req| {
        let prompt = req.last_message();
        if prompt.contains("Classify the text") {
            return Reply::text(r#"{"label": "LOC"}"#);
        }
        let n = prompt
            .split("Write ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(3);
        let mut out = String::new();
        for i in 1..=n {
            let k = counter.fetch_add(1, Ordering::SeqCst);
            let w = |j: usize| WORDS[(k * 7 + j * 5 + k / 16) % WORDS.len()];
            out.push_str(&format!(
                "{i}. Where is the {} {} museum number {k} near the {} {}?\n",
                w(0),
                w(1),
                w(2),
                w(3)
            ));
        }
        Reply::text(out)
    })
}

fn set_generation(dir: &Path, target: usize, per_request: usize) {
    edit_config(dir, |cfg| {
        let g = section(cfg, "generation");
        g.insert("target_count".into(), (target as i64).into());
        g.insert("per_request".into(), (per_request as i64).into());
    });
}

/// `straddle tui DIR` in a 120×40 tmux, against `url` when given, with
/// no user config; waits for the first screen.
fn open_tui(tmp: &Path, dir: &Path, url: Option<&str>) -> Tmux {
    let backend = url
        .map(|u| format!(" --base-url '{u}' --no-cache"))
        .unwrap_or_default();
    let tmux = Tmux::start(
        &format!(
            "STRADDLE_CONFIG='{}' '{}' tui '{}'{backend}",
            tmp.join("no-config.toml").display(),
            bin(),
            dir.display()
        ),
        120,
        40,
    );
    tmux.wait_for("the app", |s| s.contains("straddle") && s.contains("idle"));
    tmux
}

/// "N gen · ✓A ✗R ·P" from the status line.
fn counts(screen: &str) -> Option<(u64, u64, u64, u64)> {
    let line = screen.lines().rev().find(|l| l.contains(" gen · ✓"))?;
    let rest = line.split(" gen · ✓").collect::<Vec<_>>();
    let n = rest[0].split_whitespace().last()?.parse().ok()?;
    let mut it = rest[1].split_whitespace();
    let a = it.next()?.parse().ok()?;
    let r = it.next()?.trim_start_matches('✗').parse().ok()?;
    let p = it.next()?.trim_start_matches('·').parse().ok()?;
    Some((n, a, r, p))
}

/// A review row without a verdict yet: its llm column shows "…".
fn unrelabelled_row(screen: &str) -> bool {
    screen.lines().flat_map(|l| l.split('┃')).any(|cell| {
        let mut it = cell.split_whitespace();
        matches!(it.next(), Some("·" | "✓" | "✗")) && it.nth(1) == Some("…")
    })
}

#[test]
fn review_session_in_tmux() {
    let row = "│1 ABBR  1.0 │┃· ENTY …         .   What about┃│";
    assert!(unrelabelled_row(row) && !unrelabelled_row(&row.replace('…', "HUM")));
    let server = TestServer::start(script());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("proj");
    let d = dir.to_str().unwrap();
    let url = server.base_url();
    init_example(&dir, "trec6", &url, Some(&server.backend().model));
    set_generation(&dir, 6, 3);
    let tmux = open_tui(tmp.path(), &dir, Some(&url));
    tmux.keys("g");
    let screen = tmux.wait_for("6 relabelled examples and an idle engine", |s| {
        counts(s).is_some_and(|(n, ..)| n >= 6) && s.contains("idle") && !unrelabelled_row(s)
    });
    let (n, a0, r0, _) = counts(&screen).unwrap();
    assert_eq!((a0, r0), (0, 0), "nothing decided yet:\n{screen}");

    tmux.keys("a");
    tmux.wait_for("one accepted", |s| counts(s).is_some_and(|c| c.1 == 1));
    // The engine went idle before that key, and the journal writer works in
    // order: the session's usage is on disk already, not only at quit.
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    let usage_lines = |j: &str| {
        j.lines()
            .filter(|l| l.contains("\"type\":\"usage_recorded\"") && l.contains("\"run\":\"tui\""))
            .count()
    };
    assert_eq!(
        usage_lines(&journal),
        1,
        "usage journaled on idle:\n{journal}"
    );
    tmux.keys("a");
    tmux.wait_for("two accepted", |s| counts(s).is_some_and(|c| c.1 == 2));
    tmux.keys("x");
    tmux.wait_for("one rejected", |s| counts(s).is_some_and(|c| c.2 == 1));
    tmux.keys("u");
    tmux.wait_for("the reject undone", |s| {
        counts(s).is_some_and(|c| (c.1, c.2) == (2, 0))
    });
    // Export from the TUI with the dialog's defaults; the path is shown.
    tmux.keys("E");
    tmux.wait_for("the export dialog", |s| s.contains("validation share"));
    tmux.key("Enter");
    let out = dir.join("exports").join("data.jsonl");
    tmux.wait_for("the export message", |s| {
        s.contains("Exported") && s.contains("data.jsonl")
    });
    let rows: usize = ["data.jsonl", "data.validation.jsonl"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(dir.join("exports").join(f)).ok())
        .map(|t| t.lines().count())
        .sum();
    assert!(out.is_file());
    assert_eq!(rows, 2, "the two accepted examples are exported");

    tmux.keys("q");
    tmux.wait_exit();

    let stats: serde_json::Value =
        serde_json::from_str(&ok(&straddle(&["stats", d, "--json"]))).unwrap();
    let t = &stats["totals"];
    assert_eq!(t["accepted"], 2, "{stats:#}");
    assert_eq!(t["rejected"], 0, "{stats:#}");
    assert_eq!(t["pending"].as_u64().unwrap(), n - 2, "{stats:#}");
    // Every request counted once: the idle record plus nothing new at quit.
    assert_eq!(
        stats["usage"]["requests"].as_u64().unwrap(),
        server.requests() as u64,
        "{stats:#}"
    );

    // The journal holds exactly three key decisions and one undo.
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    let of = |ty: &str| {
        journal
            .lines()
            .filter(|l| l.contains(&format!("\"type\":\"{ty}\"")))
            .count()
    };
    assert_eq!(of("decided"), 3);
    assert_eq!(of("undone"), 1);
    assert_eq!(usage_lines(&journal), 1, "no empty usage record at quit");
}

/// `u` is about the person (issue 12): accept one example, then let
/// generation reject word-for-word copies of a seed on its own; `u` takes
/// back the accept, says so, and leaves the duplicates rejected.
#[test]
fn undo_takes_back_the_persons_accept_not_the_pipelines_duplicates() {
    let counter = AtomicUsize::new(0);
    // Every generation reply holds a seed question verbatim (dedup
    // rejects it) between distinct questions; relabels say LOC.
    let server = TestServer::start(Script::with_fn(move |req| {
        let prompt = req.last_message();
        if prompt.contains("Classify the text") {
            return Reply::text(r#"{"label": "LOC"}"#);
        }
        // Distinct enough that near-duplicate detection keeps them, so
        // the run reaches its target instead of the fruitless guard.
        const W: [&str; 12] = [
            "amber", "granite", "willow", "harbour", "copper", "meadow", "falcon", "glacier",
            "lantern", "orchard", "saffron", "thunder",
        ];
        // The seed copy comes second: a request that asks for one example
        // (the last before the target) gets a new one.
        let mut out = String::new();
        for i in 1..=3 {
            if i == 2 {
                out.push_str("2. What does NASA stand for?\n");
                continue;
            }
            let k = counter.fetch_add(1, Ordering::SeqCst);
            let (a, b, c) = (W[k % 12], W[(k / 12 + 5) % 12], W[(k * 7 + 3) % 12]);
            out.push_str(&format!(
                "{i}. Which {a} river flows past the {b} {c} town of {k}?\n"
            ));
        }
        Reply::text(out)
    }));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("proj");
    let d = dir.to_str().unwrap();
    let url = server.base_url();
    init_example(&dir, "trec6", &url, Some(&server.backend().model));
    // Examples to review before the app opens.
    ok(&straddle(&["generate", d, "--count", "3", "--no-cache"]));
    set_generation(&dir, 12, 3);
    let tmux = open_tui(tmp.path(), &dir, Some(&url));
    let (_, a0, r0, _) = counts(&tmux.screen()).expect("counts on the status line");
    assert_eq!(a0, 0);
    tmux.keys("a");
    tmux.wait_for("one accepted", |s| counts(s).is_some_and(|c| c.1 == 1));
    // Generation now rejects more duplicates, after the person's accept.
    tmux.keys("g");
    let screen = tmux.wait_for("new duplicates rejected and an idle engine", |s| {
        counts(s).is_some_and(|c| c.2 > r0) && s.contains("idle")
    });
    let (_, _, r1, _) = counts(&screen).unwrap();
    tmux.keys("u");
    let screen = tmux.wait_for("the accept undone", |s| counts(s).is_some_and(|c| c.1 == 0));
    assert_eq!(
        counts(&screen).unwrap().2,
        r1,
        "duplicates stay rejected:\n{screen}"
    );
    assert!(screen.contains("undid accept of #"), "{screen}");
}

/// Issue 12 item 7: the target is a goal, not a wall. Reaching it says
/// how to go on; `+` on the Controls pane's target (selected at once)
/// raises it and generation carries on to the new one; `g` then
/// continues past it until `g` pauses.
#[test]
fn the_target_is_a_goal_in_tmux() {
    let server = TestServer::start(script());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("proj");
    let url = server.base_url();
    init_example(&dir, "trec6", &url, Some(&server.backend().model));
    set_generation(&dir, 6, 3);
    let tmux = open_tui(tmp.path(), &dir, Some(&url));
    tmux.keys("g");
    let s = tmux.wait_for("the target reached, and how to go on", |s| {
        s.contains("target of 6 examples reached") && s.contains("idle")
    });
    assert!(
        s.contains("g continues past it") && s.contains("raises it"),
        "{s}"
    );
    assert_eq!(counts(&s).map(|c| c.0), Some(6), "exactly the target:\n{s}");
    // `+` on the target row: 16, and on it goes by itself.
    tmux.key("Tab");
    tmux.key("Tab");
    tmux.wait_for("focus on Controls", |s| s.contains("┏ Controls"));
    tmux.keys("+");
    let s = tmux.wait_for("the raised target reached", |s| {
        s.contains("target of 16 examples reached") && s.contains("idle")
    });
    assert_eq!(counts(&s).map(|c| c.0), Some(16), "{s}");
    assert!(
        s.contains("target       16 *"),
        "differs from straddle.toml:\n{s}"
    );
    // `g`: past the target until paused.
    tmux.keys("g");
    tmux.wait_for("more than the target", |s| {
        counts(s).is_some_and(|c| c.0 > 16)
    });
    tmux.keys("g");
    tmux.wait_for("paused", |s| s.contains("paused"));
    tmux.keys("q");
    tmux.wait_exit();
}

/// A backend that refuses connections: a clear message with the fix, and
/// the rest of the app (navigation, export) keeps working.
#[test]
fn unreachable_backend_is_reported_and_the_app_keeps_working() {
    let url = format!("http://127.0.0.1:{}/v1", free_port());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("proj");
    init_example(&dir, "trec6", &url, None);
    // No retries: the first refused connection is final.
    edit_config(&dir, |cfg| {
        section(cfg, "backend").insert("max_retries".into(), 0.into());
    });
    let tmux = open_tui(tmp.path(), &dir, None);
    tmux.keys("g");
    let s = tmux.wait_for("the unreachable message", |s| {
        s.contains("blocked") && s.contains("LLM backend unavailable")
    });
    assert!(
        s.contains("base_url"),
        "the message says how to fix it:\n{s}"
    );
    // Still responsive: move focus, open and run an export.
    tmux.key("Tab");
    tmux.wait_for("focus on Seeds", |s| s.contains("┏ Seeds"));
    tmux.keys("E");
    tmux.wait_for("the export dialog", |s| s.contains("validation share"));
    tmux.key("Enter");
    tmux.wait_for("the export's answer", |s| s.contains("nothing to export"));
    tmux.keys("q");
    tmux.wait_exit();
}

/// A server that never answers trips the generation session's circuit
/// breaker in the TUI too: generation stops with the breaker's message
/// and fix instead of retrying on (issue 10).
#[test]
fn a_hanging_server_trips_the_breaker_in_the_tui() {
    let server = TestServer::start(Script::always(Reply::Hang));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("proj");
    let d = dir.to_str().unwrap();
    let (url, model) = (server.base_url(), server.backend().model);
    let o = straddle(&[
        "init",
        d,
        "--example",
        "trec6",
        "--base-url",
        &url,
        "--model",
        &model,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let path = dir.join("straddle.toml");
    let mut cfg: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let backend = cfg["backend"].as_table_mut().unwrap();
    backend.insert("max_retries".into(), toml::Value::Integer(50));
    backend.insert("timeout_s".into(), toml::Value::Float(0.2));
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();

    let tmux = Tmux::start(
        &format!(
            "STRADDLE_CONFIG='{}' '{}' tui '{d}'",
            tmp.path().join("none.toml").display(),
            bin()
        ),
        160,
        40,
    );
    tmux.wait_for("the app", |s| s.contains("straddle") && s.contains("idle"));
    tmux.keys("g");
    tmux.wait_for("the breaker's message", |s| s.contains("circuit breaker"));
    assert!(
        server.requests() < 40,
        "{} requests: the breaker stopped the retries",
        server.requests()
    );
    tmux.keys("q");
    tmux.wait_exit();
}

/// S3 from the TUI: with the example's validation examples, `R` trains
/// and scores off the UI (the Stats pane shows round 1), records
/// `round_scored`, and the misclassified validation examples seed
/// extrapolation requests that stream through the running pipeline, get
/// relabelled and land in the review queue. (Without held-out data the key
/// says how to import it: a `tui_update` test.)
#[test]
fn s3_round_from_the_tui() {
    let server = TestServer::start(script());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("proj");
    let url = server.base_url();
    init_example(&dir, "trec6", &url, Some(&server.backend().model));
    set_generation(&dir, 0, 2);
    let tmux = open_tui(tmp.path(), &dir, Some(&url));
    tmux.keys("R");
    tmux.wait_for("round 1 in the Stats pane", |s| s.contains("│r1  0."));
    let journal = || std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    let scored: serde_json::Value = journal()
        .lines()
        .find(|l| l.contains("\"type\":\"round_scored\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .expect("a round_scored event");
    let errors = scored["data"]["errors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // A handful of seeds per class gets some validation examples wrong.
    assert!(!errors.is_empty(), "{scored}");
    // Extrapolated examples arrive, relabelled, and the engine settles.
    tmux.wait_for("extrapolated examples, relabelled", |s| {
        counts(s).is_some_and(|(n, ..)| n >= 2) && s.contains("idle") && !unrelabelled_row(s)
    });
    tmux.keys("q");
    tmux.wait_exit();

    let added: Vec<serde_json::Value> = journal()
        .lines()
        .filter(|l| l.contains("\"type\":\"sample_added\"") && l.contains("\"generated\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!added.is_empty(), "extrapolated examples were added");
    for a in &added {
        let p = &a["data"]["provenance"];
        assert_eq!(p["strategy"], "extrapolate", "{a}");
        assert_eq!(p["round"], 1, "{a}");
        assert!(errors.contains(&p["error_of"]), "{a} seeded by an error");
    }
}
