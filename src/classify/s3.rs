//! The pure steps of an S3 round, shared by `straddle loop` and the TUI:
//! score the current data ([`score_round`]) and plan the extrapolation
//! requests for the next round ([`plan_extrapolation`]). Sending the
//! requests and appending the events is the caller's job.

use serde::Serialize;

use super::data;
use super::evaluate::{Evaluation, Mistake, evaluate};
use super::extrapolate::{self, select_mistakes};
use super::model::TrainConfig;
use crate::augment::generator::{Generator, PlannedRequest, RequestKind};
use crate::augment::sampling::splitmix64;
use crate::augment::templates::{ClassContext, TaskContext};
use crate::domain::{Class, Origin, ProjectState, RoundScored, TaskConfig};
use crate::llm::{ChatRequest, Message};

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

/// Train and score on the project's held-out examples; `None` when there
/// are none. The event records the augmented model's errors.
pub fn score_round(
    state: &ProjectState,
    classes: &[String],
    cfg: &TrainConfig,
    round: u32,
) -> Option<(RoundScored, Evaluation)> {
    let heldout = data::heldout_set(state, classes);
    if heldout.is_empty() {
        return None;
    }
    let ev = evaluate(
        classes,
        &data::training_set(state, classes, false),
        &data::training_set(state, classes, true),
        &heldout,
        cfg,
    );
    let scored = RoundScored {
        round,
        baseline: ev.baseline.clone(),
        augmented: ev.augmented.clone(),
        errors: ev.mistakes.iter().map(|m| m.id).collect(),
    };
    Some((scored, ev))
}

/// The mistakes extrapolation may use. With both validation and test
/// examples in the project only validation errors seed prompts, so the
/// test examples stay unseen by the LLM and their score stays honest (as
/// in S3, where the errors come from a validation set); with only one kind,
/// its errors are used.
pub fn extrapolation_sources(state: &ProjectState, mistakes: &[Mistake]) -> Vec<Mistake> {
    let has = |o: Origin| state.samples.iter().any(|s| s.origin == o);
    let validation_only = has(Origin::Validation) && has(Origin::Test);
    mistakes
        .iter()
        .filter(|m| {
            !validation_only
                || state
                    .sample(m.id)
                    .is_some_and(|s| s.origin == Origin::Validation)
        })
        .cloned()
        .collect()
}

/// The number of the next round (one past the last recorded).
pub fn next_round(state: &ProjectState) -> u32 {
    state.rounds.iter().map(|r| r.round).max().unwrap_or(0) + 1
}

/// Plan the extrapolation requests of `round`: `ceil(count / per_request)`
/// requests of `per_request` examples each, one per mistake (chosen by
/// [`select_mistakes`]); with fewer mistakes than requests the mistakes
/// are cycled, each repeat with its own sampling seed so a cached reply is
/// not simply served again.
pub fn plan_extrapolation(
    generator: &Generator,
    task: &TaskConfig,
    classes: &[Class],
    mistakes: &[Mistake],
    round: u32,
    count: usize,
) -> anyhow::Result<Vec<PlannedRequest>> {
    let s = generator.settings();
    let per_request = s.per_request.max(1);
    let calls = count.div_ceil(per_request);
    let names: Vec<String> = classes.iter().map(|c| c.name.clone()).collect();
    let chosen = select_mistakes(mistakes, &names, calls);
    if chosen.is_empty() {
        return Ok(Vec::new());
    }
    let templates = generator.templates();
    let class_ctx: Vec<ClassContext> = classes
        .iter()
        .map(|c| ClassContext {
            name: c.name.clone(),
            description: c.description.clone(),
            examples: Vec::new(),
        })
        .collect();
    let mut out = Vec::with_capacity(calls);
    let mut left = count;
    for call in 0..calls {
        let m = &chosen[call % chosen.len()];
        let n = per_request.min(left);
        left -= n;
        let ctx = ExtrapolateContext {
            task: TaskContext {
                name: task.name.clone(),
                description: task.description.clone(),
            },
            classes: class_ctx.clone(),
            text: m.text.clone(),
            truth: m.truth.clone(),
            predicted: m.predicted.clone(),
            n,
        };
        let prompt = templates.render(extrapolate::TEMPLATE, &ctx)?;
        let mut request = ChatRequest::new(vec![Message::user(prompt)]);
        request.temperature = Some(s.temperature);
        request.max_tokens = Some(s.max_tokens);
        request.seed = Some(splitmix64(
            s.seed ^ (u64::from(round) << 40) ^ (m.id << 8) ^ (call / chosen.len()) as u64,
        ));
        let mut provenance = extrapolate::provenance(m, round);
        provenance.template = Some(extrapolate::TEMPLATE.to_string());
        provenance.template_hash = Some(templates.hash(extrapolate::TEMPLATE).to_string());
        provenance.temperature = Some(s.temperature);
        out.push(PlannedRequest {
            request,
            kind: RequestKind::Generate {
                target: m.truth.clone(),
            },
            provenance,
            n,
            // The held-out text counts as shown: a copy of it is judged by
            // dedup (which indexes held-out examples) instead of kept.
            shown_examples: vec![m.text.clone()],
            labels: Vec::new(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::generator::Reply;
    use crate::augment::templates::Templates;
    use crate::classify::data::tests::state_with;
    use crate::domain::{GenerationSettings, Origin, ProjectConfig, Status};

    fn classes() -> Vec<Class> {
        ["sports", "food", "weather"]
            .iter()
            .map(|c| Class {
                name: c.to_string(),
                description: format!("{c} talk"),
                weight: 1.0,
            })
            .collect()
    }

    fn config() -> ProjectConfig {
        ProjectConfig {
            task: TaskConfig {
                name: "topics".into(),
                description: "Short posts.".into(),
            },
            classes: classes(),
            backend: Default::default(),
            generation: GenerationSettings::default(),
            relabel: Default::default(),
            embeddings: Default::default(),
        }
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
        let planned = plan_extrapolation(&generator, &cfg.task, &classes(), &ms, 2, 12).unwrap();
        assert_eq!(planned.iter().map(|p| p.n).collect::<Vec<_>>(), [5, 5, 2]);
        let errs: Vec<_> = planned.iter().map(|p| p.provenance.error_of).collect();
        assert_eq!(errs, [Some(3), Some(4), Some(3)]);
        assert_ne!(planned[0].request.seed, planned[2].request.seed);
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
        assert!(
            plan_extrapolation(&generator, &cfg.task, &classes(), &[], 2, 12)
                .unwrap()
                .is_empty()
        );
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
        let planned = plan_extrapolation(&generator, &cfg.task, &classes(), &ms, 1, 2).unwrap();
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

    #[test]
    fn test_examples_seed_prompts_only_without_validation_examples() {
        let both = state_with(
            &[
                ("a", "sports", Origin::Validation),
                ("b", "food", Origin::Test),
            ],
            vec![],
        );
        let ms = [
            mistake(1, "a", "sports", "food", 0.6),
            mistake(2, "b", "food", "sports", 0.6),
        ];
        let ids = |v: Vec<Mistake>| v.into_iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(ids(extrapolation_sources(&both, &ms)), [1]);
        let test_only = state_with(
            &[("a", "sports", Origin::Test), ("b", "food", Origin::Test)],
            vec![],
        );
        assert_eq!(ids(extrapolation_sources(&test_only, &ms)), [1, 2]);
    }

    #[test]
    fn scoring_records_the_errors() {
        let st = state_with(
            &[
                ("goal goal match", "sports", Origin::Seed),
                ("soup bread soup", "food", Origin::Seed),
                ("match goal", "sports", Origin::Validation),
                ("zzz qqq", "food", Origin::Test),
            ],
            vec![],
        );
        let names: Vec<String> = classes().iter().map(|c| c.name.clone()).collect();
        let (scored, ev) = score_round(&st, &names, &TrainConfig::default(), 1).unwrap();
        assert_eq!(scored.round, 1);
        assert_eq!(scored.augmented.n_test, 2);
        assert_eq!(
            scored.errors,
            ev.mistakes.iter().map(|m| m.id).collect::<Vec<_>>()
        );
        assert!(!scored.errors.contains(&3), "the easy one is right");
        let empty = state_with(&[("goal", "sports", Origin::Seed)], vec![]);
        assert!(score_round(&empty, &names, &TrainConfig::default(), 1).is_none());
        assert_eq!(next_round(&st), 1);
    }
}
