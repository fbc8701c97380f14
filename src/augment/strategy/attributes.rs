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
    /// Drop a line that repeats the attribute list instead of being a text
    /// (small models answer "length - 23 words or more", "tone: casual").
    fn keep(&self, planned: &PlannedRequest, text: &str) -> bool {
        !echoes_attribute(planned, text)
    }
}

/// Whether `text` starts with one of the request's dimension names
/// followed by `:`, `-` or `=`, or holds a value's description (three
/// words or more) from the prompt's attribute list.
pub fn echoes_attribute(planned: &PlannedRequest, text: &str) -> bool {
    let t = text.trim().to_lowercase();
    let prompt = planned.prompt();
    planned.provenance.attributes.keys().any(|d| {
        t.strip_prefix(&d.to_lowercase())
            .is_some_and(|rest| rest.trim_start().starts_with([':', '-', '=', '—']))
    }) || prompt
        .lines()
        .filter_map(|l| {
            l.strip_prefix("- ")?
                .split_once(" — ")
                .map(|(_, desc)| desc)
        })
        .filter(|desc| desc.split_whitespace().count() >= 3)
        .any(|desc| t.contains(&desc.to_lowercase()))
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
        strategy: Some(domain::Strategy::Attributes.as_str().into()),
        classes: vec![class.name.as_str().into()],
        attributes: chosen,
        template: Some(TEMPLATE.into()),
        template_hash: Some(cx.templates.hash(TEMPLATE).into()),
        model: Some(cx.model.into()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::Generator;
    use crate::augment::templates::Templates;
    use crate::domain::testing::{apply, attribute_dims, tagged_seed, topics_config};
    use crate::domain::{EventKind, ProjectConfig, ProjectState, SampleAdded};

    const NAMES: [&str; 2] = ["sports", "food"];

    fn config() -> ProjectConfig {
        let mut cfg = topics_config(&NAMES);
        cfg.attributes = attribute_dims(&[
            (
                "tone",
                &[
                    ("angry", "annoyed or upset"),
                    ("casual", "relaxed, everyday wording"),
                    ("formal", "polite, complete sentences"),
                ],
            ),
            (
                "length",
                &[("long", "two sentences"), ("short", "a few words")],
            ),
        ]);
        cfg.generation.strategy = domain::Strategy::Attributes;
        cfg
    }

    fn state() -> ProjectState {
        let seeds = [
            tagged_seed("What a goal!", "sports", "tone=casual;length=short"),
            tagged_seed(
                "The referee's decision was, frankly, outrageous. I demand a review.",
                "sports",
                "tone=angry;length=long",
            ),
            tagged_seed("The match concluded in a draw.", "sports", "tone=formal"),
            tagged_seed("yum, pizza", "food", "tone=casual;length=short"),
        ];
        let mut st = ProjectState::new(true);
        apply(
            &mut st,
            seeds
                .into_iter()
                .enumerate()
                .map(|(i, s)| EventKind::SampleAdded(SampleAdded::new(i as u64 + 1, s)))
                .collect(),
        );
        st
    }

    fn generator(cfg: &ProjectConfig, st: &ProjectState) -> Generator {
        Generator::new(
            cfg,
            cfg.classes.clone(),
            cfg.generation.clone(),
            Templates::builtin(),
            st,
        )
    }

    fn counts(pairs: &[(&str, &str, u64)]) -> domain::AttributeCounts {
        let mut c = domain::AttributeCounts::new();
        for (d, v, n) in pairs {
            c.entry(d.to_string())
                .or_default()
                .insert(v.to_string(), *n);
        }
        c
    }

    #[test]
    fn inverse_frequency_favours_rare_values() {
        let attrs = attribute_dims(&[("tone", &[("angry", ""), ("casual", ""), ("formal", "")])]);
        let c = counts(&[("tone", "formal", 20), ("tone", "angry", 2)]);
        let mut seen: BTreeMap<String, u32> = BTreeMap::new();
        let draws = 4000;
        for i in 0..draws {
            let got = draw_attributes(&attrs, &BTreeMap::new(), &c, "sports", &mut rng_for(3, i));
            assert_eq!(got.len(), 1, "one dimension: one value");
            *seen.entry(got["tone"].clone()).or_default() += 1;
        }
        // weight / (1 + count): casual 1, angry 1/3, formal 1/21.
        let total = 1.0 + 1.0 / 3.0 + 1.0 / 21.0;
        for (v, expect) in [
            ("casual", 1.0 / total),
            ("angry", 1.0 / 3.0 / total),
            ("formal", 1.0 / 21.0 / total),
        ] {
            let share = f64::from(seen[v]) / draws as f64;
            assert!(
                (share - expect).abs() < 0.03,
                "{v}: {share:.3} vs {expect:.3} ({seen:?})"
            );
        }
        assert!(seen["casual"] > seen["angry"] && seen["angry"] > seen["formal"]);
    }

    #[test]
    fn weights_scale_the_draw_and_zero_never_draws() {
        let attrs = attribute_dims(&[("tone", &[("angry", ""), ("casual", ""), ("formal", "")])]);
        let mut w: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
        w.entry("tone".into())
            .or_default()
            .insert("angry".into(), 0.0);
        w.entry("tone".into())
            .or_default()
            .insert("formal".into(), 3.0);
        let mut seen: BTreeMap<String, u32> = BTreeMap::new();
        for i in 0..2000 {
            let got = draw_attributes(&attrs, &w, &BTreeMap::new(), "food", &mut rng_for(9, i));
            *seen.entry(got["tone"].clone()).or_default() += 1;
        }
        assert!(!seen.contains_key("angry"), "{seen:?}");
        let ratio = f64::from(seen["formal"]) / f64::from(seen["casual"]);
        assert!((2.5..3.6).contains(&ratio), "formal:casual {ratio:.2}");
        // Every value at weight 0: the dimension is left out.
        w.entry("tone".into())
            .or_default()
            .insert("casual".into(), 0.0);
        w.entry("tone".into())
            .or_default()
            .insert("formal".into(), 0.0);
        assert!(
            draw_attributes(&attrs, &w, &BTreeMap::new(), "food", &mut rng_for(9, 0)).is_empty()
        );
    }

    #[test]
    fn one_to_three_dimensions_only_those_of_the_class() {
        let mut attrs = attribute_dims(&[
            ("a", &[("x", "")]),
            ("b", &[("x", "")]),
            ("c", &[("x", "")]),
            ("d", &[("x", "")]),
        ]);
        attrs.get_mut("d").unwrap().classes = vec!["food".into()];
        let mut sizes = std::collections::BTreeSet::new();
        for i in 0..300 {
            let got = draw_attributes(
                &attrs,
                &BTreeMap::new(),
                &BTreeMap::new(),
                "sports",
                &mut rng_for(1, i),
            );
            assert!(!got.contains_key("d"), "d is only for food");
            sizes.insert(got.len());
        }
        assert_eq!(sizes.into_iter().collect::<Vec<_>>(), [1, 2, 3]);
        let food_has_d = (0..300).any(|i| {
            draw_attributes(
                &attrs,
                &BTreeMap::new(),
                &BTreeMap::new(),
                "food",
                &mut rng_for(1, i),
            )
            .contains_key("d")
        });
        assert!(food_has_d);
    }

    #[test]
    fn exemplars_are_chosen_by_overlap() {
        let t = |s: &str| domain::parse_attributes(s).unwrap();
        let tags = [
            t("tone=casual;length=short"),
            t("tone=angry;length=long"),
            t("tone=formal"),
            t(""),
            t("tone=angry;length=short"),
        ];
        let refs: Vec<&BTreeMap<String, String>> = tags.iter().collect();
        let wanted = t("tone=angry;length=long");
        for i in 0..50 {
            let got = pick_by_overlap(&refs, &wanted, 2, &mut rng_for(5, i));
            // Both values (1), then one value (4); nothing else can beat them.
            assert_eq!(got, [1, 4]);
        }
        // Ties are broken by the draw: every one-value match shows up.
        let wanted = t("tone=angry");
        let firsts: std::collections::BTreeSet<Vec<usize>> = (0..50)
            .map(|i| pick_by_overlap(&refs, &wanted, 1, &mut rng_for(5, i)))
            .collect();
        assert_eq!(firsts.into_iter().collect::<Vec<_>>(), [vec![1], vec![4]]);
    }

    #[test]
    fn a_request_shows_overlapping_seeds_and_records_its_attributes() {
        let cfg = config();
        let st = state();
        let mut g = generator(&cfg, &st);
        for _ in 0..20 {
            let p = g.plan_generate().unwrap();
            let RequestKind::Generate { target } = &p.kind else {
                panic!("a generate request")
            };
            let attrs = &p.provenance.attributes;
            assert!((1..=2).contains(&attrs.len()), "{attrs:?}");
            assert_eq!(p.provenance.strategy.as_deref(), Some("attributes"));
            assert_eq!(p.provenance.classes, std::slice::from_ref(target));
            let prompt = p.prompt();
            for (d, v) in attrs {
                let desc = &cfg.attributes[d].values[v];
                assert!(prompt.contains(&format!("- {d}: {v} — {desc}")), "{prompt}");
            }
            if target == "sports" && attrs.get("tone").map(String::as_str) == Some("angry") {
                assert!(
                    p.shown_examples.iter().any(|e| e.contains("outrageous")),
                    "{prompt}"
                );
            }
        }
    }

    #[test]
    fn planned_requests_spread_over_the_values() {
        let cfg = config();
        let mut g = generator(&cfg, &state());
        let mut seen: BTreeMap<String, u32> = BTreeMap::new();
        for _ in 0..60 {
            let p = g.plan_generate().unwrap();
            if let Some(v) = p.provenance.attributes.get("tone") {
                *seen.entry(v.clone()).or_default() += 1;
            }
        }
        let (lo, hi) = (seen.values().min().unwrap(), seen.values().max().unwrap());
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(
            hi - lo <= hi / 3 + 2,
            "counts feed back into the draw: {seen:?}"
        );
    }

    #[test]
    fn lines_repeating_the_attribute_list_are_dropped() {
        let cfg = config();
        let mut g = generator(&cfg, &state());
        let p = (0..20)
            .map(|_| g.plan_generate().unwrap())
            .find(|p| p.provenance.attributes.get("tone").map(String::as_str) == Some("formal"))
            .expect("a formal request");
        let s = Attributes;
        for echo in [
            "tone: formal",
            "Tone - polite and complete",
            "Each one uses polite, complete sentences and is short.",
        ] {
            assert!(!s.keep(&p, echo), "{echo}");
        }
        for real in [
            "Would you kindly tell me who won the 1998 final?",
            "Toner cartridges: where are they sold?",
        ] {
            assert!(s.keep(&p, real), "{real}");
        }
    }

    #[test]
    fn deterministic_per_stream() {
        let cfg = config();
        let st = state();
        let plans = |stream: u64| {
            let mut g = generator(&cfg, &st);
            g.set_stream(stream);
            (0..8)
                .map(|_| {
                    let p = g.plan_generate().unwrap();
                    (p.prompt(), p.provenance.attributes)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(plans(0), plans(0));
        assert_eq!(plans(4), plans(4));
        assert_ne!(plans(0), plans(4));
    }

    #[test]
    fn without_dimensions_the_plan_is_a_user_error() {
        let mut cfg = config();
        cfg.attributes.clear();
        let err = generator(&cfg, &state()).plan_generate().unwrap_err();
        assert!(format!("{err:#}").contains("[attributes.tone]"), "{err:#}");
    }
}
