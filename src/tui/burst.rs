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
