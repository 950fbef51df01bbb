//! The studio's state and its update logic: messages in, effects out.
//!
//! Nothing here touches the terminal, the file system or threads. The runtime
//! (`studio::run`) turns key presses and worker results into [`Msg`]s, calls
//! [`App::update`], carries out the [`Effect`]s it returns, and draws with `view`. So every
//! behaviour (reload, errors, favourites, training control) is tested without a terminal.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use image::DynamicImage;

use super::keys::{self, Action};
use crate::gan::GanSpec;
use crate::run::{Control, Metric, State, Status, Wanted};
use crate::sketch::{Knobs, Params};

/// How many log lines are kept.
const LOG_LINES: usize = 200;

/// What the studio is showing: a folder of sketches, or one run directory (`easel watch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Studio { dir: PathBuf },
    Watch { run: PathBuf },
}

/// Why a render was asked for. Only saves show the save → screen latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Moved onto it: show it if that is quick (a CPPN fit waits to be asked).
    Selected,
    /// Enter: render it whatever it costs.
    Asked,
    Saved,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RenderRequest {
    /// Increases with every request; results of older requests are dropped.
    pub id: u64,
    pub path: PathBuf,
    pub reason: Reason,
    /// `Some((k, frames))`: frame k of the CPPN latent loop, at animation size.
    pub frame: Option<(u32, u32)>,
    /// The studio's seed and knob values for this sketch, on top of its file.
    pub tweaks: Tweaks,
}

/// A value the studio sets on top of the file's, remembering what the file said when it
/// was set: when the file itself changes that value (an edit, or `w`), the file wins.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tweak<T> {
    pub file: T,
    pub value: T,
}

/// The studio-side settings of one sketch: another seed (`n`/`N`) and knob values,
/// neither written to the file (until `w`, for knobs).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tweaks {
    pub seed: Option<Tweak<u64>>,
    pub knobs: BTreeMap<String, Tweak<f64>>,
}

impl Tweaks {
    /// The seed to render with, given the file's own.
    pub fn seed_for(&self, file_seed: u64) -> u64 {
        match self.seed {
            Some(t) if t.file == file_seed => t.value,
            _ => file_seed,
        }
    }

    /// The knob values to render with, given what the file declares: a tweak counts
    /// while the file's default is still the one it was made against, kept in range.
    pub fn knobs_for(&self, params: &Params) -> Knobs {
        params
            .0
            .iter()
            .map(|p| {
                let value = match self.knobs.get(&p.name) {
                    Some(t) if t.file == p.default => p.clamp(t.value),
                    _ => p.default,
                };
                (p.name.clone(), value)
            })
            .collect()
    }

    /// Forgets what the file has since changed itself, or no longer declares.
    pub fn reconcile(&mut self, file_seed: u64, params: &Params) {
        if self
            .seed
            .is_some_and(|t| t.file != file_seed || t.value == t.file)
        {
            self.seed = None;
        }
        let values = self.knobs_for(params);
        self.knobs.retain(|name, t| {
            params.get(name).is_some_and(|p| p.default == t.file)
                && values.get(name) != Some(&t.file)
        });
        for (name, t) in self.knobs.iter_mut() {
            if let Some(&v) = values.get(name) {
                t.value = v;
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.seed.is_none() && self.knobs.is_empty()
    }
}

/// A finished render from the worker.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub id: u64,
    pub path: PathBuf,
    pub image: Arc<DynamicImage>,
    /// The sketch's own size (the preview may be smaller).
    pub size: (u32, u32),
    /// A quick low-resolution pass; the full one follows.
    pub coarse: bool,
    pub render_time: Duration,
    /// When the file was written, for saves: the title shows save → screen.
    pub saved_at: Option<SystemTime>,
    /// The source that made it (a favourite re-renders exactly this).
    pub source: Arc<String>,
    pub kind: &'static str,
    /// Frames in the latent loop, for CPPN sketches (0: not animated).
    pub loop_frames: u32,
    pub fps: f64,
    /// Which frame of the loop this is, if it is one.
    pub frame: Option<u32>,
    /// The seed it was rendered with, and the file's own.
    pub seed: u64,
    pub file_seed: u64,
    /// The knobs the sketch declares, and the values it was rendered with.
    pub params: Params,
    pub knobs: Knobs,
}

/// The newest run of one sketch, as found in the runs folder.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    pub path: PathBuf,
    pub status: Option<Status>,
    /// The training process still exists (a `running` status from a killed process
    /// would otherwise look live forever).
    pub alive: bool,
}

impl RunInfo {
    /// Running, paused or starting (or just spawned, before its first status.json),
    /// with its process alive.
    pub fn is_active(&self) -> bool {
        self.alive
            && self
                .status
                .as_ref()
                .is_none_or(|s| matches!(s.state, State::Starting | State::Running | State::Paused))
    }
}

/// What changed in the followed run since the last look.
#[derive(Debug, Clone)]
pub struct RunTail {
    pub path: PathBuf,
    pub status: Option<Status>,
    pub alive: bool,
    /// New metric lines; with `reset` they replace all earlier ones.
    pub metrics: Vec<Metric>,
    pub reset: bool,
    pub spec: Option<GanSpec>,
    /// The newest sample grid, when it changed.
    pub sample: Option<(PathBuf, Arc<DynamicImage>)>,
}

/// The followed run, as the panels show it.
#[derive(Debug, Clone, Default)]
pub struct RunView {
    pub path: PathBuf,
    pub status: Option<Status>,
    pub alive: bool,
    pub metrics: Vec<Metric>,
    pub spec: Option<GanSpec>,
    pub sample: Option<(PathBuf, Arc<DynamicImage>)>,
}

impl RunView {
    pub fn info(&self) -> RunInfo {
        RunInfo {
            path: self.path.clone(),
            status: self.status.clone(),
            alive: self.alive,
        }
    }
}

pub enum Msg {
    Key(KeyEvent),
    /// Time passes (drives the animation).
    Tick(Instant),
    /// The sketch folder's `.rhai` files, after any change to the folder.
    SketchesListed(Vec<PathBuf>),
    /// Sketch files written (debounced).
    FilesChanged(Vec<PathBuf>),
    Rendered(Rendered),
    RenderFailed {
        id: u64,
        path: PathBuf,
        error: String,
    },
    /// A GAN sketch loaded (it has no picture of its own: its run's samples are shown).
    GanLoaded {
        id: u64,
        path: PathBuf,
        spec: Box<GanSpec>,
        reason: Reason,
    },
    /// Newest run per sketch name.
    Runs(HashMap<String, RunInfo>),
    RunTail(Box<RunTail>),
    FavouriteSaved(Result<PathBuf, String>),
    /// `w` wrote these knob values into the sketch file as its defaults (or failed).
    KnobsWritten {
        path: PathBuf,
        result: Result<Knobs, String>,
    },
    TrainingStarted(Result<PathBuf, String>),
    /// Something the runtime could not do.
    Error(String),
    /// The request is taking a while (a CPPN fitting its network); it comes later.
    Busy {
        id: u64,
        path: PathBuf,
        note: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Favourite {
    /// Re-render the sketch source at its own size, with the seed and knob values of
    /// the picture shown, and save it with its recipe.
    Sketch {
        path: PathBuf,
        source: Arc<String>,
        seed: Option<u64>,
        knobs: Knobs,
    },
    /// Save this picture (a GAN sample grid) as it is.
    Picture {
        name: String,
        image: Arc<DynamicImage>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Render(RenderRequest),
    /// Tail this run directory (or none).
    Follow(Option<PathBuf>),
    SaveFavourite(Favourite),
    /// Write these knob values into the sketch file as the defaults of its `params`.
    WriteKnobs {
        path: PathBuf,
        knobs: Knobs,
    },
    /// Start `easel train` as a process of its own; `resume` continues that run.
    StartTraining {
        sketch: PathBuf,
        resume: Option<PathBuf>,
    },
    /// Merge these fields into the run's control.json.
    Control {
        run: PathBuf,
        patch: Control,
    },
    Quit,
}

impl Effect {
    /// Asks the run to run, pause or stop (control.json's `state`).
    pub fn set_state(run: PathBuf, state: Wanted) -> Effect {
        Effect::Control {
            run,
            patch: Control {
                state: Some(state),
                ..Control::default()
            },
        }
    }
}

/// A question waiting for y/n.
#[derive(Debug, Clone, PartialEq)]
pub enum Confirm {
    /// The GAN sketch changed structurally while its run trains.
    Restart { sketch: PathBuf, run: PathBuf },
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

/// The preview: the last good picture of the selected sketch.
#[derive(Debug, Clone)]
pub struct Picture {
    pub path: PathBuf,
    pub image: Arc<DynamicImage>,
    /// Shown in the preview's title, e.g. "512x512 · 14 ms".
    pub caption: String,
    /// Changes with every new picture, so the view re-encodes only then.
    pub serial: u64,
    pub source: Option<Arc<String>>,
    /// The seed and knob values it was made with (for the favourite's recipe).
    pub seed: Option<u64>,
    pub knobs: Knobs,
}

/// The CPPN latent loop playing in the preview.
#[derive(Debug, Clone, PartialEq)]
pub struct Animation {
    pub path: PathBuf,
    pub frames: u32,
    pub fps: f64,
    pub frame: u32,
    pub playing: bool,
    /// A frame is being rendered: ask for the next one only when it arrives.
    pub in_flight: bool,
    pub last_frame: Option<Instant>,
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
    pub kinds: HashMap<PathBuf, &'static str>,
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
    /// Which knob of the selected sketch `-`/`=` turn.
    pub knob: usize,
    /// The preview fills the screen (`f`).
    pub fullscreen: bool,
    pub quit: bool,
    /// Log time stamps (fixed in tests, for stable snapshots).
    pub clock: fn() -> String,
    /// The newest GAN spec loaded from each GAN sketch.
    gan_specs: HashMap<PathBuf, GanSpec>,
    next_id: u64,
    /// The request whose result the preview waits for.
    current_id: u64,
    followed: Option<PathBuf>,
    serial: u64,
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
            knob: 0,
            fullscreen: false,
            quit: false,
            clock: local_time,
            gan_specs: HashMap::new(),
            next_id: 0,
            current_id: 0,
            followed: None,
            serial: 0,
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
            Msg::FavouriteSaved(Ok(path)) => {
                self.info(format!("saved favourite {}", path.display()));
                vec![]
            }
            Msg::FavouriteSaved(Err(e)) => {
                self.log_line(Level::Error, format!("favourite not saved: {e}"));
                vec![]
            }
            Msg::KnobsWritten { path, result } => self.on_knobs_written(path, result),
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

    // ---- keys ------------------------------------------------------------------------

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
            Action::NextSeed => self.step_seed(1),
            Action::PreviousSeed => self.step_seed(-1),
            Action::NextKnob => self.select_knob(1),
            Action::PreviousKnob => self.select_knob(-1),
            Action::KnobUp => self.turn_knob(1, false),
            Action::KnobDown => self.turn_knob(-1, false),
            Action::KnobUpCoarse => self.turn_knob(1, true),
            Action::KnobDownCoarse => self.turn_knob(-1, true),
            Action::WriteKnobs => self.write_knobs(),
            Action::Fullscreen => {
                self.fullscreen = !self.fullscreen;
                vec![]
            }
        }
    }

    fn quit(&mut self) -> Vec<Effect> {
        self.quit = true;
        vec![Effect::Quit]
    }

    fn move_selection(&mut self, delta: i64) -> Vec<Effect> {
        if self.sketches.is_empty() || !matches!(self.mode, Mode::Studio { .. }) {
            return vec![];
        }
        let last = self.sketches.len() as i64 - 1;
        let to = (self.selected as i64 + delta).clamp(0, last) as usize;
        if to == self.selected {
            return vec![];
        }
        self.select(to, Reason::Selected)
    }

    /// Selects sketch `index` and asks for its picture.
    fn select(&mut self, index: usize, reason: Reason) -> Vec<Effect> {
        let Some(path) = self.sketches.get(index).cloned() else {
            return self.refollow();
        };
        if self.selected_path() != Some(&path) {
            // Another sketch: its errors (and knobs) are its own.
            self.error = None;
            self.knob = 0;
        }
        self.selected = index;
        if self.picture.as_ref().is_some_and(|p| p.path != path) {
            // Keep the old picture on screen until the new one arrives, unless the new
            // sketch is a GAN (its picture is its run's samples).
            if self.kinds.get(&path) == Some(&"gan") {
                self.picture = None;
            }
        }
        if self.animation.as_ref().is_some_and(|a| a.path != path) {
            self.animation = None;
        }
        let mut effects = vec![self.request(path, reason, None)];
        effects.extend(self.refollow());
        effects
    }

    fn request(&mut self, path: PathBuf, reason: Reason, frame: Option<(u32, u32)>) -> Effect {
        self.next_id += 1;
        if frame.is_none() {
            self.current_id = self.next_id;
        }
        let tweaks = self.tweaks.get(&path).cloned().unwrap_or_default();
        Effect::Render(RenderRequest {
            id: self.next_id,
            path,
            reason,
            frame,
            tweaks,
        })
    }

    // ---- files -----------------------------------------------------------------------

    fn on_listed(&mut self, mut list: Vec<PathBuf>) -> Vec<Effect> {
        list.sort();
        if list == self.sketches {
            return vec![];
        }
        let current = self.selected_path().cloned();
        let added: Vec<String> = list
            .iter()
            .filter(|p| !self.sketches.contains(p))
            .map(|p| Self::sketch_name(p))
            .collect();
        let removed: Vec<String> = self
            .sketches
            .iter()
            .filter(|p| !list.contains(p))
            .map(|p| Self::sketch_name(p))
            .collect();
        if !added.is_empty() {
            self.info(format!("new: {}", added.join(", ")));
        }
        if !removed.is_empty() {
            self.info(format!("gone: {}", removed.join(", ")));
        }
        let was_empty = self.sketches.is_empty();
        self.sketches = list;
        match current.and_then(|c| self.sketches.iter().position(|p| *p == c)) {
            Some(i) => {
                self.selected = i;
                vec![]
            }
            None if self.sketches.is_empty() => {
                self.selected = 0;
                self.picture = None;
                self.animation = None;
                self.refollow()
            }
            None => {
                // The selected sketch went away (or the list was empty): select its
                // neighbour.
                let i = if was_empty {
                    0
                } else {
                    self.selected.min(self.sketches.len() - 1)
                };
                self.select(i, Reason::Selected)
            }
        }
    }

    /// A save selects the saved sketch (the one the artist is editing) and re-renders it.
    fn on_files_changed(&mut self, paths: Vec<PathBuf>) -> Vec<Effect> {
        let Mode::Studio { .. } = self.mode else {
            return vec![];
        };
        let saved = paths
            .iter()
            .rev()
            .find_map(|p| self.sketches.iter().position(|s| s == p));
        match saved {
            Some(i) => self.select(i, Reason::Saved),
            None => vec![],
        }
    }

    fn on_rendered(&mut self, r: Rendered) -> Vec<Effect> {
        self.kinds.insert(r.path.clone(), r.kind);
        if let Some(frame) = r.frame {
            // A frame of the loop: show it if the loop still plays this sketch.
            let Some(anim) = self.animation.as_mut().filter(|a| a.path == r.path) else {
                return vec![];
            };
            anim.in_flight = false;
            if !anim.playing {
                return vec![];
            }
            let caption = format!(
                "{}x{} · frame {}/{} · {} ms",
                r.image.width(),
                r.image.height(),
                frame + 1,
                anim.frames,
                r.render_time.as_millis()
            );
            let (source, seed, knobs) = match &self.picture {
                Some(p) => (p.source.clone(), p.seed, p.knobs.clone()),
                None => (None, None, Knobs::new()),
            };
            self.show(r.path, r.image, caption, source);
            if let Some(p) = self.picture.as_mut() {
                p.seed = seed;
                p.knobs = knobs;
            }
            return vec![];
        }
        if r.id != self.current_id {
            return vec![]; // a newer request is on its way: latest wins
        }
        self.busy = None;
        let fixed = self.error.take().is_some();
        // The file may have changed the seed or a default itself: it wins over the studio.
        let tweaks = self.tweaks.entry(r.path.clone()).or_default();
        tweaks.reconcile(r.file_seed, &r.params);
        if tweaks.is_empty() {
            self.tweaks.remove(&r.path);
        }
        if self.params.get(&r.path) != Some(&r.params) {
            self.knob = self.knob.min(r.params.0.len().saturating_sub(1));
        }
        self.params.insert(r.path.clone(), r.params.clone());
        self.file_seeds.insert(r.path.clone(), r.file_seed);
        let (w, h) = r.size;
        let mut caption = format!("seed {} · {w}x{h}", r.seed);
        if r.coarse {
            caption.push_str(" · coarse");
        } else {
            caption.push_str(&format!(" · render {} ms", r.render_time.as_millis()));
            if let Some(saved) = r.saved_at {
                // Save → on screen: the studio draws right after this update.
                if let Ok(latency) = SystemTime::now().duration_since(saved) {
                    caption.push_str(&format!(" · save→screen {} ms", latency.as_millis()));
                }
            }
        }
        if !r.coarse {
            let name = Self::sketch_name(&r.path);
            if fixed {
                self.info(format!("{name}: fixed"));
            } else if r.saved_at.is_some() {
                self.info(format!(
                    "reloaded {name} ({} ms)",
                    r.render_time.as_millis()
                ));
            }
            self.animation = (r.loop_frames > 1).then(|| Animation {
                path: r.path.clone(),
                frames: r.loop_frames,
                fps: r.fps.max(1.0),
                frame: 0,
                // A loop plays on its own only when asked: space.
                playing: self
                    .animation
                    .as_ref()
                    .is_some_and(|a| a.path == r.path && a.playing),
                in_flight: false,
                last_frame: None,
            });
        }
        self.show(r.path, r.image, caption, Some(r.source));
        if let Some(p) = self.picture.as_mut() {
            p.seed = Some(r.seed);
            p.knobs = r.knobs;
        }
        vec![]
    }

    fn show(
        &mut self,
        path: PathBuf,
        image: Arc<DynamicImage>,
        caption: String,
        source: Option<Arc<String>>,
    ) {
        self.serial += 1;
        self.picture = Some(Picture {
            path,
            image,
            caption,
            serial: self.serial,
            source,
            seed: None,
            knobs: Knobs::new(),
        });
    }

    fn on_gan_loaded(
        &mut self,
        id: u64,
        path: PathBuf,
        spec: GanSpec,
        reason: Reason,
    ) -> Vec<Effect> {
        self.kinds.insert(path.clone(), "gan");
        let previous = self.gan_specs.insert(path.clone(), spec.clone());
        if id == self.current_id {
            if self.error.take().is_some() {
                self.info(format!("{}: fixed", Self::sketch_name(&path)));
            }
            self.animation = None;
            // The picture of a GAN sketch is its run's newest sample grid.
            self.picture = None;
            if let Some((sample_path, img)) = self
                .run
                .as_ref()
                .filter(|r| self.run_of(&path).is_some_and(|i| i.path == r.path))
                .and_then(|r| r.sample.clone())
            {
                self.show_sample(&path, sample_path, img);
            }
        }
        if reason != Reason::Saved {
            return vec![];
        }
        // Saved while its run trains: push what can change live, ask about the rest.
        let Some(run) = self.run_of(&path).filter(|r| r.is_active()).cloned() else {
            return vec![];
        };
        let running_spec = self
            .run
            .as_ref()
            .filter(|v| v.path == run.path)
            .and_then(|v| v.spec.clone())
            .or(previous);
        let Some(running) = running_spec else {
            return vec![];
        };
        let mut same_structure = spec.clone();
        same_structure.lr_g = running.lr_g;
        same_structure.lr_d = running.lr_d;
        same_structure.sample_every = running.sample_every;
        if same_structure != running {
            self.confirm = Some(Confirm::Restart {
                sketch: path,
                run: run.path,
            });
            return vec![];
        }
        let mut patch = Control::default();
        let mut changes = vec![];
        if spec.lr_g != running.lr_g {
            patch.lr_g = Some(spec.lr_g);
            changes.push(format!("lr_g {}", spec.lr_g));
        }
        if spec.lr_d != running.lr_d {
            patch.lr_d = Some(spec.lr_d);
            changes.push(format!("lr_d {}", spec.lr_d));
        }
        if spec.sample_every != running.sample_every {
            patch.sample_every = Some(spec.sample_every as u64);
            changes.push(format!("sample_every {}", spec.sample_every));
        }
        if changes.is_empty() {
            return vec![];
        }
        if let Some(v) = self.run.as_mut().filter(|v| v.path == run.path) {
            if let Some(s) = v.spec.as_mut() {
                s.lr_g = spec.lr_g;
                s.lr_d = spec.lr_d;
                s.sample_every = spec.sample_every;
            }
        }
        self.info(format!("pushed to the run: {}", changes.join(", ")));
        vec![Effect::Control {
            run: run.path,
            patch,
        }]
    }

    fn confirmed(&mut self, confirm: Confirm) -> Vec<Effect> {
        match confirm {
            Confirm::Restart { sketch, run } => {
                self.info(format!(
                    "restarting: stopping {} and starting a new run",
                    run.display()
                ));
                vec![
                    Effect::set_state(run, Wanted::Stop),
                    Effect::StartTraining {
                        sketch,
                        resume: None,
                    },
                ]
            }
        }
    }

    // ---- runs ------------------------------------------------------------------------

    /// The run the panels should follow: the watched one, or the selected sketch's newest.
    fn wanted_run(&self) -> Option<PathBuf> {
        match &self.mode {
            Mode::Watch { run } => Some(run.clone()),
            Mode::Studio { .. } => self
                .selected_path()
                .and_then(|p| self.run_of(p))
                .map(|r| r.path.clone()),
        }
    }

    fn refollow(&mut self) -> Vec<Effect> {
        let wanted = self.wanted_run();
        self.follow(wanted)
    }

    fn follow(&mut self, run: Option<PathBuf>) -> Vec<Effect> {
        if run == self.followed {
            return vec![];
        }
        self.followed = run.clone();
        self.run = run.clone().map(|path| RunView {
            path,
            ..RunView::default()
        });
        vec![Effect::Follow(run)]
    }

    fn on_run_tail(&mut self, tail: RunTail) -> Vec<Effect> {
        let Some(view) = self.run.as_mut().filter(|v| v.path == tail.path) else {
            return vec![];
        };
        let old_state = view.status.as_ref().map(|s| s.state.clone());
        if tail.reset {
            view.metrics = tail.metrics;
        } else {
            view.metrics.extend(tail.metrics);
        }
        view.alive = tail.alive;
        if tail.spec.is_some() {
            view.spec = tail.spec;
        }
        let new_state = tail.status.as_ref().map(|s| s.state.clone());
        let message = tail
            .status
            .as_ref()
            .map(|s| s.message.clone())
            .unwrap_or_default();
        view.status = tail.status;
        let run_path = view.path.clone();
        if let Some(sample) = tail.sample.clone() {
            view.sample = Some(sample);
        }
        // Keep the runs index in step with what we see.
        if let Mode::Studio { .. } = self.mode {
            if let Some(path) = self.selected_path().cloned() {
                let info = self.run.as_ref().map(RunView::info);
                if let (Some(info), Some(entry)) =
                    (info, self.runs.get_mut(&Self::sketch_name(&path)))
                {
                    if entry.path == run_path {
                        *entry = info;
                    }
                }
            }
        }
        if old_state.is_some() && new_state != old_state {
            if let Some(state) = &new_state {
                let name = run_path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let text = if message.is_empty() {
                    format!("{name}: {}", state_word(state))
                } else {
                    format!("{name}: {} ({message})", state_word(state))
                };
                let level = if *state == State::Failed {
                    Level::Error
                } else {
                    Level::Info
                };
                self.log_line(level, text);
            }
        }
        if let Some((sample_path, img)) = tail.sample {
            let showing_this_run = match &self.mode {
                Mode::Watch { .. } => true,
                Mode::Studio { .. } => self
                    .selected_path()
                    .is_some_and(|p| self.kinds.get(p) == Some(&"gan")),
            };
            if showing_this_run {
                let owner = self
                    .selected_path()
                    .cloned()
                    .unwrap_or_else(|| run_path.clone());
                self.show_sample(&owner, sample_path, img);
            }
        }
        vec![]
    }

    fn show_sample(&mut self, owner: &Path, sample_path: PathBuf, img: Arc<DynamicImage>) {
        let step = sample_path
            .file_stem()
            .map(|s| {
                s.to_string_lossy()
                    .trim_start_matches("step_")
                    .trim_start_matches('0')
                    .to_string()
            })
            .unwrap_or_default();
        let caption = format!(
            "samples · step {} · {}x{}",
            if step.is_empty() { "0".into() } else { step },
            img.width(),
            img.height()
        );
        self.show(owner.to_path_buf(), img, caption, None);
    }

    // ---- actions ---------------------------------------------------------------------

    fn favourite(&mut self) -> Vec<Effect> {
        let Some(picture) = self.picture.clone() else {
            self.info("nothing to save yet".into());
            return vec![];
        };
        let effect = match (&picture.source, self.kinds.get(&picture.path)) {
            (Some(source), Some(kind)) if *kind != "gan" => Favourite::Sketch {
                path: picture.path.clone(),
                source: source.clone(),
                seed: picture.seed,
                knobs: picture.knobs.clone(),
            },
            _ => Favourite::Picture {
                name: match &self.mode {
                    Mode::Watch { run } => run
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "run".into()),
                    Mode::Studio { .. } => Self::sketch_name(&picture.path),
                },
                image: picture.image.clone(),
            },
        };
        vec![Effect::SaveFavourite(effect)]
    }

    fn train(&mut self) -> Vec<Effect> {
        let Some(path) = self.selected_path().cloned() else {
            self.info(
                "t trains the selected GAN sketch (in `easel watch`, use `easel train --resume`)"
                    .into(),
            );
            return vec![];
        };
        let name = Self::sketch_name(&path);
        match self.kinds.get(&path) {
            Some(&"gan") => {}
            Some(kind) => {
                self.info(format!("{name} is a {kind} sketch: t trains GAN sketches"));
                return vec![];
            }
            None => {
                self.info(format!("{name} has not loaded yet"));
                return vec![];
            }
        }
        if self.error.is_some() {
            self.info(format!("fix {name} first: it has an error"));
            return vec![];
        }
        if let Some(run) = self.run_of(&path).cloned() {
            if run.is_active() {
                self.info(format!(
                    "{name} is already training ({}): p pauses, x stops",
                    run.path.display()
                ));
                return vec![];
            }
            let resumable = run
                .status
                .as_ref()
                .is_some_and(|s| s.checkpoint_step.is_some() && s.state != State::Done);
            if resumable {
                self.info(format!("resuming {}", run.path.display()));
                return vec![Effect::StartTraining {
                    sketch: path,
                    resume: Some(run.path.clone()),
                }];
            }
        }
        self.info(format!("starting training of {name}"));
        vec![Effect::StartTraining {
            sketch: path,
            resume: None,
        }]
    }

    fn active_run(&mut self) -> Option<RunView> {
        let run = self.run.clone();
        match run {
            Some(r) if r.info().is_active() => Some(r),
            Some(r) => {
                let state = r
                    .status
                    .as_ref()
                    .map_or("not started", |s| state_word(&s.state));
                self.info(format!("the run is {state}: nothing to control"));
                None
            }
            None => {
                self.info("no run to control: t starts one on a GAN sketch".into());
                None
            }
        }
    }

    fn pause_or_resume(&mut self) -> Vec<Effect> {
        let Some(run) = self.active_run() else {
            return vec![];
        };
        let paused = run
            .status
            .as_ref()
            .is_some_and(|s| s.state == State::Paused);
        let state = if paused { Wanted::Run } else { Wanted::Pause };
        self.info(format!(
            "{} requested",
            if paused { "resume" } else { "pause" }
        ));
        vec![Effect::set_state(run.path, state)]
    }

    fn stop(&mut self) -> Vec<Effect> {
        let Some(run) = self.active_run() else {
            return vec![];
        };
        self.info("stop requested: it checkpoints first; t resumes it".into());
        vec![Effect::set_state(run.path, Wanted::Stop)]
    }

    /// The selected sketch, if it is a Truchet or CPPN sketch that has rendered (so its
    /// file's seed and knobs are known); otherwise says why not.
    fn tweakable(&mut self, what: &str) -> Option<PathBuf> {
        let path = self.selected_path().cloned()?;
        match self.kinds.get(&path) {
            Some(&"gan") => {
                // A GAN's preview is its run's sample grid, drawn by the training
                // process from its own fixed noise: the studio has no generator to draw
                // other noise with.
                self.info(format!(
                    "{what} Truchet and CPPN sketches; for other samples of a GAN use `easel sample RUN --seed N`"
                ));
                None
            }
            Some(_) if self.file_seeds.contains_key(&path) => Some(path),
            _ => {
                self.info(format!("{} has not rendered yet", Self::sketch_name(&path)));
                None
            }
        }
    }

    /// `n`/`N`: the next or previous seed, rendered at once; the file is not touched.
    fn step_seed(&mut self, delta: i64) -> Vec<Effect> {
        let Some(path) = self.tweakable("n and N change the seed of") else {
            return vec![];
        };
        let file = self.file_seeds[&path];
        let tweaks = self.tweaks.entry(path.clone()).or_default();
        let value = tweaks.seed_for(file).wrapping_add_signed(delta);
        tweaks.seed = (value != file).then_some(Tweak { file, value });
        self.select(self.selected, Reason::Asked)
    }

    /// The selected sketch's declared knobs and their current values, if it has any.
    pub fn knob_values(&self) -> Option<(&Params, Knobs)> {
        let path = self.selected_path()?;
        let params = self.params.get(path).filter(|p| !p.is_empty())?;
        let values = self
            .tweaks
            .get(path)
            .map(|t| t.knobs_for(params))
            .unwrap_or_else(|| params.defaults());
        Some((params, values))
    }

    fn knobbed(&mut self) -> Option<(PathBuf, Params)> {
        let path = self.tweakable("knobs turn")?;
        match self.params.get(&path).filter(|p| !p.is_empty()) {
            Some(p) => Some((path, p.clone())),
            None => {
                self.info(format!(
                    "{} has no knobs: declare some in its map, e.g. params: #{{ hue: [0.0, 1.0, 0.3] }}",
                    Self::sketch_name(&path)
                ));
                None
            }
        }
    }

    fn select_knob(&mut self, delta: i64) -> Vec<Effect> {
        if let Some((_, params)) = self.knobbed() {
            let last = params.0.len() as i64 - 1;
            self.knob = (self.knob as i64 + delta).clamp(0, last) as usize;
        }
        vec![]
    }

    /// Turns the selected knob by one fine or coarse step (kept in range) and renders.
    fn turn_knob(&mut self, direction: i32, coarse: bool) -> Vec<Effect> {
        let Some((path, params)) = self.knobbed() else {
            return vec![];
        };
        let p = &params.0[self.knob.min(params.0.len() - 1)];
        let tweaks = self.tweaks.entry(path).or_default();
        let now = tweaks.knobs_for(&params)[&p.name];
        let step = if coarse {
            p.coarse_step()
        } else {
            p.fine_step()
        };
        let value = p.nudge(now, step, direction);
        if value == now {
            return vec![]; // at the end of its range
        }
        if value == p.default {
            tweaks.knobs.remove(&p.name);
        } else {
            tweaks.knobs.insert(
                p.name.clone(),
                Tweak {
                    file: p.default,
                    value,
                },
            );
        }
        self.select(self.selected, Reason::Asked)
    }

    /// `w`: the knobs' values become the file's defaults.
    fn write_knobs(&mut self) -> Vec<Effect> {
        let Some((path, _)) = self.knobbed() else {
            return vec![];
        };
        let Some((_, knobs)) = self.knob_values() else {
            return vec![];
        };
        vec![Effect::WriteKnobs { path, knobs }]
    }

    fn on_knobs_written(&mut self, path: PathBuf, result: Result<Knobs, String>) -> Vec<Effect> {
        match result {
            Ok(written) => {
                // The file says these now: the tweaks are its values (the reload that
                // the write sets off would find the same).
                if let Some(tweaks) = self.tweaks.get_mut(&path) {
                    tweaks
                        .knobs
                        .retain(|name, t| written.get(name) != Some(&t.value));
                    for (name, t) in tweaks.knobs.iter_mut() {
                        if let Some(&v) = written.get(name) {
                            t.file = v;
                        }
                    }
                }
                if let Some(params) = self.params.get_mut(&path) {
                    for p in params.0.iter_mut() {
                        if let Some(&v) = written.get(&p.name) {
                            p.default = v;
                        }
                    }
                }
                let text: Vec<String> = written.iter().map(|(k, v)| format!("{k} {v}")).collect();
                self.info(format!(
                    "wrote {} into {} as defaults",
                    text.join(", "),
                    Self::sketch_name(&path)
                ));
            }
            Err(e) => self.log_line(Level::Error, format!("knobs not written: {e}")),
        }
        vec![]
    }

    fn toggle_animation(&mut self) -> Vec<Effect> {
        match self.animation.as_mut() {
            Some(a) => {
                a.playing = !a.playing;
                a.last_frame = None;
                vec![]
            }
            None => {
                self.info("space plays CPPN sketches with an animation".into());
                vec![]
            }
        }
    }

    fn on_tick(&mut self, now: Instant) -> Vec<Effect> {
        let Some(anim) = self.animation.as_mut() else {
            return vec![];
        };
        if !anim.playing || anim.in_flight {
            return vec![];
        }
        let period = Duration::from_secs_f64(1.0 / anim.fps);
        if anim
            .last_frame
            .is_some_and(|t| now.duration_since(t) < period)
        {
            return vec![];
        }
        anim.frame = (anim.frame + 1) % anim.frames;
        anim.in_flight = true;
        anim.last_frame = Some(now);
        let (path, k, frames) = (anim.path.clone(), anim.frame, anim.frames);
        vec![self.request(path, Reason::Selected, Some((k, frames)))]
    }

    // ---- log -------------------------------------------------------------------------

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

pub fn state_word(state: &State) -> &'static str {
    match state {
        State::Starting => "starting",
        State::Running => "running",
        State::Paused => "paused",
        State::Stopped => "stopped",
        State::Done => "done",
        State::Failed => "failed",
    }
}
