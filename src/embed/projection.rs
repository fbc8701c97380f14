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
    /// or their sizes differ.
    pub fn fit(rows: &[&[f32]]) -> Option<Projection> {
        let d = rows.first()?.len();
        if d == 0 || rows.iter().any(|r| r.len() != d) {
            return None;
        }
        let all = rows.len();
        let step = all.div_ceil(MAX_FIT).max(1);
        let rows: Vec<&[f32]> = rows.iter().step_by(step).copied().collect();
        let n = rows.len();
        let mut mean = vec![0f64; d];
        for r in &rows {
            for (m, x) in mean.iter_mut().zip(*r) {
                *m += f64::from(*x);
            }
        }
        for m in &mut mean {
            *m /= n as f64;
        }
        // Centred copy in f64.
        let centred: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| {
                r.iter()
                    .zip(&mean)
                    .map(|(x, m)| f64::from(*x) - m)
                    .collect()
            })
            .collect();
        let total: f64 = centred
            .iter()
            .map(|r| r.iter().map(|x| x * x).sum::<f64>())
            .sum();
        let first = top_axis(&centred, d, None);
        let second = top_axis(&centred, d, Some(&first));
        let var = |a: &[f64]| -> f64 {
            centred
                .iter()
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

/// The unit vector along which `rows` vary most, orthogonal to `not`.
fn top_axis(rows: &[Vec<f64>], d: usize, not: Option<&[f64]>) -> Vec<f64> {
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
        for r in rows {
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
