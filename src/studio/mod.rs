//! The studio: a live terminal environment over a folder of sketches (`easel`), or over
//! one run directory (`easel watch`).
//!
//! - [`app`]: state + messages + update (no I/O; unit-tested);
//! - [`view`]: drawing, a function of the state;
//! - [`worker`]: threads that render, watch the folder and tail runs, talking back in
//!   messages;
//! - this file: the terminal, the event loop, and carrying out the app's effects.

pub mod app;
pub mod keys;
pub mod terminal;
pub mod variations;
pub mod view;
pub mod worker;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use crossterm::event::{Event, KeyEventKind};
use ratatui_image::picker::Picker;

use crate::device::DeviceArg;
use crate::recipe;
use crate::run::{Control, RunDir};
use crate::spec::Upscaling;

use app::{App, Effect, Export, ExportTarget, Favourite, Mode, Msg, SaveMutant};

/// How images reach the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Graphics {
    /// Ask the terminal (briefly) and use the best protocol it answers with.
    Auto,
    Kitty,
    Sixel,
    Iterm,
    /// Coloured half-block characters: work everywhere, over SSH and in tmux.
    Halfblocks,
}

/// How long `--graphics auto` waits for the terminal to answer.
const QUERY_TIMEOUT: Duration = Duration::from_millis(300);

/// The studio over the sketches in `dir`; runs go to `<dir>/../runs`, favourites to
/// `<dir>/../favourites`.
pub fn studio(dir: &Path, graphics: Graphics, device: DeviceArg, upscale: &str) -> Result<()> {
    if !dir.is_dir() {
        bail!(
            "{} is not a folder of sketches (try `easel init` to write the bundled ones \
             into ./sketches, or `easel studio DIR` for a folder of your own)",
            dir.display()
        );
    }
    // `sketches` has the empty parent: runs/ and favourites/ then sit in the current folder.
    let base = dir.parent().unwrap_or(Path::new(""));
    let places = Places {
        device,
        runs: Some(base.join("runs")),
        favourites: base.join("favourites"),
        exports: base.join("exports"),
        upscale: upscale.to_string(),
    };
    run_studio(
        Mode::Studio {
            dir: dir.to_path_buf(),
        },
        places,
        graphics,
    )
}

/// The run panels attached to one run directory.
pub fn watch(run: &Path, graphics: Graphics) -> Result<()> {
    RunDir {
        path: run.to_path_buf(),
    }
    .read_status()?;
    let places = Places {
        device: DeviceArg::Cpu,
        runs: None,
        favourites: PathBuf::from("favourites"),
        exports: PathBuf::from("exports"),
        upscale: Upscaling::DEFAULT_MODEL.to_string(),
    };
    run_studio(
        Mode::Watch {
            run: run.to_path_buf(),
        },
        places,
        graphics,
    )
}

struct Places {
    /// Where `t` trains.
    device: DeviceArg,
    runs: Option<PathBuf>,
    favourites: PathBuf,
    exports: PathBuf,
    /// The model `u` upscales with.
    upscale: String,
}

/// The picker for `graphics`, and a line for the log saying what was chosen and why.
fn picker(graphics: Graphics) -> (Picker, String) {
    use ratatui_image::picker::ProtocolType;
    let fixed = |t: ProtocolType| {
        // A protocol was named: keep the terminal's font size if it tells us.
        let mut p = query().unwrap_or_else(Picker::halfblocks);
        p.set_protocol_type(t);
        (p, "as asked".to_string())
    };
    let (picker, why) = match graphics {
        Graphics::Halfblocks => (
            Picker::halfblocks(),
            "work everywhere; --graphics auto asks the terminal for more".to_string(),
        ),
        Graphics::Auto => auto_picker(),
        Graphics::Kitty => fixed(ProtocolType::Kitty),
        Graphics::Sixel => fixed(ProtocolType::Sixel),
        Graphics::Iterm => fixed(ProtocolType::Iterm2),
    };
    let name = format!("{:?}", picker.protocol_type()).to_lowercase();
    (picker, format!("graphics: {name} ({why})"))
}

/// `--graphics auto`: the studio's own decision from the terminal's name, version and
/// attributes (see [`terminal::choose_protocol`]); under tmux/screen, ratatui-image's.
fn auto_picker() -> (Picker, String) {
    use ratatui_image::picker::ProtocolType;
    let env = terminal::TermEnv::from_env();
    let library = || {
        let p = query().unwrap_or_else(Picker::halfblocks);
        (p, "tmux/screen: ratatui-image's detection".to_string())
    };
    if env.multiplexed() {
        return library();
    }
    let Some(answers) = terminal::ask_terminal(QUERY_TIMEOUT) else {
        return (Picker::halfblocks(), "no answer from the terminal".into());
    };
    let said = format!(
        "{}, DA1 {}",
        answers.xtversion.as_deref().unwrap_or("no XTVERSION"),
        match &answers.da1 {
            Some(p) if p.contains(&4) => "with sixel",
            Some(_) => "without sixel",
            None => "unanswered",
        }
    );
    match terminal::choose_protocol(&answers, &env) {
        None => library(),
        Some(ProtocolType::Halfblocks) => (Picker::halfblocks(), said),
        Some(protocol) => match cell_size(&answers) {
            Some(size) => {
                // The one constructor that takes a known cell size; the query already
                // happened, so the library must not ask (and decide) again.
                #[allow(deprecated)]
                let mut picker = Picker::from_fontsize(size.into());
                picker.set_protocol_type(protocol);
                (picker, said)
            }
            // Pixel graphics sized with a guessed cell come out the wrong size.
            None => (Picker::halfblocks(), format!("{said}, cell size unknown")),
        },
    }
}

/// Pixels per cell: the terminal's answer, else the window's pixel size over its cells.
fn cell_size(answers: &terminal::Answers) -> Option<(u16, u16)> {
    answers.cell_size.or_else(|| {
        let w = crossterm::terminal::window_size().ok()?;
        (w.width > 0 && w.height > 0 && w.columns > 0 && w.rows > 0)
            .then(|| (w.width / w.columns, w.height / w.rows))
            .filter(|&(cw, ch)| cw > 0 && ch > 0)
    })
}

fn query() -> Option<Picker> {
    let options = ratatui_image::picker::cap_parser::QueryStdioOptions {
        timeout: QUERY_TIMEOUT,
        ..Default::default()
    };
    Picker::from_query_stdio_with_options(options).ok()
}

fn run_studio(mode: Mode, places: Places, graphics: Graphics) -> Result<()> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        bail!(
            "the studio needs a terminal. Without one, use `easel render`, `easel gallery` \
             or `easel train`."
        );
    }
    // ratatui::init restores the terminal on panic too.
    let mut terminal = ratatui::try_init().context("cannot set up the terminal")?;
    let result = event_loop(&mut terminal, mode, places, graphics);
    ratatui::restore();
    result
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    mode: Mode,
    places: Places,
    graphics: Graphics,
) -> Result<()> {
    // Ask the terminal about graphics before anything else reads its input.
    let (picker, graphics_line) = picker(graphics);
    let (tx, rx) = mpsc::channel::<Msg>();
    let mut view_state = view::ViewState::with_fitter(picker, worker::spawn_fitter(tx.clone()));
    spawn_input(tx.clone());
    let renderer = worker::spawn_renderer(tx.clone(), places.device);
    let breeder = worker::spawn_breeder(tx.clone());
    let sampler = worker::spawn_sampler(tx.clone());
    let (focus_tx, focus_rx) = mpsc::channel();
    worker::spawn_tailer(places.runs.clone(), focus_rx, tx.clone());
    let (_watcher, sketches) = match &mode {
        Mode::Studio { dir } => (
            Some(worker::watch_folder(dir, tx.clone())?),
            crate::sketch::list(dir)?,
        ),
        Mode::Watch { .. } => (None, vec![]),
    };
    let mut runtime = Runtime {
        tx: tx.clone(),
        renderer,
        breeder,
        sampler,
        focus: focus_tx,
        places,
    };
    let first = match &mode {
        Mode::Studio { dir } => first_sketch(dir, &sketches, &read_last_viewed()),
        Mode::Watch { .. } => 0,
    };
    let (mut app, effects) = App::new(mode, sketches, first);
    app.log_line(app::Level::Info, graphics_line);
    runtime.apply(effects);
    let mut dirty = true;
    loop {
        // Idle, nothing is redrawn: the studio costs no CPU while you edit.
        if dirty {
            terminal.draw(|f| view::draw(f, &app, &mut view_state))?;
        }
        let first = match rx.recv_timeout(Duration::from_millis(40)) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        dirty = first.is_some();
        let mut effects = first.map(|m| app.update(m)).unwrap_or_default();
        // Take everything already waiting, so a burst costs one draw.
        while let Ok(m) = rx.try_recv() {
            effects.extend(app.update(m));
        }
        // Time drives the latent loop.
        let ticked = app.update(Msg::Tick(Instant::now()));
        dirty |= !ticked.is_empty();
        effects.extend(ticked);
        runtime.apply(effects);
        if app.quit {
            break;
        }
    }
    if let (Mode::Studio { dir }, Some(path)) = (&app.mode, app.selected_path()) {
        // Best effort: the studio works the same without it.
        let _ = remember_last_viewed(dir, path);
    }
    Ok(())
}

/// Where the studio keeps what it remembers between sessions (the last sketch viewed
/// per folder): `$XDG_STATE_HOME/easel/studio.json`, else `~/.local/state/easel/`.
fn state_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(base.join("easel/studio.json"))
}

/// Folder (canonical path) → file name of the sketch viewed last there.
pub type LastViewed = std::collections::BTreeMap<String, String>;

fn read_last_viewed() -> LastViewed {
    state_file()
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

pub fn folder_key(dir: &Path) -> String {
    dir.canonicalize()
        .unwrap_or_else(|_| dir.to_path_buf())
        .to_string_lossy()
        .into_owned()
}

fn remember_last_viewed(dir: &Path, sketch: &Path) -> Result<()> {
    let file = state_file().context("no home folder")?;
    let mut all = read_last_viewed();
    let name = sketch.file_name().context("no file name")?;
    all.insert(folder_key(dir), name.to_string_lossy().into_owned());
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)?;
    }
    recipe::write_atomically(&file, |f| Ok(serde_json::to_writer_pretty(f, &all)?))
}

/// The sketch to open on: the one viewed last in this folder, else the first that renders
/// at once (a `fit:` CPPN trains first, so it is passed over).
pub fn first_sketch(dir: &Path, sketches: &[PathBuf], last: &LastViewed) -> usize {
    if let Some(name) = last.get(&folder_key(dir)) {
        if let Some(i) = sketches
            .iter()
            .position(|p| p.file_name().is_some_and(|n| n.to_string_lossy() == *name))
        {
            return i;
        }
    }
    sketches
        .iter()
        .position(|p| !std::fs::read_to_string(p).is_ok_and(|s| s.contains("fit:")))
        .unwrap_or(0)
}

fn spawn_input(tx: Sender<Msg>) {
    std::thread::Builder::new()
        .name("easel-input".into())
        .spawn(move || loop {
            let msg = match crossterm::event::read() {
                Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => Msg::Key(k),
                // A resize only needs a redraw.
                Ok(Event::Resize(..)) => Msg::Tick(Instant::now()),
                Ok(_) => continue,
                Err(_) => return,
            };
            if tx.send(msg).is_err() {
                return;
            }
        })
        .expect("spawning the input thread");
}

/// Carries out effects: everything slow goes to a thread.
struct Runtime {
    tx: Sender<Msg>,
    renderer: worker::RenderSender,
    breeder: Sender<variations::VariationRequest>,
    sampler: Sender<app::GanSampleRequest>,
    focus: Sender<Option<PathBuf>>,
    places: Places,
}

impl Runtime {
    fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Render(req) => {
                    let _ = self.renderer.send(req);
                }
                Effect::RenderVariations(req) => {
                    let _ = self.breeder.send(req);
                }
                Effect::SampleGan(req) => {
                    let _ = self.sampler.send(req);
                }
                Effect::SaveMutant(job) => {
                    let (tx, dir) = (self.tx.clone(), self.places.favourites.clone());
                    std::thread::spawn(move || {
                        let result = save_mutant(&job, &dir).map_err(|e| format!("{e:#}"));
                        let _ = tx.send(Msg::MutantSaved(result));
                    });
                }
                Effect::Export(job) => {
                    let (tx, dir) = (self.tx.clone(), self.places.exports.clone());
                    // A 4096² CPPN takes seconds and a GIF longer: never on the UI thread.
                    std::thread::spawn(move || {
                        let progress = |text: String| {
                            let _ = tx.send(Msg::ExportProgress(text));
                        };
                        let result = export(&job, &dir, &progress).map_err(|e| format!("{e:#}"));
                        let _ = tx.send(Msg::Exported(result));
                    });
                }
                Effect::Upscale(job) => {
                    let (tx, up) = (self.tx.clone(), Upscaling::new(&self.places.upscale));
                    std::thread::spawn(move || {
                        let mut quarter = 0;
                        let mut progress = |done: usize, total: usize| {
                            // A line per quarter on big pictures, not one per tile.
                            if total >= 4 && done * 4 / total > quarter && done < total {
                                quarter = done * 4 / total;
                                let _ = tx.send(Msg::ExportProgress(format!(
                                    "upscale: {done}/{total} tiles"
                                )));
                            }
                        };
                        let result = up
                            .apply(&job.image, &mut progress)
                            .map(|img| (Arc::new(img), up.clone()))
                            .map_err(|e| format!("{e:#}"));
                        let _ = tx.send(Msg::Upscaled(app::Upscaled {
                            path: job.path,
                            serial: job.serial,
                            result,
                        }));
                    });
                }
                Effect::Follow(run) => {
                    let _ = self.focus.send(run);
                }
                Effect::SaveFavourite(fav) => {
                    let (tx, dir) = (self.tx.clone(), self.places.favourites.clone());
                    std::thread::spawn(move || {
                        let result = save_favourite(&dir, &fav).map_err(|e| format!("{e:#}"));
                        let _ = tx.send(Msg::FavouriteSaved(result));
                    });
                }
                Effect::WriteKnobs { path, knobs } => {
                    let result = write_knobs(&path, &knobs)
                        .map(|()| knobs)
                        .map_err(|e| format!("{e:#}"));
                    let _ = self.tx.send(Msg::KnobsWritten { path, result });
                }
                Effect::StartTraining { sketch, resume } => {
                    let result = match &self.places.runs {
                        Some(runs) => {
                            start_training(&sketch, runs, resume.as_deref(), self.places.device)
                        }
                        None => Err(anyhow::anyhow!("no runs folder")),
                    };
                    let _ = self
                        .tx
                        .send(Msg::TrainingStarted(result.map_err(|e| format!("{e:#}"))));
                }
                Effect::Control { run, patch } => {
                    if let Err(e) = write_control(&run, &patch) {
                        let _ = self.tx.send(Msg::Error(format!(
                            "cannot write {}/control.json: {e:#}",
                            run.display()
                        )));
                    }
                }
                Effect::Quit => {}
            }
        }
    }
}

/// Merges `patch` into the run's control.json (fields it leaves out keep their value).
pub fn write_control(run: &Path, patch: &Control) -> Result<()> {
    let dir = RunDir {
        path: run.to_path_buf(),
    };
    // An unreadable control.json is replaced: the studio's request is what counts now.
    let mut c = dir.read_control().unwrap_or_default();
    if patch.state.is_some() {
        c.state = patch.state;
    }
    if patch.lr_g.is_some() {
        c.lr_g = patch.lr_g;
    }
    if patch.lr_d.is_some() {
        c.lr_d = patch.lr_d;
    }
    if patch.sample_every.is_some() {
        c.sample_every = patch.sample_every;
    }
    dir.write_control(&c)
}

/// A free path `<dir>/<name>-<yyyymmdd-hhmmss>.<ext>`, reserved by creating it (empty)
/// with create_new: two favourites in the same second get two names, even from two
/// threads or two studios.
fn stamped(dir: &Path, name: &str, ext: &str) -> Result<PathBuf> {
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
    for k in 1..10_000 {
        let path = match k {
            1 => dir.join(format!("{name}-{stamp}.{ext}")),
            k => dir.join(format!("{name}-{stamp}-{k}.{ext}")),
        };
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(_) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
        }
    }
    anyhow::bail!("no free favourite name for {name} in {}", dir.display())
}

/// Writes a favourite: a sketch re-rendered at its own size with its recipe (so
/// `easel render --from` makes it again), or a picture as it is.
pub fn save_favourite(dir: &Path, fav: &Favourite) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    match fav {
        Favourite::Sketch {
            path,
            source,
            seed,
            knobs,
            upscale,
        } => {
            let sketch = crate::spec::load_knobs(path, source.to_string(), knobs)?;
            let (mut img, r) = sketch.render(None, *seed, None)?;
            let mut tags = vec![];
            if let Some(up) = upscale {
                // As `render --from` will: the recipe's size, then the upscale.
                img = up.apply(&img, &mut |_, _| {})?;
                tags.push(up.tag(&format!("{} as rendered", r.name))?);
            }
            let out = stamped(dir, &r.name, "png")?;
            write_reserved(&out, || {
                recipe::write_png_tagged(&out, &img, Some(&r), &tags)
            })
        }
        Favourite::Picture {
            name,
            image,
            upscale,
        } => {
            let tags = upscale
                .iter()
                .map(|u| u.tag("the preview"))
                .collect::<Result<Vec<_>>>()?;
            let out = stamped(dir, name, "png")?;
            write_reserved(&out, || recipe::write_png_tagged(&out, image, None, &tags))
        }
    }
}

/// `s` on a picked mutation: writes it as a new sketch next to its parent
/// (`<name>-v<k>.rhai`, never over an existing file) that renders the same pixels on its
/// own, and a favourite rendered from that file. Returns both paths.
pub fn save_mutant(job: &SaveMutant, favourites: &Path) -> Result<(PathBuf, PathBuf)> {
    let (path, text) = mutant_sketch(job)?;
    let fav = save_favourite(
        favourites,
        &Favourite::Sketch {
            path: path.clone(),
            source: Arc::new(text),
            seed: None,
            knobs: Default::default(),
            upscale: None,
        },
    )?;
    Ok((path, fav))
}

/// Writes the mutation's sketch file; returns its path and text.
fn mutant_sketch(job: &SaveMutant) -> Result<(PathBuf, String)> {
    let name = App::sketch_name(&job.path);
    let params = crate::spec::declared_params(&job.path, &job.source)?;
    let text = variations::mutant_source(
        &job.source,
        &params,
        &job.knobs,
        job.seed,
        &job.mutant,
        &format!("{name}.rhai"),
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", job.path.display()))?;
    // A child of a saved mutation is named after the original, not `-v1-v1`.
    let stem = match name.rsplit_once("-v") {
        Some((base, k)) if !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => name.as_str(),
    };
    let dir = job.path.parent().unwrap_or(Path::new(""));
    for k in 1..10_000 {
        let out = dir.join(format!("{stem}-v{k}.rhai"));
        // Checked before the name is taken: a file that does not load is never written.
        let check = crate::spec::load_source(&out, text.clone())
            .map_err(|e| anyhow::anyhow!("the mutation's sketch does not load: {e}"))?;
        match &check.spec {
            crate::spec::Spec::Cppn(c) if c.weights.as_deref() == Some(&*job.mutant.network) => {}
            _ => bail!("the mutation's sketch does not carry its weights"),
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&out)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", out.display())),
        }
        write_reserved(&out, || {
            recipe::write_atomically(&out, |f| {
                use std::io::Write;
                Ok(f.write_all(text.as_bytes())?)
            })
        })?;
        return Ok((out, text));
    }
    bail!("no free name for a mutation of {name} in {}", dir.display())
}

/// `e`: renders the picture on screen at the asked size (or its latent loop as a GIF)
/// into `<dir>/<name>-<stamp>.png|gif`, written atomically; a PNG carries its recipe, so
/// `easel render --from` makes it again (a picked mutation's recipe holds its weights).
pub fn export(job: &Export, dir: &Path, progress: &dyn Fn(String)) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let source = match &job.mutant {
        Some(mutant) => {
            let params = crate::spec::declared_params(&job.path, &job.source)?;
            let name = App::sketch_name(&job.path);
            variations::mutant_source(
                &job.source,
                &params,
                &job.knobs,
                job.seed,
                mutant,
                &format!("{name}.rhai"),
            )
            .map_err(|e| anyhow::anyhow!("{}: {e}", job.path.display()))?
        }
        None => job.source.to_string(),
    };
    // The mutation's text has the knob values written in as its defaults.
    let knobs = match job.mutant {
        Some(_) => Default::default(),
        None => job.knobs.clone(),
    };
    let sketch = crate::spec::load_knobs(&job.path, source, &knobs)?;
    let started = Instant::now();
    match job.target {
        ExportTarget::Still { width, height } => {
            let (img, r) = sketch.render(None, Some(job.seed), Some((width, height)))?;
            let out = stamped(dir, &r.name, "png")?;
            write_reserved(&out, || recipe::write_png(&out, &img, Some(&r)))?;
            progress(format!(
                "rendered {width}x{height} in {:.1} s",
                started.elapsed().as_secs_f64()
            ));
            Ok(out)
        }
        ExportTarget::Gif { side } => {
            let crate::spec::Spec::Cppn(mut c) = sketch.spec.clone() else {
                bail!("a GIF export is a CPPN's latent loop");
            };
            c.seed = job.seed;
            (c.width, c.height) = worker::fit_within_or_grow((c.width, c.height), side);
            let net = c.render_network()?;
            let frames = c.animation.frames.max(2);
            let mut images = Vec::with_capacity(frames as usize);
            for k in 0..frames {
                images.push(crate::cppn::animate::frame(&c, &net, k, frames).to_rgb8());
                // A line a quarter of the way, not one per frame.
                if (k + 1) % frames.div_ceil(4) == 0 && k + 1 < frames {
                    progress(format!("gif: {}/{frames} frames", k + 1));
                }
            }
            let out = stamped(dir, &sketch.name(), "gif")?;
            let delay = (100.0 / c.animation.fps).round().clamp(2.0, 65535.0) as u16;
            write_reserved(&out, || recipe::write_gif(&out, &images, delay))?;
            Ok(out)
        }
    }
}

/// `w`: writes `knobs` into the sketch file as the defaults of its `params`, changing
/// nothing else in it (atomically: the editor and the folder watch see one whole file).
pub fn write_knobs(path: &Path, knobs: &crate::sketch::Knobs) -> Result<()> {
    let source =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    // Declared from the file as it is now (it may have been edited since the render).
    let params = crate::spec::declared_params(path, &source)?;
    for name in knobs.keys() {
        if params.get(name).is_none() {
            bail!("{} no longer declares knob \"{name}\"", path.display());
        }
    }
    let text = crate::sketch::params::rewrite_defaults(&source, &params, knobs)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if text != source {
        recipe::write_atomically(path, |f| {
            use std::io::Write;
            Ok(f.write_all(text.as_bytes())?)
        })?;
    }
    Ok(())
}

/// Fills a reserved (empty) path; on failure removes it, so no empty favourite stays.
fn write_reserved(path: &Path, write: impl FnOnce() -> Result<()>) -> Result<PathBuf> {
    match write() {
        Ok(()) => Ok(path.to_path_buf()),
        Err(e) => {
            let _ = std::fs::remove_file(path);
            Err(e)
        }
    }
}

/// Starts `easel train` as a process of its own session, so it outlives the studio and
/// the SSH link. Its output goes to `<run>/train.log`.
pub fn start_training(
    sketch: &Path,
    runs: &Path,
    resume: Option<&Path>,
    device: DeviceArg,
) -> Result<PathBuf> {
    let name = App::sketch_name(sketch);
    let run = match resume {
        Some(dir) => RunDir::at(dir)?,
        None => RunDir::create(runs, &name)?,
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(run.path.join("train.log"))
        .context("cannot open train.log")?;
    let exe = std::env::current_exe().context("cannot find the easel executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("train")
        .arg(sketch)
        .arg("--run-dir")
        .arg(&run.path)
        .arg("--device")
        .arg(device.to_string());
    if resume.is_some() {
        cmd.arg("--resume");
    }
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // A session of its own: no SIGHUP when the terminal or SSH link goes away, no
        // SIGINT from the studio's terminal.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().context("cannot start `easel train`")?;
    // Reap it when it ends while the studio still runs (no zombie in `ps`).
    std::thread::spawn(move || child.wait());
    Ok(run.path)
}
