//! Denoising on the one generation path, end to end: `generate` against
//! the test server, with `[embeddings] backend = "api"` on the same
//! server's `/v1/embeddings` (deterministic trigram vectors). Every new
//! example is judged and the judgement journalled; `flag` decides nothing,
//! `reject` rejects with the reason as `auto:denoise`.

mod support;

use std::path::Path;

use straddle::cli::generate::run::{self, RunOptions, RunSummary};
use straddle::domain::{
    Actor, DenoiseConfig, DenoiseMode, EmbeddingBackend, EmbeddingsConfig, Origin, ProjectConfig,
};
use straddle::store::Project;
use support::{Script, TestServer};

fn config(server: &TestServer, mode: DenoiseMode, threshold: f64) -> ProjectConfig {
    let mut cfg = straddle::domain::testing::topics_config(&["sports", "music"]);
    cfg.backend = server.backend();
    cfg.relabel.enabled = false;
    cfg.generation.per_request = 3;
    cfg.embeddings = EmbeddingsConfig {
        backend: EmbeddingBackend::Api,
        base_url: server.base_url(),
        model: "trigram".into(),
        ..Default::default()
    };
    cfg.denoise = DenoiseConfig {
        mode,
        threshold,
        ..Default::default()
    };
    cfg
}

fn project(dir: &Path, cfg: ProjectConfig) {
    let seeds = vec![
        straddle::domain::testing::sample("The match went to extra time", "sports", Origin::Seed),
        straddle::domain::testing::sample("A great goal in the final", "sports", Origin::Seed),
        straddle::domain::testing::sample("The new album is out today", "music", Origin::Seed),
        straddle::domain::testing::sample("That song is stuck in my head", "music", Origin::Seed),
    ];
    support::project::create(dir, cfg, seeds);
}

async fn generate(dir: &Path, count: usize) -> RunSummary {
    generate_with(dir, count, false).await
}

async fn generate_with(dir: &Path, count: usize, no_cache: bool) -> RunSummary {
    let project = Project::open(dir).unwrap();
    let backend = project.config().backend.clone();
    let settings = project.generation_settings();
    run::generate(
        project,
        backend,
        settings,
        RunOptions {
            count,
            relabel: false,
            auto_accept: None,
            no_cache,
            progress: false,
        },
    )
    .await
    .unwrap()
}

/// Replies of three distinct posts, different for every request.
fn script() -> Script {
    let n = std::sync::atomic::AtomicUsize::new(0);
    Script::with_fn(move |_| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        support::Reply::text(format!(
            "1. Post {i} about the striker's late winner\n2. Post {i}: the drummer left the band\n3. Post {i} on ticket prices for the derby"
        ))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flag_mode_journals_a_judgement_for_every_new_example() {
    let server = TestServer::start(script());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    project(&dir, config(&server, DenoiseMode::Flag, 0.85));
    let summary = generate(&dir, 6).await;
    assert_eq!(summary.examples, 6, "{summary}");
    assert!(server.embedding_requests() > 0);
    let p = Project::open_read_only(&dir).unwrap();
    let generated: Vec<_> = p.state().generated().collect();
    assert_eq!(generated.len(), 6);
    for s in &generated {
        let n = s
            .noise
            .as_ref()
            .unwrap_or_else(|| panic!("#{} not judged", s.id));
        assert_eq!(n.model, "api:trigram");
        assert!((0.0..=1.0).contains(&n.noise));
        assert!(s.decision().is_none(), "flag mode decides nothing");
    }
    assert_eq!(summary.denoise.judged, 6, "{summary}");
    // The embeddings' requests and tokens are journalled under their own run.
    let emb = p
        .state()
        .runs
        .iter()
        .filter(|(r, _)| r == "embeddings")
        .fold(0, |n, (_, u)| n + u.requests);
    assert_eq!(
        emb as usize,
        server.embedding_requests(),
        "{:?}",
        p.state().runs
    );
    assert!(
        summary.to_string().contains("denoiser: 6 judged"),
        "{summary}"
    );
    // `straddle stats` shows the embeddings' part of the usage apart.
    let table = straddle::cli::stats::stats_table(&p);
    let line = format!("of which embeddings: {emb} requests (0 texts cached), {emb} tokens");
    assert!(table.contains(&line), "{table}");
    let json = straddle::cli::stats::stats_json(&p);
    assert_eq!(json["usage"]["embeddings"]["requests"], emb, "{json}");
    assert_eq!(json["usage"]["embeddings"]["prompt_tokens"], emb, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_mode_rejects_with_the_reason_and_asks_for_more() {
    let server = TestServer::start(script());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    // Threshold 0: every example not identical to a seed is noise.
    project(&dir, config(&server, DenoiseMode::Reject, 0.0));
    let summary = generate(&dir, 3).await;
    assert_eq!(summary.examples, 0, "{summary}");
    assert!(
        summary
            .stopped
            .as_deref()
            .unwrap_or("")
            .contains("too few new examples"),
        "the fruitless guard ends it: {summary}"
    );
    let p = Project::open_read_only(&dir).unwrap();
    let generated: Vec<_> = p.state().generated().collect();
    assert!(generated.len() > 3, "more requests after rejections");
    for s in &generated {
        let d = s.decision().expect("decided");
        assert_eq!(d.by, Actor::Auto("denoise".into()));
        let reason = d.reason.as_deref().unwrap();
        // 8-dimensional trigram vectors: some lines are as close to the
        // prompt's sentences as to anything.
        assert!(
            reason.starts_with(&format!("far from every {} seed (", s.label))
                || reason.starts_with("repeats the instructions ("),
            "{reason}"
        );
        assert_eq!(s.noise.as_ref().unwrap().reason.as_deref(), Some(reason));
    }
    // Automatic decisions stay out of the person's undo (`u`); a person
    // overturns them from the `actor:auto` review filter.
    assert!(
        p.state()
            .undo_stack
            .iter()
            .all(|(_, s)| !generated.iter().any(|g| g.id == *s))
    );
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    assert!(journal.contains("\"noise_scored\""));
    assert!(p.state().events > 0);
}

/// The bytes of every file under `dir` (path → contents).
fn files(dir: &Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.insert(p.clone(), std::fs::read(&p).unwrap());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cache_embeds_through_the_server_and_leaves_the_caches_alone() {
    // Counts the texts embedded (vectors: byte histograms).
    let texts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t = texts.clone();
    let server = TestServer::start(script().embeddings(move |text| {
        t.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut v = vec![0.0; 8];
        for b in text.bytes() {
            v[usize::from(b) % 8] += 1.0;
        }
        v
    }));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    project(&dir, config(&server, DenoiseMode::Flag, 0.85));
    generate(&dir, 3).await;
    let cached = files(&dir.join("cache"));
    assert!(
        cached
            .keys()
            .any(|p| p.extension().is_some_and(|e| e == "vec")),
        "{:?}",
        cached.keys()
    );
    let before = texts.load(std::sync::atomic::Ordering::SeqCst);
    let summary = generate_with(&dir, 3, true).await;
    assert_eq!(summary.denoise.judged, 3, "{summary}");
    // The 4 seeds' vectors were on disk, yet asked for again with the 3
    // new examples: nothing was read.
    let asked = texts.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert!(asked >= 4 + 3, "{asked} texts");
    // Nothing written: the vector file and the packs are as they were.
    assert_eq!(files(&dir.join("cache")), cached);
    let p = Project::open_read_only(&dir).unwrap();
    let last = p
        .state()
        .runs
        .iter()
        .rev()
        .find(|(r, _)| r == "embeddings")
        .unwrap();
    assert_eq!(last.1.cached, 0, "{:?}", p.state().runs);
}
