//! A synthetic, seeded text-classification task for tests and benchmarks.
//!
//! Each class owns a small vocabulary of made-up topic words; a text mixes
//! words of its own class, some of another class (boundary noise) and
//! shared filler words. The task is learnable but not trivial.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Texts with labels (indices into `classes`).
#[derive(Debug, Clone, PartialEq)]
pub struct ToyData {
    pub classes: Vec<String>,
    pub texts: Vec<String>,
    pub labels: Vec<usize>,
}

const SYLLABLES: [&str; 16] = [
    "ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "pe", "sa", "do", "fu", "gri", "bon", "tel",
    "sho",
];
const TOPIC_WORDS: usize = 40;
const FILLER_WORDS: usize = 300;
/// Share of a text's words drawn from its own class.
const P_OWN: f64 = 0.3;
/// Share drawn from one other class (the same one within a text).
const P_OTHER: f64 = 0.1;

fn word(rng: &mut StdRng) -> String {
    let n = rng.random_range(2..=3);
    (0..n)
        .map(|_| SYLLABLES[rng.random_range(0..SYLLABLES.len())])
        .collect()
}

/// `n` texts of `words` words over `k` classes, labels drawn uniformly,
/// all from `seed`. The vocabularies are fixed (independent of `seed`), so
/// two calls with different seeds give train and test sets of one task.
pub fn synthetic(n: usize, k: usize, words: usize, seed: u64) -> ToyData {
    let mut vocab_rng = StdRng::seed_from_u64(0x70f);
    let topics: Vec<Vec<String>> = (0..k)
        .map(|_| (0..TOPIC_WORDS).map(|_| word(&mut vocab_rng)).collect())
        .collect();
    let filler: Vec<String> = (0..FILLER_WORDS).map(|_| word(&mut vocab_rng)).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut texts = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let y = rng.random_range(0..k);
        let other = (y + rng.random_range(1..k.max(2))) % k;
        let text: Vec<&str> = (0..words)
            .map(|_| {
                let u: f64 = rng.random();
                let pool = if u < P_OWN {
                    &topics[y]
                } else if u < P_OWN + P_OTHER {
                    &topics[other]
                } else {
                    &filler
                };
                pool[rng.random_range(0..pool.len())].as_str()
            })
            .collect();
        texts.push(text.join(" "));
        labels.push(y);
    }
    ToyData {
        classes: (0..k).map(|i| format!("class{i}")).collect(),
        texts,
        labels,
    }
}

/// `n` dense rows of `d` floats around `k` class centres (fixed, independent
/// of `seed`), with Gaussian noise of `spread` per axis, each row L2-
/// normalised like a sentence embedding; labels drawn uniformly. A
/// stand-in for embeddings in tests and benchmarks.
pub fn blobs(n: usize, k: usize, d: usize, spread: f32, seed: u64) -> (super::Dense, Vec<usize>) {
    use rand_distr::{Distribution, Normal};
    let normal = Normal::new(0.0f32, 1.0).expect("unit normal");
    let mut crng = StdRng::seed_from_u64(0xb10b);
    let centres: Vec<Vec<f32>> = (0..k)
        .map(|_| (0..d).map(|_| normal.sample(&mut crng)).collect())
        .collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut x = super::Dense::new(d);
    let mut y = Vec::with_capacity(n);
    let scale = 1.0 / (d as f32).sqrt();
    for _ in 0..n {
        let c = rng.random_range(0..k);
        let mut row: Vec<f32> = centres[c]
            .iter()
            .map(|m| (m + spread * normal.sample(&mut rng)) * scale)
            .collect();
        let norm = super::dense::norm2(&row).sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= norm);
        x.push(&row);
        y.push(c);
    }
    (x, y)
}
