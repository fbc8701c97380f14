//! Dedup at scale: checking and indexing one generated text against an
//! index of 100k texts must stay a few hash lookups, not a scan.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

use straddle::augment::dedup::DedupIndex;
use straddle::augment::sampling::splitmix64;

/// Sentence `i`: 10 words from a 20k vocabulary.
fn sentence(i: u64) -> String {
    let mut x = splitmix64(i);
    (0..10)
        .map(|_| {
            x = splitmix64(x);
            format!("w{}", x % 20_000)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn bench(c: &mut Criterion) {
    let texts: Vec<String> = (0..100_000).map(sentence).collect();
    let mut idx = DedupIndex::new(0.8);
    for (i, t) in texts.iter().enumerate() {
        idx.insert(i as u64, t);
    }
    let probes: Vec<String> = (200_000..201_000).map(sentence).collect();
    let near: Vec<String> = texts[..1000].iter().map(|t| format!("{t} extra")).collect();
    let mut g = c.benchmark_group("dedup_100k");
    g.bench_function("check_new_text", |b| {
        let mut k = 0;
        b.iter(|| {
            k = (k + 1) % probes.len();
            black_box(idx.check(&probes[k]))
        })
    });
    g.bench_function("check_near_duplicate", |b| {
        let mut k = 0;
        b.iter(|| {
            k = (k + 1) % near.len();
            black_box(idx.check(&near[k]))
        })
    });
    g.bench_function("build_index_10k", |b| {
        b.iter(|| {
            let mut i = DedupIndex::new(0.8);
            for (n, t) in texts[..10_000].iter().enumerate() {
                i.check_insert(n as u64, t);
            }
            black_box(i.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
