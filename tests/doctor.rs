//! `straddle doctor` through the real binary against the test server:
//! server down, 401, unknown model, missing capabilities, healthy.

mod support;

use std::path::Path;

use straddle::domain::{BackendConfig, ProjectConfig};
use support::cli::command;
use support::project::{create, project_config};
use support::{Reply, Script, TestServer};

fn project(dir: &Path, backend: BackendConfig) {
    let config = ProjectConfig {
        backend,
        ..project_config("t", "test", vec![])
    };
    create(dir, config, vec![]);
}

fn doctor(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = command(&["doctor"]);
    cmd.arg(dir).args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// JSON when asked for JSON, else "ok"; logprobs when asked.
fn healthy_script() -> Script {
    Script::with_fn(|r| {
        if r.body.get("response_format").is_some() {
            Reply::text(r#"{"label": "positive"}"#)
        } else if r.body.get("logprobs").is_some() {
            Reply::Logprobs {
                tokens: vec![support::LpToken {
                    token: "yes".into(),
                    logprob: -0.2,
                    top: vec![("yes".into(), -0.2), ("no".into(), -1.8)],
                }],
            }
        } else {
            Reply::text("ok")
        }
    })
}

#[test]
fn healthy_server_passes_every_check() {
    let server = TestServer::start(healthy_script());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    project(&dir, server.backend());
    let (code, out) = doctor(&dir, &[], &[]);
    assert_eq!(code, Some(0), "{out}");
    for line in [
        "ok    server",
        "ok    model",
        "ok    completion",
        "ok    logprobs",
        "ok    json schema",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    assert!(out.contains("The backend is ready."), "{out}");
    assert!(out.contains("json_schema (OpenAI form)"), "{out}");
    assert!(
        server.bodies().iter().any(|b| b["stream"] == true),
        "completion was streamed"
    );
}

#[test]
fn llama_cpp_server_reports_the_json_object_schema_form() {
    let server = TestServer::start(healthy_script().llama_cpp_response_format());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    project(&dir, server.backend());
    let (code, out) = doctor(&dir, &[], &[]);
    assert_eq!(code, Some(0), "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("json schema"))
        .unwrap_or_default();
    assert!(
        line.trim_start().starts_with("ok    json schema")
            && line.contains("json_object+schema (llama.cpp form"),
        "{out}"
    );
    let forms: Vec<_> = server
        .bodies()
        .iter()
        .filter_map(|b| b["response_format"]["type"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(forms, ["json_schema", "json_object"]);
}

#[test]
fn missing_capabilities_are_warnings_not_failures() {
    let server = TestServer::start(Script::text("plain words").no_logprobs().no_json_schema());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    project(&dir, server.backend());
    let (code, out) = doctor(&dir, &[], &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("warn  logprobs") && out.contains("self-consistency"),
        "{out}"
    );
    assert!(
        out.contains("warn  json schema") && out.contains("not supported"),
        "{out}"
    );
}

#[test]
fn server_down_says_how_to_fix_the_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    project(
        &dir,
        BackendConfig {
            base_url: format!("http://127.0.0.1:{port}/v1"),
            ..Default::default()
        },
    );
    let (code, out) = doctor(&dir, &[], &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAIL  server") && out.contains("cannot reach"),
        "{out}"
    );
    assert!(
        out.contains("fix: start the server") && out.contains("--base-url"),
        "{out}"
    );
    assert!(out.contains("skip  completion"), "{out}");
}

#[test]
fn unauthorized_names_the_env_var_to_set() {
    let server = TestServer::start(Script::text("ok").api_key("right-key"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let mut backend = server.backend();
    backend.api_key_env = Some("STRADDLE_DOCTOR_KEY".into());
    project(&dir, backend);
    let (code, out) = doctor(&dir, &[], &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("warn  api key") && out.contains("STRADDLE_DOCTOR_KEY is not set"),
        "{out}"
    );
    assert!(out.contains("FAIL  server") && out.contains("401"), "{out}");
    assert!(out.contains("fix: export STRADDLE_DOCTOR_KEY="), "{out}");
    // a wrong key: refused, same fix
    let (code, out) = doctor(&dir, &[], &[("STRADDLE_DOCTOR_KEY", "wrong")]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("was refused") && out.contains("fix: export STRADDLE_DOCTOR_KEY="),
        "{out}"
    );
    assert!(!out.contains("wrong"), "the key is never printed: {out}");
    // the right key: healthy
    let (code, out) = doctor(&dir, &[], &[("STRADDLE_DOCTOR_KEY", "right-key")]);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn unknown_model_lists_the_available_ones() {
    let server = TestServer::start(Script::text("ok").models(&["llama-3-8b", "qwen2.5-7b"]));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let mut backend = server.backend();
    backend.model = "gpt-17".into();
    project(&dir, backend);
    let (code, out) = doctor(&dir, &[], &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAIL  model") && out.contains("'gpt-17'"),
        "{out}"
    );
    assert!(out.contains("available: llama-3-8b, qwen2.5-7b"), "{out}");
    assert!(out.contains("--model llama-3-8b"), "{out}");
    // --model overrides the config
    let (code, out) = doctor(&dir, &["--model", "qwen2.5-7b"], &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("model qwen2.5-7b"), "{out}");
}

#[test]
fn a_base_url_without_v1_is_pointed_out() {
    let server = TestServer::start(Script::text("ok"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let mut backend = server.backend();
    backend.base_url = format!("http://{}", server.addr());
    project(&dir, backend);
    let (code, out) = doctor(&dir, &[], &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("warn  server") && out.contains("/models"),
        "{out}"
    );
    assert!(
        out.contains("FAIL  completion") && out.contains("404"),
        "{out}"
    );
    assert!(out.contains("it should end in /v1"), "{out}");
}

/// A project whose `[embeddings]` is an `api` server.
fn project_with_embeddings(dir: &Path, backend: BackendConfig, base_url: String) {
    let config = ProjectConfig {
        backend,
        embeddings: straddle::domain::EmbeddingsConfig {
            backend: straddle::domain::EmbeddingBackend::Api,
            base_url,
            model: "embed-small".into(),
            ..Default::default()
        },
        ..project_config("t", "test", vec![])
    };
    create(dir, config, vec![]);
}

#[test]
fn an_api_embeddings_backend_is_checked_and_its_fix_named() {
    // Healthy: the size of the vectors is reported.
    let server = TestServer::start(healthy_script());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    project_with_embeddings(&dir, server.backend(), server.base_url());
    let (code, out) = doctor(&dir, &[], &[]);
    assert_eq!(code, Some(0), "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("embeddings"))
        .unwrap_or_else(|| panic!("no embeddings line in\n{out}"));
    assert!(line.trim_start().starts_with("ok"), "{out}");
    assert!(line.contains("embed-small: 8 dimensions"), "{out}");
    assert_eq!(server.embedding_requests(), 1, "one probe");
    // Doctor never fills the cache: a probe is not a result.
    assert!(
        !dir.join("cache").exists()
            || std::fs::read_dir(dir.join("cache"))
                .unwrap()
                .next()
                .is_none(),
        "{out}"
    );

    // The model is unknown to the embeddings server: a warning (generation
    // works without embeddings) naming the setting and the server switch.
    let server = TestServer::start(healthy_script().embedding_replies([Reply::status(
        404,
        r#"{"error":{"message":"The model `embed-small` does not exist","type":"invalid_request_error"}}"#,
    )]));
    let dir = tmp.path().join("q");
    project_with_embeddings(&dir, server.backend(), server.base_url());
    let (code, out) = doctor(&dir, &[], &[]);
    assert_eq!(code, Some(0), "a warning, not a failure:\n{out}");
    assert!(out.contains("does not exist"), "{out}");
    assert!(
        out.contains("model = \"embed-small\" under [embeddings]"),
        "{out}"
    );
}
