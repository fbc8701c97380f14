//! A static embedding table distilled from the BERT model (model2vec's
//! method): every vocabulary token is run through the encoder once, as
//! `[CLS] token [SEP]`, and its mean-pooled output becomes a row of a
//! table. A text is then the mean of its word pieces' rows, L2-normalised:
//! a table lookup per token instead of six transformer layers.
//!
//! Distilling takes one pass over the 30k-token vocabulary (well under a
//! minute in a release build); the table is written next to the weights
//! (`static-v1.safetensors`) and read from there afterwards.

use std::path::{Path, PathBuf};

use futures_util::future::BoxFuture;

use super::bert::{Scratch, l2_normalize, mean_pool, read_safetensors, write_safetensors};
use super::local::LocalEmbedder;
use super::wordpiece::WordPiece;
use super::{EmbedError, Embedder};

/// File name of the distilled table inside the model folder.
pub const STATIC_FILE: &str = "static-v1.safetensors";

/// How rows are post-processed after distillation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaticVariant {
    /// Mean-pooled outputs as they are.
    Raw,
    /// Minus the mean row (the direction every token shares).
    Centered,
    /// Centered, then each row weighted by `ln(1 + rank)` (rare tokens,
    /// later in the vocabulary, weigh more: model2vec's Zipf weighting).
    CenteredZipf,
}

/// A static table embedder.
pub struct StaticEmbedder {
    vocab: WordPiece,
    /// `[vocab, dim]`.
    table: Vec<f32>,
    dim: usize,
    id: String,
    max_tokens: usize,
}

impl std::fmt::Debug for StaticEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticEmbedder")
            .field("id", &self.id)
            .field("dim", &self.dim)
            .finish()
    }
}

/// The raw distilled table: each token's mean-pooled `[CLS] t [SEP]`
/// output (zero rows for `[PAD]` and `[unusedN]`), `[vocab, dim]`.
pub fn distill_table(model: &LocalEmbedder) -> Vec<f32> {
    let vocab = model.tokenizer();
    let dim = model.bert().hidden_size();
    let ids: Vec<u32> = (0..vocab.len() as u32)
        .filter(|&i| !skipped(vocab, i))
        .collect();
    let seqs: Vec<Vec<u32>> = ids.iter().map(|&i| vec![vocab.cls, i, vocab.sep]).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = seqs.len().div_ceil(threads).max(1);
    let rows: Vec<Vec<f32>> = std::thread::scope(|s| {
        let handles: Vec<_> = seqs
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    let mut out = Vec::with_capacity(part.len());
                    let mut scratch = Scratch::default();
                    for batch in part.chunks(256) {
                        out.extend(model.bert().encode_with(batch, &mut scratch, mean_pool));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("distillation thread"))
            .collect()
    });
    let mut table = vec![0f32; vocab.len() * dim];
    for (&id, row) in ids.iter().zip(rows) {
        table[id as usize * dim..(id as usize + 1) * dim].copy_from_slice(&row);
    }
    table
}

fn skipped(vocab: &WordPiece, id: u32) -> bool {
    id == vocab.pad || vocab.token(id).is_some_and(|t| t.starts_with("[unused"))
}

impl StaticEmbedder {
    /// The table in `dir/static-v1.safetensors`, distilled from `model`
    /// (and written there) when it is not there yet.
    pub fn load_or_distill(
        dir: &Path,
        model: &LocalEmbedder,
        variant: StaticVariant,
    ) -> Result<StaticEmbedder, EmbedError> {
        let path = dir.join(STATIC_FILE);
        let dim = model.bert().hidden_size();
        let n = model.tokenizer().len();
        let raw = match std::fs::read(&path)
            .ok()
            .and_then(|b| read_safetensors(&b).ok())
            .and_then(|mut t| t.remove("raw"))
            .filter(|t| t.shape == [n, dim])
        {
            Some(t) => t.data,
            None => {
                tracing::info!(
                    "distilling a static embedding table into {}",
                    path.display()
                );
                let raw = distill_table(model);
                let bytes = write_safetensors(&[("raw", &[n, dim], &raw)]);
                let tmp = tmp_path(&path);
                std::fs::write(&tmp, bytes)
                    .and_then(|_| std::fs::rename(&tmp, &path))
                    .map_err(|e| EmbedError::Store {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                raw
            }
        };
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(StaticEmbedder::from_raw(
            model.tokenizer().clone(),
            raw,
            dim,
            variant,
            format!("static:{name}:{variant:?}"),
        ))
    }

    /// A table from raw distilled rows, post-processed by `variant`.
    pub fn from_raw(
        vocab: WordPiece,
        mut table: Vec<f32>,
        dim: usize,
        variant: StaticVariant,
        id: String,
    ) -> StaticEmbedder {
        let live: Vec<usize> = (0..vocab.len())
            .filter(|&i| !skipped(&vocab, i as u32))
            .collect();
        if variant != StaticVariant::Raw && !live.is_empty() {
            let mut mean = vec![0f32; dim];
            for &i in &live {
                for (m, v) in mean.iter_mut().zip(&table[i * dim..(i + 1) * dim]) {
                    *m += v;
                }
            }
            mean.iter_mut().for_each(|m| *m /= live.len() as f32);
            for &i in &live {
                for (v, m) in table[i * dim..(i + 1) * dim].iter_mut().zip(&mean) {
                    *v -= m;
                }
            }
        }
        if variant == StaticVariant::CenteredZipf {
            for &i in &live {
                let w = (1.0 + i as f32).ln();
                table[i * dim..(i + 1) * dim]
                    .iter_mut()
                    .for_each(|v| *v *= w);
            }
        }
        StaticEmbedder {
            vocab,
            table,
            dim,
            id,
            max_tokens: 512,
        }
    }

    /// Vectors of `texts` (no threads: a lookup per token).
    pub fn embed_sync(&self, texts: &[impl AsRef<str>]) -> Vec<Vec<f32>> {
        texts
            .iter()
            .map(|t| {
                let mut v = vec![0f32; self.dim];
                for id in self.vocab.encode_plain(t.as_ref(), self.max_tokens) {
                    let row = &self.table[id as usize * self.dim..(id as usize + 1) * self.dim];
                    for (a, b) in v.iter_mut().zip(row) {
                        *a += b;
                    }
                }
                l2_normalize(&mut v);
                v
            })
            .collect()
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

impl Embedder for StaticEmbedder {
    fn model_id(&self) -> &str {
        &self.id
    }

    fn dim(&self) -> Option<usize> {
        Some(self.dim)
    }

    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move { Ok(super::cpu_bound(|| self.embed_sync(texts))) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> WordPiece {
        let toks = [
            "[PAD]",
            "[UNK]",
            "[CLS]",
            "[SEP]",
            "[unused0]",
            "cat",
            "dog",
            "##s",
        ];
        WordPiece::from_tokens(toks.iter().map(|s| s.to_string()).collect()).unwrap()
    }

    #[test]
    fn a_text_is_the_normalised_sum_of_its_pieces() {
        // 2 dimensions; rows per token id.
        let table = vec![
            9.0, 9.0, // [PAD] (skipped)
            0.0, 1.0, // [UNK]
            1.0, 1.0, // [CLS]
            1.0, 1.0, // [SEP]
            5.0, 5.0, // [unused0] (skipped)
            3.0, 0.0, // cat
            0.0, 4.0, // dog
            1.0, 0.0, // ##s
        ];
        let raw =
            StaticEmbedder::from_raw(vocab(), table.clone(), 2, StaticVariant::Raw, "t".into());
        assert_eq!(raw.embed_sync(&["cat"]), [vec![1.0, 0.0]]);
        let dogs = &raw.embed_sync(&["dogs"])[0];
        assert!(
            (dogs[0] - 1.0 / 17f32.sqrt()).abs() < 1e-6
                && (dogs[1] - 4.0 / 17f32.sqrt()).abs() < 1e-6
        );
        assert_eq!(raw.embed_sync(&["cat dog"]), [vec![0.6, 0.8]]);
        assert_eq!(raw.dim(), Some(2));
        // Centered: the mean of the live rows (not [PAD], [unusedN]) is
        // subtracted, so "cat" points away from the shared direction.
        let c = StaticEmbedder::from_raw(vocab(), table, 2, StaticVariant::Centered, "t".into());
        let mean = [
            (0.0 + 1.0 + 1.0 + 3.0 + 0.0 + 1.0) / 6.0,
            (1.0 + 1.0 + 1.0 + 0.0 + 4.0 + 0.0) / 6.0,
        ];
        let mut want = vec![3.0 - mean[0], 0.0 - mean[1]];
        l2_normalize(&mut want);
        let got = &c.embed_sync(&["cat"])[0];
        assert!((got[0] - want[0]).abs() < 1e-6 && (got[1] - want[1]).abs() < 1e-6);
    }
}
