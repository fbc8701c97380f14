//! The `api` embeddings backend against local servers: the project's test
//! LLM server (`/v1/embeddings`) and, for failure sequences, a small axum
//! server scripted here. Also the vector store and `vectors_for`.

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
use straddle::llm::FailReason;
use support::{Script, TestServer};

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
    let mut store = VectorStore::open(cache.path(), e.model_id());
    let first = store.embed(&e, &t[..2]).await.unwrap();
    let path = store.path().to_path_buf();
    // A crash in the middle of the next append: half a record at the end.
    let mut bytes = std::fs::read(&path).unwrap();
    let full = bytes.len();
    bytes.extend_from_slice(&[7u8; 20]);
    std::fs::write(&path, &bytes).unwrap();
    let mut store = VectorStore::open(cache.path(), e.model_id());
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
    assert!(c.fix.as_deref().unwrap().contains("[embeddings]"), "{c:?}");
}
