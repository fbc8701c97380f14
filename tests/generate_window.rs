//! The request window of `straddle generate` is the effective concurrency
//! (the `--concurrency` flag included), against a zero-latency server.

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

#[test]
fn generate_keeps_the_flags_concurrency_in_flight() {
    // Requests are held until 64 are in flight together (or 20 s pass),
    // then answered at once: the server sees 64 concurrent requests only
    // if the client keeps 64 in flight. The project's own
    // `max_concurrency` stays below the flag.
    let server = TestServer::start(script().hold_until_in_flight(64, Duration::from_secs(20)));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let d = dir.to_str().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_straddle"))
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
    };
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
