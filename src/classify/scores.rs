//! Accuracy, per-class and macro F1, and the confusion matrix.

use std::collections::BTreeMap;

use crate::domain::Scores;

/// Score predictions against the truth (both class indices into `labels`).
///
/// Per-class F1 is reported for every class; a class with neither true
/// examples nor predictions has an undefined F1, is reported as 0 and left
/// out of the macro average (so a held-out set without some class is not
/// penalised for it). `n_train` is left at 0 for the caller to fill in.
///
/// # Panics
/// When `truth` and `pred` differ in length or hold an index out of range.
pub fn score(labels: &[String], truth: &[usize], pred: &[usize]) -> Scores {
    assert_eq!(truth.len(), pred.len(), "one prediction per example");
    let k = labels.len();
    let mut confusion = vec![vec![0u32; k]; k];
    for (&t, &p) in truth.iter().zip(pred) {
        confusion[t][p] += 1;
    }
    let n = truth.len();
    let correct: u32 = (0..k).map(|i| confusion[i][i]).sum();
    let mut per_class_f1 = BTreeMap::new();
    let mut f1_sum = 0.0;
    let mut f1_n = 0usize;
    for (i, label) in labels.iter().enumerate() {
        let tp = f64::from(confusion[i][i]);
        let support: f64 = confusion[i].iter().map(|&c| f64::from(c)).sum();
        let predicted: f64 = confusion.iter().map(|row| f64::from(row[i])).sum();
        let f1 = if support + predicted > 0.0 {
            f1_n += 1;
            2.0 * tp / (support + predicted)
        } else {
            0.0
        };
        f1_sum += f1;
        per_class_f1.insert(label.clone(), f1);
    }
    Scores {
        accuracy: if n == 0 {
            0.0
        } else {
            f64::from(correct) / n as f64
        },
        macro_f1: if f1_n == 0 { 0.0 } else { f1_sum / f1_n as f64 },
        per_class_f1,
        labels: labels.to_vec(),
        confusion,
        n_train: 0,
        n_test: n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn hand_computed_example() {
        // truth: a a a b b c ; pred: a a b b c c
        let s = score(
            &labels(&["a", "b", "c", "d"]),
            &[0, 0, 0, 1, 1, 2],
            &[0, 0, 1, 1, 2, 2],
        );
        assert!((s.accuracy - 4.0 / 6.0).abs() < 1e-12);
        // F1: a = 2·2/(3+2) = 0.8; b = 2·1/(2+2) = 0.5; c = 2·1/(1+2) = 2/3; d undefined.
        assert!((s.per_class_f1["a"] - 0.8).abs() < 1e-12);
        assert!((s.per_class_f1["b"] - 0.5).abs() < 1e-12);
        assert!((s.per_class_f1["c"] - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.per_class_f1["d"], 0.0);
        assert!((s.macro_f1 - (0.8 + 0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        assert_eq!(s.confusion[0], vec![2, 1, 0, 0]);
        assert_eq!(s.confusion[1], vec![0, 1, 1, 0]);
        assert_eq!(s.confusion[2], vec![0, 0, 1, 0]);
        assert_eq!(s.n_test, 6);
    }

    #[test]
    fn empty_is_zero() {
        let s = score(&labels(&["a"]), &[], &[]);
        assert_eq!((s.accuracy, s.macro_f1, s.n_test), (0.0, 0.0, 0));
    }
}
