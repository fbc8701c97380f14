//! The in-process embedder: all-MiniLM-L6-v2 (or another uncased BERT
//! sentence-transformers model) from a folder on disk.

use std::path::{Path, PathBuf};

use futures_util::future::BoxFuture;

use super::bert::{Bert, Precision};
use super::wordpiece::WordPiece;
use super::{EmbedError, Embedder};
use crate::domain::EmbeddingsConfig;

/// sentence-transformers' `max_seq_length` for all-MiniLM-L6-v2.
const MAX_SEQ_LEN: usize = 256;

/// Tokens per forward pass at most (a text longer than this still goes
/// alone): a pass's working memory is ~14 KB a token with MiniLM, so
/// this bounds it to ~7 MB a thread, however long the texts; a batch of
/// 64 texts of 256 tokens would take 226 MB. Dense layers run as fast on
/// 512 rows as on 16,384: the TUI's first judges' measure on the 200k
/// project, which embeds every text, peaked at 307 MB with 1,024 and at
/// 287 MB with 512, for the same CPU time (`scripts/rss-session.sh`).
const MAX_BATCH_TOKENS: usize = 512;

/// Where `scripts/embedder.sh install` puts the model:
/// `$STRADDLE_EMBEDDER_DIR/all-MiniLM-L6-v2`, else
/// `$XDG_CACHE_HOME/straddle/embedder/all-MiniLM-L6-v2`, else
/// `~/.cache/straddle/embedder/all-MiniLM-L6-v2`.
pub fn default_model_dir() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let root = env("STRADDLE_EMBEDDER_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|c| c.join("straddle/embedder")))
        .or_else(|| env("HOME").map(|h| h.join(".cache/straddle/embedder")))
        .unwrap_or_else(|| PathBuf::from(".cache/straddle/embedder"));
    root.join("all-MiniLM-L6-v2")
}

/// A BERT sentence embedder running on the CPU, on up to `threads` threads.
pub struct LocalEmbedder {
    dir: PathBuf,
    bert: Bert,
    vocab: WordPiece,
    id: String,
    batch_size: usize,
    threads: usize,
    max_len: usize,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("id", &self.id)
            .field("batch_size", &self.batch_size)
            .field("threads", &self.threads)
            .finish()
    }
}

impl LocalEmbedder {
    /// The model in `[embeddings] model_dir` (or [`default_model_dir`]).
    pub fn from_config(cfg: &EmbeddingsConfig) -> Result<LocalEmbedder, EmbedError> {
        let dir = model_dir(cfg);
        let mut e = LocalEmbedder::load_with(&dir, Precision::resolve(cfg.precision))?;
        e.batch_size = cfg.batch_size.max(1);
        Ok(e)
    }

    /// Whether the model files `[embeddings]` names are there (without
    /// loading them): [`EmbedError::MissingWeights`] names the fix.
    pub fn check_installed(cfg: &EmbeddingsConfig) -> Result<(), EmbedError> {
        let dir = model_dir(cfg);
        if dir.join("model.safetensors").is_file() && dir.join("config.json").is_file() {
            Ok(())
        } else {
            Err(EmbedError::MissingWeights(dir))
        }
    }

    /// Load the model in `dir` (`config.json`, `model.safetensors`,
    /// `vocab.txt` or `tokenizer.json`) to run in f32.
    pub fn load(dir: &Path) -> Result<LocalEmbedder, EmbedError> {
        LocalEmbedder::load_with(dir, Precision::F32)
    }

    /// [`load`](Self::load) to run in `precision` (bf16 only where the CPU
    /// has AVX512_BF16, else f32). The model id names the precision the
    /// model really runs in when it is not f32 (`local:all-MiniLM-L6-v2@bf16`),
    /// so the vector store never mixes vectors of the two.
    pub fn load_with(dir: &Path, precision: Precision) -> Result<LocalEmbedder, EmbedError> {
        if !dir.join("model.safetensors").is_file() || !dir.join("config.json").is_file() {
            return Err(EmbedError::MissingWeights(dir.to_path_buf()));
        }
        let bert = Bert::load_with(dir, precision).map_err(EmbedError::Model)?;
        let vocab = WordPiece::from_dir(dir).map_err(EmbedError::Model)?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "bert".into());
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let max_len = bert.max_len().min(MAX_SEQ_LEN);
        Ok(LocalEmbedder {
            dir: dir.to_path_buf(),
            vocab,
            id: match bert.precision() {
                Precision::F32 => format!("local:{name}"),
                p => format!("local:{name}@{}", p.name()),
            },
            bert,
            batch_size: 64,
            threads,
            max_len,
        })
    }

    /// Use at most `n` threads (at least 1).
    pub fn with_threads(mut self, n: usize) -> LocalEmbedder {
        self.threads = n.max(1);
        self
    }

    /// Texts per forward pass (at least 1).
    pub fn with_batch_size(mut self, n: usize) -> LocalEmbedder {
        self.batch_size = n.max(1);
        self
    }

    /// The model folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn tokenizer(&self) -> &WordPiece {
        &self.vocab
    }

    pub fn bert(&self) -> &Bert {
        &self.bert
    }

    /// What the model runs in.
    pub fn precision(&self) -> Precision {
        self.bert.precision()
    }

    /// Token ids of `text` as the model sees it (`[CLS] … [SEP]`, cut at 256).
    pub fn token_ids(&self, text: &str) -> Vec<u32> {
        self.vocab.encode(text, self.max_len)
    }

    /// Embed on this thread and `threads - 1` helpers. Texts are sorted by
    /// length and cut into batches of similar length (at most
    /// `batch_size` texts and [`MAX_BATCH_TOKENS`] tokens), handed out to
    /// the threads in turn, so the threads get even shares of work.
    pub fn embed_sync(&self, texts: &[impl AsRef<str> + Sync]) -> Vec<Vec<f32>> {
        let ids: Vec<Vec<u32>> = texts.iter().map(|t| self.token_ids(t.as_ref())).collect();
        self.embed_token_ids(&ids)
    }

    /// [`embed_sync`](Self::embed_sync) for already tokenised sequences.
    pub fn embed_token_ids(&self, ids: &[Vec<u32>]) -> Vec<Vec<f32>> {
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let batches = batches(&order, |i| ids[i].len().min(self.max_len), self.batch_size);
        let threads = self.threads.min(batches.len()).max(1);
        let run = |worker: usize| -> Vec<(usize, Vec<f32>)> {
            let mut out = Vec::new();
            let mut scratch = super::bert::Scratch::default();
            for batch in batches.iter().skip(worker).step_by(threads) {
                let seqs: Vec<&[u32]> = batch.iter().map(|&i| ids[i].as_slice()).collect();
                let vecs = self.bert.embed_ids_with(&seqs, &mut scratch);
                out.extend(batch.iter().copied().zip(vecs));
            }
            out
        };
        let mut result = vec![Vec::new(); ids.len()];
        let parts: Vec<Vec<(usize, Vec<f32>)>> = if threads == 1 {
            vec![run(0)]
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = (1..threads).map(|w| s.spawn(move || run(w))).collect();
                let mut parts = vec![run(0)];
                parts.extend(
                    handles
                        .into_iter()
                        .map(|h| h.join().expect("embedding thread")),
                );
                parts
            })
        };
        for (i, v) in parts.into_iter().flatten() {
            result[i] = v;
        }
        result
    }
}

impl Embedder for LocalEmbedder {
    fn model_id(&self) -> &str {
        &self.id
    }

    fn dim(&self) -> Option<usize> {
        Some(self.bert.hidden_size())
    }

    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move { Ok(super::cpu_bound(|| self.embed_sync(texts))) })
    }
}

/// `order` cut into runs of at most `max_texts` items and
/// [`MAX_BATCH_TOKENS`] tokens (`len` of each; an item longer than that
/// is a batch of its own).
fn batches(order: &[usize], len: impl Fn(usize) -> usize, max_texts: usize) -> Vec<&[usize]> {
    let mut out = Vec::new();
    let (mut start, mut tokens) = (0, 0);
    for (k, &i) in order.iter().enumerate() {
        let n = len(i);
        if k > start && (k - start >= max_texts || tokens + n > MAX_BATCH_TOKENS) {
            out.push(&order[start..k]);
            (start, tokens) = (k, 0);
        }
        tokens += n;
    }
    if start < order.len() {
        out.push(&order[start..]);
    }
    out
}

/// The model folder `[embeddings] model_dir` names, else [`default_model_dir`].
pub fn model_dir(cfg: &EmbeddingsConfig) -> PathBuf {
    cfg.model_dir
        .as_deref()
        .filter(|d| !d.trim().is_empty())
        .map(expand_home)
        .unwrap_or_else(default_model_dir)
}

fn expand_home(p: &str) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(rest))
            .unwrap_or_else(|| PathBuf::from(p)),
        None => PathBuf::from(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_hold_at_most_the_texts_and_tokens_allowed() {
        let lens = [3, 5, 256, 1100, 20, 20, 20, 300, 300, 0];
        let order: Vec<usize> = (0..lens.len()).collect();
        let got = batches(&order, |i| lens[i], 3);
        let flat: Vec<usize> = got.iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(flat, order, "every text once, in order");
        for b in &got {
            assert!(!b.is_empty() && b.len() <= 3, "{got:?}");
            let tokens: usize = b.iter().map(|&i| lens[i]).sum();
            assert!(tokens <= MAX_BATCH_TOKENS || b.len() == 1, "{got:?}");
        }
        assert_eq!(
            got,
            [&[0, 1, 2][..], &[3], &[4, 5, 6], &[7], &[8, 9]],
            "cut at 3 texts, at the token budget, and a long text alone"
        );
        assert!(batches(&[], |_| 1, 64).is_empty());
    }

    #[test]
    fn missing_weights_name_the_install_script() {
        let dir = tempfile::tempdir().unwrap();
        let err = LocalEmbedder::load(dir.path()).unwrap_err();
        assert!(matches!(err, EmbedError::MissingWeights(_)));
        let msg = err.to_string();
        assert!(msg.contains("scripts/embedder.sh install"), "{msg}");
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    }
}
