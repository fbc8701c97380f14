//! Held-out errors: plain data passed from the classifier (which finds
//! them) to the `extrapolate` strategy (which writes prompts from them).

use serde::Serialize;

use super::SampleId;

/// A held-out example the augmented model gets wrong.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mistake {
    /// The held-out sample (0 when it came from a file).
    pub id: SampleId,
    pub text: String,
    pub truth: String,
    pub predicted: String,
    /// The model's probability of its (wrong) prediction.
    pub confidence: f64,
}
