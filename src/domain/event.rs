//! Journal events. One event is one JSON line:
//!
//! ```text
//! {"v":1,"id":42,"ts":1764075600123,"type":"decided","data":{"sample":7,"decision":{…}}}
//! ```
//!
//! `v` is the schema version, `id` the dense event id, `ts` Unix time in
//! milliseconds, `type` the event kind and `data` its payload. The payload is
//! parsed after the kind is known (see [`Event::from_json_line`]), which keeps
//! replay fast: no buffering of the whole line into an intermediate tree.

use serde::{Deserialize, Serialize};

use super::{
    Decision, EventId, GenerationSettings, NewSample, Provenance, SampleId, Scores, Usage, Verdict,
};

/// A journal event with its envelope.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub v: u16,
    pub id: EventId,
    /// Unix time in milliseconds.
    pub ts: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The one table of event kinds: variant, payload type and the name
/// written in the journal's `type` field. It calls the macro `$m` with the
/// whole table; [`EventKind`] (and its serde names), [`EventKind::NAMES`],
/// [`EventKind::type_name`], the reference parser
/// ([`Event::from_json_line`]) and the journal's fast parser are all
/// generated from it. A new kind is one line here plus its payload struct;
/// every `match` on [`EventKind`] that must handle it then fails to compile.
macro_rules! for_each_event_kind {
    ($m:ident) => {
        $m! {
            /// A sample entered the project; its id is assigned by replay order
            /// (the n-th `sample_added` has id n) and repeated here for readers.
            SampleAdded(SampleAdded) = "sample_added",
            /// A generation request yielded nothing usable; the raw reply is kept.
            GenerationFailed(GenerationFailed) = "generation_failed",
            /// The LLM relabelled a sample.
            VerdictRecorded(VerdictRecorded) = "verdict_recorded",
            /// A person or rule accepted/rejected a sample.
            Decided(Decided) = "decided",
            /// The text of a sample was edited.
            Edited(Edited) = "edited",
            /// An earlier `decided`, `edited` or `verdict_recorded` event is undone.
            Undone(Undone) = "undone",
            /// Live change of generation settings (full new settings).
            SettingsChanged(SettingsChanged) = "settings_changed",
            /// Class weight changed live.
            WeightChanged(WeightChanged) = "weight_changed",
            /// Attribute value weight changed live (`attributes` strategy).
            AttributeWeightChanged(AttributeWeightChanged) = "attribute_weight_changed",
            /// Requests in flight at most, changed live (the terminal UI's
            /// Controls pane); replayed on open like the settings.
            ConcurrencyChanged(ConcurrencyChanged) = "concurrency_changed",
            /// LLM usage of one run.
            UsageRecorded(UsageRecorded) = "usage_recorded",
            /// S3 round scores.
            RoundScored(RoundScored) = "round_scored",
            /// S3 rationales for a class.
            RationalesAdded(RationalesAdded) = "rationales_added",
            /// A judge (the relabeler, the small classifier) scored on held-out
            /// examples.
            JudgeScored(super::JudgeScored) = "judge_scored",
            /// Requests written to a batch input file (`straddle batch prepare`).
            BatchPlanned(BatchPlanned) = "batch_planned",
            /// A batch was uploaded, or its remote status changed.
            BatchUpdated(BatchUpdated) = "batch_updated",
            /// The person switched `take_relabel` (Controls): whether accepting
            /// an example takes the relabeler's label. Overrides straddle.toml.
            RelabelPolicyChanged(RelabelPolicyChanged) = "relabel_policy_changed",
            /// The denoiser judged a generated sample (its noise score, and
            /// why it is noise when it is).
            NoiseScored(NoiseScored) = "noise_scored",
        }
    };
}
pub(crate) use for_each_event_kind;

macro_rules! define_event_kind {
    ($($(#[$doc:meta])* $v:ident($t:ty) = $name:literal,)*) => {
        /// What happened.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(tag = "type", content = "data")]
        pub enum EventKind {
            $($(#[$doc])* #[serde(rename = $name)] $v($t),)*
        }

        impl EventKind {
            /// Every kind's journal name, in table order.
            pub const NAMES: &'static [&'static str] = &[$($name),*];

            /// The event type as written in the journal.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(EventKind::$v(_) => $name,)*
                }
            }

            /// Parse the payload `data` of an event of type `ty`.
            fn from_payload(ty: &str, data: &str) -> Result<EventKind, LineError> {
                let payload = |e: serde_json::Error| LineError::Payload {
                    ty: ty.to_string(),
                    msg: e.to_string(),
                };
                match ty {
                    $($name => serde_json::from_str(data).map(EventKind::$v).map_err(payload),)*
                    other => Err(LineError::UnknownType(other.to_string())),
                }
            }
        }
    };
}
for_each_event_kind!(define_event_kind);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleAdded {
    pub id: SampleId,
    pub text: String,
    /// Intended label.
    pub label: String,
    pub origin: super::Origin,
    #[serde(default)]
    pub provenance: Provenance,
}

impl SampleAdded {
    pub fn new(id: SampleId, s: NewSample) -> SampleAdded {
        SampleAdded {
            id,
            text: s.text,
            label: s.label,
            origin: s.origin,
            provenance: s.provenance,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationFailed {
    pub reason: String,
    #[serde(default)]
    pub raw: String,
    #[serde(default)]
    pub provenance: Provenance,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictRecorded {
    pub sample: SampleId,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decided {
    pub sample: SampleId,
    pub decision: Decision,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edited {
    pub sample: SampleId,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Undone {
    /// The event being undone.
    pub event: EventId,
    /// The sample it touched.
    pub sample: SampleId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingsChanged {
    pub generation: GenerationSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelabelPolicyChanged {
    pub take_relabel: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightChanged {
    pub class: String,
    pub weight: f64,
}

/// The sampling weight of one attribute value (1.0 = even, 0 = never).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeWeightChanged {
    pub attribute: String,
    pub value: String,
    pub weight: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConcurrencyChanged {
    pub concurrency: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecorded {
    /// "generate", "relabel", "loop", "tui", …
    pub run: String,
    pub usage: Usage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundScored {
    pub round: u32,
    pub baseline: Scores,
    pub augmented: Scores,
    /// Held-out samples the classifier got wrong this round.
    #[serde(default)]
    pub errors: Vec<SampleId>,
    /// Bootstrap intervals of both scores and of their paired difference
    /// (seeds + curated − seeds only), so the verdict survives a restart.
    /// Absent in rounds recorded before intervals were journaled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intervals: Option<Box<RoundIntervals>>,
}

/// A bootstrap interval as journaled: the point estimate and its bounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoreInterval {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

/// The bootstrap intervals of an S3 round (percentile bootstrap over the
/// held-out examples; the differences are paired).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundIntervals {
    /// Coverage, e.g. 0.95.
    pub level: f64,
    pub resamples: usize,
    /// Seeds only.
    pub baseline_accuracy: ScoreInterval,
    pub baseline_macro_f1: ScoreInterval,
    /// Seeds + curated (accepted) examples.
    pub augmented_accuracy: ScoreInterval,
    pub augmented_macro_f1: ScoreInterval,
    /// Seeds + curated − seeds only.
    pub accuracy_diff: ScoreInterval,
    pub macro_f1_diff: ScoreInterval,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RationalesAdded {
    pub class: String,
    pub rationales: Vec<String>,
}

/// A batch of planned requests, written to `batches/NAME/` (the OpenAI
/// batch input file and the plans its replies are read with).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchPlanned {
    /// The local name (`b1`, `b2`, …), the prefix of every custom id.
    pub batch: String,
    /// The custom ids, in file order.
    pub custom_ids: Vec<String>,
    /// SHA-256 of the input file and of the plan file.
    pub input_sha256: String,
    pub plan_sha256: String,
    /// The seed stream the requests were drawn from and the request
    /// counter after them (a later run draws fresh ones).
    pub stream: u64,
    pub next_request: u64,
}

/// Where a batch stands at the provider (the latest fields win).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchUpdated {
    pub batch: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_file_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_file_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_file_id: Option<String>,
}

/// The denoiser's judgement of one generated sample (see
/// `embed::denoise`): the noise score in `[0, 1]`, the cosine to the
/// nearest seed of its intended class and to the prompt's instructions,
/// and the reason when it is noise ("far from every DESC seed (0.21)",
/// "repeats the instructions (0.83)"). A noisy sample is only flagged by
/// this event; in `reject` mode a `decided` by `auto:denoise` follows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoiseScored {
    pub sample: SampleId,
    pub noise: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_similarity: Option<f64>,
    #[serde(default)]
    pub echo: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<super::ThinStr>,
    /// The embedding model that judged it.
    #[serde(default)]
    pub model: super::Name,
}

/// Why a journal line could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("unknown event type '{0}'")]
    UnknownType(String),
    #[error("schema version {0} is newer than this straddle understands ({max})", max = super::SCHEMA_VERSION)]
    NewerSchema(u16),
    #[error("bad '{ty}' payload: {msg}")]
    Payload { ty: String, msg: String },
}

#[derive(Deserialize)]
struct RawEvent<'a> {
    v: u16,
    id: EventId,
    ts: u64,
    #[serde(rename = "type", borrow)]
    ty: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    data: &'a serde_json::value::RawValue,
}

impl Event {
    /// Parse one journal line (without the trailing newline).
    pub fn from_json_line(line: &str) -> Result<Event, LineError> {
        let raw: RawEvent<'_> =
            serde_json::from_str(line).map_err(|e| LineError::Json(e.to_string()))?;
        if raw.v > super::SCHEMA_VERSION {
            return Err(LineError::NewerSchema(raw.v));
        }
        let kind = EventKind::from_payload(raw.ty.as_ref(), raw.data.get())?;
        Ok(Event {
            v: raw.v,
            id: raw.id,
            ts: raw.ts,
            kind,
        })
    }

    /// Serialize to one JSON line (without the trailing newline).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("events always serialize")
    }

    /// The event type as written in the journal.
    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }
}

impl EventKind {
    /// Convenience: a `decided` event.
    pub fn decided(sample: SampleId, decision: Decision) -> EventKind {
        EventKind::Decided(Decided { sample, decision })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Actor, DecisionKind, Origin};

    #[test]
    fn round_trip_every_line() {
        let evs = vec![
            EventKind::SampleAdded(SampleAdded::new(
                1,
                NewSample {
                    text: "what is \"x\"?\nü".into(),
                    label: "DESC".into(),
                    origin: Origin::Seed,
                    provenance: Provenance::default(),
                },
            )),
            EventKind::decided(
                1,
                Decision {
                    kind: DecisionKind::Accept,
                    label: Some("HUM".into()),
                    reason: None,
                    by: Actor::Key("a".into()),
                },
            ),
            EventKind::Undone(Undone {
                event: 2,
                sample: 1,
            }),
        ];
        for (i, kind) in evs.into_iter().enumerate() {
            let e = Event {
                v: 1,
                id: i as u64 + 1,
                ts: 1_700_000_000_000,
                kind,
            };
            let line = e.to_json_line();
            assert!(!line.contains('\n'));
            assert!(line.contains("\"type\":"), "{line}");
            assert_eq!(Event::from_json_line(&line).unwrap(), e);
        }
    }

    #[test]
    fn bad_lines_are_classified() {
        assert!(matches!(
            Event::from_json_line("{\"v\":1,\"id\":1,\"ts\":1,\"ty"),
            Err(LineError::Json(_))
        ));
        assert!(matches!(
            Event::from_json_line(r#"{"v":1,"id":1,"ts":1,"type":"nope","data":{}}"#),
            Err(LineError::UnknownType(_))
        ));
        assert!(matches!(
            Event::from_json_line(r#"{"v":99,"id":1,"ts":1,"type":"decided","data":{}}"#),
            Err(LineError::NewerSchema(99))
        ));
        assert!(matches!(
            Event::from_json_line(r#"{"v":1,"id":1,"ts":1,"type":"decided","data":{}}"#),
            Err(LineError::Payload { .. })
        ));
    }
}
