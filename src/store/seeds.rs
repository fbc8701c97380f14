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
    /// Attribute tags from the optional attributes column
    /// (`tone=formal;length=short`, or a JSON object of strings).
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// File formats we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Tsv,
    Jsonl,
}

/// Column (or key) names of the text and the label, and of the optional
/// attribute tags.
#[derive(Debug, Clone)]
pub struct Columns {
    pub text: String,
    pub label: String,
    /// Optional column of attribute tags (`tone=formal;length=short`);
    /// a file without it has none.
    pub attributes: String,
}

/// Default name of the attributes column.
pub const ATTRIBUTES_COLUMN: &str = "attributes";

impl Default for Columns {
    fn default() -> Self {
        Columns {
            text: "text".into(),
            label: "label".into(),
            attributes: ATTRIBUTES_COLUMN.into(),
        }
    }
}

impl Columns {
    /// Text and label columns as named, the attributes column by default.
    pub fn new(text: &str, label: &str) -> Columns {
        Columns {
            text: text.into(),
            label: label.into(),
            ..Columns::default()
        }
    }
}

/// Parse one attributes field; the error names file and line, and each
/// name must be usable (see `config_file::attribute_name_problem`).
fn attributes_field(
    path: &Path,
    line: usize,
    raw: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let attrs = crate::domain::parse_attributes(raw)
        .map_err(|e| error::user(format!("{}:{line}: {e}", path.display())))?;
    check_attribute_names(path, line, &attrs)?;
    Ok(attrs)
}

fn check_attribute_names(
    path: &Path,
    line: usize,
    attrs: &std::collections::BTreeMap<String, String>,
) -> anyhow::Result<()> {
    for (d, v) in attrs {
        for name in [d, v] {
            if let Some(why) = crate::store::config_file::attribute_name_problem(name) {
                return Err(error::user(format!(
                    "{}:{line}: attribute '{}' {why}",
                    path.display(),
                    name.escape_debug()
                )));
            }
        }
    }
    Ok(())
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
    let mut out = Vec::new();
    for_each_example(path, cols, |e| {
        out.push(e);
        Ok(())
    })?;
    Ok(out)
}

/// [`read_examples`] on content already in memory; `path` names it in
/// errors and picks the format.
pub fn parse_examples(path: &Path, content: &str, cols: &Columns) -> anyhow::Result<Vec<Example>> {
    let content = content.strip_prefix('\u{feff}').unwrap_or(content);
    let fmt = detect_format(path, content);
    let mut out = Vec::new();
    let n = examples_from(path, fmt, content.as_bytes(), cols, &mut |e| {
        out.push(e);
        Ok(())
    })?;
    no_rows(path, n)?;
    Ok(out)
}

/// Stream the examples of a file to `f`, one at a time, without holding
/// the file or the examples in memory (a million-row import costs a read
/// buffer, not the file twice). Returns how many there were; the first
/// error (a malformed row, or one `f` returns) stops the read.
pub fn for_each_example(
    path: &Path,
    cols: &Columns,
    mut f: impl FnMut(Example) -> anyhow::Result<()>,
) -> anyhow::Result<usize> {
    use std::io::BufRead;
    let file = std::fs::File::open(path)
        .map_err(|e| error::user(format!("cannot read {}: {e}", path.display())))?;
    let mut r = std::io::BufReader::with_capacity(1 << 16, file);
    let head = r
        .fill_buf()
        .map_err(|e| error::user(format!("cannot read {}: {e}", path.display())))?;
    let bom = head.starts_with(b"\xEF\xBB\xBF");
    let fmt = detect_format(path, &String::from_utf8_lossy(head));
    if bom {
        r.consume(3);
    }
    let n = examples_from(path, fmt, r, cols, &mut f)?;
    no_rows(path, n)?;
    Ok(n)
}

fn no_rows(path: &Path, n: usize) -> anyhow::Result<()> {
    if n == 0 {
        return Err(error::user(format!(
            "{}: no examples found (the file has no data rows)",
            path.display()
        )));
    }
    Ok(())
}

type Sink<'a> = dyn FnMut(Example) -> anyhow::Result<()> + 'a;

fn examples_from<R: std::io::BufRead>(
    path: &Path,
    fmt: Format,
    r: R,
    cols: &Columns,
    f: &mut Sink<'_>,
) -> anyhow::Result<usize> {
    match fmt {
        Format::Csv => read_delimited(path, r, b',', cols, f),
        Format::Tsv => read_delimited(path, r, b'\t', cols, f),
        Format::Jsonl => read_jsonl(path, r, cols, f),
    }
}

/// A field as UTF-8, or a user error naming the line and the byte.
fn utf8_field<'a>(path: &Path, line: usize, b: &'a [u8]) -> anyhow::Result<&'a str> {
    std::str::from_utf8(b).map_err(|e| {
        error::user(format!(
            "{}:{line}: not valid UTF-8 (byte {} of the field); save the file as UTF-8",
            path.display(),
            e.valid_up_to() + 1
        ))
    })
}

fn csv_reader<R: std::io::Read>(r: R, delim: u8, headers: bool) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .delimiter(delim)
        .has_headers(headers)
        .flexible(true)
        .quoting(delim == b',')
        .from_reader(r)
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

fn read_delimited<R: std::io::Read>(
    path: &Path,
    r: R,
    delim: u8,
    cols: &Columns,
    f: &mut Sink<'_>,
) -> anyhow::Result<usize> {
    let mut rdr = csv_reader(r, delim, true);
    let headers = rdr.byte_headers().map_err(|e| csv_err(path, e))?.clone();
    let headers: Vec<String> = headers
        .iter()
        .map(|h| utf8_field(path, 1, h).map(str::to_string))
        .collect::<anyhow::Result<_>>()?;
    let find = |name: &str| headers.iter().position(|h| h.trim() == name);
    let names = || headers.join(", ");
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
    let ai = find(&cols.attributes);
    let mut n = 0;
    let mut rec = csv::ByteRecord::new();
    while rdr
        .read_byte_record(&mut rec)
        .map_err(|e| csv_err(path, e))?
    {
        let line = rec.position().map(|p| p.line() as usize).unwrap_or(0);
        if rec.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
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
        let text = utf8_field(path, line, &rec[ti])?.trim().to_string();
        let label = utf8_field(path, line, &rec[li])?.trim().to_string();
        let mut e = check(path, line, text, label)?;
        if let Some(ai) = ai {
            e.attributes = attributes_field(path, line, utf8_field(path, line, &rec[ai])?)?;
        }
        f(e)?;
        n += 1;
    }
    Ok(n)
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
        attributes: Default::default(),
    })
}

fn read_jsonl<R: std::io::BufRead>(
    path: &Path,
    mut r: R,
    cols: &Columns,
    f: &mut Sink<'_>,
) -> anyhow::Result<usize> {
    let mut n = 0;
    let mut buf = Vec::new();
    let mut line = 0;
    loop {
        buf.clear();
        let got = r
            .read_until(b'\n', &mut buf)
            .map_err(|e| error::user(format!("cannot read {}: {e}", path.display())))?;
        if got == 0 {
            break;
        }
        line += 1;
        let raw = utf8_field(path, line, &buf)?;
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
        let mut e = check(path, line, text.trim().to_string(), label)?;
        match obj.get(&cols.attributes) {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(s)) => e.attributes = attributes_field(path, line, s)?,
            Some(serde_json::Value::Object(m)) => {
                for (d, v) in m {
                    let serde_json::Value::String(v) = v else {
                        return Err(error::user(format!(
                            "{}:{line}: attribute '{d}' must be a string, found {}",
                            path.display(),
                            json_kind(v)
                        )));
                    };
                    e.attributes
                        .insert(d.trim().to_string(), v.trim().to_string());
                }
                check_attribute_names(path, line, &e.attributes)?;
            }
            Some(other) => {
                return Err(error::user(format!(
                    "{}:{line}: '{}' must be \"dimension=value;…\" or an object of strings, found {}",
                    path.display(),
                    cols.attributes,
                    json_kind(other)
                )));
            }
        }
        f(e)?;
        n += 1;
    }
    Ok(n)
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
            let mut rdr = csv_reader(content.as_bytes(), delim, false);
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

/// Drop exact duplicates (same text and label, after the first) and say
/// so; report texts that appear with more than one label (kept: which one
/// is right is the user's call). One warning line per kind of problem,
/// with counts and the first lines, `file:line`.
pub fn dedup_examples(path: &Path, examples: Vec<Example>) -> (Vec<Example>, Vec<String>) {
    use std::collections::HashMap;
    let mut first: HashMap<(String, String), usize> = HashMap::new();
    let mut label_of: HashMap<String, (String, usize)> = HashMap::new();
    let (mut dups, mut conflicts) = (Vec::new(), Vec::new());
    let mut kept = Vec::with_capacity(examples.len());
    for e in examples {
        let key = (e.text.clone(), e.label.clone());
        if let Some(&at) = first.get(&key) {
            dups.push((e.line, at));
            continue;
        }
        first.insert(key, e.line);
        match label_of.get(&e.text) {
            Some((l, at)) if *l != e.label => {
                conflicts.push((e.line, *at, l.clone(), e.label.clone()))
            }
            Some(_) => {}
            None => {
                label_of.insert(e.text.clone(), (e.label.clone(), e.line));
            }
        }
        kept.push(e);
    }
    let p = path.display();
    let mut msgs = Vec::new();
    if !dups.is_empty() {
        let (line, at) = dups[0];
        msgs.push(format!(
            "{p}:{line}: {} exact duplicate example{} dropped (this one repeats line {at})",
            dups.len(),
            if dups.len() == 1 { "" } else { "s" }
        ));
    }
    if !conflicts.is_empty() {
        let (line, at, a, b) = &conflicts[0];
        msgs.push(format!(
            "{p}:{line}: {} text{} labelled differently elsewhere (this one '{b}', line {at} \
             '{a}'); both kept — fix the file if one is wrong",
            conflicts.len(),
            if conflicts.len() == 1 { "" } else { "s" }
        ));
    }
    (kept, msgs)
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
                source: Some(format!("{name}:{}", e.line).into()),
                attributes: e.attributes,
                ..Default::default()
            },
            text: e.text,
            label: e.label,
            origin,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(name: &str, content: &str) -> anyhow::Result<Vec<Example>> {
        parse_examples(Path::new(name), content, &Columns::default())
    }

    #[test]
    fn an_attributes_column_tags_the_examples() {
        let csv = "text,label,attributes\n\"Hi, there\",greet,tone=casual; length=short\nGood day,greet,\n";
        let ex = read("s.csv", csv).unwrap();
        assert_eq!(
            domain_attrs(&ex[0]),
            [("length", "short"), ("tone", "casual")]
        );
        assert!(ex[1].attributes.is_empty());
        let jsonl = "{\"text\":\"a\",\"label\":\"x\",\"attributes\":\"tone=formal\"}\n\
                     {\"text\":\"b\",\"label\":\"x\",\"attributes\":{\"tone\":\"angry\",\"length\":\"long\"}}\n\
                     {\"text\":\"c\",\"label\":\"x\"}\n";
        let ex = read("s.jsonl", jsonl).unwrap();
        assert_eq!(domain_attrs(&ex[0]), [("tone", "formal")]);
        assert_eq!(
            domain_attrs(&ex[1]),
            [("length", "long"), ("tone", "angry")]
        );
        assert!(ex[2].attributes.is_empty());
        // Without the column: no tags, no error.
        assert!(
            read("s.csv", "text,label\na,x\n").unwrap()[0]
                .attributes
                .is_empty()
        );
    }

    #[test]
    fn bad_attribute_tags_name_file_and_line() {
        let err = read(
            "s.csv",
            "text,label,attributes\na,x,tone=formal\nb,x,formal\n",
        )
        .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "s.csv:3: attribute 'formal' is not dimension=value (e.g. tone=formal;length=short)"
        );
        let err = read("s.csv", "text,label,attributes\na,x,tone=a;tone=b\n").unwrap_err();
        assert!(format!("{err:#}").contains("s.csv:2: attribute dimension 'tone' appears twice"));
        let err = read(
            "s.jsonl",
            "{\"text\":\"a\",\"label\":\"x\",\"attributes\":3}\n",
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").starts_with("s.jsonl:1: 'attributes' must be"),
            "{err:#}"
        );
        let err = read(
            "s.jsonl",
            "{\"text\":\"a\",\"label\":\"x\",\"attributes\":{\"a;b\":\"c\"}}\n",
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("must not contain '=' or ';'"),
            "{err:#}"
        );
    }

    fn domain_attrs(e: &Example) -> Vec<(&str, &str)> {
        e.attributes
            .iter()
            .map(|(d, v)| (d.as_str(), v.as_str()))
            .collect()
    }
}
