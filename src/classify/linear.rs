//! Multinomial logistic regression on dense features (sentence
//! embeddings), L2-regularised, fitted with L-BFGS, and calibrated by
//! temperature scaling fitted out of fold.
//!
//! The objective is scikit-learn's (`C` = inverse regularisation strength,
//! the intercept not penalised), divided by the total sample weight so its
//! scale does not depend on the number of rows:
//!
//! `f(W, b) = (1/N) Σ_i s_i · −log softmax(W x_i + b)_{y_i} + ‖W‖² / (2 C N)`
//!
//! with `s_i` the balanced class weight of row `i` (`Σ s_i = N`). It is
//! convex, so L-BFGS from zero reaches the same optimum as any other
//! solver; METHODS.md measured this model with `C = 10`.
//!
//! **Calibration.** A model fitted to few rows is overconfident on new
//! ones. [`fit_calibrated`] splits the rows into stratified folds, fits a
//! model per fold on the other folds, and fits one temperature `T` that
//! minimises the log-loss of the out-of-fold logits divided by `T`; the
//! final model (fitted on every row) divides its logits by that `T`. The
//! fold models see fewer rows than the final one, so `T` errs on the side
//! of modesty. The out-of-fold probabilities are kept: they are what doubt
//! and training signals need (no row is judged by a model that saw it).
//!
//! A hand-written solver: L-BFGS is ~80 lines and an optimisation crate
//! would bring more code than it saves. The objective is two matrix
//! products per evaluation, done by matrixmultiply's SGEMM (already a
//! dependency of the embedder).

use serde::{Deserialize, Serialize};

use super::dense::{Dense, axpy, dot, gemm};
use super::signals::assign_folds;

/// How to fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearConfig {
    /// Inverse L2 strength, as in scikit-learn (METHODS.md: 10).
    pub c: f64,
    /// L-BFGS iterations at most.
    pub max_iter: usize,
    /// Stop when every gradient component is below this.
    pub tol: f64,
    /// L-BFGS memory (pairs kept).
    pub history: usize,
    /// Weight rows by `n / (classes_present · n_class)`.
    pub balance: bool,
    /// Folds for the out-of-fold temperature (capped by the smallest
    /// class, and at 3 from [`LARGE`] rows on; with fewer than 2 rows in
    /// some class no temperature is fitted).
    pub calibration_folds: usize,
    /// Seed of the fold assignment.
    pub seed: u64,
}

impl Default for LinearConfig {
    fn default() -> Self {
        LinearConfig {
            c: 10.0,
            max_iter: 100,
            tol: 1e-4,
            history: 10,
            balance: true,
            calibration_folds: 5,
            seed: 0,
        }
    }
}

/// A fitted linear model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearModel {
    classes: Vec<String>,
    dim: usize,
    /// `k × dim`, class-major.
    weights: Vec<f32>,
    bias: Vec<f32>,
    /// Logits are divided by this before the softmax (1 = uncalibrated).
    temperature: f64,
    /// L-BFGS iterations the fit took.
    iterations: usize,
}

impl LinearModel {
    /// Fit on the given rows of `x` (labels are indices into `classes`).
    ///
    /// # Panics
    /// When `x` and `labels` differ in length or a label is out of range.
    pub fn fit(
        classes: &[String],
        x: &Dense,
        labels: &[usize],
        rows: &[usize],
        cfg: &LinearConfig,
    ) -> LinearModel {
        assert_eq!(x.len(), labels.len(), "one label per row");
        let k = classes.len();
        assert!(labels.iter().all(|&l| l < k), "label out of range");
        let d = x.dim();
        let mut m = LinearModel {
            classes: classes.to_vec(),
            dim: d,
            weights: vec![0.0; k * d],
            bias: vec![0.0; k],
            temperature: 1.0,
            iterations: 0,
        };
        if k < 2 || rows.is_empty() {
            return m;
        }
        let problem = Problem::new(x, labels, rows, k, cfg);
        let mut theta = vec![0f32; k * d + k];
        m.iterations = lbfgs(&problem, &mut theta, cfg);
        m.bias = theta.split_off(k * d);
        m.weights = theta;
        // The problem was solved on centred rows: fold the centre into the
        // bias so the model applies to raw rows.
        for c in 0..k {
            m.bias[c] -= dot(&m.weights[c * d..(c + 1) * d], &problem.mean);
        }
        m
    }

    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn temperature(&self) -> f64 {
        self.temperature
    }

    /// Set the temperature the logits are divided by (must be > 0).
    pub fn set_temperature(&mut self, t: f64) {
        assert!(t > 0.0 && t.is_finite(), "temperature {t}");
        self.temperature = t;
    }

    /// L-BFGS iterations the fit took.
    pub fn iterations(&self) -> usize {
        self.iterations
    }

    /// Raw scores (before temperature), into `z`.
    pub fn logits_into(&self, x: &[f32], z: &mut [f32]) {
        debug_assert_eq!(x.len(), self.dim);
        for (c, zc) in z.iter_mut().enumerate() {
            *zc = dot(&self.weights[c * self.dim..(c + 1) * self.dim], x) + self.bias[c];
        }
    }

    /// Raw scores (before temperature).
    pub fn logits(&self, x: &[f32]) -> Vec<f32> {
        let mut z = vec![0f32; self.classes.len()];
        self.logits_into(x, &mut z);
        z
    }

    /// Calibrated probability per class, summing to 1.
    pub fn predict_proba(&self, x: &[f32]) -> Vec<f64> {
        softmax_t(&self.logits(x), self.temperature)
    }

    /// [`Self::predict_proba`] into `p`, the logits into `z` (one per
    /// class each): no allocation a row.
    pub fn predict_proba_into(&self, x: &[f32], z: &mut [f32], p: &mut [f64]) {
        self.logits_into(x, z);
        softmax_t_into(z, self.temperature, p);
    }

    /// Calibrated probabilities for every row of `x` (one matrix product).
    pub fn predict_proba_batch(&self, x: &Dense) -> Vec<Vec<f64>> {
        let (k, d, n) = (self.classes.len(), self.dim, x.len());
        if n == 0 {
            return Vec::new();
        }
        assert_eq!(x.dim(), d, "rows of {} floats for a model of {d}", x.dim());
        let mut z = vec![0f32; n * k];
        for zi in z.chunks_exact_mut(k.max(1)) {
            zi.copy_from_slice(&self.bias);
        }
        gemm(
            (n, d, k),
            x.as_flat(),
            (d, 1),
            &self.weights,
            (1, d),
            1.0,
            &mut z,
            (k, 1),
        );
        z.chunks_exact(k.max(1))
            .map(|zi| softmax_t(zi, self.temperature))
            .collect()
    }
}

/// A model fitted on all rows with its temperature fitted out of fold, and
/// the out-of-fold results that came with it.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossFit {
    pub model: LinearModel,
    /// Fold of each row (all 0 when no folds could be made).
    pub fold: Vec<usize>,
    /// Out-of-fold logits per row (empty when no folds could be made).
    pub oof_logits: Vec<Vec<f32>>,
    /// For each row, the probability of its own label from every model
    /// that trained on it (the fold models that kept it, then the final
    /// model), uncalibrated: how firmly the data teaches that row.
    pub in_sample: Vec<Vec<f32>>,
    /// The fold models (empty when no folds could be made), to score rows
    /// that none of the models saw as they scored the training rows.
    pub fold_models: Vec<LinearModel>,
}

impl CrossFit {
    /// Calibrated out-of-fold probabilities (`None` without folds).
    pub fn oof_proba(&self) -> Option<Vec<Vec<f64>>> {
        if self.oof_logits.is_empty() {
            return None;
        }
        let t = self.model.temperature;
        Some(self.oof_logits.iter().map(|z| softmax_t(z, t)).collect())
    }
}

/// From this many rows on, [`fit_calibrated`] uses at most 3 folds.
pub const LARGE: usize = 5000;

/// Number of folds possible for these labels: `cfg.calibration_folds`
/// capped by the smallest class present; 0 when some class has fewer than
/// two rows or fewer than two classes are present.
pub fn folds_for(labels: &[usize], k: usize, wanted: usize) -> usize {
    let mut counts = vec![0usize; k];
    for &l in labels {
        counts[l] += 1;
    }
    let present: Vec<usize> = counts.into_iter().filter(|&c| c > 0).collect();
    let smallest = present.iter().copied().min().unwrap_or(0);
    if present.len() < 2 || smallest < 2 || wanted < 2 {
        return 0;
    }
    wanted.min(smallest)
}

/// Fit on every row of `x` and calibrate the temperature out of fold.
pub fn fit_calibrated(
    classes: &[String],
    x: &Dense,
    labels: &[usize],
    cfg: &LinearConfig,
) -> CrossFit {
    let k = classes.len();
    let n = labels.len();
    let all: Vec<usize> = (0..n).collect();
    let mut model = LinearModel::fit(classes, x, labels, &all, cfg);
    // With many rows, 3 folds give the temperature (one number) and the
    // out-of-fold probabilities plenty of data at 4 fits instead of 6.
    let wanted = if n >= LARGE {
        cfg.calibration_folds.min(3)
    } else {
        cfg.calibration_folds
    };
    let folds = folds_for(labels, k, wanted);
    let mut in_sample: Vec<Vec<f32>> = vec![Vec::with_capacity(folds + 1); n];
    let mut z = vec![0f32; k];
    if folds == 0 {
        for (i, v) in in_sample.iter_mut().enumerate() {
            model.logits_into(x.row(i), &mut z);
            v.push(softmax_t(&z, 1.0)[labels[i]] as f32);
        }
        return CrossFit {
            model,
            fold: vec![0; n],
            oof_logits: Vec::new(),
            in_sample,
            fold_models: Vec::new(),
        };
    }
    let fold = assign_folds(labels, k, folds, cfg.seed);
    let mut oof_logits = vec![Vec::new(); n];
    let fold_models: Vec<LinearModel> = (0..folds)
        .map(|f| {
            let train: Vec<usize> = (0..n).filter(|&i| fold[i] != f).collect();
            LinearModel::fit(classes, x, labels, &train, cfg)
        })
        .collect();
    for (f, fm) in fold_models.iter().enumerate() {
        for i in 0..n {
            fm.logits_into(x.row(i), &mut z);
            if fold[i] == f {
                oof_logits[i] = z.clone();
            } else {
                in_sample[i].push(softmax_t(&z, 1.0)[labels[i]] as f32);
            }
        }
    }
    for (i, v) in in_sample.iter_mut().enumerate() {
        model.logits_into(x.row(i), &mut z);
        v.push(softmax_t(&z, 1.0)[labels[i]] as f32);
    }
    model.temperature = fit_temperature(&oof_logits, labels);
    CrossFit {
        model,
        fold,
        oof_logits,
        in_sample,
        fold_models,
    }
}

/// The temperature `T ∈ [0.05, 20]` minimising the mean log-loss of
/// `softmax(z / T)` (golden-section search on `ln T`; the loss is convex in
/// `1/T`, so unimodal in `ln T`).
pub fn fit_temperature(logits: &[Vec<f32>], labels: &[usize]) -> f64 {
    if logits.is_empty() {
        return 1.0;
    }
    let nll = |lt: f64| -> f64 {
        let t = lt.exp();
        logits
            .iter()
            .zip(labels)
            .map(|(z, &y)| {
                let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
                let lse = z
                    .iter()
                    .map(|&v| ((v as f64 - max) / t).exp())
                    .sum::<f64>()
                    .ln();
                lse - (z[y] as f64 - max) / t
            })
            .sum::<f64>()
    };
    let (mut a, mut b) = (0.05f64.ln(), 20f64.ln());
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let mut c = b - g * (b - a);
    let mut d = a + g * (b - a);
    let (mut fc, mut fd) = (nll(c), nll(d));
    for _ in 0..60 {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = nll(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = nll(d);
        }
    }
    ((a + b) / 2.0).exp()
}

/// Softmax of `z / t` in f64.
pub fn softmax_t(z: &[f32], t: f64) -> Vec<f64> {
    let mut p = vec![0.0; z.len()];
    softmax_t_into(z, t, &mut p);
    p
}

/// [`softmax_t`] into `p` (as long as `z`), for a caller scoring many
/// rows with one buffer.
pub fn softmax_t_into(z: &[f32], t: f64, p: &mut [f64]) {
    debug_assert_eq!(z.len(), p.len());
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    for (o, &v) in p.iter_mut().zip(z) {
        *o = ((v as f64 - max) / t).exp();
    }
    let s: f64 = p.iter().sum();
    for x in p.iter_mut() {
        *x /= s;
    }
}

/// The data of one fit: the rows gathered into one contiguous matrix so
/// the objective is two matrix products, and centred. Centring changes no
/// prediction (the unpenalised bias absorbs it) but sentence embeddings
/// share a large common component, and removing it makes the problem far
/// better conditioned: fewer L-BFGS iterations.
struct Problem {
    x: Dense,
    mean: Vec<f32>,
    y: Vec<usize>,
    /// Per-row weight divided by the total weight.
    w: Vec<f32>,
    k: usize,
    /// `1 / (C · N)`.
    lambda: f32,
}

impl Problem {
    fn new(x: &Dense, labels: &[usize], rows: &[usize], k: usize, cfg: &LinearConfig) -> Self {
        let mut counts = vec![0usize; k];
        for &r in rows {
            counts[labels[r]] += 1;
        }
        let present = counts.iter().filter(|&&c| c > 0).count().max(1);
        let n = rows.len();
        let cw: Vec<f32> = counts
            .iter()
            .map(|&c| {
                if cfg.balance && c > 0 {
                    n as f32 / (present * c) as f32
                } else {
                    1.0
                }
            })
            .collect();
        let total: f32 = rows.iter().map(|&r| cw[labels[r]]).sum();
        let d = x.dim();
        let mut mean = vec![0f32; d];
        for &r in rows {
            axpy(&mut mean, 1.0 / n as f32, x.row(r));
        }
        let mut flat = Vec::with_capacity(n * d);
        for &r in rows {
            flat.extend(x.row(r).iter().zip(&mean).map(|(v, m)| v - m));
        }
        Problem {
            x: Dense::from_flat(d.max(1), flat),
            mean,
            y: rows.iter().map(|&r| labels[r]).collect(),
            w: rows.iter().map(|&r| cw[labels[r]] / total).collect(),
            k,
            lambda: (1.0 / (cfg.c * f64::from(total))) as f32,
        }
    }

    fn dim(&self) -> usize {
        self.x.dim()
    }

    /// Objective and gradient at `theta = [W (k×d), b (k)]`.
    fn eval(&self, theta: &[f32], grad: &mut [f32]) -> f64 {
        let (k, d, n) = (self.k, self.dim(), self.y.len());
        let (wts, bias) = theta.split_at(k * d);
        // Z = X·Wᵀ (n×k), then Z ← weighted (softmax(Z + b) − onehot).
        let mut z = vec![0f32; n * k];
        gemm(
            (n, d, k),
            self.x.as_flat(),
            (d, 1),
            wts,
            (1, d),
            0.0,
            &mut z,
            (k, 1),
        );
        let mut loss = 0f64;
        let (gw, gb) = grad.split_at_mut(k * d);
        gb.fill(0.0);
        for (i, zi) in z.chunks_exact_mut(k).enumerate() {
            let mut max = f32::NEG_INFINITY;
            for (zc, b) in zi.iter_mut().zip(bias) {
                *zc += b;
                max = max.max(*zc);
            }
            let mut s = 0f32;
            for zc in zi.iter_mut() {
                *zc = (*zc - max).exp();
                s += *zc;
            }
            let (y, sw) = (self.y[i], self.w[i]);
            loss += f64::from(sw) * -f64::from((zi[y] / s).max(f32::MIN_POSITIVE).ln());
            for (c, zc) in zi.iter_mut().enumerate() {
                *zc = sw * (*zc / s - if c == y { 1.0 } else { 0.0 });
                gb[c] += *zc;
            }
        }
        // ∇W = Zᵀ·X (k×d) + λW.
        gw.copy_from_slice(wts);
        gemm(
            (k, n, d),
            &z,
            (1, k),
            self.x.as_flat(),
            (d, 1),
            self.lambda,
            gw,
            (d, 1),
        );
        loss + 0.5 * f64::from(self.lambda) * wts.iter().map(|&v| f64::from(v * v)).sum::<f64>()
    }
}

/// Minimise the problem's objective from `theta`; returns the iterations.
fn lbfgs(p: &Problem, theta: &mut [f32], cfg: &LinearConfig) -> usize {
    let len = theta.len();
    let mut g = vec![0f32; len];
    let mut f = p.eval(theta, &mut g);
    let mut s_hist: Vec<Vec<f32>> = Vec::new();
    let mut y_hist: Vec<Vec<f32>> = Vec::new();
    let mut rho: Vec<f32> = Vec::new();
    let mut dir = vec![0f32; len];
    let mut trial = vec![0f32; len];
    let mut g_new = vec![0f32; len];
    let max_abs = |v: &[f32]| v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let mut it = 0;
    while it < cfg.max_iter {
        if f64::from(max_abs(&g)) <= cfg.tol {
            break;
        }
        it += 1;
        // Two-loop recursion: dir = −H·g.
        dir.copy_from_slice(&g);
        let m = s_hist.len();
        let mut alpha = vec![0f32; m];
        for i in (0..m).rev() {
            alpha[i] = rho[i] * dot(&s_hist[i], &dir);
            axpy(&mut dir, -alpha[i], &y_hist[i]);
        }
        let gamma = if m > 0 {
            dot(&s_hist[m - 1], &y_hist[m - 1]) / dot(&y_hist[m - 1], &y_hist[m - 1])
        } else {
            1.0 / dot(&g, &g).sqrt().max(1e-12)
        };
        for v in dir.iter_mut() {
            *v *= gamma;
        }
        for i in 0..m {
            let beta = rho[i] * dot(&y_hist[i], &dir);
            axpy(&mut dir, alpha[i] - beta, &s_hist[i]);
        }
        for v in dir.iter_mut() {
            *v = -*v;
        }
        let mut slope = f64::from(dot(&g, &dir));
        if slope >= 0.0 {
            // Not a descent direction: forget the history, go downhill.
            s_hist.clear();
            y_hist.clear();
            rho.clear();
            let scale = 1.0 / dot(&g, &g).sqrt().max(1e-12);
            for (dv, gv) in dir.iter_mut().zip(&g) {
                *dv = -gv * scale;
            }
            slope = f64::from(dot(&g, &dir));
        }
        // Backtracking line search (Armijo).
        let mut step = 1f32;
        let mut f_new = f;
        let mut accepted = false;
        for _ in 0..40 {
            for ((t, x), dv) in trial.iter_mut().zip(theta.iter()).zip(&dir) {
                *t = x + step * dv;
            }
            f_new = p.eval(&trial, &mut g_new);
            if f_new <= f + 1e-4 * f64::from(step) * slope {
                accepted = true;
                break;
            }
            step *= 0.5;
        }
        if !accepted {
            break;
        }
        let s: Vec<f32> = dir.iter().map(|dv| step * dv).collect();
        let y: Vec<f32> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        theta.copy_from_slice(&trial);
        std::mem::swap(&mut g, &mut g_new);
        let done = (f - f_new).abs() <= 1e-10 * f.abs().max(f_new.abs()).max(1.0);
        f = f_new;
        if sy > 1e-10 {
            if s_hist.len() == cfg.history.max(1) {
                s_hist.remove(0);
                y_hist.remove(0);
                rho.remove(0);
            }
            s_hist.push(s);
            y_hist.push(y);
            rho.push(1.0 / sy);
        }
        if done {
            break;
        }
    }
    it
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn names(k: usize) -> Vec<String> {
        (0..k).map(|i| format!("c{i}")).collect()
    }

    fn blobs(n: usize, k: usize, d: usize, spread: f32, seed: u64) -> (Dense, Vec<usize>) {
        crate::classify::toy::blobs(n, k, d, spread * (d as f32).sqrt(), seed)
    }

    fn grad_norm(p: &Problem, theta: &[f32]) -> f32 {
        let mut g = vec![0f32; theta.len()];
        p.eval(theta, &mut g);
        g.iter().fold(0f32, |m, v| m.max(v.abs()))
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (x, y) = blobs(30, 3, 5, 0.3, 1);
        let rows: Vec<usize> = (0..30).collect();
        let cfg = LinearConfig::default();
        let p = Problem::new(&x, &y, &rows, 3, &cfg);
        let mut rng = StdRng::seed_from_u64(5);
        let theta: Vec<f32> = (0..18).map(|_| rng.random_range(-0.5..0.5)).collect();
        let mut g = vec![0f32; 18];
        p.eval(&theta, &mut g);
        for i in 0..18 {
            let h = 1e-2f32;
            let mut a = theta.clone();
            let mut b = theta.clone();
            a[i] += h;
            b[i] -= h;
            let mut tmp = vec![0f32; 18];
            let num = (p.eval(&a, &mut tmp) - p.eval(&b, &mut tmp)) / (2.0 * f64::from(h));
            assert!(
                (num - f64::from(g[i])).abs() < 2e-3,
                "component {i}: numeric {num} vs analytic {}",
                g[i]
            );
        }
    }

    #[test]
    fn converges_to_a_stationary_point_and_separates_blobs() {
        let (x, y) = blobs(600, 4, 16, 0.25, 2);
        let (tx, ty) = blobs(400, 4, 16, 0.25, 3);
        let cfg = LinearConfig::default();
        let rows: Vec<usize> = (0..x.len()).collect();
        let m = LinearModel::fit(&names(4), &x, &y, &rows, &cfg);
        let p = Problem::new(&x, &y, &rows, 4, &cfg);
        // Back to the centred problem's parameters.
        let mut theta = m.weights.clone();
        for c in 0..4 {
            theta.push(m.bias[c] + dot(&m.weights[c * 16..(c + 1) * 16], &p.mean));
        }
        assert!(
            f64::from(grad_norm(&p, &theta)) < 1e-3,
            "not converged after {} iterations",
            m.iterations
        );
        let pr = m.predict_proba_batch(&tx);
        let acc = pr
            .iter()
            .zip(&ty)
            .filter(|(p, t)| super::super::argmax(p) == **t)
            .count() as f64
            / ty.len() as f64;
        assert!(acc > 0.8, "accuracy {acc}");
        for q in &pr {
            assert!((q.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        }
    }

    #[test]
    fn stronger_regularisation_gives_smaller_weights() {
        let (x, y) = blobs(100, 3, 8, 0.3, 4);
        let rows: Vec<usize> = (0..100).collect();
        let norm = |c: f64| {
            let cfg = LinearConfig {
                c,
                ..LinearConfig::default()
            };
            let m = LinearModel::fit(&names(3), &x, &y, &rows, &cfg);
            m.weights.iter().map(|w| w * w).sum::<f32>()
        };
        assert!(norm(0.1) < norm(10.0));
    }

    #[test]
    fn unfitted_and_single_class_models_are_uniform() {
        let x = Dense::from_rows(&[vec![1.0, 0.0]]);
        let m = LinearModel::fit(&names(2), &x, &[0], &[], &LinearConfig::default());
        assert_eq!(m.predict_proba(&[1.0, 0.0]), vec![0.5, 0.5]);
        assert_eq!(folds_for(&[0, 0, 1], 2, 5), 0, "a class with one row");
        assert_eq!(folds_for(&[0, 0, 1, 1], 2, 5), 2);
        assert_eq!(folds_for(&[0, 0, 0, 0, 0, 0, 1, 1, 1], 3, 5), 3);
        assert_eq!(folds_for(&[0, 0, 0], 2, 5), 0, "one class present");
    }

    #[test]
    fn temperature_recovers_a_known_scale() {
        // Logits drawn so that softmax(z / 3) is the true distribution.
        let mut rng = StdRng::seed_from_u64(7);
        let mut logits = Vec::new();
        let mut labels = Vec::new();
        for _ in 0..4000 {
            let z: Vec<f32> = (0..4).map(|_| rng.random_range(-6.0..6.0)).collect();
            let p = softmax_t(&z, 3.0);
            let u: f64 = rng.random();
            let mut acc = 0.0;
            let mut y = 3;
            for (c, pc) in p.iter().enumerate() {
                acc += pc;
                if u < acc {
                    y = c;
                    break;
                }
            }
            logits.push(z);
            labels.push(y);
        }
        let t = fit_temperature(&logits, &labels);
        assert!((t - 3.0).abs() < 0.3, "fitted {t}");
    }

    #[test]
    fn calibrated_fit_keeps_out_of_fold_results() {
        let (x, y) = blobs(200, 4, 16, 0.5, 5);
        let cf = fit_calibrated(&names(4), &x, &y, &LinearConfig::default());
        assert_eq!(cf.oof_logits.len(), 200);
        assert!(
            cf.in_sample.iter().all(|v| v.len() == 5),
            "4 fold models + final"
        );
        let oof = cf.oof_proba().unwrap();
        assert!(
            oof.iter()
                .all(|p| (p.iter().sum::<f64>() - 1.0).abs() < 1e-9)
        );
        assert!(cf.model.temperature() > 0.05 && cf.model.temperature() < 20.0);
        // Two rows per class: two folds; one row in a class: no folds.
        let tiny = x.select(&[0, 1, 2, 3]);
        let cf = fit_calibrated(&names(2), &tiny, &[0, 1, 0, 1], &LinearConfig::default());
        assert_eq!(cf.oof_logits.len(), 4);
        let cf = fit_calibrated(&names(2), &tiny, &[0, 1, 0, 0], &LinearConfig::default());
        assert!(cf.oof_proba().is_none());
        assert_eq!(cf.model.temperature(), 1.0);
    }
}
