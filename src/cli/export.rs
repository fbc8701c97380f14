//! `straddle export`: the project opened read-only, exported by
//! [`app::export`](crate::app::export), the summary on stdout.

pub use crate::app::export::csv_safe;
use crate::app::export::{ExportRequest, Source, export_from};
use crate::store::Project;

use super::ExportArgs;

impl ExportArgs {
    pub fn request(&self) -> ExportRequest {
        ExportRequest {
            format: self.format,
            out: self.out.clone(),
            include_seeds: self.include_seeds,
            val_fraction: self.val_fraction,
            seed: self.seed,
            with_provenance: match (self.provenance, self.with_provenance) {
                (Some(p), _) => p == super::YesNo::Yes,
                (None, true) => true,
                (None, false) => self.format.default_provenance(),
            },
        }
    }
}

/// Journal warnings on stderr, the summary on stdout.
pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let req = args.request();
    if !(0.0..1.0).contains(&req.val_fraction) {
        return Err(crate::error::user(format!(
            "--val-fraction must be in [0, 1), got {}",
            req.val_fraction
        )));
    }
    let project = Project::open_read_only(&args.dir)?;
    project.warn_about_journal();
    if !args.no_gate {
        data_gate(&project, args.strict)?;
    }
    let src = Source {
        dir: &args.dir,
        config: project.config(),
        state: project.state(),
    };
    crate::outln!("{}", export_from(&src, &req)?.summary());
    Ok(())
}

/// The data gate (`app::data_gate`): seeds only vs seeds + accepted on the
/// held-out examples with the project's small model, said plainly on
/// stderr; with `strict`, a worse score refuses the export.
pub fn data_gate(project: &Project, strict: bool) -> anyhow::Result<()> {
    let (gate, note) = crate::app::data_gate::run(
        project.config(),
        &project.cache_dir(),
        &project.generation_settings(),
        project.state(),
    )?;
    if let Some(note) = &note {
        crate::errln!("note: {note}");
    }
    let Some(g) = gate else {
        return Ok(());
    };
    if strict && let Some(refusal) = g.strict_refusal() {
        return Err(crate::error::user(refusal));
    }
    crate::errln!("data gate: {}", g.message());
    Ok(())
}
