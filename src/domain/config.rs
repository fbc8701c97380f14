//! The project configuration (`straddle.toml`) as plain data.
//!
//! Reading and writing the file lives in `store`; this module only defines
//! the shape and the defaults, so every layer agrees on them.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::Class;

/// The whole `straddle.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectConfig {
    pub task: TaskConfig,
    #[serde(default)]
    pub classes: Vec<Class>,
    #[serde(default)]
    pub backend: BackendConfig,
    #[serde(default)]
    pub generation: GenerationSettings,
    #[serde(default)]
    pub relabel: RelabelSettings,
    #[serde(default)]
    pub embeddings: EmbeddingsConfig,
    /// `[attributes.NAME]`: attribute dimensions for the `attributes`
    /// strategy (MSP), by name.
    #[serde(default)]
    pub attributes: BTreeMap<String, AttributeDim>,
    #[serde(default)]
    pub denoise: DenoiseConfig,
    #[serde(default)]
    pub judge: JudgeConfig,
    /// `[strategy.NAME]`: settings of one strategy.
    #[serde(default)]
    pub strategy: StrategyConfig,
}

/// `[strategy.*]`: settings that belong to one strategy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StrategyConfig {
    pub mix: MixConfig,
}

/// `[strategy.mix]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MixConfig {
    /// Which seeds a mix prompt shows as each class's examples.
    pub exemplars: MixExemplars,
}

/// How a `mix` prompt picks each class's examples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MixExemplars {
    /// Seeds near the other class of the pair (the intended class's seeds
    /// nearest the minor class's centroid, the other classes' seeds
    /// nearest the intended class's), drawn from the nearer half; random
    /// until the seeds' vectors are known.
    #[default]
    Boundary,
    /// Seeds drawn at random (PromptMix's reference code).
    Random,
}

impl MixExemplars {
    pub fn as_str(self) -> &'static str {
        match self {
            MixExemplars::Boundary => "boundary",
            MixExemplars::Random => "random",
        }
    }
}

/// One attribute dimension (`[attributes.tone]`): the values a text can
/// take on it, each with a one-line description the prompt shows.
///
/// ```toml
/// [attributes.tone]
/// description = "how the text sounds"
/// values.formal = "polite, complete sentences"
/// values.casual = "relaxed, everyday wording"
/// classes = ["HUM", "LOC"]   # optional: only for these classes
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttributeDim {
    /// What the dimension is about (shown in the prompt when set).
    #[serde(default)]
    pub description: String,
    /// Value name → one-line description.
    #[serde(default)]
    pub values: BTreeMap<String, String>,
    /// The classes this dimension applies to; empty = every class.
    #[serde(default)]
    pub classes: Vec<String>,
}

impl AttributeDim {
    /// Whether the dimension applies to texts of `class`.
    pub fn applies_to(&self, class: &str) -> bool {
        self.classes.is_empty() || self.classes.iter().any(|c| c == class)
    }
}

/// Which judge decides for bulk rules (`[judge] use`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JudgeUse {
    /// The best judge measured on the held-out examples (`straddle
    /// judge`), the simpler one unless the better one is clearly better.
    #[default]
    Auto,
    /// The LLM relabeler.
    Relabel,
    /// The small embedding classifier trained on seeds + accepted.
    Small,
    /// Nearest-neighbour vote in embedding space.
    Knn,
    /// The judges combined, weighted by their measured accuracy.
    Ensemble,
}

impl JudgeUse {
    pub fn as_str(self) -> &'static str {
        match self {
            JudgeUse::Auto => "auto",
            JudgeUse::Relabel => "relabel",
            JudgeUse::Small => "small",
            JudgeUse::Knn => "knn",
            JudgeUse::Ensemble => "ensemble",
        }
    }
}

/// `[judge]`: which judge bulk rules, auto-accept and the review use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct JudgeConfig {
    /// `"auto"` (the best measured) or one judge pinned.
    #[serde(rename = "use")]
    pub use_: JudgeUse,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskConfig {
    /// Short name of the task, e.g. "trec6".
    pub name: String,
    /// One or two sentences that tell the LLM what the texts are.
    #[serde(default)]
    pub description: String,
}

/// Which sentence-embedding backend `[embeddings]` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingBackend {
    /// In-process all-MiniLM-L6-v2 (weights installed by `scripts/embedder.sh install`).
    #[default]
    Local,
    /// Any OpenAI-compatible `/v1/embeddings` server.
    Api,
    /// No embeddings: the features that need them are off.
    None,
}

/// Which local embedding model `[embeddings] local_model` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocalModel {
    /// all-MiniLM-L6-v2 itself.
    #[default]
    Minilm,
    /// A static token table distilled from it (model2vec's method).
    Static,
}

/// Arithmetic of the local transformer, `[embeddings] precision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingPrecision {
    /// bf16 where the CPU has AVX512_BF16, else f32.
    #[default]
    Auto,
    /// f32 throughout (the reference numbers).
    F32,
    /// bf16 products with f32 sums (f32 on CPUs without AVX512_BF16).
    Bf16,
}

/// `[embeddings]`: sentence embeddings for denoising, nearest classes and
/// the embedding classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EmbeddingsConfig {
    pub backend: EmbeddingBackend,
    /// `local`: the model folder (`config.json`, `model.safetensors`,
    /// `vocab.txt` or `tokenizer.json`). Unset: `$STRADDLE_EMBEDDER_DIR`, else
    /// `~/.cache/straddle/embedder/all-MiniLM-L6-v2`, where
    /// `scripts/embedder.sh install` puts it.
    pub model_dir: Option<String>,
    /// `local`: `"minilm"` (the transformer: best quality, about 300–600
    /// texts per CPU-second) or `"static"` (a table distilled from it once:
    /// 20,000+ texts/s, noticeably weaker on short, informal texts).
    pub local_model: LocalModel,
    /// `local` `"minilm"`: `"auto"` (bf16 where the CPU has AVX512_BF16,
    /// about twice as fast; vectors within cosine 0.999 of f32), `"f32"` or
    /// `"bf16"`. Vectors of the two precisions are cached apart.
    pub precision: EmbeddingPrecision,
    /// `api`: base URL including `/v1`.
    pub base_url: String,
    /// `api`: the embedding model's name.
    pub model: String,
    /// `api`: name of the environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// Texts per request (`api`) or per forward pass (`local`).
    pub batch_size: usize,
    /// `api`: seconds per request.
    pub timeout_s: f64,
    /// `api`: retries of a request that failed with 429, 5xx, a timeout or
    /// a dropped connection.
    pub max_retries: u32,
    /// `api`: most requests in flight (the engine's limit, found below
    /// this when `adaptive`).
    pub max_concurrency: usize,
    /// `api`: adapt the requests in flight to the server, as for chat.
    pub adaptive: bool,
    /// `api`: the server's request budget per minute, if it has one.
    pub requests_per_minute: Option<u32>,
    /// `api`: the server's token budget per minute, if it has one.
    pub tokens_per_minute: Option<u32>,
    /// `api`: price per 1M input tokens (for `straddle stats`' cost).
    pub price_input_per_m: Option<f64>,
}

impl EmbeddingsConfig {
    /// The `api` server as the engine runs it: `[embeddings]`' URL, model,
    /// key, limits and price, JSON (not streamed) requests.
    pub fn backend(&self) -> BackendConfig {
        BackendConfig {
            base_url: self.base_url.clone(),
            model: self.model.clone(),
            api_key_env: self.api_key_env.clone(),
            max_concurrency: self.max_concurrency.max(1),
            requests_per_minute: self.requests_per_minute,
            tokens_per_minute: self.tokens_per_minute,
            timeout_s: self.timeout_s,
            max_retries: self.max_retries,
            price_input_per_m: self.price_input_per_m,
            price_output_per_m: None,
            stream: false,
            adaptive: self.adaptive,
            ..BackendConfig::default()
        }
    }
}

impl Default for EmbeddingsConfig {
    fn default() -> Self {
        EmbeddingsConfig {
            backend: EmbeddingBackend::Local,
            model_dir: None,
            local_model: LocalModel::Minilm,
            precision: EmbeddingPrecision::Auto,
            base_url: "http://127.0.0.1:8765/v1".into(),
            model: "all-MiniLM-L6-v2".into(),
            api_key_env: None,
            batch_size: 64,
            timeout_s: 60.0,
            max_retries: 4,
            max_concurrency: 4,
            adaptive: true,
            requests_per_minute: None,
            tokens_per_minute: None,
            price_input_per_m: None,
        }
    }
}

/// What the denoiser does with a generated sample it finds noisy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DenoiseMode {
    /// Reject it (an automatic, undoable decision by `auto:denoise`, with
    /// the reason).
    #[default]
    Reject,
    /// Only record the score and reason; review shows it (`N`).
    Flag,
    /// No denoising.
    Off,
}

impl DenoiseMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DenoiseMode::Reject => "reject",
            DenoiseMode::Flag => "flag",
            DenoiseMode::Off => "off",
        }
    }
}

/// `[denoise]`: judge every generated sample by sentence embeddings
/// (MSP's rule, see `embed::denoise`). Needs `[embeddings]`; with
/// `backend = "none"` it is off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DenoiseConfig {
    pub mode: DenoiseMode,
    /// Noise score (0..1) above which a sample is noise: `1 − cosine to
    /// the nearest seed of its class`, averaged half and half with its
    /// attributes' over-representation when it has attributes.
    pub threshold: f64,
    /// Cosine to a sentence of the prompt's own instructions at or above
    /// which a sample "repeats the instructions" (when it is also closer
    /// to them than to every seed).
    pub echo_similarity: f64,
    /// Cosine to an earlier example at or above which a new one is a
    /// near-copy (besides MinHash's character check); 1 turns it off.
    pub near_duplicate: f64,
}

impl Default for DenoiseConfig {
    /// Calibrated with all-MiniLM-L6-v2 on the recorded SmolLM2 replies
    /// (`tests/embed_denoise.rs`).
    fn default() -> Self {
        DenoiseConfig {
            mode: DenoiseMode::Reject,
            threshold: 0.85,
            echo_similarity: 0.6,
            near_duplicate: 0.97,
        }
    }
}

impl DenoiseConfig {
    /// Denoising turned off.
    pub fn off() -> DenoiseConfig {
        DenoiseConfig {
            mode: DenoiseMode::Off,
            ..Default::default()
        }
    }
}

/// The cost of `prompt` + `completion` tokens at prices per million
/// tokens (`[backend] price_input_per_m` / `price_output_per_m`; an unset
/// price costs nothing).
pub fn token_cost(
    price_input_per_m: Option<f64>,
    price_output_per_m: Option<f64>,
    prompt: u64,
    completion: u64,
) -> f64 {
    price_input_per_m.unwrap_or(0.0) * prompt as f64 / 1e6
        + price_output_per_m.unwrap_or(0.0) * completion as f64 / 1e6
}

/// `[backend]`: an OpenAI-compatible chat-completions server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BackendConfig {
    /// Base URL including `/v1`, e.g. `http://127.0.0.1:8765/v1`.
    pub base_url: String,
    pub model: String,
    /// Name of the environment variable that holds the API key. The key
    /// itself is never written anywhere.
    pub api_key_env: Option<String>,
    pub max_concurrency: usize,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
    pub timeout_s: f64,
    pub max_retries: u32,
    /// Price per 1M input tokens, in the user's currency (USD by default).
    pub price_input_per_m: Option<f64>,
    /// Price per 1M output tokens.
    pub price_output_per_m: Option<f64>,
    /// Extra HTTP headers sent with every request.
    pub headers: BTreeMap<String, String>,
    /// Extra fields merged into every request body (`seed`, `top_p`, …).
    pub extra_body: serde_json::Map<String, serde_json::Value>,
    /// Use streaming (SSE) requests.
    pub stream: bool,
    /// Find the server's real parallelism below `max_concurrency`
    /// (start at one request, grow while latency stays flat; see
    /// `engine`); `false`: always `max_concurrency`.
    pub adaptive: bool,
    /// Which Batch API the server speaks (`straddle batch submit`).
    pub batch_api: BatchApi,
}

/// The dialect of a provider's Batch API. Both read and write the OpenAI
/// batch output line format; they differ in the input line, the upload and
/// the create reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchApi {
    /// OpenAI's: input lines `{custom_id, method, url, body}`, upload to
    /// `/files` with `purpose=batch`, `/batches` answers the batch. Also
    /// Groq and OpenAI-compatible gateways that serve the Batch API.
    #[default]
    #[serde(rename = "openai")]
    OpenAi,
    /// Together AI's: input lines `{custom_id, body}`, upload to
    /// `/files/upload` with `purpose=batch-api` and `file_name`, create
    /// answers `{"job": batch}`, statuses in upper case.
    Together,
}

impl BatchApi {
    pub fn name(self) -> &'static str {
        match self {
            BatchApi::OpenAi => "openai",
            BatchApi::Together => "together",
        }
    }
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            base_url: "http://127.0.0.1:8765/v1".into(),
            model: "smollm2".into(),
            api_key_env: None,
            max_concurrency: 8,
            requests_per_minute: None,
            tokens_per_minute: None,
            timeout_s: 120.0,
            max_retries: 4,
            price_input_per_m: None,
            price_output_per_m: None,
            headers: BTreeMap::new(),
            extra_body: serde_json::Map::new(),
            stream: true,
            adaptive: true,
            batch_api: BatchApi::OpenAi,
        }
    }
}

/// Generation strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Class-boundary mixing (PromptMix).
    #[default]
    Mix,
    /// One class per request: the baseline.
    Plain,
    /// S3 error extrapolation: examples like the ones the small model gets wrong.
    Extrapolate,
    /// Multi-attribute generation (MSP): each request asks for texts of one
    /// class expressing 1–3 attribute values, rare values more often.
    Attributes,
}

impl Strategy {
    /// Every strategy, in the order `--help` lists them.
    pub const ALL: [Strategy; 4] = [
        Strategy::Mix,
        Strategy::Plain,
        Strategy::Attributes,
        Strategy::Extrapolate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Mix => "mix",
            Strategy::Plain => "plain",
            Strategy::Extrapolate => "extrapolate",
            Strategy::Attributes => "attributes",
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mix" => Ok(Strategy::Mix),
            "plain" => Ok(Strategy::Plain),
            "extrapolate" => Ok(Strategy::Extrapolate),
            "attributes" => Ok(Strategy::Attributes),
            other => Err(format!(
                "unknown strategy '{other}' (expected mix, plain, attributes or extrapolate)"
            )),
        }
    }
}

/// `[generation]`: what the next request looks like. Changeable while
/// generation runs (recorded as `settings_changed` events).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerationSettings {
    pub strategy: Strategy,
    /// Examples asked for per request.
    pub per_request: usize,
    /// Classes shown per mix prompt (`t`).
    pub classes_per_prompt: usize,
    /// Seed examples shown per class (`k`); 0 = zero-shot.
    pub shots: usize,
    /// α is drawn uniformly from this range per class, unless `alpha` is set.
    pub alpha_range: (f64, f64),
    /// A fixed α; overrides `alpha_range`.
    pub alpha: Option<f64>,
    pub temperature: f64,
    pub max_tokens: u32,
    /// How many generated examples the run aims for.
    pub target_count: usize,
    /// Seed for all sampling (class picks, α, splits).
    pub seed: u64,
    /// Near-duplicate threshold (Jaccard over word shingles).
    pub dedup_threshold: f64,
    /// Condition requests on a sampled rationale (S3 seed synthesis).
    pub use_rationales: bool,
}

impl Default for GenerationSettings {
    fn default() -> Self {
        GenerationSettings {
            strategy: Strategy::Mix,
            per_request: 5,
            classes_per_prompt: 4,
            shots: 2,
            alpha_range: (0.5, 1.0),
            alpha: None,
            temperature: 1.0,
            max_tokens: 512,
            target_count: 200,
            seed: 0,
            dedup_threshold: 0.8,
            use_rationales: false,
        }
    }
}

/// Which classes the relabel prompt shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RelabelContext {
    /// All classes when there are at most `all_max_classes`, else the picked ones.
    #[default]
    Auto,
    All,
    Picked,
}

/// `[relabel]`: the LLM as a few-shot classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RelabelSettings {
    pub enabled: bool,
    pub context: RelabelContext,
    pub all_max_classes: usize,
    /// Seed examples per class in the relabel prompt.
    pub shots: usize,
    /// Self-consistency votes when the server gives no logprobs.
    pub votes: usize,
    pub vote_temperature: f64,
    /// On disagreement, take the relabel's label (the paper's choice); the
    /// intended label is kept for review either way.
    pub take_relabel: bool,
    /// Try logprobs for per-class confidence.
    pub use_logprobs: bool,
    /// Try JSON-schema constrained output.
    pub use_json_schema: bool,
}

impl Default for RelabelSettings {
    fn default() -> Self {
        RelabelSettings {
            enabled: true,
            context: RelabelContext::Auto,
            all_max_classes: 12,
            shots: 2,
            votes: 3,
            vote_temperature: 0.7,
            take_relabel: true,
            use_logprobs: true,
            use_json_schema: true,
        }
    }
}
