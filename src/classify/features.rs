//! Hashed sparse features, fastText-style: word unigrams and bigrams plus
//! character n-grams of each word (with `<` `>` boundary marks), each hashed
//! into one of `2^bits` buckets.
//!
//! Hashing is FNV-1a with a per-kind salt, so the same text always maps to
//! the same buckets on every machine and run (no `RandomState`).

use serde::{Deserialize, Serialize};

/// What features to extract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureConfig {
    /// Number of hash buckets is `2^bits`.
    pub bits: u8,
    /// Also use word bigrams.
    pub word_bigrams: bool,
    /// Smallest character n-gram (0 = no character n-grams).
    pub char_min: usize,
    /// Largest character n-gram.
    pub char_max: usize,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        FeatureConfig {
            bits: 18,
            word_bigrams: true,
            char_min: 3,
            char_max: 5,
        }
    }
}

impl FeatureConfig {
    /// Number of hash buckets.
    pub fn buckets(&self) -> usize {
        1usize << self.bits
    }

    /// Bucket indices of a text's features (with repeats: a feature that
    /// occurs twice counts twice). Never empty: a text without tokens gets
    /// one "empty text" feature so it still has a representation.
    pub fn extract(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() * 4);
        self.extract_into(text, &mut out);
        out
    }

    /// Like [`FeatureConfig::extract`], appending to `out`.
    pub fn extract_into(&self, text: &str, out: &mut Vec<u32>) {
        let mask = (self.buckets() - 1) as u64;
        let start = out.len();
        let mut prev: Option<u64> = None;
        // `<token>`: the token with fastText's boundary marks.
        let mut chars: Vec<char> = Vec::with_capacity(32);
        let mut rest = text.chars().peekable();
        while next_token(&mut rest, &mut chars) {
            let tok = &chars[1..chars.len() - 1];
            let wh = hash_chars(SALT_WORD, tok.iter().copied());
            out.push((wh & mask) as u32);
            if self.word_bigrams
                && let Some(p) = prev
            {
                out.push((mix(p.rotate_left(17) ^ wh ^ SALT_BIGRAM) & mask) as u32);
            }
            prev = Some(wh);
            if self.char_min > 0 {
                self.char_ngrams(&chars, mask, out);
            }
        }
        if out.len() == start {
            out.push((SALT_EMPTY & mask) as u32);
        }
    }
}

impl FeatureConfig {
    /// Character n-grams of `<token>` of every length in
    /// `char_min..=char_max`, except the whole `<token>` (it duplicates the
    /// unigram). FNV is a prefix hash, so one pass per start position
    /// yields every length.
    fn char_ngrams(&self, chars: &[char], mask: u64, out: &mut Vec<u32>) {
        let longest = self.char_max.min(chars.len() - 1);
        for i in 0..chars.len() {
            let mut h = FNV_BASIS ^ SALT_CHAR;
            for (j, &c) in chars[i..].iter().enumerate().take(longest) {
                h = fnv_step(h, c);
                let n = j + 1;
                if n >= self.char_min && n < chars.len() {
                    out.push((mix(h) & mask) as u32);
                }
            }
        }
    }
}

const FNV_BASIS: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv_step(h: u64, c: char) -> u64 {
    (h ^ c as u64).wrapping_mul(0x0000_0100_0000_01b3)
}

const SALT_WORD: u64 = 0x9e37_79b9_7f4a_7c15;
const SALT_BIGRAM: u64 = 0xc2b2_ae3d_27d4_eb4f;
const SALT_CHAR: u64 = 0x1656_67b1_9e37_79f9;
const SALT_EMPTY: u64 = 0x27d4_eb2f_1656_67c5;

fn hash_chars(salt: u64, chars: impl Iterator<Item = char>) -> u64 {
    mix(chars.fold(FNV_BASIS ^ salt, fnv_step))
}

/// Final avalanche (from SplitMix64) so low bits are well spread.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Read the next token into `buf` as `<token>` (with boundary marks);
/// false at the end. A token is a run of alphanumeric characters (and
/// apostrophes inside words), lower-cased; every other non-space character
/// is a token of its own, so "?" and "!" carry signal.
fn next_token(it: &mut std::iter::Peekable<std::str::Chars<'_>>, buf: &mut Vec<char>) -> bool {
    while it.peek().is_some_and(|c| c.is_whitespace()) {
        it.next();
    }
    let Some(c) = it.next() else {
        return false;
    };
    buf.clear();
    buf.push('<');
    push_lower(buf, c);
    if c.is_alphanumeric() {
        while let Some(&n) = it.peek() {
            if n.is_alphanumeric() || n == '\'' {
                push_lower(buf, n);
                it.next();
            } else {
                break;
            }
        }
    }
    buf.push('>');
    true
}

/// Lower-case `c` onto `buf` (ASCII without the Unicode tables).
fn push_lower(buf: &mut Vec<char>, c: char) {
    if c.is_ascii() {
        buf.push(c.to_ascii_lowercase());
    } else {
        buf.extend(c.to_lowercase());
    }
}

/// The tokens of a text, as the features see them.
pub fn tokens(text: &str) -> Vec<String> {
    let mut it = text.chars().peekable();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while next_token(&mut it, &mut buf) {
        out.push(buf[1..buf.len() - 1].iter().collect());
    }
    out
}

/// Texts turned into features once, in compressed sparse rows, so training
/// epochs and cross-validation folds reuse them.
#[derive(Debug, Clone, Default)]
pub struct Encoded {
    /// Row `i` is `feats[offsets[i]..offsets[i + 1]]`.
    pub offsets: Vec<usize>,
    pub feats: Vec<u32>,
}

impl Encoded {
    /// Encode texts with a feature configuration.
    pub fn new<S: AsRef<str>>(cfg: &FeatureConfig, texts: &[S]) -> Encoded {
        let mut offsets = Vec::with_capacity(texts.len() + 1);
        let mut feats = Vec::with_capacity(texts.len() * 64);
        offsets.push(0);
        for t in texts {
            cfg.extract_into(t.as_ref(), &mut feats);
            offsets.push(feats.len());
        }
        Encoded { offsets, feats }
    }

    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Features of row `i`.
    pub fn row(&self, i: usize) -> &[u32] {
        &self.feats[self.offsets[i]..self.offsets[i + 1]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        tokens(s)
    }

    #[test]
    fn tokenizer_splits_words_and_punctuation() {
        assert_eq!(
            toks("  What's the CAPITAL of   Perú?!"),
            ["what's", "the", "capital", "of", "perú", "?", "!"]
        );
        assert!(toks("   ").is_empty());
    }

    #[test]
    fn features_are_stable_and_in_range() {
        let cfg = FeatureConfig::default();
        let a = cfg.extract("How far is the moon?");
        assert_eq!(a, cfg.extract("how far IS the moon ?"));
        assert!(a.iter().all(|&f| (f as usize) < cfg.buckets()));
        // 6 unigrams + 5 bigrams + char n-grams of "how", "far", "the", "moon".
        assert!(a.len() > 11, "{}", a.len());
        // Word order matters through bigrams only.
        let b = cfg.extract("moon the is far how?");
        assert_ne!(a, b);
        let mut sa = a.clone();
        let mut sb = b.clone();
        sa.sort();
        sb.sort();
        assert_ne!(sa, sb);
    }

    #[test]
    fn char_ngrams_are_every_window_but_the_whole_token() {
        let cfg = FeatureConfig::default();
        let mask = (cfg.buckets() - 1) as u64;
        for word in ["<a>", "<ab>", "<moon>", "<ünïcode>"] {
            let chars: Vec<char> = word.chars().collect();
            let mut got = Vec::new();
            cfg.char_ngrams(&chars, mask, &mut got);
            let mut want = Vec::new();
            for n in cfg.char_min..=cfg.char_max.min(chars.len() - 1) {
                for w in chars.windows(n) {
                    want.push((hash_chars(SALT_CHAR, w.iter().copied()) & mask) as u32);
                }
            }
            got.sort();
            want.sort();
            assert_eq!(got, want, "{word}");
        }
    }

    #[test]
    fn empty_text_has_one_feature() {
        let cfg = FeatureConfig::default();
        assert_eq!(cfg.extract("").len(), 1);
        assert_eq!(cfg.extract("  \n").len(), 1);
    }

    #[test]
    fn encoded_rows_match_extract() {
        let cfg = FeatureConfig::default();
        let texts = ["one two", "", "three"];
        let enc = Encoded::new(&cfg, &texts);
        assert_eq!(enc.len(), 3);
        for (i, t) in texts.iter().enumerate() {
            assert_eq!(enc.row(i), cfg.extract(t).as_slice());
        }
    }
}
