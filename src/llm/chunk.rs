//! A fast path for the usual streamed chunk.
//!
//! A fast server streams a reply as one small JSON object per token, e.g.
//! `{"id":"…","object":"chat.completion.chunk","created":0,"model":"…",
//! "choices":[{"index":0,"delta":{"content":" w1"},"finish_reason":null}]}`,
//! and parsing them through serde's derive machinery was most of the
//! engine's own CPU per request (about 4,000 instructions per 150-byte
//! chunk). [`parse`] reads the fields [`WireCompletion`] keeps straight off
//! the bytes, in one pass and without allocating unless a string holds
//! escapes, and skips (while still checking) every other value.
//!
//! It is only a fast path: on anything it does not expect — a value of an
//! unexpected type, `logprobs`, an `error` object, a duplicate field, an
//! escaped key, a lone surrogate, deep nesting, anything serde would
//! reject — it answers `None` and the caller parses with serde, so what is
//! accepted, what is rejected and with which message stay serde's. The
//! tests check that whatever it accepts, serde accepts with the same value.

use std::borrow::Cow;

use super::sse::{WireChoice, WireCompletion, WireMessage, WireUsage};

/// Nesting deeper than this in skipped values goes to serde.
const MAX_DEPTH: u32 = 32;

/// `data` as a chunk, or `None` when serde has to decide.
#[cfg(test)]
pub(crate) fn parse(data: &str) -> Option<WireCompletion<'_>> {
    parse_with_template(data).map(|(chunk, _)| chunk)
}

/// [`parse`], plus a [`Template`] when `data` can be one.
pub(crate) fn parse_with_template(data: &str) -> Option<(WireCompletion<'_>, Option<Template>)> {
    let mut p = Parser::new(data, 0);
    let chunk = p.completion()?;
    p.ws();
    if p.i != p.b.len() {
        return None;
    }
    let template = match (&chunk.choices[..], p.delta_span) {
        ([c], Some((open, close)))
            if chunk.usage.is_none() && c.finish_reason.is_none() && c.logprobs.is_none() =>
        {
            Some(Template {
                text: data.to_owned(),
                open,
                close,
                index: c.index,
                one_line: memchr::memchr2(b'\n', b'\r', data.as_bytes()).is_none(),
            })
        }
        _ => None,
    };
    Some((chunk, template))
}

/// A chunk whose only effect on the reply is its `delta.content` (one
/// choice, no `finish_reason`, no usage), kept to read the next chunks
/// of the stream by comparison: a server writes every token's chunk the
/// same way but for the text, so a chunk that is byte for byte this one
/// outside its content string is this one with another text — valid JSON
/// of the same shape, whose content string alone needs reading. Folding
/// it in is appending that text (every other field would only set again
/// what this one set).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Template {
    text: String,
    /// Just past the opening quote of `delta.content`.
    open: usize,
    /// Its closing quote.
    close: usize,
    /// The choice's index.
    pub(crate) index: usize,
    /// No line breaks: it can be an SSE data line as it is.
    one_line: bool,
}

impl Template {
    /// The content of `data` if it is this chunk with another text.
    pub(crate) fn content<'a>(&self, data: &'a str) -> Option<Cow<'a, str>> {
        let (head, tail) = (&self.text[..self.open], &self.text[self.close..]);
        if data.len() < head.len() + tail.len()
            || !data.as_bytes().starts_with(head.as_bytes())
            || !data.as_bytes().ends_with(tail.as_bytes())
        {
            return None;
        }
        let mut p = Parser::new(data, self.open);
        let content = p.string()?;
        // The string ends where the tail (from its closing quote) starts.
        (p.i - 1 == data.len() - tail.len()).then_some(content)
    }

    /// A whole server-sent event at the start of `bytes` (not yet checked
    /// as UTF-8) whose only field is one data line holding this chunk
    /// with another text: `data: `, the chunk, a blank line. Its length
    /// and the text, when that text has no escapes (else the event is
    /// left to the SSE parser and [`content`](Self::content)).
    pub(crate) fn event<'a>(&self, bytes: &'a [u8]) -> Option<(usize, &'a str)> {
        if !self.one_line {
            return None;
        }
        let (head, tail) = (
            &self.text.as_bytes()[..self.open],
            &self.text.as_bytes()[self.close..],
        );
        let line = bytes.strip_prefix(b"data:")?;
        let line = line.strip_prefix(b" ").unwrap_or(line);
        if !line.starts_with(head) {
            return None;
        }
        let end = first_special(line, head.len())?;
        if line[end] != b'"' || line.get(end..end + tail.len())? != tail {
            return None;
        }
        // The head and tail are text already; the bytes between them
        // must be too.
        let raw = &line[head.len()..end];
        let content = if raw.is_ascii() {
            // SAFETY: ASCII is UTF-8 (and a token is mostly a few ASCII
            // bytes, for which `from_utf8` costs more than the rest).
            unsafe { std::str::from_utf8_unchecked(raw) }
        } else {
            std::str::from_utf8(raw).ok()?
        };
        let after = end + tail.len();
        let blank = match line.get(after..after + 2)? {
            b"\n\n" => 2,
            b"\r\n" if line.get(after + 2..after + 4)? == b"\r\n" => 4,
            _ => return None,
        };
        Some((bytes.len() - line.len() + after + blank, content))
    }
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    /// Where the last `delta.content` string read lies: from just past
    /// its opening quote to its closing quote.
    delta_span: Option<(usize, usize)>,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit set in each byte of `x` (little-endian) that is `"`, `\\`
/// or below 0x20 — exactly for the lowest such byte; bytes above it may
/// be flagged falsely (a borrow), which [`Parser::str_end`] never reads.
fn specials(x: u64) -> u64 {
    let quote = x ^ (ONES * u64::from(b'"'));
    let backslash = x ^ (ONES * u64::from(b'\\'));
    let zero = |v: u64| v.wrapping_sub(ONES) & !v;
    (zero(quote) | zero(backslash) | (x.wrapping_sub(ONES * 0x20) & !x)) & HIGH
}

/// Index of the first `"`, `\\` or control character in `b` from `i` on.
fn first_special(b: &[u8], mut i: usize) -> Option<usize> {
    // Eight bytes at a time: a byte at a time was most of this parser's
    // cost.
    while let Some(word) = b.get(i..i + 8) {
        let m = specials(u64::from_le_bytes(word.try_into().ok()?));
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    let n = b[i..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
    Some(i + n)
}

/// Fields already seen in an object (serde rejects a repeated field).
#[derive(Default)]
struct Seen(u32);

impl Seen {
    fn first(&mut self, bit: u32) -> Option<()> {
        let m = 1 << bit;
        if self.0 & m != 0 {
            return None;
        }
        self.0 |= m;
        Some(())
    }
}

impl<'a> Parser<'a> {
    fn new(s: &'a str, i: usize) -> Parser<'a> {
        Parser {
            s,
            b: s.as_bytes(),
            i,
            delta_span: None,
        }
    }

    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                break;
            }
            self.i += 1;
        }
    }

    /// The next non-blank byte, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        if self.peek()? != c {
            return None;
        }
        self.i += 1;
        Some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if !self.b[self.i..].starts_with(word) {
            return None;
        }
        self.i += word.len();
        Some(())
    }

    /// `null` (consumed) or something else (left for the caller).
    fn null(&mut self) -> Option<bool> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Some(true);
        }
        Some(false)
    }

    /// Walk an object's members: `member` reads each value after its key.
    /// Keys holding escapes go to serde.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.eat(b'"')?;
            let key = self.plain_str()?;
            self.eat(b':')?;
            member(self, key)?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn completion(&mut self) -> Option<WireCompletion<'a>> {
        let mut c = WireCompletion {
            id: None,
            model: None,
            choices: Vec::new(),
            usage: None,
            error: None,
        };
        let mut seen = Seen::default();
        self.object(|p, key| match key {
            "id" => {
                seen.first(0)?;
                c.id = p.opt_str()?;
                Some(())
            }
            "model" => {
                seen.first(1)?;
                c.model = p.opt_str()?;
                Some(())
            }
            "choices" => {
                seen.first(2)?;
                p.eat(b'[')?;
                if p.peek()? == b']' {
                    p.i += 1;
                    return Some(());
                }
                loop {
                    c.choices.push(p.choice()?);
                    match p.peek()? {
                        b',' => p.i += 1,
                        b']' => {
                            p.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            "usage" => {
                seen.first(3)?;
                if !p.null()? {
                    c.usage = Some(p.usage()?);
                }
                Some(())
            }
            // Not null: an error object, which serde reads and reports.
            "error" => {
                seen.first(4)?;
                p.null()?.then_some(())
            }
            _ => p.skip(0),
        })?;
        Some(c)
    }

    fn choice(&mut self) -> Option<WireChoice<'a>> {
        let mut c = WireChoice {
            index: 0,
            delta: None,
            message: None,
            text: None,
            finish_reason: None,
            logprobs: None,
        };
        let mut seen = Seen::default();
        self.object(|p, key| match key {
            "index" => {
                seen.first(0)?;
                c.index = usize::try_from(p.uint()?).ok()?;
                Some(())
            }
            "delta" => {
                seen.first(1)?;
                c.delta = p.opt_message(true)?;
                Some(())
            }
            "message" => {
                seen.first(2)?;
                c.message = p.opt_message(false)?;
                Some(())
            }
            "text" => {
                seen.first(3)?;
                c.text = p.opt_str()?;
                Some(())
            }
            "finish_reason" => {
                seen.first(4)?;
                c.finish_reason = p.opt_str()?;
                Some(())
            }
            // Logprobs are serde's.
            "logprobs" => {
                seen.first(5)?;
                p.null()?.then_some(())
            }
            _ => p.skip(0),
        })?;
        Some(c)
    }

    /// A message or `null`; `delta` notes where its content string lies.
    fn opt_message(&mut self, delta: bool) -> Option<Option<WireMessage<'a>>> {
        if self.null()? {
            return Some(None);
        }
        let mut m = WireMessage { content: None };
        let mut seen = Seen::default();
        self.object(|p, key| match key {
            "content" => {
                seen.first(0)?;
                let open = p.i;
                m.content = p.opt_str()?;
                if delta && m.content.is_some() {
                    // `open` may be before blanks; the string starts
                    // after its quote.
                    let open = open + p.b[open..].iter().position(|&c| c == b'"')? + 1;
                    p.delta_span = Some((open, p.i - 1));
                }
                Some(())
            }
            _ => p.skip(0),
        })?;
        Some(Some(m))
    }

    fn usage(&mut self) -> Option<WireUsage> {
        let mut u = WireUsage {
            prompt_tokens: 0,
            completion_tokens: 0,
        };
        let mut seen = Seen::default();
        self.object(|p, key| match key {
            "prompt_tokens" => {
                seen.first(0)?;
                u.prompt_tokens = u32::try_from(p.uint()?).ok()?;
                Some(())
            }
            "completion_tokens" => {
                seen.first(1)?;
                u.completion_tokens = u32::try_from(p.uint()?).ok()?;
                Some(())
            }
            _ => p.skip(0),
        })?;
        Some(u)
    }

    /// A non-negative integer without fraction or exponent.
    fn uint(&mut self) -> Option<u64> {
        self.ws();
        let start = self.i;
        let mut v: u64 = 0;
        while let Some(&c) = self.b.get(self.i) {
            if !c.is_ascii_digit() {
                break;
            }
            v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            self.i += 1;
        }
        let len = self.i - start;
        // No digits, or a leading zero (which JSON forbids).
        if len == 0 || (len > 1 && self.b[start] == b'0') {
            return None;
        }
        // A fraction or exponent makes it a float: serde's call.
        if matches!(self.b.get(self.i), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        Some(v)
    }

    /// A string or `null`.
    fn opt_str(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.null()? {
            return Some(None);
        }
        self.eat(b'"')?;
        self.string().map(Some)
    }

    /// The rest of a string after its opening quote, only if it has no
    /// escapes (for keys).
    fn plain_str(&mut self) -> Option<&'a str> {
        let start = self.i;
        let end = self.str_end()?;
        if self.b[end] != b'"' {
            return None;
        }
        self.i = end + 1;
        self.s.get(start..end)
    }

    /// Index of the first `"` or `\\` from here on; `None` at a raw
    /// control character (which serde rejects) or the end.
    fn str_end(&self) -> Option<usize> {
        let i = first_special(self.b, self.i)?;
        (self.b[i] >= 0x20).then_some(i)
    }

    /// The rest of a string after its opening quote: borrowed unless it
    /// holds escapes.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        let start = self.i;
        let end = self.str_end()?;
        self.i = end + 1;
        if self.b[end] == b'"' {
            return self.s.get(start..end).map(Cow::Borrowed);
        }
        let mut out = String::with_capacity(end - start + 16);
        out.push_str(self.s.get(start..end)?);
        loop {
            // Just past a backslash.
            let c = *self.b.get(self.i)?;
            self.i += 1;
            match c {
                b'"' => out.push('"'),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'b' => out.push('\u{8}'),
                b'f' => out.push('\u{c}'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => out.push(self.unicode_escape()?),
                _ => return None,
            }
            let start = self.i;
            let end = self.str_end()?;
            out.push_str(self.s.get(start..end)?);
            self.i = end + 1;
            if self.b[end] == b'"' {
                return Some(Cow::Owned(out));
            }
        }
    }

    /// The character of a `\uXXXX` (a surrogate pair as two escapes);
    /// lone surrogates go to serde.
    fn unicode_escape(&mut self) -> Option<char> {
        let hi = self.hex4()?;
        if !(0xD800..0xE000).contains(&hi) {
            return char::from_u32(hi);
        }
        if hi >= 0xDC00 || !self.b[self.i..].starts_with(b"\\u") {
            return None;
        }
        self.i += 2;
        let lo = self.hex4()?;
        if !(0xDC00..0xE000).contains(&lo) {
            return None;
        }
        char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.b.get(self.i..self.i + 4)?;
        let mut v = 0;
        for &d in digits {
            v = v * 16 + char::from(d).to_digit(16)?;
        }
        self.i += 4;
        Some(v)
    }

    /// Step over any JSON value, checking it as strictly as serde would.
    fn skip(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => {
                self.i += 1;
                self.string().map(drop)
            }
            b'{' => self.object(|p, _| p.skip(depth + 1)),
            b'[' => {
                self.i += 1;
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.skip(depth + 1)?;
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Option<()> {
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match self.b.get(self.i)? {
            b'0' => self.i += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if !self.b.get(self.i)?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !self.b.get(self.i)?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        Some(())
    }

    fn digits(&mut self) {
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::sse::{Accumulator, SseParser};
    use proptest::prelude::*;

    fn serde(data: &str) -> Result<WireCompletion<'_>, serde_json::Error> {
        serde_json::from_str(data)
    }

    /// The fast path takes `data` and agrees with serde.
    fn agrees(data: &str) {
        let fast = parse(data).unwrap_or_else(|| panic!("fast path refused {data}"));
        assert_eq!(
            Ok(&fast),
            serde(data).as_ref().map_err(|e| e.to_string()),
            "{data}"
        );
    }

    #[test]
    fn usual_chunks_take_the_fast_path_and_agree_with_serde() {
        for data in [
            // The test server's (and vLLM's) first, middle, usage chunks.
            r#"{"choices":[{"delta":{"content":"","role":"assistant"},"finish_reason":null,"index":0}],"created":0,"id":"chatcmpl-18000","model":"test-model","object":"chat.completion.chunk","usage":null}"#,
            r#"{"id":"chatcmpl-18000","object":"chat.completion.chunk","created":0,"model":"test-model","choices":[{"index":0,"delta":{"content":" w1"},"finish_reason":null}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            r#"{"id":"c","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":61,"total_tokens":68,"prompt_tokens_details":{"cached_tokens":0}}}"#,
            // OpenAI's, with the fields straddle does not read.
            r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1727000000,"model":"gpt-4o-mini","service_tier":"default","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"a9"}"#,
            // llama.cpp's last chunk, with timings.
            r#"{"choices":[{"finish_reason":"stop","index":0,"delta":{}}],"created":1,"id":"x","model":"m","system_fingerprint":"b1","object":"chat.completion.chunk","timings":{"prompt_n":5,"prompt_ms":1.5e1,"predicted_per_second":-0.25,"flags":[true,false,null,[],{}]}}"#,
            // A whole non-streamed reply and a legacy one.
            r#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"a\nb"},"finish_reason":"length"},{"index":1,"message":{"content":null}}]}"#,
            r#"{"choices":[{"index":0,"text":"old style","finish_reason":null}]}"#,
            // Escapes of every kind, whitespace everywhere.
            " { \"choices\" : [ { \"index\" : 0 , \"delta\" : { \"content\" : \"q\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\udc4d\\u0000end\" } } ] , \"id\" : null , \"model\" : \"m\\u00e9\" }\n",
            r#"{"choices":[{"index":0,"delta":{"content":"héllo 👍"}}]}"#,
            "{}",
        ] {
            agrees(data);
        }
    }

    #[test]
    fn a_token_event_is_read_by_the_template() {
        let chunk = |text: &str| {
            format!(
                r#"{{"id":"c","object":"chat.completion.chunk","created":0,"model":"m","choices":[{{"index":0,"delta":{{"content":"{text}"}},"finish_reason":null}}]}}"#
            )
        };
        let (_, t) = parse_with_template(&chunk("w0")).unwrap();
        let t = t.expect("a template");
        assert_eq!(t.content(&chunk(" w1")).as_deref(), Some(" w1"));
        assert_eq!(t.content(&chunk("a\\nb")).as_deref(), Some("a\nb"));
        let event = format!("data: {}\n\ndata: next", chunk(" w1"));
        let (n, text) = t.event(event.as_bytes()).expect("read by the template");
        assert_eq!((&event[n..], text), ("data: next", " w1"));
        let crlf = format!("data:{}\r\n\r\n", chunk("é"));
        assert_eq!(t.event(crlf.as_bytes()), Some((crlf.len(), "é")));
        // Escapes, a half-read event, another shape: the long way.
        for other in [
            format!("data: {}\n\n", chunk("a\\nb")),
            format!("data: {}\n", chunk("w")),
            format!("data: {}\n\n", chunk("w").replace("null", "\"stop\"")),
            format!("event: x\ndata: {}\n\n", chunk("w")),
        ] {
            assert_eq!(t.event(other.as_bytes()), None, "{other}");
        }
    }

    #[test]
    fn unusual_chunks_are_left_to_serde() {
        for data in [
            // Fields the fast path does not read itself.
            r#"{"choices":[{"index":0,"delta":{"content":"a"},"logprobs":{"content":[]}}]}"#,
            r#"{"error":{"message":"overloaded"}}"#,
            // What serde rejects or reads differently.
            r#"{"id":"a","id":"b"}"#,
            r#"{"error":null,"error":null}"#,
            r#"{"choices":[{"logprobs":null,"logprobs":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"a","content":"b"}}]}"#,
            r#"{"\u0069d":"escaped key"}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"\ud83d"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"\udc4d"}}]}"#,
            "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"raw\ttab\"}}]}",
            r#"{"choices":[{"index":1.0}]}"#,
            r#"{"choices":[{"index":-1}]}"#,
            r#"{"choices":[{"index":01}]}"#,
            r#"{"choices":[{"index":18446744073709551616}]}"#,
            r#"{"usage":{"prompt_tokens":4294967296}}"#,
            r#"{"choices":null}"#,
            r#"{"choices":[{"delta":["positional"]}]}"#,
            r#"["positional"]"#,
            r#"{"created":01}"#,
            r#"{"created":1.}"#,
            r#"{"x":[1,]}"#,
            r#"{"x":"\q"}"#,
            r#"{"id":"x"} trailing"#,
            r#"{"id":"x""#,
            "",
        ] {
            assert!(parse(data).is_none(), "fast path took {data}");
        }
    }

    /// The inside of a string: mostly valid JSON, now and then not.
    fn string_body() -> impl Strategy<Value = String> {
        let good = prop::sample::select(vec![
            "w",
            " w1",
            "héllo",
            "👍",
            "\\n",
            "\\\"",
            "\\\\",
            "\\/",
            "\\t",
            "\\u00e9",
            "\\u20AC",
            "\\ud83d\\udc4d",
            "\\u0000",
            "\\b\\f\\r",
            "",
        ]);
        let bad = prop::sample::select(vec![
            "\\ud83d",
            "\\udc4d",
            "\\ud83dx",
            "\\ud83d\\u0041",
            "\\u12",
            "\\x",
            "\t",
            "\u{1}",
        ]);
        let piece = prop_oneof![60 => good, 1 => bad];
        prop::collection::vec(piece, 0..5).prop_map(|v| v.concat())
    }

    fn string() -> impl Strategy<Value = String> {
        string_body().prop_map(|s| format!("\"{s}\""))
    }

    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => (0u64..100_000).prop_map(|n| n.to_string()),
            1 => prop::sample::select(vec![
                "0", "-0", "01", "1.5", "1.", "-2e10", "3E+2", "4e-", "-", "5e", "1e400",
                "4294967296", "18446744073709551616",
            ])
            .prop_map(str::to_owned),
        ]
    }

    /// Any JSON value (mostly), with random blanks around it.
    fn value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            string(),
            number(),
            prop::sample::select(vec!["null", "true", "false"]).prop_map(str::to_owned),
            Just("nul".to_owned()),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec((key(), inner), 0..4).prop_map(|m| object(&m)),
            ]
        })
    }

    fn key() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "id",
            "model",
            "choices",
            "usage",
            "error",
            "index",
            "delta",
            "message",
            "text",
            "content",
            "role",
            "finish_reason",
            "logprobs",
            "prompt_tokens",
            "completion_tokens",
            "object",
            "created",
            "x",
            "y",
            "z",
            "\\u0069d",
        ])
        .prop_map(str::to_owned)
    }

    fn ws() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["", "", "", " ", "\n", " \t\r\n "])
    }

    fn object(members: &[(String, String)]) -> String {
        let body: Vec<String> = members
            .iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect();
        format!("{{{}}}", body.join(","))
    }

    /// A choice in the usual shape, with random extras.
    fn choice() -> impl Strategy<Value = String> {
        choice_of(prop_oneof![string(), Just("null".to_owned())].boxed())
    }

    fn choice_of(content: BoxedStrategy<String>) -> impl Strategy<Value = String> {
        (
            content,
            prop::option::of(number()),
            prop::option::of(prop_oneof![string(), Just("null".to_owned())]),
            prop::option::of((key(), value())),
            prop::sample::select(vec!["delta", "message", "text"]),
        )
            .prop_map(|(content, index, finish, extra, kind)| {
                let mut m = vec![];
                if let Some(i) = index {
                    m.push(("index".to_owned(), i));
                }
                let c = match kind {
                    "text" => content,
                    _ => object(&[("content".into(), content)]),
                };
                m.push((kind.to_owned(), c));
                if let Some(f) = finish {
                    m.push(("finish_reason".to_owned(), f));
                }
                m.extend(extra);
                object(&m)
            })
    }

    /// A chunk in the usual shape, with random extras and members shuffled.
    fn chunk() -> impl Strategy<Value = String> {
        chunk_of(prop::collection::vec(choice(), 0..3).boxed())
    }

    fn chunk_of(choices: BoxedStrategy<Vec<String>>) -> impl Strategy<Value = String> {
        (
            prop::option::of(string()),
            prop::option::of(string()),
            choices,
            prop::option::of(prop_oneof![
                Just("null".to_owned()),
                (number(), number()).prop_map(|(p, c)| format!(
                    "{{\"prompt_tokens\":{p},\"completion_tokens\":{c},\"total_tokens\":9}}"
                )),
            ]),
            prop::collection::vec((key(), value()), 0..3),
        )
            .prop_flat_map(|(id, model, choices, usage, extra)| {
                let mut m = vec![];
                m.extend(id.map(|v| ("id".to_owned(), v)));
                m.extend(model.map(|v| ("model".to_owned(), v)));
                m.push(("choices".to_owned(), format!("[{}]", choices.join(","))));
                m.extend(usage.map(|v| ("usage".to_owned(), v)));
                m.extend(extra);
                Just(m).prop_shuffle()
            })
            .prop_map(|m| object(&m))
    }

    /// Blanks after structural characters.
    fn blanked(chunk: BoxedStrategy<String>) -> impl Strategy<Value = String> {
        (chunk, prop::collection::vec(ws(), 64)).prop_map(|(c, blanks)| {
            let mut out = String::new();
            let mut blanks = blanks.iter().cycle();
            for ch in c.chars() {
                out.push(ch);
                if matches!(ch, '{' | '}' | '[' | ']' | ',' | ':') {
                    out.push_str(blanks.next().unwrap());
                }
            }
            out
        })
    }

    /// A stream: one chunk shape (one choice whose content is `"@@"`)
    /// repeated with other contents — some of them not strings, or
    /// strings running into what follows — among other chunks.
    fn stream() -> impl Strategy<Value = Vec<String>> {
        // Mostly a server's usual chunk, sometimes any chunk.
        let usual = (
            prop::option::of(string()),
            prop::option::of(prop_oneof![Just("0"), Just("1"), Just("2")]),
            prop::option::of(Just("null")),
            prop::option::of(Just("null")),
            prop::collection::vec(
                (
                    prop::sample::select(vec!["object", "created", "x", "role"]),
                    value(),
                ),
                0..3,
            ),
        )
            .prop_flat_map(|(id, index, finish, usage, extra)| {
                let mut choice = vec![];
                choice.extend(index.map(|i| ("index".to_owned(), i.to_owned())));
                choice.push(("delta".to_owned(), "{\"content\":\"@@\"}".to_owned()));
                choice.extend(finish.map(|f| ("finish_reason".to_owned(), f.to_owned())));
                let mut m = vec![("choices".to_owned(), format!("[{}]", object(&choice)))];
                m.extend(id.map(|v| ("id".to_owned(), v)));
                m.extend(usage.map(|u| ("usage".to_owned(), u.to_owned())));
                m.extend(extra.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())));
                Just(m).prop_shuffle()
            })
            .prop_map(|m| object(&m));
        let any = chunk_of(
            prop::collection::vec(choice_of(Just("\"@@\"".to_owned()).boxed()), 1).boxed(),
        );
        let frame = blanked(prop_oneof![3 => usual, 1 => any].boxed());
        let content = prop_oneof![
            16 => "[a-z é👍]{0,6}".prop_map(|t| format!("\"{t}\"")),
            16 => string(),
            1 => Just("null".to_owned()),
            1 => prop::sample::select(vec![
                "\"a\\\"", "\"a\" , \"b\"", "\"x\"}", "\"\\u12\"", "\"", "\"\\\"", "7",
            ]).prop_map(str::to_owned),
        ];
        let item = prop_oneof![
            12 => content.prop_map(Ok),
            1 => mangled().prop_map(Err),
        ];
        (frame, prop::collection::vec(item, 1..16)).prop_map(|(frame, items)| {
            items
                .into_iter()
                .map(|item| match item {
                    Ok(content) => frame.replacen("\"@@\"", &content, 1),
                    Err(other) => other,
                })
                .collect()
        })
    }

    /// Blanks after structural characters, then a few random edits.
    fn mangled() -> impl Strategy<Value = String> {
        let edit = (
            any::<prop::sample::Index>(),
            prop::sample::select(vec![
                "", "{", "}", "[", "]", ",", ":", "\"", "\\", " ", "0", "-", ".", "e", "n", "é",
            ]),
        );
        let edits = prop_oneof![
            prop::collection::vec(edit.clone(), 0..1),
            prop::collection::vec(edit, 1..3)
        ];
        (blanked(chunk().boxed()), edits).prop_map(|(mut out, edits)| {
            for (at, with) in edits {
                let chars: Vec<char> = out.chars().collect();
                let at = at.index(chars.len() + 1);
                let mut s: String = chars[..at].iter().collect();
                s.push_str(with);
                // Replace the character there (or just insert at the end).
                s.extend(chars.iter().skip(at + 1));
                out = s;
            }
            out
        })
    }

    /// The generators above are not vacuous: many of their chunks take
    /// the fast path, and many of the mangled ones do not.
    #[test]
    fn generated_chunks_exercise_both_paths() {
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let (mut fast, mut slow_ok, mut rejected) = (0, 0, 0);
        for _ in 0..1000 {
            let data = mangled().new_tree(&mut runner).unwrap().current();
            match (parse(&data).is_some(), serde(&data).is_ok()) {
                (true, _) => fast += 1,
                (false, true) => slow_ok += 1,
                (false, false) => rejected += 1,
            }
        }
        assert!(
            fast > 150 && slow_ok > 10 && rejected > 150,
            "{fast} {slow_ok} {rejected}"
        );
    }

    /// [`Accumulator::read_events`] as it was: the SSE parser, then serde.
    fn read_events_with_serde(
        acc: &mut Accumulator,
        parser: &mut SseParser,
    ) -> Result<(bool, bool), crate::llm::LlmError> {
        use crate::llm::{FailReason, LlmError};
        let mut grew = false;
        while let Some(ev) = parser.next_event().map_err(|e| {
            LlmError::new(FailReason::Malformed, format!("stream is not UTF-8: {e}"))
        })? {
            let data = ev.data.trim();
            if data == "[DONE]" {
                return Ok((grew, true));
            }
            if data.is_empty() {
                continue;
            }
            if ev.event == "error" {
                let v: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
                let msg = crate::llm::sse::error_message(v.get("error").unwrap_or(&v));
                let msg = if v.is_null() { data.to_owned() } else { msg };
                return Err(LlmError::new(
                    FailReason::StreamError,
                    format!("server error: {msg}"),
                ));
            }
            grew |= acc.push_serde(data)?;
        }
        Ok((grew, false))
    }

    /// The streams generated below mostly read chunks by their template
    /// (and not always).
    #[test]
    fn generated_streams_exercise_the_template() {
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let (mut by_template, mut other) = (0, 0);
        for _ in 0..300 {
            let mut template: Option<Template> = None;
            for c in stream().new_tree(&mut runner).unwrap().current() {
                if template.as_ref().is_some_and(|t| t.content(&c).is_some()) {
                    by_template += 1;
                    continue;
                }
                other += 1;
                if let Some((_, t)) = parse_with_template(&c) {
                    template = t;
                }
            }
        }
        assert!(by_template > 300 && other > 300, "{by_template} {other}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The word-at-a-time search finds what a byte-at-a-time one does.
        #[test]
        fn first_special_is_the_first(
            bytes in prop::collection::vec(prop_oneof![
                4 => 0x20u8..0x7f, 1 => 0u8..0x20, 1 => 0x80u8..=0xff,
                1 => Just(b'"'), 1 => Just(b'\\'),
            ], 0..40),
            from in 0usize..40,
        ) {
            let from = from.min(bytes.len());
            let want = bytes[from..]
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                .map(|n| from + n);
            prop_assert_eq!(first_special(&bytes, from), want);
        }

        /// Whatever the fast path accepts, serde accepts with the same value.
        #[test]
        fn fast_path_agrees_with_serde(data in prop_oneof![chunk(), mangled()]) {
            if let Some(fast) = parse(&data) {
                let slow = serde(&data);
                prop_assert!(slow.is_ok(), "fast path took what serde rejects: {data}: {:?}", slow.err());
                prop_assert_eq!(fast, slow.unwrap(), "{}", data);
            }
        }

        /// A stream folded chunk by chunk through the fast paths gives
        /// what serde alone gives, reply and errors alike.
        #[test]
        fn streams_fold_as_with_serde(chunks in stream()) {
            let mut fast = Accumulator::default();
            let mut slow = Accumulator::default();
            for c in &chunks {
                let (f, s) = (fast.push_json(c), slow.push_serde(c));
                prop_assert_eq!(
                    f.map_err(|e| (e.reason, e.message)),
                    s.map_err(|e| (e.reason, e.message)),
                    "{}", c
                );
            }
            prop_assert_eq!(fast.without_template(), slow.without_template(), "{:?}", chunks);
        }

        /// The same, as server-sent events framed in every way and split
        /// anywhere: read with the event fast lane as by the SSE parser
        /// and serde alone.
        #[test]
        fn sse_streams_fold_as_with_serde(
            chunks in stream(),
            frames in prop::collection::vec(0u8..24, 10),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
            done in any::<bool>(),
            one_line in any::<bool>(),
        ) {
            let mut bytes = String::new();
            for (c, f) in chunks.iter().zip(frames.iter().cycle()) {
                // Most servers write a chunk on one line.
                let c = if one_line {
                    c.replace(['\n', '\r'], " ").trim().to_owned()
                } else {
                    c.clone()
                };
                bytes.push_str(&match f {
                    0 => format!("data:{c}\n\n"),
                    1 => format!("data: {c}\r\n\r\n"),
                    2 => format!("data: {c}\n\r\n"),
                    3 => format!(": keep-alive\n\ndata: {c}\r\r"),
                    4 => format!("data: {c}\ndata: {c}\n\n"),
                    5 => format!("event: error\ndata: {c}\n\n"),
                    6 => format!("data:  {c} \n\n"),
                    _ => format!("data: {c}\n\n"),
                });
            }
            if done {
                bytes.push_str("data: [DONE]\n\n");
            }
            let bytes = bytes.as_bytes();
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            cuts.push(bytes.len());
            cuts.sort();
            let (mut fast, mut slow) = (Accumulator::default(), Accumulator::default());
            let (mut fast_sse, mut slow_sse) = (SseParser::default(), SseParser::default());
            let mut from = 0;
            for to in cuts {
                // A read kept as it is, against one copied.
                fast_sse.push_read(bytes::Bytes::copy_from_slice(&bytes[from..to]));
                slow_sse.push(&bytes[from..to]);
                from = to;
                let f = fast.read_events(&mut fast_sse);
                let s = read_events_with_serde(&mut slow, &mut slow_sse);
                let stop = !matches!(s, Ok((_, false)));
                prop_assert_eq!(
                    f.map_err(|e| (e.reason, e.message)),
                    s.map_err(|e| (e.reason, e.message)),
                    "{:?}", String::from_utf8_lossy(bytes)
                );
                if stop {
                    break;
                }
            }
            prop_assert_eq!(fast.without_template(), slow.without_template());
        }

        /// A chunk of the usual shape with nothing unusual in it is taken.
        #[test]
        fn usual_shape_is_taken(content in "[a-z é👍]{0,12}", n in 0usize..3, blank in ws()) {
            let data = format!(
                "{{\"id\":\"c{n}\",{blank}\"choices\":[{{\"index\":{n},\"delta\":{{\"content\":{}}},\"finish_reason\":null}}]}}",
                serde_json::to_string(&content).unwrap()
            );
            prop_assert!(parse(&data).is_some(), "{}", data);
            agrees(&data);
        }
    }
}
