//! The small classifier on a built-in toy task: accuracy with a fixed seed,
//! determinism, probabilities, review signals.

use straddle::classify::{
    Classifier, LIKELY_MISLABEL, SignalConfig, TrainConfig, argmax, signals_for, toy,
};

fn accuracy(m: &Classifier, d: &toy::ToyData) -> f64 {
    let ok = d
        .texts
        .iter()
        .zip(&d.labels)
        .filter(|(t, l)| m.predict(t) == **l)
        .count();
    ok as f64 / d.texts.len() as f64
}

#[test]
fn toy_task_reaches_known_accuracy() {
    let train = toy::synthetic(1000, 6, 15, 1);
    let test = toy::synthetic(2000, 6, 15, 2);
    let m = Classifier::train(
        &train.classes,
        &train.texts,
        &train.labels,
        &TrainConfig::default(),
    );
    let acc = accuracy(&m, &test);
    println!("toy accuracy: {acc}");
    // Measured 0.781 with seed 0; chance is 1/6.
    assert!(acc >= 0.77, "accuracy {acc}");
}

#[test]
fn training_is_deterministic_and_seed_sensitive() {
    let d = toy::synthetic(500, 4, 15, 5);
    let probe = toy::synthetic(50, 4, 15, 6);
    let cfg = TrainConfig {
        seed: 42,
        ..TrainConfig::default()
    };
    let a = Classifier::train(&d.classes, &d.texts, &d.labels, &cfg);
    let b = Classifier::train(&d.classes, &d.texts, &d.labels, &cfg);
    assert_eq!(
        a.predict_proba_batch(&probe.texts),
        b.predict_proba_batch(&probe.texts)
    );
    let other = TrainConfig { seed: 43, ..cfg };
    let c = Classifier::train(&d.classes, &d.texts, &d.labels, &other);
    assert_ne!(
        a.predict_proba_batch(&probe.texts),
        c.predict_proba_batch(&probe.texts)
    );
}

#[test]
fn probabilities_sum_to_one() {
    let d = toy::synthetic(300, 5, 15, 8);
    let m = Classifier::train(&d.classes, &d.texts, &d.labels, &TrainConfig::default());
    let texts = [
        "",
        "?",
        "an entirely unseen sentence, with ünïcode",
        &d.texts[0],
    ];
    for p in m.predict_proba_batch(&texts) {
        assert_eq!(p.len(), 5);
        assert!(p.iter().all(|&x| (0.0..=1.0).contains(&x)));
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{p:?}");
    }
    assert_eq!(
        m.predict(&d.texts[0]),
        argmax(&m.predict_proba(&d.texts[0]))
    );
}

#[test]
fn class_weights_lift_a_rare_class() {
    // Class 0 is rare in training; balanced weights should find more of it.
    let d = toy::synthetic(2000, 3, 15, 11);
    let keep: Vec<usize> = (0..d.texts.len())
        .filter(|&i| d.labels[i] != 0 || i % 10 == 0)
        .collect();
    let texts: Vec<&str> = keep.iter().map(|&i| d.texts[i].as_str()).collect();
    let labels: Vec<usize> = keep.iter().map(|&i| d.labels[i]).collect();
    let test = toy::synthetic(1500, 3, 15, 12);
    let recall0 = |balance: bool| {
        let cfg = TrainConfig {
            balance,
            ..TrainConfig::default()
        };
        let m = Classifier::train(&d.classes, &texts, &labels, &cfg);
        let (mut hit, mut n) = (0, 0);
        for (t, &l) in test.texts.iter().zip(&test.labels) {
            if l == 0 {
                n += 1;
                hit += usize::from(m.predict(t) == 0);
            }
        }
        hit as f64 / n as f64
    };
    let (plain, balanced) = (recall0(false), recall0(true));
    println!("rare-class recall: plain {plain}, balanced {balanced}");
    assert!(
        balanced > plain + 0.05,
        "plain {plain}, balanced {balanced}"
    );
}

#[test]
fn signals_find_flipped_labels() {
    let d = toy::synthetic(600, 4, 15, 1);
    let mut labels = d.labels.clone();
    let flipped = 30;
    for l in labels.iter_mut().take(flipped) {
        *l = (*l + 1) % 4;
    }
    let s = signals_for(&d.classes, &d.texts, &labels, &SignalConfig::default());
    assert_eq!(s.len(), 600);
    let flagged = |r: std::ops::Range<usize>| {
        s[r].iter()
            .filter(|x| x.reasons.contains(LIKELY_MISLABEL))
            .count()
    };
    let (noisy, clean) = (flagged(0..flipped), flagged(flipped..600));
    println!("flagged: {noisy}/{flipped} flipped, {clean}/570 clean");
    assert!(noisy >= flipped / 2, "{noisy}");
    assert!((clean as f64) / 570.0 < 0.15, "{clean}");
    // Flipped labels get lower confidence than clean ones on average.
    let mean = |r: std::ops::Range<usize>, f: fn(&straddle::classify::Signals) -> f64| {
        let n = r.len() as f64;
        s[r].iter().map(f).sum::<f64>() / n
    };
    assert!(mean(0..flipped, |x| x.confidence) + 0.3 < mean(flipped..600, |x| x.confidence));
    assert!(
        mean(0..flipped, |x| x.oof_confidence) + 0.3 < mean(flipped..600, |x| x.oof_confidence)
    );
}

#[test]
fn large_batches_predict_the_same_as_one_by_one() {
    let d = toy::synthetic(300, 4, 15, 21);
    let m = Classifier::train(&d.classes, &d.texts, &d.labels, &TrainConfig::default());
    let big = toy::synthetic(5000, 4, 15, 22);
    let batch = m.predict_proba_batch(&big.texts);
    assert_eq!(batch.len(), 5000);
    for i in [0, 1, 2499, 2500, 2501, 4999] {
        assert_eq!(batch[i], m.predict_proba(&big.texts[i]), "row {i}");
    }
}
