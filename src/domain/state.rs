//! The project state: the fold of the journal's events.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::{
    Decision, DecisionKind, Event, EventId, EventKind, GenerationFailed, GenerationSettings, Name,
    Origin, Provenance, RoundScored, SampleId, Usage, Verdict,
};

/// Review status of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Accepted,
    Rejected,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Accepted => "accepted",
            Status::Rejected => "rejected",
        }
    }
}

/// One sample with everything that happened to it. Histories keep the
/// event id of each entry so an `undone` event can remove exactly it.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleState {
    pub id: SampleId,
    /// Text as first added. Shared, so a job's snapshot
    /// ([`crate::app::snapshot::lean`]) holds the same copy.
    pub original_text: Arc<str>,
    /// Intended label (one interned copy per class, not one per sample).
    pub label: Name,
    pub origin: Origin,
    /// Shared by the samples of one reply: replay hands a sample the
    /// previous sample's provenance when they are equal (see
    /// [`ProjectState::apply_owned`]), so the five samples of a generation
    /// reply hold one copy. Change one with [`Arc::make_mut`].
    pub provenance: Arc<Provenance>,
    /// Event that added it and when (Unix ms).
    pub added_event: EventId,
    pub added_ts: u64,
    pub edits: History<(EventId, Arc<str>)>,
    pub verdicts: History<(EventId, Verdict)>,
    pub decisions: History<(EventId, Decision)>,
    /// The denoiser's latest judgement (`noise_scored`).
    pub noise: Option<Box<super::NoiseScored>>,
}

impl SampleState {
    /// Current text (after edits).
    pub fn text(&self) -> &str {
        self.edits
            .last()
            .map(|(_, t)| &**t)
            .unwrap_or(&self.original_text)
    }
    /// [`Self::text`] as the state holds it: a job that keeps the text
    /// clones this `Arc` instead of copying the text.
    pub fn text_shared(&self) -> &Arc<str> {
        self.edits
            .last()
            .map(|(_, t)| t)
            .unwrap_or(&self.original_text)
    }
    pub fn is_edited(&self) -> bool {
        !self.edits.is_empty()
    }
    pub fn verdict(&self) -> Option<&Verdict> {
        self.verdicts.last().map(|(_, v)| v)
    }
    pub fn decision(&self) -> Option<&Decision> {
        self.decisions.last().map(|(_, d)| d)
    }
    pub fn status(&self) -> Status {
        match self.decision().map(|d| d.kind) {
            None => Status::Pending,
            Some(DecisionKind::Accept) => Status::Accepted,
            Some(DecisionKind::Reject) => Status::Rejected,
        }
    }
    /// Whether the relabel verdict agrees with the intended label
    /// (`None` without a parsable verdict).
    pub fn agrees(&self) -> Option<bool> {
        let v = self.verdict()?;
        v.label.as_ref().map(|l| *l == self.label)
    }
    /// The label the sample ends with: a label chosen with the decision,
    /// else (with `take_relabel`) the relabel verdict's, else the intended.
    /// Seeds and held-out examples keep their real label.
    pub fn effective_label(&self, take_relabel: bool) -> &str {
        if let Some(l) = self.decision().and_then(|d| d.label.as_deref()) {
            return l;
        }
        if take_relabel
            && self.origin == Origin::Generated
            && let Some(l) = self.verdict().and_then(|v| v.label.as_deref())
        {
            return l;
        }
        &self.label
    }
    /// [`Self::effective_label`] and where it comes from: the label `a`
    /// records on a pending example, the recorded one on a decided one.
    pub fn label_and_source(&self, take_relabel: bool) -> (&str, LabelSource) {
        let verdict = self.verdict().and_then(|v| v.label.as_deref());
        if let Some(l) = self.decision().and_then(|d| d.label.as_deref()) {
            let source = if l == self.label {
                LabelSource::Intended
            } else if Some(l) == verdict {
                LabelSource::Relabel
            } else {
                LabelSource::Edited
            };
            return (l, source);
        }
        let l = self.effective_label(take_relabel);
        if l != self.label {
            (l, LabelSource::Relabel)
        } else {
            (l, LabelSource::Intended)
        }
    }
    /// "seed", "generated", "edited", "validation", "test".
    pub fn origin_tag(&self) -> &'static str {
        if self.is_edited() {
            "edited"
        } else {
            self.origin.as_str()
        }
    }
}

/// Where the label an example ends with comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelSource {
    /// The label generation asked for.
    Intended,
    /// The relabeler's (taken with `take_relabel`).
    Relabel,
    /// Chosen by a person (`1`–`9`) and neither of those.
    Edited,
}

impl LabelSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LabelSource::Intended => "intended",
            LabelSource::Relabel => "relabel",
            LabelSource::Edited => "edited",
        }
    }
    /// The review row's mark after the label ("" for the intended one).
    pub fn mark(self) -> &'static str {
        match self {
            LabelSource::Intended => "",
            LabelSource::Relabel => "↻",
            LabelSource::Edited => "✎",
        }
    }
}

/// The person's last action as [`ProjectState::undo_action`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndoAction {
    /// (event, sample) of every event to undo, newest first.
    pub events: Vec<(EventId, SampleId)>,
    /// "accept of #88", "edit of #12", "bulk reject of 37 examples (…)".
    pub what: String,
}
/// Counts of attribute values: dimension → value → count (the same shape
/// as `embed::denoise::AttributeCounts`).
pub type AttributeCounts = BTreeMap<String, BTreeMap<String, u64>>;

/// Counts per class (by effective label).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ClassCounts {
    pub seed: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub pending: u64,
}

/// The fold of a journal.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectState {
    /// Samples in id order (ids strictly increase; gaps are possible when a
    /// garbled line was skipped).
    pub samples: Vec<SampleState>,
    /// Events applied.
    pub events: u64,
    pub last_event_id: EventId,
    pub failures: Vec<(EventId, GenerationFailed)>,
    /// Latest live generation settings, overriding the config file's.
    pub generation: Option<GenerationSettings>,
    /// Live class weight overrides.
    pub weights: BTreeMap<String, f64>,
    /// Live attribute value weights: dimension → value → weight (1.0 when
    /// absent).
    pub attribute_weights: BTreeMap<String, BTreeMap<String, f64>>,
    /// Live concurrency (`concurrency_changed`), overriding the config
    /// file's `max_concurrency` in the terminal UI.
    pub concurrency: Option<usize>,
    /// Cumulative LLM usage.
    pub usage: Usage,
    /// Usage per run, in order. A run records its usage as it goes (one
    /// `usage_recorded` per append, so a killed run still counts); records
    /// in a row with the same run name fold into one entry.
    pub runs: Vec<(String, Usage)>,
    pub rounds: Vec<RoundScored>,
    pub rationales: BTreeMap<String, Vec<String>>,
    /// The latest score of each judge, by judge name.
    pub judges: BTreeMap<String, super::JudgeScored>,
    /// The person's undoable events (`decided` by a key or a bulk rule,
    /// `edited`) not yet undone, oldest first. Automatic decisions (dedup,
    /// denoiser, rules `loop` runs) are never here: `u` is about the person.
    pub undo_stack: Vec<(EventId, SampleId)>,
    /// Relabel policy used by [`SampleState::effective_label`]: the
    /// config's, or the person's last `relabel_policy_changed`.
    pub take_relabel: bool,
    /// The policy `straddle.toml` sets (shown beside an override).
    pub take_relabel_config: bool,
    /// Whether a `relabel_policy_changed` was folded: the journal's policy
    /// then wins over `straddle.toml`'s (see `Project::set_config`).
    pub take_relabel_journaled: bool,
    /// Events that referenced unknown samples (hand edits, skipped lines).
    pub warnings: Vec<String>,
    /// Batches by local name: as planned, and the latest remote fields.
    pub batches: BTreeMap<String, (super::BatchPlanned, super::BatchUpdated)>,
}

impl Default for ProjectState {
    fn default() -> Self {
        ProjectState::new(true)
    }
}

impl ProjectState {
    pub fn new(take_relabel: bool) -> ProjectState {
        ProjectState {
            samples: Vec::new(),
            events: 0,
            last_event_id: 0,
            failures: Vec::new(),
            generation: None,
            weights: BTreeMap::new(),
            attribute_weights: BTreeMap::new(),
            concurrency: None,
            usage: Usage::default(),
            runs: Vec::new(),
            rounds: Vec::new(),
            rationales: BTreeMap::new(),
            judges: BTreeMap::new(),
            undo_stack: Vec::new(),
            take_relabel,
            take_relabel_config: take_relabel,
            take_relabel_journaled: false,
            warnings: Vec::new(),
            batches: BTreeMap::new(),
        }
    }

    /// Id the next added sample gets.
    pub fn next_sample_id(&self) -> SampleId {
        self.samples.last().map(|s| s.id + 1).unwrap_or(1)
    }

    /// Position of a sample in `samples`.
    pub fn index_of(&self, id: SampleId) -> Option<usize> {
        let guess = id.checked_sub(1)? as usize;
        if self.samples.get(guess).is_some_and(|s| s.id == id) {
            return Some(guess);
        }
        self.samples.binary_search_by_key(&id, |s| s.id).ok()
    }

    pub fn sample(&self, id: SampleId) -> Option<&SampleState> {
        self.index_of(id).map(|i| &self.samples[i])
    }

    fn sample_mut(&mut self, id: SampleId, event: EventId, ty: &str) -> Option<&mut SampleState> {
        match self.index_of(id) {
            Some(i) => Some(&mut self.samples[i]),
            None => {
                self.warnings.push(format!(
                    "event {event} ({ty}) refers to unknown sample {id}; ignored"
                ));
                None
            }
        }
    }

    /// Apply one event.
    pub fn apply(&mut self, ev: &Event) {
        self.apply_owned(ev.clone());
    }

    /// [`ProjectState::apply`] for an event the caller is done with: its
    /// payload (texts, provenance, verdicts, decisions) is moved into the
    /// state instead of cloned (journal replay applies many of these).
    pub fn apply_owned(&mut self, ev: Event) {
        self.events += 1;
        self.last_event_id = self.last_event_id.max(ev.id);
        let (id, ty) = (ev.id, ev.type_name());
        match ev.kind {
            EventKind::SampleAdded(a) => {
                if self.accepts_sample(id, &a) {
                    self.push_sample(id, ev.ts, a);
                }
            }
            EventKind::GenerationFailed(f) => self.failures.push((id, f)),
            EventKind::VerdictRecorded(v) => {
                if let Some(s) = self.sample_mut(v.sample, id, ty) {
                    s.verdicts.push((id, v.verdict));
                }
            }
            EventKind::Decided(d) => {
                if let Some(s) = self.sample_mut(d.sample, id, ty) {
                    let person = d.decision.by.is_person();
                    s.decisions.push((id, d.decision));
                    if person {
                        self.undo_stack.push((id, d.sample));
                    }
                }
            }
            EventKind::Edited(e) => {
                if let Some(s) = self.sample_mut(e.sample, id, ty) {
                    s.edits.push((id, e.text.into()));
                    self.undo_stack.push((id, e.sample));
                }
            }
            EventKind::Undone(u) => {
                let target = u.event;
                if let Some(s) = self.sample_mut(u.sample, id, ty) {
                    s.decisions.retain(|(id, _)| *id != target);
                    s.edits.retain(|(id, _)| *id != target);
                    s.verdicts.retain(|(id, _)| *id != target);
                }
                if let Some(pos) = self.undo_stack.iter().rposition(|(id, _)| *id == target) {
                    self.undo_stack.remove(pos);
                }
            }
            EventKind::SettingsChanged(s) => self.generation = Some(s.generation),
            EventKind::RelabelPolicyChanged(p) => {
                self.take_relabel = p.take_relabel;
                self.take_relabel_journaled = true;
            }
            EventKind::WeightChanged(w) => {
                self.weights.insert(w.class, w.weight);
            }
            EventKind::AttributeWeightChanged(w) => {
                self.attribute_weights
                    .entry(w.attribute)
                    .or_default()
                    .insert(w.value, w.weight);
            }
            EventKind::ConcurrencyChanged(c) => self.concurrency = Some(c.concurrency),
            EventKind::UsageRecorded(u) => {
                self.usage.add(&u.usage);
                match self.runs.last_mut() {
                    Some((run, usage)) if *run == u.run => usage.add(&u.usage),
                    _ => self.runs.push((u.run, u.usage)),
                }
            }
            EventKind::RoundScored(r) => self.rounds.push(r),
            EventKind::JudgeScored(j) => {
                self.judges.insert(j.report.judge.clone(), j);
            }
            EventKind::RationalesAdded(r) => {
                self.rationales
                    .entry(r.class)
                    .or_default()
                    .extend(r.rationales);
            }
            EventKind::NoiseScored(n) => {
                if let Some(s) = self.sample_mut(n.sample, id, ty) {
                    s.noise = Some(Box::new(n));
                }
            }
            EventKind::BatchPlanned(b) => {
                let up = super::BatchUpdated {
                    batch: b.batch.clone(),
                    ..Default::default()
                };
                self.batches.insert(b.batch.clone(), (b, up));
            }
            EventKind::BatchUpdated(u) => {
                if let Some((_, cur)) = self.batches.get_mut(&u.batch) {
                    let keep = |new: Option<String>, old: &mut Option<String>| {
                        if new.is_some() {
                            *old = new;
                        }
                    };
                    keep(u.input_file_id, &mut cur.input_file_id);
                    keep(u.remote_id, &mut cur.remote_id);
                    keep(u.status, &mut cur.status);
                    keep(u.output_file_id, &mut cur.output_file_id);
                    keep(u.error_file_id, &mut cur.error_file_id);
                } else {
                    self.warnings
                        .push(format!("event {id}: batch {} was never planned", u.batch));
                }
            }
        }
    }

    /// Sample ids must increase; a `sample_added` that breaks that is
    /// ignored with a warning.
    fn accepts_sample(&mut self, event: EventId, a: &super::SampleAdded) -> bool {
        if self.samples.last().is_some_and(|s| s.id >= a.id) {
            self.warnings.push(format!(
                "event {event}: sample id {} is not above the previous one; ignored",
                a.id
            ));
            return false;
        }
        true
    }

    fn push_sample(&mut self, event: EventId, ts: u64, a: super::SampleAdded) {
        let provenance = self.share_provenance(a.provenance);
        self.samples.push(SampleState {
            id: a.id,
            original_text: a.text.into(),
            label: a.label.into(),
            origin: a.origin,
            provenance,
            added_event: event,
            added_ts: ts,
            edits: History::new(),
            verdicts: History::new(),
            decisions: History::new(),
            noise: None,
        });
    }

    /// `p` as a shared provenance: one of the last two samples' when equal
    /// (the samples of one reply are added in a row; one marked as a
    /// duplicate between them has a provenance of its own), else `p`'s own
    /// allocation. The request id tells replies apart before the whole
    /// comparison.
    fn share_provenance(&self, p: Provenance) -> Arc<Provenance> {
        let same = |prev: &&SampleState| {
            prev.provenance.request_id == p.request_id && *prev.provenance == p
        };
        match self.samples.iter().rev().take(2).find(same) {
            Some(prev) => prev.provenance.clone(),
            None => Arc::new(p),
        }
    }

    /// The most recent undoable event: (event id, sample id).
    pub fn undo_target(&self) -> Option<(EventId, SampleId)> {
        self.undo_stack.last().copied()
    }

    /// What `u` undoes: the person's last action, whole. One key or edit
    /// is one event; a bulk rule is every decision it recorded (the run of
    /// consecutive events on top of the stack made by the same rule).
    /// `None` when the person has nothing left to undo.
    pub fn undo_action(&self) -> Option<UndoAction> {
        let &(event, sample) = self.undo_stack.last()?;
        let s = self.sample(sample)?;
        let Some(d) = s
            .decisions
            .iter()
            .find(|(id, _)| *id == event)
            .map(|(_, d)| d)
        else {
            return Some(UndoAction {
                events: vec![(event, sample)],
                what: format!("edit of #{sample}"),
            });
        };
        let verb = match d.kind {
            DecisionKind::Accept => "accept",
            DecisionKind::Reject => "reject",
        };
        let super::Actor::Rule(rule) = &d.by else {
            let label = d
                .label
                .as_ref()
                .map(|l| format!(" as {l}"))
                .unwrap_or_default();
            return Some(UndoAction {
                events: vec![(event, sample)],
                what: format!("{verb} of #{sample}{label}"),
            });
        };
        let same_rule = |id: EventId, sample: SampleId| {
            self.sample(sample).is_some_and(|s| {
                s.decisions
                    .iter()
                    .any(|(e, d)| *e == id && matches!(&d.by, super::Actor::Rule(r) if r == rule))
            })
        };
        let mut events = vec![(event, sample)];
        for &(e, s) in self.undo_stack.iter().rev().skip(1) {
            if e + 1 != events.last().expect("one").0 || !same_rule(e, s) {
                break;
            }
            events.push((e, s));
        }
        let what = match events.len() {
            1 => format!("{verb} of #{sample} ({rule})"),
            n => format!("bulk {verb} of {n} examples ({rule})"),
        };
        Some(UndoAction { events, what })
    }

    /// Counts per class, for the given class names (plus any other label
    /// that occurs). Seeds count as `seed` only; held-out examples are not
    /// counted.
    pub fn class_counts(&self, classes: &[String]) -> BTreeMap<String, ClassCounts> {
        let mut out: BTreeMap<String, ClassCounts> = classes
            .iter()
            .map(|c| (c.clone(), ClassCounts::default()))
            .collect();
        for s in &self.samples {
            let c = match s.origin {
                Origin::Seed => {
                    out.entry(s.label.to_string()).or_default().seed += 1;
                    continue;
                }
                Origin::Validation | Origin::Test => continue,
                Origin::Generated => out
                    .entry(s.effective_label(self.take_relabel).to_string())
                    .or_default(),
            };
            match s.status() {
                Status::Pending => c.pending += 1,
                Status::Accepted => c.accepted += 1,
                Status::Rejected => c.rejected += 1,
            }
        }
        out
    }

    /// Seeds of a class, in order.
    pub fn seeds_of<'a>(&'a self, class: &'a str) -> impl Iterator<Item = &'a SampleState> + 'a {
        self.samples
            .iter()
            .filter(move |s| s.origin == Origin::Seed && s.label == class)
    }

    /// Counts of attribute values over generated examples with one of
    /// `statuses` (e.g. accepted, or accepted + pending):
    /// dimension → value → count. The shape `embed::denoise` scores
    /// over-representation against, and what the `attributes` strategy
    /// draws rare values from.
    pub fn attribute_counts(&self, statuses: &[Status]) -> AttributeCounts {
        let mut out = AttributeCounts::new();
        for s in self.generated() {
            if !statuses.contains(&s.status()) {
                continue;
            }
            for (d, v) in &s.provenance.attributes {
                *out.entry(d.clone())
                    .or_default()
                    .entry(v.clone())
                    .or_default() += 1;
            }
        }
        out
    }

    /// Coverage per attribute value of the generated examples (by status)
    /// and the seeds: dimension → value → counts. `declared` (the
    /// config's `[attributes.*]`) makes values nothing has yet show with
    /// zeros; values only found in the data are included too.
    pub fn attribute_coverage(
        &self,
        declared: &BTreeMap<String, super::AttributeDim>,
    ) -> BTreeMap<String, BTreeMap<String, ClassCounts>> {
        let mut out: BTreeMap<String, BTreeMap<String, ClassCounts>> = BTreeMap::new();
        for (d, a) in declared {
            let values = out.entry(d.clone()).or_default();
            for v in a.values.keys() {
                values.entry(v.clone()).or_default();
            }
        }
        for s in &self.samples {
            if s.origin.is_heldout() {
                continue;
            }
            for (d, v) in &s.provenance.attributes {
                let c = out
                    .entry(d.clone())
                    .or_default()
                    .entry(v.clone())
                    .or_default();
                match (s.origin, s.status()) {
                    (Origin::Seed, _) => c.seed += 1,
                    (_, Status::Pending) => c.pending += 1,
                    (_, Status::Accepted) => c.accepted += 1,
                    (_, Status::Rejected) => c.rejected += 1,
                }
            }
        }
        out
    }

    /// Live weight of an attribute value (1.0 unless changed).
    pub fn attribute_weight(&self, attribute: &str, value: &str) -> f64 {
        self.attribute_weights
            .get(attribute)
            .and_then(|m| m.get(value))
            .copied()
            .unwrap_or(1.0)
    }

    /// Generated samples.
    pub fn generated(&self) -> impl Iterator<Item = &SampleState> {
        self.samples
            .iter()
            .filter(|s| s.origin == Origin::Generated)
    }
}

/// A sample's history of one kind (edits, verdicts, decisions), oldest
/// first: one shared allocation holding exactly its entries, none while
/// empty. Most samples get one verdict and at most one decision, so a
/// history is one entry, held in the allocation itself; a `Vec` would
/// carry its capacity word and grow to room for four. Shared (`Arc`), so
/// the copy of the state a background job reads
/// ([`crate::app::snapshot::lean`]) holds the same histories instead of
/// copying every verdict. A thin pointer (8 bytes, where an `Arc<[T]>` is
/// 16): a sample holds three. Reads like a slice (`last()`, `len()`,
/// `iter()`); changes copy it (a history is a few entries).
#[derive(Clone)]
pub struct History<T>(Option<Arc<Entries<T>>>);

/// What a non-empty [`History`] points at: its one entry inline, or (rare:
/// a sample relabelled or decided again) a slice of them.
enum Entries<T> {
    One(T),
    Many(Box<[T]>),
}

impl<T> History<T> {
    pub fn new() -> History<T> {
        History(None)
    }
    fn of(mut v: Vec<T>) -> History<T> {
        History(match v.len() {
            0 => None,
            1 => Some(Arc::new(Entries::One(v.pop().expect("one entry")))),
            _ => Some(Arc::new(Entries::Many(v.into_boxed_slice()))),
        })
    }
    /// Whether `self` and `other` are one allocation (both empty, or the
    /// same shared entries).
    pub fn shares(&self, other: &History<T>) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl<T: Clone> History<T> {
    /// Append one entry (a new slice of the new length).
    pub fn push(&mut self, item: T) {
        let mut v = Vec::with_capacity(self.len() + 1);
        v.extend_from_slice(self);
        v.push(item);
        *self = History::of(v);
    }
    /// Keep the entries `keep` holds for.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        if self.is_empty() {
            return;
        }
        let v: Vec<T> = self.iter().filter(|x| keep(x)).cloned().collect();
        if v.len() != self.len() {
            *self = History::of(v);
        }
    }
}

impl<T> Default for History<T> {
    fn default() -> History<T> {
        History::new()
    }
}

impl<T: PartialEq> PartialEq for History<T> {
    fn eq(&self, other: &History<T>) -> bool {
        **self == **other
    }
}

impl<T> std::ops::Deref for History<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self.0.as_deref() {
            None => &[],
            Some(Entries::One(t)) => std::slice::from_ref(t),
            Some(Entries::Many(v)) => v,
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for History<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => f.write_str("None"),
            Some(_) => f.debug_tuple("Some").field(&&**self).finish(),
        }
    }
}

impl<T> From<Vec<T>> for History<T> {
    fn from(v: Vec<T>) -> History<T> {
        History::of(v)
    }
}

impl<T> FromIterator<T> for History<T> {
    fn from_iter<I: IntoIterator<Item = T>>(it: I) -> History<T> {
        History::of(it.into_iter().collect())
    }
}

impl<'a, T> IntoIterator for &'a History<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        Actor, Decided, Edited, NewSample, SampleAdded, Undone, VerdictMethod, VerdictRecorded,
    };

    fn ev(id: u64, kind: EventKind) -> Event {
        Event {
            v: 1,
            id,
            ts: id,
            kind,
        }
    }

    fn add(id: u64, label: &str, origin: Origin) -> EventKind {
        EventKind::SampleAdded(SampleAdded::new(
            id,
            NewSample {
                text: format!("text {id}"),
                label: label.into(),
                origin,
                provenance: Provenance::default(),
            },
        ))
    }

    fn decide(sample: u64, kind: DecisionKind, label: Option<&str>) -> EventKind {
        EventKind::Decided(Decided {
            sample,
            decision: Decision {
                kind,
                label: label.map(Into::into),
                reason: None,
                by: Actor::Key("a".into()),
            },
        })
    }

    #[test]
    fn fold_decisions_edits_and_undo() {
        let mut st = ProjectState::new(true);
        let events = vec![
            ev(1, add(1, "A", Origin::Seed)),
            ev(2, add(2, "A", Origin::Generated)),
            ev(3, add(3, "B", Origin::Generated)),
            ev(
                4,
                EventKind::VerdictRecorded(VerdictRecorded {
                    sample: 3,
                    verdict: Verdict {
                        label: Some("A".into()),
                        confidence: [("A".to_string(), 0.8), ("B".to_string(), 0.2)].into(),
                        method: VerdictMethod::Logprobs,
                        votes: None,
                        raw: None,
                        model: None,
                        request_id: None,
                    },
                }),
            ),
            ev(5, decide(2, DecisionKind::Accept, None)),
            ev(6, decide(3, DecisionKind::Accept, None)),
            ev(7, decide(2, DecisionKind::Reject, None)),
            ev(
                8,
                EventKind::Edited(Edited {
                    sample: 2,
                    text: "new".into(),
                }),
            ),
        ];
        for e in &events {
            st.apply(e);
        }
        let s2 = st.sample(2).unwrap();
        assert_eq!(s2.status(), Status::Rejected);
        assert_eq!(s2.text(), "new");
        let s3 = st.sample(3).unwrap();
        assert_eq!(s3.agrees(), Some(false));
        assert_eq!(s3.effective_label(true), "A");
        assert_eq!(s3.effective_label(false), "B");
        let counts = st.class_counts(&["A".into(), "B".into()]);
        assert_eq!(counts["A"].seed, 1);
        assert_eq!(counts["A"].accepted, 1);
        assert_eq!(counts["A"].rejected, 1);
        assert_eq!(counts["B"], ClassCounts::default());

        // Undo the edit, then the reject: back to accepted with the old text.
        assert_eq!(st.undo_target(), Some((8, 2)));
        st.apply(&ev(
            9,
            EventKind::Undone(Undone {
                event: 8,
                sample: 2,
            }),
        ));
        assert_eq!(st.undo_target(), Some((7, 2)));
        st.apply(&ev(
            10,
            EventKind::Undone(Undone {
                event: 7,
                sample: 2,
            }),
        ));
        let s2 = st.sample(2).unwrap();
        assert_eq!(s2.text(), "text 2");
        assert_eq!(s2.status(), Status::Accepted);
        assert_eq!(st.undo_target(), Some((6, 3)));
    }

    /// A 200,000-sample project holds this many: the provenance lives
    /// behind the shared pointer, not in each sample; the label is an
    /// interned name (8 bytes) and the histories are exact slices.
    #[test]
    fn a_sample_stays_small_in_memory() {
        use std::mem::size_of;
        let size = size_of::<SampleState>();
        assert!(size <= 96, "SampleState is {size} bytes");
        assert_eq!(size_of::<History<(EventId, Verdict)>>(), 8);
        // A one-entry history is one allocation of the `Arc`'s counts and
        // the entry: no tag beside a verdict or a decision.
        assert_eq!(
            size_of::<Entries<(EventId, Verdict)>>(),
            size_of::<(EventId, Verdict)>()
        );
        assert_eq!(
            size_of::<Entries<(EventId, Decision)>>(),
            size_of::<(EventId, Decision)>()
        );
        // One per sample too (confidences boxed, rare strings boxed).
        let size = size_of::<Verdict>();
        assert!(size <= 64, "Verdict is {size} bytes");
        // Most samples are decided once.
        let size = size_of::<Decision>();
        assert!(size <= 40, "Decision is {size} bytes");
        // One per generation reply, shared by its samples (its rare
        // strings thin): 192 + the `Arc`'s 16 fit a 208-byte allocation.
        let size = size_of::<Provenance>();
        assert!(size <= 192, "Provenance is {size} bytes");
        // The denoiser's score, boxed, on a quarter of the samples.
        let size = size_of::<super::super::NoiseScored>();
        assert!(size <= 56, "NoiseScored is {size} bytes");
    }

    #[test]
    fn histories_hold_exactly_their_entries() {
        let mut h: History<u32> = History::new();
        assert!(h.is_empty());
        h.push(1);
        h.push(2);
        h.push(3);
        assert_eq!(&*h, [1, 2, 3]);
        h.retain(|x| *x != 2);
        assert_eq!(&*h, [1, 3]);
        let mut one = h.clone();
        one.retain(|x| *x == 3);
        assert_eq!(&*one, [3]);
        assert_eq!(
            format!("{one:?} {:?}", History::<u32>::new()),
            "Some([3]) None"
        );
        assert_eq!(h.last(), Some(&3));
        let g: History<u32> = vec![1, 3].into();
        assert_eq!(g, h);
        // Shared by its clones; a change makes its own slice.
        let mut c = h.clone();
        assert!(c.shares(&h));
        c.push(4);
        assert!(!c.shares(&h));
        assert_eq!(&*h, [1, 3]);
        h.retain(|_| false);
        assert!(h.is_empty() && h.shares(&History::new()));
    }

    #[test]
    fn unknown_samples_warn_and_gaps_resolve() {
        let mut st = ProjectState::new(true);
        st.apply(&ev(1, add(1, "A", Origin::Generated)));
        st.apply(&ev(2, add(3, "A", Origin::Generated)));
        st.apply(&ev(3, decide(2, DecisionKind::Accept, None)));
        st.apply(&ev(4, decide(3, DecisionKind::Accept, Some("B"))));
        assert_eq!(st.warnings.len(), 1);
        assert_eq!(st.sample(3).unwrap().effective_label(true), "B");
        assert_eq!(st.next_sample_id(), 4);
    }
}
