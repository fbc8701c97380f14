//! The store as a library: journal recovery (property test), the project
//! lock, config errors, atomic create and the live overlays.

mod support;

use std::path::Path;

use proptest::prelude::*;
use straddle::domain::{
    Event, EventKind, NewSample, Origin, ProjectConfig, ProjectState, SampleAdded, SettingsChanged,
    WeightChanged,
};
use straddle::store::{CONFIG_FILE, JOURNAL_FILE, Project, journal, render_config};
use support::project::{accept, classes, project_config, seed};

fn config() -> ProjectConfig {
    project_config(
        "t",
        "test",
        classes(&["A", "B", "C"], |n| format!("about {n}")),
    )
}

/// Journal lines (each ending in '\n') for `n` events of mixed kinds.
fn journal_lines(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let id = i as u64 + 1;
            let kind = if i % 3 == 2 {
                accept(id - 1)
            } else {
                EventKind::SampleAdded(SampleAdded::new(
                    id,
                    NewSample {
                        text: format!("text {i} with \"quotes\", ünïcödé and a\nnewline"),
                        label: ["A", "B", "C"][i % 3].into(),
                        origin: Origin::Generated,
                        provenance: Default::default(),
                    },
                ))
            };
            let mut l = Event {
                v: 1,
                id,
                ts: 1_700_000_000_000 + id,
                kind,
            }
            .to_json_line()
            .into_bytes();
            l.push(b'\n');
            l
        })
        .collect()
}

fn make_project(dir: &Path, journal: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(CONFIG_FILE), render_config(&config())).unwrap();
    std::fs::write(dir.join(JOURNAL_FILE), journal).unwrap();
}

/// 1-based line numbers of the lines fully contained (with '\n') in `bytes`.
fn complete_lines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&c| c == b'\n').count()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Truncate at any byte and garble any lines: loading never fails, never
    /// drops a complete ungarbled line, reports exactly the bad lines, and
    /// after the write-mode open the next append lands on a clean line.
    #[test]
    fn recovery_never_drops_a_complete_line(
        n in 1usize..25,
        cut in 0.0f64..=1.0,
        garbles in prop::collection::vec((0usize..25, 0.0f64..1.0, any::<u8>()), 0..4),
    ) {
        let mut lines = journal_lines(n);
        let mut garbled = std::collections::BTreeSet::new();
        for (li, pos, byte) in garbles {
            let li = li % n;
            let line = &mut lines[li];
            let at = ((line.len() - 1) as f64 * pos) as usize;
            let byte = if byte == b'\n' { b'#' } else { byte };
            if line[at] != byte {
                line[at] = byte;
                garbled.insert(li + 1);
            }
        }
        let all: Vec<u8> = lines.concat();
        let cut = (all.len() as f64 * cut) as usize;
        let bytes = &all[..cut];
        let complete = complete_lines(bytes);
        let has_tail = cut > 0 && bytes[cut - 1] != b'\n';

        // Read-only replay.
        let mut st = ProjectState::new(true);
        let r = journal::replay(bytes, &mut st).report;
        let lines_seen = complete + usize::from(has_tail);
        prop_assert_eq!(r.events as usize + r.skipped.len(), lines_seen);
        for s in &r.skipped {
            let torn = has_tail && s.line == lines_seen;
            prop_assert!(garbled.contains(&s.line) || torn, "skipped a good line: {:?}", s);
            prop_assert!(!s.reason.is_empty());
        }

        // Write-mode open repairs, appends, and everything reloads.
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("p");
        make_project(&dir, bytes);
        let mut p = Project::open(&dir).unwrap();
        prop_assert_eq!(p.load_report().events, r.events);
        let kept_tail = p.load_report().torn_tail.as_ref().is_some_and(|t| t.saved_to.is_none());
        let before = p.load_report().events;
        p.append(vec![accept(1)]).unwrap();
        drop(p);
        let after = std::fs::read(dir.join(JOURNAL_FILE)).unwrap();
        prop_assert!(after.starts_with(&all[..bytes.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1)]),
            "complete lines must stay byte for byte");
        let p = Project::open_read_only(&dir).unwrap();
        prop_assert_eq!(p.load_report().events, before + 1);
        let skipped_after = r.skipped.len() - usize::from(has_tail && !kept_tail && r.skipped.last().is_some_and(|s| s.line == lines_seen));
        prop_assert_eq!(p.load_report().skipped.len(), skipped_after);
    }
}

#[test]
fn lock_names_the_holder_and_is_released_on_drop() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("p");
    let p = Project::create(&dir, config(), vec![seed("x", "A")]).unwrap();
    let err = Project::open(&dir).unwrap_err();
    assert_eq!(straddle::error::exit_code(&err), 2);
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    // Readers need no lock.
    let ro = Project::open_read_only(&dir).unwrap();
    assert_eq!(ro.state().samples.len(), 1);
    drop(p);
    let mut p = Project::open(&dir).unwrap();
    assert_eq!(p.add_samples(vec![seed("y", "B")]).unwrap(), vec![2]);
    let mut ro = Project::open_read_only(&dir).unwrap();
    assert!(ro.append(vec![accept(1)]).is_err());
}

#[test]
fn open_errors_are_clear_user_errors() {
    let t = tempfile::tempdir().unwrap();
    let err = Project::open(&t.path().join("missing")).unwrap_err();
    assert_eq!(straddle::error::exit_code(&err), 2);
    assert!(err.to_string().contains("does not exist"), "{err}");
    let err = Project::open(t.path()).unwrap_err();
    assert!(err.to_string().contains("no straddle.toml"), "{err}");

    let dir = t.path().join("p");
    drop(Project::create(&dir, config(), vec![]).unwrap());
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    let bad = text.replacen("temperature = 1.0", "temperature = \"hot\"", 1);
    let line = bad.lines().position(|l| l.contains("\"hot\"")).unwrap() + 1;
    std::fs::write(&path, &bad).unwrap();
    let err = Project::open(&dir).unwrap_err();
    let msg = err.to_string();
    assert_eq!(straddle::error::exit_code(&err), 2);
    assert!(msg.contains(&format!("straddle.toml:{line}: ")), "{msg}");
    let bad = text.replacen("weight = 1.0", "weight = -3.0", 1);
    std::fs::write(&path, &bad).unwrap();
    let msg = Project::open(&dir).unwrap_err().to_string();
    assert!(
        msg.contains("classes[1]") && msg.contains("weight"),
        "{msg}"
    );
}

#[test]
fn create_is_atomic_and_refuses_existing_projects() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("p");
    let mut cfg = config();
    cfg.classes[1].name = "A".into();
    let err = Project::create(&dir, cfg, vec![seed("x", "A")]).unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");
    assert!(!dir.exists());
    assert_eq!(
        std::fs::read_dir(t.path()).unwrap().count(),
        0,
        "no temp folder left"
    );
    drop(Project::create(&dir, config(), vec![seed("x", "A")]).unwrap());
    let journal_before = std::fs::read(dir.join(JOURNAL_FILE)).unwrap();
    let err = Project::create(&dir, config(), vec![]).unwrap_err();
    assert!(err.to_string().contains("already a straddle project"));
    assert_eq!(
        std::fs::read(dir.join(JOURNAL_FILE)).unwrap(),
        journal_before
    );
}

#[test]
fn appends_are_durable_ordered_and_overlay_live_settings() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("p");
    let mut p = Project::create(&dir, config(), vec![seed("a", "A"), seed("b", "B")]).unwrap();
    assert_eq!(p.add_samples(vec![seed("c", "C")]).unwrap(), vec![3]);
    let mut g = p.generation_settings();
    assert_eq!(g, config().generation);
    g.temperature = 0.3;
    let evs = p
        .append(vec![
            EventKind::SettingsChanged(SettingsChanged {
                generation: g.clone(),
            }),
            EventKind::WeightChanged(WeightChanged {
                class: "B".into(),
                weight: 2.5,
            }),
            EventKind::ConcurrencyChanged(straddle::domain::ConcurrencyChanged { concurrency: 7 }),
        ])
        .unwrap();
    assert_eq!(evs.iter().map(|e| e.id).collect::<Vec<_>>(), vec![4, 5, 6]);
    assert!(evs.iter().all(|e| e.ts > 0 && e.v == 1));
    assert_eq!(p.generation_settings().temperature, 0.3);
    assert_eq!(p.classes()[1].weight, 2.5);
    drop(p);
    // Everything is on disk: a fresh open sees the same state.
    let p = Project::open(&dir).unwrap();
    assert_eq!(p.state().samples.len(), 3);
    assert_eq!(p.generation_settings(), g);
    assert_eq!(p.classes()[1].weight, 2.5);
    assert_eq!(
        p.state().concurrency,
        Some(7),
        "the app's concurrency is kept"
    );
    assert_eq!(p.state().last_event_id, 6);
    assert_eq!(p.load_report().events, 6);
}

/// A `take_relabel` the person switched live (journaled) survives a config
/// write, in memory as after a reopen; the config's value is what is shown
/// beside it. Before, `set_config` put the config's value in force until
/// the next open, so `a`, the counts and export disagreed with the journal.
#[test]
fn a_config_write_keeps_the_journaled_take_relabel() {
    use straddle::domain::RelabelPolicyChanged;
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("p");
    let mut cfg = config();
    assert!(cfg.relabel.take_relabel);
    let mut p = Project::create(&dir, cfg.clone(), vec![seed("a", "A"), seed("b", "B")]).unwrap();
    // Without a journaled switch the config decides.
    cfg.relabel.take_relabel = false;
    p.set_config(cfg.clone()).unwrap();
    assert!(!p.state().take_relabel && !p.state().take_relabel_config);
    cfg.relabel.take_relabel = true;
    p.set_config(cfg.clone()).unwrap();
    assert!(p.state().take_relabel);
    // The person switches it off (as the TUI's `t` journals it) ...
    p.append(vec![EventKind::RelabelPolicyChanged(
        RelabelPolicyChanged {
            take_relabel: false,
        },
    )])
    .unwrap();
    assert!(!p.state().take_relabel);
    // ... and a later config write (another setting) keeps that.
    cfg.generation.temperature = 0.4;
    p.set_config(cfg.clone()).unwrap();
    assert!(!p.state().take_relabel, "the journaled switch was lost");
    assert!(p.state().take_relabel_config);
    // Even a config that sets the same value as the switch, then flips
    // back: the journal's value stays in force.
    cfg.relabel.take_relabel = false;
    p.set_config(cfg.clone()).unwrap();
    cfg.relabel.take_relabel = true;
    p.set_config(cfg.clone()).unwrap();
    assert!(!p.state().take_relabel);
    let in_memory = p.state().clone();
    drop(p);
    let p = Project::open(&dir).unwrap();
    assert_eq!(p.state().take_relabel, in_memory.take_relabel);
    assert_eq!(p.state().take_relabel_config, in_memory.take_relabel_config);
    assert!(p.state().take_relabel_journaled);
}
