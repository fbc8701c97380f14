//! The map pane's state and its side of `update`: a 2-D PCA projection of
//! the samples' sentence vectors (`embed::Projection`), kept point by point.
//!
//! * Every seed and generated sample is a point once its vector is known;
//!   [`MapState`] keeps the projected coordinates by mark (seed, pending,
//!   accepted, rejected), so a frame only walks cached points and a
//!   decision moves one point between lists.
//! * Vectors are computed off the UI task: `update` asks for them with
//!   [`Effect::Map`] (a [`MapJob`]); the runtime runs [`MapWorker::run`] on
//!   a blocking thread (the project's embedder and vector store,
//!   `cache/embeddings/`), which answers with [`MapReply`] messages, a
//!   chunk of points at a time. A job carries at most [`JOB`] samples;
//!   the next is asked for when it is done, so however large the project
//!   only a job's texts and a chunk's vectors are in memory, and only
//!   the 2-D points are kept.
//! * The projection is fitted once (on seeds + accepted examples; over
//!   `embed::MAX_FIT` of them on an even stride, and only those vectors
//!   are read) and then kept: a new sample is projected with the same axes and nothing already
//!   drawn moves. It is refitted only on request (`M`) or when the fit set
//!   has doubled (`embed::refit_due`), and the notice says which.
//! * Nothing is computed while the map is hidden; samples that arrive
//!   meanwhile wait in `missing` and are projected when it is shown again.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::domain::{Class, EmbeddingBackend, EmbeddingsConfig, Origin, SampleId, SampleState};
use crate::domain::{ProjectState, Status};
use crate::embed::{self, EmbedError, Embedder, Projection, VectorStore};

use super::state::{Effect, Pane, State};

/// How a point is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mark {
    Seed,
    Pending,
    Accepted,
    Rejected,
}

impl Mark {
    pub const ALL: [Mark; 4] = [Mark::Seed, Mark::Pending, Mark::Accepted, Mark::Rejected];

    fn index(self) -> usize {
        self as usize
    }

    /// The mark of a sample, `None` for held-out examples (not on the map).
    pub fn of(s: &SampleState) -> Option<Mark> {
        match s.origin {
            Origin::Seed => Some(Mark::Seed),
            Origin::Generated => Some(match s.status() {
                Status::Pending => Mark::Pending,
                Status::Accepted => Mark::Accepted,
                Status::Rejected => Mark::Rejected,
            }),
            Origin::Validation | Origin::Test => None,
        }
    }

    /// Whether samples with this mark are in the projection's fit set.
    fn fits(self) -> bool {
        matches!(self, Mark::Seed | Mark::Accepted)
    }
}

/// Class index of a point with a label that is not a class.
pub const NO_CLASS: u16 = u16::MAX;

/// One projected sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MapPoint {
    pub id: SampleId,
    pub x: f32,
    pub y: f32,
    /// Index of its (effective) label in the class list, or [`NO_CLASS`].
    pub class: u16,
}

/// `[left, right, bottom, top]`.
pub type Bounds = [f64; 4];

/// What the map shows and what it waits for.
#[derive(Debug, Clone, Default)]
pub struct MapState {
    /// The map pane is on screen.
    pub shown: bool,
    /// Points by [`Mark`].
    points: [Vec<MapPoint>; 4],
    /// Where each sample's point is.
    index: HashMap<SampleId, (Mark, usize)>,
    /// Samples on the map with no point for their current text yet.
    missing: BTreeSet<SampleId>,
    pub projection: Option<Arc<Projection>>,
    /// Bumped when a refit is asked for: points of an older projection
    /// are dropped when they arrive.
    pub generation: u64,
    /// Seeds + accepted examples now (the fit set's size).
    fit_count: usize,
    /// Seeds + accepted examples when the projection was last fitted.
    fit_basis: usize,
    /// The projection was fitted on every sample (too few seeds + accepted).
    pub fit_on_all: bool,
    /// Refits so far in this session.
    pub refits: u32,
    /// A vector job is running.
    pub job_running: bool,
    /// Why there is no map (no embedder configured or installed).
    pub unavailable: Option<String>,
    /// The last job's failure.
    pub error: Option<String>,
    /// Zoomed to this class pair (indices into the classes).
    pub pair: Option<(u16, u16)>,
    bounds: Option<Bounds>,
    pair_bounds: Option<Bounds>,
}

/// Vectors asked of the runtime ([`Effect::Map`]): a refit's sample of
/// the fit set and at most [`JOB`] samples to project; the map asks for
/// the next ones when it is answered, so no job holds every text.
#[derive(Debug, Clone, PartialEq)]
pub struct MapJob {
    /// The projection generation the points are for.
    pub generation: u64,
    /// Fit a new projection first.
    pub fit: Option<FitTexts>,
    /// The projection to use when not fitting.
    pub projection: Option<Arc<Projection>>,
    /// (sample, edits so far, text) to project.
    pub samples: Vec<(SampleId, u32, String)>,
    /// More jobs follow this one (the worker keeps its embedder loaded).
    pub more: bool,
}

/// The texts a refit embeds: of the `of` seeds + accepted examples, the
/// ones `Projection::fit` would use (every `embed::fit_step(of)`-th, at
/// most `projection::MAX_FIT`), for `Projection::fit_sample`.
#[derive(Debug, Clone, PartialEq)]
pub struct FitTexts {
    pub texts: Vec<String>,
    pub of: usize,
}

/// What a vector job sends back, as `Msg::Map`.
#[derive(Debug, Clone, PartialEq)]
pub enum MapReply {
    /// A new projection (a refit job, before its points).
    Fitted {
        generation: u64,
        projection: Arc<Projection>,
    },
    /// Points of a chunk; `done` on the job's last message.
    Points {
        generation: u64,
        points: Vec<(SampleId, u32, [f32; 2])>,
        done: bool,
    },
    /// No embedder: what to do about it.
    Unavailable(String),
    Failed(String),
}

/// Texts embedded per reply (a first opening shows points as they come).
pub const CHUNK: usize = 256;

/// Samples a job projects at most (the vector store's chunk): its texts
/// and vectors are all a job holds, however large the project.
pub const JOB: usize = 2048;

/// When the fit set is this small the projection is fitted on every
/// sample instead (a handful of seeds spans no useful plane).
const MIN_FIT: usize = 3;

fn extend(b: &mut Option<Bounds>, x: f32, y: f32) {
    let (x, y) = (f64::from(x), f64::from(y));
    match b {
        Some([l, r, bo, t]) => {
            *l = l.min(x);
            *r = r.max(x);
            *bo = bo.min(y);
            *t = t.max(y);
        }
        None => *b = Some([x, x, y, y]),
    }
}

impl MapState {
    /// Points with `mark`.
    pub fn points(&self, mark: Mark) -> &[MapPoint] {
        &self.points[mark.index()]
    }

    /// The point of a sample, if it has one.
    pub fn point(&self, id: SampleId) -> Option<(Mark, MapPoint)> {
        self.index
            .get(&id)
            .map(|(m, i)| (*m, self.points[m.index()][*i]))
    }

    /// Points drawn (all marks).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Samples waiting for their vector.
    pub fn waiting(&self) -> usize {
        self.missing.len()
    }

    /// Seeds + accepted examples now.
    pub fn fit_count(&self) -> usize {
        self.fit_count
    }

    /// Bounds of what is drawn (the zoomed pair's, when zoomed).
    pub fn view_bounds(&self) -> Option<Bounds> {
        if self.pair.is_some() {
            self.pair_bounds
        } else {
            self.bounds
        }
    }

    fn class_of(s: &SampleState, classes: &[Class], take_relabel: bool) -> u16 {
        let l = if s.origin == Origin::Generated {
            s.effective_label(take_relabel)
        } else {
            s.label.as_str()
        };
        classes
            .iter()
            .position(|c| c.name == l)
            .map_or(NO_CLASS, |i| i as u16)
    }

    /// Before an event changes `s` (as the tallies do).
    pub fn forget(&mut self, s: &SampleState) {
        if Mark::of(s).is_some_and(Mark::fits) {
            self.fit_count = self.fit_count.saturating_sub(1);
        }
    }

    /// After an event changed (or added) `s`: its point follows its mark
    /// and label; a new or edited text waits for a vector.
    pub fn note(&mut self, s: &SampleState, classes: &[Class], take_relabel: bool, text: bool) {
        let Some(mark) = Mark::of(s) else { return };
        if mark.fits() {
            self.fit_count += 1;
        }
        if text {
            self.missing.insert(s.id);
        }
        let class = Self::class_of(s, classes, take_relabel);
        if let Some(&(m, i)) = self.index.get(&s.id) {
            let mut p = self.points[m.index()][i];
            p.class = class;
            if m == mark {
                self.points[m.index()][i] = p;
            } else {
                self.take(s.id);
                self.put(mark, p);
            }
        }
    }

    /// Take a sample's point out of its list (O(1): swap-remove).
    fn take(&mut self, id: SampleId) -> Option<MapPoint> {
        let (m, i) = self.index.remove(&id)?;
        let list = &mut self.points[m.index()];
        let p = list.swap_remove(i);
        if let Some(moved) = list.get(i) {
            self.index.insert(moved.id, (m, i));
        }
        Some(p)
    }

    fn put(&mut self, mark: Mark, p: MapPoint) {
        let list = &mut self.points[mark.index()];
        self.index.insert(p.id, (mark, list.len()));
        list.push(p);
        extend(&mut self.bounds, p.x, p.y);
        if let Some((a, b)) = self.pair
            && (p.class == a || p.class == b)
        {
            extend(&mut self.pair_bounds, p.x, p.y);
        }
    }

    /// Set a sample's point (new, or moved after an edit).
    fn set_point(&mut self, s: &SampleState, classes: &[Class], take: bool, xy: [f32; 2]) {
        let Some(mark) = Mark::of(s) else { return };
        self.take(s.id);
        self.put(
            mark,
            MapPoint {
                id: s.id,
                x: xy[0],
                y: xy[1],
                class: Self::class_of(s, classes, take),
            },
        );
    }

    /// Drop every point (a new projection is coming); all samples wait.
    fn clear_points(&mut self) {
        for (id, _) in self.index.drain() {
            self.missing.insert(id);
        }
        for l in &mut self.points {
            l.clear();
        }
        self.bounds = None;
        self.pair_bounds = None;
    }

    /// Recompute the zoomed pair's bounds (when the pair changes).
    fn refresh_pair_bounds(&mut self) {
        self.pair_bounds = None;
        let Some((a, b)) = self.pair else { return };
        let mut out = None;
        for p in self.points.iter().flatten() {
            if p.class == a || p.class == b {
                extend(&mut out, p.x, p.y);
            }
        }
        self.pair_bounds = out;
    }
}

/// Every sample the map shows (seeds and generated examples).
fn map_samples(st: &ProjectState) -> impl Iterator<Item = &SampleState> {
    st.samples.iter().filter(|s| Mark::of(s).is_some())
}

fn version(s: &SampleState) -> u32 {
    s.edits.len() as u32
}

/// The `m` key: show or hide the map. Showing it retries a map that had
/// no embedder or failed, and asks for what is missing.
pub fn toggle(st: &mut State, fx: &mut Vec<Effect>) {
    st.map.shown = !st.map.shown;
    if st.map.shown {
        st.focus = Pane::Map;
        st.map.unavailable = None;
        st.map.error = None;
        request(st, fx, false);
    } else if st.focus == Pane::Map {
        st.focus = Pane::Review;
    }
}

/// The `M` key: refit the projection on the current seeds + accepted.
pub fn refit(st: &mut State, fx: &mut Vec<Effect>) {
    if !st.map.shown {
        st.notice = Some(hidden_notice(st));
        return;
    }
    st.map.error = None;
    st.map.unavailable = None;
    if st.map.job_running {
        st.notice = Some("the map is busy computing vectors; press M again when it is done".into());
        return;
    }
    request(st, fx, true);
}

fn hidden_notice(st: &State) -> String {
    format!(
        "the map is hidden: {} shows it",
        st.keymap.hint(super::keymap::Action::ToggleMap)
    )
}

/// Class pairs in the order the `b` key visits them: those the `mix`
/// strategy aimed at (intended label × minor class), busiest first, then
/// the other pairs in class order.
pub fn class_pairs(st: &State) -> Vec<(u16, u16)> {
    let idx = |name: &str| st.classes.iter().position(|c| c.name == name);
    let mut counts: HashMap<(u16, u16), usize> = HashMap::new();
    for s in st.project.generated() {
        if let (Some(a), Some(b)) = (idx(&s.label), s.provenance.minor.as_deref().and_then(&idx))
            && a != b
        {
            let k = (a.min(b) as u16, a.max(b) as u16);
            *counts.entry(k).or_default() += 1;
        }
    }
    let n = st.classes.len() as u16;
    let mut all: Vec<(u16, u16)> = (0..n)
        .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
        .collect();
    all.sort_by_key(|k| std::cmp::Reverse(counts.get(k).copied().unwrap_or(0)));
    all
}

/// The `b` key: zoom to the next class pair — first the pair the selected
/// example was generated for (its label × minor class), else the busiest
/// `mix` boundary — and back to the whole map after the last.
pub fn next_pair(st: &mut State) {
    if !st.map.shown {
        st.notice = Some(hidden_notice(st));
        return;
    }
    let pairs = class_pairs(st);
    let selected_pair = st.selected_sample().and_then(|s| {
        let a = st.classes.iter().position(|c| c.name == s.label)?;
        let b = st
            .classes
            .iter()
            .position(|c| Some(c.name.as_str()) == s.provenance.minor.as_deref())?;
        (a != b).then(|| (a.min(b) as u16, a.max(b) as u16))
    });
    st.map.pair = match st.map.pair {
        None => selected_pair.or_else(|| pairs.first().copied()),
        Some(p) => {
            let i = pairs.iter().position(|q| *q == p);
            i.and_then(|i| pairs.get(i + 1).copied())
        }
    };
    st.map.refresh_pair_bounds();
    st.notice = Some(match st.map.pair {
        Some((a, b)) => format!(
            "map: {} × {} (b: next pair)",
            st.classes[a as usize].name, st.classes[b as usize].name
        ),
        None => "map: all classes".into(),
    });
}

/// After acknowledged events: keep the map fed while it is shown, and
/// refit when the fit set has doubled.
pub fn after_append(st: &mut State, fx: &mut Vec<Effect>) {
    if st.map.shown {
        request(st, fx, false);
    }
}

/// Ask for vectors when none are being computed: a refit (asked for, no
/// projection yet, or the fit set doubled) or the missing points.
fn request(st: &mut State, fx: &mut Vec<Effect>, explicit: bool) {
    let m = &st.map;
    if m.job_running || m.unavailable.is_some() || m.error.is_some() {
        return;
    }
    let due = match &m.projection {
        None => true,
        Some(_) => embed::refit_due(m.fit_basis, m.fit_count),
    };
    if explicit || due {
        let fits = |s: &&SampleState| Mark::of(s).is_some_and(Mark::fits);
        let mut of = map_samples(&st.project).filter(fits).count();
        let on_all = of < MIN_FIT;
        if on_all {
            of = map_samples(&st.project).count();
        }
        if of == 0 {
            return;
        }
        let texts: Vec<String> = map_samples(&st.project)
            .filter(|s| on_all || fits(s))
            .step_by(embed::fit_step(of))
            .map(|s| s.text().to_string())
            .collect();
        let was = m.projection.as_ref().map(|_| m.fit_basis);
        st.map.fit_basis = m.fit_count;
        st.map.fit_on_all = on_all;
        st.map.generation += 1;
        // The first samples; the others wait in `missing` once the new
        // projection clears the points.
        let mut all = map_samples(&st.project);
        let samples = all
            .by_ref()
            .take(JOB)
            .map(|s| (s.id, version(s), s.text().to_string()))
            .collect();
        let more = all.next().is_some();
        st.map.job_running = true;
        if let Some(was) = was {
            st.notice = Some(if explicit {
                format!("map: refitting the projection on {of} examples")
            } else {
                format!(
                    "map: seeds + accepted grew from {was} to {}: refitting the projection",
                    st.map.fit_count
                )
            });
        }
        fx.push(Effect::Map(MapJob {
            generation: st.map.generation,
            fit: Some(FitTexts { texts, of }),
            projection: None,
            samples,
            more,
        }));
        return;
    }
    if m.missing.is_empty() {
        return;
    }
    let mut samples: Vec<(SampleId, u32, String)> = Vec::new();
    let mut gone = Vec::new();
    let mut more = false;
    for id in &m.missing {
        if samples.len() == JOB {
            more = true;
            break;
        }
        match st.project.sample(*id) {
            Some(s) => samples.push((s.id, version(s), s.text().to_string())),
            None => gone.push(*id),
        }
    }
    for id in gone {
        st.map.missing.remove(&id);
    }
    if samples.is_empty() {
        return;
    }
    let job = MapJob {
        generation: st.map.generation,
        fit: None,
        projection: st.map.projection.clone(),
        samples,
        more,
    };
    st.map.job_running = true;
    fx.push(Effect::Map(job));
}

/// A vector job's answer.
pub fn on_reply(st: &mut State, r: MapReply, fx: &mut Vec<Effect>) {
    let take = st.project.take_relabel;
    match r {
        MapReply::Fitted {
            generation,
            projection,
        } => {
            if generation == st.map.generation {
                if st.map.projection.is_some() {
                    st.map.refits += 1;
                }
                st.map.projection = Some(projection);
                st.map.clear_points();
            }
        }
        MapReply::Points {
            generation,
            points,
            done,
        } => {
            if generation == st.map.generation {
                for (id, v, xy) in points {
                    let Some(s) = st.project.sample(id) else {
                        continue;
                    };
                    // Edited again while the job ran: its new text waits.
                    if version(s) != v {
                        continue;
                    }
                    st.map.set_point(s, &st.classes, take, xy);
                    st.map.missing.remove(&id);
                }
            }
            if done {
                st.map.job_running = false;
                after_append(st, fx);
            }
        }
        MapReply::Unavailable(why) => {
            st.map.job_running = false;
            st.map.unavailable = Some(why);
        }
        MapReply::Failed(e) => {
            st.map.job_running = false;
            st.map.error = Some(e);
        }
    }
    st.dirty = true;
}

/// The sentence for a project without an embedder.
pub fn no_embedder_message(cfg: &EmbeddingsConfig) -> String {
    match cfg.backend {
        EmbeddingBackend::None => format!(
            "No embedder configured ([embeddings] backend = \"none\" in straddle.toml), so there \
             is no map. Set backend = \"local\" and install the local model with `{}`, or \
             backend = \"api\" for an embeddings server.",
            embed::INSTALL_HINT
        ),
        EmbeddingBackend::Local | EmbeddingBackend::Api => format!(
            "No embedder installed, so there is no map. Install the local model with `{}` \
             (then press m twice).",
            embed::INSTALL_HINT
        ),
    }
}

/// Runs map jobs on a blocking thread. Vectors come from the project's
/// vector store (`cache/embeddings/`), a chunk at a time; the embedder is
/// loaded only for texts without one, kept while more jobs of a run
/// follow, and released after the last (its weights are ~70 MB; the
/// store stays open).
pub(crate) struct MapWorker {
    cfg: EmbeddingsConfig,
    cache_dir: PathBuf,
    open: Mutex<Option<Open>>,
}

/// The model's vector store, and its embedder while loaded.
struct Open {
    model_id: String,
    store: VectorStore,
    embedder: Mutex<Option<Arc<dyn Embedder>>>,
}

/// An [`Open`] store's embedder as the store sees it: loaded (again) only
/// when the store has texts without a vector.
struct Lazy<'a> {
    worker: &'a MapWorker,
    open: &'a Open,
}

impl Lazy<'_> {
    fn get(&self) -> Result<Arc<dyn Embedder>, EmbedError> {
        let mut slot = self.open.embedder.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = slot.as_ref() {
            return Ok(e.clone());
        }
        let e = self
            .worker
            .load()?
            .ok_or_else(|| EmbedError::Model("no embedder configured any more".into()))?;
        if e.model_id() != self.open.model_id {
            return Err(EmbedError::Model(format!(
                "the embedder changed from {} to {}",
                self.open.model_id,
                e.model_id()
            )));
        }
        *slot = Some(e.clone());
        Ok(e)
    }
}

impl Embedder for Lazy<'_> {
    fn model_id(&self) -> &str {
        &self.open.model_id
    }

    fn dim(&self) -> Option<usize> {
        let slot = self.open.embedder.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref().and_then(|e| e.dim())
    }

    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> futures_util::future::BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move { self.get()?.embed(texts).await })
    }
}

impl MapWorker {
    pub fn new(cfg: EmbeddingsConfig, cache_dir: PathBuf) -> MapWorker {
        MapWorker {
            cfg,
            cache_dir,
            open: Mutex::new(None),
        }
    }

    fn load(&self) -> Result<Option<Arc<dyn Embedder>>, EmbedError> {
        let cache = crate::llm::ResponseCache::new(&self.cache_dir);
        embed::from_config_with(&self.cfg, Some(cache))
    }

    /// What to tell the map about an embedder error.
    fn failure(&self, what: &str, e: EmbedError) -> MapReply {
        match e {
            EmbedError::MissingWeights(dir) => MapReply::Unavailable(format!(
                "{} (looked in {})",
                no_embedder_message(&self.cfg),
                dir.display()
            )),
            e => MapReply::Failed(format!("{what}: {e}")),
        }
    }

    /// Open the store: of `model_id` when the caller knows the model's id
    /// (the judges' encoder does), without loading the weights; else load
    /// the embedder to learn it.
    fn open(&self, model_id: Option<&str>) -> Result<Open, MapReply> {
        if let Some(id) = model_id
            && self.cfg.backend != EmbeddingBackend::None
        {
            return Ok(Open {
                model_id: id.to_owned(),
                store: VectorStore::open(&self.cache_dir, id),
                embedder: Mutex::new(None),
            });
        }
        match self.load() {
            Ok(Some(e)) => Ok(Open {
                model_id: e.model_id().to_owned(),
                store: VectorStore::open(&self.cache_dir, e.model_id()),
                embedder: Mutex::new(Some(e)),
            }),
            Ok(None) => Err(MapReply::Unavailable(no_embedder_message(&self.cfg))),
            Err(e) => Err(self.failure("embedder", e)),
        }
    }

    /// Run `job`, sending each reply as it is ready (the last one is
    /// `Points { done: true }`, `Unavailable` or `Failed`). `model_id`:
    /// the id of the model `[embeddings]` names, when already known.
    pub fn run(&self, job: MapJob, model_id: Option<&str>, send: &dyn Fn(MapReply)) {
        let mut guard = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            match self.open(model_id) {
                Ok(o) => *guard = Some(o),
                Err(r) => return send(r),
            }
        }
        let Some(open) = guard.as_ref() else {
            return;
        };
        let more = job.more;
        let done = self.project(open, job, send);
        // Idle until the next run: a local model's weights go (loaded
        // again, or shared with a job holding them, when a text has no
        // vector); the store and its index stay.
        if (!more || !done) && self.cfg.backend == EmbeddingBackend::Local {
            *open.embedder.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }

    /// Fit (if asked) and project `job`'s samples; whether it got through.
    fn project(&self, open: &Open, job: MapJob, send: &dyn Fn(MapReply)) -> bool {
        let lazy = Lazy { worker: self, open };
        let vectors = |texts: &[String]| embed::block_on(open.store.embed_rows(&lazy, texts));
        let projection = match (job.fit, job.projection) {
            (Some(fit), _) => {
                let rows = match vectors(&fit.texts) {
                    Ok(r) => r,
                    Err(e) => {
                        send(self.failure("embedding", e));
                        return false;
                    }
                };
                drop(fit.texts);
                let refs: Vec<&[f32]> = rows.iter().collect();
                let Some(p) = Projection::fit_sample(&refs, fit.of) else {
                    send(MapReply::Failed("no vectors to fit the map on".into()));
                    return false;
                };
                let p = Arc::new(p);
                send(MapReply::Fitted {
                    generation: job.generation,
                    projection: p.clone(),
                });
                p
            }
            (None, Some(p)) => p,
            (None, None) => {
                send(MapReply::Failed("no projection to use".into()));
                return false;
            }
        };
        let (ids, texts): (Vec<(SampleId, u32)>, Vec<String>) = job
            .samples
            .into_iter()
            .map(|(id, v, t)| ((id, v), t))
            .unzip();
        let n = ids.len();
        if n == 0 {
            send(MapReply::Points {
                generation: job.generation,
                points: Vec::new(),
                done: true,
            });
            return true;
        }
        for (c, chunk) in texts.chunks(CHUNK).enumerate() {
            let rows = match vectors(chunk) {
                Ok(r) => r,
                Err(e) => {
                    send(self.failure("embedding", e));
                    return false;
                }
            };
            let points = ids[c * CHUNK..]
                .iter()
                .zip(rows.iter())
                .map(|((id, v), row)| (*id, *v, projection.project(row)))
                .collect();
            send(MapReply::Points {
                generation: job.generation,
                points,
                done: (c + 1) * CHUNK >= n,
            });
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cfg: EmbeddingsConfig, job: MapJob) -> Vec<MapReply> {
        let dir = tempfile::tempdir().unwrap();
        let w = MapWorker::new(cfg, dir.path().to_path_buf());
        let out = std::cell::RefCell::new(Vec::new());
        w.run(job, None, &|r| out.borrow_mut().push(r));
        out.into_inner()
    }

    fn job(texts: &[&str]) -> MapJob {
        MapJob {
            generation: 1,
            fit: Some(FitTexts {
                texts: texts.iter().map(|t| t.to_string()).collect(),
                of: texts.len(),
            }),
            projection: None,
            samples: texts
                .iter()
                .enumerate()
                .map(|(i, t)| (i as u64 + 1, 0, t.to_string()))
                .collect(),
            more: false,
        }
    }

    #[test]
    fn without_an_embedder_the_worker_says_how_to_get_one() {
        let none = EmbeddingsConfig {
            backend: EmbeddingBackend::None,
            ..EmbeddingsConfig::default()
        };
        let r = run(none, job(&["a"]));
        let [MapReply::Unavailable(why)] = r.as_slice() else {
            panic!("{r:?}")
        };
        assert!(why.contains("backend = \"none\"") && why.contains(embed::INSTALL_HINT));
        let missing = EmbeddingsConfig {
            model_dir: Some("/nonexistent/straddle-embedder".into()),
            ..EmbeddingsConfig::default()
        };
        let r = run(missing, job(&["a"]));
        let [MapReply::Unavailable(why)] = r.as_slice() else {
            panic!("{r:?}")
        };
        assert!(why.contains(embed::INSTALL_HINT), "{why}");
        assert!(why.contains("/nonexistent/straddle-embedder"), "{why}");
    }

    /// With every vector in the store and the model's id known (from the
    /// judges' encoder) the worker reads them and loads no weights (there
    /// are none here); a text without one needs the embedder, and its
    /// absence says how to install it.
    #[test]
    fn stored_vectors_need_no_weights() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = EmbeddingsConfig {
            model_dir: Some("/nonexistent/straddle-embedder".into()),
            ..EmbeddingsConfig::default()
        };
        let texts: Vec<String> = (0..600).map(|i| format!("text {i}")).collect();
        let vector = |i: usize| {
            let t = i as f32 / 600.0;
            vec![10.0 * t, (i % 7) as f32 * 0.1, 0.01 * (i % 3) as f32]
        };
        let store = VectorStore::open(dir.path(), "local:test");
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let vectors: Vec<Vec<f32>> = (0..600).map(vector).collect();
        store.insert(&refs, &vectors).unwrap();
        let w = MapWorker::new(cfg, dir.path().to_path_buf());
        let run = |job: MapJob| {
            let out = std::cell::RefCell::new(Vec::new());
            w.run(job, Some("local:test"), &|r| out.borrow_mut().push(r));
            out.into_inner()
        };
        let fit: Vec<String> = texts.iter().step_by(2).cloned().collect();
        let r = run(MapJob {
            generation: 3,
            fit: Some(FitTexts {
                texts: fit,
                of: 300,
            }),
            projection: None,
            samples: (0..600).map(|i| (i as u64, 0, texts[i].clone())).collect(),
            more: true,
        });
        let Some(MapReply::Fitted { projection, .. }) = r.first() else {
            panic!("{r:?}")
        };
        let even: Vec<&[f32]> = vectors.iter().step_by(2).map(Vec::as_slice).collect();
        assert_eq!(**projection, Projection::fit(&even).unwrap());
        // The points a chunk at a time, every one where the projection
        // puts its stored vector.
        let mut seen = 0;
        for (k, reply) in r[1..].iter().enumerate() {
            let MapReply::Points {
                generation,
                points,
                done,
            } = reply
            else {
                panic!("{reply:?}")
            };
            assert_eq!(*generation, 3);
            assert!(points.len() <= CHUNK);
            assert_eq!(*done, k == r.len() - 2);
            for (id, _, xy) in points {
                assert_eq!(*xy, projection.project(&vector(*id as usize)));
            }
            seen += points.len();
        }
        assert_eq!(seen, 600);
        assert_eq!(r.len(), 1 + 600usize.div_ceil(CHUNK));
        // A text with no stored vector: the embedder is needed, and missing.
        let r = run(MapJob {
            generation: 3,
            fit: None,
            projection: Some(projection.clone()),
            samples: vec![(1, 0, "text 1".into()), (9, 1, "an edited text".into())],
            more: false,
        });
        let [MapReply::Unavailable(why)] = r.as_slice() else {
            panic!("{r:?}")
        };
        assert!(why.contains(embed::INSTALL_HINT), "{why}");
    }

    /// With the real local model: a refit job fits, then projects every
    /// sample; related sentences land nearer each other than unrelated ones.
    #[test]
    #[ignore = "needs the embedder's weights (scripts/embedder.sh install)"]
    fn the_worker_projects_real_sentence_vectors() {
        let texts = [
            "Where is the Eiffel Tower?",
            "In which city is the Louvre?",
            "Who wrote War and Peace?",
            "Who painted the Mona Lisa?",
            "How many legs does a spider have?",
            "How many moons does Mars have?",
        ];
        let r = run(EmbeddingsConfig::default(), job(&texts));
        let [
            MapReply::Fitted { projection, .. },
            MapReply::Points { points, done, .. },
        ] = r.as_slice()
        else {
            panic!("{r:?}")
        };
        assert!(*done);
        assert_eq!(projection.fitted_on, 6);
        assert_eq!(points.len(), 6);
        let d = |a: usize, b: usize| {
            let (p, q) = (points[a].2, points[b].2);
            ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt()
        };
        let near = d(0, 1) + d(2, 3) + d(4, 5);
        let far = d(0, 2) + d(2, 4) + d(0, 4);
        assert!(near < far, "pairs {near} vs across {far}");
    }

    /// With the real local model: the weights stay loaded while more jobs
    /// of a run follow and go after the last one; the next run reads the
    /// stored vectors without them.
    #[test]
    #[ignore = "needs the embedder's weights (scripts/embedder.sh install)"]
    fn the_worker_releases_its_weights_after_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let w = MapWorker::new(EmbeddingsConfig::default(), dir.path().to_path_buf());
        let loaded = || {
            let open = w.open.lock().unwrap();
            let open = open.as_ref().expect("open");
            open.embedder.lock().unwrap().is_some()
        };
        let texts = [
            "Where is the Eiffel Tower?",
            "Who wrote War and Peace?",
            "How many moons does Mars have?",
        ];
        let mut first = job(&texts);
        first.more = true;
        let out = std::cell::RefCell::new(Vec::new());
        w.run(first, None, &|r| out.borrow_mut().push(r));
        assert!(loaded(), "more jobs follow");
        let projection = match out.borrow().first() {
            Some(MapReply::Fitted { projection, .. }) => projection.clone(),
            r => panic!("{r:?}"),
        };
        let again = MapJob {
            generation: 1,
            fit: None,
            projection: Some(projection.clone()),
            samples: vec![(9, 0, texts[1].to_string())],
            more: false,
        };
        w.run(again.clone(), None, &|r| out.borrow_mut().push(r));
        assert!(!loaded(), "released after the last job");
        w.run(again, None, &|r| out.borrow_mut().push(r));
        assert!(!loaded(), "stored vectors need no weights");
        let out = out.into_inner();
        let [
            ..,
            MapReply::Points { points: a, .. },
            MapReply::Points { points: b, .. },
        ] = out.as_slice()
        else {
            panic!("{out:?}")
        };
        assert_eq!(a, b, "the same point from the stored vector");
    }
}
