//! `straddle init`: create a project from a seeds file or a built-in example.
//!
//! Everything is read and validated before anything is written, and the
//! project is written into a temporary folder that is renamed into place
//! (see [`Project::create`]), so a failing `init` leaves nothing behind.

use std::path::{Path, PathBuf};

use crate::domain::{Class, NewSample, Origin, ProjectConfig, TaskConfig};
use crate::error;
use crate::store::Project;
use crate::store::seeds::{self, Columns};

/// A built-in example project under `assets/`.
struct Example {
    name: &'static str,
    task: &'static str,
    descriptions: &'static str,
    seeds: &'static str,
    validation: &'static str,
}

const EXAMPLES: &[Example] = &[
    Example {
        name: "trec6",
        task: include_str!("../../assets/trec6/task.txt"),
        descriptions: include_str!("../../assets/trec6/descriptions.csv"),
        seeds: include_str!("../../assets/trec6/seeds.csv"),
        validation: include_str!("../../assets/trec6/validation.csv"),
    },
    Example {
        name: "intents",
        task: include_str!("../../assets/intents/task.txt"),
        descriptions: include_str!("../../assets/intents/descriptions.csv"),
        seeds: include_str!("../../assets/intents/seeds.csv"),
        validation: include_str!("../../assets/intents/validation.csv"),
    },
];

/// Names of the built-in examples.
pub fn example_names() -> Vec<&'static str> {
    EXAMPLES.iter().map(|e| e.name).collect()
}

pub fn run(args: super::InitArgs) -> anyhow::Result<()> {
    let project = match &args.example {
        Some(name) => init_example(&args, name)?,
        None => init_from_files(&args)?,
    };
    print_summary(&project);
    Ok(())
}

fn base_config(
    args: &super::InitArgs,
    name: String,
    task: String,
    classes: Vec<Class>,
) -> ProjectConfig {
    let mut cfg = ProjectConfig {
        task: TaskConfig {
            name,
            description: task,
        },
        classes,
        backend: Default::default(),
        generation: Default::default(),
        relabel: Default::default(),
        embeddings: Default::default(),
        attributes: Default::default(),
        denoise: Default::default(),
        judge: Default::default(),
        strategy: Default::default(),
    };
    args.backend.apply(&mut cfg.backend);
    cfg
}

fn task_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "task".into())
}

fn init_from_files(args: &super::InitArgs) -> anyhow::Result<Project> {
    let seeds_path = args
        .seeds
        .as_ref()
        .ok_or_else(|| error::user("give --seeds FILE or --example NAME"))?;
    let cols = Columns::new(&args.text_col, &args.label_col);
    let (examples, warnings) =
        seeds::dedup_examples(seeds_path, seeds::read_examples(seeds_path, &cols)?);
    for w in warnings {
        crate::errln!("warning: {w}");
    }
    let classes = match &args.descriptions {
        Some(dpath) => {
            let descs = seeds::read_descriptions(dpath)?;
            let names: Vec<String> = descs.iter().map(|d| d.label.clone()).collect();
            seeds::check_labels(seeds_path, &examples, &names, &dpath.display().to_string())?;
            descs
                .into_iter()
                .map(|d| Class {
                    name: d.label,
                    description: d.description,
                    weight: 1.0,
                })
                .collect()
        }
        None => {
            let mut classes: Vec<Class> = Vec::new();
            for e in &examples {
                if !classes.iter().any(|c| c.name == e.label) {
                    classes.push(Class {
                        name: e.label.clone(),
                        description: String::new(),
                        weight: 1.0,
                    });
                }
            }
            classes
        }
    };
    let task = args
        .task
        .clone()
        .unwrap_or_else(|| "Short texts to classify.".into());
    let cfg = base_config(args, task_name(&args.dir), task, classes);
    let samples = seeds::to_samples(seeds_path, examples, Origin::Seed);
    Project::create(&args.dir, cfg, samples)
}

fn init_example(args: &super::InitArgs, name: &str) -> anyhow::Result<Project> {
    let ex = EXAMPLES.iter().find(|e| e.name == name).ok_or_else(|| {
        error::user(format!(
            "unknown example '{name}'; available: {}",
            example_names().join(", ")
        ))
    })?;
    let cols = Columns::default();
    let d_path = PathBuf::from("data/descriptions.csv");
    let s_path = PathBuf::from("data/seeds.csv");
    let v_path = PathBuf::from("data/validation.csv");
    let descs = seeds::parse_descriptions(&d_path, ex.descriptions)?;
    let seed_rows = seeds::parse_examples(&s_path, ex.seeds, &cols)?;
    let val_rows = seeds::parse_examples(&v_path, ex.validation, &cols)?;
    let classes: Vec<Class> = descs
        .into_iter()
        .map(|d| Class {
            name: d.label,
            description: d.description,
            weight: 1.0,
        })
        .collect();
    let task = args
        .task
        .clone()
        .unwrap_or_else(|| ex.task.trim().to_string());
    let cfg = base_config(args, ex.name.to_string(), task, classes);
    let mut samples: Vec<NewSample> = seeds::to_samples(&s_path, seed_rows, Origin::Seed);
    samples.extend(seeds::to_samples(&v_path, val_rows, Origin::Validation));
    let files = vec![
        (d_path, ex.descriptions.as_bytes().to_vec()),
        (s_path, ex.seeds.as_bytes().to_vec()),
        (v_path, ex.validation.as_bytes().to_vec()),
    ];
    Project::create_with_files(&args.dir, cfg, samples, &files)
}

fn print_summary(p: &Project) {
    let st = p.state();
    let count = |o: Origin| st.samples.iter().filter(|s| s.origin == o).count();
    let held = count(Origin::Validation) + count(Origin::Test);
    crate::outln!(
        "Created {}: {} classes, {} seed examples{}.",
        p.dir().display(),
        p.config().classes.len(),
        count(Origin::Seed),
        if held > 0 {
            format!(", {held} held-out validation examples")
        } else {
            String::new()
        }
    );
    let undescribed: Vec<&str> = p
        .config()
        .classes
        .iter()
        .filter(|c| c.description.is_empty())
        .map(|c| c.name.as_str())
        .collect();
    if !undescribed.is_empty() {
        crate::outln!(
            "Classes without a description: {} — add one per class in {} (the LLM sees them).",
            undescribed.join(", "),
            p.config_path().display()
        );
    }
    crate::outln!(
        "Next: check [backend] in {}, then run `straddle tui {}` (or `straddle generate {} --count 50`).",
        p.config_path().display(),
        p.dir().display(),
        p.dir().display()
    );
}
