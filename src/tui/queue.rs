//! The review queue: generated samples in sort order, filtered, kept
//! incrementally so a key press or an arriving sample never re-sorts the
//! whole project (a sample moves with one binary search + one insert).

use std::collections::HashMap;

use crate::augment::DoubtContext;
use crate::domain::{Class, ProjectState, SampleId, SampleState, Status};

/// Sort order of the review queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortBy {
    /// Pending before decided, most doubtful first (the default).
    #[default]
    Doubt,
    Newest,
    /// By effective label in class order, then id.
    Class,
}

impl SortBy {
    pub fn next(self) -> SortBy {
        match self {
            SortBy::Doubt => SortBy::Newest,
            SortBy::Newest => SortBy::Class,
            SortBy::Class => SortBy::Doubt,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            SortBy::Doubt => "doubt",
            SortBy::Newest => "newest",
            SortBy::Class => "class",
        }
    }
}

/// Doubt of a generated sample: augment's score and reason tags (the
/// same the CLI's review uses), plus what the queue knows besides: an
/// edit, an automatic decision (duplicates). `disagrees` is the
/// relabeler's here; [`ReviewQueue::doubt`] reads the chosen judge's.
pub fn doubt(s: &SampleState, ctx: &DoubtContext) -> (f64, Vec<&'static str>) {
    doubt_with(s, ctx, &JudgeView::default())
}

/// [`doubt`] with `disagrees` read from the judge of `judged`.
fn doubt_with(s: &SampleState, ctx: &DoubtContext, judged: &JudgeView) -> (f64, Vec<&'static str>) {
    let d = judged.doubt(s, ctx);
    let mut tags = d.reasons;
    if s.is_edited() {
        tags.push("edited");
    }
    if let Some(dec) = s.decision()
        && let (crate::domain::Actor::Auto(_), Some(reason)) = (&dec.by, &dec.reason)
    {
        tags.retain(|t| *t != "no_verdict");
        tags.push(match reason.as_str() {
            "duplicate" => "duplicate",
            "near_duplicate" => "near_dup",
            _ => "auto",
        });
    }
    (d.score, tags)
}

pub use crate::augment::filter::{ActorFilter, Agree, Filter};

/// What the chosen judge (`tui::chosen`) answers about each generated
/// sample, kept by the queue for what it derives from it: the `agree:`
/// filter, the `class:` filter and class sort (the label `a` records),
/// the `disagrees` doubt tag (`!`) and so the doubt order. Built by
/// `chosen::view` from the answers the review column shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JudgeView {
    /// `None`: the relabeler, whose verdicts are on the samples.
    judge: Option<String>,
    /// Labels the answers name, interned.
    names: Vec<String>,
    /// Per sample id: an index into `names`, [`NO_ANSWER`] or [`NO_CLASS`].
    answers: Vec<u32>,
    /// Per sample id: whether the measured judges disagree among
    /// themselves (`Opinions::disagreements`, every judge, not only this
    /// one). Read with the training signals: such a sample carries
    /// `JUDGES_DISAGREE` while the judges' current opinions say so.
    split: Vec<bool>,
}

/// [`JudgeView::answers`]: no answer about that sample (yet).
const NO_ANSWER: u32 = u32::MAX;
/// [`JudgeView::answers`]: an answer naming no class.
const NO_CLASS: u32 = u32::MAX - 1;

impl JudgeView {
    /// The view of the judge named `judge` with no answers yet (for the
    /// relabeler, the verdicts on the samples are its answers).
    pub fn new(judge: &str) -> JudgeView {
        JudgeView {
            judge: (judge != crate::app::judges::RELABEL).then(|| judge.to_string()),
            ..JudgeView::default()
        }
    }

    /// Record the judge's answer about `id` (`None`: naming no class).
    pub fn set(&mut self, id: SampleId, label: Option<&str>) {
        self.set_all([(id, label)]);
    }

    /// [`JudgeView::set`] for many answers (labels interned through a map).
    pub fn set_all<'a>(&mut self, answers: impl IntoIterator<Item = (SampleId, Option<&'a str>)>) {
        let mut index: HashMap<&'a str, u32> = HashMap::new();
        for (id, label) in answers {
            let a = match label {
                None => NO_CLASS,
                Some(l) => *index.entry(l).or_insert_with(|| {
                    match self.names.iter().position(|n| n == l) {
                        Some(i) => i as u32,
                        None => {
                            self.names.push(l.to_string());
                            (self.names.len() - 1) as u32
                        }
                    }
                }),
            };
            let i = id as usize;
            if self.answers.len() <= i {
                self.answers.resize(i + 1, NO_ANSWER);
            }
            self.answers[i] = a;
        }
    }

    /// Record the samples on which the measured judges disagree among
    /// themselves (all others: they do not).
    pub fn set_split(&mut self, ids: impl IntoIterator<Item = SampleId>) {
        self.split.clear();
        for id in ids {
            let i = id as usize;
            if self.split.len() <= i {
                self.split.resize(i + 1, false);
            }
            self.split[i] = true;
        }
    }

    /// The reasons the judges add to a sample's training signals:
    /// [`JUDGES_DISAGREE`](crate::classify::signals::JUDGES_DISAGREE)
    /// where they disagree among themselves.
    pub fn signal_reasons(&self, id: SampleId) -> crate::classify::signals::Reasons {
        let mut r = crate::classify::signals::Reasons::default();
        if self.split.get(id as usize).copied().unwrap_or(false) {
            r.push(crate::classify::signals::JUDGES_DISAGREE);
        }
        r
    }

    /// The judge's name.
    pub fn judge(&self) -> &str {
        self.judge.as_deref().unwrap_or(crate::app::judges::RELABEL)
    }

    /// What the judge answers about `s`: `None` nothing yet, `Some(None)`
    /// an answer naming no class.
    pub fn says<'a>(&'a self, s: &'a SampleState) -> Option<Option<&'a str>> {
        if self.judge.is_none() {
            return s.verdict().map(|v| v.label.as_deref());
        }
        match self.answers.get(s.id as usize).copied() {
            None | Some(NO_ANSWER) => None,
            Some(NO_CLASS) => Some(None),
            Some(i) => Some(self.names.get(i as usize).map(String::as_str)),
        }
    }

    /// Whether the judge agrees with the intended label (`None`: no
    /// answer naming a class): `chosen::agrees`.
    pub fn agrees(&self, s: &SampleState) -> Option<bool> {
        self.says(s).flatten().map(|l| l == s.label)
    }

    /// What the chosen judge adds to a doubt score: its disagreement.
    pub fn disagreement(&self, s: &SampleState) -> f64 {
        if self.agrees(s) == Some(false) {
            crate::augment::doubt::DISAGREEMENT
        } else {
            0.0
        }
    }

    /// The label `a` records on `s` (`chosen::accept_label`).
    pub fn label<'a>(&'a self, s: &'a SampleState, take_relabel: bool) -> &'a str {
        match self.judge {
            // `label_by`'s label for the relabeler, without its source.
            None => s.effective_label(take_relabel),
            Some(_) => {
                crate::tui::chosen::label_by(s, take_relabel, self.judge(), self.says(s).flatten())
                    .0
            }
        }
    }

    /// augment's doubt, `disagrees` being this judge's.
    fn doubt(&self, s: &SampleState, ctx: &DoubtContext) -> crate::augment::Doubt {
        match self.judge {
            None => crate::augment::doubt(s, ctx),
            Some(_) => crate::augment::doubt_by(s, ctx, self.says(s)),
        }
    }

    /// Generated samples of `st` for which `other` gives another agreement
    /// or another label to record than `self`: all the queue and the
    /// counts derive from the view (its doubt scores otherwise hold).
    pub fn changed(&self, other: &JudgeView, st: &ProjectState) -> Vec<SampleId> {
        let take = st.take_relabel;
        st.generated()
            .filter(|s| {
                self.agrees(s) != other.agrees(s)
                    || self.label(s, take) != other.label(s, take)
                    || self.signal_reasons(s.id) != other.signal_reasons(s.id)
            })
            .map(|s| s.id)
            .collect()
    }
}

/// Sort key: smaller comes first; the id makes every key unique.
type Key = (i64, SampleId);

/// The key slot of an id not in the order.
const NO_KEY: Key = (0, 0);

/// All generated samples in one sort order, and the subset that passes
/// the filter (when one is set).
#[derive(Debug, Clone, Default)]
struct Order {
    ids: Vec<SampleId>,
    /// Key per sample id (ids are dense); an absent id has key
    /// [`NO_KEY`] (no sample has id 0).
    keys: Vec<Key>,
    filtered: Option<Vec<SampleId>>,
}

impl Order {
    fn key_of(&self, id: SampleId) -> Option<Key> {
        self.keys.get(id as usize).copied().filter(|k| k.1 == id)
    }

    fn visible(&self) -> &[SampleId] {
        self.filtered.as_deref().unwrap_or(&self.ids)
    }

    /// Insert `id` with key `k`; into the filtered view too when `passes`.
    fn insert(&mut self, id: SampleId, k: Key, passes: bool) {
        let i = id as usize;
        if self.keys.len() <= i {
            self.keys.resize(i + 1, NO_KEY);
        }
        self.keys[i] = k;
        let keys = &self.keys;
        let i = self.ids.partition_point(|x| keys[*x as usize] < k);
        self.ids.insert(i, id);
        if passes && let Some(f) = &mut self.filtered {
            let i = f.partition_point(|x| keys[*x as usize] < k);
            f.insert(i, id);
        }
    }

    fn remove(&mut self, id: SampleId) {
        let Some(k) = self.key_of(id) else {
            return;
        };
        let keys = &self.keys;
        for v in [Some(&mut self.ids), self.filtered.as_mut()]
            .into_iter()
            .flatten()
        {
            if let Ok(i) = v.binary_search_by_key(&k, |x| keys[*x as usize]) {
                v.remove(i);
            }
        }
        self.keys[id as usize] = NO_KEY;
    }
}

/// Generated samples that pass the filter, in sort order.
///
/// Every sort order is kept for all generated samples at once, with its
/// filtered view, updated sample by sample as events arrive: switching the
/// sort is free, and setting a filter is one sequential pass over compact
/// per-sample facts (label, status, agreement) kept as samples change
/// (words are looked up in the texts themselves), plus one pass per order (no sorting).
#[derive(Debug, Clone)]
pub struct ReviewQueue {
    sort: SortBy,
    filter: Filter,
    /// Seeds and thresholds for doubt scores.
    pub ctx: DoubtContext,
    /// One order per [`SortBy`], indexed by [`SortBy::index`].
    orders: [Order; 3],
    /// Doubt score of every generated sample by id (ids are dense),
    /// computed when it changes; NaN where not computed.
    scores: Vec<f64>,
    /// Training-dynamics signals (S3), folded into doubt scores and tags.
    signals: crate::classify::SignalMap,
    /// What the filter looks at, per sample id, kept as samples change so
    /// applying a filter never touches the samples themselves.
    meta: Vec<Meta>,
    /// Effective labels seen, interned (`Meta::label` indexes this).
    labels: Vec<String>,
    /// The chosen judge's answers (agreement, labels, `disagrees`).
    judged: JudgeView,
}

/// The filterable facts of one generated sample, 12 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Meta {
    present: bool,
    status: Option<Status>,
    agree: Option<bool>,
    /// Whether the current decision is automatic (`None`: undecided).
    auto: Option<bool>,
    /// Index into `ReviewQueue::labels` of the effective label.
    label: u32,
}

/// A filter resolved against the queue's interned labels.
struct Wanted<'f> {
    filter: &'f Filter,
    /// Index of the `class:` label in `ReviewQueue::labels`.
    label: Option<u32>,
    /// The agreement asked for (`Some(None)`: no answer naming a class).
    agree: Option<Option<bool>>,
}

impl Wanted<'_> {
    fn passes(&self, m: &Meta, id: SampleId, st: &ProjectState) -> bool {
        let f = self.filter;
        m.present
            && self.label.is_none_or(|l| m.label == l)
            && f.status.is_none_or(|s| m.status == Some(s))
            && self.agree.is_none_or(|a| m.agree == a)
            && f.actor
                .is_none_or(|a| m.auto == Some(a == ActorFilter::Auto))
            // Texts are kept once (in the fold): lower-cased here,
            // only for samples that pass everything else.
            && (f.words.is_empty()
                || st.sample(id).is_some_and(|s| {
                    let text = s.text().to_lowercase();
                    f.words.iter().all(|w| text.contains(w.as_str()))
                }))
    }
}

impl SortBy {
    const ALL: [SortBy; 3] = [SortBy::Doubt, SortBy::Newest, SortBy::Class];
    fn index(self) -> usize {
        self as usize
    }
}

impl ReviewQueue {
    /// An empty queue scoring doubt against `ctx`.
    pub fn new(ctx: DoubtContext) -> ReviewQueue {
        ReviewQueue {
            sort: SortBy::default(),
            filter: Filter::default(),
            ctx,
            orders: Default::default(),
            scores: Vec::new(),
            signals: Default::default(),
            meta: Vec::new(),
            labels: Vec::new(),
            judged: JudgeView::default(),
        }
    }

    pub fn sort(&self) -> SortBy {
        self.sort
    }

    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// The cached doubt score of a sample.
    /// (The cache holds the part no judge decides, so following another
    /// judge recomputes nothing: its disagreement is added here.)
    pub fn score(&mut self, s: &SampleState) -> f64 {
        let i = s.id as usize;
        let free = match self.scores.get(i).filter(|x| !x.is_nan()) {
            Some(x) => *x,
            None => {
                let x = self.fresh_score(s);
                if self.scores.len() <= i {
                    self.scores.resize(i + 1, f64::NAN);
                }
                self.scores[i] = x;
                x
            }
        };
        free + judge_part(&self.judged, &self.signals, s)
    }

    /// The part of a sample's doubt score no judge decides, computed (not
    /// cached).
    fn fresh_score(&self, s: &SampleState) -> f64 {
        let mut d = crate::augment::doubt_by(s, &self.ctx, None);
        if let Some(sig) = self.signals.get(s.id) {
            sig.add_to(&mut d);
        }
        d.score
    }

    /// Forget the cached score of `id`.
    fn forget_score(&mut self, id: SampleId) {
        if let Some(x) = self.scores.get_mut(id as usize) {
            *x = f64::NAN;
        }
    }

    /// Doubt score and reason tags of a sample as the queue sees them:
    /// [`doubt`] plus the training-dynamics signals, if any.
    pub fn doubt(&self, s: &SampleState) -> (f64, Vec<&'static str>) {
        let (mut score, mut tags) = doubt_with(s, &self.ctx, &self.judged);
        if let Some(sig) = self.signals.get(s.id) {
            let extra = self.judged.signal_reasons(s.id);
            score += sig.doubt_with(extra);
            for r in sig.reasons.union(extra).iter() {
                if !tags.contains(&r) {
                    tags.push(r);
                }
            }
        }
        (score, tags)
    }

    /// Replace the training-dynamics signals. Only samples whose signals
    /// changed (new, gone or different) get new keys: each moves with a
    /// remove + insert, so the orders stay sorted without a re-sort.
    pub fn set_signals(
        &mut self,
        signals: crate::classify::SignalMap,
        st: &ProjectState,
        classes: &[Class],
    ) {
        let mut changed: Vec<SampleId> = signals
            .iter()
            .filter(|(id, sig)| self.signals.get(*id) != Some(*sig))
            .map(|(id, _)| id)
            .collect();
        changed.extend(self.signals.keys().filter(|id| !signals.contains_key(*id)));
        changed.sort_unstable();
        self.signals = signals;
        for id in changed {
            let Some(s) = st.sample(id) else { continue };
            if s.origin != crate::domain::Origin::Generated || self.orders[0].key_of(id).is_none() {
                continue;
            }
            self.remove(id);
            self.insert(s, st, classes);
        }
    }

    /// The chosen judge's answers the queue follows.
    pub fn judged(&self) -> &JudgeView {
        &self.judged
    }

    /// Follow another judge or new answers: `changed` (sorted, from
    /// [`JudgeView::changed`]) are the samples that move.
    pub fn set_judged(
        &mut self,
        judged: JudgeView,
        changed: &[SampleId],
        st: &ProjectState,
        classes: &[Class],
    ) {
        self.judged = judged;
        self.replace_many(changed, st, classes);
    }

    /// Signals of a sample, if computed.
    pub fn signals_of(&self, id: SampleId) -> Option<&crate::classify::Signals> {
        self.signals.get(id)
    }

    fn order(&self) -> &Order {
        &self.orders[self.sort.index()]
    }

    /// Visible sample ids in order.
    pub fn ids(&self) -> &[SampleId] {
        self.order().visible()
    }

    pub fn len(&self) -> usize {
        self.ids().len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids().is_empty()
    }
    pub fn get(&self, i: usize) -> Option<SampleId> {
        self.ids().get(i).copied()
    }

    fn key(&mut self, by: SortBy, s: &SampleState, st: &ProjectState, classes: &[Class]) -> Key {
        let score = if by == SortBy::Doubt {
            self.score(s)
        } else {
            0.0
        };
        key_of(by, s, score, &self.judged, st, classes)
    }

    /// Build every order from scratch (at start). The doubt scores (a
    /// shingle look-up per text, most of the work) are computed on every
    /// core, and the three orders are sorted side by side: the review
    /// list of a big project is on screen that much sooner.
    pub fn rebuild(&mut self, st: &ProjectState, classes: &[Class]) {
        let generated: Vec<&SampleState> = st.generated().collect();
        let threads = if generated.len() < PARALLEL_MIN {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        };
        let part = generated.len().div_ceil(threads).max(1);
        let this = &*self;
        let scored: Vec<Vec<f64>> = if threads == 1 {
            vec![generated.iter().map(|s| this.fresh_score(s)).collect()]
        } else {
            std::thread::scope(|sc| {
                let jobs: Vec<_> = generated
                    .chunks(part)
                    .map(|p| sc.spawn(move || p.iter().map(|s| this.fresh_score(s)).collect()))
                    .collect();
                jobs.into_iter()
                    .map(|j| j.join().expect("doubt scoring panicked"))
                    .collect()
            })
        };
        let top = generated
            .iter()
            .map(|s| s.id as usize + 1)
            .max()
            .unwrap_or(0);
        self.scores.clear();
        self.scores.resize(top, f64::NAN);
        for (s, x) in generated.iter().zip(scored.into_iter().flatten()) {
            self.scores[s.id as usize] = x;
        }
        for s in &generated {
            self.set_meta(s, st.take_relabel);
        }
        let (scores, judged, signals) = (&self.scores, &self.judged, &self.signals);
        let build =
            |by: SortBy| build_order(by, &generated, scores, judged, signals, top, st, classes);
        self.orders = if threads == 1 {
            SortBy::ALL.map(build)
        } else {
            std::thread::scope(|sc| {
                let build = &build;
                SortBy::ALL
                    .map(|by| sc.spawn(move || build(by)))
                    .map(|j| j.join().expect("sorting the review queue panicked"))
            })
        };
        self.refilter(st);
    }

    /// Switch the sort order (free: every order is kept).
    pub fn set_sort(&mut self, sort: SortBy, _st: &ProjectState) {
        self.sort = sort;
    }

    /// Set the filter.
    pub fn set_filter(&mut self, filter: Filter, st: &ProjectState) {
        self.filter = filter;
        self.refilter(st);
    }

    fn refilter(&mut self, st: &ProjectState) {
        if self.filter.is_empty() {
            for o in &mut self.orders {
                o.filtered = None;
            }
            return;
        }
        // One sequential pass over the compact per-id facts (and the
        // texts when words are given), then a bitmap look-up
        // per id of each order: the samples themselves are not touched.
        let want = self.wanted();
        let passes: Vec<bool> = self
            .meta
            .iter()
            .enumerate()
            .map(|(id, m)| want.passes(m, id as SampleId, st))
            .collect();
        let pass = |id: &SampleId| passes.get(*id as usize).copied().unwrap_or(false);
        for o in &mut self.orders {
            o.filtered = Some(o.ids.iter().copied().filter(pass).collect());
        }
    }

    /// The filter as the per-id facts read it.
    fn wanted(&self) -> Wanted<'_> {
        let f = &self.filter;
        let label = match &f.class {
            Some(c) => match self.labels.iter().position(|l| l == c) {
                Some(i) => Some(i as u32),
                // No sample has that label.
                None => Some(u32::MAX),
            },
            None => None,
        };
        let agree = f.agree.map(|a| match a {
            Agree::Yes => Some(true),
            Agree::No => Some(false),
            Agree::None => None,
        });
        Wanted {
            filter: f,
            label,
            agree,
        }
    }

    /// Whether a sample whose facts were just recorded passes the filter
    /// (the facts, not `Filter::matches`, which reads the relabeler).
    fn passes(&self, id: SampleId, st: &ProjectState) -> bool {
        !self.filter.is_empty()
            && self
                .meta
                .get(id as usize)
                .is_some_and(|m| self.wanted().passes(m, id, st))
    }

    /// Record the filterable facts of a generated sample.
    fn set_meta(&mut self, s: &SampleState, take_relabel: bool) {
        let i = s.id as usize;
        if self.meta.len() <= i {
            self.meta.resize(i + 1, Meta::default());
        }
        let l = self.judged.label(s, take_relabel);
        let label = match self.labels.iter().position(|x| x == l) {
            Some(p) => p,
            None => {
                self.labels.push(l.to_string());
                self.labels.len() - 1
            }
        } as u32;
        self.meta[i] = Meta {
            present: true,
            status: Some(s.status()),
            agree: self.judged.agrees(s),
            auto: s.decision().map(|d| !d.by.is_person()),
            label,
        };
    }

    /// Take a sample out (before an event changes it).
    pub fn remove(&mut self, id: SampleId) {
        self.forget_score(id);
        self.unplace(id);
    }

    /// Take a sample out of the orders, keeping its cached score.
    fn unplace(&mut self, id: SampleId) {
        if let Some(m) = self.meta.get_mut(id as usize) {
            m.present = false;
        }
        for o in &mut self.orders {
            o.remove(id);
        }
    }

    /// Put a generated sample (back) in place in every order (and filtered
    /// view, if it passes the filter).
    pub fn insert(&mut self, s: &SampleState, st: &ProjectState, classes: &[Class]) {
        if s.origin != crate::domain::Origin::Generated {
            return;
        }
        self.set_meta(s, st.take_relabel);
        let passes = self.passes(s.id, st);
        for by in SortBy::ALL {
            let k = self.key(by, s, st, classes);
            self.orders[by.index()].insert(s.id, k, passes);
        }
    }

    /// [`ReviewQueue::remove`] then [`ReviewQueue::insert`] for each of
    /// `ids` (sorted, no duplicates), with one pass over each order
    /// instead of two shifts of it per sample: a burst of decisions
    /// catching up (see `tui::burst`).
    pub fn reinsert_many(&mut self, ids: &[SampleId], st: &ProjectState, classes: &[Class]) {
        for &id in ids {
            self.forget_score(id);
        }
        self.replace_many(ids, st, classes);
    }

    /// [`ReviewQueue::reinsert_many`] keeping the cached doubt scores
    /// (the samples did not change, what the queue derives from them did).
    fn replace_many(&mut self, ids: &[SampleId], st: &ProjectState, classes: &[Class]) {
        if ids.len() < 8 {
            for &id in ids {
                self.unplace(id);
                if let Some(s) = st.sample(id) {
                    self.insert(s, st, classes);
                }
            }
            return;
        }
        let max = ids.iter().copied().max().unwrap_or(0) as usize;
        let mut gone = vec![false; max + 1];
        for &id in ids {
            gone[id as usize] = true;
            if let Some(m) = self.meta.get_mut(id as usize) {
                m.present = false;
            }
        }
        let is_gone = |x: &SampleId| gone.get(*x as usize).copied().unwrap_or(false);
        for o in &mut self.orders {
            o.ids.retain(|x| !is_gone(x));
            if let Some(f) = &mut o.filtered {
                f.retain(|x| !is_gone(x));
            }
            for &id in ids {
                if let Some(k) = o.keys.get_mut(id as usize) {
                    *k = NO_KEY;
                }
            }
        }
        let back: Vec<&SampleState> = ids
            .iter()
            .filter_map(|id| st.sample(*id))
            .filter(|s| s.origin == crate::domain::Origin::Generated)
            .collect();
        let mut passes = Vec::with_capacity(back.len());
        for s in &back {
            self.set_meta(s, st.take_relabel);
            passes.push(self.passes(s.id, st));
        }
        for by in SortBy::ALL {
            let mut new: Vec<(Key, SampleId, bool)> = back
                .iter()
                .zip(&passes)
                .map(|(s, p)| (self.key(by, s, st, classes), s.id, *p))
                .collect();
            new.sort_unstable_by_key(|e| e.0);
            let o = &mut self.orders[by.index()];
            if let Some(top) = new.iter().map(|e| e.1 as usize).max()
                && o.keys.len() <= top
            {
                o.keys.resize(top + 1, NO_KEY);
            }
            for e in &new {
                o.keys[e.1 as usize] = e.0;
            }
            merge_into(&mut o.ids, new.iter().map(|e| (e.0, e.1)), &o.keys);
            if let Some(f) = &mut o.filtered {
                merge_into(f, new.iter().filter(|e| e.2).map(|e| (e.0, e.1)), &o.keys);
            }
        }
    }

    /// Position of a visible sample.
    pub fn position(&self, id: SampleId) -> Option<usize> {
        let o = self.order();
        let k = o.key_of(id)?;
        self.ids()
            .binary_search_by_key(&k, |x| o.keys[*x as usize])
            .ok()
    }
}

/// Below this many generated samples the queue is built on one thread.
const PARALLEL_MIN: usize = 4096;

/// Sort key of `s` in the order `by` (`score`: its doubt score).
fn key_of(
    by: SortBy,
    s: &SampleState,
    score: f64,
    judged: &JudgeView,
    st: &ProjectState,
    classes: &[Class],
) -> Key {
    let k = match by {
        // Pending first, each part most doubtful first.
        SortBy::Doubt => {
            let decided = if s.status() == Status::Pending {
                0
            } else {
                100_000_000
            };
            decided - (score.min(50.0) * 1e6) as i64
        }
        SortBy::Newest => -(s.id as i64),
        SortBy::Class => {
            let l = judged.label(s, st.take_relabel);
            classes
                .iter()
                .position(|c| c.name == l)
                .unwrap_or(classes.len()) as i64
        }
    };
    (k, s.id)
}

/// The part of a sample's doubt score the judges decide (not cached, as
/// the judges change): the chosen judge's disagreement, and with training
/// signals the judges' reasons ([`JudgeView::signal_reasons`]) they do
/// not carry themselves.
fn judge_part(judged: &JudgeView, signals: &crate::classify::SignalMap, s: &SampleState) -> f64 {
    let extra = match signals.get(s.id) {
        Some(sig) => judged
            .signal_reasons(s.id)
            .iter()
            .filter(|r| !sig.reasons.contains(r))
            .map(crate::classify::signals::reason_weight)
            .sum(),
        None => 0.0,
    };
    judged.disagreement(s) + extra
}

/// One order of `generated` (`scores` by id: the judge-free part; `top`
/// the largest id + 1).
#[allow(clippy::too_many_arguments)]
fn build_order(
    by: SortBy,
    generated: &[&SampleState],
    scores: &[f64],
    judged: &JudgeView,
    signals: &crate::classify::SignalMap,
    top: usize,
    st: &ProjectState,
    classes: &[Class],
) -> Order {
    // The key holds the id: sorting the keys sorts the ids.
    let mut keyed: Vec<Key> = generated
        .iter()
        .map(|s| {
            let score = if by == SortBy::Doubt {
                scores[s.id as usize] + judge_part(judged, signals, s)
            } else {
                0.0
            };
            key_of(by, s, score, judged, st, classes)
        })
        .collect();
    keyed.sort_unstable();
    let mut keys = vec![NO_KEY; top];
    for &k in &keyed {
        keys[k.1 as usize] = k;
    }
    Order {
        ids: keyed.iter().map(|k| k.1).collect(),
        keys,
        filtered: None,
    }
}

/// Merge `new` (sorted by key) into `v` (sorted by `keys`), each new id
/// where [`Order::insert`] would put it.
fn merge_into(v: &mut Vec<SampleId>, new: impl Iterator<Item = (Key, SampleId)>, keys: &[Key]) {
    let mut new = new.peekable();
    if new.peek().is_none() {
        return;
    }
    let old = std::mem::take(v);
    let mut out = Vec::with_capacity(old.len() + new.size_hint().0);
    for x in old {
        let k = keys[x as usize];
        while let Some(e) = new.next_if(|e| e.0 < k) {
            out.push(e.1);
        }
        out.push(x);
    }
    out.extend(new.map(|e| e.1));
    *v = out;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{accept, classes, state_with};
    use crate::domain::{EventKind, Origin, Verdict, VerdictMethod, VerdictRecorded};

    fn verdict(sample: SampleId, label: &str, conf: f64) -> EventKind {
        EventKind::VerdictRecorded(VerdictRecorded {
            sample,
            verdict: Verdict {
                label: Some(label.into()),
                confidence: [(label.to_string(), conf)].into(),
                method: VerdictMethod::Logprobs,
                votes: None,
                raw: None,
                model: None,
                request_id: None,
            },
        })
    }

    #[test]
    fn rebuild_on_every_core_orders_as_inserting_one_by_one() {
        let classes = classes(&["A", "B", "C"], |n| format!("class {n}"));
        let n = PARALLEL_MIN as u64 + 1000;
        let texts: Vec<String> = (0..n)
            .map(|i| format!("what is the capital of place {} number {i}", i % 37))
            .collect();
        let mut samples = vec![
            ("what is the capital of place 3", "A", Origin::Seed),
            ("how far is the moon from here", "B", Origin::Seed),
        ];
        for (i, t) in texts.iter().enumerate() {
            samples.push((t, ["A", "B", "C"][i % 3], Origin::Generated));
        }
        let mut more = Vec::new();
        for id in 3..n + 3 {
            match id % 7 {
                0 => more.push(verdict(id, "B", 0.4)),
                1 | 2 => more.push(verdict(id, "A", 0.9)),
                3 => more.push(accept(id)),
                _ => {}
            }
        }
        let st = state_with(&samples, more);
        let ctx = DoubtContext::from_state(&st);
        let mut all = ReviewQueue::new(ctx.clone());
        all.rebuild(&st, &classes);
        let mut one = ReviewQueue::new(ctx);
        for s in st.generated() {
            one.insert(s, &st, &classes);
        }
        for by in SortBy::ALL {
            all.set_sort(by, &st);
            one.set_sort(by, &st);
            assert_eq!(all.len(), n as usize, "{by:?}");
            assert_eq!(all.ids(), one.ids(), "{by:?}");
        }
        all.set_sort(SortBy::Doubt, &st);
        let first = st.sample(all.ids()[0]).unwrap();
        assert!(all.doubt(first).0 > 1.0, "the most doubtful comes first");
        for s in st.generated() {
            assert_eq!(all.score(s), one.score(s));
        }
    }
}
