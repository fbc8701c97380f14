//! Parsing relabel answers into a [`Verdict`].
//!
//! The label comes from JSON (`{"label": "…"}`, what the schema-constrained
//! request asks for) or from free text: exact, then case-insensitive, then
//! unique-prefix, then a single class name contained in the answer;
//! otherwise the verdict is unparsable (`label: None`, raw kept).
//!
//! Confidence per class comes from the top logprobs of the answer's first
//! label token(s) when the server returns them, else from the share of
//! votes over several sampled answers, else 1.0 for the single answer.

use std::collections::BTreeMap;

use crate::domain::{Verdict, VerdictMethod};

pub use crate::llm::TokenLogprob;

/// The JSON schema that constrains a relabel answer to the class names.
pub fn label_schema(classes: &[String]) -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {"label": {"type": "string", "enum": classes}},
        "required": ["label"],
        "additionalProperties": false
    })
}

fn strip_answer(s: &str) -> &str {
    s.trim()
        .trim_matches(|c: char| {
            c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '*' | '.' | '-' | ':' | '[' | ']')
        })
        .trim()
}

/// The label string of a JSON answer (`{"label": …}` or any single string
/// value, or a JSON string).
fn json_label(answer: &str) -> Option<String> {
    let a = answer.find(['{', '"'])?;
    let b = answer.rfind(['}', '"'])?;
    if b < a {
        return None;
    }
    match serde_json::from_str::<serde_json::Value>(&answer[a..=b]).ok()? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Object(m) => ["label", "class", "category", "intent"]
            .iter()
            .find_map(|k| m.get(*k).and_then(|v| v.as_str()))
            .or_else(|| m.values().find_map(|v| v.as_str()))
            .map(str::to_string),
        _ => None,
    }
}

/// Whether `name` occurs in `text` as a whole word (case-insensitive).
fn contains_word(text: &str, name: &str) -> bool {
    let t = text.to_lowercase();
    let n = name.to_lowercase();
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    t.match_indices(&n).any(|(i, _)| {
        let before = t[..i].chars().next_back();
        let after = t[i + n.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

/// Map a free-text or JSON answer to a class name.
pub fn match_label(answer: &str, classes: &[String]) -> Option<String> {
    let from_json = json_label(answer);
    let cands: Vec<&str> = from_json
        .as_deref()
        .into_iter()
        .chain(std::iter::once(answer))
        .collect();
    for cand in &cands {
        let a = strip_answer(cand);
        if a.is_empty() {
            continue;
        }
        if let Some(c) = classes.iter().find(|c| c.as_str() == a) {
            return Some(c.clone());
        }
        if let Some(c) = classes.iter().find(|c| c.eq_ignore_ascii_case(a)) {
            return Some(c.clone());
        }
        // The answer is the start of exactly one class name ("Loc" → "LOCATION").
        let al = a.to_lowercase();
        let prefixed: Vec<&String> = classes
            .iter()
            .filter(|c| c.to_lowercase().starts_with(&al))
            .collect();
        if let [c] = prefixed.as_slice() {
            return Some((*c).clone());
        }
    }
    // Exactly one class name somewhere in the answer.
    let contained: Vec<&String> = classes
        .iter()
        .filter(|c| contains_word(answer, c))
        .collect();
    match contained.as_slice() {
        [c] => Some((*c).clone()),
        _ => None,
    }
}

/// Where the label starts in the token stream: the token covering the
/// first character of the label value in `text`.
fn label_token_index(tokens: &[TokenLogprob], label_at: usize) -> Option<usize> {
    let mut pos = 0;
    for (i, t) in tokens.iter().enumerate() {
        let end = pos + t.token.len();
        if end > label_at {
            return Some(i);
        }
        pos = end;
    }
    None
}

/// Byte offset of the answer's label in the reply text.
fn label_offset(text: &str, label: &str) -> Option<usize> {
    // JSON answers: the value after `"label"`; free text: first occurrence.
    let tl = text.to_lowercase();
    let ll = label.to_lowercase();
    if let Some(k) = tl.find("\"label\"") {
        return tl[k + 7..].find(&ll).map(|i| k + 7 + i);
    }
    tl.find(&ll)
}

/// Per-class probabilities from the top logprobs along the label's tokens.
///
/// Walks the tokens from where the label starts. At each position every
/// alternative token that continues some class name (other than the one
/// taken) gives that class the probability of the prefix so far times its
/// own, split evenly among the classes it fits; the taken token narrows the
/// classes still possible. The result is normalised over the classes, as a
/// constrained answer can only be one of them.
///
/// Tokens are matched with the class names' case first (a constrained
/// answer can only take those tokens; "en" is rarely the start of "ENTY"),
/// and case-insensitively only when the answer itself does not match
/// that way.
pub fn logprob_confidence(
    tokens: &[TokenLogprob],
    text: &str,
    label: &str,
    classes: &[String],
) -> Option<BTreeMap<String, f64>> {
    let start = label_token_index(tokens, label_offset(text, label)?)?;
    walk(&tokens[start..], classes, true).or_else(|| walk(&tokens[start..], classes, false))
}

fn walk(
    tokens: &[TokenLogprob],
    classes: &[String],
    case_sensitive: bool,
) -> Option<BTreeMap<String, f64>> {
    let fold = |s: &str| {
        if case_sensitive {
            s.to_string()
        } else {
            s.to_lowercase()
        }
    };
    let lower: Vec<String> = classes.iter().map(|c| fold(c)).collect();
    let mut mass = vec![0.0f64; classes.len()];
    let mut alive: Vec<usize> = (0..classes.len()).collect();
    let mut consumed = String::new();
    let mut prefix = 1.0f64;
    // The first label token may carry leading whitespace or quotes.
    let clean = |tok: &str, first: bool| -> String {
        let t = fold(tok);
        if first {
            t.trim_start_matches(|c: char| c.is_whitespace() || c == '"' || c == '\'')
                .to_string()
        } else {
            t
        }
    };
    // Does the token continue class `c` after `consumed`?
    let fits = |c: &str, consumed: &str, tok: &str| -> bool {
        if tok.is_empty() {
            return false;
        }
        let Some(rest) = c.strip_prefix(consumed) else {
            return false;
        };
        if rest.is_empty() {
            return false;
        }
        rest.starts_with(tok) || tok.starts_with(rest)
    };
    let mut matched = false;
    for (k, t) in tokens.iter().enumerate() {
        let first = k == 0;
        let chosen = clean(&t.token, first);
        for (alt, lp) in &t.top {
            let alt = clean(alt, first);
            if alt == chosen {
                continue;
            }
            let fit: Vec<usize> = alive
                .iter()
                .copied()
                .filter(|&i| {
                    fits(&lower[i], &consumed, &alt) && !fits(&lower[i], &consumed, &chosen)
                })
                .collect();
            for &i in &fit {
                mass[i] += prefix * lp.exp() / fit.len() as f64;
            }
        }
        let next: Vec<usize> = alive
            .iter()
            .copied()
            .filter(|&i| fits(&lower[i], &consumed, &chosen))
            .collect();
        if next.is_empty() {
            break;
        }
        matched = true;
        prefix *= t.logprob.exp();
        consumed.push_str(&chosen);
        alive = next;
        // Done once one class is left or a class name is complete.
        let complete = alive.iter().any(|&i| lower[i].len() <= consumed.len());
        if alive.len() == 1 || complete {
            for &i in &alive {
                mass[i] += prefix / alive.len() as f64;
            }
            break;
        }
    }
    let total: f64 = mass.iter().sum();
    if !matched || total <= 0.0 || !total.is_finite() {
        return None;
    }
    Some(
        classes
            .iter()
            .zip(&mass)
            .filter(|(_, m)| **m > 0.0)
            .map(|(c, m)| (c.clone(), m / total))
            .collect(),
    )
}

/// What came back for one relabel request.
#[derive(Debug, Clone, Default)]
pub struct RelabelReply<'a> {
    /// One answer per choice (several when the request asked for `n`).
    pub choices: &'a [String],
    /// Token logprobs of the first choice, if the server gave them.
    pub logprobs: Option<&'a [TokenLogprob]>,
    pub model: Option<String>,
    pub request_id: Option<String>,
}

/// Build the verdict for a relabel reply.
pub fn verdict_from(reply: &RelabelReply<'_>, classes: &[String]) -> Verdict {
    let labels: Vec<Option<String>> = reply
        .choices
        .iter()
        .map(|c| match_label(c, classes))
        .collect();
    let raw = Some(reply.choices.join("\n---\n").into());
    let mut v = Verdict {
        label: None,
        confidence: Default::default(),
        method: VerdictMethod::Single,
        votes: None,
        raw,
        model: reply.model.as_deref().map(Into::into),
        request_id: reply.request_id.as_deref().map(Into::into),
    };
    if reply.choices.len() > 1 {
        // Self-consistency: share of votes per class; unparsable votes count
        // in the denominator.
        let n = labels.len() as f64;
        for l in labels.iter().flatten() {
            *v.confidence.entry_or_zero(l) += 1.0 / n;
        }
        v.method = VerdictMethod::Vote;
        v.votes = Some(labels.len() as u32);
        v.label = v
            .confidence
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(c, _)| c.into());
        return v;
    }
    let Some(Some(label)) = labels.first() else {
        return v;
    };
    v.label = Some(label.into());
    if let Some(tokens) = reply.logprobs
        && let Some(conf) = logprob_confidence(tokens, &reply.choices[0], label, classes)
    {
        v.confidence = conf.into();
        v.method = VerdictMethod::Logprobs;
        // The parsed label wins over a stray token path.
        if !v.confidence.contains_key(label) {
            v.confidence.insert(label.clone(), 0.0);
        }
    } else {
        v.confidence.insert(label.clone(), 1.0);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cls() -> Vec<String> {
        ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn label_matching_order() {
        let c = cls();
        assert_eq!(match_label("HUM", &c).as_deref(), Some("HUM"));
        assert_eq!(match_label(" \"hum\".", &c).as_deref(), Some("HUM"));
        assert_eq!(
            match_label("{\"label\": \"LOC\"}", &c).as_deref(),
            Some("LOC")
        );
        assert_eq!(
            match_label("{ \"label\": \"loc\"}", &c).as_deref(),
            Some("LOC")
        );
        assert_eq!(match_label("Abb", &c).as_deref(), Some("ABBR"));
        assert_eq!(
            match_label("NUM - it asks for a number", &c).as_deref(),
            Some("NUM")
        );
        assert_eq!(
            match_label("The answer is HUM because it asks who.", &c).as_deref(),
            Some("HUM")
        );
        // Ambiguous or absent: unparsable.
        assert_eq!(match_label("HUM or LOC", &c), None);
        assert_eq!(match_label("I don't know", &c), None);
        assert_eq!(match_label("", &c), None);
        // A class name inside a word does not count.
        assert_eq!(match_label("NUMBERS everywhere", &c), None);
        // Multi-word class names.
        let c2 = vec!["book flight".to_string(), "book hotel".to_string()];
        assert_eq!(
            match_label("Book Hotel", &c2).as_deref(),
            Some("book hotel")
        );
        assert_eq!(match_label("book", &c2), None);
    }

    fn tok(t: &str, p: f64, top: &[(&str, f64)]) -> TokenLogprob {
        TokenLogprob {
            token: t.into(),
            logprob: p.ln(),
            top: top.iter().map(|(s, p)| (s.to_string(), p.ln())).collect(),
        }
    }

    #[test]
    fn logprobs_over_first_label_tokens() {
        let c = cls();
        // {"label": "HUM"} with H vs L vs N at the first label token.
        let tokens = vec![
            tok("{\"", 0.9, &[("{\"", 0.9)]),
            tok("label", 0.9, &[("label", 0.9)]),
            tok("\":", 0.9, &[("\":", 0.9)]),
            tok(" \"", 0.9, &[(" \"", 0.9)]),
            tok(
                "H",
                0.6,
                &[("H", 0.6), ("L", 0.2), ("N", 0.1), ("The", 0.05)],
            ),
            tok("UM", 0.99, &[("UM", 0.99)]),
            tok("\"}", 0.9, &[("\"}", 0.9)]),
        ];
        let text = "{\"label\": \"HUM\"}";
        let conf = logprob_confidence(&tokens, text, "HUM", &c).unwrap();
        assert!((conf["HUM"] - 0.6 / 0.9).abs() < 0.02, "{conf:?}");
        assert!((conf["LOC"] - 0.2 / 0.9).abs() < 0.02);
        assert!(conf["NUM"] > 0.0);
        assert!(!conf.contains_key("DESC"));
        let total: f64 = conf.values().sum();
        assert!((total - 1.0).abs() < 1e-9);
    }

    #[test]
    fn logprobs_shared_prefix_resolved_later() {
        let c = vec![
            "book flight".to_string(),
            "book hotel".to_string(),
            "cancel".to_string(),
        ];
        let tokens = vec![
            tok("book", 0.8, &[("book", 0.8), ("cancel", 0.2)]),
            tok(" hotel", 0.5, &[(" hotel", 0.5), (" flight", 0.5)]),
        ];
        let conf = logprob_confidence(&tokens, "book hotel", "book hotel", &c).unwrap();
        assert!((conf["book hotel"] - 0.4).abs() < 1e-9, "{conf:?}");
        assert!((conf["book flight"] - 0.4).abs() < 1e-9);
        assert!((conf["cancel"] - 0.2).abs() < 1e-9);
    }

    #[test]
    fn votes_and_unparsable() {
        let c = cls();
        let choices: Vec<String> = ["HUM", "hum", "LOC", "???"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let v = verdict_from(
            &RelabelReply {
                choices: &choices,
                ..Default::default()
            },
            &c,
        );
        assert_eq!(v.method, VerdictMethod::Vote);
        assert_eq!(v.label.as_deref(), Some("HUM"));
        assert_eq!(v.votes, Some(4));
        assert!((v.confidence["HUM"] - 0.5).abs() < 1e-9);
        assert!((v.confidence["LOC"] - 0.25).abs() < 1e-9);

        let choices = vec!["no idea".to_string()];
        let v = verdict_from(
            &RelabelReply {
                choices: &choices,
                ..Default::default()
            },
            &c,
        );
        assert_eq!(v.label, None);
        assert_eq!(v.raw.as_deref(), Some("no idea"));
        assert_eq!(v.top_confidence(), 0.0);

        let choices = vec!["LOC".to_string()];
        let v = verdict_from(
            &RelabelReply {
                choices: &choices,
                ..Default::default()
            },
            &c,
        );
        assert_eq!((v.method, v.top_confidence()), (VerdictMethod::Single, 1.0));
    }
}
