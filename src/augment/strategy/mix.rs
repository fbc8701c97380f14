//! `mix`: class-boundary generation (PromptMix). Shows `classes_per_prompt`
//! classes with descriptions and examples and asks for texts that are α
//! one class and 1-α another (`prompts/mix.j2`).

use super::{Ask, PlanContext, Strategy, class_prompt};
use crate::augment::generator::PlannedRequest;
use crate::domain;

/// Template file name.
pub const TEMPLATE: &str = "mix.j2";

pub struct Mix;

impl Strategy for Mix {
    fn kind(&self) -> domain::Strategy {
        domain::Strategy::Mix
    }
    fn plan(&self, cx: &PlanContext<'_>, ask: &Ask<'_>) -> anyhow::Result<PlannedRequest> {
        class_prompt(cx, ask.n, self.kind(), TEMPLATE)
    }
}
