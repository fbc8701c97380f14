//! The user's TUI config file, laid over built-in defaults.
//!
//! Location: `$STRADDLE_CONFIG` if set, else `config.toml` in the user's
//! config dir (`directories`; e.g. `~/.config/straddle/config.toml`).
//!
//! ```toml
//! theme = "light"            # dark | light | high-contrast | path/to/theme.toml
//! [keys]
//! accept = ["a", "enter"]    # action name = key or list of keys
//! reject = "x"
//! [filter_keys]              # the other modes: help_keys, filter_keys,
//! apply = ["enter", "ctrl-j"] # confirm_keys, edit_keys, export_keys
//! ```
//!
//! The action names of each table are in [`super::keymap::ACTIONS`]; the
//! help screen (`?`) lists them all with their keys.
//!
//! Nothing here is fatal: a bad file or entry yields a message naming the
//! file and key, and the defaults stay in place for it.

use std::path::{Path, PathBuf};

use super::keymap::{KeyMode, Keymap};
use super::theme::Theme;

/// What the TUI runs with.
#[derive(Debug, Clone, Default)]
pub struct UiConfig {
    pub keymap: Keymap,
    pub theme: Theme,
    /// Problems found while loading (shown in the status line).
    pub warnings: Vec<String>,
    /// Where diagnostics are logged (shown on the help screen).
    pub log_file: Option<PathBuf>,
}

/// Where the config file is looked for.
pub fn config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STRADDLE_CONFIG") {
        return Some(PathBuf::from(p));
    }
    directories::ProjectDirs::from("", "", "straddle").map(|d| d.config_dir().join("config.toml"))
}

/// Load the config at `path` (missing file = defaults).
pub fn load(path: Option<&Path>) -> UiConfig {
    let Some(path) = path else {
        return UiConfig::default();
    };
    match std::fs::read_to_string(path) {
        Ok(text) => from_str(&text, path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => UiConfig::default(),
        Err(e) => UiConfig {
            warnings: vec![format!("{}: cannot read: {e}", path.display())],
            ..UiConfig::default()
        },
    }
}

/// Parse config text; `path` only names the file in messages.
pub fn from_str(text: &str, path: &Path) -> UiConfig {
    let file = path.display();
    let table: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1))
                .unwrap_or(1);
            return UiConfig {
                warnings: vec![format!(
                    "{file}:{line}: {}; using defaults",
                    e.message().trim()
                )],
                ..UiConfig::default()
            };
        }
    };
    let mut warnings = Vec::new();
    let mut theme_name = None;
    let mut overrides: Vec<(String, Vec<String>)> = Vec::new();
    for (key, value) in &table {
        match (key.as_str(), value) {
            ("theme", toml::Value::String(s)) => theme_name = Some(s.clone()),
            ("theme", _) => warnings.push(format!(
                "{file}: theme: expected a string (a theme name or a .toml path)"
            )),
            (section, toml::Value::Table(keys)) if mode_of(section).is_some() => {
                let prefix = match mode_of(section) {
                    Some(KeyMode::Normal) | None => String::new(),
                    Some(_) => format!("{section}."),
                };
                for (action, v) in keys {
                    let specs = match v {
                        toml::Value::String(s) => Some(vec![s.clone()]),
                        toml::Value::Array(a) => a
                            .iter()
                            .map(|x| x.as_str().map(str::to_string))
                            .collect::<Option<Vec<_>>>(),
                        _ => None,
                    };
                    match specs {
                        Some(specs) => overrides.push((format!("{prefix}{action}"), specs)),
                        None => warnings.push(format!(
                            "{file}: {section}.{action}: expected a key or a list of keys"
                        )),
                    }
                }
            }
            (section, _) if mode_of(section).is_some() => {
                warnings.push(format!("{file}: {section}: expected a table"))
            }
            (other, _) => warnings.push(format!(
                "{file}: unknown setting '{other}' (known: theme, {})",
                KeyMode::ALL.map(KeyMode::section).join(", ")
            )),
        }
    }
    let (keymap, errs) = Keymap::with_overrides(&overrides);
    warnings.extend(errs.into_iter().map(|e| format!("{file}: {e}")));
    let theme = match theme_name.as_deref() {
        None => Theme::default(),
        Some(name) => match load_theme(name, path) {
            Ok(t) => t,
            Err(e) => {
                warnings.push(format!("{file}: theme: {e}"));
                Theme::default()
            }
        },
    };
    UiConfig {
        keymap,
        theme,
        warnings,
        log_file: None,
    }
}

/// The key mode whose table is `section` (`keys`, `filter_keys`, …).
fn mode_of(section: &str) -> Option<KeyMode> {
    KeyMode::ALL.into_iter().find(|m| m.section() == section)
}

/// A built-in theme by name, or a theme file (relative to the config file).
fn load_theme(name: &str, config_file: &Path) -> Result<Theme, String> {
    if let Some(t) = Theme::builtin(name) {
        return Ok(t);
    }
    if !name.ends_with(".toml") {
        let names: Vec<&str> = super::theme::BUILTIN.iter().map(|(n, _)| *n).collect();
        return Err(format!(
            "unknown theme '{name}' (built-in: {}; or a path to a .toml file)",
            names.join(", ")
        ));
    }
    let p = config_file
        .parent()
        .map(|d| d.join(name))
        .unwrap_or_else(|| PathBuf::from(name));
    let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    Theme::parse(name, &text).map_err(|e| format!("{}: {e}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::keymap::Action;
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    #[test]
    fn good_config_is_laid_over_defaults() {
        let c = from_str(
            "theme = \"light\"\n[keys]\naccept = \"y\"\nreject = [\"n\", \"x\"]\n",
            Path::new("/c.toml"),
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(c.theme.name, "light");
        let y = KeyEvent::new(KeyCode::Char('y'), KeyModifiers::NONE);
        assert_eq!(c.keymap.action(&y), Some(Action::Accept));
        let u = KeyEvent::new(KeyCode::Char('u'), KeyModifiers::NONE);
        assert_eq!(c.keymap.action(&u), Some(Action::Undo));
    }

    #[test]
    fn bad_config_names_file_and_key() {
        let c = from_str("theme = 3\n", Path::new("/home/me/c.toml"));
        assert_eq!(c.warnings.len(), 1);
        assert!(
            c.warnings[0].contains("/home/me/c.toml"),
            "{:?}",
            c.warnings
        );
        assert!(c.warnings[0].contains("theme"), "{:?}", c.warnings);
        let c = from_str(
            "theme = \"neon\"\n[keys]\nacept = \"a\"\n",
            Path::new("/c.toml"),
        );
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(c.warnings.iter().any(|w| w.contains("keys.acept")));
        assert!(c.warnings.iter().any(|w| w.contains("neon")));
        assert_eq!(c.theme.name, "dark");
        let c = from_str("colour = \"x\"\n", Path::new("/c.toml"));
        assert!(c.warnings[0].contains("colour"), "{:?}", c.warnings);
        let c = from_str("[keys]\naccept = 5\n", Path::new("/c.toml"));
        assert!(c.warnings[0].contains("keys.accept"), "{:?}", c.warnings);
        let c = from_str("theme = \"dark\"\n[keys\n", Path::new("/c.toml"));
        assert!(c.warnings[0].starts_with("/c.toml:2:"), "{:?}", c.warnings);
    }

    #[test]
    fn mode_tables_rebind_their_mode_only() {
        let c = from_str(
            "[keys]\nfilter = \"f\"\n[filter_keys]\napply = \"ctrl-j\"\n[export_keys]\nrun = \"F10\"\nnope = \"x\"\n[edit_keys]\nsave = 3\n",
            Path::new("/c.toml"),
        );
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("export_keys.nope: unknown action"))
        );
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("edit_keys.save: expected"))
        );
        let f = KeyEvent::new(KeyCode::Char('f'), KeyModifiers::NONE);
        assert_eq!(c.keymap.action(&f), Some(Action::Filter));
        let j = KeyEvent::new(KeyCode::Char('j'), KeyModifiers::CONTROL);
        assert_eq!(
            c.keymap.action_in(KeyMode::Filter, &j),
            Some(Action::FilterApply)
        );
        let f10 = KeyEvent::new(KeyCode::F(10), KeyModifiers::NONE);
        assert_eq!(
            c.keymap.action_in(KeyMode::Export, &f10),
            Some(Action::ExportRun)
        );
        // Untouched: edit still saves with ctrl-s, normal `j` still moves.
        let s = KeyEvent::new(KeyCode::Char('s'), KeyModifiers::CONTROL);
        assert_eq!(
            c.keymap.action_in(KeyMode::Edit, &s),
            Some(Action::EditSave)
        );
        let jj = KeyEvent::new(KeyCode::Char('j'), KeyModifiers::NONE);
        assert_eq!(c.keymap.action(&jj), Some(Action::Down));
    }
}
