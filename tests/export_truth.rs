//! Export does what it says (issue 12): the provenance option applies to
//! every format, and the dataset card describes the exported rows — not
//! the settings of the day.

mod support;

use serde_json::Value;
use std::path::Path;
use straddle::domain::{
    Actor, Decision, DecisionKind, EventKind, GenerationSettings, JudgeScored, NewSample, Origin,
    Provenance, SettingsChanged,
};
use straddle::store::Project;
use support::cli::{ok, straddle};

/// trec6 with 12 generated examples made under two models, two
/// strategies, α 0.60–0.75 and temperature 0.90–1.10, 8 accepted (one
/// edited), then the live settings moved to α 0.55 and temperature 0.30,
/// and a relabel judge measured.
fn project(dir: &Path) {
    ok(&straddle(&[
        "init",
        dir.to_str().unwrap(),
        "--example",
        "trec6",
    ]));
    let mut p = Project::open(dir).unwrap();
    let classes = p.class_names();
    let make = |i: usize| NewSample {
        text: format!("exported question number {i}?"),
        label: classes[i % classes.len()].clone(),
        origin: Origin::Generated,
        provenance: Provenance {
            strategy: Some(if i.is_multiple_of(3) { "plain" } else { "mix" }.into()),
            alpha: Some(if i.is_multiple_of(2) { 0.6 } else { 0.75 }),
            temperature: Some(if i.is_multiple_of(2) { 0.9 } else { 1.1 }),
            template: Some(if i.is_multiple_of(3) { "plain" } else { "mix" }.into()),
            model: Some(if i < 6 { "model-a" } else { "model-b" }.into()),
            ..Default::default()
        },
    };
    let ids = p.add_samples((0..12).map(make).collect()).unwrap();
    let mut kinds: Vec<EventKind> = ids
        .iter()
        .take(8)
        .map(|id| {
            EventKind::decided(
                *id,
                Decision {
                    kind: DecisionKind::Accept,
                    label: None,
                    reason: None,
                    by: Actor::Key("a".into()),
                },
            )
        })
        .collect();
    kinds.push(EventKind::Edited(straddle::domain::Edited {
        sample: ids[1],
        text: "an edited exported question?".into(),
    }));
    kinds.push(EventKind::SettingsChanged(SettingsChanged {
        generation: GenerationSettings {
            alpha_range: (0.55, 0.55),
            temperature: 0.3,
            ..GenerationSettings::default()
        },
    }));
    let labels: Vec<String> = classes.clone();
    let truth: Vec<usize> = (0..30).map(|i| i % labels.len()).collect();
    let answers: Vec<Option<usize>> = truth.iter().map(|t| Some(*t)).collect();
    kinds.push(EventKind::JudgeScored(JudgeScored {
        report: straddle::classify::judge::judge_report("relabel", &labels, &truth, &answers),
        fingerprint: "test".into(),
        answers: vec![],
    }));
    p.append(kinds).unwrap();
}

fn read_jsonl(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn the_provenance_option_applies_to_every_format() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("p");
    project(&dir);
    let run = |format: &str, out: &Path, prov: Option<&str>| {
        let mut args: Vec<String> = vec![
            "export".into(),
            dir.display().to_string(),
            "--format".into(),
            format.into(),
            "--out".into(),
            out.display().to_string(),
            "--val-fraction".into(),
            "0".into(),
        ];
        if let Some(p) = prov {
            args.extend(["--provenance".into(), p.into()]);
        }
        ok(&straddle(&args));
    };
    // JSONL: full records by default, text and label only when asked.
    let full = t.path().join("full.jsonl");
    run("jsonl", &full, None);
    assert!(keys(&read_jsonl(&full)[0]).contains(&"strategy".to_string()));
    let plain = t.path().join("plain.jsonl");
    run("jsonl", &plain, Some("no"));
    for r in read_jsonl(&plain) {
        assert_eq!(keys(&r), ["label", "text"], "{r}");
    }
    // hf: the same.
    let hf = t.path().join("hf");
    run("hf", &hf, Some("no"));
    for r in read_jsonl(&hf.join("train.jsonl")) {
        assert_eq!(keys(&r), ["label", "text"], "{r}");
    }
    let card = std::fs::read_to_string(hf.join("README.md")).unwrap();
    assert!(card.contains("exported without provenance"), "{card}");
    // CSV: plain by default, provenance columns when asked.
    let csv = t.path().join("d.csv");
    run("csv", &csv, None);
    let head = std::fs::read_to_string(&csv).unwrap();
    assert!(head.starts_with("text,label\n"), "{head}");
    run("csv", &csv, Some("yes"));
    let head = std::fs::read_to_string(&csv).unwrap();
    assert!(head.lines().next().unwrap().contains("strategy"), "{head}");
}

/// The TUI's export form says the value that applies, and the request it
/// builds does that.
#[test]
fn the_export_form_shows_the_provenance_that_applies() {
    use straddle::app::export::ExportFormat;
    use straddle::tui::export_form::ExportField;
    use straddle::tui::state::ExportForm;
    let mut f = ExportForm::new();
    assert_eq!(f.req.format, ExportFormat::Jsonl);
    assert_eq!(ExportField::Provenance.value(&f), "yes");
    assert!(f.req.with_provenance);
    // CSV's usual choice is no; a value set by hand is kept.
    ExportField::Format.step(&mut f, true);
    assert_eq!(f.req.format, ExportFormat::Csv);
    assert!(!f.req.with_provenance);
    ExportField::Provenance.step(&mut f, true);
    ExportField::Format.step(&mut f, true);
    assert_eq!(f.req.format, ExportFormat::Hf);
    assert!(f.req.with_provenance);
}

#[test]
fn the_dataset_card_describes_the_exported_rows() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("p");
    project(&dir);
    let out = t.path().join("hf");
    ok(&straddle(&[
        "export",
        dir.to_str().unwrap(),
        "--format",
        "hf",
        "--out",
        out.to_str().unwrap(),
        "--val-fraction",
        "0",
    ]));
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    // What the 8 exported rows were made with (rows 0..8: α 0.60 and 0.75,
    // temperature 0.90 and 1.10, model-a ×6, model-b ×2, plain ×3, mix ×5).
    for want in [
        "generated rows: 8",
        "models: `model-a` (6), `model-b` (2)",
        "strategies: `mix` (5), `plain` (3)",
        "templates: `mix` (5), `plain` (3)",
        "α (share of the intended class): 0.60–0.75",
        "temperature: 0.90–1.10",
        "judge `relabel`: accuracy 1.000 on 30 held-out examples",
        "acceptance rate of people's decisions (accepted / decided): 100.0%; 0 decided automatically",
    ] {
        assert!(card.contains(want), "{want}\n{card}");
    }
    // Not today's settings.
    assert!(!card.contains("0.55"), "{card}");
    assert!(
        !card.contains("0.3,") && !card.contains("temperature: 0.3"),
        "{card}"
    );
    // Counts per class and origin: 8 rows, one of them edited.
    assert!(
        card.contains("| **total** | | 8 | 0 | 0 | 7 | 1 |"),
        "{card}"
    );
}
