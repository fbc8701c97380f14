//! The pure generation driver shared by the CLI, the TUI and the S3 loop.
//!
//! [`Generator`] plans the next request ([`PlannedRequest`]: the chat
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
use super::parse::{ParseContext, parse_generation};
use super::relabel::{RelabelReply, label_schema, verdict_from};
use super::sampling::{alpha_pcts, pick, pick_shots, rng_for, splitmix64};
use super::templates::{
    self, ClassContext, GenerateContext, RelabelContext as RelabelTmplContext, TaskContext,
    Templates,
};
use crate::domain::{
    Actor, Class, Decision, DecisionKind, EventKind, GenerationFailed, GenerationSettings,
    NewSample, Origin, ProjectConfig, ProjectState, Provenance, RelabelContext, RelabelSettings,
    SampleAdded, SampleId, Strategy, TaskConfig, VerdictRecorded,
};
use crate::llm::{ChatRequest, ChatResponse, Message};

/// What a planned request is for.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestKind {
    /// New examples for class `target`.
    Generate { target: String },
    /// Relabel one sample.
    Relabel { sample: SampleId },
}

/// A request ready to send, with what is needed to read its reply.
#[derive(Debug, Clone)]
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
    /// Learnt from replies: the server returns logprobs / honours `n`.
    logprobs_ok: bool,
    n_ok: bool,
    /// S3 rationales per class (`rationales_added`), drawn from when the
    /// `use_rationales` setting is on.
    rationales: BTreeMap<String, Vec<String>>,
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
        let mut longest = 0;
        for s in state.samples.iter().filter(|s| s.origin == Origin::Seed) {
            longest = longest.max(s.text().split_whitespace().count());
            seeds
                .entry(s.label.clone())
                .or_default()
                .push(s.text().to_string());
        }
        let counter = next_counter(state);
        Generator {
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
            logprobs_ok: true,
            n_ok: true,
            rationales: state.rationales.clone(),
        }
    }

    /// Take the rationales recorded in `state` (after `rationales_added`).
    pub fn set_rationales(&mut self, state: &ProjectState) {
        self.rationales = state.rationales.clone();
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
    }

    pub fn templates(&self) -> &Templates {
        &self.templates
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
        Ok(p)
    }

    /// The next generate request without consuming it (`straddle prompt`).
    pub fn peek_generate(&self, n: usize) -> anyhow::Result<PlannedRequest> {
        let s = &self.settings;
        let strategy = match s.strategy {
            Strategy::Extrapolate => {
                return Err(crate::error::user(
                    "the extrapolate strategy is planned by the S3 loop (`straddle loop`), not by generate",
                ));
            }
            other => other,
        };
        let mut rng = rng_for(s.seed, self.counter);
        let pk = pick(&self.classes, s, &mut rng).ok_or_else(|| {
            crate::error::user("every class has weight 0: nothing to generate (raise a weight)")
        })?;
        let mut shown_examples = Vec::new();
        let classes: Vec<ClassContext> = pk
            .shown
            .iter()
            .map(|&i| {
                let c = &self.classes[i];
                let pool = self.seeds.get(&c.name).map(Vec::as_slice).unwrap_or(&[]);
                let examples = pick_shots(pool, s.shots, &mut rng);
                shown_examples.extend(examples.iter().cloned());
                ClassContext {
                    name: c.name.clone(),
                    description: c.description.clone(),
                    examples,
                }
            })
            .collect();
        let target = self.classes[pk.target].name.clone();
        let minor = pk.minor.map(|i| self.classes[i].name.clone());
        let (major_pct, minor_pct) = alpha_pcts(pk.alpha);
        let template = if strategy == Strategy::Mix {
            templates::MIX
        } else {
            templates::PLAIN
        };
        let ctx = GenerateContext {
            task: self.task_ctx(),
            classes,
            n,
            target: target.clone(),
            minor: minor.clone(),
            major_pct,
            minor_pct,
        };
        // Drawn last, so turning rationales on leaves every other draw as it was.
        let rationale = self.draw_rationale(&target, &mut rng);
        let prompt = self.templates.render(
            template,
            &WithRationale {
                ctx: &ctx,
                rationale: rationale.as_deref(),
            },
        )?;
        let mut request = ChatRequest::new(vec![Message::user(prompt)]);
        request.temperature = Some(s.temperature);
        request.max_tokens = Some(s.max_tokens);
        request.seed = Some(splitmix64(s.seed ^ self.counter));
        let mut provenance = Provenance {
            strategy: Some(strategy.as_str().to_string()),
            classes: ctx.classes.iter().map(|c| c.name.clone()).collect(),
            minor,
            alpha: (strategy == Strategy::Mix).then_some(pk.alpha),
            template: Some(template.to_string()),
            template_hash: Some(self.templates.hash(template).to_string()),
            model: Some(self.model.clone()),
            temperature: Some(s.temperature),
            rationale,
            ..Provenance::default()
        };
        provenance
            .extra
            .insert(REQUEST_KEY.into(), serde_json::json!(self.counter));
        Ok(PlannedRequest {
            request,
            kind: RequestKind::Generate { target },
            provenance,
            n,
            shown_examples,
            labels: Vec::new(),
        })
    }

    /// A rationale of `target` when `use_rationales` is on and it has any.
    fn draw_rationale(&self, target: &str, rng: &mut impl rand::Rng) -> Option<String> {
        if !self.settings.use_rationales {
            return None;
        }
        let list = self.rationales.get(target).filter(|l| !l.is_empty())?;
        Some(list[rng.random_range(0..list.len())].clone())
    }

    fn task_ctx(&self) -> TaskContext {
        TaskContext {
            name: self.task.name.clone(),
            description: self.task.description.clone(),
        }
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

    /// The classes a relabel prompt offers for a sample.
    fn relabel_classes(&self, prov: &Provenance, intended: &str) -> Vec<&Class> {
        let all = || self.classes.iter().collect::<Vec<_>>();
        let picked = || {
            let v: Vec<&Class> = self
                .classes
                .iter()
                .filter(|c| c.name == intended || prov.classes.contains(&c.name))
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
        let s = state
            .sample(sample)
            .ok_or_else(|| anyhow::anyhow!("no sample {sample}"))?;
        let r = &self.relabel;
        let offered = self.relabel_classes(&s.provenance, &s.label);
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
            template: Some(templates::RELABEL.to_string()),
            template_hash: Some(self.templates.hash(templates::RELABEL).to_string()),
            model: Some(self.model.clone()),
            classes: labels.clone(),
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

    /// Turn a reply into events (see the module docs).
    pub fn on_reply(
        &mut self,
        state: &ProjectState,
        planned: &PlannedRequest,
        reply: &Reply,
    ) -> Vec<EventKind> {
        match &planned.kind {
            RequestKind::Generate { target } => self.generated(state, planned, target, reply),
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
        state: &ProjectState,
        planned: &PlannedRequest,
        target: &str,
        reply: &Reply,
    ) -> Vec<EventKind> {
        let mut prov = planned.provenance.clone();
        if !reply.model.is_empty() {
            prov.model = Some(reply.model.clone());
        }
        if !reply.request_id.is_empty() {
            prov.request_id = Some(reply.request_id.clone());
        }
        let ctx = ParseContext {
            class_names: self.classes.iter().map(|c| c.name.clone()).collect(),
            prompt: planned.prompt(),
            shown_examples: planned.shown_examples.clone(),
            truncated: reply.finish_reason.as_deref() == Some("length"),
            max_words: self.max_words,
        };
        let parsed = parse_generation(&reply.text, &ctx);
        if parsed.items.is_empty() {
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
        let mut out = Vec::new();
        for (id, text) in (state.next_sample_id()..).zip(parsed.items) {
            let dup = self.dedup.check_insert(id, &text);
            let mut p = prov.clone();
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
                        reason: Some(m.kind.reason().to_string()),
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

/// A generation context plus the optional S3 rationale (`rationale` in
/// the templates; test it with `is defined` so a context without it renders).
#[derive(serde::Serialize)]
struct WithRationale<'a> {
    #[serde(flatten)]
    ctx: &'a GenerateContext,
    rationale: Option<&'a str>,
}

/// Rejected by dedup.
pub fn is_dup_rejected(s: &crate::domain::SampleState) -> bool {
    s.decision().is_some_and(|d| {
        d.kind == DecisionKind::Reject && matches!(d.by, Actor::Auto(ref a) if a == "dedup")
    })
}

/// One past the highest request counter recorded in the project.
fn next_counter(state: &ProjectState) -> u64 {
    let of = |p: &Provenance| p.extra.get(REQUEST_KEY).and_then(|v| v.as_u64());
    state
        .samples
        .iter()
        .filter_map(|s| of(&s.provenance))
        .chain(state.failures.iter().filter_map(|(_, f)| of(&f.provenance)))
        .max()
        .map_or(0, |m| m + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert!(prov.classes.contains(target));
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
                EventKind::Decided(d) => Some((d.sample, d.decision.reason.clone().unwrap())),
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
        // Counters continue after what the journal holds.
        assert_eq!(generator(&st).counter(), 2);
        let evs = g.on_failure(&p, "timeout", "no answer in 120 s", None);
        assert_eq!(evs[0].type_name(), "generation_failed");
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
