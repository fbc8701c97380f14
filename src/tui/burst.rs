//! Key bursts: group commit for the person's decisions.
//!
//! # The rule
//!
//! A decision is never shown as done before it is durable, and no key
//! read after a frame is handled before every decision that frame shows
//! is durable. Within that rule, keys that arrive together (a fast
//! typist, a paste, a replayed macro) share one disk flush:
//!
//! 1. the runtime takes every terminal event already waiting (at most
//!    [`MAX_KEYS`], for at most [`MAX_TIME`]; it never waits for more);
//! 2. each goes through the pure [`update`] in order, and a key whose
//!    only effect is to record decisions has them *staged* (ids assigned,
//!    lines encoded, nothing written) and applied to the state before the
//!    next key is handled — so every key sees exactly the state the
//!    previous one left, as if each had been written on its own;
//! 3. the staged decisions are written with one `write` and one
//!    `fdatasync` ([`Stage::commit`]);
//! 4. only then is the frame drawn and the terminal read again.
//!
//! Nothing drawn, acknowledged to the session, exported or measured sees
//! a staged decision before step 3 returns: the burst runs in one go on
//! the UI loop, with the journal held. A `kill -9` or power loss during a
//! burst loses only keys whose result was never on screen.
//!
//! A key with any other effect (an edit, an undo, a setting, starting
//! generation, …) ends the burst: the decisions before it are committed
//! first, then its effects run as they always have (its appends go
//! through the writer thread and the terminal is not read until they are
//! acknowledged).
//!
//! If the commit fails, nothing of the burst is recorded: the staged
//! decisions are taken back out of the state (the samples are pending
//! again, the selection returns to the first of them), the error is shown
//! as for any failed journal write, and the appends of the key that ended
//! the burst (computed on decisions that are not recorded) are dropped.
//!
//! Speed: a decision moves its sample within the review queue's orders,
//! which costs a shift of each order per key on a big project. Inside a
//! burst, decision and skip keys (no filter set, another pending sample
//! to move to) only read the queue by sample id, so the orders catch up
//! once, with one merge pass each, before any key that reads them by
//! position and before the commit; the result is the one key-by-key
//! handling gives (the tests compare both).
//!
//! Undo is unaffected: each key's decision is its own event with its own
//! id, so `u` takes them back one by one, across bursts and inside one.

use std::time::Duration;

use crate::domain::{Event, EventKind, SampleId, Undone};

use super::state::{Effect, Msg, State};
use super::update;

/// Most terminal events handled in one burst.
pub const MAX_KEYS: usize = 4096;
/// Longest a burst keeps taking waiting events before it commits.
pub const MAX_TIME: Duration = Duration::from_millis(8);

/// Where a burst's decisions go: staged without I/O, then made durable
/// all at once.
pub trait Stage {
    /// Assign ids and timestamps and keep the lines for [`Stage::commit`].
    fn stage(&mut self, kinds: Vec<EventKind>) -> Vec<Event>;
    /// Write everything staged with one write and one fsync. On error
    /// nothing staged is in the journal.
    fn commit(&mut self) -> Result<(), String>;
}

impl Stage for crate::store::Journal {
    fn stage(&mut self, kinds: Vec<EventKind>) -> Vec<Event> {
        crate::store::Journal::stage(self, kinds)
    }
    fn commit(&mut self) -> Result<(), String> {
        self.flush().map_err(|e| format!("{e:#}"))
    }
}

impl Stage for crate::store::ProjectWriter {
    fn stage(&mut self, kinds: Vec<EventKind>) -> Vec<Event> {
        crate::store::ProjectWriter::stage(self, kinds)
    }
    fn commit(&mut self) -> Result<(), String> {
        self.flush().map_err(|e| format!("{e:#}"))
    }
}

/// Whether a burst goes on after a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Only decisions (or nothing) to record: take the next waiting key.
    More,
    /// The key had other effects: commit now, then run them.
    End,
}

/// One burst of terminal events (see the module docs).
#[derive(Default)]
pub struct Burst {
    /// Decisions staged and applied to the state, in order.
    staged: Vec<Event>,
    /// Effects to run after the commit, in order.
    effects: Vec<Effect>,
    keys: usize,
    /// The fold's counters before the first staged decision.
    before: Option<(u64, crate::domain::EventId)>,
}

/// What a committed (or failed) burst leaves to the runtime.
#[derive(Debug)]
pub struct Committed {
    /// The decisions now durable and applied, in order (empty when the
    /// commit failed).
    pub events: Vec<Event>,
    /// Effects to run now, in order.
    pub effects: Vec<Effect>,
    /// Terminal events handled.
    pub keys: usize,
    /// Why the decisions are not recorded.
    pub error: Option<String>,
}

impl Burst {
    /// Terminal events handled so far.
    pub fn keys(&self) -> usize {
        self.keys
    }

    /// Decisions staged so far.
    pub fn staged(&self) -> usize {
        self.staged.len()
    }

    /// Handle one terminal event in the state the previous one left.
    pub fn handle(&mut self, st: &mut State, msg: Msg, journal: &mut impl Stage) -> Step {
        self.keys += 1;
        if reads_queue_by_id(st, &msg) {
            st.defer_queue();
        } else {
            st.catch_up_queue();
        }
        let fx = update(st, msg);
        if !fx.iter().all(records_decisions) {
            self.effects.extend(fx);
            return Step::End;
        }
        for e in fx {
            let Effect::Append(kinds) = e else {
                unreachable!("only decisions")
            };
            self.before
                .get_or_insert((st.project.events, st.project.last_event_id));
            let events = journal.stage(kinds);
            // What follows an acknowledged append (a judges' measure, S3
            // signals) runs after the commit.
            let more = update(st, Msg::Appended(events.clone()));
            self.effects.extend(more);
            self.staged.extend(events);
        }
        Step::More
    }

    /// Make the staged decisions durable (one write, one fsync); on
    /// failure take them back out of the state and show the error.
    pub fn finish(self, st: &mut State, journal: &mut impl Stage) -> Committed {
        let Burst {
            staged,
            mut effects,
            keys,
            before,
        } = self;
        st.catch_up_queue();
        if staged.is_empty() {
            return Committed {
                events: staged,
                effects,
                keys,
                error: None,
            };
        }
        match journal.commit() {
            Ok(()) => Committed {
                events: staged,
                effects,
                keys,
                error: None,
            },
            Err(e) => {
                retract(st, &staged, before);
                let n = staged.len();
                let msg = format!(
                    "{e} ({n} decision{} of the last keys, shown pending again)",
                    if n == 1 { "" } else { "s" }
                );
                update(st, Msg::AppendFailed(msg.clone()));
                effects.retain(|e| !matches!(e, Effect::Append(_)));
                Committed {
                    events: Vec::new(),
                    effects,
                    keys,
                    error: Some(msg),
                }
            }
        }
    }
}

/// Whether `msg` only reads the review queue by sample id, so it may run
/// on a queue whose order is behind (the samples this burst decided not
/// yet moved to their new places): a decision or skip key in the main
/// mode, with no filter (the pending samples' order among themselves is
/// the same either way) and another pending sample to move to (with none,
/// the selection moves one row, which depends on the order).
fn reads_queue_by_id(st: &State, msg: &Msg) -> bool {
    use super::keymap::{Action, Input, KeyMode};
    let Msg::Key(k) = msg else {
        return false;
    };
    matches!(st.mode, super::state::Mode::Normal)
        && st.queue.filter().is_empty()
        && st.tally.generated.pending >= 2
        && matches!(
            st.keymap.input(KeyMode::Normal, k),
            Input::Act(Action::Accept | Action::Reject | Action::Relabel(_) | Action::Skip)
        )
}

/// An effect a burst may stage: an append of decisions only.
fn records_decisions(e: &Effect) -> bool {
    matches!(e, Effect::Append(kinds)
        if !kinds.is_empty() && kinds.iter().all(|k| matches!(k, EventKind::Decided(_))))
}

/// Take staged decisions back out of the state, newest first, through
/// the same path acknowledged events take (fold, tallies, queue, map):
/// an `undone` of a decision is its exact inverse in the fold. The fold's
/// counters go back to what they were.
fn retract(st: &mut State, staged: &[Event], before: Option<(u64, crate::domain::EventId)>) {
    let sample = |e: &Event| match &e.kind {
        EventKind::Decided(d) => Some(d.sample),
        _ => None,
    };
    let first: Option<SampleId> = staged.iter().find_map(sample);
    let inverse: Vec<Event> = staged
        .iter()
        .rev()
        .filter_map(|e| {
            sample(e).map(|s| Event {
                v: e.v,
                id: e.id,
                ts: e.ts,
                kind: EventKind::Undone(Undone {
                    event: e.id,
                    sample: s,
                }),
            })
        })
        .collect();
    st.pending_select = first;
    st.apply_events(&inverse);
    if let Some((events, last)) = before {
        st.project.events = events;
        st.project.last_event_id = last;
    }
    st.dirty = true;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Journal;
    use crate::tui::fixture;
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    fn key(c: char) -> Msg {
        let code = match c {
            'v' => KeyCode::Down,
            '^' => KeyCode::Up,
            c => KeyCode::Char(c),
        };
        Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    /// Two identical projects of `n` generated samples on disk (the
    /// same bytes), each journal open for appending, with the TUI state
    /// over it.
    fn pair(n: usize) -> [(tempfile::TempDir, Journal, State); 2] {
        let kinds = fixture::events(n).into_iter().map(|e| e.kind).collect();
        let a = tempfile::tempdir().unwrap();
        drop(Journal::create(&a.path().join("journal.jsonl"), kinds).unwrap());
        let b = tempfile::tempdir().unwrap();
        std::fs::copy(
            a.path().join("journal.jsonl"),
            b.path().join("journal.jsonl"),
        )
        .unwrap();
        [a, b].map(|dir| {
            let mut project = crate::domain::ProjectState::new(true);
            let (j, _) = Journal::open(&dir.path().join("journal.jsonl"), &mut project).unwrap();
            let st = fixture::state_of(project, fixture::classes());
            (dir, j, st)
        })
    }

    /// The runtime's path: bursts of keys, each committed once; a key
    /// that ends a burst has its appends written on their own.
    fn in_bursts(st: &mut State, j: &mut Journal, keys: &str) {
        let mut keys = keys.chars().peekable();
        while keys.peek().is_some() {
            let mut burst = Burst::default();
            for c in keys.by_ref() {
                if burst.handle(st, key(c), j) == Step::End {
                    break;
                }
            }
            let done = burst.finish(st, j);
            assert!(done.error.is_none(), "{:?}", done.error);
            for e in done.effects {
                if let Effect::Append(kinds) = e {
                    let events = j.append(kinds).unwrap();
                    update(st, Msg::Appended(events));
                }
            }
        }
    }

    /// Each key on its own: its append written and acknowledged before
    /// the next key (what the app did before bursts).
    fn one_by_one(st: &mut State, j: &mut Journal, keys: &str) {
        for c in keys.chars() {
            for e in update(st, key(c)) {
                if let Effect::Append(kinds) = e {
                    let events = j.append(kinds).unwrap();
                    update(st, Msg::Appended(events));
                }
            }
        }
    }

    /// The journal's lines as (id, event) without timestamps.
    fn lines(j: &Journal) -> Vec<(u64, EventKind)> {
        let text = std::fs::read_to_string(j.path()).unwrap();
        text.lines()
            .filter_map(|l| Event::from_json_line(l).ok())
            .map(|e| (e.id, e.kind))
            .collect()
    }

    fn same(a: &State, b: &State) {
        for (x, y) in a.project.samples.iter().zip(&b.project.samples) {
            assert_eq!(x, y);
        }
        assert!(a.project == b.project);
        assert_eq!(a.review_sel, b.review_sel);
        assert_eq!(a.queue.ids(), b.queue.ids());
        assert_eq!(a.last_error, b.last_error);
    }

    fn decided(st: &State) -> usize {
        st.project
            .samples
            .iter()
            .filter(|s| !s.decisions.is_empty())
            .count()
    }

    #[test]
    fn a_burst_is_one_fsync_and_the_same_as_key_by_key() {
        // 300: pending examples all along; 24: they run out mid-burst.
        for n in [300, 24] {
            burst_against_one_by_one(n);
        }
    }

    fn burst_against_one_by_one(samples: usize) {
        let [(_da, mut ja, mut a), (_db, mut jb, mut b)] = pair(samples);
        let before = decided(&a);
        // Accepts, rejects, relabels, moves and skips: 40 decisions.
        let keys = "aaxa2v3aa xa^ax1aaxaaxv2aaa aa3axxa4aa5ax6aa x";
        let n = keys.chars().filter(|c| "ax123456".contains(*c)).count();
        let (sa, sb) = (ja.syncs(), jb.syncs());

        let mut burst = Burst::default();
        for c in keys.chars() {
            assert_eq!(burst.handle(&mut a, key(c), &mut ja), Step::More, "{c}");
        }
        assert_eq!(burst.staged(), n);
        // Nothing is written before the commit.
        assert_eq!(lines(&ja).len(), lines(&jb).len());
        let done = burst.finish(&mut a, &mut ja);
        assert_eq!(done.error, None);
        assert_eq!(done.events.len(), n);
        assert!(done.effects.iter().all(|e| !matches!(e, Effect::Append(_))));
        assert_eq!(ja.syncs() - sa, 1, "one fsync for the burst");

        one_by_one(&mut b, &mut jb, keys);
        assert_eq!(jb.syncs() - sb, n as u64, "one fsync per key");
        same(&a, &b);
        assert_eq!(lines(&ja), lines(&jb));
        assert!(decided(&a) > before);
        // The journal, read back, is the state shown.
        let mut reread = crate::domain::ProjectState::new(true);
        crate::store::journal::replay(&std::fs::read(ja.path()).unwrap(), &mut reread);
        assert_eq!(reread.samples, a.project.samples);
    }

    #[test]
    fn undo_works_inside_and_across_bursts() {
        let [(_da, mut ja, mut a), (_db, mut jb, mut b)] = pair(200);
        let start = a.project.clone();
        // `u` ends a burst; the undo then takes back the burst's last
        // decision, and later ones undo further back, one key at a time.
        let keys = "aaxa2uaaxuuaa3xuuuuuuuuu";
        in_bursts(&mut a, &mut ja, keys);
        one_by_one(&mut b, &mut jb, keys);
        same(&a, &b);
        assert_eq!(lines(&ja), lines(&jb));
        // Every decision of this session was undone, one by one.
        assert_eq!(a.project.samples, start.samples);
        assert!(ja.syncs() < jb.syncs());
    }

    /// A journal whose disk refuses the commit.
    struct FullDisk {
        next: u64,
    }

    impl Stage for FullDisk {
        fn stage(&mut self, kinds: Vec<EventKind>) -> Vec<Event> {
            let events = fixture::stamp(kinds, self.next - 1);
            self.next += events.len() as u64;
            events
        }
        fn commit(&mut self) -> Result<(), String> {
            Err("No space left on device (os error 28)".into())
        }
    }

    #[test]
    fn a_failed_commit_shows_nothing_as_done() {
        let mut st = fixture::state(200);
        let start = st.project.clone();
        let counts = (st.tally.clone(), st.queue.ids().to_vec());
        let first = st.selected_sample().unwrap().id;
        let mut disk = FullDisk {
            next: st.project.last_event_id + 1,
        };
        let mut burst = Burst::default();
        // The undo ends the burst: its append (of a decision that is not
        // recorded) must not be written either.
        for c in "aaxa2u".chars() {
            burst.handle(&mut st, key(c), &mut disk);
        }
        let done = burst.finish(&mut st, &mut disk);
        assert!(done.events.is_empty());
        assert!(done.error.as_deref().unwrap().contains("5 decisions"));
        assert!(done.effects.iter().all(|e| !matches!(e, Effect::Append(_))));
        assert_eq!(st.project, start, "every decision taken back");
        assert_eq!((st.tally.clone(), st.queue.ids().to_vec()), counts);
        let err = st.last_error.as_deref().unwrap();
        assert!(err.contains("journal write failed") && err.contains("No space left"));
        assert_eq!(st.selected_sample().unwrap().id, first);
    }
}
