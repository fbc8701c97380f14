//! `straddle export`.

pub fn run(_args: super::ExportArgs) -> anyhow::Result<()> {
    Err(crate::error::user(
        "`straddle export` is not implemented yet",
    ))
}
