//! The journal: `journal.jsonl`, one [`Event`] per line, append-only.
//!
//! # Durability
//!
//! Every append writes all its lines with one `write` and makes them durable
//! with one `fsync` (`sync_data`) before it returns, so a batch of events
//! costs one disk flush. [`GroupCommitWriter`] goes further: it runs on its
//! own thread and coalesces the requests of many concurrent appenders into
//! one write + flush (group commit); each caller blocks until its own events
//! are durable.
//!
//! If a write fails half-way the file is truncated back to its previous
//! length, so a failed append never leaves a partial line behind.
//!
//! # Recovery
//!
//! Replay ([`replay`]) never fails on content: a line that is not valid UTF-8,
//! not JSON, or not a known event is recorded in the [`LoadReport`] with its
//! 1-based line number and skipped; every other line still loads.
//!
//! A *torn tail* — bytes after the last `\n`, left by a crash mid-write — is
//! handled when the journal is opened for writing ([`Journal::open`]):
//!
//! * if the tail parses as a complete event (only the newline was lost), a
//!   `\n` is appended and the event is kept;
//! * otherwise the tail is copied to `journal.torn-<unix-ms>` next to the
//!   journal (for the user to inspect) and truncated away, so the next
//!   append starts on a fresh line and cannot glue onto the torn bytes.
//!
//! A complete line (one that ends in `\n`) is never removed or rewritten.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::domain::{Event, EventId, EventKind, ProjectState, SCHEMA_VERSION};

/// What replaying a journal found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Events read and applied.
    pub events: u64,
    /// Lines that could not be read, in file order.
    pub skipped: Vec<SkippedLine>,
    /// Set when the journal ended in a torn line that was repaired on open.
    pub torn_tail: Option<TornTail>,
}

/// A journal line that was skipped on replay.
#[derive(Debug, Clone, PartialEq)]
pub struct SkippedLine {
    /// 1-based line number in `journal.jsonl`.
    pub line: usize,
    pub reason: String,
}

/// A torn last line (no trailing newline) found when opening for writing.
#[derive(Debug, Clone, PartialEq)]
pub struct TornTail {
    /// 1-based line number of the torn line.
    pub line: usize,
    /// Length of the torn bytes.
    pub bytes: usize,
    /// Where the torn bytes were saved; `None` when the tail was a complete
    /// event that only lacked its newline (it was kept).
    pub saved_to: Option<PathBuf>,
}

impl std::fmt::Display for SkippedLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Outcome of [`replay`]: the report plus where a torn tail starts.
#[derive(Debug)]
pub struct Replay {
    pub report: LoadReport,
    /// Byte offset where the bytes after the last `\n` start, if any.
    pub tail_start: Option<usize>,
    /// Whether that tail parsed as a complete event.
    pub tail_is_event: bool,
}

/// Replay journal bytes into `state`. Never fails: unreadable lines are
/// reported and skipped. Blank lines are ignored silently.
pub fn replay(bytes: &[u8], state: &mut ProjectState) -> Replay {
    let mut report = LoadReport::default();
    let mut tail_start = None;
    let mut tail_is_event = false;
    let mut start = 0usize;
    let mut line_no = 0usize;
    while start < bytes.len() {
        line_no += 1;
        let (end, complete) = match memchr_nl(&bytes[start..]) {
            Some(i) => (start + i, true),
            None => (bytes.len(), false),
        };
        let raw = &bytes[start..end];
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if !complete {
            tail_start = Some(start);
        }
        if !raw.iter().all(u8::is_ascii_whitespace) {
            match parse_line(raw) {
                Ok(ev) => {
                    state.apply(&ev);
                    report.events += 1;
                    if !complete {
                        tail_is_event = true;
                    }
                }
                Err(reason) => {
                    let reason = if complete {
                        reason
                    } else {
                        format!("torn last line (no newline; a write was interrupted): {reason}")
                    };
                    report.skipped.push(SkippedLine {
                        line: line_no,
                        reason,
                    });
                }
            }
        } else if !complete {
            // Whitespace-only tail: nothing to keep.
            tail_is_event = false;
        }
        start = end + 1;
    }
    Replay {
        report,
        tail_start,
        tail_is_event,
    }
}

fn memchr_nl(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

fn parse_line(raw: &[u8]) -> Result<Event, String> {
    let s = std::str::from_utf8(raw)
        .map_err(|e| format!("not valid UTF-8 (byte {})", e.valid_up_to() + 1))?;
    Event::from_json_line(s).map_err(|e| e.to_string())
}

/// The journal file opened for appending.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    /// Current length: a failed write is truncated back to it.
    len: u64,
    next_id: EventId,
}

impl Journal {
    /// Open (creating if missing) for appending, replay into `state`, and
    /// repair a torn tail (see the module docs).
    pub fn open(path: &Path, state: &mut ProjectState) -> anyhow::Result<(Journal, LoadReport)> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("cannot open journal {}", path.display()))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .with_context(|| format!("cannot read journal {}", path.display()))?;
        let Replay {
            mut report,
            tail_start,
            tail_is_event,
        } = replay(&bytes, state);
        let mut len = bytes.len() as u64;
        if let Some(start) = tail_start {
            let tail = &bytes[start..];
            let line = bytes[..start].iter().filter(|&&c| c == b'\n').count() + 1;
            let saved_to = if tail_is_event {
                file.write_all(b"\n")
                    .and_then(|_| file.sync_data())
                    .with_context(|| format!("cannot repair journal {}", path.display()))?;
                len += 1;
                None
            } else {
                let saved = save_torn(path, tail)?;
                file.set_len(start as u64)
                    .and_then(|_| file.sync_data())
                    .with_context(|| format!("cannot repair journal {}", path.display()))?;
                len = start as u64;
                if let Some(s) = report.skipped.iter_mut().find(|s| s.line == line) {
                    s.reason
                        .push_str(&format!("; its bytes were moved to {}", saved.display()));
                }
                Some(saved)
            };
            report.torn_tail = Some(TornTail {
                line,
                bytes: tail.len(),
                saved_to,
            });
        }
        let journal = Journal {
            path: path.to_path_buf(),
            file,
            len,
            next_id: state.last_event_id + 1,
        };
        Ok((journal, report))
    }

    /// Create a new journal holding `kinds` (fails if the file exists).
    pub fn create(path: &Path, kinds: Vec<EventKind>) -> anyhow::Result<(Journal, Vec<Event>)> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(path)
            .with_context(|| format!("cannot create journal {}", path.display()))?;
        let mut j = Journal {
            path: path.to_path_buf(),
            file,
            len: 0,
            next_id: 1,
        };
        let events = j.append(kinds)?;
        Ok((j, events))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Id the next appended event gets.
    pub fn next_id(&self) -> EventId {
        self.next_id
    }

    /// Assign ids and timestamps, write all lines with one write and make
    /// them durable with one fsync. On error nothing is appended (the file
    /// is truncated back) and no id is consumed.
    pub fn append(&mut self, kinds: Vec<EventKind>) -> anyhow::Result<Vec<Event>> {
        if kinds.is_empty() {
            return Ok(Vec::new());
        }
        let ts = now_ms();
        let events: Vec<Event> = kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| Event {
                v: SCHEMA_VERSION,
                id: self.next_id + i as u64,
                ts,
                kind,
            })
            .collect();
        let mut buf = String::with_capacity(events.len() * 160);
        for e in &events {
            buf.push_str(&e.to_json_line());
            buf.push('\n');
        }
        self.write_durably(buf.as_bytes())?;
        self.next_id += events.len() as u64;
        Ok(events)
    }

    /// Write bytes and fsync; roll back on failure.
    fn write_durably(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let res = self
            .file
            .write_all(bytes)
            .and_then(|_| self.file.sync_data());
        match res {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Best effort: drop a partial line so the next append starts clean.
                let _ = self.file.set_len(self.len);
                Err(anyhow::Error::new(e)
                    .context(format!("cannot append to journal {}", self.path.display())))
            }
        }
    }
}

/// Copy torn bytes to `journal.torn-<unix-ms>` beside the journal.
fn save_torn(journal: &Path, tail: &[u8]) -> anyhow::Result<PathBuf> {
    let dir = journal.parent().unwrap_or(Path::new("."));
    let mut stamp = now_ms();
    loop {
        let p = dir.join(format!("journal.torn-{stamp}"));
        match OpenOptions::new().write(true).create_new(true).open(&p) {
            Ok(mut f) => {
                f.write_all(tail)
                    .and_then(|_| f.sync_all())
                    .with_context(|| {
                        format!("cannot save torn journal bytes to {}", p.display())
                    })?;
                return Ok(p);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => stamp += 1,
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("cannot save torn journal bytes to {}", p.display())));
            }
        }
    }
}

/// A request to the group-commit thread.
struct Request {
    kinds: Vec<EventKind>,
    reply: mpsc::SyncSender<Result<Vec<Event>, String>>,
}

/// Group commit: a thread that owns a [`Journal`] and coalesces concurrent
/// append requests into one write + one fsync. Clone the
/// [`GroupCommitHandle`] into as many threads as you like; each
/// `append` blocks until its events are durable and returns them with ids
/// (ids follow commit order).
///
/// The writer thread stops when every handle and the writer are dropped;
/// [`GroupCommitWriter::finish`] joins it and gives the journal back.
pub struct GroupCommitWriter {
    handle: GroupCommitHandle,
    thread: Option<std::thread::JoinHandle<Journal>>,
}

/// A cloneable handle for appending through a [`GroupCommitWriter`].
#[derive(Clone)]
pub struct GroupCommitHandle {
    tx: mpsc::Sender<Request>,
}

impl GroupCommitWriter {
    /// Start the writer thread. `on_commit` sees every committed batch in
    /// commit order (e.g. to fold it into a shared state).
    pub fn spawn(
        mut journal: Journal,
        mut on_commit: impl FnMut(&[Event]) + Send + 'static,
    ) -> GroupCommitWriter {
        let (tx, rx) = mpsc::channel::<Request>();
        let thread = std::thread::Builder::new()
            .name("straddle-journal".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                    }
                    let sizes: Vec<usize> = batch.iter().map(|r| r.kinds.len()).collect();
                    let mut kinds = Vec::with_capacity(sizes.iter().sum());
                    let mut replies = Vec::with_capacity(batch.len());
                    for r in batch {
                        kinds.extend(r.kinds);
                        replies.push(r.reply);
                    }
                    match journal.append(kinds) {
                        Ok(events) => {
                            on_commit(&events);
                            let mut it = events.into_iter();
                            for (reply, n) in replies.into_iter().zip(sizes) {
                                let _ = reply.send(Ok(it.by_ref().take(n).collect()));
                            }
                        }
                        Err(e) => {
                            let msg = format!("{e:#}");
                            for reply in replies {
                                let _ = reply.send(Err(msg.clone()));
                            }
                        }
                    }
                }
                journal
            })
            .expect("spawn journal thread");
        GroupCommitWriter {
            handle: GroupCommitHandle { tx },
            thread: Some(thread),
        }
    }

    pub fn handle(&self) -> GroupCommitHandle {
        self.handle.clone()
    }

    /// Stop accepting (drops this writer's handle), wait for outstanding
    /// handles to be dropped and the queue to drain, and return the journal.
    pub fn finish(mut self) -> Journal {
        let thread = self.thread.take().expect("thread present until finish");
        drop(self);
        thread.join().expect("journal thread panicked")
    }
}

impl GroupCommitHandle {
    /// Append durably; blocks until the events are fsynced.
    pub fn append(&self, kinds: Vec<EventKind>) -> anyhow::Result<Vec<Event>> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.tx
            .send(Request { kinds, reply })
            .map_err(|_| anyhow::anyhow!("journal writer has stopped"))?;
        rx.recv()
            .map_err(|_| anyhow::anyhow!("journal writer has stopped"))?
            .map_err(|e| anyhow::anyhow!(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Actor, Decision, DecisionKind, NewSample, Origin, SampleAdded};

    fn add(id: u64) -> EventKind {
        EventKind::SampleAdded(SampleAdded::new(
            id,
            NewSample {
                text: format!("text {id}"),
                label: "A".into(),
                origin: Origin::Generated,
                provenance: Default::default(),
            },
        ))
    }

    fn accept(id: u64) -> EventKind {
        EventKind::decided(
            id,
            Decision {
                kind: DecisionKind::Accept,
                label: None,
                reason: None,
                by: Actor::Key("a".into()),
            },
        )
    }

    #[test]
    fn torn_tail_is_saved_and_truncated_then_append_is_clean() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let (mut j, evs) = Journal::create(&path, vec![add(1), add(2)]).unwrap();
        assert_eq!(evs.iter().map(|e| e.id).collect::<Vec<_>>(), vec![1, 2]);
        j.append(vec![accept(1)]).unwrap();
        drop(j);
        let full = std::fs::read(&path).unwrap();
        std::fs::write(&path, &full[..full.len() - 10]).unwrap();

        let mut st = ProjectState::new(true);
        let (mut j, report) = Journal::open(&path, &mut st).unwrap();
        assert_eq!(report.events, 2);
        assert_eq!(report.skipped.len(), 1);
        assert_eq!(report.skipped[0].line, 3);
        let torn = report.torn_tail.unwrap();
        let saved = torn.saved_to.unwrap();
        assert_eq!(
            std::fs::read(&saved).unwrap(),
            &full[full.len() - 10 - torn.bytes..full.len() - 10]
        );
        let ev = j.append(vec![accept(2)]).unwrap();
        assert_eq!(ev[0].id, 3);
        drop(j);
        let mut st = ProjectState::new(true);
        let r = replay(&std::fs::read(&path).unwrap(), &mut st).report;
        assert_eq!((r.events, r.skipped.len()), (3, 0));
    }

    #[test]
    fn tail_without_newline_that_parses_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        drop(Journal::create(&path, vec![add(1), add(2)]).unwrap());
        let full = std::fs::read(&path).unwrap();
        std::fs::write(&path, &full[..full.len() - 1]).unwrap();
        let mut st = ProjectState::new(true);
        let (_j, report) = Journal::open(&path, &mut st).unwrap();
        assert_eq!(report.events, 2);
        assert!(report.skipped.is_empty());
        assert_eq!(report.torn_tail.unwrap().saved_to, None);
        assert_eq!(std::fs::read(&path).unwrap(), full);
    }

    #[test]
    fn group_commit_serves_concurrent_appenders() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let (j, _) = Journal::create(&path, vec![add(1)]).unwrap();
        let committed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let c2 = committed.clone();
        let w = GroupCommitWriter::spawn(j, move |evs| {
            c2.lock().unwrap().extend(evs.iter().map(|e| e.id))
        });
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let h = w.handle();
                std::thread::spawn(move || {
                    (0..50)
                        .flat_map(|_| h.append(vec![accept(1)]).unwrap())
                        .map(|e| e.id)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut ids: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        ids.sort();
        assert_eq!(ids, (2..=201).collect::<Vec<_>>());
        let j = w.finish();
        assert_eq!(j.next_id(), 202);
        assert_eq!(*committed.lock().unwrap(), (2..=201).collect::<Vec<_>>());
        let mut st = ProjectState::new(true);
        let r = replay(&std::fs::read(&path).unwrap(), &mut st).report;
        assert_eq!((r.events, r.skipped.len()), (201, 0));
    }
}
