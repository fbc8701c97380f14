//! What the next generation request asks for: classes, α, shots.
//!
//! Every draw is deterministic given the settings' seed and a request
//! counter, so a re-run with the same settings renders the same prompts
//! (and is answered from the response cache).
//!
//! A mix request has one intended class A, drawn by class weight, so the
//! share of requests per class follows the weights exactly. The other
//! `t - 1` classes shown are drawn by weight without replacement among the
//! rest, and the minor class B uniformly among those. The shown classes are
//! listed in config order, so requests that show the same group share a
//! prompt prefix.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::domain::{Class, GenerationSettings, Strategy};

/// SplitMix64 finaliser: a good 64-bit mix for seeds and hashes.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The RNG for request number `counter` of a run with seed `seed`.
pub fn rng_for(seed: u64, counter: u64) -> StdRng {
    StdRng::seed_from_u64(splitmix64(seed ^ splitmix64(counter)))
}

/// Usable weight: finite and positive, else 0.
fn weight(w: f64) -> f64 {
    if w.is_finite() && w > 0.0 { w } else { 0.0 }
}

/// Draw one index proportionally to `weights` among `allowed` (true).
fn draw_one(weights: &[f64], allowed: &[bool], rng: &mut impl Rng) -> Option<usize> {
    let total: f64 = weights
        .iter()
        .zip(allowed)
        .filter(|(_, a)| **a)
        .map(|(w, _)| weight(*w))
        .sum();
    if total <= 0.0 {
        return None;
    }
    let mut x = rng.random::<f64>() * total;
    let mut last = None;
    for (i, (w, a)) in weights.iter().zip(allowed).enumerate() {
        let w = weight(*w);
        if !*a || w == 0.0 {
            continue;
        }
        last = Some(i);
        if x < w {
            return Some(i);
        }
        x -= w;
    }
    last
}

/// Draw up to `k` distinct indices, each step proportional to the weights
/// of those not drawn yet. Zero weights are never drawn. Returned in draw
/// order.
pub fn weighted_without_replacement(weights: &[f64], k: usize, rng: &mut impl Rng) -> Vec<usize> {
    let mut allowed = vec![true; weights.len()];
    let mut out = Vec::with_capacity(k);
    while out.len() < k {
        let Some(i) = draw_one(weights, &allowed, rng) else {
            break;
        };
        allowed[i] = false;
        out.push(i);
    }
    out
}

/// α as integer percentages that add up to 100: (major, minor).
pub fn alpha_pcts(alpha: f64) -> (u32, u32) {
    let major = (alpha.clamp(0.0, 1.0) * 100.0).round() as u32;
    (major, 100 - major)
}

/// Draw α: the fixed value if set, else uniform in the range; clamped to
/// [0, 1] and rounded to whole percent (what the prompt says is what is
/// recorded).
pub fn draw_alpha(settings: &GenerationSettings, rng: &mut impl Rng) -> f64 {
    let a = match settings.alpha {
        Some(a) => a,
        None => {
            let (lo, hi) = settings.alpha_range;
            let (lo, hi) = (lo.min(hi), lo.max(hi));
            if hi > lo {
                rng.random_range(lo..=hi)
            } else {
                lo
            }
        }
    };
    f64::from(alpha_pcts(a).0) / 100.0
}

/// What one generation request asks for (indices into the class list).
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    pub strategy: Strategy,
    /// Classes shown, in config order (contains `target`).
    pub shown: Vec<usize>,
    /// Intended class A.
    pub target: usize,
    /// Minor class B (mix with at least two usable classes).
    pub minor: Option<usize>,
    /// Share of A (1.0 for plain).
    pub alpha: f64,
}

/// Plan the classes and α of one request. `None` when no class has a
/// positive weight.
pub fn pick(classes: &[Class], settings: &GenerationSettings, rng: &mut impl Rng) -> Option<Pick> {
    let weights: Vec<f64> = classes.iter().map(|c| c.weight).collect();
    let all = vec![true; weights.len()];
    let target = draw_one(&weights, &all, rng)?;
    if settings.strategy != Strategy::Mix {
        return Some(Pick {
            strategy: settings.strategy,
            shown: vec![target],
            target,
            minor: None,
            alpha: 1.0,
        });
    }
    let mut rest = all;
    rest[target] = false;
    let others_wanted = settings.classes_per_prompt.max(2) - 1;
    let mut others = Vec::new();
    while others.len() < others_wanted {
        let Some(i) = draw_one(&weights, &rest, rng) else {
            break;
        };
        rest[i] = false;
        others.push(i);
    }
    let minor = (!others.is_empty()).then(|| others[rng.random_range(0..others.len())]);
    let alpha = if minor.is_some() {
        draw_alpha(settings, rng)
    } else {
        1.0
    };
    let mut shown = others;
    shown.push(target);
    shown.sort_unstable();
    Some(Pick {
        strategy: Strategy::Mix,
        shown,
        target,
        minor,
        alpha,
    })
}

/// Up to `k` examples drawn without replacement from `pool`, in pool order
/// (so the prompt of a class is stable when the same ones are drawn).
pub fn pick_shots<T: Clone>(pool: &[T], k: usize, rng: &mut impl Rng) -> Vec<T> {
    if pool.len() <= k {
        return pool.to_vec();
    }
    let mut idx: Vec<usize> = (0..pool.len()).collect();
    idx.shuffle(rng);
    idx.truncate(k);
    idx.sort_unstable();
    idx.into_iter().map(|i| pool[i].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Strategy;
    use proptest::prelude::*;

    fn classes(weights: &[f64]) -> Vec<Class> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Class {
                name: format!("C{i}"),
                description: String::new(),
                weight: *w,
            })
            .collect()
    }

    #[test]
    fn pcts_add_up() {
        for i in 0..=1000 {
            let (a, b) = alpha_pcts(f64::from(i) / 1000.0);
            assert_eq!(a + b, 100);
        }
        assert_eq!(alpha_pcts(0.805), (81, 19));
        assert_eq!(alpha_pcts(1.7), (100, 0));
    }

    #[test]
    fn deterministic_per_seed_and_counter() {
        let cs = classes(&[1.0, 2.0, 3.0, 1.0, 1.0]);
        let s = GenerationSettings::default();
        let a = pick(&cs, &s, &mut rng_for(7, 3));
        let b = pick(&cs, &s, &mut rng_for(7, 3));
        assert_eq!(a, b);
        let differ = (0..20).any(|c| pick(&cs, &s, &mut rng_for(7, c)) != a);
        assert!(differ);
    }

    #[test]
    fn mix_shape() {
        let cs = classes(&[1.0, 1.0, 1.0, 1.0, 1.0, 0.0]);
        let s = GenerationSettings::default();
        for c in 0..200 {
            let p = pick(&cs, &s, &mut rng_for(1, c)).unwrap();
            assert_eq!(p.shown.len(), 4);
            assert!(p.shown.windows(2).all(|w| w[0] < w[1]));
            assert!(p.shown.contains(&p.target));
            assert!(!p.shown.contains(&5), "zero weight never shown");
            let m = p.minor.unwrap();
            assert_ne!(m, p.target);
            assert!(p.shown.contains(&m));
            assert!((0.5..=1.0).contains(&p.alpha));
        }
        // Fewer classes than t: all of them.
        let p = pick(&classes(&[1.0, 1.0]), &s, &mut rng_for(1, 0)).unwrap();
        assert_eq!(p.shown, vec![0, 1]);
        // One usable class: no minor, α = 1.
        let p = pick(&classes(&[1.0, 0.0]), &s, &mut rng_for(1, 0)).unwrap();
        assert_eq!((p.minor, p.alpha), (None, 1.0));
        assert!(pick(&classes(&[0.0, 0.0]), &s, &mut rng_for(1, 0)).is_none());
    }

    #[test]
    fn fixed_alpha_and_plain() {
        let cs = classes(&[1.0, 1.0, 1.0]);
        let s = GenerationSettings {
            alpha: Some(0.7),
            ..Default::default()
        };
        assert_eq!(pick(&cs, &s, &mut rng_for(0, 0)).unwrap().alpha, 0.7);
        let s = GenerationSettings {
            strategy: Strategy::Plain,
            ..Default::default()
        };
        let p = pick(&cs, &s, &mut rng_for(0, 0)).unwrap();
        assert_eq!(p.shown, vec![p.target]);
        assert_eq!(p.minor, None);
    }

    #[test]
    fn shots_are_distinct_and_ordered() {
        let pool: Vec<u32> = (0..10).collect();
        let s = pick_shots(&pool, 3, &mut rng_for(0, 0));
        assert_eq!(s.len(), 3);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(pick_shots(&pool[..2], 3, &mut rng_for(0, 0)), vec![0, 1]);
        assert!(pick_shots(&pool, 0, &mut rng_for(0, 0)).is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// The intended class of a request follows the class weights.
        #[test]
        fn target_follows_weights(ws in proptest::collection::vec(0u32..5, 2..7), seed in any::<u64>()) {
            prop_assume!(ws.iter().any(|w| *w > 0));
            let weights: Vec<f64> = ws.iter().map(|w| f64::from(*w)).collect();
            let cs = classes(&weights);
            let s = GenerationSettings { seed, ..Default::default() };
            let n = 4000u64;
            let mut counts = vec![0u64; cs.len()];
            for c in 0..n {
                counts[pick(&cs, &s, &mut rng_for(seed, c)).unwrap().target] += 1;
            }
            let total: f64 = weights.iter().sum();
            for (i, w) in weights.iter().enumerate() {
                let p = w / total;
                let expect = p * n as f64;
                // 5 standard deviations of a binomial, plus slack for p ≈ 0.
                let sd = (n as f64 * p * (1.0 - p)).sqrt();
                prop_assert!((counts[i] as f64 - expect).abs() <= 5.0 * sd + 1.0,
                    "class {} weight {} count {} expected {:.0}", i, w, counts[i], expect);
            }
        }

        /// Without replacement: distinct, never a zero weight, as many as possible.
        #[test]
        fn without_replacement_is_distinct(ws in proptest::collection::vec(0u32..4, 1..10), k in 0usize..12, seed in any::<u64>()) {
            let weights: Vec<f64> = ws.iter().map(|w| f64::from(*w)).collect();
            let got = weighted_without_replacement(&weights, k, &mut rng_for(seed, 0));
            let positive = weights.iter().filter(|w| **w > 0.0).count();
            prop_assert_eq!(got.len(), k.min(positive));
            let mut seen = std::collections::HashSet::new();
            for i in &got {
                prop_assert!(weights[*i] > 0.0);
                prop_assert!(seen.insert(*i));
            }
        }
    }
}
