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

use super::parse::normalize;
use super::sampling::splitmix64;
use crate::domain::{Origin, ProjectState, SampleId, Status};

/// Signature length (hash functions).
const HASHES: usize = 64;

/// A MinHash signature: per hash function, the least value over the
/// text's shingles.
type Signature = [u32; HASHES];

/// `splitmix64` as a `const fn`, for the tables below.
const fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Multipliers (odd) and addends of the signature's hash functions
/// `h_k(x) = MUL[k]·x + ADD[k] mod 2³²`, fixed so signatures are the same
/// on every run and platform.
const MUL: [u32; HASHES] = {
    let mut t = [0u32; HASHES];
    let mut k = 0;
    while k < HASHES {
        t[k] = (mix(2 * k as u64 + 1) >> 32) as u32 | 1;
        k += 1;
    }
    t
};
const ADD: [u32; HASHES] = {
    let mut t = [0u32; HASHES];
    let mut k = 0;
    while k < HASHES {
        t[k] = (mix(2 * k as u64 + 2) >> 32) as u32;
        k += 1;
    }
    t
};

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

/// The MinHash signature of a shingle set. A shingle is already a
/// well-mixed 64-bit hash, so the 64 hash functions are cheap ones of it
/// (one multiply and add each on its 32 folded bits, [`MUL`], [`ADD`])
/// instead of 64 full mixes: the 64 lanes run as a few vector
/// instructions per shingle. Same value on every CPU; AVX2 is used when
/// the processor has it (checked at run time).
fn signature(sh: &[u64]) -> Signature {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the processor has AVX2 (checked just above).
        return unsafe { signature_avx2(sh) };
    }
    signature_portable(sh)
}

#[inline(always)]
fn signature_portable(sh: &[u64]) -> Signature {
    let mut sig = [u32::MAX; HASHES];
    for &s in sh {
        let x = (s ^ (s >> 32)) as u32;
        for k in 0..HASHES {
            sig[k] = sig[k].min(MUL[k].wrapping_mul(x).wrapping_add(ADD[k]));
        }
    }
    sig
}

/// [`signature_portable`] compiled for AVX2 (the same arithmetic).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn signature_avx2(sh: &[u64]) -> Signature {
    signature_portable(sh)
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
/// The LSH buckets are chains in flat tables: per band, a table of
/// `2^slot_bits` heads (the latest text whose band key falls in that slot)
/// and per (text, band) a [`Link`]: the key's top 32 bits and the text
/// before it in the same slot. A chain may hold texts of other keys that
/// share the slot (the table is at most as long as the index, so about
/// one); reading it skips them by their key. Shingle sets sit end to end
/// in one vector. A 500k-text index is a few large allocations of about
/// 200 bytes per text (hash maps per band took three times that, every
/// page of it touched at random).
#[derive(Debug, Clone)]
pub struct DedupIndex {
    threshold: f64,
    rows: usize,
    bands: usize,
    exact: HashMap<String, SampleId>,
    /// Per indexed text (index `i`): its sample id, and its shingles at
    /// `shingles[starts[i]..starts[i + 1]]`.
    ids: Vec<SampleId>,
    starts: Vec<usize>,
    shingles: Vec<u64>,
    /// `heads[b << slot_bits | slot]`: the latest text in that slot of
    /// band `b`, or [`NONE`].
    heads: Vec<u32>,
    slot_bits: u32,
    /// `links[i * bands + b]`: text `i` in band `b`.
    links: Vec<Link>,
}

/// A text's place in one band's chain.
#[derive(Debug, Clone, Copy)]
struct Link {
    /// Top 32 bits of the band key (its slot is the top `slot_bits`).
    key: u32,
    /// The text before it in the same slot, or [`NONE`].
    next: u32,
}

/// End of a bucket chain.
const NONE: u32 = u32::MAX;

/// Slots per band of a new index (grows by doubling with the index).
const MIN_SLOT_BITS: u32 = 8;

/// Candidates read per bucket, newest first. Texts made from one template
/// ("Which river … near hill …?") share their common words' min-hashes, so
/// a few buckets hold most of the index; reading them whole makes each
/// check linear in the index (quadratic over a 100k-line batch). A real
/// near duplicate (Jaccard ≥ 0.7) shares most of its 16 bands, nearly all
/// of them in buckets its rarer words keep small, so it is still found.
const MAX_CHAIN: usize = 64;

/// A text's normal form, shingles and signature, computed once for both
/// the check and the insert ([`DedupIndex::prepare`]; independent of the
/// index, so it may be made ahead and on another thread).
#[derive(Debug, Clone)]
pub struct Prepared {
    norm: String,
    shingles: Vec<u64>,
    sig: Option<Signature>,
}

impl DedupIndex {
    /// An empty index; near duplicates at Jaccard ≥ `threshold` (> 1
    /// disables near-duplicate detection).
    pub fn new(threshold: f64) -> DedupIndex {
        let rows = rows_for(threshold);
        let bands = HASHES / rows;
        DedupIndex {
            threshold,
            rows,
            bands,
            exact: HashMap::new(),
            ids: Vec::new(),
            starts: vec![0],
            shingles: Vec::new(),
            heads: vec![NONE; bands << MIN_SLOT_BITS],
            slot_bits: MIN_SLOT_BITS,
            links: Vec::new(),
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
        self.ids.reserve(n);
        self.starts.reserve(n);
        // Shingles of a short text: about twice its words.
        self.shingles.reserve(n * 24);
        self.links.reserve(n * self.bands);
        self.grow_slots(self.ids.len() + n);
    }

    /// At least `n` slots per band (a power of two), the chains rebuilt
    /// in the same newest-first order.
    fn grow_slots(&mut self, n: usize) {
        let mut bits = self.slot_bits;
        while (1usize << bits) < n && bits < 30 {
            bits += 1;
        }
        if bits == self.slot_bits {
            return;
        }
        self.slot_bits = bits;
        self.heads = vec![NONE; self.bands << bits];
        for i in 0..self.ids.len() {
            for b in 0..self.bands {
                let l = &mut self.links[i * self.bands + b];
                let head = &mut self.heads[(b << bits) | (l.key >> (32 - bits)) as usize];
                l.next = *head;
                *head = i as u32;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn band_keys<'a>(&self, sig: &'a Signature) -> impl Iterator<Item = u32> + 'a {
        sig.chunks(self.rows).enumerate().map(|(b, rows)| {
            // The band's rows packed two to a word, then mixed once per
            // word (the band number keeps equal rows of different bands
            // apart); the top 32 bits are the key.
            let h = rows.chunks(2).fold(b as u64, |h, pair| {
                let w = u64::from(pair[0]) | pair.get(1).map_or(0, |&r| u64::from(r) << 32);
                splitmix64(h ^ w)
            });
            (h >> 32) as u32
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
        let p = Self::prepare_near(norm);
        self.near(&p)
    }

    /// What checking and indexing `text` computes before it looks at the
    /// index (see [`DedupIndex::check_insert_prepared`]).
    pub fn prepare(text: &str) -> Prepared {
        Self::prepare_near(normalize(text))
    }

    /// Shingles and signature of a normal form.
    fn prepare_near(norm: String) -> Prepared {
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
        let bits = self.slot_bits;
        // Each band's head, then the first link of its chain, are loaded
        // for all bands before any is looked at: in a large index each is
        // a cache miss, and independent loads wait for memory together
        // instead of one after another.
        let mut keys = [0u32; HASHES];
        for (b, key) in self.band_keys(sig).enumerate() {
            keys[b] = key;
        }
        let keys = &keys[..self.bands];
        let mut firsts = [(NONE, Link { key: 0, next: NONE }); HASHES];
        for (b, key) in keys.iter().enumerate() {
            firsts[b].0 = self.heads[(b << bits) | (key >> (32 - bits)) as usize];
        }
        for (b, f) in firsts[..self.bands].iter_mut().enumerate() {
            if f.0 != NONE {
                f.1 = self.links[f.0 as usize * self.bands + b];
            }
        }
        for (b, &key) in keys.iter().enumerate() {
            let (mut i, first) = firsts[b];
            let mut read = 0;
            while i != NONE && read < MAX_CHAIN {
                let at = i;
                let link = if at == firsts[b].0 {
                    first
                } else {
                    self.links[at as usize * self.bands + b]
                };
                i = link.next;
                if link.key != key {
                    // Another key in the same slot.
                    continue;
                }
                read += 1;
                if seen.contains(&at) {
                    continue;
                }
                seen.push(at);
                let at = at as usize;
                let other = &self.shingles[self.starts[at]..self.starts[at + 1]];
                let j = jaccard(&p.shingles, other);
                if j >= self.threshold && best.is_none_or(|(bj, _)| j > bj) {
                    best = Some((j, self.ids[at]));
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
        self.add(id, Self::prepare(text));
    }

    fn add(&mut self, id: SampleId, p: Prepared) {
        self.exact.entry(p.norm).or_insert(id);
        let Some(sig) = p.sig else {
            return;
        };
        if self.ids.len() >= 1 << self.slot_bits {
            self.grow_slots(2 * self.ids.len());
        }
        let i = self.ids.len() as u32;
        let bits = self.slot_bits;
        for (b, key) in self.band_keys(&sig).enumerate() {
            let head = &mut self.heads[(b << bits) | (key >> (32 - bits)) as usize];
            self.links.push(Link { key, next: *head });
            *head = i;
        }
        self.ids.push(id);
        self.shingles.extend_from_slice(&p.shingles);
        self.starts.push(self.shingles.len());
    }

    /// Check, and index the text when it is new (its normal form,
    /// shingles and signature computed once for both).
    pub fn check_insert(&mut self, id: SampleId, text: &str) -> Option<DupMatch> {
        self.check_insert_prepared(id, Self::prepare(text))
    }

    /// [`DedupIndex::check_insert`] of a text prepared with
    /// [`DedupIndex::prepare`].
    pub fn check_insert_prepared(&mut self, id: SampleId, p: Prepared) -> Option<DupMatch> {
        if let Some(&of) = self.exact.get(&p.norm) {
            return Some(DupMatch {
                of,
                kind: DupKind::Exact,
            });
        }
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

    /// The signature's share of agreeing hash functions estimates the
    /// exact Jaccard similarity without bias, with the spread of 64
    /// independent trials (sd √(J(1−J)/64)), over set pairs of many sizes
    /// and overlaps.
    #[test]
    fn signature_estimates_jaccard() {
        let mut x = 42u64;
        let mut next = || {
            x = splitmix64(x);
            x
        };
        for &(j, size) in &[
            (0.2, 20usize),
            (0.5, 20),
            (0.7, 25),
            (0.8, 30),
            (0.9, 40),
            (0.5, 200),
        ] {
            let (mut bias, mut sq, trials) = (0.0, 0.0, 400);
            for _ in 0..trials {
                // |A ∩ B| = s, |A ∪ B| = size: J = s / size.
                let shared = (j * size as f64).round() as usize;
                let common: Vec<u64> = (0..shared).map(|_| next()).collect();
                let only = (size - shared) / 2;
                let mut a = common.clone();
                a.extend((0..only).map(|_| next()));
                let mut b = common;
                b.extend((0..size - shared - only).map(|_| next()));
                a.sort_unstable();
                b.sort_unstable();
                let exact = jaccard(&a, &b);
                let (sa, sb) = (signature(&a), signature(&b));
                assert_eq!(sa, signature_portable(&a), "every CPU signs alike");
                let est = sa.iter().zip(&sb).filter(|(p, q)| p == q).count() as f64 / HASHES as f64;
                bias += est - exact;
                sq += (est - exact).powi(2);
            }
            let bias = bias / trials as f64;
            let sd = (sq / trials as f64).sqrt();
            let ideal = (j * (1.0 - j) / HASHES as f64).sqrt();
            assert!(bias.abs() < 0.015, "J {j} size {size}: bias {bias:.4}");
            assert!(
                sd < ideal * 1.25 + 0.005,
                "J {j} size {size}: sd {sd:.4} vs ideal {ideal:.4}"
            );
        }
    }

    /// Sentences of `len` words from a vocabulary of 60, each followed by
    /// a near copy with one word changed.
    fn sentences_with_near_copies(len: usize) -> Vec<String> {
        let vocab: Vec<String> = (0..60).map(|i| format!("w{i}")).collect();
        let mut texts = Vec::new();
        let mut x = len as u64;
        for _ in 0..400 {
            let mut words = Vec::new();
            for _ in 0..len {
                x = splitmix64(x);
                words.push(vocab[(x % 60) as usize].clone());
            }
            texts.push(words.join(" "));
            x = splitmix64(x);
            let k = (x % len as u64) as usize;
            words[k] = "changed".into();
            texts.push(words.join(" "));
        }
        texts
    }

    #[test]
    fn lsh_finds_what_brute_force_finds() {
        // At a loose threshold (2 rows per band) and at the default one
        // (4 rows): LSH finds nearly every pair the exhaustive comparison
        // finds, and never one below the threshold.
        for (len, threshold) in [(12, 0.6), (20, 0.8)] {
            let texts = sentences_with_near_copies(len);
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
            assert!(total > 100, "{total}");
            assert!(
                agree as f64 >= 0.97 * total as f64,
                "threshold {threshold}: {agree}/{total}"
            );
        }
    }

    /// An index that grew its bucket tables text by text decides exactly
    /// as one that reserved its room up front.
    #[test]
    fn growing_decides_as_reserving() {
        let texts = sentences_with_near_copies(12);
        let mut grown = DedupIndex::new(0.6);
        let mut reserved = DedupIndex::new(0.6);
        reserved.reserve(texts.len());
        assert!(reserved.slot_bits > MIN_SLOT_BITS);
        for (i, t) in texts.iter().enumerate() {
            assert_eq!(
                grown.check_insert(i as u64, t),
                reserved.check_insert(i as u64, t),
                "{t}"
            );
        }
        assert!(grown.slot_bits > MIN_SLOT_BITS);
        assert_eq!(grown.len(), reserved.len());
    }
}
