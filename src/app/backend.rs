//! Backend overrides from the command line, shared by every front end.

use clap::Args;

/// Flags shared by every command that calls the LLM; they override
/// `[backend]` in `straddle.toml` for this run.
#[derive(Debug, Clone, Default, Args)]
pub struct BackendFlags {
    /// Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8765/v1
    #[arg(long)]
    pub base_url: Option<String>,
    /// Model name.
    #[arg(long)]
    pub model: Option<String>,
    /// Maximum requests in flight.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Neither read nor write the response cache: every request goes to the
    /// server and nothing is stored.
    #[arg(long)]
    pub no_cache: bool,
}

impl BackendFlags {
    /// Overlay the flags that were given on the project's `[backend]`.
    pub fn apply(&self, backend: &mut crate::domain::BackendConfig) {
        if let Some(url) = &self.base_url {
            backend.base_url = url.clone();
        }
        if let Some(model) = &self.model {
            backend.model = model.clone();
        }
        if let Some(n) = self.concurrency {
            backend.max_concurrency = n.max(1);
        }
    }

    /// The project's backend with these overrides: the one every request
    /// window and engine of a run is sized from.
    pub fn effective(
        &self,
        backend: &crate::domain::BackendConfig,
    ) -> crate::domain::BackendConfig {
        let mut b = backend.clone();
        self.apply(&mut b);
        b
    }

    /// The response cache in `cache_dir`, switched off under `--no-cache`.
    pub fn cache(&self, cache_dir: impl Into<std::path::PathBuf>) -> crate::llm::ResponseCache {
        let cache = crate::llm::ResponseCache::new(cache_dir);
        if self.no_cache {
            cache.disabled()
        } else {
            cache
        }
    }
}
