//! On-disk response cache: append-only pack files in one folder, keyed by
//! the SHA-256 of (server host, model, request body without the streaming
//! fields).
//!
//! Each finished [`ChatResponse`] is one record appended to
//! `DIR/pack-NNNNN.pack` with a single `write` (the file is opened with
//! `O_APPEND`): no temporary file, no rename, no `fsync` per response. The
//! cache only saves requests, so durability is not needed: a record torn by
//! a crash is simply absent, and the next answer is appended to a fresh
//! pack. The index (key → pack, offset, length) is rebuilt on first use by
//! walking the record headers, which skips the payloads.
//!
//! Record layout: `b"SRC1"`, payload length (u32 LE), the 32-byte key,
//! an FNV-1a checksum of the payload (u32 LE), then the payload (the
//! response as JSON, secrets redacted). The latest record of a key wins.
//!
//! Caches written by earlier versions (`DIR/ab/abcdef….json`, one file per
//! response) are still read. `--no-cache` ([`ResponseCache::disabled`])
//! neither reads nor writes.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::ChatResponse;

/// A content-addressed cache of LLM responses in one folder.
#[derive(Debug, Clone)]
pub struct ResponseCache {
    inner: Arc<Inner>,
    read: bool,
    write: bool,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    packs: OnceLock<Mutex<Packs>>,
}

/// Format version baked into every key, so a change of what is stored
/// invalidates old entries instead of misreading them.
const KEY_VERSION: &str = "straddle-cache-v1";

const MAGIC: &[u8; 4] = b"SRC1";
/// The payload tag of an embedding record (a chat record is JSON).
const VECTOR_MAGIC: &[u8] = b"VEC1";
const HEADER: usize = 4 + 4 + 32 + 4;
/// A pack is closed for appending once it is this large.
const PACK_LIMIT: u64 = 256 << 20;
/// No record is this large; a header claiming more is garbage.
const RECORD_LIMIT: u32 = 64 << 20;

#[derive(Debug, Clone, Copy)]
struct Loc {
    pack: u32,
    offset: u64,
    len: u32,
}

/// The open packs of a cache folder and the index over them.
#[derive(Debug, Default)]
struct Packs {
    index: HashMap<[u8; 32], Loc>,
    /// Read handles by pack number, opened on first use.
    readers: HashMap<u32, File>,
    /// The pack new records go to: its number, its handle, and where the
    /// file ended after our last write (or at opening).
    writer: Option<(u32, File, u64)>,
    /// Pack numbers found on disk, ascending.
    numbers: Vec<u32>,
    /// The last pack ended in a torn record: do not append to it.
    tail_torn: bool,
    /// The folder holds `ab/…json` entries of the old layout.
    legacy: bool,
}

fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The 32 raw bytes of a key: the hex SHA-256 itself, or a hash of any
/// other string.
fn raw_key(key: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    if key.len() == 64 && hex::decode_to_slice(key, &mut out).is_ok() {
        return out;
    }
    out.copy_from_slice(&Sha256::digest(key.as_bytes()));
    out
}

fn pack_name(n: u32) -> String {
    format!("pack-{n:05}.pack")
}

impl Packs {
    fn open(dir: &Path) -> Packs {
        let mut packs = Packs::default();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return packs;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name
                .strip_prefix("pack-")
                .and_then(|s| s.strip_suffix(".pack"))
                .and_then(|s| s.parse::<u32>().ok())
            {
                packs.numbers.push(n);
            } else if name.len() == 2 && e.file_type().is_ok_and(|t| t.is_dir()) {
                packs.legacy = true;
            }
        }
        packs.numbers.sort_unstable();
        for i in 0..packs.numbers.len() {
            let n = packs.numbers[i];
            let torn = packs.scan(dir, n);
            if i + 1 == packs.numbers.len() {
                packs.tail_torn = torn;
            }
        }
        packs
    }

    /// Index the records of pack `n`; true when it ends in a torn or
    /// unreadable record (everything before it is kept).
    fn scan(&mut self, dir: &Path, n: u32) -> bool {
        let Ok(file) = File::open(dir.join(pack_name(n))) else {
            return true;
        };
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut r = BufReader::with_capacity(64 << 10, file);
        let mut offset = 0u64;
        let mut header = [0u8; HEADER];
        while offset < size {
            if offset + HEADER as u64 > size || r.read_exact(&mut header).is_err() {
                return true;
            }
            let len = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
            let end = offset + HEADER as u64 + u64::from(len);
            if &header[..4] != MAGIC || len > RECORD_LIMIT || end > size {
                return true;
            }
            let key: [u8; 32] = header[8..40].try_into().expect("32 bytes");
            self.index.insert(
                key,
                Loc {
                    pack: n,
                    offset: offset + HEADER as u64,
                    len,
                },
            );
            if r.seek_relative(i64::from(len)).is_err() {
                return true;
            }
            offset = end;
        }
        false
    }

    fn read(&mut self, dir: &Path, key: &[u8; 32]) -> Option<Vec<u8>> {
        let loc = *self.index.get(key)?;
        let file = match self.readers.entry(loc.pack) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(File::open(dir.join(pack_name(loc.pack))).ok()?)
            }
        };
        let mut buf = vec![0u8; HEADER - 40 + loc.len as usize];
        file.read_exact_at(&mut buf, loc.offset - 4).ok()?;
        let sum = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes"));
        let payload = buf.split_off(4);
        (fnv1a(&payload) == sum).then_some(payload)
    }

    fn append(&mut self, dir: &Path, key: [u8; 32], payload: &[u8]) -> std::io::Result<()> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| *l <= RECORD_LIMIT)
            .ok_or_else(|| std::io::Error::other("response too large to cache"))?;
        if self
            .writer
            .as_ref()
            .is_some_and(|(_, _, end)| *end >= PACK_LIMIT)
        {
            self.writer = None;
        }
        if self.writer.is_none() {
            std::fs::create_dir_all(dir)?;
            let n = match self.numbers.last() {
                Some(&last) if !self.tail_torn && self.pack_size(dir, last) < PACK_LIMIT => last,
                Some(&last) => last + 1,
                None => 0,
            };
            let f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(dir.join(pack_name(n)))?;
            if self.numbers.last() != Some(&n) {
                self.numbers.push(n);
                self.tail_torn = false;
            }
            let end = f.metadata()?.len();
            self.writer = Some((n, f, end));
        }
        let (n, f, end) = self.writer.as_mut().expect("opened above");
        let mut record = Vec::with_capacity(HEADER + payload.len());
        record.extend_from_slice(MAGIC);
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&key);
        record.extend_from_slice(&fnv1a(payload).to_le_bytes());
        record.extend_from_slice(payload);
        // One write on an O_APPEND handle: records of concurrent writers
        // do not interleave, and the position after it locates ours.
        f.write_all(&record)?;
        *end = f.stream_position()?;
        self.index.insert(
            key,
            Loc {
                pack: *n,
                offset: *end - u64::from(len),
                len,
            },
        );
        Ok(())
    }

    fn pack_size(&self, dir: &Path, n: u32) -> u64 {
        std::fs::metadata(dir.join(pack_name(n)))
            .map(|m| m.len())
            .unwrap_or(0)
    }
}

impl ResponseCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> ResponseCache {
        ResponseCache {
            inner: Arc::new(Inner {
                dir: dir.into(),
                packs: OnceLock::new(),
            }),
            read: true,
            write: true,
        }
    }

    /// The same cache switched off (`--no-cache`): lookups always miss and
    /// nothing is written, so every request goes to the server and the
    /// folder is left as it was.
    pub fn disabled(mut self) -> ResponseCache {
        self.read = false;
        self.write = false;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn packs(&self) -> std::sync::MutexGuard<'_, Packs> {
        self.inner
            .packs
            .get_or_init(|| Mutex::new(Packs::open(&self.inner.dir)))
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The key of a request: hex SHA-256 over host, model and the body
    /// with `stream` and `stream_options` removed (serde_json maps are
    /// sorted, so the serialisation is canonical).
    pub fn key(host: &str, model: &str, body: &Map<String, Value>) -> String {
        // The body without its stream fields (the same bytes as
        // serialising a copy without them).
        hex::encode(Self::hash(host, model, &WithoutStream(body)))
    }

    /// [`Self::key`] of the body `{"input": input}` as raw bytes (the
    /// vector store's key of a text), without building the body: no copy
    /// of the text, which may be megabytes.
    pub fn input_key(host: &str, model: &str, input: &str) -> [u8; 32] {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            input: &'a str,
        }
        // A struct of one field serialises as the map of that one key.
        Self::hash(host, model, &Body { input })
    }

    /// SHA-256 over host, model and `body` as JSON, written straight into
    /// the hash: [`Self::key`] and [`Self::input_key`].
    fn hash(host: &str, model: &str, body: &impl serde::Serialize) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [KEY_VERSION, host, model] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let _ = serde_json::to_writer(HashWriter(&mut h), body);
        h.finalize().into()
    }

    /// Where the old layout kept `key`.
    fn legacy_path(&self, key: &str) -> PathBuf {
        self.inner
            .dir
            .join(&key[..2.min(key.len())])
            .join(format!("{key}.json"))
    }

    /// The stored response for `key`, marked `cached`; `None` on a miss,
    /// a corrupt entry or a disabled cache.
    pub fn get(&self, key: &str) -> Option<ChatResponse> {
        if !self.read {
            return None;
        }
        let (bytes, legacy) = {
            let mut packs = self.packs();
            match packs.read(&self.inner.dir, &raw_key(key)) {
                Some(b) => (Some(b), false),
                None => (None, packs.legacy),
            }
        };
        let bytes = match bytes {
            Some(b) => b,
            None if legacy => std::fs::read(self.legacy_path(key)).ok()?,
            None => return None,
        };
        match serde_json::from_slice::<ChatResponse>(&bytes) {
            Ok(mut r) => {
                r.cached = true;
                Some(r)
            }
            Err(e) => {
                tracing::warn!(
                    "ignoring corrupt cache entry {key} in {}: {e}",
                    self.inner.dir.display()
                );
                None
            }
        }
    }

    /// Whether lookups can hit (false under `--no-cache`).
    pub fn is_enabled(&self) -> bool {
        self.read
    }

    /// The key of one text's embedding by `model` on `host` (the text is
    /// the request: a vector is cached per text, whatever batch it came in).
    pub fn embedding_key(host: &str, model: &str, text: &str) -> String {
        let mut body = Map::new();
        body.insert("endpoint".into(), Value::String("embeddings".into()));
        body.insert("input".into(), Value::String(text.to_owned()));
        ResponseCache::key(host, model, &body)
    }

    /// The stored embedding for `key` (see [`embedding_key`](Self::embedding_key));
    /// `None` on a miss, a record that is not a vector or a disabled cache.
    pub fn get_vector(&self, key: &str) -> Option<Vec<f32>> {
        if !self.read {
            return None;
        }
        let bytes = self.packs().read(&self.inner.dir, &raw_key(key))?;
        let floats = bytes.strip_prefix(VECTOR_MAGIC)?;
        if floats.is_empty() || floats.len() % 4 != 0 {
            tracing::warn!(
                "ignoring corrupt vector {key} in {}",
                self.inner.dir.display()
            );
            return None;
        }
        Some(
            floats
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        )
    }

    /// Append an embedding under `key`: the vector as little-endian `f32`s
    /// after a 4-byte tag, in the same packs as the chat responses.
    pub fn put_vector(&self, key: &str, vector: &[f32]) -> std::io::Result<()> {
        if !self.write {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(VECTOR_MAGIC.len() + 4 * vector.len());
        bytes.extend_from_slice(VECTOR_MAGIC);
        for x in vector {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        self.packs().append(&self.inner.dir, raw_key(key), &bytes)
    }

    /// Append `resp` under `key` (one write, no sync: see the module
    /// docs). A disabled cache stores nothing.
    pub fn put(&self, key: &str, resp: &ChatResponse) -> std::io::Result<()> {
        if !self.write {
            return Ok(());
        }
        let mut stored = resp.clone();
        stored.cached = false;
        let text = serde_json::to_string(&stored).map_err(std::io::Error::other)?;
        // No secret on disk, even when a server echoed the key in its reply.
        let bytes = crate::secrets::redact_owned(text).into_bytes();
        self.packs().append(&self.inner.dir, raw_key(key), &bytes)
    }
}
/// A request body less `stream` and `stream_options` (streamed or not,
/// the same answer).
struct WithoutStream<'a>(&'a Map<String, Value>);

impl serde::Serialize for WithoutStream<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(
            self.0
                .iter()
                .filter(|(k, _)| *k != "stream" && *k != "stream_options"),
        )
    }
}

/// Bytes written are hashed.
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::TokenUsage;
    use serde_json::json;

    /// The input key is the key of the body `{"input": text}`, whatever
    /// the text needs escaped.
    #[test]
    fn the_input_key_is_the_key_of_the_input_body() {
        for text in [
            "",
            "plain",
            "quote \" and \\ back",
            "tab\tnew\nline \u{1} é 日本 🎉",
        ] {
            let mut body = Map::new();
            body.insert("input".into(), Value::String(text.into()));
            let hex = ResponseCache::key("embeddings", "local:m@bf16", &body);
            assert_eq!(
                hex::encode(ResponseCache::input_key("embeddings", "local:m@bf16", text)),
                hex,
                "{text:?}"
            );
        }
    }

    fn resp(text: &str) -> ChatResponse {
        ChatResponse {
            text: text.into(),
            choices: vec![text.into()],
            finish_reason: Some("stop".into()),
            usage: TokenUsage::default(),
            logprobs: None,
            cached: false,
            model: "m".into(),
            request_id: "r".into(),
        }
    }

    fn body(temp: f64) -> Map<String, Value> {
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": temp})
            .as_object()
            .unwrap()
            .clone()
    }

    /// Keys written by earlier versions (a copy of the body without the
    /// stream fields, serialised, hashed) still match.
    #[test]
    fn key_is_the_hash_of_the_body_without_its_stream_fields() {
        let mut streamed = body(0.7);
        streamed.insert("stream".into(), json!(true));
        streamed.insert("stream_options".into(), json!({"include_usage": true}));
        let mut h = Sha256::new();
        for part in [KEY_VERSION, "h", "m"] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.update(serde_json::to_vec(&body(0.7)).unwrap());
        assert_eq!(
            ResponseCache::key("h", "m", &streamed),
            hex::encode(h.finalize())
        );
    }

    #[test]
    fn key_ignores_stream_but_not_parameters_or_host() {
        let mut streamed = body(1.0);
        streamed.insert("stream".into(), json!(true));
        streamed.insert("stream_options".into(), json!({"include_usage": true}));
        let k = ResponseCache::key("h", "m", &body(1.0));
        assert_eq!(k, ResponseCache::key("h", "m", &streamed));
        assert_ne!(k, ResponseCache::key("h", "m", &body(0.5)));
        assert_ne!(k, ResponseCache::key("h2", "m", &body(1.0)));
        assert_ne!(k, ResponseCache::key("h", "m2", &body(1.0)));
    }

    fn packs_in(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "pack"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn vectors_share_the_packs_and_obey_no_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResponseCache::new(dir.path());
        let k = ResponseCache::embedding_key("h", "m", "a text");
        assert_ne!(k, ResponseCache::embedding_key("h", "m2", "a text"));
        assert_ne!(k, ResponseCache::embedding_key("h", "m", "another text"));
        cache.put_vector(&k, &[0.5, -1.25, 3.0]).unwrap();
        let chat = ResponseCache::key("h", "m", &body(1.0));
        cache.put(&chat, &resp("hello")).unwrap();
        let reopened = ResponseCache::new(dir.path());
        assert_eq!(reopened.get_vector(&k).unwrap(), vec![0.5, -1.25, 3.0]);
        assert_eq!(reopened.get(&chat).unwrap().text, "hello");
        // A chat record is not a vector, and the other way round.
        assert!(reopened.get_vector(&chat).is_none());
        assert!(reopened.get(&k).is_none());
        assert_eq!(packs_in(dir.path()).len(), 1, "one pack for both kinds");
        let off = ResponseCache::new(dir.path()).disabled();
        assert!(!off.is_enabled());
        assert!(off.get_vector(&k).is_none());
        let k2 = ResponseCache::embedding_key("h", "m", "new");
        off.put_vector(&k2, &[1.0]).unwrap();
        assert!(ResponseCache::new(dir.path()).get_vector(&k2).is_none());
    }

    #[test]
    fn roundtrip_survives_reopen_and_latest_record_wins() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResponseCache::new(dir.path());
        let k = ResponseCache::key("h", "m", &body(1.0));
        let k2 = ResponseCache::key("h", "m", &body(0.5));
        assert!(cache.get(&k).is_none());
        cache.put(&k, &resp("hello")).unwrap();
        cache.put(&k2, &resp("other")).unwrap();
        let got = cache.get(&k).unwrap();
        assert!(got.cached);
        assert_eq!(got.text, "hello");
        cache.put(&k, &resp("again")).unwrap();
        assert_eq!(cache.get(&k).unwrap().text, "again");
        // A new handle rebuilds the index from the pack.
        let reopened = ResponseCache::new(dir.path());
        assert_eq!(reopened.get(&k).unwrap().text, "again");
        assert_eq!(reopened.get(&k2).unwrap().text, "other");
        assert_eq!(
            packs_in(dir.path()).len(),
            1,
            "one pack, no file per response"
        );
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary files");
    }

    #[test]
    fn disabled_cache_neither_reads_nor_writes() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("cache");
        let k = ResponseCache::key("h", "m", &body(1.0));
        ResponseCache::new(&folder).put(&k, &resp("kept")).unwrap();
        let before = std::fs::metadata(&packs_in(&folder)[0]).unwrap().len();
        let off = ResponseCache::new(&folder).disabled();
        assert!(off.get(&k).is_none());
        off.put(&ResponseCache::key("h", "m", &body(0.1)), &resp("x"))
            .unwrap();
        assert_eq!(
            std::fs::metadata(&packs_in(&folder)[0]).unwrap().len(),
            before
        );
        let fresh = dir.path().join("never");
        ResponseCache::new(&fresh)
            .disabled()
            .put(&k, &resp("x"))
            .unwrap();
        assert!(!fresh.exists(), "--no-cache creates nothing");
    }

    #[test]
    fn a_torn_tail_and_a_corrupt_payload_are_misses_and_writing_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResponseCache::new(dir.path());
        let keys: Vec<String> = (0..3)
            .map(|i| ResponseCache::key("h", "m", &body(f64::from(i))))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            cache.put(k, &resp(&format!("r{i}"))).unwrap();
        }
        let pack = packs_in(dir.path())[0].clone();
        let mut bytes = std::fs::read(&pack).unwrap();
        // Flip a byte inside the second payload, cut the third in half.
        let record = bytes.len() / 3;
        bytes[record + HEADER + 3] ^= 0x55;
        bytes.truncate(bytes.len() - 10);
        std::fs::write(&pack, &bytes).unwrap();

        let reopened = ResponseCache::new(dir.path());
        assert_eq!(reopened.get(&keys[0]).unwrap().text, "r0");
        assert!(reopened.get(&keys[1]).is_none(), "checksum mismatch");
        assert!(reopened.get(&keys[2]).is_none(), "torn record");
        reopened.put(&keys[2], &resp("again")).unwrap();
        assert_eq!(
            packs_in(dir.path()).len(),
            2,
            "a torn pack is not appended to"
        );
        let third = ResponseCache::new(dir.path());
        assert_eq!(third.get(&keys[2]).unwrap().text, "again");
        assert_eq!(third.get(&keys[0]).unwrap().text, "r0");
    }

    #[test]
    fn entries_of_the_old_file_per_response_layout_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResponseCache::new(dir.path());
        let k = ResponseCache::key("h", "m", &body(1.0));
        let path = cache.legacy_path(&k);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_vec(&resp("old")).unwrap()).unwrap();
        let cache = ResponseCache::new(dir.path());
        assert_eq!(cache.get(&k).unwrap().text, "old");
        std::fs::write(&path, b"{\"text\": \"trunc").unwrap();
        assert!(ResponseCache::new(dir.path()).get(&k).is_none());
    }

    #[test]
    fn two_handles_appending_to_one_folder_keep_every_record() {
        let dir = tempfile::tempdir().unwrap();
        let a = ResponseCache::new(dir.path());
        let b = ResponseCache::new(dir.path());
        let keys: Vec<String> = (0..40)
            .map(|i| ResponseCache::key("h", "m", &body(f64::from(i))))
            .collect();
        std::thread::scope(|s| {
            for (cache, half) in [(&a, 0), (&b, 1)] {
                let keys = &keys;
                s.spawn(move || {
                    for (i, k) in keys.iter().enumerate().filter(|(i, _)| i % 2 == half) {
                        cache.put(k, &resp(&format!("r{i}"))).unwrap();
                    }
                });
            }
        });
        let c = ResponseCache::new(dir.path());
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(c.get(k).unwrap().text, format!("r{i}"));
        }
    }
}
