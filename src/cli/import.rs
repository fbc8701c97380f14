//! `straddle import`: add seeds or held-out (validation/test) examples.
//!
//! The file is read and every label checked against the project's classes
//! before anything is appended; the whole import is one durable journal
//! append, so a failing import changes nothing. Examples already in the
//! project with the same text, label and role are skipped (re-running an
//! import is harmless).

use std::collections::HashSet;

use crate::domain::Origin;
use crate::store::Project;
use crate::store::seeds::{self, Columns};

pub fn run(args: super::ImportArgs) -> anyhow::Result<()> {
    let origin = match args.role {
        super::ImportRole::Seed => Origin::Seed,
        super::ImportRole::Validation => Origin::Validation,
        super::ImportRole::Test => Origin::Test,
    };
    let mut project = Project::open(&args.dir)?;
    project.warn_about_journal();
    let cols = Columns {
        text: args.text_col.clone(),
        label: args.label_col.clone(),
    };
    let examples = seeds::read_examples(&args.file, &cols)?;
    let classes = project.class_names();
    let cfg_name = project.config_path().display().to_string();
    seeds::check_labels(&args.file, &examples, &classes, &cfg_name)?;

    let existing: HashSet<(&str, &str)> = project
        .state()
        .samples
        .iter()
        .filter(|s| s.origin == origin)
        .map(|s| (s.original_text.as_str(), s.label.as_str()))
        .collect();
    let mut seen = HashSet::new();
    let total = examples.len();
    let fresh: Vec<_> = examples
        .into_iter()
        .filter(|e| {
            !existing.contains(&(e.text.as_str(), e.label.as_str()))
                && seen.insert((e.text.clone(), e.label.clone()))
        })
        .collect();
    let skipped = total - fresh.len();
    let samples = seeds::to_samples(&args.file, fresh, origin);
    let ids = project.add_samples(samples)?;
    crate::outln!(
        "Imported {} {} example{} into {}{}.",
        ids.len(),
        origin.as_str(),
        if ids.len() == 1 { "" } else { "s" },
        project.dir().display(),
        if skipped > 0 {
            format!(
                " ({skipped} duplicate{} skipped)",
                if skipped == 1 { "" } else { "s" }
            )
        } else {
            String::new()
        }
    );
    Ok(())
}
