//! The small local classifier used by the S3 loop and for review signals.
//!
//! A multinomial linear model (softmax regression) over hashed word
//! unigrams, bigrams and character n-grams — the fastText recipe without
//! the hidden layer — trained with plain SGD, a linearly decaying learning
//! rate and balanced class weights. Everything is deterministic given the
//! seed in [`TrainConfig`]: features are hashed with a fixed hash, rows are
//! shuffled with a seeded RNG and nothing iterates a `HashMap`.
//!
//! No ML crate fits this job without pulling in a large dependency tree
//! (linfa/smartcore bring ndarray and dense features; fastText bindings
//! need C++), and the whole model is a couple of hundred lines.
//!
//! * [`Classifier`] — the n-gram model: train / `predict_proba`.
//! * [`LinearModel`] — logistic regression on sentence embeddings
//!   ([`linear`]), calibrated out of fold; [`SmallModel`] picks one of the
//!   two behind one interface.
//! * [`bootstrap`] — intervals for scores and paired differences.
//! * [`score`] — accuracy, macro-F1, per-class F1, confusion matrix.
//! * [`evaluate`] / [`evaluate_project`] — baseline vs augmented on
//!   held-out examples, with the augmented model's mistakes (for S3
//!   error extrapolation).
//! * [`signals`] — per-example confidence, variability and out-of-fold
//!   self-confidence with doubt reason tags.

pub mod bootstrap;
pub mod data;
pub mod dense;
pub mod doubt;
pub mod evaluate;
pub mod features;
pub mod judge;
pub mod linear;
pub mod model;
pub mod pool;
pub mod reliability;
pub mod s3;
pub mod scores;
pub mod signals;
pub mod small;
pub mod toy;

pub use bootstrap::{Comparison, Interval, Verdict};
pub use data::{
    LabelledSet, MAX_TRAIN, capped_training_set, heldout_set, review_pool, training_set,
};
pub use dense::Dense;
pub use evaluate::{
    Evaluation, Mistake, evaluate, evaluate_project, evaluate_project_with, evaluate_with,
    score_round_with,
};
pub use features::{Encoded, FeatureConfig};
pub use linear::{CrossFit, LinearConfig, LinearModel, fit_calibrated};
pub use model::{Classifier, TrainConfig, argmax};
pub use reliability::{Bucket, ece};
pub use scores::score;
pub use signals::{
    AMBIGUOUS, HARD_TO_LEARN, LIKELY_MISLABEL, SignalConfig, SignalMap, Signals,
    shared_signals_and_doubt, signals, signals_and_doubt, signals_for, signals_for_vectors,
    signals_with,
};
pub use small::{SmallModel, TextEncoder};
