//! The keymap: one table of actions per input mode, with their default
//! keys, help text and hint.
//!
//! The same table drives key dispatch ([`Keymap::input`]), every mode's hint
//! line ([`Keymap::hint_line`]), the help screen ([`Keymap::help_sections`])
//! and the config file: normal-mode actions are rebound in `[keys]`, the
//! other modes' in `[help_keys]`, `[filter_keys]`, `[confirm_keys]`,
//! `[edit_keys]` and `[export_keys]` (action names are the config keys).
//! A key no action of the mode has falls to the mode's [`Unbound`] rule
//! (typed text, close the help, answer "no").

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::HashMap;

/// An input mode: which rows of [`ACTIONS`] keys are looked up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyMode {
    Normal,
    Help,
    Filter,
    Confirm,
    Edit,
    Export,
}

/// What a key no action of the mode is bound to does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unbound {
    /// Nothing.
    Ignore,
    /// This action.
    Act(Action),
    /// It is typed into the mode's text (filter input, editor, path field).
    Text,
}

impl KeyMode {
    pub const ALL: [KeyMode; 6] = [
        KeyMode::Normal,
        KeyMode::Help,
        KeyMode::Filter,
        KeyMode::Confirm,
        KeyMode::Edit,
        KeyMode::Export,
    ];

    /// The config file's table for this mode.
    pub fn section(self) -> &'static str {
        match self {
            KeyMode::Normal => "keys",
            KeyMode::Help => "help_keys",
            KeyMode::Filter => "filter_keys",
            KeyMode::Confirm => "confirm_keys",
            KeyMode::Edit => "edit_keys",
            KeyMode::Export => "export_keys",
        }
    }

    /// Heading of the mode's part of the help screen.
    pub fn title(self) -> &'static str {
        match self {
            KeyMode::Normal => "review and steer",
            KeyMode::Help => "this help",
            KeyMode::Filter => "typing a filter",
            KeyMode::Confirm => "confirming a bulk decision",
            KeyMode::Edit => "editing a text",
            KeyMode::Export => "the export form",
        }
    }

    /// The normal-mode actions that open this mode.
    pub fn entered_by(self) -> &'static [Action] {
        match self {
            KeyMode::Normal => &[],
            KeyMode::Help => &[Action::Help],
            KeyMode::Filter => &[Action::Filter],
            KeyMode::Confirm => &[Action::BulkAccept, Action::BulkReject],
            KeyMode::Edit => &[Action::Edit],
            KeyMode::Export => &[Action::Export],
        }
    }

    /// What keys without a binding in this mode do.
    pub fn unbound(self) -> Unbound {
        match self {
            KeyMode::Normal => Unbound::Ignore,
            KeyMode::Help => Unbound::Act(Action::HelpClose),
            KeyMode::Confirm => Unbound::Act(Action::ConfirmNo),
            KeyMode::Filter | KeyMode::Edit | KeyMode::Export => Unbound::Text,
        }
    }

    /// Says what [`KeyMode::unbound`] does, for hints and help ("" = nothing).
    pub fn unbound_help(self) -> &'static str {
        match self {
            KeyMode::Normal => "",
            KeyMode::Help => "any other key closes",
            KeyMode::Confirm => "any other key = no",
            KeyMode::Filter => "other keys type the filter",
            KeyMode::Edit => "other keys edit the text",
            KeyMode::Export => "type the path",
        }
    }
}

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
    /// Switch `take_relabel`: whether `a` records the relabeler's label.
    ToggleTakeRelabel,
    /// α range: move its low end (the high end follows only when it must).
    AlphaLowDown,
    AlphaLowUp,
    /// α range: move its high end (the low end follows only when it must).
    AlphaHighDown,
    AlphaHighUp,
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
    /// Show / hide the map pane.
    ToggleMap,
    /// Map: zoom to the next class pair.
    MapPair,
    /// Map: refit the projection.
    MapRefit,
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
    // Help screen.
    HelpUp,
    HelpDown,
    HelpClose,
    // Filter input.
    FilterApply,
    FilterCancel,
    // Bulk-decision confirmation.
    ConfirmYes,
    ConfirmNo,
    // Text editor.
    EditSave,
    EditCancel,
    // Export form.
    FieldPrev,
    FieldNext,
    FieldDecrease,
    FieldIncrease,
    ExportRun,
    ExportCancel,
}

/// One row of the action table.
pub struct ActionInfo {
    pub mode: KeyMode,
    pub action: Action,
    /// Name used in the config file's table of the mode.
    pub name: &'static str,
    pub help: &'static str,
    /// Word in the mode's hint line ("" = not in the hint line). Adjacent
    /// rows with the same word share one item ("↑↓ field").
    pub hint: &'static str,
    pub default_keys: &'static [&'static str],
}

macro_rules! row {
    ($a:expr, $n:literal, $h:literal, [$($k:literal),*]) => {
        ActionInfo { mode: KeyMode::Normal, action: $a, name: $n, help: $h, hint: "", default_keys: &[$($k),*] }
    };
    ($m:ident; $a:expr, $n:literal, $h:literal, $hint:literal, [$($k:literal),*]) => {
        ActionInfo { mode: KeyMode::$m, action: $a, name: $n, help: $h, hint: $hint, default_keys: &[$($k),*] }
    };
}

/// Every action, mode by mode in help-screen order, with its default keys.
pub const ACTIONS: &[ActionInfo] = &[
    row!(
        Action::Accept,
        "accept",
        "accept with the label shown (↻ relabel, ✎ edited)",
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
        "undo your last decision, edit or bulk rule",
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
        "filter: class:X status:Y agree:yes|no actor:auto text",
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
    row!(
        Action::ToggleTakeRelabel,
        "take_relabel",
        "take_relabel on/off: whether a records the LLM's label",
        ["t"]
    ),
    row!(
        Action::AlphaLowDown,
        "alpha_low_down",
        "α range: lower its low end (widens)",
        ["["]
    ),
    row!(
        Action::AlphaLowUp,
        "alpha_low_up",
        "α range: raise its low end",
        ["]"]
    ),
    row!(
        Action::AlphaHighDown,
        "alpha_high_down",
        "α range: lower its high end",
        ["{"]
    ),
    row!(
        Action::AlphaHighUp,
        "alpha_high_up",
        "α range: raise its high end (widens)",
        ["}"]
    ),
    row!(
        Action::Increase,
        "increase",
        "class weight / control + (α: wider)",
        ["+", "="]
    ),
    row!(
        Action::Decrease,
        "decrease",
        "class weight / control - (α: narrower)",
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
    row!(
        Action::ToggleMap,
        "map",
        "show / hide the map of the samples (PCA)",
        ["m"]
    ),
    row!(
        Action::MapPair,
        "map_pair",
        "map: zoom to the next class pair, then all",
        ["b"]
    ),
    row!(
        Action::MapRefit,
        "map_refit",
        "map: refit the projection",
        ["M"]
    ),
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
    row!(Help; Action::HelpUp, "up", "scroll up", "scroll", ["up", "k"]),
    row!(Help; Action::HelpDown, "down", "scroll down", "scroll", ["down", "j"]),
    row!(Help; Action::HelpClose, "close", "close the help", "", ["esc", "q", "?"]),
    row!(Filter; Action::FilterApply, "apply", "apply the filter", "apply", ["enter"]),
    row!(Filter; Action::FilterCancel, "cancel", "leave the filter as it was", "cancel", ["esc"]),
    row!(Confirm; Action::ConfirmYes, "yes", "decide them all", "yes", ["y", "Y", "enter"]),
    row!(Confirm; Action::ConfirmNo, "no", "cancel", "no", ["n", "esc"]),
    row!(Edit; Action::EditSave, "save", "save (generated examples are relabelled)", "save", ["ctrl-s"]),
    row!(Edit; Action::EditCancel, "cancel", "cancel the edit", "cancel", ["esc"]),
    row!(Export; Action::FieldPrev, "prev", "previous field", "field", ["up", "backtab"]),
    row!(Export; Action::FieldNext, "next", "next field", "field", ["down", "tab"]),
    row!(Export; Action::FieldDecrease, "decrease", "change the field's value back", "change", ["left", "-"]),
    row!(Export; Action::FieldIncrease, "increase", "change the field's value", "change", ["right", "+", "space"]),
    row!(Export; Action::ExportRun, "run", "export", "export", ["enter"]),
    row!(Export; Action::ExportCancel, "cancel", "close the form", "cancel", ["esc"]),
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

    /// A key event that [`KeySpec::from_event`] reads back as this key
    /// (what a test presses for a key the keymap shows).
    pub fn event(&self) -> KeyEvent {
        let mut m = KeyModifiers::NONE;
        if self.ctrl {
            m |= KeyModifiers::CONTROL;
        }
        if self.alt {
            m |= KeyModifiers::ALT;
        }
        KeyEvent::new(self.code, m)
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

/// Keys → actions per mode, built from [`ACTIONS`] and the config's
/// overrides.
#[derive(Debug, Clone)]
pub struct Keymap {
    by_key: HashMap<(KeyMode, KeySpec), Action>,
    keys_of: HashMap<Action, Vec<KeySpec>>,
}

impl Default for Keymap {
    fn default() -> Self {
        Keymap::with_overrides(&[]).0
    }
}

/// What a key press means in a mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Act(Action),
    /// Typed into the mode's text.
    Text,
    Ignore,
}

/// One row of the help screen: the keys (as shown) and what they do.
#[derive(Debug, Clone, PartialEq)]
pub struct HelpRow {
    /// The keys as the help screen shows them ("a", "↑ k", "1–9").
    pub label: String,
    pub help: &'static str,
    /// Every key of the row with the action it runs.
    pub keys: Vec<(KeySpec, Action)>,
}

/// One item of a mode's hint line ("↑↓ field").
#[derive(Debug, Clone, PartialEq)]
pub struct HintItem {
    pub label: String,
    pub word: &'static str,
    /// The keys shown in `label` with the action each runs.
    pub keys: Vec<(KeySpec, Action)>,
}

/// The row of `action` in [`ACTIONS`].
pub fn info(action: Action) -> &'static ActionInfo {
    ACTIONS
        .iter()
        .find(|a| a.action == action)
        .expect("every action has a row")
}

impl Keymap {
    /// Defaults laid under `overrides` (action name, key specs; the name is
    /// `section.action` for modes other than normal, e.g.
    /// `filter_keys.apply`). Returns the keymap and one message per entry
    /// that could not be used.
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
            let (mode, action) = match name.split_once('.') {
                Some((section, action)) => {
                    match KeyMode::ALL.iter().find(|m| m.section() == section) {
                        Some(m) => (*m, action),
                        None => {
                            errors.push(format!("{section}: unknown key table"));
                            continue;
                        }
                    }
                }
                None => (KeyMode::Normal, name.as_str()),
            };
            // Names from before the α range had two ends.
            let action = match (mode, action) {
                (KeyMode::Normal, "alpha_down") => "alpha_low_down",
                (KeyMode::Normal, "alpha_up") => "alpha_low_up",
                _ => action,
            };
            let label = format!("{}.{action}", mode.section());
            let Some(info) = ACTIONS.iter().find(|a| a.mode == mode && a.name == action) else {
                errors.push(format!("{label}: unknown action"));
                continue;
            };
            let parsed: Result<Vec<KeySpec>, String> =
                specs.iter().map(|s| KeySpec::parse(s)).collect();
            match parsed {
                Ok(keys) => {
                    // A key rebound here is taken away from the mode's
                    // other actions.
                    for other in ACTIONS.iter().filter(|a| a.mode == mode) {
                        if let Some(ks) = keys_of.get_mut(&other.action) {
                            ks.retain(|k| !keys.contains(k));
                        }
                    }
                    keys_of.insert(info.action, keys);
                }
                Err(e) => errors.push(format!("{label}: {e}")),
            }
        }
        let mut by_key = HashMap::new();
        for info in ACTIONS {
            for k in &keys_of[&info.action] {
                by_key.entry((info.mode, *k)).or_insert(info.action);
            }
        }
        (Keymap { by_key, keys_of }, errors)
    }

    /// The normal-mode action bound to a key event, if any.
    pub fn action(&self, ev: &KeyEvent) -> Option<Action> {
        self.action_in(KeyMode::Normal, ev)
    }

    /// The action bound to a key event in `mode`, if any.
    pub fn action_in(&self, mode: KeyMode, ev: &KeyEvent) -> Option<Action> {
        self.by_key.get(&(mode, KeySpec::from_event(ev))).copied()
    }

    /// What a key means in `mode`: its binding, else the mode's
    /// [`Unbound`] rule.
    pub fn input(&self, mode: KeyMode, ev: &KeyEvent) -> Input {
        match self.action_in(mode, ev) {
            Some(a) => Input::Act(a),
            None => match mode.unbound() {
                Unbound::Ignore => Input::Ignore,
                Unbound::Act(a) => Input::Act(a),
                Unbound::Text => Input::Text,
            },
        }
    }

    /// Keys bound to an action.
    pub fn specs_for(&self, action: Action) -> &[KeySpec] {
        self.keys_of.get(&action).map_or(&[], Vec::as_slice)
    }

    /// Keys bound to an action, as labels ("a", "C-s").
    pub fn keys_for(&self, action: Action) -> Vec<String> {
        self.specs_for(action).iter().map(KeySpec::label).collect()
    }

    /// First key label of an action, for hints ("∅" when unbound).
    pub fn hint(&self, action: Action) -> String {
        self.keys_for(action)
            .into_iter()
            .next()
            .unwrap_or_else(|| "∅".into())
    }

    /// The hint line of `mode`: the first key of each action with a hint
    /// word, adjacent actions with the same word merged ("↑↓ field").
    pub fn hint_items(&self, mode: KeyMode) -> Vec<HintItem> {
        let mut out: Vec<HintItem> = Vec::new();
        for a in ACTIONS
            .iter()
            .filter(|a| a.mode == mode && !a.hint.is_empty())
        {
            let Some(k) = self.specs_for(a.action).first().copied() else {
                continue;
            };
            match out.last_mut() {
                Some(last) if last.word == a.hint => {
                    let one_wide = |s: &str| unicode_width::UnicodeWidthStr::width(s) == 1;
                    let sep = if one_wide(&last.label) && one_wide(&k.label()) {
                        ""
                    } else {
                        "/"
                    };
                    last.label = format!("{}{sep}{}", last.label, k.label());
                    last.keys.push((k, a.action));
                }
                _ => out.push(HintItem {
                    label: k.label(),
                    word: a.hint,
                    keys: vec![(k, a.action)],
                }),
            }
        }
        out
    }

    /// The hint line of `mode` as text ("↑↓ field · Enter export · …"),
    /// ending with what unbound keys do.
    pub fn hint_line(&self, mode: KeyMode) -> String {
        let mut parts: Vec<String> = self
            .hint_items(mode)
            .iter()
            .map(|h| format!("{} {}", h.label, h.word))
            .collect();
        if !mode.unbound_help().is_empty() {
            parts.push(mode.unbound_help().to_string());
        }
        parts.join(" · ")
    }

    /// The help rows of `mode`, in table order. In normal mode the nine
    /// relabel actions share one row while they keep keys 1–9.
    pub fn mode_help(&self, mode: KeyMode) -> Vec<HelpRow> {
        let digits = (1..=9u8).all(|n| self.keys_for(Action::Relabel(n)) == vec![n.to_string()]);
        let row = |a: &ActionInfo| HelpRow {
            label: self.keys_for(a.action).join(" "),
            help: a.help,
            keys: self
                .specs_for(a.action)
                .iter()
                .map(|k| (*k, a.action))
                .collect(),
        };
        ACTIONS
            .iter()
            .filter(|a| a.mode == mode)
            .filter_map(|a| match a.action {
                Action::Relabel(1) if digits => Some(HelpRow {
                    label: "1–9".to_string(),
                    help: "relabel to class n and accept",
                    keys: (1..=9u8)
                        .flat_map(|n| {
                            self.specs_for(Action::Relabel(n))
                                .iter()
                                .map(move |k| (*k, Action::Relabel(n)))
                        })
                        .collect(),
                }),
                Action::Relabel(_) if digits => None,
                _ => Some(row(a)),
            })
            .collect()
    }

    /// (keys, help) per normal-mode action — the first part of the help
    /// screen.
    pub fn help_rows(&self) -> Vec<(String, &'static str)> {
        self.mode_help(KeyMode::Normal)
            .into_iter()
            .map(|r| (r.label, r.help))
            .collect()
    }

    /// The README's key table: every mode's help rows, as the help screen
    /// shows them, in Markdown (`` `a` `` keys, the config table of the mode).
    pub fn markdown_table(&self) -> String {
        let mut out = String::from("| where | keys | what it does |\n|---|---|---|\n");
        for (mode, rows) in self.help_sections() {
            let mut first = true;
            for r in rows {
                let keys: Vec<String> = r
                    .label
                    .split(' ')
                    .filter(|k| !k.is_empty())
                    .map(|k| format!("`{}`", k.replace('|', "\\|")))
                    .collect();
                let place = if first {
                    format!("{} (`[{}]`)", mode.title(), mode.section())
                } else {
                    String::new()
                };
                first = false;
                out.push_str(&format!(
                    "| {place} | {} | {} |\n",
                    keys.join(" "),
                    r.help.replace('|', "\\|")
                ));
            }
        }
        out
    }

    /// The whole help screen: every mode with its rows.
    pub fn help_sections(&self) -> Vec<(KeyMode, Vec<HelpRow>)> {
        KeyMode::ALL
            .iter()
            .map(|m| (*m, self.mode_help(*m)))
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
        let normal = ACTIONS.iter().filter(|a| a.mode == KeyMode::Normal).count();
        assert_eq!(help.len(), normal - 8);
        assert!(help.iter().any(|(k, _)| k == "1–9"));
        assert!(help.iter().any(|(k, h)| k == "a" && h.contains("accept")));
    }

    /// A keymap with keys moved around in every mode, so the checks below
    /// do not pass by the defaults' luck.
    fn remapped() -> Keymap {
        let (km, errs) = Keymap::with_overrides(&[
            ("accept".into(), vec!["y".into()]),
            ("relabel_3".into(), vec!["F3".into()]),
            ("help_keys.close".into(), vec!["c".into()]),
            ("filter_keys.apply".into(), vec!["ctrl-j".into()]),
            ("confirm_keys.yes".into(), vec!["o".into(), "enter".into()]),
            ("edit_keys.save".into(), vec!["ctrl-w".into(), "F2".into()]),
            ("export_keys.next".into(), vec!["ctrl-n".into()]),
            ("export_keys.run".into(), vec!["F10".into()]),
        ]);
        assert!(errs.is_empty(), "{errs:?}");
        km
    }

    /// For every mode, every key the help screen and the hint line show
    /// runs the action they say it runs, and the key is written in the row.
    #[test]
    fn help_and_hints_agree_with_dispatch() {
        for km in [Keymap::default(), remapped()] {
            for (mode, rows) in km.help_sections() {
                assert!(!rows.is_empty(), "{mode:?} has no help");
                for r in rows {
                    assert!(!r.keys.is_empty() || r.label.is_empty(), "{r:?}");
                    for (k, a) in &r.keys {
                        assert_eq!(km.input(mode, &k.event()), Input::Act(*a), "{mode:?} {r:?}");
                        let shown = r.label == "1–9" && k.label().len() == 1
                            || r.label.split(' ').any(|l| l == k.label());
                        assert!(shown, "{mode:?}: {} not in '{}'", k.label(), r.label);
                    }
                }
                for h in km.hint_items(mode) {
                    assert!(h.label.contains(&h.keys[0].0.label()));
                    for (k, a) in &h.keys {
                        assert_eq!(km.input(mode, &k.event()), Input::Act(*a), "{mode:?} {h:?}");
                        assert!(h.label.contains(&k.label()), "{h:?}");
                    }
                    let line = km.hint_line(mode);
                    assert!(line.contains(&format!("{} {}", h.label, h.word)), "{line}");
                }
            }
        }
    }

    /// Every key bound in any mode is on the help screen, in that mode's
    /// part, on the row of its action.
    #[test]
    fn every_bound_key_is_in_help() {
        for km in [Keymap::default(), remapped()] {
            let sections = km.help_sections();
            assert_eq!(
                km.by_key.len(),
                km.keys_of.values().map(Vec::len).sum::<usize>()
            );
            for ((mode, key), action) in &km.by_key {
                let (_, rows) = sections.iter().find(|(m, _)| m == mode).unwrap();
                assert!(
                    rows.iter().any(|r| r.keys.contains(&(*key, *action))),
                    "{mode:?} {} ({action:?}) missing from help",
                    key.label()
                );
            }
        }
    }

    /// The README's key table is the default keymap's
    /// [`Keymap::markdown_table`]. `STRADDLE_UPDATE_README=1` rewrites it.
    #[test]
    fn readme_key_table_is_generated_from_the_keymap() {
        const BEGIN: &str = "<!-- keys:begin (generated from src/tui/keymap.rs) -->\n";
        const END: &str = "<!-- keys:end -->";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let (head, rest) = readme
            .split_once(BEGIN)
            .expect("README has the key table markers");
        let (table, tail) = rest.split_once(END).expect("README key table end marker");
        let want = Keymap::default().markdown_table();
        if table != want && std::env::var_os("STRADDLE_UPDATE_README").is_some() {
            std::fs::write(path, format!("{head}{BEGIN}{want}{END}{tail}")).unwrap();
            return;
        }
        assert_eq!(
            table, want,
            "README key table is stale: run STRADDLE_UPDATE_README=1 cargo test --lib keymap"
        );
        // Every help row of every mode is in it.
        for (_, rows) in Keymap::default().help_sections() {
            for r in rows {
                assert!(table.contains(&r.help.replace('|', "\\|")), "{}", r.help);
            }
        }
    }

    #[test]
    fn modes_are_rebound_separately() {
        let km = remapped();
        let enter = KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE);
        let ctrl_j = KeyEvent::new(KeyCode::Char('j'), KeyModifiers::CONTROL);
        assert_eq!(
            km.input(KeyMode::Filter, &ctrl_j),
            Input::Act(Action::FilterApply)
        );
        // Enter no longer applies a filter, but still confirms and exports
        // stays on F10 only.
        assert_eq!(km.input(KeyMode::Filter, &enter), Input::Text);
        assert_eq!(
            km.input(KeyMode::Confirm, &enter),
            Input::Act(Action::ConfirmYes)
        );
        assert_eq!(km.input(KeyMode::Export, &enter), Input::Text);
        assert_eq!(
            km.hint_line(KeyMode::Filter),
            "C-j apply · Esc cancel · other keys type the filter"
        );
        assert!(
            km.hint_line(KeyMode::Export)
                .starts_with("↑/C-n field · ←→ change · F10 export")
        );
        // Rebinding a key in one mode does not take it from another: `y`
        // is accept in normal mode, `o` is yes in the confirmation.
        let y = KeyEvent::new(KeyCode::Char('y'), KeyModifiers::NONE);
        assert_eq!(km.input(KeyMode::Normal, &y), Input::Act(Action::Accept));
        assert_eq!(
            km.input(KeyMode::Confirm, &y),
            Input::Act(Action::ConfirmNo)
        );
        // Unbound keys: help closes, confirmation says no, normal ignores.
        let z = KeyEvent::new(KeyCode::Char('%'), KeyModifiers::NONE);
        assert_eq!(km.input(KeyMode::Help, &z), Input::Act(Action::HelpClose));
        assert_eq!(km.input(KeyMode::Normal, &z), Input::Ignore);
        let (_, errs) = Keymap::with_overrides(&[
            ("mystery_keys.x".into(), vec!["a".into()]),
            ("filter_keys.accept".into(), vec!["a".into()]),
        ]);
        assert_eq!(
            errs,
            [
                "mystery_keys: unknown key table",
                "filter_keys.accept: unknown action"
            ]
        );
    }

    /// Configs written before the α range had two ends keep working.
    #[test]
    fn old_alpha_key_names_still_bind() {
        let (km, errs) = Keymap::with_overrides(&[
            ("alpha_down".into(), vec!["F7".into()]),
            ("alpha_up".into(), vec!["F8".into()]),
        ]);
        assert!(errs.is_empty(), "{errs:?}");
        let f = |n| KeyEvent::new(KeyCode::F(n), KeyModifiers::NONE);
        assert_eq!(km.action(&f(7)), Some(Action::AlphaLowDown));
        assert_eq!(km.action(&f(8)), Some(Action::AlphaLowUp));
    }

    #[test]
    fn defaults_keep_the_old_mode_keys() {
        let km = Keymap::default();
        assert_eq!(
            km.hint_line(KeyMode::Export),
            "↑↓ field · ←→ change · Enter export · Esc cancel · type the path"
        );
        assert_eq!(
            km.hint_line(KeyMode::Help),
            "↑↓ scroll · any other key closes"
        );
        assert_eq!(
            km.hint_line(KeyMode::Edit),
            "C-s save · Esc cancel · other keys edit the text"
        );
        for (mode, names) in [
            (KeyMode::Confirm, &["y", "Y", "Enter"][..]),
            (KeyMode::Help, &["Esc", "q", "?"][..]),
        ] {
            for n in names {
                let k = ACTIONS
                    .iter()
                    .filter(|a| a.mode == mode)
                    .find(|a| km.keys_for(a.action).iter().any(|l| l == n));
                assert!(k.is_some(), "{mode:?} {n}");
            }
        }
    }
}
