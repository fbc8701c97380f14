//! Strategies: prompt building (templates from `prompts/`), sampling of
//! classes and α, output parsing, relabel parsing, dedup, doubt scores and
//! the pure [`Generator`] that the CLI, the TUI and the S3 loop drive.
//! No I/O except [`templates::Templates::load`].

pub mod dedup;
pub mod doubt;
pub mod generator;
pub mod parse;
pub mod relabel;
pub mod rules;
pub mod sampling;
pub mod templates;

pub use dedup::{DedupIndex, DupKind, DupMatch};
pub use doubt::{Doubt, DoubtContext, doubt};
pub use generator::{Generator, JsonStyle, PlannedRequest, Reply, RequestKind};
pub use templates::Templates;
