//! Wire format of chat completions (streamed chunks and whole replies), a
//! server-sent-events parser, and the accumulator that turns either into a
//! [`ChatResponse`].
//!
//! The SSE parser is hand-written rather than `eventsource-stream`: that
//! crate copies the rest of its buffer after every line, which is quadratic
//! in the size of a network read (a burst of 60 tokens arrives in one read
//! from a fast server) and made it the largest client cost in the engine
//! benchmark. This one keeps bytes until a line is complete, so a UTF-8
//! character split across reads is simply joined before decoding.
//!
//! Per streamed chunk nothing is allocated that is not kept: an event's
//! fields are borrowed from the parser's buffers (reused from event to
//! event), and a chunk's strings are borrowed from its JSON unless they
//! hold escapes.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use super::{ChatResponse, FailReason, LlmError, TokenLogprob, TokenUsage};

/// A streamed `chat.completion.chunk` or a whole `chat.completion`: the
/// fields straddle reads, all optional so partial servers still parse.
#[derive(Debug, PartialEq, Deserialize)]
pub(crate) struct WireCompletion<'a> {
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    pub(super) id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    pub(super) model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(super) choices: Vec<WireChoice<'a>>,
    #[serde(default)]
    pub(super) usage: Option<WireUsage>,
    #[serde(default)]
    pub(crate) error: Option<Value>,
}

#[derive(Debug, PartialEq, Deserialize)]
pub(super) struct WireChoice<'a> {
    #[serde(default)]
    pub(super) index: usize,
    /// Streaming.
    #[serde(default, borrow)]
    pub(super) delta: Option<WireMessage<'a>>,
    /// Non-streaming.
    #[serde(default, borrow)]
    pub(super) message: Option<WireMessage<'a>>,
    /// Legacy completions-style servers.
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    pub(super) text: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    pub(super) finish_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(super) logprobs: Option<WireLogprobs>,
}

#[derive(Debug, PartialEq, Deserialize)]
pub(super) struct WireMessage<'a> {
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    pub(super) content: Option<Cow<'a, str>>,
}

/// An optional string borrowed from the JSON unless it holds escapes.
/// (serde borrows a bare `Cow<str>` field, but an `Option<Cow<str>>`
/// would always be copied into a new `String`.)
fn opt_cow<'de: 'a, 'a, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Borrowed<'a>>::deserialize(d)?.map(|b| b.0))
}

#[derive(Debug, PartialEq, Deserialize)]
pub(super) struct WireLogprobs {
    #[serde(default)]
    content: Option<Vec<WireTokenLogprob>>,
}

#[derive(Debug, PartialEq, Deserialize)]
struct WireTokenLogprob {
    token: String,
    logprob: f64,
    #[serde(default)]
    top_logprobs: Vec<WireTop>,
}

#[derive(Debug, PartialEq, Deserialize)]
struct WireTop {
    token: String,
    logprob: f64,
}

#[derive(Debug, PartialEq, Deserialize)]
pub(super) struct WireUsage {
    #[serde(default)]
    pub(super) prompt_tokens: u32,
    #[serde(default)]
    pub(super) completion_tokens: u32,
}

/// One dispatched server-sent event, borrowed from the parser until the
/// next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SseEvent<'a> {
    /// The `event:` field, empty for the default `message`.
    pub(crate) event: &'a str,
    /// The `data:` lines joined by `\n`.
    pub(crate) data: &'a str,
}

/// Incremental SSE parser (WHATWG rules: LF, CRLF or CR line ends; `:`
/// comments; `data` lines joined; an event is dispatched at a blank line).
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    /// Bytes copied together: what was left of one read and the next.
    buf: Vec<u8>,
    /// A read kept as it came (instead of `buf`) when nothing was left
    /// of the one before: the usual read holds whole events, and
    /// copying it was the engine's largest own copy.
    read: Option<bytes::Bytes>,
    /// Start of the unparsed bytes in `read` or `buf`.
    pos: usize,
    pending: PendingEvent,
}

/// The bytes a parser is reading (split borrow of its fields).
fn unread<'a>(read: &'a Option<bytes::Bytes>, buf: &'a [u8], pos: usize) -> &'a [u8] {
    match read {
        Some(b) => &b[pos..],
        None => &buf[pos..],
    }
}

/// The fields of the event being read (the buffers are kept from event
/// to event).
#[derive(Debug, Default)]
struct PendingEvent {
    event: String,
    data: String,
    has_data: bool,
    /// The last call handed out this event: start afresh.
    dispatched: bool,
}

impl SseParser {
    /// Append a read from the network, without copying it when the
    /// bytes before it are all parsed.
    pub(crate) fn push_read(&mut self, read: bytes::Bytes) {
        if unread(&self.read, &self.buf, self.pos).is_empty() {
            self.buf.clear();
            self.read = Some(read);
            self.pos = 0;
        } else {
            self.push(&read);
        }
    }

    /// Append bytes read from the network.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if let Some(read) = self.read.take() {
            self.buf.clear();
            self.buf.extend_from_slice(&read[self.pos..]);
            self.pos = 0;
        }
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The unread bytes when no event is half read, for a caller that
    /// recognises a whole event itself (then [`consume`](Self::consume)s it).
    pub(crate) fn between_events(&mut self) -> Option<&[u8]> {
        if std::mem::take(&mut self.pending.dispatched) {
            self.pending.event.clear();
            self.pending.data.clear();
        }
        (self.pending.event.is_empty() && !self.pending.has_data)
            .then(|| unread(&self.read, &self.buf, self.pos))
    }

    /// Skip `n` bytes of [`between_events`](Self::between_events).
    pub(crate) fn consume(&mut self, n: usize) {
        self.pos += n;
    }

    /// The next complete event, if the buffer holds one.
    pub(crate) fn next_event(&mut self) -> Result<Option<SseEvent<'_>>, std::str::Utf8Error> {
        if std::mem::take(&mut self.pending.dispatched) {
            self.pending.event.clear();
            self.pending.data.clear();
        }
        loop {
            let rest = unread(&self.read, &self.buf, self.pos);
            let Some(end) = memchr::memchr2(b'\n', b'\r', rest) else {
                return Ok(None);
            };
            let skip = match (rest[end], rest.get(end + 1)) {
                (b'\r', Some(b'\n')) => 2,
                // A CR at the end of the buffer may be half of a CRLF.
                (b'\r', None) => return Ok(None),
                _ => 1,
            };
            let line = std::str::from_utf8(&rest[..end])?;
            let dispatched = self.pending.field(line);
            self.pos += end + skip;
            if dispatched {
                let p = &self.pending;
                return Ok(Some(SseEvent {
                    event: &p.event,
                    // Without the last '\n'.
                    data: &p.data[..p.data.len() - 1],
                }));
            }
        }
    }
}

impl PendingEvent {
    /// Apply one line; a blank line dispatches the event gathered so far
    /// (returns true; the fields stay until the next call).
    fn field(&mut self, line: &str) -> bool {
        if line.is_empty() {
            if !std::mem::take(&mut self.has_data) {
                self.event.clear();
                return false;
            }
            self.dispatched = true;
            return true;
        }
        if line.starts_with(':') {
            return false;
        }
        let (name, value) = match line.split_once(':') {
            Some((n, v)) => (n, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match name {
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "event" => {
                self.event.clear();
                self.event.push_str(value);
            }
            _ => {}
        }
        false
    }
}

/// The human message inside an OpenAI-style `error` value.
pub(crate) fn error_message(err: &Value) -> String {
    match err {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| err.to_string()),
        other => other.to_string(),
    }
}

/// Choice indexes from 0 to below this are read (`n` is capped at 128,
/// see [`reply_cap`](super::reply_cap)).
const MAX_CHOICES: usize = 128;

/// Builds a response from one whole reply or a sequence of chunks.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Accumulator {
    id: Option<String>,
    model: Option<String>,
    choices: Vec<String>,
    finish: Vec<Option<String>>,
    logprobs: Option<Vec<TokenLogprob>>,
    usage: Option<TokenUsage>,
    /// Content-bearing deltas of choice 0: the fallback completion count.
    deltas0: u32,
    /// The last chunk that only added text, to read the next ones by.
    template: Option<super::chunk::Template>,
}

impl Accumulator {
    /// Parse one JSON payload (an SSE `data:` or a whole body) and fold it
    /// in. Returns whether the text of choice 0 grew.
    pub(crate) fn push_json(&mut self, data: &str) -> Result<bool, LlmError> {
        // The usual chunk: the last one with another text; else read
        // without serde; else (anything unusual, or wrong) by serde.
        if let Some(t) = &self.template
            && let Some(content) = t.content(data)
        {
            let i = t.index;
            return Ok(self.push_content(i, &content));
        }
        if let Some((chunk, template)) = super::chunk::parse_with_template(data) {
            let grew = self.push(chunk, data)?;
            self.template = template;
            return Ok(grew);
        }
        self.push_serde(data)
    }

    /// [`push_json`](Self::push_json) through serde alone.
    pub(crate) fn push_serde(&mut self, data: &str) -> Result<bool, LlmError> {
        let chunk: WireCompletion<'_> = serde_json::from_str(data).map_err(|e| {
            LlmError::new(
                FailReason::Malformed,
                format!("reply is not a chat completion: {e}"),
            )
            .with_raw(data)
        })?;
        if let Some(err) = &chunk.error {
            return Err(LlmError::new(
                FailReason::StreamError,
                format!("server error: {}", error_message(err)),
            )
            .with_raw(data));
        }
        self.push(chunk, data)
    }

    fn push(&mut self, chunk: WireCompletion<'_>, data: &str) -> Result<bool, LlmError> {
        // Choices are kept by index: a wild one would take all memory.
        if let Some(c) = chunk.choices.iter().find(|c| c.index >= MAX_CHOICES) {
            return Err(LlmError::new(
                FailReason::Malformed,
                format!(
                    "reply has a choice with index {} (at most {MAX_CHOICES} are asked for)",
                    c.index
                ),
            )
            .with_raw(data));
        }
        if self.id.is_none() {
            self.id = chunk.id.map(Cow::into_owned);
        }
        if self.model.is_none() {
            self.model = chunk.model.map(Cow::into_owned);
        }
        if let Some(u) = chunk.usage {
            self.usage = Some(TokenUsage {
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
                estimated: false,
            });
        }
        let mut grew = false;
        for c in chunk.choices {
            let i = c.index;
            if self.choices.len() <= i {
                self.choices.resize(i + 1, String::new());
                self.finish.resize(i + 1, None);
            }
            let content = c
                .delta
                .and_then(|d| d.content)
                .or_else(|| c.message.and_then(|m| m.content))
                .or(c.text);
            if let Some(content) = content
                && !content.is_empty()
            {
                self.choices[i].push_str(&content);
                if i == 0 {
                    grew = true;
                    self.deltas0 += 1;
                }
            }
            if let Some(f) = c.finish_reason {
                self.finish[i] = Some(f.into_owned());
            }
            if i == 0
                && let Some(lp) = c.logprobs.and_then(|l| l.content)
            {
                let dst = self.logprobs.get_or_insert_with(Vec::new);
                dst.extend(lp.into_iter().map(|t| {
                    TokenLogprob {
                        token: t.token,
                        logprob: t.logprob,
                        top: t
                            .top_logprobs
                            .into_iter()
                            .map(|t| (t.token, t.logprob))
                            .collect(),
                    }
                }));
            }
        }
        Ok(grew)
    }

    /// Fold in every complete event `parser` holds; returns whether the
    /// text of choice 0 grew and whether the stream said `[DONE]` (then
    /// the events after it are left unread).
    pub(crate) fn read_events(&mut self, parser: &mut SseParser) -> Result<(bool, bool), LlmError> {
        let mut grew = false;
        loop {
            // The usual event: one data line holding the last chunk with
            // another text, read by comparison.
            if let Some(t) = &self.template
                && let Some(bytes) = parser.between_events()
                && let Some((n, content)) = t.event(bytes)
            {
                let i = t.index;
                grew |= self.push_content(i, content);
                parser.consume(n);
                continue;
            }
            let Some(ev) = parser.next_event().map_err(|e| {
                LlmError::new(FailReason::Malformed, format!("stream is not UTF-8: {e}"))
            })?
            else {
                return Ok((grew, false));
            };
            let data = ev.data.trim();
            if data == "[DONE]" {
                return Ok((grew, true));
            }
            if data.is_empty() {
                continue;
            }
            if ev.event == "error" {
                let msg = serde_json::from_str::<Value>(data)
                    .map(|v| error_message(v.get("error").unwrap_or(&v)))
                    .unwrap_or_else(|_| data.to_owned());
                return Err(
                    LlmError::new(FailReason::StreamError, format!("server error: {msg}"))
                        .with_raw(data),
                );
            }
            grew |= self.push_json(data)?;
        }
    }

    /// A chunk that only adds `content` to choice `i` (which a chunk
    /// before it made): what [`push`](Self::push) would do with it.
    fn push_content(&mut self, i: usize, content: &str) -> bool {
        if content.is_empty() {
            return false;
        }
        let Some(text) = self.choices.get_mut(i) else {
            return false;
        };
        text.push_str(content);
        if i == 0 {
            self.deltas0 += 1;
        }
        i == 0
    }

    /// The state without the template (which only the fast path keeps).
    #[cfg(test)]
    pub(crate) fn without_template(mut self) -> Accumulator {
        self.template = None;
        self
    }

    /// Text of choice 0 so far.
    pub(crate) fn text0(&self) -> &str {
        self.choices.first().map(String::as_str).unwrap_or("")
    }

    /// Whether choice 0 has a `finish_reason`.
    pub(crate) fn has_finish(&self) -> bool {
        self.finish.first().is_some_and(Option::is_some)
    }

    /// The response; `prompt_estimate` fills in when the server sent no usage.
    pub(crate) fn finish(self, prompt_estimate: u32, fallback_model: &str) -> ChatResponse {
        let usage = self.usage.unwrap_or_else(|| {
            let completion: u32 = self
                .choices
                .iter()
                .map(|c| super::estimate_tokens_from_chars(c.chars().count()))
                .sum();
            TokenUsage {
                prompt_tokens: prompt_estimate,
                completion_tokens: completion.max(self.deltas0),
                estimated: true,
            }
        });
        let mut choices = self.choices;
        if choices.is_empty() {
            choices.push(String::new());
        }
        ChatResponse {
            text: choices[0].clone(),
            choices,
            finish_reason: self.finish.into_iter().next().flatten(),
            usage,
            logprobs: self.logprobs,
            cached: false,
            model: self.model.unwrap_or_else(|| fallback_model.to_owned()),
            request_id: self.id.unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (event, data) of every event.
    fn parse_all(pieces: &[&[u8]]) -> Vec<(String, String)> {
        let mut p = SseParser::default();
        let mut out = vec![];
        for piece in pieces {
            p.push(piece);
            while let Some(ev) = p.next_event().unwrap() {
                out.push((ev.event.to_owned(), ev.data.to_owned()));
            }
        }
        out
    }

    #[test]
    fn sse_events_survive_any_split() {
        let stream = ": keep-alive\r\n\r\nevent: error\ndata: {\"a\":\r\ndata:1}\n\ndata:héllo 👍\r\rdata\n\ndata: [DONE]\n\n";
        let want: Vec<(String, String)> = [
            ("error", "{\"a\":\n1}"),
            ("", "héllo 👍"),
            ("", ""),
            ("", "[DONE]"),
        ]
        .iter()
        .map(|(e, d)| (e.to_string(), d.to_string()))
        .collect();
        assert_eq!(parse_all(&[stream.as_bytes()]), want);
        let bytes = stream.as_bytes();
        for size in 1..8 {
            let pieces: Vec<&[u8]> = bytes.chunks(size).collect();
            assert_eq!(parse_all(&pieces), want, "pieces of {size}");
        }
    }

    #[test]
    fn reads_kept_or_copied_parse_alike() {
        let stream = b": ok\n\ndata: a\r\n\r\ndata: b\ndata: c\n\ndata: [DONE]\n\n";
        let want = parse_all(&[stream]);
        for size in 1..9 {
            let mut p = SseParser::default();
            let mut got = vec![];
            for (i, piece) in stream.chunks(size).enumerate() {
                // Alternate the two ways in.
                if i % 2 == 0 {
                    p.push_read(bytes::Bytes::copy_from_slice(piece));
                } else {
                    p.push(piece);
                }
                while let Some(ev) = p.next_event().unwrap() {
                    got.push((ev.event.to_owned(), ev.data.to_owned()));
                }
            }
            assert_eq!(got, want, "pieces of {size}");
        }
    }

    #[test]
    fn sse_rejects_invalid_utf8_and_drops_an_unfinished_event() {
        let mut p = SseParser::default();
        p.push(b"data: \xff\xfe\n\n");
        assert!(p.next_event().is_err());
        assert_eq!(parse_all(&[b"data: half"]), vec![]);
    }

    #[test]
    fn chunks_accumulate_with_usage_and_logprobs() {
        let mut a = Accumulator::default();
        assert!(a.push_json(r#"{"id":"x","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hé"},"logprobs":{"content":[{"token":"Hé","logprob":-0.5,"top_logprobs":[{"token":"Hé","logprob":-0.5},{"token":"Ho","logprob":-1.5}]}]}}]}"#).unwrap());
        assert!(
            a.push_json(
                r#"{"choices":[{"index":0,"delta":{"content":"llo"},"finish_reason":"stop"}]}"#
            )
            .unwrap()
        );
        assert!(!a.push_json(r#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}"#).unwrap());
        assert!(a.has_finish());
        let r = a.finish(99, "fallback");
        assert_eq!(r.text, "Héllo");
        assert_eq!(r.model, "m");
        assert_eq!(r.request_id, "x");
        assert_eq!(r.finish_reason.as_deref(), Some("stop"));
        assert_eq!(
            r.usage,
            TokenUsage {
                prompt_tokens: 7,
                completion_tokens: 2,
                estimated: false
            }
        );
        let lp = r.logprobs.unwrap();
        assert_eq!(lp[0].top[1], ("Ho".to_string(), -1.5));
    }

    #[test]
    fn chunk_strings_are_borrowed_unless_escaped() {
        let plain = r#"{"id":"x","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}"#;
        let c: WireCompletion<'_> = serde_json::from_str(plain).unwrap();
        assert!(matches!(c.id, Some(Cow::Borrowed("x"))));
        let content = c.choices[0]
            .delta
            .as_ref()
            .unwrap()
            .content
            .as_ref()
            .unwrap();
        assert!(matches!(content, Cow::Borrowed("Hello")));
        let escaped = r#"{"choices":[{"index":0,"delta":{"content":"a\nb"}}]}"#;
        let c: WireCompletion<'_> = serde_json::from_str(escaped).unwrap();
        let content = c.choices[0]
            .delta
            .as_ref()
            .unwrap()
            .content
            .as_ref()
            .unwrap();
        assert_eq!(content, "a\nb");
        assert!(c.id.is_none() && c.choices[0].finish_reason.is_none());
    }

    #[test]
    fn missing_usage_is_estimated() {
        let mut a = Accumulator::default();
        a.push_json(r#"{"choices":[{"index":0,"message":{"content":"abcdefgh"},"finish_reason":"stop"},{"index":1,"message":{"content":"abcd"}}]}"#).unwrap();
        let r = a.finish(12, "m");
        assert_eq!(r.choices, vec!["abcdefgh", "abcd"]);
        assert_eq!(r.model, "m");
        assert!(r.usage.estimated);
        assert_eq!(r.usage.prompt_tokens, 12);
        assert_eq!(r.usage.completion_tokens, 3);
    }

    #[test]
    fn error_object_and_garbage_are_classified() {
        let mut a = Accumulator::default();
        let e = a
            .push_json(r#"{"error":{"message":"overloaded","type":"server_error"}}"#)
            .unwrap_err();
        assert_eq!(e.reason, FailReason::StreamError);
        assert!(e.message.contains("overloaded"));
        let e = a.push_json("{not json").unwrap_err();
        assert_eq!(e.reason, FailReason::Malformed);
        assert_eq!(e.raw.as_deref(), Some("{not json"));
    }
}
