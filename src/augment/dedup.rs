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

type BandMap = HashMap<u64, Vec<u32>, BuildHasherDefault<IdHasher>>;

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
    let words: Vec<&str> = normalized.split(' ').filter(|w| !w.is_empty()).collect();
    let mut out: Vec<u64> = words.iter().map(|w| hash_str(w)).collect();
    let bigrams: Vec<u64> = out
        .windows(2)
        .map(|p| splitmix64(p[0].rotate_left(17) ^ p[1] ^ 0x5851_F42D_4C95_7F2D))
        .collect();
    out.extend(bigrams);
    out.sort_unstable();
    out.dedup();
    out
}

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
#[derive(Debug, Clone)]
pub struct DedupIndex {
    threshold: f64,
    rows: usize,
    exact: HashMap<String, SampleId>,
    sets: Vec<(SampleId, Vec<u64>)>,
    bands: Vec<BandMap>,
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
        }
    }

    /// Index every sample of a project that generated texts must not
    /// repeat: seeds, held-out examples and generated samples not rejected
    /// as duplicates themselves.
    pub fn from_state(state: &ProjectState, threshold: f64) -> DedupIndex {
        let mut idx = DedupIndex::new(threshold);
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
        self.check_prepared(&mut Prepared::new(text))
    }

    fn check_prepared(&self, p: &mut Prepared) -> Option<DupMatch> {
        if let Some(&of) = self.exact.get(&p.norm) {
            return Some(DupMatch {
                of,
                kind: DupKind::Exact,
            });
        }
        if self.threshold > 1.0 || p.sh.is_empty() {
            return None;
        }
        let sig = *p.signature();
        let mut best: Option<(f64, SampleId)> = None;
        let mut seen = std::collections::HashSet::new();
        for (b, key) in self.band_keys(&sig).enumerate() {
            let Some(list) = self.bands[b].get(&key) else {
                continue;
            };
            for &i in list {
                if !seen.insert(i) {
                    continue;
                }
                let (id, other) = &self.sets[i as usize];
                let j = jaccard(&p.sh, other);
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
        self.insert_prepared(id, Prepared::new(text));
    }

    fn insert_prepared(&mut self, id: SampleId, mut p: Prepared) {
        if p.sh.is_empty() {
            self.exact.entry(p.norm).or_insert(id);
            return;
        }
        let sig = *p.signature();
        self.exact.entry(p.norm).or_insert(id);
        let i = self.sets.len() as u32;
        let keys: Vec<u64> = self.band_keys(&sig).collect();
        for (b, key) in keys.into_iter().enumerate() {
            self.bands[b].entry(key).or_default().push(i);
        }
        self.sets.push((id, p.sh));
    }

    /// Check, and index the text when it is new (its normal form,
    /// shingles and signature computed once for both).
    pub fn check_insert(&mut self, id: SampleId, text: &str) -> Option<DupMatch> {
        let mut p = Prepared::new(text);
        let m = self.check_prepared(&mut p);
        if m.is_none() {
            self.insert_prepared(id, p);
        }
        m
    }
}

/// A text's normal form and shingles, and its MinHash signature once
/// asked for.
struct Prepared {
    norm: String,
    sh: Vec<u64>,
    sig: Option<[u64; HASHES]>,
}

impl Prepared {
    fn new(text: &str) -> Prepared {
        let norm = normalize(text);
        let sh = shingles(&norm);
        Prepared {
            norm,
            sh,
            sig: None,
        }
    }

    fn signature(&mut self) -> &[u64; HASHES] {
        let sh = &self.sh;
        self.sig.get_or_insert_with(|| signature(sh))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
