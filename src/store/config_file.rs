//! Reading and writing `straddle.toml`.
//!
//! The file is rendered by hand so that every setting carries a comment
//! (serializers drop comments). Values are formatted with `toml::Value`'s
//! own display, so quoting and escaping are always valid TOML. Unset
//! optional settings are written as commented-out examples.

use std::fmt::Write as _;
use std::path::Path;

use crate::domain::{BackendConfig, ProjectConfig};
use crate::error;

/// File name of the config inside the project folder.
pub const CONFIG_FILE: &str = "straddle.toml";

/// Read and validate `path`. Errors are user errors naming the file and the
/// line/key that is wrong.
pub fn read_config(path: &Path) -> anyhow::Result<ProjectConfig> {
    let bytes = std::fs::read(path)
        .map_err(|e| error::user(format!("cannot read {}: {e}", path.display())))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = line_of(e.as_bytes(), e.utf8_error().valid_up_to());
        error::user(format!("{}:{line}: not valid UTF-8", path.display()))
    })?;
    parse_config(&text).map_err(|msg| {
        // "line N: …" becomes "FILE:N: …", the form editors jump to.
        let located = msg.strip_prefix("line ").and_then(|rest| {
            let (n, rest) = rest.split_once(": ")?;
            n.parse::<usize>().ok().map(|n| (n, rest))
        });
        match located {
            Some((n, rest)) => error::user(format!("{}:{n}: {rest}", path.display())),
            None => error::user(format!("{}: {msg}", path.display())),
        }
    })
}

/// Parse and validate config text; the error says which line or key.
pub fn parse_config(text: &str) -> Result<ProjectConfig, String> {
    let cfg: ProjectConfig = toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map(|s| format!("line {}: ", line_of(text.as_bytes(), s.start)))
            .unwrap_or_default();
        format!("{at}{}", e.message().trim())
    })?;
    check_unknown_keys(text, &cfg)?;
    validate(&cfg).map_err(|msg| match key_line(text, &msg) {
        Some(n) => format!("line {n}: {msg}"),
        None => msg,
    })?;
    Ok(cfg)
}

/// The line setting the key a [`validate`] message starts with
/// (`backend.timeout_s: …`, `classes[2].name: …`, `classes[2] ('x').weight: …`).
fn key_line(text: &str, msg: &str) -> Option<usize> {
    let path = msg.split(": ").next()?;
    let path: String = {
        // Drop a "('name')" annotation.
        let mut p = path.to_string();
        if let (Some(a), Some(b)) = (p.find(" ('"), p.rfind("')")) {
            p.replace_range(a..b + 2, "");
        }
        p
    };
    // The key may be dotted (`values.formal` under `[attributes.tone]`):
    // try every split of the path into a table header and a key, longest
    // header first, then the table header itself (`[attributes.tone]`).
    let cuts: Vec<usize> = path.match_indices('.').map(|(i, _)| i).collect();
    for &cut in cuts.iter().rev() {
        let (section, key) = (&path[..cut], &path[cut + 1..]);
        if let Some(n) = line_in_table(text, section, key) {
            return Some(n);
        }
    }
    text.lines()
        .position(|l| header_of(l).as_deref() == Some(path.as_str()))
        .map(|i| i + 1)
}

/// `[a.b]` → `a.b`, `[[classes]]` → `classes`, with spaces and quotes of
/// quoted keys removed.
fn header_of(line: &str) -> Option<String> {
    let t = line.trim();
    let inner = t.strip_prefix('[')?.split(']').next()?;
    Some(inner.trim_start_matches('[').replace([' ', '"'], ""))
}

/// The line of `key = …` inside table `section` (`classes[2]` is the
/// second `[[classes]]`).
fn line_in_table(text: &str, section: &str, key: &str) -> Option<usize> {
    let (name, nth) = match section.split_once('[') {
        Some((name, idx)) => (name, idx.trim_end_matches(']').parse::<usize>().ok()?),
        None => (section, 1),
    };
    let mut seen = 0;
    let mut inside = false;
    for (i, l) in text.lines().enumerate() {
        if let Some(h) = header_of(l) {
            inside = h == name && {
                seen += 1;
                seen == nth
            };
            continue;
        }
        // Quoted keys (`values."a b" = …`) compare without their quotes.
        let t = l.trim().replace('"', "");
        if inside
            && t.strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
        {
            return Some(i + 1);
        }
    }
    None
}

/// A user error unless `x` is a finite number in `lo..=hi`.
fn check_range(key: &str, x: f64, lo: f64, hi: f64) -> Result<(), String> {
    if x.is_finite() && (lo..=hi).contains(&x) {
        Ok(())
    } else {
        Err(format!(
            "{key}: must be a number from {lo} to {hi}, got {x}"
        ))
    }
}

/// A user error unless `n` is in `lo..=hi`.
fn check_count(key: &str, n: u64, lo: u64, hi: u64) -> Result<(), String> {
    if (lo..=hi).contains(&n) {
        Ok(())
    } else {
        Err(format!("{key}: must be from {lo} to {hi}, got {n}"))
    }
}

/// Why `name` cannot be a class name, if it cannot: it is shown on one
/// line in the terminal, in prompts, in CSV and in the dataset card.
pub fn class_name_problem(name: &str) -> Option<&'static str> {
    if name.trim().is_empty() {
        Some("must not be blank")
    } else if name.contains(['\n', '\r']) {
        Some("must be a single line")
    } else if name.chars().any(char::is_control) {
        Some("must be printable (it holds a control character)")
    } else if name.trim() != name {
        Some("must not start or end with spaces")
    } else {
        None
    }
}

fn line_of(bytes: &[u8], offset: usize) -> usize {
    bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|&&c| c == b'\n')
        .count()
        + 1
}

/// Checks serde cannot express.
pub fn validate(cfg: &ProjectConfig) -> Result<(), String> {
    if cfg.task.name.trim().is_empty() {
        return Err("task.name: must not be empty".into());
    }
    let mut seen = std::collections::HashSet::new();
    for (i, c) in cfg.classes.iter().enumerate() {
        let key = format!("classes[{}] ('{}')", i + 1, c.name);
        if let Some(why) = class_name_problem(&c.name) {
            return Err(format!(
                "classes[{}].name: {why}: '{}'",
                i + 1,
                c.name.escape_debug()
            ));
        }
        if !seen.insert(c.name.as_str()) {
            return Err(format!("{key}: class name appears twice"));
        }
        if !c.weight.is_finite() || c.weight < 0.0 {
            return Err(format!(
                "{key}.weight: must be a number ≥ 0, got {}",
                c.weight
            ));
        }
    }
    let g = &cfg.generation;
    let (lo, hi) = g.alpha_range;
    if !(0.0..=1.0).contains(&lo) || !(0.0..=1.0).contains(&hi) || lo > hi {
        return Err(format!(
            "generation.alpha_range: must satisfy 0 ≤ lo ≤ hi ≤ 1, got [{lo}, {hi}]"
        ));
    }
    if let Some(a) = g.alpha
        && !(0.0..=1.0).contains(&a)
    {
        return Err(format!("generation.alpha: must be in [0, 1], got {a}"));
    }
    if !(0.0..=1.0).contains(&g.dedup_threshold) {
        return Err(format!(
            "generation.dedup_threshold: must be in [0, 1], got {}",
            g.dedup_threshold
        ));
    }
    if g.per_request == 0 {
        return Err("generation.per_request: must be at least 1".into());
    }
    if cfg.backend.max_concurrency == 0 {
        return Err("backend.max_concurrency: must be at least 1".into());
    }
    // Every float finite and in range, every count bounded: a NaN price
    // would record usage that cannot be read back, an infinite timeout
    // panics, a huge retry count never ends.
    let b = &cfg.backend;
    check_count("backend.max_concurrency", b.max_concurrency as u64, 1, 1024)?;
    check_range("backend.timeout_s", b.timeout_s, 0.001, 86_400.0)?;
    check_count("backend.max_retries", b.max_retries as u64, 0, 100)?;
    if let Some(n) = b.requests_per_minute {
        check_count("backend.requests_per_minute", n as u64, 1, 10_000_000)?;
    }
    if let Some(n) = b.tokens_per_minute {
        check_count("backend.tokens_per_minute", n as u64, 1, u32::MAX as u64)?;
    }
    if let Some(p) = b.price_input_per_m {
        check_range("backend.price_input_per_m", p, 0.0, 1e6)?;
    }
    if let Some(p) = b.price_output_per_m {
        check_range("backend.price_output_per_m", p, 0.0, 1e6)?;
    }
    check_range("generation.temperature", g.temperature, 0.0, 2.0)?;
    check_count("generation.max_tokens", g.max_tokens as u64, 1, 1_000_000)?;
    check_count("generation.per_request", g.per_request as u64, 1, 1000)?;
    check_count(
        "generation.classes_per_prompt",
        g.classes_per_prompt as u64,
        1,
        1000,
    )?;
    check_count("generation.shots", g.shots as u64, 0, 1000)?;
    check_count(
        "generation.target_count",
        g.target_count as u64,
        0,
        100_000_000,
    )?;
    let r = &cfg.relabel;
    check_range("relabel.vote_temperature", r.vote_temperature, 0.0, 2.0)?;
    check_count("relabel.votes", r.votes as u64, 0, 100)?;
    check_count("relabel.shots", r.shots as u64, 0, 1000)?;
    check_count(
        "relabel.all_max_classes",
        r.all_max_classes as u64,
        0,
        100_000,
    )?;
    let e = &cfg.embeddings;
    check_count("embeddings.batch_size", e.batch_size as u64, 1, 100_000)?;
    check_count(
        "embeddings.max_concurrency",
        e.max_concurrency as u64,
        1,
        1024,
    )?;
    check_range("embeddings.timeout_s", e.timeout_s, 0.001, 86_400.0)?;
    check_count("embeddings.max_retries", e.max_retries as u64, 0, 100)?;
    if let Some(n) = e.requests_per_minute {
        check_count("embeddings.requests_per_minute", n as u64, 1, 10_000_000)?;
    }
    if let Some(n) = e.tokens_per_minute {
        check_count("embeddings.tokens_per_minute", n as u64, 1, u32::MAX as u64)?;
    }
    if let Some(p) = e.price_input_per_m {
        check_range("embeddings.price_input_per_m", p, 0.0, 1e6)?;
    }
    let d = &cfg.denoise;
    check_range("denoise.threshold", d.threshold, 0.0, 1.0)?;
    check_range("denoise.echo_similarity", d.echo_similarity, 0.0, 1.0)?;
    check_range("denoise.near_duplicate", d.near_duplicate, 0.0, 1.0)?;
    validate_attributes(cfg)?;
    Ok(())
}

/// Why `name` cannot be an attribute dimension or value name, if it cannot:
/// besides a class name's rules, it is written `dimension=value;…` in
/// imports and exports, so `=` and `;` are out.
pub fn attribute_name_problem(name: &str) -> Option<&'static str> {
    class_name_problem(name).or_else(|| {
        name.contains(['=', ';']).then_some(
            "must not contain '=' or ';' (they separate attributes in import and export columns)",
        )
    })
}

/// `[attributes.*]`: names, at least one value each, known classes.
fn validate_attributes(cfg: &ProjectConfig) -> Result<(), String> {
    for (dim, a) in &cfg.attributes {
        let key = format!("attributes.{dim}");
        if let Some(why) = attribute_name_problem(dim) {
            return Err(format!("{key}: attribute name {why}"));
        }
        if a.values.is_empty() {
            return Err(format!(
                "{key}.values: declare at least one value, e.g. values.formal = \"polite, complete sentences\""
            ));
        }
        for (value, desc) in &a.values {
            if let Some(why) = attribute_name_problem(value) {
                return Err(format!("{key}.values.{value}: value name {why}"));
            }
            if desc.contains(['\n', '\r']) {
                return Err(format!(
                    "{key}.values.{value}: the description must be a single line"
                ));
            }
        }
        for c in &a.classes {
            if !cfg.classes.iter().any(|k| &k.name == c) {
                let known: Vec<&str> = cfg.classes.iter().map(|k| k.name.as_str()).collect();
                return Err(format!(
                    "{key}.classes: unknown class '{c}' (classes: {})",
                    known.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// Write `cfg` to `path` atomically (temp file + rename).
pub fn write_config(path: &Path, cfg: &ProjectConfig) -> anyhow::Result<()> {
    super::write_atomic(path, render_config(cfg).as_bytes())
}

fn v(x: impl Into<toml::Value>) -> String {
    match x.into() {
        toml::Value::String(s) => quote(&s),
        other => other.to_string(),
    }
}

/// A one-line TOML basic string (newlines and control characters escaped).
fn quote(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if c.is_control() => o.push_str(&format!("\\u{:04X}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn fv(x: f64) -> String {
    toml::Value::Float(x).to_string()
}

/// Compile-time guard: names every field of the config structs without
/// `..`, so adding a field breaks the build here until `render_config`
/// writes it too (the hand renderer would otherwise drop it silently).
#[allow(dead_code)]
fn every_field_is_rendered(cfg: &ProjectConfig) {
    use crate::domain::{Class, GenerationSettings, RelabelSettings, TaskConfig};
    let ProjectConfig {
        task,
        classes,
        backend,
        generation,
        relabel,
        embeddings,
        attributes,
        denoise,
        judge,
        strategy,
    } = cfg;
    let crate::domain::StrategyConfig {
        mix: crate::domain::MixConfig { exemplars: _ },
    } = strategy;
    for crate::domain::AttributeDim {
        description: _,
        values: _,
        classes: _,
    } in attributes.values()
    {}
    let crate::domain::JudgeConfig { use_: _ } = judge;
    let TaskConfig {
        name: _,
        description: _,
    } = task;
    for Class {
        name: _,
        description: _,
        weight: _,
    } in classes
    {}
    let BackendConfig {
        base_url: _,
        model: _,
        api_key_env: _,
        max_concurrency: _,
        requests_per_minute: _,
        tokens_per_minute: _,
        timeout_s: _,
        max_retries: _,
        price_input_per_m: _,
        price_output_per_m: _,
        headers: _,
        extra_body: _,
        stream: _,
        adaptive: _,
        batch_api: _,
    } = backend;
    let GenerationSettings {
        strategy: _,
        per_request: _,
        classes_per_prompt: _,
        shots: _,
        alpha_range: _,
        alpha: _,
        temperature: _,
        max_tokens: _,
        target_count: _,
        seed: _,
        dedup_threshold: _,
        use_rationales: _,
    } = generation;
    let RelabelSettings {
        enabled: _,
        context: _,
        all_max_classes: _,
        shots: _,
        votes: _,
        vote_temperature: _,
        take_relabel: _,
        use_logprobs: _,
        use_json_schema: _,
    } = relabel;
    let crate::domain::EmbeddingsConfig {
        backend: _,
        model_dir: _,
        local_model: _,
        precision: _,
        base_url: _,
        model: _,
        api_key_env: _,
        batch_size: _,
        timeout_s: _,
        max_retries: _,
        max_concurrency: _,
        adaptive: _,
        requests_per_minute: _,
        tokens_per_minute: _,
        price_input_per_m: _,
    } = embeddings;
    let crate::domain::DenoiseConfig {
        mode: _,
        threshold: _,
        echo_similarity: _,
        near_duplicate: _,
    } = denoise;
}

/// Keys in `text` that the config does not know (typos, settings from a
/// newer straddle): the first one as an error naming its line.
fn check_unknown_keys(text: &str, cfg: &ProjectConfig) -> Result<(), String> {
    let Ok(user) = text.parse::<toml::Table>() else {
        return Ok(());
    };
    let Ok(toml::Value::Table(known)) = toml::Value::try_from(cfg) else {
        return Ok(());
    };
    let mut unknown = None;
    walk_unknown(&user, &known, "", &mut unknown);
    match unknown {
        None => Ok(()),
        Some((path, key, section_known)) => {
            let line = text
                .lines()
                .position(|l| {
                    let t = l.trim_start();
                    t.strip_prefix(key.as_str())
                        .is_some_and(|r| r.trim_start().starts_with('='))
                        || t.strip_prefix('[')
                            .is_some_and(|r| r.trim_start_matches('[').starts_with(key.as_str()))
                })
                .map(|i| format!("line {}: ", i + 1))
                .unwrap_or_default();
            Err(format!(
                "{line}unknown setting '{path}' (known here: {})",
                section_known.join(", ")
            ))
        }
    }
}

/// Depth-first search for the first key of `user` missing from `known`.
fn walk_unknown(
    user: &toml::Table,
    known: &toml::Table,
    prefix: &str,
    out: &mut Option<(String, String, Vec<String>)>,
) {
    // Maps of free-form keys.
    if prefix == "backend.headers" || prefix == "backend.extra_body" {
        return;
    }
    for (k, v) in user {
        if out.is_some() {
            return;
        }
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match (v, known.get(k)) {
            (_, None) => {
                let mut keys: Vec<String> = known.keys().cloned().collect();
                keys.extend(optional_keys(prefix).iter().map(|s| s.to_string()));
                if !keys.contains(k) {
                    *out = Some((path, k.clone(), keys));
                }
            }
            (toml::Value::Table(u), Some(toml::Value::Table(kn))) => {
                walk_unknown(u, kn, &path, out)
            }
            (toml::Value::Array(us), Some(toml::Value::Array(kns))) => {
                for (u, kn) in us.iter().zip(kns) {
                    if let (toml::Value::Table(u), toml::Value::Table(kn)) = (u, kn) {
                        walk_unknown(u, kn, &path, out);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Optional settings that serialize to nothing when unset.
fn optional_keys(section: &str) -> &'static [&'static str] {
    match section {
        "backend" => &[
            "api_key_env",
            "requests_per_minute",
            "tokens_per_minute",
            "price_input_per_m",
            "price_output_per_m",
        ],
        "generation" => &["alpha"],
        "embeddings" => &["model_dir", "api_key_env"],
        _ => &[],
    }
}

/// Render a commented `straddle.toml`.
pub fn render_config(cfg: &ProjectConfig) -> String {
    let mut o = String::new();
    let w = &mut o;
    let _ = writeln!(
        w,
        "# straddle project settings. Edit freely; every setting is explained.\n\
         # Live changes made in the app (weights, generation settings) are kept in\n\
         # journal.jsonl and override the values here.\n"
    );
    let _ = writeln!(w, "[task]");
    line(
        w,
        "Short name of the task.",
        "name",
        v(cfg.task.name.as_str()),
    );
    line(
        w,
        "What the texts are, in one or two sentences; shown to the LLM in every prompt.",
        "description",
        v(cfg.task.description.as_str()),
    );
    for c in &cfg.classes {
        let _ = writeln!(w, "\n[[classes]]");
        line(
            w,
            "Class name (the label written to exports).",
            "name",
            v(c.name.as_str()),
        );
        line(
            w,
            "One line that completes \"… which is about ___\"; shown to the LLM.",
            "description",
            v(c.description.as_str()),
        );
        line(
            w,
            "Relative sampling weight for generation (1.0 = even, 0 = never).",
            "weight",
            fv(c.weight),
        );
    }
    render_attributes(w, cfg);
    render_backend(w, &cfg.backend);
    render_generation(w, cfg);
    render_strategy(w, &cfg.strategy);
    render_relabel(w, cfg);
    render_embeddings(w, &cfg.embeddings);
    render_denoise(w, &cfg.denoise);
    let _ = writeln!(w, "\n[judge]");
    line(
        w,
        "Which judge bulk rules, auto-accept and the review's verdicts use: \"auto\" (the best measured on the held-out examples by `straddle judge`; a more complex judge only when clearly better), \"relabel\" (the LLM), \"small\" (the embedding classifier), \"knn\" (nearest neighbours) or \"ensemble\".",
        "use",
        v(cfg.judge.use_.as_str()),
    );
    o
}

/// A TOML key: bare when it can be, else quoted.
fn key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        quote(k)
    }
}

fn render_attributes(w: &mut String, cfg: &ProjectConfig) {
    if cfg.attributes.is_empty() {
        let _ = writeln!(
            w,
            "\n# Attribute dimensions for the `attributes` strategy (MSP): each request asks\n\
             # for texts expressing 1-3 values at once, rarer values more often. Example:\n\
             # [attributes.tone]\n\
             # description = \"how the text sounds\"\n\
             # values.formal = \"polite, complete sentences\"\n\
             # values.casual = \"relaxed, everyday wording\"\n\
             # classes = [\"HUM\"]   # optional: only for these classes"
        );
        return;
    }
    for (dim, a) in &cfg.attributes {
        let _ = writeln!(w, "\n[attributes.{}]", key(dim));
        line(
            w,
            "What this attribute dimension is about (shown to the LLM).",
            "description",
            v(a.description.as_str()),
        );
        let classes: Vec<String> = a.classes.iter().map(|c| quote(c)).collect();
        line(
            w,
            "Only for these classes; [] = every class.",
            "classes",
            format!("[{}]", classes.join(", ")),
        );
        let values: Vec<String> = a
            .values
            .iter()
            .map(|(value, desc)| format!("{} = {}", key(value), v(desc.as_str())))
            .collect();
        line(
            w,
            "The values: name = one-line description shown to the LLM (also writable as values.NAME = \"…\" lines).",
            "values",
            format!("{{ {} }}", values.join(", ")),
        );
    }
}

fn render_denoise(w: &mut String, d: &crate::domain::DenoiseConfig) {
    let _ = writeln!(w, "\n[denoise]");
    line(
        w,
        "What to do with a generated example the denoiser finds noisy (far from every seed of its class, or repeating the prompt's instructions): \"reject\" (an automatic, undoable rejection with the reason), \"flag\" (review shows it, marked N) or \"off\". Needs [embeddings].",
        "mode",
        v(d.mode.as_str()),
    );
    line(
        w,
        "Noise score (0-1) above which an example is noise: 1 - cosine to the nearest seed of its class (half of it, and half the over-representation of its attributes, when it has attributes).",
        "threshold",
        fv(d.threshold),
    );
    line(
        w,
        "Cosine to a sentence of the prompt's own instructions from which an example \"repeats the instructions\".",
        "echo_similarity",
        fv(d.echo_similarity),
    );
    line(
        w,
        "Cosine to an earlier example from which a new one is a near-copy (besides the character-level MinHash check); 1 turns it off.",
        "near_duplicate",
        fv(d.near_duplicate),
    );
}

fn render_embeddings(w: &mut String, e: &crate::domain::EmbeddingsConfig) {
    use crate::domain::EmbeddingBackend;
    let _ = writeln!(w, "\n[embeddings]");
    let backend = match e.backend {
        EmbeddingBackend::Local => "local",
        EmbeddingBackend::Api => "api",
        EmbeddingBackend::None => "none",
    };
    line(
        w,
        "Sentence embeddings (denoising, nearest classes, the embedding classifier): \"local\" (all-MiniLM-L6-v2 in-process; install once with scripts/embedder.sh install), \"api\" (an OpenAI-compatible /v1/embeddings) or \"none\".",
        "backend",
        v(backend),
    );
    opt_line(
        w,
        "local: folder of the model (config.json, model.safetensors, vocab.txt); default ~/.cache/straddle/embedder/all-MiniLM-L6-v2",
        "model_dir",
        e.model_dir.as_deref().map(v),
        "\"/path/to/all-MiniLM-L6-v2\"",
    );
    line(
        w,
        "local: \"minilm\" (the transformer, best quality, ~300-600 texts per CPU-second) or \"static\" (a token table distilled from it on first use: 20,000+ texts/s, weaker on short informal texts).",
        "local_model",
        v(match e.local_model {
            crate::domain::LocalModel::Minilm => "minilm",
            crate::domain::LocalModel::Static => "static",
        }),
    );
    line(
        w,
        "local minilm: \"auto\" (bf16 where the CPU has AVX512_BF16: about twice as fast, vectors within cosine 0.999 of f32), \"f32\" or \"bf16\". Vectors of each precision are cached apart.",
        "precision",
        v(match e.precision {
            crate::domain::EmbeddingPrecision::Auto => "auto",
            crate::domain::EmbeddingPrecision::F32 => "f32",
            crate::domain::EmbeddingPrecision::Bf16 => "bf16",
        }),
    );
    line(
        w,
        "api: base URL of the embeddings server, including /v1.",
        "base_url",
        v(e.base_url.as_str()),
    );
    line(
        w,
        "api: embedding model name.",
        "model",
        v(e.model.as_str()),
    );
    opt_line(
        w,
        "api: name of the environment variable holding the API key (the key itself is never written anywhere)",
        "api_key_env",
        e.api_key_env.as_deref().map(v),
        "\"OPENAI_API_KEY\"",
    );
    line(
        w,
        "Texts per request (api) or per forward pass (local).",
        "batch_size",
        v(e.batch_size as i64),
    );
    line(w, "api: seconds per request.", "timeout_s", fv(e.timeout_s));
    line(
        w,
        "api: retries after 429, 5xx, timeouts and dropped connections.",
        "max_retries",
        v(e.max_retries as i64),
    );
    line(
        w,
        "api: most requests in flight (the same engine as chat: adaptive below this unless adaptive = false).",
        "max_concurrency",
        v(e.max_concurrency as i64),
    );
    line(
        w,
        "api: find the server's real parallelism below max_concurrency, as [backend] adaptive does.",
        "adaptive",
        v(e.adaptive),
    );
    opt_line(
        w,
        "api: client-side rate limit in requests per minute.",
        "requests_per_minute",
        e.requests_per_minute.map(|x| v(x as i64)),
        "3000",
    );
    opt_line(
        w,
        "api: client-side rate limit in tokens per minute.",
        "tokens_per_minute",
        e.tokens_per_minute.map(|x| v(x as i64)),
        "1000000",
    );
    opt_line(
        w,
        "api: price per 1M input tokens, for the embeddings' cost in straddle stats.",
        "price_input_per_m",
        e.price_input_per_m.map(fv),
        "0.02",
    );
}

fn line(w: &mut String, comment: &str, key: &str, value: String) {
    let _ = writeln!(w, "# {comment}\n{key} = {value}");
}

fn opt_line(w: &mut String, comment: &str, key: &str, value: Option<String>, example: &str) {
    match value {
        Some(val) => line(w, comment, key, val),
        None => {
            let _ = writeln!(w, "# {comment} (unset)\n# {key} = {example}");
        }
    }
}

fn render_backend(w: &mut String, b: &BackendConfig) {
    let _ = writeln!(w, "\n[backend]");
    line(
        w,
        "Base URL of an OpenAI-compatible chat-completions server, including /v1.",
        "base_url",
        v(b.base_url.as_str()),
    );
    line(
        w,
        "Model name sent with every request.",
        "model",
        v(b.model.as_str()),
    );
    opt_line(
        w,
        "Name of the environment variable holding the API key; the key itself is never written anywhere.",
        "api_key_env",
        b.api_key_env.as_deref().map(v),
        "\"OPENAI_API_KEY\"",
    );
    line(
        w,
        "Maximum requests in flight.",
        "max_concurrency",
        v(b.max_concurrency as i64),
    );
    opt_line(
        w,
        "Client-side rate limit in requests per minute.",
        "requests_per_minute",
        b.requests_per_minute.map(|x| v(x as i64)),
        "60",
    );
    opt_line(
        w,
        "Client-side rate limit in tokens per minute.",
        "tokens_per_minute",
        b.tokens_per_minute.map(|x| v(x as i64)),
        "100000",
    );
    line(
        w,
        "Timeout of one request, in seconds.",
        "timeout_s",
        fv(b.timeout_s),
    );
    line(
        w,
        "Retries of a failed request (429, 5xx, timeouts) with backoff.",
        "max_retries",
        v(b.max_retries as i64),
    );
    opt_line(
        w,
        "Price per 1M input tokens, for the cost figure.",
        "price_input_per_m",
        b.price_input_per_m.map(fv),
        "0.15",
    );
    opt_line(
        w,
        "Price per 1M output tokens, for the cost figure.",
        "price_output_per_m",
        b.price_output_per_m.map(fv),
        "0.60",
    );
    line(w, "Use streaming (SSE) responses.", "stream", v(b.stream));
    line(
        w,
        "Find the server's real parallelism: start at one request in flight, grow while latency stays flat or throughput grows, shrink when requests queue, streams are cut short or requests time out; never above max_concurrency. false: always max_concurrency (a server known to take that many).",
        "adaptive",
        v(b.adaptive),
    );
    line(
        w,
        "Which Batch API the server speaks for `straddle batch submit`: \"openai\" (OpenAI, Groq, OpenAI-compatible gateways) or \"together\" (Together AI).",
        "batch_api",
        v(b.batch_api.name()),
    );
    let headers: toml::Table = b
        .headers
        .iter()
        .map(|(k, x)| (k.clone(), toml::Value::String(x.clone())))
        .collect();
    line(
        w,
        "Extra HTTP headers sent with every request (never put secrets here; use api_key_env).",
        "headers",
        inline_table(&headers),
    );
    let extra: toml::Table = b
        .extra_body
        .iter()
        .filter_map(|(k, x)| toml::Value::try_from(x).ok().map(|t| (k.clone(), t)))
        .collect();
    line(
        w,
        "Extra fields merged into every request body, e.g. { seed = 1, top_p = 0.9 }.",
        "extra_body",
        inline_table(&extra),
    );
}

fn inline_table(t: &toml::Table) -> String {
    if t.is_empty() {
        return "{}".into();
    }
    let parts: Vec<String> = t
        .iter()
        .map(|(k, x)| format!("{} = {}", toml_key(k), v(x.clone())))
        .collect();
    format!("{{ {} }}", parts.join(", "))
}

fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        v(k)
    }
}

fn render_generation(w: &mut String, cfg: &ProjectConfig) {
    let g = &cfg.generation;
    let _ = writeln!(w, "\n[generation]");
    line(
        w,
        "Strategy: \"mix\" (class-boundary mixing, PromptMix), \"plain\" (one class per request), \"attributes\" (1-3 values of the [attributes.*] dimensions per request, MSP) or \"extrapolate\" (S3: like the small model's mistakes).",
        "strategy",
        v(g.strategy.as_str()),
    );
    line(
        w,
        "Examples asked for per request.",
        "per_request",
        v(g.per_request as i64),
    );
    line(
        w,
        "Classes shown per mix prompt (t).",
        "classes_per_prompt",
        v(g.classes_per_prompt as i64),
    );
    line(
        w,
        "Seed examples shown per class (k); 0 = zero-shot.",
        "shots",
        v(g.shots as i64),
    );
    line(
        w,
        "Range [lo, hi] the share α of the intended class is drawn from, per request.",
        "alpha_range",
        format!("[{}, {}]", fv(g.alpha_range.0), fv(g.alpha_range.1)),
    );
    opt_line(
        w,
        "A fixed α; overrides alpha_range.",
        "alpha",
        g.alpha.map(fv),
        "0.75",
    );
    line(
        w,
        "Sampling temperature of generation requests.",
        "temperature",
        fv(g.temperature),
    );
    line(
        w,
        "Maximum tokens per generation reply.",
        "max_tokens",
        v(g.max_tokens as i64),
    );
    line(
        w,
        "How many generated examples a run aims for.",
        "target_count",
        v(g.target_count as i64),
    );
    line(
        w,
        "Seed for all sampling (class picks, α, splits).",
        "seed",
        v(g.seed as i64),
    );
    line(
        w,
        "Near-duplicate threshold: Jaccard similarity of word shingles above which a new example is dropped.",
        "dedup_threshold",
        fv(g.dedup_threshold),
    );
    line(
        w,
        "Condition requests on sampled rationales (S3 seed synthesis).",
        "use_rationales",
        v(g.use_rationales),
    );
}

fn render_strategy(w: &mut String, s: &crate::domain::StrategyConfig) {
    let _ = writeln!(w, "\n[strategy.mix]");
    line(
        w,
        "Which seeds a mix prompt shows: \"boundary\" (each class's seeds nearest the other class of the pair, by sentence embedding, once the seeds' vectors are known; needs [embeddings]) or \"random\".",
        "exemplars",
        v(s.mix.exemplars.as_str()),
    );
}

fn render_relabel(w: &mut String, cfg: &ProjectConfig) {
    let r = &cfg.relabel;
    let _ = writeln!(w, "\n[relabel]");
    line(
        w,
        "Classify every generated example again with the LLM as a few-shot classifier.",
        "enabled",
        v(r.enabled),
    );
    let ctx = match r.context {
        crate::domain::RelabelContext::Auto => "auto",
        crate::domain::RelabelContext::All => "all",
        crate::domain::RelabelContext::Picked => "picked",
    };
    line(
        w,
        "Classes in the relabel prompt: \"all\", \"picked\" (those of the generation prompt) or \"auto\" (all when at most all_max_classes).",
        "context",
        v(ctx),
    );
    line(
        w,
        "With context = \"auto\": the most classes shown all at once.",
        "all_max_classes",
        v(r.all_max_classes as i64),
    );
    line(
        w,
        "Seed examples per class in the relabel prompt.",
        "shots",
        v(r.shots as i64),
    );
    line(
        w,
        "Self-consistency votes when the server gives no logprobs.",
        "votes",
        v(r.votes as i64),
    );
    line(
        w,
        "Temperature of the self-consistency votes.",
        "vote_temperature",
        fv(r.vote_temperature),
    );
    line(
        w,
        "On disagreement, export the relabel's label (the paper's choice); the intended label is kept for review either way.",
        "take_relabel",
        v(r.take_relabel),
    );
    line(
        w,
        "Ask for token logprobs to get per-class confidence.",
        "use_logprobs",
        v(r.use_logprobs),
    );
    line(
        w,
        "Ask for JSON-schema constrained output.",
        "use_json_schema",
        v(r.use_json_schema),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Class, TaskConfig};

    fn sample() -> ProjectConfig {
        let mut cfg = ProjectConfig {
            task: TaskConfig {
                name: "t\"q".into(),
                description: "Questions,\nwith \"quotes\" and ü".into(),
            },
            classes: vec![
                Class {
                    name: "A".into(),
                    description: "about a".into(),
                    weight: 1.0,
                },
                Class {
                    name: "B c".into(),
                    description: String::new(),
                    weight: 0.5,
                },
            ],
            backend: Default::default(),
            generation: Default::default(),
            relabel: Default::default(),
            embeddings: Default::default(),
            attributes: Default::default(),
            denoise: Default::default(),
            judge: Default::default(),
            strategy: Default::default(),
        };
        cfg.embeddings.api_key_env = Some("EMB_KEY".into());
        cfg.backend.headers.insert("X-Org".into(), "me".into());
        cfg.backend
            .extra_body
            .insert("top p".into(), serde_json::json!(0.9));
        cfg.backend.price_input_per_m = Some(0.15);
        cfg.generation.alpha = Some(0.7);
        cfg.attributes.insert(
            "tone".into(),
            crate::domain::AttributeDim {
                description: "how it sounds".into(),
                values: [("formal", "polite \"proper\""), ("very casual", "relaxed")]
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .into(),
                classes: vec!["B c".into()],
            },
        );
        cfg
    }

    const ATTRS: &str = "[task]\nname = \"t\"\n\n[[classes]]\nname = \"A\"\n\n[[classes]]\nname = \"B\"\n\n\
        [attributes.tone]\ndescription = \"how it sounds\"\nvalues.formal = \"polite\"\nvalues.casual = \"relaxed\"\n\n\
        [attributes.length]\nclasses = [\"B\"]\n[attributes.length.values]\nshort = \"a few words\"\nlong = \"two sentences\"\n";

    #[test]
    fn attributes_parse_in_both_spellings_with_classes() {
        let cfg = parse_config(ATTRS).unwrap();
        let tone = &cfg.attributes["tone"];
        assert_eq!(tone.description, "how it sounds");
        assert_eq!(tone.values.keys().collect::<Vec<_>>(), ["casual", "formal"]);
        assert!(tone.applies_to("A") && tone.applies_to("B"));
        let length = &cfg.attributes["length"];
        assert_eq!(length.values["long"], "two sentences");
        assert!(!length.applies_to("A") && length.applies_to("B"));
        // Written back and read again: the same.
        assert_eq!(parse_config(&render_config(&cfg)).unwrap(), cfg);
    }

    #[test]
    fn attribute_errors_name_the_line() {
        let line_of =
            |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
        let bad = ATTRS.replace("classes = [\"B\"]", "classes = [\"Z\"]");
        let err = parse_config(&bad).unwrap_err();
        assert_eq!(
            err,
            format!(
                "line {}: attributes.length.classes: unknown class 'Z' (classes: A, B)",
                line_of(&bad, "\"Z\"")
            )
        );
        let bad = ATTRS.replace("values.casual", "values.\"a=b\"");
        let err = parse_config(&bad).unwrap_err();
        assert!(
            err.starts_with(&format!(
                "line {}: attributes.tone.values.a=b: value name must not contain '='",
                line_of(&bad, "a=b")
            )),
            "{err}"
        );
        let bad = ATTRS.replace("short = \"a few words\"\nlong = \"two sentences\"\n", "");
        let err = parse_config(&bad).unwrap_err();
        assert!(
            err.starts_with(&format!(
                "line {}: attributes.length.values: declare at least one value",
                line_of(&bad, "[attributes.length.values]")
            )),
            "{err}"
        );
        let bad = ATTRS.replace(
            "[attributes.tone]\n",
            "[attributes.tone]\nvalue.x = \"y\"\n",
        );
        let err = parse_config(&bad).unwrap_err();
        assert!(
            err.contains("unknown setting 'attributes.tone.value'"),
            "{err}"
        );
        let bad = ATTRS
            .replace("values.formal = \"polite\"\n", "")
            .replace("values.casual = \"relaxed\"\n", "");
        let err = parse_config(&bad).unwrap_err();
        assert!(
            err.contains("attributes.tone") && err.contains("values"),
            "{err}"
        );
    }

    #[test]
    fn render_round_trips_and_comments_every_setting() {
        let cfg = sample();
        let text = render_config(&cfg);
        assert_eq!(parse_config(&text).unwrap(), cfg);
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if !l.is_empty() && !l.starts_with('#') && !l.starts_with('[') {
                assert!(
                    lines[i - 1].starts_with('#'),
                    "setting without comment: {l}"
                );
            }
        }
        let defaults = ProjectConfig {
            classes: vec![],
            attributes: Default::default(),
            ..sample()
        };
        let d = ProjectConfig {
            backend: Default::default(),
            generation: Default::default(),
            ..defaults
        };
        assert_eq!(parse_config(&render_config(&d)).unwrap(), d);
    }

    #[test]
    fn errors_name_line_and_key() {
        let text = render_config(&sample());
        let bad = text.replacen("per_request = 5", "per_request = \"five\"", 1);
        let line = bad
            .lines()
            .position(|l| l.starts_with("per_request"))
            .unwrap()
            + 1;
        let err = parse_config(&bad).unwrap_err();
        assert!(err.starts_with(&format!("line {line}:")), "{err}");
        let typo = text.replacen("temperature = 1.0", "temprature = 1.0", 1);
        let line = typo
            .lines()
            .position(|l| l.starts_with("temprature"))
            .unwrap()
            + 1;
        let err = parse_config(&typo).unwrap_err();
        assert!(
            err.starts_with(&format!(
                "line {line}: unknown setting 'generation.temprature'"
            )),
            "{err}"
        );
        let section = format!("{text}\n[extra]\nx = 1\n");
        let err = parse_config(&section).unwrap_err();
        assert!(err.contains("unknown setting 'extra'"), "{err}");
        let class_typo = text.replacen("weight = 0.5", "wieght = 0.5", 1);
        let err = parse_config(&class_typo).unwrap_err();
        assert!(err.contains("'classes.wieght'"), "{err}");
        let dup = text.replacen("name = \"B c\"", "name = \"A\"", 1);
        let err = parse_config(&dup).unwrap_err();
        assert!(err.contains("classes[2]") && err.contains("twice"), "{err}");
    }
}
