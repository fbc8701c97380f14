//! Parsing generation replies into example texts.
//!
//! Real models (small ones especially) answer with numbered or bulleted
//! lists, JSON in or out of a code fence, preambles ("Sure! Here are…"),
//! explanations under each item, labels in front of items, quotes, mix
//! annotations like "(80% HUM, 20% LOC)", echoes of the instruction,
//! headings and placeholders ("Sentence 3", `<text>`), class names and
//! class descriptions instead of examples, and a last item cut off at
//! `max_tokens`. [`parse_generation`] keeps what looks like an example —
//! never more than were asked for — and says for every other piece why it
//! dropped it ([`Reject`]), so the counts per reason can be shown.
//! Repeats are *not* dropped here: dedup records them as rejected
//! duplicates.

use std::collections::BTreeMap;

/// Why a piece of a reply was not taken as an example.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reject {
    /// "Sure! Here are five examples:".
    Preamble,
    /// A plain line beside a list.
    OutsideList,
    /// Inside a code block, or a line of code.
    Code,
    /// A JSON field that is not an example text (`"id": 3`).
    JsonField,
    /// Repeats a line of the instruction.
    Echo,
    /// The last item, cut at `max_tokens`.
    Truncated,
    /// No words.
    Empty,
    /// Fewer words than an example can have (or far fewer than the seeds).
    TooShort,
    /// Far longer than the seeds.
    TooLong,
    /// Talks about a text instead of being one ("This text is about…").
    Meta,
    /// Stands for a text: "[Sentence 1]", `<text>`, "Example 5".
    Placeholder,
    /// Titles the item below it ("**Example 1: LOC**", "Sentence 2").
    Heading,
    /// A list number and nothing else ("3.").
    NumberingOnly,
    /// A class name ("ABBR (Abbreviation)").
    ClassName,
    /// A class description ("texts which are about a place").
    ClassDescription,
    /// Restates the task or the instruction ("Write 5 new texts…").
    RestatesTask,
    /// More items than the request asked for.
    Extra,
}

impl Reject {
    /// Every reason, in display order.
    pub const ALL: [Reject; 17] = [
        Reject::Preamble,
        Reject::OutsideList,
        Reject::Code,
        Reject::JsonField,
        Reject::Echo,
        Reject::Truncated,
        Reject::Empty,
        Reject::TooShort,
        Reject::TooLong,
        Reject::Meta,
        Reject::Placeholder,
        Reject::Heading,
        Reject::NumberingOnly,
        Reject::ClassName,
        Reject::ClassDescription,
        Reject::RestatesTask,
        Reject::Extra,
    ];

    /// The snake_case name used in the journal, `stats` and snapshots.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Preamble => "preamble",
            Reject::OutsideList => "outside_list",
            Reject::Code => "code",
            Reject::JsonField => "json_field",
            Reject::Echo => "echo",
            Reject::Truncated => "truncated",
            Reject::Empty => "empty",
            Reject::TooShort => "too_short",
            Reject::TooLong => "too_long",
            Reject::Meta => "meta",
            Reject::Placeholder => "placeholder",
            Reject::Heading => "heading",
            Reject::NumberingOnly => "numbering_only",
            Reject::ClassName => "class_name",
            Reject::ClassDescription => "class_description",
            Reject::RestatesTask => "restates_task",
            Reject::Extra => "extra",
        }
    }

    pub fn from_name(s: &str) -> Option<Reject> {
        Reject::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Reject {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A piece of the reply that was not taken as an example, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Dropped {
    pub text: String,
    pub reason: Reject,
}

/// The examples found in one reply.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    pub items: Vec<String>,
    pub dropped: Vec<Dropped>,
    /// "json", "numbered", "bulleted" or "lines".
    pub format: &'static str,
}

impl Parsed {
    /// Dropped pieces per reason (reasons that occurred only).
    pub fn counts(&self) -> BTreeMap<Reject, usize> {
        let mut m = BTreeMap::new();
        for d in &self.dropped {
            *m.entry(d.reason).or_insert(0) += 1;
        }
        m
    }

    /// [`Parsed::counts`] keyed by reason name, as journalled
    /// (see [`REJECTED_KEY`]).
    pub fn counts_json(&self) -> serde_json::Value {
        let m: serde_json::Map<String, serde_json::Value> = self
            .counts()
            .into_iter()
            .map(|(r, n)| (r.as_str().to_string(), serde_json::json!(n)))
            .collect();
        serde_json::Value::Object(m)
    }
}

/// Key in `Provenance::extra` of the first event of a reply (its first
/// `sample_added`, or its `generation_failed`) holding the parser's
/// rejections per reason: `{"heading": 2, "extra": 1}`.
pub const REJECTED_KEY: &str = "parse_rejected";

/// Sum the journalled parser rejections per reason name over provenances.
pub fn sum_rejections<'a>(
    provenances: impl IntoIterator<Item = &'a crate::domain::Provenance>,
) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for p in provenances {
        if let Some(serde_json::Value::Object(m)) = p.extra.get(REJECTED_KEY) {
            for (k, v) in m {
                *out.entry(k.clone()).or_insert(0) += v.as_u64().unwrap_or(0);
            }
        }
    }
    out
}

/// What the parser knows about the request.
#[derive(Debug, Clone, Default)]
pub struct ParseContext {
    /// Class names (a leading "NAME:" label is stripped from items; an
    /// item that is only a class name is rejected).
    pub class_names: Vec<String>,
    /// Class descriptions (an item that is one is rejected).
    pub class_descriptions: Vec<String>,
    /// The task description (an item that restates it is rejected).
    pub task: String,
    /// The rendered prompt, to recognise echoes of the instruction.
    pub prompt: String,
    /// Texts shown as examples in the prompt (not echoes: dedup judges them).
    pub shown_examples: Vec<String>,
    /// The reply was cut at `max_tokens` (`finish_reason == "length"`).
    pub truncated: bool,
    /// Items longer than this many words are dropped (0 = no limit).
    pub max_words: usize,
    /// Items asked for: later ones are dropped as [`Reject::Extra`]
    /// (0 = no cap).
    pub asked: usize,
    /// Words in the shortest and the longest seed: items far outside this
    /// range are dropped (see [`word_limits`]).
    pub seed_words: Option<(usize, usize)>,
}

/// The accepted number of words (inclusive) for seeds of `lo..=hi` words:
/// at least a third of the shortest seed (and 2), at most three times the
/// longest (and 20 more than it).
pub fn word_limits(lo: usize, hi: usize) -> (usize, usize) {
    ((lo / 3).max(2), (hi * 3).max(hi + 20))
}

/// Word counts of the shortest and longest of `texts` (`None` if empty).
pub fn word_range<'a>(texts: impl IntoIterator<Item = &'a str>) -> Option<(usize, usize)> {
    texts
        .into_iter()
        .map(|t| t.split_whitespace().count())
        .fold(None, |acc, n| match acc {
            None => Some((n, n)),
            Some((a, b)) => Some((a.min(n), b.max(n))),
        })
}

/// Per ASCII byte: its lower case if it is a letter or digit, else 0.
const ASCII_NORMAL: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() {
            t[b] = c.to_ascii_lowercase();
        }
        b += 1;
    }
    t
};

/// Lower-case, keep letters/digits, collapse everything else to one space.
pub fn normalize(s: &str) -> String {
    if s.is_ascii() {
        // Most text and every prompt line: bytes, no Unicode tables; the
        // output is never longer than the input (a space stands for one
        // or more other bytes), so it is written by index.
        let mut out = vec![0u8; s.len()];
        let mut n = 0;
        let mut space = false;
        for &b in s.as_bytes() {
            let m = ASCII_NORMAL[usize::from(b)];
            if m != 0 {
                if space && n > 0 {
                    out[n] = b' ';
                    n += 1;
                }
                space = false;
                out[n] = m;
                n += 1;
            } else {
                space = true;
            }
        }
        out.truncate(n);
        return String::from_utf8(out).expect("ASCII");
    }
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for ch in s.chars() {
        // ASCII first: most texts are, and it skips the Unicode tables.
        let alnum = if ch.is_ascii() {
            ch.is_ascii_alphanumeric()
        } else {
            ch.is_alphanumeric()
        };
        if alnum {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            if ch.is_ascii() {
                out.push(ch.to_ascii_lowercase());
            } else {
                out.extend(ch.to_lowercase());
            }
        } else {
            space = true;
        }
    }
    out
}

/// The request-independent part of a [`ParseContext`] (classes, task,
/// word limits) with the normal forms the checks compare items with, made
/// once: a generator keeps one for all its replies, and a batch ingest
/// reads replies with it on a second thread ([`Parser::parse`]).
#[derive(Debug, Clone, Default)]
pub struct Parser {
    class_names: Vec<String>,
    max_words: usize,
    seed_words: Option<(usize, usize)>,
    norm_task: String,
    /// The task has at least three words (a restatement is checked).
    task_checked: bool,
    norm_classes: Vec<String>,
    /// Normalised class descriptions of at least two words (the only
    /// ones an item is compared with).
    norm_descriptions: Vec<String>,
}

impl Parser {
    /// The parser of `ctx`'s classes, task and limits (its request parts
    /// — prompt, shown examples, `truncated`, `asked` — are ignored).
    pub fn new(ctx: &ParseContext) -> Parser {
        let norm_task = normalize(&ctx.task);
        Parser {
            class_names: ctx.class_names.clone(),
            max_words: ctx.max_words,
            seed_words: ctx.seed_words,
            task_checked: !norm_task.is_empty() && norm_task.split(' ').count() >= 3,
            norm_task,
            norm_classes: ctx.class_names.iter().map(|c| normalize(c)).collect(),
            norm_descriptions: ctx
                .class_descriptions
                .iter()
                .map(|d| normalize(d))
                .filter(|d| d.split(' ').count() >= 2)
                .collect(),
        }
    }

    /// Parse a generation reply to a request with this prompt and shown
    /// examples: what [`parse_generation`] does with a [`ParseContext`]
    /// holding these.
    pub fn parse(
        &self,
        reply: &str,
        prompt: &str,
        shown_examples: &[String],
        truncated: bool,
        asked: usize,
    ) -> Parsed {
        let ctx = &Ctx {
            parser: self,
            prompt,
            shown_examples,
            truncated,
            asked,
            prompt_lines: std::cell::OnceCell::new(),
            shown: std::cell::OnceCell::new(),
        };
        let mut parsed = match parse_json(reply) {
            Some(items) => Parsed {
                items,
                dropped: Vec::new(),
                format: "json",
            },
            None => parse_lines(reply, ctx),
        };
        let mut items = Vec::new();
        for raw in std::mem::take(&mut parsed.items) {
            match clean_item(&raw, ctx) {
                Ok(_) if ctx.asked > 0 && items.len() >= ctx.asked => {
                    parsed.dropped.push(Dropped {
                        text: raw,
                        reason: Reject::Extra,
                    })
                }
                Ok(t) => items.push(t),
                Err(reason) => parsed.dropped.push(Dropped { text: raw, reason }),
            }
        }
        parsed.items = items;
        parsed
    }
}

/// A [`Parser`] with one request's parts; the prompt's and the shown
/// examples' normal forms are made when first needed, once per reply.
struct Ctx<'a> {
    parser: &'a Parser,
    prompt: &'a str,
    shown_examples: &'a [String],
    truncated: bool,
    asked: usize,
    /// Normalised non-empty lines of the prompt.
    prompt_lines: std::cell::OnceCell<Vec<String>>,
    shown: std::cell::OnceCell<Vec<String>>,
}

impl Ctx<'_> {
    fn prompt_lines(&self) -> &[String] {
        self.prompt_lines.get_or_init(|| {
            self.prompt
                .lines()
                .map(normalize)
                .filter(|l| !l.is_empty())
                .collect()
        })
    }

    fn shown(&self) -> &[String] {
        self.shown
            .get_or_init(|| self.shown_examples.iter().map(|e| normalize(e)).collect())
    }
}

impl std::ops::Deref for Ctx<'_> {
    type Target = Parser;
    fn deref(&self) -> &Parser {
        self.parser
    }
}

/// Parse a generation reply.
pub fn parse_generation(reply: &str, ctx: &ParseContext) -> Parsed {
    Parser::new(ctx).parse(
        reply,
        &ctx.prompt,
        &ctx.shown_examples,
        ctx.truncated,
        ctx.asked,
    )
}

// ---------------------------------------------------------------- JSON

/// Keys under which an object holds its list, or an item its text.
const LIST_KEYS: &[&str] = &[
    "examples",
    "texts",
    "items",
    "sentences",
    "utterances",
    "data",
];
const TEXT_KEYS: &[&str] = &[
    "text",
    "example",
    "utterance",
    "sentence",
    "question",
    "content",
];

/// The JSON payload of a reply: a fenced block, else the span from the
/// first `[`/`{` to the matching last `]`/`}`.
fn json_candidates(reply: &str) -> Vec<&str> {
    let mut out = Vec::new();
    if let Some(start) = reply.find("```") {
        let after = &reply[start + 3..];
        let body_start = after.find('\n').map(|i| i + 1).unwrap_or(0);
        let body = &after[body_start..];
        let end = body.find("```").unwrap_or(body.len());
        out.push(body[..end].trim());
    }
    for (open, close) in [('[', ']'), ('{', '}')] {
        if let (Some(a), Some(b)) = (reply.find(open), reply.rfind(close))
            && a < b
        {
            out.push(&reply[a..=b]);
        }
    }
    out
}

fn parse_json(reply: &str) -> Option<Vec<String>> {
    for cand in json_candidates(reply) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(cand)
            && let Some(items) = json_items(&v)
            && !items.is_empty()
        {
            return Some(items);
        }
    }
    None
}

fn json_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(m) => TEXT_KEYS
            .iter()
            .find_map(|k| m.get(*k).and_then(|x| x.as_str()))
            .or_else(|| m.values().find_map(|x| x.as_str()))
            .map(str::to_string),
        _ => None,
    }
}

fn json_items(v: &serde_json::Value) -> Option<Vec<String>> {
    match v {
        serde_json::Value::Array(a) => Some(a.iter().filter_map(json_text).collect()),
        serde_json::Value::Object(m) => {
            let list = LIST_KEYS
                .iter()
                .find_map(|k| m.get(*k).filter(|x| x.is_array()))
                .or_else(|| m.values().find(|x| x.is_array()));
            match list {
                Some(l) => json_items(l),
                None => json_text(v).map(|t| vec![t]),
            }
        }
        _ => None,
    }
}

// ---------------------------------------------------------------- lines

#[derive(Debug, Clone, Copy, PartialEq)]
enum Marker {
    Numbered,
    Bulleted,
    None,
}

/// Split a list marker off a line: "1.", "1)", "(1)", "#1", "-", "*", "•",
/// "Example 1:", "Text 2 -", with optional markdown bold around it.
fn strip_marker(line: &str) -> (Marker, &str) {
    let t = line.trim_start().trim_start_matches("**");
    // Bullets.
    for b in ["- ", "* ", "• ", "– ", "— "] {
        if let Some(rest) = t.strip_prefix(b) {
            // "- Example 1: …" / "- 1. …": drop the inner marker too.
            let rest = match strip_marker(rest) {
                (Marker::Numbered, inner) => inner,
                _ => rest.trim_start(),
            };
            return (Marker::Bulleted, rest);
        }
    }
    // "(1)" / "#1" / "1." / "1)" / "1:"
    let s = t
        .strip_prefix('(')
        .or_else(|| t.strip_prefix('#'))
        .unwrap_or(t);
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && digits <= 3 {
        let rest = &s[digits..];
        for sep in [".", ")", ":", " -"] {
            if let Some(r) = rest.strip_prefix(sep)
                && (r.is_empty() || r.starts_with(char::is_whitespace) || r.starts_with("**"))
            {
                return (Marker::Numbered, r.trim_start_matches("**").trim_start());
            }
        }
    }
    // "Example 1:", "Text 2.", "Sentence 3 -"
    for word in ["example", "text", "sentence", "question", "utterance"] {
        if t.len() > word.len()
            && t.get(..word.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(word))
        {
            let rest = t[word.len()..].trim_start();
            let d = rest.bytes().take_while(u8::is_ascii_digit).count();
            if d > 0 {
                let r = rest[d..].trim_start_matches("**");
                if let Some(r) = r
                    .strip_prefix(':')
                    .or_else(|| r.strip_prefix('.'))
                    .or_else(|| r.strip_prefix(" -"))
                {
                    return (Marker::Numbered, r.trim_start_matches("**").trim_start());
                }
            }
        }
    }
    (Marker::None, t)
}

const PREAMBLE_STARTS: &[&str] = &[
    "sure",
    "here are",
    "here is",
    "here's",
    "certainly",
    "of course",
    "okay",
    "ok,",
    "i will",
    "i'll",
    "i have",
    "i've",
    "these are",
    "the following",
    "below are",
    "note:",
    "i hope",
    "absolutely",
];

fn is_preamble(line: &str) -> bool {
    let l = line.trim().to_lowercase();
    l.ends_with(':') || PREAMBLE_STARTS.iter().any(|p| l.starts_with(p))
}

fn is_fence_or_bracket(line: &str) -> bool {
    let t = line.trim();
    t.starts_with("```") || matches!(t, "[" | "]" | "{" | "}" | "]," | "},")
}

/// Keys whose value is an example text (`"text": …`, `"second text": …`).
fn is_text_key(key: &str) -> bool {
    let k = key.to_lowercase();
    ["text", "example", "sentence", "utterance", "question"]
        .iter()
        .any(|w| k.contains(w))
}

/// A `"key": value` line of (possibly broken) JSON or a Python dict:
/// `Some(Some(value))` for a text key with a scalar value, `Some(None)`
/// for any other key or a nested value, `None` when the line is not one.
fn json_field(line: &str) -> Option<Option<String>> {
    let t = line.trim();
    let q = t.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let rest = &t[1..];
    let end = rest.find(q)?;
    let key = &rest[..end];
    let after = rest[end + 1..].trim_start().strip_prefix(':')?.trim();
    if key.is_empty() || key.contains(':') {
        return None;
    }
    if !is_text_key(key) || after.starts_with(['[', '{']) || after.is_empty() {
        return Some(None);
    }
    Some(Some(after.trim_end_matches(',').trim().to_string()))
}

/// Remove HTML/XML tags (`<em>`, `<a href="…">`, `</a>`).
fn strip_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('<') {
        let tail = &rest[i + 1..];
        let is_tag = tail.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/');
        match tail.find('>') {
            Some(j) if is_tag => {
                out.push_str(&rest[..i]);
                rest = &tail[j + 1..];
            }
            _ => {
                out.push_str(&rest[..=i]);
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

/// One line of a reply, classified.
struct Line<'a> {
    marker: Marker,
    /// Text after the marker (or a JSON field's value).
    text: String,
    orig: &'a str,
    /// Why the line is not a candidate at all, if it is not.
    skip: Option<Reject>,
}

fn classify_lines(reply: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut in_code = false;
    for l in reply.lines() {
        let t = l.trim();
        if let Some(lang) = t.strip_prefix("```") {
            // Entering a fence: code unless it says json/text/markdown.
            if !in_code && !lang.trim().is_empty() {
                let lang = lang.trim().to_lowercase();
                in_code = !["json", "text", "txt", "markdown", "md", "plaintext"]
                    .contains(&lang.as_str());
            } else {
                in_code = false;
            }
            continue;
        }
        if t.is_empty() || is_fence_or_bracket(l) {
            continue;
        }
        let mut line = Line {
            marker: Marker::None,
            text: String::new(),
            orig: l,
            skip: None,
        };
        if in_code || t.starts_with('#') || t.starts_with("//") || t.contains(" = {") {
            line.skip = Some(Reject::Code);
        } else if let Some(field) = json_field(t) {
            match field {
                Some(v) => line.text = strip_tags(&v),
                None => line.skip = Some(Reject::JsonField),
            }
        } else {
            let (m, rest) = strip_marker(l);
            line.marker = m;
            // "<text>" alone is a placeholder, not a tag to strip.
            line.text = if is_angle_placeholder(rest) {
                rest.trim().to_string()
            } else {
                strip_tags(rest)
            };
        }
        out.push(line);
    }
    out
}

/// A list item that is only a heading ("1. **HUM**", "Example 2:") whose
/// text follows on the next line.
fn is_heading(text: &str, ctx: &Ctx<'_>) -> bool {
    let t = text
        .trim()
        .trim_matches('*')
        .trim()
        .trim_end_matches(':')
        .trim();
    t.is_empty()
        || text.trim().trim_matches('*').trim_end().ends_with(':')
        || ctx.class_names.iter().any(|c| c.eq_ignore_ascii_case(t))
}

/// Why a list item is only a heading whose text follows on the next
/// line, if it is one: nothing but a number, a label ending in ':', a
/// class name, or a generic label with a number ("Sentence 2").
fn heading_reason(text: &str, ctx: &Ctx<'_>) -> Option<Reject> {
    let t = text.trim().trim_matches('*').trim();
    if t.is_empty() {
        return Some(Reject::NumberingOnly);
    }
    (is_heading(text, ctx) || is_label_number(t, ctx)).then_some(Reject::Heading)
}

fn parse_lines(reply: &str, ctx: &Ctx<'_>) -> Parsed {
    let lines = classify_lines(reply);
    let has = |m| lines.iter().any(|l| l.skip.is_none() && l.marker == m);
    // Numbered items win; lines under them are explanations. Bullets are
    // used only when nothing is numbered.
    let (keep, format) = if has(Marker::Numbered) {
        (Marker::Numbered, "numbered")
    } else if has(Marker::Bulleted) {
        (Marker::Bulleted, "bulleted")
    } else {
        (Marker::None, "lines")
    };
    let mut out = Parsed {
        format,
        ..Default::default()
    };
    let drop = |out: &mut Parsed, l: &Line<'_>, reason: Reject| {
        out.dropped.push(Dropped {
            text: l.orig.to_string(),
            reason,
        })
    };
    let last_line = reply.trim_end().lines().last().unwrap_or("");
    // Set after a heading-only item: the next plain line is its text.
    let mut heading = false;
    for (i, l) in lines.iter().enumerate() {
        if let Some(reason) = l.skip {
            drop(&mut out, l, reason);
            continue;
        }
        let as_item = l.marker == keep || (heading && l.marker == Marker::None);
        if !as_item {
            if keep != Marker::None && l.marker == Marker::None && !out.items.is_empty() {
                continue; // continuation / explanation of a list item
            }
            let reason = if is_preamble(l.orig) {
                Reject::Preamble
            } else {
                Reject::OutsideList
            };
            drop(&mut out, l, reason);
            continue;
        }
        // A heading needs its text on the next line; alone, a generic
        // label with a number is a placeholder (left to `clean_item`).
        let text_follows = lines.get(i + 1).is_some_and(|n| {
            n.skip.is_none() && n.marker == Marker::None && clean_item(&n.text, ctx).is_ok()
        });
        let heading_here = if keep != Marker::None && l.marker == keep {
            heading_reason(&l.text, ctx)
        } else if keep == Marker::None && text_follows && is_label_number(&l.text, ctx) {
            Some(Reject::Heading)
        } else {
            None
        };
        if let Some(reason) = heading_here
            && (reason != Reject::Heading || text_follows || !is_label_number(&l.text, ctx))
        {
            heading = true;
            drop(&mut out, l, reason);
            continue;
        }
        let was_heading = std::mem::replace(&mut heading, false);
        if keep == Marker::None && !was_heading && is_preamble(&l.text) {
            drop(&mut out, l, Reject::Preamble);
            continue;
        }
        if ctx.truncated && l.orig == last_line && !ends_cleanly(&l.text) {
            drop(&mut out, l, Reject::Truncated);
            continue;
        }
        out.items.push(l.text.clone());
    }
    out
}

fn ends_cleanly(s: &str) -> bool {
    s.trim_end()
        .ends_with(['.', '?', '!', '"', '\'', '”', '’', ')', '»'])
}

// ---------------------------------------------------------------- items

const QUOTES: &[(char, char)] = &[('"', '"'), ('“', '”'), ('«', '»'), ('\'', '\''), ('‘', '’')];

/// If the item holds a quoted text with at most a short label in front
/// (`ENTY: "…" - explanation`), the quoted text.
fn quoted_core(s: &str) -> Option<&str> {
    for (open, close) in QUOTES {
        let Some(a) = s.find(*open) else { continue };
        let before = &s[..a];
        if before.split_whitespace().count() > 3 {
            continue;
        }
        let inner = &s[a + open.len_utf8()..];
        if let Some(b) = inner.rfind(*close) {
            let core = inner[..b].trim();
            if core.split_whitespace().count() >= 2 {
                return Some(core);
            }
        }
    }
    None
}

/// Remove "(80% HUM, 20% LOC)"-style annotations.
fn strip_annotations(s: &str) -> String {
    let mut out = s.to_string();
    for (open, close) in [('(', ')'), ('[', ']')] {
        while let Some(a) = out.find(open) {
            let Some(len) = out[a..].find(close) else {
                break;
            };
            let inner = &out[a + 1..a + len];
            if inner.contains('%') {
                out.replace_range(a..=a + len, "");
            } else {
                break;
            }
        }
    }
    // Trailing " - 80% HUM" annotations.
    if let Some(i) = out.rfind(" - ")
        && out[i..].contains('%')
    {
        out.truncate(i);
    }
    out.trim().to_string()
}

/// Strip a leading "LABEL:" / "[LABEL]" / "(LABEL)" when LABEL is a class
/// name or a generic word like "Text".
fn strip_label(s: &str, ctx: &Ctx<'_>) -> String {
    let t = s.trim();
    let is_label = |w: &str| {
        let w = w.trim().trim_matches('*').trim();
        ctx.class_names.iter().any(|c| c.eq_ignore_ascii_case(w))
            || [
                "text",
                "question",
                "example",
                "sentence",
                "utterance",
                "label",
                "answer",
                "q",
                "a",
                "class",
                "category",
            ]
            .iter()
            .any(|g| g.eq_ignore_ascii_case(w))
    };
    if let Some(i) = t.find(':')
        && is_label(&t[..i])
    {
        return t[i + 1..].trim().to_string();
    }
    for (o, c) in [('[', ']'), ('(', ')')] {
        if let Some(rest) = t.strip_prefix(o)
            && let Some(i) = rest.find(c)
            && is_label(&rest[..i])
        {
            return rest[i + 1..].trim().to_string();
        }
    }
    t.to_string()
}

fn strip_quotes(s: &str) -> &str {
    let mut t = s.trim().trim_end_matches(',').trim();
    for (o, c) in QUOTES {
        if t.len() >= 2 && t.starts_with(*o) && t.ends_with(*c) {
            t = t[o.len_utf8()..t.len() - c.len_utf8()].trim();
        }
    }
    t
}

/// Openings of items that talk about a text instead of being one
/// ("This text is about…", "The second example…", "A short text about NASA").
const META_STARTS: &[&str] = &[
    "this text",
    "this sentence",
    "this example",
    "this question",
    "in this example",
    "the first",
    "the second",
    "the third",
    "the fourth",
    "the fifth",
    "the next",
    "the last",
    "a short text",
    "a long text",
    "a text about",
    "a long sentence",
    "a short sentence",
    "an example of",
    "texts which",
    "text which",
    "texts about",
    "text for",
    "these texts",
    "these five texts",
    "here is",
    "here are",
];

/// `n`: the item's normal form.
fn is_meta(item: &str, n: &str) -> bool {
    META_STARTS.iter().any(|m| {
        n.strip_prefix(m)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
    }) && !item.trim_end().ends_with('?')
}

/// Cut a trailing explanation: "Who is it? - This asks for a person."
fn strip_explanation(s: &str) -> &str {
    for sep in [" - ", " – ", " — "] {
        if let Some(i) = s.find(sep) {
            let head = s[..i].trim_end();
            if head.ends_with(['?', '.', '!']) && head.split_whitespace().count() >= 2 {
                return head;
            }
        }
    }
    s
}

/// Whether an item (its normal form `n`) repeats a line of the
/// instruction (not a shown example).
fn is_echo(n: &str, ctx: &Ctx<'_>) -> bool {
    if n.split(' ').count() < 3 || ctx.prompt.is_empty() {
        return false;
    }
    if ctx.shown().iter().any(|e| e == n) {
        return false;
    }
    // The length test first: a line at most twice the item's length is
    // searched, not every line of the prompt.
    ctx.prompt_lines()
        .iter()
        .any(|pl| pl == n || (n.len() * 2 >= pl.len() && pl.contains(n)))
}

/// Phrases of the instruction, not of an example (normalised; specific
/// enough that a real text — "make a numbered list of my tasks" — does
/// not contain them).
const TASK_PHRASES: &[&str] = &[
    "text classification dataset",
    "new example texts",
    "new diverse short texts",
    "like the examples above",
    "each text must belong",
    "answer with a numbered list",
    "one text per line",
    "texts which are about",
];

/// [`TASK_PHRASES`] made into searchers once (each item is searched for
/// all of them; a plain `contains` sets its searcher up on every call).
static TASK_FINDERS: std::sync::LazyLock<Vec<memchr::memmem::Finder<'static>>> =
    std::sync::LazyLock::new(|| {
        TASK_PHRASES
            .iter()
            .map(memchr::memmem::Finder::new)
            .collect()
    });

/// Whether an item (its normal form `n`) restates the task or the
/// instruction.
fn restates_task(n: &str, ctx: &Ctx<'_>) -> bool {
    let task = &ctx.norm_task;
    (ctx.task_checked && (n == task || n.contains(task.as_str())))
        || TASK_FINDERS.iter().any(|f| f.find(n.as_bytes()).is_some())
        || n.starts_with("write ") && n.contains(" texts")
}

/// `<text>`, `<sentence 3>`: one angle-bracketed word group and nothing else.
fn is_angle_placeholder(s: &str) -> bool {
    let t = s.trim().trim_matches('*').trim();
    t.len() >= 3
        && t.starts_with('<')
        && t.ends_with('>')
        && t.matches('<').count() == 1
        && t[1..t.len() - 1].split_whitespace().count() <= 4
}

/// Words that name a text rather than being one ("Movie plot summary 1").
const GENERIC_WORDS: &[&str] = &[
    "sentence",
    "sentences",
    "example",
    "examples",
    "text",
    "texts",
    "question",
    "questions",
    "utterance",
    "summary",
    "item",
    "headline",
    "review",
    "sample",
    "tweet",
    "message",
    "query",
    "article",
    "plot",
    "response",
    "description",
    "label",
    "class",
    "category",
];

/// A generic label and a number and nothing else: "Sentence 3",
/// "Example 5:", "**Movie plot summary 1**", "Text #2", "HUM 4". The word
/// before the number must be a word for a text (or a class name), so
/// "Apollo 11" or "Toy Story 3" are not placeholders.
fn is_label_number(s: &str, ctx: &Ctx<'_>) -> bool {
    let t = s.trim().trim_matches('*').trim();
    let t = t
        .trim_end_matches([':', '.', ')'])
        .trim()
        .trim_matches('*')
        .trim();
    // Most items do not end in a number: decided before the words are
    // collected.
    let num = t
        .split_whitespace()
        .next_back()
        .map_or("", |w| w.trim_start_matches('#'));
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit()) {
        return false;
    }
    let words: Vec<&str> = t.split_whitespace().collect();
    let Some((last, head)) = words.split_last() else {
        return false;
    };
    let num = last.trim_start_matches('#');
    if head.is_empty()
        || head.len() > 4
        || num.is_empty()
        || !num.chars().all(|c| c.is_ascii_digit())
    {
        return false;
    }
    let last_word = head[head.len() - 1].to_lowercase();
    head.iter()
        .all(|w| w.chars().all(|c| c.is_alphabetic() || c == '-'))
        && (GENERIC_WORDS.contains(&last_word.as_str())
            || ctx
                .class_names
                .iter()
                .any(|c| c.eq_ignore_ascii_case(&last_word)))
}

/// Text without parenthesised groups: "ABBR (Abbreviation)" → "ABBR".
fn without_parens(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut depth = 0usize;
    for ch in s.chars() {
        match ch {
            '(' | '[' => depth += 1,
            ')' | ']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(ch),
            _ => {}
        }
    }
    out
}

/// Only a class name, maybe with a gloss: "ABBR", "ABBR (Abbreviation)",
/// "LOC - location".
fn is_class_name(item: &str, ctx: &Ctx<'_>) -> bool {
    let n = if item.contains(['(', '[', ')', ']']) {
        normalize(&without_parens(item))
    } else {
        normalize(item)
    };
    // "NAME - gloss" (a "NAME: text" label is stripped elsewhere).
    let glossed = item
        .split_once(" - ")
        .or_else(|| item.split_once(" – "))
        .filter(|(_, gloss)| gloss.split_whitespace().count() <= 3 && !gloss.contains('?'))
        .map(|(head, _)| normalize(head));
    ctx.norm_classes
        .iter()
        .any(|c| !c.is_empty() && (n == *c || glossed.as_deref() == Some(c.as_str())))
}

/// Is (mostly) a class description: contains one of at least two words
/// with little else, or opens like one ("texts which are about …").
fn is_class_description(n: &str, ctx: &Ctx<'_>) -> bool {
    if [
        "texts which are",
        "text which is",
        "texts about",
        "texts that are",
    ]
    .iter()
    .any(|p| n.starts_with(p))
    {
        return true;
    }
    // (The descriptions kept are those of two words or more.)
    let rest_len = || {
        const ABOUT: &str = "texts which are about";
        if n.contains(ABOUT) {
            n.replace(ABOUT, "").trim().len()
        } else {
            n.trim().len()
        }
    };
    ctx.norm_descriptions
        .iter()
        .any(|d| n.contains(d.as_str()) && rest_len() <= d.len() + 24)
}

fn word_count(s: &str) -> usize {
    s.split_whitespace()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .count()
}

fn clean_item(raw: &str, ctx: &Ctx<'_>) -> Result<String, Reject> {
    let mut t = raw.trim().trim_matches('*').trim().to_string();
    if t.ends_with(':') {
        return Err(Reject::Heading);
    }
    if is_angle_placeholder(&t) || is_label_number(&t, ctx) {
        return Err(Reject::Placeholder);
    }
    if is_class_name(&t, ctx) {
        return Err(Reject::ClassName);
    }
    t = strip_label(&t, ctx);
    if let Some(core) = quoted_core(&t) {
        t = core.to_string();
    }
    t = strip_annotations(&t);
    t = strip_explanation(&t).to_string();
    t = strip_quotes(&t).trim_end_matches(" -").trim().to_string();
    t = strip_label(&t, ctx);
    let inner = t.trim_start_matches('[').trim_end_matches(']');
    if t.starts_with('[') && t.ends_with(']') && !inner.contains('[') {
        return Err(Reject::Placeholder);
    }
    if is_angle_placeholder(&t) || is_label_number(&t, ctx) {
        return Err(Reject::Placeholder);
    }
    if t.chars().filter(|c| c.is_alphabetic()).count() < 3 {
        let numbering =
            t.chars().any(|c| c.is_ascii_digit()) && t.chars().all(|c| !c.is_alphabetic());
        return Err(if numbering {
            Reject::NumberingOnly
        } else {
            Reject::Empty
        });
    }
    if word_count(&t) < 2 {
        return Err(Reject::TooShort);
    }
    if is_class_name(&t, ctx) {
        return Err(Reject::ClassName);
    }
    // The checks below compare the item's normal form (computed once).
    let n = normalize(&t);
    if is_class_description(&n, ctx) {
        return Err(Reject::ClassDescription);
    }
    if restates_task(&n, ctx) {
        return Err(Reject::RestatesTask);
    }
    if is_meta(&t, &n) {
        return Err(Reject::Meta);
    }
    let words = word_count(&t);
    if ctx.max_words > 0 && words > ctx.max_words {
        return Err(Reject::TooLong);
    }
    if let Some((lo, hi)) = ctx.seed_words {
        let (min, max) = word_limits(lo, hi);
        if words < min {
            return Err(Reject::TooShort);
        }
        if words > max {
            return Err(Reject::TooLong);
        }
    }
    if is_echo(&n, ctx) {
        return Err(Reject::Echo);
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_ascii_and_unicode_alike() {
        assert_eq!(
            normalize("  Who wrote 'Hamlet', in 1601?! "),
            "who wrote hamlet in 1601"
        );
        assert_eq!(normalize("Straße 5 — KÖLN!"), "straße 5 köln");
        assert_eq!(normalize("A-b_c"), "a b c");
        assert_eq!(normalize("?!"), "");
    }

    fn ctx() -> ParseContext {
        ParseContext {
            class_names: vec!["HUM".into(), "LOC".into(), "ENTY".into()],
            prompt: "You write new example texts for a text-classification dataset.\n\
                     1. HUM: texts which are about a person\n   - Who wrote Hamlet?\n\
                     Each text must belong 80% to HUM and 20% to LOC: mostly HUM, with a clear touch of LOC.\n\
                     Answer with a numbered list, one text per line, and nothing else."
                .into(),
            shown_examples: vec!["Who wrote Hamlet?".into()],
            truncated: false,
            max_words: 80,
            ..ParseContext::default()
        }
    }

    /// The context the generator gives: descriptions, task, cap, seed range.
    fn strict() -> ParseContext {
        ParseContext {
            class_descriptions: vec![
                "a person".into(),
                "a place such as a city or a country".into(),
                "an entity".into(),
            ],
            task: "Questions people ask a search engine.".into(),
            asked: 3,
            seed_words: Some((4, 8)),
            ..ctx()
        }
    }

    fn reasons(reply: &str, c: &ParseContext) -> (Vec<String>, Vec<(String, String)>) {
        let p = parse_generation(reply, c);
        let d = p
            .dropped
            .iter()
            .map(|d| (d.reason.to_string(), d.text.trim().to_string()))
            .collect();
        (p.items, d)
    }

    #[test]
    fn never_more_than_asked() {
        let r = "1. Who led the army?\n2. Who built the bridge?\n3. Who sang the anthem?\n4. Who won the cup?\n5. Who wrote the law?";
        let p = parse_generation(r, &strict());
        assert_eq!(p.items.len(), 3);
        assert_eq!(p.items[2], "Who sang the anthem?");
        let c = p.counts();
        assert_eq!(c.get(&Reject::Extra), Some(&2));
        assert_eq!(c.len(), 1);
        assert_eq!(p.counts_json(), serde_json::json!({"extra": 2}));
        // Rejected items do not use up the quota.
        let r = "1. Sentence 1\n2. Who led the army?\n3. HUM\n4. Who built the bridge?\n5. Who won the cup?";
        assert_eq!(parse_generation(r, &strict()).items.len(), 3);
        // No cap when nothing was said.
        assert_eq!(
            items("1. Who led it?\n2. Who built it?\n3. Who won it?\n4. Who sang it?").len(),
            4
        );
    }

    #[test]
    fn headings_and_placeholders() {
        // "Sentence n" lines title the text below them.
        let r = "Sentence 1\nWho led the army at Waterloo?\nSentence 2\nWho painted the Sistine Chapel?";
        let (kept, dropped) = reasons(r, &strict());
        assert_eq!(
            kept,
            vec![
                "Who led the army at Waterloo?",
                "Who painted the Sistine Chapel?"
            ]
        );
        assert_eq!(
            dropped,
            vec![
                ("heading".into(), "Sentence 1".into()),
                ("heading".into(), "Sentence 2".into())
            ]
        );
        // Alone they stand for a text.
        let r = "1. Sentence 3\n2. Example 5\n3. <text>\n4. Movie plot summary 1\n5. **Text #2**\n6. Who founded Rome?";
        let (kept, dropped) = reasons(r, &strict());
        assert_eq!(kept, vec!["Who founded Rome?"]);
        let why: Vec<_> = dropped.iter().map(|d| d.0.as_str()).collect();
        assert_eq!(why, vec!["placeholder"; 5], "{dropped:?}");
        // A number alone, under it the text.
        let (kept, dropped) = reasons(
            "1.\nWho founded Carthage?\n2)\n3. Who sailed first?",
            &strict(),
        );
        assert_eq!(kept, vec!["Who founded Carthage?", "Who sailed first?"]);
        assert_eq!(dropped[0].0, "numbering_only");
        assert_eq!(dropped[1].0, "numbering_only");
        // Not a placeholder: a name with a number inside a real text.
        assert_eq!(
            items("1. When did Apollo 11 land?\n2. Apollo 11\n3. Toy Story 3"),
            vec!["When did Apollo 11 land?", "Apollo 11", "Toy Story 3"]
        );
    }

    #[test]
    fn class_names_descriptions_and_the_task() {
        let r = "1. ABBR (Abbreviation)\n2. HUM\n3. LOC - location\n4. Texts which are about a person\n5. A place such as a city or a country\n6. Questions people ask a search engine.\n7. Write 5 new, diverse, short texts like the examples above.\n8. Where is the tallest tower in Asia?";
        let mut c = strict();
        c.class_names.push("ABBR".into());
        let (kept, dropped) = reasons(r, &c);
        assert_eq!(kept, vec!["Where is the tallest tower in Asia?"]);
        let why: Vec<_> = dropped.iter().map(|d| d.0.as_str()).collect();
        assert_eq!(
            why,
            vec![
                "heading", // "HUM" alone titles the next item
                "class_name",
                "class_name",
                "class_description",
                "class_description",
                "restates_task",
                "restates_task"
            ],
            "{dropped:?}"
        );
        // Real texts that mention a place or a list are kept.
        assert_eq!(
            items(
                "1. Which city is a place people visit most in Spain?\n2. Make a numbered list of my tasks for today"
            ),
            vec![
                "Which city is a place people visit most in Spain?",
                "Make a numbered list of my tasks for today"
            ]
        );
    }

    #[test]
    fn length_against_the_seeds() {
        assert_eq!(word_limits(4, 8), (2, 28));
        assert_eq!(word_limits(30, 40), (10, 120));
        assert_eq!(word_range(["a b c", "a", "a b c d e"]), Some((1, 5)));
        assert_eq!(word_range(Vec::<&str>::new()), None);
        let long = format!("1. Who {}?\n2. Who led it?", "very ".repeat(30));
        let (kept, dropped) = reasons(&long, &strict());
        assert_eq!(kept, vec!["Who led it?"]);
        assert_eq!(dropped[0].0, "too_long");
        let c = ParseContext {
            seed_words: Some((30, 40)),
            ..strict()
        };
        let (kept, dropped) = reasons(
            "1. Stocks fell.\n2. Stocks fell sharply on Monday as investors weighed the outlook for rates.",
            &c,
        );
        assert_eq!(kept.len(), 1);
        assert_eq!(dropped[0].0, "too_short");
        assert_eq!(Reject::from_name("class_name"), Some(Reject::ClassName));
        assert!(
            Reject::ALL
                .iter()
                .all(|r| Reject::from_name(r.as_str()) == Some(*r))
        );
    }

    fn items(reply: &str) -> Vec<String> {
        parse_generation(reply, &ctx()).items
    }

    #[test]
    fn numbered_with_preamble_and_annotations() {
        let r = "Sure! Here are 3 examples:\n\n1. Who painted the ceiling of the chapel in Rome? (80% HUM, 20% LOC)\n2) \"Which explorer reached the South Pole first?\"\n3. **Who built the Great Wall?**\n\nI hope these help!";
        assert_eq!(
            items(r),
            vec![
                "Who painted the ceiling of the chapel in Rome?",
                "Which explorer reached the South Pole first?",
                "Who built the Great Wall?"
            ]
        );
        let p = parse_generation(r, &ctx());
        assert_eq!(p.format, "numbered");
        assert!(p.dropped.iter().any(|d| d.reason == "preamble"));
    }

    #[test]
    fn bullets_example_prefixes_and_labels() {
        let r = "- Example 1: HUM: Who discovered penicillin?\n* [LOC] Where do penguins live in the wild?\n• Text: Who was the first woman in space?";
        assert_eq!(
            items(r),
            vec![
                "Who discovered penicillin?",
                "Where do penguins live in the wild?",
                "Who was the first woman in space?"
            ]
        );
        assert_eq!(
            items("Example 1: Who won the race?\nExample 2 - Who sang that song?"),
            vec!["Who won the race?", "Who sang that song?"]
        );
    }

    #[test]
    fn json_in_and_out_of_fences() {
        let fenced = "Here you go:\n```json\n[\"Who wrote Faust?\", \"Who rules Spain?\"]\n```";
        assert_eq!(items(fenced), vec!["Who wrote Faust?", "Who rules Spain?"]);
        let obj = r#"{"examples": [{"text": "Who is the pope?"}, {"text": "Who leads Chile?", "label": "HUM"}]}"#;
        assert_eq!(items(obj), vec!["Who is the pope?", "Who leads Chile?"]);
        assert_eq!(parse_generation(obj, &ctx()).format, "json");
        // Truncated JSON falls back to lines.
        let cut = "[\n  \"Who invented radio?\",\n  \"Who discovered gravi";
        let p = parse_generation(
            cut,
            &ParseContext {
                truncated: true,
                ..ctx()
            },
        );
        assert_eq!(p.items, vec!["Who invented radio?"]);
        assert!(p.dropped.iter().any(|d| d.reason == "truncated"));
    }

    #[test]
    fn truncated_last_item_only_when_cut() {
        let r = "1. Who led the army?\n2. Who was the king of";
        let cut = ParseContext {
            truncated: true,
            ..ctx()
        };
        assert_eq!(parse_generation(r, &cut).items, vec!["Who led the army?"]);
        assert_eq!(items(r).len(), 2);
    }

    #[test]
    fn echoes_explanations_and_repeats() {
        let r = "1. Who wrote Hamlet?\nThis is a question about a person.\n2. Each text must belong 80% to HUM and 20% to LOC\n3. Who wrote Hamlet?";
        let p = parse_generation(r, &ctx());
        // Shown examples and repeats pass (dedup records them); the echo does not.
        assert_eq!(p.items, vec!["Who wrote Hamlet?", "Who wrote Hamlet?"]);
        assert!(
            p.dropped.iter().any(|d| d.reason == "restates_task"),
            "{p:?}"
        );
    }

    #[test]
    fn nothing_usable() {
        let p = parse_generation("1.  A:\n2. [Sentence 1]\n3. abbr;", &ctx());
        assert!(p.items.is_empty(), "{p:?}");
        let reasons: Vec<_> = p.dropped.iter().map(|d| d.reason).collect();
        assert_eq!(reasons, vec!["heading", "placeholder", "too_short"]);
        assert!(parse_generation("", &ctx()).items.is_empty());
        // Multi-byte characters where a marker word could be.
        assert_eq!(
            parse_generation("[📌🏈]\nTex🏈 1: x", &ctx()).items.len(),
            1
        );
    }

    proptest::proptest! {
        /// Any reply, however garbled, parses without panicking, and every
        /// kept item is non-empty.
        #[test]
        fn never_panics(reply in "(\\PC|\n|[0-9]\\. |- |\"|\\(|\\)|%|:|```|\\[|\\]|\\{|\\}|📌|é){0,120}", truncated in proptest::bool::ANY) {
            let p = parse_generation(&reply, &ParseContext { truncated, ..ctx() });
            for it in &p.items {
                proptest::prop_assert!(!it.trim().is_empty());
            }
        }
    }

    #[test]
    fn quoted_core_with_label_and_explanation() {
        assert_eq!(
            items("1. ENTY: \"What colour is a flamingo?\" - This is about an entity."),
            vec!["What colour is a flamingo?"]
        );
        assert_eq!(normalize("  Who's  THERE?! "), "who s there");
    }
}
