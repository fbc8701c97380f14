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

/// `W` in bf16 for the AVX512_BF16 kernel: panels of [`LANES`] output
/// columns, `k` in pairs, each pair one 32-bit word (`k` even in the low
/// half): `panel[p][kk][j] = (W[p·16 + j][2kk], W[p·16 + j][2kk + 1])`.
/// `vdpbf16ps` multiplies such pairs and adds both products to an f32
/// lane, so one instruction does 32 multiply-adds where `vfmadd231ps`
/// does 16. Activations are rounded to bf16 once per product
/// ([`PackedBf16::apply`]); sums stay in f32.
pub(crate) struct PackedBf16 {
    data: Vec<u32>,
    bias: Vec<f32>,
    out: usize,
    inp: usize,
    /// `k` pairs: `inp` rounded up to even, halved.
    pairs: usize,
}

/// Activations rounded to bf16, `[t, pairs]` words, reused between calls.
#[derive(Default)]
pub(crate) struct Bf16Rows(Vec<u32>);

impl PackedBf16 {
    /// Pack `w` (`[out, inp]` row-major) and `b` (`[out]`) rounded to bf16,
    /// or `None` when the CPU has no AVX512_BF16 or `out` is not a whole
    /// number of tiles.
    pub(crate) fn new(w: &[f32], b: &[f32], out: usize, inp: usize) -> Option<PackedBf16> {
        if !bf16_available() || !out.is_multiple_of(LANES * PANELS) || w.len() != out * inp {
            return None;
        }
        let pairs = inp.div_ceil(2);
        let mut data = vec![0u32; out * pairs];
        for p in 0..out / LANES {
            let panel = &mut data[p * LANES * pairs..(p + 1) * LANES * pairs];
            for j in 0..LANES {
                let row = &w[(p * LANES + j) * inp..(p * LANES + j + 1) * inp];
                for (kk, pair) in row.chunks(2).enumerate() {
                    let hi = pair.get(1).map_or(0, |&v| bf16_bits(v));
                    panel[kk * LANES + j] = u32::from(bf16_bits(pair[0])) | u32::from(hi) << 16;
                }
            }
        }
        Some(PackedBf16 {
            data,
            bias: b.to_vec(),
            out,
            inp,
            pairs,
        })
    }

    /// `y[t, out] = bf16(x[t, inp]) · bf16(W)ᵀ + b`, summed in f32; `rows`
    /// is scratch space for the rounded activations.
    pub(crate) fn apply(&self, x: &[f32], t: usize, y: &mut [f32], rows: &mut Bf16Rows) {
        assert!(x.len() >= t * self.inp && y.len() >= t * self.out);
        let xb = &mut rows.0;
        xb.clear();
        xb.resize(t * self.pairs, 0);
        // SAFETY: `new` only builds a `PackedBf16` when AVX512_BF16 is
        // there; `x` holds t·inp and `xb` t·pairs elements, and the asserts
        // above bound every access the kernel makes.
        unsafe {
            to_bf16_rows(x, t, self.inp, self.pairs, xb);
            self.apply_bf16(xb, t, y);
        }
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn apply_bf16(&self, xb: &[u32], t: usize, y: &mut [f32]) {
        let mut r0 = 0;
        while r0 < t {
            let r1 = (r0 + ROW_BLOCK).min(t);
            for c in (0..self.out / LANES).step_by(PANELS) {
                let mut r = r0;
                while r + ROWS <= r1 {
                    // SAFETY: rows r..r+ROWS < t, panels c..c+PANELS ≤ out/16.
                    unsafe { self.tile::<ROWS>(xb, r, c, y) };
                    r += ROWS;
                }
                // SAFETY: as above, for the last 1..ROWS rows.
                unsafe {
                    match r1 - r {
                        0 => {}
                        1 => self.tile::<1>(xb, r, c, y),
                        2 => self.tile::<2>(xb, r, c, y),
                        3 => self.tile::<3>(xb, r, c, y),
                        4 => self.tile::<4>(xb, r, c, y),
                        _ => self.tile::<5>(xb, r, c, y),
                    }
                }
            }
            r0 = r1;
        }
    }

    /// Rows `r..r+R`, panels `c..c+PANELS`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[inline]
    unsafe fn tile<const R: usize>(&self, xb: &[u32], r: usize, c: usize, y: &mut [f32]) {
        use std::arch::x86_64::*;
        let pairs = self.pairs;
        let xp = xb.as_ptr();
        let wp = self.data.as_ptr();
        let bp = self.bias.as_ptr();
        // SAFETY (whole body): the caller guarantees rows r..r+R < t and
        // panels c..c+PANELS within `out / LANES`; `xb` has t·pairs, `y`
        // t·out, `data` out·pairs and `bias` out elements.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); PANELS]; R];
            for p in 0..PANELS {
                let b = _mm512_loadu_ps(bp.add((c + p) * LANES));
                for row in acc.iter_mut() {
                    row[p] = b;
                }
            }
            let panel0 = wp.add(c * LANES * pairs);
            let row0 = xp.add(r * pairs);
            let mut w = [_mm512_setzero_si512(); PANELS];
            for kk in 0..pairs {
                for (p, wv) in w.iter_mut().enumerate() {
                    *wv = _mm512_loadu_si512(panel0.add(p * LANES * pairs + kk * LANES).cast());
                }
                for (i, row) in acc.iter_mut().enumerate() {
                    let a: __m512bh =
                        std::mem::transmute(_mm512_set1_epi32(*row0.add(i * pairs + kk) as i32));
                    for (av, wv) in row.iter_mut().zip(&w) {
                        *av =
                            _mm512_dpbf16_ps(*av, a, std::mem::transmute::<__m512i, __m512bh>(*wv));
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

/// `x` (`[t, inp]`) rounded to bf16 (nearest, ties to even) into `xb`
/// (`[t, pairs]` words, an odd `inp` padded with a zero).
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn to_bf16_rows(x: &[f32], t: usize, inp: usize, pairs: usize, xb: &mut [u32]) {
    use std::arch::x86_64::*;
    for r in 0..t {
        let src = &x[r * inp..(r + 1) * inp];
        let dst = &mut xb[r * pairs..(r + 1) * pairs];
        let mut k = 0;
        while k + 32 <= inp {
            // SAFETY: k+32 ≤ inp elements of `src`, 16 words of `dst`.
            unsafe {
                let lo = _mm512_loadu_ps(src.as_ptr().add(k));
                let hi = _mm512_loadu_ps(src.as_ptr().add(k + 16));
                let v: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
                _mm512_storeu_si512(dst.as_mut_ptr().add(k / 2).cast(), v);
            }
            k += 32;
        }
        for (kk, d) in dst.iter_mut().enumerate().skip(k / 2) {
            let lo = bf16_bits(src[2 * kk]);
            let hi = src.get(2 * kk + 1).map_or(0, |&v| bf16_bits(v));
            *d = u32::from(lo) | u32::from(hi) << 16;
        }
    }
}

/// `v` rounded to bf16 (nearest, ties to even), as its 16 bits.
pub(crate) fn bf16_bits(v: f32) -> u16 {
    if v.is_nan() {
        return 0x7fc0;
    }
    let b = v.to_bits();
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// The f32 a bf16 value stands for.
#[cfg(test)]
pub(crate) fn bf16_value(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// Whether this CPU runs the bf16 kernel (AVX512_BF16).
pub(crate) fn bf16_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        available() && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
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
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(bf16_value(bf16_bits(1.0)), 1.0);
        assert_eq!(bf16_value(bf16_bits(-2.5)), -2.5);
        // 1 + 2⁻⁸ is halfway between 1 and 1 + 2⁻⁷: ties go to the even 1.
        assert_eq!(bf16_value(bf16_bits(1.0 + 1.0 / 256.0)), 1.0);
        assert_eq!(bf16_value(bf16_bits(1.0 + 3.0 / 256.0)), 1.0 + 4.0 / 256.0);
        let v = 0.123_456_78_f32;
        assert!((bf16_value(bf16_bits(v)) - v).abs() <= v / 256.0);
        assert!(bf16_value(bf16_bits(f32::NAN)).is_nan());
    }

    #[test]
    fn bf16_product_matches_a_dot_product_of_rounded_inputs() {
        if !bf16_available() {
            eprintln!("no AVX512_BF16: the bf16 kernel is not used here");
            return;
        }
        let round = |v: f32| f64::from(bf16_value(bf16_bits(v)));
        let mut s = 7u64;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        // An odd `inp` (a padded last pair) and one with a tail after the
        // 32-wide conversion.
        for inp in [37, 70] {
            let out = 128;
            let w: Vec<f32> = (0..out * inp).map(|_| next()).collect();
            let b: Vec<f32> = (0..out).map(|_| next()).collect();
            assert!(PackedBf16::new(&w, &b, 48, inp * out / 48).is_none());
            let packed = PackedBf16::new(&w, &b, out, inp).unwrap();
            let mut rows = Bf16Rows::default();
            for t in [1, 5, 6, 7, 13, 200] {
                let x: Vec<f32> = (0..t * inp).map(|_| next()).collect();
                let mut y = vec![f32::NAN; t * out];
                packed.apply(&x, t, &mut y, &mut rows);
                for r in 0..t {
                    for o in 0..out {
                        let want: f64 = f64::from(b[o])
                            + (0..inp)
                                .map(|k| round(x[r * inp + k]) * round(w[o * inp + k]))
                                .sum::<f64>();
                        let got = f64::from(y[r * out + o]);
                        assert!(
                            (got - want).abs() < 1e-5,
                            "inp {inp} t {t} row {r} col {o}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

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
