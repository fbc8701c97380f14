//! The LLM client against the local test server: SSE parsing edge cases,
//! non-streaming replies, usage fallback, capability degradation, errors.

mod support;

use std::time::Duration;

use serde_json::json;
use straddle::llm::{Capability, ChatRequest, FailReason, LlmClient, Message, SchemaForm};
use support::{LpToken, Reply, Script, TestServer};

fn req(text: &str) -> ChatRequest {
    ChatRequest::new(vec![Message::system("be brief"), Message::user(text)])
}

const TRICKY: &str = "Grüße — 日本語のテキスト 👍🏽 and «quotes» ☕ end";

async fn chat_with_deltas(
    client: &LlmClient,
    r: &ChatRequest,
) -> (
    Result<straddle::llm::ChatResponse, straddle::llm::LlmError>,
    Vec<String>,
) {
    let mut deltas = vec![];
    let res = client.chat(r, |t| deltas.push(t.to_owned())).await;
    (res, deltas)
}

#[tokio::test]
async fn sse_split_inside_utf8_characters_reassembles_exactly() {
    for (i, script) in [
        Script::text(TRICKY).split_every(1, Duration::ZERO),
        Script::text(TRICKY).split_every(5, Duration::from_millis(1)),
        Script::text(TRICKY).split_random(11, 7, Duration::from_millis(1)),
    ]
    .into_iter()
    .enumerate()
    {
        let server = TestServer::start(script);
        let client = LlmClient::new(&server.backend()).unwrap();
        let (res, deltas) = chat_with_deltas(&client, &req("hi")).await;
        let r = res.unwrap_or_else(|e| panic!("script {i}: {e}"));
        assert_eq!(r.text, TRICKY, "script {i}");
        assert_eq!(r.finish_reason.as_deref(), Some("stop"));
        assert!(!r.usage.estimated, "include_usage honoured");
        assert_eq!(
            r.usage.completion_tokens as usize,
            support::word_tokens(TRICKY).len()
        );
        // deltas are growing prefixes ending in the full text; pieces
        // that arrive apart give separate deltas
        assert!(
            i == 0 || deltas.len() > 3,
            "script {i}: {} deltas",
            deltas.len()
        );
        for w in deltas.windows(2) {
            assert!(w[1].starts_with(&w[0]) && w[1].len() > w[0].len());
        }
        assert_eq!(deltas.last().unwrap(), TRICKY);
        // the request asked for streaming with usage
        let body = &server.bodies()[0];
        assert_eq!(body["stream"], json!(true));
        assert_eq!(body["stream_options"]["include_usage"], json!(true));
    }
}

#[tokio::test]
async fn non_streaming_reply_and_missing_usage_is_estimated() {
    let server = TestServer::start(Script::text("abcd efgh").no_usage());
    let mut backend = server.backend();
    backend.stream = false;
    let client = LlmClient::new(&backend).unwrap();
    let r = client.chat(&req("x"), |_| {}).await.unwrap();
    assert_eq!(r.text, "abcd efgh");
    assert!(r.usage.estimated);
    assert_eq!(r.usage.completion_tokens, 3); // 9 chars / 4, rounded up
    assert!(r.usage.prompt_tokens > 0);
    assert!(server.bodies()[0].get("stream").is_none());
}

#[tokio::test]
async fn stream_without_usage_counts_tokens_from_deltas() {
    let server = TestServer::start(Script::text("a b c d e f g h").no_usage());
    let client = LlmClient::new(&server.backend()).unwrap();
    let r = client.chat(&req("x"), |_| {}).await.unwrap();
    assert!(r.usage.estimated);
    assert_eq!(r.usage.completion_tokens, 8, "one token per content delta");
}

#[tokio::test]
async fn several_choices_are_kept_in_order() {
    let server = TestServer::start(Script::always(Reply::Choices {
        choices: vec!["first one".into(), "second".into(), "third".into()],
    }));
    let client = LlmClient::new(&server.backend()).unwrap();
    let mut r = req("x");
    r.n = Some(3);
    let resp = client.chat(&r, |_| {}).await.unwrap();
    assert_eq!(resp.choices, vec!["first one", "second", "third"]);
    assert_eq!(resp.text, "first one");
}

#[tokio::test]
async fn failures_are_classified() {
    let cases: Vec<(Reply, FailReason)> = vec![
        (Reply::server_error(), FailReason::ServerError),
        (Reply::rate_limited("7"), FailReason::RateLimited),
        (
            Reply::status(400, r#"{"error":{"message":"bad"}}"#),
            FailReason::BadRequest,
        ),
        (
            Reply::malformed("{\"choices\": [oops"),
            FailReason::Malformed,
        ),
        (Reply::truncated("half an answ"), FailReason::Truncated),
        (
            Reply::stream_error("partial", "model overloaded"),
            FailReason::StreamError,
        ),
    ];
    for (reply, want) in cases {
        let server = TestServer::start(Script::always(reply.clone()));
        let client = LlmClient::new(&server.backend()).unwrap();
        let err = client.chat(&req("x"), |_| {}).await.unwrap_err();
        assert_eq!(err.reason, want, "{reply:?}: {err}");
        if want == FailReason::RateLimited {
            assert_eq!(err.retry_after, Some(Duration::from_secs(7)));
        }
        if want == FailReason::StreamError {
            assert!(err.message.contains("model overloaded"), "{err}");
        }
        if want == FailReason::Malformed {
            assert!(err.raw.as_deref().unwrap().contains("oops"));
        }
    }
}

#[tokio::test]
async fn unknown_model_is_not_found_and_timeout_is_timeout() {
    let server = TestServer::start(Script::always(Reply::Hang));
    let mut backend = server.backend();
    backend.model = "nope".into();
    let client = LlmClient::new(&backend).unwrap();
    let err = client.chat(&req("x"), |_| {}).await.unwrap_err();
    assert_eq!(err.reason, FailReason::NotFound);
    assert!(err.message.contains("nope"), "{err}");

    let mut backend = server.backend();
    backend.timeout_s = 0.2;
    let client = LlmClient::new(&backend).unwrap();
    let err = client.chat(&req("x"), |_| {}).await.unwrap_err();
    assert_eq!(err.reason, FailReason::Timeout, "{err}");
}

#[tokio::test]
async fn server_down_is_a_connect_error_naming_the_url() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let backend = straddle::domain::BackendConfig {
        base_url: format!("http://127.0.0.1:{port}/v1"),
        ..Default::default()
    };
    let client = LlmClient::new(&backend).unwrap();
    let err = client.chat(&req("x"), |_| {}).await.unwrap_err();
    assert_eq!(err.reason, FailReason::Connect);
    assert!(err.message.contains(&format!("127.0.0.1:{port}")), "{err}");
    let err = client.list_models().await.unwrap_err();
    assert_eq!(err.reason, FailReason::Connect);
}

#[tokio::test]
async fn refused_logprobs_and_schema_degrade_and_are_remembered() {
    let server = TestServer::start(
        Script::text("{\"label\": \"a\"}")
            .no_logprobs()
            .no_json_schema()
            .no_stream_options(),
    );
    let client = LlmClient::new(&server.backend()).unwrap();
    let mut r = req("classify");
    r.logprobs = Some(true);
    r.top_logprobs = Some(5);
    r.response_format = Some(
        json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}),
    );
    let resp = client.chat(&r, |_| {}).await.unwrap();
    assert_eq!(resp.text, "{\"label\": \"a\"}");
    assert!(resp.logprobs.is_none());
    assert!(resp.usage.estimated, "stream_options refused → no usage");
    let caps = client.capabilities();
    assert_eq!(caps.logprobs, Capability::Refused);
    assert_eq!(caps.json_schema, Capability::Refused);
    assert_eq!(caps.stream_usage, Capability::Refused);
    let first = server.requests();
    assert_eq!(
        first, 5,
        "one refusal per optional feature (two for the schema: both forms), then success"
    );
    // the next request goes straight through without them
    client.chat(&r, |_| {}).await.unwrap();
    assert_eq!(server.requests(), first + 1);
    let last = server.bodies().pop().unwrap();
    assert!(last.get("logprobs").is_none() && last.get("response_format").is_none());
    assert!(last.get("stream_options").is_none());
}

fn schema() -> serde_json::Value {
    json!({"type": "object", "properties": {"label": {"type": "string", "enum": ["a", "b"]}},
        "required": ["label"]})
}

fn schema_req() -> ChatRequest {
    let mut r = req("classify");
    r.set_json_schema("label", schema());
    r
}

#[tokio::test]
async fn llama_cpp_500_on_the_openai_schema_form_switches_to_json_object_once() {
    let server = TestServer::start(Script::text("{\"label\": \"a\"}").llama_cpp_response_format());
    let client = LlmClient::new(&server.backend()).unwrap();
    assert_eq!(client.capabilities().json_schema, Capability::Unknown);
    assert_eq!(client.capabilities().schema_form, SchemaForm::JsonSchema);
    let resp = client.chat(&schema_req(), |_| {}).await.unwrap();
    assert_eq!(resp.text, "{\"label\": \"a\"}");
    assert_eq!(
        server.requests(),
        2,
        "the OpenAI form, then the llama.cpp form"
    );
    let caps = client.capabilities();
    assert_eq!(caps.json_schema, Capability::Supported);
    assert_eq!(caps.schema_form, SchemaForm::JsonObject);
    let bodies = server.bodies();
    assert_eq!(bodies[0]["response_format"]["type"], "json_schema");
    assert_eq!(
        bodies[0]["response_format"]["json_schema"]["schema"],
        schema()
    );
    assert_eq!(
        bodies[1]["response_format"],
        json!({"type": "json_object", "schema": schema()})
    );
    // Remembered: later requests (and clones of the client) go straight to it.
    client.clone().chat(&schema_req(), |_| {}).await.unwrap();
    assert_eq!(server.requests(), 3);
    assert_eq!(
        server.bodies()[2]["response_format"],
        json!({"type": "json_object", "schema": schema()})
    );
}

#[tokio::test]
async fn openai_server_keeps_the_json_schema_form_and_422_also_switches() {
    let server = TestServer::start(Script::text("{}").only_response_formats(&["json_schema"], 400));
    let client = LlmClient::new(&server.backend()).unwrap();
    client.chat(&schema_req(), |_| {}).await.unwrap();
    assert_eq!(server.requests(), 1);
    let caps = client.capabilities();
    assert_eq!(
        (caps.json_schema, caps.schema_form),
        (Capability::Supported, SchemaForm::JsonSchema)
    );
    // A caller's llama.cpp-form schema is sent in the form this server takes.
    let mut r = req("classify");
    r.response_format = Some(json!({"type": "json_object", "schema": schema()}));
    client.chat(&r, |_| {}).await.unwrap();
    assert_eq!(server.requests(), 2);
    assert_eq!(server.bodies()[1]["response_format"]["type"], "json_schema");

    let server = TestServer::start(Script::text("{}").only_response_formats(&["json_object"], 422));
    let client = LlmClient::new(&server.backend()).unwrap();
    client.chat(&schema_req(), |_| {}).await.unwrap();
    assert_eq!(server.requests(), 2);
    assert_eq!(client.capabilities().schema_form, SchemaForm::JsonObject);
}

#[tokio::test]
async fn a_500_not_naming_response_format_is_an_error_not_a_refusal() {
    let server = TestServer::start(Script::queue([Reply::server_error(), Reply::text("{}")]));
    let client = LlmClient::new(&server.backend()).unwrap();
    let err = client.chat(&schema_req(), |_| {}).await.unwrap_err();
    assert_eq!(err.reason, FailReason::ServerError);
    assert_eq!(server.requests(), 1, "no retry inside the client");
    let caps = client.capabilities();
    assert_eq!(
        (caps.json_schema, caps.schema_form),
        (Capability::Unknown, SchemaForm::JsonSchema)
    );
}

#[tokio::test]
async fn a_server_refusing_both_schema_forms_gets_none_after_two_refusals() {
    let server = TestServer::start(Script::text("a").only_response_formats(&["text"], 500));
    let client = LlmClient::new(&server.backend()).unwrap();
    let resp = client.chat(&schema_req(), |_| {}).await.unwrap();
    assert_eq!(resp.text, "a");
    assert_eq!(server.requests(), 3);
    assert!(server.bodies()[2].get("response_format").is_none());
    assert_eq!(client.capabilities().json_schema, Capability::Refused);
    client.chat(&schema_req(), |_| {}).await.unwrap();
    assert_eq!(server.requests(), 4);
    assert!(server.bodies()[3].get("response_format").is_none());
}

#[tokio::test]
async fn logprobs_come_back_when_supported() {
    let tokens = vec![
        LpToken {
            token: "pos".into(),
            logprob: -0.1,
            top: vec![("pos".into(), -0.1), ("neg".into(), -2.4)],
        },
        LpToken {
            token: "itive".into(),
            logprob: -0.01,
            top: vec![],
        },
    ];
    let server = TestServer::start(Script::always(Reply::Logprobs { tokens }));
    for stream in [true, false] {
        let mut backend = server.backend();
        backend.stream = stream;
        let client = LlmClient::new(&backend).unwrap();
        let mut r = req("x");
        r.logprobs = Some(true);
        r.top_logprobs = Some(2);
        let resp = client.chat(&r, |_| {}).await.unwrap();
        assert_eq!(resp.text, "positive");
        let lp = resp.logprobs.expect("logprobs");
        assert_eq!(lp.len(), 2);
        assert_eq!(lp[0].top[1], ("neg".to_string(), -2.4));
        assert_eq!(client.capabilities().logprobs, Capability::Supported);
    }
}

#[tokio::test]
async fn models_are_listed() {
    let server = TestServer::start(Script::text("ok").models(&["a-model", "b-model"]));
    let client = LlmClient::new(&server.backend()).unwrap();
    assert_eq!(
        client.list_models().await.unwrap(),
        vec!["a-model", "b-model"]
    );
}

#[tokio::test]
async fn a_model_list_past_the_cap_is_too_large_not_read_whole() {
    // 60,000 ids of ~80 bytes: about 5 MiB of JSON, past the 4 MiB cap.
    let ids: Vec<String> = (0..60_000)
        .map(|i| format!("model-{i:06}-{}", "x".repeat(60)))
        .collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let server = TestServer::start(Script::text("ok").models(&ids));
    let client = LlmClient::new(&server.backend()).unwrap();
    let err = client.list_models().await.unwrap_err();
    assert_eq!(err.reason, FailReason::TooLarge, "{err}");
    assert!(err.message.contains("/models"), "{err}");
    // A list under the cap is read as before.
    let server = TestServer::start(Script::text("ok").models(&ids[..1000]));
    let client = LlmClient::new(&server.backend()).unwrap();
    assert_eq!(client.list_models().await.unwrap().len(), 1000);
}

#[tokio::test]
async fn api_key_comes_from_the_named_env_var() {
    // A variable only this test uses.
    let var = "STRADDLE_TEST_KEY_CLIENT_7F3A";
    let server = TestServer::start(Script::text("ok").api_key("sekrit"));
    let mut backend = server.backend();
    backend.api_key_env = Some(var.into());
    let client = LlmClient::new(&backend).unwrap();
    let err = client.chat(&req("x"), |_| {}).await.unwrap_err();
    assert_eq!(err.reason, FailReason::Auth);
    assert!(
        err.message.contains(var) && err.message.contains("not set"),
        "{err}"
    );
    // SAFETY: no other test reads or writes this variable.
    unsafe { std::env::set_var(var, "sekrit") };
    let client = LlmClient::new(&backend).unwrap();
    assert_eq!(client.chat(&req("x"), |_| {}).await.unwrap().text, "ok");
    assert!(!format!("{client:?}").contains("sekrit"));
}

fn sse(frames: &[&str]) -> Reply {
    Reply::Raw {
        status: 200,
        content_type: "text/event-stream".into(),
        body: frames.iter().map(|f| format!("{f}\n\n")).collect(),
    }
}

#[tokio::test]
async fn odd_but_valid_streams_are_accepted() {
    let cases = [
        // ends without [DONE], after a finish_reason
        sse(&[
            r#"data: {"choices":[{"index":0,"delta":{"content":"no "}}]}"#,
            r#"data: {"choices":[{"index":0,"delta":{"content":"done"},"finish_reason":"stop"}]}"#,
        ]),
        // comments, keep-alives, empty data, CRLF line ends, multi-line data
        Reply::Raw {
            status: 200,
            content_type: "text/event-stream; charset=utf-8".into(),
            body: ": ping\r\n\r\ndata:\r\n\r\ndata: {\"choices\":[{\"index\":0,\r\ndata: \"delta\":{\"content\":\"no done\"}}]}\r\n\r\n: ping\r\n\r\ndata: [DONE]\r\n\r\n".into(),
        },
        // a server that ignores stream=true and answers with one JSON body
        Reply::Raw {
            status: 200,
            content_type: "application/json".into(),
            body: r#"{"choices":[{"index":0,"message":{"content":"no done"},"finish_reason":"stop"}]}"#.into(),
        },
    ];
    for reply in cases {
        let server = TestServer::start(Script::always(reply.clone()));
        let client = LlmClient::new(&server.backend()).unwrap();
        let r = client
            .chat(&req("x"), |_| {})
            .await
            .unwrap_or_else(|e| panic!("{reply:?}: {e}"));
        assert_eq!(r.text, "no done", "{reply:?}");
        assert!(r.usage.estimated);
    }
}

#[tokio::test]
async fn error_events_and_endless_streams_fail_cleanly() {
    let server = TestServer::start(Script::always(sse(&[
        r#"data: {"choices":[{"index":0,"delta":{"content":"par"}}]}"#,
        "event: error\ndata: {\"error\":{\"message\":\"worker died\"}}",
    ])));
    let client = LlmClient::new(&server.backend()).unwrap();
    let err = client.chat(&req("x"), |_| {}).await.unwrap_err();
    assert_eq!(err.reason, FailReason::StreamError);
    assert!(err.message.contains("worker died"), "{err}");

    // ends without [DONE] and without finish_reason: truncated
    let server = TestServer::start(Script::always(sse(&[
        r#"data: {"choices":[{"index":0,"delta":{"content":"par"}}]}"#,
    ])));
    let client = LlmClient::new(&server.backend()).unwrap();
    let err = client.chat(&req("x"), |_| {}).await.unwrap_err();
    assert_eq!(err.reason, FailReason::Truncated);
}

#[tokio::test]
async fn connections_are_reused_after_a_stream() {
    let server = TestServer::start(Script::text("one two three"));
    let client = LlmClient::new(&server.backend()).unwrap();
    for _ in 0..10 {
        client.chat(&req("x"), |_| {}).await.unwrap();
    }
    assert_eq!(server.requests(), 10);
    assert_eq!(server.connections(), 1, "keep-alive after [DONE]");
}

#[tokio::test]
async fn paced_tokens_arrive_as_separate_deltas() {
    let server = TestServer::start(
        Script::text("one two three four five six").token_delay(Duration::from_millis(5)),
    );
    let client = LlmClient::new(&server.backend()).unwrap();
    let (res, deltas) = chat_with_deltas(&client, &req("x")).await;
    assert_eq!(res.unwrap().text, "one two three four five six");
    // one per token unless the machine stalls the client for 5 ms
    assert!(deltas.len() >= 4, "{deltas:?}");
    assert_eq!(deltas[0], "one");
}
