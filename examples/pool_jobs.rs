//! Run one of the background jobs the TUI runs on a project's whole pool,
//! the way the TUI runs it (the project's small model, the vector store
//! only read), and print how long it took and the process's peak RSS:
//!
//! * `signals` — `app::training::signals` (the review signals and the
//!   embedding model's doubt, on the state: `straddle` after a round),
//! * `pool-signals` — `app::training::pool_signals`: the same on the
//!   review pool a TUI job takes from the state
//!   (`classify::pool::SharedPool`), as the TUI's `T` runs it,
//! * `vectors` — how many of the review pool's texts have no vector in
//!   the project's vector store (those a job would embed),
//! * `score` — `classify::score_round_with` (an S3 round's scoring),
//! * `gate` — `app::data_gate::run` (the export dialog's data gate).
//!
//! ```text
//! cargo run --release --example pool_jobs -- DIR signals|pool-signals|vectors|score|gate [ngram]
//! ```
//!
//! Used to measure that their memory is bounded by `classify::MAX_TRAIN`
//! and the encoding chunk, not by the pool (issue 15).

use std::path::PathBuf;
use std::time::Instant;

use straddle::app::small_model::{ModelChoice, choose_for};
use straddle::store::Project;

/// The process's peak resident set (`VmHWM`), in MB.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: pool_jobs DIR signals|pool-signals|vectors|score|gate [ngram]";
    let dir = PathBuf::from(args.next().ok_or_else(|| anyhow::anyhow!(usage))?);
    let job = args.next().ok_or_else(|| anyhow::anyhow!(usage))?;
    let choice = match args.next().as_deref() {
        Some("ngram") => ModelChoice::Ngram,
        _ => ModelChoice::Auto,
    };
    let project = Project::open_read_only(&dir)?;
    let names: Vec<String> = project
        .config()
        .classes
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let opened = peak_rss_mb();
    let settings = project.generation_settings();
    let chosen = choose_for(
        project.config(),
        &project.cache_dir(),
        &settings,
        names.len(),
        choice,
        true,
    )?;
    let model = chosen.model();
    let t = Instant::now();
    let what = match job.as_str() {
        "signals" => {
            let sig = straddle::app::training::signals(&model, project.state(), &names)
                .map_err(anyhow::Error::msg)?;
            let doubted = sig.values().filter(|s| !s.reasons.is_empty()).count();
            format!("{} signals, {doubted} with a reason", sig.len())
        }
        "pool-signals" => {
            // As the TUI's `T`: the pool taken from the state, then the job.
            let pool = straddle::classify::pool::SharedPool::of(project.state(), &names);
            let sig = straddle::app::training::pool_signals(&model, &pool, &names)
                .map_err(anyhow::Error::msg)?;
            let doubted = sig.values().filter(|s| !s.reasons.is_empty()).count();
            format!("{} signals, {doubted} with a reason", sig.len())
        }
        "vectors" => {
            use straddle::classify::TextEncoder;
            let enc = chosen
                .encoder
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("no embedder"))?;
            let store = straddle::embed::VectorStore::open(&project.cache_dir(), &enc.name());
            let pool = straddle::classify::pool::SharedPool::of(project.state(), &names);
            let texts = pool.texts();
            let mut missing = 0;
            for part in texts.chunks(4096) {
                let gone = store.lookup(part).1;
                for &i in gone.iter().take(10usize.saturating_sub(missing)) {
                    eprintln!("no vector: {:?}", part[i]);
                }
                missing += gone.len();
            }
            let distinct: std::collections::HashSet<&str> = texts.iter().map(|t| &**t).collect();
            format!(
                "{} pool texts ({} distinct), {missing} without a vector in {} ({} vectors)",
                texts.len(),
                distinct.len(),
                store.path().display(),
                store.len()
            )
        }
        "score" => {
            match straddle::classify::score_round_with(&model, project.state(), &names, 1)? {
                Some((scored, ev)) => format!(
                    "macro-F1 {:.3} → {:.3}, trained on {} (sampled from {:?})",
                    scored.baseline.macro_f1,
                    scored.augmented.macro_f1,
                    scored.augmented.n_train,
                    ev.sampled_from
                ),
                None => "no held-out examples".into(),
            }
        }
        "gate" => {
            // `run` chooses the model itself; `ngram` checks with that one.
            let gate = if choice == ModelChoice::Ngram {
                straddle::app::data_gate::check(&model, project.state(), &names)?
            } else {
                straddle::app::data_gate::run(
                    project.config(),
                    &project.cache_dir(),
                    &settings,
                    project.state(),
                )?
                .0
            };
            gate.map_or("nothing to gate".into(), |g| g.message())
        }
        _ => anyhow::bail!(usage),
    };
    println!(
        "{job} ({}): {what}\n{:.1} s; peak RSS {:.0} MB (after opening the project: {opened:.0} MB)",
        model.kind(),
        t.elapsed().as_secs_f64(),
        peak_rss_mb()
    );
    Ok(())
}
