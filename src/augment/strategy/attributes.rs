//! `attributes`: multi-attribute generation, the hard-prompt part of MSP
//! (Chen et al., EMNLP 2023; `prompts/attributes.j2`).
//!
//! Each request:
//! * takes its class from the deficit schedule, like `plain`;
//! * picks 1–3 of the attribute dimensions that apply to that class
//!   (`[attributes.NAME]` in `straddle.toml`, `classes = […]` limiting a
//!   dimension) and one value of each, drawn with probability
//!   `weight / (1 + count)`: `count` is how many generated examples
//!   already carry that value (accepted + pending + asked for by the
//!   requests planned so far), so rare values are drawn more often (MSP's
//!   inverse-frequency sampling) and a weight of 0 never draws it;
//! * shows the class's seeds with the most of those values (attribute
//!   tags imported with the seeds), ties broken by the request's draw;
//! * asks for several distinct texts expressing all the values at once.
//!
//! The values are recorded in every sample's provenance
//! ([`Provenance::attributes`](crate::domain::Provenance::attributes)).

use std::collections::BTreeMap;

use rand::Rng;
use rand::seq::SliceRandom;
use serde::Serialize;

use super::{Ask, PlanContext, Strategy};
use crate::augment::generator::{PlannedRequest, REQUEST_KEY, RequestKind, STREAM_KEY};
use crate::augment::sampling::{rng_for, splitmix64, stream_seed};
use crate::augment::templates::TaskContext;
use crate::domain::{self, AttributeDim, Provenance};
use crate::llm::{ChatRequest, Message};

/// Template file name.
pub const TEMPLATE: &str = "attributes.j2";

/// The most attribute values one request combines.
pub const MAX_VALUES: usize = 3;

pub struct Attributes;

impl Strategy for Attributes {
    fn kind(&self) -> domain::Strategy {
        domain::Strategy::Attributes
    }
    fn plan(&self, cx: &PlanContext<'_>, ask: &Ask<'_>) -> anyhow::Result<PlannedRequest> {
        plan(cx, ask.n)
    }
}

/// A value's draw weight: its live weight over one plus its count.
pub fn value_weight(weight: f64, count: u64) -> f64 {
    if weight.is_finite() && weight > 0.0 {
        weight / (1.0 + count as f64)
    } else {
        0.0
    }
}

/// Draw 1–[`MAX_VALUES`] `(dimension, value)` pairs for a request of
/// `class`: dimensions that apply to it and have a value with positive
/// weight, chosen uniformly without replacement; one value per dimension
/// by [`value_weight`]. Empty when no dimension applies.
pub fn draw_attributes(
    attributes: &BTreeMap<String, AttributeDim>,
    weights: &BTreeMap<String, BTreeMap<String, f64>>,
    counts: &domain::AttributeCounts,
    class: &str,
    rng: &mut impl Rng,
) -> BTreeMap<String, String> {
    let weight_of = |d: &str, v: &str| {
        weights
            .get(d)
            .and_then(|m| m.get(v))
            .copied()
            .unwrap_or(1.0)
    };
    let count_of = |d: &str, v: &str| counts.get(d).and_then(|m| m.get(v)).copied().unwrap_or(0);
    let mut dims: Vec<(&String, &AttributeDim)> = attributes
        .iter()
        .filter(|(d, a)| {
            a.applies_to(class)
                && a.values
                    .keys()
                    .any(|v| value_weight(weight_of(d, v), 0) > 0.0)
        })
        .collect();
    let mut out = BTreeMap::new();
    if dims.is_empty() {
        return out;
    }
    let k = rng.random_range(1..=dims.len().min(MAX_VALUES));
    dims.shuffle(rng);
    for (d, a) in dims.into_iter().take(k) {
        let ws: Vec<f64> = a
            .values
            .keys()
            .map(|v| value_weight(weight_of(d, v), count_of(d, v)))
            .collect();
        let total: f64 = ws.iter().sum();
        let mut x = rng.random::<f64>() * total;
        let mut chosen = None;
        for (v, w) in a.values.keys().zip(&ws) {
            if *w <= 0.0 {
                continue;
            }
            chosen = Some(v);
            if x < *w {
                break;
            }
            x -= w;
        }
        if let Some(v) = chosen {
            out.insert(d.clone(), v.clone());
        }
    }
    out
}

/// Indices of up to `k` exemplars from `tags` (one attribute map per
/// seed): the most overlapping with `wanted` first (shared
/// `(dimension, value)` pairs), ties in the order of a shuffle drawn from
/// `rng`; returned in pool order.
pub fn pick_by_overlap(
    tags: &[&BTreeMap<String, String>],
    wanted: &BTreeMap<String, String>,
    k: usize,
    rng: &mut impl Rng,
) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..tags.len()).collect();
    idx.shuffle(rng);
    let overlap = |i: usize| {
        wanted
            .iter()
            .filter(|(d, v)| tags[i].get(*d) == Some(*v))
            .count()
    };
    // Stable: the shuffle breaks ties.
    idx.sort_by_key(|&i| std::cmp::Reverse(overlap(i)));
    idx.truncate(k);
    idx.sort_unstable();
    idx
}

/// What `attributes.j2` sees.
#[derive(Debug, Clone, Serialize)]
pub struct AttributesContext {
    pub task: TaskContext,
    pub class: AttrClass,
    pub attributes: Vec<AttrValue>,
    /// Examples asked for.
    pub n: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttrClass {
    pub name: String,
    pub description: String,
    pub examples: Vec<AttrExample>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttrExample {
    pub text: String,
    /// Its attribute tags as `tone: formal, length: short` ("" without).
    pub tags: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttrValue {
    pub dimension: String,
    pub value: String,
    /// The value's one-line description.
    pub description: String,
}

fn plan(cx: &PlanContext<'_>, n: usize) -> anyhow::Result<PlannedRequest> {
    let s = cx.settings;
    if cx.attributes.is_empty() {
        return Err(crate::error::user(
            "the attributes strategy needs attribute dimensions: declare them in straddle.toml, e.g.\n\
             [attributes.tone]\nvalues.formal = \"polite, complete sentences\"\nvalues.casual = \"relaxed, everyday wording\"",
        ));
    }
    let seed = stream_seed(s.seed, cx.stream);
    let mut rng = rng_for(seed, cx.counter);
    let (target, _) = cx.schedule.next(cx.classes, false, n).ok_or_else(|| {
        crate::error::user("every class has weight 0: nothing to generate (raise a weight)")
    })?;
    let class = &cx.classes[target];
    let chosen = draw_attributes(
        cx.attributes,
        cx.attribute_weights,
        cx.attribute_counts,
        &class.name,
        &mut rng,
    );
    let pool = cx.seeds.get(&class.name).map(Vec::as_slice).unwrap_or(&[]);
    let empty = BTreeMap::new();
    let tags: Vec<&BTreeMap<String, String>> = (0..pool.len())
        .map(|i| {
            cx.seed_attributes
                .get(&class.name)
                .and_then(|t| t.get(i))
                .unwrap_or(&empty)
        })
        .collect();
    let picked = pick_by_overlap(&tags, &chosen, s.shots, &mut rng);
    let examples: Vec<AttrExample> = picked
        .iter()
        .map(|&i| AttrExample {
            text: pool[i].clone(),
            tags: tags[i]
                .iter()
                .map(|(d, v)| format!("{d}: {v}"))
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    let shown_examples: Vec<String> = examples.iter().map(|e| e.text.clone()).collect();
    let ctx = AttributesContext {
        task: cx.task_ctx(),
        class: AttrClass {
            name: class.name.clone(),
            description: class.description.clone(),
            examples,
        },
        attributes: chosen
            .iter()
            .map(|(d, v)| AttrValue {
                dimension: d.clone(),
                value: v.clone(),
                description: cx.attributes[d].values[v].clone(),
            })
            .collect(),
        n,
    };
    let prompt = cx.templates.render(TEMPLATE, &ctx)?;
    let mut request = ChatRequest::new(vec![Message::user(prompt)]);
    request.temperature = Some(s.temperature);
    request.max_tokens = Some(s.max_tokens);
    request.seed = Some(splitmix64(seed ^ cx.counter));
    let mut provenance = Provenance {
        strategy: Some(domain::Strategy::Attributes.as_str().to_string()),
        classes: vec![class.name.clone()],
        attributes: chosen,
        template: Some(TEMPLATE.to_string()),
        template_hash: Some(cx.templates.hash(TEMPLATE).to_string()),
        model: Some(cx.model.to_string()),
        temperature: Some(s.temperature),
        ..Provenance::default()
    };
    provenance
        .extra
        .insert(REQUEST_KEY.into(), serde_json::json!(cx.counter));
    provenance
        .extra
        .insert(STREAM_KEY.into(), serde_json::json!(cx.stream));
    Ok(PlannedRequest {
        request,
        kind: RequestKind::Generate {
            target: class.name.clone(),
        },
        provenance,
        n,
        shown_examples,
        labels: Vec::new(),
    })
}
