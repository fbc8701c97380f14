//! Projects for tests, built in process: the builders of
//! `straddle::testing` (config, samples, decisions, folded state) plus
//! creating a project folder from them.

use std::path::Path;

use straddle::domain::{NewSample, ProjectConfig};
use straddle::store::Project;
#[allow(unused_imports)] // not every test uses every builder
pub use straddle::testing::*;

/// Create a project folder at `dir` with `config` and `samples`.
pub fn create(dir: &Path, config: ProjectConfig, samples: Vec<NewSample>) -> Project {
    Project::create(dir, config, samples).expect("create the test project")
}
