//! Write the issue-15 scale project: 200,000 generated samples, about
//! 600,000 events (≈ 160 MB journal) and one 10 MB seed text, the same
//! bytes on every run (see `straddle::store::scale`).
//!
//! ```text
//! cargo run --release --example scale_project -- DIR [SAMPLES] [BIG_SEED_MB]
//! ```
//!
//! `scripts/scale.sh` builds it and measures the real binary on it.

use std::path::PathBuf;
use std::time::Instant;

use straddle::store::scale::{ScaleSpec, write};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or_else(|| anyhow::anyhow!("usage: scale_project DIR [SAMPLES] [BIG_SEED_MB]"))?,
    );
    let mut spec = ScaleSpec::default();
    if let Some(n) = args.next() {
        spec.samples = n.parse()?;
    }
    if let Some(mb) = args.next() {
        spec.big_seed_bytes = mb.parse::<usize>()? << 20;
    }
    let t = Instant::now();
    let s = write(&dir, spec)?;
    println!(
        "{}: {} samples, {} events, {:.1} MB journal ({} accepted, {} rejected, {} pending) in {:.1} s",
        dir.display(),
        s.samples,
        s.events,
        s.journal_bytes as f64 / 1e6,
        s.accepted,
        s.rejected,
        s.pending,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
