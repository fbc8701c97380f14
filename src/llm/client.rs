//! The HTTP side: request bodies, streaming and whole replies, status
//! classification, rate-limit headers and capability degradation.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, SystemTime};

use futures_util::{FutureExt, StreamExt};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};

use super::sse::{Accumulator, SseParser, error_message};
use super::{ChatRequest, ChatResponse, FailReason, LlmError, reply_cap};
use crate::domain::BackendConfig;

/// Whether a server takes an optional request feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// Not tried yet.
    Unknown,
    /// Accepted (and, for logprobs, actually returned).
    Supported,
    /// Rejected with a 400/422 naming it (a JSON schema: in both
    /// [`SchemaForm`]s), or accepted but ignored; no longer sent.
    Refused,
}

impl Capability {
    fn from_u8(v: u8) -> Capability {
        match v {
            1 => Capability::Supported,
            2 => Capability::Refused,
            _ => Capability::Unknown,
        }
    }
}

/// How a server wants a JSON-schema `response_format` written. Callers
/// always ask in the OpenAI form ([`ChatRequest::set_json_schema`](super::ChatRequest::set_json_schema));
/// the client rewrites it into the form the server takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaForm {
    /// OpenAI, vLLM, Ollama and most hosted APIs:
    /// `{"type":"json_schema","json_schema":{"name":…,"strict":true,"schema":…}}`.
    JsonSchema,
    /// llama.cpp's server via llama-cpp-python (which answers the OpenAI
    /// form with a 500): `{"type":"json_object","schema":…}`.
    JsonObject,
}

impl SchemaForm {
    /// The `response_format` asking for JSON matching `schema`, in this form.
    pub fn response_format(self, name: &str, schema: Value) -> Value {
        match self {
            SchemaForm::JsonSchema => json!({
                "type": "json_schema",
                "json_schema": {"name": name, "strict": true, "schema": schema}
            }),
            SchemaForm::JsonObject => json!({"type": "json_object", "schema": schema}),
        }
    }

    /// The form, name and schema of a JSON-schema `response_format` (in
    /// either form); `None` for anything else (`text`, bare `json_object`).
    pub fn parse(response_format: &Value) -> Option<(SchemaForm, &str, &Value)> {
        match response_format.get("type")?.as_str()? {
            "json_schema" => {
                let js = response_format.get("json_schema")?;
                let name = js.get("name").and_then(Value::as_str).unwrap_or("response");
                Some((SchemaForm::JsonSchema, name, js.get("schema")?))
            }
            "json_object" => Some((
                SchemaForm::JsonObject,
                "response",
                response_format.get("schema")?,
            )),
            _ => None,
        }
    }

    /// Short name for messages: `json_schema` or `json_object+schema`.
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaForm::JsonSchema => "json_schema",
            SchemaForm::JsonObject => "json_object+schema",
        }
    }
}

/// What the client has learnt about the server so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// `logprobs` / `top_logprobs`.
    pub logprobs: Capability,
    /// JSON-schema output (`response_format`) in either [`SchemaForm`];
    /// `Refused` once the server refused both.
    pub json_schema: Capability,
    /// The form JSON-schema requests are sent in: the one the server took
    /// when `json_schema` is `Supported`, the one tried next while it is
    /// `Unknown` (the OpenAI form until a server refuses it).
    pub schema_form: SchemaForm,
    /// `stream_options.include_usage`.
    pub stream_usage: Capability,
}

#[derive(Debug, Clone, Copy)]
enum Cap {
    Logprobs = 0,
    JsonSchema = 1,
    StreamUsage = 2,
}

/// A request body as sent: the caller's body (borrowed unless a refused
/// feature had to be taken out) and the streaming fields, written after
/// it without copying the body into a new map per attempt.
struct Outgoing<'a> {
    body: Cow<'a, Map<String, Value>>,
    /// Add `"stream": true`.
    stream: bool,
    /// Add `"stream_options": {"include_usage": true}`.
    stream_usage: bool,
}

impl serde::Serialize for Outgoing<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let extra = usize::from(self.stream) + usize::from(self.stream_usage);
        let mut m = s.serialize_map(Some(self.body.len() + extra))?;
        for (k, v) in self.body.iter() {
            m.serialize_entry(k, v)?;
        }
        if self.stream {
            m.serialize_entry("stream", &true)?;
        }
        if self.stream_usage {
            m.serialize_entry("stream_options", &json!({"include_usage": true}))?;
        }
        m.end()
    }
}

/// Rate-limit hints from response headers (`x-ratelimit-*`, `Retry-After`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RateLimitInfo {
    pub remaining_requests: Option<u64>,
    pub reset_requests: Option<Duration>,
    pub remaining_tokens: Option<u64>,
    pub reset_tokens: Option<Duration>,
    /// `Retry-After` (seconds or HTTP-date) or `retry-after-ms`.
    pub retry_after: Option<Duration>,
}

impl RateLimitInfo {
    /// Read the headers of a response.
    pub fn from_headers(h: &HeaderMap) -> RateLimitInfo {
        let s = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let retry_after = s("retry-after-ms")
            .and_then(|v| v.parse::<f64>().ok())
            .map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1000.0))
            .or_else(|| s("retry-after").and_then(parse_retry_after));
        RateLimitInfo {
            remaining_requests: s("x-ratelimit-remaining-requests").and_then(|v| v.parse().ok()),
            reset_requests: s("x-ratelimit-reset-requests").and_then(parse_reset),
            remaining_tokens: s("x-ratelimit-remaining-tokens").and_then(|v| v.parse().ok()),
            reset_tokens: s("x-ratelimit-reset-tokens").and_then(parse_reset),
            retry_after,
        }
    }

    /// How long to hold off new requests: the server's `Retry-After`, or
    /// the reset time of an exhausted request/token budget.
    pub fn hold(&self) -> Option<Duration> {
        if self.retry_after.is_some() {
            return self.retry_after;
        }
        let req = (self.remaining_requests == Some(0))
            .then_some(self.reset_requests)
            .flatten();
        let tok = (self.remaining_tokens == Some(0))
            .then_some(self.reset_tokens)
            .flatten();
        req.max(tok)
    }
}

/// `Retry-After`: delay-seconds or an HTTP-date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// `x-ratelimit-reset-*`: `"1s"`, `"6m0s"`, `"20ms"`, `"1h2m3.5s"` or bare seconds.
pub fn parse_reset(v: &str) -> Option<Duration> {
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let mut total = 0.0;
    let mut rest = v;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    Some(Duration::from_secs_f64(total))
}

/// An OpenAI-compatible chat-completions client. Cheap to clone; clones
/// share the connection pool and what was learnt about capabilities.
#[derive(Clone)]
pub struct LlmClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: String,
    /// Parsed once: a `&str` would be parsed again for every request.
    chat_url: reqwest::Url,
    models_url: String,
    host: String,
    model: String,
    api_key_env: Option<String>,
    key_present: bool,
    extra_body: Map<String, Value>,
    stream: bool,
    timeout: Duration,
    caps: [AtomicU8; 3],
    /// 0: [`SchemaForm::JsonSchema`], 1: [`SchemaForm::JsonObject`].
    schema_form: AtomicU8,
    batch_api: crate::domain::BatchApi,
}

impl std::fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key (it lives only inside the reqwest headers).
        f.debug_struct("LlmClient")
            .field("base_url", &self.inner.base_url)
            .field("model", &self.inner.model)
            .field("stream", &self.inner.stream)
            .finish()
    }
}

impl LlmClient {
    /// A client for `backend`. The API key is read from the environment
    /// variable `backend.api_key_env` now; a missing variable is not an
    /// error here (local servers need no key) but 401 replies name it.
    pub fn new(backend: &BackendConfig) -> Result<LlmClient, LlmError> {
        // From here on the key is redacted from anything leaving the process.
        crate::secrets::register_backend(backend);
        let key = backend
            .api_key_env
            .as_deref()
            .and_then(|var| std::env::var(var).ok())
            .filter(|k| !k.trim().is_empty());
        let mut headers = HeaderMap::new();
        for (k, v) in &backend.headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| {
                LlmError::new(
                    FailReason::BadRequest,
                    format!("bad header name '{k}': {e}"),
                )
            })?;
            let value = HeaderValue::from_str(v).map_err(|e| {
                LlmError::new(
                    FailReason::BadRequest,
                    format!("bad value for header '{k}': {e}"),
                )
            })?;
            headers.insert(name, value);
        }
        if let Some(key) = &key {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", key.trim())).map_err(|_| {
                LlmError::new(
                    FailReason::Auth,
                    "the API key holds characters not allowed in an HTTP header",
                )
            })?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| LlmError::new(FailReason::Connect, format!("HTTP client: {e}")))?;
        let base_url = backend.base_url.trim().trim_end_matches('/').to_owned();
        let host = reqwest::Url::parse(&base_url)
            .map_err(|e| {
                LlmError::new(
                    FailReason::BadRequest,
                    format!("base_url '{base_url}' is not a URL: {e}"),
                )
            })?
            .host_str()
            .unwrap_or_default()
            .to_owned();
        let chat_url =
            reqwest::Url::parse(&format!("{base_url}/chat/completions")).map_err(|e| {
                LlmError::new(
                    FailReason::BadRequest,
                    format!("base_url '{base_url}' is not a URL: {e}"),
                )
            })?;
        Ok(LlmClient {
            inner: Arc::new(Inner {
                http,
                chat_url,
                models_url: format!("{base_url}/models"),
                base_url,
                host,
                model: backend.model.clone(),
                api_key_env: backend.api_key_env.clone(),
                key_present: key.is_some(),
                extra_body: backend.extra_body.clone(),
                stream: backend.stream,
                timeout: Duration::from_secs_f64(backend.timeout_s.max(0.001)),
                caps: Default::default(),
                schema_form: AtomicU8::new(0),
                batch_api: backend.batch_api,
            }),
        })
    }

    /// Which Batch API dialect the server speaks (`[backend] batch_api`).
    pub fn batch_api(&self) -> crate::domain::BatchApi {
        self.inner.batch_api
    }

    /// The HTTP client (with the key and headers), for the batch calls.
    pub(super) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }
    /// Host of the base URL (part of the cache key).
    pub fn host(&self) -> &str {
        &self.inner.host
    }
    pub fn model(&self) -> &str {
        &self.inner.model
    }
    pub fn streaming(&self) -> bool {
        self.inner.stream
    }
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    pub fn capabilities(&self) -> Capabilities {
        Capabilities {
            logprobs: self.cap(Cap::Logprobs),
            json_schema: self.cap(Cap::JsonSchema),
            schema_form: self.schema_form(),
            stream_usage: self.cap(Cap::StreamUsage),
        }
    }

    fn schema_form(&self) -> SchemaForm {
        match self.inner.schema_form.load(Ordering::Relaxed) {
            0 => SchemaForm::JsonSchema,
            _ => SchemaForm::JsonObject,
        }
    }

    fn set_schema_form(&self, form: SchemaForm) {
        let v = match form {
            SchemaForm::JsonSchema => 0,
            SchemaForm::JsonObject => 1,
        };
        self.inner.schema_form.store(v, Ordering::Relaxed);
    }

    fn cap(&self, c: Cap) -> Capability {
        Capability::from_u8(self.inner.caps[c as usize].load(Ordering::Relaxed))
    }

    fn set_cap(&self, c: Cap, v: Capability) {
        let v = match v {
            Capability::Unknown => 0,
            Capability::Supported => 1,
            Capability::Refused => 2,
        };
        self.inner.caps[c as usize].store(v, Ordering::Relaxed);
    }

    /// The request body without the streaming fields: model, messages, the
    /// backend's `extra_body`, the request's set fields and its `extra`.
    /// This is what the cache key hashes.
    pub fn body(&self, req: &ChatRequest) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("model".into(), Value::String(self.inner.model.clone()));
        m.insert(
            "messages".into(),
            serde_json::to_value(&req.messages).unwrap_or(Value::Null),
        );
        for (k, v) in &self.inner.extra_body {
            m.insert(k.clone(), v.clone());
        }
        let mut opt = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.to_owned(), v);
            }
        };
        opt("temperature", req.temperature.map(Value::from));
        opt("top_p", req.top_p.map(Value::from));
        opt("max_tokens", req.max_tokens.map(Value::from));
        opt("n", req.n.map(Value::from));
        opt("seed", req.seed.map(Value::from));
        opt("logprobs", req.logprobs.map(Value::from));
        opt("top_logprobs", req.top_logprobs.map(Value::from));
        opt("response_format", req.response_format.clone());
        for (k, v) in &req.extra {
            m.insert(k.clone(), v.clone());
        }
        m
    }

    /// Send `req` and wait for the whole answer; `on_delta` gets the text
    /// of the first choice so far each time it grows.
    pub async fn chat(
        &self,
        req: &ChatRequest,
        mut on_delta: impl FnMut(&str) + Send,
    ) -> Result<ChatResponse, LlmError> {
        self.send(&self.body(req), &mut on_delta)
            .await
            .map(|(r, _)| r)
    }

    /// Send a body built by [`body`](Self::body): adds the streaming
    /// fields, drops capabilities the server refused before, writes a
    /// JSON-schema `response_format` in the form the server takes, and on a
    /// 400/422 that names an optional field retries at once without it
    /// (remembering that). A refused JSON schema is first retried in the
    /// other [`SchemaForm`] (also on a 500 naming `response_format`, which
    /// is how llama-cpp-python refuses the OpenAI form), then without.
    /// Bounded by the backend's timeout.
    pub async fn send(
        &self,
        body: &Map<String, Value>,
        on_delta: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(ChatResponse, RateLimitInfo), LlmError> {
        let timeout = self.inner.timeout;
        match tokio::time::timeout(timeout, self.send_degrading(body, on_delta)).await {
            Ok(r) => r,
            Err(_) => Err(LlmError::new(
                FailReason::Timeout,
                format!(
                    "no complete reply within {:.1} s (timeout_s)",
                    timeout.as_secs_f64()
                ),
            )),
        }
    }

    async fn send_degrading(
        &self,
        body: &Map<String, Value>,
        on_delta: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(ChatResponse, RateLimitInfo), LlmError> {
        // Borrowed: copied only when a refused feature has to go.
        let mut body = Cow::Borrowed(body);
        self.strip_refused(&mut body);
        self.shape_schema(&mut body);
        let mut body = Outgoing {
            body,
            stream: false,
            stream_usage: false,
        };
        if self.inner.stream {
            let usage = self.cap(Cap::StreamUsage) != Capability::Refused;
            if body.body.contains_key("stream") || body.body.contains_key("stream_options") {
                // The caller set them (`extra`): ours replace theirs.
                let m = body.body.to_mut();
                m.insert("stream".into(), Value::Bool(true));
                if usage {
                    m.insert("stream_options".into(), json!({"include_usage": true}));
                }
            } else {
                body.stream = true;
                body.stream_usage = usage;
            }
        }
        let prompt_estimate = estimate_body_prompt(&body.body);
        loop {
            match self.post(&body, prompt_estimate, on_delta).await {
                Err(e) => match self.degrade(&mut body, &e) {
                    Some(retry) => {
                        tracing::info!("server refused an optional feature, retrying {retry}: {e}")
                    }
                    None => return Err(e),
                },
                Ok(ok) => {
                    self.learn(&body, &ok.0);
                    return Ok(ok);
                }
            }
        }
    }

    fn strip_refused(&self, body: &mut Cow<'_, Map<String, Value>>) {
        if self.cap(Cap::Logprobs) == Capability::Refused
            && (body.contains_key("logprobs") || body.contains_key("top_logprobs"))
        {
            let m = body.to_mut();
            m.remove("logprobs");
            m.remove("top_logprobs");
        }
        if self.cap(Cap::JsonSchema) == Capability::Refused && body.contains_key("response_format")
        {
            body.to_mut().remove("response_format");
        }
    }

    /// Write a JSON-schema `response_format` in the form this server takes.
    fn shape_schema(&self, body: &mut Cow<'_, Map<String, Value>>) {
        let form = self.schema_form();
        if let Some(rf) = body.get("response_format")
            && let Some((sent, name, schema)) = SchemaForm::parse(rf)
            && sent != form
        {
            let rf = form.response_format(name, schema.clone());
            body.to_mut().insert("response_format".into(), rf);
        }
    }

    /// On a refusal naming an optional field we sent: drop it (or, for a
    /// JSON schema in the OpenAI form, switch to the llama.cpp form) and
    /// remember. 400/422 name any optional field; a 500 counts only for
    /// `response_format` (llama-cpp-python's validation errors are 500s).
    /// Returns how the retry differs, `None` when this is no refusal.
    fn degrade(&self, out: &mut Outgoing<'_>, err: &LlmError) -> Option<&'static str> {
        let client_error = matches!(err.status, Some(400 | 422));
        if !client_error && err.status != Some(500) {
            return None;
        }
        let text = format!("{} {}", err.message, err.raw.as_deref().unwrap_or("")).to_lowercase();
        if client_error && out.body.contains_key("logprobs") && text.contains("logprob") {
            self.set_cap(Cap::Logprobs, Capability::Refused);
            let body = out.body.to_mut();
            body.remove("logprobs");
            body.remove("top_logprobs");
            return Some("without logprobs");
        }
        let schema_words: &[&str] = if client_error {
            &["response_format", "json_schema", "schema", "grammar"]
        } else {
            &["response_format", "json_schema"]
        };
        if out.body.contains_key("response_format") && schema_words.iter().any(|w| text.contains(w))
        {
            let body = out.body.to_mut();
            let rf = body.get_mut("response_format").expect("checked above");
            return Some(match SchemaForm::parse(rf) {
                Some((SchemaForm::JsonSchema, name, schema)) => {
                    let other = SchemaForm::JsonObject;
                    *rf = other.response_format(name, schema.clone());
                    self.set_schema_form(other);
                    "with the JSON schema as response_format json_object+schema"
                }
                _ => {
                    self.set_cap(Cap::JsonSchema, Capability::Refused);
                    body.remove("response_format");
                    "without response_format"
                }
            });
        }
        if client_error
            && (out.stream_usage || out.body.contains_key("stream_options"))
            && text.contains("stream_options")
        {
            self.set_cap(Cap::StreamUsage, Capability::Refused);
            out.stream_usage = false;
            if out.body.contains_key("stream_options") {
                out.body.to_mut().remove("stream_options");
            }
            return Some("without stream_options");
        }
        None
    }

    /// After a success: note which optional features the server honoured.
    fn learn(&self, out: &Outgoing<'_>, resp: &ChatResponse) {
        let body = &*out.body;
        if body.get("logprobs") == Some(&Value::Bool(true)) {
            let got = resp.logprobs.as_ref().is_some_and(|l| !l.is_empty());
            self.set_cap(
                Cap::Logprobs,
                if got {
                    Capability::Supported
                } else {
                    Capability::Refused
                },
            );
        }
        if let Some(rf) = body.get("response_format") {
            if let Some((form, _, _)) = SchemaForm::parse(rf) {
                self.set_schema_form(form);
            }
            self.set_cap(Cap::JsonSchema, Capability::Supported);
        }
        if (out.stream_usage || body.contains_key("stream_options")) && !resp.usage.estimated {
            self.set_cap(Cap::StreamUsage, Capability::Supported);
        }
    }

    async fn post(
        &self,
        out: &Outgoing<'_>,
        prompt_estimate: u32,
        on_delta: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(ChatResponse, RateLimitInfo), LlmError> {
        let body = &*out.body;
        let resp = self
            .inner
            .http
            .post(self.inner.chat_url.clone())
            .json(out)
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        let limits = RateLimitInfo::from_headers(resp.headers());
        let cap = reply_cap(
            body.get("max_tokens")
                .or_else(|| body.get("max_completion_tokens"))
                .and_then(Value::as_u64)
                .map(|v| v.min(u32::MAX as u64) as u32),
            body.get("n")
                .and_then(Value::as_u64)
                .map(|v| v.min(128) as u32),
        );
        if !status.is_success() {
            // An error page is read up to 64 KiB (4 KiB of it is kept).
            let text = read_capped(resp, 64 << 10)
                .await
                .map(|(b, _)| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            return Err(self.status_error(status.as_u16(), &text, limits));
        }
        let is_sse = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("event-stream"));
        let mut acc = Accumulator::default();
        if is_sse {
            let mut done = false;
            let mut body = resp.bytes_stream();
            let mut parser = SseParser::default();
            // One delta per batch of bytes that arrived together: a token
            // at a time from a real server, one update for a burst.
            let mut unreported = false;
            let mut read = 0usize;
            'read: loop {
                let next = match body.next().now_or_never() {
                    Some(next) => next,
                    None => {
                        if std::mem::take(&mut unreported) {
                            on_delta(acc.text0());
                        }
                        body.next().await
                    }
                };
                let Some(chunk) = next else { break };
                let chunk = chunk.map_err(|e| self.body_error(&e))?;
                read += chunk.len();
                if read > cap {
                    return Err(too_large(cap, acc.text0()));
                }
                parser.push_read(chunk);
                let (grew, end) = acc.read_events(&mut parser)?;
                unreported |= grew;
                if end {
                    done = true;
                    // Read to the end of the body so the connection goes
                    // back to the pool instead of being closed.
                    while let Some(Ok(_)) = body.next().await {}
                    break 'read;
                }
            }
            if unreported {
                on_delta(acc.text0());
            }
            if !done && !acc.has_finish() {
                return Err(LlmError::new(
                    FailReason::Truncated,
                    format!(
                        "the stream ended before the answer did ({} characters received)",
                        acc.text0().len()
                    ),
                ));
            }
        } else {
            let (bytes, complete) = read_capped(resp, cap)
                .await
                .map_err(|e| self.body_error(&e))?;
            if !complete {
                return Err(too_large(cap, &String::from_utf8_lossy(&bytes)));
            }
            let text = String::from_utf8_lossy(&bytes);
            if acc.push_json(&text)? {
                on_delta(acc.text0());
            }
        }
        Ok((acc.finish(prompt_estimate, &self.inner.model), limits))
    }

    pub(super) fn transport_error(&self, e: &reqwest::Error) -> LlmError {
        let mut err = LlmError::from_reqwest(e);
        if err.reason == FailReason::Connect {
            err.message = format!("cannot reach {}: {}", self.inner.base_url, err.message);
        }
        err
    }

    /// A failure while reading the body of a reply that had started: the
    /// connection was reset or closed mid-reply, which is a cut-off answer
    /// (`truncated`), not a malformed one.
    fn body_error(&self, e: &reqwest::Error) -> LlmError {
        let mut err = self.transport_error(e);
        if matches!(err.reason, FailReason::Connect | FailReason::Malformed) {
            err.reason = FailReason::Truncated;
            err.message = format!(
                "the connection to {} broke mid-reply: {}",
                self.inner.base_url, err.message
            );
        }
        err
    }

    /// Classify a non-2xx reply.
    pub(super) fn status_error(&self, status: u16, body: &str, limits: RateLimitInfo) -> LlmError {
        let detail = serde_json::from_str::<Value>(body)
            .ok()
            .map(|v| error_message(v.get("error").unwrap_or(&v)))
            .unwrap_or_else(|| body.chars().take(300).collect());
        let reason = match status {
            429 => FailReason::RateLimited,
            401 | 403 => FailReason::Auth,
            404 => FailReason::NotFound,
            500..=599 => FailReason::ServerError,
            _ => FailReason::BadRequest,
        };
        let mut message = format!("HTTP {status}: {detail}");
        if reason == FailReason::Auth {
            message.push_str(&self.key_hint());
        }
        let mut err = LlmError::new(reason, message).with_raw(body);
        err.status = Some(status);
        err.retry_after = limits.hold();
        err
    }

    /// Where the API key should come from, for 401 messages.
    pub fn key_hint(&self) -> String {
        match (&self.inner.api_key_env, self.inner.key_present) {
            (Some(var), false) => format!(
                " — the API key comes from the environment variable {var}, which is not set"
            ),
            (Some(var), true) => format!(
                " — the API key in the environment variable {var} was refused"
            ),
            (None, _) => " — no API key is configured: set backend.api_key_env in straddle.toml to the name of an environment variable holding it".into(),
        }
    }

    /// The model ids the server lists at `/models`.
    pub async fn list_models(&self) -> Result<Vec<String>, LlmError> {
        let fut = async {
            let resp = self
                .inner
                .http
                .get(&self.inner.models_url)
                .send()
                .await
                .map_err(|e| self.transport_error(&e))?;
            let status = resp.status();
            let limits = RateLimitInfo::from_headers(resp.headers());
            // A model list is small; a server streaming without end is
            // not one.
            let text = self.read_text(resp, MODELS_CAP, "/models").await?;
            if !status.is_success() {
                return Err(self.status_error(status.as_u16(), &text, limits));
            }
            let v: Value = serde_json::from_str(&text).map_err(|e| {
                LlmError::new(
                    FailReason::Malformed,
                    format!("/models reply is not JSON: {e}"),
                )
                .with_raw(text.as_str())
            })?;
            let list = v
                .get("data")
                .or_else(|| v.get("models"))
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    LlmError::new(FailReason::Malformed, "/models reply has no `data` list")
                        .with_raw(text.as_str())
                })?;
            Ok(list
                .iter()
                .filter_map(|m| {
                    m.get("id")
                        .or_else(|| m.get("name"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .collect())
        };
        tokio::time::timeout(self.inner.timeout, fut)
            .await
            .unwrap_or_else(|_| {
                Err(LlmError::new(
                    FailReason::Timeout,
                    format!("{} did not answer in time", self.inner.models_url),
                ))
            })
    }

    /// One `/embeddings` request for `inputs` (one attempt, bounded by the
    /// timeout; retrying, rate limits and caching are the engine's
    /// business, see [`crate::engine::EngineHandle::embed`]). Returns the
    /// vectors in input order, as the server sent them (not normalised),
    /// the prompt tokens the server reported (estimated from the characters
    /// when it sent none) and the reply's rate-limit headers.
    pub async fn embeddings(
        &self,
        inputs: &[String],
    ) -> Result<(Vec<Vec<f32>>, u32, RateLimitInfo), LlmError> {
        let url = format!("{}/embeddings", self.inner.base_url);
        let body = json!({"model": self.inner.model, "input": inputs});
        let fut = async {
            let resp = self
                .inner
                .http
                .post(&url)
                .header(CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(&body).unwrap_or_default())
                .send()
                .await
                .map_err(|e| self.transport_error(&e))?;
            let status = resp.status();
            let limits = RateLimitInfo::from_headers(resp.headers());
            // 128 KiB per vector covers 8,192 dimensions written out
            // as JSON floats.
            let cap = (1 << 20) + inputs.len() * (128 << 10);
            let text = self.read_text(resp, cap, "/embeddings").await?;
            if !status.is_success() {
                return Err(self.status_error(status.as_u16(), &text, limits));
            }
            let malformed = |what: String| {
                LlmError::new(FailReason::Malformed, format!("/embeddings reply {what}"))
                    .with_raw(text.as_str())
            };
            let v: Value =
                serde_json::from_str(&text).map_err(|e| malformed(format!("is not JSON: {e}")))?;
            let data = v
                .get("data")
                .and_then(Value::as_array)
                .ok_or_else(|| malformed("has no `data` list".into()))?;
            let mut out: Vec<Option<Vec<f32>>> = vec![None; inputs.len()];
            for (pos, item) in data.iter().enumerate() {
                let index = item
                    .get("index")
                    .and_then(Value::as_u64)
                    .map_or(pos, |i| i as usize);
                let vec: Vec<f32> = item
                    .get("embedding")
                    .and_then(Value::as_array)
                    .ok_or_else(|| malformed(format!("item {pos} has no `embedding` list")))?
                    .iter()
                    .map(|x| x.as_f64().map(|x| x as f32))
                    .collect::<Option<_>>()
                    .ok_or_else(|| malformed(format!("item {pos} holds a non-number")))?;
                match out.get_mut(index) {
                    Some(slot) => *slot = Some(vec),
                    None => return Err(malformed(format!("has index {index} out of range"))),
                }
            }
            let vectors = out
                .into_iter()
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| malformed(format!("misses some of the {} inputs", inputs.len())))?;
            if data.len() != inputs.len() {
                return Err(malformed(format!(
                    "has {} vectors for {} inputs",
                    data.len(),
                    inputs.len()
                )));
            }
            if let Some(v) = vectors.iter().find(|v| v.len() != vectors[0].len()) {
                return Err(malformed(format!(
                    "mixes vector sizes ({} and {})",
                    vectors[0].len(),
                    v.len()
                )));
            }
            if vectors.first().is_some_and(Vec::is_empty) {
                return Err(malformed("has empty vectors".into()));
            }
            let tokens = v
                .pointer("/usage/prompt_tokens")
                .and_then(Value::as_u64)
                .map(|t| t as u32)
                .unwrap_or_else(|| {
                    super::estimate_tokens_from_chars(
                        inputs.iter().map(|t| t.chars().count()).sum(),
                    )
                });
            Ok((vectors, tokens, limits))
        };
        tokio::time::timeout(self.inner.timeout, fut)
            .await
            .unwrap_or_else(|_| {
                Err(LlmError::new(
                    FailReason::Timeout,
                    format!("{url} did not answer in time"),
                ))
            })
    }
}

/// Read a body up to `cap` bytes; `false` when there was more (the rest
/// is not read: the connection is dropped, not drained).
/// Most bytes of a `/models` reply read.
const MODELS_CAP: usize = 4 << 20;

impl LlmClient {
    /// A whole reply body as text, failing as [`FailReason::TooLarge`]
    /// past `cap` bytes instead of reading without end.
    pub(crate) async fn read_text(
        &self,
        resp: reqwest::Response,
        cap: usize,
        what: &str,
    ) -> Result<String, LlmError> {
        let (bytes, whole) = read_capped(resp, cap)
            .await
            .map_err(|e| self.body_error(&e))?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if !whole {
            return Err(LlmError::new(
                FailReason::TooLarge,
                format!(
                    "the {what} reply exceeded {} KiB; reading stopped (is base_url an \
                     OpenAI-compatible server?)",
                    cap >> 10
                ),
            )
            .with_raw(text));
        }
        Ok(text)
    }
}

async fn read_capped(
    resp: reqwest::Response,
    cap: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut out = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if out.len() + chunk.len() > cap {
            let room = cap - out.len();
            out.extend_from_slice(&chunk[..room]);
            return Ok((out, false));
        }
        out.extend_from_slice(&chunk);
    }
    Ok((out, true))
}

/// The error for a reply past `cap` bytes; keeps (at most 4 KiB of) its start.
fn too_large(cap: usize, start: &str) -> LlmError {
    LlmError::new(
        FailReason::TooLarge,
        format!(
            "the reply exceeded {} KiB, far more than max_tokens allows; reading stopped \
             (is base_url an OpenAI-compatible server, and does it honour max_tokens?)",
            cap >> 10
        ),
    )
    .with_raw(start)
}

/// Prompt tokens estimated from the `messages` of a body.
fn estimate_body_prompt(body: &Map<String, Value>) -> u32 {
    let chars: usize = body
        .get("messages")
        .and_then(Value::as_array)
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    m.get("content")
                        .and_then(Value::as_str)
                        .map_or(0, |c| c.chars().count())
                        + 4
                })
                .sum()
        })
        .unwrap_or(0);
    super::estimate_tokens_from_chars(chars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_goes_out_borrowed_with_the_streaming_fields_after_it() {
        let mut body = Map::new();
        body.insert("model".into(), json!("m"));
        body.insert(
            "messages".into(),
            json!([{"role": "user", "content": "hi"}]),
        );
        let out = Outgoing {
            body: Cow::Borrowed(&body),
            stream: true,
            stream_usage: true,
        };
        let sent: Value = serde_json::from_slice(&serde_json::to_vec(&out).unwrap()).unwrap();
        assert_eq!(
            sent,
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                   "stream": true, "stream_options": {"include_usage": true}})
        );
        let plain = Outgoing {
            body: Cow::Borrowed(&body),
            stream: false,
            stream_usage: false,
        };
        let sent: Value = serde_json::from_slice(&serde_json::to_vec(&plain).unwrap()).unwrap();
        assert_eq!(sent, Value::Object(body.clone()));
    }

    #[test]
    fn reset_durations_parse() {
        assert_eq!(parse_reset("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_reset("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(parse_reset("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(
            parse_reset("1h2m3.5s"),
            Some(Duration::from_secs_f64(3723.5))
        );
        assert_eq!(parse_reset("2.5"), Some(Duration::from_secs_f64(2.5)));
        assert_eq!(parse_reset("soon"), None);
    }

    #[test]
    fn retry_after_seconds_and_date() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        let at = SystemTime::now() + Duration::from_secs(30);
        let d = parse_retry_after(&httpdate::fmt_http_date(at)).unwrap();
        assert!(
            d > Duration::from_secs(28) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&past), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("later"), None);
    }

    #[test]
    fn hold_prefers_retry_after_then_exhausted_budgets() {
        let mut i = RateLimitInfo {
            remaining_requests: Some(0),
            reset_requests: Some(Duration::from_secs(2)),
            remaining_tokens: Some(10),
            reset_tokens: Some(Duration::from_secs(9)),
            retry_after: None,
        };
        assert_eq!(i.hold(), Some(Duration::from_secs(2)));
        i.remaining_requests = Some(5);
        assert_eq!(i.hold(), None);
        i.retry_after = Some(Duration::from_millis(5));
        assert_eq!(i.hold(), Some(Duration::from_millis(5)));
    }

    #[test]
    fn body_merges_extra_and_skips_unset_fields() {
        let mut backend = BackendConfig {
            model: "m1".into(),
            ..BackendConfig::default()
        };
        backend.extra_body.insert("seed".into(), json!(7));
        backend.extra_body.insert("top_p".into(), json!(0.5));
        let client = LlmClient::new(&backend).unwrap();
        let mut req = ChatRequest::new(vec![super::super::Message::user("hi")]);
        req.top_p = Some(0.9);
        req.extra.insert("seed".into(), json!(8));
        let b = client.body(&req);
        assert_eq!(b["model"], json!("m1"));
        assert_eq!(b["top_p"], json!(0.9));
        assert_eq!(b["seed"], json!(8));
        assert!(!b.contains_key("temperature"));
        assert!(!b.contains_key("stream"));
    }
}
