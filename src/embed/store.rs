//! Vectors kept on disk beside the LLM cache, one compact file per model:
//! `cache/embeddings/<model>.vec`.
//!
//! The file is a 16-byte header (`STRVEC1\0`, the dimension as u32 LE, 4
//! reserved bytes) followed by fixed-size records: the 32-byte key — the
//! response cache's SHA-256 content address of (model, text), see
//! [`ResponseCache::key`] — and the vector as `dim` little-endian f32.
//! Records are appended; a torn last record (a crash mid-write) is ignored
//! when the file is read, and the file is rewritten whole on the next store. A sample whose text is edited simply has a new
//! key; entries nobody asks for any more are dropped when the file is more
//! than half dead ([`vectors_for`] compacts it).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{EmbedError, Embedder};
use crate::domain::{ProjectState, SampleId};
use crate::llm::ResponseCache;

const MAGIC: &[u8; 8] = b"STRVEC1\0";
const HEADER: usize = 16;
const KEY: usize = 32;

type Key = [u8; KEY];

/// The vectors of one model, in memory and in its side file.
#[derive(Debug)]
pub struct VectorStore {
    path: PathBuf,
    model_id: String,
    dim: Option<usize>,
    map: HashMap<Key, Vec<f32>>,
    /// Records in the file as last read or written.
    persisted: usize,
}

impl VectorStore {
    /// The store of `model_id` under `cache_dir` (a project's `cache/`):
    /// reads `cache_dir/embeddings/<model>.vec` if it exists. An unreadable
    /// or foreign file counts as empty (it is rewritten on the next store).
    pub fn open(cache_dir: &Path, model_id: &str) -> VectorStore {
        let path = cache_dir
            .join("embeddings")
            .join(format!("{}.vec", file_stem(model_id)));
        let mut store = VectorStore {
            path,
            model_id: model_id.to_owned(),
            dim: None,
            map: HashMap::new(),
            persisted: 0,
        };
        store.load();
        store
    }

    fn load(&mut self) {
        let Ok(bytes) = std::fs::read(&self.path) else {
            return;
        };
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            tracing::warn!("ignoring {}: not a vector file", self.path.display());
            return;
        }
        let dim = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        if dim == 0 {
            return;
        }
        self.dim = Some(dim);
        let rec = KEY + 4 * dim;
        for r in bytes[HEADER..].chunks_exact(rec) {
            let key: Key = r[..KEY].try_into().unwrap_or([0; KEY]);
            let v = super::bert::f32s_from_le(&r[KEY..]);
            self.map.insert(key, v);
        }
        // Duplicate keys (two processes appended the same text) make the
        // count differ from the file's records: the next store rewrites.
        self.persisted = self.map.len();
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Vectors held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The content address of `text` under this model.
    pub fn key(&self, text: &str) -> Key {
        let mut body = Map::new();
        body.insert("input".into(), Value::String(text.to_owned()));
        let hex = ResponseCache::key("embeddings", &self.model_id, &body);
        let mut key = [0u8; KEY];
        if let Ok(bytes) = hex::decode(hex) {
            key.copy_from_slice(&bytes[..KEY]);
        }
        key
    }

    /// The stored vector of `text`, if any.
    pub fn get(&self, text: &str) -> Option<&[f32]> {
        self.map.get(&self.key(text)).map(Vec::as_slice)
    }

    /// Vectors of `texts` in order: stored ones from the store, the others
    /// (each distinct text once) from `embedder`, then appended to the file.
    pub async fn embed(
        &mut self,
        embedder: &dyn Embedder,
        texts: &[String],
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let keys: Vec<Key> = texts.iter().map(|t| self.key(t)).collect();
        let mut seen = HashSet::new();
        let mut missing_texts = Vec::new();
        let mut missing_keys = Vec::new();
        for (t, k) in texts.iter().zip(&keys) {
            if !self.map.contains_key(k) && seen.insert(*k) {
                missing_texts.push(t.clone());
                missing_keys.push(*k);
            }
        }
        if !missing_texts.is_empty() {
            let vecs = embedder.embed(&missing_texts).await?;
            self.append(missing_keys.into_iter().zip(vecs).collect())?;
        }
        Ok(keys.iter().map(|k| self.map[k].clone()).collect())
    }

    fn store_error(&self, e: impl std::fmt::Display) -> EmbedError {
        EmbedError::Store {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    fn append(&mut self, new: Vec<(Key, Vec<f32>)>) -> Result<(), EmbedError> {
        let Some(first) = new.first() else {
            return Ok(());
        };
        let dim = *self.dim.get_or_insert(first.1.len());
        if let Some((_, v)) = new.iter().find(|(_, v)| v.len() != dim) {
            return Err(EmbedError::DimMismatch {
                expected: dim,
                got: v.len(),
            });
        }
        let rec = KEY + 4 * dim;
        // Append only to a file that holds exactly what was loaded: else
        // (new, foreign, torn, changed by another process) rewrite it whole.
        let expected = HEADER + self.persisted * rec;
        let clean = self.persisted > 0
            && std::fs::metadata(&self.path).is_ok_and(|m| m.len() as usize == expected);
        let mut buf = Vec::with_capacity(new.len() * rec);
        for (k, v) in new {
            push_record(&mut buf, &k, &v);
            self.map.insert(k, v);
        }
        if !clean {
            return self.rewrite();
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| self.store_error(e))?;
        f.write_all(&buf).map_err(|e| self.store_error(e))?;
        self.persisted = self.map.len();
        Ok(())
    }

    /// Write the whole file from memory (temp file + rename).
    fn rewrite(&mut self) -> Result<(), EmbedError> {
        let dim = self.dim.unwrap_or(0);
        let mut buf = Vec::with_capacity(HEADER + self.map.len() * (KEY + 4 * dim));
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&(dim as u32).to_le_bytes());
        buf.extend_from_slice(&[0; 4]);
        for (k, v) in &self.map {
            push_record(&mut buf, k, v);
        }
        let folder = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(folder).map_err(|e| self.store_error(e))?;
        let tmp = folder.join(format!(
            ".{}.{}.tmp",
            self.path
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            std::process::id()
        ));
        let result = std::fs::write(&tmp, &buf).and_then(|_| std::fs::rename(&tmp, &self.path));
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(|e| self.store_error(e))?;
        self.persisted = self.map.len();
        Ok(())
    }

    /// Keep only the vectors of `texts` (in memory and on disk).
    pub fn retain_texts(&mut self, texts: &[&str]) -> Result<(), EmbedError> {
        let keep: HashSet<Key> = texts.iter().map(|t| self.key(t)).collect();
        let before = self.map.len();
        self.map.retain(|k, _| keep.contains(k));
        if self.map.len() != before {
            self.rewrite()?;
        }
        Ok(())
    }
}

fn push_record(buf: &mut Vec<u8>, k: &Key, v: &[f32]) {
    buf.extend_from_slice(k);
    for x in v {
        buf.extend_from_slice(&x.to_le_bytes());
    }
}

/// A file name for a model id: letters, digits, `-`, `_` and `.` kept,
/// anything else `_`, plus a short hash so different ids never collide.
fn file_stem(model_id: &str) -> String {
    let clean: String = model_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let hash = ResponseCache::key("embeddings-file", model_id, &Map::new());
    format!("{clean}-{}", &hash[..8])
}

/// The vector of every sample of `state` (its current text, after edits),
/// from the store under `cache_dir` for `embedder`'s model, embedding what
/// is missing. Compacts the file when most of it is no longer asked for.
pub async fn vectors_for(
    cache_dir: &Path,
    state: &ProjectState,
    embedder: &dyn Embedder,
) -> Result<HashMap<SampleId, Vec<f32>>, EmbedError> {
    let mut store = VectorStore::open(cache_dir, embedder.model_id());
    let texts: Vec<String> = state.samples.iter().map(|s| s.text().to_owned()).collect();
    let vecs = store.embed(embedder, &texts).await?;
    if store.len() > 1000 && store.len() > 2 * texts.len() {
        let live: Vec<&str> = texts.iter().map(String::as_str).collect();
        store.retain_texts(&live)?;
    }
    Ok(state.samples.iter().map(|s| s.id).zip(vecs).collect())
}
