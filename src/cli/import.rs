//! `straddle import`: add seeds or held-out (validation/test) examples.
//!
//! The file is read twice, streamed: the first pass checks every row
//! (field count, label among the project's classes) and decides which rows
//! are new, holding 128-bit hashes rather than texts; the second pass
//! writes the new rows as one atomic journal batch. So a failing import
//! changes nothing, a `kill -9` half-way applies nothing (the torn batch is
//! cut on the next open), and a million rows cost a few tens of MB, not the
//! file twice. Examples already in the project with the same text, label
//! and role are skipped (re-running an import is harmless); held-out
//! examples whose text is a seed (or seeds whose text is held out) are not
//! imported and counted in a warning: the score on held-out data would
//! otherwise measure memory, not generalisation.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use crate::domain::{EventKind, NewSample, Origin, Provenance, SampleAdded};
use crate::store::Project;
use crate::store::seeds::{self, Columns};

/// A 128-bit fingerprint of `parts` (two SipHash runs with different
/// salts): collisions are out of reach for any file we read.
fn fingerprint(parts: &[&str]) -> u128 {
    let one = |salt: u8| {
        let mut h = std::hash::DefaultHasher::new();
        salt.hash(&mut h);
        parts.hash(&mut h);
        h.finish() as u128
    };
    (one(0) << 64) | one(1)
}

/// Whether a role is held out (validation or test).
fn held_out(o: Origin) -> bool {
    matches!(o, Origin::Validation | Origin::Test)
}

pub fn run(args: super::ImportArgs) -> anyhow::Result<()> {
    let origin = match args.role {
        super::ImportRole::Seed => Origin::Seed,
        super::ImportRole::Validation => Origin::Validation,
        super::ImportRole::Test => Origin::Test,
    };
    let project = Project::open(&args.dir)?;
    project.warn_about_journal();
    let cols = Columns::new(&args.text_col, &args.label_col);
    let classes = project.class_names();
    let cfg_name = project.config_path().display().to_string();
    let st = project.state();
    let existing: HashSet<u128> = st
        .samples
        .iter()
        .filter(|s| s.origin == origin)
        .map(|s| fingerprint(&[&s.original_text, &s.label]))
        .collect();
    // Texts on the other side of the train/held-out line.
    let other_side: HashSet<u128> = st
        .samples
        .iter()
        .filter(|s| {
            if held_out(origin) {
                s.origin == Origin::Seed
            } else {
                origin == Origin::Seed && held_out(s.origin)
            }
        })
        .map(|s| fingerprint(&[&s.original_text]))
        .collect();
    let first_id = st.next_sample_id();

    // Pass 1: check everything, decide what to keep.
    let mut seen = HashSet::new();
    let mut keep = Vec::new();
    let (mut leaked, mut first_leak) = (0usize, None);
    let total = seeds::for_each_example(&args.file, &cols, |e| {
        seeds::check_labels(&args.file, std::slice::from_ref(&e), &classes, &cfg_name)?;
        let fresh = !existing.contains(&fingerprint(&[&e.text, &e.label]))
            && seen.insert(fingerprint(&[&e.text, &e.label]));
        let leaks = fresh && other_side.contains(&fingerprint(&[&e.text]));
        if leaks {
            leaked += 1;
            first_leak.get_or_insert(e.line);
        }
        keep.push(fresh && !leaks);
        Ok(())
    })?;
    drop(seen);
    let n = keep.iter().filter(|&&k| k).count();

    // Pass 2: stream the kept rows into one atomic batch.
    let dir = project.dir().to_path_buf();
    let name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| args.file.display().to_string());
    project.append_stream(n, |push| {
        let (mut i, mut id) = (0usize, first_id);
        seeds::for_each_example(&args.file, &cols, |e| {
            let k = keep.get(i).copied().unwrap_or(false);
            i += 1;
            if k {
                let sample = NewSample {
                    provenance: Provenance {
                        source: Some(format!("{name}:{}", e.line).into()),
                        attributes: e.attributes,
                        ..Default::default()
                    },
                    text: e.text,
                    label: e.label,
                    origin,
                };
                push(EventKind::SampleAdded(SampleAdded::new(id, sample)))?;
                id += 1;
            }
            Ok(())
        })?;
        anyhow::ensure!(
            i == keep.len(),
            "{} changed while it was imported",
            args.file.display()
        );
        Ok(())
    })?;
    let skipped = total - n - leaked;
    if leaked > 0 {
        crate::errln!(
            "warning: {leaked} row{} of {} not imported: the text is already {} \
             (train/test leakage; first at {}:{})",
            if leaked == 1 { "" } else { "s" },
            args.file.display(),
            if held_out(origin) {
                "a seed"
            } else {
                "a held-out example"
            },
            args.file.display(),
            first_leak.unwrap_or(0)
        );
    }
    crate::outln!(
        "Imported {} {} example{} into {}{}.",
        n,
        origin.as_str(),
        if n == 1 { "" } else { "s" },
        dir.display(),
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
