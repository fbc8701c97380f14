//! `plain`: one class per request, the baseline (`prompts/plain.j2`).

use super::{Ask, PlanContext, Strategy, class_prompt};
use crate::augment::generator::PlannedRequest;
use crate::domain;

/// Template file name.
pub const TEMPLATE: &str = "plain.j2";

pub struct Plain;

impl Strategy for Plain {
    fn kind(&self) -> domain::Strategy {
        domain::Strategy::Plain
    }
    fn plan(&self, cx: &PlanContext<'_>, ask: &Ask<'_>) -> anyhow::Result<PlannedRequest> {
        class_prompt(cx, ask.n, self.kind(), TEMPLATE)
    }
}
