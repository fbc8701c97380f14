//! Prompt templates (minijinja).
//!
//! The built-in templates live as text files under `prompts/` in the
//! repository and are compiled in with `include_str!`. A project can
//! override any of them (or add new ones) with a file of the same name in
//! its own `prompts/` folder. Every rendered prompt records the template
//! name and a hash of its text in the sample's [`Provenance`], so a changed
//! template is visible in the data.
//!
//! [`Provenance`]: crate::domain::Provenance

use anyhow::Context;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// Template for class-boundary (mix) generation.
pub const MIX: &str = super::strategy::mix::TEMPLATE;
/// Template for plain (one class) generation.
pub const PLAIN: &str = super::strategy::plain::TEMPLATE;
/// Template for the relabel (few-shot classifier) step.
pub const RELABEL: &str = "relabel.j2";

/// Built-in templates: (file name, text). Other strategies add theirs here.
pub const BUILTINS: &[(&str, &str)] = &[
    (MIX, include_str!("../../prompts/mix.j2")),
    (PLAIN, include_str!("../../prompts/plain.j2")),
    (RELABEL, include_str!("../../prompts/relabel.j2")),
    (
        super::strategy::attributes::TEMPLATE,
        include_str!("../../prompts/attributes.j2"),
    ),
    (
        super::strategy::extrapolate::TEMPLATE,
        include_str!("../../prompts/extrapolate.j2"),
    ),
    (
        super::rationales::TEMPLATE,
        include_str!("../../prompts/rationales.j2"),
    ),
];

/// Openings of a description that already names the texts ("Questions
/// asking for…", "Messages where…"): kept as they are.
const TEXT_NOUNS: &[&str] = &[
    "text",
    "texts",
    "question",
    "questions",
    "message",
    "messages",
    "sentence",
    "sentences",
    "utterance",
    "utterances",
    "request",
    "requests",
    "query",
    "queries",
    "tweet",
    "tweets",
    "post",
    "posts",
    "review",
    "reviews",
    "article",
    "articles",
    "headline",
    "headlines",
    "news",
    "examples",
    "anything",
    "everything",
];

/// A class description as it reads after "NAME: " in a prompt, whatever
/// its shape (the `about` filter of the templates). A phrase ("a place",
/// "sports results") completes "texts which are about …", the PromptMix
/// form; a full sentence ("The user asks to hear a joke.", ending in
/// `.`/`!`/`?` with at least four words) or a description that already
/// names the texts ("Questions about taxes", "News about companies…") is
/// kept as written, so the prompt never says "texts which are about The
/// user asks…".
pub fn describe_class(description: &str) -> String {
    let d = description.trim();
    if d.is_empty() {
        return String::new();
    }
    let first = d
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("")
        .to_lowercase();
    let sentence = d.ends_with(['.', '!', '?']) && d.split_whitespace().count() >= 4;
    if sentence || TEXT_NOUNS.contains(&first.as_str()) {
        d.to_string()
    } else {
        format!("texts which are about {d}")
    }
}

fn about_filter(value: String) -> String {
    describe_class(&value)
}

/// First 16 hex characters of the SHA-256 of a template's text.
pub fn template_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    hex::encode(&digest[..8])
}

/// One template's source.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateSource {
    pub text: String,
    /// [`template_hash`] of `text`.
    pub hash: String,
    /// Where it came from: "built-in" or the override file's path.
    pub origin: String,
}

/// The set of templates a run uses: built-ins overlaid by project files.
#[derive(Debug, Clone)]
pub struct Templates {
    sources: BTreeMap<String, TemplateSource>,
    /// Every template compiled once, on the first render (a `set` drops
    /// it): rendering a prompt per request is then only the rendering,
    /// not a parse and compile of the template text each time.
    compiled: OnceLock<Arc<minijinja::Environment<'static>>>,
}

impl Default for Templates {
    fn default() -> Self {
        Templates::builtin()
    }
}

impl Templates {
    /// Only the built-in templates.
    pub fn builtin() -> Templates {
        let mut t = Templates {
            sources: BTreeMap::new(),
            compiled: OnceLock::new(),
        };
        for (name, text) in BUILTINS {
            t.set(name, text, "built-in");
        }
        t
    }

    /// Built-ins overlaid by every `*.j2` file in `dir` (a project's
    /// `prompts/` folder). A missing folder is fine. A file that does not
    /// compile is an error naming the file and the problem.
    pub fn load(dir: &Path) -> anyhow::Result<Templates> {
        let mut t = Templates::builtin();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(t),
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        };
        for entry in entries {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !name.ends_with(".j2") {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading template {}", path.display()))?;
            let name = name.to_string();
            t.set(&name, &text, &path.display().to_string());
            t.check(&name)?;
        }
        Ok(t)
    }

    /// Set (or override) one template.
    pub fn set(&mut self, name: &str, text: &str, origin: &str) {
        self.compiled = OnceLock::new();
        self.sources.insert(
            name.to_string(),
            TemplateSource {
                text: text.to_string(),
                hash: template_hash(text),
                origin: origin.to_string(),
            },
        );
    }

    pub fn get(&self, name: &str) -> Option<&TemplateSource> {
        self.sources.get(name)
    }

    /// Names of all templates.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.sources.keys().map(String::as_str)
    }

    /// Hash of a template's text ("" for an unknown name).
    pub fn hash(&self, name: &str) -> &str {
        self.sources
            .get(name)
            .map(|s| s.hash.as_str())
            .unwrap_or("")
    }

    fn check(&self, name: &str) -> anyhow::Result<()> {
        let src = &self.sources[name];
        let mut env = minijinja::Environment::new();
        env.add_template(name, &src.text)
            .map_err(|e| crate::error::user(format!("template {}: {e:#}", src.origin)))?;
        Ok(())
    }

    /// Render a template with a serialisable context. Undefined variables
    /// are errors (a typo in an override should not produce a silent blank).
    pub fn render(&self, name: &str, ctx: &impl Serialize) -> anyhow::Result<String> {
        let src = self
            .sources
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("no template named {name}"))?;
        let env = self.compiled.get_or_init(|| Arc::new(self.compile_all()));
        let tmpl = match env.get_template(name) {
            Ok(t) => t,
            // It did not compile: compiled alone, it says why.
            Err(_) => {
                let mut env = environment();
                env.add_template(name, &src.text)
                    .map_err(|e| crate::error::user(format!("template {}: {e:#}", src.origin)))?;
                return Err(anyhow::anyhow!("template {} does not compile", src.origin));
            }
        };
        tmpl.render(ctx)
            .map_err(|e| crate::error::user(format!("rendering template {}: {e:#}", src.origin)))
    }

    /// One environment with every template that compiles.
    fn compile_all(&self) -> minijinja::Environment<'static> {
        let mut env = environment();
        for (name, src) in &self.sources {
            if let Err(e) = env.add_template_owned(name.clone(), src.text.clone()) {
                tracing::debug!("template {} does not compile: {e}", src.origin);
            }
        }
        env
    }
}

/// The rendering settings every template shares.
fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(false);
    env.add_filter("about", about_filter);
    env
}

/// What a generation template sees.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateContext {
    pub task: TaskContext,
    /// The classes shown, in config order.
    pub classes: Vec<ClassContext>,
    /// Examples asked for.
    pub n: usize,
    /// Intended class A.
    pub target: String,
    /// Minor class B (mix only).
    pub minor: Option<String>,
    /// Integer percentages that add up to 100.
    pub major_pct: u32,
    pub minor_pct: u32,
}

/// What the relabel template sees.
#[derive(Debug, Clone, Serialize)]
pub struct RelabelContext {
    pub task: TaskContext,
    pub classes: Vec<ClassContext>,
    pub text: String,
    /// Whether the request asks for JSON output.
    pub json: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskContext {
    pub name: String,
    pub description: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassContext {
    pub name: String,
    pub description: String,
    pub examples: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes() -> Vec<ClassContext> {
        vec![
            ClassContext {
                name: "HUM".into(),
                description: "a person or group".into(),
                examples: vec!["Who wrote Hamlet?".into(), "Who is the CEO of IBM?".into()],
            },
            ClassContext {
                name: "LOC".into(),
                description: "a place".into(),
                examples: vec!["Where is Reims?".into()],
            },
        ]
    }

    fn task() -> TaskContext {
        TaskContext {
            name: "trec6".into(),
            description: "Questions people ask a search engine.".into(),
        }
    }

    #[test]
    fn mix_renders_stable_part_first_and_percentages_add_up() {
        let t = Templates::builtin();
        let ctx = GenerateContext {
            task: task(),
            classes: classes(),
            n: 5,
            target: "HUM".into(),
            minor: Some("LOC".into()),
            major_pct: 81,
            minor_pct: 19,
        };
        let out = t.render(MIX, &ctx).unwrap();
        assert!(
            out.starts_with("Questions people ask a search engine."),
            "{out}"
        );
        assert!(out.contains("1. HUM: texts which are about a person or group"));
        assert!(out.contains("   - Who wrote Hamlet?"));
        assert!(out.contains("2. LOC: texts which are about a place"));
        assert!(out.contains("Write 5 new"));
        assert!(out.contains("81% to HUM and 19% to LOC"));
        // The varying part comes after every example.
        let last_example = out.find("Where is Reims?").unwrap();
        assert!(out.find("81%").unwrap() > last_example);
        // Another α changes only the tail.
        let other = t
            .render(
                MIX,
                &GenerateContext {
                    major_pct: 60,
                    minor_pct: 40,
                    ..ctx
                },
            )
            .unwrap();
        let common = out
            .bytes()
            .zip(other.bytes())
            .take_while(|(a, b)| a == b)
            .count();
        assert!(
            common > last_example,
            "prefix shared up to the varying part"
        );
        insta::assert_snapshot!(out);
    }

    #[test]
    fn plain_and_relabel_render() {
        let t = Templates::builtin();
        let out = t
            .render(
                PLAIN,
                &GenerateContext {
                    task: task(),
                    classes: classes()[..1].to_vec(),
                    n: 3,
                    target: "HUM".into(),
                    minor: None,
                    major_pct: 100,
                    minor_pct: 0,
                },
            )
            .unwrap();
        assert!(
            out.contains("Write 3 new, diverse, short texts that belong to HUM, without repeating")
        );
        assert!(!out.contains("LOC"));
        let rl = t
            .render(
                RELABEL,
                &RelabelContext {
                    task: task(),
                    classes: classes(),
                    text: "Who built the Eiffel tower?".into(),
                    json: true,
                },
            )
            .unwrap();
        assert!(
            rl.trim_end()
                .ends_with("Answer with JSON like {\"label\": \"<class name>\"}.")
        );
        assert!(rl.contains("Text: Who built the Eiffel tower?"));
        insta::assert_snapshot!(rl);
    }

    #[test]
    fn attributes_renders_class_first_then_every_value() {
        use super::super::strategy::attributes::{
            AttrClass, AttrExample, AttrValue, AttributesContext, TEMPLATE,
        };
        let t = Templates::builtin();
        let value = |d: &str, v: &str, desc: &str| AttrValue {
            dimension: d.into(),
            value: v.into(),
            description: desc.into(),
        };
        let ctx = AttributesContext {
            task: task(),
            class: AttrClass {
                name: "HUM".into(),
                description: "a person or group".into(),
                examples: vec![
                    AttrExample {
                        text: "Who wrote Hamlet?".into(),
                        tags: "tone: formal".into(),
                    },
                    AttrExample {
                        text: "who's the guy on the 5 dollar bill".into(),
                        tags: String::new(),
                    },
                ],
            },
            attributes: vec![
                value("length", "short", "a few words"),
                value("tone", "casual", "relaxed, everyday wording"),
            ],
            n: 5,
        };
        let out = t.render(TEMPLATE, &ctx).unwrap();
        assert!(out.contains("The class is HUM: texts which are about a person or group."));
        assert!(out.contains("- Who wrote Hamlet? (tone: formal)\n"));
        assert!(out.contains("- who's the guy on the 5 dollar bill\n"));
        assert!(out.contains("- tone: casual — relaxed, everyday wording"));
        assert!(out.contains("express both attributes above"));
        // The class block is the stable prefix; the values come after it.
        assert!(out.find("tone: casual").unwrap() > out.find("5 dollar bill").unwrap());
        let one = t
            .render(
                TEMPLATE,
                &AttributesContext {
                    attributes: vec![value("tone", "angry", "")],
                    ..ctx.clone()
                },
            )
            .unwrap();
        assert!(one.contains("- tone: angry\n") && one.contains("express the attribute above"));
        insta::assert_snapshot!(out);
    }

    #[test]
    fn descriptions_read_well_whatever_their_shape() {
        assert_eq!(describe_class("a place"), "texts which are about a place");
        assert_eq!(
            describe_class("The user asks to hear a joke."),
            "The user asks to hear a joke."
        );
        assert_eq!(
            describe_class("Questions about taxes"),
            "Questions about taxes"
        );
        assert_eq!(
            describe_class("News about companies."),
            "News about companies."
        );
        // A short phrase with a full stop is still a phrase.
        assert_eq!(describe_class("sports."), "texts which are about sports.");
        assert_eq!(describe_class("  "), "");
    }

    #[test]
    fn hash_is_16_hex_and_overrides_win() {
        let h = template_hash("abc");
        assert_eq!(h, "ba7816bf8f01cfea");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mix.j2"), "custom {{ target }}").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let t = Templates::load(dir.path()).unwrap();
        assert_eq!(t.hash(MIX), template_hash("custom {{ target }}"));
        assert_ne!(t.hash(PLAIN), t.hash(MIX));
        assert_eq!(t.get(PLAIN).unwrap().origin, "built-in");
        // Missing folder: built-ins.
        let t = Templates::load(&dir.path().join("nope")).unwrap();
        assert_eq!(t.hash(MIX), template_hash(BUILTINS[0].1));
    }

    #[test]
    fn broken_override_and_undefined_variable_are_user_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mix.j2"), "{% if %}").unwrap();
        let err = Templates::load(dir.path()).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
        assert!(format!("{err:#}").contains("mix.j2"), "{err:#}");

        let mut t = Templates::builtin();
        t.set(MIX, "{{ nope }}", "test");
        let err = t.render(MIX, &serde_json::json!({})).unwrap_err();
        assert!(format!("{err:#}").contains("undefined"), "{err:#}");
    }
}
