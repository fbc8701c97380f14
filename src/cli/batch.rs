//! `straddle batch prepare|ingest|submit|status|fetch|cancel`: the generation
//! session's requests as an OpenAI batch file, and the replies of any batch
//! engine brought back through it (`app::batch`).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::BackendFlags;
use crate::app::batch::{self, generator_for};
use crate::llm::LlmClient;
use crate::store::Project;

#[derive(Debug, Args)]
pub struct BatchArgs {
    #[command(subcommand)]
    pub command: BatchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BatchCommand {
    /// Plan requests into batches/NAME/input.jsonl (OpenAI batch format).
    Prepare(PrepareArgs),
    /// Read a batch output file (OpenAI or `vllm run-batch`) into the project.
    Ingest(IngestArgs),
    /// Upload planned batches to /v1/files and create them at /v1/batches.
    Submit(DirArgs),
    /// Ask the provider where each batch stands.
    Status(DirArgs),
    /// Download and ingest the output and error files of finished batches.
    Fetch(DirArgs),
    /// Cancel submitted batches that are not finished (what was answered
    /// before the cancel is fetched and ingested as usual).
    Cancel(CancelArgs),
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// Project folder.
    pub dir: PathBuf,
    /// Only this batch (`b1`, …); default: every open one.
    #[arg(long)]
    pub batch: Option<String>,
    #[command(flatten)]
    pub backend: BackendFlags,
}

#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// Project folder.
    pub dir: PathBuf,
    /// Examples to plan requests for.
    #[arg(long, default_value_t = 0)]
    pub count: usize,
    /// How prompts are built (default: the project's `[generation]`).
    #[arg(long, value_parser = super::strategy_parser())]
    pub strategy: Option<crate::domain::Strategy>,
    /// Examples asked for per request.
    #[arg(long)]
    pub per_request: Option<usize>,
    /// Also plan the relabel of every generated example without a verdict.
    #[arg(long)]
    pub relabel: bool,
    #[command(flatten)]
    pub backend: BackendFlags,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Project folder.
    pub dir: PathBuf,
    /// The batch output (or error) file.
    pub results: PathBuf,
    /// The provider's batch id, recorded in the provenance.
    #[arg(long)]
    pub batch_id: Option<String>,
    #[command(flatten)]
    pub backend: BackendFlags,
}

#[derive(Debug, Args)]
pub struct DirArgs {
    /// Project folder.
    pub dir: PathBuf,
    #[command(flatten)]
    pub backend: BackendFlags,
}

pub fn run(args: BatchArgs) -> anyhow::Result<()> {
    match args.command {
        BatchCommand::Prepare(a) => prepare(a),
        BatchCommand::Ingest(a) => {
            let mut project = Project::open(&a.dir)?;
            let backend = a.backend.effective(&project.config().backend);
            let g = generator_for(&project)?;
            let r = batch::ingest(&mut project, g, &backend, &a.results, a.batch_id.as_deref())?;
            report(&r);
            Ok(())
        }
        BatchCommand::Submit(a) => remote(a, |p, c, _| {
            Box::pin(async move {
                let made = batch::submit(p, c, None).await?;
                if made.is_empty() {
                    println!("nothing to submit (every planned batch is submitted)");
                }
                for m in made {
                    println!("submitted {m}");
                }
                Ok(())
            })
        }),
        BatchCommand::Status(a) => remote(a, |p, c, _| {
            Box::pin(async move {
                for l in batch::refresh(p, c).await? {
                    println!("{l}");
                }
                Ok(())
            })
        }),
        BatchCommand::Cancel(a) => {
            let only = a.batch.clone();
            remote(
                DirArgs {
                    dir: a.dir,
                    backend: a.backend,
                },
                |p, c, _| {
                    Box::pin(async move {
                        for l in batch::cancel(p, c, only.as_deref()).await? {
                            println!("{l}");
                        }
                        println!(
                            "then `straddle batch fetch` ingests what was answered before the cancel"
                        );
                        Ok(())
                    })
                },
            )
        }
        BatchCommand::Fetch(a) => remote(a, |p, c, b| {
            Box::pin(async move {
                let done = batch::fetch(p, c, generator_for, &b).await?;
                if done.is_empty() {
                    println!("no finished batch to fetch (see `straddle batch status`)");
                }
                for (name, r) in done {
                    print!("{name}: ");
                    report(&r);
                }
                Ok(())
            })
        }),
    }
}

type Step<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + 'a>>;

fn remote(
    a: DirArgs,
    f: impl for<'a> FnOnce(&'a mut Project, &'a LlmClient, crate::domain::BackendConfig) -> Step<'a>,
) -> anyhow::Result<()> {
    let mut project = Project::open(&a.dir)?;
    let backend = a.backend.effective(&project.config().backend);
    let client = LlmClient::new(&backend)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(f(&mut project, &client, backend))
}

fn prepare(a: PrepareArgs) -> anyhow::Result<()> {
    let mut project = Project::open(&a.dir)?;
    let backend = a.backend.effective(&project.config().backend);
    let mut settings = project.generation_settings();
    if let Some(s) = a.strategy {
        if crate::augment::strategy::get(s).input() != crate::augment::strategy::Input::Settings {
            return Err(crate::error::user(format!(
                "the {} strategy is planned by an S3 round, not by a batch",
                s.as_str()
            )));
        }
        settings.strategy = s;
    }
    if let Some(n) = a.per_request {
        settings.per_request = n.max(1);
    }
    settings.target_count = a.count;
    let mut g = generator_for(&project)?;
    g.set_settings(settings, project.state());
    let p = batch::prepare(&mut project, g, &backend, a.count, a.relabel)?;
    println!(
        "batch {}: {} generate + {} relabel requests in {}",
        p.name,
        p.generate,
        p.relabel,
        p.input.display()
    );
    println!(
        "next: `straddle batch submit {0}` (OpenAI-compatible Batch API), or run the file with \
         `vllm run-batch -i {1} -o results.jsonl --model MODEL` and `straddle batch ingest {0} results.jsonl`",
        a.dir.display(),
        p.input.display()
    );
    Ok(())
}

fn report(r: &batch::IngestReport) {
    println!("{r}");
    for n in &r.notes {
        eprintln!("  {n}");
    }
    for e in r.errors.iter().take(20) {
        eprintln!("  {e}");
    }
    if r.errors.len() > 20 {
        eprintln!("  … and {} more", r.errors.len() - 20);
    }
}
