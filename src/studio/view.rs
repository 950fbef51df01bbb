//! Drawing the studio: a pure function of the [`App`] (plus the encoded preview image,
//! cached in [`ViewState`] so it is re-encoded only when the picture or the area changes).
//!
//! A GAN sketch (or a followed run):
//!
//! ```text
//! ┌ Sketches ──────┐┌ Preview · gan_truchet · samples · step 100 ──────────┐
//! │▸ gan_truchet ● ││                (the image, aspect kept)              │
//! ├ Run ───────────┤┌ Losses ──────────────────┐┌ Log ─────────────────────┐
//! └────────────────┘└──────────────────────────┘└──────────────────────────┘
//!  ↑↓ select  s save  f full  t train  p pause  x stop  r raw  ? help  q quit
//! ```
//!
//! A Truchet or CPPN sketch: the preview takes the height, knobs (if any) under the list.
//!
//! ```text
//! ┌ Sketches ──────┐┌ Preview · truchet_knobs · seed 7 · 512x512 ──────────┐
//! │▸ truchet_knobs ││                (the image, aspect kept)              │
//! ├ Knobs ─────────┤│                                                      │
//! │▸ tile  33 ━━── │├ Log ─────────────────────────────────────────────────┤
//! └────────────────┘└──────────────────────────────────────────────────────┘
//!  ↑↓ select  s save  n seed  [] knob  -= turn  f full  ? help  q quit
//! ```

use image::DynamicImage;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Chart, Clear, Dataset, GraphType, List, ListItem, ListState, Paragraph, Wrap,
};
use ratatui::Frame;
use ratatui_image::picker::Picker;
use ratatui_image::protocol::StatefulProtocol;
use ratatui_image::{Resize, StatefulImage};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use super::app::{App, Confirm, Level, Mode};
use super::keys;
use super::worker::{self, FitKey, FitRequest, FittedSlot};
use crate::run::summary::Liveness;
use crate::run::{Metric, State};
use crate::spec::Kind;

/// Below this the layout cannot hold its panels; the studio says so instead.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 18;

const ACCENT: Color = Color::Cyan;
const D_COLOR: Color = Color::Cyan;
const G_COLOR: Color = Color::Magenta;

/// The preview image, fitted to its area and encoded for the terminal's graphics
/// protocol.
pub struct ViewState {
    picker: Picker,
    /// The preview's picture, fitted and encoded, with what it was fitted for.
    image: Option<(FitKey, StatefulProtocol)>,
    /// The grid's nine pictures, fitted and encoded, with what they were fitted for.
    cells: Option<(FitKey, Vec<StatefulProtocol>)>,
    /// Where pictures are fitted off the UI thread; without one (tests), they are
    /// fitted as they are drawn.
    fitter: Option<Fitter>,
}

struct Fitter {
    requests: Sender<FitRequest>,
    fitted: FittedSlot,
    /// The last fit asked for, so each is asked once.
    asked: Option<FitKey>,
}

impl ViewState {
    pub fn new(picker: Picker) -> Self {
        ViewState {
            picker,
            image: None,
            cells: None,
            fitter: None,
        }
    }

    /// Fits preview pictures on the fitter thread of [`worker::spawn_fitter`].
    pub fn with_fitter(
        picker: Picker,
        (requests, fitted): (Sender<FitRequest>, FittedSlot),
    ) -> Self {
        ViewState {
            fitter: Some(Fitter {
                requests,
                fitted,
                asked: None,
            }),
            ..ViewState::new(picker)
        }
    }

    /// The pixels an area of cells holds at the terminal's cell size.
    fn pixel_box(&self, area: Rect) -> (u32, u32) {
        let cell = self.picker.font_size();
        (
            u32::from(area.width) * u32::from(cell.width),
            u32::from(area.height) * u32::from(cell.height),
        )
    }

    /// `images` fitted as `key` says: at once without a fitter, else when the fitter
    /// has done them (`None` until then; each key is asked for once).
    fn fitted(
        &mut self,
        key: FitKey,
        images: Vec<(Arc<DynamicImage>, (u32, u32))>,
    ) -> Option<Vec<DynamicImage>> {
        let Some(fitter) = &mut self.fitter else {
            return Some(
                images
                    .iter()
                    .map(|(img, box_px)| worker::fit_for_display(img, *box_px))
                    .collect(),
            );
        };
        let mut slot = fitter.fitted.lock().expect("fitted slot");
        match slot.take() {
            Some((k, fitted)) if k == key => return Some(fitted),
            other => *slot = other,
        }
        if fitter.asked != Some(key) {
            fitter.asked = Some(key);
            let _ = fitter.requests.send(FitRequest { key, images });
        }
        None
    }

    /// The preview picture fitted to `box_px`, encoded; `None` while the fitter works
    /// on it and nothing drawn before fits the area as it is.
    fn preview_protocol(
        &mut self,
        serial: u64,
        image: &Arc<DynamicImage>,
        box_px: (u32, u32),
    ) -> Option<&mut StatefulProtocol> {
        let key = FitKey {
            grid: false,
            serial,
            box_px,
        };
        if self.image.as_ref().is_none_or(|(k, _)| *k != key) {
            match self.fitted(key, vec![(image.clone(), box_px)]) {
                Some(mut fitted) => {
                    let img = fitted.pop()?;
                    self.image = Some((key, self.picker.new_resize_protocol(img)));
                }
                // The previous picture stays on screen meanwhile, where it fits as it is
                // (scaling it here is what the fitter is for).
                None if self.image.as_ref().is_some_and(|(k, _)| k.box_px == box_px) => {}
                None => return None,
            }
        }
        self.image.as_mut().map(|(_, proto)| proto)
    }

    /// The grid's pictures, each fitted to its cell (`cells`, in order), encoded; as for
    /// the preview, the previous grid stays meanwhile where it fits. `area` is the whole
    /// grid's.
    fn grid_protocols(
        &mut self,
        serial: u64,
        images: &[Arc<DynamicImage>],
        cells: &[Rect],
        area: Rect,
    ) -> Option<&mut Vec<StatefulProtocol>> {
        let box_px = self.pixel_box(area);
        let key = FitKey {
            grid: true,
            serial,
            box_px,
        };
        if self.cells.as_ref().is_none_or(|(k, _)| *k != key) {
            let jobs = images
                .iter()
                .zip(cells)
                .map(|(img, cell)| (img.clone(), self.pixel_box(*cell)))
                .collect();
            match self.fitted(key, jobs) {
                Some(fitted) => {
                    let protos = fitted
                        .into_iter()
                        .map(|img| self.picker.new_resize_protocol(img))
                        .collect();
                    self.cells = Some((key, protos));
                }
                None if self.cells.as_ref().is_some_and(|(k, _)| k.box_px == box_px) => {}
                None => return None,
            }
        }
        self.cells.as_mut().map(|(_, protos)| protos)
    }
}

pub fn draw(frame: &mut Frame, app: &App, state: &mut ViewState) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        draw_too_small(frame, area);
        return;
    }
    let [main, footer] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(area);
    draw_footer(frame, app, footer);
    if app.fullscreen {
        draw_preview(frame, app, state, main);
    } else if shows_run_panels(app) {
        let bottom_height = (area.height / 3).clamp(7, 16);
        let [top, bottom] =
            Layout::vertical([Constraint::Min(6), Constraint::Length(bottom_height)]).areas(main);
        let left_width = (area.width / 4).clamp(22, 34);
        let [list_area, preview_area] =
            Layout::horizontal([Constraint::Length(left_width), Constraint::Min(10)]).areas(top);
        let [run_area, rest] =
            Layout::horizontal([Constraint::Length(left_width), Constraint::Min(10)]).areas(bottom);
        let [chart_area, log_area] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(rest);
        // A conditional run's newest per-class figures, in a row under the chart.
        let classes = newest_classes(app);
        let rows = classes.map_or(0, |(_, c)| class_lines(c, chart_area.width) + 2);
        let [chart_area, classes_area] =
            Layout::vertical([Constraint::Min(4), Constraint::Length(rows)]).areas(chart_area);
        draw_list(frame, app, list_area);
        draw_preview(frame, app, state, preview_area);
        draw_run(frame, app, run_area);
        draw_chart(frame, app, chart_area);
        if let Some((step, classes)) = classes {
            draw_classes(frame, step, classes, classes_area);
        }
        draw_log(frame, app, log_area);
    } else {
        // A picture sketch: no empty run and loss panels; the preview takes the height,
        // the log a strip under it, and the knobs (if any) sit under the list.
        let left_width = (area.width / 4).clamp(22, 34);
        let [left, right] =
            Layout::horizontal([Constraint::Length(left_width), Constraint::Min(10)]).areas(main);
        let knobs = app.knob_values();
        let knob_height = knobs.as_ref().map_or(0, |(p, _)| p.0.len() as u16 + 2);
        let [list_area, knob_area] =
            Layout::vertical([Constraint::Min(3), Constraint::Length(knob_height)]).areas(left);
        let log_height = (area.height / 5).clamp(4, 8);
        let [preview_area, log_area] =
            Layout::vertical([Constraint::Min(6), Constraint::Length(log_height)]).areas(right);
        draw_list(frame, app, list_area);
        if let Some((params, values)) = knobs {
            draw_knobs(frame, app, params, &values, knob_area);
        }
        draw_preview(frame, app, state, preview_area);
        draw_log(frame, app, log_area);
    }
    if app.help {
        draw_help(frame, app, area);
    }
    if let Some(text) = &app.prompt {
        draw_prompt(frame, text, area);
    }
    if let Some(confirm) = &app.confirm {
        draw_confirm(frame, confirm, area);
    }
}

/// The run, loss and SWD panels are for GAN sketches (and a followed run); a Truchet or
/// CPPN sketch gets the room for its picture instead.
pub fn shows_run_panels(app: &App) -> bool {
    match app.mode {
        Mode::Watch { .. } => true,
        Mode::Studio { .. } => app.run.is_some() || app.selected_kind() == Some(Kind::Gan),
    }
}

/// One line per knob: name, value (highlighted when it differs from the file's
/// default) and, where there is room, a bar of where it sits in its range.
fn draw_knobs(
    frame: &mut Frame,
    app: &App,
    params: &crate::sketch::Params,
    values: &crate::sketch::Knobs,
    area: Rect,
) {
    let block = block(" Knobs ".into());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = inner.width as usize;
    let selected = app.knob.min(params.0.len().saturating_sub(1));
    let name_width = params
        .0
        .iter()
        .map(|p| p.name.chars().count())
        .max()
        .unwrap_or(0)
        .min(width / 3);
    // More knobs than rows: scroll so the selected one stays in view.
    let first = (selected + 1).saturating_sub(inner.height as usize);
    let lines: Vec<Line> = params
        .0
        .iter()
        .enumerate()
        .skip(first)
        .map(|(i, p)| {
            let value = values.get(&p.name).copied().unwrap_or(p.default);
            let text = knob_text(p, value);
            let name: String = p.name.chars().take(name_width).collect();
            let marker = if i == selected { "▸ " } else { "  " };
            let head = format!("{marker}{name:<name_width$} {text:>6}");
            let bar_width = width.saturating_sub(head.chars().count() + 1);
            let mut style = Style::new();
            if i == selected {
                style = style.fg(ACCENT).add_modifier(Modifier::BOLD);
            }
            let value_style = if value != p.default {
                style.fg(Color::Yellow)
            } else {
                style
            };
            let mut spans = vec![
                Span::styled(format!("{marker}{name:<name_width$} "), style),
                Span::styled(format!("{text:>6}"), value_style),
            ];
            if bar_width >= 3 {
                let span = p.max - p.min;
                let at = if span > 0.0 {
                    (value - p.min) / span
                } else {
                    1.0
                };
                let filled = ((at * bar_width as f64).round() as usize).min(bar_width);
                spans.push(Span::raw(" "));
                spans.push(Span::styled("━".repeat(filled), Style::new().fg(ACCENT)));
                spans.push(Span::styled(
                    "─".repeat(bar_width - filled),
                    Style::new().fg(Color::DarkGray),
                ));
            }
            Line::from(spans)
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

/// A knob's value with as many decimals as its fine step needs.
fn knob_text(p: &crate::sketch::Param, value: f64) -> String {
    if p.int {
        return format!("{}", value.round() as i64);
    }
    let step = p.fine_step();
    let decimals = if step > 0.0 {
        (-step.log10()).ceil().clamp(0.0, 4.0) as usize
    } else {
        2
    };
    format!("{value:.decimals$}")
}

/// A preview title shortened to `width` columns before anything is cut: the render time
/// goes first (save→screen includes it), then the word "Preview".
fn fit_title(mut title: String, width: usize) -> String {
    let fits = |t: &str| t.chars().count() <= width;
    if !fits(&title) {
        if let Some(start) = title.find(" · render ") {
            let after = start + " · ".len();
            let end = title[after..]
                .find(" · ")
                .map_or_else(|| title.trim_end().len(), |i| after + i);
            title.replace_range(start..end, "");
        }
    }
    if !fits(&title) {
        if let Some(rest) = title.strip_prefix(" Preview · ") {
            title = format!(" {rest}");
        }
    }
    title
}

fn block(title: String) -> Block<'static> {
    Block::bordered()
        .title(Span::styled(
            title,
            Style::new().add_modifier(Modifier::BOLD),
        ))
        .border_style(Style::new().fg(Color::DarkGray))
}

fn draw_too_small(frame: &mut Frame, area: Rect) {
    let text = vec![
        Line::from("The terminal is too small for the studio."),
        Line::from(format!(
            "{}x{} now; it needs at least {MIN_WIDTH}x{MIN_HEIGHT}.",
            area.width, area.height
        )),
        Line::from("Make it bigger, or press q to quit."),
    ];
    let height = (text.len() as u16).min(area.height);
    let y = area.y + area.height.saturating_sub(height) / 2;
    frame.render_widget(
        Paragraph::new(text)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true }),
        Rect::new(area.x, y, area.width, height.max(1).min(area.height)),
    );
}

/// A run's state as one glyph and a colour, for the list and the run panel.
fn run_badge(state: Liveness) -> (&'static str, Color) {
    match state {
        Liveness::Killed | Liveness::Unknown => ("?", Color::Red),
        Liveness::Starting => ("○", Color::Yellow),
        Liveness::Running => ("●", Color::Green),
        Liveness::Paused => ("‖", Color::Yellow),
        Liveness::Stopped => ("■", Color::Gray),
        Liveness::Finished => ("✓", Color::Green),
        Liveness::Failed => ("✗", Color::Red),
    }
}

fn percent(step: u64, total: u64) -> u64 {
    (step * 100).checked_div(total).unwrap_or(0)
}

fn draw_list(frame: &mut Frame, app: &App, area: Rect) {
    match &app.mode {
        Mode::Studio { dir } => {
            let items: Vec<ListItem> = app
                .sketches
                .iter()
                .map(|path| {
                    let name = App::sketch_name(path);
                    let mut spans = vec![Span::raw(name)];
                    if let Some(run) = app.run_of(path) {
                        if let Some(s) = &run.status {
                            let (glyph, color) = run_badge(run.liveness());
                            spans.push(Span::raw(" "));
                            spans.push(Span::styled(glyph, Style::new().fg(color)));
                            if run.is_active() {
                                spans.push(Span::styled(
                                    format!(" {}%", percent(s.step, s.total_steps)),
                                    Style::new().fg(color),
                                ));
                            }
                        }
                    }
                    ListItem::new(Line::from(spans))
                })
                .collect();
            let title = format!(" Sketches · {} ", dir.display());
            let list = List::new(items)
                .block(block(title))
                .highlight_symbol("▸ ")
                .highlight_style(Style::new().fg(ACCENT).add_modifier(Modifier::BOLD));
            let mut state = ListState::default()
                .with_selected((!app.sketches.is_empty()).then_some(app.selected));
            if app.sketches.is_empty() {
                frame.render_widget(
                    Paragraph::new("No sketches yet.\nSave a .rhai file here.")
                        .block(block(" Sketches ".into()))
                        .wrap(Wrap { trim: true })
                        .dark_gray(),
                    area,
                );
            } else {
                frame.render_stateful_widget(list, area, &mut state);
            }
        }
        Mode::Watch { run } => {
            let name = run
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut lines = vec![Line::from(name.bold())];
            if let Some(spec) = app.run.as_ref().and_then(|r| r.spec.as_ref()) {
                lines.push(Line::from(format!(
                    "{} {}px ×{}",
                    spec.model, spec.image_size, spec.channels
                )));
                lines.push(Line::from(format!(
                    "batch {} · {} steps",
                    spec.batch, spec.steps
                )));
                lines.push(Line::from(format!(
                    "lr G {:.0e} D {:.0e}",
                    spec.lr_g, spec.lr_d
                )));
            }
            frame.render_widget(
                Paragraph::new(lines)
                    .block(block(" Watching ".into()))
                    .wrap(Wrap { trim: true }),
                area,
            );
        }
    }
}

fn draw_preview(frame: &mut Frame, app: &App, state: &mut ViewState, area: Rect) {
    if let Some(grid) = app
        .variations
        .as_ref()
        .filter(|g| Some(&g.path) == app.selected_path())
    {
        draw_grid(frame, grid, app.strength, state, area);
        return;
    }
    let name = match &app.mode {
        Mode::Studio { .. } => app.selected_path().map(|p| App::sketch_name(p)),
        // The caption says "samples · step N" already.
        Mode::Watch { .. } => None,
    };
    let picture = app
        .picture
        .as_ref()
        .filter(|p| Some(&p.path) == app.selected_path() || matches!(app.mode, Mode::Watch { .. }));
    let mut title = String::from(" Preview");
    if let Some(n) = &name {
        title.push_str(&format!(" · {n}"));
    }
    match (picture, &app.error) {
        (Some(_), Some(_)) => title.push_str(" · error (last good image kept) "),
        (None, Some(_)) => title.push_str(" · error (no good image yet) "),
        (Some(p), None) => title.push_str(&format!(" · {} ", p.caption)),
        (None, None) => title.push(' '),
    }
    let mut block = block(fit_title(title, area.width.saturating_sub(2) as usize));
    if app.error.is_some() {
        block = block.border_style(Style::new().fg(Color::Red));
    }
    let inner = block.inner(area);
    frame.render_widget(block, area);

    let (image_area, error_area) = match &app.error {
        Some(_) if picture.is_some() && inner.height > 6 => {
            let [a, b] = Layout::vertical([Constraint::Min(3), Constraint::Length(3)]).areas(inner);
            (Some(a), Some(b))
        }
        Some(_) => (None, Some(inner)),
        None => (Some(inner), None),
    };
    if let (Some(e), Some(area)) = (&app.error, error_area) {
        frame.render_widget(
            Paragraph::new(e.as_str())
                .wrap(Wrap { trim: false })
                .style(Style::new().fg(Color::Red)),
            area,
        );
    }
    let Some(area) = image_area else { return };
    match picture {
        Some(p) => {
            let box_px = state.pixel_box(area);
            let Some(proto) = state.preview_protocol(p.serial, &p.image, box_px) else {
                return;
            };
            draw_centred(frame, area, proto);
        }
        None => {
            let gan =
                app.selected_kind() == Some(Kind::Gan) || matches!(app.mode, Mode::Watch { .. });
            let text = if gan {
                if app.run.is_some() {
                    "No sample grid yet: the first one comes after `sample_every` steps."
                } else {
                    "No run of this sketch yet. Press t to train it."
                }
            } else if app.sketches.is_empty() {
                ""
            } else if let Some((_, note)) = app
                .busy
                .as_ref()
                .filter(|b| Some(&b.0) == app.selected_path())
            {
                note.as_str()
            } else {
                "rendering…"
            };
            frame.render_widget(
                Paragraph::new(text)
                    .alignment(Alignment::Center)
                    .wrap(Wrap { trim: true })
                    .dark_gray(),
                area,
            );
        }
    }
}

/// The grid of variations: nine cells, each titled with its key and what makes it.
fn draw_grid(
    frame: &mut Frame,
    grid: &super::variations::Grid,
    strength: usize,
    state: &mut ViewState,
    area: Rect,
) {
    use super::variations::{Breed, STRENGTHS};
    let name = App::sketch_name(&grid.path);
    let what = match &grid.breed {
        Breed::Seeds(_) => "seeds".to_string(),
        Breed::Mutations { generation, .. } => {
            format!(
                "mutations · strength {} · gen {generation}",
                STRENGTHS[strength]
            )
        }
    };
    let coarse = if grid.coarse { " · coarse" } else { "" };
    let outer = block(format!(" Variations · {name} · {what}{coarse} "))
        .border_style(Style::new().fg(ACCENT));
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    let labels = grid.breed.labels();
    let images: Vec<Arc<DynamicImage>> = grid.children.iter().map(|c| c.image.clone()).collect();
    let rows = Layout::vertical([Constraint::Ratio(1, 3); 3]).split(inner);
    let mut cells = vec![];
    for row in rows.iter() {
        cells.extend(
            Layout::horizontal([Constraint::Ratio(1, 3); 3])
                .split(*row)
                .iter()
                .copied(),
        );
    }
    let insides: Vec<Rect> = cells.iter().map(|c| Block::bordered().inner(*c)).collect();
    let mut protos = if images.is_empty() {
        None
    } else {
        state.grid_protocols(grid.serial, &images, &insides, inner)
    };
    for (k, cell) in cells.into_iter().enumerate() {
        let label = labels.get(k).cloned().unwrap_or_default();
        let b = Block::bordered()
            .border_style(Style::new().dark_gray())
            .title(Line::from(vec![
                Span::styled(format!(" {} ", k + 1), Style::new().fg(ACCENT).bold()),
                Span::raw(format!("{label} ")),
            ]));
        let area = b.inner(cell);
        frame.render_widget(b, cell);
        match protos.as_mut().and_then(|p| p.get_mut(k)) {
            Some(proto) => {
                draw_centred(frame, area, proto);
            }
            None => frame.render_widget(
                Paragraph::new("breeding…")
                    .alignment(Alignment::Center)
                    .dark_gray(),
                area,
            ),
        }
    }
}

/// The export prompt: what to type, and what has been typed.
fn draw_prompt(frame: &mut Frame, text: &str, area: Rect) {
    let lines = vec![
        Line::from(vec![
            Span::raw("size: "),
            Span::styled(format!("{text}▏"), Style::new().fg(ACCENT).bold()),
        ]),
        Line::from("enter: 4096 · or N, WxH, gif, gif N · esc cancels".dark_gray()),
    ];
    let popup = centred(area, 56, 4);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(block(" Export ".into()).border_style(Style::new().fg(ACCENT))),
        popup,
    );
}

/// Steps per second over the last metrics (robust to pauses before the window).
fn steps_per_second(metrics: &[Metric]) -> Option<f64> {
    let window = &metrics[metrics.len().saturating_sub(20)..];
    let (first, last) = (window.first()?, window.last()?);
    let dt = last.time - first.time;
    (dt > 0.0 && last.step > first.step).then(|| (last.step - first.step) as f64 / dt)
}

pub fn format_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn draw_run(frame: &mut Frame, app: &App, area: Rect) {
    let block = block(" Run ".into());
    let Some(run) = &app.run else {
        let hint = match app.selected_kind() {
            Some(Kind::Gan) => "No run yet.\nt starts training.",
            _ => "Runs show here for GAN sketches.",
        };
        frame.render_widget(
            Paragraph::new(hint)
                .block(block)
                .wrap(Wrap { trim: true })
                .dark_gray(),
            area,
        );
        return;
    };
    let mut lines: Vec<Line> = vec![];
    let folder = run
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let folder: String = folder
        .chars()
        .take(area.width.saturating_sub(2) as usize)
        .collect();
    lines.push(Line::from(folder.dark_gray()));
    match &run.status {
        None => lines.push(Line::from("waiting for status.json…".dark_gray())),
        Some(s) => {
            let liveness = Liveness::of(Some(s), run.alive);
            let (glyph, color) = run_badge(liveness);
            let word = liveness.word();
            lines.push(Line::from(vec![
                Span::styled(format!("{glyph} {word} "), Style::new().fg(color).bold()),
                Span::raw(format!(
                    "{}/{} {}%",
                    s.step,
                    s.total_steps,
                    percent(s.step, s.total_steps)
                )),
            ]));
            let last = run.metrics.last();
            let mut speed = String::new();
            if let Some(m) = last {
                speed.push_str(&format!("{:.0} img/s", m.imgs_per_s));
            }
            if s.state == State::Running && run.alive {
                if let Some(rate) = steps_per_second(&run.metrics) {
                    let left = s.total_steps.saturating_sub(s.step) as f64 / rate;
                    speed.push_str(&format!(" · ETA {}", format_duration(left)));
                }
            }
            if !s.device.is_empty() && s.device != "cpu" {
                speed.push_str(&format!(" · {}", s.device));
            }
            if !speed.is_empty() {
                lines.push(Line::from(speed));
            }
            if let Some(gpu) = &s.gpu {
                lines.push(Line::from(gpu.to_string()));
            }
            lines.push(Line::from(match s.checkpoint_step {
                Some(c) => format!("checkpoint {c} ✓"),
                None => "no checkpoint yet".into(),
            }));
            if let Some(m) = last {
                lines.push(Line::from(vec![
                    Span::styled(format!("D {:.3}", m.d_loss), Style::new().fg(D_COLOR)),
                    Span::raw("  "),
                    Span::styled(format!("G {:.3}", m.g_loss), Style::new().fg(G_COLOR)),
                ]));
                lines.push(Line::from(format!(
                    "D(x) {:.2}  D(G(z)) {:.2}",
                    m.d_real, m.d_fake
                )));
            }
            // The newest evaluation: SWD of both generators, and for a conditional run
            // the class that varies least (a collapsing class shows here first).
            if let Some(e) = run.metrics.iter().rev().find(|m| m.swd.is_some()) {
                lines.push(Line::from(format!(
                    "SWD {:.0} · raw {:.0} (step {})",
                    e.swd.unwrap_or_default(),
                    e.swd_raw.unwrap_or_default(),
                    e.step
                )));
                if let Some(c) = e
                    .classes
                    .iter()
                    .min_by(|a, b| a.diversity.total_cmp(&b.diversity))
                {
                    let text = format!("least varied: {} {:.2}", c.name, c.diversity);
                    lines.push(if c.diversity < crate::run::ClassScore::LOW_DIVERSITY {
                        Line::from(text.red())
                    } else {
                        Line::from(text)
                    });
                }
                // The class the classifier of the real classes recognises least often.
                if let Some((name, f)) = e
                    .classes
                    .iter()
                    .filter_map(|c| c.fidelity.map(|f| (&c.name, f)))
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                {
                    let text = format!("least recognised: {name} {f:.2}");
                    lines.push(if f < crate::run::ClassScore::LOW_FIDELITY {
                        Line::from(text.red())
                    } else {
                        Line::from(text)
                    });
                }
            }
            if liveness == Liveness::Killed {
                lines.push(Line::from("t resumes from the checkpoint".yellow()));
            } else if !s.message.is_empty() {
                let color = if s.state == State::Failed {
                    Color::Red
                } else {
                    Color::Gray
                };
                lines.push(Line::from(Span::styled(
                    s.message.clone(),
                    Style::new().fg(color),
                )));
            }
        }
    }
    frame.render_widget(
        Paragraph::new(lines).block(block).wrap(Wrap { trim: true }),
        area,
    );
}

/// The newest evaluation's per-class figures, with its step (conditional runs only).
fn newest_classes(app: &App) -> Option<(u64, &[crate::run::ClassScore])> {
    let m = app
        .run
        .as_ref()?
        .metrics
        .iter()
        .rev()
        .find(|m| m.swd.is_some())?;
    (!m.classes.is_empty()).then_some((m.step, m.classes.as_slice()))
}

/// One class's cell in the class row: `name diversity·fidelity`.
fn class_cell(c: &crate::run::ClassScore) -> String {
    match c.fidelity {
        Some(f) => format!("{} {:.2}·{:.2}", c.name, c.diversity, f),
        None => format!("{} {:.2}", c.name, c.diversity),
    }
}

/// Lines the class row needs inside its border at `width` columns (at most 4).
fn class_lines(classes: &[crate::run::ClassScore], width: u16) -> u16 {
    let inner = width.saturating_sub(2).max(1) as usize;
    let mut lines = 1;
    let mut used = 0;
    for c in classes {
        let w = class_cell(c).chars().count() + 2;
        if used > 0 && used + w > inner {
            lines += 1;
            used = 0;
        }
        used += w;
    }
    lines.min(4)
}

/// Every class's diversity (its samples' spread over its pictures') and, when the run
/// has a class check, the fraction recognised as the class; low figures in red.
fn draw_classes(frame: &mut Frame, step: u64, classes: &[crate::run::ClassScore], area: Rect) {
    use crate::run::ClassScore;
    let has_fidelity = classes.iter().any(|c| c.fidelity.is_some());
    let what = if has_fidelity {
        "diversity·recognised"
    } else {
        "diversity"
    };
    let mut spans = vec![];
    for c in classes {
        let low = c.diversity < ClassScore::LOW_DIVERSITY
            || c.fidelity.is_some_and(|f| f < ClassScore::LOW_FIDELITY);
        let cell = class_cell(c);
        spans.push(if low {
            Span::styled(cell, Style::new().fg(Color::Red).bold())
        } else {
            Span::raw(cell)
        });
        spans.push(Span::raw("  "));
    }
    frame.render_widget(
        Paragraph::new(Line::from(spans))
            .block(block(format!(" Classes · {what} · step {step} ")))
            .wrap(Wrap { trim: true }),
        area,
    );
}

/// The exponential smoothing of the loss chart, per training step.
const LOSS_SMOOTHING: f64 = 0.05;

/// The index ranges of `buckets` consecutive, nearly equal buckets over `n` points.
fn buckets(n: usize, buckets: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let buckets = buckets.clamp(1, n.max(1));
    (0..buckets).map(move |i| i * n / buckets..(i + 1) * n / buckets)
}

/// At most `max_points` (at least 2) of `points`, in order: each bucket of consecutive
/// points keeps its lowest and its highest, so no spike disappears.
pub fn downsample_extremes(points: &[(f64, f64)], max_points: usize) -> Vec<(f64, f64)> {
    if points.len() <= max_points.max(2) {
        return points.to_vec();
    }
    let mut out = Vec::with_capacity(max_points.max(2));
    for range in buckets(points.len(), max_points / 2) {
        let bucket = &points[range.clone()];
        let by_y = |a: &&(f64, f64), b: &&(f64, f64)| a.1.total_cmp(&b.1);
        let (Some(lo), Some(hi)) = (bucket.iter().min_by(by_y), bucket.iter().max_by(by_y)) else {
            continue;
        };
        // In x order, so the line does not double back.
        let (first, second) = if lo.0 <= hi.0 { (lo, hi) } else { (hi, lo) };
        out.push(*first);
        if second != first {
            out.push(*second);
        }
    }
    out
}

/// At most `max_points` (at least 1) points: the mean x and mean y of each bucket of
/// consecutive points.
pub fn downsample_means(points: &[(f64, f64)], max_points: usize) -> Vec<(f64, f64)> {
    if points.len() <= max_points.max(1) {
        return points.to_vec();
    }
    buckets(points.len(), max_points)
        .filter(|r| !r.is_empty())
        .map(|r| {
            let n = r.len() as f64;
            let (sx, sy) = points[r]
                .iter()
                .fold((0.0, 0.0), |(sx, sy), p| (sx + p.0, sy + p.1));
            (sx / n, sy / n)
        })
        .collect()
}

/// Exponential moving average, bias-corrected so the start is not dragged to zero.
pub fn smooth(values: &[f64], alpha: f64) -> Vec<f64> {
    let mut avg = 0.0;
    let mut weight = 0.0;
    values
        .iter()
        .map(|&v| {
            avg = (1.0 - alpha) * avg + alpha * v;
            weight = (1.0 - alpha) * weight + alpha;
            avg / weight
        })
        .collect()
}

fn draw_chart(frame: &mut Frame, app: &App, area: Rect) {
    let metrics = app
        .run
        .as_ref()
        .map(|r| r.metrics.as_slice())
        .unwrap_or(&[]);
    if app.chart.swd {
        return draw_swd_chart(frame, app, metrics, area);
    }
    let mode = match (app.chart.raw, app.chart.log_scale) {
        (false, false) => "smoothed",
        (true, false) => "raw",
        (false, true) => "smoothed, log",
        (true, true) => "raw, log",
    };
    let block = block(format!(" Losses · D, G · {mode} "));
    if metrics.len() < 2 {
        frame.render_widget(
            Paragraph::new("Loss curves appear while a GAN trains.")
                .block(block)
                .wrap(Wrap { trim: true })
                .dark_gray(),
            area,
        );
        return;
    }
    // About two points per braille column is all the chart can show: the metrics are
    // bucketed down to that first, so a long run costs the same per frame as a short one.
    let max_points = (area.width as usize * 2).max(2);
    let series = |f: fn(&Metric) -> f64| -> Vec<(f64, f64)> {
        let points: Vec<(f64, f64)> = metrics.iter().map(|m| (m.step as f64, f(m))).collect();
        if app.chart.raw {
            // Spikes are what raw is for: each bucket keeps its lowest and highest.
            return downsample_extremes(&points, max_points);
        }
        let means = downsample_means(&points, max_points);
        // The same smoothing per step as before, whatever the bucket size.
        let per_bucket = points.len() as f64 / means.len().max(1) as f64;
        let alpha = 1.0 - (1.0 - LOSS_SMOOTHING).powf(per_bucket);
        let ys: Vec<f64> = means.iter().map(|p| p.1).collect();
        means
            .iter()
            .zip(smooth(&ys, alpha))
            .map(|(p, y)| (p.0, y))
            .collect()
    };
    let d = series(|m| m.d_loss);
    let g = series(|m| m.g_loss);
    let steps = (
        metrics[0].step as f64,
        metrics[metrics.len() - 1].step as f64,
    );
    draw_lines(
        frame,
        block,
        app.chart.log_scale,
        &[("D", D_COLOR, d), ("G", G_COLOR, g)],
        steps,
        area,
    );
}

/// SWD of the EMA and the raw generator at each evaluation.
fn draw_swd_chart(frame: &mut Frame, app: &App, metrics: &[Metric], area: Rect) {
    let block = block(" SWD · EMA, raw · lower is better ".into());
    let ema: Vec<(f64, f64)> = metrics
        .iter()
        .filter_map(|m| Some((m.step as f64, m.swd?)))
        .collect();
    let raw: Vec<(f64, f64)> = metrics
        .iter()
        .filter_map(|m| Some((m.step as f64, m.swd_raw?)))
        .collect();
    if ema.len() < 2 {
        let text = match ema.last() {
            Some((step, v)) => {
                format!("SWD {v:.1} at step {step}; the curve needs two evaluations.")
            }
            None => "SWD appears every eval_every steps (c: back to losses).".into(),
        };
        frame.render_widget(
            Paragraph::new(text)
                .block(block)
                .wrap(Wrap { trim: true })
                .dark_gray(),
            area,
        );
        return;
    }
    let steps = (ema[0].0, ema[ema.len() - 1].0);
    draw_lines(
        frame,
        block,
        app.chart.log_scale,
        &[("EMA", G_COLOR, ema), ("raw", D_COLOR, raw)],
        steps,
        area,
    );
}

/// A named, coloured line of (step, value) points.
type Series = (&'static str, Color, Vec<(f64, f64)>);

/// Line series over the steps `x0..=x1`, with y bounds from the data (log10 when asked).
fn draw_lines(
    frame: &mut Frame,
    block: Block,
    log_scale: bool,
    series: &[Series],
    (x0, x1): (f64, f64),
    area: Rect,
) {
    let series: Vec<Series> = series
        .iter()
        .map(|(name, color, points)| {
            let points = points
                .iter()
                .map(|&(x, v)| (x, if log_scale { v.max(1e-6).log10() } else { v }))
                .collect();
            (*name, *color, points)
        })
        .collect();
    let finite = series
        .iter()
        .flat_map(|(_, _, p)| p.iter())
        .map(|p| p.1)
        .filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, lo + 0.5)
    };
    let label = |v: f64| {
        let v = if log_scale { 10f64.powf(v) } else { v };
        format!("{v:.2}")
    };
    let datasets = series
        .iter()
        .map(|(name, color, points)| {
            Dataset::default()
                .name(*name)
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(*color))
                .data(points)
        })
        .collect();
    let chart = Chart::new(datasets)
        .block(block)
        .x_axis(
            Axis::default()
                .bounds([x0, x1.max(x0 + 1.0)])
                .labels([format!("{x0}"), format!("{x1}")])
                .style(Style::new().fg(Color::DarkGray)),
        )
        .y_axis(
            Axis::default()
                .bounds([lo, hi])
                .labels([label(lo), label(hi)])
                .style(Style::new().fg(Color::DarkGray)),
        );
    frame.render_widget(chart, area);
}

/// Word-wraps `text` to `width` columns (long words are cut).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = vec![];
    for paragraph in text.split('\n') {
        let mut line = String::new();
        for word in paragraph.split(' ') {
            let mut word = word.to_string();
            loop {
                let used = line.chars().count();
                let len = word.chars().count();
                let sep = usize::from(used > 0);
                if used + sep + len <= width {
                    if sep == 1 {
                        line.push(' ');
                    }
                    line.push_str(&word);
                    break;
                }
                if used > 0 {
                    lines.push(std::mem::take(&mut line));
                    continue;
                }
                let head: String = word.chars().take(width).collect();
                word = word.chars().skip(width).collect();
                lines.push(head);
                if word.is_empty() {
                    break;
                }
            }
        }
        lines.push(line);
    }
    lines
}

fn draw_log(frame: &mut Frame, app: &App, area: Rect) {
    let block = block(" Log ".into());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = inner.width as usize;
    let mut lines: Vec<Line> = vec![];
    // Newest at the bottom: wrap entries from the end until the panel is full.
    for entry in app.log.iter().rev() {
        let style = match entry.level {
            Level::Info => Style::new(),
            Level::Error => Style::new().fg(Color::Red),
        };
        let text = format!("{} {}", entry.time, entry.text);
        let wrapped: Vec<Line> = wrap(&text, width)
            .into_iter()
            .map(|l| Line::from(Span::styled(l, style)))
            .collect();
        for l in wrapped.into_iter().rev() {
            lines.push(l);
        }
        if lines.len() >= inner.height as usize {
            break;
        }
    }
    lines.truncate(inner.height as usize);
    lines.reverse();
    frame.render_widget(Paragraph::new(lines), inner);
}

fn draw_footer(frame: &mut Frame, app: &App, area: Rect) {
    let showing = keys::Showing {
        studio: matches!(app.mode, Mode::Studio { .. }),
        runs: shows_run_panels(app),
        knobs: app.knob_values().is_some(),
        grid: app.variations.is_some(),
        mutations: app
            .variations
            .as_ref()
            .is_some_and(|g| matches!(g.breed, crate::studio::variations::Breed::Mutations { .. })),
        run_active: app.run.as_ref().is_some_and(|r| r.info().is_active()),
        history: !app.history.is_empty(),
        animation: app.animation.is_some(),
    };
    let keys = keys::footer_hints(showing, area.width as usize);
    let mut spans = vec![];
    for (key, what) in keys {
        spans.push(Span::styled(
            format!(" {key}"),
            Style::new().fg(ACCENT).bold(),
        ));
        spans.push(Span::raw(format!(" {what} ")));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn centred(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn draw_help(frame: &mut Frame, app: &App, area: Rect) {
    let mut lines = vec![
        Line::from("Edit sketches in your own editor: each save re-renders.".dark_gray()),
        Line::from(""),
    ];
    for row in keys::help_rows(true) {
        lines.push(Line::from(vec![
            Span::styled(
                format!("{:>10}  ", row.keys),
                Style::new().fg(ACCENT).bold(),
            ),
            Span::raw(row.help),
        ]));
    }
    if let Mode::Watch { .. } = app.mode {
        lines.push(Line::from(""));
        lines.push(Line::from(
            "Watching one run: select and t are off.".dark_gray(),
        ));
    }
    let popup = centred(area, 64, lines.len() as u16 + 2);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block(" Keys · any key closes ".into()).border_style(Style::new().fg(ACCENT)))
            .wrap(Wrap { trim: false }),
        popup,
    );
}

fn draw_confirm(frame: &mut Frame, confirm: &Confirm, area: Rect) {
    let Confirm::Restart { sketch, run } = confirm;
    let text = vec![
        Line::from(format!(
            "{} changed more than learning rates or sample cadence.",
            App::sketch_name(sketch)
        )),
        Line::from(format!(
            "Stop {} and start a new run with the new sketch?",
            run.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        )),
        Line::from(""),
        Line::from(vec![
            Span::styled(" y ", Style::new().fg(ACCENT).bold()),
            Span::raw("restart   "),
            Span::styled(" n ", Style::new().fg(ACCENT).bold()),
            Span::raw("keep training the old one"),
        ]),
    ];
    let popup = centred(area, 70, 6);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(text)
            .block(block(" Restart training? ".into()).border_style(Style::new().fg(Color::Yellow)))
            .wrap(Wrap { trim: true }),
        popup,
    );
}

/// Draws a picture the fitter thread already scaled to `area`, centred in it: the widget
/// only places it.
fn draw_centred(frame: &mut Frame, area: Rect, proto: &mut StatefulProtocol) {
    let resize = Resize::Fit(None);
    let size = proto.size_for(resize.clone(), area.as_size());
    let centred = Rect::new(
        area.x + area.width.saturating_sub(size.width) / 2,
        area.y + area.height.saturating_sub(size.height) / 2,
        size.width.min(area.width),
        size.height.min(area.height),
    );
    frame.render_stateful_widget(StatefulImage::default().resize(resize), centred, proto);
}

#[cfg(test)]
mod tests {
    use super::{fit_title, format_duration};

    /// The run panel's ETA and `easel train`'s forecast.
    #[test]
    fn durations_read_in_seconds_minutes_or_hours() {
        assert_eq!(format_duration(42.0), "42s");
        assert_eq!(format_duration(720.0), "12m00s");
        assert_eq!(format_duration(12_000.0), "3h20m");
    }

    #[test]
    fn a_long_preview_title_drops_the_render_time_then_the_word_preview() {
        let t = " Preview · cppn_gray · seed 7 · 384x384 · render 45 ms · save→screen 61 ms ";
        assert_eq!(fit_title(t.into(), 100), t);
        assert_eq!(
            fit_title(t.into(), 70),
            " Preview · cppn_gray · seed 7 · 384x384 · save→screen 61 ms "
        );
        assert_eq!(
            fit_title(t.into(), 55),
            " cppn_gray · seed 7 · 384x384 · save→screen 61 ms "
        );
        let last = " Preview · x · seed 7 · render 45 ms ";
        assert_eq!(fit_title(last.into(), 30), " Preview · x · seed 7 ");
    }
}
