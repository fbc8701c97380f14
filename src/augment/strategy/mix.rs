//! `mix`: class-boundary generation (PromptMix). Shows `classes_per_prompt`
//! classes with descriptions and examples and asks for texts that are α
//! one class and 1-α another (`prompts/mix.j2`).

use super::{Ask, PlanContext, Strategy, class_prompt};
use crate::augment::generator::PlannedRequest;
use crate::domain;

/// Template file name.
pub const TEMPLATE: &str = "mix.j2";

pub struct Mix;

impl Strategy for Mix {
    fn kind(&self) -> domain::Strategy {
        domain::Strategy::Mix
    }
    fn plan(&self, cx: &PlanContext<'_>, ask: &Ask<'_>) -> anyhow::Result<PlannedRequest> {
        class_prompt(cx, ask.n, self.kind(), TEMPLATE)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::augment::Generator;
    use crate::augment::strategy::EXEMPLARS_KEY;
    use crate::augment::templates::Templates;
    use crate::domain::testing::{state_with, topics_config};
    use crate::domain::{MixExemplars, Origin, ProjectConfig};

    /// Seeds of A at angles 0°, 10°, …, 70° and of B at 90°, …, 160° on
    /// the unit circle: A's seeds nearest B are the larger angles, B's
    /// nearest A the smaller ones.
    fn angle(text: &str) -> f32 {
        text[1..].parse::<f32>().unwrap().to_radians()
    }

    fn seeds() -> Vec<String> {
        (0..8)
            .map(|i| format!("A{}", i * 10))
            .chain((0..8).map(|i| format!("B{}", 90 + i * 10)))
            .collect()
    }

    fn generator(exemplars: MixExemplars, with_vectors: bool) -> Generator {
        let mut cfg: ProjectConfig = topics_config(&["A", "B"]);
        cfg.generation.classes_per_prompt = 2;
        cfg.generation.shots = 2;
        cfg.strategy.mix.exemplars = exemplars;
        let texts = seeds();
        let rows: Vec<(&str, &str, Origin)> = texts
            .iter()
            .map(|t| (t.as_str(), &t[..1], Origin::Seed))
            .collect();
        let st = state_with(&rows, Vec::new());
        let mut g = Generator::new(
            &cfg,
            cfg.classes.clone(),
            cfg.generation.clone(),
            Templates::builtin(),
            &st,
        );
        if with_vectors {
            let mut v: BTreeMap<String, Vec<Vec<f32>>> = BTreeMap::new();
            for t in &texts {
                let a = angle(t);
                v.entry(t[..1].to_string())
                    .or_default()
                    .push(vec![a.cos(), a.sin()]);
            }
            g.set_seed_vectors(v);
        }
        g
    }

    /// Cosine of a shown seed to the other class's centroid (A's centroid
    /// is at 35°, B's at 125°).
    fn toward_other(text: &str) -> f32 {
        let other = if text.starts_with('A') { 125f32 } else { 35f32 };
        (angle(text) - other.to_radians()).cos()
    }

    /// Shown seeds of 40 requests and whether each was marked boundary.
    fn plan(g: &mut Generator) -> (Vec<String>, Vec<bool>) {
        let mut shown = Vec::new();
        let mut marked = Vec::new();
        for _ in 0..40 {
            let p = g.plan_generate_n(3).unwrap();
            assert_eq!(p.shown_examples.len(), 4, "{:?}", p.shown_examples);
            shown.extend(p.shown_examples.clone());
            marked.push(
                p.provenance.extra.get(EXEMPLARS_KEY) == Some(&serde_json::json!("boundary")),
            );
        }
        (shown, marked)
    }

    fn mean(xs: impl Iterator<Item = f32>) -> f32 {
        let v: Vec<f32> = xs.collect();
        v.iter().sum::<f32>() / v.len() as f32
    }

    #[test]
    fn boundary_exemplars_are_nearer_the_other_class_than_random_ones() {
        let (near, near_marked) = plan(&mut generator(MixExemplars::Boundary, true));
        let (random, random_marked) = plan(&mut generator(MixExemplars::Random, true));
        let (no_vectors, unmarked) = plan(&mut generator(MixExemplars::Boundary, false));
        // Only the nearer half of each class ever shows: A40..A70, B90..B120.
        let nearer = ["A40", "A50", "A60", "A70", "B90", "B100", "B110", "B120"];
        assert!(
            near.iter().all(|t| nearer.contains(&t.as_str())),
            "{near:?}"
        );
        assert!(random.iter().any(|t| !nearer.contains(&t.as_str())));
        // …and varies between requests (drawn from the stream, not fixed).
        let distinct: std::collections::BTreeSet<&String> = near.iter().collect();
        assert_eq!(distinct.len(), nearer.len(), "{distinct:?}");
        let (m_near, m_random) = (
            mean(near.iter().map(|t| toward_other(t))),
            mean(random.iter().map(|t| toward_other(t))),
        );
        assert!(m_near > m_random + 0.2, "{m_near} vs {m_random}");
        // Recorded in provenance; random and vector-less plans are not marked.
        assert!(near_marked.iter().all(|&m| m));
        assert!(!random_marked.iter().any(|&m| m));
        assert!(!unmarked.iter().any(|&m| m));
        // Without vectors the plan is the random one, draw for draw.
        assert_eq!(no_vectors, random);
        // Deterministic: the same generator plans the same prompts.
        assert_eq!(plan(&mut generator(MixExemplars::Boundary, true)).0, near);
    }
}
