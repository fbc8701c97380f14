//! `extrapolate`: S3 error extrapolation (Wang et al., 2023): the real
//! held-out examples the small classifier gets wrong seed the next round of
//! generation. One request per error asks for new examples like it, with
//! its true label (`prompts/extrapolate.j2`); the replies go through the
//! same parse → dedup → relabel → review path as every other generated
//! example, with provenance pointing at the error (`error_of`) and the
//! round. Its requests are planned from the errors an S3 round hands over
//! ([`ErrorRound`]), one as each slot frees, never from the settings alone.
//!
//! The held-out examples themselves only ever appear in prompts: they are
//! never training rows and never exported.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Ask, ErrorSource, Input, PlanContext, Strategy};
use crate::augment::generator::{PlannedRequest, RequestKind, STREAM_KEY};
use crate::augment::sampling::{splitmix64, stream_seed};
use crate::augment::templates::{ClassContext, TaskContext};
use crate::domain::{self, Mistake, Provenance};
use crate::llm::{ChatRequest, Message};

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
        strategy: Some(STRATEGY.into()),
        classes: vec![m.truth.as_str().into(), m.predicted.as_str().into()],
        minor: Some(m.predicted.as_str().into()),
        error_of: (m.id != 0).then_some(m.id),
        round: Some(round),
        ..Provenance::default()
    }
}

/// What `extrapolate.j2` sees.
#[derive(Debug, Clone, Serialize)]
pub struct ExtrapolateContext {
    pub task: TaskContext,
    /// Every class with its description (no examples: the misclassified
    /// text is the example).
    pub classes: Vec<ClassContext>,
    /// The misclassified held-out text.
    pub text: String,
    /// Its true label.
    pub truth: String,
    /// What the classifier predicted.
    pub predicted: String,
    /// Examples asked for.
    pub n: usize,
}

pub struct Extrapolate;

impl Strategy for Extrapolate {
    fn kind(&self) -> domain::Strategy {
        domain::Strategy::Extrapolate
    }
    fn input(&self) -> Input {
        Input::HeldoutErrors
    }
    fn plan(&self, cx: &PlanContext<'_>, ask: &Ask<'_>) -> anyhow::Result<PlannedRequest> {
        let Some(ErrorSource {
            mistake: m,
            round,
            repeat,
        }) = ask.error
        else {
            return Err(crate::error::user(
                "the extrapolate strategy is planned by an S3 round (`straddle loop`, or R in the \
                 terminal UI), not by generate",
            ));
        };
        let s = cx.settings;
        let ctx = ExtrapolateContext {
            task: cx.task_ctx(),
            classes: cx
                .classes
                .iter()
                .map(|c| ClassContext {
                    name: c.name.clone(),
                    description: c.description.clone(),
                    examples: Vec::new(),
                })
                .collect(),
            text: m.text.clone(),
            truth: m.truth.clone(),
            predicted: m.predicted.clone(),
            n: ask.n,
        };
        let prompt = cx.templates.render(TEMPLATE, &ctx)?;
        let mut request = ChatRequest::new(vec![Message::user(prompt)]);
        request.temperature = Some(s.temperature);
        request.max_tokens = Some(s.max_tokens);
        // From this run's own seed stream (stream 0 is the settings' seed,
        // as before streams), so an S3 round of a later run does not send
        // the requests of an earlier one again.
        let seed = stream_seed(s.seed, cx.stream);
        request.seed = Some(splitmix64(
            seed ^ (u64::from(round) << 40) ^ (m.id << 8) ^ repeat,
        ));
        let mut provenance = provenance(m, round);
        provenance
            .extra
            .insert(STREAM_KEY.into(), serde_json::json!(cx.stream));
        provenance.template = Some(TEMPLATE.into());
        provenance.template_hash = Some(cx.templates.hash(TEMPLATE).into());
        provenance.temperature = Some(s.temperature);
        Ok(PlannedRequest {
            request,
            kind: RequestKind::Generate {
                target: m.truth.clone(),
            },
            provenance,
            n: ask.n,
            // The held-out text counts as shown: a copy of it is judged by
            // dedup (which indexes held-out examples) instead of kept.
            shown_examples: vec![m.text.clone()],
            labels: Vec::new(),
        })
    }
}

/// The requests of one extrapolation round, handed out one at a time:
/// `ceil(count / per_request)` requests of `per_request` examples each (the
/// last one the rest), one per error chosen by [`select_mistakes`]; with
/// fewer errors than requests the errors are cycled, each repeat with its
/// own sampling seed so a cached reply is not simply served again.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorRound {
    pub round: u32,
    chosen: Vec<Mistake>,
    calls: usize,
    next: usize,
    left: usize,
    per_request: usize,
}

impl ErrorRound {
    pub fn new(
        mistakes: &[Mistake],
        class_names: &[String],
        round: u32,
        count: usize,
        per_request: usize,
    ) -> ErrorRound {
        let per_request = per_request.max(1);
        let calls = count.div_ceil(per_request);
        let chosen = select_mistakes(mistakes, class_names, calls);
        ErrorRound {
            round,
            calls: if chosen.is_empty() { 0 } else { calls },
            chosen,
            next: 0,
            left: count,
            per_request,
        }
    }

    /// Requests not handed out yet.
    pub fn remaining(&self) -> usize {
        self.calls - self.next
    }

    /// Distinct errors the round extrapolates.
    pub fn errors(&self) -> usize {
        self.chosen.len().min(self.calls)
    }

    /// The next request's error, repeat number and example count.
    pub fn next_ask(&mut self) -> Option<(Mistake, u64, usize)> {
        if self.next >= self.calls {
            return None;
        }
        let call = self.next;
        self.next += 1;
        let n = self.per_request.min(self.left);
        self.left -= n;
        let m = self.chosen[call % self.chosen.len()].clone();
        Some((m, (call / self.chosen.len()) as u64, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::generator::{Generator, Reply};
    use crate::augment::templates::Templates;
    use crate::domain::testing::state_with;
    use crate::domain::{Class, GenerationSettings, Origin, ProjectConfig, Status};

    const NAMES: [&str; 3] = ["sports", "food", "weather"];

    fn classes() -> Vec<Class> {
        crate::domain::testing::classes(&NAMES, |c| format!("{c} talk"))
    }

    fn config() -> ProjectConfig {
        crate::domain::testing::topics_config(&NAMES)
    }

    fn mistake(id: u64, text: &str, truth: &str, predicted: &str, confidence: f64) -> Mistake {
        Mistake {
            id,
            text: text.into(),
            truth: truth.into(),
            predicted: predicted.into(),
            confidence,
        }
    }

    /// Every request of a round, planned one after the other.
    fn plan_all(g: &Generator, ms: &[Mistake], round: u32, count: usize) -> Vec<PlannedRequest> {
        let names: Vec<String> = classes().into_iter().map(|c| c.name).collect();
        let per = g.settings().per_request;
        let mut r = ErrorRound::new(ms, &names, round, count, per);
        std::iter::from_fn(|| g.plan_error(&mut r))
            .map(Result::unwrap)
            .collect()
    }

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

    #[test]
    fn extrapolation_plans_one_request_per_error_and_cycles() {
        let st = state_with(
            &[
                ("a great goal", "sports", Origin::Seed),
                ("hot soup", "food", Origin::Seed),
                ("the match was rained off", "sports", Origin::Validation),
                ("fresh bread at dawn", "food", Origin::Validation),
            ],
            vec![],
        );
        let cfg = config();
        let generator = Generator::new(
            &cfg,
            classes(),
            GenerationSettings::default(),
            Templates::builtin(),
            &st,
        );
        let ms = [
            mistake(3, "the match was rained off", "sports", "weather", 0.7),
            mistake(4, "fresh bread at dawn", "food", "weather", 0.6),
        ];
        let planned = plan_all(&generator, &ms, 2, 12);
        assert_eq!(planned.iter().map(|p| p.n).collect::<Vec<_>>(), [5, 5, 2]);
        let errs: Vec<_> = planned.iter().map(|p| p.provenance.error_of).collect();
        assert_eq!(errs, [Some(3), Some(4), Some(3)]);
        assert_ne!(planned[0].request.seed, planned[2].request.seed);
        // Issue 11, fresh rounds: the same round of the same errors in a
        // later run (its own seed stream) sends other requests; the same
        // stream replays them, and the stream is recorded.
        assert_eq!(planned[0].provenance.extra[STREAM_KEY], 0);
        let mut later = generator.clone();
        later.set_stream(1);
        let again = plan_all(&generator, &ms, 2, 12);
        let fresh = plan_all(&later, &ms, 2, 12);
        let seeds = |v: &[PlannedRequest]| v.iter().map(|p| p.request.seed).collect::<Vec<_>>();
        assert_eq!(seeds(&again), seeds(&planned));
        for (a, b) in seeds(&fresh).iter().zip(seeds(&planned)) {
            assert_ne!(*a, b);
        }
        assert_eq!(fresh[0].provenance.extra[STREAM_KEY], 1);
        let p = &planned[0];
        assert_eq!(
            p.kind,
            RequestKind::Generate {
                target: "sports".into()
            }
        );
        assert_eq!(p.provenance.strategy.as_deref(), Some("extrapolate"));
        assert_eq!(p.provenance.round, Some(2));
        assert_eq!(p.provenance.template.as_deref(), Some("extrapolate.j2"));
        assert_eq!(
            p.provenance.template_hash.as_deref().map(str::len),
            Some(16)
        );
        let prompt = p.prompt();
        assert!(prompt.starts_with("Short posts."), "{prompt}");
        assert!(
            prompt.contains("3. weather: texts which are about weather talk"),
            "{prompt}"
        );
        assert!(
            prompt.contains("mistakes this sports text for weather:\n   the match was rained off"),
            "{prompt}"
        );
        assert!(prompt.contains("Write 5 new"), "{prompt}");
        assert!(plan_all(&generator, &[], 2, 12).is_empty());
    }

    #[test]
    fn a_copy_of_the_heldout_text_is_rejected_as_duplicate() {
        let st = state_with(
            &[
                ("a great goal", "sports", Origin::Seed),
                ("the match was rained off", "sports", Origin::Validation),
            ],
            vec![],
        );
        let cfg = config();
        let mut generator = Generator::new(
            &cfg,
            classes(),
            GenerationSettings::default(),
            Templates::builtin(),
            &st,
        );
        let ms = [mistake(
            2,
            "the match was rained off",
            "sports",
            "weather",
            0.7,
        )];
        let planned = plan_all(&generator, &ms, 1, 2);
        let text = "1. The match was rained off!\n2. Our striker scored twice despite the storm";
        let reply = Reply {
            text: text.into(),
            choices: vec![text.into()],
            finish_reason: Some("stop".into()),
            usage: Default::default(),
            logprobs: None,
            cached: false,
            model: "m".into(),
            request_id: "r".into(),
        };
        let events = generator.on_reply(&st, &planned[0], &reply);
        let mut st = st;
        for (i, kind) in events.into_iter().enumerate() {
            st.apply(&crate::domain::Event {
                v: 1,
                id: 100 + i as u64,
                ts: 0,
                kind,
            });
        }
        let made: Vec<_> = st.generated().collect();
        assert_eq!(made.len(), 2);
        assert_eq!(made[0].status(), Status::Rejected);
        assert_eq!(
            made[0].decision().and_then(|d| d.reason.as_deref()),
            Some("duplicate")
        );
        assert_eq!(made[1].status(), Status::Pending);
        assert_eq!(made[1].label, "sports");
        assert_eq!(made[1].provenance.error_of, Some(2));
    }
}
