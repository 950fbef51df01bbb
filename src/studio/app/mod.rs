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
use super::variations::{self, Breed, Grid, Variant, VariationRequest};
use crate::cppn::net::Network;
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
    /// A picked CPPN mutation: explicit weights in place of the sketch's own network.
    pub mutant: Option<Mutant>,
}

/// A CPPN network bred in the studio (`v`, then a digit). It counts only while the file
/// is the source it was bred from: an edit of the file wins, as it does for seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutant {
    pub network: Arc<Network>,
    /// The sketch file's text the network was bred against.
    pub bred_from: Arc<String>,
    /// How it came about, e.g. "mutation 3 · strength 0.25 · generation 2" (a comment in
    /// the file it is saved as).
    pub lineage: String,
    pub generation: u32,
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
        self.seed.is_none() && self.knobs.is_empty() && self.mutant.is_none()
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
    /// The breeder's pictures for a grid (a coarse pass may come first).
    VariationsRendered {
        id: u64,
        children: Vec<Variant>,
        coarse: bool,
    },
    VariationsFailed {
        id: u64,
        error: String,
    },
    /// A picked mutation was saved as a sketch file (and a favourite made from it).
    MutantSaved(Result<(PathBuf, PathBuf), String>),
    /// An export's progress, for the log.
    ExportProgress(String),
    Exported(Result<PathBuf, String>),
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

/// What `s` saves for a picked mutation.
#[derive(Debug, Clone, PartialEq)]
pub struct SaveMutant {
    pub path: PathBuf,
    pub source: Arc<String>,
    pub seed: u64,
    pub knobs: Knobs,
    pub mutant: Mutant,
}

/// What `e` exports: the picture on screen (its source, seed, knobs and picked weights)
/// at another size.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    pub path: PathBuf,
    pub source: Arc<String>,
    pub seed: u64,
    pub knobs: Knobs,
    pub mutant: Option<Mutant>,
    pub target: ExportTarget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportTarget {
    /// A PNG of this size, with its recipe.
    Still { width: u32, height: u32 },
    /// The CPPN's latent loop as a GIF, longest side this many pixels.
    Gif { side: u32 },
}

/// The default export size of a still (the longest side).
pub const EXPORT_SIDE: u32 = 4096;

/// Reads what was typed at the export prompt: empty → the longest side 4096, `N` → the
/// longest side N (aspect kept), `WxH` → exactly that, `gif` / `gif N` → the latent loop
/// as a GIF (at the sketch's own size, or longest side N).
pub fn parse_export(text: &str, own: (u32, u32)) -> Result<ExportTarget, String> {
    let text = text.trim().to_ascii_lowercase();
    let side = |t: &str| -> Result<u32, String> {
        match t.parse::<u32>() {
            Ok(n) if (1..=crate::sketch::MAX_SIDE).contains(&n) => Ok(n),
            _ => Err(format!(
                "\"{t}\" is not a size: give a side from 1 to {} (e.g. 4096), WxH (e.g. 3840x2160) or gif",
                crate::sketch::MAX_SIDE
            )),
        }
    };
    let scaled = |longest: u32| {
        let (w, h) = own;
        let scale = longest as f64 / w.max(h).max(1) as f64;
        (
            ((w as f64 * scale).round() as u32).max(1),
            ((h as f64 * scale).round() as u32).max(1),
        )
    };
    if let Some(rest) = text.strip_prefix("gif") {
        let rest = rest.trim();
        let side = if rest.is_empty() {
            own.0.max(own.1)
        } else {
            side(rest)?
        };
        return Ok(ExportTarget::Gif { side });
    }
    let (width, height) = if text.is_empty() {
        scaled(EXPORT_SIDE)
    } else if let Some((w, h)) = text.split_once('x') {
        (side(w.trim())?, side(h.trim())?)
    } else {
        scaled(side(&text)?)
    };
    if width as u64 * height as u64 > crate::sketch::MAX_PIXELS {
        return Err(format!(
            "{width}x{height} is more than {} pixels",
            crate::sketch::MAX_PIXELS
        ));
    }
    Ok(ExportTarget::Still { width, height })
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
    /// Render a grid of variations (in the breeder thread, in parallel).
    RenderVariations(VariationRequest),
    /// Save a picked CPPN mutation as a new sketch file next to its parent (and a
    /// favourite rendered from that file).
    SaveMutant(SaveMutant),
    /// Render the picture at another size (or as a GIF) in the background.
    Export(Export),
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
        // A new current (or another sketch): the grid's children are of the old one.
        self.variations = None;
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
        let breeding = self.variations.as_ref().map(|g| g.path.clone());
        match saved {
            Some(i) => {
                let mut effects = self.select(i, Reason::Saved);
                // Live-coding with the grid open: breed again from the saved file.
                if breeding.as_ref() == Some(&self.sketches[i]) {
                    effects.extend(self.open_variations());
                }
                effects
            }
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
        let stale_mutant = tweaks
            .mutant
            .as_ref()
            .is_some_and(|m| *m.bred_from != *r.source);
        if stale_mutant {
            tweaks.mutant = None;
        }
        if tweaks.is_empty() {
            self.tweaks.remove(&r.path);
        }
        if self.params.get(&r.path) != Some(&r.params) {
            self.knob = self.knob.min(r.params.0.len().saturating_sub(1));
        }
        self.params.insert(r.path.clone(), r.params.clone());
        self.file_seeds.insert(r.path.clone(), r.file_seed);
        self.sizes.insert(r.path.clone(), r.size);
        if stale_mutant {
            self.info(format!(
                "{} changed: the picked mutation is dropped (Backspace goes back to it)",
                Self::sketch_name(&r.path)
            ));
        }
        let (w, h) = r.size;
        let mut caption = format!("seed {} · {w}x{h}", r.seed);
        if let Some(m) = self.tweaks.get(&r.path).and_then(|t| t.mutant.as_ref()) {
            caption.push_str(&format!(" · gen {}", m.generation));
        }
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
        let mutant = self
            .tweaks
            .get(&picture.path)
            .and_then(|t| t.mutant.clone())
            .filter(|m| picture.source.as_ref() == Some(&m.bred_from));
        if let (Some(mutant), Some(source), Some(seed)) = (mutant, &picture.source, picture.seed) {
            return vec![Effect::SaveMutant(SaveMutant {
                path: picture.path.clone(),
                source: source.clone(),
                seed,
                knobs: picture.knobs.clone(),
                mutant,
            })];
        }
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
        let tweaks = self.tweaks.entry(path.clone()).or_default();
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
        if tweaks.mutant.is_some() {
            // Knobs may change the network's shape: the picked weights no longer apply.
            let before = tweaks.clone();
            tweaks.mutant = None;
            self.history.push((path.clone(), before));
            self.info("a knob turned: left the picked mutation (Backspace goes back)".into());
        }
        let tweaks = self.tweaks.entry(path).or_default();
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

    // ---- variations ------------------------------------------------------------------

    /// `v`: a grid of nine children of the current picture (in the grid: the next nine).
    fn open_variations(&mut self) -> Vec<Effect> {
        let round = match &self.variations {
            Some(g) if Some(&g.path) == self.selected_path() => g.round + 1,
            _ => 0,
        };
        self.breed(round)
    }

    /// Asks for round `round` of the current picture's children.
    fn breed(&mut self, round: u64) -> Vec<Effect> {
        let Some(path) = self.tweakable("v breeds variations of") else {
            return vec![];
        };
        let parent = self.tweaks.get(&path).cloned().unwrap_or_default();
        let breed = match self.kinds.get(&path) {
            Some(&"cppn") => Breed::Mutations {
                seeds: variations::mutation_seeds(round),
                strength: variations::STRENGTHS[self.strength],
                generation: parent.mutant.as_ref().map_or(0, |m| m.generation) + 1,
            },
            _ => {
                let seed = parent.seed_for(self.file_seeds[&path]);
                Breed::Seeds(variations::child_seeds(seed, round))
            }
        };
        self.next_id += 1;
        let id = self.next_id;
        self.variations = Some(Grid {
            id,
            path: path.clone(),
            parent: parent.clone(),
            breed: breed.clone(),
            round,
            children: vec![],
            coarse: false,
            serial: 0,
        });
        vec![Effect::RenderVariations(VariationRequest {
            id,
            path,
            parent,
            breed,
        })]
    }

    /// `1`–`9`: child `index` of the grid becomes the current picture.
    fn pick(&mut self, index: usize) -> Vec<Effect> {
        let Some(grid) = self.variations.as_ref() else {
            self.info("1–9 pick a variation: v shows nine".into());
            return vec![];
        };
        let Some(child) = grid.children.get(index) else {
            self.info(format!("variation {} has not rendered yet", index + 1));
            return vec![];
        };
        let (path, tweaks) = (grid.path.clone(), child.tweaks.clone());
        let label = grid.breed.labels()[index].clone();
        let Some(at) = self.sketches.iter().position(|p| *p == path) else {
            self.variations = None;
            return vec![];
        };
        let before = self.tweaks.get(&path).cloned().unwrap_or_default();
        self.history.push((path.clone(), before));
        if tweaks.is_empty() {
            self.tweaks.remove(&path);
        } else {
            self.tweaks.insert(path, tweaks);
        }
        self.info(format!(
            "picked {} ({label}): v breeds from it, backspace goes back",
            index + 1
        ));
        self.select(at, Reason::Asked)
    }

    /// Backspace: the current before the last pick comes back.
    fn back(&mut self) -> Vec<Effect> {
        let Some((path, tweaks)) = self.history.pop() else {
            self.info("nothing to go back to: backspace undoes a pick".into());
            return vec![];
        };
        let Some(at) = self.sketches.iter().position(|p| *p == path) else {
            self.info(format!("{} is gone", Self::sketch_name(&path)));
            return vec![];
        };
        if tweaks.is_empty() {
            self.tweaks.remove(&path);
        } else {
            self.tweaks.insert(path.clone(), tweaks);
        }
        self.info(format!("back to the earlier {}", Self::sketch_name(&path)));
        self.select(at, Reason::Asked)
    }

    /// `<` `>`: the mutation strength; an open CPPN grid is bred again with it.
    fn change_strength(&mut self, delta: i64) -> Vec<Effect> {
        let last = variations::STRENGTHS.len() as i64 - 1;
        self.strength = (self.strength as i64 + delta).clamp(0, last) as usize;
        self.info(format!(
            "mutation strength {} (of the sketch's init_std)",
            variations::STRENGTHS[self.strength]
        ));
        match &self.variations {
            // The same children's seeds, at the new strength.
            Some(g) if matches!(g.breed, Breed::Mutations { .. }) => self.breed(g.round),
            _ => vec![],
        }
    }

    // ---- export ----------------------------------------------------------------------

    /// `e`: opens the size prompt over a Truchet or CPPN picture.
    fn open_export(&mut self) -> Vec<Effect> {
        if self.export_of(ExportTarget::Gif { side: 1 }).is_none() {
            return vec![];
        }
        self.prompt = Some(String::new());
        vec![]
    }

    /// The export of the picture on screen, or why not (logged).
    fn export_of(&mut self, target: ExportTarget) -> Option<Export> {
        let path = self.tweakable("e exports")?;
        let Some(picture) = self.picture.clone().filter(|p| p.path == path) else {
            self.info("nothing to export yet".into());
            return None;
        };
        let (Some(source), Some(seed)) = (picture.source.clone(), picture.seed) else {
            self.info("nothing to export yet".into());
            return None;
        };
        let mutant = self
            .tweaks
            .get(&path)
            .and_then(|t| t.mutant.clone())
            .filter(|m| m.bred_from == source);
        Some(Export {
            path,
            source,
            seed,
            knobs: picture.knobs,
            mutant,
            target,
        })
    }

    fn on_prompt_key(&mut self, code: KeyCode) -> Vec<Effect> {
        let Some(text) = self.prompt.as_mut() else {
            return vec![];
        };
        match code {
            KeyCode::Esc => {
                self.prompt = None;
                vec![]
            }
            KeyCode::Backspace => {
                text.pop();
                vec![]
            }
            KeyCode::Char(c) if (c.is_ascii_alphanumeric() || c == ' ') && text.len() < 20 => {
                text.push(c);
                vec![]
            }
            KeyCode::Enter => {
                let text = self.prompt.take().unwrap_or_default();
                let own = self
                    .picture
                    .as_ref()
                    .and_then(|p| self.sizes.get(&p.path).copied())
                    .unwrap_or((512, 512));
                let target = match parse_export(&text, own) {
                    Ok(t) => t,
                    Err(e) => {
                        self.log_line(Level::Error, format!("export: {e}"));
                        return vec![];
                    }
                };
                if let ExportTarget::Gif { .. } = target {
                    let looping = self
                        .animation
                        .as_ref()
                        .is_some_and(|a| Some(&a.path) == self.selected_path() && a.frames > 1);
                    if !looping {
                        self.info("gif exports a CPPN's latent loop (a sketch with z)".into());
                        return vec![];
                    }
                }
                match self.export_of(target) {
                    Some(job) => {
                        let what = match target {
                            ExportTarget::Still { width, height } => format!("{width}x{height}"),
                            ExportTarget::Gif { side } => format!("a GIF, {side} px"),
                        };
                        self.info(format!(
                            "exporting {} at {what} in the background…",
                            Self::sketch_name(&job.path)
                        ));
                        vec![Effect::Export(job)]
                    }
                    None => vec![],
                }
            }
            _ => vec![],
        }
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
