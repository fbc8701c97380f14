//! S3 error extrapolation (Wang et al., 2023): the real held-out examples
//! the small classifier gets wrong seed the next round of generation. One
//! request per error asks for new examples like it, with its true label
//! (`prompts/extrapolate.j2`); the replies go through the same parse →
//! dedup → relabel → review path as every other generated example, with
//! provenance pointing at the error (`error_of`) and the round.
//!
//! The held-out examples themselves only ever appear in prompts: they are
//! never training rows and never exported.

use std::collections::BTreeMap;

use super::evaluate::Mistake;
use crate::domain::Provenance;

/// Strategy name recorded in provenance.
pub const STRATEGY: &str = "extrapolate";
/// Template file name.
pub const TEMPLATE: &str = "extrapolate.j2";

/// Choose at most `max` mistakes to extrapolate from, deterministically:
/// round-robin over the true classes (in class order) so every class that
/// has errors gets requests, and within a class the most confidently wrong
/// first (ties by sample id).
pub fn select_mistakes(mistakes: &[Mistake], classes: &[String], max: usize) -> Vec<Mistake> {
    let mut by_class: BTreeMap<usize, Vec<&Mistake>> = BTreeMap::new();
    for m in mistakes {
        let c = classes
            .iter()
            .position(|c| *c == m.truth)
            .unwrap_or(classes.len());
        by_class.entry(c).or_default().push(m);
    }
    for list in by_class.values_mut() {
        list.sort_by(|a, b| b.confidence.total_cmp(&a.confidence).then(a.id.cmp(&b.id)));
    }
    let mut queues: Vec<std::vec::IntoIter<&Mistake>> =
        by_class.into_values().map(Vec::into_iter).collect();
    let mut out = Vec::new();
    while out.len() < max {
        let before = out.len();
        for q in &mut queues {
            if out.len() == max {
                break;
            }
            if let Some(m) = q.next() {
                out.push(m.clone());
            }
        }
        if out.len() == before {
            break;
        }
    }
    out
}

/// Provenance of examples extrapolated from `m` in `round`: intended
/// label = the true label, `minor` = the class it was mistaken for.
pub fn provenance(m: &Mistake, round: u32) -> Provenance {
    Provenance {
        strategy: Some(STRATEGY.to_string()),
        classes: vec![m.truth.clone(), m.predicted.clone()],
        minor: Some(m.predicted.clone()),
        error_of: (m.id != 0).then_some(m.id),
        round: Some(round),
        ..Provenance::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: u64, truth: &str, conf: f64) -> Mistake {
        Mistake {
            id,
            text: format!("t{id}"),
            truth: truth.into(),
            predicted: "X".into(),
            confidence: conf,
        }
    }

    #[test]
    fn selection_spreads_over_classes_and_prefers_confident_errors() {
        let classes: Vec<String> = ["A", "B", "X"].iter().map(|s| s.to_string()).collect();
        let ms = [
            m(1, "A", 0.5),
            m(2, "A", 0.9),
            m(3, "A", 0.7),
            m(4, "B", 0.4),
        ];
        let ids = |v: Vec<Mistake>| v.iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(ids(select_mistakes(&ms, &classes, 3)), [2, 4, 3]);
        assert_eq!(ids(select_mistakes(&ms, &classes, 10)), [2, 4, 3, 1]);
        assert!(select_mistakes(&ms, &classes, 0).is_empty());
    }

    #[test]
    fn provenance_points_at_the_error() {
        let p = provenance(&m(7, "A", 0.8), 2);
        assert_eq!(p.strategy.as_deref(), Some("extrapolate"));
        assert_eq!(p.error_of, Some(7));
        assert_eq!(p.round, Some(2));
        assert_eq!(p.minor.as_deref(), Some("X"));
    }
}
