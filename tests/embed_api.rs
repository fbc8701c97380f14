//! The `api` embeddings backend against local servers: the project's test
//! LLM server (`/v1/embeddings`, with scripted replies for failures) and a
//! small axum server scripted here. Embeddings run as engine jobs: retries,
//! the response cache per text, usage and cost, malformed replies. Also the
//! vector store, `vectors_for` and `doctor`'s embeddings check.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use straddle::domain::{
    EmbeddingBackend, EmbeddingsConfig, Event, EventKind, NewSample, Origin, ProjectState,
    SampleAdded,
};
use straddle::embed::{
    ApiEmbedder, EmbedError, Embedder, VectorStore, cosine, embed_blocking, from_config,
    vectors_for,
};
use straddle::llm::{FailReason, ResponseCache};
use support::{Reply, Script, TestServer};

fn config(base_url: String) -> EmbeddingsConfig {
    EmbeddingsConfig {
        backend: EmbeddingBackend::Api,
        base_url,
        model: "test-embed".into(),
        batch_size: 3,
        timeout_s: 5.0,
        max_retries: 2,
        ..EmbeddingsConfig::default()
    }
}

fn texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("text number {i} about topic {}", i % 3))
        .collect()
}

#[tokio::test]
async fn api_vectors_are_batched_normalised_and_in_order() {
    let server = TestServer::start(Script::text("unused"));
    let e = ApiEmbedder::new(&config(server.base_url())).unwrap();
    assert_eq!(e.dim(), None);
    let t = texts(7);
    let all = e.embed(&t).await.unwrap();
    // 7 texts in batches of 3: three requests.
    assert_eq!(server.embedding_requests(), 3);
    assert_eq!(e.requests(), 3);
    assert_eq!(e.dim(), Some(8));
    assert_eq!(all.len(), 7);
    for (i, v) in all.iter().enumerate() {
        let norm: f32 = v.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        // The same text alone gives the same vector: order is kept.
        let alone = e.embed(&t[i..=i]).await.unwrap();
        assert!(cosine(v, &alone[0]) > 0.99999);
    }
    assert!(e.model_id().starts_with("api:127.0.0.1/test-embed"));
    // Through from_config, as the app builds it.
    let dyn_e = from_config(&config(server.base_url())).unwrap().unwrap();
    assert_eq!(dyn_e.embed(&t[..1]).await.unwrap(), all[..1]);
    let none = EmbeddingsConfig {
        backend: EmbeddingBackend::None,
        ..EmbeddingsConfig::default()
    };
    assert!(from_config(&none).unwrap().is_none());
}

#[test]
fn embed_blocking_works_outside_a_runtime() {
    let server = TestServer::start(Script::text("unused"));
    let e = ApiEmbedder::new(&config(server.base_url())).unwrap();
    let v = embed_blocking(&e, &texts(2)).unwrap();
    assert_eq!(v.len(), 2);
}

#[tokio::test]
async fn missing_api_key_is_named() {
    let server = TestServer::start(Script::text("unused").api_key("sk-test"));
    let mut cfg = config(server.base_url());
    cfg.api_key_env = Some("STRADDLE_TEST_EMBED_KEY_UNSET".into());
    let e = ApiEmbedder::new(&cfg).unwrap();
    let err = e.embed(&texts(1)).await.unwrap_err();
    let EmbedError::Api(inner) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(inner.reason, FailReason::Auth);
    assert!(
        err.to_string().contains("STRADDLE_TEST_EMBED_KEY_UNSET"),
        "{err}"
    );
    // Not retried: one request.
    assert_eq!(server.embedding_requests(), 1);
}

/// A server answering `/v1/embeddings` with the statuses in `script` in
/// turn (200 = a 2-d answer per input), counting requests.
fn scripted(script: Vec<u16>) -> (String, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let script = Arc::new(script);
    let app = axum::Router::new().route(
        "/v1/embeddings",
        post(move |body: axum::Json<serde_json::Value>| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            let status = *script.get(n).or(script.last()).unwrap();
            async move {
                if status != 200 {
                    let mut r = (
                        StatusCode::from_u16(status).unwrap(),
                        "{\"error\":{\"message\":\"busy\"}}",
                    )
                        .into_response();
                    if status == 429 {
                        r.headers_mut().insert("retry-after", "0".parse().unwrap());
                    }
                    return r;
                }
                let inputs = body["input"].as_array().cloned().unwrap_or_default();
                // Reversed order with explicit indices: the client must sort.
                let data: Vec<serde_json::Value> = inputs
                    .iter()
                    .enumerate()
                    .rev()
                    .map(|(i, t)| {
                        let len = t.as_str().unwrap_or("").len() as f64;
                        serde_json::json!({"index": i, "embedding": [3.0 * len, 4.0 * len]})
                    })
                    .collect();
                axum::Json(serde_json::json!({"data": data})).into_response()
            }
        }),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    (format!("http://{addr}/v1"), count)
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried() {
    let (url, count) = scripted(vec![429, 503, 200]);
    let e = ApiEmbedder::new(&config(url))
        .unwrap()
        .with_backoff_base(Duration::from_millis(1));
    let v = e
        .embed(&["ab".to_string(), "abcd".to_string()])
        .await
        .unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 3);
    // Normalised [3, 4]·len, in input order despite the reversed reply.
    assert_eq!(v, vec![vec![0.6, 0.8], vec![0.6, 0.8]]);

    let (url, count) = scripted(vec![500]);
    let e = ApiEmbedder::new(&config(url))
        .unwrap()
        .with_backoff_base(Duration::from_millis(1));
    let err = e.embed(&texts(1)).await.unwrap_err();
    // max_retries = 2: three attempts, then the error says so.
    assert_eq!(count.load(Ordering::SeqCst), 3);
    assert!(err.to_string().contains("after 3 attempts"), "{err}");

    let (url, count) = scripted(vec![400]);
    let e = ApiEmbedder::new(&config(url)).unwrap();
    assert!(e.embed(&texts(1)).await.is_err());
    assert_eq!(count.load(Ordering::SeqCst), 1, "a 400 is not retried");
}

fn state(texts: &[&str]) -> ProjectState {
    let mut s = ProjectState::default();
    for (i, t) in texts.iter().enumerate() {
        let id = i as u64 + 1;
        s.apply(&Event {
            v: 1,
            id,
            ts: id,
            kind: EventKind::SampleAdded(SampleAdded::new(
                id,
                NewSample {
                    text: t.to_string(),
                    label: "A".into(),
                    origin: Origin::Generated,
                    provenance: Default::default(),
                },
            )),
        });
    }
    s
}

#[tokio::test]
async fn vectors_for_embeds_each_text_once_per_model() {
    let server = TestServer::start(Script::text("unused"));
    let mut cfg = config(server.base_url());
    cfg.batch_size = 100;
    let e = ApiEmbedder::new(&cfg).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let st = state(&["alpha beta gamma", "delta epsilon", "alpha beta gamma"]);
    let v = vectors_for(cache.path(), &st, &e).await.unwrap();
    assert_eq!(v.len(), 3);
    assert_eq!(v[&1], v[&3]);
    assert_eq!(
        e.prompt_tokens(),
        1,
        "the test server reports 1 token a request"
    );
    assert_eq!(server.embedding_requests(), 1);
    // Again, in a new process's worth of state: nothing is asked.
    let again = vectors_for(cache.path(), &st, &e).await.unwrap();
    assert_eq!(again, v);
    assert_eq!(server.embedding_requests(), 1);
    // One new text: one request with only that text.
    let st2 = state(&["alpha beta gamma", "delta epsilon", "zeta eta theta"]);
    let v2 = vectors_for(cache.path(), &st2, &e).await.unwrap();
    assert_eq!(server.embedding_requests(), 2);
    assert_eq!(v2[&1], v[&1]);
    assert_ne!(v2[&3], v[&3]);
    let store = VectorStore::open(cache.path(), e.model_id());
    assert_eq!(store.len(), 3);
    // Another model never sees these vectors.
    assert!(VectorStore::open(cache.path(), "api:other/model").is_empty());
}

#[tokio::test]
async fn a_torn_vector_file_is_repaired() {
    let server = TestServer::start(Script::text("unused"));
    let e = ApiEmbedder::new(&config(server.base_url())).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let t = texts(4);
    let store = VectorStore::open(cache.path(), e.model_id());
    let first = store.embed(&e, &t[..2]).await.unwrap();
    let path = store.path().to_path_buf();
    // A crash in the middle of the next append: half a record at the end.
    let mut bytes = std::fs::read(&path).unwrap();
    let full = bytes.len();
    bytes.extend_from_slice(&[7u8; 20]);
    std::fs::write(&path, &bytes).unwrap();
    let store = VectorStore::open(cache.path(), e.model_id());
    assert_eq!(store.len(), 2);
    assert_eq!(store.get(&t[1]).unwrap(), first[1].as_slice());
    store.embed(&e, &t).await.unwrap();
    let reopened = VectorStore::open(cache.path(), e.model_id());
    assert_eq!(reopened.len(), 4);
    // 16-byte header + 4 records of 32-byte key + 8 f32.
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 16 + 4 * (32 + 32));
    assert!(full < 16 + 4 * 64);
}

#[tokio::test]
async fn doctor_checks_the_embedder_and_names_the_fix() {
    use straddle::cli::doctor::{Status, embeddings_check};
    let server = TestServer::start(Script::text("unused"));
    let ok = embeddings_check(&config(server.base_url()), "straddle.toml").await;
    assert_eq!(ok.status, Status::Ok, "{ok:?}");
    assert!(ok.detail.contains("8 dimensions"), "{ok:?}");

    let missing = EmbeddingsConfig {
        model_dir: Some("/nonexistent/straddle-embedder".into()),
        ..EmbeddingsConfig::default()
    };
    let c = embeddings_check(&missing, "straddle.toml").await;
    assert_eq!(c.status, Status::Warn);
    assert!(c.detail.contains("/nonexistent/straddle-embedder"), "{c:?}");
    assert!(
        c.fix
            .as_deref()
            .unwrap()
            .contains("scripts/embedder.sh install"),
        "{c:?}"
    );

    let down = config("http://127.0.0.1:9/v1".into());
    let c = embeddings_check(&down, "straddle.toml").await;
    assert_eq!(c.status, Status::Warn, "{c:?}");
    let fix = c.fix.as_deref().unwrap();
    assert!(fix.contains("[embeddings]"), "{c:?}");
    assert!(
        fix.contains("http://127.0.0.1:9/v1"),
        "names the server: {c:?}"
    );
    assert!(
        !fix.contains("local-llm.sh"),
        "not the chat server's fix: {c:?}"
    );
}

#[tokio::test]
async fn doctor_names_the_fix_when_the_model_does_not_answer() {
    use straddle::cli::doctor::{Status, embeddings_check};
    // The server does not know the model.
    let server = TestServer::start(Script::text("unused").embedding_replies([Reply::status(
        404,
        r#"{"error":{"message":"model 'test-embed' not found","type":"invalid_request_error"}}"#,
    )]));
    let c = embeddings_check(&config(server.base_url()), "straddle.toml").await;
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.detail.contains("not found"), "{c:?}");
    let fix = c.fix.as_deref().unwrap();
    assert!(fix.contains("model = \"test-embed\""), "{fix}");
    assert!(fix.contains("[embeddings] in straddle.toml"), "{fix}");
    assert!(fix.contains("--embeddings"), "{fix}");
    // One probe, no retries: doctor reports, it does not wait.
    assert_eq!(server.embedding_requests(), 1);

    // A key the server refuses: the fix names the variable.
    let server = TestServer::start(Script::text("unused").api_key("sk-right"));
    let mut cfg = config(server.base_url());
    cfg.api_key_env = Some("STRADDLE_TEST_DOCTOR_EMBED_KEY_UNSET".into());
    let c = embeddings_check(&cfg, "straddle.toml").await;
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(
        c.fix
            .as_deref()
            .unwrap()
            .contains("export STRADDLE_TEST_DOCTOR_EMBED_KEY_UNSET="),
        "{c:?}"
    );

    // A reply that is not embeddings: said so, with what to check.
    let server =
        TestServer::start(Script::text("unused").embedding_replies([Reply::malformed("{}")]));
    let c = embeddings_check(&config(server.base_url()), "straddle.toml").await;
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.detail.contains("has no `data` list"), "{c:?}");
    assert!(
        c.fix
            .as_deref()
            .unwrap()
            .contains("base_url and model under [embeddings]"),
        "{c:?}"
    );
}

// --- Embeddings as engine jobs: retries, cache, usage, bad replies ------

const QUICK: Duration = Duration::from_millis(1);

fn engine_embedder(cfg: &EmbeddingsConfig, cache: Option<ResponseCache>) -> ApiEmbedder {
    let e = ApiEmbedder::new(cfg).unwrap().with_backoff_base(QUICK);
    match cache {
        Some(c) => e.with_cache(c),
        None => e,
    }
}

#[tokio::test]
async fn a_429_is_waited_out_and_retried_and_counted() {
    let server =
        TestServer::start(Script::text("unused").embedding_replies([Reply::rate_limited("0")]));
    let mut cfg = config(server.base_url());
    cfg.price_input_per_m = Some(1000.0);
    let e = engine_embedder(&cfg, None);
    let v = e.embed(&texts(2)).await.unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(server.embedding_requests(), 2, "the 429, then the answer");
    let u = e.usage();
    assert_eq!(u.requests, 1, "{u:?}");
    assert_eq!(u.failures.get("rate_limited"), Some(&1), "{u:?}");
    // The test server reports 1 prompt token a request; 1000 per 1M tokens.
    assert_eq!(u.prompt_tokens, 1);
    assert!((u.cost - 0.001).abs() < 1e-12, "{u:?}");
}

#[tokio::test]
async fn server_errors_exhaust_the_retries_with_the_server_and_fix_named() {
    let server =
        TestServer::start(Script::text("unused").embedding_replies(vec![Reply::server_error(); 3]));
    let e = engine_embedder(&config(server.base_url()), None);
    let err = e.embed(&texts(1)).await.unwrap_err();
    let msg = err.to_string();
    // max_retries = 2: three attempts.
    assert_eq!(server.embedding_requests(), 3);
    assert!(msg.contains("gave up after 3 attempts"), "{msg}");
    assert!(msg.contains(&server.base_url()), "names the server: {msg}");
    assert!(msg.contains("test-embed"), "names the model: {msg}");
    assert!(msg.contains("[embeddings]"), "names where to fix it: {msg}");
    assert_eq!(e.usage().failures.get("server_error"), Some(&3));
    // The server is back: the same embedder works again.
    assert_eq!(e.embed(&texts(1)).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_second_run_is_served_from_the_response_cache() {
    let asked = Arc::new(AtomicUsize::new(0));
    let a = asked.clone();
    let server = TestServer::start(Script::text("unused").embeddings(move |t| {
        a.fetch_add(1, Ordering::SeqCst);
        vec![t.len() as f64, 1.0, 2.0]
    }));
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(server.base_url());
    let mut five = texts(5);
    five.push(five[0].clone()); // a duplicate is asked for once
    let first = engine_embedder(&cfg, Some(ResponseCache::new(dir.path())));
    let v1 = first.embed(&five).await.unwrap();
    assert_eq!(v1[0], v1[5]);
    assert_eq!(asked.load(Ordering::SeqCst), 5);
    assert_eq!(server.embedding_requests(), 2, "5 texts in batches of 3");
    // Another run (a new embedder, as a new process has) over the same
    // cache: no HTTP at all, the same vectors, counted as cache hits.
    let second = engine_embedder(&cfg, Some(ResponseCache::new(dir.path())));
    let v2 = second.embed(&five).await.unwrap();
    assert_eq!(v2, v1);
    assert_eq!(server.embedding_requests(), 2);
    let u = second.usage();
    assert_eq!((u.requests, u.cached), (0, 5), "{u:?}");
    // An overlapping batch asks only for the new texts.
    let seven = texts(7);
    second.embed(&seven).await.unwrap();
    assert_eq!(asked.load(Ordering::SeqCst), 7);
    assert_eq!(server.embedding_requests(), 3);
    // --no-cache: everything is asked again and nothing is written.
    let packs = |d: &std::path::Path| -> u64 {
        std::fs::read_dir(d)
            .unwrap()
            .map(|f| f.unwrap().metadata().unwrap().len())
            .sum()
    };
    let before = packs(dir.path());
    let off = engine_embedder(&cfg, Some(ResponseCache::new(dir.path()).disabled()));
    off.embed(&texts(8)).await.unwrap();
    assert_eq!(asked.load(Ordering::SeqCst), 15);
    assert_eq!(packs(dir.path()), before, "--no-cache writes nothing");
    // The vectors live in the chat cache's packs, not files of their own.
    assert!(
        std::fs::read_dir(dir.path()).unwrap().all(|f| f
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".pack"))
    );
}

#[tokio::test]
async fn malformed_replies_get_specific_errors_and_lose_nothing() {
    let bad = [
        // One vector for two inputs.
        (
            Reply::malformed(r#"{"data":[{"index":0,"embedding":[1,2,3,4,5,6,7,8]}]}"#),
            "misses some of the 2 inputs",
        ),
        // Three vectors for two inputs.
        (
            Reply::malformed(
                r#"{"data":[{"index":0,"embedding":[1,2]},{"index":1,"embedding":[1,2]},{"index":1,"embedding":[3,4]}]}"#,
            ),
            "has 3 vectors for 2 inputs",
        ),
        // Vectors of two sizes in one reply.
        (
            Reply::malformed(r#"{"data":[{"embedding":[1,2]},{"embedding":[1,2,3]}]}"#),
            "mixes vector sizes (2 and 3)",
        ),
        (Reply::malformed("<html>busy</html>"), "is not JSON"),
        // The right count of the wrong size, after 8-dimensional answers.
        (
            Reply::malformed(r#"{"data":[{"embedding":[1,2,3]},{"embedding":[4,5,6]}]}"#),
            "3-dimensional vectors after 8-dimensional ones",
        ),
    ];
    // A normal answer first (8 dimensions), then the bad ones.
    let script = Script::text("unused").embedding_replies(
        std::iter::once(Reply::text("normal")).chain(bad.iter().map(|(r, _)| r.clone())),
    );
    let server = TestServer::start(script);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(server.base_url());
    cfg.max_retries = 0;
    let e = engine_embedder(&cfg, Some(ResponseCache::new(dir.path())));
    let known = e.embed(&texts(2)).await.unwrap();
    assert_eq!(e.dim(), Some(8));
    let pair = |i: usize| vec![format!("new text {i}"), format!("other text {i}")];
    for (i, (_, want)) in bad.iter().enumerate() {
        let err = e.embed(&pair(i)).await.unwrap_err();
        let EmbedError::Api(inner) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(inner.reason, FailReason::Malformed, "{err}");
        assert!(err.to_string().contains(want), "{i}: {err}");
    }
    let requests = server.embedding_requests();
    assert_eq!(requests, 1 + bad.len(), "no retries with max_retries = 0");
    // Nothing is lost, nothing bad was kept: a new run gets the earlier
    // vectors from the cache and the server's real vectors for the texts
    // that failed (one request for all of them).
    let again = engine_embedder(&cfg, Some(ResponseCache::new(dir.path())));
    assert_eq!(again.embed(&texts(2)).await.unwrap(), known);
    assert_eq!(server.embedding_requests(), requests);
    let all: Vec<String> = (0..bad.len()).flat_map(pair).collect();
    let fresh = again.embed(&all).await.unwrap();
    assert!(fresh.iter().all(|v| v.len() == 8));
    assert_eq!(
        server.embedding_requests(),
        requests + 4,
        "10 texts in batches of 3"
    );
}

#[tokio::test]
async fn batches_answered_before_a_failure_are_kept() {
    // Two batches of 3: the first is answered, the second refused (400,
    // not retried). The call fails, but the first batch's vectors are in
    // the cache: the next run asks only for the other three texts.
    let server = TestServer::start(Script::text("unused").embedding_replies([
        Reply::text("normal"),
        Reply::status(400, r#"{"error":{"message":"input too long"}}"#),
    ]));
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(server.base_url());
    // One request at a time, so the batches go out in order.
    cfg.max_concurrency = 1;
    let e = engine_embedder(&cfg, Some(ResponseCache::new(dir.path())));
    let err = e.embed(&texts(6)).await.unwrap_err();
    assert!(err.to_string().contains("input too long"), "{err}");
    assert_eq!(server.embedding_requests(), 2);
    let again = engine_embedder(&cfg, Some(ResponseCache::new(dir.path())));
    assert_eq!(again.embed(&texts(6)).await.unwrap().len(), 6);
    assert_eq!(
        server.embedding_requests(),
        3,
        "only the refused batch again"
    );
    assert_eq!(again.usage().cached, 3);
}
