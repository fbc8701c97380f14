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
//!   chunk of points at a time.
//! * The projection is fitted once (on seeds + accepted examples) and then
//!   kept: a new sample is projected with the same axes and nothing already
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

/// Vectors asked of the runtime ([`Effect::Map`]).
#[derive(Debug, Clone, PartialEq)]
pub struct MapJob {
    /// The projection generation the points are for.
    pub generation: u64,
    /// Fit a new projection on these texts first (seeds + accepted).
    pub fit: Option<Vec<String>>,
    /// The projection to use when not fitting.
    pub projection: Option<Arc<Projection>>,
    /// (sample, edits so far, text) to project.
    pub samples: Vec<(SampleId, u32, String)>,
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
        let mut fit: Vec<String> = map_samples(&st.project)
            .filter(|s| Mark::of(s).is_some_and(Mark::fits))
            .map(|s| s.text().to_string())
            .collect();
        let on_all = fit.len() < MIN_FIT;
        if on_all {
            fit = map_samples(&st.project)
                .map(|s| s.text().to_string())
                .collect();
        }
        if fit.is_empty() {
            return;
        }
        let was = m.projection.as_ref().map(|_| m.fit_basis);
        st.map.fit_basis = m.fit_count;
        st.map.fit_on_all = on_all;
        st.map.generation += 1;
        let samples = map_samples(&st.project)
            .map(|s| (s.id, version(s), s.text().to_string()))
            .collect();
        st.map.job_running = true;
        if let Some(was) = was {
            st.notice = Some(if explicit {
                format!("map: refitting the projection on {} examples", fit.len())
            } else {
                format!(
                    "map: seeds + accepted grew from {was} to {}: refitting the projection",
                    st.map.fit_count
                )
            });
        }
        fx.push(Effect::Map(MapJob {
            generation: st.map.generation,
            fit: Some(fit),
            projection: None,
            samples,
        }));
        return;
    }
    if m.missing.is_empty() {
        return;
    }
    let samples: Vec<(SampleId, u32, String)> = m
        .missing
        .iter()
        .filter_map(|id| st.project.sample(*id))
        .map(|s| (s.id, version(s), s.text().to_string()))
        .collect();
    if samples.is_empty() {
        st.map.missing.clear();
        return;
    }
    let job = MapJob {
        generation: m.generation,
        fit: None,
        projection: m.projection.clone(),
        samples,
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

/// Runs map jobs on a blocking thread: loads the embedder once (the local
/// model takes about a second) and keeps the vector store open.
pub(crate) struct MapWorker {
    cfg: EmbeddingsConfig,
    cache_dir: PathBuf,
    loaded: Mutex<Option<(Arc<dyn Embedder>, VectorStore)>>,
}

impl MapWorker {
    pub fn new(cfg: EmbeddingsConfig, cache_dir: PathBuf) -> MapWorker {
        MapWorker {
            cfg,
            cache_dir,
            loaded: Mutex::new(None),
        }
    }

    /// Run `job`, sending each reply as it is ready (the last one is
    /// `Points { done: true }`, `Unavailable` or `Failed`).
    pub fn run(&self, job: MapJob, send: &dyn Fn(MapReply)) {
        let mut guard = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            let cache = crate::llm::ResponseCache::new(&self.cache_dir);
            match embed::from_config_with(&self.cfg, Some(cache)) {
                Ok(Some(e)) => {
                    let store = VectorStore::open(&self.cache_dir, e.model_id());
                    *guard = Some((e, store));
                }
                Ok(None) => return send(MapReply::Unavailable(no_embedder_message(&self.cfg))),
                Err(EmbedError::MissingWeights(dir)) => {
                    return send(MapReply::Unavailable(format!(
                        "{} (looked in {})",
                        no_embedder_message(&self.cfg),
                        dir.display()
                    )));
                }
                Err(e) => return send(MapReply::Failed(format!("embedder: {e}"))),
            }
        }
        let Some((embedder, store)) = guard.as_mut() else {
            return;
        };
        let vectors = |texts: &[String]| embed::block_on(store.embed(&**embedder, texts));
        let projection = match (job.fit, job.projection) {
            (Some(fit), _) => {
                let rows = match vectors(&fit) {
                    Ok(r) => r,
                    Err(e) => return send(MapReply::Failed(format!("embedding: {e}"))),
                };
                let refs: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
                let Some(p) = Projection::fit(&refs) else {
                    return send(MapReply::Failed("no vectors to fit the map on".into()));
                };
                let p = Arc::new(p);
                send(MapReply::Fitted {
                    generation: job.generation,
                    projection: p.clone(),
                });
                p
            }
            (None, Some(p)) => p,
            (None, None) => return send(MapReply::Failed("no projection to use".into())),
        };
        let n = job.samples.len();
        if n == 0 {
            return send(MapReply::Points {
                generation: job.generation,
                points: Vec::new(),
                done: true,
            });
        }
        for (c, chunk) in job.samples.chunks(CHUNK).enumerate() {
            let texts: Vec<String> = chunk.iter().map(|(_, _, t)| t.clone()).collect();
            let rows = match vectors(&texts) {
                Ok(r) => r,
                Err(e) => return send(MapReply::Failed(format!("embedding: {e}"))),
            };
            let points = chunk
                .iter()
                .zip(&rows)
                .map(|((id, v, _), row)| (*id, *v, projection.project(row)))
                .collect();
            send(MapReply::Points {
                generation: job.generation,
                points,
                done: (c + 1) * CHUNK >= n,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cfg: EmbeddingsConfig, job: MapJob) -> Vec<MapReply> {
        let dir = tempfile::tempdir().unwrap();
        let w = MapWorker::new(cfg, dir.path().to_path_buf());
        let out = std::cell::RefCell::new(Vec::new());
        w.run(job, &|r| out.borrow_mut().push(r));
        out.into_inner()
    }

    fn job(texts: &[&str]) -> MapJob {
        MapJob {
            generation: 1,
            fit: Some(texts.iter().map(|t| t.to_string()).collect()),
            projection: None,
            samples: texts
                .iter()
                .enumerate()
                .map(|(i, t)| (i as u64 + 1, 0, t.to_string()))
                .collect(),
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
}
