//! Doubt from the small model, as reasons for the review order: pure
//! functions over the embedding model's out-of-fold probabilities and the
//! sentence vectors.
//!
//! * [`MODEL_DISAGREES`] — a model that never saw the example prefers
//!   another class, with calibrated confidence of at least
//!   `disagree_confidence`.
//! * [`LOW_MODEL_CONFIDENCE`] — that model gives the intended label less
//!   than `low_confidence` (calibrated), without preferring another class
//!   firmly: the example sits between classes.
//! * [`NEIGHBOURS_DISAGREE`] — most of its nearest trusted examples in
//!   embedding space (cosine) carry another label.
//!
//! Calibrated probabilities mean these thresholds read as stated: "0.7"
//! is right about 70% of the time (see the reliability test).

use serde::Serialize;

use super::dense::{Dense, dot, dots};
use super::model::argmax;

/// Reason tag: the out-of-fold model confidently prefers another class.
pub const MODEL_DISAGREES: &str = "model_disagrees";
/// Reason tag: the out-of-fold model gives the label a low probability.
pub const LOW_MODEL_CONFIDENCE: &str = "low_model_confidence";
/// Reason tag: the nearest trusted examples mostly carry another label.
pub const NEIGHBOURS_DISAGREE: &str = "neighbours_disagree";

/// Every reason tag of the training signals and the model's doubt
/// (`super::signals`, this module), in the order they are listed: a
/// [`Reasons`] set holds them as bits.
pub const REASONS: [&str; 7] = [
    super::signals::LIKELY_MISLABEL,
    super::signals::AMBIGUOUS,
    super::signals::HARD_TO_LEARN,
    MODEL_DISAGREES,
    LOW_MODEL_CONFIDENCE,
    NEIGHBOURS_DISAGREE,
    super::signals::JUDGES_DISAGREE,
];

/// A set of the reason tags of [`REASONS`], one bit each (a sample's
/// signals carry no heap of their own): listed in [`REASONS`] order,
/// which is the order they are found in.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Reasons(u8);

impl Reasons {
    fn bit(r: &str) -> Option<u8> {
        REASONS.iter().position(|x| *x == r).map(|i| 1 << i)
    }

    /// Add a tag of [`REASONS`].
    ///
    /// # Panics
    /// On a tag not in [`REASONS`].
    pub fn push(&mut self, r: &str) {
        self.0 |= Self::bit(r).unwrap_or_else(|| panic!("unknown reason tag {r:?}"));
    }

    pub fn contains(&self, r: impl AsRef<str>) -> bool {
        Self::bit(r.as_ref()).is_some_and(|b| self.0 & b != 0)
    }

    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    pub fn len(&self) -> usize {
        self.0.count_ones() as usize
    }

    /// The tags of both.
    pub fn union(self, other: Reasons) -> Reasons {
        Reasons(self.0 | other.0)
    }

    /// The tags also in `other`.
    pub fn intersection(self, other: Reasons) -> Reasons {
        Reasons(self.0 & other.0)
    }

    /// The tags, in [`REASONS`] order.
    pub fn iter(&self) -> impl Iterator<Item = &'static str> + use<> {
        let bits = self.0;
        REASONS
            .into_iter()
            .enumerate()
            .filter(move |(i, _)| bits & (1 << i) != 0)
            .map(|(_, r)| r)
    }

    pub fn to_vec(&self) -> Vec<&'static str> {
        self.iter().collect()
    }
}

impl<'a> FromIterator<&'a str> for Reasons {
    fn from_iter<I: IntoIterator<Item = &'a str>>(it: I) -> Reasons {
        let mut r = Reasons::default();
        for t in it {
            r.push(t);
        }
        r
    }
}

impl std::fmt::Debug for Reasons {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for Reasons {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// Thresholds of [`model_doubt`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelDoubtConfig {
    pub disagree_confidence: f64,
    pub low_confidence: f64,
    /// Neighbours looked at.
    pub neighbours: usize,
    /// Share of neighbours with the intended label below which they
    /// disagree (and another label must hold the majority).
    pub neighbour_agreement: f64,
}

impl Default for ModelDoubtConfig {
    fn default() -> Self {
        ModelDoubtConfig {
            disagree_confidence: 0.6,
            low_confidence: 0.3,
            neighbours: 5,
            neighbour_agreement: 0.4,
        }
    }
}

/// The model's doubt about one example.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelDoubt {
    /// Calibrated out-of-fold probability of the intended label.
    pub label_probability: f64,
    pub predicted_probability: f64,
    /// Share of the nearest trusted examples carrying the intended label
    /// (`None` without neighbours).
    pub neighbour_agreement: Option<f64>,
    /// The out-of-fold model's class (an index into the classes).
    pub predicted: u32,
    /// The label most of those neighbours carry.
    pub neighbour_label: Option<u32>,
    /// How many neighbours were looked at (fewer than asked for when
    /// there are few trusted examples).
    pub neighbours: u32,
    pub reasons: Reasons,
}

impl ModelDoubt {
    /// Contribution to the review order (higher = look first): 1.0 for a
    /// confident disagreement, 0.5 for disagreeing neighbours, 0.3 for low
    /// confidence, plus how far the label's probability is below 0.5.
    pub fn score(&self) -> f64 {
        let mut d = 0.0;
        for r in self.reasons.iter() {
            d += match r {
                MODEL_DISAGREES => 1.0,
                NEIGHBOURS_DISAGREE => 0.5,
                LOW_MODEL_CONFIDENCE => 0.3,
                _ => 0.0,
            };
        }
        d + (0.5 - self.label_probability).max(0.0)
    }
}

/// Indices of the `m` rows of `refs` nearest to `x.row(i)` by dot product
/// (cosine for unit vectors), skipping `i` itself; nearest first.
pub fn nearest(x: &Dense, i: usize, refs: &[usize], m: usize) -> Vec<usize> {
    nearest_to(x.row(i), x, Some(i), refs, m)
}

/// Indices of the `m` rows of `refs` nearest to `q` by dot product,
/// skipping row `skip`; nearest first.
pub fn nearest_to(
    q: &[f32],
    x: &Dense,
    skip: Option<usize>,
    refs: &[usize],
    m: usize,
) -> Vec<usize> {
    let mut scored: Vec<(f32, usize)> = refs
        .iter()
        .filter(|&&r| Some(r) != skip)
        .map(|&r| (dot(q, x.row(r)), r))
        .collect();
    let m = m.min(scored.len());
    if m == 0 {
        return Vec::new();
    }
    scored.select_nth_unstable_by(m - 1, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.truncate(m);
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, r)| r).collect()
}

/// The nearest rows of [`nearest_many`]: up to `m` a query, nearest
/// first, in one flat buffer.
pub(crate) struct Nearest {
    m: usize,
    rows: Vec<usize>,
    len: Vec<usize>,
}

impl Nearest {
    /// The rows nearest to query `i`, nearest first.
    pub(crate) fn of(&self, i: usize) -> &[usize] {
        &self.rows[i * self.m..i * self.m + self.len[i]]
    }
}

/// Offer row `r` of similarity `s` to the best `top.len()` so far (`len`
/// of them kept, most similar first): rows offered in ascending order
/// keep exactly what sorting all of them by (similarity descending, row
/// ascending) and taking the first gives ([`nearest_to`]'s order).
#[inline(always)]
fn offer(top: &mut [(f32, usize)], len: &mut usize, s: f32, r: usize) {
    let m = top.len();
    if *len == m {
        // As similar as the last kept or less: the last comes first (its
        // row is lower).
        if m == 0 || s.total_cmp(&top[m - 1].0).is_le() {
            return;
        }
    } else {
        *len += 1;
    }
    let mut i = *len - 1;
    while i > 0 && s.total_cmp(&top[i - 1].0).is_gt() {
        top[i] = top[i - 1];
        i -= 1;
    }
    top[i] = (s, r);
}

/// [`nearest_to`] for every row of `q` at once: the `m` rows of `refs`
/// (ascending) nearest to each, skipping, with `skip_self` (when `q` is
/// `x`), row `i` for query `i`. The same rows in the same order, bit for
/// bit the same similarities ([`dot`]), without sorting every similarity:
/// `refs` are compared in blocks that stay in cache while every query is
/// compared with them (with AVX where the CPU has it, as the judges' kNN).
///
/// # Panics
/// When `refs` are not ascending (debug builds).
pub(crate) fn nearest_many(
    q: &Dense,
    x: &Dense,
    skip_self: bool,
    refs: &[usize],
    m: usize,
) -> Nearest {
    /// Reference rows per block (384 floats each: ~200 KB).
    const BLOCK: usize = 128;
    debug_assert!(refs.windows(2).all(|w| w[0] < w[1]), "refs ascending");
    let mut top = vec![(0f32, 0usize); q.len() * m];
    let mut len = vec![0usize; q.len()];
    if m > 0 {
        for block in refs.chunks(BLOCK) {
            nearest_block(q, x, skip_self, block, m, &mut top, &mut len);
        }
    }
    Nearest {
        m,
        rows: top.into_iter().map(|(_, r)| r).collect(),
        len,
    }
}

fn nearest_block(
    q: &Dense,
    x: &Dense,
    skip_self: bool,
    block: &[usize],
    m: usize,
    top: &mut [(f32, usize)],
    len: &mut [usize],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU has AVX.
        return unsafe { nearest_block_avx(q, x, skip_self, block, m, top, len) };
    }
    nearest_block_plain(q, x, skip_self, block, m, top, len, dots);
}

/// [`nearest_block_plain`] in AVX registers: the same additions and
/// products in the same order ([`dot`] is always inlined), the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn nearest_block_avx(
    q: &Dense,
    x: &Dense,
    skip_self: bool,
    block: &[usize],
    m: usize,
    top: &mut [(f32, usize)],
    len: &mut [usize],
) {
    // SAFETY: the CPU has AVX (checked by the caller).
    nearest_block_plain(q, x, skip_self, block, m, top, len, |a, b| unsafe {
        super::dense::dots_avx(a, b)
    });
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn nearest_block_plain(
    q: &Dense,
    x: &Dense,
    skip_self: bool,
    block: &[usize],
    m: usize,
    top: &mut [(f32, usize)],
    len: &mut [usize],
    dots: impl Fn(&[f32], [&[f32]; 8]) -> [f32; 8],
) {
    /// References compared with a query at once ([`dots`]).
    const AT_ONCE: usize = 8;
    let (groups, tail) = block.as_chunks::<AT_ONCE>();
    for (i, (t, n)) in top.chunks_exact_mut(m).zip(len.iter_mut()).enumerate() {
        let qi = q.row(i);
        let skip = skip_self.then_some(i);
        for g in groups {
            let s = dots(qi, g.map(|r| x.row(r)));
            for (&r, s) in g.iter().zip(s) {
                if Some(r) != skip {
                    offer(t, n, s, r);
                }
            }
        }
        for &r in tail {
            if Some(r) != skip {
                offer(t, n, dot(qi, x.row(r)), r);
            }
        }
    }
}

/// Doubt about each row of `rows` (in that order): `labels[i]` is the
/// intended label of row `i` of `x`, `oof[i]` its calibrated out-of-fold
/// probabilities, and `trusted` the rows whose labels are trusted as
/// neighbours (seeds and accepted examples).
///
/// # Panics
/// When `x`, `labels` and `oof` differ in length.
pub fn model_doubt(
    x: &Dense,
    labels: &[usize],
    oof: &[Vec<f64>],
    rows: &[usize],
    trusted: &[usize],
    cfg: &ModelDoubtConfig,
) -> Vec<ModelDoubt> {
    assert!(x.len() == labels.len() && labels.len() == oof.len());
    let k = oof.first().map_or(0, Vec::len);
    rows.iter()
        .map(|&i| {
            let near = nearest(x, i, trusted, cfg.neighbours);
            doubt_of(labels[i], &oof[i], &near, labels, k, cfg)
        })
        .collect()
}

/// The doubt about one example labelled `y` with calibrated out-of-fold
/// probabilities `p`, whose nearest trusted examples are the rows `near`
/// (labels in `labels`) of `k` classes.
pub(crate) fn doubt_of(
    y: usize,
    p: &[f64],
    near: &[usize],
    labels: &[usize],
    k: usize,
    cfg: &ModelDoubtConfig,
) -> ModelDoubt {
    let pred = argmax(p);
    let mut reasons = Reasons::default();
    if pred != y && p[pred] >= cfg.disagree_confidence {
        reasons.push(MODEL_DISAGREES);
    } else if p[y] < cfg.low_confidence {
        reasons.push(LOW_MODEL_CONFIDENCE);
    }
    let (agreement, majority) = if near.is_empty() {
        (None, None)
    } else {
        let mut votes = vec![0usize; k.max(y + 1)];
        for &r in near {
            if labels[r] < votes.len() {
                votes[labels[r]] += 1;
            }
        }
        let share = votes[y] as f64 / near.len() as f64;
        let top = (0..votes.len())
            .max_by(|&a, &b| votes[a].cmp(&votes[b]).then(b.cmp(&a)))
            .unwrap_or(y);
        (Some(share), Some(top))
    };
    if agreement.is_some_and(|a| a < cfg.neighbour_agreement) && majority != Some(y) {
        reasons.push(NEIGHBOURS_DISAGREE);
    }
    ModelDoubt {
        label_probability: p[y],
        predicted_probability: p[pred],
        neighbour_agreement: agreement,
        predicted: pred as u32,
        neighbour_label: majority.map(|l| l as u32),
        neighbours: near.len() as u32,
        reasons,
    }
}

/// [`model_doubt`] for a project's review pool (seeds and generated
/// examples that are not rejected, with their effective labels), keyed by
/// sample: the embedding model is fitted on the pool with out-of-fold
/// calibration, and neighbours are the trusted samples (seeds and accepted
/// examples). What the review order folds in beside the relabel verdict;
/// fails only when the encoder does. Without folds (a class with a single
/// example) there is no out-of-fold opinion and only neighbours count.
/// The model trains on at most [`super::MAX_TRAIN`] examples of the pool
/// and the others are encoded a chunk at a time and scored by it (which
/// never saw them), their neighbours looked up among the trusted examples
/// of that sample: see [`super::pool`].
pub fn project_doubt(
    state: &crate::domain::ProjectState,
    classes: &[String],
    encoder: &dyn super::TextEncoder,
    linear: &super::LinearConfig,
    cfg: &ModelDoubtConfig,
) -> anyhow::Result<std::collections::HashMap<crate::domain::SampleId, ModelDoubt>> {
    let pool = super::pool::Pool::of(state, classes);
    let rows = super::pool::vector_pool_capped(classes, &pool, encoder, linear, None, Some(cfg))?;
    Ok(pool
        .ids
        .iter()
        .copied()
        .zip(rows)
        .filter_map(|(id, row)| row.doubt.map(|d| (id, d)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{LinearConfig, fit_calibrated, toy};

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(96))]
        /// The block search finds, for every query, exactly the rows
        /// `nearest_to` (the full sort) finds, in its order: queries from
        /// elsewhere or the rows themselves (each skipping itself), any
        /// ascending subset of references, any count. Small integer
        /// coordinates make ties common; dimensions past 8 take `dot`'s
        /// lanes and tail.
        #[test]
        fn nearest_many_is_nearest_to(
            dim in 1usize..12,
            rows in proptest::collection::vec(proptest::collection::vec(-2i8..=2, 11), 0..300),
            queries in proptest::collection::vec(proptest::collection::vec(-2i8..=2, 11), 0..40),
            refs_mask in proptest::collection::vec(proptest::bool::weighted(0.7), 300),
            m in 0usize..8,
        ) {
            let dense = |vs: &[Vec<i8>]| {
                let mut d = Dense::new(dim);
                for v in vs {
                    let row: Vec<f32> = v[..dim].iter().map(|&a| f32::from(a) * 0.5).collect();
                    d.push(&row);
                }
                d
            };
            let (x, q) = (dense(&rows), dense(&queries));
            let refs: Vec<usize> = (0..x.len()).filter(|&r| refs_mask[r]).collect();
            let many = nearest_many(&q, &x, false, &refs, m);
            for i in 0..q.len() {
                proptest::prop_assert_eq!(many.of(i), &nearest_to(q.row(i), &x, None, &refs, m)[..]);
            }
            let own = nearest_many(&x, &x, true, &refs, m);
            for i in 0..x.len() {
                proptest::prop_assert_eq!(own.of(i), &nearest(&x, i, &refs, m)[..]);
            }
        }
    }

    #[test]
    fn nearest_skips_itself_and_orders_by_similarity() {
        let x = Dense::from_rows(&[
            vec![1.0, 0.0],
            vec![0.9, 0.1],
            vec![0.0, 1.0],
            vec![0.7, 0.7],
        ]);
        assert_eq!(nearest(&x, 0, &[0, 1, 2, 3], 2), vec![1, 3]);
        assert_eq!(nearest(&x, 2, &[0, 1, 2, 3], 10), vec![3, 1, 0]);
        assert!(nearest(&x, 0, &[0], 3).is_empty());
    }

    /// Each reason arises on its own: a confident out-of-fold preference
    /// for another class, a low probability of the label without one, and
    /// neighbours of another class with the model content.
    #[test]
    fn each_reason_arises_on_its_own() {
        // Rows 0–5 trusted: 0–2 class 0 near (1, 0), 3–5 class 1 near (0, 1).
        let mut rows = vec![
            vec![1.0, 0.0],
            vec![0.99, 0.1],
            vec![0.98, 0.2],
            vec![0.0, 1.0],
            vec![0.1, 0.99],
            vec![0.2, 0.98],
        ];
        // 6: labelled 0, among class 0, model prefers 1 firmly.
        rows.push(vec![0.97, 0.05]);
        // 7: labelled 0, among class 0, model torn over three classes.
        rows.push(vec![0.96, 0.1]);
        // 8: labelled 0, among class 1, model fine with the label.
        rows.push(vec![0.05, 0.97]);
        let x = Dense::from_rows(&rows);
        let labels = [0, 0, 0, 1, 1, 1, 0, 0, 0];
        let sure = |c: usize| {
            let mut p = vec![0.05; 3];
            p[c] = 0.9;
            p
        };
        let mut oof: Vec<Vec<f64>> = labels.iter().map(|&y| sure(y)).collect();
        oof[6] = vec![0.2, 0.75, 0.05];
        oof[7] = vec![0.25, 0.4, 0.35];
        oof[8] = vec![0.8, 0.15, 0.05];
        let cfg = ModelDoubtConfig {
            neighbours: 3,
            ..ModelDoubtConfig::default()
        };
        let d = model_doubt(&x, &labels, &oof, &[6, 7, 8], &[0, 1, 2, 3, 4, 5], &cfg);
        assert_eq!(d[0].reasons.to_vec(), [MODEL_DISAGREES], "{:?}", d[0]);
        assert_eq!(d[1].reasons.to_vec(), [LOW_MODEL_CONFIDENCE], "{:?}", d[1]);
        assert_eq!(d[2].reasons.to_vec(), [NEIGHBOURS_DISAGREE], "{:?}", d[2]);
        assert_eq!((d[2].neighbours, d[2].neighbour_label), (3, Some(1)));
        assert_eq!(d[2].neighbour_agreement, Some(0.0));
        // Each raises the score above a row without doubt.
        let calm = model_doubt(&x, &labels, &oof, &[0], &[1, 2, 3, 4, 5], &cfg);
        assert!(calm[0].reasons.is_empty());
        for m in &d {
            assert!(m.score() > calm[0].score() + 0.25, "{m:?}");
        }
    }

    #[test]
    fn project_doubt_covers_the_review_pool() {
        use crate::classify::data::tests::{decide, state_with};
        use crate::classify::small::HashedBagEncoder;
        use crate::domain::{DecisionKind, Origin};
        let classes: Vec<String> = ["fruit", "cars"].iter().map(|s| s.to_string()).collect();
        let mut samples = Vec::new();
        for i in 0..6 {
            samples.push((format!("apples pears plums {i}"), "fruit", Origin::Seed));
            samples.push((format!("trucks engines wheels {i}"), "cars", Origin::Seed));
        }
        samples.push(("apples pears plums ripe".into(), "cars", Origin::Generated));
        samples.push(("trucks wheels fast".into(), "cars", Origin::Generated));
        samples.push(("apples held out".into(), "fruit", Origin::Validation));
        let refs: Vec<(&str, &str, Origin)> = samples
            .iter()
            .map(|(t, l, o)| (t.as_str(), *l, *o))
            .collect();
        let st = state_with(&refs, vec![decide(14, DecisionKind::Accept)]);
        let d = project_doubt(
            &st,
            &classes,
            &HashedBagEncoder { dim: 64 },
            &crate::classify::LinearConfig::default(),
            &ModelDoubtConfig::default(),
        )
        .unwrap();
        assert_eq!(d.len(), 14, "seeds + generated, no held-out");
        assert!(!d.contains_key(&15));
        let odd = &d[&13];
        assert!(odd.reasons.contains(MODEL_DISAGREES), "{odd:?}");
        assert!(odd.reasons.contains(NEIGHBOURS_DISAGREE), "{odd:?}");
        assert!(d[&14].reasons.is_empty(), "{:?}", d[&14]);
    }

    /// Rows with a flipped label are flagged by the model and by their
    /// neighbours; nearly all clean rows are not.
    #[test]
    fn flipped_labels_are_doubted_and_clean_ones_mostly_not() {
        let (x, mut y) = toy::blobs(300, 4, 32, 0.6, 11);
        let flipped = [3usize, 50, 120, 250];
        for &i in &flipped {
            y[i] = (y[i] + 1) % 4;
        }
        let names: Vec<String> = (0..4).map(|i| format!("c{i}")).collect();
        let fit = fit_calibrated(&names, &x, &y, &LinearConfig::default());
        let oof = fit.oof_proba().unwrap();
        let all: Vec<usize> = (0..300).collect();
        let d = model_doubt(&x, &y, &oof, &all, &all, &ModelDoubtConfig::default());
        for &i in &flipped {
            assert!(d[i].reasons.contains(MODEL_DISAGREES), "{i}: {:?}", d[i]);
            assert!(
                d[i].reasons.contains(NEIGHBOURS_DISAGREE),
                "{i}: {:?}",
                d[i]
            );
            assert!(d[i].score() > 1.5);
        }
        let clean_flagged = all
            .iter()
            .filter(|i| !flipped.contains(i) && !d[**i].reasons.is_empty())
            .count();
        assert!(
            clean_flagged < 15,
            "{clean_flagged} of 296 clean rows doubted"
        );
    }
}
