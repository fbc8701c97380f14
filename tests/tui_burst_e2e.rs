//! End to end (issue 15): decisions typed faster than one fsync each, on
//! the real binary in tmux. A burst of decision keys goes in with one
//! `send-keys`; the moment the screen shows decisions done, the process
//! is killed with SIGKILL; reopened, the journal holds at least every
//! decision the screen showed, and the project opens clean.
//!
//! Waiting is always on a condition seen on screen (polled with a bounded
//! deadline), never a sleep standing in for synchronisation.

mod support;

use std::path::Path;

use straddle::domain::{DecisionKind, Event, EventKind, NewSample, Origin, Provenance, Status};
use straddle::store::Project;
use support::cli::{bin, init_example};
use support::tmux::Tmux;

/// "✓A ✗R ·P" from the status line.
fn decided(screen: &str) -> Option<(u64, u64, u64)> {
    let line = screen.lines().rev().find(|l| l.contains(" · ✓"))?;
    let rest = line.split(" · ✓").nth(1)?;
    let mut it = rest.split_whitespace();
    let a = it.next()?.parse().ok()?;
    let r = it.next()?.trim_start_matches('✗').parse().ok()?;
    let p = it.next()?.trim_start_matches('·').parse().ok()?;
    Some((a, r, p))
}

fn counts(dir: &Path) -> (u64, u64) {
    let p = Project::open(dir).expect("the journal opens after kill -9");
    let of = |st: Status| {
        p.state()
            .samples
            .iter()
            .filter(|s| s.status() == st && !s.decisions.is_empty())
            .count() as u64
    };
    (of(Status::Accepted), of(Status::Rejected))
}

#[test]
fn a_burst_of_decisions_survives_kill_9_as_shown() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("proj");
    let d = dir.to_str().unwrap();
    // No request is made: the backend is never started.
    init_example(&dir, "trec6", "http://127.0.0.1:9/v1", None);
    // 1,200 generated examples waiting for review.
    let labels = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"];
    let pool = (0..1200)
        .map(|i| NewSample {
            text: format!("Which river number {i} runs past the old mill?"),
            label: labels[i % 6].into(),
            origin: Origin::Generated,
            provenance: Provenance::default(),
        })
        .collect();
    Project::open(&dir).unwrap().add_samples(pool).unwrap();
    let (a0, r0) = counts(&dir);

    // `exec`: the pane's process is straddle itself, to be killed.
    let tmux = Tmux::start(
        &format!(
            "STRADDLE_CONFIG='{}' exec '{}' tui '{}'",
            tmp.path().join("no-config.toml").display(),
            bin(),
            d
        ),
        120,
        40,
    );
    let first = tmux.wait_for("the review list", |s| {
        s.contains("idle") && decided(s).is_some_and(|c| c.2 > 0)
    });
    let (sa, sr, _) = decided(&first).unwrap();
    let pid = String::from_utf8(
        tmux.cmd()
            .args(["display-message", "-p", "-t", "app", "#{pane_pid}"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let pid = pid.trim().to_string();

    // 1,000 decision keys (accept, reject) in 20 quick sends, as a paste
    // or a replayed macro delivers them; the process is killed the moment
    // the screen shows any decision, while keys are still coming.
    let keys: String = "aaxaaxaaaxaxaaaaxaax".repeat(50);
    let shown = std::thread::scope(|scope| {
        scope.spawn(|| {
            for chunk in keys.as_bytes().chunks(50) {
                // Fails once the app is gone: that is the point.
                let _ = tmux
                    .cmd()
                    .args(["send-keys", "-t", "app", "-l"])
                    .arg(std::str::from_utf8(chunk).unwrap())
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        });
        let shown = tmux.wait_for("decisions on screen", |s| {
            decided(s).is_some_and(|(a, r, _)| a + r > sa + sr)
        });
        let kill = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap();
        assert!(kill.success());
        shown
    });
    tmux.wait_exit();
    let (a, r, _) = decided(&shown).unwrap();
    let (a_new, r_new) = (a - sa, r - sr);
    assert!(a_new + r_new > 0);

    // Every decision the screen showed is in the journal (more may be:
    // those committed after the screen was read).
    let (ja, jr) = counts(&dir);
    assert!(
        ja - a0 >= a_new && jr - r0 >= r_new,
        "shown ✓{a_new} ✗{r_new}, journal ✓{} ✗{}:\n{shown}",
        ja - a0,
        jr - r0
    );
    // Only whole decisions: the keys' order, nothing torn.
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    assert!(journal.ends_with('\n'));
    let decisions: Vec<DecisionKind> = journal
        .lines()
        .filter_map(|l| Event::from_json_line(l).ok())
        .filter_map(|e| match e.kind {
            EventKind::Decided(d) => Some(d.decision.kind),
            _ => None,
        })
        .collect();
    assert_eq!(decisions.len() as u64, (ja - a0) + (jr - r0));
    for (i, kind) in decisions.iter().enumerate() {
        let want = match keys.as_bytes()[i] {
            b'a' => DecisionKind::Accept,
            _ => DecisionKind::Reject,
        };
        assert_eq!(*kind, want, "decision {i}");
    }
    eprintln!(
        "shown ✓{a_new} ✗{r_new} when killed; journal ✓{} ✗{}",
        ja - a0,
        jr - r0
    );
}
