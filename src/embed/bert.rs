//! A BERT encoder in plain f32 over `matrixmultiply`'s GEMM, enough for
//! sentence-transformers models such as all-MiniLM-L6-v2: absolute
//! position embeddings, post-norm layers with exact (erf) GELU, mean
//! pooling over the real tokens and L2 normalisation.
//!
//! The dense layers run on weights packed once at load for an AVX-512
//! kernel (`gemm.rs`), else on `matrixmultiply`.
//!
//! Sequences are *packed*, not padded: the tokens of a whole batch sit one
//! after the other in one `[tokens, hidden]` matrix, the dense layers run
//! on all of them at once, and attention runs per sequence over its own
//! tokens. No work is spent on padding, so batching texts of mixed length
//! costs nothing. Query, key and value are one fused matrix.

use std::collections::HashMap;
use std::path::Path;

/// The shape of a BERT model (`config.json`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
pub struct BertConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f32,
}

fn default_eps() -> f32 {
    1e-12
}

/// Arithmetic of the dense layers (where 95% of the work is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// f32 throughout: the reference model's numbers to rounding.
    F32,
    /// Weights and activations rounded to bf16 in the dense layers' products,
    /// sums in f32 (AVX512_BF16): about twice the speed of f32; vectors
    /// within cosine 0.999 of the f32 ones (`tests/embed_local.rs`).
    Bf16,
}

impl Precision {
    /// `[embeddings] precision` on this CPU: `auto` is bf16 where the CPU
    /// has AVX512_BF16, else f32; `bf16` without it runs f32.
    pub fn resolve(want: crate::domain::EmbeddingPrecision) -> Precision {
        use crate::domain::EmbeddingPrecision as P;
        match want {
            P::F32 => Precision::F32,
            P::Auto | P::Bf16 if super::gemm::bf16_available() => Precision::Bf16,
            P::Auto | P::Bf16 => Precision::F32,
        }
    }

    /// `"f32"` or `"bf16"`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

/// How a dense layer multiplies.
enum Kernel {
    /// `matrixmultiply` over the row-major weights.
    Plain,
    /// Our AVX-512 f32 kernel over packed weights.
    F32(super::gemm::Packed),
    /// Our AVX512_BF16 kernel over bf16 packed weights.
    Bf16(super::gemm::PackedBf16),
}

/// `[rows, cols]` row-major weights of a dense layer (`y = x·Wᵀ + b`).
struct Dense {
    /// Only the plain kernel reads these (empty otherwise).
    w: Vec<f32>,
    b: Vec<f32>,
    out: usize,
    inp: usize,
    kernel: Kernel,
}

impl Dense {
    fn new(w: Vec<f32>, b: Vec<f32>, out: usize, inp: usize, precision: Precision) -> Dense {
        use super::gemm::{Packed, PackedBf16};
        let kernel = match precision {
            Precision::Bf16 => PackedBf16::new(&w, &b, out, inp).map(Kernel::Bf16),
            Precision::F32 => None,
        }
        .or_else(|| Packed::new(&w, &b, out, inp).map(Kernel::F32))
        .unwrap_or(Kernel::Plain);
        Dense {
            w: if matches!(kernel, Kernel::Plain) {
                w
            } else {
                Vec::new()
            },
            b,
            out,
            inp,
            kernel,
        }
    }
}

struct Norm {
    w: Vec<f32>,
    b: Vec<f32>,
}

struct Layer {
    qkv: Dense,
    attn_out: Dense,
    attn_norm: Norm,
    inter: Dense,
    out: Dense,
    out_norm: Norm,
}

/// BERT weights in memory.
pub struct Bert {
    cfg: BertConfig,
    /// `[vocab, hidden]`.
    word: WordTable,
    /// Position embeddings plus the token-type-0 embedding, `[max_pos, hidden]`.
    pos_type: Vec<f32>,
    emb_norm: Norm,
    layers: Vec<Layer>,
    /// What the dense layers run in (bf16 only when every one of them does).
    precision: Precision,
}

impl Bert {
    /// Load `config.json` and `model.safetensors` from `dir` (F32 weights,
    /// names with or without a `bert.` prefix), to run in f32.
    pub fn load(dir: &Path) -> Result<Bert, String> {
        Bert::load_with(dir, Precision::F32)
    }

    /// [`load`](Self::load) to run in `precision` (bf16 falls back to f32
    /// without AVX512_BF16; [`precision`](Self::precision) says which).
    pub fn load_with(dir: &Path, precision: Precision) -> Result<Bert, String> {
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path)
            .map_err(|e| format!("{}: {e}", cfg_path.display()))?;
        let cfg: BertConfig =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", cfg_path.display()))?;
        let act: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if let Some(act) = act.get("hidden_act").and_then(|v| v.as_str())
            && act != "gelu"
        {
            return Err(format!(
                "{}: hidden_act {act} is not supported (gelu only)",
                cfg_path.display()
            ));
        }
        if cfg.num_attention_heads == 0 || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads)
        {
            return Err(format!(
                "{}: heads do not divide hidden_size",
                cfg_path.display()
            ));
        }
        let st = dir.join("model.safetensors");
        // One tensor at a time from the file: the file's bytes are never
        // all in memory, and each dense layer's f32 weights only until
        // they are packed.
        let file = std::fs::File::open(&st).map_err(|e| format!("{}: {e}", st.display()))?;
        let tensors = SafeTensors::new(&file).map_err(|e| format!("{}: {e}", st.display()))?;
        Bert::from_tensors(cfg, &tensors, precision).map_err(|e| format!("{}: {e}", st.display()))
    }

    fn from_tensors(
        cfg: BertConfig,
        t: &SafeTensors<'_>,
        precision: Precision,
    ) -> Result<Bert, String> {
        let prefix = if t.shape("bert.embeddings.word_embeddings.weight").is_some() {
            "bert."
        } else {
            ""
        };
        let h = cfg.hidden_size;
        let checked = |name: &str, shape: &[usize]| -> Result<String, String> {
            let full = format!("{prefix}{name}");
            match t.shape(&full) {
                None => Err(format!("missing tensor {full}")),
                Some(got) if got != shape => Err(format!(
                    "tensor {full} has shape {got:?}, expected {shape:?}"
                )),
                Some(_) => Ok(full),
            }
        };
        let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>, String> {
            let full = checked(name, shape)?;
            t.rows(&full, 0..shape[0])
        };
        let word = {
            let full = checked("embeddings.word_embeddings.weight", &[cfg.vocab_size, h])?;
            // In f16, read and narrowed a few rows at a time.
            let mut half = Vec::with_capacity(cfg.vocab_size * h);
            for start in (0..cfg.vocab_size).step_by(1024) {
                let rows = t.rows(&full, start..(start + 1024).min(cfg.vocab_size))?;
                half.extend(rows.iter().map(|&v| f16_bits(v)));
            }
            WordTable::F16(half)
        };
        let mut pos_type = get(
            "embeddings.position_embeddings.weight",
            &[cfg.max_position_embeddings, h],
        )?;
        let typ = get("embeddings.token_type_embeddings.weight", &[2, h])
            .or_else(|_| get("embeddings.token_type_embeddings.weight", &[1, h]))?;
        for row in pos_type.chunks_mut(h) {
            for (p, t) in row.iter_mut().zip(&typ[..h]) {
                *p += t;
            }
        }
        let norm = |name: &str| -> Result<Norm, String> {
            Ok(Norm {
                w: get(&format!("{name}.weight"), &[h])?,
                b: get(&format!("{name}.bias"), &[h])?,
            })
        };
        let emb_norm = norm("embeddings.LayerNorm")?;
        let dense = |name: &str, out: usize, inp: usize| -> Result<Dense, String> {
            Ok(Dense::new(
                get(&format!("{name}.weight"), &[out, inp])?,
                get(&format!("{name}.bias"), &[out])?,
                out,
                inp,
                precision,
            ))
        };
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("encoder.layer.{i}.");
            let mut w = Vec::with_capacity(3 * h * h);
            let mut b = Vec::with_capacity(3 * h);
            for part in ["query", "key", "value"] {
                let name = format!("{p}attention.self.{part}");
                w.extend(get(&format!("{name}.weight"), &[h, h])?);
                b.extend(get(&format!("{name}.bias"), &[h])?);
            }
            let qkv = Dense::new(w, b, 3 * h, h, precision);
            let attn_out = dense(&format!("{p}attention.output.dense"), h, h)?;
            let inter = dense(&format!("{p}intermediate.dense"), cfg.intermediate_size, h)?;
            let out = dense(&format!("{p}output.dense"), h, cfg.intermediate_size)?;
            let norm = |name: &str| -> Result<Norm, String> {
                Ok(Norm {
                    w: get(&format!("{p}{name}.weight"), &[h])?,
                    b: get(&format!("{p}{name}.bias"), &[h])?,
                })
            };
            layers.push(Layer {
                qkv,
                attn_out,
                attn_norm: norm("attention.output.LayerNorm")?,
                inter,
                out,
                out_norm: norm("output.LayerNorm")?,
            });
        }
        let all_bf16 = layers.iter().all(|l| {
            [&l.qkv, &l.attn_out, &l.inter, &l.out]
                .iter()
                .all(|d| matches!(d.kernel, Kernel::Bf16(_)))
        });
        Ok(Bert {
            cfg,
            word,
            pos_type,
            emb_norm,
            layers,
            precision: if precision == Precision::Bf16 && all_bf16 {
                Precision::Bf16
            } else {
                Precision::F32
            },
        })
    }

    /// What the dense layers run in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }

    pub fn hidden_size(&self) -> usize {
        self.cfg.hidden_size
    }

    /// Longest input (in tokens, with `[CLS]` and `[SEP]`) the model takes.
    pub fn max_len(&self) -> usize {
        self.cfg.max_position_embeddings
    }

    /// Mean-pooled, L2-normalised sentence vectors of token-id sequences
    /// (each `[CLS] … [SEP]`, cut to [`max_len`](Self::max_len)), on this
    /// thread. Ids outside the vocabulary count as id 0 (`[PAD]`).
    pub fn embed_ids(&self, batch: &[impl AsRef<[u32]>]) -> Vec<Vec<f32>> {
        self.embed_ids_with(batch, &mut Scratch::default())
    }

    /// [`embed_ids`](Self::embed_ids) with working memory kept by the
    /// caller between batches (it grows to the largest batch's tokens).
    pub fn embed_ids_with(&self, batch: &[impl AsRef<[u32]>], s: &mut Scratch) -> Vec<Vec<f32>> {
        self.encode_with(batch, s, |rows, out| {
            mean_pool(rows, out);
            l2_normalize(out);
        })
    }

    /// Run the encoder and hand each sequence's final hidden states
    /// (`[len, hidden]`) to `pool`, which writes one `hidden`-vector.
    pub fn encode(
        &self,
        batch: &[impl AsRef<[u32]>],
        pool: impl Fn(&[f32], &mut [f32]),
    ) -> Vec<Vec<f32>> {
        self.encode_with(batch, &mut Scratch::default(), pool)
    }

    /// [`encode`](Self::encode) in the caller's working memory: about
    /// 14 KB a token of the batch (all-MiniLM-L6-v2), so callers bound a
    /// batch's tokens ([`Bert::embed_ids`] of 64 texts of 256 tokens
    /// would take 226 MB).
    pub fn encode_with(
        &self,
        batch: &[impl AsRef<[u32]>],
        s: &mut Scratch,
        pool: impl Fn(&[f32], &mut [f32]),
    ) -> Vec<Vec<f32>> {
        let h = self.cfg.hidden_size;
        let max_len = self.max_len();
        let lens: Vec<usize> = batch
            .iter()
            .map(|s| s.as_ref().len().min(max_len))
            .collect();
        let total: usize = lens.iter().sum();
        if total == 0 {
            return batch.iter().map(|_| vec![0.0; h]).collect();
        }
        s.fit(total, h, self.cfg.intermediate_size);
        let mut x = std::mem::take(&mut s.x);
        let mut row = 0;
        for (seq, &len) in batch.iter().zip(&lens) {
            for (pos, &id) in seq.as_ref()[..len].iter().enumerate() {
                let id = if (id as usize) < self.cfg.vocab_size {
                    id as usize
                } else {
                    0
                };
                let dst = &mut x[row * h..(row + 1) * h];
                self.word
                    .add_row(id, h, &self.pos_type[pos * h..(pos + 1) * h], dst);
                row += 1;
            }
        }
        let xs = &mut x[..total * h];
        layer_norm(xs, h, &self.emb_norm, self.cfg.layer_norm_eps);
        for layer in &self.layers {
            self.layer(layer, xs, &lens, s);
        }
        let mut out = Vec::with_capacity(batch.len());
        let mut start = 0;
        for &len in &lens {
            let mut v = vec![0f32; h];
            if len > 0 {
                pool(&xs[start * h..(start + len) * h], &mut v);
            }
            out.push(v);
            start += len;
        }
        s.x = x;
        out
    }

    fn layer(&self, layer: &Layer, x: &mut [f32], lens: &[usize], s: &mut Scratch) {
        let h = self.cfg.hidden_size;
        let heads = self.cfg.num_attention_heads;
        let d = h / heads;
        let t = x.len() / h;
        let eps = self.cfg.layer_norm_eps;
        dense(&layer.qkv, x, t, &mut s.qkv, &mut s.rows);
        let scale = 1.0 / (d as f32).sqrt();
        let mut start = 0;
        for &len in lens {
            if len > 0 {
                for head in 0..heads {
                    attend(
                        &s.qkv,
                        start,
                        len,
                        h,
                        head * d,
                        d,
                        scale,
                        &mut s.att,
                        &mut s.ctx,
                    );
                }
            }
            start += len;
        }
        dense(&layer.attn_out, &s.ctx, t, &mut s.tmp, &mut s.rows);
        add_norm(x, &s.tmp, h, &layer.attn_norm, eps);
        dense(&layer.inter, x, t, &mut s.inter, &mut s.rows);
        gelu_all(&mut s.inter[..t * self.cfg.intermediate_size]);
        dense(&layer.out, &s.inter, t, &mut s.tmp, &mut s.rows);
        add_norm(x, &s.tmp, h, &layer.out_norm, eps);
    }
}

/// The word-embedding table, `[vocab, hidden]`: in f16 (half of f32's
/// 47 MB for MiniLM; rounding moves the vectors by cosine < 1e-6,
/// `tests::f16_word_table_keeps_the_vectors`), widened as tokens look
/// their rows up.
enum WordTable {
    F16(Vec<u16>),
    /// The reference (tests).
    #[cfg_attr(not(test), allow(dead_code))]
    F32(Vec<f32>),
}

impl WordTable {
    /// `dst = word[id] + add`.
    #[inline]
    fn add_row(&self, id: usize, h: usize, add: &[f32], dst: &mut [f32]) {
        match self {
            WordTable::F16(w) => {
                for ((d, &a), b) in dst.iter_mut().zip(&w[id * h..(id + 1) * h]).zip(add) {
                    *d = f32_of_f16(a) + b;
                }
            }
            WordTable::F32(w) => {
                for ((d, a), b) in dst.iter_mut().zip(&w[id * h..(id + 1) * h]).zip(add) {
                    *d = a + b;
                }
            }
        }
    }
}

/// `v` rounded to the nearest f16 (ties to even; beyond ±65504 it stays
/// at ±65504, NaN becomes infinity: weights are finite and small).
fn f16_bits(v: f32) -> u16 {
    let x = v.to_bits();
    let sign = ((x >> 16) & 0x8000) as u16;
    let a = x & 0x7fff_ffff;
    if a >= 0x477f_f000 {
        // ≥ 65520 (rounds past the largest f16), infinity or NaN.
        return sign | if a > 0x7f80_0000 { 0x7c00 } else { 0x7bff };
    }
    if a < 0x3880_0000 {
        // Below f16's smallest normal (2⁻¹⁴): a multiple of 2⁻²⁴.
        let m = (f32::from_bits(a) * 16_777_216.0).round_ties_even() as u16;
        return sign | m;
    }
    // Rebias the exponent (127 → 15), round 23 mantissa bits to 10.
    let r = a - ((127 - 15) << 23);
    let r = r + 0x0fff + ((r >> 13) & 1);
    sign | (r >> 13) as u16
}

/// The f32 of f16 bits (finite ones; subnormals included): shift the
/// bits into place and scale by 2¹¹², without branches, so a row's
/// widening vectorises.
#[inline(always)]
fn f32_of_f16(h: u16) -> f32 {
    let mag = f32::from_bits(u32::from(h & 0x7fff) << 13) * f32::from_bits(0x7780_0000);
    f32::from_bits(mag.to_bits() | u32::from(h & 0x8000) << 16)
}

/// Working memory of a forward pass, sized by its tokens (`Default` is
/// empty; it grows to the largest batch it serves and is reused).
#[derive(Default)]
pub struct Scratch {
    /// The hidden states, `[tokens, hidden]`.
    x: Vec<f32>,
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    tmp: Vec<f32>,
    inter: Vec<f32>,
    att: AttentionScratch,
    rows: super::gemm::Bf16Rows,
}

impl Scratch {
    /// Room for `tokens` tokens (zeroed where it grows; what a pass reads
    /// it writes first).
    fn fit(&mut self, tokens: usize, h: usize, inter: usize) {
        let grow = |v: &mut Vec<f32>, n: usize| {
            if v.len() < n {
                v.resize(n, 0.0);
            }
        };
        grow(&mut self.x, tokens * h);
        grow(&mut self.qkv, tokens * 3 * h);
        grow(&mut self.ctx, tokens * h);
        grow(&mut self.tmp, tokens * h);
        grow(&mut self.inter, tokens * inter);
    }
}

/// Room for one head's attention over one sequence.
#[derive(Default)]
struct AttentionScratch {
    /// `[len, len]` scores (the plain path); `[len, cols]` (AVX-512).
    scores: Vec<f32>,
    /// The head's keys transposed and scaled, `[d, cols]` (AVX-512).
    kt: Vec<f32>,
}

/// One head's attention over the sequence of `len` tokens from row `start`:
/// `ctx[start.., off..off+d] = softmax(scale · Q Kᵀ) V`, with Q, K and V
/// the columns `off..off+d` of the query, key and value thirds of `qkv`
/// (`[tokens, 3h]`).
#[allow(clippy::too_many_arguments)]
fn attend(
    qkv: &[f32],
    start: usize,
    len: usize,
    h: usize,
    off: usize,
    d: usize,
    scale: f32,
    s: &mut AttentionScratch,
    ctx: &mut [f32],
) {
    assert!(qkv.len() >= (start + len) * 3 * h && ctx.len() >= (start + len) * h && off + d <= h);
    #[cfg(target_arch = "x86_64")]
    if super::gemm::available() && d.is_multiple_of(16) && d <= 64 {
        // SAFETY: AVX-512F is there (checked just above) and the assert
        // bounds the rows and columns read and written.
        return unsafe { attend_avx512(qkv, start, len, h, off, d, scale, s, ctx) };
    }
    attend_plain(qkv, start, len, h, off, d, scale, s, ctx)
}

/// [`attend`] through two `matrixmultiply` products.
#[allow(clippy::too_many_arguments)]
fn attend_plain(
    qkv: &[f32],
    start: usize,
    len: usize,
    h: usize,
    off: usize,
    d: usize,
    scale: f32,
    s: &mut AttentionScratch,
    ctx: &mut [f32],
) {
    let h3 = 3 * h;
    s.scores.resize(len * len, 0.0);
    let scores = &mut s.scores[..len * len];
    let q = &qkv[start * h3 + off..];
    let k = &qkv[start * h3 + h + off..];
    let v = &qkv[start * h3 + 2 * h + off..];
    // SAFETY: `attend`'s assert: rows start..start+len of `qkv` (stride
    // 3h) and of `ctx` (stride h), columns off..off+d of each third.
    unsafe {
        // scores[len, len] = scale · Q Kᵀ
        matrixmultiply::sgemm(
            len,
            d,
            len,
            scale,
            q.as_ptr(),
            h3 as isize,
            1,
            k.as_ptr(),
            1,
            h3 as isize,
            0.0,
            scores.as_mut_ptr(),
            len as isize,
            1,
        );
    }
    for r in scores.chunks_mut(len) {
        softmax(r);
    }
    let ctx = &mut ctx[start * h + off..];
    // SAFETY: as above.
    unsafe {
        // ctx[len, d] (rows of stride h) = P V
        matrixmultiply::sgemm(
            len,
            len,
            d,
            1.0,
            scores.as_ptr(),
            len as isize,
            1,
            v.as_ptr(),
            h3 as isize,
            1,
            0.0,
            ctx.as_mut_ptr(),
            h as isize,
            1,
        );
    }
}

/// [`attend`] on AVX-512 for `d` a multiple of 16 up to 64 (MiniLM: 32).
/// The head's keys are scaled and transposed to `[d, cols]` (columns
/// padded with zeros to a multiple of 32), so the scores come out 4
/// queries × 32 keys per register tile; the softmax runs on whole rows of 16 lanes, the
/// padding masked out; the weighted sum of values 4 queries at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn attend_avx512(
    qkv: &[f32],
    start: usize,
    len: usize,
    h: usize,
    off: usize,
    d: usize,
    scale: f32,
    s: &mut AttentionScratch,
    ctx: &mut [f32],
) {
    use std::arch::x86_64::*;
    let h3 = 3 * h;
    let cols = len.div_ceil(32) * 32;
    // Every element of `kt` and `scores` that is read is written first
    // (`kt`'s padded columns are zeroed), so neither is cleared.
    s.kt.resize(d * cols, 0.0);
    s.scores.resize(len * cols, 0.0);
    for c in 0..d {
        s.kt[c * cols + len..(c + 1) * cols].fill(0.0);
    }
    for i in 0..len {
        let row = &qkv[(start + i) * h3 + h + off..][..d];
        for (c, &kv) in row.iter().enumerate() {
            s.kt[c * cols + i] = kv * scale;
        }
    }
    let (kp, sp) = (s.kt.as_ptr(), s.scores.as_mut_ptr());
    let qp = qkv[start * h3 + off..].as_ptr();
    // Rows in tiles of 4; the last tile repeats the last row, which
    // computes and stores the same values twice.
    let tile_rows = |i: usize| [0, 1, 2, 3].map(|r| (i + r).min(len - 1));
    // SAFETY (whole body): `kt` has d·cols and `scores` len·cols
    // elements and every index below stays inside them; `attend`'s
    // assert bounds the rows of `qkv` and `ctx`.
    unsafe {
        // scores[len, cols] = Q · Kᵀ (scaled), 4 rows × 2 vectors a tile.
        for i in (0..len).step_by(4) {
            let rows = tile_rows(i);
            for j in (0..cols).step_by(32) {
                let mut acc = [[_mm512_setzero_ps(); 2]; 4];
                for c in 0..d {
                    let k0 = _mm512_loadu_ps(kp.add(c * cols + j));
                    let k1 = _mm512_loadu_ps(kp.add(c * cols + j + 16));
                    for (a, &r) in acc.iter_mut().zip(&rows) {
                        let qv = _mm512_set1_ps(*qp.add(r * h3 + c));
                        a[0] = _mm512_fmadd_ps(qv, k0, a[0]);
                        a[1] = _mm512_fmadd_ps(qv, k1, a[1]);
                    }
                }
                for (a, &r) in acc.iter().zip(&rows) {
                    _mm512_storeu_ps(sp.add(r * cols + j), a[0]);
                    _mm512_storeu_ps(sp.add(r * cols + j + 16), a[1]);
                }
            }
        }
        // Softmax of each row over its real columns (the padded lanes of
        // the last vector masked out).
        let blocks = len.div_ceil(16);
        let last = len - (blocks - 1) * 16;
        let tail: __mmask16 = if last == 16 {
            0xffff
        } else {
            (1u16 << last) - 1
        };
        for i in 0..len {
            let row = sp.add(i * cols);
            let mask = |b: usize| if b + 1 == blocks { tail } else { 0xffff };
            let mut mx = _mm512_set1_ps(f32::NEG_INFINITY);
            for b in 0..blocks {
                mx = _mm512_mask_max_ps(mx, mask(b), mx, _mm512_loadu_ps(row.add(b * 16)));
            }
            let mx = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
            let mut sum = _mm512_setzero_ps();
            for b in 0..blocks {
                let e = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(row.add(b * 16)), mx));
                let e = _mm512_maskz_mov_ps(mask(b), e);
                sum = _mm512_add_ps(sum, e);
                _mm512_storeu_ps(row.add(b * 16), e);
            }
            let inv = _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(sum));
            for b in 0..blocks {
                let v = _mm512_loadu_ps(row.add(b * 16));
                _mm512_storeu_ps(row.add(b * 16), _mm512_mul_ps(v, inv));
            }
        }
        // ctx = P · V, 4 rows × d/16 vectors a tile.
        let vp = qkv.as_ptr().add(start * h3 + 2 * h + off);
        let cp = ctx.as_mut_ptr().add(start * h + off);
        let dv = d / 16;
        for i in (0..len).step_by(4) {
            let rows = tile_rows(i);
            let mut acc = [[_mm512_setzero_ps(); 4]; 4];
            for j in 0..len {
                let v = vp.add(j * h3);
                for (a, &r) in acc.iter_mut().zip(&rows) {
                    let pv = _mm512_set1_ps(*sp.add(r * cols + j));
                    for (c, av) in a.iter_mut().enumerate().take(dv) {
                        *av = _mm512_fmadd_ps(pv, _mm512_loadu_ps(v.add(c * 16)), *av);
                    }
                }
            }
            for (a, &r) in acc.iter().zip(&rows) {
                for (c, av) in a.iter().enumerate().take(dv) {
                    _mm512_storeu_ps(cp.add(r * h + c * 16), *av);
                }
            }
        }
    }
}

/// `e^x` for `x ≤ 0` in 16 lanes (Cephes' `expf`: a degree-6 polynomial on
/// `x − n·ln 2`, then `· 2ⁿ`; within 2 ulp of `f32::exp`). Below −87.3
/// it returns 0.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn exp_avx512(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let x = _mm512_max_ps(x, _mm512_set1_ps(-87.3));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm512_set1_ps(1.987_569_1e-4);
    for c in [
        1.398_2e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let r2 = _mm512_mul_ps(r, r);
    let y = _mm512_add_ps(_mm512_fmadd_ps(p, r2, r), _mm512_set1_ps(1.0));
    let y = _mm512_scalef_ps(y, n);
    _mm512_maskz_mov_ps(
        _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, _mm512_set1_ps(-87.3)),
        y,
    )
}

/// `y[t, out] = x[t, inp] · Wᵀ + b`.
fn dense(layer: &Dense, x: &[f32], t: usize, y: &mut [f32], rows: &mut super::gemm::Bf16Rows) {
    debug_assert!(x.len() >= t * layer.inp && y.len() >= t * layer.out);
    match &layer.kernel {
        Kernel::F32(p) => return p.apply(x, t, y),
        Kernel::Bf16(p) => return p.apply(x, t, y, rows),
        Kernel::Plain => {}
    }
    for row in y[..t * layer.out].chunks_mut(layer.out) {
        row.copy_from_slice(&layer.b);
    }
    // SAFETY: the slices hold at least t·inp, out·inp and t·out elements,
    // which is what the dimensions and strides below address.
    unsafe {
        matrixmultiply::sgemm(
            t,
            layer.inp,
            layer.out,
            1.0,
            x.as_ptr(),
            layer.inp as isize,
            1,
            layer.w.as_ptr(),
            1,
            layer.inp as isize,
            1.0,
            y.as_mut_ptr(),
            layer.out as isize,
            1,
        );
    }
}

/// `x = layer_norm(x + y)` row by row (BERT's residual and norm).
fn add_norm(x: &mut [f32], y: &[f32], h: usize, n: &Norm, eps: f32) {
    assert!(y.len() >= x.len() && n.w.len() == h && n.b.len() == h);
    #[cfg(target_arch = "x86_64")]
    if super::gemm::available() && h.is_multiple_of(16) {
        // SAFETY: AVX-512F is there (checked just above); the assert and
        // `h % 16 == 0` bound every vector access.
        return unsafe { add_norm_avx512(x, y, h, n, eps) };
    }
    add_assign(x, y);
    layer_norm(x, h, n, eps)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn add_norm_avx512(x: &mut [f32], y: &[f32], h: usize, n: &Norm, eps: f32) {
    use std::arch::x86_64::*;
    let rows = x.len() / h;
    let (wp, bp) = (n.w.as_ptr(), n.b.as_ptr());
    let inv_h = 1.0 / h as f32;
    for r in 0..rows {
        // SAFETY: row r of `x` and `y` holds h elements, h % 16 == 0, and
        // `w` and `b` hold h each (`add_norm`'s assert).
        unsafe {
            let xp = x.as_mut_ptr().add(r * h);
            let yp = y.as_ptr().add(r * h);
            let mut sum = _mm512_setzero_ps();
            for c in (0..h).step_by(16) {
                let v = _mm512_add_ps(_mm512_loadu_ps(xp.add(c)), _mm512_loadu_ps(yp.add(c)));
                _mm512_storeu_ps(xp.add(c), v);
                sum = _mm512_add_ps(sum, v);
            }
            let mean = _mm512_set1_ps(_mm512_reduce_add_ps(sum) * inv_h);
            let mut var = _mm512_setzero_ps();
            for c in (0..h).step_by(16) {
                let v = _mm512_sub_ps(_mm512_loadu_ps(xp.add(c)), mean);
                var = _mm512_fmadd_ps(v, v, var);
            }
            let inv = 1.0 / (_mm512_reduce_add_ps(var) * inv_h + eps).sqrt();
            let inv = _mm512_set1_ps(inv);
            for c in (0..h).step_by(16) {
                let v = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(xp.add(c)), mean), inv);
                let v = _mm512_fmadd_ps(v, _mm512_loadu_ps(wp.add(c)), _mm512_loadu_ps(bp.add(c)));
                _mm512_storeu_ps(xp.add(c), v);
            }
        }
    }
}

fn add_assign(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// The elementwise passes (GELU, layer norm) compiled for AVX-512 when
/// the CPU has it: the crate's baseline target is SSE2, which runs them
/// four lanes at a time.
fn gelu_all(xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::gemm::available() {
        // SAFETY: AVX-512F is there (checked just above).
        return unsafe { gelu_all_avx512(xs) };
    }
    gelu_all_plain(xs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gelu_all_avx512(xs: &mut [f32]) {
    gelu_all_plain(xs)
}

#[inline(always)]
fn gelu_all_plain(xs: &mut [f32]) {
    for v in xs.iter_mut() {
        *v = gelu(*v);
    }
}

fn layer_norm(x: &mut [f32], h: usize, n: &Norm, eps: f32) {
    #[cfg(target_arch = "x86_64")]
    if super::gemm::available() {
        // SAFETY: AVX-512F is there (checked just above).
        return unsafe { layer_norm_avx512(x, h, n, eps) };
    }
    layer_norm_plain(x, h, n, eps)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn layer_norm_avx512(x: &mut [f32], h: usize, n: &Norm, eps: f32) {
    layer_norm_plain(x, h, n, eps)
}

#[inline(always)]
fn layer_norm_plain(x: &mut [f32], h: usize, n: &Norm, eps: f32) {
    for row in x.chunks_mut(h) {
        let mean = sum(row.iter().copied()) / h as f32;
        let var = sum(row.iter().map(|v| (v - mean) * (v - mean))) / h as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, w), b) in row.iter_mut().zip(&n.w).zip(&n.b) {
            *v = (*v - mean) * inv * w + b;
        }
    }
}

/// Sum in 16 interleaved lanes: one long chain of dependent adds (what
/// `Iterator::sum` must do for floats) costs a latency per element; the
/// lanes vectorise and run in parallel.
#[inline(always)]
fn sum(xs: impl Iterator<Item = f32>) -> f32 {
    let mut lanes = [0f32; 16];
    for (i, v) in xs.enumerate() {
        lanes[i % 16] += v;
    }
    lanes.iter().sum()
}

fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// Exact GELU, `x·Φ(x)`, with erf to float precision.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// erf in f32 as a rational function of x (Eigen's `generic_fast_erf_float`,
/// accurate to about 1e-7 on [-4, 4], ±1 beyond): no `exp`, no branches, so
/// the GELU loop over a whole `[tokens, 1536]` matrix vectorises.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 + -2.101_024e-6;
    p = p * x2 + -5.692_506_4e-5;
    p = p * x2 + -7.349_906_3e-4;
    p = p * x2 + -2.954_6e-3;
    p = p * x2 + -1.609_603_3e-2;
    p *= x;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 + -2.133_740_6e-4;
    q = q * x2 + -1.682_827e-3;
    q = q * x2 + -7.373_329e-3;
    q = q * x2 + -1.426_474e-2;
    p / q
}

/// Mean of the rows of `[len, h]` into `out[h]`.
pub fn mean_pool(rows: &[f32], out: &mut [f32]) {
    let h = out.len();
    out.fill(0.0);
    let n = rows.len() / h;
    for row in rows.chunks(h) {
        add_assign(out, row);
    }
    let inv = 1.0 / n.max(1) as f32;
    out.iter_mut().for_each(|v| *v *= inv);
}

/// Scale `v` to unit length (a zero vector stays zero).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 1e-12 {
        let inv = 1.0 / norm;
        v.iter_mut().for_each(|x| *x *= inv);
    }
}

/// One F32 tensor of a safetensors file.
pub(crate) struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// The F32 tensors of a safetensors file (others, such as BERT's I64
/// `position_ids`, are skipped): an 8-byte little-endian header length, a
/// JSON header `{name: {dtype, shape, data_offsets}}`, then the data.
pub(crate) fn read_safetensors(bytes: &[u8]) -> Result<HashMap<String, Tensor>, String> {
    let t = SafeTensors::new(&bytes)?;
    t.index
        .iter()
        .map(|(name, info)| {
            let data = t.rows(name, 0..info.shape.first().copied().unwrap_or(1))?;
            let shape = info.shape.clone();
            Ok((name.clone(), Tensor { shape, data }))
        })
        .collect()
}

/// Where the bytes of a safetensors file are read from.
pub(crate) trait ReadAt {
    /// Fill `buf` from `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
    fn size(&self) -> std::io::Result<u64>;
}

impl ReadAt for &[u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let src = usize::try_from(offset)
            .ok()
            .and_then(|o| self.get(o..o.checked_add(buf.len())?))
            .ok_or(std::io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn size(&self) -> std::io::Result<u64> {
        Ok(self.len() as u64)
    }
}

impl ReadAt for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        use std::io::{Read, Seek};
        let mut f = self;
        f.seek(std::io::SeekFrom::Start(offset))?;
        f.read_exact(buf)
    }

    fn size(&self) -> std::io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

/// The F32 tensors of a safetensors file, indexed from its header and
/// read on demand (a few rows at a time if need be), so a model's
/// weights are never all in memory twice.
pub(crate) struct SafeTensors<'a> {
    src: &'a dyn ReadAt,
    index: HashMap<String, TensorAt>,
}

struct TensorAt {
    shape: Vec<usize>,
    /// Where its data starts in the file.
    offset: u64,
}

impl<'a> SafeTensors<'a> {
    /// Read and check the header (every F32 tensor's data inside the file
    /// and of its shape's size).
    pub(crate) fn new(src: &'a dyn ReadAt) -> Result<SafeTensors<'a>, String> {
        let size = src.size().map_err(|e| e.to_string())?;
        let mut n = [0u8; 8];
        src.read_at(&mut n, 0)
            .map_err(|_| "shorter than a safetensors header")?;
        let n = u64::from_le_bytes(n);
        if n > size.saturating_sub(8) {
            return Err("truncated safetensors header".into());
        }
        let mut header = vec![0u8; n as usize];
        src.read_at(&mut header, 8)
            .map_err(|_| "truncated safetensors header")?;
        let data_start = 8 + n;
        let data_len = size - data_start;
        let header: HashMap<String, serde_json::Value> =
            serde_json::from_slice(&header).map_err(|e| format!("safetensors header: {e}"))?;
        let mut index = HashMap::new();
        for (name, info) in header {
            if name == "__metadata__" || info["dtype"] != "F32" {
                continue;
            }
            let shape: Vec<usize> = serde_json::from_value(info["shape"].clone())
                .map_err(|e| format!("{name}: shape: {e}"))?;
            let offs: [u64; 2] = serde_json::from_value(info["data_offsets"].clone())
                .map_err(|e| format!("{name}: data_offsets: {e}"))?;
            if offs[0] > offs[1] || offs[1] > data_len {
                return Err(format!("{name}: data outside the file"));
            }
            if offs[1] - offs[0] != shape.iter().product::<usize>() as u64 * 4 {
                return Err(format!("{name}: data size does not match shape {shape:?}"));
            }
            let offset = data_start + offs[0];
            index.insert(name, TensorAt { shape, offset });
        }
        Ok(SafeTensors { src, index })
    }

    /// The shape of the F32 tensor `name`, if the file has one.
    pub(crate) fn shape(&self, name: &str) -> Option<&[usize]> {
        self.index.get(name).map(|t| t.shape.as_slice())
    }

    /// Rows `rows` (along the first dimension) of the F32 tensor `name`.
    pub(crate) fn rows(
        &self,
        name: &str,
        rows: std::ops::Range<usize>,
    ) -> Result<Vec<f32>, String> {
        let t = self
            .index
            .get(name)
            .ok_or_else(|| format!("missing tensor {name}"))?;
        let first = t.shape.first().copied().unwrap_or(1);
        if rows.start > rows.end || rows.end > first {
            return Err(format!("{name}: rows {rows:?} of {first}"));
        }
        let row = t.shape.iter().skip(1).product::<usize>();
        let n = (rows.end - rows.start) * row;
        let mut out = vec![0f32; n];
        // SAFETY: `out` holds n f32 = 4n bytes, any bit pattern of which
        // is an f32.
        let bytes = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<u8>(), n * 4) };
        self.src
            .read_at(bytes, t.offset + (rows.start * row * 4) as u64)
            .map_err(|e| format!("{name}: {e}"))?;
        if cfg!(target_endian = "big") {
            for v in &mut out {
                *v = f32::from_bits(u32::from_le(v.to_bits()));
            }
        }
        Ok(out)
    }
}

/// Write F32 tensors as a safetensors file's bytes (names sorted).
pub(crate) fn write_safetensors(tensors: &[(&str, &[usize], &[f32])]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    let mut sorted: Vec<_> = tensors.iter().collect();
    sorted.sort_by_key(|t| t.0);
    for (name, shape, data) in &sorted {
        let end = offset + data.len() * 4;
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut h = serde_json::to_vec(&header).unwrap_or_default();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + offset);
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    for (_, _, data) in &sorted {
        for v in data.iter() {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_gelu_softmax_and_norms() {
        assert!((erf(0.5) - 0.520_499_9).abs() < 1e-6);
        assert!((erf(-1.5) + 0.966_105_1).abs() < 1e-6);
        assert!((erf(2.5) - 0.999_593).abs() < 1e-6);
        assert!((erf(9.0) - 1.0).abs() < 1e-6);
        assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-6);
        let mut r = [1.0, 2.0, 3.0];
        softmax(&mut r);
        assert!((r.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((r[2] - 0.665_240_9).abs() < 1e-6);
        let mut v = [3.0, 4.0];
        l2_normalize(&mut v);
        assert_eq!(v, [0.6, 0.8]);
    }

    /// A deterministic stream of values in [-scale, scale).
    fn values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5) * 2.0 * scale
            })
            .collect()
    }

    #[test]
    fn attention_matches_a_plain_computation() {
        // Two sequences in one packed batch; lengths around the kernel's
        // tile edges (4 rows, 16 and 32 columns).
        let (h, d) = (64, 32);
        for lens in [[1, 3], [5, 16], [17, 33], [31, 70]] {
            let t: usize = lens.iter().sum();
            let qkv = values(lens[1] as u64, t * 3 * h, 2.0);
            let scale = 1.0 / (d as f32).sqrt();
            let mut got = vec![f32::NAN; t * h];
            let mut s = AttentionScratch::default();
            let mut start = 0;
            for &len in &lens {
                for off in [0, d] {
                    attend(&qkv, start, len, h, off, d, scale, &mut s, &mut got);
                }
                start += len;
            }
            let mut start = 0;
            for &len in &lens {
                for off in [0, d] {
                    for i in 0..len {
                        let q = &qkv[(start + i) * 3 * h + off..][..d];
                        let scores: Vec<f64> = (0..len)
                            .map(|j| {
                                let k = &qkv[(start + j) * 3 * h + h + off..][..d];
                                q.iter().zip(k).map(|(a, b)| f64::from(a * b)).sum::<f64>()
                                    * f64::from(scale)
                            })
                            .collect();
                        let max = scores.iter().copied().fold(f64::MIN, f64::max);
                        let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                        let z: f64 = e.iter().sum();
                        for c in 0..d {
                            let want: f64 = (0..len)
                                .map(|j| {
                                    e[j] / z * f64::from(qkv[(start + j) * 3 * h + 2 * h + off + c])
                                })
                                .sum();
                            let g = f64::from(got[(start + i) * h + off + c]);
                            assert!(
                                (g - want).abs() < 1e-5,
                                "lens {lens:?} row {i} col {c}: {g} vs {want}"
                            );
                        }
                    }
                }
                start += len;
            }
        }
    }

    #[test]
    fn add_norm_matches_add_then_layer_norm() {
        let h = 48;
        let n = Norm {
            w: values(1, h, 1.5),
            b: values(2, h, 0.5),
        };
        let x = values(3, 5 * h, 3.0);
        let y = values(4, 5 * h, 3.0);
        let mut got = x.clone();
        add_norm(&mut got, &y, h, &n, 1e-12);
        let mut want = x.clone();
        add_assign(&mut want, &y);
        layer_norm_plain(&mut want, h, &n, 1e-12);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_exp_matches_exp() {
        if !crate::embed::gemm::available() {
            return;
        }
        use std::arch::x86_64::*;
        for x in values(5, 4096, 90.0).iter().map(|v| -v.abs()) {
            // SAFETY: AVX-512F is there (checked above).
            let got = unsafe {
                let mut out = [0f32; 16];
                _mm512_storeu_ps(out.as_mut_ptr(), exp_avx512(_mm512_set1_ps(x)));
                out[0]
            };
            let want = x.exp();
            assert!(
                (got - want).abs() <= want * 3e-7 + 1e-37,
                "exp({x}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn f16_rounds_to_nearest_even_and_widens_exactly() {
        // Every finite f16 (normal, subnormal, zeros) round-trips.
        for h in (0..0x7c00u16).chain(0x8000..0xfc00) {
            let v = f32_of_f16(h);
            assert_eq!(f16_bits(v), h, "{h:#06x} = {v}");
        }
        assert_eq!(f32_of_f16(0x3c00), 1.0);
        assert_eq!(f32_of_f16(0xc000), -2.0);
        assert_eq!(f32_of_f16(0x0001), 2f32.powi(-24));
        assert_eq!(f32_of_f16(0x7bff), 65504.0);
        // Ties go to the even mantissa; beyond the range stays at the max.
        assert_eq!(f16_bits(1.0 + 2f32.powi(-11)), 0x3c00);
        assert_eq!(f16_bits(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
        assert_eq!(
            f16_bits(2f32.powi(-25)),
            0,
            "half the smallest subnormal: even"
        );
        assert_eq!(f16_bits(1e6), 0x7bff);
        assert_eq!(f16_bits(-1e6), 0xfbff);
        // Within half a unit in the last place.
        for v in values(9, 10_000, 4.0) {
            let r = f32_of_f16(f16_bits(v));
            let ulp = if v.abs() < 2f32.powi(-14) {
                2f32.powi(-24)
            } else {
                2f32.powi(v.abs().log2().floor() as i32 - 10)
            };
            assert!((r - v).abs() <= ulp / 2.0, "{v} → {r}");
        }
    }

    /// On the installed all-MiniLM-L6-v2: the f16 word table moves the
    /// vectors by less than cosine 1e-5, in either precision.
    #[test]
    #[ignore = "needs the local embedder weights; scripts/test.sh installs them"]
    fn f16_word_table_keeps_the_vectors() {
        let dir = super::super::local::default_model_dir();
        let texts = [
            "What is the capital of France?",
            "How do I reset my password?",
            "The stock market fell sharply on Tuesday after the central bank raised rates.",
            "Café naïve résumé — “quoted” text!",
            "i can't believe how happy i am today #blessed",
            "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn in the corresponding period",
            "zxqv plorb unfathomable antidisestablishmentarianism 12345",
        ];
        let file = std::fs::File::open(dir.join("model.safetensors")).unwrap();
        let st = SafeTensors::new(&file).unwrap();
        let name = [
            "embeddings.word_embeddings.weight",
            "bert.embeddings.word_embeddings.weight",
        ]
        .into_iter()
        .find(|n| st.shape(n).is_some())
        .unwrap();
        let full = st.rows(name, 0..st.shape(name).unwrap()[0]).unwrap();
        let vocab = crate::embed::wordpiece::WordPiece::from_dir(&dir).unwrap();
        let ids: Vec<Vec<u32>> = texts.iter().map(|t| vocab.encode(t, 256)).collect();
        for precision in [Precision::F32, Precision::Bf16] {
            let mut bert = Bert::load_with(&dir, precision).unwrap();
            assert!(matches!(bert.word, WordTable::F16(_)));
            let half = bert.embed_ids(&ids);
            bert.word = WordTable::F32(full.clone());
            let reference = bert.embed_ids(&ids);
            for (a, b) in half.iter().zip(&reference) {
                let cos: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                assert!(cos >= 0.99999, "{precision:?}: cosine {cos}");
            }
        }
    }

    #[test]
    fn safetensors_read_by_rows_from_a_file() {
        let a: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let bytes = write_safetensors(&[("a", &[4, 3], &a), ("b", &[2], &[1.0, 2.0])]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let t = SafeTensors::new(&file).unwrap();
        assert_eq!(t.shape("a"), Some(&[4, 3][..]));
        assert_eq!(t.rows("a", 1..3).unwrap(), [3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        assert_eq!(t.rows("b", 0..2).unwrap(), [1.0, 2.0]);
        assert!(t.rows("a", 2..5).is_err());
        assert!(t.rows("c", 0..1).is_err());
        let cut = &bytes[..bytes.len() - 4];
        let err = SafeTensors::new(&cut).err().unwrap();
        assert!(err.contains("outside the file"), "{err}");
    }

    #[test]
    fn safetensors_roundtrip() {
        let a = [1.0f32, -2.0, 3.5, 0.25];
        let bytes = write_safetensors(&[("b", &[1], &[7.0]), ("a", &[2, 2], &a)]);
        let t = read_safetensors(&bytes).unwrap();
        assert_eq!(t["a"].shape, [2, 2]);
        assert_eq!(t["a"].data, a);
        assert_eq!(t["b"].data, [7.0]);
        assert!(read_safetensors(&bytes[..10]).is_err());
    }
}
