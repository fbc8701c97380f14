//! A lean BERT WordPiece tokenizer: the `BertNormalizer` (clean text, CJK
//! padding, lowercase, accent stripping), `BertPreTokenizer` (whitespace
//! and punctuation) and greedy longest-match WordPiece of Hugging Face
//! `tokenizers`, for uncased BERT vocabularies such as all-MiniLM-L6-v2's.
//!
//! Written here instead of depending on the `tokenizers` crate, which even
//! without default features brings regex, rayon, esaxx and friends into
//! the build for the one tokenizer we need. The ids are checked against
//! the Python `tokenizers` package in `tests/embed_local.rs`.

use std::collections::HashMap;
use std::path::Path;

use unicode_normalization::UnicodeNormalization;

/// Longest word WordPiece tries to split (longer ones become `[UNK]`).
const MAX_WORD_CHARS: usize = 100;

/// An uncased BERT WordPiece vocabulary.
#[derive(Debug, Clone)]
pub struct WordPiece {
    vocab: HashMap<String, u32>,
    /// Vocabulary in id order.
    tokens: Vec<String>,
    pub cls: u32,
    pub sep: u32,
    pub unk: u32,
    pub pad: u32,
}

impl WordPiece {
    /// Read `vocab.txt` (one token per line, the line number is the id) or,
    /// failing that, the WordPiece vocab inside `tokenizer.json`.
    pub fn from_dir(dir: &Path) -> Result<WordPiece, String> {
        let txt = dir.join("vocab.txt");
        if let Ok(s) = std::fs::read_to_string(&txt) {
            return WordPiece::from_tokens(s.lines().map(str::to_owned).collect());
        }
        let json = dir.join("tokenizer.json");
        let s = std::fs::read_to_string(&json)
            .map_err(|e| format!("neither vocab.txt nor {}: {e}", json.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(&s).map_err(|e| format!("{}: {e}", json.display()))?;
        let map = v["model"]["vocab"]
            .as_object()
            .ok_or_else(|| format!("{}: no model.vocab", json.display()))?;
        let mut tokens = vec![String::new(); map.len()];
        for (tok, id) in map {
            let id = id.as_u64().unwrap_or(u64::MAX) as usize;
            if id >= tokens.len() {
                return Err(format!("{}: vocab id {id} out of range", json.display()));
            }
            tokens[id] = tok.clone();
        }
        WordPiece::from_tokens(tokens)
    }

    /// A vocabulary from its tokens in id order; it must hold `[CLS]`,
    /// `[SEP]`, `[UNK]` and `[PAD]`.
    pub fn from_tokens(tokens: Vec<String>) -> Result<WordPiece, String> {
        let vocab: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let special = |t: &str| {
            vocab
                .get(t)
                .copied()
                .ok_or_else(|| format!("the vocabulary has no {t}"))
        };
        Ok(WordPiece {
            cls: special("[CLS]")?,
            sep: special("[SEP]")?,
            unk: special("[UNK]")?,
            pad: special("[PAD]")?,
            vocab,
            tokens,
        })
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The token of an id.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// Word-piece ids of `text` without `[CLS]`/`[SEP]`, at most `max`.
    /// The text is normalised a part at a time until `max` ids are found,
    /// so a text of megabytes costs a part's copy, not its own.
    pub fn encode_plain(&self, text: &str, max: usize) -> Vec<u32> {
        self.encode_plain_by(text, max, PART)
    }

    /// [`Self::encode_plain`] normalising parts of at least `part` bytes,
    /// each ending just after an ASCII whitespace: words never straddle
    /// two parts, and every character is normalised as in the whole text
    /// (the whitespace before a part stops any context, e.g. a final
    /// sigma's), so the ids are those of the whole text normalised at once.
    fn encode_plain_by(&self, text: &str, max: usize, part: usize) -> Vec<u32> {
        let mut out = Vec::new();
        let mut piece = String::new();
        let mut rest = text;
        while !rest.is_empty() && out.len() < max {
            let (head, tail) = rest.split_at(cut_after_space(rest, part));
            rest = tail;
            let normalized = normalize(head);
            for word in pre_tokenize(&normalized) {
                if out.len() >= max {
                    break;
                }
                self.word_pieces(word, &mut piece, &mut out);
            }
        }
        out.truncate(max);
        out
    }

    /// `[CLS] pieces [SEP]`, at most `max_len` ids in all (sentence-
    /// transformers truncates all-MiniLM-L6-v2 at 256).
    pub fn encode(&self, text: &str, max_len: usize) -> Vec<u32> {
        let max_len = max_len.max(2);
        let mut ids = Vec::with_capacity(16);
        ids.push(self.cls);
        ids.extend(self.encode_plain(text, max_len - 2));
        ids.push(self.sep);
        ids
    }

    fn word_pieces(&self, word: &str, piece: &mut String, out: &mut Vec<u32>) {
        let chars: Vec<(usize, char)> = word.char_indices().collect();
        if chars.len() > MAX_WORD_CHARS {
            out.push(self.unk);
            return;
        }
        let start_len = out.len();
        let mut start = 0;
        while start < chars.len() {
            let mut end = chars.len();
            let mut found = None;
            while start < end {
                let from = chars[start].0;
                let to = chars.get(end).map_or(word.len(), |c| c.0);
                piece.clear();
                if start > 0 {
                    piece.push_str("##");
                }
                piece.push_str(&word[from..to]);
                if let Some(&id) = self.vocab.get(piece.as_str()) {
                    found = Some(id);
                    break;
                }
                end -= 1;
            }
            match found {
                Some(id) => {
                    out.push(id);
                    start = end;
                }
                None => {
                    out.truncate(start_len);
                    out.push(self.unk);
                    return;
                }
            }
        }
    }
}

/// Bytes of text [`WordPiece::encode_plain`] normalises at a time (at
/// least: up to the next ASCII whitespace).
const PART: usize = 16 << 10;

/// The length of the first part of `text` of at least `at` bytes that
/// ends just after an ASCII whitespace (the whole text when none follows).
fn cut_after_space(text: &str, at: usize) -> usize {
    if text.len() <= at {
        return text.len();
    }
    // An ASCII byte is never inside a longer UTF-8 character: the cut is
    // at a character boundary.
    text.as_bytes()[at..]
        .iter()
        .position(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .map_or(text.len(), |i| at + i + 1)
}

/// `BertNormalizer` with `clean_text`, `handle_chinese_chars`, `lowercase`
/// and (following lowercase) accent stripping.
pub fn normalize(text: &str) -> String {
    let mut cleaned = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c == '\0' || c == '\u{fffd}' || is_control(c) {
            continue;
        }
        if is_whitespace(c) {
            cleaned.push(' ');
        } else if is_chinese_char(c) {
            cleaned.push(' ');
            cleaned.push(c);
            cleaned.push(' ');
        } else {
            cleaned.push(c);
        }
    }
    if cleaned.is_ascii() {
        cleaned.make_ascii_lowercase();
        return cleaned;
    }
    // Strip accents (NFD, drop non-spacing marks), then lowercase.
    let stripped: String = cleaned
        .nfd()
        .filter(|&c| !unicode_normalization::char::is_combining_mark(c))
        .collect();
    stripped.to_lowercase()
}

/// `BertPreTokenizer`: split on whitespace, every punctuation character a
/// word of its own.
pub fn pre_tokenize(text: &str) -> impl Iterator<Item = &str> {
    text.split(char::is_whitespace)
        .filter(|w| !w.is_empty())
        .flat_map(split_punct)
}

fn split_punct(word: &str) -> impl Iterator<Item = &str> {
    let mut rest = word;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut it = rest.char_indices();
        let (_, first) = it.next()?;
        let cut = if is_punctuation(first) {
            first.len_utf8()
        } else {
            rest.char_indices()
                .find(|&(_, c)| is_punctuation(c))
                .map_or(rest.len(), |(i, _)| i)
        };
        let (head, tail) = rest.split_at(cut);
        rest = tail;
        Some(head)
    })
}

fn is_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r') || c.is_whitespace()
}

fn is_control(c: char) -> bool {
    if matches!(c, '\t' | '\n' | '\r') {
        return false;
    }
    // Cc, and the format characters (Cf) that turn up in real text.
    c.is_control()
        || matches!(c, '\u{00ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
}

/// ASCII punctuation and symbols (as BERT treats them), plus the Unicode
/// punctuation blocks that occur in practice.
fn is_punctuation(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_punctuation();
    }
    matches!(c,
        '\u{00a1}' | '\u{00a7}' | '\u{00ab}' | '\u{00b6}' | '\u{00b7}' | '\u{00bb}' | '\u{00bf}'
        | '\u{037e}' | '\u{0387}'
        | '\u{055a}'..='\u{055f}' | '\u{0589}' | '\u{058a}'
        | '\u{060c}' | '\u{060d}' | '\u{061b}' | '\u{061f}' | '\u{066a}'..='\u{066d}' | '\u{06d4}'
        | '\u{0964}' | '\u{0965}' | '\u{0970}'
        | '\u{2010}'..='\u{2027}' | '\u{2030}'..='\u{2043}' | '\u{2045}'..='\u{2051}'
        | '\u{2053}'..='\u{205e}' | '\u{207d}' | '\u{207e}' | '\u{208d}' | '\u{208e}'
        | '\u{2308}'..='\u{230b}' | '\u{2329}' | '\u{232a}' | '\u{2768}'..='\u{2775}'
        | '\u{27c5}' | '\u{27c6}' | '\u{27e6}'..='\u{27ef}' | '\u{2983}'..='\u{2998}'
        | '\u{29d8}'..='\u{29db}' | '\u{29fc}' | '\u{29fd}' | '\u{2cf9}'..='\u{2cfc}'
        | '\u{2cfe}' | '\u{2cff}' | '\u{2e00}'..='\u{2e4f}'
        | '\u{3001}'..='\u{3003}' | '\u{3008}'..='\u{3011}' | '\u{3014}'..='\u{301f}'
        | '\u{3030}' | '\u{303d}' | '\u{30a0}' | '\u{30fb}'
        | '\u{fe10}'..='\u{fe19}' | '\u{fe30}'..='\u{fe52}' | '\u{fe54}'..='\u{fe61}'
        | '\u{fe63}' | '\u{fe68}' | '\u{fe6a}' | '\u{fe6b}'
        | '\u{ff01}'..='\u{ff03}' | '\u{ff05}'..='\u{ff0a}' | '\u{ff0c}'..='\u{ff0f}'
        | '\u{ff1a}' | '\u{ff1b}' | '\u{ff1f}' | '\u{ff20}' | '\u{ff3b}'..='\u{ff3d}'
        | '\u{ff3f}' | '\u{ff5b}' | '\u{ff5d}' | '\u{ff5f}'..='\u{ff65}'
    )
}

fn is_chinese_char(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B820..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> WordPiece {
        let toks = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##aff", "##able", "the", "cafe", "!", ",",
            "run", "##ning", "中",
        ];
        WordPiece::from_tokens(toks.iter().map(|s| s.to_string()).collect()).unwrap()
    }

    /// The ids of a text, normalised whole (what `encode_plain` did
    /// before it went a part at a time).
    fn whole(v: &WordPiece, text: &str, max: usize) -> Vec<u32> {
        let mut out = Vec::new();
        let mut piece = String::new();
        for word in pre_tokenize(&normalize(text)) {
            if out.len() >= max {
                break;
            }
            v.word_pieces(word, &mut piece, &mut out);
        }
        out.truncate(max);
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(256))]
        /// Normalising a part at a time gives the ids of the whole text,
        /// whatever the parts: accents, combining marks, Greek capital
        /// sigma (lowercased by its context), Chinese characters, control
        /// and format characters, every kind of whitespace.
        #[test]
        fn parts_give_the_ids_of_the_whole_text(
            bits in proptest::collection::vec(0usize..22, 0..80),
            part in 1usize..24,
            max in 0usize..40,
        ) {
            const BITS: [&str; 22] = [
                "un", "aff", "able", "the", "cafe", "Café", "e\u{301}", "ΣΑΣ", "Σ", "σ", "中", "!", ",",
                " ", "  ", "\n", "\t", "\r", "\u{a0}", "\u{200b}", "\u{1}", "Running",
            ];
            let v = vocab();
            let text: String = bits.iter().map(|&b| BITS[b]).collect();
            proptest::prop_assert_eq!(v.encode_plain_by(&text, max, part), whole(&v, &text, max));
        }
    }

    #[test]
    fn normalizes_like_bert() {
        assert_eq!(normalize("Café\tNAÏVE\u{200b}"), "cafe naive");
        assert_eq!(normalize("a中b"), "a 中 b");
        assert_eq!(
            pre_tokenize("hello, world!! it's").collect::<Vec<_>>(),
            ["hello", ",", "world", "!", "!", "it", "'", "s"]
        );
    }

    #[test]
    fn greedy_longest_match_and_unknown_words() {
        let v = vocab();
        // un ##aff ##able; "xyz" has no pieces: one [UNK] for the word.
        assert_eq!(
            v.encode("Unaffable, the xyz Running!", 64),
            [2, 4, 5, 6, 10, 7, 1, 11, 12, 9, 3]
        );
        assert_eq!(v.encode("unaffable unaffable", 4), [2, 4, 5, 3]);
        assert_eq!(v.encode(&"a".repeat(101), 8), [2, 1, 3]);
    }
}
