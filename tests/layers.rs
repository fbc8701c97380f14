//! The layer check: every `crate::X` path in `src/` points down (or
//! sideways within a layer), no two modules import each other (nor form a
//! longer cycle), and no front end imports another. Run by `cargo test`
//! and so by `scripts/test.sh`.
//!
//! ```text
//! 0  domain, error, secrets         plain data, no I/O
//! 1  store, llm, logging            the project folder, the HTTP client
//! 2  engine, augment, classify,     scheduling, prompts/parsing/strategies,
//!    embed                          the small classifier, embeddings
//! 3  app                            jobs every front end shares
//! 4  cli | tui                      front ends (never each other)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's layer; `None` for one the table does not know yet.
fn layer(module: &str) -> Option<u8> {
    Some(match module {
        "domain" | "error" | "secrets" => 0,
        "store" | "llm" | "logging" => 1,
        "engine" | "augment" | "classify" | "embed" => 2,
        "app" => 3,
        "cli" | "tui" => 4,
        _ => return None,
    })
}

const FRONT_ENDS: [&str; 2] = ["cli", "tui"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`None`: the crate root).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (!matches!(name.as_str(), "lib" | "main")).then_some(name)
}

/// `crate::X` paths in code (comments skipped), with their line numbers.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().last();
            rest = &rest[at + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue; // e.g. `$crate::` or `mycrate::`
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push((i + 1, name));
            }
        }
    }
    out
}

/// Edges between top-level modules, each with one place that makes it.
fn graph() -> BTreeMap<(String, String), String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    // `#[macro_export]` macros live at the crate root (`crate::outln!`):
    // an import of one is an import of the module that defines it.
    let mut macros = BTreeMap::new();
    for f in &files {
        let Some(m) = module_of(&src, f) else {
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        let mut exported = false;
        for line in text.lines().map(str::trim_start) {
            if line.starts_with("#[macro_export]") {
                exported = true;
            } else if let Some(rest) = line.strip_prefix("macro_rules!") {
                if exported {
                    let name: String = rest
                        .trim_start()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    macros.insert(name, m.clone());
                }
                exported = false;
            }
        }
    }
    let mut edges = BTreeMap::new();
    for f in files {
        let Some(from) = module_of(&src, &f) else {
            continue;
        };
        let text = std::fs::read_to_string(&f).unwrap();
        for (line, to) in crate_paths(&text) {
            let to = macros.get(&to).cloned().unwrap_or(to);
            if to != from {
                edges
                    .entry((from.clone(), to))
                    .or_insert_with(|| format!("{}:{line}", f.display()));
            }
        }
    }
    edges
}

/// Problems in a module graph, one sentence each.
fn problems(edges: &BTreeMap<(String, String), String>) -> Vec<String> {
    let mut out = Vec::new();
    let modules: BTreeSet<&String> = edges.keys().flat_map(|(a, b)| [a, b]).collect();
    for m in &modules {
        if layer(m).is_none() {
            out.push(format!(
                "module `{m}` has no layer: add it to the table in tests/layers.rs and README"
            ));
        }
    }
    for ((from, to), at) in edges {
        let (Some(lf), Some(lt)) = (layer(from), layer(to)) else {
            continue;
        };
        if lt > lf {
            out.push(format!(
                "{at}: `{from}` (layer {lf}) imports `{to}` (layer {lt}), a layer above it"
            ));
        } else if FRONT_ENDS.contains(&from.as_str()) && FRONT_ENDS.contains(&to.as_str()) {
            out.push(format!(
                "{at}: front end `{from}` imports front end `{to}`; move the shared part to `app`"
            ));
        }
    }
    // Cycles of any length: depth-first search over the edges.
    let next = |m: &str| -> Vec<&String> {
        edges
            .keys()
            .filter(|(a, _)| a == m)
            .map(|(_, b)| b)
            .collect()
    };
    let mut reported = BTreeSet::new();
    for start in &modules {
        let mut stack: Vec<(Vec<&String>, &String)> = vec![(vec![*start], *start)];
        while let Some((path, at)) = stack.pop() {
            for n in next(at) {
                if n == *start {
                    let mut cycle: Vec<String> = path.iter().map(|s| s.to_string()).collect();
                    let key: BTreeSet<String> = cycle.iter().cloned().collect();
                    if reported.insert(key) {
                        cycle.push(start.to_string());
                        let via = edges[&(at.clone(), n.clone())].clone();
                        out.push(format!(
                            "import cycle {} (closed at {via})",
                            cycle.join(" → ")
                        ));
                    }
                } else if !path.contains(&n) {
                    let mut p = path.clone();
                    p.push(n);
                    stack.push((p, n));
                }
            }
        }
    }
    out
}

#[test]
fn layers_only_point_down_and_modules_form_no_cycle() {
    let edges = graph();
    assert!(
        edges.contains_key(&("tui".to_string(), "app".to_string())),
        "the scan finds imports"
    );
    let found = problems(&edges);
    assert!(found.is_empty(), "layer check:\n{}", found.join("\n"));
}

#[test]
fn the_check_catches_upward_imports_cycles_and_front_ends() {
    let edges = |list: &[(&str, &str)]| -> BTreeMap<(String, String), String> {
        list.iter()
            .map(|(a, b)| ((a.to_string(), b.to_string()), "src/x.rs:1".to_string()))
            .collect()
    };
    let up = problems(&edges(&[("classify", "app")]));
    assert!(up.iter().any(|p| p.contains("a layer above")), "{up:?}");
    let cycle = problems(&edges(&[("augment", "classify"), ("classify", "augment")]));
    assert!(
        cycle.iter().any(|p| p.contains("import cycle")),
        "{cycle:?}"
    );
    let front = problems(&edges(&[("tui", "cli")]));
    assert!(front.iter().any(|p| p.contains("front end")), "{front:?}");
    let unknown = problems(&edges(&[("gui", "app")]));
    assert!(
        unknown.iter().any(|p| p.contains("no layer")),
        "{unknown:?}"
    );
    assert!(
        problems(&edges(&[
            ("tui", "app"),
            ("app", "augment"),
            ("classify", "augment")
        ]))
        .is_empty()
    );
    assert_eq!(
        crate_paths("use crate::domain::X;\n// crate::tui\nlet y = crate::llm::f($crate::z);"),
        [(1, "domain".to_string()), (3, "llm".to_string())]
    );
}
