//! The export form's fields: one list that `update` (which field a key
//! changes, and how) and the view (labels and values) both read.

use std::path::PathBuf;

use crate::app::export::ExportFormat;

use super::state::{ExportForm, ExportRequest};

/// One field of the export form, in screen order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportField {
    Format,
    Out,
    IncludeSeeds,
    ValFraction,
    Seed,
    Provenance,
    /// Refuse when the data gate says the accepted data makes the
    /// held-out score worse (`export --strict`).
    Strict,
}

impl ExportField {
    pub const ALL: [ExportField; 7] = [
        ExportField::Format,
        ExportField::Out,
        ExportField::IncludeSeeds,
        ExportField::ValFraction,
        ExportField::Seed,
        ExportField::Provenance,
        ExportField::Strict,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ExportField::Format => "format",
            ExportField::Out => "out",
            ExportField::IncludeSeeds => "include seeds",
            ExportField::ValFraction => "validation share",
            ExportField::Seed => "split seed",
            ExportField::Provenance => "provenance fields",
            ExportField::Strict => "strict data gate",
        }
    }

    /// The value as the form shows it.
    pub fn value(self, form: &ExportForm) -> String {
        let r = &form.req;
        let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
        match self {
            ExportField::Format => format_name(r.format).into(),
            ExportField::Out => r.out.display().to_string(),
            ExportField::IncludeSeeds => yes(r.include_seeds),
            ExportField::ValFraction => format!("{:.2}", r.val_fraction),
            ExportField::Seed => r.seed.to_string(),
            ExportField::Provenance => yes(r.with_provenance),
            ExportField::Strict => yes(form.strict),
        }
    }

    /// A field typed into: printable keys and backspace edit it before
    /// the form's bindings see them.
    pub fn takes_text(self) -> bool {
        self == ExportField::Out
    }

    /// Change the value one step up (`up`) or down (the ←→ keys).
    pub fn step(self, form: &mut ExportForm, up: bool) {
        if self == ExportField::Strict {
            form.strict = !form.strict;
            return;
        }
        let r = &mut form.req;
        let delta: i64 = if up { 1 } else { -1 };
        match self {
            ExportField::Format => {
                let was_default = r.out == default_out(r.format);
                let provenance_default = r.with_provenance == r.format.default_provenance();
                const F: [ExportFormat; 3] =
                    [ExportFormat::Jsonl, ExportFormat::Csv, ExportFormat::Hf];
                let i = F.iter().position(|f| *f == r.format).unwrap_or(0) as i64;
                r.format = F[(i + delta).rem_euclid(F.len() as i64) as usize];
                if was_default {
                    r.out = default_out(r.format);
                }
                // Provenance follows the format's usual choice unless it
                // was set by hand; the form shows the value that applies.
                if provenance_default {
                    r.with_provenance = r.format.default_provenance();
                }
            }
            ExportField::Out => {}
            ExportField::IncludeSeeds => r.include_seeds = !r.include_seeds,
            ExportField::ValFraction => {
                let v = (r.val_fraction + 0.05 * delta as f64).clamp(0.0, 0.9);
                r.val_fraction = (v * 100.0).round() / 100.0;
            }
            ExportField::Seed => r.seed = r.seed.saturating_add_signed(delta),
            ExportField::Provenance => r.with_provenance = !r.with_provenance,
            ExportField::Strict => {}
        }
    }

    /// Type `c` into a text field (`None` = backspace).
    pub fn type_char(self, r: &mut ExportRequest, c: Option<char>) {
        if self != ExportField::Out {
            return;
        }
        let mut s = r.out.to_string_lossy().into_owned();
        match c {
            Some(c) => s.push(c),
            None => {
                s.pop();
            }
        }
        r.out = PathBuf::from(s);
    }
}

impl ExportForm {
    pub const FIELDS: usize = ExportField::ALL.len();

    /// The form as `E` opens it.
    pub fn new() -> ExportForm {
        ExportForm {
            field: 0,
            req: ExportRequest {
                format: ExportFormat::Jsonl,
                out: default_out(ExportFormat::Jsonl),
                include_seeds: false,
                val_fraction: 0.1,
                seed: 0,
                with_provenance: ExportFormat::Jsonl.default_provenance(),
            },
            strict: false,
            gate: GateState::Checking,
        }
    }

    /// Why Enter does not export now (`None`: it may): with `strict`, a
    /// gate that says the accepted data makes the score worse (the same
    /// rule as `export --strict`), or one not yet known.
    pub fn refusal(&self) -> Option<String> {
        if !self.strict {
            return None;
        }
        match &self.gate {
            GateState::Checking => {
                Some("strict: the data gate is still checking; wait for its result".into())
            }
            GateState::Failed(e) => Some(format!("strict: the data gate could not run: {e}")),
            GateState::Ready(Some(g)) => g.strict_refusal(),
            GateState::Ready(None) => None,
        }
    }

    /// The selected field.
    pub fn current(&self) -> ExportField {
        ExportField::ALL[self.field.min(ExportField::ALL.len() - 1)]
    }

    /// Move the selection by `d` fields, stopping at the ends.
    pub fn move_field(&mut self, d: isize) {
        self.field = self
            .field
            .saturating_add_signed(d)
            .min(ExportField::ALL.len() - 1);
    }
}

/// The data gate as the export dialog knows it.
#[derive(Debug, Clone, PartialEq)]
pub enum GateState {
    /// Running off the UI task.
    Checking,
    /// `None`: nothing to compare (no held-out or no accepted example).
    Ready(Option<Box<crate::app::data_gate::DataGate>>),
    Failed(String),
}

impl GateState {
    /// What the dialog shows.
    pub fn line(&self) -> String {
        match self {
            GateState::Checking => "data gate: checking… (seeds only vs seeds + accepted)".into(),
            GateState::Ready(None) => {
                "data gate: nothing to compare (no held-out or no accepted example)".into()
            }
            GateState::Ready(Some(g)) => format!("data gate: {}", g.message()),
            GateState::Failed(e) => format!("data gate could not run: {e}"),
        }
    }
}

/// The gate's answer: shown in the export dialog if it is still open.
pub fn on_gate(
    st: &mut super::State,
    r: Result<Option<Box<crate::app::data_gate::DataGate>>, String>,
) {
    if let super::state::Mode::Export(form) = &mut st.mode {
        form.gate = match r {
            Ok(g) => GateState::Ready(g),
            Err(e) => GateState::Failed(e),
        };
        st.dirty = true;
    }
}

impl Default for ExportForm {
    fn default() -> Self {
        ExportForm::new()
    }
}

fn format_name(f: ExportFormat) -> &'static str {
    match f {
        ExportFormat::Jsonl => "jsonl",
        ExportFormat::Csv => "csv",
        ExportFormat::Hf => "hf",
    }
}

/// Where an export of format `f` goes unless the user types a path.
pub fn default_out(f: ExportFormat) -> PathBuf {
    PathBuf::from(match f {
        ExportFormat::Jsonl => "exports/data.jsonl",
        ExportFormat::Csv => "exports/data.csv",
        ExportFormat::Hf => "exports/hf",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_cycles_both_ways_and_keeps_a_typed_path() {
        let mut f = ExportForm::new();
        let fmt = ExportField::Format;
        fmt.step(&mut f, true);
        assert_eq!(
            (f.req.format, f.req.out.clone()),
            (ExportFormat::Csv, default_out(ExportFormat::Csv))
        );
        fmt.step(&mut f, false);
        fmt.step(&mut f, false);
        assert_eq!(f.req.format, ExportFormat::Hf);
        ExportField::Out.type_char(&mut f.req, None);
        ExportField::Out.type_char(&mut f.req, Some('2'));
        fmt.step(&mut f, true);
        assert_eq!(f.req.out, PathBuf::from("exports/h2"));
        f.move_field(-3);
        assert_eq!(f.current(), ExportField::Format);
        f.move_field(99);
        assert_eq!(f.current(), ExportField::Strict);
    }
}
