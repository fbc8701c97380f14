//! Batch files: the generation session's requests carried by a batch
//! engine (the OpenAI-compatible Batch API, `vllm run-batch`) instead of
//! the live engine, and their replies brought back through the session.
//!
//! * [`prepare`] plans with the [`Session`] exactly as a live run does (a
//!   `Start` or `RelabelPending` with every slot free), writes
//!   `batches/NAME/input.jsonl` (one OpenAI batch line per request, the
//!   body built by the live client's `body`) and `batches/NAME/plan.jsonl`
//!   (each request's plan: what its reply is read with), then journals
//!   `batch_planned` with the custom ids, both files' SHA-256, the seed
//!   stream and the request counter, so a later run plans fresh requests.
//! * [`ingest`] reads an output (or error) file and hands every line to
//!   the session as the engine would hand it a live reply
//!   ([`Session::carry`], then `EngineEvent::Finished`/`Failed`): the same
//!   parsing, dedup, failure recording, with the batch name, the remote
//!   batch id and the custom id in each example's provenance. A custom id
//!   already in the journal is skipped, so ingesting twice adds nothing;
//!   bad lines are reported as `file:line: why` and the rest is kept.
//!   Events are staged and written in groups ([`Project::stage`]); a
//!   crash loses at most the unwritten groups, which a re-run ingests
//!   (a reply whose events were torn in the middle of a line keeps the
//!   examples before the tear, as a live reply would). Expired or
//!   cancelled lines are reported, not recorded: the next `prepare`
//!   plans afresh. With `[denoise]` on, the project's embedder judges the
//!   new examples through the session as in a live run (`noise_scored`,
//!   `auto:denoise` decisions with reasons). Known difference: the
//!   near-copy check can judge an example against a different set of
//!   earlier vectors than a live run of the same replies did (a live run
//!   answers embed jobs as replies arrive, an ingest queues them all), so
//!   a near-copy verdict may differ between the two (found by
//!   `tests/batch.rs`; not resolved).
//! * [`submit`], [`refresh`], [`cancel`] and [`fetch`] follow a batch
//!   through `/v1/files` and `/v1/batches`; every step journals what it
//!   learnt (`batch_updated`) and can be re-run after a crash. A cancelled
//!   batch's partial output is fetched and ingested like a finished one's.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::embedding::{EmbedWorker, Embedded};
use super::session::{Command, Counting, EmbedJob, Note, Output, Session, SessionConfig};
use crate::augment::{Generator, PlannedRequest, RequestKind};
use crate::domain::{BackendConfig, BatchPlanned, BatchUpdated, EventKind, ProjectState};
use crate::engine::EngineEvent;
use crate::llm::LlmClient;
use crate::llm::batch::{LineResult, OutputLine, input_line, is_final};
use crate::store::{Project, write_atomic};

/// Folder of the batches in a project.
pub const BATCHES_DIR: &str = "batches";
/// Provenance keys of an ingested example.
pub const BATCH_KEY: &str = "batch";
pub const BATCH_ID_KEY: &str = "batch_id";
pub const CUSTOM_ID_KEY: &str = "custom_id";
/// Staged events are written after this many lines.
const FLUSH_EVERY: usize = 4096;

/// `batches/NAME` of a project.
pub fn batch_dir(project: &Path, name: &str) -> PathBuf {
    project.join(BATCHES_DIR).join(name)
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The generator of a project with its live settings and templates (as
/// `straddle generate` makes it).
pub fn generator_for(project: &Project) -> anyhow::Result<Generator> {
    let templates = crate::augment::Templates::load(&project.prompts_dir())?;
    Ok(Generator::new(
        project.config(),
        project.classes(),
        project.generation_settings(),
        templates,
        project.state(),
    ))
}

/// What [`prepare`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub name: String,
    pub input: PathBuf,
    pub generate: usize,
    pub relabel: usize,
}

/// Plan the requests of a run with the session (every slot free): `count`
/// examples' worth of generate requests and, with `relabel`, the relabel
/// of every generated example without a verdict. The requests are those a
/// live run started from the same state would send first.
pub fn plan(
    generator: Generator,
    state: &ProjectState,
    backend: &BackendConfig,
    count: usize,
    relabel: bool,
) -> (Vec<PlannedRequest>, Generator) {
    let mut s = Session::new(
        generator,
        SessionConfig {
            relabel,
            auto_accept: None,
            concurrency: usize::MAX / 2,
            counting: Counting::ThisRun,
            backend: backend.clone(),
        },
    );
    let out = if count > 0 {
        s.command(
            state,
            Command::Start {
                target: Some(count),
                round: None,
                exact: false,
            },
        )
    } else {
        s.command(state, Command::RelabelPending)
    };
    let plans = out
        .submit
        .iter()
        .filter_map(|j| s.request(j.tag).cloned())
        .collect();
    (plans, s.generator().clone())
}

/// Samples whose relabel an earlier batch planned.
fn planned_relabels(state: &ProjectState) -> HashSet<u64> {
    state
        .batches
        .values()
        .flat_map(|(b, _)| b.custom_ids.iter())
        .filter_map(|id| id.rsplit_once("-s").and_then(|(_, n)| n.parse().ok()))
        .collect()
}

/// Plan a batch and write it (see the module docs).
pub fn prepare(
    project: &mut Project,
    generator: Generator,
    backend: &BackendConfig,
    count: usize,
    relabel: bool,
) -> anyhow::Result<Prepared> {
    let state = project.state();
    let mut n = state.batches.len() + 1;
    while state.batches.contains_key(&format!("b{n}")) {
        n += 1;
    }
    let name = format!("b{n}");
    let (mut plans, generator) = plan(generator, state, backend, count, relabel);
    let already = planned_relabels(state);
    plans.retain(
        |p| !matches!(p.kind, RequestKind::Relabel { sample } if already.contains(&sample)),
    );
    if plans.is_empty() {
        return Err(crate::error::user(
            "nothing to plan: give --count N, or --relabel with generated examples not yet relabelled or planned",
        ));
    }
    let client = LlmClient::new(backend)?;
    let (mut input, mut plan_file) = (String::new(), String::new());
    let mut ids = Vec::with_capacity(plans.len());
    let (mut generate, mut relabels) = (0, 0);
    for (i, mut p) in plans.into_iter().enumerate() {
        let id = match p.kind {
            RequestKind::Generate { .. } => {
                generate += 1;
                format!("{name}-g{i}")
            }
            RequestKind::Relabel { sample } => {
                relabels += 1;
                format!("{name}-s{sample}")
            }
        };
        p.provenance
            .extra
            .insert(BATCH_KEY.into(), serde_json::json!(name));
        p.provenance
            .extra
            .insert(CUSTOM_ID_KEY.into(), serde_json::json!(id));
        input.push_str(&input_line(
            &id,
            &client.body(&p.request),
            client.batch_api(),
        ));
        input.push('\n');
        plan_file.push_str(&serde_json::json!({"custom_id": id, "plan": p}).to_string());
        plan_file.push('\n');
        ids.push(id);
    }
    let dir = batch_dir(project.dir(), &name);
    std::fs::create_dir_all(&dir)?;
    let input_path = dir.join("input.jsonl");
    write_atomic(&dir.join("plan.jsonl"), plan_file.as_bytes())?;
    write_atomic(&input_path, input.as_bytes())?;
    project.append(vec![EventKind::BatchPlanned(BatchPlanned {
        batch: name.clone(),
        custom_ids: ids,
        input_sha256: sha256(input.as_bytes()),
        plan_sha256: sha256(plan_file.as_bytes()),
        stream: generator.stream(),
        next_request: generator.counter(),
    })])?;
    Ok(Prepared {
        name,
        input: input_path,
        generate,
        relabel: relabels,
    })
}

/// Counts of one ingest, and a message per bad line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestReport {
    pub lines: usize,
    /// Replies handed to the session (including failed requests).
    pub replies: usize,
    /// Lines whose custom id was ingested before.
    pub skipped: usize,
    pub examples: usize,
    pub duplicates: usize,
    pub verdicts: usize,
    /// Requests the file reports as failed (recorded like live failures).
    pub failed: usize,
    /// `file:line: why` for each line that failed or could not be used.
    pub errors: Vec<String>,
    /// The denoiser's work on the new examples (as in a live run).
    pub denoise: super::session::DenoiseReport,
    /// What the session said went wrong on the way (e.g. the embedder
    /// failed and denoising went off for the rest of the ingest).
    pub notes: Vec<String>,
}

impl std::fmt::Display for IngestReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} lines: {} replies ({} examples added, {} duplicates rejected, {} verdicts), \
             {} already ingested, {} failed requests, {} bad lines",
            self.lines,
            self.replies,
            self.examples,
            self.duplicates,
            self.verdicts,
            self.skipped,
            self.failed,
            self.errors.len() - self.failed.min(self.errors.len()),
        )?;
        let d = &self.denoise;
        if d.judged > 0 {
            write!(
                f,
                "; denoiser: {} judged, {} rejected as noise, {} near-copies, {} flagged",
                d.judged, d.rejected, d.near_copies, d.flagged
            )?;
        }
        Ok(())
    }
}

/// Custom ids the journal already holds a reply for.
fn ingested(state: &ProjectState) -> HashSet<String> {
    let of = |p: &crate::domain::Provenance| {
        p.extra
            .get(CUSTOM_ID_KEY)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let mut done: HashSet<String> = state
        .samples
        .iter()
        .filter_map(|s| of(&s.provenance))
        .chain(state.failures.iter().filter_map(|(_, f)| of(&f.provenance)))
        .collect();
    for (b, _) in state.batches.values() {
        for id in &b.custom_ids {
            if let Some((_, n)) = id.rsplit_once("-s")
                && let Ok(n) = n.parse::<u64>()
                && state.sample(n).is_some_and(|s| s.verdict().is_some())
            {
                done.insert(id.clone());
            }
        }
    }
    done
}

/// The plans of a batch (`plan.jsonl`, checked against the journal's
/// hash), each parsed when its reply comes: the file's lines are only
/// indexed by custom id up front, so an ingest holds one parsed plan at a
/// time instead of the whole batch's.
struct Plans {
    path: PathBuf,
    bytes: Vec<u8>,
    /// Custom id → (line number, byte range of its `plan`).
    at: HashMap<String, (usize, std::ops::Range<usize>)>,
}

impl Plans {
    /// The plans of batch `name` of the project in `dir`, whose planned
    /// batches are `planned` (name → the plan file's SHA-256 and the
    /// number of requests).
    fn load(
        dir: &Path,
        planned: &HashMap<String, (String, usize)>,
        name: &str,
    ) -> anyhow::Result<Plans> {
        let (plan_sha256, count) = planned
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("batch {name} was never planned in this project"))?;
        let path = batch_dir(dir, name).join("plan.jsonl");
        let bytes = std::fs::read(&path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        if sha256(&bytes) != *plan_sha256 {
            anyhow::bail!(
                "{} changed since batch {name} was planned (its SHA-256 differs from the journal's)",
                path.display()
            );
        }
        #[derive(serde::Deserialize)]
        struct Line<'a> {
            custom_id: String,
            #[serde(borrow)]
            plan: &'a serde_json::value::RawValue,
        }
        let mut at = HashMap::with_capacity(*count);
        let mut start = 0;
        for (i, l) in bytes.split(|b| *b == b'\n').enumerate() {
            let line_start = start;
            start += l.len() + 1;
            if l.is_empty() {
                continue;
            }
            // A line as `prepare` writes it (the file is the one it wrote:
            // the hash says so) is cut, not parsed: its plan is parsed
            // when taken. Any other line is parsed whole.
            if let Some((id, plan)) = canonical_plan_line(l) {
                let from = line_start + plan.start;
                at.insert(id.to_string(), (i + 1, from..from + plan.len()));
                continue;
            }
            let line: Line<'_> = serde_json::from_slice(l)
                .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))?;
            let raw = line.plan.get();
            let from = line_start + (raw.as_ptr() as usize - l.as_ptr() as usize);
            at.insert(line.custom_id, (i + 1, from..from + raw.len()));
        }
        Ok(Plans { path, bytes, at })
    }

    /// The plan of `id`, taken (a custom id is handed over once); `None`
    /// for an id the batch did not plan or already handed over.
    fn take(&mut self, id: &str) -> Option<anyhow::Result<PlannedRequest>> {
        let (line, range) = self.at.remove(id)?;
        Some(
            serde_json::from_slice(&self.bytes[range])
                .map_err(|e| anyhow::anyhow!("{}:{line}: {e}", self.path.display())),
        )
    }
}

/// Lines the reading thread of an ingest may be ahead of the session.
const READ_AHEAD: usize = 1024;

/// What the reading thread made of one line of the file.
enum LineRead {
    /// Blank.
    Blank,
    /// Not usable: why (reported as `file:line: why`).
    Bad(String),
    /// A custom id ingested before (or earlier in this file).
    Skipped,
    /// A reply or a failure for the session.
    Carry(Box<Carry>),
}

/// A line's request and result, read ahead of its turn.
struct Carry {
    id: String,
    plan: PlannedRequest,
    result: LineResult,
    /// A generate reply read by the session's generator's reader.
    read: Option<crate::augment::ReadReply>,
}

/// The reading stage of an ingest: everything about a line that does not
/// depend on the session's decisions on the lines before it. It owns the
/// set of custom ids done (a line whose id is there is skipped; a line
/// handed on adds its id) and the batches' plans.
struct LineReader<'a> {
    /// Number of the last line (the piece after the last newline).
    last: usize,
    done: HashSet<String>,
    plans: HashMap<String, Result<Plans, String>>,
    /// Batches planned in the project: name → plan file SHA-256, requests.
    planned: HashMap<String, (String, usize)>,
    dir: PathBuf,
    model: String,
    remote: Option<&'a str>,
    replies: crate::augment::ReplyReader,
}

impl LineReader<'_> {
    /// Read `file` and send its line count, then each line read.
    fn run(mut self, file: &Path, tx: std::sync::mpsc::SyncSender<Stage>) {
        let bytes = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                let _ = tx.send(Stage::Unreadable(format!(
                    "cannot read {}: {e}",
                    file.display()
                )));
                return;
            }
        };
        let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
        self.last = lines.len();
        self.done.reserve(lines.len());
        if tx.send(Stage::Lines(lines.len())).is_err() {
            return;
        }
        for (i, raw) in lines.into_iter().enumerate() {
            let at = i + 1;
            if tx.send(Stage::Line(at, self.read(at, raw))).is_err() {
                break; // the ingest stopped (an error)
            }
        }
    }

    fn read(&mut self, at: usize, raw: &[u8]) -> LineRead {
        if raw.iter().all(u8::is_ascii_whitespace) {
            return LineRead::Blank;
        }
        let line: OutputLine<'_> = match std::str::from_utf8(raw)
            .map_err(|e| e.to_string())
            .and_then(|s| serde_json::from_str(s).map_err(|e| e.to_string()))
        {
            Ok(l) => l,
            Err(e) if at == self.last => {
                return LineRead::Bad(format!(
                    "torn last line (no newline, not JSON: {e}); re-fetch the file"
                ));
            }
            Err(e) => return LineRead::Bad(format!("not a batch output line: {e}")),
        };
        let Some(id) = line.custom_id.clone() else {
            return LineRead::Bad("no custom_id".into());
        };
        if self.done.contains(&id) {
            return LineRead::Skipped;
        }
        let batch = id.rsplit_once('-').map(|(b, _)| b).unwrap_or("");
        let (dir, planned) = (&self.dir, &self.planned);
        let table = self
            .plans
            .entry(batch.to_string())
            .or_insert_with(|| Plans::load(dir, planned, batch).map_err(|e| format!("{e:#}")));
        let mut plan = match table {
            Ok(t) => match t.take(&id) {
                Some(Ok(p)) => p,
                Some(Err(e)) => return LineRead::Bad(format!("custom_id {id}: {e:#}")),
                None => return LineRead::Bad(format!("unknown custom_id {id}")),
            },
            Err(e) => return LineRead::Bad(format!("custom_id {id}: {e}")),
        };
        if let Some(remote) = self.remote {
            plan.provenance
                .extra
                .insert(BATCH_ID_KEY.into(), serde_json::json!(remote));
        }
        self.done.insert(id.clone());
        let result = line.result(&self.model);
        let read = match &result {
            LineResult::Reply(response) => self.replies.read(&plan, response),
            LineResult::Failed(_) => None,
        };
        LineRead::Carry(Box::new(Carry {
            id,
            plan,
            result,
            read,
        }))
    }
}

/// `{"custom_id":"ID","plan":PLAN}` with an ID of plain characters (no
/// quote, backslash or control character) and a PLAN object: the ID and
/// PLAN's byte range in `line`. `None` for anything else.
fn canonical_plan_line(line: &[u8]) -> Option<(&str, std::ops::Range<usize>)> {
    const HEAD: &[u8] = br#"{"custom_id":""#;
    const MID: &[u8] = br#"","plan":{"#;
    let rest = line.strip_prefix(HEAD)?;
    let end = rest.iter().position(|b| *b == b'"')?;
    let id = &rest[..end];
    if id.iter().any(|b| *b == b'\\' || *b < 0x20) || !rest[end..].starts_with(MID) {
        return None;
    }
    let from = HEAD.len() + end + MID.len() - 1;
    let to = line.len().checked_sub(1)?;
    if line[to] != b'}' || line[to - 1] != b'}' || to <= from {
        return None;
    }
    Some((std::str::from_utf8(id).ok()?, from..to))
}

/// Ingest a batch output or error file (see the module docs). `remote`
/// is the provider's batch id, recorded in the provenance when known.
pub fn ingest(
    project: &mut Project,
    generator: Generator,
    backend: &BackendConfig,
    file: &Path,
    remote: Option<&str>,
) -> anyhow::Result<IngestReport> {
    // Two stages: a second thread reads the file and each line (its
    // JSON, its plan, the reply's parse and dedup preparation: nothing
    // that depends on the lines before it) while this one sets up and
    // then hands the lines, in file order, to the session (dedup
    // decisions, events, the journal). The reader runs at most
    // `READ_AHEAD` lines ahead.
    let reader = LineReader {
        last: 0,
        done: ingested(project.state()),
        plans: HashMap::new(),
        planned: project
            .state()
            .batches
            .iter()
            .map(|(n, (b, _))| (n.clone(), (b.plan_sha256.clone(), b.custom_ids.len())))
            .collect(),
        dir: project.dir().to_path_buf(),
        model: backend.model.clone(),
        remote,
        replies: generator.reader(),
    };
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Stage>(READ_AHEAD);
        std::thread::Builder::new()
            .name("ingest-read".into())
            .spawn_scoped(scope, move || reader.run(file, tx))?;
        ingest_lines(project, generator, backend, file, rx)
    })
}

/// The reading thread's messages to the session's, in this order: the
/// file's line count (or why it cannot be read), then every line.
enum Stage {
    Lines(usize),
    Unreadable(String),
    Line(usize, LineRead),
}

/// The session's stage of [`ingest`]: `rx` brings the lines read.
fn ingest_lines(
    project: &mut Project,
    generator: Generator,
    backend: &BackendConfig,
    file: &Path,
    rx: std::sync::mpsc::Receiver<Stage>,
) -> anyhow::Result<IngestReport> {
    let lines = match rx.recv() {
        Ok(Stage::Lines(n)) => n,
        Ok(Stage::Unreadable(m)) => return Err(anyhow::anyhow!(m)),
        _ => anyhow::bail!("the reading thread of the ingest stopped"),
    };
    // Room for every example the file may bring (a generate line brings
    // at most what it asked for; the default asks `per_request`).
    let room = lines * generator.settings().per_request.max(1);
    let mut generator = generator;
    generator.reserve_dedup(room);
    project.reserve_samples(room);
    let mut session = Session::new(
        generator,
        SessionConfig {
            relabel: false,
            auto_accept: None,
            concurrency: 1,
            counting: Counting::ThisRun,
            backend: backend.clone(),
        },
    );
    // The denoiser judges the new examples as in a live run, when the
    // project has it on (`[denoise]`, `STRADDLE_DENOISE`).
    let mut embeddings = Embeddings::start(project, &mut session);
    let mut r = IngestReport::default();
    let shown = file.display().to_string();
    let mut since_flush = 0;
    // Tokens and cost of the replies (and embeddings) read since the last
    // flush: recorded with them (same write), so a crash counts each
    // reply's usage once.
    let mut usage = crate::domain::Usage::default();
    let mut embed_usage = crate::domain::Usage::default();
    for stage in rx {
        let Stage::Line(at, read) = stage else {
            continue;
        };
        let (id, plan, result, read) = match read {
            LineRead::Blank => continue,
            LineRead::Bad(m) => {
                r.lines += 1;
                r.errors.push(format!("{shown}:{at}: {m}"));
                continue;
            }
            LineRead::Skipped => {
                r.lines += 1;
                r.skipped += 1;
                continue;
            }
            LineRead::Carry(c) => {
                r.lines += 1;
                let Carry {
                    id,
                    plan,
                    result,
                    read,
                } = *c;
                (id, plan, result, read)
            }
        };
        let tag = session.carry(plan);
        let ev = match result {
            LineResult::Reply(response) => {
                let u = &response.usage;
                usage.requests += 1;
                usage.prompt_tokens += u64::from(u.prompt_tokens);
                usage.completion_tokens += u64::from(u.completion_tokens);
                usage.cost += crate::domain::token_cost(
                    backend.price_input_per_m,
                    backend.price_output_per_m,
                    u64::from(u.prompt_tokens),
                    u64::from(u.completion_tokens),
                );
                EngineEvent::Finished {
                    id: tag,
                    tag,
                    response,
                    latency: Duration::ZERO,
                }
            }
            LineResult::Failed(e) => {
                r.failed += 1;
                r.errors
                    .push(format!("{shown}:{at}: custom_id {id}: {}", e.message));
                EngineEvent::Failed {
                    id: tag,
                    tag,
                    reason: e.reason,
                    message: e.message,
                    raw: e.raw,
                }
            }
        };
        r.replies += 1;
        let out = session.on_engine_read(project.state(), ev, read);
        carry_out(project, &mut session, &mut embeddings, out, &mut r)?;
        // Judgements that came back meanwhile.
        while let Some(e) = embeddings.as_mut().and_then(Embeddings::try_next) {
            embed_usage.add(&e.usage);
            let out = session.on_embedded(project.state(), e.id, e.result);
            carry_out(project, &mut session, &mut embeddings, out, &mut r)?;
        }
        since_flush += 1;
        if since_flush >= FLUSH_EVERY {
            // A reply's judgement goes in the same write as the reply.
            commit_group(
                project,
                &mut session,
                &mut embeddings,
                (&mut usage, &mut embed_usage),
                &mut r,
            )?;
            since_flush = 0;
        }
    }
    commit_group(
        project,
        &mut session,
        &mut embeddings,
        (&mut usage, &mut embed_usage),
        &mut r,
    )?;
    drop(embeddings);
    let rep = session.report();
    r.examples = rep.examples;
    r.duplicates = rep.duplicates;
    r.denoise = rep.denoise.clone();
    Ok(r)
}

/// Stage what the session asks to append, acknowledge each append in
/// order (which may ask for more), and hand its embed jobs on.
fn carry_out(
    project: &mut Project,
    session: &mut Session,
    embeddings: &mut Option<Embeddings>,
    out: Output,
    r: &mut IngestReport,
) -> anyhow::Result<()> {
    let mut outs = std::collections::VecDeque::from([out]);
    while let Some(out) = outs.pop_front() {
        for n in out.notes {
            if let Note::Error(m) = n {
                r.notes.push(m);
            }
        }
        for job in out.embed {
            if let Some(e) = embeddings.as_mut() {
                e.send(job);
            }
        }
        for kinds in out.appends {
            r.verdicts += kinds
                .iter()
                .filter(|k| matches!(k, EventKind::VerdictRecorded(_)))
                .count();
            let events = project.stage_moved(kinds)?;
            outs.push_back(session.on_appended(project.state(), &events, true));
        }
    }
    Ok(())
}

/// Make what was staged durable in one write: the replies, their
/// judgements (waited for) and the usage read since the last group.
fn commit_group(
    project: &mut Project,
    session: &mut Session,
    embeddings: &mut Option<Embeddings>,
    (usage, embed_usage): (&mut crate::domain::Usage, &mut crate::domain::Usage),
    r: &mut IngestReport,
) -> anyhow::Result<()> {
    judge_all(project, session, embeddings, embed_usage, r)?;
    record_usage(project, usage, embed_usage)?;
    project.flush()?;
    Ok(())
}

/// Wait for every embed job out and stage the judgements.
fn judge_all(
    project: &mut Project,
    session: &mut Session,
    embeddings: &mut Option<Embeddings>,
    embed_usage: &mut crate::domain::Usage,
    r: &mut IngestReport,
) -> anyhow::Result<()> {
    while let Some(e) = embeddings.as_mut().and_then(Embeddings::next) {
        embed_usage.add(&e.usage);
        let out = session.on_embedded(project.state(), e.id, e.result);
        carry_out(project, session, embeddings, out, r)?;
    }
    Ok(())
}

/// The denoiser's embeddings during an ingest: the project's
/// [`EmbedWorker`] (as `generate` starts it) on a thread with a runtime of
/// its own, so the ingest stays synchronous and may be called from async
/// code (`fetch`). Jobs are answered in order, one after another.
struct Embeddings {
    jobs: Option<tokio::sync::mpsc::UnboundedSender<EmbedJob>>,
    done: std::sync::mpsc::Receiver<Embedded>,
    /// Jobs sent and not answered yet.
    open: Vec<u64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Embeddings {
    /// Turn the session's denoiser on when the project's `[denoise]` is
    /// on and its embedder is there; `None` otherwise (a missing local
    /// model is a warning, as for `generate`).
    fn start(project: &Project, session: &mut Session) -> Option<Embeddings> {
        let cache = crate::llm::cache::ResponseCache::new(project.cache_dir());
        let worker = match EmbedWorker::for_project(project.config(), &cache) {
            Ok(Some(w)) => w,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!("denoising is off: {e}");
                return None;
            }
        };
        super::embedding::arm_denoiser(session, project.config(), worker.label());
        let (jobs, mut rx) = tokio::sync::mpsc::unbounded_channel::<EmbedJob>();
        let (tx, done) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("ingest-embed".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                else {
                    return;
                };
                let mut worker = worker;
                rt.block_on(async move {
                    let (mut open, mut closed) = (0usize, false);
                    while !(closed && open == 0) {
                        tokio::select! {
                            j = rx.recv(), if !closed => match j {
                                Some(j) => {
                                    open += 1;
                                    worker.submit(j);
                                }
                                None => closed = true,
                            },
                            Some(e) = worker.recv(), if open > 0 => {
                                open -= 1;
                                if tx.send(e).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            })
            .ok()?;
        Some(Embeddings {
            jobs: Some(jobs),
            done,
            open: Vec::new(),
            thread: Some(thread),
        })
    }

    fn send(&mut self, job: EmbedJob) {
        self.open.push(job.id);
        if let Some(j) = &self.jobs {
            let _ = j.send(job);
        }
    }

    fn take(&mut self, e: Result<Embedded, ()>) -> Option<Embedded> {
        match e {
            Ok(e) => {
                self.open.retain(|id| *id != e.id);
                Some(e)
            }
            // The worker is gone: its jobs fail (the session turns
            // judging off and says so).
            Err(()) => self.open.pop().map(|id| Embedded {
                id,
                result: Err("the embedding worker stopped".into()),
                usage: Default::default(),
            }),
        }
    }

    /// An answer, if one is in.
    fn try_next(&mut self) -> Option<Embedded> {
        if self.open.is_empty() {
            return None;
        }
        match self.done.try_recv() {
            Ok(e) => self.take(Ok(e)),
            Err(std::sync::mpsc::TryRecvError::Empty) => None,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => self.take(Err(())),
        }
    }

    /// The next answer, waiting for it; `None` when none is out.
    fn next(&mut self) -> Option<Embedded> {
        if self.open.is_empty() {
            return None;
        }
        let e = self.done.recv().map_err(|_| ());
        self.take(e)
    }
}

impl Drop for Embeddings {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Stage the usage read since the last flush as a `usage_recorded` of run
/// `batch` (so `stats` counts batch tokens and cost like live ones), and
/// the embeddings' under their own run, as `generate` records them.
fn record_usage(
    project: &mut Project,
    usage: &mut crate::domain::Usage,
    embed_usage: &mut crate::domain::Usage,
) -> anyhow::Result<()> {
    let mut kinds = Vec::new();
    if usage.requests > 0 {
        kinds.push(EventKind::UsageRecorded(crate::domain::UsageRecorded {
            run: "batch".into(),
            usage: std::mem::take(usage),
        }));
    }
    if !embed_usage.is_empty() {
        kinds.push(EventKind::UsageRecorded(crate::domain::UsageRecorded {
            run: super::embedding::USAGE_RUN.into(),
            usage: std::mem::take(embed_usage),
        }));
    }
    if !kinds.is_empty() {
        project.stage(kinds)?;
    }
    Ok(())
}

/// The batches of a project with their local state, by name.
pub fn batches(state: &ProjectState) -> Vec<(&BatchPlanned, &BatchUpdated)> {
    state.batches.values().map(|(b, u)| (b, u)).collect()
}

/// Upload and create every planned batch not yet created (or `only`).
/// Resumable: an uploaded file is not uploaded again; a batch created but
/// not journalled (a crash in between) is found by its input file id.
pub async fn submit(
    project: &mut Project,
    client: &LlmClient,
    only: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let todo: Vec<(BatchPlanned, BatchUpdated)> = project
        .state()
        .batches
        .values()
        .filter(|(b, u)| u.remote_id.is_none() && only.is_none_or(|o| o == b.batch))
        .cloned()
        .collect();
    let mut made = Vec::new();
    for (b, u) in todo {
        let file_id = match u.input_file_id {
            Some(f) => f,
            None => {
                let path = batch_dir(project.dir(), &b.batch).join("input.jsonl");
                let bytes = std::fs::read(&path)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
                if sha256(&bytes) != b.input_sha256 {
                    anyhow::bail!("{} changed since it was planned", path.display());
                }
                let f = client
                    .upload_batch_file("input.jsonl", bytes)
                    .await
                    .map_err(|e| upload_error(client, e))?;
                project.append(vec![update(&b.batch, |u| {
                    u.input_file_id = Some(f.clone())
                })])?;
                f
            }
        };
        let existing = client
            .list_batches()
            .await
            .unwrap_or_default()
            .into_iter()
            .find(|r| r.input_file_id.as_deref() == Some(file_id.as_str()));
        let remote = match existing {
            Some(r) => r,
            None => {
                client
                    .create_batch(&file_id, serde_json::json!({"straddle_batch": b.batch}))
                    .await?
            }
        };
        project.append(vec![update(&b.batch, |u| {
            u.remote_id = Some(remote.id.clone());
            u.status = Some(remote.status.clone());
        })])?;
        made.push(format!("{}: {} ({})", b.batch, remote.id, remote.status));
    }
    Ok(made)
}

/// A failed upload, with what to change when the server does not serve
/// the dialect's upload path (the usual cause of a 404 there).
fn upload_error(client: &LlmClient, e: crate::llm::LlmError) -> anyhow::Error {
    use crate::domain::BatchApi;
    let hint = match (e.status, client.batch_api()) {
        (Some(404 | 405), BatchApi::OpenAi) => {
            " (the server has no OpenAI `/files` upload: for Together AI set `[backend] batch_api = \"together\"`; \
             a server without a Batch API can run the file with `vllm run-batch` or `scripts/batch-runner.py`, then `straddle batch ingest`)"
        }
        (Some(404 | 405), BatchApi::Together) => {
            " (the server has no Together `/files/upload`: for OpenAI, Groq or an OpenAI-compatible gateway set `[backend] batch_api = \"openai\"`)"
        }
        _ => "",
    };
    anyhow::anyhow!(
        "uploading the batch file to {}: {e}{hint}",
        client.base_url()
    )
}

fn update(batch: &str, f: impl FnOnce(&mut BatchUpdated)) -> EventKind {
    let mut u = BatchUpdated {
        batch: batch.to_string(),
        ..Default::default()
    };
    f(&mut u);
    EventKind::BatchUpdated(u)
}

/// Ask the provider where every submitted, unfinished batch stands and
/// journal what changed. One line per batch.
pub async fn refresh(project: &mut Project, client: &LlmClient) -> anyhow::Result<Vec<String>> {
    let open: Vec<BatchUpdated> = project
        .state()
        .batches
        .values()
        .map(|(_, u)| u.clone())
        .collect();
    let mut lines = Vec::new();
    for u in open {
        let Some(remote) = &u.remote_id else {
            lines.push(format!("{}: planned, not submitted", u.batch));
            continue;
        };
        let status = u.status.as_deref().unwrap_or("");
        if status == "ingested" || status == "failed" {
            lines.push(format!("{}: {remote} {status}", u.batch));
            continue;
        }
        let r = client.retrieve_batch(remote).await?;
        if Some(&r.status) != u.status.as_ref()
            || r.output_file_id != u.output_file_id
            || r.error_file_id != u.error_file_id
        {
            project.append(vec![update(&u.batch, |x| {
                x.status = Some(r.status.clone());
                x.output_file_id = r.output_file_id.clone();
                x.error_file_id = r.error_file_id.clone();
            })])?;
        }
        let counts = r
            .request_counts
            .as_ref()
            .map(|c| format!(" {}/{} done, {} failed", c.completed, c.total, c.failed))
            .unwrap_or_default();
        lines.push(format!("{}: {remote} {}{counts}", u.batch, r.status));
    }
    Ok(lines)
}

/// Cancel every submitted batch that is not finished (or only `only`):
/// `POST /v1/batches/{id}/cancel`, and journal the status the provider
/// answers (`cancelling`, later `cancelled`). What the engine answered
/// before the cancel stays in its output file; `fetch` ingests it once
/// the batch is `cancelled`. One line per batch. Re-running is harmless:
/// a batch already cancelling or final is not asked again.
pub async fn cancel(
    project: &mut Project,
    client: &LlmClient,
    only: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    if let Some(o) = only
        && !project.state().batches.contains_key(o)
    {
        return Err(crate::error::user(format!(
            "batch {o} was never planned in this project"
        )));
    }
    let todo: Vec<BatchUpdated> = project
        .state()
        .batches
        .values()
        .map(|(_, u)| u.clone())
        .filter(|u| only.is_none_or(|o| o == u.batch))
        .collect();
    let mut lines = Vec::new();
    for u in todo {
        let status = u.status.as_deref().unwrap_or("");
        let Some(remote) = &u.remote_id else {
            lines.push(format!(
                "{}: not submitted, nothing to cancel (its requests stay planned)",
                u.batch
            ));
            continue;
        };
        if status == "ingested" || status == "cancelling" || is_final(status) {
            lines.push(format!("{}: {remote} already {status}", u.batch));
            continue;
        }
        let r = client.cancel_batch(remote).await?;
        project.append(vec![update(&u.batch, |x| {
            x.status = Some(r.status.clone());
            x.output_file_id = r.output_file_id.clone();
            x.error_file_id = r.error_file_id.clone();
        })])?;
        lines.push(format!("{}: {remote} {}", u.batch, r.status));
    }
    Ok(lines)
}

/// Download and ingest the output and error files of every finished
/// batch, then mark it `ingested`. Re-running after a crash downloads
/// again; the ingest skips what is in the journal.
pub async fn fetch(
    project: &mut Project,
    client: &LlmClient,
    generator: impl Fn(&Project) -> anyhow::Result<Generator>,
    backend: &BackendConfig,
) -> anyhow::Result<Vec<(String, IngestReport)>> {
    refresh(project, client).await?;
    let ready: Vec<BatchUpdated> = project
        .state()
        .batches
        .values()
        .map(|(_, u)| u.clone())
        .filter(|u| u.status.as_deref().is_some_and(is_final))
        .collect();
    let mut out = Vec::new();
    for u in ready {
        let dir = batch_dir(project.dir(), &u.batch);
        let mut total = IngestReport::default();
        let files: BTreeSet<(&str, &String)> =
            [("output", &u.output_file_id), ("errors", &u.error_file_id)]
                .into_iter()
                .filter_map(|(k, f)| f.as_ref().map(|f| (k, f)))
                .collect();
        for (kind, file_id) in files {
            let bytes = client.file_content(file_id).await?;
            let path = dir.join(format!("{kind}.jsonl"));
            write_atomic(&path, &bytes)?;
            let g = generator(project)?;
            let r = ingest(project, g, backend, &path, u.remote_id.as_deref())?;
            total.lines += r.lines;
            total.replies += r.replies;
            total.skipped += r.skipped;
            total.examples += r.examples;
            total.duplicates += r.duplicates;
            total.verdicts += r.verdicts;
            total.failed += r.failed;
            total.errors.extend(r.errors);
            total.notes.extend(r.notes);
            let (d, e) = (&mut total.denoise, &r.denoise);
            d.judged += e.judged;
            d.rejected += e.rejected;
            d.flagged += e.flagged;
            d.near_copies += e.near_copies;
        }
        project.append(vec![update(&u.batch, |x| {
            x.status = Some("ingested".into())
        })])?;
        out.push((u.batch.clone(), total));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cut of a plan line agrees with parsing it; lines not in the
    /// written shape are left to the parser.
    #[test]
    fn plan_lines_are_cut_where_the_parser_finds_them() {
        let plan = serde_json::json!({"n": 5, "kind": {"Generate": {"target": "HUM"}},
            "shown_examples": ["Who said \"hi\"?", "a}b"]});
        let line = serde_json::json!({"custom_id": "b1-g7", "plan": plan}).to_string();
        let (id, range) = canonical_plan_line(line.as_bytes()).unwrap();
        assert_eq!(id, "b1-g7");
        let cut: serde_json::Value = serde_json::from_str(&line[range]).unwrap();
        assert_eq!(cut, plan);
        for other in [
            r#"{"custom_id":"b1-\"g7","plan":{}}"#,
            r#"{"plan":{},"custom_id":"b1-g7"}"#,
            r#"{"custom_id":"b1-g7","plan":{"a":1}"#,
            r#"{"custom_id":"b1-g7","plan":[]}"#,
            r#"{"custom_id": "b1-g7", "plan": {}}"#,
        ] {
            assert_eq!(canonical_plan_line(other.as_bytes()), None, "{other}");
        }
    }
}
