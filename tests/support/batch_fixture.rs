//! The batch tests' shared project: three TREC-like classes, two seeds
//! each, and a scripted LLM whose replies are a function of the request
//! body alone (so a batch run and a live run give the same texts).

use std::path::Path;

use serde_json::Value;
use straddle::domain::{
    GenerationSettings, NewSample, Origin, ProjectConfig, Provenance, RelabelSettings,
};
use straddle::store::Project;

use super::{Reply, TestServer};

pub const CLASSES: [&str; 3] = ["HUM", "LOC", "NUM"];

pub fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Distinct questions per request body (a function of the body only);
/// a relabel gets its intended label back.
pub fn reply_for(body: &Value) -> Reply {
    let prompt = body["messages"][0]["content"].as_str().unwrap_or("");
    if prompt.lines().any(|l| l.starts_with("Text: ")) {
        return Reply::text("{\"label\": \"LOC\"}");
    }
    let mut key = body.clone();
    if let Some(m) = key.as_object_mut() {
        m.remove("stream");
        m.remove("stream_options");
    }
    let h = fnv(&key.to_string());
    let n: usize = prompt
        .lines()
        .find_map(|l| l.strip_prefix("Write "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|w| w.parse().ok())
        .unwrap_or(5);
    let mut out = String::new();
    for i in 0..n {
        out.push_str(&format!(
            "{}. Which river w{} crosses town w{} near hill w{}?\n",
            i + 1,
            h % 9973,
            (h >> 20) % 9973 + i as u64,
            (h >> 40) % 9973
        ));
    }
    Reply::text(out)
}

pub fn config(server: &TestServer) -> ProjectConfig {
    let mut backend = server.backend();
    backend.max_concurrency = 1;
    let mut cfg = straddle::domain::testing::project_config(
        "trec",
        "Questions people ask a search engine.",
        straddle::domain::testing::classes(&CLASSES, |c| format!("questions whose answer is {c}")),
    );
    cfg.backend = backend;
    cfg.generation = GenerationSettings {
        seed: 7,
        per_request: 5,
        ..Default::default()
    };
    cfg.relabel = RelabelSettings {
        use_logprobs: false,
        ..Default::default()
    };
    cfg
}

pub fn project(server: &TestServer, dir: &Path) {
    project_with(server, dir, |_| {});
}

/// [`project`] with `edit` applied to its config.
pub fn project_with(server: &TestServer, dir: &Path, edit: impl FnOnce(&mut ProjectConfig)) {
    let mut cfg = config(server);
    edit(&mut cfg);
    let seeds = CLASSES
        .iter()
        .flat_map(|c| {
            (0..2).map(move |i| NewSample {
                text: format!("Which seed question {i} has an answer of kind {c}?"),
                label: c.to_string(),
                origin: Origin::Seed,
                provenance: Provenance::default(),
            })
        })
        .collect();
    Project::create(dir, cfg, seeds).unwrap();
}
