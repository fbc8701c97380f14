//! The dense layers' matrix product on AVX-512, with the weights packed
//! once at load time.
//!
//! `matrixmultiply` packs both operands on every call; for a transformer
//! the right operand is a fixed weight matrix, so that packing (a fifth of
//! the encoder's time on short batches) is wasted work. [`Packed`] holds
//! `W` in panels of 16 output columns, `k`-major, so the kernel streams
//! each panel as it is and broadcasts the activations from their rows.
//! The register tile is 6 rows × 64 columns (24 accumulators); each
//! output is one fused multiply-add chain over `k` in order, started from
//! the bias, so results match a plain f32 dot product to rounding.
//!
//! Without AVX-512 (checked at run time) [`Packed::available`] is false and
//! the caller keeps using `matrixmultiply`.

/// Output columns per panel (one zmm of f32).
const LANES: usize = 16;
/// Panels per register tile.
const PANELS: usize = 4;
/// Rows per register tile.
const ROWS: usize = 6;
/// Rows per cache block: their activations stay in L2 while every column
/// tile passes over them.
const ROW_BLOCK: usize = 96;

/// `W` (`[out, inp]`, `y = x·Wᵀ + b`) in panels of [`LANES`] output
/// columns: `panel[p][k][j] = W[p·16 + j][k]`.
pub(crate) struct Packed {
    data: Vec<f32>,
    bias: Vec<f32>,
    out: usize,
    inp: usize,
}

impl Packed {
    /// Pack `w` (`[out, inp]` row-major) and `b` (`[out]`), or `None` when
    /// the CPU has no AVX-512 or `out` is not a whole number of tiles.
    pub(crate) fn new(w: &[f32], b: &[f32], out: usize, inp: usize) -> Option<Packed> {
        if !available() || !out.is_multiple_of(LANES * PANELS) || w.len() != out * inp {
            return None;
        }
        let mut data = vec![0f32; out * inp];
        for p in 0..out / LANES {
            let panel = &mut data[p * LANES * inp..(p + 1) * LANES * inp];
            for j in 0..LANES {
                let row = &w[(p * LANES + j) * inp..(p * LANES + j + 1) * inp];
                for (k, &v) in row.iter().enumerate() {
                    panel[k * LANES + j] = v;
                }
            }
        }
        Some(Packed {
            data,
            bias: b.to_vec(),
            out,
            inp,
        })
    }

    /// `y[t, out] = x[t, inp] · Wᵀ + b`.
    pub(crate) fn apply(&self, x: &[f32], t: usize, y: &mut [f32]) {
        assert!(x.len() >= t * self.inp && y.len() >= t * self.out);
        // SAFETY: `new` only builds a `Packed` when AVX-512F is there, and
        // the asserts above bound every access the kernel makes.
        unsafe { self.apply_avx512(x, t, y) }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn apply_avx512(&self, x: &[f32], t: usize, y: &mut [f32]) {
        let mut r0 = 0;
        while r0 < t {
            let r1 = (r0 + ROW_BLOCK).min(t);
            for c in (0..self.out / LANES).step_by(PANELS) {
                let mut r = r0;
                while r + ROWS <= r1 {
                    // SAFETY: rows r..r+ROWS < t, panels c..c+PANELS ≤ out/16.
                    unsafe { self.tile::<ROWS>(x, r, c, y) };
                    r += ROWS;
                }
                // SAFETY: as above, for the last 1..ROWS rows.
                unsafe {
                    match r1 - r {
                        0 => {}
                        1 => self.tile::<1>(x, r, c, y),
                        2 => self.tile::<2>(x, r, c, y),
                        3 => self.tile::<3>(x, r, c, y),
                        4 => self.tile::<4>(x, r, c, y),
                        _ => self.tile::<5>(x, r, c, y),
                    }
                }
            }
            r0 = r1;
        }
    }

    /// Rows `r..r+R`, panels `c..c+PANELS`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile<const R: usize>(&self, x: &[f32], r: usize, c: usize, y: &mut [f32]) {
        use std::arch::x86_64::*;
        let inp = self.inp;
        let xp = x.as_ptr();
        let wp = self.data.as_ptr();
        let bp = self.bias.as_ptr();
        // SAFETY (whole body): the caller guarantees rows r..r+R < t and
        // panels c..c+PANELS within `out / LANES`; `x` has t·inp, `y`
        // t·out, `data` out·inp and `bias` out elements.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); PANELS]; R];
            for p in 0..PANELS {
                let b = _mm512_loadu_ps(bp.add((c + p) * LANES));
                for row in acc.iter_mut() {
                    row[p] = b;
                }
            }
            let panel0 = wp.add(c * LANES * inp);
            let row0 = xp.add(r * inp);
            let mut w = [_mm512_setzero_ps(); PANELS];
            for k in 0..inp {
                for (p, wv) in w.iter_mut().enumerate() {
                    *wv = _mm512_loadu_ps(panel0.add(p * LANES * inp + k * LANES));
                }
                for (i, row) in acc.iter_mut().enumerate() {
                    let a = _mm512_set1_ps(*row0.add(i * inp + k));
                    for (av, wv) in row.iter_mut().zip(&w) {
                        *av = _mm512_fmadd_ps(a, *wv, *av);
                    }
                }
            }
            let yp = y.as_mut_ptr();
            for (i, row) in acc.iter().enumerate() {
                for (p, v) in row.iter().enumerate() {
                    _mm512_storeu_ps(yp.add((r + i) * self.out + (c + p) * LANES), *v);
                }
            }
        }
    }
}

/// Whether this CPU runs the packed kernel.
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_product_matches_a_plain_dot_product() {
        if !available() {
            eprintln!("no AVX-512: the packed kernel is not used here");
            return;
        }
        let (out, inp) = (128, 37);
        let mut s = 1u64;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        let w: Vec<f32> = (0..out * inp).map(|_| next()).collect();
        let b: Vec<f32> = (0..out).map(|_| next()).collect();
        assert!(
            Packed::new(&w, &b, 48, inp * out / 48).is_none(),
            "48 is no whole tile"
        );
        let packed = Packed::new(&w, &b, out, inp).unwrap();
        // Row counts that exercise full tiles, every remainder and more
        // than one row block.
        for t in [1, 5, 6, 7, 13, 200] {
            let x: Vec<f32> = (0..t * inp).map(|_| next()).collect();
            let mut y = vec![f32::NAN; t * out];
            packed.apply(&x, t, &mut y);
            for r in 0..t {
                for o in 0..out {
                    let want: f64 = f64::from(b[o])
                        + (0..inp)
                            .map(|k| f64::from(x[r * inp + k]) * f64::from(w[o * inp + k]))
                            .sum::<f64>();
                    let got = f64::from(y[r * out + o]);
                    assert!(
                        (got - want).abs() < 1e-5,
                        "t {t} row {r} col {o}: {got} vs {want}"
                    );
                }
            }
        }
    }
}
