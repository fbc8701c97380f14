//! `straddle doctor DIR`: check the LLM backend and say how to fix what
//! fails.
//!
//! Checks, in order: the API key variable, that the server answers at
//! `/models`, that the model is listed, that a tiny streamed completion
//! works, and whether logprobs and JSON-schema output are supported (and in
//! which `response_format` form the server takes the schema; the
//! relabel step uses them when they are, and degrades when not). Opens the
//! project read-only, so it runs beside the app. Exit status 1 when a
//! required check fails.

use std::fmt::Write as _;
use std::time::Instant;

use serde_json::json;

use crate::domain::{BackendConfig, EmbeddingsConfig};
use crate::embed::EmbedError;
use crate::llm::{Capability, ChatRequest, FailReason, LlmClient, LlmError, Message, SchemaForm};
use crate::store::Project;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Works, but something optional is missing.
    Warn,
    Fail,
    /// Not run because an earlier check failed.
    Skipped,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do about a warning or failure.
    pub fix: Option<String>,
}

/// Everything doctor found.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub base_url: String,
    pub model: String,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn failures(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count()
    }

    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// The human report.
    pub fn render(&self) -> String {
        let mut s = format!(
            "straddle doctor: backend {} · model {}\n",
            self.base_url, self.model
        );
        for c in &self.checks {
            let mark = match c.status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
                Status::Skipped => "skip",
            };
            let _ = writeln!(s, "  {mark}  {:<12} {}", c.name, c.detail);
            if let Some(fix) = &c.fix {
                let _ = writeln!(s, "        {:<12} fix: {fix}", "");
            }
        }
        let n = self.failures();
        if n == 0 {
            s.push_str("The backend is ready.\n");
        } else {
            let _ = writeln!(s, "{n} problem{} found.", if n == 1 { "" } else { "s" });
        }
        s
    }
}

pub fn run(args: super::DoctorArgs) -> anyhow::Result<()> {
    let project = Project::open_read_only(&args.dir)?;
    let mut backend = project.config().backend.clone();
    args.backend.apply(&mut backend);
    let config_path = project.config_path();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let config = config_path.display().to_string();
    let mut report = rt.block_on(diagnose(&backend, &config));
    report
        .checks
        .push(rt.block_on(embeddings_check(&project.config().embeddings, &config)));
    report.checks.push(attributes_check(
        project.config(),
        &project.classes(),
        project.generation_settings().strategy,
        project.state(),
        &config,
    ));
    crate::out!("{}", report.render());
    crate::out!("{}", judge_lines(&project));
    match report.failures() {
        0 => Ok(()),
        n => Err(anyhow::anyhow!(
            "the backend check found {n} problem{}",
            if n == 1 { "" } else { "s" }
        )),
    }
}

/// The attribute dimensions of `[attributes.*]` (the `attributes`
/// strategy): declared at all when that strategy is chosen, one per class
/// that generates, and the seeds' tags naming declared values.
pub fn attributes_check(
    cfg: &crate::domain::ProjectConfig,
    classes: &[crate::domain::Class],
    strategy: crate::domain::Strategy,
    state: &crate::domain::ProjectState,
    config: &str,
) -> Check {
    let example = "[attributes.tone] with values.formal = \"polite, complete sentences\" and values.casual = \"relaxed, everyday wording\"";
    if cfg.attributes.is_empty() {
        return if strategy == crate::domain::Strategy::Attributes {
            check(
                "attributes",
                Status::Fail,
                "the attributes strategy is chosen but no attribute dimension is declared",
            )
            .fix(format!("declare one in {config}, e.g. {example}"))
        } else {
            check(
                "attributes",
                Status::Skipped,
                "none declared (the attributes strategy needs them)",
            )
        };
    }
    let dims: Vec<String> = cfg
        .attributes
        .iter()
        .map(|(d, a)| {
            let only = if a.classes.is_empty() {
                String::new()
            } else {
                format!(", only {}", a.classes.join("/"))
            };
            format!("{d} ({} values{only})", a.values.len())
        })
        .collect();
    let bare: Vec<&str> = classes
        .iter()
        .filter(|c| c.weight > 0.0 && !cfg.attributes.values().any(|a| a.applies_to(&c.name)))
        .map(|c| c.name.as_str())
        .collect();
    let mut unknown: Vec<String> = Vec::new();
    for s in state
        .samples
        .iter()
        .filter(|s| s.origin == crate::domain::Origin::Seed)
    {
        for (d, v) in &s.provenance.attributes {
            let known = cfg
                .attributes
                .get(d)
                .is_some_and(|a| a.values.contains_key(v));
            let tag = format!("{d}={v}");
            if !known && !unknown.contains(&tag) {
                unknown.push(tag);
            }
        }
    }
    let detail = dims.join(", ");
    if !bare.is_empty() {
        check(
            "attributes",
            Status::Warn,
            format!(
                "{detail}; no dimension applies to {}: their requests ask for no attribute",
                bare.join(", ")
            ),
        )
        .fix(format!(
            "add those classes to a dimension's classes = […] in {config}"
        ))
    } else if !unknown.is_empty() {
        check(
            "attributes",
            Status::Warn,
            format!(
                "{detail}; seeds are tagged with undeclared values: {}",
                unknown.join(", ")
            ),
        )
        .fix(format!(
            "declare them in {config} or fix the seeds' attributes column (exemplars are chosen by matching tags)"
        ))
    } else {
        check("attributes", Status::Ok, detail)
    }
}

/// What `straddle judge` last found about the relabeler, and whether it
/// still applies (same model, template, relabel settings).
pub fn judge_lines(project: &crate::store::Project) -> String {
    let st = project.state();
    let heldout = st.samples.iter().filter(|s| s.origin.is_heldout()).count();
    let fingerprint = crate::app::judges::relabel_fingerprint(project).unwrap_or_default();
    match st.judges.get(crate::classify::judge::RELABEL_JUDGE) {
        None if heldout == 0 => "relabel judge: not measured (no held-out examples:              `straddle import DIR FILE --as validation`)\n"
            .to_string(),
        None => format!(
            "relabel judge: not measured yet on the {heldout} held-out examples — run `straddle judge DIR`\n"
        ),
        Some(j) => {
            let r = &j.report;
            let stale = if j.fingerprint == fingerprint {
                ""
            } else {
                " (stale: measured with another model, template or setting — run `straddle judge DIR`)"
            };
            format!(
                "relabel judge: {}{stale}\n  {}\n",
                r.headline(),
                match r.distrust() {
                    None => "clearly better than chance and the majority class: bulk rules may trust it".to_string(),
                    Some(why) => format!("{why}: bulk rules that trust it refuse without --force"),
                }
            )
        }
    }
}

fn check(name: &'static str, status: Status, detail: impl Into<String>) -> Check {
    Check {
        name,
        status,
        detail: detail.into(),
        fix: None,
    }
}

impl Check {
    fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }
}

/// Run every check against `backend`; `config` names the file to edit in
/// the fixes.
pub async fn diagnose(backend: &BackendConfig, config: &str) -> Report {
    let mut checks = vec![key_check(backend)];
    let report = |checks: Vec<Check>| Report {
        base_url: backend.base_url.clone(),
        model: backend.model.clone(),
        checks,
    };
    let client = match LlmClient::new(backend) {
        Ok(c) => c,
        Err(e) => {
            checks.push(
                check("server", Status::Fail, e.message)
                    .fix(format!("correct [backend] in {config}")),
            );
            return report(skip_rest(checks));
        }
    };

    // Reachable, and which models it serves.
    let models = match client.list_models().await {
        Ok(models) => {
            checks.push(check(
                "server",
                Status::Ok,
                format!("reachable, lists {} model(s)", models.len()),
            ));
            Some(models)
        }
        Err(e) if e.reason == FailReason::NotFound || e.reason == FailReason::Malformed => {
            checks.push(
                check(
                    "server",
                    Status::Warn,
                    format!(
                        "no model list at {}/models ({})",
                        backend.base_url, e.message
                    ),
                )
                .fix("base_url usually ends in /v1; fine if the completion check passes"),
            );
            None
        }
        Err(e) => {
            checks.push(fail_with_fix("server", &e, backend, config));
            return report(skip_rest(checks));
        }
    };

    // The model.
    match &models {
        Some(list) if list.iter().any(|m| m == &backend.model) => {
            checks.push(check(
                "model",
                Status::Ok,
                format!("'{}' is listed", backend.model),
            ));
        }
        Some(list) if !list.is_empty() => {
            checks.push(unknown_model(backend, config, list));
            return report(skip_rest(checks));
        }
        _ => checks.push(check(
            "model",
            Status::Skipped,
            "the server lists no models",
        )),
    }

    // A tiny streamed completion.
    let mut req = ChatRequest::new(vec![Message::user("Reply with the single word: ok")]);
    req.max_tokens = Some(8);
    req.temperature = Some(0.0);
    let started = Instant::now();
    match client.chat(&req, |_| {}).await {
        Ok(r) => checks.push(check(
            "completion",
            Status::Ok,
            format!(
                "{} answered in {} ms: {:?} ({} tokens{})",
                if client.streaming() {
                    "streamed,"
                } else {
                    "not streamed,"
                },
                started.elapsed().as_millis(),
                r.text.chars().take(40).collect::<String>(),
                r.usage.completion_tokens,
                if r.usage.estimated {
                    ", usage estimated: the server reports none"
                } else {
                    ""
                }
            ),
        )),
        Err(e) => {
            // A 404 from a server that listed models means the model; from
            // one that did not, most likely the URL.
            let c = if e.reason == FailReason::NotFound && models.is_some() {
                unknown_model(backend, config, models.as_deref().unwrap_or(&[]))
            } else {
                fail_with_fix("completion", &e, backend, config)
            };
            checks.push(c);
            return report(skip_rest(checks));
        }
    }

    checks.push(logprobs_check(&client).await);
    checks.push(json_schema_check(&client).await);
    report(checks)
}

/// The `[embeddings]` backend: the local model's weights load, or the API
/// answers with vectors. A warning, not a failure: generation works
/// without embeddings, only the features that need them are off.
pub async fn embeddings_check(cfg: &EmbeddingsConfig, config: &str) -> Check {
    const NAME: &str = "embeddings";
    let started = Instant::now();
    // One attempt: doctor reports, it does not wait out a retry schedule.
    let cfg = &EmbeddingsConfig {
        max_retries: 0,
        ..cfg.clone()
    };
    let embedder = match crate::embed::from_config(cfg) {
        Ok(Some(e)) => e,
        Ok(None) => return check(NAME, Status::Ok, "off (backend = \"none\")"),
        Err(EmbedError::MissingWeights(dir)) => {
            return check(
                NAME,
                Status::Warn,
                format!("no local model in {}", dir.display()),
            )
            .fix(format!(
                "run {} (or set model_dir, or backend = \"api\" / \"none\", under [embeddings] in {config})",
                crate::embed::INSTALL_HINT
            ));
        }
        Err(e) => {
            return check(NAME, Status::Warn, e.to_string()).fix(format!(
                "reinstall with {} or fix [embeddings] in {config}",
                crate::embed::INSTALL_HINT
            ));
        }
    };
    match embedder.embed(&["straddle doctor".to_string()]).await {
        Ok(v) => check(
            NAME,
            Status::Ok,
            format!(
                "{}: {} dimensions ({} ms)",
                embedder.model_id(),
                v.first().map_or(0, Vec::len),
                started.elapsed().as_millis()
            ),
        ),
        Err(EmbedError::Api(e)) => check(NAME, Status::Warn, e.message.clone())
            .fix(embeddings_fix(e.reason, cfg, config)),
        Err(e @ EmbedError::DimMismatch { .. }) => check(NAME, Status::Warn, e.to_string())
            .fix(format!(
                "the server answers vectors of different sizes: check model under [embeddings] in {config}"
            )),
        Err(e) => check(NAME, Status::Warn, e.to_string()),
    }
}

/// What to do when the `api` embeddings server failed for `reason`.
fn embeddings_fix(reason: FailReason, cfg: &EmbeddingsConfig, config: &str) -> String {
    let url = &cfg.base_url;
    let model = &cfg.model;
    match reason {
        FailReason::Connect => format!(
            "start the embeddings server at {url}, or point base_url under [embeddings] in \
             {config} at a running OpenAI-compatible /v1/embeddings server (or set backend = \
             \"local\" there for the in-process model)"
        ),
        FailReason::Auth => match &cfg.api_key_env {
            Some(var) => format!("export {var}=<your API key> (a valid key for {url})"),
            None => format!(
                "put the key in an environment variable (export OPENAI_API_KEY=…) and set \
                 api_key_env = \"OPENAI_API_KEY\" under [embeddings] in {config}"
            ),
        },
        FailReason::Timeout => format!(
            "{url} did not answer within timeout_s = {} s: check it is not overloaded, or raise \
             timeout_s under [embeddings] in {config}",
            cfg.timeout_s
        ),
        FailReason::NotFound | FailReason::BadRequest => format!(
            "check that model = \"{model}\" under [embeddings] in {config} names an embedding \
             model {url} serves (GET {url}/models lists them) and that the server has \
             /v1/embeddings turned on (llama.cpp: --embeddings; vLLM: --task embed); base_url \
             should end in /v1"
        ),
        FailReason::RateLimited => format!(
            "the server is rate limiting: wait, or set requests_per_minute / lower \
             max_concurrency under [embeddings] in {config}"
        ),
        FailReason::ServerError => format!("{url} failed internally: look at its log"),
        _ => format!(
            "{url} does not answer /embeddings as OpenAI-compatible servers do: check base_url \
             and model under [embeddings] in {config}"
        ),
    }
}

fn skip_rest(mut checks: Vec<Check>) -> Vec<Check> {
    for name in ["server", "model", "completion", "logprobs", "json schema"] {
        if checks.iter().all(|c| c.name != name) {
            checks.push(check(
                name,
                Status::Skipped,
                "skipped after the failure above",
            ));
        }
    }
    checks
}

fn key_check(backend: &BackendConfig) -> Check {
    match &backend.api_key_env {
        None => check(
            "api key",
            Status::Ok,
            "none configured (fine for a local server)",
        ),
        Some(var) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => {
                check("api key", Status::Ok, format!("read from ${var}"))
            }
            _ => check(
                "api key",
                Status::Warn,
                format!("the environment variable {var} is not set"),
            )
            .fix(format!("export {var}=<your API key>")),
        },
    }
}

fn unknown_model(backend: &BackendConfig, config: &str, available: &[String]) -> Check {
    let list = if available.is_empty() {
        "the server lists none".to_string()
    } else {
        available.join(", ")
    };
    let first = available.first().map(String::as_str).unwrap_or("NAME");
    check(
        "model",
        Status::Fail,
        format!(
            "the server does not serve '{}'; available: {list}",
            backend.model
        ),
    )
    .fix(format!(
        "set model = \"{first}\" under [backend] in {config}, or pass --model {first}"
    ))
}

/// A failed request, with the fix for its reason.
fn fail_with_fix(name: &'static str, e: &LlmError, backend: &BackendConfig, config: &str) -> Check {
    let c = check(name, Status::Fail, e.message.clone());
    let fix = crate::engine::failures::fix_for(e.reason, backend, config);
    c.fix(fix)
}

async fn logprobs_check(client: &LlmClient) -> Check {
    let mut req = ChatRequest::new(vec![Message::user("Say yes or no.")]);
    req.max_tokens = Some(1);
    req.temperature = Some(0.0);
    req.logprobs = Some(true);
    req.top_logprobs = Some(3);
    match client.chat(&req, |_| {}).await {
        Ok(_) if client.capabilities().logprobs == Capability::Supported => check(
            "logprobs",
            Status::Ok,
            "supported: relabel confidences come from token probabilities",
        ),
        Ok(_) => check(
            "logprobs",
            Status::Warn,
            "not supported: relabel falls back to self-consistency votes (more requests)",
        ),
        Err(e) => check(
            "logprobs",
            Status::Warn,
            format!("probe failed: {}", e.message),
        ),
    }
}

async fn json_schema_check(client: &LlmClient) -> Check {
    let mut req = ChatRequest::new(vec![Message::user(
        "Classify 'great movie' as positive or negative. Answer in JSON.",
    )]);
    req.max_tokens = Some(30);
    req.temperature = Some(0.0);
    req.set_json_schema(
        "verdict",
        json!({
            "type": "object",
            "properties": {"label": {"type": "string", "enum": ["positive", "negative"]}},
            "required": ["label"],
            "additionalProperties": false
        }),
    );
    match client.chat(&req, |_| {}).await {
        Ok(r) if client.capabilities().json_schema == Capability::Supported => {
            let form = schema_form_words(client.capabilities().schema_form);
            if serde_json::from_str::<serde_json::Value>(r.text.trim()).is_ok_and(|v| v.is_object())
            {
                check(
                    "json schema",
                    Status::Ok,
                    format!("supported {form}: relabel answers are constrained JSON"),
                )
            } else {
                check(
                    "json schema",
                    Status::Warn,
                    format!(
                        "accepted {form} but not enforced (the answer was not JSON): relabel \
                         parses free text"
                    ),
                )
            }
        }
        Ok(_) => check(
            "json schema",
            Status::Warn,
            "not supported (refused as response_format json_schema and as json_object+schema): \
             relabel parses free-text answers",
        ),
        Err(e) => check(
            "json schema",
            Status::Warn,
            format!("probe failed: {}", e.message),
        ),
    }
}

/// Which `response_format` form the server took, for the report.
fn schema_form_words(form: SchemaForm) -> &'static str {
    match form {
        SchemaForm::JsonSchema => "as response_format json_schema (OpenAI form)",
        SchemaForm::JsonObject => {
            "as response_format json_object+schema (llama.cpp form; the OpenAI form was refused)"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{apply, attribute_dims, tagged_seed, topics_config};
    use crate::domain::{EventKind, ProjectState, SampleAdded, Strategy};

    /// `doctor`, `review` and `judge` read the relabeler's fingerprint
    /// without building a `Generator` (its dedup index signs every text):
    /// the string is the generator's, with a template override and another
    /// model too, so a report recorded by a generator is current here and
    /// a changed setting makes it stale.
    #[test]
    fn the_fingerprint_without_a_generator_is_the_generators() {
        use crate::domain::testing::seed;
        let dir = tempfile::tempdir().unwrap();
        let cfg = topics_config(&["sports", "food"]);
        let seeds = vec![
            seed("the match went to extra time", "sports"),
            seed("a recipe for bread", "food"),
        ];
        let mut p = crate::store::Project::create(&dir.path().join("p"), cfg, seeds).unwrap();
        let same = |p: &crate::store::Project| {
            let fast = crate::app::judges::relabel_fingerprint(p).unwrap();
            let slow = super::super::generate::generator_for(p)
                .unwrap()
                .relabel_fingerprint();
            assert_eq!(fast, slow);
            fast
        };
        let builtin = same(&p);
        std::fs::create_dir_all(p.prompts_dir()).unwrap();
        std::fs::write(
            p.prompts_dir().join("relabel.j2"),
            "Which class? {{ text }}",
        )
        .unwrap();
        let custom = same(&p);
        assert_ne!(builtin, custom, "the template counts");
        let mut cfg = p.config().clone();
        cfg.backend.model = "another-model".into();
        p.set_config(cfg).unwrap();
        let other = same(&p);
        assert_ne!(custom, other, "the model counts");

        // A report recorded with the current fingerprint is current; one
        // recorded before the model changed is stale.
        let report = crate::classify::judge::judge_report(
            crate::classify::judge::RELABEL_JUDGE,
            &["sports".to_string(), "food".to_string()],
            &[0, 1],
            &[Some(0), Some(1)],
        );
        let record = |fingerprint: String| {
            EventKind::JudgeScored(crate::domain::JudgeScored {
                report: report.clone(),
                fingerprint,
                answers: vec![],
            })
        };
        p.append(vec![record(other)]).unwrap();
        assert!(!judge_lines(&p).contains("stale"), "{}", judge_lines(&p));
        p.append(vec![record(custom)]).unwrap();
        assert!(judge_lines(&p).contains("stale"), "{}", judge_lines(&p));
    }

    #[test]
    fn attributes_check_names_what_is_missing() {
        let mut cfg = topics_config(&["sports", "food"]);
        let st = ProjectState::default();
        let none = attributes_check(&cfg, &cfg.classes, Strategy::Mix, &st, "t.toml");
        assert_eq!(none.status, Status::Skipped);
        let fail = attributes_check(&cfg, &cfg.classes, Strategy::Attributes, &st, "t.toml");
        assert_eq!(fail.status, Status::Fail);
        assert!(fail.fix.unwrap().contains("[attributes.tone]"));

        cfg.attributes = attribute_dims(&[("tone", &[("formal", ""), ("casual", "")])]);
        cfg.attributes.get_mut("tone").unwrap().classes = vec!["food".into()];
        let warn = attributes_check(&cfg, &cfg.classes, Strategy::Attributes, &st, "t.toml");
        assert_eq!(warn.status, Status::Warn);
        assert!(
            warn.detail.contains("no dimension applies to sports"),
            "{}",
            warn.detail
        );

        cfg.attributes.get_mut("tone").unwrap().classes.clear();
        let mut st = ProjectState::default();
        apply(
            &mut st,
            vec![EventKind::SampleAdded(SampleAdded::new(
                1,
                tagged_seed("hi", "food", "tone=angry"),
            ))],
        );
        let warn = attributes_check(&cfg, &cfg.classes, Strategy::Mix, &st, "t.toml");
        assert_eq!(warn.status, Status::Warn);
        assert!(
            warn.detail.contains("undeclared values: tone=angry"),
            "{}",
            warn.detail
        );
        let ok = attributes_check(
            &cfg,
            &cfg.classes,
            Strategy::Mix,
            &ProjectState::default(),
            "t.toml",
        );
        assert_eq!(
            (ok.status, ok.detail.as_str()),
            (Status::Ok, "tone (2 values)")
        );
    }
}
