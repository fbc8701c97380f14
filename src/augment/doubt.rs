//! How doubtful a generated example is, and why: used to sort review so
//! the examples that need a person come first.
//!
//! Reasons (short tags shown in the review pane):
//! * `disagrees` — the relabel verdict (or, with [`doubt_by`], the answer
//!   of the judge that decides) differs from the intended label;
//! * `unparsable` — the relabel answer could not be read;
//! * `no_verdict` — not relabelled yet;
//! * `low_conf` — the verdict's own confidence is below `low_confidence`;
//! * `small_margin` — the top two classes are within `small_margin`;
//! * `vote_split` — self-consistency votes were not unanimous;
//! * `near_other_seed` — the text is closer to a seed of another class
//!   than to any seed of its own (word-shingle Jaccard ≥ `near_seed`).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::dedup::shingles;
use super::parse::normalize;
use crate::domain::{Origin, ProjectState, SampleState, VerdictMethod};

/// What `disagrees` adds to a doubt score.
pub const DISAGREEMENT: f64 = 1.0;

/// A doubt score (higher = look first) with its reasons.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Doubt {
    pub score: f64,
    pub reasons: Vec<&'static str>,
}

/// Shingles are already well-mixed 64-bit hashes: the postings use them
/// as they are instead of hashing them again with SipHash.
#[derive(Default)]
struct ShingleHasher(u64);

impl Hasher for ShingleHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Seeds and thresholds for [`doubt`].
#[derive(Debug, Clone)]
pub struct DoubtContext {
    /// Seed labels and shingle-set sizes.
    seeds: Vec<(String, usize)>,
    /// Shingle → seeds holding it (an inverted index keeps the check
    /// proportional to the sample's length, not the number of seeds).
    postings: HashMap<u64, Vec<u32>, BuildHasherDefault<ShingleHasher>>,
    pub low_confidence: f64,
    pub small_margin: f64,
    pub near_seed: f64,
}

impl DoubtContext {
    /// Default thresholds: confidence < 0.6, margin < 0.2, seed Jaccard ≥ 0.3.
    pub fn new<'a>(seeds: impl IntoIterator<Item = (&'a str, &'a str)>) -> DoubtContext {
        let mut ctx = DoubtContext {
            seeds: Vec::new(),
            postings: HashMap::default(),
            low_confidence: 0.6,
            small_margin: 0.2,
            near_seed: 0.3,
        };
        for (label, text) in seeds {
            let sh = shingles(&normalize(text));
            let i = ctx.seeds.len() as u32;
            for s in &sh {
                ctx.postings.entry(*s).or_default().push(i);
            }
            ctx.seeds.push((label.to_string(), sh.len()));
        }
        ctx
    }

    /// The seeds of a project.
    pub fn from_state(state: &ProjectState) -> DoubtContext {
        DoubtContext::new(
            state
                .samples
                .iter()
                .filter(|s| s.origin == Origin::Seed)
                .map(|s| (s.label.as_str(), s.text())),
        )
    }

    /// Highest Jaccard similarity to a seed of `label` and to a seed of any
    /// other class: (own, other).
    pub fn seed_similarity(&self, text: &str, label: &str) -> (f64, f64) {
        let sh = shingles(&normalize(text));
        // Shared shingles per seed: a plain count per seed (a project has
        // a few dozen seeds; this runs once per sample when review opens).
        let mut inter = vec![0u32; self.seeds.len()];
        for s in &sh {
            if let Some(list) = self.postings.get(s) {
                for &i in list {
                    inter[i as usize] += 1;
                }
            }
        }
        let (mut own, mut other) = (0.0f64, 0.0f64);
        for (i, n) in inter.into_iter().enumerate().filter(|(_, n)| *n > 0) {
            let n = n as usize;
            let (l, len) = &self.seeds[i];
            let j = n as f64 / (sh.len() + len - n) as f64;
            if l == label {
                own = own.max(j);
            } else {
                other = other.max(j);
            }
        }
        (own, other)
    }
}

/// Score a sample. Seeds and held-out examples have no doubt.
pub fn doubt(s: &SampleState, ctx: &DoubtContext) -> Doubt {
    doubt_inner(s, ctx, None)
}

/// [`doubt`] with `disagrees` read from the judge that decides when it is
/// not the relabeler: `theirs` is its answer about `s` (`None`: none yet;
/// `Some(None)`: one naming no class). The relabel verdict's own reasons
/// (not relabelled, unreadable, low confidence, small margin, split votes)
/// stay: they describe the LLM's answer, which the review still shows.
pub fn doubt_by(s: &SampleState, ctx: &DoubtContext, theirs: Option<Option<&str>>) -> Doubt {
    doubt_inner(s, ctx, Some(theirs))
}

/// `judge`: `None` = the relabeler decides; `Some(answer)` = another judge.
fn doubt_inner(s: &SampleState, ctx: &DoubtContext, judge: Option<Option<Option<&str>>>) -> Doubt {
    let mut d = Doubt::default();
    if s.origin != Origin::Generated {
        return d;
    }
    let mut add = |score: f64, reason: &'static str| {
        d.score += score;
        d.reasons.push(reason);
    };
    if let Some(Some(Some(l))) = judge
        && l != s.label
    {
        add(DISAGREEMENT, "disagrees");
    }
    match s.verdict() {
        None => add(0.1, "no_verdict"),
        Some(v) => match &v.label {
            None => add(0.9, "unparsable"),
            Some(l) => {
                if judge.is_none() && *l != s.label {
                    add(DISAGREEMENT, "disagrees");
                }
                let conf = v.top_confidence();
                if v.method != VerdictMethod::Single {
                    if conf < ctx.low_confidence {
                        add(0.2 + ctx.low_confidence - conf, "low_conf");
                    }
                    let margin = v.margin();
                    if v.confidence.len() > 1 && margin < ctx.small_margin {
                        add(0.3 * (1.0 - margin / ctx.small_margin), "small_margin");
                    }
                }
                if v.method == VerdictMethod::Vote && conf < 1.0 {
                    add(0.3, "vote_split");
                }
            }
        },
    }
    let (own, other) = ctx.seed_similarity(s.text(), &s.label);
    if other >= ctx.near_seed && other > own {
        add(0.5 * other, "near_other_seed");
    }
    // The denoiser found it far from its class's seeds or echoing the
    // prompt (a flag; in reject mode it is also rejected).
    if let Some(n) = &s.noise
        && n.reason.is_some()
    {
        add(0.5 + 0.5 * n.noise, "noisy");
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Provenance, Verdict};

    fn sample(text: &str, label: &str, verdict: Option<Verdict>) -> SampleState {
        SampleState {
            id: 9,
            original_text: text.into(),
            label: label.into(),
            origin: Origin::Generated,
            provenance: Provenance::default().into(),
            added_event: 1,
            added_ts: 0,
            edits: Default::default(),
            verdicts: verdict.into_iter().map(|v| (2, v)).collect(),
            decisions: Default::default(),
            noise: None,
        }
    }

    fn verdict(label: Option<&str>, conf: &[(&str, f64)], method: VerdictMethod) -> Verdict {
        Verdict {
            label: label.map(Into::into),
            confidence: conf.iter().map(|(c, p)| (c.to_string(), *p)).collect(),
            method,
            votes: None,
            raw: None,
            model: None,
            request_id: None,
        }
    }

    fn ctx() -> DoubtContext {
        DoubtContext::new([
            ("HUM", "Who wrote the novel War and Peace?"),
            ("LOC", "Where is the tallest mountain in Africa?"),
        ])
    }

    #[test]
    fn confident_agreement_has_no_doubt() {
        let s = sample(
            "Who composed the Moonlight Sonata?",
            "HUM",
            Some(verdict(
                Some("HUM"),
                &[("HUM", 0.95), ("LOC", 0.05)],
                VerdictMethod::Logprobs,
            )),
        );
        let d = doubt(&s, &ctx());
        assert_eq!(d.reasons, Vec::<&str>::new());
        assert_eq!(d.score, 0.0);
    }

    #[test]
    fn each_reason() {
        let c = ctx();
        let reasons = |s: &SampleState| doubt(s, &c).reasons;
        let t = "Who composed the Moonlight Sonata?";
        assert_eq!(reasons(&sample(t, "HUM", None)), vec!["no_verdict"]);
        assert_eq!(
            reasons(&sample(
                t,
                "HUM",
                Some(verdict(None, &[], VerdictMethod::Single))
            )),
            vec!["unparsable"]
        );
        assert_eq!(
            reasons(&sample(
                t,
                "HUM",
                Some(verdict(Some("LOC"), &[("LOC", 1.0)], VerdictMethod::Single))
            )),
            vec!["disagrees"]
        );
        assert_eq!(
            reasons(&sample(
                t,
                "HUM",
                Some(verdict(
                    Some("HUM"),
                    &[("HUM", 0.5), ("LOC", 0.45)],
                    VerdictMethod::Logprobs
                ))
            )),
            vec!["low_conf", "small_margin"]
        );
        assert_eq!(
            reasons(&sample(
                t,
                "HUM",
                Some(verdict(
                    Some("HUM"),
                    &[("HUM", 0.67), ("LOC", 0.33)],
                    VerdictMethod::Vote
                ))
            )),
            vec!["vote_split"]
        );
        // Intended HUM, but nearly a LOC seed.
        let near = sample(
            "Where is the tallest mountain in Europe?",
            "HUM",
            Some(verdict(Some("HUM"), &[("HUM", 1.0)], VerdictMethod::Single)),
        );
        assert_eq!(reasons(&near), vec!["near_other_seed"]);
        let (own, other) = c.seed_similarity("Where is the tallest mountain in Europe?", "HUM");
        assert!(own < 0.1, "{own}");
        assert!(other > 0.5, "{other}");
    }

    /// With another judge deciding, `disagrees` is that judge's: the
    /// relabel verdict's disagreement no longer counts, the judge's does,
    /// and the verdict's own reasons stay.
    #[test]
    fn another_judge_decides_the_disagreement() {
        let c = ctx();
        let t = "Who composed the Moonlight Sonata?";
        let llm_says_loc = sample(
            t,
            "HUM",
            Some(verdict(
                Some("LOC"),
                &[("LOC", 0.5), ("HUM", 0.45)],
                VerdictMethod::Logprobs,
            )),
        );
        assert_eq!(
            doubt(&llm_says_loc, &c).reasons,
            vec!["disagrees", "low_conf", "small_margin"]
        );
        let agrees = doubt_by(&llm_says_loc, &c, Some(Some("HUM")));
        assert_eq!(agrees.reasons, vec!["low_conf", "small_margin"]);
        let differs = doubt_by(&llm_says_loc, &c, Some(Some("NUM")));
        assert_eq!(
            differs.reasons,
            vec!["disagrees", "low_conf", "small_margin"]
        );
        assert!(differs.score > agrees.score + 0.99);
        // No answer yet, or one naming no class: no disagreement.
        assert_eq!(doubt_by(&llm_says_loc, &c, None), agrees);
        assert_eq!(doubt_by(&llm_says_loc, &c, Some(None)), agrees);
        // Not relabelled, the judge disagrees: both reasons.
        assert_eq!(
            doubt_by(&sample(t, "HUM", None), &c, Some(Some("LOC"))).reasons,
            vec!["disagrees", "no_verdict"]
        );
    }

    #[test]
    fn ordering_puts_disagreement_first() {
        let c = ctx();
        let t = "Who composed the Moonlight Sonata?";
        let dis = doubt(
            &sample(
                t,
                "HUM",
                Some(verdict(
                    Some("LOC"),
                    &[("LOC", 0.9), ("HUM", 0.1)],
                    VerdictMethod::Logprobs,
                )),
            ),
            &c,
        );
        let low = doubt(
            &sample(
                t,
                "HUM",
                Some(verdict(
                    Some("HUM"),
                    &[("HUM", 0.55), ("LOC", 0.1)],
                    VerdictMethod::Logprobs,
                )),
            ),
            &c,
        );
        let none = doubt(&sample(t, "HUM", None), &c);
        assert!(
            dis.score > low.score && low.score > none.score,
            "{dis:?} {low:?} {none:?}"
        );
        let mut seed = sample(t, "HUM", None);
        seed.origin = Origin::Seed;
        assert_eq!(doubt(&seed, &c), Doubt::default());
    }
}
