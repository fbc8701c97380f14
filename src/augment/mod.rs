//! Strategies: prompt building (templates from `prompts/`), sampling of
//! classes and α, output parsing, relabel parsing, dedup and doubt scores.
//! Pure: no I/O except [`templates::Templates::load`].

pub mod dedup;
pub mod doubt;
pub mod parse;
pub mod relabel;
pub mod sampling;
pub mod templates;
