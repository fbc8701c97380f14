//! `straddle stats`.

pub fn run(_args: super::StatsArgs) -> anyhow::Result<()> {
    Err(crate::error::user(
        "`straddle stats` is not implemented yet",
    ))
}
