//! Batch files (issue 16): `prepare` plans with the live session and
//! writes OpenAI batch lines, the test server's `/v1/files` +
//! `/v1/batches` run them, `fetch`/`ingest` bring the replies back through
//! the session. Crashes are simulated by cutting the journal back to the
//! line an interrupted step had reached (appends are write + fsync, so a
//! `kill -9` leaves exactly such a prefix), then re-running the step.

mod support;

use std::path::Path;

use serde_json::Value;
use straddle::app::batch::{self, IngestReport};
use straddle::cli::generate::run::{self, RunOptions};
use straddle::llm::LlmClient;
use straddle::store::Project;
use support::{BatchMode, Reply, Script, TestServer};

use straddle::domain::{
    Actor, DenoiseConfig, DenoiseMode, EmbeddingBackend, EmbeddingsConfig, ProjectConfig,
};
use support::batch_fixture::{project, project_with, reply_for};

fn prepare(dir: &Path, count: usize, relabel: bool) -> batch::Prepared {
    let mut p = Project::open(dir).unwrap();
    let g = batch::generator_for(&p).unwrap();
    let backend = p.config().backend.clone();
    batch::prepare(&mut p, g, &backend, count, relabel).unwrap()
}

fn ingest(dir: &Path, file: &Path) -> IngestReport {
    let mut p = Project::open(dir).unwrap();
    let g = batch::generator_for(&p).unwrap();
    let backend = p.config().backend.clone();
    batch::ingest(&mut p, g, &backend, file, None).unwrap()
}

async fn submit(dir: &Path) -> Vec<String> {
    let mut p = Project::open(dir).unwrap();
    let c = LlmClient::new(&p.config().backend).unwrap();
    batch::submit(&mut p, &c, None).await.unwrap()
}

async fn status(dir: &Path) -> Vec<String> {
    let mut p = Project::open(dir).unwrap();
    let c = LlmClient::new(&p.config().backend).unwrap();
    batch::refresh(&mut p, &c).await.unwrap()
}

async fn fetch(dir: &Path) -> Vec<(String, IngestReport)> {
    let mut p = Project::open(dir).unwrap();
    let c = LlmClient::new(&p.config().backend).unwrap();
    let backend = p.config().backend.clone();
    batch::fetch(&mut p, &c, batch::generator_for, &backend)
        .await
        .unwrap()
}

fn journal_lines(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("journal.jsonl"))
        .unwrap()
        .lines()
        .count()
}

/// What a `kill -9` after the first `keep` journal lines leaves.
fn cut_journal(dir: &Path, keep: usize) {
    let path = dir.join("journal.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: String = text.lines().take(keep).map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, kept).unwrap();
}

fn generated(dir: &Path) -> Vec<straddle::domain::SampleState> {
    let p = Project::open_read_only(dir).unwrap();
    p.state().generated().cloned().collect()
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_submit_fetch_round_trip_then_relabel_batch_and_idempotent_reingest() {
    let server = TestServer::start(Script::with_fn(|r| reply_for(&r.body)));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    project(&server, &dir);

    let prep = prepare(&dir, 20, false);
    assert_eq!(
        (prep.name.as_str(), prep.generate, prep.relabel),
        ("b1", 4, 0)
    );
    let input = lines(&prep.input);
    assert_eq!(input.len(), 4);
    for (i, l) in input.iter().enumerate() {
        assert_eq!(l["custom_id"], format!("b1-g{i}"));
        assert_eq!(l["method"], "POST");
        assert_eq!(l["url"], "/v1/chat/completions");
        assert_eq!(l["body"]["model"], server.backend().model);
        assert!(l["body"].get("stream").is_none());
    }
    // A second prepare draws a fresh seed stream: nothing planned twice.
    let again = prepare(&dir, 20, false);
    assert_eq!(again.name, "b2");
    let other = lines(&again.input);
    for (a, b) in input.iter().zip(&other) {
        assert_ne!(a["body"], b["body"]);
    }
    assert_eq!(server.requests(), 0, "prepare sends nothing");

    let made = submit(&dir).await;
    assert_eq!(made.len(), 2, "{made:?}");
    assert_eq!(server.batches_created(), 2);
    assert!(submit(&dir).await.is_empty(), "nothing submitted twice");
    assert_eq!(server.batches_created(), 2);
    // validating → in_progress: nothing to fetch yet.
    assert!(fetch(&dir).await.is_empty());
    assert!(generated(&dir).is_empty());
    let st = status(&dir).await;
    assert!(st.iter().all(|l| l.contains("completed")), "{st:?}");
    let done = fetch(&dir).await;
    assert_eq!(done.len(), 2);
    for (_, r) in &done {
        assert_eq!((r.replies, r.examples, r.duplicates), (4, 20, 0), "{r}");
        assert!(r.errors.is_empty(), "{:?}", r.errors);
    }
    assert_eq!(server.requests(), 0, "no live request was made");
    // The batch replies' tokens count like live ones, as run `batch`.
    let p = Project::open(&dir).unwrap();
    let runs = &p.state().runs;
    let (run, usage) = runs.last().unwrap();
    assert_eq!((run.as_str(), usage.requests), ("batch", 8), "{runs:?}");
    assert!(usage.prompt_tokens > 0 && usage.completion_tokens > 0);
    assert_eq!(p.state().usage.requests, 8);
    drop(p);
    let samples = generated(&dir);
    assert_eq!(samples.len(), 40);
    for s in &samples {
        let x = &s.provenance.extra;
        let batch = x["batch"].as_str().unwrap();
        assert!(
            x["custom_id"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{batch}-g"))
        );
        assert_eq!(
            x["batch_id"],
            if batch == "b1" { "batch_1" } else { "batch_2" }
        );
        assert_eq!(s.provenance.strategy.as_deref(), Some("mix"));
        assert!(s.provenance.request_id.is_some());
    }
    // Fetching again and ingesting the same output again add nothing.
    assert!(fetch(&dir).await.is_empty());
    let before = journal_lines(&dir);
    let out = dir.join("batches/b1/output.jsonl");
    let r = ingest(&dir, &out);
    assert_eq!(
        (r.lines, r.skipped, r.replies, r.examples),
        (4, 4, 0, 0),
        "{r}"
    );
    assert_eq!(journal_lines(&dir), before);

    // Relabel batch: one request per generated example, verdicts ingested.
    let rel = prepare(&dir, 0, true);
    assert_eq!((rel.generate, rel.relabel), (0, 40));
    assert!(
        lines(&rel.input)
            .iter()
            .all(|l| l["custom_id"].as_str().unwrap().starts_with("b3-s"))
    );
    // Planned once: a second relabel prepare has nothing to plan.
    let mut p = Project::open(&dir).unwrap();
    let g = batch::generator_for(&p).unwrap();
    let backend = p.config().backend.clone();
    let err = batch::prepare(&mut p, g, &backend, 0, true).unwrap_err();
    assert!(err.to_string().contains("nothing to plan"), "{err}");
    drop(p);
    submit(&dir).await;
    status(&dir).await;
    let done = fetch(&dir).await;
    assert_eq!(done[0].1.verdicts, 40, "{}", done[0].1);
    assert!(generated(&dir).iter().all(|s| s.verdict().is_some()));
}

/// `[backend] batch_api = "together"`: the same round trip against a
/// server that speaks only Together AI's dialect (its upload path and
/// fields, `{custom_id, body}` input lines, `{"job": …}` on create, upper
/// case statuses, a bare list). The OpenAI dialect is refused there, so
/// a pass means every call took Together's form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn together_dialect_round_trip() {
    let server = TestServer::start(Script::with_fn(|r| reply_for(&r.body)));
    server.speak_together();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    project_with(&server, &dir, |c| {
        c.backend.batch_api = straddle::domain::BatchApi::Together
    });

    let prep = prepare(&dir, 20, false);
    let input = lines(&prep.input);
    assert_eq!(input.len(), 4);
    for (i, l) in input.iter().enumerate() {
        let keys: Vec<&str> = l.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["body", "custom_id"], "{l}");
        assert_eq!(l["custom_id"], format!("b1-g{i}"));
    }
    let made = submit(&dir).await;
    assert_eq!(made.len(), 1, "{made:?}");
    assert!(made[0].contains("b1: batch_1 (validating)"), "{made:?}");
    assert!(
        submit(&dir).await.is_empty(),
        "found again in the bare list"
    );
    assert_eq!(server.batches_created(), 1);
    let st = status(&dir).await;
    assert!(st.iter().all(|l| l.contains("in_progress")), "{st:?}");
    let done = fetch(&dir).await;
    assert_eq!(done.len(), 1);
    assert_eq!(
        (done[0].1.replies, done[0].1.examples),
        (4, 20),
        "{}",
        done[0].1
    );
    assert_eq!(generated(&dir).len(), 20);

    // The OpenAI dialect against this server is refused at the upload.
    let other = tmp.path().join("q");
    project(&server, &other);
    prepare(&other, 5, false);
    let mut p = Project::open(&other).unwrap();
    let c = LlmClient::new(&p.config().backend).unwrap();
    let err = batch::submit(&mut p, &c, None).await.unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("404"), "{err}");
    assert!(err.contains("batch_api = \"together\""), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_requests_are_byte_identical_to_the_live_ones() {
    let server = TestServer::start(Script::with_fn(|r| reply_for(&r.body)));
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    project(&server, &a);
    project(&server, &b);
    let prep = prepare(&a, 30, false);
    let project = Project::open(&b).unwrap();
    let backend = project.config().backend.clone();
    let settings = project.generation_settings();
    let summary = run::generate(
        project,
        backend,
        settings,
        RunOptions {
            count: 30,
            relabel: false,
            auto_accept: None,
            no_cache: true,
            progress: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(summary.examples, 30, "{summary}");
    let live: Vec<String> = server
        .bodies()
        .into_iter()
        .map(|mut v| {
            let m = v.as_object_mut().unwrap();
            assert_eq!(m.remove("stream"), Some(Value::Bool(true)));
            m.remove("stream_options");
            serde_json::to_string(&v).unwrap()
        })
        .collect();
    let planned: Vec<String> = std::fs::read_to_string(&prep.input)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            serde_json::to_string(&v["body"]).unwrap()
        })
        .collect();
    assert_eq!(planned.len(), 6);
    assert_eq!(live, planned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partly_failed_torn_and_foreign_lines_are_reported_and_the_rest_kept() {
    // The second request of the batch fails with a 500.
    let server = TestServer::start(Script::with_fn(|r| {
        if r.index == 1 {
            Reply::server_error()
        } else {
            reply_for(&r.body)
        }
    }));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    project(&server, &dir);
    prepare(&dir, 20, false);
    submit(&dir).await;
    status(&dir).await;
    let done = fetch(&dir).await;
    let r = &done[0].1;
    assert_eq!((r.replies, r.examples, r.failed), (4, 15, 1), "{r}");
    assert_eq!(r.errors.len(), 1);
    assert!(
        r.errors[0].contains("errors.jsonl:1: custom_id b1-g1: HTTP 500"),
        "{:?}",
        r.errors
    );
    // Recorded like a live failure, with the custom id.
    let p = Project::open_read_only(&dir).unwrap();
    let (_, f) = &p.state().failures[0];
    assert_eq!(f.provenance.extra["custom_id"], "b1-g1");
    drop(p);

    // A hand-made file: two good lines, garbage, an unknown id, a torn tail.
    let out = std::fs::read_to_string(dir.join("batches/b1/output.jsonl")).unwrap();
    let good: Vec<&str> = out.lines().collect();
    let path = tmp.path().join("mixed.jsonl");
    std::fs::write(
        &path,
        format!(
            "{}\nnot json\n{}\n{}\n{}",
            good[0].replace("b1-g0", "b9-g0"),
            good[1].replace("b1-g2", "b1-g77"),
            good[2],
            &good[0][..40]
        ),
    )
    .unwrap();
    // Forget the fetched replies so the good lines are new again.
    cut_journal(&dir, 7);
    let r = ingest(&dir, &path);
    let msgs = r.errors.join("\n");
    assert_eq!((r.lines, r.replies, r.examples), (5, 1, 5), "{r}\n{msgs}");
    assert!(
        msgs.contains("mixed.jsonl:1: custom_id b9-g0: batch b9 was never planned"),
        "{msgs}"
    );
    assert!(
        msgs.contains("mixed.jsonl:2: not a batch output line"),
        "{msgs}"
    );
    assert!(
        msgs.contains("mixed.jsonl:3: unknown custom_id b1-g77"),
        "{msgs}"
    );
    assert!(msgs.contains("mixed.jsonl:5: torn last line"), "{msgs}");
    assert_eq!(generated(&dir).len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_cancelled_batches_keep_what_was_answered() {
    let server = TestServer::start(Script::with_fn(|r| reply_for(&r.body)));
    server.set_batch_mode(BatchMode::Expire { done: 2 });
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    project(&server, &dir);
    prepare(&dir, 20, false);
    submit(&dir).await;
    status(&dir).await;
    let done = fetch(&dir).await;
    let r = &done[0].1;
    assert_eq!((r.replies, r.examples), (4, 10), "{r}");
    assert_eq!(
        r.errors
            .iter()
            .filter(|e| e.contains("batch_expired"))
            .count(),
        2
    );
    // Expired requests are not recorded as failures: they can be planned again.
    assert!(
        Project::open_read_only(&dir)
            .unwrap()
            .state()
            .failures
            .is_empty()
    );
    let st = status(&dir).await;
    assert!(st[0].contains("ingested"), "{st:?}");

    server.set_batch_mode(BatchMode::Complete);
    prepare(&dir, 10, false);
    submit(&dir).await;
    // Cancelled before anything was answered: every line comes back as
    // `batch_cancelled`, nothing is recorded.
    let lines = cancel(&dir, None).await;
    assert_eq!(
        lines,
        ["b1: batch_1 already ingested", "b2: batch_2 cancelling"]
    );
    let done = fetch(&dir).await;
    let r = &done[0].1;
    assert_eq!((r.examples, r.errors.len()), (0, 2), "{r}");
    assert!(r.errors.iter().all(|e| e.contains("batch_cancelled")));
}

async fn cancel(dir: &Path, only: Option<&str>) -> Vec<String> {
    let mut p = Project::open(dir).unwrap();
    let c = LlmClient::new(&p.config().backend).unwrap();
    batch::cancel(&mut p, &c, only).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_is_journaled_and_fetch_ingests_the_partial_output() {
    let server = TestServer::start(Script::with_fn(|r| reply_for(&r.body)));
    // The engine had answered two of the four requests when it was cancelled.
    server.set_cancel_keeps(2);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    project(&server, &dir);
    prepare(&dir, 20, false);
    // Not submitted yet: nothing to cancel, nothing asked.
    assert_eq!(
        cancel(&dir, Some("b1")).await,
        ["b1: not submitted, nothing to cancel (its requests stay planned)"]
    );
    submit(&dir).await;
    let lines = cancel(&dir, Some("b1")).await;
    assert_eq!(lines, ["b1: batch_1 cancelling"]);
    let p = Project::open_read_only(&dir).unwrap();
    assert_eq!(
        p.state().batches["b1"].1.status.as_deref(),
        Some("cancelling"),
        "the cancel is journaled"
    );
    drop(p);
    // Asking twice does not cancel twice.
    assert_eq!(cancel(&dir, None).await, ["b1: batch_1 already cancelling"]);
    let st = status(&dir).await;
    assert_eq!(st, ["b1: batch_1 cancelled 2/4 done, 0 failed"]);
    let done = fetch(&dir).await;
    let r = &done[0].1;
    assert_eq!((r.replies, r.examples, r.failed), (4, 10, 2), "{r}");
    assert_eq!(
        r.errors
            .iter()
            .filter(|e| e.contains("batch_cancelled"))
            .count(),
        2,
        "{:?}",
        r.errors
    );
    let samples = generated(&dir);
    assert_eq!(samples.len(), 10);
    let ids: std::collections::BTreeSet<&str> = samples
        .iter()
        .map(|s| s.provenance.extra["custom_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.into_iter().collect::<Vec<_>>(), ["b1-g0", "b1-g1"]);
    // Cancelled requests are not failures: a later prepare plans afresh.
    let p = Project::open_read_only(&dir).unwrap();
    assert!(p.state().failures.is_empty());
    assert_eq!(
        p.state().batches["b1"].1.status.as_deref(),
        Some("ingested")
    );
    drop(p);
    assert_eq!(status(&dir).await, ["b1: batch_1 ingested"]);
    let err = {
        let mut p = Project::open(&dir).unwrap();
        let c = LlmClient::new(&p.config().backend).unwrap();
        batch::cancel(&mut p, &c, Some("b7")).await.unwrap_err()
    };
    assert!(
        err.to_string().contains("batch b7 was never planned"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_resumes_after_an_interruption() {
    let server = TestServer::start(Script::with_fn(|r| reply_for(&r.body)));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    project(&server, &dir);
    let base = journal_lines(&dir);

    // prepare: killed after writing the files, before `batch_planned`.
    let first = prepare(&dir, 20, false);
    let bytes = std::fs::read(&first.input).unwrap();
    cut_journal(&dir, base);
    let again = prepare(&dir, 20, false);
    assert_eq!(again.name, "b1");
    assert_eq!(
        std::fs::read(&again.input).unwrap(),
        bytes,
        "the same plan again"
    );
    let planned = journal_lines(&dir);

    // submit: killed after the upload was journalled, before the create.
    submit(&dir).await;
    assert_eq!(server.batches_created(), 1);
    cut_journal(&dir, planned + 1);
    // …and killed after the create, before it was journalled.
    let files = server.files();
    submit(&dir).await;
    assert_eq!(files, server.files(), "the uploaded file is reused");
    assert_eq!(
        server.batches_created(),
        1,
        "the created batch is found, not made again"
    );
    cut_journal(&dir, planned + 1);
    submit(&dir).await;
    assert_eq!(server.batches_created(), 1);
    let submitted = journal_lines(&dir);
    assert_eq!(submitted, planned + 2);

    // status: killed before its update was written; asking again is fine.
    status(&dir).await;
    cut_journal(&dir, submitted);
    status(&dir).await;

    // fetch: killed in the middle of the ingest.
    let done = fetch(&dir).await;
    assert_eq!(done[0].1.examples, 20);
    let full = generated(&dir);
    let all = journal_lines(&dir);
    // The `ingested` mark and the last two replies (5 examples each) are
    // lost; a reply is written whole (its events go in one write).
    cut_journal(&dir, all - 11);
    assert_eq!(generated(&dir).len(), 10);
    let done = fetch(&dir).await;
    assert_eq!(
        (done[0].1.skipped, done[0].1.examples),
        (2, 10),
        "{}",
        done[0].1
    );
    let after = generated(&dir);
    assert_eq!(after.len(), 20, "no loss, no duplicates");
    let texts = |v: &[straddle::domain::SampleState]| {
        v.iter().map(|s| s.text().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(texts(&after), texts(&full));
}

/// `[denoise]` on, with the test server's `/v1/embeddings` as embedder.
fn denoising(
    server: &TestServer,
    mode: DenoiseMode,
    threshold: f64,
) -> impl FnOnce(&mut ProjectConfig) {
    let base_url = server.base_url();
    move |cfg| {
        cfg.embeddings = EmbeddingsConfig {
            backend: EmbeddingBackend::Api,
            base_url,
            model: "trigram".into(),
            ..Default::default()
        };
        cfg.denoise = DenoiseConfig {
            mode,
            threshold,
            ..Default::default()
        };
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_judges_every_new_example_like_a_live_run() {
    let server = TestServer::start(Script::with_fn(|r| reply_for(&r.body)));
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    project_with(&server, &a, denoising(&server, DenoiseMode::Flag, 0.6));
    project_with(&server, &b, denoising(&server, DenoiseMode::Flag, 0.6));
    // Batch: prepare, submit, fetch (the ingest judges every new example).
    prepare(&a, 20, false);
    submit(&a).await;
    status(&a).await;
    let done = fetch(&a).await;
    let r = &done[0].1;
    assert_eq!((r.examples, r.denoise.judged), (20, 20), "{r}");
    assert!(r.to_string().contains("denoiser: 20 judged"), "{r}");
    // Live: the same requests, the same replies.
    let project = Project::open(&b).unwrap();
    let backend = project.config().backend.clone();
    let settings = project.generation_settings();
    let summary = run::generate(
        project,
        backend,
        settings,
        RunOptions {
            count: 20,
            relabel: false,
            auto_accept: None,
            no_cache: true,
            progress: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(summary.denoise.judged, 20, "{summary}");
    let live: std::collections::HashMap<String, straddle::domain::NoiseScored> = generated(&b)
        .into_iter()
        .map(|s| (s.text().to_string(), *s.noise.clone().expect("judged live")))
        .collect();
    let batch = generated(&a);
    assert_eq!(batch.len(), 20);
    let mut flagged = 0;
    for s in &batch {
        let n = s
            .noise
            .as_ref()
            .unwrap_or_else(|| panic!("#{} not judged", s.id));
        assert_eq!(n.model, "api:trigram");
        // The same examples were judged live (their scores may differ:
        // see the near-copy note in the batch module docs).
        assert!(live.contains_key(s.text()), "{}", s.text());
        flagged += usize::from(n.reason.is_some());
        assert!(s.decision().is_none(), "flag mode decides nothing");
    }
    assert_eq!(flagged, r.denoise.flagged);
    // The embeddings' usage is journalled under its own run, as live.
    let p = Project::open_read_only(&a).unwrap();
    assert!(
        p.state()
            .runs
            .iter()
            .any(|(run, u)| run == "embeddings" && u.requests > 0),
        "{:?}",
        p.state().runs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_in_reject_mode_rejects_noise_with_the_reason() {
    let server = TestServer::start(Script::with_fn(|r| reply_for(&r.body)));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    // Threshold 0: every example not identical to a seed is noise.
    project_with(&server, &dir, denoising(&server, DenoiseMode::Reject, 0.0));
    let prep = prepare(&dir, 10, false);
    // The engine's output, as `vllm run-batch` would write it (a bare
    // completion as `response`).
    let out: String = lines(&prep.input)
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let text = match reply_for(&l["body"]) {
                support::Reply::Text { text } => text,
                _ => unreachable!(),
            };
            serde_json::json!({"id": format!("r{i}"), "custom_id": l["custom_id"],
                "response": {"id": format!("c{i}"), "object": "chat.completion", "model": "m",
                    "choices": [{"index": 0, "finish_reason": "stop",
                        "message": {"role": "assistant", "content": text}}]}})
            .to_string()
                + "\n"
        })
        .collect();
    let file = tmp.path().join("results.jsonl");
    std::fs::write(&file, out).unwrap();
    let r = ingest(&dir, &file);
    assert_eq!(
        (r.replies, r.denoise.judged, r.denoise.rejected),
        (2, 10, 10),
        "{r}"
    );
    assert_eq!(r.examples, 0, "rejected examples do not count: {r}");
    for s in generated(&dir) {
        let d = s.decision().expect("decided");
        assert_eq!(d.by, Actor::Auto("denoise".into()));
        let reason = d.reason.as_deref().unwrap();
        assert!(
            reason.starts_with(&format!("far from every {} seed (", s.label))
                || reason.starts_with("repeats the instructions ("),
            "{reason}"
        );
        assert_eq!(s.noise.as_ref().unwrap().reason.as_deref(), Some(reason));
        assert_eq!(s.provenance.extra["batch"], "b1");
    }
}
