//! End to end in tmux (issue 17): the export dialog runs the data gate
//! `straddle export` runs as it opens and shows its verdict before Enter;
//! with strict on, a gate that says the accepted data makes the held-out
//! score worse refuses the export, as `export --strict` does.
//!
//! No LLM and no embedder: the gate uses the n-gram model. Waiting is on
//! what the screen shows, never a sleep.

mod support;

use support::cli::{bin, straddle};
use support::project::{accept, create, sample, topics_config};
use support::tmux::Tmux;

use straddle::domain::{EmbeddingBackend, Origin};

#[test]
fn export_dialog_shows_the_gate_and_strict_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("proj");
    let mut config = topics_config(&["sport", "food"]);
    config.embeddings.backend = EmbeddingBackend::None;
    // Seeds, 80 accepted generated examples with the labels swapped, and
    // 120 held-out examples: the accepted data makes the score worse.
    let sport = ["goal", "match", "team", "score", "league", "coach"];
    let food = ["soup", "bread", "pasta", "cheese", "salad", "sauce"];
    let mut rows = Vec::new();
    for i in 0..3 {
        rows.push(sample(
            &format!("the {} and the {}", sport[i], sport[i + 1]),
            "sport",
            Origin::Seed,
        ));
        rows.push(sample(
            &format!("the {} and the {}", food[i], food[i + 1]),
            "food",
            Origin::Seed,
        ));
    }
    for i in 0..40 {
        rows.push(sample(
            &format!("a {} a {} {i}", sport[i % 6], sport[(i + 2) % 6]),
            "food",
            Origin::Generated,
        ));
        rows.push(sample(
            &format!("a {} a {} {i}", food[i % 6], food[(i + 2) % 6]),
            "sport",
            Origin::Generated,
        ));
    }
    for i in 0..60 {
        rows.push(sample(
            &format!("one {} with {}", sport[i % 6], sport[(i + 1) % 6]),
            "sport",
            Origin::Validation,
        ));
        rows.push(sample(
            &format!("one {} with {}", food[i % 6], food[(i + 1) % 6]),
            "food",
            Origin::Validation,
        ));
    }
    let mut project = create(&dir, config, rows);
    project.append((7..=86).map(accept).collect()).unwrap();
    drop(project);
    // The CLI's gate on the same project: --strict refuses.
    let cli_out = tmp.path().join("cli.jsonl");
    let cli = straddle(&[
        "export",
        dir.to_str().unwrap(),
        "--out",
        cli_out.to_str().unwrap(),
        "--strict",
    ]);
    assert!(!cli.status.success());
    let err = String::from_utf8_lossy(&cli.stderr);
    assert!(
        err.contains("WORSE") && err.contains("--strict refuses"),
        "{err}"
    );
    assert!(!cli_out.exists());

    let tmux = Tmux::start(
        &format!(
            "STRADDLE_CONFIG='{}' '{}' tui '{}'",
            tmp.path().join("no-config.toml").display(),
            bin(),
            dir.display()
        ),
        120,
        40,
    );
    tmux.wait_for("the app", |s| s.contains("straddle") && s.contains("idle"));
    // The judges are measured as the app opens, off the UI task (no
    // embedder here: nothing to measure, and the detail says how).
    tmux.wait_for("the judges' measure", |s| {
        s.contains("judges: no judge was measured") && !s.contains("measuring judges…")
    });
    tmux.keys("E");
    // The verdict shows in the dialog before anything is exported.
    let s = tmux.wait_for("the data gate in the export dialog", |s| {
        s.contains("validation share") && s.contains("WORSE")
    });
    assert!(s.contains("lost most (F1)"), "{s}");
    assert!(!dir.join("exports").exists(), "nothing exported yet");
    // strict on (the last field), then Enter: refused, the dialog stays.
    for _ in 0..6 {
        tmux.key("Down");
    }
    tmux.key("Space");
    tmux.wait_for("strict on", |s| s.contains("Enter refuses"));
    tmux.key("Enter");
    let s = tmux.wait_for("the refusal", |s| s.contains("export refused"));
    assert!(
        s.contains("validation share"),
        "the dialog stays open:\n{s}"
    );
    assert!(!dir.join("exports").exists(), "a strict export was written");
    // strict off: Enter exports anyway.
    tmux.key("Space");
    tmux.wait_for("strict off", |s| !s.contains("Enter refuses"));
    tmux.key("Enter");
    tmux.wait_for("the export message", |s| {
        s.contains("Exported") && s.contains("data.jsonl")
    });
    assert!(dir.join("exports").join("data.jsonl").is_file());
    tmux.keys("q");
    tmux.wait_exit();
}
