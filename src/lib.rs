//! straddle: grow a handful of labelled examples into a curated
//! text-classification dataset with an LLM.
//!
//! Data flows one way: engine → events → store → state → view.
//! `domain` is plain data (no I/O), `store` owns the project folder,
//! `llm` and `engine` talk to servers, `augment` builds prompts and parses
//! replies, `classify` is the small local model, `tui` the terminal app and
//! `cli` the headless commands that drive the same core.
pub mod augment;
pub mod classify;
pub mod cli;
pub mod domain;
pub mod engine;
pub mod error;
pub mod llm;
pub mod logging;
pub mod secrets;
pub mod store;
pub mod tui;
