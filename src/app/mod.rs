//! The application layer: jobs every front end shares, above the engine,
//! `augment` and `classify`, below `cli` and `tui`.
//!
//! * [`session`]: the one I/O-free generation session (generate, relabel,
//!   S3 extrapolation) the CLI and the TUI drive.
//! * [`export`]: JSONL / CSV / Hugging Face export of a state snapshot.
//! * [`training`]: training settings, an S3 round and training signals on
//!   a state snapshot.
//! * [`batch`]: batch files (OpenAI Batch API, `vllm run-batch`) that
//!   carry the session's requests and bring its replies back.
//! * [`embedding`]: the effect that embeds the session's texts for the
//!   denoiser, in the background, through the project's vector store.
//! * [`backend`]: command-line overrides of `[backend]`.
//! * [`data_gate`]: seeds only vs seeds + accepted on the held-out
//!   examples before export (the gate `export --strict` enforces).
//! * [`judges`]: every judge (relabel, small, knn, ensemble) measured side
//!   by side on the held-out examples, the chosen one, and its opinions.
//! * [`snapshot`]: the lean copy of the state a background job reads.
//! * [`small_model`]: which small model (embedding or n-gram) a project's
//!   `eval`, S3 round and signals use.

pub mod backend;
pub mod batch;
pub mod data_gate;
pub mod embedding;
pub mod export;
pub mod judges;
pub mod session;
pub mod small_model;
pub mod snapshot;
pub mod training;

pub use backend::BackendFlags;
pub use session::{Command, Counting, Output, Session, SessionConfig};
