//! Multinomial logistic regression (softmax) over hashed sparse features,
//! trained with plain SGD and a linearly decaying learning rate.
//!
//! Weights are stored bucket-major (`weights[bucket * k + class]`) so one
//! feature touches `k` adjacent floats. Each row's features are scaled by
//! `1/sqrt(nnz)` so texts of different lengths have comparable norms.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::features::{Encoded, FeatureConfig};

/// How to train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub features: FeatureConfig,
    /// Passes over the data (raised for tiny sets, see `min_updates`).
    pub epochs: usize,
    /// Initial learning rate; decays linearly to 0 over all updates.
    pub lr: f32,
    /// Seed of the per-epoch shuffle.
    pub seed: u64,
    /// Weight each example by `n / (classes_present · n_class)` so rare
    /// classes count as much as common ones.
    pub balance: bool,
    /// Raise the number of epochs until `epochs · n ≥ min_updates` (at most
    /// `max_epochs`), so a dozen seed examples still train to fit.
    pub min_updates: usize,
    pub max_epochs: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            features: FeatureConfig::default(),
            epochs: 5,
            lr: 0.5,
            seed: 0,
            balance: true,
            min_updates: 2000,
            max_epochs: 100,
        }
    }
}

impl TrainConfig {
    /// The defaults with the hash table sized for `k` classes: `2^18`
    /// buckets up to 8 classes, then halved per doubling of `k` (down to
    /// `2^15`), so the weights stay near 8 MB however many classes a task has.
    pub fn for_classes(k: usize, seed: u64) -> TrainConfig {
        let mut bits = 18u8;
        let mut per = 8usize;
        while k > per && bits > 15 {
            bits -= 1;
            per *= 2;
        }
        TrainConfig {
            features: FeatureConfig {
                bits,
                ..FeatureConfig::default()
            },
            seed,
            ..TrainConfig::default()
        }
    }

    /// Epochs actually run for `n` training rows.
    pub fn epochs_for(&self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let needed = self.min_updates.div_ceil(n);
        self.epochs.max(needed.min(self.max_epochs)).max(1)
    }
}

/// A trained classifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Classifier {
    classes: Vec<String>,
    features: FeatureConfig,
    weights: Vec<f32>,
    bias: Vec<f32>,
}

/// Batches at least this large are predicted on several threads.
const PARALLEL_MIN: usize = 2048;

/// Per training row, the model's probability of the row's label after each
/// epoch (`probs[row][epoch]`), for dataset cartography.
pub type EpochProbs = Vec<Vec<f32>>;

impl Classifier {
    /// Train on texts with labels (indices into `classes`).
    ///
    /// # Panics
    /// When `texts` and `labels` differ in length or a label is out of range.
    pub fn train<S: AsRef<str>>(
        classes: &[String],
        texts: &[S],
        labels: &[usize],
        cfg: &TrainConfig,
    ) -> Classifier {
        let enc = Encoded::new(&cfg.features, texts);
        let rows: Vec<usize> = (0..enc.len()).collect();
        Self::fit(classes, &enc, labels, &rows, cfg, None)
    }

    /// Train on the given rows of pre-encoded data (encoded with
    /// `cfg.features`). With `dynamics`, record each row's probability of
    /// its label at the end of every epoch, in the order of `rows`.
    pub fn fit(
        classes: &[String],
        enc: &Encoded,
        labels: &[usize],
        rows: &[usize],
        cfg: &TrainConfig,
        mut dynamics: Option<&mut EpochProbs>,
    ) -> Classifier {
        assert_eq!(enc.len(), labels.len(), "one label per text");
        let k = classes.len();
        assert!(labels.iter().all(|&l| l < k), "label out of range");
        let mut m = Classifier {
            classes: classes.to_vec(),
            features: cfg.features.clone(),
            weights: vec![0.0; cfg.features.buckets() * k],
            bias: vec![0.0; k],
        };
        if k == 0 || rows.is_empty() {
            return m;
        }
        let cw = class_weights(k, rows.iter().map(|&r| labels[r]), cfg.balance);
        let epochs = cfg.epochs_for(rows.len());
        let total = (epochs * rows.len()) as f32;
        let mut order = rows.to_vec();
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let mut p = vec![0f32; k];
        let mut step = 0f32;
        if let Some(d) = dynamics.as_deref_mut() {
            *d = vec![Vec::with_capacity(epochs); rows.len()];
        }
        for _ in 0..epochs {
            order.shuffle(&mut rng);
            for &r in &order {
                let lr = cfg.lr * (1.0 - step / total);
                step += 1.0;
                let feats = enc.row(r);
                let scale = row_scale(feats);
                m.probs_into(feats, scale, &mut p);
                let y = labels[r];
                p[y] -= 1.0;
                let g = lr * cw[y];
                for (b, pc) in m.bias.iter_mut().zip(&p) {
                    *b -= g * pc;
                }
                let gs = g * scale;
                for &f in feats {
                    let w = &mut m.weights[f as usize * k..(f as usize + 1) * k];
                    for (wc, pc) in w.iter_mut().zip(&p) {
                        *wc -= gs * pc;
                    }
                }
            }
            if let Some(d) = dynamics.as_deref_mut() {
                for (i, &r) in rows.iter().enumerate() {
                    let feats = enc.row(r);
                    m.probs_into(feats, row_scale(feats), &mut p);
                    d[i].push(p[labels[r]]);
                }
            }
        }
        m
    }

    /// The class names, in label-index order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The feature configuration the model was trained with.
    pub fn features(&self) -> &FeatureConfig {
        &self.features
    }

    /// Probability per class (in [`Classifier::classes`] order), summing to 1.
    pub fn predict_proba(&self, text: &str) -> Vec<f64> {
        self.proba_of(&self.features.extract(text))
    }

    /// The most probable class index.
    pub fn predict(&self, text: &str) -> usize {
        argmax(&self.predict_proba(text))
    }

    /// Probabilities for row `i` of data encoded with this model's features.
    pub fn predict_proba_row(&self, enc: &Encoded, i: usize) -> Vec<f64> {
        self.proba_of(enc.row(i))
    }

    /// Probabilities for many texts, in order. Large batches are split
    /// over the available cores (the result does not depend on it).
    pub fn predict_proba_batch<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Vec<Vec<f64>> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        if threads < 2 || texts.len() < PARALLEL_MIN {
            return self.predict_chunk(texts);
        }
        let chunk = texts.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let parts: Vec<_> = texts
                .chunks(chunk)
                .map(|c| scope.spawn(move || self.predict_chunk(c)))
                .collect();
            parts
                .into_iter()
                .flat_map(|h| h.join().expect("prediction thread panicked"))
                .collect()
        })
    }

    fn predict_chunk<S: AsRef<str>>(&self, texts: &[S]) -> Vec<Vec<f64>> {
        let mut buf = Vec::with_capacity(256);
        texts
            .iter()
            .map(|t| {
                buf.clear();
                self.features.extract_into(t.as_ref(), &mut buf);
                self.proba_of(&buf)
            })
            .collect()
    }

    fn proba_of(&self, feats: &[u32]) -> Vec<f64> {
        let k = self.classes.len();
        if k == 0 {
            return Vec::new();
        }
        let mut p = vec![0f32; k];
        self.probs_into(feats, row_scale(feats), &mut p);
        let p: Vec<f64> = p.into_iter().map(f64::from).collect();
        let s: f64 = p.iter().sum();
        p.into_iter().map(|x| x / s).collect()
    }

    /// Softmax of the scores of a feature row, into `p`.
    fn probs_into(&self, feats: &[u32], scale: f32, p: &mut [f32]) {
        let k = self.bias.len();
        p.fill(0.0);
        for &f in feats {
            let w = &self.weights[f as usize * k..(f as usize + 1) * k];
            for (a, wc) in p.iter_mut().zip(w) {
                *a += wc;
            }
        }
        for (pc, b) in p.iter_mut().zip(&self.bias) {
            *pc = *pc * scale + b;
        }
        softmax(p);
    }
}

fn row_scale(feats: &[u32]) -> f32 {
    1.0 / (feats.len().max(1) as f32).sqrt()
}

fn softmax(p: &mut [f32]) {
    let max = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in p.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    for x in p.iter_mut() {
        *x /= sum;
    }
}

/// Balanced class weights `n / (present · n_c)` (or all 1).
fn class_weights(k: usize, labels: impl Iterator<Item = usize>, balance: bool) -> Vec<f32> {
    let mut counts = vec![0usize; k];
    for l in labels {
        counts[l] += 1;
    }
    if !balance {
        return vec![1.0; k];
    }
    let n: usize = counts.iter().sum();
    let present = counts.iter().filter(|&&c| c > 0).count().max(1);
    counts
        .iter()
        .map(|&c| {
            if c == 0 {
                1.0
            } else {
                n as f32 / (present * c) as f32
            }
        })
        .collect()
}

/// Index of the largest value (the first one on ties).
pub fn argmax(p: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in p.iter().enumerate() {
        if x > p[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_weights() {
        let w = class_weights(3, [0, 0, 0, 1].into_iter(), true);
        assert_eq!(w, vec![4.0 / 6.0, 2.0, 1.0]);
        assert_eq!(class_weights(2, [0].into_iter(), false), vec![1.0, 1.0]);
    }

    #[test]
    fn table_shrinks_for_many_classes() {
        assert_eq!(TrainConfig::for_classes(6, 1).features.bits, 18);
        assert_eq!(TrainConfig::for_classes(9, 1).features.bits, 17);
        assert_eq!(TrainConfig::for_classes(16, 1).features.bits, 17);
        assert_eq!(TrainConfig::for_classes(77, 1).features.bits, 15);
        assert_eq!(TrainConfig::for_classes(6, 1).seed, 1);
    }

    #[test]
    fn epochs_grow_for_tiny_sets() {
        let c = TrainConfig::default();
        assert_eq!(c.epochs_for(10_000), 5);
        assert_eq!(c.epochs_for(100), 20);
        assert_eq!(c.epochs_for(3), 100);
        assert_eq!(c.epochs_for(0), 0);
    }

    #[test]
    fn untrained_model_is_uniform() {
        let classes = vec!["a".to_string(), "b".to_string()];
        let m = Classifier::train::<&str>(&classes, &[], &[], &TrainConfig::default());
        assert_eq!(m.predict_proba("anything"), vec![0.5, 0.5]);
    }

    #[test]
    fn learns_a_trivial_rule_and_sums_to_one() {
        let classes = vec!["hot".to_string(), "cold".to_string()];
        let texts = [
            "the sun is burning",
            "a hot summer day",
            "snow and ice",
            "freezing cold wind",
        ];
        let m = Classifier::train(&classes, &texts, &[0, 0, 1, 1], &TrainConfig::default());
        let p = m.predict_proba("burning sun in summer");
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(p[0] > 0.8, "{p:?}");
        assert_eq!(m.predict("ice and snow"), 1);
    }
}
