//! Vectors kept on disk beside the LLM cache, one compact file per model:
//! `cache/embeddings/<model>.vec`.
//!
//! The file is a 16-byte header (`STRVEC1\0`, the dimension as u32 LE, 4
//! reserved bytes) followed by fixed-size records: the 32-byte key — the
//! response cache's SHA-256 content address of (model, text), see
//! [`ResponseCache::key`] — and the vector as `dim` little-endian f32
//! (1,568 bytes a record with 384 dimensions: 200,000 vectors are ~314 MB
//! on disk).
//!
//! Only the index is in memory: a 16-byte prefix of each key and its
//! record number, ~25 bytes a vector (~5 MB for 200,000). Vectors are read
//! from the file when asked for (positioned reads, neighbouring records in
//! one read), so the rest lives in the page cache, not in the process.
//! [`VectorStore::embed_chunks`] and [`VectorStore::embed_rows`] hand
//! vectors out a chunk at a time for callers that go over many texts.
//!
//! Writers append whole records under an exclusive lock of
//! `<file>.lock` (the jobs of one process and other processes alike), after
//! reading what others appended meanwhile, so a key is stored once. A
//! torn last record (a crash mid-write) is ignored when the file is read
//! and cut off by the next writer. Readers pick up records appended by
//! other processes (and a file another one compacted) before each lookup.
//! All stores of one file in a process share one index. A sample whose
//! text is edited simply has a new key; the file is compacted (the live
//! records copied to a temp file that replaces it) when more than half of
//! its records are dead: keys stored twice by an older version, or
//! vectors nobody asks for any more ([`vectors_for`]).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use serde_json::Map;

use super::{EmbedError, Embedder};
use crate::domain::{ProjectState, SampleId};
use crate::llm::ResponseCache;

const MAGIC: &[u8; 8] = b"STRVEC1\0";
const HEADER: u64 = 16;
const KEY: usize = 32;
/// Records read at a time when a file is indexed or copied.
const BATCH: u64 = 1024;
/// A lookup reads neighbouring records in one go when they are at most
/// this many records apart, up to [`SPAN`] records a read.
const GAP: u32 = 8;
const SPAN: u32 = 256;
/// A file is compacted when more than half of at least this many records
/// are dead.
const COMPACT_MIN: u64 = 1000;

/// A vector's key: the SHA-256 content address of (model, text).
pub type Key = [u8; KEY];

/// The index's key: the first 16 bytes of a [`Key`] (the whole key is
/// checked against the record when the vector is read).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Short([u8; 16]);

impl Hash for Short {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut w = [0u8; 8];
        w.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(w));
    }
}

/// The keys are SHA-256 digests already: their first 8 bytes are the hash.
#[derive(Default)]
struct ShortHasher(u64);

impl Hasher for ShortHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

fn short(k: &Key) -> Short {
    let mut s = [0u8; 16];
    s.copy_from_slice(&k[..16]);
    Short(s)
}

/// Key prefix → record number.
type Index = HashMap<Short, u32, BuildHasherDefault<ShortHasher>>;

/// Vectors of a list of texts, one row each, in one flat buffer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    /// Floats a row (0 while no vector is known).
    pub dim: usize,
    n: usize,
    /// `n × dim`, row-major.
    pub data: Vec<f32>,
}

impl Rows {
    fn zeros(n: usize, dim: usize) -> Rows {
        Rows {
            dim,
            n,
            data: vec![0.0; n * dim],
        }
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// The rows in order.
    pub fn iter(&self) -> impl Iterator<Item = &[f32]> {
        (0..self.n).map(|i| self.row(i))
    }

    /// One `Vec` a row.
    pub fn into_vecs(self) -> Vec<Vec<f32>> {
        self.iter().map(<[f32]>::to_vec).collect()
    }
}

/// The vectors of one model in their side file. A cheap handle: clones,
/// and every store of the same file opened in this process, share one
/// index.
#[derive(Clone)]
pub struct VectorStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for VectorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorStore")
            .field("path", &self.shared.path)
            .field("model_id", &self.shared.model_id)
            .finish()
    }
}

struct Shared {
    path: PathBuf,
    model_id: String,
    inner: Mutex<Inner>,
}

/// What this process knows of the file.
#[derive(Default)]
struct Inner {
    /// The file as indexed; `None` when there is none or it is foreign.
    file: Option<File>,
    /// (device, inode) of the file as opened (also of a foreign one):
    /// another inode at the path means it was replaced.
    id: Option<(u64, u64)>,
    dim: Option<usize>,
    index: Index,
    /// Whole records of `file` indexed.
    records: u64,
    /// Reused read buffer.
    buf: Vec<u8>,
}

impl Inner {
    fn rec(&self) -> Option<u64> {
        self.dim.map(|d| (KEY + 4 * d) as u64)
    }

    fn reset(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        *self = Inner {
            buf,
            ..Inner::default()
        };
    }

    /// Catch up with the file at `path`: (re)open it when it is new or was
    /// replaced, then index the whole records appended since.
    fn sync(&mut self, path: &Path) {
        let Ok(meta) = std::fs::metadata(path) else {
            if self.id.is_some() {
                self.reset();
            }
            return;
        };
        if self.id != Some((meta.dev(), meta.ino())) {
            self.reset();
            self.open_file(path);
        }
        self.index_new();
    }

    fn open_file(&mut self, path: &Path) {
        let Ok(f) = File::open(path) else {
            return;
        };
        let Ok(meta) = f.metadata() else {
            return;
        };
        self.id = Some((meta.dev(), meta.ino()));
        let mut head = [0u8; HEADER as usize];
        if f.read_exact_at(&mut head, 0).is_err() || &head[..8] != MAGIC {
            tracing::warn!("ignoring {}: not a vector file", path.display());
            return;
        }
        let dim = u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize;
        if dim == 0 {
            return;
        }
        self.dim = Some(dim);
        self.file = Some(f);
    }

    /// Index the whole records past [`Self::records`] (a torn last record
    /// is left for the next writer to cut off).
    fn index_new(&mut self) {
        let (Some(f), Some(rec)) = (self.file.as_ref(), self.rec()) else {
            return;
        };
        let Ok(len) = f.metadata().map(|m| m.len()) else {
            return;
        };
        let whole = len.saturating_sub(HEADER) / rec;
        if whole < self.records {
            // Shortened in place (not by this program): start over.
            self.index.clear();
            self.records = 0;
        }
        self.index.reserve((whole - self.records) as usize);
        while self.records < whole {
            let n = (whole - self.records).min(BATCH);
            self.buf.resize((n * rec) as usize, 0);
            if f.read_exact_at(&mut self.buf, HEADER + self.records * rec)
                .is_err()
            {
                break;
            }
            for (i, r) in self.buf.chunks_exact(rec as usize).enumerate() {
                let mut k = [0u8; 16];
                k.copy_from_slice(&r[..16]);
                self.index
                    .insert(Short(k), (self.records + i as u64) as u32);
            }
            self.records += n;
        }
    }

    /// Records in the file that no key points to.
    fn dead(&self) -> u64 {
        self.records.saturating_sub(self.index.len() as u64)
    }

    /// The stored vectors of `keys` into `rows` (row `i` for key `i`; the
    /// store's dimension); the positions of the keys not found.
    fn read(&mut self, keys: &[Key], rows: &mut Rows) -> Vec<usize> {
        let (Some(f), Some(rec)) = (self.file.as_ref(), self.rec()) else {
            return (0..keys.len()).collect();
        };
        let dim = rows.dim;
        let rec = rec as usize;
        let mut missing = Vec::new();
        let mut hits: Vec<(u32, usize)> = Vec::with_capacity(keys.len());
        for (i, k) in keys.iter().enumerate() {
            match self.index.get(&short(k)) {
                Some(&r) => hits.push((r, i)),
                None => missing.push(i),
            }
        }
        hits.sort_unstable();
        let mut j = 0;
        while j < hits.len() {
            let first = hits[j].0;
            let mut end = j + 1;
            while end < hits.len()
                && hits[end].0 - hits[end - 1].0 <= GAP
                && hits[end].0 - first < SPAN
            {
                end += 1;
            }
            let n = (hits[end - 1].0 - first) as usize + 1;
            self.buf.resize(n * rec, 0);
            let at = HEADER + u64::from(first) * rec as u64;
            if f.read_exact_at(&mut self.buf, at).is_err() {
                missing.extend(hits[j..end].iter().map(|h| h.1));
                j = end;
                continue;
            }
            for &(r, i) in &hits[j..end] {
                let off = (r - first) as usize * rec;
                let record = &self.buf[off..off + rec];
                if record[..KEY] != keys[i] {
                    missing.push(i);
                    continue;
                }
                let out = &mut rows.data[i * dim..(i + 1) * dim];
                for (o, b) in out.iter_mut().zip(record[KEY..].chunks_exact(4)) {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            j = end;
        }
        missing.sort_unstable();
        missing
    }
}

/// The stores open in this process, by file.
static OPEN: Mutex<Vec<(PathBuf, Weak<Shared>)>> = Mutex::new(Vec::new());

impl VectorStore {
    /// The store of `model_id` under `cache_dir` (a project's `cache/`):
    /// indexes `cache_dir/embeddings/<model>.vec` if it exists, or shares
    /// the index of a store of that file already open in this process. An
    /// unreadable or foreign file counts as empty (it is replaced on the
    /// next store).
    pub fn open(cache_dir: &Path, model_id: &str) -> VectorStore {
        let path = Self::file_of(cache_dir, model_id);
        // Held while indexing: a second job opening the file waits and
        // shares the index.
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|(_, w)| w.strong_count() > 0);
        if let Some(shared) = open
            .iter()
            .find(|(p, _)| *p == path)
            .and_then(|(_, w)| w.upgrade())
        {
            return VectorStore { shared };
        }
        let store = Self::open_at(path.clone(), model_id);
        open.push((path, Arc::downgrade(&store.shared)));
        store
    }

    /// A store with an index of its own (as another process has).
    fn open_at(path: PathBuf, model_id: &str) -> VectorStore {
        let mut inner = Inner::default();
        inner.sync(&path);
        VectorStore {
            shared: Arc::new(Shared {
                path,
                model_id: model_id.to_owned(),
                inner: Mutex::new(inner),
            }),
        }
    }

    fn file_of(cache_dir: &Path, model_id: &str) -> PathBuf {
        let path = cache_dir
            .join("embeddings")
            .join(format!("{}.vec", file_stem(model_id)));
        std::path::absolute(&path).unwrap_or(path)
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The index, caught up with the file.
    fn synced(&self) -> MutexGuard<'_, Inner> {
        let mut inner = self.inner();
        inner.sync(&self.shared.path);
        inner
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    pub fn model_id(&self) -> &str {
        &self.shared.model_id
    }

    /// Vectors held.
    pub fn len(&self) -> usize {
        self.synced().index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The vectors' size, once one is stored.
    pub fn dim(&self) -> Option<usize> {
        self.synced().dim
    }

    /// The content address of `text` under this model.
    pub fn key(&self, text: &str) -> Key {
        ResponseCache::input_key("embeddings", &self.shared.model_id, text)
    }

    /// The stored vector of `text`, if any (read from the file).
    pub fn get(&self, text: &str) -> Option<Vec<f32>> {
        let (rows, missing) = self.lookup(&[text]);
        missing.is_empty().then_some(rows.data)
    }

    /// The stored vectors of `texts`: one row each in order (zeros where
    /// none is stored), and the positions of the texts without one.
    pub fn lookup<S: AsRef<str>>(&self, texts: &[S]) -> (Rows, Vec<usize>) {
        let keys: Vec<Key> = texts.iter().map(|t| self.key(t.as_ref())).collect();
        self.read_keys(&keys)
    }

    fn read_keys(&self, keys: &[Key]) -> (Rows, Vec<usize>) {
        let mut inner = self.synced();
        let mut rows = Rows::zeros(keys.len(), inner.dim.unwrap_or(0));
        let missing = inner.read(keys, &mut rows);
        (rows, missing)
    }

    /// Vectors of `texts` in order: stored ones from the store, the others
    /// (each distinct text once) from `embedder`, then appended to the file.
    /// All of them at once: over many texts, see [`Self::embed_chunks`].
    pub async fn embed(
        &self,
        embedder: &dyn Embedder,
        texts: &[String],
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(self.embed_rows(embedder, texts).await?.into_vecs())
    }

    /// [`Self::embed`] as one flat matrix.
    pub async fn embed_rows<S: AsRef<str> + Sync>(
        &self,
        embedder: &dyn Embedder,
        texts: &[S],
    ) -> Result<Rows, EmbedError> {
        self.embed_rows_with(embedder, texts, true).await
    }

    /// [`Self::embed_rows`] for a caller that must not fail when the file
    /// cannot be written (a read-only project, a full disk): the new
    /// vectors are returned all the same and the failure is logged.
    pub async fn embed_rows_best_effort<S: AsRef<str> + Sync>(
        &self,
        embedder: &dyn Embedder,
        texts: &[S],
    ) -> Result<Rows, EmbedError> {
        self.embed_rows_with(embedder, texts, false).await
    }

    async fn embed_rows_with<S: AsRef<str> + Sync>(
        &self,
        embedder: &dyn Embedder,
        texts: &[S],
        strict: bool,
    ) -> Result<Rows, EmbedError> {
        let keys: Vec<Key> = texts.iter().map(|t| self.key(t.as_ref())).collect();
        let (mut rows, missing) = self.read_keys(&keys);
        if missing.is_empty() {
            return Ok(rows);
        }
        // Each distinct missing text once.
        let mut first: HashMap<Key, usize> = HashMap::new();
        let mut todo: Vec<String> = Vec::new();
        let mut slot = Vec::with_capacity(missing.len());
        for &i in &missing {
            let n = first.len();
            let s = *first.entry(keys[i]).or_insert_with(|| {
                todo.push(texts[i].as_ref().to_owned());
                n
            });
            slot.push(s);
        }
        let fresh = embedder.embed(&todo).await?;
        drop(todo);
        if fresh.len() != first.len() {
            return Err(EmbedError::Model(format!(
                "the embedder returned {} vectors for {} texts",
                fresh.len(),
                first.len()
            )));
        }
        let dim = fresh.first().map_or(0, Vec::len);
        if rows.dim == 0 {
            rows = Rows::zeros(texts.len(), dim);
        }
        if let Some(v) = fresh.iter().find(|v| v.len() != rows.dim) {
            return Err(EmbedError::DimMismatch {
                expected: rows.dim,
                got: v.len(),
            });
        }
        for (&i, &s) in missing.iter().zip(&slot) {
            rows.data[i * dim..(i + 1) * dim].copy_from_slice(&fresh[s]);
        }
        let mut new: Vec<(Key, &[f32])> = vec![([0; KEY], &[][..]); first.len()];
        for (k, s) in first {
            new[s] = (k, fresh[s].as_slice());
        }
        match self.append(&new) {
            Ok(()) => {}
            Err(e) if !strict => tracing::warn!("vectors not saved: {e}"),
            Err(e) => return Err(e),
        }
        Ok(rows)
    }

    /// The vectors of `texts`, `chunk` texts at a time (embedding and
    /// storing those missing): `each(start, rows)` gets the rows of
    /// `texts[start..start + rows.len()]`. Only one chunk's vectors are in
    /// memory at once.
    pub async fn embed_chunks(
        &self,
        embedder: &dyn Embedder,
        texts: &[String],
        chunk: usize,
        mut each: impl FnMut(usize, Rows),
    ) -> Result<(), EmbedError> {
        for (c, part) in texts.chunks(chunk.max(1)).enumerate() {
            let rows = self.embed_rows(embedder, part).await?;
            each(c * chunk.max(1), rows);
        }
        Ok(())
    }

    /// Store `vectors` of `texts` (texts already stored are skipped).
    pub fn insert(&self, texts: &[&str], vectors: &[Vec<f32>]) -> Result<(), EmbedError> {
        let new: Vec<(Key, &[f32])> = texts
            .iter()
            .zip(vectors)
            .map(|(t, v)| (self.key(t), v.as_slice()))
            .collect();
        self.append(&new)
    }

    fn store_error(&self, e: impl std::fmt::Display) -> EmbedError {
        EmbedError::Store {
            path: self.shared.path.clone(),
            message: e.to_string(),
        }
    }

    /// The writers' lock: `<file>.lock`, held exclusively until dropped.
    fn lock(&self) -> Result<File, EmbedError> {
        let path = &self.shared.path;
        let folder = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(folder).map_err(|e| self.store_error(e))?;
        let mut name = path.as_os_str().to_owned();
        name.push(".lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(PathBuf::from(name))
            .map_err(|e| self.store_error(e))?;
        f.lock().map_err(|e| self.store_error(e))?;
        Ok(f)
    }

    /// Append the records of `new` not stored yet, under the writers' lock.
    fn append(&self, new: &[(Key, &[f32])]) -> Result<(), EmbedError> {
        let Some(first) = new.first() else {
            return Ok(());
        };
        let dim = first.1.len();
        if let Some((_, v)) = new.iter().find(|(_, v)| v.len() != dim) {
            return Err(EmbedError::DimMismatch {
                expected: dim,
                got: v.len(),
            });
        }
        let path = &self.shared.path;
        let mut inner = self.inner();
        let _lock = self.lock()?;
        inner.sync(path);
        match inner.dim {
            Some(d) if d != dim => {
                return Err(EmbedError::DimMismatch {
                    expected: d,
                    got: dim,
                });
            }
            Some(_) if inner.file.is_some() => {}
            _ => self.create(&mut inner, dim)?,
        }
        let rec = (KEY + 4 * dim) as u64;
        let end = HEADER + inner.records * rec;
        let mut fresh: HashSet<Short> = HashSet::new();
        let mut buf = Vec::new();
        let mut added = Vec::new();
        for (k, v) in new {
            let s = short(k);
            if inner.index.contains_key(&s) || !fresh.insert(s) {
                continue;
            }
            if buf.is_empty() {
                buf.reserve(new.len() * rec as usize);
            }
            push_record(&mut buf, k, v);
            added.push(s);
        }
        if !added.is_empty() {
            let w = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| self.store_error(e))?;
            let written = (|| {
                // A torn record of a crashed writer is cut off.
                if w.metadata()?.len() != end {
                    w.set_len(end)?;
                }
                w.write_all_at(&buf, end)
            })();
            if let Err(e) = written {
                let _ = w.set_len(end);
                return Err(self.store_error(e));
            }
            let at = inner.records;
            for (i, s) in added.iter().enumerate() {
                inner.index.insert(*s, (at + i as u64) as u32);
            }
            inner.records += added.len() as u64;
        }
        if inner.records >= COMPACT_MIN && inner.dead() * 2 > inner.records {
            self.compact(&mut inner, None)?;
        }
        Ok(())
    }

    /// A new empty file of `dim` in place of none or a foreign one (under
    /// the writers' lock).
    fn create(&self, inner: &mut Inner, dim: usize) -> Result<(), EmbedError> {
        let mut head = Vec::with_capacity(HEADER as usize);
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&(dim as u32).to_le_bytes());
        head.extend_from_slice(&[0; 4]);
        let tmp = self.temp_path();
        let result =
            std::fs::write(&tmp, &head).and_then(|_| std::fs::rename(&tmp, &self.shared.path));
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(|e| self.store_error(e))?;
        inner.reset();
        inner.sync(&self.shared.path);
        if inner.file.is_none() {
            return Err(self.store_error("the new file cannot be read"));
        }
        Ok(())
    }

    fn temp_path(&self) -> PathBuf {
        let path = &self.shared.path;
        path.parent().unwrap_or(Path::new(".")).join(format!(
            ".{}.{}.tmp",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            std::process::id()
        ))
    }

    /// Rewrite the file with the records of the keys in `keep` (all keys
    /// without), in file order, and index it (under the writers' lock,
    /// `inner` synced). Other processes reading the old file keep reading
    /// it and switch to the new one at their next lookup.
    fn compact(&self, inner: &mut Inner, keep: Option<&HashSet<Short>>) -> Result<(), EmbedError> {
        let (Some(f), Some(dim)) = (inner.file.as_ref(), inner.dim) else {
            return Ok(());
        };
        let rec = (KEY + 4 * dim) as u64;
        let mut live: Vec<(u32, Short)> = inner
            .index
            .iter()
            .filter(|(s, _)| keep.is_none_or(|k| k.contains(s)))
            .map(|(s, r)| (*r, *s))
            .collect();
        live.sort_unstable_by_key(|(r, _)| *r);
        let tmp = self.temp_path();
        let mut index = Index::with_capacity_and_hasher(live.len(), Default::default());
        let written = (|| -> std::io::Result<()> {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
            w.write_all(MAGIC)?;
            w.write_all(&(dim as u32).to_le_bytes())?;
            w.write_all(&[0; 4])?;
            let mut buf = Vec::new();
            for part in live.chunks(BATCH as usize) {
                let (lo, hi) = (part[0].0, part[part.len() - 1].0);
                buf.resize(((hi - lo) as u64 + 1) as usize * rec as usize, 0);
                f.read_exact_at(&mut buf, HEADER + u64::from(lo) * rec)?;
                for (r, s) in part {
                    let off = (r - lo) as usize * rec as usize;
                    w.write_all(&buf[off..off + rec as usize])?;
                    index.insert(*s, index.len() as u32);
                }
            }
            let file = w.into_inner().map_err(|e| e.into_error())?;
            file.sync_data()?;
            std::fs::rename(&tmp, &self.shared.path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(self.store_error(e));
        }
        let records = index.len() as u64;
        inner.reset();
        inner.open_file(&self.shared.path);
        if inner.file.is_some() {
            inner.index = index;
            inner.records = records;
            inner.index_new();
        }
        Ok(())
    }

    /// Keep only the vectors of `texts` (the file is rewritten when some
    /// are dropped).
    pub fn retain_texts(&self, texts: &[&str]) -> Result<(), EmbedError> {
        let keep: HashSet<Short> = texts.iter().map(|t| short(&self.key(t))).collect();
        let mut inner = self.inner();
        let _lock = self.lock()?;
        inner.sync(&self.shared.path);
        if inner.index.keys().all(|s| keep.contains(s)) && inner.dead() == 0 {
            return Ok(());
        }
        self.compact(&mut inner, Some(&keep))
    }

    /// Bytes of the file on disk (0 without one).
    pub fn file_bytes(&self) -> u64 {
        std::fs::metadata(&self.shared.path).map_or(0, |m| m.len())
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

/// Texts embedded at a time by [`vectors_for`].
const CHUNK: usize = 2048;

/// The vector of every sample of `state` (its current text, after edits),
/// from the store under `cache_dir` for `embedder`'s model, embedding what
/// is missing a chunk at a time. All of them at once in memory (~1.5 KB a
/// sample with 384 dimensions): large projects go through
/// [`VectorStore::embed_chunks`]. Compacts the file when most of it is no
/// longer asked for.
pub async fn vectors_for(
    cache_dir: &Path,
    state: &ProjectState,
    embedder: &dyn Embedder,
) -> Result<HashMap<SampleId, Vec<f32>>, EmbedError> {
    let store = VectorStore::open(cache_dir, embedder.model_id());
    let texts: Vec<String> = state.samples.iter().map(|s| s.text().to_owned()).collect();
    let mut out = HashMap::with_capacity(texts.len());
    store
        .embed_chunks(embedder, &texts, CHUNK, |start, rows| {
            let ids = state.samples[start..start + rows.len()]
                .iter()
                .map(|s| s.id);
            out.extend(ids.zip(rows.iter().map(<[f32]>::to_vec)));
        })
        .await?;
    if store.len() > 1000 && store.len() > 2 * texts.len() {
        let live: Vec<&str> = texts.iter().map(String::as_str).collect();
        store.retain_texts(&live)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::future::BoxFuture;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Vectors from the text's bytes; counts the texts it embeds.
    struct Counting {
        dim: usize,
        embedded: AtomicUsize,
    }

    impl Counting {
        fn new(dim: usize) -> Counting {
            Counting {
                dim,
                embedded: AtomicUsize::new(0),
            }
        }
        fn vector(&self, t: &str) -> Vec<f32> {
            let seed = t
                .bytes()
                .fold(17u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(b)));
            (0..self.dim)
                .map(|i| (seed.wrapping_mul(i as u32 + 7) % 1000) as f32 / 1000.0)
                .collect()
        }
        fn count(&self) -> usize {
            self.embedded.load(Ordering::SeqCst)
        }
    }

    impl Embedder for Counting {
        fn model_id(&self) -> &str {
            "test:counting"
        }
        fn dim(&self) -> Option<usize> {
            Some(self.dim)
        }
        fn embed<'a>(
            &'a self,
            texts: &'a [String],
        ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
            self.embedded.fetch_add(texts.len(), Ordering::SeqCst);
            let v = texts.iter().map(|t| self.vector(t)).collect();
            Box::pin(async move { Ok(v) })
        }
    }

    fn texts(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("text number {i}")).collect()
    }

    fn block<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// A store with its own index, as in another process.
    fn own(dir: &Path, e: &Counting) -> VectorStore {
        VectorStore::open_at(VectorStore::file_of(dir, e.model_id()), e.model_id())
    }

    fn rec(dim: usize) -> u64 {
        (KEY + 4 * dim) as u64
    }

    #[test]
    fn vectors_are_read_back_from_the_file_and_not_embedded_again() {
        let dir = tempfile::tempdir().unwrap();
        let e = Counting::new(8);
        let t = texts(0..50);
        let a = block(own(dir.path(), &e).embed(&e, &t)).unwrap();
        assert_eq!(e.count(), 50);
        assert_eq!(a[7], e.vector(&t[7]));
        // Reopened (a new index read from the file): nothing embedded.
        let s = own(dir.path(), &e);
        assert_eq!(s.len(), 50);
        let b = block(s.embed(&e, &t)).unwrap();
        assert_eq!(a, b);
        assert_eq!(e.count(), 50);
        // Duplicates and a few new texts: each new distinct text once.
        let mut more = texts(45..55);
        more.push(more[9].clone());
        let c = block(s.embed_rows(&e, &more)).unwrap();
        assert_eq!(e.count(), 55);
        assert_eq!(c.len(), 11);
        assert_eq!(c.row(10), c.row(9));
        assert_eq!(c.row(0), a[45].as_slice());
        assert_eq!(s.file_bytes(), HEADER + 55 * rec(8));
        assert_eq!(s.get("nothing stored"), None);
        assert_eq!(s.get(&t[3]).unwrap(), e.vector(&t[3]));
    }

    #[test]
    fn a_file_written_by_hand_in_the_format_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let e = Counting::new(4);
        let s = own(dir.path(), &e);
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&4u32.to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
        push_record(&mut bytes, &s.key("a"), &[1.0, 2.0, 3.0, 4.0]);
        push_record(&mut bytes, &s.key("b"), &[5.0, 6.0, 7.0, 8.0]);
        std::fs::create_dir_all(s.path().parent().unwrap()).unwrap();
        std::fs::write(s.path(), &bytes).unwrap();
        let s = own(dir.path(), &e);
        assert_eq!(s.len(), 2);
        assert_eq!(s.dim(), Some(4));
        assert_eq!(s.get("b").unwrap(), vec![5.0, 6.0, 7.0, 8.0]);
        let (rows, missing) = s.lookup(&["b", "c", "a"]);
        assert_eq!(missing, vec![1]);
        assert_eq!(rows.row(2), &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(rows.row(1), &[0.0; 4]);
    }

    #[test]
    fn a_torn_last_record_is_ignored_then_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let e = Counting::new(8);
        let t = texts(0..6);
        block(own(dir.path(), &e).embed(&e, &t[..3])).unwrap();
        let path = own(dir.path(), &e).path().to_path_buf();
        // A crash in the middle of the next append: part of a record.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&[7u8; 20]).unwrap();
        drop(f);
        let s = own(dir.path(), &e);
        assert_eq!(s.len(), 3);
        assert_eq!(s.get(&t[2]).unwrap(), e.vector(&t[2]));
        block(s.embed(&e, &t)).unwrap();
        assert_eq!(e.count(), 6);
        assert_eq!(s.file_bytes(), HEADER + 6 * rec(8));
        let again = own(dir.path(), &e);
        assert_eq!(again.len(), 6);
        for x in &t {
            assert_eq!(again.get(x).unwrap(), e.vector(x));
        }
    }

    #[test]
    fn a_foreign_file_counts_as_empty_and_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let e = Counting::new(8);
        let s = own(dir.path(), &e);
        std::fs::create_dir_all(s.path().parent().unwrap()).unwrap();
        std::fs::write(s.path(), b"hello, not vectors").unwrap();
        let s = own(dir.path(), &e);
        assert!(s.is_empty());
        block(s.embed(&e, &texts(0..2))).unwrap();
        assert_eq!(s.file_bytes(), HEADER + 2 * rec(8));
        assert_eq!(own(dir.path(), &e).len(), 2);
    }

    #[test]
    fn vectors_of_another_size_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = Counting::new(8);
        block(own(dir.path(), &e).embed(&e, &texts(0..2))).unwrap();
        let other = Counting::new(4);
        let err = block(own(dir.path(), &e).embed(&other, &texts(5..6))).unwrap_err();
        assert!(
            matches!(
                err,
                EmbedError::DimMismatch {
                    expected: 8,
                    got: 4
                }
            ),
            "{err}"
        );
        assert_eq!(own(dir.path(), &e).len(), 2);
    }

    #[test]
    fn dropping_most_texts_compacts_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = Counting::new(4);
        let t = texts(0..1200);
        let s = own(dir.path(), &e);
        block(s.embed(&e, &t)).unwrap();
        // Another process reads the file before it is compacted.
        let reader = own(dir.path(), &e);
        assert_eq!(reader.get(&t[1000]).unwrap(), e.vector(&t[1000]));
        let live: Vec<&str> = t[100..400].iter().map(String::as_str).collect();
        s.retain_texts(&live).unwrap();
        assert_eq!(s.len(), 300);
        assert_eq!(s.file_bytes(), HEADER + 300 * rec(4));
        // The reader follows the new file.
        assert_eq!(reader.len(), 300);
        assert_eq!(reader.get(&t[1000]), None);
        assert_eq!(reader.get(&t[399]).unwrap(), e.vector(&t[399]));
        let again = own(dir.path(), &e);
        for x in &t[100..400] {
            assert_eq!(again.get(x).unwrap(), e.vector(x));
        }
        // Nothing to drop: the file is left alone.
        let before = std::fs::metadata(s.path()).unwrap().ino();
        s.retain_texts(&live).unwrap();
        assert_eq!(std::fs::metadata(s.path()).unwrap().ino(), before);
    }

    #[test]
    fn a_file_mostly_of_duplicates_is_compacted_on_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let e = Counting::new(4);
        let s = own(dir.path(), &e);
        // As an older version could leave it: every key written 3 times.
        let t = texts(0..600);
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&4u32.to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
        for _ in 0..3 {
            for x in &t {
                push_record(&mut bytes, &s.key(x), &e.vector(x));
            }
        }
        std::fs::create_dir_all(s.path().parent().unwrap()).unwrap();
        std::fs::write(s.path(), &bytes).unwrap();
        let s = own(dir.path(), &e);
        assert_eq!(s.len(), 600);
        block(s.embed(&e, &texts(0..601))).unwrap();
        assert_eq!(e.count(), 1);
        assert_eq!(s.file_bytes(), HEADER + 601 * rec(4));
        let again = own(dir.path(), &e);
        assert_eq!(again.len(), 601);
        assert_eq!(again.get(&t[599]).unwrap(), e.vector(&t[599]));
    }

    #[test]
    fn writers_in_parallel_never_corrupt_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = Counting::new(16);
        let all = texts(0..2000);
        // Four writers with indexes of their own (as four processes),
        // overlapping texts, small appends interleaved.
        std::thread::scope(|scope| {
            for w in 0..4 {
                let (dir, e, all) = (dir.path(), &e, &all);
                scope.spawn(move || {
                    let s = own(dir, e);
                    let mine: Vec<String> = all
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| (i + w) % 3 != 0)
                        .map(|(_, t)| t.clone())
                        .collect();
                    for part in mine.chunks(37) {
                        block(s.embed(e, part)).unwrap();
                    }
                });
            }
        });
        let s = own(dir.path(), &e);
        assert_eq!(s.len(), 2000);
        // Each text stored once: writers skip what another appended.
        assert_eq!(s.file_bytes(), HEADER + 2000 * rec(16));
        let (rows, missing) = s.lookup(&all);
        assert!(missing.is_empty());
        for (i, t) in all.iter().enumerate() {
            assert_eq!(rows.row(i), e.vector(t).as_slice(), "{t}");
        }
    }

    #[test]
    fn stores_of_one_file_in_a_process_share_their_index() {
        let dir = tempfile::tempdir().unwrap();
        let e = Counting::new(4);
        let a = VectorStore::open(dir.path(), e.model_id());
        let b = VectorStore::open(dir.path(), e.model_id());
        assert!(Arc::ptr_eq(&a.shared, &b.shared));
        block(a.embed(&e, &texts(0..3))).unwrap();
        assert_eq!(b.len(), 3);
        let other = VectorStore::open(dir.path(), "test:other");
        assert!(!Arc::ptr_eq(&a.shared, &other.shared));
        assert!(other.is_empty());
    }

    #[test]
    fn chunks_cover_the_texts_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let e = Counting::new(4);
        let t = texts(0..10);
        let s = own(dir.path(), &e);
        let mut seen = Vec::new();
        block(s.embed_chunks(&e, &t, 4, |start, rows| {
            for (i, r) in rows.iter().enumerate() {
                seen.push((start + i, r.to_vec()));
            }
        }))
        .unwrap();
        assert_eq!(seen.len(), 10);
        for (i, v) in seen {
            assert_eq!(v, e.vector(&t[i]));
        }
    }

    #[test]
    fn the_index_is_compact() {
        // 16-byte key prefix + record number: ~25 bytes a vector in the map.
        assert_eq!(std::mem::size_of::<(Short, u32)>(), 20);
    }
}
