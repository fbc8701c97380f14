//! Run the TUI's judges' measure (`app::judges::measure_for_review` on a
//! `JudgeInput`, as `tui::runtime` spawns it) once on a project and report
//! its CPU time, wall time and memory, and a checksum of every opinion (to
//! compare two builds).
//!
//! ```text
//! cargo run --release --example judges_measure -- DIR [--hashed] [--released]
//! ```
//!
//! `--released`: the embedder's weights are let go before the measure, as
//! the TUI's are between two measures (they load again only when a text
//! has no vector in the project's vector file).
//!
//! `--hashed`: a hashed bag-of-words encoder (384 dimensions, like
//! MiniLM's) instead of the project's embedder, so the judges' own work
//! (training, kNN, opinions) is measured without the cost of embedding
//! every generated text.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::time::Instant;

use straddle::app::judges;
use straddle::classify::{Dense, TextEncoder};

/// Words and word pairs hashed into 384 dimensions, L2-normalised.
struct Hashed;

impl TextEncoder for Hashed {
    fn encode(&self, texts: &[String]) -> anyhow::Result<Dense> {
        const D: usize = 384;
        let mut out = Dense::new(D);
        for t in texts {
            let mut v = vec![0f32; D];
            let words: Vec<String> = t
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect();
            let mut add = |s: &str, w: f32| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                s.hash(&mut h);
                let h = h.finish();
                let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
                v[(h % D as u64) as usize] += sign * w;
            };
            for w in &words {
                add(w, 1.0);
            }
            for p in words.windows(2) {
                add(&format!("{} {}", p[0], p[1]), 0.5);
            }
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            v.iter_mut().for_each(|x| *x /= n);
            out.push(&v);
        }
        Ok(out)
    }

    fn name(&self) -> String {
        "hashed-384".into()
    }
}

/// (user + system CPU seconds, RSS MB, peak RSS MB) of this process.
fn usage() -> (f64, f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after ')'.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (cpu, kb("VmRSS:"), kb("VmHWM:"))
}

fn main() -> anyhow::Result<()> {
    let mut dir = None;
    let mut hashed = false;
    let mut released = false;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--hashed" => hashed = true,
            "--released" => released = true,
            _ => dir = Some(PathBuf::from(a)),
        }
    }
    let dir =
        dir.ok_or_else(|| anyhow::anyhow!("usage: judges_measure DIR [--hashed] [--released]"))?;
    let project = straddle::store::Project::open_read_only(&dir)?;
    let classes = project.class_names();
    let (_, rss_open, _) = usage();
    let chosen = if hashed {
        None
    } else {
        Some(straddle::app::small_model::choose(
            &project,
            straddle::app::small_model::ModelChoice::Embedding,
            true,
        )?)
    };
    let enc: &dyn TextEncoder = match &chosen {
        Some(c) => c
            .encoder
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the project has no embedder"))?,
        None => &Hashed,
    };
    if released && let Some(e) = chosen.as_ref().and_then(|c| c.encoder.as_ref()) {
        e.release();
    }
    let (_, linear) = straddle::app::small_model::configs(&project);
    // Peak RSS from here on (the project is open).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let (cpu0, rss0, _) = usage();
    let t = Instant::now();
    let input = judges::JudgeInput::from_state(project.state(), &classes, true);
    let (_, rss_input, _) = usage();
    let (review, record) = judges::measure_for_review(
        &input,
        project.config(),
        &project.prompts_dir(),
        Ok(enc),
        &linear,
    )?;
    let wall = t.elapsed().as_secs_f64();
    drop(input);
    let (cpu1, rss1, peak) = usage();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut counts = Vec::new();
    for name in review.opinions.names() {
        let m = review.opinions.judge(name).expect("a judge named");
        name.hash(&mut h);
        counts.push(format!("{name} {}", m.len()));
        for (id, o) in m.iter() {
            (id, o.judge, o.label, o.confidence.to_bits()).hash(&mut h);
        }
    }
    let disagree = review.disagreements().len();
    println!(
        "{}: encoder {}; chosen {:?}; opinions {}; {disagree} disagreements; {} reports to record; checksum {:016x}",
        dir.display(),
        enc.name(),
        review.choice.judge,
        counts.join(", "),
        record.len(),
        h.finish()
    );
    println!(
        "measure: {:.2} s CPU, {wall:.2} s wall; RSS open {rss_open:.0} MB, before {rss0:.0} MB, with input {rss_input:.0} MB, peak {peak:.0} MB, holding the result {rss1:.0} MB (+{:.0} MB)",
        cpu1 - cpu0,
        rss1 - rss0
    );
    Ok(())
}
