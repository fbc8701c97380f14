//! `kill -9` at random moments (issue 10, item 8): `import` of a big file
//! and `generate` against the test server are killed after a seeded random
//! delay, in a bounded loop. After each kill the journal must open, every
//! event acknowledged before the kill (the journal as it was, plus
//! whatever the killed run completed) must still be there unchanged, and
//! no batch may be applied in part: an import is all or nothing, and a
//! reply's events come whole.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use straddle::domain::Origin;
use straddle::store::{JOURNAL_FILE, Project};
use support::{Script, TestServer};

const ROUNDS: usize = 8;

fn run_ok(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_straddle"))
        .env("STRADDLE_DENOISE", "off")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Start `args`, kill it with SIGKILL after `delay` (if still running),
/// and reap it. Returns whether it had finished by itself.
fn kill_after(args: &[&str], delay: Duration) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_straddle"))
        .env("STRADDLE_DENOISE", "off")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay); // the random kill moment, not synchronisation
    let finished = child.try_wait().unwrap().is_some();
    let _ = child.kill(); // SIGKILL on Unix
    child.wait().unwrap();
    finished
}

/// Start `args` and kill it with SIGKILL once the journal has grown past
/// `size` (the run is writing) plus `extra`, or when it ends. The wait is
/// a bounded poll. Returns whether it had finished by itself.
fn kill_while_writing(args: &[&str], journal: &Path, size: u64, extra: Duration) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_straddle"))
        .env("STRADDLE_DENOISE", "off")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..30_000 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if std::fs::metadata(journal).map(|m| m.len()).unwrap_or(0) > size {
            std::thread::sleep(extra);
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let finished = child.try_wait().unwrap().is_some();
    let _ = child.kill();
    child.wait().unwrap();
    finished
}

/// The complete lines of the journal (each acknowledged event is one).
fn lines(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join(JOURNAL_FILE)).unwrap();
    let complete = text.rfind('\n').map_or("", |i| &text[..=i]);
    complete.lines().map(str::to_string).collect()
}

/// Open for writing (repairs a torn tail or batch) and check the
/// journal's lines before the kill are all still there, first and
/// unchanged.
fn check_prefix(dir: &Path, before: &[String]) -> Project {
    let p = Project::open(dir).expect("the journal opens after kill -9");
    let after = lines(dir);
    assert!(after.len() >= before.len(), "lines were lost");
    assert_eq!(&after[..before.len()], before, "acknowledged lines changed");
    p
}

#[test]
fn kill_9_during_import_applies_all_or_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let d = dir.to_str().unwrap();
    let seeds = tmp.path().join("s.csv");
    std::fs::write(&seeds, "text,label\nHello,A\nBye,B\n").unwrap();
    run_ok(&["init", d, "--seeds", seeds.to_str().unwrap()]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(10);
    let mut imported = 0usize;
    for round in 0..ROUNDS {
        // A fresh file per round, so each import adds all its rows.
        let rows = 20_000;
        let body: String = (0..rows)
            .map(|i| {
                format!(
                    "round {round} row {i} with some words in it,{}\n",
                    ["A", "B"][i % 2]
                )
            })
            .collect();
        let file = tmp.path().join(format!("r{round}.csv"));
        std::fs::write(&file, format!("text,label\n{body}")).unwrap();
        let before = lines(&dir);
        let jpath = dir.join(JOURNAL_FILE);
        let size = std::fs::metadata(&jpath).unwrap().len();
        let args = ["import", d, file.to_str().unwrap()];
        // Odd rounds: a random moment; even rounds: while the batch is
        // being written (the journal has started to grow).
        let delay =
            Duration::from_millis(rng.random_range(0..if round % 2 == 0 { 30 } else { 3000 }));
        let finished = if round % 2 == 0 {
            kill_while_writing(&args, &jpath, size, delay)
        } else {
            kill_after(&args, delay)
        };
        let p = check_prefix(&dir, &before);
        let n = p.state().samples.len() - 2;
        assert!(
            n == imported || n == imported + rows,
            "round {round} (killed after {delay:?}, finished: {finished}): {n} rows, \
             expected {imported} or {}",
            imported + rows
        );
        eprintln!("import round {round}: killed after {delay:?}, finished {finished}, rows {n}");
        imported = n;
        // Ids stay dense and unique.
        for (i, s) in p.state().samples.iter().enumerate() {
            assert_eq!(s.id, i as u64 + 1);
        }
    }
}

#[test]
fn kill_9_during_generate_loses_nothing_acknowledged() {
    let server = TestServer::start(
        Script::with_fn(|r| {
            let i = r.index;
            if r.last_message().contains("Text: ") {
                return support::Reply::text("{\"label\": \"HUM\"}");
            }
            support::Reply::text(format!(
                "1. Who painted picture {i} in the gallery?\n\
                 2. Where is lake {i} on the map?\n\
                 3. Who wrote song {i} for the band?"
            ))
        })
        .token_delay(Duration::from_millis(3)),
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let d = dir.to_str().unwrap();
    run_ok(&[
        "init",
        d,
        "--example",
        "trec6",
        "--base-url",
        &server.base_url(),
        "--model",
        &server.backend().model,
    ]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mut generated = 0;
    for round in 0..ROUNDS {
        let before = lines(&dir);
        let delay = Duration::from_millis(rng.random_range(50..1500));
        kill_after(
            &["generate", d, "--count", "40", "--per-request", "3"],
            delay,
        );
        let p = check_prefix(&dir, &before);
        let st = p.state();
        // Every generated sample came with its request's other events:
        // no sample without the provenance of a whole reply, ids dense.
        for (i, s) in st.samples.iter().enumerate() {
            assert_eq!(s.id, i as u64 + 1, "round {round}");
        }
        assert!(st.samples.iter().any(|s| s.origin == Origin::Seed));
        let now = st.generated().count();
        assert!(now >= generated, "round {round}: generated samples lost");
        generated = now;
        // A torn tail or batch was cut and reported, never applied.
        let r = p.load_report();
        assert!(
            r.skipped.iter().all(|s| s.reason.contains("torn")),
            "round {round}: {:?}",
            r.skipped
        );
    }
    assert!(
        generated > 0,
        "the runs were killed mid-way, not before they began"
    );
}
