//! Exact and near-duplicate detection.
//!
//! Exact: the normalised text (lower case, letters and digits only, single
//! spaces). Near: Jaccard similarity of word shingles (unigrams and
//! bigrams, hashed) at or above a threshold. Candidates come from MinHash
//! locality-sensitive hashing (banded signatures), so a check costs a few
//! hash-table lookups however many texts are indexed; every candidate is
//! then verified with the exact Jaccard of the stored shingle sets, so the
//! threshold means what it says. LSH may miss a pair just above the
//! threshold (probability below 1e-3 at 0.8 with the default banding), never
//! reports one below it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::parse::normalize;
use super::sampling::splitmix64;
use crate::domain::{Origin, ProjectState, SampleId, Status};

/// Hasher for keys that are already well-mixed 64-bit hashes.
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type BandMap = HashMap<u64, u32, BuildHasherDefault<IdHasher>>;

/// Signature length (hash functions).
const HASHES: usize = 64;

/// Hash of a string (FNV-1a, then mixed): stable across runs and platforms.
fn hash_str(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    splitmix64(h)
}

/// Sorted, distinct shingle hashes of a normalised text: every word and
/// every pair of adjacent words.
pub fn shingles(normalized: &str) -> Vec<u64> {
    // One pass over the words, no list of words or bigrams on the way; a
    // long text (a 10 MB seed: 2 million words, 60,000 distinct
    // shingles) is compacted (sorted, deduplicated) whenever the buffer
    // fills, so memory follows the distinct shingles, not the length.
    let mut out: Vec<u64> = Vec::with_capacity(normalized.len().min(SHINGLE_CHUNK) / 2);
    let mut prev: Option<u64> = None;
    for w in normalized.split(' ').filter(|w| !w.is_empty()) {
        let h = hash_str(w);
        if out.len() + 2 > out.capacity() && out.len() >= SHINGLE_CHUNK {
            out.sort_unstable();
            out.dedup();
            if out.len() * 2 > out.capacity() {
                out.reserve(out.capacity());
            }
        }
        out.push(h);
        if let Some(p) = prev {
            out.push(splitmix64(p.rotate_left(17) ^ h ^ 0x5851_F42D_4C95_7F2D));
        }
        prev = Some(h);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Shingles [`shingles`] collects before it first compacts its buffer.
const SHINGLE_CHUNK: usize = 1 << 16;

/// Jaccard similarity of two sorted, distinct sets.
pub fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    inter as f64 / (a.len() + b.len() - inter) as f64
}

fn signature(sh: &[u64]) -> [u64; HASHES] {
    let mut sig = [u64::MAX; HASHES];
    for &s in sh {
        for (k, slot) in sig.iter_mut().enumerate() {
            let h = splitmix64(s ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            if h < *slot {
                *slot = h;
            }
        }
    }
    sig
}

/// Rows per band for a threshold: more rows = fewer, likelier candidates.
fn rows_for(threshold: f64) -> usize {
    if threshold >= 0.7 {
        4
    } else if threshold >= 0.5 {
        2
    } else {
        1
    }
}

/// Why a text is a duplicate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DupKind {
    /// Same normalised text.
    Exact,
    /// Jaccard similarity of shingles ≥ threshold.
    Near(f64),
}

impl DupKind {
    /// The decision reason: "duplicate" or "near_duplicate".
    pub fn reason(self) -> &'static str {
        match self {
            DupKind::Exact => "duplicate",
            DupKind::Near(_) => "near_duplicate",
        }
    }
}

/// A duplicate found: of which sample, and how.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DupMatch {
    pub of: SampleId,
    pub kind: DupKind,
}

/// Index of the texts seen so far.
///
/// The LSH buckets are chains: per band, a map from the band's key to the
/// latest text in that bucket, and per (text, band) the text before it in
/// the same bucket. That is one map slot and one `u32` per text and band
/// instead of a `Vec` per bucket (nearly every bucket holds one text), so
/// a 500k-text index is a few allocations, not eight million.
#[derive(Debug, Clone)]
pub struct DedupIndex {
    threshold: f64,
    rows: usize,
    exact: HashMap<String, SampleId>,
    sets: Vec<(SampleId, Vec<u64>)>,
    /// Per band: key → the latest text (index into `sets`) in the bucket.
    bands: Vec<BandMap>,
    /// `next[i * bands + b]`: the text before `i` in its bucket of band
    /// `b`, or [`NONE`].
    next: Vec<u32>,
}

/// End of a bucket chain.
const NONE: u32 = u32::MAX;

/// Candidates read per bucket, newest first. Texts made from one template
/// ("Which river … near hill …?") share their common words' min-hashes, so
/// a few buckets hold most of the index; reading them whole makes each
/// check linear in the index (quadratic over a 100k-line batch). A real
/// near duplicate (Jaccard ≥ 0.7) shares most of its 16 bands, nearly all
/// of them in buckets its rarer words keep small, so it is still found.
const MAX_CHAIN: usize = 64;

/// A text's normal form, shingles and signature, computed once for both
/// the check and the insert.
struct Prepared {
    norm: String,
    shingles: Vec<u64>,
    sig: Option<[u64; HASHES]>,
}

impl DedupIndex {
    /// An empty index; near duplicates at Jaccard ≥ `threshold` (> 1
    /// disables near-duplicate detection).
    pub fn new(threshold: f64) -> DedupIndex {
        let rows = rows_for(threshold);
        DedupIndex {
            threshold,
            rows,
            exact: HashMap::new(),
            sets: Vec::new(),
            bands: vec![BandMap::default(); HASHES / rows],
            next: Vec::new(),
        }
    }

    /// Index every sample of a project that generated texts must not
    /// repeat: seeds, held-out examples and generated samples not rejected
    /// as duplicates themselves.
    pub fn from_state(state: &ProjectState, threshold: f64) -> DedupIndex {
        let mut idx = DedupIndex::new(threshold);
        idx.reserve(state.samples.len());
        for s in &state.samples {
            let dup_rejected = s.origin == Origin::Generated
                && s.status() == Status::Rejected
                && s.decision()
                    .and_then(|d| d.reason.as_deref())
                    .is_some_and(|r| r == "duplicate" || r == "near_duplicate");
            if !dup_rejected {
                idx.insert(s.id, s.text());
            }
        }
        idx
    }

    /// Make room for `n` more texts (a caller that knows how many are
    /// coming, e.g. a batch ingest, saves the growing and rehashing).
    pub fn reserve(&mut self, n: usize) {
        self.exact.reserve(n);
        self.sets.reserve(n);
        self.next.reserve(n * self.bands.len());
        for b in &mut self.bands {
            b.reserve(n);
        }
    }

    pub fn len(&self) -> usize {
        self.sets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    fn band_keys<'a>(&self, sig: &'a [u64; HASHES]) -> impl Iterator<Item = u64> + 'a {
        sig.chunks(self.rows).enumerate().map(|(b, rows)| {
            rows.iter()
                .fold(splitmix64(b as u64), |h, r| splitmix64(h ^ r))
        })
    }

    /// Is `text` a duplicate of something indexed?
    pub fn check(&self, text: &str) -> Option<DupMatch> {
        let norm = normalize(text);
        if let Some(&of) = self.exact.get(&norm) {
            return Some(DupMatch {
                of,
                kind: DupKind::Exact,
            });
        }
        if self.threshold > 1.0 {
            return None;
        }
        let p = self.prepare_near(norm);
        self.near(&p)
    }

    /// Shingles and signature of a normal form.
    fn prepare_near(&self, norm: String) -> Prepared {
        let shingles = shingles(&norm);
        let sig = (!shingles.is_empty()).then(|| signature(&shingles));
        Prepared {
            norm,
            shingles,
            sig,
        }
    }

    /// The most similar indexed text at or above the threshold.
    fn near(&self, p: &Prepared) -> Option<DupMatch> {
        let sig = p.sig.as_ref()?;
        let mut best: Option<(f64, SampleId)> = None;
        // Candidates met in an earlier band (few: most buckets hold one).
        let mut seen: Vec<u32> = Vec::new();
        for (b, key) in self.band_keys(sig).enumerate() {
            let mut i = self.bands[b].get(&key).copied().unwrap_or(NONE);
            let mut read = 0;
            while i != NONE && read < MAX_CHAIN {
                read += 1;
                let at = i;
                i = self.next[at as usize * self.bands.len() + b];
                if seen.contains(&at) {
                    continue;
                }
                seen.push(at);
                let (id, other) = &self.sets[at as usize];
                let j = jaccard(&p.shingles, other);
                if j >= self.threshold && best.is_none_or(|(bj, _)| j > bj) {
                    best = Some((j, *id));
                }
            }
        }
        best.map(|(j, of)| DupMatch {
            of,
            kind: DupKind::Near(j),
        })
    }

    /// Add a text.
    pub fn insert(&mut self, id: SampleId, text: &str) {
        let p = self.prepare_near(normalize(text));
        self.add(id, p);
    }

    fn add(&mut self, id: SampleId, p: Prepared) {
        self.exact.entry(p.norm).or_insert(id);
        let Some(sig) = p.sig else {
            return;
        };
        let i = self.sets.len() as u32;
        let keys: Vec<u64> = self.band_keys(&sig).collect();
        for (b, key) in keys.into_iter().enumerate() {
            let prev = self.bands[b].insert(key, i).unwrap_or(NONE);
            self.next.push(prev);
        }
        self.sets.push((id, p.shingles));
    }

    /// Check, and index the text when it is new (its normal form,
    /// shingles and signature computed once for both).
    pub fn check_insert(&mut self, id: SampleId, text: &str) -> Option<DupMatch> {
        let norm = normalize(text);
        if let Some(&of) = self.exact.get(&norm) {
            return Some(DupMatch {
                of,
                kind: DupKind::Exact,
            });
        }
        let p = self.prepare_near(norm);
        if self.threshold <= 1.0
            && let Some(m) = self.near(&p)
        {
            return Some(m);
        }
        self.add(id, p);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The word + bigram set, sorted and distinct, built the plain way.
    fn shingles_reference(normalized: &str) -> Vec<u64> {
        let words: Vec<u64> = normalized
            .split(' ')
            .filter(|w| !w.is_empty())
            .map(hash_str)
            .collect();
        let mut out = words.clone();
        out.extend(
            words
                .windows(2)
                .map(|p| splitmix64(p[0].rotate_left(17) ^ p[1] ^ 0x5851_F42D_4C95_7F2D)),
        );
        out.sort_unstable();
        out.dedup();
        out
    }

    #[test]
    fn shingles_of_long_texts_are_compacted_but_the_same_set() {
        // Short, empty, and long enough to be compacted several times
        // (repeated words, as in a long seed, and distinct ones).
        let long_repeats: String = (0..300_000)
            .map(|i| ["alpha", "beta", "gamma", "delta", "eps"][i * 7 % 5])
            .collect::<Vec<_>>()
            .join(" ");
        let long_distinct: String = (0..150_000)
            .map(|i| format!("w{}", i % 70_000))
            .collect::<Vec<_>>()
            .join(" ");
        for t in [
            "",
            "one",
            "who wrote hamlet",
            "  a  b a b ",
            &long_repeats,
            &long_distinct,
        ] {
            assert_eq!(shingles(t), shingles_reference(t), "{:.40}", t);
        }
        assert!(shingles(&long_repeats).len() < 40);
    }

    #[test]
    fn exact_after_normalisation() {
        let mut d = DedupIndex::new(0.8);
        d.insert(1, "Who wrote Hamlet?");
        assert_eq!(
            d.check("  who WROTE hamlet "),
            Some(DupMatch {
                of: 1,
                kind: DupKind::Exact
            })
        );
        assert_eq!(d.check("Who wrote Macbeth?"), None);
    }

    #[test]
    fn near_threshold_is_exact_jaccard() {
        let a = "what is the name of the longest river in south america today";
        let b = "what is the name of the longest river in south america now";
        let sa = shingles(&normalize(a));
        let sb = shingles(&normalize(b));
        let j = jaccard(&sa, &sb);
        assert!(j > 0.75 && j < 0.9, "{j}");
        let mut lo = DedupIndex::new(j - 0.01);
        lo.insert(7, a);
        let m = lo.check(b).unwrap();
        assert_eq!(m.of, 7);
        assert_eq!(m.kind.reason(), "near_duplicate");
        let mut hi = DedupIndex::new(j + 0.01);
        hi.insert(7, a);
        assert_eq!(hi.check(b), None);
        // Disabled near detection keeps exact.
        let mut off = DedupIndex::new(1.1);
        off.insert(1, a);
        assert_eq!(off.check(b), None);
        assert!(off.check(a).is_some());
    }

    #[test]
    fn jaccard_basics() {
        assert_eq!(jaccard(&[1, 2, 3], &[1, 2, 3]), 1.0);
        assert_eq!(jaccard(&[1, 2], &[3, 4]), 0.0);
        assert!((jaccard(&[1, 2, 3], &[2, 3, 4]) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn lsh_finds_what_brute_force_finds() {
        // Random-ish sentences from a small vocabulary, with edits.
        let vocab: Vec<String> = (0..60).map(|i| format!("w{i}")).collect();
        let mut texts = Vec::new();
        let mut x = 1u64;
        for _ in 0..400 {
            let mut words = Vec::new();
            for _ in 0..12 {
                x = splitmix64(x);
                words.push(vocab[(x % 60) as usize].clone());
            }
            texts.push(words.join(" "));
            // A near copy with one word changed.
            x = splitmix64(x);
            let k = (x % 12) as usize;
            words[k] = "changed".into();
            texts.push(words.join(" "));
        }
        let threshold = 0.6;
        let mut idx = DedupIndex::new(threshold);
        let mut brute: Vec<Vec<u64>> = Vec::new();
        let (mut agree, mut total) = (0, 0);
        for (i, t) in texts.iter().enumerate() {
            let sh = shingles(&normalize(t));
            let bf = brute.iter().any(|o| jaccard(&sh, o) >= threshold);
            let lsh = idx.check(t).is_some();
            assert!(!lsh || bf, "LSH never reports below the threshold");
            total += usize::from(bf);
            agree += usize::from(bf && lsh);
            idx.insert(i as u64, t);
            brute.push(sh);
        }
        assert!(total > 100);
        assert!(agree as f64 >= 0.97 * total as f64, "{agree}/{total}");
    }
}
