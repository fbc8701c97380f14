//! Themes: colors read from TOML (`themes/*.toml`; built-ins compiled in).

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;
use std::str::FromStr;

/// Built-in themes: (name, TOML text).
pub const BUILTIN: &[(&str, &str)] = &[
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
];

/// Resolved colors used by the views.
#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    pub name: String,
    pub fg: Color,
    pub bg: Color,
    pub muted: Color,
    pub border: Color,
    pub border_focused: Color,
    pub title: Color,
    pub selected_fg: Color,
    pub selected_bg: Color,
    pub accept: Color,
    pub reject: Color,
    pub pending: Color,
    pub warn: Color,
    pub error: Color,
    pub accent: Color,
    pub bar: Color,
    pub target: Color,
    pub status_fg: Color,
    pub status_bg: Color,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTheme {
    name: Option<String>,
    fg: String,
    bg: String,
    muted: String,
    border: String,
    border_focused: String,
    title: String,
    selected_fg: String,
    selected_bg: String,
    accept: String,
    reject: String,
    pending: String,
    warn: String,
    error: String,
    accent: String,
    bar: String,
    target: String,
    status_fg: String,
    status_bg: String,
}

impl Default for Theme {
    fn default() -> Self {
        Theme::builtin("dark").expect("built-in dark theme parses")
    }
}

impl Theme {
    /// A built-in theme by name.
    pub fn builtin(name: &str) -> Option<Theme> {
        BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, text)| Theme::parse(n, text).expect("built-in themes parse"))
    }

    /// Parse theme TOML; errors name the offending key.
    pub fn parse(default_name: &str, text: &str) -> Result<Theme, String> {
        let raw: RawTheme = toml::from_str(text).map_err(|e| e.message().to_string())?;
        let c = |key: &str, v: &str| -> Result<Color, String> {
            Color::from_str(v).map_err(|_| format!("{key}: unknown color '{v}'"))
        };
        Ok(Theme {
            name: raw.name.unwrap_or_else(|| default_name.to_string()),
            fg: c("fg", &raw.fg)?,
            bg: c("bg", &raw.bg)?,
            muted: c("muted", &raw.muted)?,
            border: c("border", &raw.border)?,
            border_focused: c("border_focused", &raw.border_focused)?,
            title: c("title", &raw.title)?,
            selected_fg: c("selected_fg", &raw.selected_fg)?,
            selected_bg: c("selected_bg", &raw.selected_bg)?,
            accept: c("accept", &raw.accept)?,
            reject: c("reject", &raw.reject)?,
            pending: c("pending", &raw.pending)?,
            warn: c("warn", &raw.warn)?,
            error: c("error", &raw.error)?,
            accent: c("accent", &raw.accent)?,
            bar: c("bar", &raw.bar)?,
            target: c("target", &raw.target)?,
            status_fg: c("status_fg", &raw.status_fg)?,
            status_bg: c("status_bg", &raw.status_bg)?,
        })
    }

    pub fn base(&self) -> Style {
        Style::default().fg(self.fg).bg(self.bg)
    }
    pub fn muted(&self) -> Style {
        Style::default().fg(self.muted)
    }
    pub fn selected(&self) -> Style {
        Style::default()
            .fg(self.selected_fg)
            .bg(self.selected_bg)
            .add_modifier(Modifier::BOLD)
    }
    pub fn border(&self, focused: bool) -> Style {
        Style::default().fg(if focused {
            self.border_focused
        } else {
            self.border
        })
    }
    pub fn status_line(&self) -> Style {
        Style::default().fg(self.status_fg).bg(self.status_bg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse_and_errors_name_the_key() {
        for (n, _) in BUILTIN {
            assert_eq!(Theme::builtin(n).unwrap().name, *n);
        }
        let bad = BUILTIN[0]
            .1
            .replace("accept = \"green\"", "accept = \"greenish\"");
        let err = Theme::parse("x", &bad).unwrap_err();
        assert!(err.contains("accept") && err.contains("greenish"), "{err}");
    }
}
