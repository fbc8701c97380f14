//! The project on disk: `straddle.toml`, `journal.jsonl`, the lock, and the
//! folders beside them.
//!
//! [`Project::open`] takes the project lock, reads the config and replays
//! the journal into a [`ProjectState`]; [`Project::append`] writes events
//! durably and folds them in. [`Project::open_read_only`] is for readers
//! (`stats`, `export`) that must work while another process holds the
//! project: it takes no lock and repairs nothing, it only reads.

pub mod config_file;
pub mod journal;
pub mod lock;
#[cfg(any(test, feature = "test-fixtures"))]
#[doc(hidden)]
pub mod scale;
pub mod seeds;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::domain::{
    Class, Event, EventKind, GenerationSettings, NewSample, ProjectConfig, ProjectState,
    SampleAdded, SampleId,
};
use crate::error;

pub use config_file::{CONFIG_FILE, read_config, render_config, write_config};
pub use journal::{GroupCommitHandle, GroupCommitWriter, Journal, LoadReport, SkippedLine, Ticket};
pub use lock::{LOCK_FILE, ProjectLock};

/// `.gitignore` of a new project: the folder is meant to be committed, but
/// not the lock (it names a pid) or half-written temp files.
const GITIGNORE: &str = "# straddle: the lock names the running process; temp files are transient.\nstraddle.lock\n.*.tmp-*\n";

/// File name of the journal inside the project folder.
pub const JOURNAL_FILE: &str = "journal.jsonl";

/// An open project.
#[derive(Debug)]
pub struct Project {
    dir: PathBuf,
    config: ProjectConfig,
    state: ProjectState,
    report: LoadReport,
    /// `None` for a read-only project.
    journal: Option<Journal>,
    _lock: Option<ProjectLock>,
}

impl Project {
    /// Create `dir` with `straddle.toml` and a `journal.jsonl` holding the
    /// seeds, then open it. Atomic: everything is written into a temporary
    /// folder beside `dir` and renamed into place, so a failure leaves
    /// nothing behind. `dir` must not exist or be an empty folder.
    pub fn create(
        dir: &Path,
        config: ProjectConfig,
        seeds: Vec<NewSample>,
    ) -> anyhow::Result<Project> {
        Project::create_with_files(dir, config, seeds, &[])
    }

    /// [`Project::create`] plus extra files (relative path, bytes) written
    /// into the project before it is renamed into place.
    pub fn create_with_files(
        dir: &Path,
        config: ProjectConfig,
        seeds: Vec<NewSample>,
        files: &[(PathBuf, Vec<u8>)],
    ) -> anyhow::Result<Project> {
        check_new_dir(dir)?;
        config_file::validate(&config).map_err(|m| error::user(format!("config: {m}")))?;
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(error::user(format!(
                "cannot create {}: folder {} does not exist",
                dir.display(),
                parent.display()
            )));
        }
        let name = dir
            .file_name()
            .ok_or_else(|| error::user(format!("{}: not a folder name", dir.display())))?;
        let tmp = parent.join(format!(
            ".{}.straddle-tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&tmp);
        let res = (|| -> anyhow::Result<()> {
            std::fs::create_dir(&tmp)
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            write_config(&tmp.join(CONFIG_FILE), &config)?;
            std::fs::write(tmp.join(".gitignore"), GITIGNORE)
                .with_context(|| format!("cannot write {}", tmp.join(".gitignore").display()))?;
            let mut state = ProjectState::new(config.relabel.take_relabel);
            let kinds = sample_kinds(&state, seeds);
            let (_, events) = Journal::create(&tmp.join(JOURNAL_FILE), kinds)?;
            for e in &events {
                state.apply(e);
            }
            for (rel, bytes) in files {
                let p = tmp.join(rel);
                if let Some(d) = p.parent() {
                    std::fs::create_dir_all(d)
                        .with_context(|| format!("cannot create {}", d.display()))?;
                }
                std::fs::write(&p, bytes)
                    .with_context(|| format!("cannot write {}", p.display()))?;
            }
            sync_dir(&tmp);
            if dir.exists() {
                std::fs::remove_dir(dir)
                    .with_context(|| format!("cannot replace empty folder {}", dir.display()))?;
            }
            std::fs::rename(&tmp, dir)
                .with_context(|| format!("cannot move project into {}", dir.display()))?;
            sync_dir(&parent);
            Ok(())
        })();
        if let Err(e) = res {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        Project::open(dir)
    }

    /// Open for reading and writing: takes the project lock (a second
    /// process gets a user error naming the holder's pid), reads the
    /// config, replays the journal (skipping unreadable lines, see
    /// [`LoadReport`]) and repairs a torn tail.
    pub fn open(dir: &Path) -> anyhow::Result<Project> {
        check_project_dir(dir)?;
        let lock = ProjectLock::acquire(dir)?;
        check_journal_present(dir)?;
        let config = read_config(&dir.join(CONFIG_FILE))?;
        let mut state = ProjectState::new(config.relabel.take_relabel);
        let (journal, report) = Journal::open(&dir.join(JOURNAL_FILE), &mut state)?;
        log_report(dir, &report);
        Ok(Project {
            dir: dir.to_path_buf(),
            config,
            state,
            report,
            journal: Some(journal),
            _lock: Some(lock),
        })
    }

    /// Open without the lock and without writing anything (for `stats`
    /// and `export`, which may run while the app holds the project). A torn
    /// tail is reported as a skipped line but left in place. `append` on a
    /// read-only project fails.
    pub fn open_read_only(dir: &Path) -> anyhow::Result<Project> {
        check_project_dir(dir)?;
        let config = read_config(&dir.join(CONFIG_FILE))?;
        let mut state = ProjectState::new(config.relabel.take_relabel);
        let path = dir.join(JOURNAL_FILE);
        check_journal_present(dir)?;
        let report = match std::fs::File::open(&path) {
            Ok(file) => journal::replay_file(&file, &mut state),
            Err(e) => Err(e),
        }
        .with_context(|| format!("cannot read journal {}", path.display()))?;
        log_report(dir, &report);
        Ok(Project {
            dir: dir.to_path_buf(),
            config,
            state,
            report,
            journal: None,
            _lock: None,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn config(&self) -> &ProjectConfig {
        &self.config
    }
    pub fn state(&self) -> &ProjectState {
        &self.state
    }
    /// Make room for `n` more samples in the state (a batch ingest knows
    /// about how many may come; growing a large state by doubling copies
    /// it again and again).
    pub fn reserve_samples(&mut self, n: usize) {
        self.state.samples.reserve(n);
    }
    /// What replay found: events read, skipped lines (line number + reason).
    pub fn load_report(&self) -> &LoadReport {
        &self.report
    }
    /// Print the load report's problems (skipped journal lines) to stderr
    /// as warnings; commands call this so a damaged journal never goes
    /// unnoticed.
    pub fn warn_about_journal(&self) {
        for m in self.report.messages(&self.journal_path()) {
            // Cleaned as the CLI's output is (the store cannot use the
            // CLI's macros: they live a layer above).
            let line = format!("warning: {m}\n");
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                crate::secrets::clean(&line).as_bytes(),
            );
        }
    }

    pub fn is_read_only(&self) -> bool {
        self.journal.is_none()
    }

    /// Append events durably (one write + one fsync for the whole batch,
    /// done before this returns), apply them to the state, and return them
    /// with ids and timestamps assigned. On error nothing is applied.
    pub fn append(&mut self, kinds: Vec<EventKind>) -> anyhow::Result<Vec<Event>> {
        let journal = self.journal.as_mut().ok_or_else(|| {
            anyhow::anyhow!("project {} was opened read-only", self.dir.display())
        })?;
        let events = journal.append(kinds)?;
        for e in &events {
            self.state.apply(e);
        }
        Ok(events)
    }

    /// Group commit ([`Journal::append_groups`]): several groups with one
    /// write and one fsync, each applied to the state and returned in
    /// order. On error nothing is applied.
    pub fn append_groups(
        &mut self,
        groups: Vec<Vec<EventKind>>,
    ) -> anyhow::Result<Vec<Vec<Event>>> {
        let journal = self.journal.as_mut().ok_or_else(|| {
            anyhow::anyhow!("project {} was opened read-only", self.dir.display())
        })?;
        let groups = journal.append_groups(groups)?;
        for e in groups.iter().flatten() {
            self.state.apply(e);
        }
        Ok(groups)
    }

    /// Stage events (applied to the state now, written by
    /// [`Project::flush`] or the next [`Project::append`]): for many small
    /// appends whose loss in a crash is recovered by re-running (a batch
    /// ingest is idempotent).
    pub fn stage(&mut self, kinds: Vec<EventKind>) -> anyhow::Result<Vec<Event>> {
        let journal = self.journal.as_mut().ok_or_else(|| {
            anyhow::anyhow!("project {} was opened read-only", self.dir.display())
        })?;
        let events = journal.stage(kinds);
        for e in &events {
            self.state.apply(e);
        }
        Ok(events)
    }

    /// [`Project::stage`] moving the events into the state instead of
    /// copying them: what it returns is each event without an added
    /// sample's provenance (read it from the state), for a caller that
    /// only acknowledges them, such as a batch ingest adding 500,000
    /// samples (a full copy of each was a tenth of its work).
    pub fn stage_moved(&mut self, kinds: Vec<EventKind>) -> anyhow::Result<Vec<Event>> {
        let journal = self.journal.as_mut().ok_or_else(|| {
            anyhow::anyhow!("project {} was opened read-only", self.dir.display())
        })?;
        let events = journal.stage(kinds);
        let mut acks = Vec::with_capacity(events.len());
        for e in events {
            let kind = match &e.kind {
                EventKind::SampleAdded(a) => EventKind::SampleAdded(SampleAdded {
                    id: a.id,
                    text: a.text.clone(),
                    label: a.label.clone(),
                    origin: a.origin,
                    provenance: Default::default(),
                }),
                k => k.clone(),
            };
            acks.push(Event {
                v: e.v,
                id: e.id,
                ts: e.ts,
                kind,
            });
            self.state.apply_owned(e);
        }
        Ok(acks)
    }

    /// Write staged events durably.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        match self.journal.as_mut() {
            Some(j) => j.flush(),
            None => Ok(()),
        }
    }

    /// Split the project into its state, which becomes the caller's one
    /// fold of the journal, and a [`ProjectWriter`] that only appends (and
    /// keeps the project lock): for a process that folds acknowledged
    /// events itself, such as the terminal UI with its writer thread.
    pub fn into_writer(self) -> anyhow::Result<(ProjectState, ProjectWriter)> {
        let journal = self.journal.ok_or_else(|| {
            anyhow::anyhow!("project {} was opened read-only", self.dir.display())
        })?;
        Ok((
            self.state,
            ProjectWriter {
                journal,
                _lock: self._lock,
            },
        ))
    }

    /// Append `n` events streamed by `produce` as one atomic batch (see
    /// [`Journal::append_with`]) without holding them in memory, and close
    /// the project: the events are not folded into this state (that is
    /// what would cost the memory), so it is consumed. Returns the id of
    /// the first event.
    pub fn append_stream(
        mut self,
        n: usize,
        produce: impl FnOnce(&mut dyn FnMut(EventKind) -> anyhow::Result<()>) -> anyhow::Result<()>,
    ) -> anyhow::Result<crate::domain::EventId> {
        let dir = self.dir.clone();
        let journal = self
            .journal
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("project {} was opened read-only", dir.display()))?;
        journal.append_with(n, produce)
    }

    /// Add samples (ids assigned densely after the last one), durably.
    pub fn add_samples(&mut self, samples: Vec<NewSample>) -> anyhow::Result<Vec<SampleId>> {
        let kinds = sample_kinds(&self.state, samples);
        let events = self.append(kinds)?;
        Ok(events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::SampleAdded(a) => Some(a.id),
                _ => None,
            })
            .collect())
    }

    /// Write a new config (atomically) and use it from now on. A
    /// `take_relabel` the person switched (journaled) stays in force, as
    /// it does when the project is opened again; the config's becomes the
    /// one shown beside it.
    pub fn set_config(&mut self, config: ProjectConfig) -> anyhow::Result<()> {
        if self.is_read_only() {
            anyhow::bail!("project {} was opened read-only", self.dir.display());
        }
        config_file::validate(&config).map_err(|m| error::user(format!("config: {m}")))?;
        write_config(&self.dir.join(CONFIG_FILE), &config)?;
        self.state.take_relabel_config = config.relabel.take_relabel;
        if !self.state.take_relabel_journaled {
            self.state.take_relabel = config.relabel.take_relabel;
        }
        self.config = config;
        Ok(())
    }

    /// Config's generation settings overlaid by live `settings_changed`.
    pub fn generation_settings(&self) -> GenerationSettings {
        self.state
            .generation
            .clone()
            .unwrap_or_else(|| self.config.generation.clone())
    }

    /// Config's classes with live `weight_changed` weights.
    pub fn classes(&self) -> Vec<Class> {
        self.config
            .classes
            .iter()
            .map(|c| Class {
                weight: self.state.weights.get(&c.name).copied().unwrap_or(c.weight),
                ..c.clone()
            })
            .collect()
    }

    /// Class names in config order.
    pub fn class_names(&self) -> Vec<String> {
        self.config.classes.iter().map(|c| c.name.clone()).collect()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }
    pub fn journal_path(&self) -> PathBuf {
        self.dir.join(JOURNAL_FILE)
    }
    /// `DIR/cache` (LLM responses).
    pub fn cache_dir(&self) -> PathBuf {
        self.dir.join("cache")
    }
    /// `DIR/prompts` (per-project template overrides).
    pub fn prompts_dir(&self) -> PathBuf {
        self.dir.join("prompts")
    }
    /// `DIR/exports`.
    pub fn exports_dir(&self) -> PathBuf {
        self.dir.join("exports")
    }
}

/// `sample_added` events for `samples`, ids following the state's last.
fn sample_kinds(state: &ProjectState, samples: Vec<NewSample>) -> Vec<EventKind> {
    let first = state.next_sample_id();
    samples
        .into_iter()
        .enumerate()
        .map(|(i, s)| EventKind::SampleAdded(SampleAdded::new(first + i as u64, s)))
        .collect()
}

fn log_report(dir: &Path, r: &LoadReport) {
    for s in &r.skipped {
        tracing::warn!("{}: {}", dir.join(JOURNAL_FILE).display(), s);
    }
}

/// A user error unless `dir` is a project folder.
fn check_project_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.is_dir() {
        return Err(error::user(format!(
            "no project at {}: the folder does not exist (create one with `straddle init {} --seeds FILE`)",
            dir.display(),
            dir.display()
        )));
    }
    if !dir.join(CONFIG_FILE).is_file() {
        return Err(error::user(format!(
            "{} is not a straddle project: it has no {CONFIG_FILE}",
            dir.display()
        )));
    }
    Ok(())
}

/// A user error when `straddle.toml` has no `journal.jsonl` beside it: the
/// journal is the project's data, and opening without it would show an
/// empty project and restart ids at 1.
fn check_journal_present(dir: &Path) -> anyhow::Result<()> {
    let path = dir.join(JOURNAL_FILE);
    if path.symlink_metadata().is_err() {
        return Err(error::user(format!(
            "{} is missing: {} has a {CONFIG_FILE} but no journal (restore it from a copy \
             or version control; a new project starts with `straddle init`)",
            path.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// A user error unless `dir` is absent or an empty folder.
fn check_new_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.join(CONFIG_FILE).exists() {
        return Err(error::user(format!(
            "{} is already a straddle project; choose a new folder",
            dir.display()
        )));
    }
    if dir.exists() {
        let empty = dir.is_dir()
            && std::fs::read_dir(dir)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
        if !empty {
            return Err(error::user(format!(
                "{} already exists and is not an empty folder; choose a new folder",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// Write a file atomically: temp file in the same folder, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(anyhow::Error::new(e).context(format!("cannot write {}", path.display())));
    }
    sync_dir(dir);
    Ok(())
}

/// fsync a directory so a rename in it is durable (best effort).
fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// The append side of an open project (see [`Project::into_writer`]).
pub struct ProjectWriter {
    journal: Journal,
    _lock: Option<ProjectLock>,
}

impl ProjectWriter {
    /// Append durably (as [`Project::append`]) without folding: the events
    /// come back with ids and timestamps for the caller to apply.
    pub fn append(&mut self, kinds: Vec<EventKind>) -> anyhow::Result<Vec<Event>> {
        self.journal.append(kinds)
    }

    /// Group commit without folding (as [`Project::append_groups`]).
    pub fn append_groups(
        &mut self,
        groups: Vec<Vec<EventKind>>,
    ) -> anyhow::Result<Vec<Vec<Event>>> {
        self.journal.append_groups(groups)
    }

    /// Assign ids and keep the lines for [`ProjectWriter::flush`] (or the
    /// next append, which writes them first): nothing is written yet.
    pub fn stage(&mut self, kinds: Vec<EventKind>) -> Vec<Event> {
        self.journal.stage(kinds)
    }

    /// Write what was staged with one write and one fsync.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.journal.flush()
    }

    /// `fdatasync` calls so far ([`Journal::syncs`]).
    pub fn syncs(&self) -> u64 {
        self.journal.syncs()
    }
}
