//! Headless subcommands. Thin: each parses its flags and drives the same
//! core the TUI uses. One file per command (or group) keeps them apart.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

pub mod batch;
pub mod doctor;
pub mod eval;
pub mod export;
pub mod generate;
pub mod import;
pub mod init;
pub mod judge;
pub mod out;
pub mod review;
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
    /// Measure the LLM relabeler on the held-out validation examples.
    Judge(JudgeArgs),
    /// Print one rendered prompt for inspection.
    Prompt(PromptArgs),
    /// Train the small classifier and score it on held-out examples.
    Eval(EvalArgs),
    /// Run S3 rounds: generate, relabel, review, train, score, extrapolate.
    Loop(LoopArgs),
    /// Batch files: plan requests for a batch engine, submit, follow, ingest.
    Batch(batch::BatchArgs),
    /// Open the terminal UI (the default without a subcommand).
    Tui(TuiArgs),
}

pub use crate::app::backend::BackendFlags;
pub use crate::app::export::ExportFormat;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportRole {
    Seed,
    Validation,
    Test,
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
    /// Project folder.
    pub dir: PathBuf,
    /// Examples to import: CSV, TSV or JSONL with text and label.
    pub file: PathBuf,
    /// Role of the imported examples.
    #[arg(long = "as", value_enum, default_value = "seed")]
    pub role: ImportRole,
    /// Name of the text column/key in the file.
    #[arg(long, default_value = "text")]
    pub text_col: String,
    /// Name of the label column/key in the file.
    #[arg(long, default_value = "label")]
    pub label_col: String,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Project folder.
    pub dir: PathBuf,
    /// File format: JSONL rows, a CSV table, or a Hugging Face `datasets`
    /// folder with a dataset card.
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
    /// Write the provenance fields (id, origin, intended label, strategy,
    /// α, model, verdict, decision, actor) besides text and label, in every
    /// format [default: yes for jsonl and hf, no for csv].
    #[arg(long, value_enum, value_name = "ANSWER")]
    pub provenance: Option<YesNo>,
    /// Same as `--provenance yes`.
    #[arg(long, conflicts_with = "provenance")]
    pub with_provenance: bool,
    /// Refuse to export when the accepted examples make the small model
    /// worse on the held-out examples (beyond the bootstrap interval).
    #[arg(long)]
    pub strict: bool,
    /// Skip the data gate (seeds only vs seeds + accepted on the held-out
    /// examples) that runs before the export.
    #[arg(long, conflicts_with = "strict")]
    pub no_gate: bool,
}

/// A yes/no flag value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum YesNo {
    Yes,
    No,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Project folder.
    pub dir: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Project folder.
    pub dir: PathBuf,
    #[command(flatten)]
    pub backend: BackendFlags,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Project folder.
    pub dir: PathBuf,
    /// Number of examples to generate.
    #[arg(long)]
    pub count: usize,
    /// How prompts are built (default: the project's `[generation]`).
    #[arg(long, value_parser = strategy_parser())]
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
    /// Auto-accept even when `straddle judge` found the relabeler no
    /// better than chance (or never measured it).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub backend: BackendFlags,
}

#[derive(Debug, Args)]
pub struct RelabelArgs {
    /// Project folder.
    pub dir: PathBuf,
    #[command(flatten)]
    pub backend: BackendFlags,
}

#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// Project folder.
    pub dir: PathBuf,
    /// Accept pending examples whose relabel agrees with confidence ≥ MIN_CONF.
    #[arg(long)]
    pub accept_agreeing: Option<f64>,
    /// Reject pending examples whose relabel disagrees with confidence ≥ MIN_CONF.
    #[arg(long)]
    pub reject_disagreeing: Option<f64>,
    /// Accept every generated example the filter passes (pending ones
    /// unless the filter names a status).
    #[arg(long)]
    pub accept_all: bool,
    /// Reject every generated example the filter passes.
    #[arg(long)]
    pub reject_all: bool,
    /// What --accept-all/--reject-all take, as the TUI's `/`:
    /// 'class:X status:pending|accepted|rejected agree:yes|no|none actor:auto|person WORDS'.
    #[arg(long)]
    pub filter: Option<String>,
    /// Apply rules that trust the relabeler even when `straddle judge`
    /// found it no better than chance (or never measured it).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct JudgeArgs {
    /// Project folder.
    pub dir: PathBuf,
    /// At most this many validation examples (spread over the classes).
    #[arg(long, default_value_t = 100)]
    pub sample: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Do not ask the LLM: measure the embedding judges (and the ensemble
    /// with the relabeler's recorded answers) only.
    #[arg(long)]
    pub no_llm: bool,
    #[command(flatten)]
    pub backend: BackendFlags,
}

#[derive(Debug, Args)]
pub struct PromptArgs {
    /// Project folder.
    pub dir: PathBuf,
    /// Whose prompt to print.
    #[arg(long, default_value = "mix", value_parser = strategy_parser())]
    pub strategy: crate::domain::Strategy,
    /// Print the relabel prompt for the first generated example instead.
    #[arg(long)]
    pub relabel: bool,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Project folder.
    pub dir: PathBuf,
    /// Held-out examples (CSV/TSV/JSONL); default: the project's
    /// imported validation/test examples.
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Print the scores as JSON.
    #[arg(long)]
    pub json: bool,
    /// The small model: `auto` (logistic regression on sentence
    /// embeddings when an embedder is configured and installed, else
    /// hashed n-grams), `embedding` or `ngram`.
    #[arg(long, value_enum, default_value_t)]
    pub model: crate::app::small_model::ModelChoice,
}

#[derive(Debug, Args)]
pub struct LoopArgs {
    /// Project folder.
    pub dir: PathBuf,
    /// S3 rounds to run (train, score, extrapolate the errors).
    #[arg(long, default_value_t = 2)]
    pub rounds: u32,
    /// New examples generated per round.
    #[arg(long, default_value_t = 50)]
    pub per_round: usize,
    /// Accept examples whose relabel agrees with confidence ≥ MIN_CONF.
    #[arg(long)]
    pub auto_accept: Option<f64>,
    /// Auto-accept even when `straddle judge` found the relabeler no
    /// better than chance (or never measured it).
    #[arg(long)]
    pub force: bool,
    /// The small model scoring each round: `auto` (logistic regression
    /// on sentence embeddings when an embedder is configured and
    /// installed, else the n-gram model), `embedding` or `ngram`
    /// (`--model` names the LLM).
    #[arg(long, value_enum, default_value_t)]
    pub small_model: crate::app::small_model::ModelChoice,
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

/// `--strategy`: the strategies by name, listed in `--help`.
pub fn strategy_parser() -> impl clap::builder::TypedValueParser<Value = crate::domain::Strategy> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(crate::domain::Strategy::ALL.map(|s| s.as_str()))
        .try_map(|s| s.parse::<crate::domain::Strategy>())
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

/// Run a headless command (`straddle::run` sends `tui` to the terminal UI).
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Init(a) => init::run(a),
        Command::Import(a) => import::run(a),
        Command::Export(a) => export::run(a),
        Command::Stats(a) => stats::run(a),
        Command::Doctor(a) => doctor::run(a),
        Command::Generate(a) => generate::run_generate(a),
        Command::Relabel(a) => generate::run_relabel(a),
        Command::Review(a) => review::run(a),
        Command::Judge(a) => judge::run(a),
        Command::Prompt(a) => generate::run_prompt(a),
        Command::Eval(a) => eval::run_eval(a),
        Command::Loop(a) => eval::run_loop(a),
        Command::Batch(a) => batch::run(a),
        Command::Tui(_) => Err(anyhow::anyhow!(
            "the terminal UI is opened by straddle::run, not by a headless command"
        )),
    }
}

#[cfg(test)]
mod help_tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every flag and positional of every subcommand has help text, and a
    /// flag with a fixed set of values lists them.
    #[test]
    fn every_flag_has_help_and_lists_its_values() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                if help.trim().is_empty() {
                    missing.push(format!("{path} {id}: no help"));
                }
                let values = a.get_possible_values();
                if matches!(id, "strategy" | "format" | "provenance") && values.is_empty() {
                    missing.push(format!("{path} {id}: values not listed"));
                }
                if a.get_action().takes_values()
                    && !values.is_empty()
                    && a.is_hide_possible_values_set()
                {
                    missing.push(format!("{path} {id}: values hidden"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "straddle", &mut missing);
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }
}
