//! The studio's state and its update logic: messages in, effects out.
//!
//! Nothing here touches the terminal, the file system or threads. The runtime
//! (`studio::run`) turns key presses and worker results into [`Msg`]s, calls
//! [`App::update`], carries out the [`Effect`]s it returns, and draws with `view`. So every
//! behaviour (reload, errors, favourites, training control) is tested without a terminal.
//!
//! The parts of the state and what each does with it live in the submodules: `messages`
//! (what comes in and goes out), `sketches` (the list and the selection), `preview` (the
//! picture and the CPPN loop), `tweaks` (seeds and knobs), `breeding` (the variations
//! grid), `saving` (favourites and exports), `runs` (the run panels and training
//! control) and `gan_noise` (other noise and truncation for a GAN's preview). This file holds the [`App`] itself and the dispatch of messages and keys.

mod breeding;
mod gan_noise;
mod messages;
mod preview;
mod runs;
mod saving;
mod sketches;
mod tweaks;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

pub use gan_noise::{
    GanNoise, GanPreview, GanSampleRequest, GanSampled, FAVOURITE_SIDE, GAN_PREVIEW_SAMPLES,
    TRUNCATION,
};
pub use messages::{Effect, Msg, Reason, RenderRequest, Rendered, UpscaleJob, Upscaled};
pub use preview::{Animation, Picture};
pub use runs::{state_word, Confirm, RunInfo, RunTail, RunView};
pub use saving::{parse_export, Export, ExportTarget, Favourite, SaveMutant, EXPORT_SIDE};
pub use tweaks::{Mutant, Tweak, Tweaks};

use super::keys::{self, Action};
use super::variations::{self, Grid};
use crate::gan::GanSpec;
use crate::sketch::Params;
use crate::spec::Kind;

/// How many log lines are kept.
const LOG_LINES: usize = 200;

/// What the studio is showing: a folder of sketches, or one run directory (`easel watch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Studio { dir: PathBuf },
    Watch { run: PathBuf },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// "HH:MM:SS", local time.
    pub time: String,
    pub level: Level,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChartOptions {
    pub raw: bool,
    pub log_scale: bool,
    /// Show the quality number (SWD of the EMA and raw generators) instead of losses.
    pub swd: bool,
}

pub struct App {
    pub mode: Mode,
    pub sketches: Vec<PathBuf>,
    pub selected: usize,
    pub kinds: HashMap<PathBuf, Kind>,
    pub picture: Option<Picture>,
    /// The selected sketch's current error; the last good picture stays.
    pub error: Option<String>,
    pub log: VecDeque<LogLine>,
    pub runs: HashMap<String, RunInfo>,
    pub run: Option<RunView>,
    pub animation: Option<Animation>,
    pub chart: ChartOptions,
    pub help: bool,
    pub confirm: Option<Confirm>,
    /// What the selected sketch is waiting for, when its picture takes a while.
    pub busy: Option<(PathBuf, String)>,
    /// Seeds and knob values set in the studio, per sketch. Kept per sketch for the whole
    /// session (not dropped on moving to another sketch): looking at a neighbour to
    /// compare and coming back should find the seed and knobs where they were left.
    pub tweaks: HashMap<PathBuf, Tweaks>,
    /// The knobs each sketch declared at its last render, and the seed its file gives.
    pub params: HashMap<PathBuf, Params>,
    pub file_seeds: HashMap<PathBuf, u64>,
    /// Each sketch's own size at its last render (exports keep its aspect).
    pub sizes: HashMap<PathBuf, (u32, u32)>,
    /// Which knob of the selected sketch `-`/`=` turn.
    pub knob: usize,
    /// The preview fills the screen (`f`).
    pub fullscreen: bool,
    /// The grid of variations (`v`), when open.
    pub variations: Option<Grid>,
    /// Index into `variations::STRENGTHS` (`<` `>`).
    pub strength: usize,
    /// Earlier currents, newest last: a pick pushes, Backspace pops.
    pub history: Vec<(PathBuf, Tweaks)>,
    /// The export prompt's text, while it is open (`e`).
    pub prompt: Option<String>,
    pub quit: bool,
    /// Log time stamps (fixed in tests, for stable snapshots).
    pub clock: fn() -> String,
    /// The newest GAN spec loaded from each GAN sketch.
    gan_specs: HashMap<PathBuf, GanSpec>,
    /// GAN sketches whose preview is drawn from the studio's noise (`n`, truncation keys)
    /// instead of the run's own sample grid.
    pub gan_noise: HashMap<PathBuf, GanNoise>,
    /// The GAN sample request whose grid the preview waits for.
    gan_sample_id: u64,
    next_id: u64,
    /// The request whose result the preview waits for.
    current_id: u64,
    followed: Option<PathBuf>,
    serial: u64,
    /// The serial of the picture `u` is upscaling now, if any (one at a time).
    upscaling: Option<u64>,
}

impl App {
    /// A studio on `dir` listing `sketches`; returns the effects of selecting the first.
    /// The studio over `sketches` (selecting the `selected`-th), or watching one run.
    pub fn new(mode: Mode, sketches: Vec<PathBuf>, selected: usize) -> (Self, Vec<Effect>) {
        let selected = selected.min(sketches.len().saturating_sub(1));
        let mut app = App {
            mode,
            sketches,
            selected,
            kinds: HashMap::new(),
            picture: None,
            error: None,
            log: VecDeque::new(),
            runs: HashMap::new(),
            run: None,
            animation: None,
            chart: ChartOptions::default(),
            help: false,
            confirm: None,
            busy: None,
            tweaks: HashMap::new(),
            params: HashMap::new(),
            file_seeds: HashMap::new(),
            sizes: HashMap::new(),
            knob: 0,
            fullscreen: false,
            variations: None,
            strength: variations::DEFAULT_STRENGTH,
            history: vec![],
            prompt: None,
            quit: false,
            clock: local_time,
            gan_specs: HashMap::new(),
            gan_noise: HashMap::new(),
            gan_sample_id: 0,
            next_id: 0,
            current_id: 0,
            followed: None,
            serial: 0,
            upscaling: None,
        };
        let effects = match app.mode.clone() {
            Mode::Studio { dir } => {
                if app.sketches.is_empty() {
                    app.info(format!(
                        "no .rhai sketches in {} yet: save one there",
                        dir.display()
                    ));
                }
                app.select(app.selected, Reason::Selected)
            }
            Mode::Watch { run } => {
                app.info(format!("watching {}", run.display()));
                app.follow(Some(run))
            }
        };
        (app, effects)
    }

    pub fn selected_path(&self) -> Option<&PathBuf> {
        match self.mode {
            Mode::Studio { .. } => self.sketches.get(self.selected),
            Mode::Watch { .. } => None,
        }
    }

    /// The kind of the selected sketch, once it has loaded.
    pub fn selected_kind(&self) -> Option<Kind> {
        self.selected_path()
            .and_then(|p| self.kinds.get(p))
            .copied()
    }

    pub fn sketch_name(path: &Path) -> String {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The newest run of the sketch at `path`.
    pub fn run_of(&self, path: &Path) -> Option<&RunInfo> {
        self.runs.get(&Self::sketch_name(path))
    }

    pub fn update(&mut self, msg: Msg) -> Vec<Effect> {
        match msg {
            Msg::Key(key) => self.on_key(key),
            Msg::Tick(now) => self.on_tick(now),
            Msg::SketchesListed(list) => self.on_listed(list),
            Msg::FilesChanged(paths) => self.on_files_changed(paths),
            Msg::Rendered(r) => self.on_rendered(r),
            Msg::RenderFailed { id, path, error } => {
                if self.animation.as_ref().is_some_and(|a| a.path == path) {
                    if let Some(a) = self.animation.as_mut() {
                        a.in_flight = false;
                    }
                }
                // Errors of older requests are stale; the newest result decides.
                if id == self.current_id {
                    self.busy = None;
                    if self.error.as_deref() != Some(error.as_str()) {
                        self.log_line(Level::Error, error.clone());
                    }
                    self.error = Some(error);
                    // A broken sketch that never rendered: leave no picture of another.
                    if self.picture.as_ref().is_some_and(|p| p.path != path) {
                        self.picture = None;
                    }
                }
                vec![]
            }
            Msg::GanLoaded {
                id,
                path,
                spec,
                reason,
            } => self.on_gan_loaded(id, path, *spec, reason),
            Msg::Runs(runs) => {
                self.runs = runs;
                self.refollow()
            }
            Msg::RunTail(tail) => self.on_run_tail(*tail),
            Msg::GanSampled {
                id,
                sketch,
                noise,
                result,
            } => self.on_gan_sampled(id, sketch, noise, result),
            Msg::FavouriteSaved(Ok(path)) => {
                self.info(format!("saved favourite {}", path.display()));
                vec![]
            }
            Msg::FavouriteSaved(Err(e)) => {
                self.log_line(Level::Error, format!("favourite not saved: {e}"));
                vec![]
            }
            Msg::KnobsWritten { path, result } => self.on_knobs_written(path, result),
            Msg::VariationsRendered {
                id,
                children,
                coarse,
            } => {
                self.serial += 1;
                let serial = self.serial;
                if let Some(grid) = self.variations.as_mut().filter(|g| g.id == id) {
                    // A coarse pass never replaces the full one.
                    if coarse && !grid.children.is_empty() && !grid.coarse {
                        return vec![];
                    }
                    grid.children = children;
                    grid.coarse = coarse;
                    grid.serial = serial;
                }
                vec![]
            }
            Msg::VariationsFailed { id, error } => {
                if self.variations.as_ref().is_some_and(|g| g.id == id) {
                    self.variations = None;
                    self.log_line(Level::Error, format!("variations: {error}"));
                }
                vec![]
            }
            Msg::MutantSaved(Ok((sketch, favourite))) => {
                self.info(format!(
                    "saved the mutation as {} (favourite {})",
                    sketch.display(),
                    favourite.display()
                ));
                vec![]
            }
            Msg::MutantSaved(Err(e)) => {
                self.log_line(Level::Error, format!("mutation not saved: {e}"));
                vec![]
            }
            Msg::ExportProgress(text) => {
                self.info(text);
                vec![]
            }
            Msg::Upscaled(done) => self.on_upscaled(done),
            Msg::Exported(Ok(path)) => {
                self.info(format!("exported {}", path.display()));
                vec![]
            }
            Msg::Exported(Err(e)) => {
                self.log_line(Level::Error, format!("export failed: {e}"));
                vec![]
            }
            Msg::TrainingStarted(Ok(run)) => {
                self.info(format!("training → {}", run.display()));
                if let Some(path) = self.selected_path().cloned() {
                    self.runs.insert(
                        Self::sketch_name(&path),
                        RunInfo {
                            path: run.clone(),
                            status: None,
                            alive: true,
                        },
                    );
                }
                self.refollow()
            }
            Msg::Error(e) => {
                self.log_line(Level::Error, e);
                vec![]
            }
            Msg::Busy { id, path, note } => {
                if id == self.current_id && self.busy.as_ref().map(|b| &b.1) != Some(&note) {
                    self.info(format!("{}: {note}", Self::sketch_name(&path)));
                    self.busy = Some((path, note));
                }
                vec![]
            }
            Msg::TrainingStarted(Err(e)) => {
                self.log_line(Level::Error, format!("training did not start: {e}"));
                vec![]
            }
        }
    }

    fn on_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c')) {
            return self.quit();
        }
        if let Some(confirm) = self.confirm.take() {
            return match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => self.confirmed(confirm),
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => {
                    self.info("kept the running training".to_string());
                    vec![]
                }
                _ => {
                    self.confirm = Some(confirm);
                    vec![]
                }
            };
        }
        if self.prompt.is_some() {
            return self.on_prompt_key(key.code);
        }
        if self.help {
            // Any key closes the help; q still quits.
            self.help = false;
            return match key.code {
                KeyCode::Char('q') => self.quit(),
                _ => vec![],
            };
        }
        let Some(action) = keys::action(key.code) else {
            return vec![];
        };
        match action {
            Action::Quit => self.quit(),
            Action::Help => {
                self.help = true;
                vec![]
            }
            Action::Up => self.move_selection(-1),
            Action::Down => self.move_selection(1),
            Action::First => self.move_selection(-(self.sketches.len() as i64)),
            Action::Last => self.move_selection(self.sketches.len() as i64),
            Action::Rerender => self.select(self.selected, Reason::Asked),
            Action::Favourite => self.favourite(),
            Action::Train => self.train(),
            Action::PauseResume => self.pause_or_resume(),
            Action::Stop => self.stop(),
            Action::Play => self.toggle_animation(),
            Action::RawChart => {
                self.chart.raw = !self.chart.raw;
                vec![]
            }
            Action::LogChart => {
                self.chart.log_scale = !self.chart.log_scale;
                vec![]
            }
            Action::SwdChart => {
                self.chart.swd = !self.chart.swd;
                vec![]
            }
            Action::NextSeed | Action::PreviousSeed => {
                let delta = if action == Action::NextSeed { 1 } else { -1 };
                match self.selected_gan() {
                    Some(gan) => self.step_gan_seed(gan, delta),
                    None => self.step_seed(delta),
                }
            }
            Action::NextKnob => self.select_knob(1),
            Action::PreviousKnob => self.select_knob(-1),
            Action::KnobUp | Action::KnobDown | Action::KnobUpCoarse | Action::KnobDownCoarse => {
                let up = matches!(action, Action::KnobUp | Action::KnobUpCoarse);
                let coarse = matches!(action, Action::KnobUpCoarse | Action::KnobDownCoarse);
                let direction = if up { 1 } else { -1 };
                match self.selected_gan() {
                    Some(gan) => self.turn_truncation(gan, direction, coarse),
                    None => self.turn_knob(direction, coarse),
                }
            }
            Action::WriteKnobs => self.write_knobs(),
            Action::Fullscreen => {
                self.fullscreen = !self.fullscreen;
                vec![]
            }
            Action::Variations => self.open_variations(),
            Action::Pick => match key.code {
                KeyCode::Char(c @ '1'..='9') => self.pick(c as usize - '1' as usize),
                _ => vec![],
            },
            Action::Back => self.back(),
            Action::Stronger => self.change_strength(1),
            Action::Weaker => self.change_strength(-1),
            Action::CloseVariations => {
                self.variations = None;
                vec![]
            }
            Action::Export => self.open_export(),
            Action::Upscale => self.upscale(),
        }
    }

    fn quit(&mut self) -> Vec<Effect> {
        self.quit = true;
        vec![Effect::Quit]
    }

    fn info(&mut self, text: String) {
        self.log_line(Level::Info, text);
    }

    pub fn log_line(&mut self, level: Level, text: String) {
        let time = (self.clock)();
        self.log.push_back(LogLine { time, level, text });
        while self.log.len() > LOG_LINES {
            self.log.pop_front();
        }
    }
}

fn local_time() -> String {
    chrono::Local::now().format("%H:%M:%S").to_string()
}
