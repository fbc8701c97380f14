//! Export: the accepted examples as JSONL, CSV or a Hugging Face
//! `datasets` folder (`straddle export`, the TUI's `E`).
//!
//! Rows are the accepted generated examples (final text after edits, final
//! label after relabel/decision — see `SampleState::effective_label`), plus
//! the seeds with `--include-seeds`. Held-out examples (validation/test
//! origin) are never exported as training data. The train/validation split
//! is stratified by label and deterministic: within each label the rows are
//! ordered by a SHA-256 of (seed, sample id) and the first
//! `round(n · fraction)` go to validation. Files are written atomically and
//! rows are in sample-id order, so re-exports diff cleanly. Export reads a
//! snapshot ([`Source`]): the CLI's read-only project, the TUI's own fold.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::domain::{
    Actor, DecisionKind, Origin, ProjectConfig, ProjectState, SampleState, Status,
};
use crate::error;
use crate::store::Project;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
    Hf,
}

/// What to export and where (the CLI's flags, the TUI's export form).
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRequest {
    pub format: ExportFormat,
    /// Output file (jsonl, csv: the train file; the validation file gets a
    /// `.validation` suffix) or folder (hf).
    pub out: PathBuf,
    pub include_seeds: bool,
    /// Share of rows for the validation split (stratified by label).
    pub val_fraction: f64,
    /// Seed of the split.
    pub seed: u64,
    /// Write the provenance fields (id, origin, intended label, strategy,
    /// α, model, verdict, decision …) besides text and label, in every
    /// format. [`ExportFormat::default_provenance`] says the usual choice.
    pub with_provenance: bool,
}

impl ExportFormat {
    /// Whether rows carry provenance unless asked otherwise: JSONL and
    /// `hf` are records for tools (yes), CSV is for spreadsheets (no).
    pub fn default_provenance(self) -> bool {
        match self {
            ExportFormat::Jsonl | ExportFormat::Hf => true,
            ExportFormat::Csv => false,
        }
    }
}

/// The project data an export reads: a snapshot, not the journal file.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// Named in messages.
    pub dir: &'a Path,
    pub config: &'a ProjectConfig,
    pub state: &'a ProjectState,
}

/// One exported row: a sample and its final label.
struct Row<'a> {
    s: &'a SampleState,
    label: &'a str,
}

/// The rows split into train and validation.
struct Split<'a> {
    train: Vec<Row<'a>>,
    validation: Vec<Row<'a>>,
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    /// Files written, train first (for `hf` also the dataset card).
    pub files: Vec<PathBuf>,
    /// Rows in the train and validation splits.
    pub train: usize,
    pub validation: usize,
}

impl ExportReport {
    /// One sentence: the row counts and where they went.
    pub fn summary(&self) -> String {
        format!(
            "Exported {} train and {} validation rows to {}.",
            self.train,
            self.validation,
            self.files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// Open the project in `dir` read-only (works while the app holds it)
/// and export it. Prints nothing; relative paths in `req.out` are taken
/// relative to the current folder, as on the command line.
pub fn export(dir: &Path, req: &ExportRequest) -> anyhow::Result<ExportReport> {
    check_args(req)?;
    let project = Project::open_read_only(dir)?;
    export_from(
        &Source {
            dir,
            config: project.config(),
            state: project.state(),
        },
        req,
    )
}

fn check_args(args: &ExportRequest) -> anyhow::Result<()> {
    if !(0.0..1.0).contains(&args.val_fraction) {
        return Err(error::user(format!(
            "--val-fraction must be in [0, 1), got {}",
            args.val_fraction
        )));
    }
    Ok(())
}

/// Export a snapshot of a project as `args` say. Prints nothing.
pub fn export_from(src: &Source<'_>, args: &ExportRequest) -> anyhow::Result<ExportReport> {
    check_args(args)?;
    let rows = select_rows(src.state, args.include_seeds);
    if rows.is_empty() {
        return Err(error::user(format!(
            "nothing to export from {}: no accepted generated examples{}",
            src.dir.display(),
            if args.include_seeds {
                " and no seeds"
            } else {
                " (add --include-seeds to export the seeds)"
            }
        )));
    }
    let split = split_rows(rows, args.val_fraction, args.seed);
    if args.format != ExportFormat::Hf && args.out.is_dir() {
        return Err(error::user(format!(
            "--out {} is a folder; give a file name (e.g. {}/data.{})",
            args.out.display(),
            args.out.display(),
            if args.format == ExportFormat::Csv {
                "csv"
            } else {
                "jsonl"
            }
        )));
    }
    let files = match args.format {
        ExportFormat::Jsonl => write_jsonl(&args.out, &split, args.with_provenance)?,
        ExportFormat::Csv => write_csv(&args.out, &split, args.with_provenance)?,
        ExportFormat::Hf => write_hf(&args.out, src, &split, args)?,
    };
    Ok(ExportReport {
        files,
        train: split.train.len(),
        validation: split.validation.len(),
    })
}

fn select_rows(st: &ProjectState, include_seeds: bool) -> Vec<Row<'_>> {
    st.samples
        .iter()
        .filter(|s| match s.origin {
            Origin::Generated => s.status() == Status::Accepted,
            Origin::Seed => include_seeds,
            Origin::Validation | Origin::Test => false,
        })
        .map(|s| Row {
            s,
            label: s.effective_label(st.take_relabel),
        })
        .collect()
}

fn split_key(seed: u64, id: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(id.to_le_bytes());
    h.finalize().into()
}

fn split_rows(rows: Vec<Row<'_>>, fraction: f64, seed: u64) -> Split<'_> {
    let mut by_label: BTreeMap<&str, Vec<Row<'_>>> = BTreeMap::new();
    for r in rows {
        by_label.entry(r.label).or_default().push(r);
    }
    let mut split = Split {
        train: Vec::new(),
        validation: Vec::new(),
    };
    for (_, mut group) in by_label {
        group.sort_by_cached_key(|r| split_key(seed, r.s.id));
        let n = group.len();
        let n_val = ((n as f64 * fraction).round() as usize).min(n.saturating_sub(1));
        let train = group.split_off(n_val);
        split.validation.extend(group);
        split.train.extend(train);
    }
    split.train.sort_by_key(|r| r.s.id);
    split.validation.sort_by_key(|r| r.s.id);
    split
}

fn actor_str(a: &Actor) -> String {
    match a {
        Actor::Key(k) => format!("key:{k}"),
        Actor::Rule(r) => format!("rule:{r}"),
        Actor::Auto(x) => format!("auto:{x}"),
    }
}

/// The JSONL row: text, label and every provenance field (null when unset).
fn row_json(r: &Row<'_>) -> Value {
    let s = r.s;
    let p = &s.provenance;
    let v = s.verdict();
    let d = s.decision();
    json!({
        "text": s.text(),
        "label": r.label,
        "id": s.id,
        "origin": s.origin_tag(),
        "intended_label": s.label,
        "original_text": if s.is_edited() { Some(&*s.original_text) } else { None },
        "strategy": p.strategy,
        "classes": p.classes,
        "minor": p.minor,
        "alpha": p.alpha,
        "template": p.template,
        "template_hash": p.template_hash,
        "model": p.model,
        "request_id": p.request_id,
        "temperature": p.temperature,
        "round": p.round,
        "source": p.source,
        "attributes": (!p.attributes.is_empty()).then_some(&p.attributes),
        "verdict_label": v.and_then(|v| v.label.clone()),
        "verdict_confidence": v.map(|v| v.top_confidence()),
        "verdict_method": v.map(|v| serde_json::to_value(v.method).unwrap_or(Value::Null)),
        "decision": d.map(|d| match d.kind { DecisionKind::Accept => "accept", DecisionKind::Reject => "reject" }),
        "actor": d.map(|d| actor_str(&d.by)),
    })
}

/// The row without provenance: text and label only.
fn plain_row_json(r: &Row<'_>) -> Value {
    json!({ "text": r.s.text(), "label": r.label })
}

/// Write an export file atomically, with every registered secret redacted
/// (a key a server echoed into a generated text does not leave in a
/// dataset).
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let text = String::from_utf8_lossy(bytes);
    crate::store::write_atomic(path, crate::secrets::redact(&text).as_bytes())
}

/// `out` with `.validation` before the extension: `a/x.jsonl` → `a/x.validation.jsonl`.
fn validation_path(out: &Path, ext: &str) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".into());
    let ext = out
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_else(|| ext.into());
    out.with_file_name(format!("{stem}.validation.{ext}"))
}

fn ensure_parent(p: &Path) -> anyhow::Result<()> {
    if let Some(d) = p.parent().filter(|d| !d.as_os_str().is_empty())
        && !d.is_dir()
    {
        std::fs::create_dir_all(d)
            .map_err(|e| error::user(format!("cannot create folder {}: {e}", d.display())))?;
    }
    Ok(())
}

fn jsonl_bytes(rows: &[Row<'_>], row: fn(&Row<'_>) -> Value) -> Vec<u8> {
    let mut out = String::new();
    for r in rows {
        out.push_str(&row(r).to_string());
        out.push('\n');
    }
    out.into_bytes()
}

/// Columns of the `hf` rows that are strings ("" when unset).
const HF_STRING_COLS: &[&str] = &[
    "origin",
    "intended_label",
    "strategy",
    "model",
    "request_id",
    "verdict_label",
    "decision",
    "actor",
];

/// The `hf` row: a fixed schema that `datasets` infers the same way for
/// every split. Arrow types a column that is null in every row of a split
/// as `null`, and `datasets` then fails to cast the other split to it (a
/// `round` or `original_text` that occurs only in validation would do
/// that). So here strings are "" when unset, and the full provenance with
/// its optional numbers (alpha, confidence, temperature, round) travels as
/// one JSON-encoded string column, `provenance`.
fn hf_row_json(r: &Row<'_>) -> Value {
    let full = row_json(r);
    let mut o = serde_json::Map::new();
    o.insert("text".into(), full["text"].clone());
    o.insert("label".into(), full["label"].clone());
    o.insert("id".into(), full["id"].clone());
    for c in HF_STRING_COLS {
        let v = match &full[*c] {
            Value::Null => Value::String(String::new()),
            v => v.clone(),
        };
        o.insert(c.to_string(), v);
    }
    o.insert(
        "attributes".into(),
        Value::String(r.s.provenance.attributes_column()),
    );
    o.insert("provenance".into(), Value::String(full.to_string()));
    Value::Object(o)
}

fn write_jsonl(out: &Path, split: &Split<'_>, provenance: bool) -> anyhow::Result<Vec<PathBuf>> {
    ensure_parent(out)?;
    let row = if provenance { row_json } else { plain_row_json };
    write_atomic(out, &jsonl_bytes(&split.train, row))?;
    let mut written = vec![out.to_path_buf()];
    if !split.validation.is_empty() {
        let vp = validation_path(out, "jsonl");
        write_atomic(&vp, &jsonl_bytes(&split.validation, row))?;
        written.push(vp);
    }
    Ok(written)
}

const PROVENANCE_COLS: &[&str] = &[
    "id",
    "origin",
    "intended_label",
    "strategy",
    "classes",
    "minor",
    "alpha",
    "template",
    "template_hash",
    "model",
    "request_id",
    "verdict_label",
    "verdict_confidence",
    "decision",
    "actor",
    "attributes",
];

fn csv_cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(csv_cell).collect::<Vec<_>>().join("|"),
        // Attributes: `tone=formal;length=short`, the import column's form.
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", csv_cell(v)))
            .collect::<Vec<_>>()
            .join(";"),
        other => other.to_string(),
    }
}

/// A CSV cell safe to open in a spreadsheet: control characters escaped
/// (newlines and tabs are fine inside a quoted cell), and a cell starting
/// with `=`, `+`, `-`, `@`, tab or carriage return prefixed with `'` so it
/// is not run as a formula (OWASP's rule for CSV injection).
pub fn csv_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    let cell = crate::secrets::escape_controls(cell);
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        cell
    }
}

/// `attributes`: add the attributes column (`tone=formal;length=short`)
/// after the label even without the provenance columns (the project
/// generated with attributes).
fn csv_bytes(rows: &[Row<'_>], provenance: bool, attributes: bool) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["text", "label"];
    let attributes = attributes && !provenance;
    if attributes {
        header.push("attributes");
    }
    if provenance {
        header.extend_from_slice(PROVENANCE_COLS);
    }
    w.write_record(&header)?;
    for r in rows {
        let mut rec = vec![r.s.text().to_string(), r.label.to_string()];
        if attributes {
            rec.push(r.s.provenance.attributes_column());
        }
        if provenance {
            let j = row_json(r);
            rec.extend(PROVENANCE_COLS.iter().map(|c| csv_cell(&j[*c])));
        }
        w.write_record(rec.iter().map(|c| csv_safe(c).into_owned()))?;
    }
    w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
}

fn write_csv(out: &Path, split: &Split<'_>, provenance: bool) -> anyhow::Result<Vec<PathBuf>> {
    ensure_parent(out)?;
    let attributes = split
        .train
        .iter()
        .chain(&split.validation)
        .any(|r| !r.s.provenance.attributes.is_empty());
    write_atomic(out, &csv_bytes(&split.train, provenance, attributes)?)?;
    let mut written = vec![out.to_path_buf()];
    if !split.validation.is_empty() {
        let vp = validation_path(out, "csv");
        write_atomic(&vp, &csv_bytes(&split.validation, provenance, attributes)?)?;
        written.push(vp);
    }
    Ok(written)
}

fn write_hf(
    out: &Path,
    src: &Source<'_>,
    split: &Split<'_>,
    args: &ExportRequest,
) -> anyhow::Result<Vec<PathBuf>> {
    if out.exists() && !out.is_dir() {
        return Err(error::user(format!(
            "--out {} exists and is not a folder (the hf format writes a folder)",
            out.display()
        )));
    }
    std::fs::create_dir_all(out)
        .map_err(|e| error::user(format!("cannot create folder {}: {e}", out.display())))?;
    let row = if args.with_provenance {
        hf_row_json
    } else {
        plain_row_json
    };
    let train = out.join("train.jsonl");
    write_atomic(&train, &jsonl_bytes(&split.train, row))?;
    let mut written = vec![train];
    let val = out.join("validation.jsonl");
    if split.validation.is_empty() {
        // A stale file from an earlier export would be read as a split.
        let _ = std::fs::remove_file(&val);
    } else {
        write_atomic(&val, &jsonl_bytes(&split.validation, row))?;
        written.push(val);
    }
    let readme = out.join("README.md");
    write_atomic(&readme, dataset_card(src, split, args).as_bytes())?;
    written.push(readme);
    Ok(written)
}

/// The `README.md` dataset card: YAML header naming the splits, then class
/// counts, generation settings, model and acceptance figures.
/// Text for one cell of a Markdown table: `|` escaped, line breaks and
/// other control characters turned into spaces.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// "a–b" of the values seen, "a" when they are all one, "not recorded"
/// when there are none.
fn range(values: impl Iterator<Item = f64>) -> String {
    let (mut lo, mut hi, mut n) = (f64::INFINITY, f64::NEG_INFINITY, 0);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
        n += 1;
    }
    if n == 0 {
        "not recorded".into()
    } else if lo == hi {
        format!("{lo:.2}")
    } else {
        format!("{lo:.2}–{hi:.2}")
    }
}

/// "`a` (12), `b` (3)": each distinct value with how many rows have it,
/// most first; "not recorded" when none has one.
fn tally<'a>(values: impl Iterator<Item = Option<&'a str>>) -> String {
    let mut n: BTreeMap<&str, usize> = BTreeMap::new();
    for v in values.flatten() {
        *n.entry(v).or_default() += 1;
    }
    if n.is_empty() {
        return "not recorded".into();
    }
    let mut v: Vec<(&str, usize)> = n.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v.iter()
        .map(|(k, c)| format!("`{}` ({c})", md_cell(k)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The card's lines on how the exported generated rows were made, from
/// their provenance: models, strategies, templates, α and temperature.
fn generation_summary(rows: &[&SampleState]) -> String {
    if rows.is_empty() {
        return "- no generated rows exported\n".into();
    }
    let p = |f: fn(&SampleState) -> Option<&str>| tally(rows.iter().map(|s| f(s)));
    let mut o = String::new();
    let _ = writeln!(o, "- generated rows: {}", rows.len());
    let _ = writeln!(o, "- models: {}", p(|s| s.provenance.model.as_deref()));
    let _ = writeln!(
        o,
        "- strategies: {}",
        p(|s| s.provenance.strategy.as_deref())
    );
    let _ = writeln!(
        o,
        "- templates: {}",
        p(|s| s.provenance.template.as_deref())
    );
    let _ = writeln!(
        o,
        "- α (share of the intended class): {}",
        range(rows.iter().filter_map(|s| s.provenance.alpha))
    );
    let _ = writeln!(
        o,
        "- temperature: {}",
        range(rows.iter().filter_map(|s| s.provenance.temperature))
    );
    o
}

/// The judges measured on held-out examples (`straddle judge`), with
/// chance beside each; says so when none was.
fn judges_summary(st: &ProjectState) -> String {
    if st.judges.is_empty() {
        return "- judges: not measured on held-out examples (`straddle judge`)\n".into();
    }
    let mut o = String::new();
    for (name, j) in &st.judges {
        let r = &j.report;
        let _ = writeln!(
            o,
            "- judge `{}`: accuracy {:.3} on {} held-out examples (chance {:.3}, majority class {:.3}){}",
            md_cell(name),
            r.accuracy,
            r.n,
            r.chance,
            r.majority,
            if r.trusted() { "" } else { " — not trusted" }
        );
    }
    o
}

/// The card's coverage per attribute value (declared ones first, with
/// zeros, then any other found in the rows); nothing when the project has
/// no attributes.
fn attribute_card(w: &mut String, cfg: &ProjectConfig, split: &Split<'_>) {
    let mut values: Vec<(String, String, String)> = cfg
        .attributes
        .iter()
        .flat_map(|(d, a)| {
            a.values
                .iter()
                .map(move |(v, desc)| (d.clone(), v.clone(), desc.clone()))
        })
        .collect();
    for r in split.train.iter().chain(&split.validation) {
        for (d, v) in &r.s.provenance.attributes {
            if !values.iter().any(|(d2, v2, _)| d2 == d && v2 == v) {
                values.push((d.clone(), v.clone(), String::new()));
            }
        }
    }
    if values.is_empty() {
        return;
    }
    let count = |rows: &[Row<'_>], d: &str, v: &str| {
        rows.iter()
            .filter(|r| r.s.provenance.attributes.get(d).map(String::as_str) == Some(v))
            .count()
    };
    let _ = writeln!(
        w,
        "## Attributes\n\nExamples per attribute value they were asked to express \
         (`attributes` strategy) or were tagged with at import.\n\n\
         | attribute | value | description | train | validation |\n|---|---|---|---:|---:|"
    );
    for (d, v, desc) in &values {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} |",
            md_cell(d),
            md_cell(v),
            md_cell(desc),
            count(&split.train, d, v),
            count(&split.validation, d, v)
        );
    }
    let untagged = split
        .train
        .iter()
        .chain(&split.validation)
        .filter(|r| r.s.provenance.attributes.is_empty())
        .count();
    let _ = writeln!(w, "\nWithout attributes: {untagged}.\n");
}

fn dataset_card(src: &Source<'_>, split: &Split<'_>, args: &ExportRequest) -> String {
    let cfg = src.config;
    let st = src.state;
    let mut o = String::new();
    let w = &mut o;
    let _ = writeln!(
        w,
        "---\ntask_categories:\n- text-classification\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: train.jsonl"
    );
    if !split.validation.is_empty() {
        let _ = writeln!(w, "  - split: validation\n    path: validation.jsonl");
    }
    let _ = writeln!(
        w,
        "---\n\n# {}\n\n{}\n",
        cfg.task.name, cfg.task.description
    );
    let _ = writeln!(
        w,
        "Made with straddle: an LLM generated examples near class boundaries, \
         relabelled them, and people reviewed them. Load with\n\
         `datasets.load_dataset(\"json\", data_dir=\"<this folder>\")`.\n"
    );
    let _ = writeln!(
        w,
        "## Classes\n\n| class | description | train | validation | seed | generated | edited |\n|---|---|---:|---:|---:|---:|---:|"
    );
    let count = |rows: &[Row<'_>], c: &str| rows.iter().filter(|r| r.label == c).count();
    let all: Vec<&Row<'_>> = split.train.iter().chain(&split.validation).collect();
    let origin = |c: &str, tag: &str| {
        all.iter()
            .filter(|r| r.label == c && r.s.origin_tag() == tag)
            .count()
    };
    let mut names: Vec<&str> = cfg.classes.iter().map(|c| c.name.as_str()).collect();
    for r in split.train.iter().chain(&split.validation) {
        if !names.contains(&r.label) {
            names.push(r.label);
        }
    }
    for n in &names {
        let desc = cfg
            .classes
            .iter()
            .find(|c| c.name == *n)
            .map(|c| md_cell(&c.description))
            .unwrap_or_default();
        let _ = writeln!(
            w,
            "| {} | {desc} | {} | {} | {} | {} | {} |",
            md_cell(n),
            count(&split.train, n),
            count(&split.validation, n),
            origin(n, "seed"),
            origin(n, "generated"),
            origin(n, "edited"),
        );
    }
    let total = |tag: &str| all.iter().filter(|r| r.s.origin_tag() == tag).count();
    let _ = writeln!(
        w,
        "| **total** | | {} | {} | {} | {} | {} |\n",
        split.train.len(),
        split.validation.len(),
        total("seed"),
        total("generated"),
        total("edited"),
    );
    attribute_card(w, cfg, split);
    let generated: Vec<&SampleState> = st.generated().collect();
    let by = |x: Status| generated.iter().filter(|s| s.status() == x).count();
    let (acc, rej, pend) = (
        by(Status::Accepted),
        by(Status::Rejected),
        by(Status::Pending),
    );
    let decided = acc + rej;
    let pct = |a: usize, b: usize| {
        if b == 0 {
            "n/a".to_string()
        } else {
            format!("{:.1}%", 100.0 * a as f64 / b as f64)
        }
    };
    let with_verdict = generated.iter().filter(|s| s.agrees().is_some()).count();
    let agreeing = generated
        .iter()
        .filter(|s| s.agrees() == Some(true))
        .count();
    let edited = generated.iter().filter(|s| s.is_edited()).count();
    let seeds = split
        .train
        .iter()
        .chain(&split.validation)
        .filter(|r| r.s.origin == Origin::Seed)
        .count();
    let _ = writeln!(w, "## Acceptance\n");
    let _ = writeln!(w, "- generated: {}", generated.len());
    let _ = writeln!(w, "- accepted: {acc}, rejected: {rej}, pending: {pend}");
    // A person's rate: duplicates and other automatic decisions are not
    // reviews.
    let by_person = |k: DecisionKind| {
        generated
            .iter()
            .filter_map(|s| s.decision())
            .filter(|d| d.by.is_person() && d.kind == k)
            .count()
    };
    let (pacc, prej) = (
        by_person(DecisionKind::Accept),
        by_person(DecisionKind::Reject),
    );
    let _ = writeln!(
        w,
        "- acceptance rate of people's decisions (accepted / decided): {}; {} decided automatically (duplicates, rules `loop` ran)",
        pct(pacc, pacc + prej),
        decided - pacc - prej
    );
    let _ = writeln!(
        w,
        "- relabel agreed with the intended label: {} of {with_verdict} ({})",
        agreeing,
        pct(agreeing, with_verdict)
    );
    let _ = writeln!(w, "- edited by hand: {edited}");
    let _ = writeln!(w, "- generation failures: {}", st.failures.len());
    let _ = writeln!(
        w,
        "- real seed examples included: {seeds}{}\n",
        if args.include_seeds {
            ""
        } else {
            " (not requested)"
        }
    );
    // What the exported rows were generated with (not today's settings).
    let _ = writeln!(w, "## Generation of the exported rows\n");
    let rows: Vec<&SampleState> = split
        .train
        .iter()
        .chain(&split.validation)
        .map(|r| r.s)
        .filter(|s| s.origin == Origin::Generated)
        .collect();
    let _ = writeln!(w, "{}", generation_summary(&rows));
    let _ = writeln!(
        w,
        "- relabel: {} (take relabel label on disagreement: {})",
        if cfg.relabel.enabled { "on" } else { "off" },
        st.take_relabel
    );
    let _ = writeln!(w, "{}", judges_summary(st));
    let u = &st.usage;
    let _ = writeln!(
        w,
        "- LLM usage: {} requests ({} cached), {} prompt + {} completion tokens, cost {:.4}",
        u.requests, u.cached, u.prompt_tokens, u.completion_tokens, u.cost
    );
    let _ = writeln!(
        w,
        "- split: {:.0}% validation, stratified by label, seed {}\n",
        args.val_fraction * 100.0,
        args.seed
    );
    if !args.with_provenance {
        let _ = writeln!(
            w,
            "## Fields\n\n`text`, `label` (final label after relabel and review); \
             exported without provenance.\n"
        );
        return o;
    }
    let _ = writeln!(
        w,
        "## Fields\n\n`text`, `label` (final label after relabel and review), `id`, `origin` \
         (seed / generated / edited), `intended_label`, `strategy`, `model`, `request_id`, \
         `verdict_label`, `decision`, `actor` (who decided: `key:<key>`, `rule:<rule>`), \
         `attributes` (`tone=formal;length=short`); \
         these are \"\" when they do not apply. `provenance` is a JSON string with the \
         full record: the fields above plus `original_text` (before a hand edit), `classes`, \
         `minor`, `alpha`, `template`, `template_hash`, `temperature`, `round`, `source`, \
         `verdict_confidence`, `verdict_method`.\n"
    );
    o
}
