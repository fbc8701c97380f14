//! The terminal UI.
//!
//! * [`state`]: the app state, messages ([`Msg`]) and effects ([`Effect`]).
//! * [`update()`]: pure `update(&mut State, Msg) -> Vec<Effect>`.
//! * [`view`]: draws a `&State`; no I/O.
//! * `runtime`: the one tokio loop that feeds messages in and runs effects.
//! * [`keymap`], [`theme`], [`config`]: keys, colors, the user's config file.

pub mod config;
#[doc(hidden)]
pub mod fixture;
pub mod keymap;
pub mod queue;
pub mod state;
pub mod theme;
pub mod update;
pub mod view;

pub use state::{Effect, Init, Msg, State};
pub use update::update;

/// Open the TUI on the project in `args.dir` (or the current folder).
pub fn run(_args: crate::cli::TuiArgs) -> anyhow::Result<()> {
    Err(crate::error::user("the TUI runtime lands with the engine"))
}
