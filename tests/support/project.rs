//! Projects for tests, built in process: the builders of
//! `straddle::testing` (config, samples, decisions, folded state) plus
//! creating a project folder from them.

use std::path::Path;

#[allow(unused_imports)] // not every test uses every builder
pub use straddle::domain::testing::*;
use straddle::domain::{NewSample, ProjectConfig};
use straddle::store::Project;

/// Create a project folder at `dir` with `config` and `samples`.
pub fn create(dir: &Path, config: ProjectConfig, samples: Vec<NewSample>) -> Project {
    Project::create(dir, config, samples).expect("create the test project")
}
