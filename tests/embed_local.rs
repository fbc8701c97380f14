//! The local embedder on the real all-MiniLM-L6-v2 weights installed by
//! `scripts/embedder.sh install` (ignored by plain `cargo test`;
//! `scripts/test.sh` installs the weights and runs them).
//!
//! Reference values come from an independent numpy implementation of the
//! sentence-transformers pipeline (BertModel, mean pooling over the
//! attention mask, L2 norm) on the same weights, with the Python
//! `tokenizers` package for the ids.

use straddle::domain::EmbeddingsConfig;
use straddle::embed::{
    Embedder, LocalEmbedder, Precision, VectorStore, cosine, default_model_dir, embed_blocking,
    from_config,
};

fn model() -> LocalEmbedder {
    let dir = default_model_dir();
    LocalEmbedder::load(&dir).unwrap_or_else(|e| panic!("{e}"))
}

const SENTENCES: [&str; 4] = [
    "What is the capital of France?",
    "How do I reset my password?",
    "The stock market fell sharply on Tuesday.",
    "Café naïve résumé — “quoted” text!",
];

#[test]
#[ignore = "needs the local embedder weights; scripts/test.sh installs them"]
fn tokens_and_vectors_match_sentence_transformers() {
    let m = model();
    let ids: [&[u32]; 4] = [
        &[101, 2054, 2003, 1996, 3007, 1997, 2605, 1029, 102],
        &[101, 2129, 2079, 1045, 25141, 2026, 20786, 1029, 102],
        &[101, 1996, 4518, 3006, 3062, 9249, 2006, 9857, 1012, 102],
        &[
            101, 7668, 15743, 13746, 1517, 1523, 9339, 1524, 3793, 999, 102,
        ],
    ];
    for (s, want) in SENTENCES.iter().zip(ids) {
        assert_eq!(m.token_ids(s), want, "{s}");
    }
    let head: [[f32; 6]; 4] = [
        [
            0.082048, 0.036055, -0.003893, -0.004881, 0.025651, -0.057143,
        ],
        [
            0.006903, -0.063023, -0.072044, -0.032496, -0.042709, 0.070429,
        ],
        [0.051749, -0.022644, 0.070792, 0.062796, -0.030235, 0.024335],
        [-0.08302, 0.04615, 0.020743, 0.062652, 0.081842, 0.074257],
    ];
    let cos = [
        [1.0, 0.07471, 0.08574, -0.01485],
        [0.07471, 1.0, 0.05992, 0.01995],
        [0.08574, 0.05992, 1.0, 0.0163],
        [-0.01485, 0.01995, 0.0163, 1.0],
    ];
    let texts: Vec<String> = SENTENCES.iter().map(|s| s.to_string()).collect();
    let vecs = embed_blocking(&m, &texts).unwrap();
    assert_eq!(m.dim(), Some(384));
    for (i, v) in vecs.iter().enumerate() {
        assert_eq!(v.len(), 384);
        for (a, b) in v.iter().zip(&head[i]) {
            assert!(
                (a - b).abs() < 2e-5,
                "sentence {i}: {:?} vs {:?}",
                &v[..6],
                head[i]
            );
        }
        for (j, w) in vecs.iter().enumerate() {
            let c = cosine(v, w);
            assert!(
                (c - cos[i][j]).abs() < 1e-4,
                "cos({i},{j}) = {c}, want {}",
                cos[i][j]
            );
        }
    }
    // Batched with others of different length: the same vector.
    let alone = m.embed_sync(&[SENTENCES[2]]);
    for (a, b) in alone[0].iter().zip(&vecs[2]) {
        assert!((a - b).abs() < 1e-5);
    }
}

#[test]
#[ignore = "needs the local embedder weights; scripts/test.sh installs them"]
fn the_default_config_loads_the_installed_model() {
    let e = from_config(&EmbeddingsConfig::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .expect("local is the default backend");
    // `precision = "auto"`: bf16 where the CPU has AVX512_BF16 (the id
    // says so, and the vector is within bf16 rounding of the reference).
    let bf16 = LocalEmbedder::load_with(&default_model_dir(), Precision::Bf16)
        .unwrap()
        .precision()
        == Precision::Bf16;
    let (id, tol) = if bf16 {
        ("local:all-MiniLM-L6-v2@bf16", 2e-3)
    } else {
        ("local:all-MiniLM-L6-v2", 2e-5)
    };
    assert_eq!(e.model_id(), id);
    assert_eq!(e.dim(), Some(384));
    let v = embed_blocking(e.as_ref(), &[SENTENCES[0].to_string()]).unwrap();
    assert!((v[0][0] - 0.082048).abs() < tol, "{:?}", &v[0][..4]);
}

#[test]
#[ignore = "needs the local embedder weights; scripts/test.sh installs them"]
fn paraphrases_are_closer_than_unrelated_sentences() {
    let m = model();
    let v = m.embed_sync(&[
        "How can I change my password?",
        "I forgot my password, how do I reset it?",
        "What time does the game start tonight?",
        "Oil prices rose after the OPEC meeting.",
        "Crude prices climbed following OPEC's decision.",
    ]);
    let para1 = cosine(&v[0], &v[1]);
    let para2 = cosine(&v[3], &v[4]);
    for unrelated in [
        cosine(&v[0], &v[2]),
        cosine(&v[0], &v[3]),
        cosine(&v[2], &v[4]),
    ] {
        assert!(para1 > unrelated + 0.3, "{para1} vs {unrelated}");
        assert!(para2 > unrelated + 0.3, "{para2} vs {unrelated}");
    }
}

#[test]
#[ignore = "needs the local embedder weights; scripts/test.sh installs them"]
fn vector_store_reuses_vectors_across_opens() {
    let m = model();
    let dir = tempfile::tempdir().unwrap();
    let texts: Vec<String> = SENTENCES.iter().map(|s| s.to_string()).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let first = rt
        .block_on(VectorStore::open(dir.path(), m.model_id()).embed(&m, &texts))
        .unwrap();
    let store = VectorStore::open(dir.path(), m.model_id());
    assert_eq!(store.len(), 4);
    assert_eq!(store.get(SENTENCES[1]).unwrap(), first[1].as_slice());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local embedder weights; scripts/test.sh installs them"]
async fn vectors_for_a_project_state_on_a_multi_threaded_runtime() {
    use straddle::domain::{Event, EventKind, NewSample, Origin, ProjectState, SampleAdded};
    let m = model();
    let mut state = ProjectState::default();
    for (i, t) in SENTENCES.iter().enumerate() {
        let id = i as u64 + 1;
        state.apply(&Event {
            v: 1,
            id,
            ts: id,
            kind: EventKind::SampleAdded(SampleAdded::new(
                id,
                NewSample {
                    text: t.to_string(),
                    label: "A".into(),
                    origin: Origin::Seed,
                    provenance: Default::default(),
                },
            )),
        });
    }
    let cache = tempfile::tempdir().unwrap();
    let v = straddle::embed::vectors_for(cache.path(), &state, &m)
        .await
        .unwrap();
    assert_eq!(v.len(), 4);
    let direct = m.embed_sync(&[SENTENCES[3]]);
    assert!(cosine(&v[&4], &direct[0]) > 0.99999);
}

/// A text's vector does not depend on the batch it is embedded in: the
/// texts are sorted by length and cut into batches of at most 512 tokens
/// (padded to the longest, the padding masked), and each vector is the
/// one the text gets alone, bit for bit. So the forward pass's batch
/// size is a memory and speed setting only.
#[test]
#[ignore = "needs the local embedder weights; scripts/test.sh installs them"]
fn a_texts_vector_does_not_depend_on_its_batch() {
    let m = model();
    let mut texts: Vec<String> = Vec::new();
    for i in 0..14 {
        let words = 1 + (i * 5) % 13;
        let t: Vec<String> = (0..words)
            .map(|w| format!("{} {}", SENTENCES[(i + w) % 4], w))
            .collect();
        texts.push(t.join(" "));
    }
    // Longer than a batch's token budget: a batch of its own, cut at 256.
    texts.push(SENTENCES[2].repeat(120));
    let tokens: usize = texts.iter().map(|t| m.token_ids(t).len()).sum();
    assert!(tokens > 2 * 512, "several batches: {tokens} tokens");
    let together = m.embed_sync(&texts);
    assert_eq!(together.len(), texts.len());
    for (t, v) in texts.iter().zip(&together) {
        let alone = m.embed_sync(std::slice::from_ref(t));
        assert_eq!(&alone[0], v, "{t}");
    }
}
