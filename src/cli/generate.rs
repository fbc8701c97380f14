//! `straddle generate`, `relabel`, `review`, `prompt`.

pub fn run_generate(_args: super::GenerateArgs) -> anyhow::Result<()> {
    Err(crate::error::user(
        "`straddle generate` is not implemented yet",
    ))
}

pub fn run_relabel(_args: super::RelabelArgs) -> anyhow::Result<()> {
    Err(crate::error::user(
        "`straddle relabel` is not implemented yet",
    ))
}

pub fn run_review(_args: super::ReviewArgs) -> anyhow::Result<()> {
    Err(crate::error::user(
        "`straddle review` is not implemented yet",
    ))
}

pub fn run_prompt(_args: super::PromptArgs) -> anyhow::Result<()> {
    Err(crate::error::user(
        "`straddle prompt` is not implemented yet",
    ))
}
