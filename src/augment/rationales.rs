//! S3 seed synthesis with rationales (Wang et al., 2023): before
//! generating, ask the LLM for a handful of distinct reasons a text could
//! belong to each class (`prompts/rationales.j2`), keep them in the journal
//! (`rationales_added`), and condition `plain`/`mix` requests on one sampled
//! rationale of the intended class for diversity (setting
//! `use_rationales`).

use serde::Serialize;

use super::generator::Generator;
use super::parse::{ParseContext, parse_generation};
use super::sampling::splitmix64;
use super::templates::{ClassContext, TaskContext};
use crate::domain::{Class, ProjectConfig, ProjectState};
use crate::llm::{ChatRequest, Message};

/// Template file name.
pub const TEMPLATE: &str = "rationales.j2";
/// Rationales asked for per class.
pub const DEFAULT_COUNT: usize = 5;

/// What `rationales.j2` sees.
#[derive(Debug, Clone, Serialize)]
pub struct RationalesContext {
    pub task: TaskContext,
    pub classes: Vec<ClassContext>,
    /// The class the reasons are for.
    pub target: String,
    /// Reasons asked for.
    pub n: usize,
}

/// One request per class in `targets`: (class, request). Every class is
/// shown with its description and seed examples (up to the `shots`
/// setting).
pub fn plan(
    generator: &Generator,
    config: &ProjectConfig,
    classes: &[Class],
    state: &ProjectState,
    targets: &[String],
) -> anyhow::Result<Vec<(String, ChatRequest)>> {
    let s = generator.settings();
    let class_ctx: Vec<ClassContext> = classes
        .iter()
        .map(|c| ClassContext {
            name: c.name.clone(),
            description: c.description.clone(),
            examples: state
                .seeds_of(&c.name)
                .take(s.shots)
                .map(|x| x.text().to_string())
                .collect(),
        })
        .collect();
    targets
        .iter()
        .enumerate()
        .map(|(i, target)| {
            let ctx = RationalesContext {
                task: TaskContext {
                    name: config.task.name.clone(),
                    description: config.task.description.clone(),
                },
                classes: class_ctx.clone(),
                target: target.clone(),
                n: DEFAULT_COUNT,
            };
            let prompt = generator.templates().render(TEMPLATE, &ctx)?;
            let mut req = ChatRequest::new(vec![Message::user(prompt)]);
            req.temperature = Some(s.temperature);
            req.max_tokens = Some(s.max_tokens);
            req.seed = Some(splitmix64(s.seed ^ 0x7a7 ^ i as u64));
            Ok((target.clone(), req))
        })
        .collect()
}

/// The reasons in a reply (a numbered or bulleted list, or JSON), cleaned
/// the way generated examples are; repeats (case-insensitive) are dropped.
pub fn parse_rationales(reply: &str, prompt: &str, class_names: &[String]) -> Vec<String> {
    let parsed = parse_generation(
        reply,
        &ParseContext {
            class_names: class_names.to_vec(),
            prompt: prompt.to_string(),
            ..ParseContext::default()
        },
    );
    let mut seen = std::collections::HashSet::new();
    parsed
        .items
        .into_iter()
        .filter(|r| seen.insert(r.to_lowercase()))
        .collect()
}

/// Classes that have no rationales yet, in the given order.
pub fn classes_without_rationales<'a>(state: &ProjectState, classes: &'a [String]) -> Vec<&'a str> {
    classes
        .iter()
        .filter(|c| state.rationales.get(*c).is_none_or(|l| l.is_empty()))
        .map(String::as_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::generator::RequestKind;
    use crate::augment::templates::Templates;
    use crate::domain::testing::state_with;
    use crate::domain::{EventKind, GenerationSettings, Origin, RationalesAdded, Strategy};

    fn config() -> ProjectConfig {
        crate::domain::testing::topics_config(&["sports", "food"])
    }

    fn state() -> ProjectState {
        state_with(
            &[
                ("a great goal", "sports", Origin::Seed),
                ("hot soup", "food", Origin::Seed),
            ],
            vec![EventKind::RationalesAdded(RationalesAdded {
                class: "sports".into(),
                rationales: vec!["it reports a result".into(), "it names a team".into()],
            })],
        )
    }

    fn generator(use_rationales: bool, strategy: Strategy) -> Generator {
        let cfg = config();
        let settings = GenerationSettings {
            use_rationales,
            strategy,
            ..GenerationSettings::default()
        };
        Generator::new(
            &cfg,
            cfg.classes.clone(),
            settings,
            Templates::builtin(),
            &state(),
        )
    }

    #[test]
    fn plan_asks_each_missing_class_with_its_seeds() {
        let cfg = config();
        let st = state();
        let names: Vec<String> = cfg.classes.iter().map(|c| c.name.clone()).collect();
        assert_eq!(classes_without_rationales(&st, &names), ["food"]);
        let g = generator(true, Strategy::Mix);
        let reqs = plan(&g, &cfg, &cfg.classes, &st, &["food".to_string()]).unwrap();
        assert_eq!(reqs.len(), 1);
        let prompt = &reqs[0].1.messages[0].content;
        assert!(
            prompt.contains("List 5 distinct reasons why a text would belong to food"),
            "{prompt}"
        );
        assert!(prompt.contains("   - hot soup"), "{prompt}");
        assert!(
            prompt.contains("2. food: texts which are about food talk"),
            "{prompt}"
        );
    }

    #[test]
    fn parse_keeps_distinct_reasons() {
        let reply = "Sure! Here are some reasons:\n1. It names a dish.\n2. It mentions taste.\n3. it names a dish.\n";
        let got = parse_rationales(reply, "List 3 distinct reasons", &["food".to_string()]);
        assert_eq!(got, ["It names a dish.", "It mentions taste."]);
    }

    #[test]
    fn generate_requests_are_conditioned_on_a_sampled_rationale() {
        for strategy in [Strategy::Mix, Strategy::Plain] {
            let mut on = generator(true, strategy);
            let mut off = generator(false, strategy);
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..30 {
                let (a, b) = (on.plan_generate().unwrap(), off.plan_generate().unwrap());
                let RequestKind::Generate { target } = &a.kind else {
                    panic!("generate")
                };
                assert_eq!(a.kind, b.kind, "same draws with rationales on and off");
                assert_eq!(b.provenance.rationale, None);
                assert!(!b.prompt().contains("fit this reason"));
                if target == "sports" {
                    let r = a.provenance.rationale.clone().expect("a sports rationale");
                    let line = format!("Each text should fit this reason for sports: {r}");
                    assert!(a.prompt().contains(&line), "{}", a.prompt());
                    seen.insert(r);
                } else {
                    assert_eq!(a.provenance.rationale, None, "food has none");
                    assert_eq!(a.prompt(), b.prompt());
                }
            }
            assert_eq!(seen.len(), 2, "both rationales get used");
        }
    }
}
