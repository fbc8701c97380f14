//! The small classifier: train on 10,000 texts of 15 words, 6 classes,
//! 5 epochs (target < 1 s), predict 10,000 (target < 50 ms); review
//! signals for a 2,000-example pool.
//!
//! The embedding model (logistic regression on 384-dimensional vectors,
//! embeddings excluded): fit 10,000 rows of 6 classes (target < 1 s), the
//! same with the out-of-fold temperature (final model + 5 fold models),
//! and predict 10,000 (target < 100 ms).

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use straddle::classify::{
    Classifier, LinearConfig, LinearModel, SignalConfig, TrainConfig, fit_calibrated, signals_for,
    toy,
};

fn bench(c: &mut Criterion) {
    let d = toy::synthetic(10_000, 6, 15, 1);
    let cfg = TrainConfig {
        epochs: 5,
        ..TrainConfig::default()
    };
    assert_eq!(cfg.epochs_for(d.texts.len()), 5);
    let mut g = c.benchmark_group("classify");
    g.sample_size(10);
    g.bench_function("train_10k_6cls_5ep", |b| {
        b.iter(|| Classifier::train(&d.classes, black_box(&d.texts), &d.labels, &cfg))
    });
    let model = Classifier::train(&d.classes, &d.texts, &d.labels, &cfg);
    let probe = toy::synthetic(10_000, 6, 15, 2);
    g.bench_function("predict_10k", |b| {
        b.iter(|| model.predict_proba_batch(black_box(&probe.texts)))
    });
    // Review signals (one cartography training + 5-fold cross-validation)
    // on a 2,000-example pool, as the TUI would compute them.
    let pool = toy::synthetic(2_000, 6, 15, 3);
    let scfg = SignalConfig::default();
    g.bench_function("signals_2k_6cls", |b| {
        b.iter(|| signals_for(&pool.classes, black_box(&pool.texts), &pool.labels, &scfg))
    });

    // Embedding model on stand-in embeddings: unit vectors around class
    // centres, then each axis scaled down along a decaying spectrum, since
    // real sentence embeddings are far from isotropic and that is what
    // makes L-BFGS take many iterations (57 on AG News, the cap of 100 on
    // TweetEval). The iterations taken are printed beside the timing.
    let anisotropic = |(x, y): (straddle::classify::Dense, Vec<usize>)| {
        let d = x.dim();
        let flat: Vec<f32> = x
            .as_flat()
            .iter()
            .enumerate()
            .map(|(i, v)| v / (1.0 + (i % d) as f32 / 4.0))
            .collect();
        (straddle::classify::Dense::from_flat(d, flat), y)
    };
    let (x, y) = anisotropic(toy::blobs(10_000, 6, 384, 2.0, 4));
    let names: Vec<String> = (0..6).map(|i| format!("c{i}")).collect();
    let rows: Vec<usize> = (0..x.len()).collect();
    let m = LinearModel::fit(&names, &x, &y, &rows, &LinearConfig::default());
    eprintln!(
        "linear fit on 10k stand-in rows: {} L-BFGS iterations",
        m.iterations()
    );
    g.bench_function("linear_fit_10k_384d_6cls", |b| {
        b.iter(|| LinearModel::fit(&names, black_box(&x), &y, &rows, &LinearConfig::default()))
    });
    let lcfg = LinearConfig::default();
    g.bench_function("linear_fit_calibrated_10k_384d_6cls", |b| {
        b.iter(|| fit_calibrated(&names, black_box(&x), &y, &lcfg))
    });
    let (px, _) = anisotropic(toy::blobs(10_000, 6, 384, 2.0, 5));
    g.bench_function("linear_predict_10k_384d_6cls", |b| {
        b.iter(|| m.predict_proba_batch(black_box(&px)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
