#!/usr/bin/env bash
# Run the whole test suite: formatting, lints, unit + integration tests
# (including the layer check, tests/layers.rs), and the end-to-end test
# against a real small local model (llama.cpp server via llama-cpp-python,
# SmolLM2-135M), installed once into a cached virtualenv,
# and the local embedder's tests on the real all-MiniLM-L6-v2 weights
# (installed once into ~/.cache/straddle/embedder). Plain `cargo test`
# runs everything except the tests that need that model (marked #[ignore]).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/local-llm.sh install
scripts/embedder.sh install

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked -- --include-ignored
