//! Does a model's confidence mean what it says? Reliability buckets and
//! the expected calibration error (ECE) of predicted probabilities against
//! the truth.

use serde::Serialize;

use super::model::argmax;

/// Predictions whose top probability fell in `[low, high)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bucket {
    pub low: f64,
    pub high: f64,
    pub count: usize,
    /// Mean top probability.
    pub confidence: f64,
    /// Share of them that were right.
    pub accuracy: f64,
}

/// `bins` equal-width buckets of the top probability over `[0, 1]`
/// (empty ones included, with count 0).
pub fn reliability(proba: &[Vec<f64>], truth: &[usize], bins: usize) -> Vec<Bucket> {
    let bins = bins.max(1);
    let mut sums = vec![(0usize, 0f64, 0usize); bins];
    for (p, &t) in proba.iter().zip(truth) {
        let pred = argmax(p);
        let conf = p.get(pred).copied().unwrap_or(0.0);
        let b = ((conf * bins as f64) as usize).min(bins - 1);
        sums[b].0 += 1;
        sums[b].1 += conf;
        sums[b].2 += usize::from(pred == t);
    }
    sums.into_iter()
        .enumerate()
        .map(|(i, (n, c, ok))| Bucket {
            low: i as f64 / bins as f64,
            high: (i + 1) as f64 / bins as f64,
            count: n,
            confidence: if n == 0 { 0.0 } else { c / n as f64 },
            accuracy: if n == 0 { 0.0 } else { ok as f64 / n as f64 },
        })
        .collect()
}

/// Expected calibration error: the count-weighted mean gap between
/// confidence and accuracy over the buckets.
pub fn ece(buckets: &[Bucket]) -> f64 {
    let n: usize = buckets.iter().map(|b| b.count).sum();
    if n == 0 {
        return 0.0;
    }
    buckets
        .iter()
        .map(|b| b.count as f64 * (b.confidence - b.accuracy).abs())
        .sum::<f64>()
        / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_by_top_probability() {
        let proba = vec![
            vec![0.95, 0.05],
            vec![0.9, 0.1],
            vec![0.42, 0.58],
            vec![0.45, 0.55],
        ];
        let b = reliability(&proba, &[0, 1, 1, 0], 10);
        assert_eq!(b.len(), 10);
        assert_eq!(b[9].count, 2);
        assert!((b[9].confidence - 0.925).abs() < 1e-12);
        assert!((b[9].accuracy - 0.5).abs() < 1e-12);
        assert_eq!(b[5].count, 2);
        assert!((b[5].accuracy - 0.5).abs() < 1e-12);
        let e = ece(&b);
        assert!((b[5].confidence - 0.565).abs() < 1e-12);
        assert!((e - (2.0 * 0.425 + 2.0 * 0.065) / 4.0).abs() < 1e-12, "{e}");
        assert_eq!(ece(&reliability(&[], &[], 5)), 0.0);
    }
}
