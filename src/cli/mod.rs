//! Headless subcommands. Thin: each parses its flags and drives the same
//! core the TUI uses. One file per command (or group) keeps them apart.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

pub mod doctor;
pub mod eval;
pub mod export;
pub mod generate;
pub mod import;
pub mod init;
pub mod out;
pub mod stats;

/// Grow a handful of labelled examples into a curated text-classification
/// dataset with an LLM.
#[derive(Debug, Parser)]
#[command(name = "straddle", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a project from seed examples (or a built-in example).
    Init(InitArgs),
    /// Add more examples: seeds, or held-out validation/test examples.
    Import(ImportArgs),
    /// Write the accepted examples as JSONL, CSV or a Hugging Face folder.
    Export(ExportArgs),
    /// Counts per class, journal health, LLM usage.
    Stats(StatsArgs),
    /// Check the LLM backend and say how to fix what fails.
    Doctor(DoctorArgs),
    /// Generate examples with the LLM (class-boundary mix or plain).
    Generate(GenerateArgs),
    /// Relabel generated examples that have no verdict yet.
    Relabel(RelabelArgs),
    /// Apply bulk review rules (recorded as rule decisions).
    Review(ReviewArgs),
    /// Print one rendered prompt for inspection.
    Prompt(PromptArgs),
    /// Train the small classifier and score it on held-out examples.
    Eval(EvalArgs),
    /// Run S3 rounds: generate, relabel, review, train, score, extrapolate.
    Loop(LoopArgs),
    /// Open the terminal UI (the default without a subcommand).
    Tui(TuiArgs),
}

/// Flags shared by every command that calls the LLM; they override
/// `[backend]` in `straddle.toml` for this run.
#[derive(Debug, Clone, Default, Args)]
pub struct BackendFlags {
    /// Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8765/v1
    #[arg(long)]
    pub base_url: Option<String>,
    /// Model name.
    #[arg(long)]
    pub model: Option<String>,
    /// Maximum requests in flight.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Ask the server even where the response cache has an answer.
    #[arg(long)]
    pub no_cache: bool,
}

impl BackendFlags {
    /// Overlay the flags that were given on the project's `[backend]`.
    pub fn apply(&self, backend: &mut crate::domain::BackendConfig) {
        if let Some(url) = &self.base_url {
            backend.base_url = url.clone();
        }
        if let Some(model) = &self.model {
            backend.model = model.clone();
        }
        if let Some(n) = self.concurrency {
            backend.max_concurrency = n.max(1);
        }
    }

    /// The response cache in `cache_dir`, write-only under `--no-cache`.
    pub fn cache(&self, cache_dir: impl Into<std::path::PathBuf>) -> crate::llm::ResponseCache {
        let cache = crate::llm::ResponseCache::new(cache_dir);
        if self.no_cache {
            cache.write_only()
        } else {
            cache
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportRole {
    Seed,
    Validation,
    Test,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
    Hf,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Project folder to create.
    pub dir: PathBuf,
    /// Seed examples: CSV, TSV or JSONL with text and label.
    #[arg(long, required_unless_present = "example", conflicts_with = "example")]
    pub seeds: Option<PathBuf>,
    /// Class descriptions: a two-column file (label, description).
    #[arg(long)]
    pub descriptions: Option<PathBuf>,
    /// Name of the text column/key in the seeds file.
    #[arg(long, default_value = "text")]
    pub text_col: String,
    /// Name of the label column/key in the seeds file.
    #[arg(long, default_value = "label")]
    pub label_col: String,
    /// Create a ready demo project instead (trec6, intents).
    #[arg(long)]
    pub example: Option<String>,
    /// One or two sentences about the texts, for the prompts.
    #[arg(long)]
    pub task: Option<String>,
    #[command(flatten)]
    pub backend: BackendFlags,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    pub dir: PathBuf,
    pub file: PathBuf,
    /// Role of the imported examples.
    #[arg(long = "as", value_enum, default_value = "seed")]
    pub role: ImportRole,
    #[arg(long, default_value = "text")]
    pub text_col: String,
    #[arg(long, default_value = "label")]
    pub label_col: String,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    pub dir: PathBuf,
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: ExportFormat,
    /// Output file (jsonl, csv: the train file; the validation file gets a
    /// `.validation` suffix) or folder (hf).
    #[arg(long)]
    pub out: PathBuf,
    /// Also export the seed examples.
    #[arg(long)]
    pub include_seeds: bool,
    /// Share of rows for the validation split (stratified by label).
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Seed of the split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// CSV: add provenance columns.
    #[arg(long)]
    pub with_provenance: bool,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    pub dir: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    pub dir: PathBuf,
    #[command(flatten)]
    pub backend: BackendFlags,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    pub dir: PathBuf,
    /// Number of examples to generate.
    #[arg(long)]
    pub count: usize,
    #[arg(long)]
    pub strategy: Option<crate::domain::Strategy>,
    /// Fixed α (share of the intended class).
    #[arg(long, conflicts_with = "alpha_range")]
    pub alpha: Option<f64>,
    /// α range LO,HI drawn per class.
    #[arg(long, value_parser = parse_range)]
    pub alpha_range: Option<(f64, f64)>,
    /// Classes per mix prompt (t).
    #[arg(long)]
    pub classes: Option<usize>,
    /// Seed examples per class in the prompt (k).
    #[arg(long)]
    pub shots: Option<usize>,
    /// Examples asked for per request.
    #[arg(long)]
    pub per_request: Option<usize>,
    /// Skip the relabel step.
    #[arg(long)]
    pub no_relabel: bool,
    /// Apply the accept rule as examples arrive (MIN_CONF).
    #[arg(long)]
    pub auto_accept: Option<f64>,
    #[command(flatten)]
    pub backend: BackendFlags,
}

#[derive(Debug, Args)]
pub struct RelabelArgs {
    pub dir: PathBuf,
    #[command(flatten)]
    pub backend: BackendFlags,
}

#[derive(Debug, Args)]
pub struct ReviewArgs {
    pub dir: PathBuf,
    /// Accept pending examples whose relabel agrees with confidence ≥ MIN_CONF.
    #[arg(long)]
    pub accept_agreeing: Option<f64>,
    /// Reject pending examples whose relabel disagrees with confidence ≥ MIN_CONF.
    #[arg(long)]
    pub reject_disagreeing: Option<f64>,
}

#[derive(Debug, Args)]
pub struct PromptArgs {
    pub dir: PathBuf,
    #[arg(long, default_value = "mix")]
    pub strategy: crate::domain::Strategy,
    /// Print the relabel prompt for the first generated example instead.
    #[arg(long)]
    pub relabel: bool,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    pub dir: PathBuf,
    /// Held-out examples (CSV/TSV/JSONL); default: the project's
    /// imported validation/test examples.
    #[arg(long)]
    pub test: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LoopArgs {
    pub dir: PathBuf,
    #[arg(long, default_value_t = 2)]
    pub rounds: u32,
    #[arg(long, default_value_t = 50)]
    pub per_round: usize,
    /// Accept examples whose relabel agrees with confidence ≥ MIN_CONF.
    #[arg(long)]
    pub auto_accept: Option<f64>,
    #[command(flatten)]
    pub backend: BackendFlags,
}

#[derive(Debug, Args)]
pub struct TuiArgs {
    /// Project folder (default: the current folder).
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub backend: BackendFlags,
}

fn parse_range(s: &str) -> Result<(f64, f64), String> {
    let (lo, hi) = s
        .split_once(',')
        .ok_or_else(|| format!("expected LO,HI, got '{s}'"))?;
    let lo: f64 = lo
        .trim()
        .parse()
        .map_err(|_| format!("bad number '{lo}'"))?;
    let hi: f64 = hi
        .trim()
        .parse()
        .map_err(|_| format!("bad number '{hi}'"))?;
    if !(0.0..=1.0).contains(&lo) || !(0.0..=1.0).contains(&hi) || lo > hi {
        return Err(format!("range must satisfy 0 ≤ LO ≤ HI ≤ 1, got {lo},{hi}"));
    }
    Ok((lo, hi))
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Init(a)) => init::run(a),
        Some(Command::Import(a)) => import::run(a),
        Some(Command::Export(a)) => export::run(a),
        Some(Command::Stats(a)) => stats::run(a),
        Some(Command::Doctor(a)) => doctor::run(a),
        Some(Command::Generate(a)) => generate::run_generate(a),
        Some(Command::Relabel(a)) => generate::run_relabel(a),
        Some(Command::Review(a)) => generate::run_review(a),
        Some(Command::Prompt(a)) => generate::run_prompt(a),
        Some(Command::Eval(a)) => eval::run_eval(a),
        Some(Command::Loop(a)) => eval::run_loop(a),
        Some(Command::Tui(a)) => crate::tui::run(a),
        None => crate::tui::run(TuiArgs {
            dir: None,
            backend: BackendFlags::default(),
        }),
    }
}
