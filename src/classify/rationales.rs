//! S3 seed synthesis with rationales (Wang et al., 2023): before
//! generating, ask the LLM for a handful of distinct reasons a text could
//! belong to each class (`prompts/rationales.j2`), keep them in the journal
//! (`rationales_added`), and condition `plain`/`mix` requests on one sampled
//! rationale of the intended class for diversity (setting
//! `use_rationales`).

use rand::Rng;

use serde::Serialize;

use crate::augment::generator::Generator;
use crate::augment::parse::{ParseContext, parse_generation};
use crate::augment::sampling::splitmix64;
use crate::augment::templates::{ClassContext, TaskContext};
use crate::domain::{Class, Origin, ProjectConfig, ProjectState};
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
                .filter(|x| x.origin == Origin::Seed)
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

/// A rationale of `class` drawn uniformly from the project's, if any.
pub fn sample_rationale<'a>(
    state: &'a ProjectState,
    class: &str,
    rng: &mut impl Rng,
) -> Option<&'a str> {
    let list = state.rationales.get(class)?;
    if list.is_empty() {
        return None;
    }
    Some(list[rng.random_range(0..list.len())].as_str())
}

/// Classes that have no rationales yet, in the given order.
pub fn classes_without_rationales<'a>(state: &ProjectState, classes: &'a [String]) -> Vec<&'a str> {
    classes
        .iter()
        .filter(|c| state.rationales.get(*c).is_none_or(|l| l.is_empty()))
        .map(String::as_str)
        .collect()
}
