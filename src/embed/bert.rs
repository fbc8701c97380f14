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

/// `[rows, cols]` row-major weights of a dense layer (`y = x·Wᵀ + b`).
struct Dense {
    w: Vec<f32>,
    b: Vec<f32>,
    out: usize,
    inp: usize,
    /// The same weights packed for the AVX-512 kernel, when the CPU has it.
    packed: Option<super::gemm::Packed>,
}

impl Dense {
    fn new(w: Vec<f32>, b: Vec<f32>, out: usize, inp: usize) -> Dense {
        let packed = super::gemm::Packed::new(&w, &b, out, inp);
        Dense {
            // Only the fallback path reads the unpacked weights.
            w: if packed.is_some() { Vec::new() } else { w },
            b,
            out,
            inp,
            packed,
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
    word: Vec<f32>,
    /// Position embeddings plus the token-type-0 embedding, `[max_pos, hidden]`.
    pos_type: Vec<f32>,
    emb_norm: Norm,
    layers: Vec<Layer>,
}

impl Bert {
    /// Load `config.json` and `model.safetensors` from `dir` (F32 weights,
    /// names with or without a `bert.` prefix).
    pub fn load(dir: &Path) -> Result<Bert, String> {
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
        let bytes = std::fs::read(&st).map_err(|e| format!("{}: {e}", st.display()))?;
        let tensors = read_safetensors(&bytes).map_err(|e| format!("{}: {e}", st.display()))?;
        Bert::from_tensors(cfg, tensors).map_err(|e| format!("{}: {e}", st.display()))
    }

    fn from_tensors(cfg: BertConfig, mut t: HashMap<String, Tensor>) -> Result<Bert, String> {
        let prefix = if t.contains_key("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            ""
        };
        let h = cfg.hidden_size;
        let t = std::cell::RefCell::new(&mut t);
        let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>, String> {
            let full = format!("{prefix}{name}");
            let tensor = t
                .borrow_mut()
                .remove(&full)
                .ok_or_else(|| format!("missing tensor {full}"))?;
            if tensor.shape != shape {
                return Err(format!(
                    "tensor {full} has shape {:?}, expected {shape:?}",
                    tensor.shape
                ));
            }
            Ok(tensor.data)
        };
        let word = get("embeddings.word_embeddings.weight", &[cfg.vocab_size, h])?;
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
            let qkv = Dense::new(w, b, 3 * h, h);
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
        Ok(Bert {
            cfg,
            word,
            pos_type,
            emb_norm,
            layers,
        })
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
    pub fn embed_ids(&self, batch: &[Vec<u32>]) -> Vec<Vec<f32>> {
        self.encode(batch, |rows, out| {
            mean_pool(rows, out);
            l2_normalize(out);
        })
    }

    /// Run the encoder and hand each sequence's final hidden states
    /// (`[len, hidden]`) to `pool`, which writes one `hidden`-vector.
    pub fn encode(&self, batch: &[Vec<u32>], pool: impl Fn(&[f32], &mut [f32])) -> Vec<Vec<f32>> {
        let h = self.cfg.hidden_size;
        let max_len = self.max_len();
        let lens: Vec<usize> = batch.iter().map(|s| s.len().min(max_len)).collect();
        let total: usize = lens.iter().sum();
        if total == 0 {
            return batch.iter().map(|_| vec![0.0; h]).collect();
        }
        let mut x = vec![0f32; total * h];
        let mut row = 0;
        for (seq, &len) in batch.iter().zip(&lens) {
            for (pos, &id) in seq[..len].iter().enumerate() {
                let id = if (id as usize) < self.cfg.vocab_size {
                    id as usize
                } else {
                    0
                };
                let dst = &mut x[row * h..(row + 1) * h];
                let w = &self.word[id * h..(id + 1) * h];
                let p = &self.pos_type[pos * h..(pos + 1) * h];
                for ((d, a), b) in dst.iter_mut().zip(w).zip(p) {
                    *d = a + b;
                }
                row += 1;
            }
        }
        layer_norm(&mut x, h, &self.emb_norm, self.cfg.layer_norm_eps);
        let mut s = Scratch::new(total, h, self.cfg.intermediate_size, &lens);
        for layer in &self.layers {
            self.layer(layer, &mut x, &lens, &mut s);
        }
        let mut out = Vec::with_capacity(batch.len());
        let mut start = 0;
        for &len in &lens {
            let mut v = vec![0f32; h];
            if len > 0 {
                pool(&x[start * h..(start + len) * h], &mut v);
            }
            out.push(v);
            start += len;
        }
        out
    }

    fn layer(&self, layer: &Layer, x: &mut [f32], lens: &[usize], s: &mut Scratch) {
        let h = self.cfg.hidden_size;
        let heads = self.cfg.num_attention_heads;
        let d = h / heads;
        let t = x.len() / h;
        dense(&layer.qkv, x, t, &mut s.qkv);
        let scale = 1.0 / (d as f32).sqrt();
        let h3 = 3 * h;
        let mut start = 0;
        for &len in lens {
            if len == 0 {
                continue;
            }
            let scores = &mut s.scores[..len * len];
            for head in 0..heads {
                let q = &s.qkv[start * h3 + head * d..];
                let k = &s.qkv[start * h3 + h + head * d..];
                let v = &s.qkv[start * h3 + 2 * h + head * d..];
                // scores[len, len] = scale · Q Kᵀ
                unsafe {
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
                // ctx[len, d] (rows of stride h) = P V
                let ctx = &mut s.ctx[start * h + head * d..];
                unsafe {
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
            start += len;
        }
        dense(&layer.attn_out, &s.ctx, t, &mut s.tmp);
        add_assign(x, &s.tmp);
        layer_norm(x, h, &layer.attn_norm, self.cfg.layer_norm_eps);
        dense(&layer.inter, x, t, &mut s.inter);
        gelu_all(&mut s.inter[..t * self.cfg.intermediate_size]);
        dense(&layer.out, &s.inter, t, &mut s.tmp);
        add_assign(x, &s.tmp);
        layer_norm(x, h, &layer.out_norm, self.cfg.layer_norm_eps);
    }
}

struct Scratch {
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    tmp: Vec<f32>,
    inter: Vec<f32>,
    scores: Vec<f32>,
}

impl Scratch {
    fn new(tokens: usize, h: usize, inter: usize, lens: &[usize]) -> Scratch {
        let longest = lens.iter().copied().max().unwrap_or(0);
        Scratch {
            qkv: vec![0.0; tokens * 3 * h],
            ctx: vec![0.0; tokens * h],
            tmp: vec![0.0; tokens * h],
            inter: vec![0.0; tokens * inter],
            scores: vec![0.0; longest * longest],
        }
    }
}

/// `y[t, out] = x[t, inp] · Wᵀ + b`.
fn dense(layer: &Dense, x: &[f32], t: usize, y: &mut [f32]) {
    debug_assert!(x.len() >= t * layer.inp && y.len() >= t * layer.out);
    if let Some(p) = &layer.packed {
        return p.apply(x, t, y);
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
    let n = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()) as usize)
        .ok_or("shorter than a safetensors header")?;
    let header = bytes
        .get(8..8usize.saturating_add(n))
        .ok_or("truncated safetensors header")?;
    let data = &bytes[8 + n..];
    let header: HashMap<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| format!("safetensors header: {e}"))?;
    let mut out = HashMap::new();
    for (name, info) in header {
        if name == "__metadata__" || info["dtype"] != "F32" {
            continue;
        }
        let shape: Vec<usize> = serde_json::from_value(info["shape"].clone())
            .map_err(|e| format!("{name}: shape: {e}"))?;
        let offs: [usize; 2] = serde_json::from_value(info["data_offsets"].clone())
            .map_err(|e| format!("{name}: data_offsets: {e}"))?;
        let raw = data
            .get(offs[0]..offs[1])
            .ok_or_else(|| format!("{name}: data outside the file"))?;
        if raw.len() != shape.iter().product::<usize>() * 4 {
            return Err(format!("{name}: data size does not match shape {shape:?}"));
        }
        let data = f32s_from_le(raw);
        out.insert(name, Tensor { shape, data });
    }
    Ok(out)
}

/// Little-endian f32s from bytes (a plain copy on little-endian machines,
/// so loading 90 MB of weights is fast even in a debug build).
pub(crate) fn f32s_from_le(raw: &[u8]) -> Vec<f32> {
    let n = raw.len() / 4;
    if cfg!(target_endian = "little") {
        let mut out = vec![0f32; n];
        // SAFETY: `out` holds n f32 = 4n bytes; any bit pattern is an f32.
        unsafe {
            std::ptr::copy_nonoverlapping(raw.as_ptr(), out.as_mut_ptr().cast::<u8>(), n * 4);
        }
        out
    } else {
        raw.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
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
