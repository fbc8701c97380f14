//! The denoiser: pure functions that score a generated example against the
//! real data by sentence embeddings (MSP's denoising, issue 13). The
//! generation session applies them to every new example
//! (`app::session`'s `denoise` module, settings in `[denoise]`).
//!
//! * **Noise score** in `[0, 1]`:
//!   `0.5 · over-representation of its attributes + 0.5 · (1 − cosine to
//!   the nearest seed of its intended class)`, or the cosine term alone
//!   when the example carries no attributes. An attribute value's
//!   over-representation is its count among the examples so far divided by
//!   the count of the most common value of the same dimension (1 = the most
//!   common value, near 0 = rare); an example's is the mean over its values.
//! * **Instruction echo**: the example's highest cosine to the sentences of
//!   the prompt's own instructions (class lists and shown examples left
//!   out, see [`instruction_sentences`]). Small models answer with their
//!   instructions ("Each text must belong 80% to NUM…"); those are close to
//!   the instructions and further from every seed.
//!
//! [`judge`] combines both into a [`Judgement`] with a reason that reads
//! like "far from every DESC seed (0.21)" or "repeats the instructions
//! (0.83)". Vectors must be L2-normalised (what every [`super::Embedder`]
//! returns).

use std::collections::BTreeMap;

use super::cosine;

/// Thresholds of the denoiser.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DenoiseSettings {
    /// Noise score above which an example is noise.
    pub max_noise: f32,
    /// Cosine to an instruction sentence at or above which an example is
    /// an echo (when it is also closer to the instructions than to any seed).
    pub echo_similarity: f32,
}

impl Default for DenoiseSettings {
    /// Calibrated with all-MiniLM-L6-v2 on the recorded SmolLM2 replies in
    /// `tests/fixtures/smollm2` (see `tests/embed_denoise.rs`).
    fn default() -> Self {
        DenoiseSettings {
            max_noise: 0.85,
            echo_similarity: 0.6,
        }
    }
}

/// What the denoiser says about one example.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    /// The noise score in `[0, 1]`.
    pub noise: f32,
    /// Highest cosine to a seed of the intended class (`None`: the class has
    /// no seeds, the cosine term is then 0.5).
    pub seed_similarity: Option<f32>,
    /// Attribute over-representation, when the example has attributes.
    pub over_representation: Option<f32>,
    /// Highest cosine to an instruction sentence (0 without instructions).
    pub echo_similarity: f32,
    /// Why it is noise; `None` when it is kept.
    pub reason: Option<String>,
}

impl Judgement {
    pub fn is_noise(&self) -> bool {
        self.reason.is_some()
    }
}

/// Highest cosine of `v` to any of `others` (`None` when there are none).
pub fn max_similarity<'a>(v: &[f32], others: impl IntoIterator<Item = &'a [f32]>) -> Option<f32> {
    others
        .into_iter()
        .map(|o| cosine(v, o))
        .fold(None, |best, c| Some(best.map_or(c, |b: f32| b.max(c))))
}

/// `1 − cosine to the nearest seed`, clamped to `[0, 1]`; 0.5 without seeds.
pub fn seed_distance(seed_similarity: Option<f32>) -> f32 {
    seed_similarity.map_or(0.5, |s| (1.0 - s).clamp(0.0, 1.0))
}

/// Counts of attribute values among the examples so far:
/// `dimension → value → count`.
pub type AttributeCounts = BTreeMap<String, BTreeMap<String, u64>>;

/// Over-representation of an example's `(dimension, value)` attributes in
/// `counts`: per value, its count over the most common count of its
/// dimension; the mean over the values. `None` without attributes; a value
/// never seen (or a dimension without counts) counts 0.
pub fn over_representation(
    attributes: &[(String, String)],
    counts: &AttributeCounts,
) -> Option<f32> {
    if attributes.is_empty() {
        return None;
    }
    let total: f32 = attributes
        .iter()
        .map(|(dim, value)| {
            let Some(values) = counts.get(dim) else {
                return 0.0;
            };
            let max = values.values().copied().max().unwrap_or(0);
            if max == 0 {
                0.0
            } else {
                values.get(value).copied().unwrap_or(0) as f32 / max as f32
            }
        })
        .sum();
    Some(total / attributes.len() as f32)
}

/// MSP's noise score: `0.5 · over-representation + 0.5 · seed distance`,
/// or the seed distance alone without attributes.
pub fn noise_score(seed_similarity: Option<f32>, over_representation: Option<f32>) -> f32 {
    let d = seed_distance(seed_similarity);
    match over_representation {
        Some(o) => 0.5 * o.clamp(0.0, 1.0) + 0.5 * d,
        None => d,
    }
}

/// The instruction sentences of a rendered prompt, to embed for the echo
/// check: its lines (class descriptions included: small models echo them)
/// split at sentence ends, without list markers and numbering, leaving out
/// the shown examples and `Examples of NAME:` headers. Real examples stay
/// clear of an echo verdict because they are closer to some seed than to
/// any of these sentences.
pub fn instruction_sentences(prompt: &str, shown_examples: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for line in prompt.lines() {
        let t = line.trim();
        let t = t.trim_start_matches(['-', '*', '•']).trim_start();
        let t = strip_number(t);
        if t.is_empty()
            || shown_examples.iter().any(|e| e.trim() == t)
            || t.starts_with("Examples of ")
        {
            continue;
        }
        for sentence in split_sentences(t) {
            if sentence.split_whitespace().count() >= 3 {
                out.push(sentence.to_owned());
            }
        }
    }
    out
}

/// `3. NUM: texts…` → `NUM: texts…`.
fn strip_number(t: &str) -> &str {
    let rest = t.trim_start_matches(|c: char| c.is_ascii_digit());
    match rest.strip_prefix(". ") {
        Some(r) if rest.len() < t.len() => r.trim_start(),
        _ => t,
    }
}

fn split_sentences(t: &str) -> impl Iterator<Item = &str> {
    let mut rest = t;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let cut = rest
            .char_indices()
            .find(|&(i, c)| matches!(c, '.' | '?' | '!') && rest[i + 1..].starts_with(' '))
            .map_or(rest.len(), |(i, _)| i + 1);
        let (head, tail) = rest.split_at(cut);
        rest = tail.trim_start();
        Some(head.trim())
    })
}

/// Judge one example.
///
/// * `vector`: the example's embedding; `class`: its intended class (for the
///   reason); `seeds`: embeddings of that class's seeds;
/// * `attributes` / `counts`: its attributes and the counts so far (empty
///   slice: no attribute term);
/// * `instructions`: embeddings of [`instruction_sentences`] of its prompt;
///   `all_seeds`: embeddings of every class's seeds (an echo must be closer
///   to the instructions than to any of them).
#[allow(clippy::too_many_arguments)]
pub fn judge<'a>(
    vector: &[f32],
    class: &str,
    seeds: impl IntoIterator<Item = &'a [f32]>,
    all_seeds: impl IntoIterator<Item = &'a [f32]>,
    attributes: &[(String, String)],
    counts: &AttributeCounts,
    instructions: impl IntoIterator<Item = &'a [f32]>,
    settings: &DenoiseSettings,
) -> Judgement {
    let seed_similarity = max_similarity(vector, seeds);
    let over = over_representation(attributes, counts);
    let noise = noise_score(seed_similarity, over);
    let echo = max_similarity(vector, instructions).unwrap_or(0.0);
    let nearest_any = max_similarity(vector, all_seeds).unwrap_or(f32::NEG_INFINITY);
    let reason = if echo >= settings.echo_similarity && echo > nearest_any {
        Some(format!("repeats the instructions ({echo:.2})"))
    } else if noise > settings.max_noise {
        Some(match (seed_similarity, over) {
            (Some(s), None) => format!("far from every {class} seed ({s:.2})"),
            (Some(s), Some(o)) => format!(
                "far from every {class} seed ({s:.2}) with common attributes ({o:.2}); noise {noise:.2}"
            ),
            (None, _) => format!("noise {noise:.2} ({class} has no seeds)"),
        })
    } else {
        None
    };
    Judgement {
        noise,
        seed_similarity,
        over_representation: over,
        echo_similarity: echo,
        reason,
    }
}

/// Counts of attribute values over the attribute lists of the examples
/// so far (e.g. the accepted ones), for [`over_representation`].
pub fn attribute_counts<'a>(
    examples: impl IntoIterator<Item = &'a [(String, String)]>,
) -> AttributeCounts {
    let mut counts = AttributeCounts::new();
    for attrs in examples {
        for (dim, value) in attrs {
            *counts
                .entry(dim.clone())
                .or_default()
                .entry(value.clone())
                .or_default() += 1;
        }
    }
    counts
}

/// The seed vectors of a project per class, with the settings: what
/// generation needs to judge its examples one by one.
#[derive(Debug, Clone, Default)]
pub struct Denoiser {
    pub settings: DenoiseSettings,
    /// Seed embeddings per class name.
    pub seeds: BTreeMap<String, Vec<Vec<f32>>>,
}

impl Denoiser {
    pub fn new(settings: DenoiseSettings, seeds: BTreeMap<String, Vec<Vec<f32>>>) -> Denoiser {
        Denoiser { settings, seeds }
    }

    /// [`judge`] an example of `class` against that class's seeds, every
    /// seed (for the echo rule) and `instructions` (embeddings of the
    /// prompt's [`instruction_sentences`]).
    pub fn judge(
        &self,
        vector: &[f32],
        class: &str,
        attributes: &[(String, String)],
        counts: &AttributeCounts,
        instructions: &[Vec<f32>],
    ) -> Judgement {
        judge(
            vector,
            class,
            self.seeds
                .get(class)
                .into_iter()
                .flatten()
                .map(Vec::as_slice),
            self.seeds.values().flatten().map(Vec::as_slice),
            attributes,
            counts,
            instructions.iter().map(Vec::as_slice),
            &self.settings,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let mut v = v.to_vec();
        super::super::l2_normalize(&mut v);
        v
    }

    #[test]
    fn score_combines_attributes_and_seed_distance() {
        let mut counts = AttributeCounts::new();
        counts
            .entry("tone".into())
            .or_default()
            .insert("formal".into(), 8);
        counts
            .entry("tone".into())
            .or_default()
            .insert("angry".into(), 2);
        let formal = [("tone".to_string(), "formal".to_string())];
        let angry = [("tone".to_string(), "angry".to_string())];
        let unseen = [("length".to_string(), "long".to_string())];
        assert_eq!(over_representation(&formal, &counts), Some(1.0));
        assert_eq!(over_representation(&angry, &counts), Some(0.25));
        assert_eq!(over_representation(&unseen, &counts), Some(0.0));
        assert_eq!(over_representation(&[], &counts), None);
        assert!((noise_score(Some(0.6), None) - 0.4).abs() < 1e-6);
        assert!((noise_score(Some(0.6), Some(0.25)) - (0.125 + 0.2)).abs() < 1e-6);
        assert_eq!(noise_score(Some(-0.2), None), 1.0);
        assert_eq!(noise_score(None, None), 0.5);
    }

    #[test]
    fn judge_gives_reasons() {
        let seed = unit(&[1.0, 0.0, 0.0]);
        let other_seed = unit(&[0.0, 1.0, 0.0]);
        let instr = unit(&[0.0, 0.0, 1.0]);
        let s = DenoiseSettings {
            max_noise: 0.7,
            echo_similarity: 0.8,
        };
        let c = AttributeCounts::new();
        let j = |v: &[f32]| {
            judge(
                &unit(v),
                "DESC",
                [seed.as_slice()],
                [seed.as_slice(), other_seed.as_slice()],
                &[],
                &c,
                [instr.as_slice()],
                &s,
            )
        };
        let near = j(&[1.0, 0.2, 0.1]);
        assert!(!near.is_noise() && near.noise < 0.1, "{near:?}");
        let far = j(&[0.2, 1.0, 0.3]);
        assert_eq!(
            far.reason.as_deref(),
            Some("far from every DESC seed (0.19)")
        );
        let echo = j(&[0.1, 0.0, 1.0]);
        assert_eq!(
            echo.reason.as_deref(),
            Some("repeats the instructions (1.00)")
        );
    }

    #[test]
    fn denoiser_uses_the_class_seeds_and_counts() {
        let a = [("tone".to_string(), "formal".to_string())];
        let b = [
            ("tone".to_string(), "angry".to_string()),
            ("length".to_string(), "short".to_string()),
        ];
        let counts = attribute_counts([&a[..], &a[..], &b[..]]);
        assert_eq!(counts["tone"]["formal"], 2);
        assert_eq!(counts["tone"]["angry"], 1);
        assert_eq!(over_representation(&b, &counts), Some((0.5 + 1.0) / 2.0));
        let mut seeds = BTreeMap::new();
        seeds.insert("A".to_string(), vec![unit(&[1.0, 0.0])]);
        seeds.insert("B".to_string(), vec![unit(&[0.0, 1.0])]);
        let d = Denoiser::new(DenoiseSettings::default(), seeds);
        let v = unit(&[0.0, 1.0]);
        let as_b = d.judge(&v, "B", &[], &counts, &[]);
        assert_eq!(as_b.seed_similarity, Some(1.0));
        assert!(!as_b.is_noise());
        let as_a = d.judge(&v, "A", &[], &counts, &[]);
        assert_eq!(as_a.reason.as_deref(), Some("far from every A seed (0.00)"));
        let unknown = d.judge(&v, "C", &[], &counts, &[]);
        assert_eq!(unknown.seed_similarity, None);
        assert_eq!(unknown.noise, 0.5);
    }

    #[test]
    fn instruction_sentences_leave_out_classes_and_examples() {
        let prompt = "Questions people ask a search engine.\nThe classes are:\n1. ABBR: texts which are about an abbreviation\n   Examples of ABBR:\n   - What does NASA stand for?\n\nWrite 5 new, diverse, short texts. Each text must belong entirely to NUM.\nAnswer with a numbered list, one text per line, and nothing else.";
        let s = instruction_sentences(prompt, &["What does NASA stand for?".into()]);
        assert_eq!(
            s,
            [
                "Questions people ask a search engine.",
                "The classes are:",
                "ABBR: texts which are about an abbreviation",
                "Write 5 new, diverse, short texts.",
                "Each text must belong entirely to NUM.",
                "Answer with a numbered list, one text per line, and nothing else."
            ]
        );
    }
}
