//! A fixed 2-D projection of sentence vectors for the TUI's map: PCA.
//!
//! [`Projection::fit`] finds the two main axes of a set of vectors (the
//! project's seeds and accepted examples) by power iteration with
//! deflation, never forming the covariance matrix: `O(n·d)` per iteration,
//! a few milliseconds for thousands of 384-d vectors. It is deterministic
//! (fixed start vector, each axis's sign chosen so its largest component is
//! positive), so refitting on the same vectors gives the same picture.
//!
//! Once fitted the projection is kept: a new sample is projected with two
//! dot products ([`Projection::project`]) and every point already drawn
//! stays where it is. The map refits only when asked or when the set it
//! was fitted on has grown a lot ([`refit_due`]), and says so.

/// At most this many vectors are used for a fit (an even stride over
/// the set beyond that: the axes of 5,000 vectors are those of the rest).
pub const MAX_FIT: usize = 5_000;

/// Power-iteration steps per axis (stops earlier once the axis settles).
const ITERATIONS: usize = 200;

/// The mean and two orthonormal axes of a fitted PCA.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    mean: Vec<f32>,
    axes: [Vec<f32>; 2],
    /// Vectors it was fitted on.
    pub fitted_on: usize,
    /// Share of the variance along each axis (0–1).
    pub explained: [f32; 2],
}

impl Projection {
    /// The PCA of `rows` (vectors of one size); `None` when there is none
    /// or their sizes differ. Over [`MAX_FIT`] rows, fitted on every
    /// [`fit_step`]-th one.
    pub fn fit(rows: &[&[f32]]) -> Option<Projection> {
        let d = rows.first()?.len();
        if rows.iter().any(|r| r.len() != d) {
            return None;
        }
        let sample: Vec<&[f32]> = rows.iter().step_by(fit_step(rows.len())).copied().collect();
        Projection::fit_sample(&sample, rows.len())
    }

    /// [`fit`](Self::fit) of a set of `all` vectors given only the rows it
    /// would use (every [`fit_step`]`(all)`-th one), so a
    /// caller reads a few thousand vectors, not the whole set, and gets
    /// the same projection.
    pub fn fit_sample(rows: &[&[f32]], all: usize) -> Option<Projection> {
        let d = rows.first()?.len();
        if d == 0 || rows.iter().any(|r| r.len() != d) {
            return None;
        }
        let n = rows.len();
        let mut mean = vec![0f64; d];
        for r in rows {
            for (m, x) in mean.iter_mut().zip(*r) {
                *m += f64::from(*x);
            }
        }
        for m in &mut mean {
            *m /= n as f64;
        }
        // Centred copy in f64, one row after another.
        let mut centred: Vec<f64> = Vec::with_capacity(n * d);
        for r in rows {
            centred.extend(r.iter().zip(&mean).map(|(x, m)| f64::from(*x) - m));
        }
        let total: f64 = centred
            .chunks_exact(d)
            .map(|r| r.iter().map(|x| x * x).sum::<f64>())
            .sum();
        let first = top_axis(&centred, d, None);
        let second = top_axis(&centred, d, Some(&first));
        let var = |a: &[f64]| -> f64 {
            centred
                .chunks_exact(d)
                .map(|r| {
                    let p: f64 = r.iter().zip(a).map(|(x, y)| x * y).sum();
                    p * p
                })
                .sum()
        };
        let explained = if total > 0.0 {
            [(var(&first) / total) as f32, (var(&second) / total) as f32]
        } else {
            [0.0, 0.0]
        };
        let to32 = |v: &[f64]| v.iter().map(|x| *x as f32).collect::<Vec<f32>>();
        Some(Projection {
            mean: to32(&mean),
            axes: [to32(&first), to32(&second)],
            fitted_on: all,
            explained,
        })
    }

    /// The vector size it projects.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// The 2-D point of `v` (`[0, 0]` for a vector of another size).
    pub fn project(&self, v: &[f32]) -> [f32; 2] {
        if v.len() != self.mean.len() {
            return [0.0, 0.0];
        }
        let mut out = [0f32; 2];
        for (o, axis) in out.iter_mut().zip(&self.axes) {
            *o = v
                .iter()
                .zip(&self.mean)
                .zip(axis)
                .map(|((x, m), a)| (x - m) * a)
                .sum();
        }
        out
    }
}

/// The rows of a set of `n` vectors a fit uses: every `fit_step(n)`-th,
/// at most [`MAX_FIT`] of them.
pub fn fit_step(n: usize) -> usize {
    n.div_ceil(MAX_FIT).max(1)
}

/// The unit vector along which the rows of `rows` (`d` floats each,
/// centred) vary most, orthogonal to `not`.
fn top_axis(rows: &[f64], d: usize, not: Option<&[f64]>) -> Vec<f64> {
    // A fixed, non-degenerate start: deterministic pseudo-random values.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut v: Vec<f64> = (0..d)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 1000) as f64 / 1000.0 - 0.5
        })
        .collect();
    let orth = |v: &mut Vec<f64>| {
        if let Some(u) = not {
            let p: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
            for (x, y) in v.iter_mut().zip(u) {
                *x -= p * y;
            }
        }
    };
    let normalise = |v: &mut Vec<f64>| -> bool {
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if n <= 1e-12 {
            return false;
        }
        v.iter_mut().for_each(|x| *x /= n);
        true
    };
    orth(&mut v);
    normalise(&mut v);
    for _ in 0..ITERATIONS {
        // w = Xᵀ (X v)
        let mut w = vec![0f64; d];
        for r in rows.chunks_exact(d) {
            let p: f64 = r.iter().zip(&v).map(|(a, b)| a * b).sum();
            if p != 0.0 {
                for (wi, ri) in w.iter_mut().zip(r) {
                    *wi += p * ri;
                }
            }
        }
        orth(&mut w);
        if !normalise(&mut w) {
            // No variance left: keep the (orthogonal, unit) start vector.
            break;
        }
        let change: f64 = w.iter().zip(&v).map(|(a, b)| (a - b).abs()).sum();
        v = w;
        if change < 1e-9 {
            break;
        }
    }
    // Sign: the largest component positive, so refits agree.
    if let Some(big) = v.iter().copied().max_by(|a, b| a.abs().total_cmp(&b.abs()))
        && big < 0.0
    {
        v.iter_mut().for_each(|x| *x = -*x);
    }
    v
}

/// Whether a projection fitted on `fitted_on` vectors should be refitted
/// now that the fit set holds `now`: once it has doubled (and grown by at
/// least 10), so the picture does not jump as single samples arrive.
pub fn refit_due(fitted_on: usize, now: usize) -> bool {
    now >= fitted_on.saturating_mul(2) && now >= fitted_on + 10
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points spread along x (wide) and y (narrow) in 3-D, shifted.
    fn cloud() -> Vec<Vec<f32>> {
        (0..40)
            .map(|i| {
                let t = i as f32 / 40.0 - 0.5;
                let s = if i % 2 == 0 { 0.1 } else { -0.1 };
                vec![5.0 + 4.0 * t, 1.0 + s, 2.0 + 0.01 * t]
            })
            .collect()
    }

    #[test]
    fn finds_the_main_axes_in_order() {
        let rows = cloud();
        let refs: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
        let p = Projection::fit(&refs).unwrap();
        assert_eq!(p.dim(), 3);
        assert_eq!(p.fitted_on, 40);
        assert!(p.axes[0][0] > 0.99, "{:?}", p.axes);
        assert!(p.axes[1][1].abs() > 0.99, "{:?}", p.axes);
        assert!(p.explained[0] > p.explained[1] && p.explained[0] > 0.9);
        // The mean maps to the origin; the spread is along x.
        let mean: Vec<f32> = (0..3)
            .map(|j| rows.iter().map(|r| r[j]).sum::<f32>() / 40.0)
            .collect();
        let m = p.project(&mean);
        assert!(m[0].abs() < 1e-4 && m[1].abs() < 1e-4, "{m:?}");
        let far = p.project(&[mean[0] + 2.0, mean[1], mean[2]]);
        assert!((far[0] - 2.0).abs() < 1e-3, "{far:?}");
        // Deterministic: the same fit twice.
        assert_eq!(Projection::fit(&refs).unwrap(), p);
    }

    #[test]
    fn a_new_vector_leaves_the_fit_alone_until_the_set_doubles() {
        let rows = cloud();
        let refs: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
        let p = Projection::fit(&refs).unwrap();
        let before: Vec<[f32; 2]> = refs.iter().map(|r| p.project(r)).collect();
        // Projecting a new vector changes nothing already projected.
        let _ = p.project(&[9.0, 9.0, 9.0]);
        let after: Vec<[f32; 2]> = refs.iter().map(|r| p.project(r)).collect();
        assert_eq!(before, after);
        assert!(!refit_due(40, 41));
        assert!(!refit_due(40, 79));
        assert!(refit_due(40, 80));
        assert!(!refit_due(2, 4), "grows by at least 10");
        assert!(refit_due(0, 10));
    }

    /// Over `MAX_FIT` vectors, a fit on the rows it uses (every
    /// `fit_step`-th) is the fit on them all; below it, they are all used.
    #[test]
    fn a_fit_on_its_sample_is_the_fit_on_the_whole_set() {
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let rows: Vec<Vec<f32>> = (0..MAX_FIT * 2 + 345)
            .map(|i| {
                let t = next();
                vec![
                    3.0 * t,
                    t + 0.3 * next(),
                    0.2 * next(),
                    (i % 3) as f32 * 0.1,
                ]
            })
            .collect();
        let refs: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
        for n in [10, MAX_FIT, MAX_FIT + 1, refs.len()] {
            let all = Projection::fit(&refs[..n]).unwrap();
            let step = fit_step(n);
            assert_eq!(step == 1, n <= MAX_FIT);
            let sample: Vec<&[f32]> = refs[..n].iter().step_by(step).copied().collect();
            assert!(sample.len() <= MAX_FIT);
            assert_eq!(Projection::fit_sample(&sample, n).unwrap(), all, "n = {n}");
            assert_eq!(all.fitted_on, n);
        }
    }

    #[test]
    fn degenerate_inputs() {
        assert!(Projection::fit(&[]).is_none());
        assert!(Projection::fit(&[&[1.0, 2.0][..], &[1.0][..]]).is_none());
        let one = Projection::fit(&[&[1.0, 2.0][..]]).unwrap();
        assert_eq!(one.project(&[1.0, 2.0]), [0.0, 0.0]);
        assert_eq!(one.explained, [0.0, 0.0]);
        assert_eq!(one.project(&[1.0]), [0.0, 0.0]);
    }
}
