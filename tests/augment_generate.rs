//! Generate and relabel against the local test server: a 200-example mix
//! run yields 200 examples or recorded failures with full provenance, and
//! an identical second run is served from the cache.

mod support;

use std::path::Path;

use straddle::cli::generate::run::{self, RunOptions};
use straddle::domain::{
    EventKind, GenerationSettings, NewSample, Origin, ProjectConfig, Provenance, RelabelSettings,
    VerdictMethod,
};
use straddle::store::Project;
use support::{LpToken, Reply, Script, TestServer};

const CLASSES: [&str; 6] = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"];

/// A stable hash of a string (FNV-1a).
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Replies are a function of the request body only, so a second run that
/// sends the same requests gets the same answers.
fn reply_for(body: &serde_json::Value) -> Reply {
    let prompt = body["messages"][0]["content"].as_str().unwrap_or("");
    let mut key = body.clone();
    if let Some(m) = key.as_object_mut() {
        m.remove("stream");
        m.remove("stream_options");
    }
    let h = fnv(&key.to_string());
    if let Some(text) = prompt.lines().find_map(|l| l.strip_prefix("Text: ")) {
        // Relabel: a JSON label with logprobs over the first label token.
        let label = CLASSES[(fnv(text) % 6) as usize];
        let other = CLASSES[((fnv(text) + 1) % 6) as usize];
        let tok = |t: &str, lp: f64, top: Vec<(String, f64)>| LpToken {
            token: t.into(),
            logprob: lp,
            top,
        };
        return Reply::Logprobs {
            tokens: vec![
                tok("{\"label\": \"", -0.01, vec![]),
                tok(
                    &label[..1],
                    (0.8f64).ln(),
                    vec![
                        (label[..1].to_string(), (0.8f64).ln()),
                        (other[..1].to_string(), (0.15f64).ln()),
                    ],
                ),
                tok(&label[1..], -0.01, vec![]),
                tok("\"}", -0.01, vec![]),
            ],
        };
    }
    if h.is_multiple_of(9) {
        // Nothing usable: recorded as a failed generation.
        return Reply::text("Sure! Here are the examples you asked for:");
    }
    let n: usize = prompt
        .lines()
        .find_map(|l| l.strip_prefix("Write "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|w| w.parse().ok())
        .unwrap_or(5);
    let mut out = String::from("Sure! Here are some:\n");
    let mut x = h;
    for i in 0..n {
        let words: Vec<String> = (0..9)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                format!("w{}", (x >> 33) % 5000)
            })
            .collect();
        out.push_str(&format!("{}. Which {}?\n", i + 1, words.join(" ")));
    }
    Reply::text(out)
}

fn config(server: &TestServer) -> ProjectConfig {
    let mut backend = server.backend();
    backend.max_concurrency = 4;
    let mut cfg = straddle::domain::testing::project_config(
        "trec6",
        "Questions people ask a search engine.",
        straddle::domain::testing::classes(&CLASSES, |c| format!("questions whose answer is {c}")),
    );
    cfg.backend = backend;
    cfg.generation = GenerationSettings {
        seed: 7,
        ..Default::default()
    };
    cfg
}

fn seeds() -> Vec<NewSample> {
    CLASSES
        .iter()
        .flat_map(|c| {
            (0..2).map(move |i| NewSample {
                text: format!("Seed question {i} of class {c}?"),
                label: c.to_string(),
                origin: Origin::Seed,
                provenance: Provenance::default(),
            })
        })
        .collect()
}

async fn generate(dir: &Path, count: usize) -> run::RunSummary {
    let project = Project::open(dir).unwrap();
    let backend = project.config().backend.clone();
    let settings = project.generation_settings();
    run::generate(
        project,
        backend,
        settings,
        RunOptions {
            count,
            relabel: true,
            auto_accept: Some(0.75),
            no_cache: false,
            progress: false,
        },
    )
    .await
    .unwrap()
}

fn texts(dir: &Path) -> Vec<String> {
    let p = Project::open_read_only(dir).unwrap();
    p.state()
        .generated()
        .map(|s| s.text().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mix_run_of_200_then_identical_run_from_cache() {
    let server = TestServer::start(Script::with_fn(|r| reply_for(&r.body)));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("one");
    // One request at a time: the class schedule follows what the replies
    // yielded, so a re-run plans the same requests (and is served from the
    // cache) when its replies arrive in the same order.
    let serial = || {
        let mut c = config(&server);
        c.backend.max_concurrency = 1;
        c
    };
    Project::create(&dir, serial(), seeds()).unwrap();

    let summary = generate(&dir, 200).await;
    let p = Project::open_read_only(&dir).unwrap();
    let st = p.state();
    let generated: Vec<_> = st.generated().collect();
    assert_eq!(summary.examples, 200, "{summary}");
    assert_eq!(generated.len(), 200);
    assert_eq!(summary.duplicates, 0);
    assert!(!st.failures.is_empty(), "some replies were unusable");
    assert_eq!(summary.failed_requests, st.failures.len());
    for (_, f) in &st.failures {
        assert_eq!(f.reason, "unparsable");
        assert!(f.raw.starts_with("Sure!"));
        assert!(f.provenance.template_hash.is_some());
    }
    // 40 generate requests of 5, the failed ones, one relabel per example.
    assert_eq!(summary.requests as usize, 40 + st.failures.len() + 200);
    for s in &generated {
        let pv = &s.provenance;
        assert_eq!(pv.strategy.as_deref(), Some("mix"));
        assert_eq!(pv.classes.len(), 4, "{pv:?}");
        assert!(pv.classes.contains(&s.label));
        let minor = pv.minor.as_ref().expect("minor class");
        assert!(pv.classes.contains(minor) && *minor != s.label);
        let a = pv.alpha.expect("alpha");
        assert!((0.5..=1.0).contains(&a));
        assert_eq!(pv.template.as_deref(), Some("mix.j2"));
        assert_eq!(pv.template_hash.as_deref().map(str::len), Some(16));
        assert_eq!(pv.model.as_deref(), Some(p.config().backend.model.as_str()));
        assert!(pv.request_id.is_some());
        // Every kept example was relabelled with logprob confidences.
        let v = s.verdict().expect("verdict");
        assert_eq!(v.method, VerdictMethod::Logprobs);
        assert!((v.top_confidence() - 0.8 / 0.95).abs() < 1e-6, "{v:?}");
        // Auto-accept took exactly the agreeing ones.
        assert_eq!(
            s.status() == straddle::domain::Status::Accepted,
            s.agrees() == Some(true)
        );
    }
    assert_eq!(summary.relabelled, 200);
    assert!(summary.auto_accepted > 0 && summary.auto_accepted < 200);
    let usage_runs: Vec<_> = st.runs.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(usage_runs, vec!["generate"]);
    let requests = server.requests();
    assert_eq!(requests as u64, summary.requests);
    assert_eq!(summary.cached, 0);
    drop(p);

    // The same project again, sharing the cache: no request reaches the server.
    let dir2 = tmp.path().join("two");
    Project::create(&dir2, serial(), seeds()).unwrap();
    copy_dir(&dir.join("cache"), &dir2.join("cache"));
    let again = generate(&dir2, 200).await;
    assert_eq!(
        server.requests(),
        requests,
        "second run served from the cache"
    );
    assert_eq!(again.cached, summary.requests);
    let (mut a, mut b) = (texts(&dir), texts(&dir2));
    a.sort();
    b.sort();
    assert_eq!(a, b);

    // Nothing left to relabel; a review rule on what is pending.
    let p = Project::open(&dir2).unwrap();
    let backend = p.config().backend.clone();
    let rel = run::relabel(p, backend, false, false).await.unwrap();
    assert_eq!(rel.relabelled, 0);
    let p = Project::open_read_only(&dir2).unwrap();
    let ev = straddle::augment::rules::apply_rules(p.state(), None, Some(0.5));
    assert!(ev.iter().all(|e| matches!(e, EventKind::Decided(_))));
    assert_eq!(
        ev.len(),
        p.state()
            .generated()
            .filter(|s| s.agrees() == Some(false))
            .count()
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A project with seeds and `n` generated questions awaiting a relabel;
/// relabels ask one class at a time without logprobs or votes, so every
/// sample costs exactly one request.
fn relabel_project(server: &TestServer, dir: &Path, n: usize) {
    let mut config = config(server);
    config.backend.max_concurrency = 1;
    config.relabel = RelabelSettings {
        use_logprobs: false,
        votes: 1,
        ..RelabelSettings::default()
    };
    let mut p = Project::create(dir, config, seeds()).unwrap();
    let generated = (0..n)
        .map(|i| NewSample {
            text: format!("Where is city number {i}?"),
            label: "HUM".into(),
            origin: Origin::Generated,
            provenance: Provenance {
                classes: vec!["HUM".into(), "LOC".into()],
                ..Provenance::default()
            },
        })
        .collect();
    p.add_samples(generated).unwrap();
}

/// JSON when a schema was sent, free text otherwise; always LOC.
fn loc_script() -> Script {
    Script::with_fn(|r| {
        if r.body.get("response_format").is_some() {
            Reply::text(r#"{"label": "LOC"}"#)
        } else {
            Reply::text("The answer is LOC.")
        }
    })
}

async fn relabel_all(dir: &Path) -> run::RunSummary {
    let p = Project::open(dir).unwrap();
    let backend = p.config().backend.clone();
    run::relabel(p, backend, true, false).await.unwrap()
}

fn assert_all_loc(dir: &Path, n: usize) {
    let p = Project::open_read_only(dir).unwrap();
    let verdicts: Vec<_> = p
        .state()
        .generated()
        .map(|s| {
            s.verdict()
                .expect("verdict")
                .label
                .as_deref()
                .map(String::from)
        })
        .collect();
    assert_eq!(verdicts, vec![Some("LOC".to_string()); n]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relabel_finds_the_llama_cpp_schema_form_with_one_extra_request() {
    let server = TestServer::start(loc_script().llama_cpp_response_format());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    relabel_project(&server, &dir, 5);
    let summary = relabel_all(&dir).await;
    assert_eq!(summary.relabelled, 5, "{summary}");
    assert_eq!(summary.unparsable_verdicts, 0);
    assert_all_loc(&dir, 5);
    assert_eq!(
        server.requests(),
        6,
        "one refused OpenAI-form request, then 5"
    );
    let bodies = server.bodies();
    assert_eq!(bodies[0]["response_format"]["type"], "json_schema");
    for b in &bodies[1..] {
        let rf = &b["response_format"];
        assert_eq!(rf["type"], "json_object", "{b}");
        // Constrained to the class names offered (all six fit the prompt).
        assert_eq!(
            rf["schema"]["properties"]["label"]["enum"],
            serde_json::json!(CLASSES)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relabel_parses_free_text_when_both_schema_forms_are_refused() {
    let server = TestServer::start(loc_script().no_json_schema());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    relabel_project(&server, &dir, 5);
    let summary = relabel_all(&dir).await;
    assert_eq!(summary.relabelled, 5, "{summary}");
    assert_eq!(summary.unparsable_verdicts, 0);
    assert_all_loc(&dir, 5);
    assert_eq!(server.requests(), 7, "two refusals (one per form), then 5");
    let bodies = server.bodies();
    assert_eq!(bodies[0]["response_format"]["type"], "json_schema");
    assert_eq!(bodies[1]["response_format"]["type"], "json_object");
    assert!(
        bodies[2..]
            .iter()
            .all(|b| b.get("response_format").is_none())
    );
}
