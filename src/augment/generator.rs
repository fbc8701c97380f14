//! Requests and replies of one project, with no I/O and no rules about
//! when to ask: the generation session (`app::session`) decides that and
//! calls this.
//!
//! [`Generator`] plans the next request (through the configured
//! [`strategy`](super::strategy)) ([`PlannedRequest`]: the chat
//! request, its provenance and what it is for) and turns a reply into
//! journal events: `sample_added` for every example found, a `decided`
//! reject for each duplicate (reason `duplicate`/`near_duplicate`, by
//! `Auto("dedup")`), `generation_failed` with the raw text for a reply that
//! yields nothing, `verdict_recorded` for a relabel. It does no I/O: the
//! caller sends the request, appends the events and keeps the state
//! current.
//!
//! Sample ids: `sample_added` events carry ids counted from
//! [`ProjectState::next_sample_id`] of the state passed to
//! [`Generator::on_reply`], so append the events of one reply before
//! handling the next.

use std::collections::BTreeMap;

use super::dedup::DedupIndex;
use super::dedup::Prepared;
use super::parse::{ParseContext, Parsed, Parser, REJECTED_KEY, word_range};
use super::relabel::{RelabelReply, label_schema, verdict_from};
use super::sampling::{ClassSchedule, splitmix64};
use super::strategy::{self, Ask, ErrorSource, PlanContext, extrapolate::ErrorRound};
use super::templates::{
    self, ClassContext, RelabelContext as RelabelTmplContext, TaskContext, Templates,
};
use crate::domain::{
    Actor, Class, Decision, DecisionKind, EventKind, GenerationFailed, GenerationSettings,
    NewSample, Origin, ProjectConfig, ProjectState, Provenance, RelabelContext, RelabelSettings,
    SampleAdded, SampleId, Strategy, TaskConfig, VerdictRecorded,
};
use crate::llm::{ChatRequest, ChatResponse, Message};

/// What a planned request is for.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum RequestKind {
    /// New examples for class `target`.
    Generate { target: String },
    /// Relabel one sample.
    Relabel { sample: SampleId },
}

/// A request ready to send, with what is needed to read its reply (a
/// batch file keeps it as one JSON line, see `app::batch`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PlannedRequest {
    pub request: ChatRequest,
    pub kind: RequestKind,
    /// Provenance recorded on every sample (or failure) of this request.
    pub provenance: Provenance,
    /// Examples asked for (generate).
    pub n: usize,
    /// Texts shown as examples (generate: not echoes, dedup judges them).
    pub shown_examples: Vec<String>,
    /// Classes offered (relabel).
    pub labels: Vec<String>,
}

impl PlannedRequest {
    /// The engine job that runs it, tagged `tag`.
    pub fn job(&self, tag: u64) -> crate::engine::Job {
        crate::engine::Job::new(self.request.clone(), tag)
    }

    /// The rendered prompt (all message contents).
    pub fn prompt(&self) -> String {
        self.request
            .messages
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n\n")
    }
}

/// A finished reply.
pub type Reply = ChatResponse;

/// Key in `Provenance::extra` holding the request counter.
pub const REQUEST_KEY: &str = "request";
/// Key in `Provenance::extra` holding the seed stream of the run that
/// planned the request (see [`stream_seed`]).
pub const STREAM_KEY: &str = "stream";
/// Key in `Provenance::extra` naming the sample a duplicate repeats.
pub const DUPLICATE_OF_KEY: &str = "duplicate_of";

/// Plans requests and reads replies. See the module docs.
#[derive(Debug, Clone)]
pub struct Generator {
    task: TaskConfig,
    classes: Vec<Class>,
    settings: GenerationSettings,
    relabel: RelabelSettings,
    model: String,
    templates: Templates,
    counter: u64,
    dedup: DedupIndex,
    seeds: BTreeMap<String, Vec<String>>,
    max_words: usize,
    /// Words in the shortest and longest seed.
    seed_words: Option<(usize, usize)>,
    /// Learnt from replies: the server returns logprobs / honours `n`.
    logprobs_ok: bool,
    n_ok: bool,
    /// S3 rationales per class (`rationales_added`), drawn from when the
    /// `use_rationales` setting is on.
    rationales: BTreeMap<String, Vec<String>>,
    /// Examples per class and per (class, minor) pair that the next plan
    /// schedules against: the session sets it before every plan
    /// ([`Generator::set_schedule`]: what was yielded + what is in
    /// flight); on its own the generator starts from the state's counts
    /// and adds each request it plans at its `n`.
    schedule: ClassSchedule,
    /// This run's seed stream: one past the highest recorded.
    stream: u64,
    /// Attribute dimensions of the config.
    attributes: BTreeMap<String, crate::domain::AttributeDim>,
    /// Live attribute value weights.
    attribute_weights: BTreeMap<String, BTreeMap<String, f64>>,
    /// Generated examples per attribute value: accepted + pending at
    /// construction plus what every
    /// planned request asks for, like `schedule`.
    attribute_counts: crate::domain::AttributeCounts,
    /// Attribute tags of the seeds, parallel to `seeds`.
    seed_attributes: BTreeMap<String, Vec<BTreeMap<String, String>>>,
    /// `[strategy.mix] exemplars`.
    mix_exemplars: crate::domain::MixExemplars,
    /// Sentence vectors of the seeds, parallel to `seeds` (a class is
    /// absent until all its seeds have one): `mix` shows seeds near the
    /// other class from them ([`Generator::set_seed_vectors`]).
    seed_vectors: BTreeMap<String, Vec<Vec<f32>>>,
    /// Reads generate replies (the parser's classes, task and limits);
    /// made again when the classes change.
    reader: ReplyReader,
}

/// What reading a generate reply takes from a [`Generator`] — the
/// parser of its classes, task and word limits — cut loose from it, so
/// a reply can be read ahead of its turn on another thread (a batch
/// ingest reads the next lines while the session decides on this one).
/// Reading is everything order-independent about a reply: parsing it,
/// the strategy's filter, and each text's normal form, shingles and
/// signature for the dedup; whether a text is a duplicate is decided in
/// order ([`Generator::on_reply_read`]).
#[derive(Debug, Clone)]
pub struct ReplyReader {
    /// Unique per reader made ([`READERS`]): a read is used only by the
    /// generator whose reader it came from, while that reader is current.
    id: u64,
    parser: std::sync::Arc<Parser>,
}

/// Readers made so far in this process (ids of [`ReplyReader`]s).
static READERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A generate reply read by a [`ReplyReader`].
#[derive(Debug)]
pub struct ReadReply {
    reader: u64,
    /// The parse, its items already through the strategy's filter.
    parsed: Parsed,
    /// Per item, its dedup preparation.
    prepared: Vec<Prepared>,
}

impl ReplyReader {
    fn new(
        task: &TaskConfig,
        classes: &[Class],
        max_words: usize,
        seed_words: Option<(usize, usize)>,
    ) -> ReplyReader {
        let base = ParseContext {
            class_names: classes.iter().map(|c| c.name.clone()).collect(),
            class_descriptions: classes.iter().map(|c| c.description.clone()).collect(),
            task: task.description.clone(),
            max_words,
            seed_words,
            ..ParseContext::default()
        };
        ReplyReader {
            id: READERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            parser: std::sync::Arc::new(Parser::new(&base)),
        }
    }

    /// Read a reply to `planned`; `None` for a request that is not a
    /// generate request (a relabel's reply is read in turn).
    pub fn read(&self, planned: &PlannedRequest, reply: &Reply) -> Option<ReadReply> {
        matches!(planned.kind, RequestKind::Generate { .. })
            .then(|| self.read_generate(planned, reply))
    }

    fn read_generate(&self, planned: &PlannedRequest, reply: &Reply) -> ReadReply {
        let mut parsed = self.parser.parse(
            &reply.text,
            &planned.prompt(),
            &planned.shown_examples,
            reply.finish_reason.as_deref() == Some("length"),
            planned.n,
        );
        let strategy = planned
            .provenance
            .strategy
            .as_deref()
            .and_then(|s| s.parse::<Strategy>().ok())
            .map(strategy::get);
        parsed
            .items
            .retain(|t| strategy.is_none_or(|s| s.keep(planned, t)));
        let prepared = parsed
            .items
            .iter()
            .map(|t| DedupIndex::prepare(t))
            .collect();
        ReadReply {
            reader: self.id,
            parsed,
            prepared,
        }
    }
}

/// Accepted + pending generated examples per attribute value: what the
/// `attributes` strategy's inverse-frequency draw plans against.
pub fn attribute_counts_from(state: &ProjectState) -> crate::domain::AttributeCounts {
    use crate::domain::Status;
    state.attribute_counts(&[Status::Accepted, Status::Pending])
}

/// Accepted + pending generated examples (duplicates are rejected, so not
/// among them) per class, by the label that would be exported, and per
/// intended/minor pair: what the deficit scheduler plans against, before
/// the requests in flight are added.
pub fn schedule_from(state: &ProjectState, classes: &[Class]) -> ClassSchedule {
    let names: Vec<String> = classes.iter().map(|c| c.name.clone()).collect();
    let counts = state
        .class_counts(&names)
        .into_iter()
        .map(|(k, c)| (k, (c.accepted + c.pending) as f64));
    let mut pairs: BTreeMap<(String, String), f64> = BTreeMap::new();
    for s in state.generated() {
        if s.status() == crate::domain::Status::Rejected {
            continue;
        }
        if let Some(m) = &s.provenance.minor {
            *pairs
                .entry((s.label.to_string(), m.to_string()))
                .or_insert(0.0) += 1.0;
        }
    }
    ClassSchedule::new(counts, pairs)
}

impl Generator {
    /// A driver for a project. `classes` and `settings` are the live ones
    /// (`Project::classes`, `Project::generation_settings`).
    pub fn new(
        config: &ProjectConfig,
        classes: Vec<Class>,
        settings: GenerationSettings,
        templates: Templates,
        state: &ProjectState,
    ) -> Generator {
        let mut seeds: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut seed_attributes: BTreeMap<String, Vec<BTreeMap<String, String>>> = BTreeMap::new();
        let mut longest = 0;
        for s in state.samples.iter().filter(|s| s.origin == Origin::Seed) {
            longest = longest.max(s.text().split_whitespace().count());
            seeds
                .entry(s.label.to_string())
                .or_default()
                .push(s.text().to_string());
            seed_attributes
                .entry(s.label.to_string())
                .or_default()
                .push(s.provenance.attributes.clone());
        }
        let counter = next_counter(state);
        Generator {
            schedule: schedule_from(state, &classes),
            stream: next_stream(state),
            task: config.task.clone(),
            classes,
            dedup: DedupIndex::from_state(state, settings.dedup_threshold),
            settings,
            relabel: config.relabel.clone(),
            model: config.backend.model.clone(),
            templates,
            counter,
            seeds,
            max_words: (longest * 4).max(60),
            seed_words: word_range(
                state
                    .samples
                    .iter()
                    .filter(|s| s.origin == Origin::Seed)
                    .map(|s| s.text()),
            ),
            logprobs_ok: true,
            n_ok: true,
            rationales: state.rationales.clone(),
            attributes: config.attributes.clone(),
            attribute_weights: state.attribute_weights.clone(),
            attribute_counts: attribute_counts_from(state),
            seed_attributes,
            mix_exemplars: config.strategy.mix.exemplars,
            seed_vectors: BTreeMap::new(),
            reader: ReplyReader::new(&config.task, &[], 0, None),
        }
        .with_reader()
    }

    /// The same generator with its reader made from its classes, task
    /// and limits.
    fn with_reader(mut self) -> Generator {
        self.reader = ReplyReader::new(&self.task, &self.classes, self.max_words, self.seed_words);
        self
    }

    /// The reader of this generator's replies (see [`ReplyReader`]).
    pub fn reader(&self) -> ReplyReader {
        self.reader.clone()
    }

    /// The seeds' sentence vectors per class, in the seeds' journal order
    /// (a class whose count differs from its seeds' is ignored): from the
    /// next request on, `mix` with `exemplars = "boundary"` shows each
    /// class's seeds nearest the other class of the pair.
    pub fn set_seed_vectors(&mut self, vectors: BTreeMap<String, Vec<Vec<f32>>>) {
        self.seed_vectors = vectors
            .into_iter()
            .filter(|(c, v)| self.seeds.get(c).is_some_and(|s| s.len() == v.len()))
            .collect();
    }

    /// Whether the seeds' vectors of at least two classes are known.
    pub fn has_seed_vectors(&self) -> bool {
        self.seed_vectors.len() >= 2
    }

    /// Use a new weight for one attribute value from the next request on.
    pub fn set_attribute_weight(&mut self, attribute: &str, value: &str, weight: f64) {
        self.attribute_weights
            .entry(attribute.to_string())
            .or_default()
            .insert(value.to_string(), weight);
    }

    /// The attribute dimensions requests are planned with.
    pub fn attributes(&self) -> &BTreeMap<String, crate::domain::AttributeDim> {
        &self.attributes
    }

    /// Take the rationales recorded in `state` (after `rationales_added`).
    pub fn set_rationales(&mut self, state: &ProjectState) {
        self.rationales = state.rationales.clone();
    }

    /// The relabel settings.
    pub fn relabel_settings(&self) -> &RelabelSettings {
        &self.relabel
    }

    /// Whether a relabel prompt may offer the classes nearest to the text
    /// instead of the picked ones: `context = "auto"` with more classes
    /// than `all_max_classes` (PromptMix relabels with the 5 classes
    /// nearest by sentence embedding).
    pub fn relabels_nearest(&self) -> bool {
        self.relabel.context == RelabelContext::Auto
            && self.classes.len() > self.relabel.all_max_classes
    }

    pub fn settings(&self) -> &GenerationSettings {
        &self.settings
    }

    /// Use new settings from the next request on (a changed dedup threshold
    /// re-indexes from `state`).
    pub fn set_settings(&mut self, settings: GenerationSettings, state: &ProjectState) {
        if settings.dedup_threshold != self.settings.dedup_threshold {
            self.dedup = DedupIndex::from_state(state, settings.dedup_threshold);
        }
        self.settings = settings;
    }

    pub fn set_classes(&mut self, classes: Vec<Class>) {
        self.classes = classes;
        self.reader = ReplyReader::new(&self.task, &self.classes, self.max_words, self.seed_words);
    }

    /// Plan the next request against these counts (the session: what
    /// was yielded + the expected yield of what is in flight).
    pub fn set_schedule(&mut self, schedule: ClassSchedule) {
        self.schedule = schedule;
    }

    pub fn templates(&self) -> &Templates {
        &self.templates
    }

    /// The seed stream this generator draws from (a fresh one per run:
    /// one past the highest in the journal).
    pub fn stream(&self) -> u64 {
        self.stream
    }

    /// Draw from stream `stream` instead: replays the run that recorded it
    /// (with the same settings, state and request counter).
    pub fn set_stream(&mut self, stream: u64) {
        self.stream = stream;
    }

    /// Number of the next generate request.
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// Plan the next generate request, asking for `per_request` examples.
    pub fn plan_generate(&mut self) -> anyhow::Result<PlannedRequest> {
        self.plan_generate_n(self.settings.per_request)
    }

    /// Plan the next generate request, asking for `n` examples.
    pub fn plan_generate_n(&mut self, n: usize) -> anyhow::Result<PlannedRequest> {
        let p = self.peek_generate(n)?;
        self.counter += 1;
        if let RequestKind::Generate { target } = &p.kind {
            self.schedule
                .add(target, p.provenance.minor.as_deref(), n as f64);
        }
        for (d, v) in &p.provenance.attributes {
            *self
                .attribute_counts
                .entry(d.clone())
                .or_default()
                .entry(v.clone())
                .or_default() += n as u64;
        }
        Ok(p)
    }

    /// What strategies read to plan (see [`PlanContext`]).
    pub fn plan_context(&self) -> PlanContext<'_> {
        PlanContext {
            task: &self.task,
            classes: &self.classes,
            settings: &self.settings,
            templates: &self.templates,
            seeds: &self.seeds,
            rationales: &self.rationales,
            model: &self.model,
            counter: self.counter,
            schedule: &self.schedule,
            stream: self.stream,
            attributes: &self.attributes,
            attribute_weights: &self.attribute_weights,
            attribute_counts: &self.attribute_counts,
            seed_attributes: &self.seed_attributes,
            mix_exemplars: self.mix_exemplars,
            seed_vectors: &self.seed_vectors,
        }
    }

    /// The next generate request of the configured strategy without
    /// consuming it (`straddle prompt`).
    pub fn peek_generate(&self, n: usize) -> anyhow::Result<PlannedRequest> {
        strategy::get(self.settings.strategy).plan(&self.plan_context(), &Ask { n, error: None })
    }

    /// Plan the next request of an S3 extrapolation round (`None` when the
    /// round has handed out all its requests). Extrapolation requests do
    /// not use the request counter of the settings-planned ones.
    pub fn plan_error(&self, round: &mut ErrorRound) -> Option<anyhow::Result<PlannedRequest>> {
        let (mistake, repeat, n) = round.next_ask()?;
        let ask = Ask {
            n,
            error: Some(ErrorSource {
                mistake: &mistake,
                round: round.round,
                repeat,
            }),
        };
        Some(strategy::get(Strategy::Extrapolate).plan(&self.plan_context(), &ask))
    }

    fn task_ctx(&self) -> TaskContext {
        TaskContext {
            name: self.task.name.clone(),
            description: self.task.description.clone(),
        }
    }

    /// What the relabel request depends on besides the text: model,
    /// template hash and relabel settings. A judge report is valid for
    /// this fingerprint only.
    pub fn relabel_fingerprint(&self) -> String {
        relabel_fingerprint(&self.model, &self.templates, &self.relabel)
    }

    /// Generated samples still to relabel: no verdict and not rejected as
    /// duplicates.
    pub fn needs_relabel(state: &ProjectState) -> Vec<SampleId> {
        state
            .generated()
            .filter(|s| s.verdict().is_none() && !is_dup_rejected(s))
            .map(|s| s.id)
            .collect()
    }

    /// The classes a relabel prompt offers for a sample: `nearest` (class
    /// names, from embeddings) when [`relabels_nearest`](Self::relabels_nearest).
    fn relabel_classes(
        &self,
        prov: &Provenance,
        intended: &str,
        nearest: Option<&[String]>,
    ) -> Vec<&Class> {
        if let Some(names) = nearest.filter(|n| n.len() >= 2 && self.relabels_nearest()) {
            let v: Vec<&Class> = self
                .classes
                .iter()
                .filter(|c| names.contains(&c.name))
                .collect();
            if v.len() >= 2 {
                return v;
            }
        }
        let all = || self.classes.iter().collect::<Vec<_>>();
        let picked = || {
            let v: Vec<&Class> = self
                .classes
                .iter()
                .filter(|c| c.name == intended || prov.classes.iter().any(|n| *n == c.name))
                .collect();
            if v.len() < 2 { all() } else { v }
        };
        match self.relabel.context {
            RelabelContext::All => all(),
            RelabelContext::Picked => picked(),
            RelabelContext::Auto if self.classes.len() <= self.relabel.all_max_classes => all(),
            RelabelContext::Auto => picked(),
        }
    }

    /// Plan the relabel of one sample.
    pub fn plan_relabel(
        &self,
        state: &ProjectState,
        sample: SampleId,
    ) -> anyhow::Result<PlannedRequest> {
        self.plan_relabel_among(state, sample, None)
    }

    /// [`plan_relabel`](Self::plan_relabel) offering the classes `nearest`
    /// to the text (by embedding) when there are too many to offer all.
    pub fn plan_relabel_among(
        &self,
        state: &ProjectState,
        sample: SampleId,
        nearest: Option<&[String]>,
    ) -> anyhow::Result<PlannedRequest> {
        let s = state
            .sample(sample)
            .ok_or_else(|| anyhow::anyhow!("no sample {sample}"))?;
        let r = &self.relabel;
        let offered = self.relabel_classes(&s.provenance, &s.label, nearest);
        let labels: Vec<String> = offered.iter().map(|c| c.name.clone()).collect();
        let classes = offered
            .iter()
            .map(|c| ClassContext {
                name: c.name.clone(),
                description: c.description.clone(),
                // The first seeds: the same for every text, so the prompt
                // prefix is shared.
                examples: self
                    .seeds
                    .get(&c.name)
                    .map(|v| v.iter().take(r.shots).cloned().collect())
                    .unwrap_or_default(),
            })
            .collect();
        let ctx = RelabelTmplContext {
            task: self.task_ctx(),
            classes,
            text: s.text().to_string(),
            json: r.use_json_schema,
        };
        let prompt = self.templates.render(templates::RELABEL, &ctx)?;
        let mut request = ChatRequest::new(vec![Message::user(prompt)]);
        let longest = labels.iter().map(|l| l.len()).max().unwrap_or(8) as u32;
        request.max_tokens = Some(16 + longest);
        if r.use_logprobs && self.logprobs_ok {
            request.temperature = Some(0.0);
            request.logprobs = Some(true);
            request.top_logprobs = Some(20);
        } else if r.votes > 1 && self.n_ok {
            request.temperature = Some(r.vote_temperature);
            request.n = Some(r.votes as u32);
            // Seeded by the text, not the id, so a re-run hits the cache.
            request.seed = Some(
                s.text()
                    .bytes()
                    .fold(self.settings.seed, |h, b| splitmix64(h ^ u64::from(b))),
            );
        } else {
            request.temperature = Some(0.0);
        }
        if r.use_json_schema {
            // The client sends it in the form the server takes (or not at
            // all, and the label is parsed from free text).
            request.set_json_schema("label", label_schema(&labels));
        }
        let provenance = Provenance {
            template: Some(templates::RELABEL.into()),
            template_hash: Some(self.templates.hash(templates::RELABEL).into()),
            model: Some(self.model.as_str().into()),
            classes: labels.iter().map(Into::into).collect(),
            ..Provenance::default()
        };
        Ok(PlannedRequest {
            request,
            kind: RequestKind::Relabel { sample },
            provenance,
            n: 1,
            shown_examples: Vec::new(),
            labels,
        })
    }

    /// Turn a reply into events (see the module docs); new samples take
    /// ids from the state's next one.
    pub fn on_reply(
        &mut self,
        state: &ProjectState,
        planned: &PlannedRequest,
        reply: &Reply,
    ) -> Vec<EventKind> {
        self.on_reply_at(state.next_sample_id(), planned, reply)
    }

    /// Make room in the duplicate index for `n` more texts (see
    /// [`DedupIndex::reserve`]).
    pub fn reserve_dedup(&mut self, n: usize) {
        self.dedup.reserve(n);
    }

    /// [`on_reply`](Self::on_reply) with new samples numbered from
    /// `first_id`: for a caller with appends not yet in the state.
    pub fn on_reply_at(
        &mut self,
        first_id: SampleId,
        planned: &PlannedRequest,
        reply: &Reply,
    ) -> Vec<EventKind> {
        self.on_reply_read(first_id, planned, reply, None)
    }

    /// [`Generator::on_reply_at`] with the reply already read by this
    /// generator's [`ReplyReader`] (a read by another reader, or by one
    /// made before the classes changed, is not used: the reply is read
    /// again here). The events are the same as without it.
    pub fn on_reply_read(
        &mut self,
        first_id: SampleId,
        planned: &PlannedRequest,
        reply: &Reply,
        read: Option<ReadReply>,
    ) -> Vec<EventKind> {
        match &planned.kind {
            RequestKind::Generate { target } => {
                let read = match read {
                    Some(r) if r.reader == self.reader.id => r,
                    _ => self.reader.read_generate(planned, reply),
                };
                self.generated(first_id, planned, target, reply, read)
            }
            RequestKind::Relabel { sample } => self.relabelled(planned, *sample, reply),
        }
    }

    /// A request that failed for good (after the engine's retries). A
    /// generate request is recorded as `generation_failed`; a relabel
    /// leaves the sample without a verdict (a later relabel retries it).
    pub fn on_failure(
        &mut self,
        planned: &PlannedRequest,
        reason: &str,
        message: &str,
        raw: Option<&str>,
    ) -> Vec<EventKind> {
        match planned.kind {
            RequestKind::Generate { .. } => {
                let mut raw_text = message.to_string();
                if let Some(r) = raw {
                    raw_text.push('\n');
                    raw_text.push_str(r);
                }
                vec![EventKind::GenerationFailed(GenerationFailed {
                    reason: reason.to_string(),
                    raw: raw_text,
                    provenance: planned.provenance.clone(),
                })]
            }
            RequestKind::Relabel { .. } => Vec::new(),
        }
    }

    fn generated(
        &mut self,
        first_id: SampleId,
        planned: &PlannedRequest,
        target: &str,
        reply: &Reply,
        read: ReadReply,
    ) -> Vec<EventKind> {
        let mut prov = planned.provenance.clone();
        if !reply.model.is_empty() {
            prov.model = Some(reply.model.as_str().into());
        }
        if !reply.request_id.is_empty() {
            prov.request_id = Some(reply.request_id.as_str().into());
        }
        let ReadReply {
            parsed, prepared, ..
        } = read;
        // The parser's rejections go on the reply's first event.
        if !parsed.dropped.is_empty() {
            prov.extra.insert(REJECTED_KEY.into(), parsed.counts_json());
        }
        let items = parsed.items;
        if items.is_empty() {
            let reason = if reply.text.trim().is_empty() {
                "empty_reply"
            } else {
                "unparsable"
            };
            return vec![EventKind::GenerationFailed(GenerationFailed {
                reason: reason.into(),
                raw: reply.text.clone(),
                provenance: prov,
            })];
        }
        let mut out = Vec::with_capacity(items.len() * 2);
        let last = items.len() - 1;
        for (i, ((id, text), prep)) in (first_id..).zip(items).zip(prepared).enumerate() {
            let dup = self.dedup.check_insert_prepared(id, prep);
            // Cloned for every item but the last, which takes it.
            let mut p = if i == last {
                std::mem::take(&mut prov)
            } else {
                prov.clone()
            };
            if i > 0 {
                p.extra.remove(REJECTED_KEY);
            }
            if let Some(m) = dup {
                p.extra
                    .insert(DUPLICATE_OF_KEY.into(), serde_json::json!(m.of));
            }
            out.push(EventKind::SampleAdded(SampleAdded::new(
                id,
                NewSample {
                    text,
                    label: target.to_string(),
                    origin: Origin::Generated,
                    provenance: p,
                },
            )));
            if let Some(m) = dup {
                out.push(EventKind::decided(
                    id,
                    Decision {
                        kind: DecisionKind::Reject,
                        label: None,
                        reason: Some(m.kind.reason().into()),
                        by: Actor::Auto("dedup".into()),
                    },
                ));
            }
        }
        out
    }

    fn relabelled(
        &mut self,
        planned: &PlannedRequest,
        sample: SampleId,
        reply: &Reply,
    ) -> Vec<EventKind> {
        if planned.request.logprobs == Some(true) && reply.logprobs.is_none() {
            self.logprobs_ok = false;
        }
        if planned.request.n.is_some_and(|n| n > 1) && reply.choices.len() < 2 {
            self.n_ok = false;
        }
        let single = [reply.text.clone()];
        let choices: &[String] = if reply.choices.is_empty() {
            &single
        } else {
            &reply.choices
        };
        let verdict = verdict_from(
            &RelabelReply {
                choices,
                logprobs: reply.logprobs.as_deref(),
                model: (!reply.model.is_empty()).then(|| reply.model.clone()),
                request_id: (!reply.request_id.is_empty()).then(|| reply.request_id.clone()),
            },
            &planned.labels,
        );
        vec![EventKind::VerdictRecorded(VerdictRecorded {
            sample,
            verdict,
        })]
    }
}

/// What a relabel request depends on besides the text (see
/// [`Generator::relabel_fingerprint`]), for a front end that has no
/// generator yet (the terminal UI checks its judge report with it).
pub fn relabel_fingerprint(
    model: &str,
    templates: &Templates,
    relabel: &RelabelSettings,
) -> String {
    format!(
        "model={} template={} relabel={}",
        model,
        templates.hash(templates::RELABEL),
        serde_json::to_string(relabel).unwrap_or_default()
    )
}

/// Rejected by dedup.
pub fn is_dup_rejected(s: &crate::domain::SampleState) -> bool {
    s.decision().is_some_and(|d| {
        d.kind == DecisionKind::Reject && matches!(d.by, Actor::Auto(ref a) if a == "dedup")
    })
}

/// One past the highest seed stream recorded in the project (0 for none).
pub fn next_stream(state: &ProjectState) -> u64 {
    one_past_recorded(state, STREAM_KEY, |b| b.stream + 1)
}

/// One past the highest request counter recorded in the project.
fn next_counter(state: &ProjectState) -> u64 {
    one_past_recorded(state, REQUEST_KEY, |b| b.next_request)
}

/// One past the highest number under `key` in the provenance of samples
/// and failures, and at least what `batch_next` says each planned batch
/// has used up (0 for none).
fn one_past_recorded(
    state: &ProjectState,
    key: &str,
    batch_next: impl Fn(&crate::domain::BatchPlanned) -> u64,
) -> u64 {
    let of = |p: &Provenance| p.extra.get(key).and_then(|v| v.as_u64());
    state
        .samples
        .iter()
        .filter_map(|s| of(&s.provenance))
        .chain(state.failures.iter().filter_map(|(_, f)| of(&f.provenance)))
        .max()
        .map_or(0, |m| m + 1)
        .max(
            state
                .batches
                .values()
                .map(|(b, _)| batch_next(b))
                .max()
                .unwrap_or(0),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::sampling::alpha_pcts;
    use crate::domain::{Event, TaskConfig, VerdictMethod};

    pub(crate) fn config() -> ProjectConfig {
        let class = |n: &str, d: &str| Class {
            name: n.into(),
            description: d.into(),
            weight: 1.0,
        };
        ProjectConfig {
            task: TaskConfig {
                name: "trec6".into(),
                description: "Questions people ask a search engine.".into(),
            },
            classes: vec![
                class("HUM", "a person"),
                class("LOC", "a place"),
                class("NUM", "a number"),
            ],
            backend: Default::default(),
            generation: Default::default(),
            relabel: Default::default(),
            embeddings: Default::default(),
            attributes: Default::default(),
            denoise: crate::domain::DenoiseConfig::off(),
            judge: Default::default(),
            strategy: Default::default(),
        }
    }

    pub(crate) fn state_with_seeds() -> ProjectState {
        let mut st = ProjectState::new(true);
        let seeds = [
            ("Who wrote Hamlet?", "HUM"),
            ("Who invented the telephone?", "HUM"),
            ("Where is the Eiffel Tower?", "LOC"),
            ("What is the capital of Peru?", "LOC"),
            ("How tall is Mount Everest?", "NUM"),
        ];
        for (i, (t, l)) in seeds.iter().enumerate() {
            apply(
                &mut st,
                vec![EventKind::SampleAdded(SampleAdded::new(
                    i as u64 + 1,
                    NewSample {
                        text: t.to_string(),
                        label: l.to_string(),
                        origin: Origin::Seed,
                        provenance: Provenance::default(),
                    },
                ))],
            );
        }
        st
    }

    pub(crate) fn apply(st: &mut ProjectState, kinds: Vec<EventKind>) {
        for kind in kinds {
            let id = st.last_event_id + 1;
            st.apply(&Event {
                v: 1,
                id,
                ts: id,
                kind,
            });
        }
    }

    fn generator(st: &ProjectState) -> Generator {
        let cfg = config();
        Generator::new(
            &cfg,
            cfg.classes.clone(),
            cfg.generation.clone(),
            Templates::builtin(),
            st,
        )
    }

    fn reply(text: &str) -> Reply {
        Reply {
            text: text.into(),
            choices: vec![text.into()],
            model: "smollm2".into(),
            request_id: "r1".into(),
            finish_reason: Some("stop".into()),
            usage: Default::default(),
            logprobs: None,
            cached: false,
        }
    }

    #[test]
    fn plan_mix_carries_provenance() {
        let st = state_with_seeds();
        let mut g = generator(&st);
        let p = g.plan_generate().unwrap();
        let RequestKind::Generate { target } = &p.kind else {
            panic!()
        };
        let prov = &p.provenance;
        assert_eq!(prov.strategy.as_deref(), Some("mix"));
        assert_eq!(prov.classes.len(), 3);
        assert!(prov.classes.iter().any(|c| c == target));
        let minor = prov.minor.as_ref().unwrap();
        assert_ne!(minor, target);
        let alpha = prov.alpha.unwrap();
        assert!((0.5..=1.0).contains(&alpha));
        assert_eq!(prov.template.as_deref(), Some("mix.j2"));
        assert_eq!(prov.template_hash.as_ref().unwrap().len(), 16);
        assert_eq!(prov.extra[REQUEST_KEY], serde_json::json!(0));
        let prompt = p.prompt();
        let (a, b) = alpha_pcts(alpha);
        assert!(
            prompt.contains(&format!("{a}% to {target} and {b}% to {minor}")),
            "{prompt}"
        );
        assert_eq!(p.request.max_tokens, Some(512));
        // The next plan is the next request; a fresh generator repeats it.
        let p2 = g.plan_generate().unwrap();
        assert_eq!(p2.provenance.extra[REQUEST_KEY], serde_json::json!(1));
        let again = generator(&st).plan_generate().unwrap();
        assert_eq!(again.request, p.request);
    }

    /// The batch ingest's two stages: replies read ahead by the
    /// generator's reader (all of them before the first is decided, as
    /// the reading thread may) give the events of replies read in turn.
    #[test]
    fn replies_read_ahead_give_the_same_events_as_read_in_turn() {
        let st = state_with_seeds();
        let (mut inline, mut ahead) = (generator(&st), generator(&st));
        let texts = [
            "Sure! Here are some:\n1. Who built the first airplane?\n2. **HUM**\n3. Who wrote Hamlet?\n4. who built the first airplane",
            "1. Who built the first airplane ever?\n2. Where is the Louvre museum located?\n3. LOC\n4. Texts which are about a place",
            "Sure, here are five questions:",
            "",
            "1. How many moons does Mars have?\n2. Where is the Louvre museum located ?\n3. Sentence 3",
        ];
        let plans: Vec<PlannedRequest> = texts
            .iter()
            .map(|_| inline.plan_generate().unwrap())
            .collect();
        let reader = ahead.reader();
        let reads: Vec<_> = plans
            .iter()
            .zip(texts)
            .map(|(p, t)| reader.read(p, &reply(t)))
            .collect();
        let mut next = st.next_sample_id();
        let mut all = Vec::new();
        for ((p, t), read) in plans.iter().zip(texts).zip(reads) {
            assert!(read.is_some());
            let a = inline.on_reply_at(next, p, &reply(t));
            let b = ahead.on_reply_read(next, p, &reply(t), read);
            assert_eq!(a, b, "{t}");
            next += a
                .iter()
                .filter(|e| matches!(e, EventKind::SampleAdded(_)))
                .count() as u64;
            all.extend(a);
        }
        // What the comparison covered: duplicates across replies, parser
        // rejections, unusable replies.
        let reasons: Vec<String> = all
            .iter()
            .filter_map(|e| match e {
                EventKind::Decided(d) => d.decision.reason.clone().map(|r| r.to_string()),
                EventKind::GenerationFailed(f) => Some(f.reason.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            reasons,
            [
                "duplicate",
                "duplicate",
                "near_duplicate",
                "unparsable",
                "empty_reply",
                "duplicate"
            ]
        );
        assert!(all.iter().any(|e| matches!(e,
            EventKind::SampleAdded(a) if a.provenance.extra.contains_key(REJECTED_KEY))));

        // A read by a reader made before the classes changed (or by
        // another generator's) is not used: the reply is read again.
        let stale = ahead.reader();
        let mut classes = config().classes;
        classes.push(Class {
            name: "ENTY".into(),
            description: "a thing".into(),
            weight: 1.0,
        });
        inline.set_classes(classes.clone());
        ahead.set_classes(classes);
        let p = inline.plan_generate().unwrap();
        let t = "1. ENTY (entity)\n2. What is the largest animal on earth?";
        let old = stale.read(&p, &reply(t)).unwrap();
        assert_eq!(old.parsed.items.len(), 2, "{:?}", old.parsed);
        let a = inline.on_reply_at(next, &p, &reply(t));
        let b = ahead.on_reply_read(next, &p, &reply(t), Some(old));
        assert_eq!(a, b);
        let other = generator(&st).reader().read(&p, &reply(t));
        let c = ahead.on_reply_read(next + 1, &p, &reply(t), other);
        assert!(
            matches!(&c[..], [EventKind::SampleAdded(_), EventKind::Decided(_)]),
            "{c:?}"
        );
        assert_eq!(
            a.iter()
                .filter(|e| matches!(e, EventKind::SampleAdded(_)))
                .count(),
            1,
            "the class name is dropped with the new classes: {a:?}"
        );
    }

    #[test]
    fn reply_to_events_with_dedup_and_failure() {
        let mut st = state_with_seeds();
        let mut g = generator(&st);
        let p = g.plan_generate().unwrap();
        let evs = g.on_reply(
            &st,
            &p,
            &reply("Sure! Here are some:\n1. Who built the first airplane?\n2. Who wrote Hamlet?\n3. who built the first airplane\n4. Who built the first airplane ever?"),
        );
        let names: Vec<_> = evs.iter().map(|e| e.type_name()).collect();
        assert_eq!(
            names,
            vec![
                "sample_added",
                "sample_added",
                "decided",
                "sample_added",
                "decided",
                "sample_added",
                "decided"
            ]
        );
        let reasons: Vec<_> = evs
            .iter()
            .filter_map(|e| match e {
                EventKind::Decided(d) => {
                    Some((d.sample, d.decision.reason.clone().unwrap().to_string()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            reasons,
            vec![
                (7, "duplicate".to_string()),
                (8, "duplicate".to_string()),
                (9, "near_duplicate".to_string())
            ]
        );
        if let EventKind::SampleAdded(a) = &evs[0] {
            assert_eq!(a.id, 6);
            assert_eq!(a.provenance.request_id.as_deref(), Some("r1"));
            assert_eq!(a.origin, Origin::Generated);
        }
        apply(&mut st, evs);
        assert_eq!(Generator::needs_relabel(&st), vec![6]);

        // Nothing usable: a recorded failure with the raw text.
        let p = g.plan_generate().unwrap();
        let evs = g.on_reply(&st, &p, &reply("1.  A:\n2. [Sentence 1]"));
        match &evs[..] {
            [EventKind::GenerationFailed(f)] => {
                assert_eq!(f.reason, "unparsable");
                assert_eq!(f.raw, "1.  A:\n2. [Sentence 1]");
                assert_eq!(f.provenance.extra[REQUEST_KEY], serde_json::json!(1));
            }
            other => panic!("{other:?}"),
        }
        apply(&mut st, evs);
        // Counters continue after what the journal holds; so does the
        // seed stream: the next run draws fresh.
        assert_eq!(generator(&st).counter(), 2);
        assert_eq!(g.stream(), 0);
        assert_eq!(p.provenance.extra[STREAM_KEY], serde_json::json!(0));
        let mut next = generator(&st);
        assert_eq!(next.stream(), 1);
        let fresh = next.plan_generate().unwrap();
        assert_eq!(fresh.provenance.extra[STREAM_KEY], serde_json::json!(1));
        // Replaying stream 0 from the same counter repeats its request.
        let mut replay = generator(&st);
        replay.set_stream(0);
        let mut again = g.clone();
        again.set_stream(0);
        assert_eq!(
            replay.peek_generate(5).unwrap().request.seed,
            again.peek_generate(5).unwrap().request.seed
        );
        assert_ne!(
            fresh.request.seed,
            replay.peek_generate(5).unwrap().request.seed
        );
        let evs = g.on_failure(&p, "timeout", "no answer in 120 s", None);
        assert_eq!(evs[0].type_name(), "generation_failed");
    }

    #[test]
    fn targets_follow_the_weights_exactly() {
        let st = state_with_seeds();
        let mut g = generator(&st);
        let mut classes = config().classes;
        classes[2].weight = 2.0; // NUM twice as often
        g.set_classes(classes.clone());
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        let mut pairs: BTreeMap<(String, String), usize> = BTreeMap::new();
        for _ in 0..40 {
            let p = g.plan_generate_n(5).unwrap();
            let RequestKind::Generate { target } = &p.kind else {
                panic!()
            };
            *count.entry(target.clone()).or_default() += 1;
            let minor = p.provenance.minor.clone().unwrap().to_string();
            *pairs.entry((target.clone(), minor)).or_default() += 1;
        }
        assert_eq!(count["HUM"], 10);
        assert_eq!(count["LOC"], 10);
        assert_eq!(count["NUM"], 20);
        // Minor classes by weight too: NUM is the minor of HUM twice as
        // often as LOC is.
        assert_eq!(
            pairs[&("HUM".to_string(), "NUM".to_string())],
            7,
            "{pairs:?}"
        );
        assert_eq!(
            pairs[&("HUM".to_string(), "LOC".to_string())],
            3,
            "{pairs:?}"
        );
        // A weight change applies to the very next plan.
        classes[0].weight = 100.0;
        g.set_classes(classes);
        let p = g.plan_generate_n(5).unwrap();
        assert_eq!(
            p.kind,
            RequestKind::Generate {
                target: "HUM".into()
            }
        );
        // Counts come from the journal: a generator made on a state where
        // HUM has examples plans the others first.
        let mut st2 = state_with_seeds();
        let mut g2 = generator(&st2);
        let p = g2.plan_generate_n(3).unwrap();
        let evs = g2.on_reply(
            &st2,
            &p,
            &reply("1. Who led the army?\n2. Who built the wall?\n3. Who won the war?"),
        );
        apply(&mut st2, evs);
        let next = generator(&st2).plan_generate_n(3).unwrap();
        assert_ne!(
            next.kind, p.kind,
            "the class that has 3 examples is not next"
        );
    }

    #[test]
    fn parser_rejections_are_journalled_once_per_reply() {
        let mut st = state_with_seeds();
        let mut g = generator(&st);
        let p = g.plan_generate_n(2).unwrap();
        let evs = g.on_reply(
            &st,
            &p,
            &reply("Sentence 1\nWho built the first airplane?\nHUM (Human)\nWho sailed around the world first?\nWho founded Rome?"),
        );
        let provs: Vec<&Provenance> = evs
            .iter()
            .filter_map(|e| match e {
                EventKind::SampleAdded(a) => Some(&a.provenance),
                _ => None,
            })
            .collect();
        assert_eq!(provs.len(), 2, "{evs:?}");
        assert_eq!(
            provs[0].extra[super::super::parse::REJECTED_KEY],
            serde_json::json!({"heading": 1, "class_name": 1, "extra": 1})
        );
        assert!(
            !provs[1]
                .extra
                .contains_key(super::super::parse::REJECTED_KEY)
        );
        apply(&mut st, evs);
        // A reply with nothing usable carries its counts on the failure.
        let p = g.plan_generate_n(2).unwrap();
        let evs = g.on_reply(&st, &p, &reply("<text>\nLOC"));
        apply(&mut st, evs);
        let sum = super::super::parse::sum_rejections(
            st.samples
                .iter()
                .map(|s| &*s.provenance)
                .chain(st.failures.iter().map(|(_, f)| &f.provenance)),
        );
        let want: BTreeMap<String, u64> = [
            ("class_name", 2),
            ("extra", 1),
            ("heading", 1),
            ("placeholder", 1),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(sum, want);
    }

    #[test]
    fn relabel_plan_and_verdict() {
        let mut st = state_with_seeds();
        let mut g = generator(&st);
        let p = g.plan_generate().unwrap();
        let evs = g.on_reply(&st, &p, &reply("1. Who painted the Mona Lisa?"));
        apply(&mut st, evs);
        let id = Generator::needs_relabel(&st)[0];
        let rp = g.plan_relabel(&st, id).unwrap();
        assert_eq!(rp.labels, vec!["HUM", "LOC", "NUM"]);
        assert_eq!(rp.request.logprobs, Some(true));
        assert_eq!(rp.request.temperature, Some(0.0));
        // Asked for in the OpenAI form whatever the server; the client
        // picks the wire form.
        let rf = rp.request.response_format.as_ref().unwrap();
        assert_eq!(rf["type"], "json_schema");
        assert_eq!(
            rf["json_schema"]["schema"]["properties"]["label"]["enum"],
            serde_json::json!(["HUM", "LOC", "NUM"])
        );
        assert!(rp.prompt().contains("Text: Who painted the Mona Lisa?"));
        // A reply without logprobs: single verdict; the next plan votes.
        let evs = g.on_reply(&st, &rp, &reply("{\"label\": \"HUM\"}"));
        let EventKind::VerdictRecorded(v) = &evs[0] else {
            panic!()
        };
        assert_eq!(v.sample, id);
        assert_eq!(v.verdict.label.as_deref(), Some("HUM"));
        assert_eq!(v.verdict.method, VerdictMethod::Single);
        let rp2 = g.plan_relabel(&st, id).unwrap();
        assert_eq!(rp2.request.logprobs, None);
        assert_eq!(rp2.request.n, Some(3));
        // A server that ignores n: single answers from then on.
        g.on_reply(&st, &rp2, &reply("LOC"));
        assert_eq!(g.plan_relabel(&st, id).unwrap().request.n, None);
        apply(&mut st, evs);
        assert!(Generator::needs_relabel(&st).is_empty());
    }

    #[test]
    fn zero_weights_and_extrapolate_are_user_errors() {
        let st = state_with_seeds();
        let mut g = generator(&st);
        g.set_classes(
            config()
                .classes
                .into_iter()
                .map(|c| Class { weight: 0.0, ..c })
                .collect(),
        );
        assert_eq!(crate::error::exit_code(&g.plan_generate().unwrap_err()), 2);
        let mut g = generator(&st);
        g.set_settings(
            GenerationSettings {
                strategy: Strategy::Extrapolate,
                ..Default::default()
            },
            &st,
        );
        assert!(g.plan_generate().is_err());
        let mut g = generator(&st);
        g.set_settings(
            GenerationSettings {
                strategy: Strategy::Plain,
                ..Default::default()
            },
            &st,
        );
        let p = g.plan_generate().unwrap();
        assert_eq!(p.provenance.classes.len(), 1);
        assert_eq!(p.provenance.alpha, None);
        assert_eq!(p.provenance.template.as_deref(), Some("plain.j2"));
    }
}
