//! OpenAI-compatible chat-completions client.
//!
//! * [`LlmClient`] talks to `/v1/chat/completions` (streaming SSE or a single
//!   JSON reply) and `/v1/models`. One client is shared by all requests of a
//!   run; it remembers per server which optional capabilities (logprobs,
//!   JSON-schema output, `stream_options.include_usage`) the server refused
//!   and stops sending them ([`Capabilities`]). JSON-schema output is asked
//!   for in the OpenAI form; the client finds out per server whether it
//!   takes that or llama.cpp's `json_object`+`schema` form ([`SchemaForm`]).
//! * [`ResponseCache`] stores finished responses on disk, keyed by a hash of
//!   the server host, the model and the request body.
//! * [`LlmError`] carries a [`FailReason`] so callers can decide what to
//!   retry, plus any `Retry-After` the server sent.
//!
//! The API key is read from the environment variable named in
//! `BackendConfig::api_key_env`; it lives only in memory and is never
//! logged, cached or written anywhere.

pub mod batch;
pub mod cache;
mod chunk;
mod client;
mod error;
mod sse;

pub use cache::ResponseCache;
pub use client::{Capabilities, Capability, LlmClient, RateLimitInfo, SchemaForm};
pub use error::{FailReason, LlmError, reply_cap};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn system(content: impl Into<String>) -> Message {
        Message {
            role: "system".into(),
            content: content.into(),
        }
    }
    pub fn user(content: impl Into<String>) -> Message {
        Message {
            role: "user".into(),
            content: content.into(),
        }
    }
    pub fn assistant(content: impl Into<String>) -> Message {
        Message {
            role: "assistant".into(),
            content: content.into(),
        }
    }
}

/// What to ask. The model, streaming, the backend's `extra_body` and
/// headers come from the client's [`BackendConfig`](crate::domain::BackendConfig);
/// `None` fields are left out of the request body (the server's default
/// applies, or the engine's live sampling defaults, see
/// [`crate::engine::Sampling`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u32>,
    /// Number of choices. Servers that ignore it return one.
    pub n: Option<u32>,
    pub seed: Option<u64>,
    /// Ask for token logprobs (an optional capability: dropped, and
    /// remembered as refused, when the server rejects it).
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<u32>,
    /// E.g. `{"type":"json_schema","json_schema":{…}}` (optional capability,
    /// degraded like `logprobs`). A JSON schema (set it with
    /// [`set_json_schema`](Self::set_json_schema)) is sent in the form the
    /// server takes, see [`SchemaForm`].
    pub response_format: Option<Value>,
    /// Any other body fields; they override the backend's `extra_body`.
    pub extra: Map<String, Value>,
}

impl ChatRequest {
    /// A request with these messages and nothing else set.
    pub fn new(messages: Vec<Message>) -> ChatRequest {
        ChatRequest {
            messages,
            ..ChatRequest::default()
        }
    }
    /// Ask for JSON matching `schema` (an optional capability). Written in
    /// the OpenAI form, which is also what the response cache keys on; the
    /// client sends whichever [`SchemaForm`] the server takes, or nothing
    /// when it takes neither (the answer is then free text).
    pub fn set_json_schema(&mut self, name: &str, schema: Value) {
        self.response_format = Some(SchemaForm::JsonSchema.response_format(name, schema));
    }
    /// Rough prompt size in tokens (4 characters a token), used for rate
    /// limiting and as the fallback when a server reports no usage.
    pub fn estimate_prompt_tokens(&self) -> u32 {
        let chars: usize = self
            .messages
            .iter()
            .map(|m| m.content.chars().count() + 4)
            .sum();
        estimate_tokens_from_chars(chars)
    }
}

/// Characters → tokens, 4 characters a token, at least 1 for non-empty text.
pub fn estimate_tokens_from_chars(chars: usize) -> u32 {
    chars.div_ceil(4) as u32
}

/// Token counts of one response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// True when the server sent no usage and the counts are estimates.
    #[serde(default)]
    pub estimated: bool,
}

/// One generated token with its logprob and the most likely alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f64,
    /// `(token, logprob)` of the top alternatives, most likely first.
    #[serde(default)]
    pub top: Vec<(String, f64)>,
}

/// A finished chat completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// Text of the first choice.
    pub text: String,
    /// Text of every choice, in index order (`choices[0] == text`).
    pub choices: Vec<String>,
    /// `finish_reason` of the first choice (`stop`, `length`, …) if sent.
    pub finish_reason: Option<String>,
    pub usage: TokenUsage,
    /// Logprobs of the first choice's tokens, when asked for and sent.
    pub logprobs: Option<Vec<TokenLogprob>>,
    /// Served from the on-disk cache (no HTTP request was made).
    #[serde(default)]
    pub cached: bool,
    pub model: String,
    /// The server's response id (`id` field), if any.
    pub request_id: String,
}
