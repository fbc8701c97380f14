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
//!
//! # Speed
//!
//! Replay parses each line in one pass (a hand-written serde visitor that
//! relies on the key order straddle writes, falling back to
//! [`Event::from_json_line`] for anything else), parses journals over 4 MB
//! on every core in chunks of lines while one thread folds them in file
//! order, reads the file in reused 512 KB blocks rather than whole, and
//! moves every payload into the state instead of cloning it
//! ([`ProjectState::apply_owned`]).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
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

impl LoadReport {
    /// One message per problem, naming `journal` and the line, for the
    /// user (e.g. on stderr before a command's own output).
    pub fn messages(&self, journal: &Path) -> Vec<String> {
        self.skipped
            .iter()
            .map(|s| format!("{}:{}: skipped: {}", journal.display(), s.line, s.reason))
            .collect()
    }
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
    /// The bytes after the last `\n` (empty without a tail).
    pub tail: Vec<u8>,
    /// 1-based line number of the tail (0 without a tail).
    pub tail_line: usize,
    /// Bytes read in all.
    pub len: u64,
    /// Byte offset and 1-based line of the header of a batch at the end
    /// that is not complete (a crash mid-append): its events were not
    /// applied, and [`Journal::open`] cuts it away.
    pub torn_batch: Option<(u64, usize)>,
}

/// Replay journal bytes into `state`. Never fails: unreadable lines are
/// reported and skipped. Blank lines are ignored silently.
pub fn replay(bytes: &[u8], state: &mut ProjectState) -> Replay {
    replay_with_threads(bytes, state, threads_for(bytes.len() as u64))
}

/// [`replay`] on one thread (`threads` = 1) or pipelined (more); the
/// result never depends on it.
pub fn replay_with_threads(bytes: &[u8], state: &mut ProjectState, threads: usize) -> Replay {
    replay_reader(std::io::Cursor::new(bytes), state, threads).expect("reading a slice cannot fail")
}

/// Replay an open journal file from its start (see [`replay_reader`]).
pub fn replay_file(file: &File, state: &mut ProjectState) -> std::io::Result<LoadReport> {
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    reserve_samples(state, size);
    Ok(replay_reader(file, state, threads_for(size))?.report)
}

/// Smallest journal bytes per sample a real project has: a `sample_added`
/// line alone is longer (its text, label and provenance), and most samples
/// have a verdict and a decision besides.
const MIN_BYTES_PER_SAMPLE: u64 = 320;

/// Reserve room for every sample a journal of `size` bytes can hold, so
/// replay never grows the sample vector by doubling (a 200,000-sample
/// project would copy it 18 times and hold the old and the new one at
/// once, 220 MB at the last step). Room that stays unused is address
/// space only: its pages are never touched.
fn reserve_samples(state: &mut ProjectState, size: u64) {
    let n = (size / MIN_BYTES_PER_SAMPLE) as usize;
    if state.samples.is_empty() && n > 1024 {
        state.samples.reserve_exact(n);
    }
}

/// How many threads to replay a journal of `len` bytes with.
fn threads_for(len: u64) -> usize {
    if len < PARALLEL_MIN_BYTES {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// [`replay`] straight from a reader (the journal file), which is read in
/// blocks of [`BLOCK`] bytes into one reused buffer instead of all at once:
/// a 70 MB journal then costs 512 KB of buffer, not 70 MB of fresh pages,
/// and each block is parsed while it is still in cache. Fails only if
/// reading fails.
///
/// With `threads` > 1 the lines are parsed on that many threads while
/// this one folds them in file order (see [`replay_stream`]).
///
/// A batch (see [`batch_header`]) is applied as it is read; if it turns
/// out torn at the end, the state is rebuilt by replaying again up to its
/// header (rare: only after a crash), so a partial batch is never applied
/// and a complete one costs no buffering.
pub fn replay_reader<R: Read + Seek + Send>(
    reader: R,
    state: &mut ProjectState,
    threads: usize,
) -> std::io::Result<Replay> {
    replay_reader_chunked(reader, state, threads, CHUNK)
}

/// [`replay_reader`] with chunks of about `chunk` bytes per parser (small
/// ones in tests, so that a few lines make many chunks).
fn replay_reader_chunked<R: Read + Seek + Send>(
    mut reader: R,
    state: &mut ProjectState,
    threads: usize,
    chunk: usize,
) -> std::io::Result<Replay> {
    let start = reader.stream_position()?;
    let pristine = state.clone();
    let first = replay_stream(&mut reader, state, threads, chunk)?;
    let Some((offset, line)) = first.torn_batch else {
        return Ok(first);
    };
    *state = pristine;
    reader.seek(SeekFrom::Start(start))?;
    let mut again = replay_stream((&mut reader).take(offset - start), state, threads, chunk)?;
    if let Some(torn) = first.report.skipped.iter().find(|s| s.line == line) {
        again.report.skipped.push(torn.clone());
    }
    again.torn_batch = first.torn_batch;
    again.len = first.len;
    Ok(again)
}

/// One pass of [`replay_reader`]: batches are applied as they come.
///
/// With `threads` > 1 replay is a pipeline over scoped threads: a reader
/// finds the lines (and the batches, which need them in order) and deals
/// them out in chunks of about `chunk` bytes, round robin, to `threads`
/// parsers; this thread takes the parsed chunks back in the same round
/// robin, so in file order, and folds them into the state. Chunks and
/// their buffers are recycled, so the memory in flight stays a few
/// chunks per parser.
fn replay_stream<R: Read + Send>(
    reader: R,
    state: &mut ProjectState,
    threads: usize,
    chunk: usize,
) -> std::io::Result<Replay> {
    let mut report = LoadReport::default();
    let end = if threads <= 1 {
        scan_reader(reader, BLOCK, |line, r| take(&mut report, state, line, r))?
    } else {
        std::thread::scope(|s| {
            let (spare_tx, spare_rx) = mpsc::channel::<Chunk>();
            let mut deal = Vec::with_capacity(threads);
            let mut parsed = Vec::with_capacity(threads);
            let mut parsers = Vec::with_capacity(threads);
            for _ in 0..threads {
                let (tx, rx) = mpsc::sync_channel::<Chunk>(2);
                let (done_tx, done_rx) = mpsc::sync_channel::<Chunk>(2);
                deal.push(tx);
                parsed.push(done_rx);
                parsers.push(s.spawn(move || {
                    for mut c in rx {
                        c.parse();
                        if done_tx.send(c).is_err() {
                            break;
                        }
                    }
                }));
            }
            let dealer = s.spawn(move || {
                let mut dealer = Dealer {
                    chunk: Chunk::default(),
                    size: chunk,
                    to: deal,
                    dealt: 0,
                    spare: spare_rx,
                };
                let end = scan_lines(reader, BLOCK, &mut dealer);
                dealer.deal();
                end
            });
            // Chunk k went to parser k % threads, whose chunks come back
            // in the order they went: so every chunk comes back in order.
            // A parser hangs up after its last chunk.
            for k in 0.. {
                let Ok(mut c) = parsed[k % threads].recv() else {
                    break;
                };
                for item in c.items.drain(..) {
                    take(&mut report, state, item.line, item.result);
                }
                c.bytes.clear();
                let _ = spare_tx.send(c);
            }
            drop(parsed);
            for p in parsers {
                p.join().expect("journal parser thread panicked");
            }
            dealer.join().expect("journal reader thread panicked")
        })?
    };
    Ok(Replay {
        report,
        tail_start: end.tail.map(|(start, _)| start as usize),
        tail_is_event: end.tail.is_some_and(|(_, ok)| ok),
        tail: end.tail_bytes,
        tail_line: if end.tail.is_some() { end.line } else { 0 },
        len: end.len,
        torn_batch: end.torn_batch.map(|t| (t.offset, t.line)),
    })
}

/// Bytes of journal lines per chunk a parser takes at a time: large
/// enough that handing it over is noise (about 500 lines), small enough
/// to stay in cache and to keep the chunks in flight (two queued per
/// parser each way, each with its parsed events) a few MB.
const CHUNK: usize = 128 << 10;

/// Read size of replay: small enough to stay in cache while scanned,
/// large enough that syscalls and the carried partial line are noise.
const BLOCK: usize = 512 << 10;

/// Apply one parsed line or record why it was skipped.
fn take(report: &mut LoadReport, state: &mut ProjectState, line: usize, r: Result<Event, String>) {
    match r {
        Ok(ev) => {
            state.apply_owned(ev);
            report.events += 1;
        }
        Err(reason) => report.skipped.push(SkippedLine { line, reason }),
    }
}

/// Below this size a journal is parsed on one thread.
const PARALLEL_MIN_BYTES: u64 = 4 << 20;

/// One parsed line (blank lines are left out).
struct Item {
    /// 1-based line number.
    line: usize,
    result: Result<Event, String>,
}

/// Consecutive journal lines for one parser: their bytes, what to do with
/// each, and (once parsed) the results in file order.
#[derive(Default)]
struct Chunk {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
    items: Vec<Item>,
}

enum Entry {
    /// A complete line to parse: its 1-based number and `bytes[start..end]`.
    Line {
        line: usize,
        start: usize,
        end: usize,
    },
    /// A line the reader already judged (a batch's report, the last line).
    Done(Box<Item>),
}

impl Chunk {
    fn parse(&mut self) {
        for e in self.entries.drain(..) {
            match e {
                Entry::Line { line, start, end } => {
                    if let Some(result) = parse_raw(&self.bytes[start..end], true) {
                        self.items.push(Item { line, result });
                    }
                }
                Entry::Done(item) => self.items.push(*item),
            }
        }
    }
}

/// What [`scan_lines`] finds, in file order.
trait Lines {
    /// A complete line (without its `\n`) still to be parsed.
    fn line(&mut self, line: usize, raw: &[u8]);
    /// A line already parsed or judged.
    fn item(&mut self, line: usize, result: Result<Event, String>);
}

/// Parses every line at once (replay on one thread).
struct ParseNow<F>(F);

impl<F: FnMut(usize, Result<Event, String>)> Lines for ParseNow<F> {
    fn line(&mut self, line: usize, raw: &[u8]) {
        if let Some(r) = parse_raw(raw, true) {
            (self.0)(line, r);
        }
    }
    fn item(&mut self, line: usize, result: Result<Event, String>) {
        (self.0)(line, result);
    }
}

/// Gathers lines into chunks and deals them round robin to the parsers.
struct Dealer {
    chunk: Chunk,
    /// Bytes that make a chunk full.
    size: usize,
    to: Vec<mpsc::SyncSender<Chunk>>,
    dealt: usize,
    /// Chunks back from the fold, for reuse.
    spare: mpsc::Receiver<Chunk>,
}

impl Dealer {
    fn deal(&mut self) {
        if self.chunk.entries.is_empty() {
            return;
        }
        let next = self.spare.try_recv().unwrap_or_else(|_| Chunk {
            bytes: Vec::with_capacity(self.size + (self.size >> 2)),
            ..Chunk::default()
        });
        let c = std::mem::replace(&mut self.chunk, next);
        // A parser that is gone (it panicked) is reported when joined.
        let _ = self.to[self.dealt % self.to.len()].send(c);
        self.dealt += 1;
    }
}

impl Lines for Dealer {
    fn line(&mut self, line: usize, raw: &[u8]) {
        if raw.len() > self.size {
            // A line longer than a chunk (a 10 MB seed text) is parsed
            // here, where it already is, instead of copied into a chunk
            // grown for it (tens of MB of fresh pages for one line).
            if let Some(result) = parse_raw(raw, true) {
                self.item(line, result);
            }
            return;
        }
        let start = self.chunk.bytes.len();
        self.chunk.bytes.extend_from_slice(raw);
        let end = self.chunk.bytes.len();
        self.chunk.entries.push(Entry::Line { line, start, end });
        if end >= self.size {
            self.deal();
        }
    }
    fn item(&mut self, line: usize, result: Result<Event, String>) {
        self.chunk
            .entries
            .push(Entry::Done(Box::new(Item { line, result })));
    }
}

/// What the scan found besides the lines.
struct ScanEnd {
    /// Absolute start of a final line without `\n`, and whether it parsed.
    tail: Option<(u64, bool)>,
    tail_bytes: Vec<u8>,
    /// Lines seen (the last one is the tail, if any).
    line: usize,
    /// Bytes read.
    len: u64,
    /// A batch at the end whose lines are not all there (see [`Batch`]).
    torn_batch: Option<TornBatch>,
}

/// A batch whose header announced more lines than follow it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct TornBatch {
    /// Byte offset of the header line.
    offset: u64,
    /// 1-based line of the header.
    line: usize,
    announced: usize,
    found: usize,
}

/// The header line of a multi-event append: `{"batch":N}`, followed by
/// exactly `N` event lines. Replay applies the `N` events only when all of
/// them are there, so an append cut short (a crash, `kill -9` half-way
/// through a big import) is never applied in part.
fn batch_header(n: usize) -> String {
    format!("{{\"batch\":{n}}}")
}

/// `N` if `raw` is a batch header.
fn parse_batch_header(raw: &[u8]) -> Option<usize> {
    let rest = raw.strip_prefix(b"{\"batch\":")?;
    let rest = rest.strip_suffix(b"}")?;
    std::str::from_utf8(rest)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|&n| n > 0)
}

/// The batch being read: its header and how many of its lines were seen.
struct Batch {
    offset: u64,
    line: usize,
    announced: usize,
    found: usize,
}

impl Batch {
    fn torn(&self) -> TornBatch {
        TornBatch {
            offset: self.offset,
            line: self.line,
            announced: self.announced,
            found: self.found,
        }
    }
}

fn torn_batch_reason(t: &TornBatch, why: &str) -> String {
    format!(
        "torn batch: {} events announced, {} complete lines follow ({why}); none of them applied",
        t.announced, t.found
    )
}

/// Read `reader` block by block, parse every non-blank line and hand it to
/// `sink` with its 1-based line number. A line longer than the buffer
/// grows it. Batch headers are counted against the lines that follow; a
/// batch that ends early is reported as one skipped line (its header) and,
/// at the end of the file, in [`ScanEnd::torn_batch`] (its lines were
/// handed over: [`replay_reader`] replays again without them).
fn scan_reader<R: Read>(
    reader: R,
    block: usize,
    sink: impl FnMut(usize, Result<Event, String>),
) -> std::io::Result<ScanEnd> {
    scan_lines(reader, block, &mut ParseNow(sink))
}

/// [`scan_reader`] handing complete lines to `sink` unparsed (it parses
/// them now or has them parsed elsewhere); only the last line is parsed
/// here, since what it is decides the [`ScanEnd`].
fn scan_lines<R: Read>(
    mut reader: R,
    block: usize,
    sink: &mut impl Lines,
) -> std::io::Result<ScanEnd> {
    let mut buf = vec![0u8; block.max(1)];
    let mut filled = 0usize; // valid bytes in `buf`
    let mut base = 0u64; // file offset of buf[0]
    let mut line = 0usize;
    let mut batch: Option<Batch> = None;
    loop {
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        filled += n;
        let mut start = 0usize;
        while let Some(i) = memchr_nl(&buf[start..filled]) {
            line += 1;
            let raw = &buf[start..start + i];
            if let Some(n) = parse_batch_header(raw) {
                if let Some(b) = batch.take() {
                    // Not at the end, so not a crash (the cut on open
                    // removes those): a hand edit. Its lines were read.
                    sink.item(
                        b.line,
                        Err(format!(
                            "incomplete batch: {} events announced, {} lines follow before \
                             another batch starts; those were read",
                            b.announced, b.found
                        )),
                    );
                }
                batch = Some(Batch {
                    offset: base + start as u64,
                    line,
                    announced: n,
                    found: 0,
                });
            } else if let Some(b) = batch.as_mut() {
                // Every complete line after the header is one of its lines.
                sink.line(line, raw);
                b.found += 1;
                if b.found >= b.announced {
                    batch = None;
                }
            } else {
                sink.line(line, raw);
            }
            start += i + 1;
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
        base += start as u64;
        if buf.len() > block && filled < block {
            // A long line grew the buffer (a 10 MB seed text: to 16 MB);
            // read on in blocks again, or every later read touches (and
            // keeps resident) the whole grown buffer for the rest of the
            // replay.
            buf.truncate(block.max(1));
            buf.shrink_to_fit();
        }
    }
    let mut tail = None;
    let mut torn_batch = None;
    if let Some(b) = batch.take() {
        if filled > 0 {
            line += 1;
        }
        // Only the final newline missing: the batch is whole.
        let mut last = None;
        if filled > 0 && b.found + 1 == b.announced {
            last = parse_raw(&buf[..filled], true);
        }
        match last {
            Some(Ok(ev)) => {
                sink.item(line, Ok(ev));
                tail = Some((base, true));
            }
            _ => {
                let t = b.torn();
                sink.item(
                    t.line,
                    Err(torn_batch_reason(&t, "the append was interrupted")),
                );
                torn_batch = Some(t);
            }
        }
    } else if filled > 0 {
        line += 1;
        let parsed = parse_raw(&buf[..filled], false);
        let ok = matches!(parsed, Some(Ok(_)));
        if let Some(r) = parsed {
            sink.item(line, r);
        }
        tail = Some((base, ok));
    }
    buf.truncate(filled);
    Ok(ScanEnd {
        tail,
        tail_bytes: if tail.is_some() { buf } else { Vec::new() },
        line,
        len: base + filled as u64,
        torn_batch,
    })
}

/// Parse one line (without its `\n`; `complete` is false for a torn
/// tail); `None` if it is blank.
fn parse_raw(raw: &[u8], complete: bool) -> Option<Result<Event, String>> {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    // An editor may have added a byte-order mark.
    let raw = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw);
    if raw.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    Some(match parse_line(raw) {
        Err(reason) if !complete => Err(format!(
            "torn last line (no newline; a write was interrupted): {reason}"
        )),
        other => other,
    })
}

fn memchr_nl(b: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', b)
}

fn parse_line(raw: &[u8]) -> Result<Event, String> {
    let s = std::str::from_utf8(raw)
        .map_err(|e| format!("not valid UTF-8 (byte {})", e.valid_up_to() + 1))?;
    if let Ok(fast::FastEvent(ev)) = serde_json::from_str::<fast::FastEvent>(s) {
        return Ok(ev);
    }
    Event::from_json_line(s).map_err(|e| e.to_string())
}

/// A one-pass parser for journal lines in the order straddle writes them
/// (`v, id, ts, type, data`): the payload is deserialized straight into its
/// type as soon as `data` is reached, instead of first capturing it as a
/// raw value and parsing it a second time ([`Event::from_json_line`]).
/// That saves about a third of replay time. Anything unexpected — another
/// key order, an unknown type, a newer schema, bad data — makes it give up
/// and the caller falls back to [`Event::from_json_line`], which stays the
/// reference (and produces the error messages).
mod fast {
    use serde::Deserialize;
    use serde::de::{self, IgnoredAny, MapAccess, Visitor};

    use crate::domain::{Event, EventKind, SCHEMA_VERSION};

    pub struct FastEvent(pub Event);

    #[derive(Deserialize)]
    #[serde(field_identifier, rename_all = "lowercase")]
    enum Field {
        V,
        Id,
        Ts,
        Type,
        Data,
        #[serde(other)]
        Other,
    }

    impl<'de> Deserialize<'de> for FastEvent {
        fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_map(EventVisitor)
        }
    }

    struct EventVisitor;

    macro_rules! fast_dispatch {
        ($($(#[$doc:meta])* $v:ident($t:ty) = $name:literal,)*) => {
            /// Deserialize the payload of a `ty` event straight from the map.
            fn kind_from<'de, A: MapAccess<'de>>(ty: &str, m: &mut A) -> Result<EventKind, A::Error> {
                match ty {
                    $($name => m.next_value().map(EventKind::$v),)*
                    _ => Err(de::Error::custom("unknown type")),
                }
            }
        };
    }
    crate::domain::event::for_each_event_kind!(fast_dispatch);

    impl<'de> Visitor<'de> for EventVisitor {
        type Value = FastEvent;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a journal event")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<FastEvent, A::Error> {
            let (mut v, mut id, mut ts) = (None, None, None);
            let mut ty: Option<String> = None;
            let mut kind = None;
            while let Some(key) = m.next_key::<Field>()? {
                match key {
                    Field::V => v = Some(m.next_value::<u16>()?),
                    Field::Id => id = Some(m.next_value()?),
                    Field::Ts => ts = Some(m.next_value()?),
                    Field::Type => ty = Some(m.next_value()?),
                    Field::Data => {
                        let ty = ty
                            .as_deref()
                            .ok_or_else(|| de::Error::custom("data before type"))?;
                        kind = Some(kind_from(ty, &mut m)?);
                    }
                    Field::Other => {
                        m.next_value::<IgnoredAny>()?;
                    }
                }
            }
            match (v, id, ts, kind) {
                (Some(v), Some(id), Some(ts), Some(kind)) if v <= SCHEMA_VERSION => {
                    Ok(FastEvent(Event { v, id, ts, kind }))
                }
                _ => Err(de::Error::custom("incomplete")),
            }
        }
    }
}

/// The journal file opened for appending.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    /// Current length: a failed write is truncated back to it.
    len: u64,
    next_id: EventId,
    /// Lines of [`Journal::stage`] not written yet.
    staged: String,
    /// The id of the first staged event: a failed flush hands the ids of
    /// what it could not write back, so the journal has no gap.
    staged_from: EventId,
    /// `fdatasync` calls made by appends (see [`Journal::syncs`]).
    syncs: u64,
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
        lock_journal(&file, path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let Replay {
            mut report,
            tail_start,
            tail_is_event,
            tail,
            tail_line: line,
            mut len,
            torn_batch,
        } = {
            reserve_samples(state, size);
            replay_reader(&file, state, threads_for(size))
        }
        .with_context(|| format!("cannot read journal {}", path.display()))?;
        if let Some((start, line)) = torn_batch {
            // Like a torn line: keep the bytes aside, cut them off.
            let mut torn = Vec::new();
            {
                use std::io::{Seek, SeekFrom};
                let mut f = &file;
                f.seek(SeekFrom::Start(start))
                    .and_then(|_| f.read_to_end(&mut torn))
                    .with_context(|| format!("cannot read journal {}", path.display()))?;
            }
            let saved = save_torn(path, &torn)?;
            file.set_len(start)
                .and_then(|_| file.sync_data())
                .with_context(|| format!("cannot repair journal {}", path.display()))?;
            len = start;
            if let Some(s) = report.skipped.iter_mut().find(|s| s.line == line) {
                s.reason
                    .push_str(&format!("; its bytes were moved to {}", saved.display()));
            }
            report.torn_tail = Some(TornTail {
                line,
                bytes: torn.len(),
                saved_to: Some(saved),
            });
        } else if let Some(start) = tail_start {
            let saved_to = if tail_is_event {
                file.write_all(b"\n")
                    .and_then(|_| file.sync_data())
                    .with_context(|| format!("cannot repair journal {}", path.display()))?;
                len += 1;
                None
            } else {
                let saved = save_torn(path, &tail)?;
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
            staged: String::new(),
            staged_from: 0,
            next_id: state.last_event_id + 1,
            syncs: 0,
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
            staged: String::new(),
            staged_from: 0,
            next_id: 1,
            syncs: 0,
        };
        // No batch header: a new journal is made in a temporary folder and
        // renamed into place (`Project::create`), which is atomic already,
        // and its lines stay independent (a damaged one costs only itself).
        let events = j.append_lines(kinds, false)?;
        Ok((j, events))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Id the next appended event gets.
    pub fn next_id(&self) -> EventId {
        self.next_id
    }

    /// How many times appends made this journal durable (`fdatasync`)
    /// since it was opened: group commit is checked by counting them.
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    /// Assign ids and timestamps, write all lines with one write and make
    /// them durable with one fsync. On error nothing is appended (the file
    /// is truncated back) and no id is consumed.
    pub fn append(&mut self, kinds: Vec<EventKind>) -> anyhow::Result<Vec<Event>> {
        self.flush()?;
        self.append_lines(kinds, true)
    }

    /// Group commit: append several groups of events with one write and
    /// one fsync. Each group is a batch of its own (replay applies it whole
    /// or not at all) and comes back as its own list, in order. On error
    /// nothing is appended and no id is consumed.
    pub fn append_groups(
        &mut self,
        groups: Vec<Vec<EventKind>>,
    ) -> anyhow::Result<Vec<Vec<Event>>> {
        self.flush()?;
        let mut buf = String::with_capacity(groups.iter().map(|g| g.len() * 160 + 40).sum());
        let mut next = self.next_id;
        let mut out = Vec::with_capacity(groups.len());
        for kinds in groups {
            let events = encode(next, kinds, true, &mut buf);
            next += events.len() as u64;
            out.push(events);
        }
        if !buf.is_empty() {
            self.write_durably(buf.as_bytes())?;
        }
        self.next_id = next;
        Ok(out)
    }

    /// [`Journal::append`]; `batched` writes the batch header for more
    /// than one event.
    fn append_lines(&mut self, kinds: Vec<EventKind>, batched: bool) -> anyhow::Result<Vec<Event>> {
        if kinds.is_empty() {
            return Ok(Vec::new());
        }
        let mut buf = String::with_capacity(kinds.len() * 160 + 40);
        let events = encode(self.next_id, kinds, batched, &mut buf);
        self.write_durably(buf.as_bytes())?;
        self.next_id += events.len() as u64;
        Ok(events)
    }

    /// Append `n` events produced one at a time by `produce` (which calls
    /// the function it is given once per event) as one batch, without
    /// holding them: lines go to the file in 1 MB writes as they come,
    /// then one fsync. Replay applies the batch only once all `n` lines
    /// are there (see [`batch_header`]), so a crash half-way applies none
    /// of it. On error (from `produce`, the disk, or a count other than
    /// `n`) the file is truncated back and no id is consumed. Returns the
    /// id of the first event.
    pub fn append_with(
        &mut self,
        n: usize,
        produce: impl FnOnce(&mut dyn FnMut(EventKind) -> anyhow::Result<()>) -> anyhow::Result<()>,
    ) -> anyhow::Result<EventId> {
        self.flush()?;
        let first = self.next_id;
        if n == 0 {
            return Ok(first);
        }
        let ts = now_ms();
        let mut buf = String::with_capacity(1 << 20);
        if n > 1 {
            buf.push_str(&batch_header(n));
            buf.push('\n');
        }
        let mut count = 0usize;
        let mut written = 0u64;
        self.syncs += 1;
        let file = &mut self.file;
        let res = produce(&mut |kind| {
            if count >= n {
                anyhow::bail!("more than the {n} events announced");
            }
            let mut e = Event {
                v: SCHEMA_VERSION,
                id: first + count as u64,
                ts,
                kind,
            };
            push_redacted(&mut buf, &mut e);
            count += 1;
            if buf.len() >= 1 << 20 {
                file.write_all(buf.as_bytes())?;
                written += buf.len() as u64;
                buf.clear();
            }
            Ok(())
        })
        .and_then(|()| {
            if count != n {
                anyhow::bail!("{count} events produced, {n} announced");
            }
            Ok(())
        })
        .and_then(|()| {
            file.write_all(buf.as_bytes())?;
            written += buf.len() as u64;
            file.sync_data()?;
            Ok(())
        });
        match res {
            Ok(()) => {
                self.len += written;
                self.next_id += n as u64;
                Ok(first)
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                Err(e.context(format!("cannot append to journal {}", self.path.display())))
            }
        }
    }

    /// Assign ids and timestamps and keep the lines for [`Journal::flush`]
    /// (one write and one fsync for many small appends, e.g. a batch
    /// ingest; a crash before the flush loses only what was staged).
    /// [`Journal::append`] flushes first, so the order is kept.
    /// Each staged group of more than one event is a batch of its own
    /// (replay applies it whole or not at all), redacted like an append.
    pub fn stage(&mut self, kinds: Vec<EventKind>) -> Vec<Event> {
        if self.staged.is_empty() {
            self.staged_from = self.next_id;
        }
        let events = encode(self.next_id, kinds, true, &mut self.staged);
        self.next_id += events.len() as u64;
        events
    }

    /// Write what was staged durably.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        if self.staged.is_empty() {
            return Ok(());
        }
        // The buffer keeps its capacity for the next group of stages.
        let mut buf = std::mem::take(&mut self.staged);
        let res = self.write_durably(buf.as_bytes());
        buf.clear();
        self.staged = buf;
        if res.is_err() {
            // Nothing staged was recorded: its ids are free again.
            self.next_id = self.staged_from;
        }
        res
    }

    /// Write bytes and fsync; roll back on failure.
    fn write_durably(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.syncs += 1;
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

/// Hold an exclusive OS lock (`flock` via `File::try_lock`, std since
/// Rust 1.89, so no extra crate) on the open journal for as long as the
/// [`Journal`] lives. The project's `straddle.lock` names the holder for
/// the message, but a lock file can be deleted (`git clean -X`) and a
/// second process would then lock a fresh one; the journal cannot be
/// deleted without deleting the project, so this lock is the one that
/// keeps a second writer out. The OS drops it when the process dies, so
/// a stale lock never blocks.
fn lock_journal(file: &File, path: &Path) -> anyhow::Result<()> {
    match super::lock::try_lock_briefly(file) {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(crate::error::user(format!(
            "{} is in use by another straddle process (its lock file may have been deleted); \
             close it there first",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(anyhow::Error::new(e).context(format!("cannot lock {}", path.display())))
        }
    }
}

/// Events `first`, `first + 1`, … of `kinds`, stamped now, as redacted
/// journal lines appended to `buf` (behind a batch header when `batched`
/// and there is more than one).
fn encode(first: EventId, kinds: Vec<EventKind>, batched: bool, buf: &mut String) -> Vec<Event> {
    let ts = now_ms();
    let mut events: Vec<Event> = kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| Event {
            v: SCHEMA_VERSION,
            id: first + i as u64,
            ts,
            kind,
        })
        .collect();
    if batched && events.len() > 1 {
        buf.push_str(&batch_header(events.len()));
        buf.push('\n');
    }
    for e in &mut events {
        push_redacted(buf, e);
    }
    events
}

/// Append `e` as one line to `buf` with every secret redacted
/// ([`crate::secrets::redact`]: the journal is meant to be committed). When
/// a secret was found, `e` is replaced by the redacted event, so the state
/// folds exactly what is on disk.
fn push_redacted(buf: &mut String, e: &mut Event) {
    let line = e.to_json_line();
    let line = match crate::secrets::redact(&line) {
        std::borrow::Cow::Borrowed(_) => line,
        std::borrow::Cow::Owned(clean) => {
            if let Ok(ev) = Event::from_json_line(&clean) {
                *e = ev;
            }
            clean
        }
    };
    buf.push_str(&line);
    buf.push('\n');
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
    reply: tokio::sync::oneshot::Sender<Result<Vec<Event>, String>>,
}

/// Group commit: a thread that owns a [`Journal`] and coalesces concurrent
/// append requests into one write + one fsync. Clone the
/// [`GroupCommitHandle`] into as many threads or tasks as you like. Each
/// request is acknowledged only after its events are durable; ids follow
/// commit order.
///
/// While one flush runs, new requests queue up; the next flush takes all of
/// them at once. So throughput grows with the number of appenders in
/// flight (threads blocked in [`GroupCommitHandle::append`], or async tasks
/// awaiting a [`Ticket`]), while a lone appender still gets one fsync per
/// request.
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
    /// commit order, before any of its appenders is acknowledged (e.g. to
    /// fold it into a shared state).
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
                    commit_batch(&mut journal, batch, &mut on_commit);
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

/// One write + fsync for all requests of a batch, then the acks.
fn commit_batch(journal: &mut Journal, batch: Vec<Request>, on_commit: &mut impl FnMut(&[Event])) {
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

/// An append in flight: resolves once its events are durable. Await it in
/// async code, or call [`Ticket::wait`] from a plain thread.
pub struct Ticket {
    rx: tokio::sync::oneshot::Receiver<Result<Vec<Event>, String>>,
}

fn ticket_result(
    r: Result<Result<Vec<Event>, String>, tokio::sync::oneshot::error::RecvError>,
) -> anyhow::Result<Vec<Event>> {
    r.map_err(|_| anyhow::anyhow!("journal writer has stopped"))?
        .map_err(|e| anyhow::anyhow!(e))
}

impl Ticket {
    /// Block this thread until the events are durable. Must not be called
    /// from inside an async runtime (await the ticket there instead).
    pub fn wait(self) -> anyhow::Result<Vec<Event>> {
        ticket_result(self.rx.blocking_recv())
    }
}

impl std::future::IntoFuture for Ticket {
    type Output = anyhow::Result<Vec<Event>>;
    type IntoFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Self::Output> + Send>>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { ticket_result(self.rx.await) })
    }
}

impl GroupCommitHandle {
    /// Queue an append and return at once; the [`Ticket`] resolves when the
    /// events are durable.
    pub fn submit(&self, kinds: Vec<EventKind>) -> Ticket {
        let (reply, rx) = tokio::sync::oneshot::channel();
        // If the writer is gone, `reply` is dropped and the ticket says so.
        let _ = self.tx.send(Request { kinds, reply });
        Ticket { rx }
    }

    /// Append durably; blocks until the events are fsynced. Not for use
    /// inside an async runtime (await [`GroupCommitHandle::submit`] there).
    pub fn append(&self, kinds: Vec<EventKind>) -> anyhow::Result<Vec<Event>> {
        self.submit(kinds).wait()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::accept;
    use crate::domain::{NewSample, Origin, SampleAdded};

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

    #[test]
    fn a_failed_flush_hands_its_ids_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let mut state = ProjectState::default();
        let (mut j, _) = Journal::open(&path, &mut state).unwrap();
        let first = j.append(vec![add(1)]).unwrap()[0].id;
        let staged = j.stage(vec![accept(1)]);
        j.stage(vec![accept(1)]);
        assert_eq!(staged[0].id, first + 1);
        // A handle that cannot write: the flush fails, nothing is written.
        let writable = std::mem::replace(&mut j.file, File::open(&path).unwrap());
        assert!(j.flush().is_err());
        j.file = writable;
        assert_eq!(j.next_id(), first + 1);
        let next = j.append(vec![accept(1)]).unwrap();
        assert_eq!(next[0].id, first + 1, "no gap after the failed flush");
        let mut again = ProjectState::default();
        replay(&std::fs::read(&path).unwrap(), &mut again);
        assert_eq!((again.events, again.last_event_id), (2, first + 1));
    }

    #[test]
    fn fast_parser_agrees_with_the_reference() {
        use crate::domain::*;
        let verdict = Verdict {
            label: Some("B".into()),
            confidence: [("B".to_string(), 0.75)].into(),
            method: VerdictMethod::Vote,
            votes: Some(3),
            raw: Some("B".into()),
            model: None,
            request_id: Some("r".into()),
        };
        let kinds = vec![
            add(1),
            accept(1),
            EventKind::VerdictRecorded(VerdictRecorded { sample: 1, verdict }),
            EventKind::Edited(Edited {
                sample: 1,
                text: "x\n\"y\"".into(),
            }),
            EventKind::Undone(Undone {
                event: 4,
                sample: 1,
            }),
            EventKind::SettingsChanged(SettingsChanged {
                generation: Default::default(),
            }),
            EventKind::WeightChanged(WeightChanged {
                class: "A".into(),
                weight: 2.0,
            }),
            EventKind::RelabelPolicyChanged(crate::domain::RelabelPolicyChanged {
                take_relabel: false,
            }),
            EventKind::AttributeWeightChanged(crate::domain::AttributeWeightChanged {
                attribute: "tone".into(),
                value: "formal".into(),
                weight: 0.5,
            }),
            EventKind::ConcurrencyChanged(crate::domain::ConcurrencyChanged { concurrency: 9 }),
            EventKind::UsageRecorded(UsageRecorded {
                run: "g".into(),
                usage: Default::default(),
            }),
            EventKind::RoundScored(RoundScored {
                round: 1,
                baseline: Default::default(),
                augmented: Default::default(),
                errors: vec![1],
                intervals: None,
            }),
            EventKind::RationalesAdded(RationalesAdded {
                class: "A".into(),
                rationales: vec!["r".into()],
            }),
            EventKind::GenerationFailed(GenerationFailed {
                reason: "bad".into(),
                raw: "?".into(),
                provenance: Default::default(),
            }),
            EventKind::JudgeScored(JudgeScored {
                report: JudgeReport {
                    judge: "relabel".into(),
                    labels: vec!["A".into(), "B".into()],
                    n: 2,
                    correct: 1,
                    unanswered: 0,
                    accuracy: 0.5,
                    macro_f1: 0.25,
                    confusion: vec![vec![1, 0, 0], vec![1, 0, 0]],
                    answers: [("A".to_string(), 2)].into(),
                    chance: 0.5,
                    majority: 0.5,
                    majority_label: "A".into(),
                    p_vs_chance: 0.75,
                    p_vs_majority: 0.75,
                },
                fingerprint: "m".into(),
                answers: vec![],
            }),
            EventKind::BatchPlanned(crate::domain::BatchPlanned {
                batch: "b1".into(),
                custom_ids: vec!["b1-g0".into(), "b1-s3".into()],
                input_sha256: "ab".into(),
                plan_sha256: "cd".into(),
                stream: 2,
                next_request: 7,
            }),
            EventKind::BatchUpdated(crate::domain::BatchUpdated {
                batch: "b1".into(),
                remote_id: Some("batch_1".into()),
                status: Some("completed".into()),
                ..Default::default()
            }),
            EventKind::NoiseScored(crate::domain::NoiseScored {
                sample: 1,
                noise: 0.91,
                seed_similarity: Some(0.09),
                echo: 0.3,
                reason: Some("far from every A seed (0.09)".into()),
                model: "local:all-MiniLM-L6-v2".into(),
            }),
        ];
        // One example of every kind in the table: a new kind fails here
        // until it has one.
        let mut names: Vec<&str> = kinds.iter().map(EventKind::type_name).collect();
        names.sort_unstable();
        names.dedup();
        let mut all = EventKind::NAMES.to_vec();
        all.sort_unstable();
        assert_eq!(names, all, "an example of every event kind");
        for (i, kind) in kinds.into_iter().enumerate() {
            let ev = Event {
                v: 1,
                id: i as u64 + 1,
                ts: 5,
                kind,
            };
            let line = ev.to_json_line();
            let ty = format!(r#""type":"{}","data":"#, ev.type_name());
            assert!(line.contains(&ty), "serde name is the table's: {line}");
            let fast::FastEvent(got) = serde_json::from_str(&line).unwrap();
            assert_eq!(got, ev, "{line}");
            assert_eq!(
                parse_line(line.as_bytes()).unwrap(),
                Event::from_json_line(&line).unwrap()
            );
        }
        // Other key orders and extra keys fall back to the reference parser.
        let odd = r#"{"data":{"sample":1,"text":"t"},"type":"edited","ts":1,"id":2,"v":1,"x":0}"#;
        assert!(serde_json::from_str::<fast::FastEvent>(odd).is_err());
        assert_eq!(
            parse_line(odd.as_bytes()).unwrap(),
            Event::from_json_line(odd).unwrap()
        );
        let newer = r#"{"v":9,"id":2,"ts":1,"type":"edited","data":{"sample":1,"text":"t"}}"#;
        assert!(parse_line(newer.as_bytes()).unwrap_err().contains("newer"));
    }

    #[test]
    fn replay_folds_like_apply() {
        let kinds: Vec<EventKind> = vec![add(1), add(3), add(2), accept(3), accept(7), add(4)];
        let events: Vec<Event> = kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| Event {
                v: 1,
                id: i as u64 + 1,
                ts: 9,
                kind,
            })
            .collect();
        let mut by_ref = ProjectState::new(true);
        let mut bytes = Vec::new();
        for e in &events {
            by_ref.apply(e);
            bytes.extend_from_slice(e.to_json_line().as_bytes());
            bytes.push(b'\n');
        }
        let mut replayed = ProjectState::new(true);
        replay(&bytes, &mut replayed);
        assert_eq!(replayed, by_ref);
        assert_eq!(replayed.warnings.len(), 2, "{:?}", replayed.warnings);
    }

    /// The samples of one reply (added in a row with the same provenance)
    /// share one provenance allocation after replay, on one thread or
    /// many; the state equals the one built event by event.
    #[test]
    fn samples_of_one_reply_share_their_provenance() {
        use crate::domain::{Actor, Decision, DecisionKind, Provenance};
        use std::sync::Arc;
        let prov = |request: &str, alpha: f64| Provenance {
            strategy: Some("mix".into()),
            classes: vec!["A".into(), "B".into()],
            minor: Some("B".into()),
            alpha: Some(alpha),
            model: Some("m".into()),
            request_id: Some(request.into()),
            ..Provenance::default()
        };
        let sample = |id: u64, p: Provenance| {
            EventKind::SampleAdded(SampleAdded::new(
                id,
                NewSample {
                    text: format!("text {id}"),
                    label: "A".into(),
                    origin: Origin::Generated,
                    provenance: p,
                },
            ))
        };
        let dedup = |id: u64| {
            EventKind::decided(
                id,
                Decision {
                    kind: DecisionKind::Reject,
                    label: None,
                    reason: Some("duplicate".into()),
                    by: Actor::Auto("dedup".into()),
                },
            )
        };
        // Reply r1: three samples, a dedup decision between two of them;
        // reply r2: two; then a sample with r2's request id but another α
        // (not equal: its own copy), one of r1's provenance again (r2's
        // in between: its own copy).
        let groups: Vec<Vec<EventKind>> = vec![
            vec![
                sample(1, prov("r1", 0.7)),
                sample(2, prov("r1", 0.7)),
                dedup(2),
                sample(3, prov("r1", 0.7)),
            ],
            vec![sample(4, prov("r2", 0.5)), sample(5, prov("r2", 0.5))],
            vec![accept(4), sample(6, prov("r2", 0.9))],
            vec![sample(7, prov("r1", 0.7))],
            // Reply r3 with its second sample marked as a duplicate.
            vec![
                sample(8, prov("r3", 0.6)),
                sample(9, {
                    let mut p = prov("r3", 0.6);
                    p.extra.insert("duplicate_of".into(), serde_json::json!(1));
                    p
                }),
                dedup(9),
                sample(10, prov("r3", 0.6)),
            ],
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let (mut j, _) = Journal::create(&path, vec![]).unwrap();
        let mut by_event = ProjectState::new(true);
        for g in groups {
            for e in j.append(g).unwrap() {
                by_event.apply(&e);
            }
        }
        drop(j);
        let bytes = std::fs::read(&path).unwrap();
        let check = |st: &ProjectState, how: &str| {
            assert_eq!(*st, by_event, "{how}");
            let p = |id: u64| &st.sample(id).unwrap().provenance;
            assert!(Arc::ptr_eq(p(1), p(2)) && Arc::ptr_eq(p(2), p(3)), "{how}");
            assert!(Arc::ptr_eq(p(4), p(5)), "{how}");
            assert!(!Arc::ptr_eq(p(3), p(4)), "{how}");
            assert!(!Arc::ptr_eq(p(5), p(6)), "{how}");
            assert_eq!(p(6).alpha, Some(0.9), "{how}");
            assert!(!Arc::ptr_eq(p(6), p(7)), "{how}");
            assert_eq!(p(7), p(1), "{how}");
            assert!(
                Arc::ptr_eq(p(8), p(10)) && !Arc::ptr_eq(p(8), p(9)),
                "{how}"
            );
            assert!(p(9).extra.contains_key("duplicate_of"), "{how}");
        };
        check(&by_event, "event by event");
        for threads in [1, 2, 3] {
            let mut st = ProjectState::new(true);
            replay_with_threads(&bytes, &mut st, threads);
            check(&st, &format!("{threads} threads"));
            for chunk in [1, 200] {
                let mut st = ProjectState::new(true);
                replay_reader_chunked(std::io::Cursor::new(&bytes), &mut st, threads, chunk)
                    .unwrap();
                check(&st, &format!("{threads} threads, chunks of {chunk} bytes"));
            }
        }
        // Changing one sample's provenance leaves its reply's others alone.
        let mut st = by_event.clone();
        Arc::make_mut(&mut st.samples[1].provenance).source = Some("x".into());
        assert_eq!(st.samples[0].provenance.source, None);
        assert_eq!(st.samples[2].provenance.source, None);
        assert_eq!(st.samples[1].provenance.source.as_deref(), Some("x"));
    }

    #[test]
    fn parallel_replay_matches_sequential() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let kinds: Vec<EventKind> = (1..=40).flat_map(|i| [add(i), accept(i)]).collect();
        // One event per append: no batch header, so line n is event n.
        let (mut j, _) = Journal::create(&path, vec![]).unwrap();
        for k in kinds {
            j.append(vec![k]).unwrap();
        }
        drop(j);
        let mut bytes = std::fs::read(&path).unwrap();
        // Garble line 7, add a blank line, tear the end.
        let l7 = bytes
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == b'\n')
            .nth(5)
            .unwrap()
            .0
            + 3;
        bytes[l7] = b'?';
        let l10 = bytes
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == b'\n')
            .nth(9)
            .unwrap()
            .0
            + 1;
        bytes.insert(l10, b'\n');
        bytes.truncate(bytes.len() - 7);
        let run = |threads| {
            let mut st = ProjectState::new(true);
            let r = replay_with_threads(&bytes, &mut st, threads);
            (st, r.report, r.tail_start, r.tail_is_event)
        };
        let one = run(1);
        assert_eq!(
            one.1.skipped.iter().map(|s| s.line).collect::<Vec<_>>(),
            vec![7, 81]
        );
        for threads in 2..7 {
            assert_eq!(run(threads), one, "{threads} threads");
        }
        // Chunks of a line or a few, dealt to each parser in turn.
        for chunk in [1, 300, 1000] {
            for threads in [2, 3] {
                let mut st = ProjectState::new(true);
                let r =
                    replay_reader_chunked(std::io::Cursor::new(&bytes), &mut st, threads, chunk)
                        .unwrap();
                let got = (st, r.report, r.tail_start, r.tail_is_event);
                assert_eq!(got, one, "{threads} threads, chunks of {chunk} bytes");
            }
        }
    }

    #[test]
    fn parallel_replay_matches_sequential_around_batches() {
        let line = |id: u64, kind: EventKind| {
            let e = Event {
                v: SCHEMA_VERSION,
                id,
                ts: 1,
                kind,
            };
            e.to_json_line() + "\n"
        };
        let mut bytes = Vec::new();
        let mut id = 0;
        for i in 1..=20u64 {
            id += 1;
            bytes.extend(line(id, add(i)).as_bytes());
            if i % 5 == 0 {
                // A batch cut off by another (a hand edit), then a whole one.
                bytes.extend(b"{\"batch\":3}\n");
                id += 1;
                bytes.extend(line(id, accept(i)).as_bytes());
                bytes.extend(b"{\"batch\":2}\n");
                id += 1;
                bytes.extend(line(id, accept(i - 1)).as_bytes());
                bytes.extend(b"not json\n");
            }
        }
        // A batch torn at the end, and the same with only its newline lost.
        let mut torn = bytes.clone();
        torn.extend(b"{\"batch\":2}\n");
        torn.extend(line(id + 1, add(21)).as_bytes());
        let mut whole = torn.clone();
        torn.extend(&line(id + 2, add(22)).as_bytes()[..20]);
        let last = line(id + 2, add(22));
        whole.extend(last.trim_end().as_bytes());
        for (bytes, end) in [(&bytes, "clean"), (&torn, "torn"), (&whole, "whole")] {
            let run = |threads, chunk| {
                let mut st = ProjectState::new(true);
                let r = replay_reader_chunked(std::io::Cursor::new(bytes), &mut st, threads, chunk)
                    .unwrap();
                (st, r.report, r.tail_start, r.tail_is_event, r.torn_batch)
            };
            let one = run(1, CHUNK);
            assert!(one.1.skipped.len() >= 8, "{:?}", one.1.skipped);
            assert_eq!(one.4.is_some(), end == "torn", "{end}");
            assert_eq!(one.3, end == "whole", "{end}");
            for chunk in [1, 200, 700, CHUNK] {
                for threads in [2, 3, 5] {
                    assert_eq!(run(threads, chunk), one, "{threads} threads, chunk {chunk}");
                }
            }
        }
    }

    /// A reader that hands out at most `step` bytes per call.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(self.1).min(out.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn block_reads_match_whole_reads_across_boundaries() {
        let kinds: Vec<EventKind> = (1..=30).flat_map(|i| [add(i), accept(i)]).collect();
        let mut bytes = Vec::new();
        for (i, kind) in kinds.into_iter().enumerate() {
            let e = Event {
                v: 1,
                id: i as u64 + 1,
                ts: 3,
                kind,
            };
            bytes.extend_from_slice(e.to_json_line().as_bytes());
            bytes.extend_from_slice(if i % 7 == 3 { b"\r\n\n" } else { b"\n" });
        }
        bytes[40] = b'?';
        bytes.truncate(bytes.len() - 5);
        let collect = |block: usize, step: usize| {
            let mut lines = Vec::new();
            let end = scan_reader(Trickle(&bytes, step), block, |line, r| {
                lines.push((line, r))
            })
            .unwrap();
            (lines, end.tail, end.tail_bytes, end.line, end.len)
        };
        let whole = collect(bytes.len() + 1, bytes.len());
        assert_eq!(whole.0.len(), 60);
        assert!(whole.0[0].1.is_err() && whole.0[1].1.is_ok());
        assert_eq!(whole.4, bytes.len() as u64);
        let start = whole.1.unwrap().0 as usize;
        assert_eq!(whole.2, &bytes[start..]);
        // Lines longer than the buffer, and reads that split lines anywhere.
        for (block, step) in [(1, 1), (16, 5), (64, 1000), (300, 7), (4096, 4096)] {
            assert_eq!(collect(block, step), whole, "block {block}, step {step}");
        }
    }

    /// A reader that notes how much room each read offers.
    struct Offered<'a>(&'a [u8], Vec<usize>);

    impl Read for Offered<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            self.1.push(out.len());
            let n = self.0.len().min(out.len()).min(50);
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_long_line_grows_the_buffer_only_while_it_is_read() {
        let line = |text: String| {
            let mut e = Event {
                v: 1,
                id: 1,
                ts: 3,
                kind: add(1),
            };
            if let EventKind::SampleAdded(a) = &mut e.kind {
                a.text = text;
            }
            e.to_json_line() + "\n"
        };
        let mut bytes = line("short".into()).into_bytes();
        bytes.extend(line("x".repeat(2000)).bytes());
        for _ in 0..20 {
            bytes.extend(line("short again".into()).bytes());
        }
        let mut reader = Offered(&bytes, Vec::new());
        let mut n = 0;
        scan_reader(&mut reader, 256, |_, r| {
            assert!(r.is_ok());
            n += 1;
        })
        .unwrap();
        assert_eq!(n, 22);
        let offered = reader.1;
        assert!(offered.iter().any(|&o| o > 1024), "{offered:?}");
        let last = offered.iter().rposition(|&o| o > 256).unwrap();
        assert!(
            last < offered.len() - 20,
            "reads after the long line still offer the grown buffer: {offered:?}"
        );
    }

    #[test]
    fn group_commit_keeps_each_group_a_batch_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let (mut j, _) = Journal::create(&path, vec![add(1)]).unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        let groups = j
            .append_groups(vec![vec![add(2), add(3)], vec![], vec![accept(2)]])
            .unwrap();
        let ids: Vec<Vec<u64>> = groups
            .iter()
            .map(|g| g.iter().map(|e| e.id).collect())
            .collect();
        assert_eq!(ids, vec![vec![2, 3], vec![], vec![4]]);
        assert_eq!(j.append(vec![accept(3)]).unwrap()[0].id, 5);
        drop(j);
        let full = std::fs::read(&path).unwrap();
        let mut st = ProjectState::new(true);
        assert_eq!(replay(&full, &mut st).report.events, 5);
        // A crash inside the first group of the commit loses that group
        // whole (its batch header announces two events), not half of it.
        let first_group_end = before as usize
            + full[before as usize..]
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .nth(1)
                .unwrap()
                .0;
        let mut st = ProjectState::new(true);
        let r = replay(&full[..first_group_end + 1], &mut st).report;
        assert_eq!(r.events, 1, "the half-written group is not applied");
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
        // Async appenders awaiting tickets, alongside blocking threads.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let h = w.handle();
        let async_ids: Vec<u64> = rt.block_on(async move {
            let tickets: Vec<Ticket> = (0..20).map(|_| h.submit(vec![accept(1)])).collect();
            let mut ids = Vec::new();
            for t in tickets {
                ids.extend(t.await.unwrap().into_iter().map(|e| e.id));
            }
            ids
        });
        assert_eq!(async_ids, (2..=21).collect::<Vec<_>>());
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
        assert_eq!(ids, (22..=221).collect::<Vec<_>>());
        let j = w.finish();
        assert_eq!(j.next_id(), 222);
        assert_eq!(*committed.lock().unwrap(), (2..=221).collect::<Vec<_>>());
        let mut st = ProjectState::new(true);
        let r = replay(&std::fs::read(&path).unwrap(), &mut st).report;
        assert_eq!((r.events, r.skipped.len()), (221, 0));
    }
}

#[cfg(test)]
mod batch_tests {
    use super::*;
    use crate::domain::{NewSample, Origin, SampleAdded};

    fn add(id: u64) -> EventKind {
        EventKind::SampleAdded(SampleAdded::new(
            id,
            NewSample {
                text: format!("text {id}"),
                label: "A".into(),
                origin: Origin::Seed,
                provenance: Default::default(),
            },
        ))
    }

    #[test]
    fn a_batch_is_applied_whole_or_not_at_all_at_every_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let (mut j, _) = Journal::create(&path, vec![add(1)]).unwrap();
        j.append((2..=6).map(add).collect()).unwrap();
        drop(j);
        let full = std::fs::read(&path).unwrap();
        let header = full.iter().position(|&b| b == b'\n').unwrap() + 1;
        assert!(full[header..].starts_with(b"{\"batch\":5}\n"));
        for cut in header..full.len() {
            let mut st = ProjectState::new(true);
            let r = replay(&full[..cut], &mut st);
            let n = st.samples.len();
            // Cut only the final newline: the batch is whole.
            let whole = cut == full.len() - 1;
            assert_eq!(n, if whole { 6 } else { 1 }, "cut at {cut}");
            if !whole && cut >= header + 12 {
                assert_eq!(
                    r.torn_batch.map(|t| t.0),
                    Some(header as u64),
                    "cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn a_batch_cut_off_by_another_is_skipped_and_reported() {
        let mut bytes = Vec::new();
        let line = |id: u64| {
            let e = Event {
                v: SCHEMA_VERSION,
                id,
                ts: 1,
                kind: add(id),
            };
            e.to_json_line() + "\n"
        };
        bytes.extend(line(1).as_bytes());
        bytes.extend(b"{\"batch\":3}\n");
        bytes.extend(line(2).as_bytes());
        bytes.extend(b"{\"batch\":2}\n");
        bytes.extend(line(2).as_bytes());
        bytes.extend(line(3).as_bytes());
        let mut st = ProjectState::new(true);
        let r = replay(&bytes, &mut st);
        assert_eq!(r.report.skipped.len(), 1);
        assert_eq!(r.report.skipped[0].line, 2);
        assert!(r.report.skipped[0].reason.contains("another batch starts"));
        assert_eq!(r.torn_batch, None);
    }

    #[test]
    fn append_with_rolls_back_on_a_wrong_count_or_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let (mut j, _) = Journal::create(&path, vec![add(1)]).unwrap();
        let before = std::fs::read(&path).unwrap();
        assert!(
            j.append_with(3, |push| {
                push(add(2))?;
                push(add(3))
            })
            .is_err()
        );
        assert!(
            j.append_with(2, |push| {
                push(add(2))?;
                anyhow::bail!("reader failed")
            })
            .is_err()
        );
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(j.next_id(), 2);
        let first = j
            .append_with(2, |push| {
                push(add(2))?;
                push(add(3))
            })
            .unwrap();
        assert_eq!(first, 2);
        drop(j);
        let mut st = ProjectState::new(true);
        replay(&std::fs::read(&path).unwrap(), &mut st);
        assert_eq!(st.samples.len(), 3);
    }
}
