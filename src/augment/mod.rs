//! Strategies behind one interface ([`strategy`]), prompt building
//! (templates from `prompts/`), sampling of classes and α, output parsing,
//! relabel parsing, dedup, doubt scores, S3 rationales, and the pure
//! [`Generator`] the generation session (`app::session`) drives.
//! No I/O except [`templates::Templates::load`].
//!
//! One request's life:
//!
//! 1. [`Generator::plan_generate`] asks the configured [`strategy`] to plan
//!    (`mix`/`plain` schedule the intended class, and the minor class of a
//!    mix pair, by deficit against the weights ([`sampling::ClassSchedule`]),
//!    draw the other shown classes, α and shots with [`sampling`],
//!    deterministic in the settings' seed, the run's seed stream and the
//!    request number, and render `mix.j2`/`plain.j2` with [`templates`];
//!    `extrapolate` plans from an S3 round's held-out errors,
//!    [`Generator::plan_error`]).
//! 2. The caller sends it (engine) and hands the reply to
//!    [`Generator::on_reply`], which parses it ([`parse`]), checks every
//!    text against the [`DedupIndex`] and returns the events to append
//!    (the parser's rejections per reason ride on the first one):
//!    `sample_added` per text, a `decided` reject by `Auto("dedup")` per
//!    duplicate, or one `generation_failed` with the raw reply.
//! 3. [`Generator::plan_relabel`] renders `relabel.j2` for a sample, asking
//!    for JSON constrained to the class names and for logprobs; its reply
//!    becomes a `verdict_recorded` ([`relabel`]). Without logprobs the next
//!    relabels ask for `votes` choices (`n`); a server that ignores `n`
//!    gets single answers (confidence 1.0, method `single`).
//! 4. [`doubt()`] sorts the review queue; [`rules`] decide in bulk (the
//!    front ends check `classify::judge::relabel_gate` first).

pub mod dedup;
pub mod doubt;
pub mod filter;
pub mod generator;
pub mod parse;
pub mod rationales;
pub mod relabel;
pub mod rules;
pub mod sampling;
pub mod strategy;
pub mod templates;

pub use dedup::{DedupIndex, DupKind, DupMatch};
pub use doubt::{Doubt, DoubtContext, doubt, doubt_by};
pub use generator::{Generator, PlannedRequest, ReadReply, Reply, ReplyReader, RequestKind};
pub use strategy::Strategy;
pub use templates::Templates;
