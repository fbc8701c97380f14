//! Generation strategies behind one interface.
//!
//! A strategy plans one request at a time ([`Strategy::plan`]) from a
//! [`PlanContext`] (task, classes, seeds, settings, templates) and an
//! [`Ask`] (how many examples; for strategies fed by held-out errors, which
//! error), and may drop parsed texts before dedup ([`Strategy::keep`]).
//! What the reply becomes (parse → dedup → `sample_added`) is the same for
//! every strategy and lives in [`Generator`](super::Generator).
//!
//! The plan is a [`PlannedRequest`]; what goes over the wire is the
//! engine's business (`PlannedRequest::job`), so a strategy never talks to
//! a server and the session that drives strategies submits whatever job
//! kind the engine runs.
//!
//! Adding a strategy touches: its module here (a unit struct implementing
//! [`Strategy`]), its template in `prompts/` (listed in
//! [`templates::BUILTINS`](super::templates::BUILTINS)), one line in
//! [`REGISTRY`], and its name in [`domain::Strategy`] (the settings' and the
//! command line's spelling of it).

pub mod attributes;
pub mod extrapolate;
pub mod mix;
pub mod plain;

use std::collections::BTreeMap;

use super::generator::{PlannedRequest, REQUEST_KEY, RequestKind, STREAM_KEY};
use super::sampling::{
    ClassSchedule, alpha_pcts, pick_shots, pick_with, rng_for, splitmix64, stream_seed,
};
use super::templates::{ClassContext, GenerateContext, TaskContext, Templates};
use crate::domain::{self, Class, GenerationSettings, Mistake, Provenance, TaskConfig};
use crate::llm::{ChatRequest, Message};

/// What a strategy's requests are planned from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The settings alone: `generate`, the TUI's `g`, the Controls pane.
    Settings,
    /// Held-out errors handed over by an S3 round (`loop`, the TUI's `R`).
    HeldoutErrors,
}

/// Everything a strategy may read to plan a request.
#[derive(Debug, Clone, Copy)]
pub struct PlanContext<'a> {
    pub task: &'a TaskConfig,
    pub classes: &'a [Class],
    pub settings: &'a GenerationSettings,
    pub templates: &'a Templates,
    /// Seed texts per class, in journal order.
    pub seeds: &'a BTreeMap<String, Vec<String>>,
    /// S3 rationales per class (`rationales_added`).
    pub rationales: &'a BTreeMap<String, Vec<String>>,
    pub model: &'a str,
    /// Number of this request among the settings-planned ones (drives the
    /// draws, so a re-run plans the same prompts and hits the cache).
    pub counter: u64,
    /// Examples per class and per intended/minor pair so far (accepted +
    /// pending + planned): the deficit scheduler picks the intended class
    /// (and the minor one of a mix pair) from it.
    pub schedule: &'a ClassSchedule,
    /// This run's seed stream (one past the highest recorded; see
    /// [`stream_seed`]).
    pub stream: u64,
    /// Attribute dimensions of the config (`attributes` strategy).
    pub attributes: &'a BTreeMap<String, domain::AttributeDim>,
    /// Live attribute value weights (1.0 when absent).
    pub attribute_weights: &'a BTreeMap<String, BTreeMap<String, f64>>,
    /// Generated examples per attribute value so far (accepted + pending +
    /// planned), for inverse-frequency sampling.
    pub attribute_counts: &'a domain::AttributeCounts,
    /// Attribute tags of the seeds, parallel to `seeds`.
    pub seed_attributes: &'a BTreeMap<String, Vec<BTreeMap<String, String>>>,
    /// `[strategy.mix] exemplars`.
    pub mix_exemplars: domain::MixExemplars,
    /// Sentence vectors of the seeds, parallel to `seeds` (only classes
    /// whose seeds all have one).
    pub seed_vectors: &'a BTreeMap<String, Vec<Vec<f32>>>,
}

impl PlanContext<'_> {
    pub fn task_ctx(&self) -> TaskContext {
        TaskContext {
            name: self.task.name.clone(),
            description: self.task.description.clone(),
        }
    }
}

/// One held-out error to extrapolate from.
#[derive(Debug, Clone, Copy)]
pub struct ErrorSource<'a> {
    pub mistake: &'a Mistake,
    pub round: u32,
    /// How many requests of this round used the same error before (each
    /// repeat gets its own sampling seed).
    pub repeat: u64,
}

/// What to plan.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// Examples to ask for.
    pub n: usize,
    /// The error to extrapolate (strategies with [`Input::HeldoutErrors`]).
    pub error: Option<ErrorSource<'a>>,
}

/// A way to ask the LLM for new examples.
pub trait Strategy: Sync {
    fn kind(&self) -> domain::Strategy;
    fn name(&self) -> &'static str {
        self.kind().as_str()
    }
    fn input(&self) -> Input {
        Input::Settings
    }
    /// Plan one request.
    fn plan(&self, cx: &PlanContext<'_>, ask: &Ask<'_>) -> anyhow::Result<PlannedRequest>;
    /// Keep a parsed text of a reply to `planned` (before dedup); the
    /// default keeps all.
    fn keep(&self, _planned: &PlannedRequest, _text: &str) -> bool {
        true
    }
}

/// Every strategy, in the order the Controls pane cycles through them.
pub static REGISTRY: &[&dyn Strategy] = &[
    &mix::Mix,
    &plain::Plain,
    &attributes::Attributes,
    &extrapolate::Extrapolate,
];

/// The strategy of a settings value.
pub fn get(kind: domain::Strategy) -> &'static dyn Strategy {
    *REGISTRY
        .iter()
        .find(|s| s.kind() == kind)
        .expect("every domain::Strategy is in the registry (tested)")
}

/// The strategies that plan from the settings alone (those `generate` and
/// the Controls pane offer).
pub fn from_settings() -> impl Iterator<Item = domain::Strategy> {
    REGISTRY
        .iter()
        .filter(|s| s.input() == Input::Settings)
        .map(|s| s.kind())
}

/// The shared body of the class-based strategies (`mix`, `plain`): draw
/// the classes, α and shots, render `template`.
pub(crate) fn class_prompt(
    cx: &PlanContext<'_>,
    n: usize,
    kind: domain::Strategy,
    template: &str,
) -> anyhow::Result<PlannedRequest> {
    let s = cx.settings;
    let mix = kind == domain::Strategy::Mix;
    let seed = stream_seed(s.seed, cx.stream);
    let mut rng = rng_for(seed, cx.counter);
    let no_weight =
        || crate::error::user("every class has weight 0: nothing to generate (raise a weight)");
    // Target (and minor) by deficit against the weights; the rest drawn.
    let (target, minor) = cx.schedule.next(cx.classes, mix, n).ok_or_else(no_weight)?;
    let pk = pick_with(cx.classes, s, &mut rng, target, minor).ok_or_else(no_weight)?;
    let mut shown_examples = Vec::new();
    // Mix: each class's seeds nearest the other class of the pair, when
    // the vectors of both are known.
    let boundary = mix && cx.mix_exemplars == domain::MixExemplars::Boundary;
    let toward = |i: usize| -> Option<&str> {
        let other = if i == pk.target { pk.minor? } else { pk.target };
        Some(cx.classes[other].name.as_str())
    };
    let mut near_boundary = false;
    let classes: Vec<ClassContext> = pk
        .shown
        .iter()
        .map(|&i| {
            let c = &cx.classes[i];
            let pool = cx.seeds.get(&c.name).map(Vec::as_slice).unwrap_or(&[]);
            let near = boundary
                .then(|| toward(i))
                .flatten()
                .and_then(|other| boundary_pool(cx, &c.name, other));
            let examples = match near {
                Some(order) => {
                    near_boundary = true;
                    let picked = pick_shots(&order, s.shots, &mut rng);
                    picked.into_iter().map(|k| pool[k].clone()).collect()
                }
                None => pick_shots(pool, s.shots, &mut rng),
            };
            shown_examples.extend(examples.iter().cloned());
            ClassContext {
                name: c.name.clone(),
                description: c.description.clone(),
                examples,
            }
        })
        .collect();
    let target = cx.classes[pk.target].name.clone();
    let minor = pk.minor.map(|i| cx.classes[i].name.clone());
    let (major_pct, minor_pct) = alpha_pcts(pk.alpha);
    let ctx = GenerateContext {
        task: cx.task_ctx(),
        classes,
        n,
        target: target.clone(),
        minor: minor.clone(),
        major_pct,
        minor_pct,
    };
    // Drawn last, so turning rationales on leaves every other draw as it was.
    let rationale = draw_rationale(cx, &target, &mut rng);
    let prompt = cx.templates.render(
        template,
        &WithRationale {
            ctx: &ctx,
            rationale: rationale.as_deref(),
        },
    )?;
    let mut request = ChatRequest::new(vec![Message::user(prompt)]);
    request.temperature = Some(s.temperature);
    request.max_tokens = Some(s.max_tokens);
    request.seed = Some(splitmix64(seed ^ cx.counter));
    let mut provenance = Provenance {
        strategy: Some(kind.as_str().into()),
        classes: ctx.classes.iter().map(|c| c.name.as_str().into()).collect(),
        minor: minor.map(Into::into),
        alpha: mix.then_some(pk.alpha),
        template: Some(template.into()),
        template_hash: Some(cx.templates.hash(template).into()),
        model: Some(cx.model.into()),
        temperature: Some(s.temperature),
        rationale: rationale.map(Into::into),
        ..Provenance::default()
    };
    provenance
        .extra
        .insert(REQUEST_KEY.into(), serde_json::json!(cx.counter));
    provenance
        .extra
        .insert(STREAM_KEY.into(), serde_json::json!(cx.stream));
    if near_boundary {
        provenance
            .extra
            .insert(EXEMPLARS_KEY.into(), serde_json::json!("boundary"));
    }
    Ok(PlannedRequest {
        request,
        kind: RequestKind::Generate { target },
        provenance,
        n,
        shown_examples,
        labels: Vec::new(),
    })
}

/// Provenance key of how a mix prompt's examples were chosen
/// (`"boundary"`; absent when drawn at random).
pub const EXEMPLARS_KEY: &str = "exemplars";

/// Indices (into `class`'s seeds) of the nearer half of its seeds to
/// `other`'s centroid, nearest first (at least the shots wanted; ties by
/// seed order), when both classes' seed vectors are known; `None`
/// otherwise. The shots are then drawn from these with the request's rng,
/// so prompts vary but stay near the boundary.
pub(crate) fn boundary_pool(cx: &PlanContext<'_>, class: &str, other: &str) -> Option<Vec<usize>> {
    let own = cx.seed_vectors.get(class)?;
    let theirs = cx.seed_vectors.get(other)?;
    let dim = theirs.first()?.len();
    let mut centroid = vec![0f32; dim];
    for v in theirs {
        for (c, x) in centroid.iter_mut().zip(v) {
            *c += x;
        }
    }
    let mut ranked: Vec<(usize, f32)> = own
        .iter()
        .enumerate()
        .map(|(k, v)| (k, cosine(v, &centroid)))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let keep = own.len().div_ceil(2).max(cx.settings.shots).min(own.len());
    let mut near: Vec<usize> = ranked.into_iter().take(keep).map(|(k, _)| k).collect();
    near.sort_unstable();
    Some(near)
}

/// Cosine of two vectors (0 when either is zero).
fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa.sqrt() * bb.sqrt())
    }
}

/// A rationale of `target` when `use_rationales` is on and it has any.
fn draw_rationale(cx: &PlanContext<'_>, target: &str, rng: &mut impl rand::Rng) -> Option<String> {
    if !cx.settings.use_rationales {
        return None;
    }
    let list = cx.rationales.get(target).filter(|l| !l.is_empty())?;
    Some(list[rng.random_range(0..list.len())].clone())
}

/// A generation context plus the optional S3 rationale (`rationale` in
/// the templates; test it with `is defined` so a context without it renders).
#[derive(serde::Serialize)]
struct WithRationale<'a> {
    #[serde(flatten)]
    ctx: &'a GenerateContext,
    rationale: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_strategy_is_registered_once() {
        for kind in [
            domain::Strategy::Mix,
            domain::Strategy::Plain,
            domain::Strategy::Extrapolate,
            domain::Strategy::Attributes,
        ] {
            // A new variant fails to compile here until it is listed.
            match kind {
                domain::Strategy::Mix
                | domain::Strategy::Plain
                | domain::Strategy::Extrapolate
                | domain::Strategy::Attributes => {}
            }
            assert_eq!(REGISTRY.iter().filter(|s| s.kind() == kind).count(), 1);
            assert_eq!(get(kind).name(), kind.as_str());
        }
        assert_eq!(
            from_settings().collect::<Vec<_>>(),
            [
                domain::Strategy::Mix,
                domain::Strategy::Plain,
                domain::Strategy::Attributes
            ]
        );
    }
}
