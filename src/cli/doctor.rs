//! `straddle doctor`.

pub fn run(_args: super::DoctorArgs) -> anyhow::Result<()> {
    Err(crate::error::user(
        "`straddle doctor` is not implemented yet",
    ))
}
