//! What the next generation request asks for: classes, α, shots.
//!
//! Every draw is deterministic given the settings' seed and a request
//! counter, so a re-run with the same settings renders the same prompts
//! (and is answered from the response cache).
//!
//! A request has one intended class A. [`pick`] draws it by class weight
//! (the share follows the weights only in expectation); the generator
//! instead *schedules* it with [`ClassSchedule`], a deficit scheduler that
//! keeps every class within one request's worth of its weighted share, and
//! schedules the minor class B of a mix request the same way among the
//! pairs (A, ·), then calls [`pick_with`]. The other shown classes are
//! drawn by weight without replacement among the rest. The shown classes
//! are listed in config order, so requests that show the same group share
//! a prompt prefix.

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

/// The seed stream of run number `run`: the settings' seed itself for run
/// 0 (so journals from before streams replay as they were), else a fresh
/// mix of both. Each run (and each S3 round) of a project draws from its
/// own stream, recorded with every request (`Provenance::extra["stream"]`)
/// so a run can be replayed.
pub fn stream_seed(seed: u64, run: u64) -> u64 {
    if run == 0 {
        seed
    } else {
        splitmix64(seed ^ splitmix64(run.wrapping_add(0x5eed)))
    }
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
    pick_with(classes, settings, rng, target, None)
}

/// Plan one request for intended class `target` (and minor class `minor`
/// of a mix request, when given; else drawn among the shown classes).
pub fn pick_with(
    classes: &[Class],
    settings: &GenerationSettings,
    rng: &mut impl Rng,
    target: usize,
    minor: Option<usize>,
) -> Option<Pick> {
    let weights: Vec<f64> = classes.iter().map(|c| c.weight).collect();
    let all = vec![true; weights.len()];
    if target >= classes.len() {
        return None;
    }
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
    if let Some(m) = minor.filter(|m| *m != target && *m < classes.len()) {
        rest[m] = false;
        others.push(m);
    }
    while others.len() < others_wanted {
        let Some(i) = draw_one(&weights, &rest, rng) else {
            break;
        };
        rest[i] = false;
        others.push(i);
    }
    let minor = match minor {
        Some(m) if others.first() == Some(&m) => Some(m),
        _ => (!others.is_empty()).then(|| others[rng.random_range(0..others.len())]),
    };
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

/// Which of `weights` goes next so that `counts` track the weights: among
/// the classes with a positive weight whose count is at most their share
/// `p_i · (T + n)` of the total after this request of `n` (T = the total
/// count of those classes; one always is), the one whose turn comes first — the smallest
/// `(count + n) / p_i`, its "deadline" — ties to the lower index. `None`
/// when no weight is positive.
///
/// Why not simply the largest deficit `p_i · (T + n) - count`: that
/// overshoots a class's share by up to a quarter request more (measured);
/// the deadline rule among eligible classes (Tijdeman's chairman
/// assignment) keeps every class within one request of its share when
/// nothing is taken away, and never schedules a class that already holds
/// its share of the total after the request.
pub fn next_by_deficit(weights: &[f64], counts: &[f64], n: usize) -> Option<usize> {
    let total_w: f64 = weights.iter().map(|w| weight(*w)).sum();
    if total_w <= 0.0 {
        return None;
    }
    let n = n.max(1) as f64;
    let usable = || (0..weights.len()).filter(|&i| weight(weights[i]) > 0.0);
    let c = |i: usize| counts.get(i).copied().unwrap_or(0.0).max(0.0);
    let total: f64 = usable().map(c).sum();
    let p = |i: usize| weight(weights[i]) / total_w;
    // The deficits p_i·(T + n) - c_i add up to n > 0, so one is eligible;
    // a little tolerance for rounding.
    let eligible: Vec<usize> = usable()
        .filter(|&i| p(i) * (total + n) - c(i) >= -1e-9)
        .collect();
    let pool: Vec<usize> = if eligible.is_empty() {
        usable().collect()
    } else {
        eligible
    };
    pool.into_iter().min_by(|&a, &b| {
        let (da, db) = ((c(a) + n) / p(a), (c(b) + n) / p(b));
        da.partial_cmp(&db)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(&b))
    })
}

/// Examples per class and per (class, minor class) pair that the deficit
/// scheduler plans against: what was *yielded* — accepted + pending
/// non-duplicate examples, by the label that would be exported — plus the
/// requests still in flight at what they can yield (see `app::session`,
/// which builds it afresh for every plan). Keyed by class name, so a
/// changed class list or changed weights apply to the very next plan.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClassSchedule {
    counts: std::collections::BTreeMap<String, f64>,
    pairs: std::collections::BTreeMap<(String, String), f64>,
}

impl ClassSchedule {
    /// Start from counts (per class; per intended/minor pair).
    pub fn new(
        counts: impl IntoIterator<Item = (String, f64)>,
        pairs: impl IntoIterator<Item = ((String, String), f64)>,
    ) -> ClassSchedule {
        ClassSchedule {
            counts: counts.into_iter().collect(),
            pairs: pairs.into_iter().collect(),
        }
    }

    pub fn count(&self, class: &str) -> f64 {
        self.counts.get(class).copied().unwrap_or(0.0)
    }

    pub fn pair_count(&self, class: &str, minor: &str) -> f64 {
        self.pairs
            .get(&(class.to_string(), minor.to_string()))
            .copied()
            .unwrap_or(0.0)
    }

    /// The intended class of the next request of `n` examples (index into
    /// `classes`), and for `mix` its minor class, scheduled by deficit
    /// among the pairs (A, ·) with the other classes' weights. Plans only:
    /// call [`ClassSchedule::add`] for the request actually sent.
    pub fn next(&self, classes: &[Class], mix: bool, n: usize) -> Option<(usize, Option<usize>)> {
        let weights: Vec<f64> = classes.iter().map(|c| c.weight).collect();
        let counts: Vec<f64> = classes.iter().map(|c| self.count(&c.name)).collect();
        let target = next_by_deficit(&weights, &counts, n)?;
        if !mix {
            return Some((target, None));
        }
        let a = &classes[target].name;
        let minor_w: Vec<f64> = classes
            .iter()
            .enumerate()
            .map(|(i, c)| if i == target { 0.0 } else { c.weight })
            .collect();
        let pair_counts: Vec<f64> = classes
            .iter()
            .map(|c| self.pair_count(a, &c.name))
            .collect();
        Some((target, next_by_deficit(&minor_w, &pair_counts, n)))
    }

    /// Add every count of `other`.
    pub fn merge(&mut self, other: &ClassSchedule) {
        for (k, v) in &other.counts {
            *self.counts.entry(k.clone()).or_insert(0.0) += v;
        }
        for (k, v) in &other.pairs {
            *self.pairs.entry(k.clone()).or_insert(0.0) += v;
        }
    }

    /// Count `n` more examples of `class` (with `minor`): a request in
    /// flight (negative: one that left).
    pub fn add(&mut self, class: &str, minor: Option<&str>, n: f64) {
        *self.counts.entry(class.to_string()).or_insert(0.0) += n;
        if let Some(m) = minor {
            *self
                .pairs
                .entry((class.to_string(), m.to_string()))
                .or_insert(0.0) += n;
        }
    }
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

    fn as_f64(c: &[u64]) -> Vec<f64> {
        c.iter().map(|c| *c as f64).collect()
    }

    #[test]
    fn streams_differ_per_run_and_keep_run_zero() {
        assert_eq!(stream_seed(7, 0), 7);
        let seeds: std::collections::HashSet<u64> = (0..1000).map(|r| stream_seed(7, r)).collect();
        assert_eq!(seeds.len(), 1000);
        assert_eq!(stream_seed(7, 3), stream_seed(7, 3));
        assert_ne!(stream_seed(7, 3), stream_seed(8, 3));
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
    fn schedule_targets_and_pairs() {
        let cs = classes(&[1.0, 1.0, 2.0]);
        let mut s = ClassSchedule::default();
        let mut seq = Vec::new();
        for _ in 0..8 {
            let (t, m) = s.next(&cs, true, 5).unwrap();
            let m = m.unwrap();
            assert_ne!(t, m);
            s.add(&cs[t].name, Some(&cs[m].name), 5.0);
            seq.push(t);
        }
        // Exactly the weights: 2 : 2 : 4 requests.
        assert_eq!(
            [s.count("C0"), s.count("C1"), s.count("C2")],
            [10.0, 10.0, 20.0],
            "{seq:?}"
        );
        // The minor classes of C2 alternate between C0 and C1 (equal weights).
        assert_eq!(s.pair_count("C2", "C0"), 10.0);
        assert_eq!(s.pair_count("C2", "C1"), 10.0);
        // A class that fell behind (rejects, short replies) goes next; a
        // zero weight never.
        let s = ClassSchedule::new(
            [("C0".into(), 10.0), ("C1".into(), 0.0), ("C2".into(), 20.0)],
            [],
        );
        assert_eq!(s.next(&cs, false, 5), Some((1, None)));
        let zero = classes(&[1.0, 0.0, 1.0]);
        assert_ne!(s.next(&zero, false, 5).unwrap().0, 1);
        assert_eq!(s.next(&classes(&[0.0]), false, 5), None);
        // The minor is shown, first among the others.
        let p = pick_with(
            &cs,
            &GenerationSettings::default(),
            &mut rng_for(0, 0),
            2,
            Some(0),
        )
        .unwrap();
        assert_eq!((p.target, p.minor), (2, Some(0)));
        assert!(p.shown.contains(&0) && p.shown.contains(&2));
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// With every planned example kept (accepted or pending), each
        /// class stays within one request's worth of its weighted share
        /// at every point, whatever the weights and request sizes.
        #[test]
        fn deficit_schedule_within_one_request(
            ws in proptest::collection::vec(prop_oneof![Just(0.0), 0.01f64..10.0], 1..9),
            sizes in proptest::collection::vec(1usize..7, 1..300),
        ) {
            prop_assume!(ws.iter().any(|w| *w > 0.0));
            let nmax = *sizes.iter().max().unwrap() as f64;
            let total_w: f64 = ws.iter().sum();
            let mut counts = vec![0u64; ws.len()];
            for n in sizes {
                let i = next_by_deficit(&ws, &as_f64(&counts), n).unwrap();
                prop_assert!(ws[i] > 0.0, "zero weight scheduled");
                counts[i] += n as u64;
                let t: u64 = counts.iter().sum();
                for (j, w) in ws.iter().enumerate() {
                    let share = w / total_w * t as f64;
                    prop_assert!((counts[j] as f64 - share).abs() <= nmax + 1e-6,
                        "class {} count {} share {:.2} (weights {:?})", j, counts[j], share, ws);
                }
            }
        }

        /// Any sequence of plans, accepts and rejects (a reject takes an
        /// example away): a plan never goes to a class that already holds
        /// its share of the total after the request, and once rejects
        /// stop, the counts come back within one request of the weights
        /// and stay there.
        #[test]
        fn deficit_schedule_with_rejects(
            ws in proptest::collection::vec(0.1f64..10.0, 2..7),
            ops in proptest::collection::vec((0u8..3, any::<u16>()), 1..300),
            n in 1usize..6,
        ) {
            let k = ws.len();
            let total_w: f64 = ws.iter().sum();
            let share = |c: &[u64], j: usize| ws[j] / total_w * c.iter().sum::<u64>() as f64;
            let mut counts = vec![0u64; k];
            // Pending examples per class, decided later in any order.
            let mut pending = vec![0u64; k];
            for (op, x) in ops {
                match op {
                    0 => {
                        let i = next_by_deficit(&ws, &as_f64(&counts), n).unwrap();
                        let t = counts.iter().sum::<u64>() + n as u64;
                        prop_assert!(counts[i] as f64 <= ws[i] / total_w * t as f64 + 1e-9,
                            "planned class {} already holds its share", i);
                        counts[i] += n as u64;
                        pending[i] += n as u64;
                    }
                    _ => {
                        let j = usize::from(x) % k;
                        if pending[j] > 0 {
                            pending[j] -= 1;
                            if op == 2 {
                                counts[j] -= 1; // rejected
                            }
                        }
                    }
                }
            }
            let mut within_since = None;
            for step in 0..5000 {
                let i = next_by_deficit(&ws, &as_f64(&counts), n).unwrap();
                counts[i] += n as u64;
                let ok = (0..k).all(|j| (counts[j] as f64 - share(&counts, j)).abs() <= n as f64 + 1e-6);
                match (ok, within_since) {
                    (true, None) => within_since = Some(step),
                    (false, Some(s)) => prop_assert!(false, "left the bound at {} after {}", step, s),
                    _ => {}
                }
            }
            prop_assert!(within_since.is_some(), "never back within one request: {:?}", counts);
        }
    }
}
