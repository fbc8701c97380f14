//! `update`: the pure heart of the TUI. It turns a message into a new state
//! plus effects for the runtime; it never does I/O.

use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::layout::{Position, Rect};
use ratatui_textarea::TextArea;

use crate::domain::{
    Actor, AttributeWeightChanged, Decided, Decision, DecisionKind, Edited, EventKind,
    GenerationSettings, RelabelPolicyChanged, SampleId, SettingsChanged, Status, Strategy, Undone,
    WeightChanged,
};

use super::keymap::{Action, Input, KeySpec};
use super::queue::Filter;
use super::state::{
    Backoff, Control, Effect, EngineStatus, ExportForm, MAX_STREAMS, Mode, Msg, Pane, STREAM_TAIL,
    State, StreamMsg, StreamRow, StreamState,
};
use super::view;
use super::{map, s3};

/// Handle one message. Returns what the runtime must do.
pub fn update(st: &mut State, msg: Msg) -> Vec<Effect> {
    let (notice, error) = (st.notice.clone(), st.last_error.clone());
    let fx = update_inner(st, msg);
    // Which of the two messages is newer decides which one shows.
    if st.notice.is_some() && st.notice != notice {
        st.notice_newer = true;
    } else if st.last_error.is_some() && st.last_error != error {
        st.notice_newer = false;
    }
    fx
}

fn update_inner(st: &mut State, msg: Msg) -> Vec<Effect> {
    let mut fx = Vec::new();
    match msg {
        Msg::Key(k) => {
            if k.kind == KeyEventKind::Release {
                return fx;
            }
            st.dirty = true;
            on_key(st, k, &mut fx);
        }
        Msg::Mouse(m) => on_mouse(st, m),
        Msg::Paste(text) => on_paste(st, &text),
        Msg::Resize(w, h) => {
            st.size = (w, h);
            st.dirty = true;
        }
        Msg::Appended(events) => {
            st.apply_events(&events);
            s3::after_append(st, &mut fx);
            map::after_append(st, &mut fx);
            super::chosen::after_append(st, &events, &mut fx);
        }
        Msg::AppendFailed(e) => {
            st.pending_select = None;
            st.last_error = Some(format!("journal write failed, nothing recorded: {e}"));
            st.dirty = true;
        }
        Msg::Stream(s) => on_stream(st, s),
        Msg::Backoff(b) => on_backoff(st, b),
        Msg::Tick => st.dirty = true,
        Msg::Engine(e) => {
            if let EngineStatus::Blocked(m) = &e {
                st.last_error = Some(m.clone());
            }
            st.engine = e;
            st.dirty = true;
        }
        Msg::Limit(l) => {
            st.limit = Some(l);
            st.dirty = true;
        }
        Msg::Usage { usage, req_per_s } => {
            st.live_usage = usage;
            st.req_per_s = req_per_s;
            st.dirty = true;
        }
        Msg::Exported(Ok(message)) => {
            st.notice = Some(message);
            st.dirty = true;
        }
        Msg::Exported(Err(e)) => {
            st.last_error = Some(format!("export failed: {e}"));
            st.dirty = true;
        }
        Msg::Error(e) => {
            st.last_error = Some(e);
            st.dirty = true;
        }
        Msg::Notice(n) => {
            st.notice = Some(n);
            st.dirty = true;
        }
        Msg::TargetReached(target) => {
            // A goal, not a wall: `g` continues past it, `+` on the
            // Controls pane's target row (selected now) raises it.
            st.control_sel = Control::ALL
                .iter()
                .position(|c| *c == Control::Target)
                .unwrap_or(0);
            st.notice = Some(format!(
                "target of {target} examples reached (accepted + pending): {} continues past it · {} on Controls › target raises it",
                st.keymap.hint(Action::ToggleGeneration),
                st.keymap.hint(Action::Increase)
            ));
            st.dirty = true;
        }
        Msg::RoundDone(r) => {
            s3::on_round_done(st, r, &mut fx);
            st.dirty = true;
        }
        Msg::Signals(r) => {
            s3::on_signals(st, r);
            st.dirty = true;
        }
        Msg::Map(r) => map::on_reply(st, r, &mut fx),
        Msg::Opened => super::chosen::request(st, &mut fx),
        Msg::JudgesMeasured(r) => super::chosen::on_measured(st, r, &mut fx),
        Msg::Gate(r) => super::export_form::on_gate(st, r),
    }
    fix_scroll(st);
    fx
}

/// A key: looked up in the keymap of the current mode ([`Keymap::input`]),
/// so what the help screen and hint lines show is what runs.
///
/// [`Keymap::input`]: super::keymap::Keymap::input
fn on_key(st: &mut State, k: KeyEvent, fx: &mut Vec<Effect>) {
    // A text field of the export form takes printable keys before the
    // form's bindings (`-`, `+` and space are part of a path there).
    if let Mode::Export(form) = &mut st.mode
        && form.current().takes_text()
    {
        let plain = !k
            .modifiers
            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT);
        match k.code {
            KeyCode::Char(c) if plain => return form.current().type_char(&mut form.req, Some(c)),
            KeyCode::Backspace => return form.current().type_char(&mut form.req, None),
            _ => {}
        }
    }
    match st.keymap.input(st.mode.key_mode(), &k) {
        Input::Act(a) => {
            let label = KeySpec::from_event(&k).label();
            act(st, a, &label, fx);
        }
        Input::Text => on_text(st, k),
        Input::Ignore => {}
    }
}

/// A key no binding of the mode took, in a mode that takes text.
fn on_text(st: &mut State, k: KeyEvent) {
    match &mut st.mode {
        Mode::Filter { input, error } => match k.code {
            KeyCode::Backspace => {
                input.pop();
                *error = None;
            }
            KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => {
                input.push(c);
                *error = None;
            }
            _ => {}
        },
        Mode::Edit { area, .. } => {
            area.input(k);
        }
        Mode::Normal | Mode::Help | Mode::Confirm { .. } | Mode::Export(_) => {}
    }
}

/// Run an action of the keymap.
fn act(st: &mut State, a: Action, key: &str, fx: &mut Vec<Effect>) {
    match a {
        // The label the row shows is the label recorded, so a verdict
        // arriving later (or a policy switched later) cannot change it.
        Action::Accept => {
            let label = st
                .selected_sample()
                .map(|s| super::chosen::accept_label(st, s).0.to_string());
            decide(st, DecisionKind::Accept, label, key, fx)
        }
        Action::Reject => decide(st, DecisionKind::Reject, None, key, fx),
        Action::Relabel(n) => match st.classes.get(n as usize - 1) {
            Some(c) => {
                let name = c.name.clone();
                decide(st, DecisionKind::Accept, Some(name), key, fx)
            }
            None => st.notice = Some(format!("there is no class {n}")),
        },
        Action::Skip => advance_to_pending(st),
        // The person's last action, whole (a bulk rule is one action);
        // automatic decisions are never undone here (`/ actor:auto`).
        Action::Undo => match st.project.undo_action() {
            Some(u) => {
                st.pending_select = u.events.first().map(|(_, s)| *s);
                st.notice = Some(format!("undid {}", u.what));
                fx.push(Effect::Append(
                    u.events
                        .into_iter()
                        .map(|(event, sample)| EventKind::Undone(Undone { event, sample }))
                        .collect(),
                ));
            }
            None => st.notice = Some("nothing of yours to undo".into()),
        },
        Action::Edit => {
            if let Some(s) = st.edit_target() {
                let lines: Vec<String> = s.text().lines().map(str::to_string).collect();
                let mut area = TextArea::new(if lines.is_empty() {
                    vec![String::new()]
                } else {
                    lines
                });
                area.set_wrap_mode(ratatui_textarea::WrapMode::Word);
                st.mode = Mode::Edit {
                    sample: s.id,
                    area: Box::new(area),
                };
            }
        }
        Action::Filter => {
            st.mode = Mode::Filter {
                input: st.queue.filter().raw.clone(),
                error: None,
            }
        }
        Action::CycleSort => {
            let sel = st.queue.get(st.review_sel);
            st.queue.set_sort(st.queue.sort().next(), &st.project);
            st.follow_selection(sel);
        }
        Action::RunRound => s3::run_round(st, fx),
        Action::Signals => s3::compute_signals(st, fx),
        Action::BulkAccept => confirm_bulk(st, DecisionKind::Accept),
        Action::BulkReject => confirm_bulk(st, DecisionKind::Reject),
        // The status changes when the session answers (`Msg::Engine`).
        Action::ToggleGeneration => fx.push(match st.engine {
            EngineStatus::Idle | EngineStatus::Blocked(_) => Effect::StartGeneration,
            EngineStatus::Running | EngineStatus::Backoff(_) => Effect::PauseGeneration,
            EngineStatus::Paused => Effect::ResumeGeneration,
        }),
        Action::StopGeneration => fx.push(Effect::StopGeneration),
        Action::ToggleTakeRelabel => toggle_take_relabel(st, fx),
        Action::AlphaLowDown => change_settings(st, fx, |g| alpha_end(g, End::Low, -ALPHA_STEP)),
        Action::AlphaLowUp => change_settings(st, fx, |g| alpha_end(g, End::Low, ALPHA_STEP)),
        Action::AlphaHighDown => change_settings(st, fx, |g| alpha_end(g, End::High, -ALPHA_STEP)),
        Action::AlphaHighUp => change_settings(st, fx, |g| alpha_end(g, End::High, ALPHA_STEP)),
        Action::Increase => adjust(st, 1, fx),
        Action::Decrease => adjust(st, -1, fx),
        // The data gate runs as the dialog opens; its answer is shown
        // there before Enter (`Msg::Gate`).
        Action::Export => {
            st.mode = Mode::Export(ExportForm::new());
            fx.push(Effect::CheckGate);
        }
        Action::FocusNext => cycle_focus(st, 1),
        Action::FocusPrev => cycle_focus(st, Pane::ALL.len() - 1),
        Action::Zoom => st.zoom = !st.zoom,
        Action::ToggleMap => map::toggle(st, fx),
        Action::MapPair => map::next_pair(st),
        Action::MapRefit => map::refit(st, fx),
        Action::Up => move_sel(st, -1),
        Action::Down => move_sel(st, 1),
        Action::Right => {
            if st.focus == Pane::Seeds && !st.class_seeds().is_empty() {
                st.seed_sel = Some(st.seed_sel.unwrap_or(0));
            }
        }
        Action::Left => {
            if st.focus == Pane::Seeds {
                st.seed_sel = None;
            }
        }
        Action::PageUp => move_sel(st, -(page(st) as i64)),
        Action::PageDown => move_sel(st, page(st) as i64),
        Action::Top => move_sel(st, i64::MIN / 2),
        Action::Bottom => move_sel(st, i64::MAX / 2),
        Action::Help => {
            st.help_offset = 0;
            st.mode = Mode::Help
        }
        Action::Dismiss => {
            st.last_error = None;
            st.notice = None;
        }
        Action::Quit => {
            st.quit = true;
            fx.push(Effect::Quit);
        }
        Action::HelpUp => st.help_offset = st.help_offset.saturating_sub(1),
        Action::HelpDown => st.help_offset += 1,
        Action::HelpClose | Action::FilterCancel | Action::EditCancel | Action::ExportCancel => {
            st.mode = Mode::Normal
        }
        Action::FilterApply => {
            if let Mode::Filter { input, error } = &mut st.mode {
                match Filter::parse(input, &st.classes) {
                    Ok(f) => {
                        st.mode = Mode::Normal;
                        set_filter(st, f);
                    }
                    Err(e) => *error = Some(e),
                }
            }
        }
        Action::ConfirmYes | Action::ConfirmNo => {
            if let Mode::Confirm { kind, ids } = std::mem::take(&mut st.mode) {
                if a == Action::ConfirmYes {
                    bulk_decide(st, kind, ids, fx);
                } else {
                    st.notice = Some("bulk decision cancelled".into());
                }
            }
        }
        Action::EditSave => save_edit(st, fx),
        Action::FieldPrev | Action::FieldNext => {
            if let Mode::Export(form) = &mut st.mode {
                form.move_field(if a == Action::FieldNext { 1 } else { -1 });
            }
        }
        Action::FieldDecrease | Action::FieldIncrease => {
            if let Mode::Export(form) = &mut st.mode {
                form.current().step(form, a == Action::FieldIncrease);
            }
        }
        Action::ExportRun => {
            // With strict, a gate that says the accepted data makes the
            // held-out score worse refuses (as `export --strict`); the
            // dialog stays open with the reason.
            if let Mode::Export(form) = &st.mode
                && let Some(why) = form.refusal()
            {
                st.last_error = Some(format!("export refused: {}", why.replace('\n', " ")));
                return;
            }
            if let Mode::Export(form) = std::mem::take(&mut st.mode) {
                st.notice = Some(format!("exporting to {} …", form.req.out.display()));
                fx.push(Effect::Export(form.req));
            }
        }
    }
}

fn decide(
    st: &mut State,
    kind: DecisionKind,
    label: Option<String>,
    key: &str,
    fx: &mut Vec<Effect>,
) {
    let Some(s) = st.selected_sample() else {
        st.notice = Some("nothing to review yet".into());
        return;
    };
    let sample = s.id;
    fx.push(Effect::Append(vec![EventKind::Decided(Decided {
        sample,
        decision: Decision {
            kind,
            label: label.map(Into::into),
            reason: None,
            by: Actor::Key(key.into()),
        },
    })]));
    advance_to_pending(st);
}

/// Move the selection to the next pending sample after the current one
/// (stays put when there is none).
fn advance_to_pending(st: &mut State) {
    let ids = st.queue.ids();
    let pending = |i: &usize| {
        st.project
            .sample(ids[*i])
            .is_some_and(|s| s.status() == Status::Pending)
    };
    // After the current row, else from the top (the current row last).
    let next = (st.review_sel + 1..ids.len())
        .chain(0..=st.review_sel.min(ids.len().saturating_sub(1)))
        .find(|i| *i != st.review_sel && pending(i));
    match next {
        Some(i) => st.review_sel = i,
        None => st.review_sel = (st.review_sel + 1).min(ids.len().saturating_sub(1)),
    }
}

fn set_filter(st: &mut State, f: Filter) {
    let sel = st.queue.get(st.review_sel);
    st.queue.set_filter(f, &st.project);
    st.review_sel = 0;
    st.follow_selection(sel);
}

fn confirm_bulk(st: &mut State, kind: DecisionKind) {
    let want = match kind {
        DecisionKind::Accept => Status::Accepted,
        DecisionKind::Reject => Status::Rejected,
    };
    let ids: Vec<SampleId> = st
        .queue
        .ids()
        .iter()
        .copied()
        .filter(|id| st.project.sample(*id).is_some_and(|s| s.status() != want))
        .collect();
    if ids.is_empty() {
        st.notice = Some("nothing in the current filter to change".into());
        return;
    }
    // A rule that acts on the chosen judge's verdicts (a filter on
    // agreement, an accept that takes its labels) refuses when no judge
    // is trusted: only a person can decide, one by one.
    let on_agreement = matches!(
        st.queue.filter().agree,
        Some(crate::augment::filter::Agree::Yes | crate::augment::filter::Agree::No)
    );
    let takes_labels = kind == DecisionKind::Accept
        && st.project.take_relabel
        && ids.iter().any(|id| {
            st.project.sample(*id).is_some_and(|s| {
                s.decision().is_none() && super::chosen::accept_label(st, s).0 != s.label
            })
        });
    if (on_agreement || takes_labels)
        && let Some(why) = super::chosen::distrust(st)
    {
        st.last_error = Some(format!(
            "bulk {} refused: {why}; decide one by one",
            if on_agreement {
                "rule on agreement"
            } else {
                "accept taking the judge's labels"
            }
        ));
        return;
    }
    st.mode = Mode::Confirm { kind, ids };
}

fn bulk_decide(st: &mut State, kind: DecisionKind, ids: Vec<SampleId>, fx: &mut Vec<Effect>) {
    let rule = format!(
        "tui-bulk-{} filter='{}'",
        match kind {
            DecisionKind::Accept => "accept",
            DecisionKind::Reject => "reject",
        },
        st.queue.filter().raw
    );
    let n = ids.len();
    let events = ids
        .into_iter()
        .map(|sample| {
            // An accept records the label each row shows, as `a` does.
            let label = match kind {
                DecisionKind::Accept => st
                    .project
                    .sample(sample)
                    .map(|s| super::chosen::accept_label(st, s).0.to_string()),
                DecisionKind::Reject => None,
            };
            EventKind::Decided(Decided {
                sample,
                decision: Decision {
                    kind,
                    label: label.map(Into::into),
                    reason: None,
                    by: Actor::Rule(rule.as_str().into()),
                },
            })
        })
        .collect();
    st.notice = Some(format!("{n} examples decided in bulk"));
    fx.push(Effect::Append(events));
}

/// Save the editor's text: an `Edited` event when it changed, and a new
/// relabel for a generated example.
fn save_edit(st: &mut State, fx: &mut Vec<Effect>) {
    let Mode::Edit { sample, area } = &st.mode else {
        return;
    };
    let text = area.lines().join("\n").trim().to_string();
    let sample = *sample;
    st.mode = Mode::Normal;
    let changed = st.project.sample(sample).is_some_and(|s| s.text() != text);
    let generated = st
        .project
        .sample(sample)
        .is_some_and(|s| s.origin == crate::domain::Origin::Generated);
    if text.is_empty() {
        st.notice = Some("empty text not saved".into());
    } else if changed {
        fx.push(Effect::Append(vec![EventKind::Edited(Edited {
            sample,
            text,
        })]));
        if generated {
            fx.push(Effect::Relabel(sample));
        }
    }
}

fn on_paste(st: &mut State, text: &str) {
    match &mut st.mode {
        Mode::Edit { area, .. } => {
            area.insert_str(text);
        }
        Mode::Filter { input, .. } => input.push_str(&text.replace(['\n', '\r'], " ")),
        Mode::Normal | Mode::Help | Mode::Confirm { .. } | Mode::Export(_) => return,
    }
    st.dirty = true;
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// How far one key moves an end of the α range.
const ALPHA_STEP: f64 = 0.05;

/// An end of the α range.
#[derive(Clone, Copy)]
enum End {
    Low,
    High,
}

/// The α range as (low, high), a fixed α as a range of width 0.
fn alpha_bounds(g: &GenerationSettings) -> (f64, f64) {
    let (lo, hi) = g.alpha.map_or(g.alpha_range, |a| (a, a));
    (lo.min(hi), lo.max(hi))
}

/// Move one end of the α range by `d` within [0, 1]. The other end moves
/// only when it must to keep low ≤ high, and then only as far as this one
/// went: the range is never collapsed onto one end. A fixed α becomes the
/// range it starts from.
fn alpha_end(g: &mut GenerationSettings, end: End, d: f64) {
    let (mut lo, mut hi) = alpha_bounds(g);
    match end {
        End::Low => {
            lo = round2((lo + d).clamp(0.0, 1.0));
            hi = hi.max(lo);
        }
        End::High => {
            hi = round2((hi + d).clamp(0.0, 1.0));
            lo = lo.min(hi);
        }
    }
    g.alpha = None;
    g.alpha_range = (lo, hi);
}

/// The Controls pane's α row: `+` widens the range by a step at each end,
/// `-` narrows it by a step at each end (down to its middle, never past).
fn alpha_width(g: &mut GenerationSettings, dir: f64) {
    let (lo, hi) = alpha_bounds(g);
    let (mut nlo, mut nhi) = (
        round2((lo - ALPHA_STEP * dir).clamp(0.0, 1.0)),
        round2((hi + ALPHA_STEP * dir).clamp(0.0, 1.0)),
    );
    if nlo > nhi {
        let mid = round2((lo + hi) / 2.0);
        (nlo, nhi) = (mid, mid);
    }
    g.alpha = None;
    g.alpha_range = (nlo, nhi);
}

/// Change generation settings: journal them. The Controls pane and the
/// generation session take them from the acknowledged event.
fn change_settings(st: &mut State, fx: &mut Vec<Effect>, f: impl FnOnce(&mut GenerationSettings)) {
    let mut g = st.settings.clone();
    f(&mut g);
    if g == st.settings {
        return;
    }
    fx.push(Effect::Append(vec![EventKind::SettingsChanged(
        SettingsChanged { generation: g },
    )]));
}

/// `+` / `-`: the selected control when Controls has focus, else the
/// weight of the selected class.
fn adjust(st: &mut State, dir: i64, fx: &mut Vec<Effect>) {
    let d = dir as f64;
    if st.focus != Pane::Controls {
        let Some(c) = st.classes.get(st.class_sel) else {
            return;
        };
        let w = round2((c.weight + 0.25 * d).clamp(0.0, 100.0));
        if w == c.weight {
            return;
        }
        // Shown (and used by the session) once acknowledged.
        let class = c.name.clone();
        fx.push(Effect::Append(vec![EventKind::WeightChanged(
            WeightChanged { class, weight: w },
        )]));
        return;
    }
    if let Some(&(attribute, value)) = st
        .attribute_rows()
        .get(st.control_sel.wrapping_sub(Control::ALL.len()))
    {
        // An attribute value's weight, like a class weight: journaled,
        // then shown and used by the session once acknowledged.
        let old = st.project.attribute_weight(attribute, value);
        let w = round2((old + 0.25 * d).clamp(0.0, 100.0));
        if w != old {
            fx.push(Effect::Append(vec![EventKind::AttributeWeightChanged(
                AttributeWeightChanged {
                    attribute: attribute.to_string(),
                    value: value.to_string(),
                    weight: w,
                },
            )]));
        }
        return;
    }
    let has_attributes = !st.attributes.is_empty();
    match Control::ALL[st.control_sel.min(Control::ALL.len() - 1)] {
        // Only the strategies that plan from the settings: `extrapolate`
        // runs from an S3 round (R); `attributes` only when the project
        // declares attribute dimensions.
        Control::Strategy => change_settings(st, fx, |g| {
            let s: Vec<Strategy> = crate::augment::strategy::from_settings()
                .filter(|s| has_attributes || *s != Strategy::Attributes)
                .collect();
            let i = s.iter().position(|s| *s == g.strategy).unwrap_or(0) as i64;
            g.strategy = s[(i + dir).rem_euclid(s.len() as i64) as usize];
        }),
        Control::Alpha => change_settings(st, fx, |g| alpha_width(g, d)),
        Control::Temperature => change_settings(st, fx, |g| {
            g.temperature = round2((g.temperature + 0.1 * d).clamp(0.0, 2.0))
        }),
        Control::Target => change_settings(st, fx, |g| {
            g.target_count = g.target_count.saturating_add_signed(10 * dir as isize)
        }),
        Control::PerRequest => change_settings(st, fx, |g| {
            g.per_request = g
                .per_request
                .saturating_add_signed(dir as isize)
                .clamp(1, 50)
        }),
        Control::TakeRelabel => toggle_take_relabel(st, fx),
        Control::Concurrency => {
            let c = st
                .concurrency
                .saturating_add_signed(dir as isize)
                .clamp(1, 256);
            if c != st.concurrency {
                st.concurrency = c;
                fx.push(Effect::SetConcurrency(c));
                // Saved to the project, so a restart keeps it.
                fx.push(Effect::Append(vec![EventKind::ConcurrencyChanged(
                    crate::domain::ConcurrencyChanged { concurrency: c },
                )]));
            }
        }
    }
}

/// Journal the opposite `take_relabel`; the labels shown, the counts and
/// the queue follow once it is acknowledged.
fn toggle_take_relabel(st: &mut State, fx: &mut Vec<Effect>) {
    let take_relabel = !st.project.take_relabel;
    st.notice = Some(if take_relabel {
        match super::chosen::judge(st) {
            crate::app::judges::RELABEL => {
                "take_relabel on: a records the LLM's label where it differs (↻)".into()
            }
            j => format!("take_relabel on: a records the {j} judge's label where it differs (↻)"),
        }
    } else {
        "take_relabel off: a records the intended label".into()
    });
    fx.push(Effect::Append(vec![EventKind::RelabelPolicyChanged(
        RelabelPolicyChanged { take_relabel },
    )]));
}

fn cycle_focus(st: &mut State, step: usize) {
    let mut i = Pane::ALL.iter().position(|p| *p == st.focus).unwrap_or(0);
    // Panes not on screen (a hidden map) are skipped.
    for _ in 0..Pane::ALL.len() {
        i = (i + step) % Pane::ALL.len();
        if st.pane_shown(Pane::ALL[i]) {
            break;
        }
    }
    st.focus = Pane::ALL[i];
}

/// Rows a page-up/down moves in the review list.
fn page(st: &State) -> usize {
    let area = Rect::new(0, 0, st.size.0, st.size.1);
    let layout = view::screen_layout(st, area);
    layout
        .pane(Pane::Review)
        .map(|r| view::review_parts(r).0.height as usize)
        .unwrap_or(10)
        .max(1)
}

fn step(cur: usize, delta: i64, len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    (cur as i64).saturating_add(delta).clamp(0, len as i64 - 1) as usize
}

fn move_sel(st: &mut State, delta: i64) {
    match st.focus {
        // The map follows the review selection.
        Pane::Review | Pane::Stats | Pane::Map => {
            st.review_sel = step(st.review_sel, delta, st.queue.len())
        }
        Pane::Seeds => match st.seed_sel {
            Some(i) => st.seed_sel = Some(step(i, delta, st.class_seeds().len())),
            None => st.class_sel = step(st.class_sel, delta, st.classes.len()),
        },
        Pane::Controls => st.control_sel = step(st.control_sel, delta, st.control_rows()),
        Pane::Streams => st.stream_offset = step(st.stream_offset, delta, st.streams.len()),
    }
}

/// Keep the review selection inside the visible window.
fn fix_scroll(st: &mut State) {
    let area = Rect::new(0, 0, st.size.0, st.size.1);
    let h = view::screen_layout(st, area)
        .pane(Pane::Review)
        .map(|r| view::review_parts(r).0.height as usize)
        .unwrap_or(0)
        .max(1);
    if st.review_sel < st.review_offset {
        st.review_offset = st.review_sel;
    } else if st.review_sel >= st.review_offset + h {
        st.review_offset = st.review_sel + 1 - h;
    }
    st.review_offset = st.review_offset.min(st.queue.len().saturating_sub(1));
}

fn on_mouse(st: &mut State, m: MouseEvent) {
    let area = Rect::new(0, 0, st.size.0, st.size.1);
    let layout = view::screen_layout(st, area);
    let pos = Position::new(m.column, m.row);
    let wheel = match m.kind {
        MouseEventKind::ScrollUp => -3,
        MouseEventKind::ScrollDown => 3,
        MouseEventKind::Down(MouseButton::Left) => 0,
        _ => return,
    };
    st.dirty = true;
    if let Mode::Help = st.mode {
        st.help_offset = step(st.help_offset, wheel, 200);
        return;
    }
    if !matches!(st.mode, Mode::Normal) {
        return;
    }
    if wheel == 0
        && let Some(p) = layout.tab_at(pos)
    {
        st.focus = p;
        return;
    }
    let Some((pane, rect)) = layout.panes.iter().find(|(_, r)| r.contains(pos)).copied() else {
        return;
    };
    if wheel != 0 {
        let prev = st.focus;
        st.focus = pane;
        move_sel(st, wheel);
        st.focus = prev;
        return;
    }
    st.focus = pane;
    let row =
        |inner: Rect| -> Option<usize> { inner.contains(pos).then(|| (pos.y - inner.y) as usize) };
    match pane {
        Pane::Review => {
            if let Some(r) = row(view::review_parts(rect).0) {
                let i = st.review_offset + r;
                if i < st.queue.len() {
                    st.review_sel = i;
                }
            }
        }
        Pane::Seeds => {
            if let Some(r) = row(view::seeds_parts(rect, st.classes.len()).0)
                && r < st.classes.len()
            {
                st.class_sel = r;
            }
        }
        Pane::Controls => {
            if let Some(r) = row(view::inner(rect))
                && r < st.control_rows()
            {
                st.control_sel = r;
            }
        }
        Pane::Streams | Pane::Stats | Pane::Map => {}
    }
}

/// A retry is pending: its row counts down, and the status line shows it
/// unless generation is paused or stopped (requests already out may still
/// fail and wait then).
fn on_backoff(st: &mut State, b: Backoff) {
    st.dirty = true;
    if let Some(r) = st.streams.iter_mut().find(|r| r.job == b.job) {
        r.retry_at = Some(b.until);
    }
    if matches!(st.engine, EngineStatus::Running | EngineStatus::Backoff(_)) {
        st.engine = EngineStatus::Backoff(b);
    }
}

/// Requests are moving again: a backoff shown in the status line is over.
fn end_backoff(st: &mut State) {
    if let EngineStatus::Backoff(_) = st.engine {
        st.engine = EngineStatus::Running;
    }
}

fn on_stream(st: &mut State, m: StreamMsg) {
    st.dirty = true;
    match m {
        StreamMsg::Started {
            job,
            kind,
            classes,
            alpha,
            settings,
        } => {
            end_backoff(st);
            if let Some(r) = st.streams.iter_mut().find(|r| r.job == job) {
                // A retry: the text starts over.
                r.text.clear();
                r.chars = 0;
                r.state = StreamState::Running;
                r.retry_at = None;
                return;
            }
            st.streams.push_front(StreamRow {
                job,
                kind,
                classes,
                alpha,
                text: String::new(),
                chars: 0,
                state: StreamState::Running,
                retry_at: None,
                settings,
            });
            while st.streams.len() > MAX_STREAMS {
                match st
                    .streams
                    .iter()
                    .rposition(|r| r.state != StreamState::Running)
                {
                    Some(i) => {
                        st.streams.remove(i);
                    }
                    None => break,
                }
            }
        }
        StreamMsg::Delta { job, text } => {
            if let Some(r) = st.streams.iter_mut().find(|r| r.job == job) {
                r.chars = text.chars().count();
                let mut cut = text.len().saturating_sub(STREAM_TAIL);
                while !text.is_char_boundary(cut) {
                    cut += 1;
                }
                r.text = text[cut..].to_string();
            }
        }
        StreamMsg::Finished { job } => {
            end_backoff(st);
            set_stream(st, job, StreamState::Finished)
        }
        StreamMsg::Failed { job, reason } => set_stream(st, job, StreamState::Failed(reason)),
        StreamMsg::SettingsVersion(v) => st.settings_version = v,
    }
}

fn set_stream(st: &mut State, job: u64, s: StreamState) {
    if let Some(r) = st.streams.iter_mut().find(|r| r.job == job) {
        r.state = s;
        r.retry_at = None;
    }
}
