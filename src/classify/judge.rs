//! Judge the judge: how well anything that decides for the user (the LLM
//! relabeler, the small classifier, the denoiser) does on real held-out
//! examples, beside the levels it must beat — chance (1/k) and always
//! answering the most common class — with an exact one-sided binomial
//! test for "clearly better". Pure: the caller gets the answers.

use std::collections::BTreeMap;

use crate::domain::JudgeReport;

/// `ln C(n, k)` by summing logs (n is a sample size: at most thousands).
fn ln_choose(n: usize, k: usize) -> f64 {
    let k = k.min(n - k);
    (0..k)
        .map(|i| ((n - i) as f64).ln() - ((i + 1) as f64).ln())
        .sum()
}

/// P(X ≥ k) for X ~ Binomial(n, p): the chance of doing at least this
/// well by luck at level `p`.
pub fn binomial_tail(n: usize, k: usize, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let terms: Vec<f64> = (k..=n)
        .map(|i| ln_choose(n, i) + i as f64 * lp + (n - i) as f64 * lq)
        .collect();
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = terms.iter().map(|t| (t - max).exp()).sum();
    (max + sum.ln()).exp().min(1.0)
}

/// Score a judge: `truth[i]` is the true class of example i (index into
/// `labels`), `answers[i]` the judge's answer (`None`: no usable answer,
/// counted wrong).
///
/// # Panics
/// When the slices differ in length or hold an index out of range.
pub fn judge_report(
    judge: &str,
    labels: &[String],
    truth: &[usize],
    answers: &[Option<usize>],
) -> JudgeReport {
    assert_eq!(truth.len(), answers.len(), "one answer per example");
    let k = labels.len();
    let n = truth.len();
    let mut confusion = vec![vec![0u32; k + 1]; k];
    for (&t, a) in truth.iter().zip(answers) {
        confusion[t][a.unwrap_or(k)] += 1;
    }
    let correct: usize = (0..k).map(|i| confusion[i][i] as usize).sum();
    let unanswered = answers.iter().filter(|a| a.is_none()).count();
    // Macro-F1 over the classes that occur in the truth or the answers.
    let (mut f1_sum, mut f1_n) = (0.0, 0usize);
    for i in 0..k {
        let tp = f64::from(confusion[i][i]);
        let support: f64 = confusion[i].iter().map(|&c| f64::from(c)).sum();
        let predicted: f64 = confusion.iter().map(|row| f64::from(row[i])).sum();
        if support + predicted > 0.0 {
            f1_sum += 2.0 * tp / (support + predicted);
            f1_n += 1;
        }
    }
    let mut answer_counts: BTreeMap<String, usize> = BTreeMap::new();
    for a in answers {
        let name = a.map(|i| labels[i].clone()).unwrap_or_default();
        *answer_counts.entry(name).or_default() += 1;
    }
    let mut support = vec![0usize; k];
    for &t in truth {
        support[t] += 1;
    }
    // The most common true class (first in label order on ties).
    let maj = (0..k).rev().max_by_key(|&i| support[i]).unwrap_or(0);
    let ratio = |x: usize| if n == 0 { 0.0 } else { x as f64 / n as f64 };
    let chance = if k == 0 { 0.0 } else { 1.0 / k as f64 };
    let majority = ratio(support.get(maj).copied().unwrap_or(0));
    JudgeReport {
        judge: judge.to_string(),
        labels: labels.to_vec(),
        n,
        correct,
        unanswered,
        accuracy: ratio(correct),
        macro_f1: if f1_n == 0 { 0.0 } else { f1_sum / f1_n as f64 },
        confusion,
        answers: answer_counts,
        chance,
        majority,
        majority_label: labels.get(maj).cloned().unwrap_or_default(),
        p_vs_chance: binomial_tail(n, correct, chance),
        p_vs_majority: binomial_tail(n, correct, majority),
    }
}

/// The report of a judge scored elsewhere from its confusion matrix
/// (rows: truth, columns: answers): the small classifier of `eval`.
pub fn report_from_scores(judge: &str, s: &crate::domain::Scores) -> JudgeReport {
    let (mut truth, mut answers) = (Vec::new(), Vec::new());
    for (t, row) in s.confusion.iter().enumerate() {
        for (p, &c) in row.iter().enumerate() {
            for _ in 0..c {
                truth.push(t);
                answers.push(Some(p));
            }
        }
    }
    judge_report(judge, &s.labels, &truth, &answers)
}

/// "clearly better than chance (0.17) and the majority class (0.20)" or
/// what it is not clearly better than.
pub fn verdict_line(r: &JudgeReport) -> String {
    let vs = |better: bool, what: &str, level: f64, p: f64| {
        format!(
            "{} {what} ({level:.2}, p = {p:.3})",
            if better {
                "clearly better than"
            } else {
                "NOT clearly better than"
            }
        )
    };
    format!(
        "{}; {}",
        vs(r.better_than_chance(), "chance", r.chance, r.p_vs_chance),
        vs(
            r.better_than_majority(),
            "the majority class",
            r.majority,
            r.p_vs_majority
        )
    )
}

/// Up to `max` of `n` items, spread over `truth`'s classes (round robin
/// over the classes, each class in a fixed pseudo-random order from
/// `seed`), returned as sorted indices. Deterministic, so a repeated
/// judge run sends the same requests (and hits the cache).
pub fn sample_indices(truth: &[usize], max: usize, seed: u64) -> Vec<usize> {
    use crate::augment::sampling::splitmix64;
    let k = truth.iter().copied().max().map_or(0, |m| m + 1);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (i, &t) in truth.iter().enumerate() {
        by_class[t].push(i);
    }
    for c in &mut by_class {
        c.sort_by_key(|&i| splitmix64(seed ^ i as u64));
    }
    let mut out = Vec::new();
    let mut round = 0;
    while out.len() < max.min(truth.len()) {
        for c in &by_class {
            if let Some(&i) = c.get(round)
                && out.len() < max
            {
                out.push(i);
            }
        }
        round += 1;
    }
    out.sort_unstable();
    out
}

/// Whether a bulk rule may act on the relabeler's verdicts: `Ok` when its
/// latest report (for this `fingerprint`: model, template, settings) is
/// clearly better than chance and than the majority answer, or when the
/// project has no held-out examples to measure it on (`Ok(Some(note))`);
/// else `Err` with what to do.
pub fn relabel_gate(
    state: &crate::domain::ProjectState,
    fingerprint: &str,
) -> Result<Option<String>, String> {
    let force = "or pass --force to apply the rule anyway";
    let heldout = state.samples.iter().any(|s| s.origin.is_heldout());
    match state.judges.get(RELABEL_JUDGE) {
        None if !heldout => Ok(Some(
            "note: the relabeler was never measured (no held-out examples; import some with              `straddle import DIR FILE --as validation`, then run `straddle judge DIR`)"
                .into(),
        )),
        None => Err(format!(
            "the relabeler has not been measured on the held-out examples yet: run `straddle judge DIR` first, {force}"
        )),
        Some(j) if j.fingerprint != fingerprint => Err(format!(
            "the relabeler was measured with another model, template or relabel setting: run `straddle judge DIR` again, {force}"
        )),
        Some(j) => match j.report.distrust() {
            None => Ok(None),
            Some(why) => Err(format!(
                "the relabeler is {why} — {}; its verdicts would keep a biased subset. Improve the model or the relabel prompt and run `straddle judge DIR` again, {force}",
                j.report.headline()
            )),
        },
    }
}

/// The judge name of the LLM relabeler.
pub const RELABEL_JUDGE: &str = "relabel";

/// Render a report for the terminal.
pub fn render(r: &JudgeReport) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "{} judge: {}", r.judge, r.headline());
    let _ = writeln!(
        o,
        "  vs chance: {} (p = {:.3}); vs majority ({}): {} (p = {:.3})",
        if r.better_than_chance() {
            "clearly better"
        } else {
            "NOT clearly better"
        },
        r.p_vs_chance,
        r.majority_label,
        if r.better_than_majority() {
            "clearly better"
        } else {
            "NOT clearly better"
        },
        r.p_vs_majority
    );
    let answers: Vec<String> = r
        .answers
        .iter()
        .map(|(l, c)| {
            let l = if l.is_empty() { "(none)" } else { l.as_str() };
            format!("{l} {c}")
        })
        .collect();
    let _ = writeln!(o, "  answers: {}", answers.join(", "));
    let w = r
        .labels
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(4)
        .max(5);
    let _ = write!(o, "  {:<w$}", "truth");
    for l in &r.labels {
        let _ = write!(o, " {:>6}", l.chars().take(6).collect::<String>());
    }
    let _ = writeln!(o, " {:>6}", "(none)");
    for (l, row) in r.labels.iter().zip(&r.confusion) {
        let _ = write!(o, "  {l:<w$}");
        for c in row {
            let _ = write!(o, " {c:>6}");
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(
        o,
        "  {}",
        match r.distrust() {
            None => "bulk rules may trust its verdicts".to_string(),
            Some(why) => format!("bulk rules refuse to trust it: {why}"),
        }
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(k: usize) -> Vec<String> {
        (0..k).map(|i| format!("C{i}")).collect()
    }

    #[test]
    fn binomial_tail_matches_exact_values() {
        // P(X ≥ 8 | 10, 0.5) = 56/1024.
        assert!((binomial_tail(10, 8, 0.5) - 56.0 / 1024.0).abs() < 1e-12);
        assert_eq!(binomial_tail(10, 0, 0.3), 1.0);
        assert_eq!(binomial_tail(10, 11, 0.3), 0.0);
        assert!((binomial_tail(3, 3, 0.25) - 1.0 / 64.0).abs() < 1e-12);
        // Large n does not overflow.
        let p = binomial_tail(2000, 600, 0.25);
        assert!(p > 0.0 && p < 1e-6, "{p}");
    }

    #[test]
    fn perfect_chance_and_constant_judges() {
        let l = labels(4);
        let truth: Vec<usize> = (0..80).map(|i| i % 4).collect();
        let perfect: Vec<_> = truth.iter().map(|&t| Some(t)).collect();
        let r = judge_report("relabel", &l, &truth, &perfect);
        assert_eq!((r.correct, r.accuracy, r.macro_f1), (80, 1.0, 1.0));
        assert!(r.trusted(), "{r:?}");
        assert_eq!(r.chance, 0.25);
        assert_eq!(r.majority, 0.25);

        // Always the same class: accuracy = chance = majority, not trusted.
        let constant = vec![Some(1); 80];
        let r = judge_report("relabel", &l, &truth, &constant);
        assert_eq!(r.accuracy, 0.25);
        assert_eq!(r.answers["C1"], 80);
        assert!(!r.better_than_chance() && !r.trusted());
        assert!(r.distrust().unwrap().contains("chance"));

        // Unanswered examples count as wrong and show in the last column.
        let mut some = perfect.clone();
        some[0] = None;
        let r = judge_report("relabel", &l, &truth, &some);
        assert_eq!((r.correct, r.unanswered), (79, 1));
        assert_eq!(r.confusion[0][4], 1);
        assert_eq!(r.answers[""], 1);
    }

    #[test]
    fn majority_level_on_skewed_samples() {
        // 70% class 0 and a judge that (almost) always answers it: at
        // 0.70 it beats chance (0.5) but not the majority answer.
        let l = labels(2);
        let truth: Vec<usize> = (0..100).map(|i| usize::from(i >= 70)).collect();
        let answers: Vec<_> = (0..100)
            .map(|i| Some(if i < 72 { 0 } else { 1 - usize::from(i >= 70) }))
            .collect();
        let r = judge_report("classifier", &l, &truth, &answers);
        assert_eq!(r.majority_label, "C0");
        assert!((r.majority - 0.7).abs() < 1e-12);
        assert!(r.better_than_chance());
        assert!(!r.better_than_majority());
        assert!(!r.trusted());
        assert!(render(&r).contains("NOT clearly better"));
    }

    #[test]
    fn samples_are_spread_and_stable() {
        let truth: Vec<usize> = (0..100).map(|i| usize::from(i >= 90)).collect();
        let s = sample_indices(&truth, 20, 1);
        assert_eq!(s.len(), 20);
        assert_eq!(s.iter().filter(|&&i| i >= 90).count(), 10);
        assert_eq!(s, sample_indices(&truth, 20, 1));
        assert_eq!(sample_indices(&truth, 500, 1).len(), 100);
        assert!(sample_indices(&[], 5, 1).is_empty());
    }
}
