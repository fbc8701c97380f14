//! The review filter shared by the TUI's `/` and `straddle review
//! --accept-all/--reject-all --filter`: `class:X status:Y agree:yes|no|none
//! actor:auto|person` plus free text.

use crate::domain::{Class, SampleState, Status};

/// Agreement filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agree {
    Yes,
    No,
    /// No parsable verdict yet.
    None,
}

/// Who made a sample's current decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorFilter {
    /// The pipeline (dedup, denoiser, rules `loop` runs).
    Auto,
    /// The person (a key or a bulk rule).
    Person,
}

impl ActorFilter {
    /// Whether a sample's current decision is this actor's (an undecided
    /// sample is neither's).
    pub fn matches(self, s: &SampleState) -> bool {
        s.decision()
            .is_some_and(|d| d.by.is_person() == (self == ActorFilter::Person))
    }
}

/// A parsed `/` filter: `class:X status:Y agree:yes|no|none` plus free
/// text (case-insensitive substring). All given parts must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub raw: String,
    pub class: Option<String>,
    pub status: Option<Status>,
    pub agree: Option<Agree>,
    pub actor: Option<ActorFilter>,
    /// Lower-cased words that must all occur in the text.
    pub words: Vec<String>,
}

impl Filter {
    /// Parse filter text; class names are matched case-insensitively.
    pub fn parse(text: &str, classes: &[Class]) -> Result<Filter, String> {
        let mut f = Filter {
            raw: text.trim().to_string(),
            ..Filter::default()
        };
        for tok in text.split_whitespace() {
            match tok.split_once(':') {
                Some(("class" | "c", v)) => {
                    let c = classes
                        .iter()
                        .find(|c| c.name.eq_ignore_ascii_case(v))
                        .ok_or_else(|| {
                            let names: Vec<&str> =
                                classes.iter().map(|c| c.name.as_str()).collect();
                            format!("no class '{v}' (classes: {})", names.join(", "))
                        })?;
                    f.class = Some(c.name.clone());
                }
                Some(("status" | "s", v)) => {
                    f.status = Some(match v {
                        "pending" | "p" => Status::Pending,
                        "accepted" | "a" => Status::Accepted,
                        "rejected" | "r" => Status::Rejected,
                        _ => {
                            return Err(format!(
                                "status must be pending, accepted or rejected, not '{v}'"
                            ));
                        }
                    })
                }
                Some(("agree" | "ag", v)) => {
                    f.agree = Some(match v {
                        "yes" | "y" => Agree::Yes,
                        "no" | "n" => Agree::No,
                        "none" => Agree::None,
                        _ => return Err(format!("agree must be yes, no or none, not '{v}'")),
                    })
                }
                Some(("actor" | "by", v)) => {
                    f.actor = Some(match v {
                        "auto" => ActorFilter::Auto,
                        "person" | "me" => ActorFilter::Person,
                        _ => return Err(format!("actor must be auto or person, not '{v}'")),
                    })
                }
                _ => f.words.push(tok.to_lowercase()),
            }
        }
        Ok(f)
    }

    pub fn is_empty(&self) -> bool {
        self.class.is_none()
            && self.status.is_none()
            && self.agree.is_none()
            && self.actor.is_none()
            && self.words.is_empty()
    }

    /// Whether a sample passes (class = effective label).
    pub fn matches(&self, s: &SampleState, take_relabel: bool) -> bool {
        if let Some(c) = &self.class
            && s.effective_label(take_relabel) != c
        {
            return false;
        }
        if let Some(st) = self.status
            && s.status() != st
        {
            return false;
        }
        if let Some(a) = self.agree {
            let ok = matches!(
                (a, s.agrees()),
                (Agree::Yes, Some(true)) | (Agree::No, Some(false)) | (Agree::None, None)
            );
            if !ok {
                return false;
            }
        }
        if let Some(a) = self.actor
            && !a.matches(s)
        {
            return false;
        }
        if !self.words.is_empty() {
            let t = s.text().to_lowercase();
            return self.words.iter().all(|w| t.contains(w.as_str()));
        }
        true
    }
}
