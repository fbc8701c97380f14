//! Parsing generation replies into example texts.
//!
//! Real models (small ones especially) answer with numbered or bulleted
//! lists, JSON in or out of a code fence, preambles ("Sure! Here are…"),
//! explanations under each item, labels in front of items, quotes, mix
//! annotations like "(80% HUM, 20% LOC)", echoes of the instruction and a
//! last item cut off at `max_tokens`. [`parse_generation`] keeps what looks
//! like an example and says why it dropped the rest. Repeats are *not*
//! dropped here: dedup records them as rejected duplicates.

/// A piece of the reply that was not taken as an example, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Dropped {
    pub text: String,
    /// "preamble", "outside_list", "code", "json_field", "echo", "truncated",
    /// "empty", "too_short",
    /// "meta" (talks about a text instead of being one), "placeholder",
    /// "heading", "too_long".
    pub reason: &'static str,
}

/// The examples found in one reply.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    pub items: Vec<String>,
    pub dropped: Vec<Dropped>,
    /// "json", "numbered", "bulleted" or "lines".
    pub format: &'static str,
}

/// What the parser knows about the request.
#[derive(Debug, Clone, Default)]
pub struct ParseContext {
    /// Class names (a leading "NAME:" label is stripped from items).
    pub class_names: Vec<String>,
    /// The rendered prompt, to recognise echoes of the instruction.
    pub prompt: String,
    /// Texts shown as examples in the prompt (not echoes: dedup judges them).
    pub shown_examples: Vec<String>,
    /// The reply was cut at `max_tokens` (`finish_reason == "length"`).
    pub truncated: bool,
    /// Items longer than this many words are dropped (0 = no limit).
    pub max_words: usize,
}

/// Lower-case, keep letters/digits, collapse everything else to one space.
pub fn normalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for ch in s.chars() {
        if ch.is_alphanumeric() {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.extend(ch.to_lowercase());
        } else {
            space = true;
        }
    }
    out
}

/// Parse a generation reply.
pub fn parse_generation(reply: &str, ctx: &ParseContext) -> Parsed {
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
            Ok(t) => items.push(t),
            Err(reason) => parsed.dropped.push(Dropped { text: raw, reason }),
        }
    }
    parsed.items = items;
    parsed
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
    skip: Option<&'static str>,
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
            line.skip = Some("code");
        } else if let Some(field) = json_field(t) {
            match field {
                Some(v) => line.text = strip_tags(&v),
                None => line.skip = Some("json_field"),
            }
        } else {
            let (m, rest) = strip_marker(l);
            line.marker = m;
            line.text = strip_tags(rest);
        }
        out.push(line);
    }
    out
}

/// A list item that is only a heading ("1. **HUM**", "Example 2:") whose
/// text follows on the next line.
fn is_heading(text: &str, ctx: &ParseContext) -> bool {
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

fn parse_lines(reply: &str, ctx: &ParseContext) -> Parsed {
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
    let drop = |out: &mut Parsed, l: &Line<'_>, reason| {
        out.dropped.push(Dropped {
            text: l.orig.to_string(),
            reason,
        })
    };
    let last_line = reply.trim_end().lines().last().unwrap_or("");
    // Set after a heading-only item: the next plain line is its text.
    let mut heading = false;
    for l in &lines {
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
                "preamble"
            } else {
                "outside_list"
            };
            drop(&mut out, l, reason);
            continue;
        }
        if keep != Marker::None && l.marker == keep && is_heading(&l.text, ctx) {
            heading = true;
            drop(&mut out, l, "heading");
            continue;
        }
        let was_heading = std::mem::replace(&mut heading, false);
        if keep == Marker::None && !was_heading && is_preamble(&l.text) {
            drop(&mut out, l, "preamble");
            continue;
        }
        if ctx.truncated && l.orig == last_line && !ends_cleanly(&l.text) {
            drop(&mut out, l, "truncated");
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
fn strip_label(s: &str, ctx: &ParseContext) -> String {
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

fn is_meta(item: &str) -> bool {
    let n = normalize(item);
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

/// Whether an item repeats a line of the instruction (not a shown example).
fn is_echo(item: &str, ctx: &ParseContext) -> bool {
    let n = normalize(item);
    if n.split(' ').count() < 3 || ctx.prompt.is_empty() {
        return false;
    }
    if ctx.shown_examples.iter().any(|e| normalize(e) == n) {
        return false;
    }
    ctx.prompt.lines().any(|l| {
        let pl = normalize(l);
        !pl.is_empty() && (pl == n || (pl.contains(&n) && n.len() * 2 >= pl.len()))
    }) || n.contains("each text must belong")
        || n.contains("numbered list")
        || n.contains("texts which are about")
}

fn clean_item(raw: &str, ctx: &ParseContext) -> Result<String, &'static str> {
    let mut t = raw.trim().trim_matches('*').trim().to_string();
    if t.ends_with(':') {
        return Err("heading");
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
        return Err("placeholder");
    }
    if t.chars().filter(|c| c.is_alphabetic()).count() < 3 {
        return Err("empty");
    }
    if t.split_whitespace()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .count()
        < 2
    {
        return Err("too_short");
    }
    if is_meta(&t) {
        return Err("meta");
    }
    if ctx.max_words > 0 && t.split_whitespace().count() > ctx.max_words {
        return Err("too_long");
    }
    if is_echo(&t, ctx) {
        return Err("echo");
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        }
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
        assert!(p.dropped.iter().any(|d| d.reason == "echo"), "{p:?}");
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
