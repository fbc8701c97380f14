//! straddle: grow a handful of labelled examples into a curated
//! text-classification dataset with an LLM.
//!
//! Data flows one way: engine → events → store → state → view.
//! `domain` is plain data (no I/O), `store` owns the project folder,
//! `llm` and `engine` talk to servers, `augment` builds prompts and parses
//! replies, `classify` is the small local model, `app` the jobs every front
//! end shares (the generation session, export, training), `tui` the
//! terminal app and `cli` the headless commands. Layers only point down
//! (`tests/layers.rs` checks it).
pub mod app;
pub mod augment;
pub mod classify;
pub mod cli;
pub mod domain;
pub mod embed;
pub mod engine;
pub mod error;
pub mod llm;
pub mod logging;
pub mod store;
pub mod tui;

/// Run a parsed command line: the terminal UI (`tui`, or no command) or a
/// headless command. The one place that knows both front ends.
pub fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(cli::Command::Tui(a)) => tui::run(a.dir, a.backend),
        None => tui::run(None, app::BackendFlags::default()),
        Some(c) => cli::run(c),
    }
}
