//! The request window of `straddle generate` is the effective concurrency
//! (the `--concurrency` flag included), against a zero-latency server;
//! with adaptive concurrency on, it is the engine's limit when lower (a
//! one-slot server gets one or two requests at a time).

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Reply, Script, TestServer};

/// A made-up word for `n` (4096 of them), so texts differ in most words
/// and dedup keeps them all.
fn word(n: u64) -> String {
    const S: [&str; 16] = [
        "ka", "lo", "mi", "nu", "pe", "ra", "si", "tu", "vo", "ze", "bri", "dra", "fle", "gro",
        "ple", "stu",
    ];
    let n = n % 4096;
    format!(
        "{}{}{}",
        S[(n % 16) as usize],
        S[(n / 16 % 16) as usize],
        S[(n / 256) as usize]
    )
}

/// Five fresh questions for every request (relabel is off).
fn script() -> Script {
    Script::with_fn(|r| {
        let mut x = (r.index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word(x)
        };
        let lines: Vec<String> = (1..=5)
            .map(|k| {
                let w: Vec<String> = (0..6).map(|_| next()).collect();
                format!(
                    "{k}. Who {} the {} of {}?",
                    w[..2].join(" "),
                    w[2..4].join(" "),
                    w[4..].join(" ")
                )
            })
            .collect();
        Reply::text(lines.join("\n"))
    })
}

fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_straddle"))
        .env("STRADDLE_DENOISE", "off")
        .args(args)
        .output()
        .expect("run straddle");
    assert!(
        out.status.success(),
        "straddle {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `init` a trec6 project in `dir` for `server`, with `backend` lines
/// replaced (e.g. `("adaptive = true", "adaptive = false")`).
fn init(dir: &std::path::Path, server: &TestServer, replace: &[(&str, &str)]) {
    let d = dir.to_str().unwrap();
    run(&[
        "init",
        d,
        "--example",
        "trec6",
        "--base-url",
        &server.base_url(),
        "--model",
        support::MODEL,
    ]);
    let toml = dir.join("straddle.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    for (from, to) in replace {
        assert!(text.contains(from), "{from} not in straddle.toml");
        text = text.replace(from, to);
    }
    std::fs::write(&toml, text).unwrap();
}

#[test]
fn generate_keeps_the_flags_concurrency_in_flight() {
    // Requests are held until 64 are in flight together (or 20 s pass),
    // then answered at once: the server sees 64 concurrent requests only
    // if the client keeps 64 in flight. The project's own
    // `max_concurrency` stays below the flag. A server that answers
    // nothing until 64 wait cannot be probed by a limit that starts at
    // one: this is the fixed window (`adaptive = false`).
    let server = TestServer::start(script().hold_until_in_flight(64, Duration::from_secs(20)));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let d = dir.to_str().unwrap();
    init(&dir, &server, &[("adaptive = true", "adaptive = false")]);
    let p = straddle::store::Project::open_read_only(&dir).unwrap();
    assert!(p.config().backend.max_concurrency < 64);
    drop(p);
    let out = run(&[
        "generate",
        d,
        "--count",
        "10000",
        "--no-relabel",
        "--concurrency",
        "64",
    ]);
    assert!(out.contains("10000 examples added"), "{out}");
    assert_eq!(server.max_in_flight(), 64, "{out}");
    // 10000 examples at 5 per request, none planned ahead of need.
    assert_eq!(server.requests(), 2000);
}

#[test]
fn generate_follows_the_adaptive_limit_on_a_one_slot_server() {
    // 200 ms per request, one at a time, a 1 s timeout: a window of 8
    // would queue 8 there and time out the last ones (see
    // tests/adaptive.rs for that control). 40 requests of 5 examples.
    let server = TestServer::start(script().latency(Duration::from_millis(200)).one_at_a_time());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    init(&dir, &server, &[("timeout_s = 120.0", "timeout_s = 1.0")]);
    let d = dir.to_str().unwrap();
    let out = run(&[
        "generate",
        d,
        "--count",
        "200",
        "--no-relabel",
        "--concurrency",
        "8",
    ]);
    assert!(out.contains("200 examples added"), "{out}");
    assert!(out.contains(", 0 requests failed"), "{out}");
    assert_eq!(server.requests(), 40, "no retries: {out}");
    assert!(server.max_in_flight() <= 3, "{}", server.max_in_flight());
}
