//! Denoising inside the session (issue 13): every newly recorded
//! generated example is judged by sentence embeddings, still without I/O.
//!
//! ```text
//!  reply appended ──▶ Output::embed (EmbedJob: texts)   front end embeds (an effect)
//!                                                        │
//!  Session::on_embedded(id, vectors) ◀───────────────────┘
//!        └──▶ noise_scored (+ decided by auto:denoise / auto:dedup) appended
//!        └──▶ relabel of what was kept
//! ```
//!
//! An [`EmbedJob`] holds the new examples' texts, the sentences of their
//! prompt's instructions ([`instruction_sentences`]) and the texts of the
//! seeds and earlier examples the session has no vector of yet (the first
//! job of a session carries them all; the front end's vector store makes
//! that cheap the next time). Each new example is then
//!
//! * a **near-copy** when its cosine to an earlier example (or seed, or
//!   one before it in the same reply) reaches `[denoise] near_duplicate`:
//!   "near-copy of #12 (cos 0.97)", decided by `auto:dedup` like MinHash's
//!   duplicates;
//! * **noise** when [`Denoiser::judge`] says so: "far from every DESC seed
//!   (0.21)", "repeats the instructions (0.83)", decided by
//!   `auto:denoise`.
//!
//! In `flag` mode nothing is decided: the `noise_scored` event carries the
//! reason and review shows it. Automatic decisions are undoable like any
//! decision. Rejected examples stop counting toward the target, so the
//! session plans more; a run waits for its last judgement before it calls
//! the target reached. Relabel requests for new examples wait for their
//! judgement, so rejected ones are never relabelled.

use std::collections::{BTreeMap, HashMap};

use super::{Note, Output, Pending, Session};
use crate::augment::PlannedRequest;
use crate::augment::generator::is_dup_rejected;
use crate::domain::{
    Actor, Decision, DecisionKind, DenoiseConfig, DenoiseMode, EventKind, JudgeUse, NoiseScored,
    Origin, ProjectState, SampleId, SampleState, Status,
};
use crate::embed::denoise::{
    DenoiseSettings, Denoiser, attribute_counts, instruction_sentences, max_similarity,
};

/// Actor name of the denoiser's rejections.
pub const DENOISE_ACTOR: &str = "denoise";
/// Texts to embed for the session; answer with [`Session::on_embedded`].
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedJob {
    pub id: u64,
    pub texts: Vec<String>,
}

/// Whether the denoiser rejected `s` (an automatic rejection by
/// `auto:denoise` that is still in force).
pub fn is_noise_rejected(s: &SampleState) -> bool {
    s.decision().is_some_and(|d| {
        d.kind == DecisionKind::Reject && matches!(d.by, Actor::Auto(ref a) if a == DENOISE_ACTOR)
    })
}

/// A sample's `(dimension, value)` attributes from its provenance (the
/// `attributes` strategy records them; a seed may carry import tags).
pub fn sample_attributes(s: &SampleState) -> Vec<(String, String)> {
    s.provenance.attribute_pairs()
}

/// One embed job in flight: what its texts are.
#[derive(Debug)]
struct Job {
    /// The new examples (the first texts of the job).
    samples: Vec<SampleId>,
    /// Then this many instruction sentences.
    instructions: usize,
    /// Then seeds and earlier examples without a vector yet.
    known: Vec<SampleId>,
}

/// The session's denoising state.
#[derive(Debug, Default)]
pub(super) struct Denoising {
    pub(super) cfg: Option<DenoiseConfig>,
    model: String,
    /// Vectors of seeds and of examples judged (or loaded) so far.
    vectors: HashMap<SampleId, Vec<f32>>,
    jobs: HashMap<u64, Job>,
    next: u64,
    /// Instruction sentences of each generate reply appended and not yet
    /// acknowledged, in order.
    pub(super) instructions: std::collections::VecDeque<Option<Vec<String>>>,
    /// Examples to relabel once the judgement's append is acknowledged.
    pub(super) relabel_after: Vec<SampleId>,
    /// A judgement's append waits or is in flight.
    pub(super) appending: usize,
    /// `[judge] use`: which judge the class check asks (see
    /// [`Session::class_check`]).
    pub(super) judge: JudgeUse,
    /// The last class check and the training data it was fitted on (a
    /// hash): refitted only when the seeds or accepted examples change.
    check: Option<(u64, std::sync::Arc<ClassCheck>)>,
}

impl Denoising {
    fn active(&self) -> bool {
        self.cfg
            .as_ref()
            .is_some_and(|c| c.mode != DenoiseMode::Off)
    }
}

/// A judge disagreeing with the intended class with at least this
/// confidence makes an example noise (the class check).
pub const CLASS_CHECK_MIN: f64 = 0.7;

/// The chosen judge as the denoiser's class check.
struct ClassCheck {
    judge: String,
    judges: crate::app::judges::EmbeddingJudges,
    classes: Vec<String>,
}

impl std::fmt::Debug for ClassCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassCheck")
            .field("judge", &self.judge)
            .field("classes", &self.classes)
            .finish_non_exhaustive()
    }
}

impl ClassCheck {
    /// "the knn judge says LOC (0.93), not HUM" when the judge gives
    /// another class than `intended` with confidence ≥
    /// [`CLASS_CHECK_MIN`].
    fn disagrees(&self, v: &[f32], intended: &str) -> Option<String> {
        let p = if self.judge == crate::app::judges::SMALL {
            self.judges.small(v, None)
        } else {
            self.judges.knn(v, None)
        };
        if p.is_empty() {
            return None;
        }
        let i = crate::classify::argmax(&p);
        let said = self.classes.get(i)?;
        (said != intended && p[i] >= CLASS_CHECK_MIN).then(|| {
            format!(
                "the {} judge says {said} ({:.2}), not {intended}",
                self.judge, p[i]
            )
        })
    }
}

/// The session's counts of the denoiser's work.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DenoiseReport {
    /// Examples judged.
    pub judged: usize,
    /// Rejected as noise (`reject` mode).
    pub rejected: usize,
    /// Flagged as noise (`flag` mode).
    pub flagged: usize,
    /// Rejected as near-copies by cosine.
    pub near_copies: usize,
}

impl Session {
    /// Judge new generated examples with `cfg`; `model` names the
    /// embedder (recorded with each judgement). `mode = "off"` turns it
    /// off again.
    pub fn set_denoise(&mut self, cfg: DenoiseConfig, model: &str) {
        if self.denoise.model != model {
            self.denoise.vectors.clear();
        }
        self.denoise.model = model.to_owned();
        self.denoise.cfg = Some(cfg);
    }

    /// `[judge] use` of the project: the judge the class check asks when
    /// the choice is pinned.
    pub fn set_judge_use(&mut self, pin: JudgeUse) {
        self.denoise.judge = pin;
    }

    /// The denoiser's class check: the chosen judge (`app::judges`,
    /// from the recorded reports) when it is trusted and is one the
    /// session can ask without I/O — `knn` or `small`, trained on the
    /// vectors of the seeds and accepted examples it holds. The relabeler
    /// (and the ensemble, which needs its verdicts) answers only after
    /// the judgement, so with those chosen there is no class check here.
    fn class_check(&mut self, state: &ProjectState) -> Option<std::sync::Arc<ClassCheck>> {
        use crate::app::judges::{EmbeddingJudges, KNN, SMALL, choose_recorded};
        let choice = choose_recorded(
            state,
            &self.generator.relabel_fingerprint(),
            self.denoise.judge,
        );
        let judge = choice.judge.filter(|_| choice.trusted)?;
        if judge != KNN && judge != SMALL {
            return None;
        }
        let classes: Vec<String> = self
            .generator
            .plan_context()
            .classes
            .iter()
            .map(|c| c.name.clone())
            .collect();
        let train = crate::classify::training_set(state, &classes, true);
        let (mut ids, mut labels, mut rows) = (Vec::new(), Vec::new(), Vec::new());
        for (id, l) in train.ids.iter().zip(&train.labels) {
            if let Some(v) = self.denoise.vectors.get(id) {
                ids.push(*id);
                labels.push(*l);
                rows.push(v.as_slice());
            }
        }
        if rows.is_empty() {
            return None;
        }
        let key = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (&judge, &ids, &labels, &classes).hash(&mut h);
            h.finish()
        };
        if let Some((k, c)) = &self.denoise.check
            && *k == key
        {
            return Some(c.clone());
        }
        let cfg = crate::app::small_model::configs_for(self.generator.settings(), classes.len()).1;
        let judges = EmbeddingJudges::from_vectors(
            &classes,
            ids,
            labels,
            crate::classify::Dense::from_rows(&rows),
            &cfg,
        );
        let c = std::sync::Arc::new(ClassCheck {
            judge,
            judges,
            classes,
        });
        self.denoise.check = Some((key, c.clone()));
        Some(c)
    }

    /// Whether new examples are being judged.
    pub fn denoising(&self) -> bool {
        self.denoise.active()
    }

    /// Embed jobs not answered yet, or judgements not yet acknowledged.
    pub(super) fn denoise_open(&self) -> bool {
        !self.denoise.jobs.is_empty() || self.denoise.appending > 0
    }

    /// Remember the instruction sentences of a generate reply about to be
    /// appended (when judging is on).
    pub(super) fn denoise_before_append(&mut self, planned: &PlannedRequest) {
        // The prompt is put together only when judging is on.
        let sentences = self
            .denoise
            .active()
            .then(|| instruction_sentences(&planned.prompt(), &planned.shown_examples));
        self.denoise.instructions.push_back(sentences);
    }

    /// A generate reply's examples are in the journal: ask for their
    /// vectors. Returns the examples to relabel now (all of them when
    /// judging is off; none otherwise: they wait for their judgement).
    pub(super) fn denoise_recorded(
        &mut self,
        state: &ProjectState,
        kept: Vec<SampleId>,
        out: &mut Output,
    ) -> Vec<SampleId> {
        let instructions = self
            .denoise
            .instructions
            .pop_front()
            .flatten()
            .unwrap_or_default();
        if !self.denoise.active() || kept.is_empty() {
            return kept;
        }
        let mut texts: Vec<String> = kept
            .iter()
            .filter_map(|id| state.sample(*id).map(|s| s.text().to_owned()))
            .collect();
        if texts.len() != kept.len() {
            return kept;
        }
        let n_instr = instructions.len();
        texts.extend(instructions);
        let in_flight: Vec<SampleId> = self
            .denoise
            .jobs
            .values()
            .flat_map(|j| j.samples.iter().chain(&j.known).copied())
            .collect();
        let known: Vec<SampleId> = state
            .samples
            .iter()
            .filter(|s| {
                !kept.contains(&s.id)
                    && !in_flight.contains(&s.id)
                    && !self.denoise.vectors.contains_key(&s.id)
                    && compared(s)
            })
            .map(|s| s.id)
            .collect();
        texts.extend(
            known
                .iter()
                .filter_map(|id| state.sample(*id).map(|s| s.text().to_owned())),
        );
        let id = self.denoise.next;
        self.denoise.next += 1;
        self.denoise.jobs.insert(
            id,
            Job {
                samples: kept,
                instructions: n_instr,
                known,
            },
        );
        out.embed.push(EmbedJob { id, texts });
        Vec::new()
    }

    /// The vectors of embed job `id` (in its texts' order), or why there
    /// are none: judge its examples and queue the judgements' append. On a
    /// failure judging stops for this session (a note says why) and the
    /// examples go on unjudged.
    pub fn on_embedded(
        &mut self,
        state: &ProjectState,
        id: u64,
        result: Result<Vec<Vec<f32>>, String>,
    ) -> Output {
        let mut out = Output::default();
        let Some(job) = self.denoise.jobs.remove(&id) else {
            return out;
        };
        let expected = job.samples.len() + job.instructions + job.known.len();
        let vectors = match result {
            Ok(v) if v.len() == expected => v,
            Ok(v) => {
                let e = format!("{} vectors for {expected} texts", v.len());
                self.embedding_failed(&e, &mut out);
                self.release(state, job.samples, &mut out);
                self.step(state, &mut out);
                return out;
            }
            Err(e) => {
                self.embedding_failed(&e, &mut out);
                self.release(state, job.samples, &mut out);
                self.step(state, &mut out);
                return out;
            }
        };
        let mut it = vectors.into_iter();
        let new: Vec<Vec<f32>> = it.by_ref().take(job.samples.len()).collect();
        let instructions: Vec<Vec<f32>> = it.by_ref().take(job.instructions).collect();
        for (sid, v) in job.known.iter().zip(it) {
            self.denoise.vectors.insert(*sid, v);
        }
        self.share_seed_vectors(state);
        let events = self.judge(state, &job.samples, new, &instructions);
        let keep: Vec<SampleId> = job
            .samples
            .iter()
            .copied()
            .filter(|sid| {
                !events.iter().any(|e| {
                    matches!(e, EventKind::Decided(d) if d.sample == *sid
                        && d.decision.kind == DecisionKind::Reject)
                })
            })
            .collect();
        self.denoise.appending += 1;
        self.pending.push_back(Pending::Denoise(events, keep));
        self.step(state, &mut out);
        out
    }

    fn embedding_failed(&mut self, message: &str, out: &mut Output) {
        if self.denoise.active() {
            out.notes.push(Note::Error(format!(
                "denoising is off for this run: embedding failed: {message} (check [embeddings] in straddle.toml, or set [denoise] mode = \"off\")"
            )));
        }
        if let Some(c) = self.denoise.cfg.as_mut() {
            c.mode = DenoiseMode::Off;
        }
    }

    /// Examples that will not be judged: relabel them as usual.
    fn release(&mut self, state: &ProjectState, ids: Vec<SampleId>, out: &mut Output) {
        if self.cfg.relabel && self.may_send() {
            for id in ids {
                self.submit_relabel(state, id, out);
            }
        }
    }

    /// The events judging `samples` (vectors `new`) yields.
    fn judge(
        &mut self,
        state: &ProjectState,
        samples: &[SampleId],
        new: Vec<Vec<f32>>,
        instructions: &[Vec<f32>],
    ) -> Vec<EventKind> {
        let cfg = self.denoise.cfg.clone().unwrap_or_default();
        let mut seeds: BTreeMap<String, Vec<Vec<f32>>> = BTreeMap::new();
        for s in state.samples.iter().filter(|s| s.origin == Origin::Seed) {
            if let Some(v) = self.denoise.vectors.get(&s.id) {
                seeds
                    .entry(s.label.to_string())
                    .or_default()
                    .push(v.clone());
            }
        }
        let denoiser = Denoiser::new(
            DenoiseSettings {
                max_noise: cfg.threshold as f32,
                echo_similarity: cfg.echo_similarity as f32,
            },
            seeds,
        );
        let attrs: Vec<Vec<(String, String)>> = state
            .generated()
            .filter(|s| s.status() != Status::Rejected && !samples.contains(&s.id))
            .map(sample_attributes)
            .filter(|a| !a.is_empty())
            .collect();
        let counts = attribute_counts(attrs.iter().map(Vec::as_slice));
        let reject = cfg.mode == DenoiseMode::Reject;
        let check = self.class_check(state);
        let mut events = Vec::new();
        for (sid, v) in samples.iter().zip(new) {
            let Some(s) = state.sample(*sid) else {
                continue;
            };
            self.report.denoise.judged += 1;
            // Near-copies first: of a seed, an earlier example or one
            // before it in this reply.
            let near = (cfg.near_duplicate < 1.0)
                .then(|| self.nearest_known(state, &v))
                .flatten()
                .filter(|(_, c)| f64::from(*c) >= cfg.near_duplicate);
            let j = denoiser.judge(&v, &s.label, &sample_attributes(s), &counts, instructions);
            let (reason, actor) = match near {
                Some((of, c)) => (Some(format!("near-copy of #{of} (cos {c:.2})")), "dedup"),
                None => (
                    j.reason
                        .clone()
                        .or_else(|| check.as_ref().and_then(|c| c.disagrees(&v, &s.label))),
                    DENOISE_ACTOR,
                ),
            };
            events.push(EventKind::NoiseScored(NoiseScored {
                sample: *sid,
                noise: f64::from(j.noise),
                seed_similarity: j.seed_similarity.map(f64::from),
                echo: f64::from(j.echo_similarity),
                reason: reason.clone().map(Into::into),
                model: self.denoise.model.as_str().into(),
            }));
            match reason {
                Some(r) if reject && s.status() == Status::Pending => {
                    if near.is_some() {
                        self.report.denoise.near_copies += 1;
                    } else {
                        self.report.denoise.rejected += 1;
                    }
                    events.push(EventKind::decided(
                        *sid,
                        Decision {
                            kind: DecisionKind::Reject,
                            label: None,
                            reason: Some(r.into()),
                            by: Actor::Auto(actor.into()),
                        },
                    ));
                }
                Some(_) => {
                    self.report.denoise.flagged += 1;
                    self.denoise.vectors.insert(*sid, v);
                }
                None => {
                    self.denoise.vectors.insert(*sid, v);
                }
            }
        }
        events
    }

    /// Hand the seeds' vectors to the generator once they are known (a
    /// class whose seeds all have one): `mix` then shows seeds near the
    /// other class of the pair (`[strategy.mix] exemplars`).
    fn share_seed_vectors(&mut self, state: &ProjectState) {
        if self.generator.has_seed_vectors() {
            return;
        }
        let mut by_class: BTreeMap<String, Option<Vec<Vec<f32>>>> = BTreeMap::new();
        for s in state.samples.iter().filter(|s| s.origin == Origin::Seed) {
            let entry = by_class
                .entry(s.label.to_string())
                .or_insert(Some(Vec::new()));
            match (entry.as_mut(), self.denoise.vectors.get(&s.id)) {
                (Some(list), Some(v)) => list.push(v.clone()),
                _ => *entry = None,
            }
        }
        let known: BTreeMap<String, Vec<Vec<f32>>> = by_class
            .into_iter()
            .filter_map(|(c, v)| Some((c, v?)))
            .collect();
        self.generator.set_seed_vectors(known);
    }

    /// The seed or kept example nearest to `v` and its cosine.
    fn nearest_known(&self, state: &ProjectState, v: &[f32]) -> Option<(SampleId, f32)> {
        self.denoise
            .vectors
            .iter()
            .filter(|(id, _)| state.sample(**id).is_some_and(compared))
            .map(|(id, u)| (*id, max_similarity(v, [u.as_slice()]).unwrap_or(-1.0)))
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
    }

    /// The judgements are in the journal: count, relabel what was kept.
    pub(super) fn denoise_appended(&mut self, state: &ProjectState, out: &mut Output) {
        self.denoise.appending = self.denoise.appending.saturating_sub(1);
        let keep = std::mem::take(&mut self.denoise.relabel_after);
        self.release(state, keep, out);
    }

    /// How many of `events` (a judgement's append) rejected a sample.
    pub(super) fn rejections(events: &[crate::domain::Event]) -> (usize, usize) {
        let mut noise = 0;
        let mut copies = 0;
        for e in events {
            if let EventKind::Decided(d) = &e.kind
                && d.decision.kind == DecisionKind::Reject
                && let Actor::Auto(a) = &d.decision.by
            {
                if a == DENOISE_ACTOR {
                    noise += 1;
                } else {
                    copies += 1;
                }
            }
        }
        (noise, copies)
    }
}

/// How many classes a relabel prompt offers when it offers the nearest
/// (PromptMix's reference code: the top 5 by sentence embedding).
pub const NEAREST_CLASSES: usize = 5;

impl Session {
    /// The [`NEAREST_CLASSES`] classes nearest to sample `id` by embedding
    /// (its highest cosine to each class's seeds; its intended class always
    /// among them), when the relabel prompt should offer those and the
    /// vectors are known; `None` otherwise.
    pub(super) fn nearest_classes(
        &self,
        state: &ProjectState,
        id: SampleId,
    ) -> Option<Vec<String>> {
        if !self.generator.relabels_nearest() {
            return None;
        }
        let v = self.denoise.vectors.get(&id)?;
        let s = state.sample(id)?;
        let mut best: BTreeMap<&str, f32> = BTreeMap::new();
        for seed in state.samples.iter().filter(|x| x.origin == Origin::Seed) {
            if let Some(u) = self.denoise.vectors.get(&seed.id) {
                let c = max_similarity(v, [u.as_slice()]).unwrap_or(-1.0);
                let e = best.entry(seed.label.as_str()).or_insert(f32::NEG_INFINITY);
                *e = e.max(c);
            }
        }
        if best.len() < 2 {
            return None;
        }
        let mut ranked: Vec<(&str, f32)> = best.into_iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        let mut names: Vec<String> = vec![s.label.to_string()];
        for (name, _) in ranked {
            if names.len() >= NEAREST_CLASSES {
                break;
            }
            if name != s.label {
                names.push(name.to_owned());
            }
        }
        Some(names)
    }
}

/// Seeds and generated examples still in play are what a new example is
/// compared with (rejected ones and held-out examples are not).
fn compared(s: &SampleState) -> bool {
    match s.origin {
        Origin::Seed => true,
        Origin::Generated => s.status() != Status::Rejected && !is_dup_rejected(s),
        _ => false,
    }
}
