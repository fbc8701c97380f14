//! The terminal UI.
//!
//! * [`state`]: the app state, messages ([`Msg`]) and effects ([`Effect`]).
//! * [`update()`]: pure `update(&mut State, Msg) -> Vec<Effect>`.
//! * [`view`]: draws a `&State`; no I/O.
//! * `runtime`: the one tokio loop that feeds messages in and runs effects;
//!   `driver` carries generation effects to the shared `app::session`.
//! * [`keymap`], [`theme`], [`config`]: keys, colors, the user's config file.

pub mod burst;
pub mod chosen;
pub mod config;
mod driver;
pub mod export_form;
#[cfg(any(test, feature = "test-fixtures"))]
#[doc(hidden)]
pub mod fixture;
pub mod judges_view;
pub mod keymap;
pub mod map;
pub mod queue;
mod runtime;
pub mod s3;
pub mod s3_view;
pub mod state;
pub mod theme;
pub mod update;
pub mod view;

pub use state::{Effect, Init, Msg, State};
pub use update::update;

/// Open the TUI on the project in `dir` (or the current folder).
pub fn run(
    dir: Option<std::path::PathBuf>,
    backend: crate::app::BackendFlags,
) -> anyhow::Result<()> {
    let dir = match dir {
        Some(d) => d,
        None => std::env::current_dir()?,
    };
    let mut ui = config::load(config::config_path().as_deref());
    ui.log_file = crate::logging::log_path();
    runtime::run(dir, backend, ui)
}
