//! Embedding throughput of the local backend (texts/s): all-MiniLM-L6-v2
//! from the weights `scripts/embedder.sh install` puts in the cache folder.
//! Without the weights the bench says so and measures nothing.
//!
//! Before criterion's groups, timed passes over 10,000 texts (the issue's
//! budget: < 10 s on the 2-core development machine) are printed with wall
//! and CPU time: a *short* set (CLINC questions, tweets, financial
//! sentences from `../shared/data`, else a fixed synthetic vocabulary) and,
//! when `../shared/data` is there, a *mixed* set that adds AG News's
//! news-length texts. Only the timed passes:
//! `cargo bench --bench embed -- timed-only` (a filter no group matches).

use std::path::PathBuf;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

use straddle::augment::sampling::splitmix64;
use straddle::domain::EmbeddingPrecision;
use straddle::embed::{
    LocalEmbedder, Precision, StaticEmbedder, StaticVariant, cosine, default_model_dir,
};

fn shared_dir() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    ["../shared/data", "../../shared/data"]
        .iter()
        .map(|p| root.join(p))
        .find(|p| p.join("clinc20.jsonl").is_file())
}

/// `(text, label)` rows of a shared set.
fn shared_rows(name: &str) -> Vec<(String, String)> {
    let Some(dir) = shared_dir() else {
        return Vec::new();
    };
    let Ok(text) = std::fs::read_to_string(dir.join(format!("{name}.jsonl"))) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            Some((
                v["text"].as_str()?.to_owned(),
                v["label"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// The shared sets' texts: CLINC, tweets and financial news, or only the
/// sets named in `STRADDLE_EMBED_TEXTS` (comma-separated, e.g. `clinc20`).
fn shared_texts() -> Vec<String> {
    let chosen = std::env::var("STRADDLE_EMBED_TEXTS").unwrap_or_default();
    let sets: Vec<&str> = if chosen.trim().is_empty() {
        vec!["clinc20", "tweet_emotion", "financial_phrasebank"]
    } else {
        chosen.split(',').map(str::trim).collect()
    };
    sets.iter()
        .flat_map(|f| shared_rows(f).into_iter().map(|(t, _)| t))
        .collect()
}

/// 2-seed-per-class accuracy, mean of 5 draws, on 1,000 test rows: rows
/// 0..1000 are the test set, seeds are drawn from rows 1000..2000.
/// Nearest centroid (cosine) and multinomial logistic regression (C = 10,
/// as in METHODS.md).
fn two_shot_accuracy(vecs: &[Vec<f32>], labels: &[String]) -> (f64, f64) {
    let classes: Vec<&String> = {
        let mut c: Vec<&String> = labels.iter().collect();
        c.sort();
        c.dedup();
        c
    };
    let y: Vec<usize> = labels
        .iter()
        .map(|l| classes.iter().position(|c| *c == l).unwrap_or(0))
        .collect();
    let test = 0..1000.min(vecs.len());
    let pool: Vec<usize> = (1000..vecs.len().min(2000)).collect();
    let (mut nc_sum, mut lr_sum) = (0.0, 0.0);
    for draw in 0..5u64 {
        let mut seeds = Vec::new();
        for c in 0..classes.len() {
            let mut of_c: Vec<usize> = pool.iter().copied().filter(|&i| y[i] == c).collect();
            of_c.sort_by_key(|&i| splitmix64(draw * 1_000_003 + i as u64));
            seeds.extend(of_c.into_iter().take(2));
        }
        let dim = vecs[0].len();
        let mut centroids = vec![vec![0f32; dim]; classes.len()];
        for &i in &seeds {
            for (a, b) in centroids[y[i]].iter_mut().zip(&vecs[i]) {
                *a += b;
            }
        }
        let w = train_lr(vecs, &y, &seeds, classes.len(), 10.0);
        let (mut nc_ok, mut lr_ok) = (0, 0);
        for i in test.clone() {
            let nc = argmax(centroids.iter().map(|c| cosine(c, &vecs[i])));
            let lr = argmax(w.iter().map(|(wc, b)| cosine(wc, &vecs[i]) + b));
            nc_ok += usize::from(nc == y[i]);
            lr_ok += usize::from(lr == y[i]);
        }
        nc_sum += nc_ok as f64 / test.len() as f64;
        lr_sum += lr_ok as f64 / test.len() as f64;
    }
    (nc_sum / 5.0, lr_sum / 5.0)
}

fn argmax(it: impl Iterator<Item = f32>) -> usize {
    it.enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

/// Multinomial logistic regression with L2 penalty 1/(2C)·|W|², full-batch
/// gradient descent (the sets are tiny: 2 rows a class).
fn train_lr(x: &[Vec<f32>], y: &[usize], rows: &[usize], k: usize, c: f32) -> Vec<(Vec<f32>, f32)> {
    let dim = x[0].len();
    let mut w = vec![(vec![0f32; dim], 0f32); k];
    let lr = 0.5;
    for _ in 0..300 {
        let mut grad = vec![(vec![0f32; dim], 0f32); k];
        for &i in rows {
            let logits: Vec<f32> = w.iter().map(|(wc, b)| cosine(wc, &x[i]) + b).collect();
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
            let z: f32 = exps.iter().sum();
            for cl in 0..k {
                let g = exps[cl] / z - f32::from(u8::from(cl == y[i]));
                for (gw, xv) in grad[cl].0.iter_mut().zip(&x[i]) {
                    *gw += g * xv;
                }
                grad[cl].1 += g;
            }
        }
        for (cl, (wc, b)) in w.iter_mut().enumerate() {
            for (wv, gv) in wc.iter_mut().zip(&grad[cl].0) {
                *wv -= lr * (gv + *wv / c);
            }
            *b -= lr * grad[cl].1;
        }
    }
    w
}

/// `STRADDLE_EMBED_QUALITY=1`: print 2-shot accuracies of MiniLM and the
/// static tables on AG News and CLINC20.
fn quality_report(model: &LocalEmbedder) {
    if std::env::var_os("STRADDLE_EMBED_QUALITY").is_none() {
        return;
    }
    let dir = default_model_dir();
    let t0 = Instant::now();
    let statics: Vec<(StaticVariant, StaticEmbedder)> = [
        StaticVariant::Raw,
        StaticVariant::Centered,
        StaticVariant::CenteredZipf,
    ]
    .into_iter()
    .map(|v| {
        (
            v,
            StaticEmbedder::load_or_distill(&dir, model, v).expect("static table"),
        )
    })
    .collect();
    eprintln!("static tables ready in {:.1} s", t0.elapsed().as_secs_f64());
    for set in ["agnews", "clinc20", "tweet_emotion", "financial_phrasebank"] {
        let rows: Vec<(String, String)> = shared_rows(set).into_iter().take(2000).collect();
        if rows.is_empty() {
            continue;
        }
        let texts: Vec<&str> = rows.iter().map(|(t, _)| t.as_str()).collect();
        let labels: Vec<String> = rows.iter().map(|(_, l)| l.clone()).collect();
        let t0 = Instant::now();
        let v = model.embed_sync(&texts);
        let secs = t0.elapsed().as_secs_f64();
        let (nc, lr) = two_shot_accuracy(&v, &labels);
        eprintln!(
            "{set}: minilm  NC {nc:.3} LR {lr:.3} ({:.0} texts/s)",
            texts.len() as f64 / secs
        );
        for (variant, s) in &statics {
            let t0 = Instant::now();
            let v = s.embed_sync(&texts);
            let secs = t0.elapsed().as_secs_f64();
            let (nc, lr) = two_shot_accuracy(&v, &labels);
            eprintln!(
                "{set}: static {variant:?} NC {nc:.3} LR {lr:.3} ({:.0} texts/s)",
                texts.len() as f64 / secs
            );
        }
    }
}

/// 10,000 short texts: the shared sets cycled, else synthetic ones of 6–20 words.
fn texts(n: usize) -> Vec<String> {
    let real = shared_texts();
    if !real.is_empty() {
        return real.iter().cycle().take(n).cloned().collect();
    }
    const WORDS: [&str; 24] = [
        "how", "do", "i", "reset", "my", "password", "the", "market", "fell", "sharply", "on",
        "tuesday", "what", "is", "capital", "of", "france", "card", "declined", "at", "store",
        "please", "play", "music",
    ];
    (0..n as u64)
        .map(|i| {
            let mut x = splitmix64(i);
            let len = 6 + (x % 15) as usize;
            (0..len)
                .map(|_| {
                    x = splitmix64(x);
                    WORDS[(x % WORDS.len() as u64) as usize]
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// CPU seconds (user + system) this process has used, from /proc (Linux);
/// 0 elsewhere. On a shared machine, wall time says little: texts per
/// CPU-second says what the embedder costs.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name's closing parenthesis; utime and stime
    // are the 14th and 15th fields of the line, in clock ticks (100 a second).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Embed `texts` with `f`, print wall and CPU time.
fn timed(label: &str, n: usize, f: impl FnOnce()) {
    let (t0, c0) = (Instant::now(), cpu_seconds());
    f();
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    eprintln!(
        "{label}: {n} texts in {wall:.2} s wall = {:.0} texts/s; {cpu:.1} CPU-s = {:.0} texts per CPU-second",
        n as f64 / wall,
        n as f64 / cpu.max(1e-9)
    );
}

/// A deterministic unit vector of 384 dimensions.
fn unit_vector(seed: u64) -> Vec<f32> {
    let mut x = splitmix64(seed);
    let mut v: Vec<f32> = (0..384)
        .map(|_| {
            x = splitmix64(x);
            (x % 2001) as f32 / 1000.0 - 1.0
        })
        .collect();
    straddle::embed::l2_normalize(&mut v);
    v
}

/// The denoiser on 10,000 samples: 6 classes of 10 seeds, 20 instruction
/// sentences, two attribute dimensions (no model needed).
fn bench_denoise(c: &mut Criterion) {
    use straddle::embed::denoise::{AttributeCounts, DenoiseSettings, judge};
    let seeds: Vec<Vec<f32>> = (0..60).map(unit_vector).collect();
    let instructions: Vec<Vec<f32>> = (100..120).map(unit_vector).collect();
    let samples: Vec<Vec<f32>> = (1000..11_000).map(unit_vector).collect();
    let mut counts = AttributeCounts::new();
    for (dim, values) in [
        ("tone", ["formal", "casual", "angry"]),
        ("length", ["short", "long", "medium"]),
    ] {
        for (i, v) in values.iter().enumerate() {
            counts
                .entry(dim.to_string())
                .or_default()
                .insert(v.to_string(), 10 * (i as u64 + 1));
        }
    }
    let attrs = [
        ("tone".to_string(), "angry".to_string()),
        ("length".to_string(), "short".to_string()),
    ];
    let settings = DenoiseSettings::default();
    let mut g = c.benchmark_group("denoise");
    g.sample_size(10);
    g.throughput(Throughput::Elements(samples.len() as u64));
    g.bench_function("judge_10k_samples", |b| {
        b.iter(|| {
            let noisy = samples
                .iter()
                .enumerate()
                .filter(|(i, v)| {
                    let class = i % 6;
                    judge(
                        v,
                        "C",
                        seeds[class * 10..class * 10 + 10].iter().map(Vec::as_slice),
                        seeds.iter().map(Vec::as_slice),
                        &attrs,
                        &counts,
                        instructions.iter().map(Vec::as_slice),
                        &settings,
                    )
                    .is_noise()
                })
                .count();
            black_box(noisy)
        })
    });
    g.finish();
}

/// 10,000 texts of realistic mixed length: all four shared sets (AG News
/// headlines with their news paragraph, CLINC questions, tweets, financial
/// sentences) shuffled together by a fixed hash, cycled to `n`. `None`
/// without `../shared/data`.
fn mixed_texts(n: usize) -> Option<Vec<String>> {
    let mut rows: Vec<String> = ["agnews", "clinc20", "tweet_emotion", "financial_phrasebank"]
        .iter()
        .flat_map(|f| shared_rows(f).into_iter().map(|(t, _)| t))
        .collect();
    if rows.is_empty() {
        return None;
    }
    let mut keyed: Vec<(u64, String)> = rows
        .drain(..)
        .enumerate()
        .map(|(i, t)| (splitmix64(0x5eed ^ i as u64), t))
        .collect();
    keyed.sort();
    Some(keyed.into_iter().map(|(_, t)| t).cycle().take(n).collect())
}

/// Token-count summary of `texts`: mean, median, 90th percentile, max.
fn token_summary(model: &LocalEmbedder, texts: &[String]) -> String {
    let mut lens: Vec<usize> = texts.iter().map(|t| model.token_ids(t).len()).collect();
    lens.sort_unstable();
    let mean = lens.iter().sum::<usize>() as f64 / lens.len().max(1) as f64;
    let at = |q: f64| lens[((lens.len() - 1) as f64 * q) as usize];
    format!(
        "{mean:.1} tokens each with [CLS]/[SEP] (median {}, p90 {}, max {})",
        at(0.5),
        at(0.9),
        at(1.0)
    )
}

fn bench(c: &mut Criterion) {
    bench_denoise(c);
    let dir = default_model_dir();
    // `STRADDLE_EMBED_PRECISION=f32|bf16|auto` (default auto, as
    // `[embeddings] precision`): the precision of the timed passes and the
    // groups. Unless it is f32, the timed passes run in f32 too.
    let want = match std::env::var("STRADDLE_EMBED_PRECISION").as_deref() {
        Ok("f32") => EmbeddingPrecision::F32,
        Ok("bf16") => EmbeddingPrecision::Bf16,
        _ => EmbeddingPrecision::Auto,
    };
    let load = |precision: Precision| -> Option<LocalEmbedder> {
        let model = match LocalEmbedder::load_with(&dir, precision) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("embed bench skipped: {e}");
                return None;
            }
        };
        // `STRADDLE_EMBED_THREADS=1` measures one thread (CPU cost without
        // the second core's contention).
        let model = match std::env::var("STRADDLE_EMBED_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
        {
            Some(n) => model.with_threads(n),
            None => model,
        };
        // `STRADDLE_EMBED_BATCH=256`: texts per forward pass (default 64).
        Some(
            match std::env::var("STRADDLE_EMBED_BATCH")
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
            {
                Some(n) => model.with_batch_size(n),
                None => model,
            },
        )
    };
    // What a job pays to load the model (the TUI's judges load it again
    // for each measure, after releasing it between measures).
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let Some(model) = load(Precision::resolve(want)) else {
        return;
    };
    eprintln!(
        "load ({}): {:.0} ms wall, {:.0} ms CPU",
        model.precision().name(),
        t0.elapsed().as_secs_f64() * 1e3,
        (cpu_seconds() - c0) * 1e3
    );
    let f32_model = match model.precision() {
        Precision::F32 => None,
        _ => load(Precision::F32),
    };
    eprintln!(
        "{} hardware threads; load average {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    // `STRADDLE_EMBED_N=2000`: fewer texts (profiling). Under `cargo test`
    // (no `--bench`; a debug build) the passes only check that they run.
    let benching = std::env::args().any(|a| a == "--bench");
    let n = std::env::var("STRADDLE_EMBED_N")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(if benching { 10_000 } else { 300 });
    let all = texts(n);
    let models: Vec<&LocalEmbedder> = std::iter::once(&model).chain(&f32_model).collect();
    eprintln!("short set: {n} texts, {}", token_summary(&model, &all));
    for m in &models {
        timed(
            &format!("minilm {} short", m.precision().name()),
            all.len(),
            || {
                black_box(m.embed_sync(&all));
            },
        );
    }
    if let Some(mixed) = mixed_texts(n) {
        eprintln!("mixed set: {n} texts, {}", token_summary(&model, &mixed));
        for m in &models {
            timed(
                &format!("minilm {} mixed", m.precision().name()),
                mixed.len(),
                || {
                    black_box(m.embed_sync(&mixed));
                },
            );
        }
    }
    drop(f32_model);
    quality_report(&model);

    let statics = StaticEmbedder::load_or_distill(&dir, &model, StaticVariant::CenteredZipf)
        .expect("static table");
    timed("static (CenteredZipf)", all.len(), || {
        black_box(statics.embed_sync(&all));
    });
    let sample: Vec<String> = all[..256].to_vec();
    let mut g = c.benchmark_group("embed_local");
    g.sample_size(10);
    g.throughput(Throughput::Elements(sample.len() as u64));
    g.bench_function("minilm_256_texts", |b| {
        b.iter(|| black_box(model.embed_sync(&sample)))
    });
    g.bench_function("static_256_texts", |b| {
        b.iter(|| black_box(statics.embed_sync(&sample)))
    });
    g.bench_function("tokenize_256_texts", |b| {
        b.iter(|| {
            black_box(
                sample
                    .iter()
                    .map(|t| model.token_ids(t).len())
                    .sum::<usize>(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
