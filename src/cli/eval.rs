//! `straddle eval` and `straddle loop`.

pub fn run_eval(_args: super::EvalArgs) -> anyhow::Result<()> {
    Err(crate::error::user("`straddle eval` is not implemented yet"))
}

pub fn run_loop(_args: super::LoopArgs) -> anyhow::Result<()> {
    Err(crate::error::user("`straddle loop` is not implemented yet"))
}
