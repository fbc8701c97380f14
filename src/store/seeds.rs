//! Reading labelled examples (seeds, held-out sets) and class descriptions
//! from CSV, TSV or JSON Lines files.
//!
//! The format comes from the extension (`.csv`, `.tsv`/`.tab`, `.jsonl`/
//! `.ndjson`/`.json`); any other extension is sniffed (a first non-blank
//! character `{` means JSON Lines, a tab in the first line means TSV, else
//! CSV). Every error is a user error naming the file and the line.

use std::path::Path;

use crate::error;

/// One labelled example read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub text: String,
    pub label: String,
    /// 1-based line in the file where the record starts.
    pub line: usize,
}

/// File formats we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Tsv,
    Jsonl,
}

/// Column (or key) names of the text and the label.
#[derive(Debug, Clone)]
pub struct Columns {
    pub text: String,
    pub label: String,
}

impl Default for Columns {
    fn default() -> Self {
        Columns {
            text: "text".into(),
            label: "label".into(),
        }
    }
}

/// Read a file as UTF-8 (a leading BOM is dropped); a user error names the
/// line of the first invalid byte.
pub fn read_utf8(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path)
        .map_err(|e| error::user(format!("cannot read {}: {e}", path.display())))?;
    match String::from_utf8(bytes) {
        Ok(mut s) => {
            if s.starts_with('\u{feff}') {
                s.drain(..3);
            }
            Ok(s)
        }
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let b = e.as_bytes();
            let line = b[..at].iter().filter(|&&c| c == b'\n').count() + 1;
            let col = at
                - b[..at]
                    .iter()
                    .rposition(|&c| c == b'\n')
                    .map_or(0, |p| p + 1)
                + 1;
            Err(error::user(format!(
                "{}:{line}: not valid UTF-8 (byte {col} of the line); save the file as UTF-8",
                path.display()
            )))
        }
    }
}

/// Guess the format of a file from its extension, or sniff its content.
pub fn detect_format(path: &Path, content: &str) -> Format {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("csv") => Format::Csv,
        Some("tsv") | Some("tab") => Format::Tsv,
        Some("jsonl") | Some("ndjson") | Some("json") => Format::Jsonl,
        _ => {
            let first = content.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            if first.trim_start().starts_with('{') {
                Format::Jsonl
            } else if first.contains('\t') {
                Format::Tsv
            } else {
                Format::Csv
            }
        }
    }
}

/// Read labelled examples. Fails (user error, file:line) on a missing text
/// or label column, an empty text or label, a malformed row.
pub fn read_examples(path: &Path, cols: &Columns) -> anyhow::Result<Vec<Example>> {
    parse_examples(path, &read_utf8(path)?, cols)
}

/// [`read_examples`] on content already in memory; `path` names it in
/// errors and picks the format.
pub fn parse_examples(path: &Path, content: &str, cols: &Columns) -> anyhow::Result<Vec<Example>> {
    let content = content.strip_prefix('\u{feff}').unwrap_or(content);
    let out = match detect_format(path, content) {
        Format::Csv => read_delimited(path, content, b',', cols)?,
        Format::Tsv => read_delimited(path, content, b'\t', cols)?,
        Format::Jsonl => read_jsonl(path, content, cols)?,
    };
    if out.is_empty() {
        return Err(error::user(format!(
            "{}: no examples found (the file has no data rows)",
            path.display()
        )));
    }
    Ok(out)
}

fn csv_reader(content: &str, delim: u8, headers: bool) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .delimiter(delim)
        .has_headers(headers)
        .flexible(true)
        .quoting(delim == b',')
        .from_reader(content.as_bytes())
}

fn csv_err(path: &Path, e: csv::Error) -> anyhow::Error {
    let line = e.position().map(|p| p.line()).unwrap_or(0);
    let msg = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("expected {expected_len} fields, found {len}")
        }
        _ => e.to_string(),
    };
    error::user(format!("{}:{line}: malformed row: {msg}", path.display()))
}

fn read_delimited(
    path: &Path,
    content: &str,
    delim: u8,
    cols: &Columns,
) -> anyhow::Result<Vec<Example>> {
    let mut rdr = csv_reader(content, delim, true);
    let headers = rdr.headers().map_err(|e| csv_err(path, e))?.clone();
    let find = |name: &str| headers.iter().position(|h| h.trim() == name);
    let names = || headers.iter().collect::<Vec<_>>().join(", ");
    let ti = find(&cols.text).ok_or_else(|| {
        error::user(format!(
            "{}:1: no '{}' column (columns: {}); name the text column with --text-col",
            path.display(),
            cols.text,
            names()
        ))
    })?;
    let li = find(&cols.label).ok_or_else(|| {
        error::user(format!(
            "{}:1: no '{}' column (columns: {}); name the label column with --label-col",
            path.display(),
            cols.label,
            names()
        ))
    })?;
    let mut out = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| csv_err(path, e))?;
        let line = rec.position().map(|p| p.line() as usize).unwrap_or(0);
        if rec.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if rec.len() != headers.len() {
            // A row with a field too many or too few would be read into
            // the wrong columns ("Hello, how are you,A" as text "Hello",
            // label "how are you"): refuse it instead.
            let hint = if delim == b'\t' {
                "a TSV field cannot hold a tab (quotes are not special in TSV)"
            } else {
                "quote a field that holds a comma: \"Hello, how are you\",A"
            };
            return Err(error::user(format!(
                "{}:{line}: expected {} fields, found {}; {hint}",
                path.display(),
                headers.len(),
                rec.len()
            )));
        }
        let get = |i: usize, what: &str| -> anyhow::Result<String> {
            rec.get(i).map(|s| s.trim().to_string()).ok_or_else(|| {
                error::user(format!(
                    "{}:{line}: row has {} fields, no {what} field (column {})",
                    path.display(),
                    rec.len(),
                    i + 1
                ))
            })
        };
        let text = get(ti, "text")?;
        let label = get(li, "label")?;
        out.push(check(path, line, text, label)?);
    }
    Ok(out)
}

fn check(path: &Path, line: usize, text: String, label: String) -> anyhow::Result<Example> {
    if text.trim().is_empty() {
        return Err(error::user(format!(
            "{}:{line}: empty text",
            path.display()
        )));
    }
    if label.trim().is_empty() {
        return Err(error::user(format!(
            "{}:{line}: empty label",
            path.display()
        )));
    }
    if let Some(why) = crate::store::config_file::class_name_problem(label.trim()) {
        return Err(error::user(format!(
            "{}:{line}: label '{}' {why}",
            path.display(),
            label.trim().escape_debug()
        )));
    }
    Ok(Example {
        text,
        label: label.trim().to_string(),
        line,
    })
}

fn read_jsonl(path: &Path, content: &str, cols: &Columns) -> anyhow::Result<Vec<Example>> {
    let mut out = Vec::new();
    for (i, raw) in content.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let obj: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(raw).map_err(|e| {
                error::user(format!("{}:{line}: not a JSON object: {e}", path.display()))
            })?;
        let field = |key: &str, flag: &str| -> anyhow::Result<String> {
            match obj.get(key) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                // `true` or `3` is more likely a mistake than a label.
                Some(other) => Err(error::user(format!(
                    "{}:{line}: '{key}' must be a string, found {} ({other}); write it in quotes",
                    path.display(),
                    json_kind(other)
                ))),
                None => {
                    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
                    Err(error::user(format!(
                        "{}:{line}: no '{key}' key (keys: {}); name it with {flag}",
                        path.display(),
                        keys.join(", ")
                    )))
                }
            }
        };
        let text = field(&cols.text, "--text-col")?;
        let label = field(&cols.label, "--label-col")?;
        out.push(check(path, line, text.trim().to_string(), label)?);
    }
    Ok(out)
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// One class description read from a descriptions file.
#[derive(Debug, Clone, PartialEq)]
pub struct Description {
    pub label: String,
    pub description: String,
    pub line: usize,
}

/// Read class descriptions: a two-column CSV/TSV (label, description; a
/// header row such as `label,description` is recognised and skipped) or
/// JSON Lines with `label` (or `name`) and `description` keys.
pub fn read_descriptions(path: &Path) -> anyhow::Result<Vec<Description>> {
    parse_descriptions(path, &read_utf8(path)?)
}

/// [`read_descriptions`] on content already in memory.
pub fn parse_descriptions(path: &Path, content: &str) -> anyhow::Result<Vec<Description>> {
    let content = content.strip_prefix('\u{feff}').unwrap_or(content);
    let mut out: Vec<Description> = Vec::new();
    match detect_format(path, content) {
        Format::Jsonl => {
            for (i, raw) in content.lines().enumerate() {
                let line = i + 1;
                if raw.trim().is_empty() {
                    continue;
                }
                let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(raw)
                    .map_err(|e| {
                        error::user(format!("{}:{line}: not a JSON object: {e}", path.display()))
                    })?;
                let get = |k: &str| obj.get(k).and_then(|v| v.as_str()).map(str::to_string);
                let label = get("label").or_else(|| get("name")).ok_or_else(|| {
                    error::user(format!(
                        "{}:{line}: no 'label' (or 'name') string key",
                        path.display()
                    ))
                })?;
                let description = get("description").unwrap_or_default();
                push_description(path, &mut out, line, label, description)?;
            }
        }
        fmt => {
            let delim = if fmt == Format::Tsv { b'\t' } else { b',' };
            let mut rdr = csv_reader(content, delim, false);
            for rec in rdr.records() {
                let rec = rec.map_err(|e| csv_err(path, e))?;
                let line = rec.position().map(|p| p.line() as usize).unwrap_or(0);
                if rec.iter().all(|f| f.trim().is_empty()) {
                    continue;
                }
                let label = rec.get(0).unwrap_or("").trim().to_string();
                let description = rec.get(1).unwrap_or("").trim().to_string();
                if rec.len() > 2 {
                    return Err(error::user(format!(
                        "{}:{line}: expected 2 columns (label, description), found {}; quote descriptions that contain the delimiter",
                        path.display(),
                        rec.len()
                    )));
                }
                let is_header = out.is_empty()
                    && matches!(
                        label.to_ascii_lowercase().as_str(),
                        "label" | "class" | "name"
                    )
                    && description.eq_ignore_ascii_case("description");
                if is_header {
                    continue;
                }
                push_description(path, &mut out, line, label, description)?;
            }
        }
    }
    if out.is_empty() {
        return Err(error::user(format!(
            "{}: no class descriptions found",
            path.display()
        )));
    }
    Ok(out)
}

fn push_description(
    path: &Path,
    out: &mut Vec<Description>,
    line: usize,
    label: String,
    description: String,
) -> anyhow::Result<()> {
    if let Some(why) = crate::store::config_file::class_name_problem(label.trim()) {
        return Err(error::user(format!(
            "{}:{line}: label '{}' {why}",
            path.display(),
            label.trim().escape_debug()
        )));
    }
    if let Some(prev) = out.iter().find(|d| d.label == label) {
        return Err(error::user(format!(
            "{}:{line}: label '{label}' is described twice (first on line {})",
            path.display(),
            prev.line
        )));
    }
    out.push(Description {
        label: label.trim().to_string(),
        description,
        line,
    });
    Ok(())
}

/// A user error at the first example whose label is not in `classes`.
/// `defined_in` says where the classes come from (for the message).
pub fn check_labels(
    path: &Path,
    examples: &[Example],
    classes: &[String],
    defined_in: &str,
) -> anyhow::Result<()> {
    if let Some(e) = examples.iter().find(|e| !classes.contains(&e.label)) {
        return Err(error::user(format!(
            "{}:{}: unknown label '{}' (the classes in {defined_in} are: {})",
            path.display(),
            e.line,
            e.label,
            classes.join(", ")
        )));
    }
    Ok(())
}

/// `NewSample`s for examples read from `path`, with `source` provenance
/// `file:line`.
pub fn to_samples(
    path: &Path,
    examples: Vec<Example>,
    origin: crate::domain::Origin,
) -> Vec<crate::domain::NewSample> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    examples
        .into_iter()
        .map(|e| crate::domain::NewSample {
            provenance: crate::domain::Provenance {
                source: Some(format!("{name}:{}", e.line)),
                ..Default::default()
            },
            text: e.text,
            label: e.label,
            origin,
        })
        .collect()
}
