//! The terminal UI.

pub fn run(_args: crate::cli::TuiArgs) -> anyhow::Result<()> {
    Err(crate::error::user("the TUI is not implemented yet"))
}
