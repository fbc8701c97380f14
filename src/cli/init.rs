//! `straddle init`.

pub fn run(_args: super::InitArgs) -> anyhow::Result<()> {
    Err(crate::error::user("`straddle init` is not implemented yet"))
}
