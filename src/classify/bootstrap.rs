//! How sure a score is: percentile bootstrap intervals for accuracy and
//! macro-F1, and the paired bootstrap of the difference between two models
//! scored on the same held-out examples.
//!
//! Pairing matters: both models see the same resampled examples, so the
//! difficulty of the held-out set cancels and the interval of the
//! difference is much narrower than the two intervals side by side.
//! Resampling is seeded, so a report is reproducible.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Resamples drawn by default.
pub const RESAMPLES: usize = 1000;
/// Coverage of the intervals.
pub const LEVEL: f64 = 0.95;

/// A point estimate with its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

impl Interval {
    /// Half the width.
    pub fn half_width(&self) -> f64 {
        (self.high - self.low) / 2.0
    }
}

/// What an interval of a difference (new − old) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The whole interval is above 0.
    Better,
    /// The whole interval is below 0.
    Worse,
    /// The interval includes 0: no change can be claimed.
    Unclear,
}

impl Verdict {
    pub fn of(d: &Interval) -> Verdict {
        if d.low > 0.0 {
            Verdict::Better
        } else if d.high < 0.0 {
            Verdict::Worse
        } else {
            Verdict::Unclear
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::Unclear => "no clear change",
        }
    }
}

/// Accuracy and macro-F1 with intervals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ScoreIntervals {
    pub accuracy: Interval,
    pub macro_f1: Interval,
}

/// Two models on the same held-out examples: each one's intervals and the
/// paired interval of the difference (`new − old`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub old: ScoreIntervals,
    pub new: ScoreIntervals,
    pub accuracy_diff: Interval,
    pub macro_f1_diff: Interval,
    pub n_test: usize,
    pub resamples: usize,
    pub level: f64,
}

impl From<Interval> for crate::domain::ScoreInterval {
    fn from(i: Interval) -> Self {
        crate::domain::ScoreInterval {
            estimate: i.estimate,
            low: i.low,
            high: i.high,
        }
    }
}

impl From<crate::domain::ScoreInterval> for Interval {
    fn from(i: crate::domain::ScoreInterval) -> Self {
        Interval {
            estimate: i.estimate,
            low: i.low,
            high: i.high,
        }
    }
}

impl Comparison {
    /// The intervals to journal with a round (`round_scored`).
    pub fn to_journal(&self) -> crate::domain::RoundIntervals {
        crate::domain::RoundIntervals {
            level: self.level,
            resamples: self.resamples,
            baseline_accuracy: self.old.accuracy.into(),
            baseline_macro_f1: self.old.macro_f1.into(),
            augmented_accuracy: self.new.accuracy.into(),
            augmented_macro_f1: self.new.macro_f1.into(),
            accuracy_diff: self.accuracy_diff.into(),
            macro_f1_diff: self.macro_f1_diff.into(),
        }
    }

    /// The comparison a journaled round recorded (`n_test` from its
    /// scores), so its verdict reads the same after a restart.
    pub fn from_journal(r: &crate::domain::RoundIntervals, n_test: usize) -> Comparison {
        Comparison {
            old: ScoreIntervals {
                accuracy: r.baseline_accuracy.into(),
                macro_f1: r.baseline_macro_f1.into(),
            },
            new: ScoreIntervals {
                accuracy: r.augmented_accuracy.into(),
                macro_f1: r.augmented_macro_f1.into(),
            },
            accuracy_diff: r.accuracy_diff.into(),
            macro_f1_diff: r.macro_f1_diff.into(),
            n_test,
            resamples: r.resamples,
            level: r.level,
        }
    }
}

/// The smallest change worth resolving when saying a held-out set is too
/// small: 5 points.
pub const RESOLVE: f64 = 0.05;

impl Comparison {
    /// Whether the new model is an improvement: the macro-F1 difference's
    /// interval lies above 0. An S3 round must not call a change an
    /// improvement otherwise.
    pub fn is_improvement(&self) -> bool {
        self.verdict() == Verdict::Better
    }

    /// One line for a status bar or a round report, e.g. "macro-F1 +0.031
    /// [−0.012, +0.075] vs seeds only: no clear change".
    pub fn headline(&self) -> String {
        let d = &self.macro_f1_diff;
        format!(
            "macro-F1 {:+.3} [{:+.3}, {:+.3}] vs seeds only: {}",
            d.estimate,
            d.low,
            d.high,
            self.verdict().as_str()
        )
    }

    /// The verdict on the macro-F1 difference.
    pub fn verdict(&self) -> Verdict {
        Verdict::of(&self.macro_f1_diff)
    }

    /// When the held-out set cannot resolve a 5-point change (the
    /// difference's interval is wider than ±5 points and includes 0), a
    /// plain sentence saying so and roughly how many examples would.
    pub fn too_small(&self) -> Option<String> {
        let hw = self
            .macro_f1_diff
            .half_width()
            .max(self.accuracy_diff.half_width());
        if self.verdict() != Verdict::Unclear || hw <= RESOLVE {
            return None;
        }
        // Interval width shrinks as 1/√n.
        let need = (self.n_test as f64 * (hw / RESOLVE).powi(2)).ceil() as usize;
        Some(format!(
            "The held-out set ({} examples) is too small to tell: the difference could be \
             anywhere within ±{:.0} points. About {need} held-out examples would resolve a \
             {:.0}-point change.",
            self.n_test,
            hw * 100.0,
            RESOLVE * 100.0
        ))
    }
}

/// Confusion counts → (accuracy, macro-F1), with [`super::score`]'s
/// convention: a class with neither true examples nor predictions is left
/// out of the macro average.
fn acc_f1(
    k: usize,
    truth: &[usize],
    pred: &[usize],
    idx: &[usize],
    tp: &mut [u32],
    sup: &mut [u32],
    prd: &mut [u32],
) -> (f64, f64) {
    tp.fill(0);
    sup.fill(0);
    prd.fill(0);
    for &i in idx {
        let (t, p) = (truth[i], pred[i]);
        sup[t] += 1;
        prd[p] += 1;
        if t == p {
            tp[t] += 1;
        }
    }
    let correct: u32 = tp.iter().sum();
    let mut f1 = 0.0;
    let mut present = 0;
    for c in 0..k {
        let denom = sup[c] + prd[c];
        if denom > 0 {
            present += 1;
            f1 += 2.0 * f64::from(tp[c]) / f64::from(denom);
        }
    }
    let n = idx.len().max(1) as f64;
    (
        f64::from(correct) / n,
        if present == 0 {
            0.0
        } else {
            f1 / f64::from(present)
        },
    )
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn interval(estimate: f64, mut draws: Vec<f64>, level: f64) -> Interval {
    draws.sort_by(f64::total_cmp);
    let a = (1.0 - level) / 2.0;
    Interval {
        estimate,
        low: percentile(&draws, a),
        high: percentile(&draws, 1.0 - a),
    }
}

/// Paired bootstrap of two models' predictions on the same examples.
///
/// # Panics
/// When the slices differ in length or hold a class index ≥ `k`.
pub fn compare(
    k: usize,
    truth: &[usize],
    old: &[usize],
    new: &[usize],
    resamples: usize,
    seed: u64,
) -> Comparison {
    assert!(truth.len() == old.len() && truth.len() == new.len());
    let n = truth.len();
    let mut bufs = (vec![0u32; k], vec![0u32; k], vec![0u32; k]);
    let all: Vec<usize> = (0..n).collect();
    let mut score = |pred: &[usize], idx: &[usize]| {
        acc_f1(k, truth, pred, idx, &mut bufs.0, &mut bufs.1, &mut bufs.2)
    };
    let (oa, of) = score(old, &all);
    let (na, nf) = score(new, &all);
    let mut draws: [Vec<f64>; 6] = Default::default();
    let mut rng = StdRng::seed_from_u64(seed ^ 0xb007);
    let mut idx = vec![0usize; n];
    if n > 0 {
        for _ in 0..resamples {
            for v in idx.iter_mut() {
                *v = rng.random_range(0..n);
            }
            let (a1, f1) = score(old, &idx);
            let (a2, f2) = score(new, &idx);
            for (d, v) in draws.iter_mut().zip([a1, f1, a2, f2, a2 - a1, f2 - f1]) {
                d.push(v);
            }
        }
    }
    let [da1, df1, da2, df2, dda, ddf] = draws;
    Comparison {
        old: ScoreIntervals {
            accuracy: interval(oa, da1, LEVEL),
            macro_f1: interval(of, df1, LEVEL),
        },
        new: ScoreIntervals {
            accuracy: interval(na, da2, LEVEL),
            macro_f1: interval(nf, df2, LEVEL),
        },
        accuracy_diff: interval(na - oa, dda, LEVEL),
        macro_f1_diff: interval(nf - of, ddf, LEVEL),
        n_test: n,
        resamples,
        level: LEVEL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_score_and_orders_the_interval() {
        let truth = [0, 0, 1, 1, 2, 2, 0, 1];
        let old = [0, 1, 1, 0, 2, 0, 0, 1];
        let new = [0, 0, 1, 1, 2, 2, 0, 0];
        let c = compare(3, &truth, &old, &new, 500, 1);
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let so = super::super::score(&names, &truth, &old);
        let sn = super::super::score(&names, &truth, &new);
        assert!((c.old.accuracy.estimate - so.accuracy).abs() < 1e-12);
        assert!((c.old.macro_f1.estimate - so.macro_f1).abs() < 1e-12);
        assert!((c.new.macro_f1.estimate - sn.macro_f1).abs() < 1e-12);
        for i in [
            c.old.accuracy,
            c.new.macro_f1,
            c.accuracy_diff,
            c.macro_f1_diff,
        ] {
            assert!(
                i.low <= i.estimate + 1e-9 && i.estimate <= i.high + 1e-9,
                "{i:?}"
            );
        }
        assert_eq!(c, compare(3, &truth, &old, &new, 500, 1), "seeded");
        // Eight examples cannot tell a change.
        assert_eq!(c.verdict(), Verdict::Unclear);
        assert!(!c.is_improvement());
        assert!(c.too_small().unwrap().contains("8 examples"));
        assert!(
            c.headline().ends_with("no clear change"),
            "{}",
            c.headline()
        );
    }

    #[test]
    fn a_clear_gain_on_many_examples_is_better_and_not_too_small() {
        let n = 2000;
        let truth: Vec<usize> = (0..n).map(|i| i % 4).collect();
        let old: Vec<usize> = (0..n).map(|i| if i % 2 == 0 { i % 4 } else { 0 }).collect();
        let new: Vec<usize> = (0..n)
            .map(|i| if i % 10 != 0 { i % 4 } else { 0 })
            .collect();
        let c = compare(4, &truth, &old, &new, 500, 2);
        assert_eq!(c.verdict(), Verdict::Better);
        assert!(c.is_improvement());
        assert!(c.too_small().is_none());
        let back = compare(4, &truth, &new, &old, 500, 2);
        assert_eq!(back.verdict(), Verdict::Worse);
        assert!(
            back.too_small().is_none(),
            "clearly worse is not 'too small'"
        );
    }

    /// The acceptance test: over 200 simulated held-out draws from a
    /// population where the true difference is known, the 95% paired
    /// interval covers it in at least 90% of the draws.
    #[test]
    fn paired_interval_covers_the_true_difference() {
        let k = 4;
        let pop = 20_000;
        let mut rng = StdRng::seed_from_u64(2024);
        let mut truth = Vec::with_capacity(pop);
        let mut old = Vec::with_capacity(pop);
        let mut new = Vec::with_capacity(pop);
        for _ in 0..pop {
            let t = rng.random_range(0..k);
            let wrong = |rng: &mut StdRng| (t + rng.random_range(1..k)) % k;
            // Correlated models: `new` is right wherever `old` is right
            // 90% of the time, and fixes some of its mistakes.
            let o_ok = rng.random_bool(0.65);
            let n_ok = if o_ok {
                rng.random_bool(0.9)
            } else {
                rng.random_bool(0.4)
            };
            truth.push(t);
            old.push(if o_ok { t } else { wrong(&mut rng) });
            new.push(if n_ok { t } else { wrong(&mut rng) });
        }
        let whole = compare(k, &truth, &old, &new, 0, 0);
        let (true_acc, true_f1) = (whole.accuracy_diff.estimate, whole.macro_f1_diff.estimate);
        assert!(
            true_acc.abs() > 0.01,
            "a real difference to cover: {true_acc}"
        );
        let (mut cov_acc, mut cov_f1) = (0, 0);
        let draws = 200;
        let n = 300;
        for d in 0..draws {
            let idx: Vec<usize> = (0..n).map(|_| rng.random_range(0..pop)).collect();
            let pick = |v: &[usize]| idx.iter().map(|&i| v[i]).collect::<Vec<_>>();
            let c = compare(k, &pick(&truth), &pick(&old), &pick(&new), 400, d);
            cov_acc +=
                usize::from(c.accuracy_diff.low <= true_acc && true_acc <= c.accuracy_diff.high);
            cov_f1 +=
                usize::from(c.macro_f1_diff.low <= true_f1 && true_f1 <= c.macro_f1_diff.high);
        }
        let (ca, cf) = (cov_acc as f64 / draws as f64, cov_f1 as f64 / draws as f64);
        assert!(ca >= 0.90, "accuracy-difference coverage {ca}");
        assert!(cf >= 0.90, "macro-F1-difference coverage {cf}");
    }
}
