//! `straddle import`.

pub fn run(_args: super::ImportArgs) -> anyhow::Result<()> {
    Err(crate::error::user(
        "`straddle import` is not implemented yet",
    ))
}
