//! `straddle eval` and `straddle loop`.
//!
//! `eval` trains the small classifier twice — on the seeds alone (the
//! baseline) and on the seeds plus the accepted generated examples — and
//! scores both on held-out real examples: the project's imported
//! validation/test examples, or a file given with `--test`. The project is
//! opened read-only, so it works while the app holds the project.

use std::path::Path;

use crate::classify::{self, LabelledSet, TrainConfig};
use crate::error;
use crate::store::Project;
use crate::store::seeds::{self, Columns};

pub fn run_eval(args: super::EvalArgs) -> anyhow::Result<()> {
    let project = Project::open_read_only(&args.dir)?;
    let classes = project.class_names();
    let (heldout, source) = match &args.test {
        Some(file) => (
            read_heldout_file(file, &classes, &project)?,
            file.display().to_string(),
        ),
        None => (
            classify::heldout_set(project.state(), &classes),
            "the project's validation/test examples".to_string(),
        ),
    };
    if heldout.is_empty() {
        return Err(no_heldout_error(&args.dir));
    }
    let cfg = train_config(&project, classes.len());
    let ev = classify::evaluate(
        &classes,
        &classify::training_set(project.state(), &classes, false),
        &classify::training_set(project.state(), &classes, true),
        &heldout,
        &cfg,
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&ev.to_json())?);
    } else {
        println!("Held-out: {} examples from {source}.\n", heldout.len());
        print!("{}", ev.render());
        warn_unknown(&heldout);
    }
    Ok(())
}

/// The classifier settings of a project: the defaults sized for its
/// classes, seeded with the generation seed so scores are reproducible.
pub fn train_config(project: &Project, classes: usize) -> TrainConfig {
    TrainConfig::for_classes(classes, project.generation_settings().seed)
}

/// The user error for a project without held-out examples.
pub fn no_heldout_error(dir: &Path) -> anyhow::Error {
    error::user(format!(
        "no held-out examples to score on in {}: import real labelled examples with \
         `straddle import {} FILE --as validation` (or --as test), or pass --test FILE",
        dir.display(),
        dir.display()
    ))
}

/// Read a held-out file (CSV/TSV/JSONL with `text` and `label`), checking
/// every label against the project's classes.
fn read_heldout_file(
    file: &Path,
    classes: &[String],
    project: &Project,
) -> anyhow::Result<LabelledSet> {
    let examples = seeds::read_examples(file, &Columns::default())?;
    let cfg_name = project.config_path().display().to_string();
    seeds::check_labels(file, &examples, classes, &cfg_name)?;
    let mut set = LabelledSet::default();
    for e in &examples {
        set.push(classes, 0, &e.text, &e.label);
    }
    Ok(set)
}

/// Held-out samples whose label is not a class are not scored; say so.
fn warn_unknown(heldout: &LabelledSet) {
    if heldout.unknown.is_empty() {
        return;
    }
    eprintln!(
        "note: {} held-out example(s) have a label that is not a class and were not scored (e.g. sample {} labelled '{}')",
        heldout.unknown.len(),
        heldout.unknown[0].0,
        heldout.unknown[0].1
    );
}

pub fn run_loop(_args: super::LoopArgs) -> anyhow::Result<()> {
    Err(crate::error::user("`straddle loop` is not implemented yet"))
}
