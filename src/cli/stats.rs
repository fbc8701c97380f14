//! `straddle stats`: counts per class, journal health, LLM usage.
//!
//! Opens the project read-only, so it works while the app holds it.

use serde_json::json;

use crate::augment::parse::sum_rejections;
use crate::domain::{ClassCounts, Origin, ProjectState};
use crate::store::Project;

/// The stats of a project as JSON (the `--json` output).
pub fn stats_json(p: &Project) -> serde_json::Value {
    let st = p.state();
    let counts = st.class_counts(&p.class_names());
    let mut totals = ClassCounts::default();
    for c in counts.values() {
        totals.seed += c.seed;
        totals.accepted += c.accepted;
        totals.rejected += c.rejected;
        totals.pending += c.pending;
    }
    let held = |o: Origin| st.samples.iter().filter(|s| s.origin == o).count();
    let r = p.load_report();
    let u = &st.usage;
    json!({
        "project": p.dir().display().to_string(),
        "classes": counts,
        "totals": totals,
        "heldout": { "validation": held(Origin::Validation), "test": held(Origin::Test) },
        "journal": {
            "events": r.events,
            "skipped_lines": r.skipped.len(),
            "skipped": r.skipped.iter().map(|s| json!({"line": s.line, "reason": s.reason})).collect::<Vec<_>>(),
            "warnings": st.warnings,
        },
        "usage": {
            "requests": u.requests,
            "cached": u.cached,
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
            "tokens": u.prompt_tokens + u.completion_tokens,
            "cost": u.cost,
            "failures": u.failures,
            // The part of the above the `api` embeddings backend used.
            "embeddings": embeddings_usage(st).map(|e| json!({
                "requests": e.requests,
                "cached": e.cached,
                "prompt_tokens": e.prompt_tokens,
                "cost": e.cost,
                "failures": e.failures,
            })),
        },
        // `generation_failed` events (failed requests and unusable
        // replies); `usage.failures` counts failed requests of every kind.
        "failures": st.failures.len(),
        "parse_rejected": parse_rejected(st),
        "judges": st.judges.iter().map(|(name, j)| {
            let r = &j.report;
            (name.clone(), json!({
                "accuracy": r.accuracy,
                "macro_f1": r.macro_f1,
                "n": r.n,
                "chance": r.chance,
                "majority": r.majority,
                "trusted": r.trusted(),
            }))
        }).collect::<serde_json::Map<String, serde_json::Value>>(),
        "failures_by_reason": st.failures.iter().fold(
            std::collections::BTreeMap::<&str, u64>::new(),
            |mut m, (_, f)| {
                *m.entry(f.reason.as_str()).or_default() += 1;
                m
            },
        ),
        "rounds": st.rounds.len(),
        "attributes": st.attribute_coverage(&p.config().attributes),
    })
}

/// Pieces of generation replies the parser did not take, per reason
/// (journalled on the first event of each reply).
pub fn parse_rejected(st: &ProjectState) -> std::collections::BTreeMap<String, u64> {
    sum_rejections(
        st.samples
            .iter()
            .map(|s| &*s.provenance)
            .chain(st.failures.iter().map(|(_, f)| &f.provenance)),
    )
}

pub fn run(args: super::StatsArgs) -> anyhow::Result<()> {
    let p = Project::open_read_only(&args.dir)?;
    let text = if args.json {
        format!("{}\n", serde_json::to_string_pretty(&stats_json(&p))?)
    } else {
        stats_table(&p)
    };
    // The fold of a big journal takes a while to free, piece by piece, and
    // the process ends right after: the OS takes it back at once.
    std::mem::forget(p);
    print_stdout(&text)
}

/// Coverage per attribute value (seed / accepted / rejected / pending),
/// one row per `dimension=value`; nothing without attributes.
pub fn attribute_table(
    o: &mut String,
    coverage: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, ClassCounts>>,
) {
    use std::fmt::Write as _;
    let rows: Vec<(String, ClassCounts)> = coverage
        .iter()
        .flat_map(|(d, vs)| vs.iter().map(move |(v, c)| (format!("{d}={v}"), *c)))
        .collect();
    if rows.is_empty() {
        return;
    }
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(9)
        .max(9);
    let _ = writeln!(
        o,
        "\n{:<width$}  {:>6}  {:>8}  {:>8}  {:>7}",
        "attribute", "seed", "accepted", "rejected", "pending"
    );
    for (k, c) in rows {
        let _ = writeln!(
            o,
            "{k:<width$}  {:>6}  {:>8}  {:>8}  {:>7}",
            c.seed, c.accepted, c.rejected, c.pending
        );
    }
}

/// Print to stdout; a closed pipe (`| head`) is not an error.
pub fn print_stdout(text: &str) -> anyhow::Result<()> {
    super::out::write(false, text);
    Ok(())
}

/// The human-readable form.
pub fn stats_table(p: &Project) -> String {
    use std::fmt::Write as _;
    let st = p.state();
    let counts = st.class_counts(&p.class_names());
    let width = counts
        .keys()
        .map(|k| k.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut o = String::new();
    let _ = writeln!(o, "{} — {}", p.config().task.name, p.dir().display());
    let _ = writeln!(
        o,
        "\n{:<width$}  {:>6}  {:>8}  {:>8}  {:>7}",
        "class", "seed", "accepted", "rejected", "pending"
    );
    let mut t = ClassCounts::default();
    // Config order first, then any other label that occurs.
    let mut order = p.class_names();
    order.extend(
        counts
            .keys()
            .filter(|k| !order.contains(k))
            .cloned()
            .collect::<Vec<_>>(),
    );
    for name in &order {
        let c = counts[name];
        let _ = writeln!(
            o,
            "{name:<width$}  {:>6}  {:>8}  {:>8}  {:>7}",
            c.seed, c.accepted, c.rejected, c.pending
        );
        t.seed += c.seed;
        t.accepted += c.accepted;
        t.rejected += c.rejected;
        t.pending += c.pending;
    }
    let _ = writeln!(
        o,
        "{:<width$}  {:>6}  {:>8}  {:>8}  {:>7}",
        "total", t.seed, t.accepted, t.rejected, t.pending
    );
    attribute_table(&mut o, &st.attribute_coverage(&p.config().attributes));
    let held = |o: Origin| st.samples.iter().filter(|s| s.origin == o).count();
    let _ = writeln!(
        o,
        "\nheld-out: {} validation, {} test",
        held(Origin::Validation),
        held(Origin::Test)
    );
    let r = p.load_report();
    let _ = writeln!(
        o,
        "journal: {} events, {} skipped line{}",
        r.events,
        r.skipped.len(),
        if r.skipped.len() == 1 { "" } else { "s" }
    );
    for s in &r.skipped {
        let _ = writeln!(o, "  line {}: {}", s.line, s.reason);
    }
    let u = &st.usage;
    let _ = writeln!(
        o,
        "LLM usage: {} requests ({} cached), {} tokens, cost {:.4}, {} generation failure{}",
        u.requests,
        u.cached,
        u.prompt_tokens + u.completion_tokens,
        u.cost,
        st.failures.len(),
        if st.failures.len() == 1 { "" } else { "s" }
    );
    if let Some(e) = embeddings_usage(st) {
        let _ = writeln!(
            o,
            "  of which embeddings: {} requests ({} texts cached), {} tokens, cost {:.4}",
            e.requests, e.cached, e.prompt_tokens, e.cost
        );
    }
    if !u.failures.is_empty() {
        let f: Vec<String> = u.failures.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(o, "request failures: {}", f.join(", "));
    }
    for (name, j) in &st.judges {
        let r = &j.report;
        let _ = writeln!(
            o,
            "{name} judge: {}{}",
            r.headline(),
            if r.trusted() {
                ""
            } else {
                " — not trusted by bulk rules"
            }
        );
    }
    let rejected = parse_rejected(st);
    if !rejected.is_empty() {
        let f: Vec<String> = rejected.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(o, "parser rejected: {}", f.join(", "));
    }
    o
}

/// What the `api` embeddings backend used (its `usage_recorded` runs);
/// `None` when it was never used.
fn embeddings_usage(st: &crate::domain::ProjectState) -> Option<crate::domain::Usage> {
    let mut total = crate::domain::Usage::default();
    for (run, u) in &st.runs {
        if run == crate::app::embedding::USAGE_RUN {
            total.add(u);
        }
    }
    (!total.is_empty()).then_some(total)
}
