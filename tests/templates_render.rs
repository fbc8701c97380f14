//! The prompts straddle sends, rendered for the demo projects
//! (`init --example trec6|intents`, descriptions as shipped) and for two
//! public tasks of `../shared/data` (agnews, clinc20: their classes and two
//! real examples each, with made-up one-line descriptions of both shapes —
//! phrases and full sentences — in tests/fixtures/tasks). The snapshots are
//! there to be read: every class line must read as English.

use std::path::PathBuf;

use straddle::augment::templates::{
    self, ClassContext, GenerateContext, RelabelContext, TaskContext, Templates,
};

struct Task {
    name: String,
    task: String,
    classes: Vec<ClassContext>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn demo(name: &str) -> Task {
    let dir = root().join("assets").join(name);
    let task = std::fs::read_to_string(dir.join("task.txt")).unwrap();
    let mut seeds: Vec<(String, String)> = Vec::new();
    for r in csv::Reader::from_path(dir.join("seeds.csv"))
        .unwrap()
        .records()
    {
        let r = r.unwrap();
        seeds.push((r[0].to_string(), r[1].to_string()));
    }
    let classes = csv::Reader::from_path(dir.join("descriptions.csv"))
        .unwrap()
        .records()
        .map(|r| {
            let r = r.unwrap();
            ClassContext {
                name: r[0].to_string(),
                description: r[1].to_string(),
                examples: seeds
                    .iter()
                    .filter(|(_, l)| *l == r[0])
                    .take(2)
                    .map(|(t, _)| t.clone())
                    .collect(),
            }
        })
        .collect();
    Task {
        name: name.into(),
        task: task.trim().into(),
        classes,
    }
}

fn fixture(name: &str) -> Task {
    let path = root().join(format!("tests/fixtures/tasks/{name}.json"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    Task {
        name: name.into(),
        task: v["task"].as_str().unwrap().into(),
        classes: v["classes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| ClassContext {
                name: c["name"].as_str().unwrap().into(),
                description: c["description"].as_str().unwrap().into(),
                examples: c["examples"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e.as_str().unwrap().into())
                    .collect(),
            })
            .collect(),
    }
}

/// A mix prompt over the first four classes, a plain prompt for the
/// first class and a relabel prompt over every class.
fn render(t: &Task) -> String {
    let tm = Templates::builtin();
    let task = TaskContext {
        name: t.name.clone(),
        description: t.task.clone(),
    };
    let shown: Vec<ClassContext> = t.classes.iter().take(4).cloned().collect();
    let mix = tm
        .render(
            templates::MIX,
            &GenerateContext {
                task: task.clone(),
                classes: shown.clone(),
                n: 5,
                target: shown[0].name.clone(),
                minor: Some(shown[1].name.clone()),
                major_pct: 80,
                minor_pct: 20,
            },
        )
        .unwrap();
    let plain = tm
        .render(
            templates::PLAIN,
            &GenerateContext {
                task: task.clone(),
                classes: shown[..1].to_vec(),
                n: 5,
                target: shown[0].name.clone(),
                minor: None,
                major_pct: 100,
                minor_pct: 0,
            },
        )
        .unwrap();
    let relabel = tm
        .render(
            templates::RELABEL,
            &RelabelContext {
                task,
                classes: t.classes.clone(),
                text: "An example text to classify.".into(),
                json: true,
            },
        )
        .unwrap();
    // Every description is in every prompt that shows its class, and no
    // class line reads "texts which are about" + a sentence or a noun for
    // texts.
    for c in &t.classes {
        assert!(relabel.contains(c.description.trim()), "{}", c.name);
    }
    for p in [&mix, &plain, &relabel] {
        for line in p.lines() {
            if let Some((_, rest)) = line.split_once("texts which are about ") {
                let first = rest.split_whitespace().next().unwrap_or("");
                assert!(
                    !first.starts_with(char::is_uppercase)
                        || first.chars().all(|c| !c.is_lowercase()),
                    "{}: {line}",
                    t.name
                );
                assert!(
                    !["questions", "texts", "news", "requests"]
                        .contains(&first.to_lowercase().as_str()),
                    "{}: {line}",
                    t.name
                );
            }
        }
    }
    format!(
        "######## {} — mix\n{mix}\n\n######## {} — plain\n{plain}\n\n######## {} — relabel\n{relabel}\n",
        t.name, t.name, t.name
    )
}

#[test]
fn demo_projects() {
    let out: String = ["trec6", "intents"]
        .iter()
        .map(|n| render(&demo(n)))
        .collect();
    insta::assert_snapshot!(out);
}

#[test]
fn shared_data_tasks_with_phrase_and_sentence_descriptions() {
    let out: String = ["agnews", "clinc20"]
        .iter()
        .map(|n| render(&fixture(n)))
        .collect();
    // Both shapes occur, so both renderings are in the snapshot.
    assert!(out.contains(": texts which are about sports results"));
    assert!(out.contains(": The user wants the assistant to speak louder or quieter."));
    assert!(out.contains(": News about companies, markets"));
    insta::assert_snapshot!(out);
}
