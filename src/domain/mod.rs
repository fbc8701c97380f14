//! Plain data: classes, samples, verdicts, decisions, journal events and the
//! project state that is their fold. No I/O, no async.

pub mod confidence;
pub mod config;
pub mod event;
pub mod heldout;
pub mod judge;
pub mod name;
pub mod state;
#[cfg(any(test, feature = "test-fixtures"))]
#[doc(hidden)]
pub mod testing;

pub use confidence::Confidence;
pub use config::*;
pub use event::*;
pub use heldout::Mistake;
pub use judge::*;
pub use name::{Name, ThinStr, intern};
pub use state::*;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Journal schema version written into every event.
pub const SCHEMA_VERSION: u16 = 1;

/// Dense sample id, assigned in journal order starting at 1.
pub type SampleId = u64;
/// Journal event id, assigned in journal order starting at 1.
pub type EventId = u64;

/// A class of the task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Class {
    pub name: String,
    /// One line that completes "… which is about ___".
    #[serde(default)]
    pub description: String,
    /// Relative sampling weight for generation (1.0 = even).
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}

/// Where a sample came from and what role it plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A real labelled example the user brought; shown in prompts.
    Seed,
    /// Made by the LLM.
    Generated,
    /// Real held-out example for scoring; never exported as training data
    /// unless asked.
    Validation,
    /// Real held-out example for scoring; never exported as training data
    /// unless asked.
    Test,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Seed => "seed",
            Origin::Generated => "generated",
            Origin::Validation => "validation",
            Origin::Test => "test",
        }
    }
    pub fn is_heldout(self) -> bool {
        matches!(self, Origin::Validation | Origin::Test)
    }
}

/// How a sample was made. Every field is optional so seeds and imports can
/// carry just what they have.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// "mix", "plain", "extrapolate", "import", "seed", …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Name>,
    /// The classes shown in the prompt.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "name::exact_names"
    )]
    pub classes: Vec<Name>,
    /// Minor class B of a mix request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minor: Option<Name>,
    /// Share α of the intended class A in a mix request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Name>,
    /// Hash of the template text (first 16 hex chars of SHA-256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_hash: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<ThinStr>,
    /// Sampling temperature of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// S3: the held-out sample whose misclassification seeded this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_of: Option<SampleId>,
    /// S3 round number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<u32>,
    /// S3 rationale the request was conditioned on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<ThinStr>,
    /// Attribute values the text was asked to express (`attributes`
    /// strategy), or tagged with at import: dimension → value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// File a seed or held-out example was imported from, with its line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ThinStr>,
    /// Anything else a strategy wants to keep.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// A sample as it was added to the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewSample {
    pub text: String,
    /// Intended label (the class it was asked for, or the real label).
    pub label: String,
    pub origin: Origin,
    #[serde(default)]
    pub provenance: Provenance,
}

/// How a verdict's confidences were obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictMethod {
    /// Per-class probabilities from token logprobs.
    Logprobs,
    /// Share of n self-consistency votes.
    Vote,
    /// A single answer; confidence 1.0 for the answer.
    Single,
}

/// The LLM's relabel of a sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The class the LLM chose; `None` when its answer was unparsable.
    pub label: Option<Name>,
    /// Confidence per class (sums to ≤ 1).
    #[serde(default)]
    pub confidence: Confidence,
    pub method: VerdictMethod,
    /// Votes cast (self-consistency), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub votes: Option<u32>,
    /// The raw answer of an unparsable verdict (kept for audit). This and
    /// the request id are thin strings (8 bytes, a `String` is 24): a
    /// 200,000-sample project holds a verdict per sample, nearly all
    /// without either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<ThinStr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<ThinStr>,
}

impl Verdict {
    /// Confidence of the verdict's own label (0 when unparsable).
    pub fn top_confidence(&self) -> f64 {
        self.label
            .as_ref()
            .and_then(|l| self.confidence.get(l).copied())
            .unwrap_or(0.0)
    }

    /// Difference between the two highest class confidences.
    pub fn margin(&self) -> f64 {
        let mut v: Vec<f64> = self.confidence.values().copied().collect();
        v.sort_by(|a, b| b.total_cmp(a));
        match v.as_slice() {
            [] => 0.0,
            [a] => *a,
            [a, b, ..] => a - b,
        }
    }
}

/// Accept or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    Accept,
    Reject,
}

/// Who or what made a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum Actor {
    /// A person, with the key they pressed (e.g. "a", "x", "3").
    Key(Name),
    /// A bulk rule, with its text (e.g. "accept-agreeing>=0.9").
    Rule(Name),
    /// The pipeline itself (e.g. "dedup", "denoise", a rule `loop` runs).
    Auto(Name),
}

impl Actor {
    /// A decision the person made: a key or a bulk rule they asked for.
    /// Only these are undone by `u`; automatic ones are overturned by
    /// deciding again (the review filter `actor:auto` lists them).
    pub fn is_person(&self) -> bool {
        !matches!(self, Actor::Auto(_))
    }
}

/// A human or rule decision on a sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub kind: DecisionKind,
    /// Label chosen with the decision (relabel-and-accept); overrides both
    /// the intended and the relabel label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<Name>,
    /// Why, e.g. "duplicate", "near_duplicate".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Name>,
    pub by: Actor,
}

/// Token and request accounting for one run (or cumulative).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    pub requests: u64,
    pub cached: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Failures by reason ("rate_limited", "timeout", "server_error", …).
    pub failures: BTreeMap<String, u64>,
    pub cost: f64,
    pub latency_p50_ms: f64,
    pub latency_p90_ms: f64,
    pub latency_p99_ms: f64,
    pub wall_s: f64,
}

impl Provenance {
    /// One shared empty provenance (what a lean copy of a sample holds
    /// instead of its own): cloning it allocates nothing.
    pub fn shared_default() -> std::sync::Arc<Provenance> {
        static EMPTY: std::sync::OnceLock<std::sync::Arc<Provenance>> = std::sync::OnceLock::new();
        EMPTY.get_or_init(Default::default).clone()
    }

    /// The attributes as `(dimension, value)` pairs, in dimension order
    /// (the shape `embed::denoise` scores).
    pub fn attribute_pairs(&self) -> Vec<(String, String)> {
        self.attributes
            .iter()
            .map(|(d, v)| (d.clone(), v.clone()))
            .collect()
    }

    /// `dimension=value;…`, the import/export column form ("" without
    /// attributes).
    pub fn attributes_column(&self) -> String {
        format_attributes(&self.attributes)
    }
}

/// `tone=formal;length=short` (dimension order).
pub fn format_attributes(attributes: &BTreeMap<String, String>) -> String {
    attributes
        .iter()
        .map(|(d, v)| format!("{d}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// Parse `tone=formal; length=short` (spaces around names trimmed; an
/// empty string is no attributes). The error names the bad part.
pub fn parse_attributes(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for part in s.split(';') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let Some((d, v)) = part.split_once('=') else {
            return Err(format!(
                "attribute '{part}' is not dimension=value (e.g. tone=formal;length=short)"
            ));
        };
        let (d, v) = (d.trim(), v.trim());
        if d.is_empty() || v.is_empty() {
            return Err(format!(
                "attribute '{part}' has an empty dimension or value"
            ));
        }
        if out.insert(d.to_string(), v.to_string()).is_some() {
            return Err(format!("attribute dimension '{d}' appears twice"));
        }
    }
    Ok(out)
}

impl Usage {
    /// What was used since `earlier` (a snapshot of the same running
    /// counter): the counts' differences, the current latency
    /// percentiles. Recording deltas as a run goes keeps a killed run's
    /// usage on record.
    pub fn since(&self, earlier: &Usage) -> Usage {
        let mut failures = BTreeMap::new();
        for (k, v) in &self.failures {
            let d = v.saturating_sub(earlier.failures.get(k).copied().unwrap_or(0));
            if d > 0 {
                failures.insert(k.clone(), d);
            }
        }
        Usage {
            requests: self.requests.saturating_sub(earlier.requests),
            cached: self.cached.saturating_sub(earlier.cached),
            prompt_tokens: self.prompt_tokens.saturating_sub(earlier.prompt_tokens),
            completion_tokens: self
                .completion_tokens
                .saturating_sub(earlier.completion_tokens),
            failures,
            cost: (self.cost - earlier.cost).max(0.0),
            latency_p50_ms: self.latency_p50_ms,
            latency_p90_ms: self.latency_p90_ms,
            latency_p99_ms: self.latency_p99_ms,
            wall_s: (self.wall_s - earlier.wall_s).max(0.0),
        }
    }

    /// Whether nothing was used.
    pub fn is_empty(&self) -> bool {
        self.requests == 0 && self.cached == 0 && self.failures.is_empty()
    }

    /// Add counts of another run (latency percentiles take the other's).
    pub fn add(&mut self, o: &Usage) {
        self.requests += o.requests;
        self.cached += o.cached;
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
        for (k, v) in &o.failures {
            *self.failures.entry(k.clone()).or_default() += v;
        }
        self.cost += o.cost;
        self.wall_s += o.wall_s;
        if o.requests > 0 {
            self.latency_p50_ms = o.latency_p50_ms;
            self.latency_p90_ms = o.latency_p90_ms;
            self.latency_p99_ms = o.latency_p99_ms;
        }
    }
}

/// Classifier scores on a held-out set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub accuracy: f64,
    pub macro_f1: f64,
    #[serde(default)]
    pub per_class_f1: BTreeMap<String, f64>,
    /// Class order of `confusion` rows (true) and columns (predicted).
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub confusion: Vec<Vec<u32>>,
    /// Examples trained on.
    #[serde(default)]
    pub n_train: usize,
    /// Held-out examples scored.
    #[serde(default)]
    pub n_test: usize,
}
