//! The keymap: one table of actions with their default keys and help text.
//!
//! The same table drives key dispatch ([`Keymap::action`]), the help screen
//! ([`Keymap::help_rows`]) and the config file's `[keys]` section (action
//! names are the config keys).

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::HashMap;

/// Something a key can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Accept,
    Reject,
    Skip,
    Undo,
    /// Relabel to class n (1-based) and accept.
    Relabel(u8),
    Edit,
    Filter,
    CycleSort,
    BulkAccept,
    BulkReject,
    ToggleGeneration,
    StopGeneration,
    AlphaDown,
    AlphaUp,
    Increase,
    Decrease,
    Export,
    /// Run one S3 round: train, score, extrapolate the errors.
    RunRound,
    /// Recompute the training-dynamics review signals.
    Signals,
    FocusNext,
    FocusPrev,
    Zoom,
    Up,
    Down,
    /// Seeds pane: into the seed examples of the selected class.
    Right,
    /// Seeds pane: back to the classes.
    Left,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Help,
    /// Clear the error / notice bar.
    Dismiss,
    Quit,
}

/// One row of the action table.
pub struct ActionInfo {
    pub action: Action,
    /// Name used in the config file's `[keys]` section.
    pub name: &'static str,
    pub help: &'static str,
    pub default_keys: &'static [&'static str],
}

macro_rules! row {
    ($a:expr, $n:literal, $h:literal, [$($k:literal),*]) => {
        ActionInfo { action: $a, name: $n, help: $h, default_keys: &[$($k),*] }
    };
}

/// Every action, in help-screen order, with its default keys.
pub const ACTIONS: &[ActionInfo] = &[
    row!(
        Action::Accept,
        "accept",
        "accept the selected example",
        ["a"]
    ),
    row!(
        Action::Reject,
        "reject",
        "reject the selected example",
        ["x"]
    ),
    row!(
        Action::Skip,
        "skip",
        "skip to the next pending example",
        ["space"]
    ),
    row!(
        Action::Undo,
        "undo",
        "undo the last decision or edit",
        ["u"]
    ),
    row!(
        Action::Relabel(1),
        "relabel_1",
        "relabel to class 1 and accept",
        ["1"]
    ),
    row!(
        Action::Relabel(2),
        "relabel_2",
        "relabel to class 2 and accept",
        ["2"]
    ),
    row!(
        Action::Relabel(3),
        "relabel_3",
        "relabel to class 3 and accept",
        ["3"]
    ),
    row!(
        Action::Relabel(4),
        "relabel_4",
        "relabel to class 4 and accept",
        ["4"]
    ),
    row!(
        Action::Relabel(5),
        "relabel_5",
        "relabel to class 5 and accept",
        ["5"]
    ),
    row!(
        Action::Relabel(6),
        "relabel_6",
        "relabel to class 6 and accept",
        ["6"]
    ),
    row!(
        Action::Relabel(7),
        "relabel_7",
        "relabel to class 7 and accept",
        ["7"]
    ),
    row!(
        Action::Relabel(8),
        "relabel_8",
        "relabel to class 8 and accept",
        ["8"]
    ),
    row!(
        Action::Relabel(9),
        "relabel_9",
        "relabel to class 9 and accept",
        ["9"]
    ),
    row!(
        Action::Edit,
        "edit",
        "edit the text or seed (Ctrl-S saves, Esc cancels)",
        ["e"]
    ),
    row!(
        Action::Filter,
        "filter",
        "filter: class:X status:Y agree:yes|no text",
        ["/"]
    ),
    row!(
        Action::CycleSort,
        "sort",
        "cycle sort: doubt, newest, class",
        ["s"]
    ),
    row!(
        Action::BulkAccept,
        "bulk_accept",
        "accept everything in the filter",
        ["A"]
    ),
    row!(
        Action::BulkReject,
        "bulk_reject",
        "reject everything in the filter",
        ["X"]
    ),
    row!(
        Action::ToggleGeneration,
        "generate",
        "start / pause generation",
        ["g"]
    ),
    row!(
        Action::StopGeneration,
        "stop",
        "stop and cancel requests in flight",
        ["G"]
    ),
    row!(Action::AlphaDown, "alpha_down", "α down", ["["]),
    row!(Action::AlphaUp, "alpha_up", "α up", ["]"]),
    row!(
        Action::Increase,
        "increase",
        "weight of class / selected control +",
        ["+", "="]
    ),
    row!(
        Action::Decrease,
        "decrease",
        "weight of class / selected control -",
        ["-"]
    ),
    row!(
        Action::Export,
        "export",
        "export the accepted examples",
        ["E"]
    ),
    row!(
        Action::RunRound,
        "s3_round",
        "S3 round: train, score, extrapolate errors",
        ["R"]
    ),
    row!(
        Action::Signals,
        "signals",
        "recompute training signals (review doubt)",
        ["T"]
    ),
    row!(
        Action::FocusNext,
        "focus_next",
        "focus the next pane",
        ["tab"]
    ),
    row!(
        Action::FocusPrev,
        "focus_prev",
        "focus the previous pane",
        ["backtab"]
    ),
    row!(Action::Zoom, "zoom", "zoom the focused pane", ["z"]),
    row!(Action::Up, "up", "move up", ["up", "k"]),
    row!(Action::Down, "down", "move down", ["down", "j"]),
    row!(
        Action::Right,
        "right",
        "seeds: into the examples of the class",
        ["right", "l"]
    ),
    row!(
        Action::Left,
        "left",
        "seeds: back to the classes",
        ["left", "h"]
    ),
    row!(Action::PageUp, "page_up", "page up", ["pageup"]),
    row!(Action::PageDown, "page_down", "page down", ["pagedown"]),
    row!(Action::Top, "top", "first row", ["home"]),
    row!(Action::Bottom, "bottom", "last row", ["end"]),
    row!(Action::Help, "help", "show / hide this help", ["?"]),
    row!(
        Action::Dismiss,
        "dismiss",
        "clear the message above the status line",
        ["esc"]
    ),
    row!(Action::Quit, "quit", "quit", ["q", "ctrl-c"]),
];

/// A normalized key: code plus the modifiers that matter (ctrl, alt).
/// Shift is folded into the character for printable keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeySpec {
    pub code: KeyCode,
    pub ctrl: bool,
    pub alt: bool,
}

impl KeySpec {
    /// Normalize a terminal key event.
    pub fn from_event(ev: &KeyEvent) -> KeySpec {
        let code = match ev.code {
            KeyCode::BackTab => KeyCode::BackTab,
            KeyCode::Tab if ev.modifiers.contains(KeyModifiers::SHIFT) => KeyCode::BackTab,
            c => c,
        };
        KeySpec {
            code,
            ctrl: ev.modifiers.contains(KeyModifiers::CONTROL),
            alt: ev.modifiers.contains(KeyModifiers::ALT),
        }
    }

    /// Parse "a", "A", "ctrl-s", "alt-x", "space", "tab", "backtab",
    /// "shift-tab", "enter", "esc", "up", "pagedown", "f5", …
    pub fn parse(s: &str) -> Result<KeySpec, String> {
        let mut ctrl = false;
        let mut alt = false;
        let mut shift = false;
        let mut rest = s;
        loop {
            let lower = rest.to_ascii_lowercase();
            if rest.len() > 1 && (lower.starts_with("ctrl-") || lower.starts_with("ctrl+")) {
                ctrl = true;
                rest = &rest[5..];
            } else if rest.len() > 1 && (lower.starts_with("alt-") || lower.starts_with("alt+")) {
                alt = true;
                rest = &rest[4..];
            } else if rest.len() > 1 && (lower.starts_with("shift-") || lower.starts_with("shift+"))
            {
                shift = true;
                rest = &rest[6..];
            } else {
                break;
            }
        }
        let mut chars = rest.chars();
        let code = match (chars.next(), chars.next()) {
            (Some(c), None) => KeyCode::Char(if shift { c.to_ascii_uppercase() } else { c }),
            _ => match rest.to_ascii_lowercase().as_str() {
                "space" => KeyCode::Char(' '),
                "tab" if shift => KeyCode::BackTab,
                "tab" => KeyCode::Tab,
                "backtab" => KeyCode::BackTab,
                "enter" | "return" => KeyCode::Enter,
                "esc" | "escape" => KeyCode::Esc,
                "backspace" => KeyCode::Backspace,
                "delete" | "del" => KeyCode::Delete,
                "up" => KeyCode::Up,
                "down" => KeyCode::Down,
                "left" => KeyCode::Left,
                "right" => KeyCode::Right,
                "pageup" | "pgup" => KeyCode::PageUp,
                "pagedown" | "pgdn" => KeyCode::PageDown,
                "home" => KeyCode::Home,
                "end" => KeyCode::End,
                f if f.starts_with('f') && f[1..].parse::<u8>().is_ok() => {
                    KeyCode::F(f[1..].parse().unwrap_or(1))
                }
                _ => return Err(format!("unknown key '{s}'")),
            },
        };
        Ok(KeySpec { code, ctrl, alt })
    }

    /// Human-readable form, as the help screen shows it.
    pub fn label(&self) -> String {
        let base = match self.code {
            KeyCode::Char(' ') => "space".to_string(),
            KeyCode::Char(c) => c.to_string(),
            KeyCode::Tab => "Tab".into(),
            KeyCode::BackTab => "S-Tab".into(),
            KeyCode::Enter => "Enter".into(),
            KeyCode::Esc => "Esc".into(),
            KeyCode::Backspace => "Bksp".into(),
            KeyCode::Delete => "Del".into(),
            KeyCode::Up => "↑".into(),
            KeyCode::Down => "↓".into(),
            KeyCode::Left => "←".into(),
            KeyCode::Right => "→".into(),
            KeyCode::PageUp => "PgUp".into(),
            KeyCode::PageDown => "PgDn".into(),
            KeyCode::Home => "Home".into(),
            KeyCode::End => "End".into(),
            KeyCode::F(n) => format!("F{n}"),
            other => format!("{other:?}"),
        };
        let mut s = String::new();
        if self.ctrl {
            s.push_str("C-");
        }
        if self.alt {
            s.push_str("M-");
        }
        s + &base
    }
}

/// Keys → actions, built from [`ACTIONS`] and the config's overrides.
#[derive(Debug, Clone)]
pub struct Keymap {
    by_key: HashMap<KeySpec, Action>,
    keys_of: HashMap<Action, Vec<KeySpec>>,
}

impl Default for Keymap {
    fn default() -> Self {
        Keymap::with_overrides(&[]).0
    }
}

impl Keymap {
    /// Defaults laid under `overrides` (action name, key specs). Returns the
    /// keymap and one message per entry that could not be used.
    pub fn with_overrides(overrides: &[(String, Vec<String>)]) -> (Keymap, Vec<String>) {
        let mut errors = Vec::new();
        let mut keys_of: HashMap<Action, Vec<KeySpec>> = ACTIONS
            .iter()
            .map(|a| {
                let keys = a
                    .default_keys
                    .iter()
                    .map(|k| KeySpec::parse(k).expect("built-in keys parse"))
                    .collect();
                (a.action, keys)
            })
            .collect();
        for (name, specs) in overrides {
            let Some(info) = ACTIONS.iter().find(|a| a.name == name) else {
                errors.push(format!("keys.{name}: unknown action"));
                continue;
            };
            let parsed: Result<Vec<KeySpec>, String> =
                specs.iter().map(|s| KeySpec::parse(s)).collect();
            match parsed {
                Ok(keys) => {
                    // A key rebound here is taken away from other actions.
                    for other in keys_of.values_mut() {
                        other.retain(|k| !keys.contains(k));
                    }
                    keys_of.insert(info.action, keys);
                }
                Err(e) => errors.push(format!("keys.{name}: {e}")),
            }
        }
        let mut by_key = HashMap::new();
        for info in ACTIONS {
            for k in &keys_of[&info.action] {
                by_key.entry(*k).or_insert(info.action);
            }
        }
        (Keymap { by_key, keys_of }, errors)
    }

    /// The action bound to a key event, if any.
    pub fn action(&self, ev: &KeyEvent) -> Option<Action> {
        self.by_key.get(&KeySpec::from_event(ev)).copied()
    }

    /// Keys bound to an action, as labels ("a", "C-s").
    pub fn keys_for(&self, action: Action) -> Vec<String> {
        self.keys_of
            .get(&action)
            .map(|ks| ks.iter().map(KeySpec::label).collect())
            .unwrap_or_default()
    }

    /// First key label of an action, for hints ("?" when unbound).
    pub fn hint(&self, action: Action) -> String {
        self.keys_for(action)
            .into_iter()
            .next()
            .unwrap_or_else(|| "∅".into())
    }

    /// (keys, help) per action, in table order — the help screen. The
    /// nine relabel actions share one row while they keep keys 1–9.
    pub fn help_rows(&self) -> Vec<(String, &'static str)> {
        let digits = (1..=9u8).all(|n| self.keys_for(Action::Relabel(n)) == vec![n.to_string()]);
        ACTIONS
            .iter()
            .filter_map(|a| match a.action {
                Action::Relabel(1) if digits => {
                    Some(("1–9".to_string(), "relabel to class n and accept"))
                }
                Action::Relabel(_) if digits => None,
                _ => Some((self.keys_for(a.action).join(" "), a.help)),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode, m: KeyModifiers) -> KeyEvent {
        KeyEvent::new(c, m)
    }

    #[test]
    fn defaults_and_overrides() {
        let km = Keymap::default();
        assert_eq!(
            km.action(&key(KeyCode::Char('a'), KeyModifiers::NONE)),
            Some(Action::Accept)
        );
        assert_eq!(
            km.action(&key(KeyCode::Char('A'), KeyModifiers::SHIFT)),
            Some(Action::BulkAccept)
        );
        assert_eq!(
            km.action(&key(KeyCode::Tab, KeyModifiers::SHIFT)),
            Some(Action::FocusPrev)
        );
        let (km, errs) = Keymap::with_overrides(&[
            ("accept".into(), vec!["y".into()]),
            ("nope".into(), vec!["n".into()]),
            ("reject".into(), vec!["ctrl-".into(), "bogus-key".into()]),
        ]);
        assert_eq!(
            km.action(&key(KeyCode::Char('y'), KeyModifiers::NONE)),
            Some(Action::Accept)
        );
        assert_eq!(
            km.action(&key(KeyCode::Char('a'), KeyModifiers::NONE)),
            None
        );
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].contains("keys.nope"));
        assert!(errs[1].contains("keys.reject") && errs[1].contains("'ctrl-'"));
        // The bad entry leaves the default in place.
        assert_eq!(
            km.action(&key(KeyCode::Char('x'), KeyModifiers::NONE)),
            Some(Action::Reject)
        );
    }

    #[test]
    fn parse_specs() {
        let k = KeySpec::parse("ctrl-s").unwrap();
        assert!(k.ctrl && k.code == KeyCode::Char('s'));
        assert_eq!(KeySpec::parse("shift-tab").unwrap().code, KeyCode::BackTab);
        assert_eq!(KeySpec::parse("F5").unwrap().code, KeyCode::F(5));
        assert_eq!(KeySpec::parse("space").unwrap().label(), "space");
        assert!(KeySpec::parse("hyper-q").is_err());
        let help = Keymap::default().help_rows();
        assert_eq!(help.len(), ACTIONS.len() - 8);
        assert!(help.iter().any(|(k, _)| k == "1–9"));
        assert!(help.iter().any(|(k, h)| k == "a" && h.contains("accept")));
    }
}
